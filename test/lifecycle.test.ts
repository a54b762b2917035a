/**
 * Lifecycle and retention (issue 18 §1), time driven in fast-forward: the evaluation is
 * given its day rather than waited for. Studies at two sites; the French default rule
 * (CSP R1112-7: 20 years after the last contact, a minor kept until 28) and a shorter rule
 * for one site; the last contact taken across linked records; a legal hold stopping one
 * deletion; an approval that withdraws a study, leaving a deletion record with its objects'
 * hashes and nothing in WADO-RS, QIDO-RS or C-FIND; DICOMweb DELETE through the same path;
 * `atrium lifecycle --dry-run`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { dcmtk, freePort, haveDcmtk, startStorescp } from './support/dcmtk.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance, type SyntheticOptions } from './support/synthetic.ts';
import { loginLocal, request, type CookieJar } from './support/browser-session.ts';
import { addUser } from '../src/cli/users.ts';
import { sendHl7 } from './support/hl7.ts';
import { evaluateRetention, listDueStudies, type DeletionRecord, type DueStudy } from '../src/archive/lifecycle.ts';
import type { SqlDatabase } from '../src/index/sql.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';
import { RejectionNoteDelivery } from '../src/dimse/rejection-notes.ts';
import { pino } from 'pino';
import { atriumCliArgs } from './support/cli.ts';

const execFileAsync = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');
const password = 'un mot de passe assez long pour les tests';

for (const db of testDatabases()) {
  describe(`lifecycle and retention (${db.name})`, { skip: !haveDcmtk && 'DCMTK is not installed' }, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    let base: string;
    let pacs: Awaited<ReturnType<typeof startStorescp>>;
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-lifecycle-'));
    const configFile = path.join(work, 'atrium.yaml');
    const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
    const make = (o: SyntheticOptions) => syntheticInstance({ Rows: 4, Columns: 4, ...o });
    // CHU-NORD: an adult seen last in 2000; a child born in 2000 seen in 2001; an adult with an
    // old exam and a recent one (same record); a patient whose record at the other site is recent.
    const adult = make({ PatientID: 'N-ADULT', PatientBirthDate: '19500101', StudyDate: '20000105' });
    const adultSecond = make({ PatientID: 'N-ADULT', PatientBirthDate: '19500101', StudyDate: '20000105', StudyInstanceUID: adult.uids.study });
    const child = make({ PatientID: 'N-CHILD', PatientBirthDate: '20000301', StudyDate: '20010101' });
    const seenAgain = make({ PatientID: 'N-AGAIN', PatientBirthDate: '19600101', StudyDate: '19990101' });
    const seenAgainRecent = make({ PatientID: 'N-AGAIN', PatientBirthDate: '19600101', StudyDate: '20200101' });
    const linkedRecent = make({ PatientID: 'N-LINKED', PatientBirthDate: '19700101', StudyDate: '20250101' });
    // An exam of 2001, then an outpatient visit in 2015 told by the hospital's HIS (HL7 ADT^A04).
    const visited = make({ PatientID: 'N-VISIT', PatientBirthDate: '19650101', StudyDate: '20010101' });
    // Seen in 1999, listed, then back for a new exam before anyone approved.
    const returning = make({ PatientID: 'N-RETURN', PatientBirthDate: '19450101', StudyDate: '19990601' });
    const returningNew = make({ PatientID: 'N-RETURN', PatientBirthDate: '19450101', StudyDate: '20261201' });
    // CLIN-SUD (10-year rule): a patient under a legal hold; the same person as N-LINKED; a study deleted by DICOMweb DELETE.
    const held = make({ PatientID: 'S-HELD', PatientBirthDate: '19550101', StudyDate: '20050101' });
    const linkedOld = make({ PatientID: 'S-LINKED', PatientBirthDate: '19700101', StudyDate: '20050101' });
    const byDelete = make({ PatientID: 'S-DELETE', PatientBirthDate: '19800101', StudyDate: '20240101' });

    const as = (who: string, method: string, url: string, body?: unknown) => request(sessions[who]!.jar, `${base}${url}`, {
      method, headers: { 'x-csrf-token': sessions[who]!.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const json = async <T>(r: Promise<Response> | Response, status = 200): Promise<T> => {
      const response = await r;
      const text = await response.text();
      assert.equal(response.status, status, text);
      return JSON.parse(text) as T;
    };
    const evaluate = (day: string) => evaluateRetention(atrium.archive, { rules: atrium.config.lifecycle.retention, now: new Date(`${day}T12:00:00Z`) });
    const dueFor = async (who: string) => (await json<{ due: DueStudy[] }>(as(who, 'GET', '/api/lifecycle/due'))).due;
    const territory = (method: string, url: string) => fetch(`${base}${url}`, { method, headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}` } });
    const cFind = async (StudyInstanceUID: string) => {
      const r = await dcmtk('findscu', ['-S', '-v', '-aet', 'CT', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${StudyInstanceUID}`, '-k', 'PatientID', '127.0.0.1', String(atrium.dimse!.port)]);
      assert.equal(r.code, 0, r.output);
      return r.output;
    };
    const cli = async (...args: string[]) => {
      const env: NodeJS.ProcessEnv = { ...process.env, ATRIUM_CONFIG: configFile, ATRIUM_DATA_DIR: path.join(work, 'data'), ATRIUM_LOG_LEVEL: 'warn' };
      delete env.DATABASE_URL;
      const { stdout } = await execFileAsync(process.execPath, [...atriumCliArgs(), ...args], { cwd: root, env });
      return stdout;
    };

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      const rules = [
        { name: 'clinique 10 ans', sites: ['CLIN-SUD'], yearsAfterLastContact: 10 },
        { name: 'CSP R1112-7', yearsAfterLastContact: 20, keepMinorsUntilAge: 28 },
      ];
      // The site's PACS, which had received the adult's study; and a peer that is gone.
      mkdirSync(path.join(work, 'pacs'));
      pacs = await startStorescp('PACSNORD', path.join(work, 'pacs'));
      const gone = await freePort();
      atrium = await startAtrium({
        index: opened.config, dimse: true, hl7: true,
        configure: (c) => {
          c.hl7.senders = [{ application: 'HIS_NORD', facility: 'CHU_NORD', site: 'CHU-NORD' }];
          c.peers = [
            { aeTitle: 'CT', site: 'CHU-NORD', may: { store: true, query: true, retrieve: true } },
            { aeTitle: 'PACSNORD', host: '127.0.0.1', port: pacs.port, site: 'CHU-NORD', may: { store: true, query: false, retrieve: false } },
            { aeTitle: 'GONE', host: '127.0.0.1', port: gone, site: 'CHU-NORD', may: { store: true, query: false, retrieve: false } },
          ];
          c.lifecycle.retention = rules;
        },
      });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      for (const [site, objects] of [['CHU-NORD', [adult, adultSecond, child, seenAgain, seenAgainRecent, linkedRecent, visited, returning]], ['CLIN-SUD', [held, linkedOld, byDelete]]] as const) {
        const r = await stowFiles(atrium.dicomweb, atrium.tokens[site]!, objects.map((o) => o.file));
        assert.equal(r.status, 200, await r.text());
      }
      // N-LINKED and S-LINKED are one person (as an identity review or a shared qualified INS makes them).
      const sql = atrium.archive.index.sql;
      const at = new Date().toISOString();
      const person = (await sql.get<{ id: number }>('INSERT INTO persons (created_at) VALUES (?) RETURNING id', [at]))!.id;
      for (const [code, PatientID] of [['CHU-NORD', 'N-LINKED'], ['CLIN-SUD', 'S-LINKED']] as const) {
        const site = atrium.archive.sites.get(code)!;
        const record = (await atrium.archive.index.patientRecordId(site.id, site.issuerOfPatientID, PatientID))!;
        const exists = await sql.get('SELECT patient_id FROM patient_identities WHERE patient_id = ?', [record]);
        if (exists) await sql.run('UPDATE patient_identities SET person_id = ? WHERE patient_id = ?', [person, record]);
        else await sql.run(`INSERT INTO patient_identities (patient_id, status, source, person_id, updated_at) VALUES (?, 'provisional', 'test', ?, ?)`, [record, person, at]);
      }
      const ack = await sendHl7(atrium.hl7!.port, [
        'MSH|^~\\&|HIS_NORD|CHU_NORD|ATRIUM|GHT|20150312093000||ADT^A04^ADT_A01|CTRL-VISIT|P|2.5|||||FRA|8859/1',
        'EVN||20150312093000', 'PID|1||N-VISIT^^^CHUNORD^PI||VISITE^PAUL||19650101|M', `PV1|1|O${'|'.repeat(42)}20150312093000`, '',
      ].join('\r'));
      assert.equal(ack.code, 'AA', JSON.stringify(ack));
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'admin.nord', displayName: 'Admin Nord', roles: ['site-admin'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'admin.sud', displayName: 'Admin Sud', roles: ['site-admin'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'rad.nord', displayName: 'Dr Nord', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
      for (const who of ['admin.nord', 'admin.sud', 'rad.nord']) sessions[who] = await loginLocal(base, who, password);
      const index = opened.config.engine === 'sqlite'
        ? ['index:', '  engine: sqlite', `  path: ${JSON.stringify(opened.config.path)}`]
        : ['index:', '  engine: postgres', `  url: ${JSON.stringify(opened.config.url)}`, `  schema: ${opened.config.schema}`];
      writeFileSync(configFile, [
        ...index, 'sites:', ...atrium.config.sites.flatMap((s) => [`  - code: ${s.code}`, `    name: ${s.name}`, `    finess: '${s.finess}'`, `    issuerOfPatientID: ${s.issuerOfPatientID}`]),
        'lifecycle:', '  retention:', ...rules.flatMap((r) => [`    - name: ${r.name}`, `      yearsAfterLastContact: ${r.yearsAfterLastContact}`,
          ...(r.sites ? [`      sites: [${r.sites.join(', ')}]`] : []), ...(r.keepMinorsUntilAge ? [`      keepMinorsUntilAge: ${r.keepMinorsUntilAge}`] : [])]), '',
      ].join('\n'));
    });
    after(async () => {
      await pacs?.stop();
      await atrium?.close();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    it('places a legal hold on a patient record for its site administrator only', async () => {
      const refused = await as('admin.nord', 'POST', '/api/lifecycle/holds', { site: 'CLIN-SUD', PatientID: 'S-HELD', reason: 'contentieux en cours' });
      assert.equal(refused.status, 404, await refused.text());
      assert.equal((await as('rad.nord', 'GET', '/api/lifecycle/holds')).status, 403, 'a radiologist administers no retention');
      const { hold } = await json<{ hold: { id: number; patient?: { PatientID: string } } }>(as('admin.sud', 'POST', '/api/lifecycle/holds', { PatientID: 'S-HELD', reason: 'contentieux en cours' }), 201);
      assert.equal(hold.patient?.PatientID, 'S-HELD');
      assert.deepEqual((await json<{ holds: unknown[] }>(as('admin.nord', 'GET', '/api/lifecycle/holds'))).holds, []);
    });

    it('prints with --dry-run what would go and why, changing nothing', async () => {
      const out = await cli('lifecycle', '--dry-run', '--now', '2026-12-06');
      assert.match(out, new RegExp(`would go\\tCHU-NORD\\t${adult.uids.study.replaceAll('.', '\\.')}\\trule "CSP R1112-7": last contact 20000105, kept until 20200105`));
      assert.match(out, new RegExp(`kept \\(legal hold\\)\\tCLIN-SUD\\t${held.uids.study.replaceAll('.', '\\.')}\\trule "clinique 10 ans"`));
      assert.doesNotMatch(out, new RegExp(child.uids.study.replaceAll('.', '\\.')), 'a minor is kept until 28');
      assert.match(out, /dry run: nothing changed/);
      assert.deepEqual(await dueFor('admin.nord'), [], 'the list for review is untouched by a dry run');
    });

    it('lists for each site\'s administrators only their studies past retention, the last contact taken across linked records', async () => {
      const all = await evaluate('2026-12-06');
      assert.deepEqual(all.map((d) => d.StudyInstanceUID).sort(), [adult.uids.study, held.uids.study, returning.uids.study].sort());
      const nord = await dueFor('admin.nord');
      assert.deepEqual(nord.map((d) => [d.StudyInstanceUID, d.rule, d.lastContact, d.keepUntil, d.held]), [
        [returning.uids.study, 'CSP R1112-7', '19990601', '20190601', false],
        [adult.uids.study, 'CSP R1112-7', '20000105', '20200105', false],
      ]);
      const sud = await dueFor('admin.sud');
      assert.deepEqual(sud.map((d) => [d.StudyInstanceUID, d.rule, d.held]), [[held.uids.study, 'clinique 10 ans', true]]);
      // S-LINKED's study (2005, 10-year rule) stays: the same person was seen at CHU-NORD in 2025.
      assert.ok(!all.some((d) => d.StudyInstanceUID === linkedOld.uids.study));
      // N-AGAIN's 1999 exam stays: the record's newest exam (2020) is the last contact.
      assert.ok(!all.some((d) => d.StudyInstanceUID === seenAgain.uids.study));
      // N-VISIT's 2001 exam stays: the HIS told of a visit in 2015.
      assert.ok(!all.some((d) => d.StudyInstanceUID === visited.uids.study));
      assert.deepEqual((await evaluate('2035-03-12')).find((d) => d.StudyInstanceUID === visited.uids.study)?.lastContact, '20150312');
      await evaluate('2026-12-06');
    });

    it('evaluates in bounded batches of studies, giving the event loop turns between them, with the same list as in one batch', async () => {
      const rules = atrium.config.lifecycle.retention;
      const now = new Date('2026-12-06T12:00:00Z');
      const oneBatch = await evaluateRetention(atrium.archive, { rules, now, batchSize: 1000 });
      const listedOnce = await listDueStudies(atrium.archive);
      // The same archive, its index seen through a recorder of every statement and when it was issued.
      const real = atrium.archive.index.sql;
      let turns = 0;
      const issued: Array<{ sql: string; params: readonly unknown[]; turnsBefore: number; rows?: number }> = [];
      const recorder = (target: SqlDatabase): SqlDatabase => new Proxy(target, {
        get(t, key) {
          const value = Reflect.get(t, key) as unknown;
          if (key === 'all') {
            return async (text: string, params: readonly unknown[] = []) => {
              const entry: (typeof issued)[number] = { sql: text, params, turnsBefore: turns };
              issued.push(entry);
              const rows = await t.all(text, params);
              entry.rows = rows.length;
              return rows;
            };
          }
          if (key === 'transaction') return <T>(fn: (tx: SqlDatabase) => Promise<T>) => t.transaction((tx) => fn(recorder(tx)));
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(t) : value;
        },
      });
      const archive = Object.create(atrium.archive, { index: { value: Object.create(atrium.archive.index, { sql: { value: recorder(real) } }) } }) as typeof atrium.archive;
      // A turn of the event loop counted at every setImmediate round, from the start of the evaluation.
      let counting = true;
      const tick = () => { turns++; if (counting) setImmediate(tick); };
      setImmediate(tick);
      const batched = await evaluateRetention(archive, { rules, now, batchSize: 2 });
      counting = false;
      assert.deepEqual(batched, oneBatch, 'the same due list, in the same order, as in one batch');
      assert.deepEqual(await listDueStudies(atrium.archive), listedOnce, 'the same list for review');
      const total = Number((await real.get<{ n: number | string }>('SELECT COUNT(*) AS n FROM studies'))!.n);
      const pages = issued.filter((e) => /FROM studies WHERE id > \? ORDER BY id LIMIT \?/.test(e.sql));
      assert.ok(total > 2, `more studies (${total}) than one batch`);
      assert.equal(pages.length, Math.ceil(total / 2) + (total % 2 === 0 ? 1 : 0), 'one read per batch of 2 studies, and the empty one that ends the walk');
      for (const p of pages) {
        assert.equal(p.params.at(-1), 2, 'each read is bounded by the batch size');
        assert.ok((p.rows ?? 0) <= 2);
      }
      // No statement reads the studies table unbounded: by id range with a limit, or by the batch's records.
      for (const e of issued.filter((x) => /\bFROM studies\b/.test(x.sql))) {
        assert.ok(/LIMIT \?/.test(e.sql) || /patient_id IN \(/.test(e.sql), `unbounded read of studies: ${e.sql}`);
      }
      // The event loop ran between batches: each read of a batch after the first came after more turns than the one before.
      for (let i = 1; i < pages.length; i++) assert.ok(pages[i]!.turnsBefore > pages[i - 1]!.turnsBefore, `no turn of the event loop before batch ${i + 1}`);
    });

    it('refuses to delete a study under a legal hold, by approval or by DICOMweb DELETE, and records the refusal', async () => {
      const approval = await as('admin.sud', 'POST', '/api/lifecycle/approvals', { StudyInstanceUID: held.uids.study });
      assert.equal(approval.status, 409, await approval.text());
      const deleted = await territory('DELETE', `/dicom-web/studies/${held.uids.study}`);
      assert.equal(deleted.status, 409, await deleted.text());
      assert.equal((await territory('GET', `/dicom-web/studies/${held.uids.study}/metadata`)).status, 200, 'still there');
      const refusals = await atrium.archive.index.sql.get<{ n: number | string }>(
        `SELECT COUNT(*) AS n FROM audit_events WHERE action = 'deletion' AND outcome = 'refused' AND study_instance_uid = ?`, [held.uids.study]);
      assert.equal(Number(refusals!.n), 2);
    });

    it('answers another site\'s administrator approving a study as for a study that does not exist, and refuses a study not due or whose patient came back since it was listed', async () => {
      const foreign = await as('admin.sud', 'POST', '/api/lifecycle/approvals', { StudyInstanceUID: adult.uids.study });
      assert.equal(foreign.status, 404);
      const notDue = await as('admin.nord', 'POST', '/api/lifecycle/approvals', { StudyInstanceUID: child.uids.study });
      assert.equal(notDue.status, 409, await notDue.text());
      assert.equal((await territory('GET', `/dicom-web/studies/${child.uids.study}/metadata`)).status, 200);
      // Listed, then the patient came back: the approval is refused and the study leaves the list.
      const r = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [returningNew.file]);
      assert.equal(r.status, 200, await r.text());
      const stale = await as('admin.nord', 'POST', '/api/lifecycle/approvals', { StudyInstanceUID: returning.uids.study });
      assert.equal(stale.status, 409);
      assert.match(await stale.text(), /seen again \(20261201\)/);
      assert.deepEqual((await dueFor('admin.nord')).map((d) => d.StudyInstanceUID), [adult.uids.study]);
      assert.equal((await territory('GET', `/dicom-web/studies/${returning.uids.study}/metadata`)).status, 200);
    });

    it('withdraws an approved study: a deletion record with every object\'s hash, nothing left in WADO-RS, QIDO-RS, C-FIND or the storage, the rejection note sent to the peers that had it', async () => {
      const objects = await atrium.archive.index.sql.all<{ sop_instance_uid: string; sha256: string; blob_key: string }>(
        `SELECT i.sop_instance_uid, i.sha256, i.blob_key FROM instances i JOIN series se ON se.id = i.series_id JOIN studies s ON s.id = se.study_id WHERE s.study_instance_uid = ?`, [adult.uids.study]);
      assert.equal(objects.length, 2);
      assert.match(await cFind(adult.uids.study), /N-ADULT/);
      // Forwarded earlier to the PACS and to a peer since gone.
      const at = new Date().toISOString();
      for (const destination of ['PACSNORD', 'GONE']) {
        await atrium.archive.index.sql.run(
          `INSERT INTO forward_queue (sop_instance_uid, study_instance_uid, destination, reason, state, attempts, next_attempt_at, created_at, updated_at, done_at)
           VALUES (?, ?, ?, 'rule', 'done', 1, ?, ?, ?, ?)`, [objects[0]!.sop_instance_uid, adult.uids.study, destination, at, at, at, at]);
      }
      const { deletion } = await json<{ deletion: DeletionRecord }>(as('admin.nord', 'POST', '/api/lifecycle/approvals', { StudyInstanceUID: adult.uids.study, reason: 'durée de conservation échue' }), 201);
      assert.equal(deletion.rule, 'CSP R1112-7');
      assert.equal(deletion.approvedBy, 'admin.nord');
      assert.equal(deletion.state, 'done');
      assert.deepEqual(deletion.objectHashes.map((h) => [h.SOPInstanceUID, h.sha256]).sort(), objects.map((o) => [o.sop_instance_uid, o.sha256]).sort());
      // Gone from every way out.
      assert.equal((await territory('GET', `/dicom-web/studies/${adult.uids.study}/metadata`)).status, 404);
      const qido = await territory('GET', `/dicom-web/studies?StudyInstanceUID=${adult.uids.study}`);
      assert.ok(qido.status === 204 || (await qido.json() as unknown[]).length === 0);
      assert.doesNotMatch(await cFind(adult.uids.study), /N-ADULT/);
      for (const o of objects) assert.equal(await atrium.archive.store.stat(o.blob_key), undefined, 'the blob is deleted');
      // The record outlives the data; the rejection note says why (113039) and lists the objects.
      const listed = (await json<{ deletions: DeletionRecord[] }>(as('admin.nord', 'GET', '/api/lifecycle/deletions'))).deletions;
      assert.deepEqual(listed.map((d) => d.id), [deletion.id]);
      assert.deepEqual((await json<{ deletions: DeletionRecord[] }>(as('admin.sud', 'GET', '/api/lifecycle/deletions'))).deletions, []);
      const note = (await atrium.archive.index.sql.get<{ rejection_note: string }>('SELECT rejection_note FROM lifecycle_deletions WHERE id = ?', [deletion.id]))!.rejection_note;
      const parsed = parsePart10(Buffer.from(note, 'base64'));
      const text = Buffer.from(note, 'base64').toString('latin1');
      assert.ok(parsed, 'a Part 10 object');
      assert.ok(text.includes('113039') && text.includes('Data Retention Policy Expired'));
      for (const o of objects) assert.ok(text.includes(o.sop_instance_uid));
      const audit = await atrium.archive.index.sql.get<{ n: number | string }>(
        `SELECT COUNT(*) AS n FROM audit_events WHERE action = 'deletion' AND outcome = 'success' AND study_instance_uid = ?`, [adult.uids.study]);
      assert.equal(Number(audit!.n), 1);
      const event = await atrium.archive.index.sql.get<{ payload_json: string }>(`SELECT payload_json FROM outbox WHERE type = 'study.deleted'`);
      assert.equal((JSON.parse(event!.payload_json) as { rejectionNoteUID: string }).rejectionNoteUID, deletion.rejectionNoteUID);
      // The peers that had the study receive the rejection note; one that does not answer is tried again later.
      const delivery = new RejectionNoteDelivery(atrium.archive, atrium.config, pino({ level: 'silent' }));
      const outcomes = await delivery.deliverDue();
      assert.deepEqual(outcomes.map((o) => [o.destination, o.sent]).sort(), [['GONE', false], ['PACSNORD', true]]);
      const received = readdirSync(path.join(work, 'pacs'));
      assert.equal(received.length, 1, pacs.output());
      const sent = readFileSync(path.join(work, 'pacs', received[0]!)).toString('latin1');
      assert.ok(sent.includes(deletion.rejectionNoteUID) && sent.includes('113039'));
      const gone = await atrium.archive.index.sql.get<{ state: string; attempts: number | string; last_error: string }>(`SELECT state, attempts, last_error FROM lifecycle_notices WHERE destination = 'GONE'`);
      assert.deepEqual([gone!.state, Number(gone!.attempts)], ['pending', 1]);
      assert.match(gone!.last_error, /cannot reach GONE/);
      assert.deepEqual(await delivery.deliverDue(), [], 'not before its next attempt');
    });

    it('keeps a minor\'s study until their 28th birthday, then lists it as kept for a minor', async () => {
      assert.ok(!(await evaluate('2028-02-29')).some((d) => d.StudyInstanceUID === child.uids.study), 'the day before the 28th birthday');
      const due = await evaluate('2028-03-01');
      const entry = due.find((d) => d.StudyInstanceUID === child.uids.study);
      assert.deepEqual(entry && [entry.keepUntil, entry.keptForMinor], ['20280301', true]);
      await json(as('admin.nord', 'POST', '/api/lifecycle/approvals', { StudyInstanceUID: child.uids.study }), 201);
    });

    it('deletes by DICOMweb DELETE (an administrator, whatever the retention) through the same path, and once a hold is lifted, by approval', async () => {
      const r = await territory('DELETE', `/dicom-web/studies/${byDelete.uids.study}`);
      assert.equal(r.status, 204, await r.text());
      assert.equal((await territory('GET', `/dicom-web/studies/${byDelete.uids.study}/metadata`)).status, 404);
      const records = (await json<{ deletions: DeletionRecord[] }>(as('admin.sud', 'GET', '/api/lifecycle/deletions'))).deletions;
      assert.deepEqual(records.map((d) => [d.StudyInstanceUID, d.rule, d.objects]), [[byDelete.uids.study, 'administrator request', 1]]);
      const radiologist = await as('rad.nord', 'DELETE', `/dicom-web/studies/${seenAgain.uids.study}`);
      assert.equal(radiologist.status, 403);
      // The hold lifted, the held study goes at the next evaluation's approval.
      const { holds } = await json<{ holds: Array<{ id: number }> }>(as('admin.sud', 'GET', '/api/lifecycle/holds'));
      assert.equal((await as('admin.nord', 'DELETE', `/api/lifecycle/holds/${holds[0]!.id}`)).status, 404, 'another site\'s hold');
      await json(as('admin.sud', 'DELETE', `/api/lifecycle/holds/${holds[0]!.id}`));
      await evaluate('2026-12-07');
      assert.deepEqual((await dueFor('admin.sud')).map((d) => [d.StudyInstanceUID, d.held]), [[held.uids.study, false]]);
      await json(as('admin.sud', 'POST', '/api/lifecycle/approvals', { StudyInstanceUID: held.uids.study }), 201);
      assert.equal((await territory('GET', `/dicom-web/studies/${held.uids.study}/metadata`)).status, 404);
    });
  });
}
