import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { syntheticInstance, syntheticStream } from './support/synthetic.ts';
import { sha256Hex } from '../src/api/auth.ts';
import { boundaryOf, readMultipartStream } from '../web/src/viewer/multipart-stream.ts';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');
const cli = [path.join(root, 'bin/atrium.mjs')];

/** Atrium as its users run it: the CLI in its own process, killed without warning. */
class AtriumProcess {
  child?: ChildProcess;
  url = '';
  constructor(readonly configFile: string) {}

  async start(): Promise<void> {
    const child = spawn(process.execPath, [...cli, 'serve', '--config', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr!.on('data', (d) => { stderr += d; });
    this.url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        for (const line of out.split('\n')) {
          if (line.includes('atrium is serving')) resolve((JSON.parse(line) as { url: string }).url);
        }
      });
      child.once('exit', (code) => reject(new Error(`atrium exited with ${code}: ${stderr}`)));
    });
  }

  kill(): Promise<void> {
    return new Promise((resolve) => {
      this.child!.once('exit', () => resolve());
      this.child!.kill('SIGKILL');
    });
  }

  async stop(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      await new Promise<void>((resolve) => {
        this.child!.once('exit', () => resolve());
        this.child!.kill('SIGTERM');
      });
    }
  }

  /** Peak resident memory of the server process so far (Linux). */
  peakRssBytes(): number {
    const status = readFileSync(`/proc/${this.child!.pid}/status`, 'utf8');
    return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
  }
}

const boundary = 'crash-test-boundary';
const contentType = `multipart/related; type="application/dicom"; boundary=${boundary}`;

function stow(url: string, token: string, parts: Array<AsyncIterable<Buffer> | Buffer>, onSent?: (bytes: number) => void): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/studies`, { method: 'POST', headers: { 'Content-Type': contentType, Authorization: `Bearer ${token}` } }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    (async () => {
      let sent = 0;
      for (const part of parts) {
        req.write(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`);
        const chunks = Buffer.isBuffer(part) ? [part] : part;
        for await (const chunk of chunks) {
          sent += chunk.length;
          onSent?.(sent);
          if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
          if (req.destroyed) return;
        }
        req.write('\r\n');
      }
      req.end(`--${boundary}--\r\n`);
    })().catch(reject);
  });
}

