/**
 * The audit trail (issue 4, item 5, first part): reads and writes of patient data through
 * DICOMweb, DIMSE and the CLI leave chained records, searchable by patient; the database
 * refuses edits, and `atrium audit verify` finds a record edited behind its back.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { dcmtk, haveDcmtk } from './support/dcmtk.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { rawAssociation } from './support/dimse-association.ts';
import { datasetBytes } from './support/part10.ts';
import { CommandField, Status } from '../src/dimse/command.ts';
import { AUDIT_STORES_EVERY_MS } from '../src/dimse/server.ts';
import { TransferSyntax } from '../src/dicom/dataset.ts';
import { atriumCliArgs } from './support/cli.ts';

const CTImageStorage = '1.2.840.10008.5.1.4.1.1.2';

const execFileAsync = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');

for (const db of testDatabases()) {
  describe(`audit trail (${db.name})`, { skip: !haveDcmtk && 'DCMTK is not installed' }, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-audit-'));
    const configFile = path.join(work, 'atrium.yaml');
    const obj = syntheticInstance({ PatientID: 'P-AUD', PatientName: 'AUDIT^Anne', Rows: 4, Columns: 4 });

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      atrium = await startAtrium({ index: opened.config, dimse: true, configure: (c) => (c.peers = [{ aeTitle: 'CT', site: 'CHU-NORD', may: { store: true, query: true, retrieve: true } }]) });
      const index = opened.config.engine === 'sqlite'
        ? ['index:', '  engine: sqlite', `  path: ${JSON.stringify(opened.config.path)}`]
        : ['index:', '  engine: postgres', `  url: ${JSON.stringify(opened.config.url)}`, `  schema: ${opened.config.schema}`];
      writeFileSync(configFile, [...index, 'sites:', ...atrium.config.sites.flatMap((s) => [`  - code: ${s.code}`, `    name: ${s.name}`, `    finess: '${s.finess}'`, `    issuerOfPatientID: ${s.issuerOfPatientID}`]), ''].join('\n'));
    });
    after(async () => {
      await atrium?.close();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    const cli = async (...args: string[]) => {
      const env: NodeJS.ProcessEnv = { ...process.env, ATRIUM_CONFIG: configFile, ATRIUM_DATA_DIR: path.join(work, 'data'), ATRIUM_LOG_LEVEL: 'warn' };
      delete env.DATABASE_URL;
      try {
        const { stdout, stderr } = await execFileAsync(process.execPath, [...atriumCliArgs(), ...args], { cwd: root, env });
        return { code: 0, stdout, stderr };
      } catch (e) {
        const err = e as { code: number; stdout: string; stderr: string };
        return { code: err.code, stdout: err.stdout, stderr: err.stderr };
      }
    };

    it('records who stored, queried, viewed and retrieved a patient\'s images, searchable by patient', async () => {
      const file = path.join(work, 'a.dcm');
      writeFileSync(file, obj.file);
      assert.equal((await dcmtk('storescu', ['-aet', 'CT', '-aec', 'ATRIUM', '127.0.0.1', String(atrium.dimse!.port), file])).code, 0);
      const auth = { authorization: `Bearer ${atrium.tokens['CHU-NORD']}` };
      assert.equal((await fetch(`${atrium.dicomweb}/studies?PatientID=P-AUD`, { headers: auth })).status, 200);
      assert.equal((await fetch(`${atrium.dicomweb}/studies/${obj.uids.study}/metadata`, { headers: auth })).status, 200);
      const out = mkdtempSync(path.join(work, 'get-'));
      assert.equal((await dcmtk('getscu', ['-S', '-aet', 'CT', '-aec', 'ATRIUM', '-od', out, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${obj.uids.study}`, '127.0.0.1', String(atrium.dimse!.port)])).code, 0);
      await new Promise((r) => setTimeout(r, 300)); // the store record is written when the association ends
      const r = await cli('audit', 'patient', 'P-AUD', '--site', 'CHU-NORD');
      assert.equal(r.code, 0, r.stderr);
      const events = (JSON.parse(r.stdout) as { events: Array<{ action: string; actor: string; via: string; site?: string }> }).events;
      const seen = events.map((e) => `${e.action}:${e.via}:${e.actor}`).sort();
      assert.ok(seen.includes('store:dimse:CT'), seen.join(', '));
      assert.ok(seen.includes('query:dicomweb:client-CHU-NORD'), seen.join(', '));
      assert.ok(seen.includes('view:dicomweb:client-CHU-NORD'), seen.join(', '));
      assert.ok(seen.includes('download:dimse:CT'), seen.join(', '));
      assert.equal((await cli('audit', 'anchor')).code, 0);
      assert.deepEqual(JSON.parse((await cli('audit', 'verify')).stdout).ok, true);
      // A move to an unknown destination sends nothing, and so records no download.
      const before = events.filter((e) => e.action === 'download').length;
      const move = await dcmtk('movescu', ['-S', '-aet', 'CT', '-aec', 'ATRIUM', '-aem', 'NOWHERE', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${obj.uids.study}`, '127.0.0.1', String(atrium.dimse!.port)]);
      assert.match(move.output, /MoveDestinationUnknown|0xa801/i, move.output);
      const after = (JSON.parse((await cli('audit', 'patient', 'P-AUD', '--site', 'CHU-NORD')).stdout) as { events: Array<{ action: string }> }).events;
      assert.equal(after.filter((e) => e.action === 'download').length, before);
    });

    it('records the stores of an association that lasts, while it lasts (a crash loses at most a few seconds of records)', async () => {
      const obj = syntheticInstance({ PatientID: 'P-LONG', Rows: 4, Columns: 4 });
      const assoc = await rawAssociation(atrium, [{ id: 1, abstractSyntax: CTImageStorage, transferSyntaxes: [TransferSyntax.ExplicitVRLittleEndian] }], 'CT');
      const storeRecords = () => atrium.archive.index.sql.all<{ details: string }>(
        `SELECT details FROM audit_events WHERE action = 'store' AND actor = 'CT' AND study_instance_uid IS NULL AND details LIKE ?`, [`%${obj.uids.study}%`]);
      try {
        const rsp = await assoc.request(1, { CommandField: CommandField.CStoreRQ, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: obj.uids.sop, Priority: 0 }, datasetBytes(obj.file));
        assert.equal(rsp.command.Status, Status.Success);
        for (let i = 0; i < 60 && (await storeRecords()).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
        const records = await storeRecords();
        assert.equal(records.length, 1, 'recorded while the association is still open');
        assert.equal((JSON.parse(records[0]!.details) as { stored: number }).stored, 1);
      } finally {
        await assoc.release();
      }
      await new Promise((r) => setTimeout(r, 300));
      assert.equal((await storeRecords()).length, 1, 'the release records nothing twice');
    });

    it('keeps the record of stores it could not write, and writes it once the index takes writes again', async () => {
      const obj = syntheticInstance({ PatientID: 'P-LATE', Rows: 4, Columns: 4 });
      const storeRecords = () => atrium.archive.index.sql.all<{ details: string }>(
        `SELECT details FROM audit_events WHERE action = 'store' AND actor = 'CT' AND details LIKE ?`, [`%${obj.uids.study}%`]);
      // The index refuses audit records of stores for a while (a full disk, a lost connection).
      const refuse = db.name === 'sqlite'
        ? [`CREATE TRIGGER audit_refuse_store BEFORE INSERT ON audit_events WHEN NEW.action = 'store' BEGIN SELECT RAISE(ABORT, 'refused for the test'); END`]
        : [`CREATE FUNCTION audit_refuse_store() RETURNS trigger AS $$ BEGIN IF NEW.action = 'store' THEN RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`,
          `CREATE TRIGGER audit_refuse_store BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_refuse_store()`];
      const allow = db.name === 'sqlite' ? ['DROP TRIGGER audit_refuse_store'] : ['DROP TRIGGER audit_refuse_store ON audit_events', 'DROP FUNCTION audit_refuse_store()'];
      for (const sql of refuse) await atrium.archive.index.sql.exec(sql);
      try {
        const assoc = await rawAssociation(atrium, [{ id: 1, abstractSyntax: CTImageStorage, transferSyntaxes: [TransferSyntax.ExplicitVRLittleEndian] }], 'CT');
        const rsp = await assoc.request(1, { CommandField: CommandField.CStoreRQ, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: obj.uids.sop, Priority: 0 }, datasetBytes(obj.file));
        assert.equal(rsp.command.Status, Status.Success);
        await assoc.release();
        // The association is over and its record failed at least once (two ticks).
        await new Promise((r) => setTimeout(r, 2 * AUDIT_STORES_EVERY_MS + 500));
        assert.equal((await storeRecords()).length, 0);
      } finally {
        for (const sql of allow) await atrium.archive.index.sql.exec(sql);
      }
      for (let i = 0; i < 50 && (await storeRecords()).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
      const records = await storeRecords();
      assert.equal(records.length, 1, 'written at the next tick');
      assert.equal((JSON.parse(records[0]!.details) as { stored: number }).stored, 1);
      assert.equal((await cli('audit', 'anchor')).code, 0);
      assert.deepEqual(JSON.parse((await cli('audit', 'verify')).stdout).ok, true, 'the chain of records is whole');
    });

    it('refuses edits in the database, and verify finds a record edited behind its back', async () => {
      await assert.rejects(atrium.archive.index.sql.run(`UPDATE audit_events SET actor = 'someone-else' WHERE id = (SELECT MIN(id) FROM audit_events)`), /append-only/);
      if (db.name === 'sqlite') await atrium.archive.index.sql.exec('DROP TRIGGER audit_events_no_update');
      else await atrium.archive.index.sql.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
      const target = await atrium.archive.index.sql.get<{ id: number }>('SELECT id FROM audit_events ORDER BY id LIMIT 1 OFFSET 1');
      await atrium.archive.index.sql.run(`UPDATE audit_events SET actor = 'someone-else' WHERE id = ?`, [target!.id]);
      const r = await cli('audit', 'verify');
      assert.equal(r.code, 1);
      assert.equal(JSON.parse(r.stdout).brokenAt, Number(target!.id));
      assert.match(r.stderr, /edited/);
    });
  });
}
