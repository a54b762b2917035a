/**
 * Dose on record (issue 19 §2), over HTTP: a CT's Radiation Dose SR, stored by STOW-RS and
 * read behind ingest, shows its DLP on the patient's dose timeline (with the effective-dose
 * method) and in the site's table against the reference levels (JSON and CSV); a malformed
 * report is recorded as partial, its missing values left missing. On SQLite and PostgreSQL.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { radiationDoseSR } from './support/rdsr.ts';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { loginLocal, request } from './support/browser-session.ts';
import { addUser } from '../src/cli/users.ts';
import { INS_OIDS, insKeyOf, parseINS } from '../src/patients/ins.ts';
import { insOtherPatientIDsItem } from '../src/patients/ins-dicom.ts';
import type { DicomElement } from '../src/dicom/dataset.ts';

/** CTDIvol (0018,9345) in an image header. */
function ctdiVol(n: number): DicomElement {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(n);
  return { tag: 0x00189345, vr: 'FD', value: b };
}
import { pino } from 'pino';
import { DoseRecording } from '../src/workflow/dose-records.ts';
import { newUID } from '../src/dicom/uids.ts';

for (const db of testDatabases()) {
  describe(`dose on record (${db.name})`, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    let base: string;
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-dose-'));
    const headCT = newUID();
    const broken = newUID();

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      atrium = await startAtrium({
        index: opened.config,
        configure: (c) => {
          c.radiation.referenceLevels = [{ modality: 'CT', region: 'HEAD', quantity: 'DLP', level: 700, unit: 'mGy.cm', label: 'Encéphale (niveau du test)' }];
        },
      });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      for (const [PatientID, uid, kind] of [['DOSE-1', headCT, 'complete'], ['DOSE-2', broken, 'malformed']] as const) {
        const r = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [radiationDoseSR(work, PatientID, uid, '20261020', kind)]);
        assert.equal(r.status, 200, await r.text());
      }
      // The consumer `atrium serve` starts (src/cli/workers.ts), run to the end of the outbox.
      await new DoseRecording(atrium.archive.index.sql, atrium.archive.outbox, pino({ level: 'silent' })).drain();
    });

    after(async () => {
      await atrium?.close();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    const get = async (url: string) => {
      const r = await fetch(`${base}${url}`, { headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}` } });
      const body = await r.text();
      assert.equal(r.status, 200, body);
      return body;
    };

    it("shows an RDSR's DLP on the patient's dose timeline, with the effective dose and its method", async () => {
      const t = JSON.parse(await get('/api/dose/patients?site=CHU-NORD&PatientID=DOSE-1')) as { method: string; cumulativeEffectiveDose_mSv: number; exams: Array<Record<string, unknown>> };
      assert.equal(t.exams.length, 1);
      const e = t.exams[0]!;
      assert.equal(e.StudyInstanceUID, headCT);
      assert.equal(e.source, 'rdsr');
      assert.equal(e.status, 'complete');
      assert.equal(e.DLP_mGycm, 800);
      assert.equal(e.CTDIvol_mGy, 50);
      assert.equal(e.region, 'HEAD');
      assert.equal(e.effectiveDose_mSv, 1.68);
      assert.equal(t.cumulativeEffectiveDose_mSv, 1.68);
      assert.match(t.method, /AAPM Report 96/);
    });

    it("lists the CT above the site's reference level, in JSON and in CSV", async () => {
      const t = JSON.parse(await get('/api/dose/sites/CHU-NORD/reference-levels')) as { levels: Array<{ modality: string; region: string; count: number; median?: number; above: Array<{ StudyInstanceUID: string; value: number }> }> };
      const head = t.levels.find((l) => l.modality === 'CT' && l.region === 'HEAD')!;
      // The malformed report states no total DLP: it is not counted as one.
      assert.equal(head.count, 1);
      assert.equal(head.median, 800);
      assert.deepEqual(head.above.map((a) => [a.StudyInstanceUID, a.value]), [[headCT, 800]]);
      const csv = await get('/api/dose/sites/CHU-NORD/reference-levels.csv');
      assert.match(csv, new RegExp(`${headCT.replaceAll('.', '\\.')},800,complete`));
    });

    it('records a malformed RDSR as partial, saying what is missing and inventing nothing', async () => {
      const t = JSON.parse(await get('/api/dose/patients?site=CHU-NORD&PatientID=DOSE-2')) as { exams: Array<Record<string, unknown>> };
      const e = t.exams[0]!;
      assert.equal(e.status, 'partial');
      assert.equal(e.DLP_mGycm, undefined);
      assert.equal(e.effectiveDose_mSv, undefined);
      const problems = e.problems as string[];
      assert.ok(problems.includes('CT Dose Length Product Total missing'), problems.join('; '));
      assert.ok(problems.includes('CT acquisition 2: DLP missing'), problems.join('; '));
    });

    it('records a corrected RDSR (the same SOPInstanceUID sent again) in place of the partial one it replaces', async () => {
      const study = newUID();
      const sop = newUID();
      for (const kind of ['malformed', 'complete'] as const) {
        const r = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [radiationDoseSR(work, 'DOSE-5', study, '20261022', kind, sop)]);
        assert.equal(r.status, 200, await r.text());
        await new DoseRecording(atrium.archive.index.sql, atrium.archive.outbox, pino({ level: 'silent' })).drain();
      }
      const t = JSON.parse(await get('/api/dose/patients?site=CHU-NORD&PatientID=DOSE-5')) as { exams: Array<Record<string, unknown>> };
      assert.deepEqual(t.exams.map((e) => [e.status, e.DLP_mGycm]), [['complete', 800]]);
    });

    it("reads a radiograph's DAP from its header when there is no RDSR, and lists it above the built-in chest NRD", async () => {
      // (0018,115E) Image and Fluoroscopy Area Dose Product: 2.5 dGy.cm2 = 250 mGy.cm2, above the 200 of a chest PA.
      const dx = syntheticInstance({
        PatientID: 'DOSE-4', PatientName: 'DOSE^Dan', Modality: 'DX', StudyDate: '20261021', Rows: 4, Columns: 4,
        extra: [{ tag: 0x00180015, vr: 'CS', value: Buffer.from('CHEST ') }, { tag: 0x0018115e, vr: 'DS', value: Buffer.from('2.5 ') }],
      });
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [dx.file])).status, 200);
      await new DoseRecording(atrium.archive.index.sql, atrium.archive.outbox, pino({ level: 'silent' })).drain();
      const t = JSON.parse(await get('/api/dose/patients?site=CHU-NORD&PatientID=DOSE-4')) as { exams: Array<Record<string, unknown>> };
      assert.deepEqual([t.exams[0]!.source, t.exams[0]!.status, t.exams[0]!.DAP_Gym2, t.exams[0]!.effectiveDose_mSv], ['header', 'complete', 0.000025, undefined]);
      const table = JSON.parse(await get('/api/dose/sites/CHU-NORD/reference-levels')) as { levels: Array<{ modality: string; region: string; level: number; above: Array<{ StudyInstanceUID: string; value: number }> }> };
      const chest = table.levels.find((l) => l.modality === 'XR' && l.region === 'CHEST')!;
      assert.equal(chest.level, 200);
      assert.deepEqual(chest.above.map((a) => [a.StudyInstanceUID, a.value]), [[dx.uids.study, 250]]);
    });

    it("leaves a deleted exam out of the site's reference-level table", async () => {
      const table = async () => (JSON.parse(await get('/api/dose/sites/CHU-NORD/reference-levels')) as { levels: Array<{ modality: string; region: string; count: number }> })
        .levels.find((l) => l.modality === 'XR' && l.region === 'CHEST')!.count;
      assert.equal(await table(), 1);
      const dx = (JSON.parse(await get('/api/dose/patients?site=CHU-NORD&PatientID=DOSE-4')) as { exams: Array<{ StudyInstanceUID: string }> }).exams[0]!.StudyInstanceUID;
      const r = await fetch(`${atrium.dicomweb}/studies/${dx}`, { method: 'DELETE', headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}` } });
      assert.equal(r.status, 204, await r.text());
      assert.equal(await table(), 0);
    });

    it("puts the RDSR's DLP and CTDIvol, not the image header's CTDIvol, in the CR-IMG's radiation-exposure section", async () => {
      const m = '2800175123456';
      const ins = parseINS(m + insKeyOf(m), INS_OIDS.NIR_TEST);
      const ct = syntheticInstance({
        PatientID: 'DOSE-3', PatientName: 'DOSE^Claire', PatientBirthDate: '19800101', PatientSex: 'F', Modality: 'CT', Rows: 4, Columns: 4,
        extra: [{ tag: 0x00101002, vr: 'SQ', items: [insOtherPatientIDsItem(ins)] }, ctdiVol(12.5)],
      });
      const stored = await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [ct.file, radiationDoseSR(work, 'DOSE-3', ct.uids.study, '20261020', 'complete')]);
      assert.equal(stored.status, 200, await stored.text());
      await atrium.identities.drain();
      await new DoseRecording(atrium.archive.index.sql, atrium.archive.outbox, pino({ level: 'silent' })).drain();
      const by = { actor: 'test', via: 'cli' as const };
      const password = 'un mot de passe assez long pour les tests';
      await addUser(atrium.archive, { login: 'manip.sud', displayName: 'Manipulateur Sud', roles: ['technologist'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'rad.a', displayName: 'LECTEUR^Anne', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10001234567', password }, by);
      const sessions = { manip: await loginLocal(base, 'manip.sud', password), rad: await loginLocal(base, 'rad.a', password) };
      const call = async (who: keyof typeof sessions, method: string, url: string, body?: unknown) => {
        const r = await request(sessions[who].jar, `${base}${url}`, {
          method, headers: { 'x-csrf-token': sessions[who].csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
        const t = await r.text();
        assert.ok(r.status < 300, `${method} ${url}: ${r.status} ${t}`);
        return t;
      };
      const { id } = JSON.parse(await call('manip', 'POST', '/api/teleradiology/requests', {
        patient: { PatientID: 'DOSE-3' }, StudyInstanceUID: ct.uids.study, urgency: 'routine', modality: 'CT', bodyPart: 'HEAD', specialty: 'neuro',
        clinicalContext: 'Céphalées', clinicalQuestion: 'Saignement ?', requestingPhysician: { name: 'URGENTISTE^Paul' }, proposedProtocol: 'TDM cérébrale',
      })) as { id: number };
      await call('rad', 'POST', `/api/teleradiology/requests/${id}/protocol`, { decision: 'validated' });
      await call('rad', 'POST', `/api/teleradiology/requests/${id}/claim`);
      await call('rad', 'PUT', `/api/teleradiology/requests/${id}/report`, { findings: 'Pas de saignement.', conclusion: 'Normal' });
      await call('rad', 'POST', `/api/teleradiology/requests/${id}/report/sign`, {});
      const docs = JSON.parse(await call('manip', 'GET', `/api/studies/${ct.uids.study}/documents`)) as { documents: Array<{ id: number; type: string; current: boolean }> };
      const cr = docs.documents.find((d) => d.type === 'CR-IMG' && d.current)!;
      const xml = await call('manip', 'GET', `/api/studies/${ct.uids.study}/documents/${cr.id}`);
      const quantity = (code: string) => new RegExp(`<code code="${code}"[^>]*/>(?:(?!</observation>).)*<value xsi:type="PQ" value="([^"]+)" unit="([^"]+)"/>`).exec(xml)?.slice(1);
      assert.deepEqual(quantity('113813'), ['800', 'mGy.cm']);
      assert.deepEqual(quantity('113830'), ['50', 'mGy']);
    });
  });
}
