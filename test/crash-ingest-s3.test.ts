import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { AtriumProcess } from './support/atrium-process.ts';
import { freePort, haveDcmtk } from './support/dcmtk.ts';
import { startS3Server, type TestS3Server } from './support/s3-server.ts';
import { sha256Hex } from '../src/api/auth.ts';
import { prng } from './support/fuzz.ts';
import { atriumCliArgs } from './support/cli.ts';
import { concurrentIngest, identity, qidoFinds, recoveryOf, retrieve, sleep, type Acknowledged } from './support/crash-ingest.ts';

/**
 * The acknowledgement guarantee on S3 storage: `atrium serve` is killed (SIGKILL) at random
 * moments of concurrent C-STORE (storescu) and STOW-RS ingest into s3rver. On S3 an object is
 * acknowledged once its PUT has finished and its key is in the local ingest journal; after each
 * restart the first request must find the last object acknowledged, the objects acknowledged
 * before the kill must come back byte for byte (all of them again at the end, after
 * `verify --repair`), and `atrium verify` must find no index row without its object.
 * ATRIUM_S3_CRASH_KILLS sets the number of kills (default 14: 20 took 6 min on two cores under a load
 * average of 20, 2 min of it CPU); ATRIUM_S3_CRASH_DEBUG=1 prints each round.
 */
const kills = Number(process.env.ATRIUM_S3_CRASH_KILLS ?? 14);
const run = promisify(execFile);
/** Multipart uploads from 5 MiB: an object larger than that goes in parts, then a copy onto itself. */
const partSizeBytes = 5 * 1024 * 1024;

interface VerifyReport {
  checked: number;
  missing: unknown[];
  corrupt: unknown[];
  orphans: Array<{ key: string }>;
  repaired: { orphansDeleted: number };
}

