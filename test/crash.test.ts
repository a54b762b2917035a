import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rmSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { syntheticInstance, syntheticStream } from './support/synthetic.ts';
import { AtriumProcess, stowStreamed, singleSiteProcessConfig } from './support/atrium-process.ts';
import { boundaryOf, readMultipartStream } from '../web/src/viewer/multipart-stream.ts';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');
const cli = [path.join(root, 'bin/atrium.mjs')];

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
  // Always embedded (SQLite), HTTP alone.
  const { dataDir, configFile, token } = singleSiteProcessConfig('atrium-crash-', 'modality');
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
    const res = await stowStreamed(atrium.url, token, [big.stream]);
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
      const res = await stowStreamed(atrium.url, token, [inst.file]);
      assert.equal(res.status, 200, res.body);
      acknowledged.push({ uids: inst.uids, sha: sha(inst.file) });
    }
    const big = syntheticStream({ Rows: 1024, Columns: 1024, NumberOfFrames: 300 });
    const killed = new Promise<void>((resolve) => {
      let done = false;
      stowStreamed(atrium.url, token, [big.stream], (sent) => {
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
