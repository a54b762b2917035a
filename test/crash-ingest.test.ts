import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { syntheticInstance } from './support/synthetic.ts';
import { AtriumProcess } from './support/atrium-process.ts';
import { dcmtk, freePort, haveDcmtk } from './support/dcmtk.ts';
import { stowFiles } from './support/stow.ts';
import { sha256Hex } from '../src/api/auth.ts';
import { openArchiveIndex } from '../src/index/archive-index.ts';
import type { DatabaseConfig } from '../src/index/sql.ts';
import { testDatabases } from './support/databases.ts';
import { prng } from './support/fuzz.ts';
import { atriumCliArgs } from './support/cli.ts';
import { concurrentIngest, identity, qidoFinds, recoveryOf, retrieve, sleep, type Acknowledged } from './support/crash-ingest.ts';

const run = promisify(execFile);



interface VerifyReport {
  missing: unknown[];
  corrupt: unknown[];
  orphans: Array<{ key: string }>;
  repaired: { orphansDeleted: number; temporaryFilesRemoved: number };
}

/** The index section of the configuration file for a test database. */
function indexYaml(db: DatabaseConfig): string {
  return db.engine === 'sqlite' ? `index: { engine: sqlite, path: ${JSON.stringify(db.path)} }` : `index: { engine: postgres, url: ${JSON.stringify(db.url)}, schema: ${db.schema} }`;
}

/** A data folder and a configuration for the real CLI, DIMSE on, killed without warning. */
function setUp(name: string) {
  const dataDir = mkdtempSync(path.join(tmpdir(), `atrium-${name}-`));
  const token = randomBytes(24).toString('base64url');
  const configFile = path.join(dataDir, 'atrium.yaml');
  const dimse = { port: 0 };
  const write = async (index: string) => {
    dimse.port = await freePort();
    writeFileSync(configFile, [
      `dataDir: ${dataDir}`,
      'http: { host: 127.0.0.1, port: 0 }',
      index,
      'sites:',
      '  - { code: CHU-NORD, name: CHU Nord, finess: "590000001", issuerOfPatientID: CHUNORD }',
      'apiClients:',
      `  - { name: modality, tokenSha256: ${sha256Hex(token)}, site: CHU-NORD }`,
      `dimse: { enabled: true, host: 127.0.0.1, port: ${dimse.port}, aeTitle: ATRIUM, requireKnownCallers: false }`,
      // Not the default MLLP port: other tests may hold it.
      'hl7: { enabled: false }',
      'log: { level: info }',
    ].join('\n'));
  };
  const verify = async (...args: string[]): Promise<{ code: number; report: VerifyReport }> => {
    try {
      const { stdout } = await run(process.execPath, [...atriumCliArgs(), 'verify', '--config', configFile, ...args]);
      return { code: 0, report: JSON.parse(stdout) as VerifyReport };
    } catch (e) {
      const err = e as { code: number; stdout: string };
      return { code: err.code, report: JSON.parse(err.stdout) as VerifyReport };
    }
  };
  return { dataDir, token, configFile, dimse, write, verify, atrium: new AtriumProcess(configFile) };
}