describe('SIGKILL at random moments of concurrent DIMSE and STOW-RS ingest onto S3 storage (s3rver)', { skip: !haveDcmtk && 'DCMTK is not installed' }, () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'atrium-crash-s3-'));
  const files = path.join(dataDir, 'to-send');
  const configFile = path.join(dataDir, 'atrium.yaml');
  const token = randomBytes(24).toString('base64url');
  let s3: TestS3Server;
  let atrium: AtriumProcess;
  let env: NodeJS.ProcessEnv;
  let dimsePort = 0;

  before(async () => {
    mkdirSync(files);
    s3 = await startS3Server({ bucket: 'atrium-crash' });
    dimsePort = await freePort();
    writeFileSync(configFile, [
      `dataDir: ${dataDir}`,
      'http: { host: 127.0.0.1, port: 0 }',
      'index: { engine: sqlite }',
      `storage: { kind: s3, bucket: ${s3.bucket}, endpoint: "${s3.endpoint}", region: us-east-1, partSizeBytes: ${partSizeBytes} }`,
      'sites:',
      '  - { code: CHU-NORD, name: CHU Nord, finess: "590000001", issuerOfPatientID: CHUNORD }',
      'apiClients:',
      `  - { name: modality, tokenSha256: ${sha256Hex(token)}, site: CHU-NORD }`,
      `dimse: { enabled: true, host: 127.0.0.1, port: ${dimsePort}, aeTitle: ATRIUM, requireKnownCallers: false }`,
      'hl7: { enabled: false }',
      'log: { level: info }',
    ].join('\n'));
    // Credentials only from the environment, as in production.
    env = { ...process.env, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey };
    atrium = new AtriumProcess(configFile, env);
  });
  after(async () => {
    await atrium?.stop();
    await s3?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const verify = async (...args: string[]): Promise<{ code: number; report: VerifyReport }> => {
    try {
      const { stdout } = await run(process.execPath, [...atriumCliArgs(), 'verify', '--config', configFile, ...args], { env, maxBuffer: 64 * 1024 * 1024 });
      return { code: 0, report: JSON.parse(stdout) as VerifyReport };
    } catch (e) {
      const err = e as { code: number; stdout: string; stderr: string };
      assert.ok(err.stdout.startsWith('{'), `verify failed: ${err.stderr}`);
      return { code: err.code, report: JSON.parse(err.stdout) as VerifyReport };
    }
  };

  it(`after each of ${kills} kills, the last acknowledged object is found by the first request, every acknowledged one is identical, and no index row lacks its object`, { timeout: 900_000 }, async (context) => {
    const random = prng(20261207);
    const everything: Acknowledged[] = [];
    let lastRound: Acknowledged[] = [];
    let lastAcknowledged: Acknowledged | undefined;
    let recoveredObjects = 0;
    let reindexed = 0;

    for (let round = 0; round < kills; round++) {
      const t0 = Date.now();
      await atrium.start();
      const t1 = Date.now();
      const { url } = atrium;
      // The very first request: recovery must have run before the server answered anything.
      if (lastAcknowledged) assert.ok(await qidoFinds(url, token, lastAcknowledged.uids.sop), `round ${round}: the object acknowledged last before the kill is found at once`);
      const recovery = recoveryOf(atrium.stdout);
      assert.ok(recovery.before, `round ${round}: recovery is logged before the server serves`);
      assert.equal(recovery.report?.missing ?? 0, 0, `round ${round}: no journaled object is missing from the bucket`);
      assert.equal(recovery.report?.refused ?? 0, 0, `round ${round}: no journaled object refused`);
      recoveredObjects += recovery.report?.objects ?? 0;
      reindexed += recovery.report?.reindexed ?? 0;
      for (const a of lastRound) assert.equal(identity(a.via, await retrieve(url, token, a.uids)), a.sha, `round ${round}: ${a.via} object ${a.uids.sop}`);
      // Beside the running server, during this round's ingest: no index row lacks its object, none
      // is corrupt (objects written but not yet indexed are younger than the grace period: not reported).
      const checking = verify('--no-checksums');
      const t3 = Date.now();
      // Now and then a 1.2 MB object (one PUT), or a 5.8 MB one (multipart upload, then the copy that labels it).
      const load = concurrentIngest({
        folder: files, dimsePort, url, token, patientPrefix: 'S3KILL',
        dimse: { workers: 2, batch: 4, timeoutSeconds: 20 },
        stow: [{ everyLarge: 4, large: { Rows: 768, Columns: 768 } }, { everyLarge: 6, large: { Rows: 1700, Columns: 1700 } }],
        onAcknowledged: (a) => { lastAcknowledged = a; },
      });
      const { acknowledged } = load;
      // Killed at a random moment once ingest is under way (the first acknowledgement), not before.
      for (const waitUntil = Date.now() + 120_000; acknowledged.length === 0 && Date.now() < waitUntil;) await sleep(20);
      await sleep(random() * 1500);
      load.halt();
      await atrium.kill();
      await load.done;
      const checked = await checking;
      assert.deepEqual(checked.report.missing, [], `round ${round}: no index row lacks its object`);
      assert.deepEqual(checked.report.corrupt, [], `round ${round}`);
      everything.push(...acknowledged);
      lastRound = acknowledged;
      if (process.env.ATRIUM_S3_CRASH_DEBUG) context.diagnostic(`round ${round}: ${acknowledged.length} acknowledged; start ${t1 - t0} ms, checks ${t3 - t1} ms, ingest and verify ${Date.now() - t3} ms; recovery ${JSON.stringify(recovery.report)}`);
    }

    await atrium.start();
    if (lastAcknowledged) assert.ok(await qidoFinds(atrium.url, token, lastAcknowledged.uids.sop));
    await atrium.stop();
    context.diagnostic(`${everything.length} objects acknowledged (${everything.filter((a) => a.via === 'dimse').length} by C-STORE); recoveries replayed ${recoveredObjects} journaled objects, indexed ${reindexed} the index lacked`);
    assert.ok(everything.length > kills, `${everything.length} objects acknowledged over ${kills} kills`);
    assert.ok(everything.some((a) => a.via === 'dimse') && everything.some((a) => a.via === 'stow-rs'));
    assert.ok(recoveredObjects > 0, 'the journal was replayed after kills');

    // At the end, stopped, with checksums: every object's bytes in the bucket match the index.
    // Objects written to the bucket but never acknowledged (killed before their journal record) are
    // orphans, removed as verify always did; never an acknowledged one (each is retrieved below, after the repair).
    const final = await verify('--repair', '--grace-seconds', '0');
    assert.deepEqual(final.report.missing, []);
    assert.deepEqual(final.report.corrupt, []);
    context.diagnostic(`${final.report.repaired.orphansDeleted} unacknowledged objects left in the bucket by the kills, removed by verify --repair`);
    const clean = await verify();
    assert.equal(clean.code, 0, JSON.stringify(clean.report));
    assert.ok(clean.report.checked >= new Set(everything.map((a) => a.uids.sop)).size);
    await atrium.start();
    for (const a of everything) assert.equal(identity(a.via, await retrieve(atrium.url, token, a.uids)), a.sha, `after repair: ${a.via} object ${a.uids.sop}`);
    await atrium.stop();
  });
});