async function retrieve(url: string, token: string, uids: { study: string; series: string; sop: string }): Promise<Buffer> {
  const res = await fetch(`${url}/studies/${uids.study}/series/${uids.series}/instances/${uids.sop}`, {
    headers: { Authorization: `Bearer ${token}`, Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
  });
  assert.equal(res.status, 200);
  const body = Buffer.from(await res.arrayBuffer());
  // One part: skip the part headers, drop the closing boundary.
  const start = body.indexOf('\r\n\r\n') + 4;
  const end = body.lastIndexOf('\r\n--');
  return body.subarray(start, end);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('a crash in the middle of a large ingest', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'atrium-crash-'));
  const token = randomBytes(24).toString('base64url');
  const configFile = path.join(dataDir, 'atrium.yaml');
  writeFileSync(configFile, [
    `dataDir: ${dataDir}`,
    'http: { host: 127.0.0.1, port: 0 }',
    // Always embedded here: the process is the one being killed.
    'index: { engine: sqlite }',
    'sites:',
    '  - { code: CHU-NORD, name: CHU Nord, finess: "590000001", issuerOfPatientID: CHUNORD }',
    'apiClients:',
    `  - { name: modality, tokenSha256: ${sha256Hex(token)}, site: CHU-NORD }`,
    'log: { level: info }',
  ].join('\n'));
  const atrium = new AtriumProcess(configFile);
  const acknowledged: Array<{ uids: { study: string; series: string; sop: string }; sha: string }> = [];

  before(async () => {
    await atrium.start();
  });
  after(async () => {
    await atrium.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('streams a 400 MB object to storage, and its frames back, without growing the process past 300 MB', async () => {
    const big = syntheticStream({ Rows: 1024, Columns: 1024, NumberOfFrames: 200 });
    const res = await stow(atrium.url, token, [big.stream]);
    assert.equal(res.status, 200, res.body);
    let peak = atrium.peakRssBytes();
    assert.ok(peak < 300 * 1024 * 1024, `peak RSS ${Math.round(peak / 1048576)} MB after the store`);
    // Its 200 frames in one pixel data answer, read a few at a time on the server.
    const { study, series, sop } = big.uids;
    const answer = await fetch(`${atrium.url}/studies/${study}/series/${series}/pixeldata`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(answer.status, 200);
    let frames = 0;
    for await (const part of readMultipartStream(answer.body!, boundaryOf(answer.headers.get('content-type'))!)) {
      assert.equal(part.headers.get('content-location'), `${atrium.url}/studies/${study}/series/${series}/instances/${sop}/frames/${++frames}`);
      assert.equal(part.body.byteLength, 1024 * 1024 * 2);
    }
    assert.equal(frames, 200);
    peak = atrium.peakRssBytes();
    assert.ok(peak < 300 * 1024 * 1024, `peak RSS ${Math.round(peak / 1048576)} MB after the pixel data`);
  });

  it('stops on SIGTERM within its grace period, even with a connection open and never used', async () => {
    const { port, hostname } = new URL(atrium.url);
    const idle = net.connect(Number(port), hostname);
    await new Promise((resolve) => idle.once('connect', resolve));
    const started = Date.now();
    const exited = new Promise<number | null>((resolve) => atrium.child!.once('exit', (code) => resolve(code)));
    atrium.child!.kill('SIGTERM');
    assert.equal(await exited, 0);
    const seconds = (Date.now() - started) / 1000;
    assert.ok(seconds < 15, `stopped in ${seconds} s, not after the 72 s keep-alive timeout`);
    idle.destroy();
    await atrium.start(); // for the next test
  });

  it('after SIGKILL mid-ingest, every acknowledged instance is retrievable and identical, and verify reports and repairs the rest', async () => {
    for (let i = 0; i < 5; i++) {
      const inst = syntheticInstance({ PatientID: `CRASH-${i}`, Rows: 64, Columns: 64 });
      const res = await stow(atrium.url, token, [inst.file]);
      assert.equal(res.status, 200, res.body);
      acknowledged.push({ uids: inst.uids, sha: sha(inst.file) });
    }
    const big = syntheticStream({ Rows: 1024, Columns: 1024, NumberOfFrames: 300 });
    const killed = new Promise<void>((resolve) => {
      let done = false;
      stow(atrium.url, token, [big.stream], (sent) => {
        if (!done && sent > 100 * 1024 * 1024) {
          done = true;
          void atrium.kill().then(resolve);
        }
      }).catch(() => { /* the connection dies with the server */ });
    });
    await killed;
    // What a crash between storing a blob and committing its index row leaves behind.
    const orphanDir = path.join(dataDir, 'blobs/instances/CHU-NORD/2026/01/01');
    mkdirSync(orphanDir, { recursive: true });
    writeFileSync(path.join(orphanDir, `0000000000-${'0'.repeat(8)}-0000-0000-0000-${'0'.repeat(12)}.dcm`), syntheticInstance().file);

    await atrium.start();
    for (const a of acknowledged) {
      assert.equal(sha(await retrieve(atrium.url, token, a.uids)), a.sha);
    }
    await atrium.stop();

    const verify = async (...args: string[]) => {
      try {
        const { stdout } = await run(process.execPath, [...cli, 'verify', '--config', configFile, ...args]);
        return { code: 0, report: JSON.parse(stdout) as { missing: unknown[]; corrupt: unknown[]; orphans: Array<{ key: string }>; repaired: { orphansDeleted: number; temporaryFilesRemoved: number } } };
      } catch (e) {
        const err = e as { code: number; stdout: string };
        return { code: err.code, report: JSON.parse(err.stdout) as { missing: unknown[]; corrupt: unknown[]; orphans: Array<{ key: string }>; repaired: { orphansDeleted: number; temporaryFilesRemoved: number } } };
      }
    };
    const first = await verify();
    assert.equal(first.code, 1, 'problems found');
    assert.deepEqual(first.report.missing, [], 'no index row points to a missing blob');
    assert.deepEqual(first.report.corrupt, []);
    assert.equal(first.report.orphans.length, 1, 'the orphan is reported');
    const repaired = await verify('--repair', '--grace-seconds', '0');
    assert.equal(repaired.report.repaired.orphansDeleted, 1);
    assert.ok(repaired.report.repaired.temporaryFilesRemoved >= 1, 'the interrupted upload is cleaned');
    assert.deepEqual(readdirSync(path.join(dataDir, 'blobs/.tmp')), []);
    const clean = await verify();
    assert.equal(clean.code, 0);
    assert.equal(clean.report.orphans.length, 0);
  });
});
