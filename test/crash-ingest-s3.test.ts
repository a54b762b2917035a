import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { syntheticInstance } from './support/synthetic.ts';
import { AtriumProcess } from './support/atrium-process.ts';
import { dcmtk, storescuAcknowledged, freePort, haveDcmtk } from './support/dcmtk.ts';
import { stowFiles } from './support/stow.ts';
import { datasetBytes } from './support/part10.ts';
import { startS3Server, type TestS3Server } from './support/s3-server.ts';
import { sha256Hex } from '../src/api/auth.ts';
import { prng } from './support/fuzz.ts';

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
const cli = path.join(path.resolve(import.meta.dirname, '..'), 'bin/atrium.mjs');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Multipart uploads from 5 MiB: an object larger than that goes in parts, then a copy onto itself. */
const partSizeBytes = 5 * 1024 * 1024;

interface Acknowledged {
  uids: { study: string; series: string; sop: string };
  /** Of the whole file (STOW-RS keeps it byte for byte), or of its dataset (a C-STORE carries no meta header). */
  sha: string;
  via: 'dimse' | 'stow-rs';
}

const identity = (via: Acknowledged['via'], file: Buffer) => sha(via === 'dimse' ? datasetBytes(file) : file);

interface VerifyReport {
  checked: number;
  missing: unknown[];
  corrupt: unknown[];
  orphans: Array<{ key: string }>;
  repaired: { orphansDeleted: number };
}

async function retrieve(url: string, token: string, uids: Acknowledged['uids']): Promise<Buffer> {
  const res = await fetch(`${url}/studies/${uids.study}/series/${uids.series}/instances/${uids.sop}`, {
    headers: { Authorization: `Bearer ${token}`, Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
  });
  assert.equal(res.status, 200, `retrieve ${uids.sop}`);
  const body = Buffer.from(await res.arrayBuffer());
  return body.subarray(body.indexOf('\r\n\r\n') + 4, body.lastIndexOf('\r\n--'));
}

async function qidoFinds(url: string, token: string, sop: string): Promise<boolean> {
  const res = await fetch(`${url}/instances?SOPInstanceUID=${sop}`, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/dicom+json' } });
  if (res.status === 204) return false;
  assert.equal(res.status, 200);
  return ((await res.json()) as unknown[]).length === 1;
}

/** The log line of the journal's recovery, and whether it came before the server said it serves. */
function recoveryOf(stdout: string): { before: boolean; report?: Record<string, number> } {
  const lines = stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg?: string } & Record<string, number>);
  const recovered = lines.findIndex((l) => l.msg === 'ingest journal recovered');
  const serving = lines.findIndex((l) => l.msg === 'atrium is serving');
  return { before: recovered === -1 || recovered < serving, report: recovered === -1 ? undefined : lines[recovered] };
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
      const { stdout } = await run(process.execPath, [cli, 'verify', '--config', configFile, ...args], { env, maxBuffer: 64 * 1024 * 1024 });
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
    let fileSeq = 0;

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
      const acknowledged: Acknowledged[] = [];
      const state = { killed: false };
      const ack = (a: Acknowledged) => {
        if (state.killed) return;
        acknowledged.push(a);
        lastAcknowledged = a;
      };
      const dimseWorker = async (worker: number) => {
        while (!state.killed) {
          const batch = Array.from({ length: 4 }, () => {
            const inst = syntheticInstance({ PatientID: `S3KILL-D${worker}`, Rows: 16, Columns: 16 });
            const file = path.join(files, `${fileSeq++}.dcm`);
            writeFileSync(file, inst.file);
            return { file, inst };
          });
          const result = await dcmtk('storescu', ['-v', '-to', '20', '-ta', '20', '-td', '20', '-aec', 'ATRIUM', '127.0.0.1', String(dimsePort), ...batch.map((b) => b.file)], 60_000);
          for (const file of storescuAcknowledged(result.output)) {
            const sent = batch.find((b) => b.file === file)!;
            ack({ uids: sent.inst.uids, sha: identity('dimse', sent.inst.file), via: 'dimse' });
          }
          for (const b of batch) unlinkSync(b.file);
          if (result.code !== 0) break;
        }
      };
      const stowWorker = async (worker: number, everyLarge: number, large: { Rows: number; Columns: number }) => {
        for (let n = 0; !state.killed; n++) {
          const insts = [
            syntheticInstance({ PatientID: `S3KILL-S${worker}`, Rows: 16, Columns: 16 }),
            n % everyLarge === everyLarge - 1
              ? syntheticInstance({ PatientID: `S3KILL-S${worker}`, ...large })
              : syntheticInstance({ PatientID: `S3KILL-S${worker}`, Rows: 16, Columns: 16 }),
          ];
          let status: number;
          try {
            const res = await stowFiles(url, token, insts.map((i) => i.file));
            status = res.status;
            await res.arrayBuffer();
          } catch {
            break; // the server died under the request
          }
          assert.equal(status, 200);
          for (const i of insts) ack({ uids: i.uids, sha: identity('stow-rs', i.file), via: 'stow-rs' });
        }
      };
      // Now and then a 1.2 MB object (one PUT), or a 5.8 MB one (multipart upload, then the copy that labels it).
      const workers = [dimseWorker(0), dimseWorker(1), stowWorker(0, 4, { Rows: 768, Columns: 768 }), stowWorker(1, 6, { Rows: 1700, Columns: 1700 })];
      // Killed at a random moment once ingest is under way (the first acknowledgement), not before.
      for (const waitUntil = Date.now() + 120_000; acknowledged.length === 0 && Date.now() < waitUntil;) await sleep(20);
      await sleep(random() * 1500);
      state.killed = true;
      await atrium.kill();
      await Promise.all(workers);
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
