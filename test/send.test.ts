/**
 * `atrium send`: the CLI as a storage SCU, against DCMTK's storescp (no asynchronous
 * window) and against Atrium's own SCP (which grants one).
 */
import { datasetBytes } from './support/part10.ts';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { haveDcmtk, startStorescp } from './support/dcmtk.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { atriumCliArgs } from './support/cli.ts';

const execFileAsync = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');

async function atriumCli(args: string[], configFile: string, dataDir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, ATRIUM_CONFIG: configFile, ATRIUM_DATA_DIR: dataDir, ATRIUM_LOG_LEVEL: 'warn' };
  delete env.DATABASE_URL;
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [...atriumCliArgs(), ...args], { cwd: root, env });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    if (typeof err.code !== 'number') throw e;
    return { code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}


describe('atrium send', { skip: !haveDcmtk && 'DCMTK is not installed' }, () => {
  const work = mkdtempSync(path.join(tmpdir(), 'atrium-send-'));
  const src = path.join(work, 'src');
  const destDir = path.join(work, 'dest');
  const configFile = path.join(work, 'atrium.yaml');
  let dest: Awaited<ReturnType<typeof startStorescp>>;
  let target: RunningAtrium;
  const objs = Array.from({ length: 6 }, (_, i) => syntheticInstance({ PatientID: 'SEND-1', Rows: 16 + i, Columns: 16 }));

  before(async () => {
    mkdirSync(path.join(src, 'sub'), { recursive: true });
    mkdirSync(destDir);
    objs.forEach((o, i) => writeFileSync(path.join(src, i % 2 ? 'sub' : '', `o${i}.dcm`), o.file));
    writeFileSync(path.join(src, 'README.TXT'), 'not an image\n');
    dest = await startStorescp('DEST', destDir);
    target = await startAtrium({ dimse: true, configure: (c) => (c.peers = [{ aeTitle: 'SENDER', site: 'CHU-NORD', may: { store: true, query: false, retrieve: false } }]) });
    writeFileSync(configFile, [
      'dimse:', '  aeTitle: SENDER', '  enabled: false',
      'peers:',
      `  - { aeTitle: DEST, host: 127.0.0.1, port: ${dest.port}, site: LOCAL }`,
      `  - { aeTitle: ATRIUM, host: 127.0.0.1, port: ${target.dimse!.port}, site: LOCAL }`,
      '',
    ].join('\n'));
  });

  after(async () => {
    await dest?.stop();
    await target?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('sends every DICOM file of a folder tree to storescp byte for byte, skipping the rest', async () => {
    const r = await atriumCli(['send', src, '--to', 'DEST'], configFile, path.join(work, 'data'));
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { sent: number; skipped: string[]; window: number };
    assert.equal(report.sent, 6);
    assert.equal(report.window, 1, 'storescp grants no asynchronous window');
    assert.deepEqual(report.skipped.map((p) => path.basename(p)), ['README.TXT']);
    const got = readdirSync(destDir).map((n) => readFileSync(path.join(destDir, n)));
    assert.equal(got.length, 6);
    for (const o of objs) assert.ok(got.some((g) => datasetBytes(g).equals(datasetBytes(o.file))));
  });

  it('keeps several C-STOREs outstanding on Atrium, which grants a window, and exits 1 when one is refused', async () => {
    const bad = syntheticInstance({ PatientID: 'SEND-2', Rows: 16, Columns: 16, pixelBytes: 10 });
    writeFileSync(path.join(src, 'bad.dcm'), bad.file);
    const r = await atriumCli(['send', src, '--to', 'ATRIUM', '--window', '4'], configFile, path.join(work, 'data'));
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as { sent: number; window: number; failed: Array<{ path: string; status: number }> };
    assert.equal(report.window, 4);
    assert.equal(report.sent, 6);
    assert.equal(report.failed.length, 1);
    assert.equal(path.basename(report.failed[0]!.path), 'bad.dcm');
    assert.equal(report.failed[0]!.status, 0xa900);
    for (const o of objs) assert.ok(await target.archive.index.findInstanceBySOPInstanceUID(o.uids.sop));
  });

  it('sends to a peer an administrator added in the portal (kept in the index, not in the configuration file)', async () => {
    // The sending platform's own index, in the data folder the CLI uses; the peer added there as
    // POST /api/admin/peers adds it (test/portal-admin.test.ts drives that screen).
    const dataDir = path.join(work, 'data-portal-peer');
    mkdirSync(dataDir);
    const sender = await startAtrium({ index: { engine: 'sqlite', path: path.join(dataDir, 'index.sqlite') } });
    try {
      await sender.archive.peers.add({ aeTitle: 'ADDED', host: '127.0.0.1', port: dest.port, site: 'CHU-NORD', may: { store: true, query: false, retrieve: false } }, 'test');
    } finally {
      await sender.close();
    }
    const before = readdirSync(destDir).length;
    const one = path.join(work, 'one');
    mkdirSync(one);
    const fresh = syntheticInstance({ PatientID: 'SEND-3', Rows: 16, Columns: 16 });
    writeFileSync(path.join(one, 'o.dcm'), fresh.file);
    const r = await atriumCli(['send', one, '--to', 'ADDED'], configFile, dataDir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { sent: number }).sent, 1);
    const got = readdirSync(destDir);
    assert.equal(got.length, before + 1);
    assert.ok(got.some((n) => datasetBytes(readFileSync(path.join(destDir, n))).equals(datasetBytes(fresh.file))));
    // Not in the file, and unknown to a data folder whose index has no such peer.
    assert.equal((await atriumCli(['send', one, '--to', 'ADDED'], configFile, path.join(work, 'data'))).code, 2);
  });

  it('refuses a destination that is not a configured peer', async () => {
    const r = await atriumCli(['send', src, '--to', 'NOBODY'], configFile, path.join(work, 'data'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /NOBODY is not a configured peer/);
  });
});
