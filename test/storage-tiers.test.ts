/**
 * Storage tiers (issue 18 §2): studies nobody read for a while move to the cold tier (a
 * second folder, or an S3 bucket with a storage class) with a fast-forwarded clock; they are
 * retrieved from there through WADO-RS, rendered, C-GET and C-MOVE as before; a read brings
 * them back (onRead: recall) or is only served (serve); a move stopped between its steps (a
 * thrown fault, and a process killed) leaves every object retrievable and `verify` clean;
 * a deletion removes the cold copies; /metrics counts the objects of each tier.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases, type TestDatabase } from './support/databases.ts';
import { dcmtk, haveDcmtk, startStorescp } from './support/dcmtk.ts';
import { startS3Server, type TestS3Server } from './support/s3-server.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { datasetBytes, sopOf } from './support/part10.ts';
import { retrieveInstanceAsStored, splitMultipart } from './support/dicomweb-client.ts';
import { verifyArchive } from '../src/archive/maintenance.ts';
import { loadConfig } from '../src/config/config.ts';
import { openArchive } from '../src/archive/archive.ts';
import { startWorkers } from '../src/cli/workers.ts';
import { CompressionAtRest } from '../src/archive/compression.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';
import { Tags, TransferSyntax } from '../src/dicom/dataset.ts';
import { pino } from 'pino';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import type { S3BlobStore } from '../src/storage/s3-store.ts';
import type { StorageTiering } from '../src/archive/tiering.ts';
import { atriumCliArgs } from './support/cli.ts';

const day = 86_400_000;
const root = path.resolve(import.meta.dirname, '..');

function studyOf(PatientID: string, count: number) {
  const first = syntheticInstance({ PatientID, Rows: 16, Columns: 16 });
  const files = [first.file];
  for (let i = 1; i < count; i++) files.push(syntheticInstance({ PatientID, Rows: 16, Columns: 16, StudyInstanceUID: first.uids.study, SeriesInstanceUID: first.uids.series }).file);
  return { study: first.uids.study, series: first.uids.series, files };
}

function suite(db: TestDatabase, coldKind: 'filesystem' | 's3') {
  describe(`Storage tiers (${db.name}, cold tier on ${coldKind})`, { skip: !haveDcmtk && 'DCMTK missing' }, () => {
    let atrium: RunningAtrium;
    let tiering: StorageTiering;
    let cleanup: (() => Promise<void>) | undefined;
    let s3: TestS3Server | undefined;
    let dest: Awaited<ReturnType<typeof startStorescp>>;
    let destDir: string;
    const received = (files: Buffer[]) => files.every((f) => readdirSync(destDir).some((n) => n.endsWith(sopOf(f))));
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-tiers-'));
    const t0 = Date.now();
    const at = (days: number) => new Date(t0 + days * day);
    const token = () => atrium.tokens['CHU-NORD']!;
    const a = studyOf('TIER-A', 3);
    const b = studyOf('TIER-B', 2);

    const verifyClean = async () => {
      const report = await verifyArchive(atrium.archive, { checksums: true, repair: false, orphanGraceMs: 0 });
      assert.deepEqual({ missing: report.missing, corrupt: report.corrupt, orphans: report.orphans, misplaced: report.tiers?.misplaced }, { missing: [], corrupt: [], orphans: [], misplaced: [] });
      return report;
    };
    const keysOf = async (study: string) => (await atrium.archive.index.getStoredInstances({ StudyInstanceUID: study })).map((i) => i.blobKey);
    const where = async (key: string) => ({ hot: !!(await tiering.store.hot.stat(key)), cold: !!(await tiering.store.cold.stat(key)) });
    const wadoStudy = async (study: string) => {
      const r = await fetch(`${atrium.dicomweb}/studies/${study}`, { headers: { authorization: `Bearer ${token()}`, accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
      assert.equal(r.status, 200, await r.clone().text());
      return splitMultipart(Buffer.from(await r.arrayBuffer()), r.headers.get('content-type')!);
    };
    const sameFiles = (got: Buffer[], files: Buffer[]) => {
      assert.equal(got.length, files.length);
      for (const g of got) {
        const original = files.find((f) => sopOf(f) === sopOf(g));
        assert.ok(original && datasetBytes(g).equals(datasetBytes(original)), 'the object as stored');
      }
    };

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      destDir = mkdtempSync(path.join(work, 'dest-'));
      dest = await startStorescp('DEST', destDir);
      if (coldKind === 's3') s3 = await startS3Server({ bucket: 'atrium-cold' });
      atrium = await startAtrium({
        index: opened.config, dimse: true, forwarding: true,
        configure: (c) => {
          c.peers = [
            { aeTitle: 'READER', site: 'CHU-NORD', may: { store: false, query: true, retrieve: true } },
            { aeTitle: 'DEST', host: '127.0.0.1', port: dest.port, site: 'CHU-NORD', may: { store: false, query: false, retrieve: false } },
          ] as typeof c.peers;
          c.storageTiering = {
            cold: s3
              ? { kind: 's3', endpoint: s3.endpoint, bucket: s3.bucket, region: 'us-east-1', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, prefix: 'cold', storageClass: 'STANDARD_IA' }
              : { kind: 'filesystem', root: path.join(work, 'cold') },
            moveAfterDaysWithoutRead: 90, onRead: 'serve', everyMinutes: 60,
          };
        },
      });
      tiering = atrium.archive.tiering!;
      assert.ok(tiering, 'storage.cold opens the tiers');
      for (const s of [a, b]) {
        const r = await stowFiles(atrium.dicomweb, token(), s.files);
        assert.equal(r.status, 200, await r.text());
      }
    });

    after(async () => {
      await atrium?.close();
      await dest?.stop();
      await s3?.close();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    it('keeps studies hot until they were unread for moveAfterDaysWithoutRead, then moves them to cold, verified, and verify checks both tiers', async () => {
      const early = await tiering.runTiering(at(30));
      assert.equal(early.moved, 0);
      assert.deepEqual(await tiering.studyTiers(a.study), { hot: 3, cold: 0 });
      const moved = await tiering.runTiering(at(100));
      assert.equal(moved.moved, 5);
      assert.equal(moved.studiesMoved, 2);
      for (const s of [a, b]) for (const key of await keysOf(s.study)) assert.deepEqual(await where(key), { hot: false, cold: true }, key);
      assert.deepEqual(await tiering.studyTiers(a.study), { hot: 0, cold: 3 });
      if (coldKind === 's3') {
        // Written in the configured storage class.
        const cold = tiering.store.cold as S3BlobStore;
        const head = await cold.client.send(new HeadObjectCommand({ Bucket: cold.bucket, Key: cold.prefix + (await keysOf(a.study))[0] }));
        assert.equal(head.StorageClass, 'STANDARD_IA');
      }
      const report = await verifyClean();
      assert.deepEqual({ hot: report.tiers!.hot, cold: report.tiers!.cold, unfinished: report.tiers!.unfinished }, { hot: 0, cold: 5, unfinished: 0 });
    });

    it('serves cold studies through WADO-RS, rendered, C-GET and C-MOVE, byte for byte, leaving them cold (onRead: serve)', async () => {
      sameFiles(await wadoStudy(a.study), a.files);
      const one = await retrieveInstanceAsStored(atrium.dicomweb, token(), { study: a.study, series: a.series, sop: sopOf(a.files[0]!) });
      assert.ok(datasetBytes(one).equals(datasetBytes(a.files[0]!)));
      const rendered = await fetch(`${atrium.dicomweb}/studies/${a.study}/series/${a.series}/instances/${sopOf(a.files[1]!)}/rendered`, { headers: { authorization: `Bearer ${token()}`, accept: 'image/png' } });
      assert.equal(rendered.status, 200);
      assert.ok(Buffer.from(await rendered.arrayBuffer()).subarray(1, 4).equals(Buffer.from('PNG')));

      const out = mkdtempSync(path.join(work, 'get-'));
      const get = await dcmtk('getscu', ['-S', '-aet', 'READER', '-aec', 'ATRIUM', '-od', out, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${b.study}`, '127.0.0.1', String(atrium.dimse!.port)]);
      assert.equal(get.code, 0, get.output);
      sameFiles(readdirSync(out).map((n) => readFileSync(path.join(out, n))), b.files);

      const move = await dcmtk('movescu', ['-S', '-aet', 'READER', '-aec', 'ATRIUM', '-aem', 'DEST', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${a.study}`, '127.0.0.1', String(atrium.dimse!.port)]);
      assert.equal(move.code, 0, move.output);
      assert.ok(received(a.files), dest.output());
      // Forwarding (a prefetch of the patient's priors through the forwarding queue) sends the cold study too.
      const prefetch = await fetch(atrium.dicomweb.replace('/dicom-web', '/api/forwarding/prefetch'), {
        method: 'POST', headers: { authorization: `Bearer ${token()}`, 'content-type': 'application/json' }, body: JSON.stringify({ PatientID: 'TIER-B', destination: 'DEST' }),
      });
      assert.equal(prefetch.status, 202, await prefetch.clone().text());
      for (const deadline = Date.now() + 120_000; !received(b.files);) {
        assert.ok(Date.now() < deadline, `forwarded within two minutes: ${dest.output()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      for (const f of b.files) {
        const name = readdirSync(destDir).find((n) => n.endsWith(sopOf(f)))!;
        assert.ok(datasetBytes(readFileSync(path.join(destDir, name))).equals(datasetBytes(f)), 'forwarded as stored');
      }

      const r = await tiering.runTiering(at(101));
      assert.equal(r.recalled, 0, 'served from cold, not recalled');
      assert.deepEqual(await tiering.studyTiers(a.study), { hot: 0, cold: 3 });
    });

    it('brings a study read from cold back to hot (onRead: recall), keeps it while read, and moves it again once unread', async () => {
      tiering.config.onRead = 'recall';
      tiering.clock = () => at(200);
      try {
        sameFiles(await wadoStudy(a.study), a.files);
        const r = await tiering.runTiering(at(200));
        assert.equal(r.recalled, 3);
        for (const key of await keysOf(a.study)) assert.deepEqual(await where(key), { hot: true, cold: false });
        assert.deepEqual(await tiering.studyTiers(b.study), { hot: 0, cold: 2 }, 'the study not read stays cold');
        await verifyClean();
        // Read on day 200: still hot on day 250 (50 days unread), cold again on day 300.
        assert.equal((await tiering.runTiering(at(250))).moved, 0);
        assert.equal((await tiering.runTiering(at(300))).moved, 3);
        assert.deepEqual(await tiering.studyTiers(a.study), { hot: 0, cold: 3 });
      } finally {
        tiering.config.onRead = 'serve';
        tiering.clock = () => new Date();
      }
    });

    it('leaves an object retrievable and verify clean when a move stops after the cold copy, or after recording it before the hot copy went; the next run finishes', async () => {
      const c = studyOf('TIER-C', 2);
      assert.equal((await stowFiles(atrium.dicomweb, token(), c.files)).status, 200);
      const [k1, k2] = await keysOf(c.study);
      tiering.faults = {
        afterColdCopy: (key) => { if (key === k1) throw new Error('stopped after the cold copy'); },
        beforeHotDelete: (key) => { if (key === k2) throw new Error('stopped before the hot copy went'); },
      };
      try {
        await tiering.runTiering(at(400));
      } finally {
        tiering.faults = {};
      }
      // Both copies of each exist: the index says hot for the first (no row), cold for the second.
      assert.deepEqual(await where(k1!), { hot: true, cold: true });
      assert.deepEqual(await where(k2!), { hot: true, cold: true });
      sameFiles(await wadoStudy(c.study), c.files);
      const report = await verifyClean();
      assert.equal(report.tiers!.unfinished, 1);
      const next = await tiering.runTiering(at(400));
      assert.equal(next.finished, 1);
      assert.equal(next.moved, 1);
      for (const key of [k1!, k2!]) assert.deepEqual(await where(key), { hot: false, cold: true });
      sameFiles(await wadoStudy(c.study), c.files);
      assert.equal((await verifyClean()).tiers!.unfinished, 0);
    });

    it('leaves an object retrievable and verify clean when a recall stops before the cold copy went; the next run finishes', async () => {
      const c = (await atrium.archive.index.searchStudies({ level: 'study', matches: { PatientID: 'TIER-C' }, fuzzymatching: false, limit: 1, offset: 0 }))[0]!.study.StudyInstanceUID;
      const [k1, k2] = await keysOf(c);
      assert.deepEqual(await tiering.studyTiers(c), { hot: 0, cold: 2 });
      tiering.config.onRead = 'recall';
      // Read on day 450 (so that the run of day 450 does not find it idle and move it back).
      tiering.clock = () => at(450);
      tiering.faults = { beforeColdDelete: (key) => { if (key === k1) throw new Error('stopped before the cold copy went'); } };
      try {
        assert.equal((await fetch(`${atrium.dicomweb}/studies/${c}`, { headers: { authorization: `Bearer ${token()}`, accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } })).status, 200);
        const r = await tiering.runTiering(at(450));
        assert.deepEqual([r.recalled, r.failed, r.moved], [1, 1, 0]);
      } finally {
        tiering.faults = {};
        tiering.config.onRead = 'serve';
        tiering.clock = () => new Date();
      }
      assert.deepEqual(await Promise.all([k1!, k2!].map(where)), [{ hot: true, cold: true }, { hot: true, cold: false }]);
      assert.deepEqual(await tiering.tierOf(k1!), { tier: 'hot', otherCopy: true });
      assert.equal((await verifyClean()).tiers!.unfinished, 1);
      const next = await tiering.runTiering(at(450));
      assert.equal(next.finished, 1);
      assert.deepEqual(await where(k1!), { hot: true, cold: false });
      assert.deepEqual(await tiering.studyTiers(c), { hot: 2, cold: 0 });
      assert.equal((await verifyClean()).tiers!.unfinished, 0);
    });

    it('leaves every object whole when the process moving it is killed between its steps', { skip: coldKind === 's3' && 'the filesystem cold tier is enough for the kill' }, async () => {
      const d = studyOf('TIER-D', 3);
      assert.equal((await stowFiles(atrium.dicomweb, token(), d.files)).status, 200);
      await atrium.archive.index.sql.flush();
      const keys = await keysOf(d.study);
      // A second process on the same index and tiers moves the study and is killed (SIGKILL)
      // just before it deletes the second object's hot copy: nothing it had in hand is cleaned up.
      const script = path.join(work, 'mover.mts');
      writeFileSync(script, `
import { pino } from ${JSON.stringify(pathToFileURL(createRequire(import.meta.url).resolve('pino')).href)};
import { openArchive } from ${JSON.stringify(pathToFileURL(path.join(root, 'src/archive/archive.ts')).href)};
const config = JSON.parse(process.argv[2]);
const archive = await openArchive(config, pino({ level: 'silent' }));
archive.tiering.faults = { beforeHotDelete: (key: string) => { if (key === ${JSON.stringify(keys[1])}) process.kill(process.pid, 'SIGKILL'); } };
await archive.tiering.runTiering(new Date(${at(500).getTime()}));
process.exit(3);
`);
      const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(atrium.config)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout!.on('data', (x: Buffer) => (output += x.toString()));
      child.stderr!.on('data', (x: Buffer) => (output += x.toString()));
      const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, s) => resolve(s)));
      assert.equal(signal, 'SIGKILL', output);
      // The first object moved, the second has both copies (recorded cold), the third was not begun.
      assert.deepEqual(await Promise.all(keys.map(where)), [{ hot: false, cold: true }, { hot: true, cold: true }, { hot: true, cold: false }]);
      sameFiles(await wadoStudy(d.study), d.files);
      await verifyClean();
      // The killed process's lease stops nothing for long: it is taken over once lapsed (here: given back by hand).
      await atrium.archive.index.sql.run('UPDATE storage_study_reads SET claimed_until = ? WHERE study_instance_uid = ?', [new Date(0).toISOString(), d.study]);
      const next = await tiering.runTiering(at(500));
      assert.equal(next.finished, 1);
      for (const key of keys) assert.deepEqual(await where(key), { hot: false, cold: true });
      sameFiles(await wadoStudy(d.study), d.files);
      await verifyClean();
    });

    it('moves only studies older than minAgeDays (study date, else arrival) when the rule gives it', async () => {
      const old = syntheticInstance({ PatientID: 'TIER-OLD', Rows: 8, Columns: 8, StudyDate: '20100101' });
      const recent = syntheticInstance({ PatientID: 'TIER-NEW', Rows: 8, Columns: 8, StudyDate: at(590).toISOString().slice(0, 10).replace(/-/g, '') });
      assert.equal((await stowFiles(atrium.dicomweb, token(), [old.file, recent.file])).status, 200);
      tiering.config.minAgeDays = 365;
      try {
        await tiering.runTiering(at(600));
        assert.deepEqual(await tiering.studyTiers(old.uids.study), { hot: 0, cold: 1 });
        assert.deepEqual(await tiering.studyTiers(recent.uids.study), { hot: 1, cold: 0 }, 'ten days old by its date: kept hot');
      } finally {
        delete tiering.config.minAgeDays;
      }
    });

    it('runs in the background (startWorkers): moves idle studies, and recalls a study soon after it is read from cold', async () => {
      const g = studyOf('TIER-G', 2);
      assert.equal((await stowFiles(atrium.dicomweb, token(), g.files)).status, 200);
      const until = async (what: string, ok: () => Promise<boolean>) => {
        for (const deadline = Date.now() + 120_000; !(await ok());) {
          assert.ok(Date.now() < deadline, `${what} within two minutes`);
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      tiering.clock = () => at(800);
      // Started as `atrium serve` starts it.
      const workers = await startWorkers(atrium.archive, atrium.config, pino({ level: 'silent' }), { auditHostname: 'atrium-test', pollMs: 50, start: ['tiering'] });
      assert.equal(workers.tiering, tiering);
      try {
        await until('the move', async () => (await tiering.studyTiers(g.study)).cold === 2);
        tiering.config.onRead = 'recall';
        sameFiles(await wadoStudy(g.study), g.files);
        await until('the recall', async () => (await tiering.studyTiers(g.study)).hot === 2);
        for (const key of await keysOf(g.study)) assert.deepEqual(await where(key), { hot: true, cold: false });
      } finally {
        await workers.stop();
        tiering.config.onRead = 'serve';
        tiering.clock = () => new Date();
      }
      await verifyClean();
    });

    it('moves each object once when two nodes run the mover at the same time (a lease per study)', async () => {
      const h = studyOf('TIER-H', 4);
      assert.equal((await stowFiles(atrium.dicomweb, token(), h.files)).status, 200);
      await atrium.archive.index.sql.flush();
      const hot = (await tiering.counts()).hot;
      assert.ok(hot >= 4);
      // A second node: the same index and tiers, its own mover.
      const other = await openArchive(atrium.config, pino({ level: 'silent' }));
      try {
        const [r1, r2] = await Promise.all([tiering.runTiering(at(900)), other.tiering!.runTiering(at(900))]);
        assert.equal(r1.moved + r2.moved, hot, JSON.stringify([r1, r2]));
        assert.equal(r1.failed + r2.failed, 0);
      } finally {
        await other.close();
      }
      assert.deepEqual(await tiering.counts(), { hot: 0, cold: await atrium.archive.index.countInstances() });
      sameFiles(await wadoStudy(h.study), h.files);
      await verifyClean();
    });

    it('after an index that lost its tiers (rebuilt by atrium reindex): the mover takes a whole cold copy as it is, verify --repair records the tier', async () => {
      const [k1, k2] = await keysOf(a.study);
      assert.deepEqual(await tiering.studyTiers(a.study), { hot: 0, cold: 3 });
      const forget = (key: string) => atrium.archive.index.sql.run('DELETE FROM storage_tiers WHERE blob_key = ?', [key]);
      await forget(k1!);
      const r = await tiering.runTiering(at(1000));
      assert.deepEqual([r.moved, r.failed], [1, 0]);
      assert.deepEqual(await tiering.tierOf(k1!), { tier: 'cold', otherCopy: false });
      await forget(k2!);
      const found = await verifyArchive(atrium.archive, { checksums: true, repair: false, orphanGraceMs: 0 });
      assert.deepEqual(found.tiers!.misplaced, [{ key: k2, indexed: 'hot', found: 'cold' }]);
      const repaired = await verifyArchive(atrium.archive, { checksums: true, repair: true, orphanGraceMs: 0 });
      assert.equal(repaired.repaired.tiersRecorded, 1);
      assert.equal(repaired.repaired.rowsRemoved, 0);
      assert.deepEqual(await tiering.tierOf(k2!), { tier: 'cold', otherCopy: false });
      await verifyClean();
      sameFiles(await wadoStudy(a.study), a.files);
    });

    it('counts the objects of each tier in /metrics', async () => {
      const metrics = await (await fetch(atrium.dicomweb.replace('/dicom-web', '/metrics'))).text();
      const count = (tier: string) => Number(new RegExp(`^atrium_storage_objects\\{tier="${tier}"\\} (\\d+)$`, 'm').exec(metrics)?.[1]);
      const cold = (await verifyClean()).tiers!.cold;
      assert.ok(cold > 0);
      assert.equal(count('cold'), cold);
      assert.equal(count('hot'), (await atrium.archive.index.countInstances()) - cold);
    });

    it('deletes the cold copies of a study deleted (DICOMweb DELETE, the lifecycle\'s path), and its tiers', async () => {
      const keys = await keysOf(b.study);
      assert.deepEqual(await tiering.studyTiers(b.study), { hot: 0, cold: 2 });
      const r = await fetch(`${atrium.dicomweb}/studies/${b.study}`, { method: 'DELETE', headers: { authorization: `Bearer ${token()}` } });
      assert.equal(r.status, 204, await r.text());
      for (const key of keys) assert.deepEqual(await where(key), { hot: false, cold: false });
      for (const key of keys) assert.deepEqual(await tiering.tierOf(key), { tier: 'hot', otherCopy: false }, 'no row left');
      await verifyClean();
    });

    it('atrium verify (the command) checks each object in its tier, and fails on a damaged cold copy', { skip: coldKind === 's3' && 'the filesystem cold tier shows it' }, async () => {
      const c = atrium.config;
      const configFile = path.join(work, 'atrium.yaml');
      const index = c.index.engine === 'sqlite' ? { engine: 'sqlite', path: c.index.path } : { engine: 'postgres', schema: c.index.schema };
      writeFileSync(configFile, JSON.stringify({
        dataDir: c.dataDir, index, sites: c.sites,
        storage: { kind: 'filesystem', root: (c.storage as { root: string }).root, cold: { kind: 'filesystem', root: path.join(work, 'cold') } },
      }));
      const verify = () => new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [...atriumCliArgs(), 'verify', '--config', configFile], { cwd: root, env: { ...process.env, ATRIUM_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout!.on('data', (x: Buffer) => (out += x.toString()));
        child.stderr!.on('data', (x: Buffer) => (out += x.toString()));
        child.on('exit', (code) => resolve({ code, out }));
      });
      await atrium.archive.index.sql.flush();
      const clean = await verify();
      assert.equal(clean.code, 0, clean.out);
      const report = JSON.parse(clean.out.slice(clean.out.indexOf('{'))) as { tiers: { cold: number; misplaced: unknown[] } };
      assert.equal(report.tiers.cold, (await tiering.counts()).cold);
      assert.deepEqual(report.tiers.misplaced, []);
      // One bit of a cold copy flipped: the hash read from the cold tier says so.
      const [key] = await keysOf(a.study);
      const file = path.join(work, 'cold', key!);
      const bytes = readFileSync(file);
      bytes[bytes.length - 1] ^= 1;
      writeFileSync(file, bytes);
      const damaged = await verify();
      assert.equal(damaged.code, 1, damaged.out);
      const corrupt = (JSON.parse(damaged.out.slice(damaged.out.indexOf('{'))) as { corrupt: Array<{ key: string }> }).corrupt;
      assert.deepEqual(corrupt.map((x) => x.key), [key]);
      bytes[bytes.length - 1] ^= 1;
      writeFileSync(file, bytes);
    });
  });
}

function pixelData(file: Buffer): Buffer {
  const el = parsePart10(file).dataset.get(Tags.PixelData)!;
  return el.value ?? file.subarray(el.bulk!.offset, el.bulk!.offset + el.bulk!.length);
}

for (const db of testDatabases()) describe(`Storage tiers with compression at rest (${db.name})`, () => {
  let atrium: RunningAtrium;
  let compression: CompressionAtRest;
  let cleanup: (() => Promise<void>) | undefined;
  const work = mkdtempSync(path.join(tmpdir(), 'atrium-tiers-compression-'));
  const t0 = Date.now();

  before(async () => {
    const opened = await db.open();
    cleanup = opened.cleanup;
    atrium = await startAtrium({
      index: opened.config,
      configure: (c) => {
        c.storageCompression = [{ transferSyntax: TransferSyntax.JPEGLSLossless, sites: ['CHU-NORD'] }];
        c.storageTiering = { cold: { kind: 'filesystem', root: path.join(work, 'cold') }, moveAfterDaysWithoutRead: 30, onRead: 'serve', everyMinutes: 60 };
      },
    });
    compression = new CompressionAtRest(atrium.archive, atrium.config.storageCompression, pino({ level: 'silent' }), 100, 0);
  });

  after(async () => {
    await compression?.stop();
    await atrium?.close();
    await cleanup?.();
    rmSync(work, { recursive: true, force: true });
  });

  it('compresses an object already moved to cold (read from cold, kept hot compressed, the cold original removed), then moves the compressed one', async () => {
    const ct = syntheticInstance({ PatientID: 'TIER-JLS', Rows: 64, Columns: 64 });
    assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [ct.file])).status, 200);
    const tiering = atrium.archive.tiering!;
    const original = (await atrium.archive.index.findInstanceBySOPInstanceUID(ct.uids.sop))!;
    // The mover runs before compression at rest got to it (a year fast-forwarded).
    assert.equal((await tiering.runTiering(new Date(t0 + 40 * day))).moved, 1);
    await compression.drain();
    const compressed = (await atrium.archive.index.findInstanceBySOPInstanceUID(ct.uids.sop))!;
    assert.equal(compressed.TransferSyntaxUID, TransferSyntax.JPEGLSLossless);
    assert.notEqual(compressed.blobKey, original.blobKey);
    assert.deepEqual({ hot: !!(await tiering.store.hot.stat(original.blobKey)), cold: !!(await tiering.store.cold.stat(original.blobKey)) }, { hot: false, cold: false }, 'the original is gone from both tiers');
    assert.deepEqual(await tiering.tierOf(original.blobKey), { tier: 'hot', otherCopy: false }, 'no row left');
    assert.deepEqual(await tiering.studyTiers(ct.uids.study), { hot: 1, cold: 0 });
    const clean = async () => {
      const r = await verifyArchive(atrium.archive, { checksums: true, repair: false, orphanGraceMs: 0 });
      assert.deepEqual([r.missing, r.corrupt, r.orphans, r.tiers!.misplaced], [[], [], [], []]);
    };
    await clean();
    // The compressed object is a new hot object of the study: moved by the same rule (unread for 30 days).
    assert.equal((await tiering.runTiering(new Date(Date.now() + 10 * day))).moved, 0);
    assert.equal((await tiering.runTiering(new Date(Date.now() + 40 * day))).moved, 1);
    assert.deepEqual(await tiering.studyTiers(ct.uids.study), { hot: 0, cold: 1 });
    const asReceived = await retrieveInstanceAsStored(atrium.dicomweb, atrium.tokens['CHU-NORD']!, ct.uids, TransferSyntax.ExplicitVRLittleEndian);
    assert.ok(pixelData(asReceived).equals(pixelData(ct.file)), 'the original samples, from the cold compressed object');
    await clean();
  });
});

const dbs = testDatabases();
for (const db of dbs) suite(db, 'filesystem');
suite(dbs[0]!, 's3');

describe('Storage tiers: configuration', () => {
  const load = (yaml: string) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'atrium-tiers-config-'));
    try {
      writeFileSync(path.join(dir, 'atrium.yaml'), yaml);
      return loadConfig({ file: path.join(dir, 'atrium.yaml'), env: {}, dataDir: dir });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('reads storage.cold and storage.tiering, with defaults', () => {
    const c = load('storage:\n  cold: { kind: s3, bucket: cold-images, endpoint: "http://127.0.0.1:9000", storageClass: STANDARD_IA }\n  tiering: { moveAfterDaysWithoutRead: 365, minAgeDays: 730, onRead: serve }\n');
    assert.deepEqual(c.storageTiering && { ...c.storageTiering, cold: { ...c.storageTiering.cold } }, {
      cold: { kind: 's3', bucket: 'cold-images', endpoint: 'http://127.0.0.1:9000', region: 'us-east-1', prefix: undefined, storageClass: 'STANDARD_IA', accessKeyId: undefined, secretAccessKey: undefined, partSizeBytes: undefined },
      moveAfterDaysWithoutRead: 365, minAgeDays: 730, onRead: 'serve', everyMinutes: 60,
    });
    const fs = load('storage:\n  cold: { root: cold }\n');
    assert.equal(fs.storageTiering?.cold.kind, 'filesystem');
    assert.equal(fs.storageTiering?.onRead, 'recall');
    assert.equal(fs.storageTiering?.moveAfterDaysWithoutRead, 180);
    assert.equal(load('storage: {}\n').storageTiering, undefined);
  });

  it('refuses an archive storage class (no read without a restore), rules without a cold tier, and unknown keys', () => {
    assert.throws(() => load('storage:\n  cold: { kind: s3, bucket: b, storageClass: DEEP_ARCHIVE }\n'), /storageClass must be one read at once/);
    assert.throws(() => load('storage:\n  tiering: { moveAfterDaysWithoutRead: 30 }\n'), /storage.tiering needs storage.cold/);
    assert.throws(() => load('storage:\n  cold: { root: cold }\n  tiering: { moveAfterDays: 30 }\n'), /storage.tiering.moveAfterDays is not a key/);
    assert.throws(() => load('storage:\n  cold: { root: cold }\n  tiering: { onRead: never }\n'), /onRead must be recall or serve/);
  });

  it('refuses a cold tier that is the hot one, within it or holding it; takes the hot bucket with its own prefix', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'atrium-tiers-apart-'));
    try {
      const open = async (yaml: string) => {
        const config = load(yaml.replace(/DIR/g, dir));
        config.index = { engine: 'sqlite', path: path.join(dir, 'index.sqlite') };
        const archive = await openArchive(config, pino({ level: 'silent' }));
        await archive.close();
      };
      await assert.rejects(open('storage:\n  root: DIR/blobs\n  cold: { root: DIR/blobs }\n'), /must be apart from the hot tier's folder/);
      await assert.rejects(open('storage:\n  root: DIR/blobs\n  cold: { root: DIR/blobs/cold }\n'), /must be apart/);
      await assert.rejects(open('storage:\n  root: DIR/blobs/hot\n  cold: { root: DIR/blobs }\n'), /must be apart/);
      await open('storage:\n  root: DIR/blobs\n  cold: { root: DIR/blobs-cold }\n');
      await assert.rejects(open('storage:\n  kind: s3\n  bucket: images\n  cold: { kind: s3, bucket: images, storageClass: STANDARD_IA }\n'), /needs its own prefix/);
      await assert.rejects(open('storage:\n  kind: s3\n  bucket: images\n  cold: { kind: s3, bucket: images, prefix: cold }\n'), /needs its own prefix/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