for (const db of testDatabases()) {
  // The process killed is Atrium's: PostgreSQL survives it, so fewer kills there (the time of CI).
  const kills = db.name === 'sqlite' ? 100 : 8;
  describe(`SIGKILL at random moments of concurrent DIMSE and STOW-RS ingest, index on ${db.name}`, { skip: !haveDcmtk && 'DCMTK is not installed' }, () => {
    const t = setUp('crash-ingest');
    const files = path.join(t.dataDir, 'to-send');
    let cleanup = async () => {};
    before(async () => {
      mkdirSync(files);
      const opened = await db.open();
      cleanup = opened.cleanup;
      await t.write(indexYaml(opened.config));
    });
    after(async () => {
      await t.atrium.stop();
      await cleanup();
      rmSync(t.dataDir, { recursive: true, force: true });
    });

    it(`after each of ${kills} kills, the last acknowledged object is found by the first request and every acknowledged one is identical; verify is clean at the end`, { timeout: 600_000 }, async (context) => {
      const random = prng(20261206);
      const port = t.dimse.port;
      const everything: Acknowledged[] = [];
      let lastRound: Acknowledged[] = [];
      let lastAcknowledged: Acknowledged | undefined;
      let recoveredObjects = 0;
      let reindexed = 0;

      for (let round = 0; round < kills; round++) {
        await t.atrium.start();
        const { url } = t.atrium;
        // The very first request: recovery must have run before the server answered anything.
        if (lastAcknowledged) assert.ok(await qidoFinds(url, t.token, lastAcknowledged.uids.sop), `round ${round}: the object acknowledged last before the kill is found at once`);
        const recovery = recoveryOf(t.atrium.stdout);
        assert.ok(recovery.before, `round ${round}: recovery is logged before the server serves`);
        recoveredObjects += recovery.report?.objects ?? 0;
        reindexed += recovery.report?.reindexed ?? 0;
        for (const a of lastRound) assert.equal(identity(a.via, await retrieve(url, t.token, a.uids)), a.sha, `round ${round}: ${a.via} object ${a.uids.sop}`);

        const load = concurrentIngest({
          folder: files, dimsePort: port, url, token: t.token, patientPrefix: 'KILL',
          dimse: { workers: 3, batch: 5, timeoutSeconds: 10 },
          stow: [{ everyLarge: 5, large: { Rows: 768, Columns: 768 } }, { everyLarge: 7, large: { Rows: 768, Columns: 768 } }],
          onAcknowledged: (a) => { lastAcknowledged = a; },
        });
        const { acknowledged } = load;
        // The kill comes at a random moment after the round's first acknowledgements over each way
        // in: counted from the start, a loaded machine could kill every round before any.
        const acknowledgedBoth = () => acknowledged.some((a) => a.via === 'dimse') && acknowledged.some((a) => a.via === 'stow-rs');
        for (const since = Date.now(); !acknowledgedBoth() && Date.now() - since < 60_000;) await sleep(10);
        await sleep(random() * 450);
        load.halt();
        await t.atrium.kill();
        await load.done;
        everything.push(...acknowledged);
        lastRound = acknowledged;
      }

      await t.atrium.start();
      if (lastAcknowledged) assert.ok(await qidoFinds(t.atrium.url, t.token, lastAcknowledged.uids.sop));
      for (const a of everything) assert.equal(identity(a.via, await retrieve(t.atrium.url, t.token, a.uids)), a.sha, `${a.via} object ${a.uids.sop}`);
      await t.atrium.stop();
      assert.ok(everything.length > kills, `${everything.length} objects acknowledged over ${kills} kills`);
      assert.ok(everything.some((a) => a.via === 'dimse') && everything.some((a) => a.via === 'stow-rs'));
      assert.ok(recoveredObjects > 0, 'the journal was replayed after kills');
      context.diagnostic(`${everything.length} objects acknowledged (${everything.filter((a) => a.via === 'dimse').length} by C-STORE); recoveries replayed ${recoveredObjects} journaled objects, indexed ${reindexed} the index lacked`);

      const first = await t.verify();
      assert.deepEqual(first.report.missing, [], 'no index row lacks its object');
      assert.deepEqual(first.report.corrupt, []);
      // Orphans: objects written but never journaled nor acknowledged; repaired as verify always did.
      await t.verify('--repair', '--grace-seconds', '0');
      const clean = await t.verify();
      assert.equal(clean.code, 0, JSON.stringify(clean.report));
    });
  });

  describe(`recovery of the ingest journal at start, index on ${db.name}`, () => {
    const t = setUp('journal-recovery');
    let index: DatabaseConfig;
    let cleanup = async () => {};
    before(async () => {
      const opened = await db.open();
      index = opened.config;
      cleanup = opened.cleanup;
      await t.write(indexYaml(index));
    });
    after(async () => {
      await t.atrium.stop();
      await cleanup();
      rmSync(t.dataDir, { recursive: true, force: true });
    });

    it('indexes again, before answering, acknowledged objects whose index rows and small files a power loss took', { skip: !haveDcmtk && 'DCMTK is not installed' }, async () => {
      await t.atrium.start();
      const small = Array.from({ length: 6 }, (_, i) => syntheticInstance({ PatientID: `LOST-${i % 2}`, Rows: 32, Columns: 32 }));
      const large = syntheticInstance({ PatientID: 'LOST-L', Rows: 1024, Columns: 1024 });
      for (const inst of [...small, large]) {
        const res = await stowFiles(t.atrium.url, t.token, [inst.file]);
        assert.equal(res.status, 200, await res.text());
      }
      const bySCU = Array.from({ length: 3 }, () => syntheticInstance({ PatientID: 'LOST-D', Rows: 32, Columns: 32 }));
      const sent = bySCU.map((inst, i) => {
        const file = path.join(t.dataDir, `scu-${i}.dcm`);
        writeFileSync(file, inst.file);
        return file;
      });
      const scu = await dcmtk('storescu', ['-aec', 'ATRIUM', '127.0.0.1', String(t.dimse.port), ...sent]);
      assert.equal(scu.code, 0, scu.output);
      await t.atrium.kill();

      // What the disk may lack after a power loss under this guarantee: index commits that were
      // not flushed (they need not be), and the files of small objects (the journal holds their bytes).
      const all = [...small, large, ...bySCU];
      const opened = await openArchiveIndex(index);
      try {
        for (const inst of all) assert.ok(await opened.deleteInstanceIndex(inst.uids.sop));
      } finally {
        await opened.close();
      }
      let removed = 0;
      const removeSmallFiles = (dir: string) => {
        for (const e of readdirSync(dir, { withFileTypes: true })) {
          const p = path.join(dir, e.name);
          if (e.isDirectory()) removeSmallFiles(p);
          else if (statSync(p).size < 1024 * 1024) {
            unlinkSync(p);
            removed++;
          }
        }
      };
      removeSmallFiles(path.join(t.dataDir, 'blobs/instances'));
      assert.equal(removed, small.length + bySCU.length);

      await t.atrium.start();
      // The first requests already find every object.
      for (const inst of all) assert.ok(await qidoFinds(t.atrium.url, t.token, inst.uids.sop), inst.uids.sop);
      for (const inst of [...small, large]) assert.equal(identity('stow-rs', await retrieve(t.atrium.url, t.token, inst.uids)), identity('stow-rs', inst.file));
      for (const inst of bySCU) assert.equal(identity('dimse', await retrieve(t.atrium.url, t.token, inst.uids)), identity('dimse', inst.file));
      const recovery = recoveryOf(t.atrium.stdout);
      assert.ok(recovery.before);
      assert.equal(recovery.report?.restored, small.length + bySCU.length, 'small objects written again from the journal');
      assert.equal(recovery.report?.reindexed, all.length);
      await t.atrium.stop();

      // A clean stop leaves nothing to recover.
      await t.atrium.start();
      assert.equal(recoveryOf(t.atrium.stdout).report, undefined);
      await t.atrium.stop();
      const clean = await t.verify();
      assert.equal(clean.code, 0, JSON.stringify(clean.report));
    });
  });
}
