/**
 * Who may see what, through every entry point: an exam is seen only with a reason, and what
 * may not be seen is answered as if it were not there (not even a count), with the attempt
 * in the audit trail. Machine callers first: API clients over DICOMweb and the API, DICOM
 * peers over C-FIND, C-MOVE and C-GET, each limited to its site unless trusted for the
 * territory.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { dcmtk, haveDcmtk, startStorescp } from './support/dcmtk.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { requestStorageCommitment } from './support/dimse-association.ts';
import { sha256Hex } from '../src/api/auth.ts';

function writeTemp(dir: string, name: string, bytes: Buffer): string {
  const p = path.join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

for (const db of testDatabases()) {
  describe(`access by machine callers (${db.name})`, { skip: !haveDcmtk }, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    let dest: Awaited<ReturnType<typeof startStorescp>>;
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-access-'));
    const destDir = mkdtempSync(path.join(work, 'dest-'));
    const keys = { nord: randomBytes(24).toString('base64url'), sud: randomBytes(24).toString('base64url') };
    const north = syntheticInstance({ PatientID: 'SHARED-1', PatientName: 'Martin^Louise', Rows: 4, Columns: 4 });
    const south = syntheticInstance({ PatientID: 'SHARED-1', PatientName: 'Martin^Louise', Rows: 4, Columns: 4 });
    const port = () => String(atrium.dimse!.port);
    const http = (key: string, url: string, init: RequestInit = {}) =>
      fetch(atrium.dicomweb.replace(/\/dicom-web$/, '') + url, { ...init, headers: { authorization: `Bearer ${key}`, ...(init.headers ?? {}) } });
    const refusedEvents = async (actor: string) => (await atrium.archive.index.sql.all<{ action: string; study_instance_uid: string | null; details: string }>(
      `SELECT action, study_instance_uid, details FROM audit_events WHERE actor = ? AND outcome = 'refused' ORDER BY id`, [actor]));

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      dest = await startStorescp('DEST', destDir);
      atrium = await startAtrium({
        index: opened.config,
        dimse: true,
        configure: (c) => {
          c.apiClients.push(
            { name: 'ris-nord', tokenSha256: sha256Hex(keys.nord), site: 'CHU-NORD', territory: false },
            { name: 'ris-sud', tokenSha256: sha256Hex(keys.sud), site: 'CLIN-SUD', territory: false },
          );
          c.peers = [
            { aeTitle: 'PACSNORD', site: 'CHU-NORD', may: { store: true, query: true, retrieve: true } },
            { aeTitle: 'PACSSUD', site: 'CLIN-SUD', may: { store: true, query: true, retrieve: true } },
            { aeTitle: 'DEST', host: '127.0.0.1', port: dest.port, site: 'CHU-NORD', may: { store: false, query: false, retrieve: false } },
          ];
        },
      });
      const dir = mkdtempSync(path.join(work, 'in-'));
      assert.equal((await dcmtk('storescu', ['-aet', 'PACSNORD', '-aec', 'ATRIUM', '127.0.0.1', port(), writeTemp(dir, 'n.dcm', north.file)])).code, 0);
      assert.equal((await dcmtk('storescu', ['-aet', 'PACSSUD', '-aec', 'ATRIUM', '127.0.0.1', port(), writeTemp(dir, 's.dcm', south.file)])).code, 0);
    });

    after(async () => {
      await atrium?.close();
      await dest?.stop();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    it('QIDO-RS finds only the exams of the client\'s own site, at every level', async () => {
      const studies = await (await http(keys.nord, '/dicom-web/studies?PatientID=SHARED-1')).json() as Array<Record<string, { Value: string[] }>>;
      assert.deepEqual(studies.map((s) => s['0020000D']!.Value[0]), [north.uids.study]);
      const series = await (await http(keys.nord, `/dicom-web/studies/${south.uids.study}/series`)).json() as unknown[];
      assert.deepEqual(series, []);
      const instances = await (await http(keys.nord, `/dicom-web/instances?PatientID=SHARED-1`)).json() as unknown[];
      assert.equal(instances.length, 1);
      // The other site's client sees the other exam; the territory's sees both.
      const sud = await (await http(keys.sud, '/dicom-web/studies?PatientID=SHARED-1')).json() as Array<Record<string, { Value: string[] }>>;
      assert.deepEqual(sud.map((s) => s['0020000D']!.Value[0]), [south.uids.study]);
      const all = await (await http(atrium.tokens['CHU-NORD']!, '/dicom-web/studies?PatientID=SHARED-1')).json() as unknown[];
      assert.equal(all.length, 2);
    });

    it('answers WADO-RS for another site\'s study exactly as for a study that does not exist, and records the refusal', async () => {
      const missing = `1.2.826.0.1.3680043.8.498.${Date.now()}`;
      for (const suffix of ['', '/metadata', `/series/${south.uids.series}/instances/${south.uids.sop}`, '/archive', `/series/${south.uids.series}/instances/${south.uids.sop}/rendered`]) {
        const refused = await http(keys.nord, `/dicom-web/studies/${south.uids.study}${suffix}`);
        const absent = await http(keys.nord, `/dicom-web/studies/${missing}${suffix.replaceAll(south.uids.series, '1.2.3').replaceAll(south.uids.sop, '1.2.4')}`);
        assert.equal(refused.status, 404, suffix);
        assert.equal(absent.status, 404, suffix);
        const said = (await refused.json() as { detail: string }).detail;
        assert.doesNotMatch(said, /not allowed|forbidden|refused|site/i);
        assert.match(said, /is not in the archive/);
      }
      const own = await http(keys.nord, `/dicom-web/studies/${north.uids.study}/metadata`);
      assert.equal(own.status, 200);
      const refusals = await refusedEvents('ris-nord');
      assert.ok(refusals.filter((e) => e.study_instance_uid === south.uids.study).length >= 5, JSON.stringify(refusals));
      assert.ok(!refusals.some((e) => e.study_instance_uid === north.uids.study));
    });

    it('C-FIND by a site\'s PACS matches only its site\'s exams, at study and patient level', async () => {
      const study = await dcmtk('findscu', ['-v', '-S', '-aet', 'PACSNORD', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=STUDY', '-k', 'PatientID=SHARED-1', '-k', 'StudyInstanceUID', '127.0.0.1', port()]);
      assert.equal(study.code, 0, study.output);
      assert.equal((study.output.match(/Find Response: \d+ \(Pending\)/g) ?? []).length, 1, study.output);
      assert.ok(study.output.includes(north.uids.study));
      assert.ok(!study.output.includes(south.uids.study));
      const patient = await dcmtk('findscu', ['-v', '-P', '-aet', 'PACSSUD', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=PATIENT', '-k', 'PatientID=SHARED-1', '-k', 'NumberOfPatientRelatedStudies', '127.0.0.1', port()]);
      assert.equal(patient.code, 0, patient.output);
      // One record (the south site's) with one study: the north's exam is not even counted.
      assert.equal((patient.output.match(/Find Response: \d+ \(Pending\)/g) ?? []).length, 1, patient.output);
      assert.match(patient.output, /\(0020,1200\) IS \[1 ?\]/);
    });

    it('C-MOVE and C-GET of another site\'s study send nothing and are recorded as refused', async () => {
      const move = await dcmtk('movescu', ['-v', '-S', '-aet', 'PACSNORD', '-aec', 'ATRIUM', '-aem', 'DEST', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${south.uids.study}`, '127.0.0.1', port()]);
      assert.equal(move.code, 0, move.output);
      assert.equal(readdirSync(destDir).length, 0);
      const out = mkdtempSync(path.join(work, 'get-'));
      const get = await dcmtk('getscu', ['-v', '-S', '-aet', 'PACSNORD', '-aec', 'ATRIUM', '-od', out, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${south.uids.study}`, '127.0.0.1', port()]);
      assert.equal(get.code, 0, get.output);
      assert.equal(readdirSync(out).length, 0);
      const image = await dcmtk('getscu', ['-v', '-S', '-aet', 'PACSNORD', '-aec', 'ATRIUM', '-od', out, '-k', 'QueryRetrieveLevel=IMAGE', '-k', `StudyInstanceUID=${south.uids.study}`, '-k', `SeriesInstanceUID=${south.uids.series}`, '-k', `SOPInstanceUID=${south.uids.sop}`, '127.0.0.1', port()]);
      assert.equal(image.code, 0, image.output);
      assert.equal(readdirSync(out).length, 0);
      const refusals = (await refusedEvents('PACSNORD')).filter((e) => e.action === 'download');
      assert.equal(refusals.length, 3, JSON.stringify(refusals));
      // Its own site's study moves as before.
      const own = await dcmtk('movescu', ['-v', '-S', '-aet', 'PACSNORD', '-aec', 'ATRIUM', '-aem', 'DEST', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${north.uids.study}`, '127.0.0.1', port()]);
      assert.equal(own.code, 0, own.output);
      assert.equal(readdirSync(destDir).length, 1);
    });

    it('answers Storage Commitment for another site\'s object as for an object it does not hold', async () => {
      const report = await requestStorageCommitment(atrium, 'PACSNORD', [
        { SOPClassUID: '1.2.840.10008.5.1.4.1.1.2', SOPInstanceUID: north.uids.sop }, { SOPClassUID: '1.2.840.10008.5.1.4.1.1.2', SOPInstanceUID: south.uids.sop },
      ]);
      assert.equal(report.eventType, 2, 'some failed');
      // Failed SOP Sequence (0008,1198) comes before Referenced SOP Sequence (0008,1199).
      const failedAt = report.body.indexOf(Buffer.from([0x08, 0x00, 0x98, 0x11]));
      const committedAt = report.body.indexOf(Buffer.from([0x08, 0x00, 0x99, 0x11]));
      assert.ok(failedAt > 0 && committedAt > failedAt);
      assert.ok(report.body.indexOf(Buffer.from(north.uids.sop)) > committedAt, 'its own site\'s object is committed');
      const southAt = report.body.indexOf(Buffer.from(south.uids.sop));
      assert.ok(southAt > failedAt && southAt < committedAt, 'the other site\'s is failed, as if absent');
      // FailureReason (0008,1197) US 0x0112: no such object instance.
      assert.ok(report.body.includes(Buffer.from([0x08, 0x00, 0x97, 0x11, 0x55, 0x53, 0x02, 0x00, 0x12, 0x01])));
    });

    it('refuses corrections and identity reviews to a site\'s client (403), and records the attempt', async () => {
      const move = await http(keys.nord, '/api/corrections/study-move', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ StudyInstanceUID: north.uids.study, PatientID: 'OTHER', reason: 'wrong patient' }),
      });
      assert.equal(move.status, 403);
      assert.equal((await http(keys.nord, '/api/identity-reviews')).status, 403);
      const refusals = await refusedEvents('ris-nord');
      assert.ok(refusals.some((e) => e.action === 'correction'));
      assert.ok(refusals.some((e) => e.action === 'identity-review'));
      // Nothing moved.
      const still = await atrium.archive.index.studyPatient(north.uids.study);
      assert.equal(still?.patient.PatientID, 'SHARED-1');
    });
  });
}
