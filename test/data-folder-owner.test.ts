/**
 * One `atrium serve` per data folder: a second server started on the same folder (systemd's
 * and one started by hand, two nodes given the same dataDir) would replay and delete the
 * ingest journal's segments the first is writing, and the first's acknowledged objects would
 * then depend on nothing. It is refused, saying why; the first keeps serving; a folder whose
 * server was killed starts again at once.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { sha256Hex } from '../src/api/auth.ts';
import { AtriumProcess } from './support/atrium-process.ts';
import { qidoFinds } from './support/crash-ingest.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';

describe('one atrium serve per data folder', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'atrium-owner-'));
  const configFile = path.join(dataDir, 'atrium.yaml');
  const token = randomBytes(24).toString('base64url');
  writeFileSync(configFile, [
    `dataDir: ${dataDir}`,
    'http: { host: 127.0.0.1, port: 0 }',
    `index: { engine: sqlite, path: ${JSON.stringify(path.join(dataDir, 'index.db'))} }`,
    'sites:',
    '  - { code: CHU-NORD, name: CHU Nord, finess: "590000001", issuerOfPatientID: CHUNORD }',
    'apiClients:',
    `  - { name: modality, tokenSha256: ${sha256Hex(token)}, site: CHU-NORD }`,
    'dimse: { enabled: false }',
    'hl7: { enabled: false }',
  ].join('\n'));
  const first = new AtriumProcess(configFile);
  const second = new AtriumProcess(configFile);
  const owner = path.join(dataDir, 'ingest-journal', 'owner.json');
  after(async () => {
    await first.stop();
    await second.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses a second server on a folder in use, keeps the first serving, and starts again at once after a kill', { timeout: 240_000 }, async () => {
    await first.start();
    const stored = syntheticInstance({ PatientID: 'OWNER-1', Rows: 8, Columns: 8 });
    const r = await stowFiles(first.url, token, [stored.file]);
    assert.equal(r.status, 200, await r.text());
    assert.equal((JSON.parse(readFileSync(owner, 'utf8')) as { pid: number }).pid, first.child!.pid);

    await assert.rejects(second.start(), (e: Error) => {
      assert.match(e.message, new RegExp(`ingest journal \\(${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/ingest-journal\\) belongs to an Atrium running since .* \\(pid ${first.child!.pid}\\): one atrium serve per data folder`));
      return true;
    });
    assert.notEqual(second.child!.exitCode, 0);
    // The first one still serves, and still owns the folder.
    assert.ok(await qidoFinds(first.url, token, stored.uids.sop));
    const another = syntheticInstance({ PatientID: 'OWNER-1', Rows: 8, Columns: 8 });
    assert.equal((await stowFiles(first.url, token, [another.file])).status, 200);
    assert.equal((JSON.parse(readFileSync(owner, 'utf8')) as { pid: number }).pid, first.child!.pid);

    // Killed: the owner file names a dead process, which does not hold the folder.
    await first.kill();
    assert.ok(existsSync(owner));
    await second.start();
    assert.ok(await qidoFinds(second.url, token, another.uids.sop), 'the objects acknowledged before the kill are there');
    assert.equal((JSON.parse(readFileSync(owner, 'utf8')) as { pid: number }).pid, second.child!.pid);
    // A clean stop gives the folder back.
    await second.stop();
    assert.equal(existsSync(owner), false);
  });
});
