/**
 * Research projects through the HTTP API: a cohort of mixed objects (CT, MR, an RT plan, a
 * secondary capture with burned-in text, patients of two sites), approval by another person,
 * export de-identified as a ZIP and to a folder, the objection registry checked at each
 * export, one audit record per patient, and the trusted third party's way back. The exported
 * objects are checked by GDCM's gdcmanon (an independent implementation of the Basic
 * Profile): it finds nothing identifying left in them.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { loginLocal, request } from './support/browser-session.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { havePydicomFiles, readTestFile } from './support/pydicom-files.ts';
import { elementsOf, haveGdcmanon, leftForGdcmanon } from './support/gdcmanon.ts';
import { addUser } from '../src/cli/users.ts';
import { profileAttributeOf, resolveAction, type ProfileOption } from '../src/research/annex-e.ts';

/** Whether an option keeps or cleans (dates shifted) what the Basic Profile alone would not keep. */
function keptByOption(key: string, options: ProfileOption[]): boolean {
  const attribute = profileAttributeOf(parseInt(key.split('.').at(-1)!, 16) >>> 0);
  return attribute !== undefined && resolveAction(attribute, new Set(options)) !== resolveAction(attribute, new Set());
}

const password = 'un mot de passe assez long pour les tests';
const skip = !havePydicomFiles || !haveGdcmanon;

for (const engine of testDatabases()) {
  describe(`research projects and de-identified exports (${engine.name})`, { skip }, () => {
    let atrium: RunningAtrium;
    let base: string;
    let cleanup: () => Promise<void>;
    const sessions: Record<string, { jar: Awaited<ReturnType<typeof loginLocal>>['jar']; csrf: string }> = {};
    const as = async (who: string, method: string, url: string, body?: unknown) => {
      const r = await request(sessions[who]!.jar, `${base}${url}`, {
        method, headers: { 'x-csrf-token': sessions[who]!.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      return r;
    };
    const json = async <T>(r: Promise<Response>, status = 200): Promise<T> => {
      const res = await r;
      const text = await res.text();
      assert.equal(res.status, status, text);
      return JSON.parse(text) as T;
    };
    /** Starts an export (202) and waits for its row to say it is done (or failed). */
    const exported = async <T = Record<string, unknown>>(project: number, kind: string): Promise<{ id: number; status: string; error?: string; manifest: T }> => {
      const { id, status } = await json<{ id: number; status: string }>(as('chercheur', 'POST', `/api/research/projects/${project}/exports`, { kind }), 202);
      assert.equal(status, 'running');
      for (;;) {
        const row = await json<{ status: string; error?: string; manifest: T }>(as('chercheur', 'GET', `/api/research/exports/${id}`));
        if (row.status !== 'running') return { id, ...row };
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    // The cohort: real objects written by others, and synthetic ones for the patients whose objections are tested.
    const objector = syntheticInstance({ PatientID: 'OBJ-1', PatientName: 'Refus^Odile', Modality: 'CT', StudyDate: '20250102', Rows: 4, Columns: 4 });
    const late = syntheticInstance({ PatientID: 'LATE-1', PatientName: 'Tardif^Lucien', Modality: 'MR', StudyDate: '20250103', Rows: 4, Columns: 4 });
    const south = syntheticInstance({ PatientID: 'SUD-1', PatientName: 'Sud^Basile', Modality: 'CT', Rows: 4, Columns: 4 });
    const realFiles = ['CT_small.dcm', 'MR_small.dcm', 'JPEG2000.dcm', 'rtplan.dcm'];
    const phi = ['CompressedSamples', '1CT1', '4MR1', '8NM1', 'id00001', 'Refus', 'OBJ-1', 'Tardif', 'LATE-1', 'JFK IMAGING', 'ABCD1234', '1234ABCD'];
    let projectId: number;

    before(async () => {
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({ index: db.config });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      const stowed = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [...realFiles.map(readTestFile), objector.file, late.file]);
      assert.ok(stowed.status === 200 || stowed.status === 202, await stowed.text()); // 202: rtplan.dcm's meta header names another instance UID
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [south.file])).status, 200);
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'chercheur', displayName: 'Chercheuse', roles: ['researcher'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'admin.nord', displayName: 'Admin Nord', roles: ['site-admin'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'admin.sud', displayName: 'Admin Sud', roles: ['site-admin'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'tiers', displayName: 'Tiers de confiance', roles: ['trusted-third-party'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'rad.nord', displayName: 'Dr Nord', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
      for (const who of ['chercheur', 'admin.nord', 'admin.sud', 'tiers', 'rad.nord']) sessions[who] = await loginLocal(base, who, password);
    });

    after(async () => {
      await atrium?.close();
      await cleanup?.();
    });

    it('defines a project, refuses bad definitions and callers without the role, and has it approved by someone else', async () => {
      assert.equal((await as('rad.nord', 'GET', '/api/research/projects')).status, 403);
      assert.equal((await as('chercheur', 'POST', '/api/research/projects', { name: 'x', options: ['fullDates'] })).status, 400);
      assert.equal((await as('chercheur', 'POST', '/api/research/projects', { name: 'x', criteria: { sites: ['CLIN-SUD'] } })).status, 400, 'another site\'s images');
      const project = await json<{ id: number; status: string }>(as('chercheur', 'POST', '/api/research/projects', {
        name: 'Cohorte thorax', options: ['modifiedDates', 'device'], criteria: { modalities: ['CT', 'MR', 'NM', 'RTPLAN'] },
      }), 201);
      projectId = project.id;
      assert.equal(project.status, 'draft');
      assert.equal((await as('chercheur', 'POST', `/api/research/projects/${projectId}/exports`, { kind: 'zip' })).status, 409, 'not approved yet');
      assert.equal((await as('chercheur', 'POST', `/api/research/projects/${projectId}/approve`)).status, 403, 'a researcher does not approve');
      assert.equal((await as('admin.sud', 'POST', `/api/research/projects/${projectId}/approve`)).status, 404, 'another site\'s administrator does not see it');
      assert.deepEqual(await json(as('chercheur', 'GET', `/api/research/projects/${projectId}/cohort`)), { studies: 6, patients: 6 });
      const approved = await json<{ status: string; approvedBy: string }>(as('admin.nord', 'POST', `/api/research/projects/${projectId}/approve`));
      assert.equal(approved.status, 'approved');
      assert.equal(approved.approvedBy, 'admin.nord');
    });

    let firstExport: number;
    let zipDir: string;
    it('leaves out a patient who objects, and exports the others de-identified as a ZIP with a manifest, one audit record per patient', async () => {
      await json(as('tiers', 'POST', '/api/research/objections', { site: 'CHU-NORD', PatientID: 'OBJ-1', reason: 'refus exprimé au secrétariat' }), 201);
      const { id, manifest } = await exported<{ patients: Array<{ pseudonym: string; studies: Array<{ instances: unknown[] }>; excluded: Array<{ reason: string; count: number }> }>; objectingPatientsExcluded: number; instances: number }>(projectId, 'zip');
      firstExport = id;
      assert.equal(manifest.objectingPatientsExcluded, 1);
      assert.equal(manifest.patients.length, 5, 'CT, MR, NM, RT plan and the late objector; the objector left out');
      assert.equal(manifest.instances, 4, 'the secondary capture with burned-in text is left out');
      assert.ok(manifest.patients.some((p) => p.excluded.some((e) => e.reason === 'burned-in' && e.count === 1)));
      assert.equal(new Set(manifest.patients.map((p) => p.pseudonym)).size, 5);
      // The ZIP: the objects and the manifest.
      const zip = await as('chercheur', 'GET', `/api/research/exports/${id}/download`);
      assert.equal(zip.status, 200);
      zipDir = mkdtempSync(path.join(tmpdir(), 'atrium-research-zip-'));
      const zipFile = path.join(zipDir, 'export.zip');
      (await import('node:fs')).writeFileSync(zipFile, Buffer.from(await zip.arrayBuffer()));
      execFileSync('unzip', ['-q', zipFile, '-d', zipDir]);
      const files = readdirSync(zipDir, { recursive: true }).map(String).filter((f) => f.endsWith('.dcm'));
      assert.equal(files.length, 4);
      assert.ok(existsSync(path.join(zipDir, 'manifest.json')));
      assert.ok(!existsSync(path.join(atrium.config.dataDir, 'research-exports', `export-${id}.staging`)), 'the ZIP\'s staging folder is gone');
      for (const f of files) {
        const bytes = readFileSync(path.join(zipDir, f));
        const text = bytes.toString('latin1');
        for (const word of phi) assert.ok(!text.includes(word), `${f} still holds ${word}`);
        const pseudonym = f.split('/')[0]!;
        const els = elementsOf(bytes);
        assert.equal(els.get('00100010')?.value, pseudonym);
        assert.equal(els.get('00120062')?.value, 'YES');
        // The independent tool: gdcmanon finds nothing to de-identify that is not already a replacement.
        // Besides the replacements, what the project's options keep on purpose (Retain Device Identity: the station name).
        const left = await leftForGdcmanon(bytes, (key, value) => value === pseudonym || ['ANONYMIZED', 'ANONYMOUS', '0', '19000101', '000000'].includes(value ?? '')
          || keptByOption(key, ['modifiedDates', 'device']));
        assert.deepEqual(left, [], `${f}: gdcmanon still finds ${left.join('; ')}`);
      }
      // One audit record per patient: 5 exported, 1 refused (the objection).
      const audit = await atrium.archive.index.sql.all<{ outcome: string; details: string }>(
        `SELECT outcome, details FROM audit_events WHERE action = 'export' ORDER BY id`);
      const ofThisExport = audit.filter((a) => (JSON.parse(a.details) as { researchExport?: number }).researchExport === id);
      assert.equal(ofThisExport.filter((a) => a.outcome === 'success').length, 5);
      assert.equal(ofThisExport.filter((a) => a.outcome === 'refused').length, 1);
    });

    it('keeps one pseudonym, one date offset and the same UIDs per person across the project\'s exports, to a folder as well', async () => {
      const { id, manifest } = await exported<{ patients: Array<{ pseudonym: string; studies: Array<{ StudyInstanceUID: string }> }> }>(projectId, 'folder');
      const first = await json<{ manifest: { patients: Array<{ pseudonym: string; studies: Array<{ StudyInstanceUID: string }> }> } }>(as('chercheur', 'GET', `/api/research/exports/${firstExport}`));
      assert.deepEqual(manifest.patients.map((p) => [p.pseudonym, p.studies.map((s) => s.StudyInstanceUID)]).sort(),
        first.manifest.patients.map((p) => [p.pseudonym, p.studies.map((s) => s.StudyInstanceUID)]).sort());
      const folder = path.join(atrium.config.dataDir, 'research-exports', `export-${id}`);
      const files = readdirSync(folder, { recursive: true }).map(String).filter((f) => f.endsWith('.dcm'));
      assert.equal(files.length, 4);
      for (const f of files) {
        const a = elementsOf(readFileSync(path.join(folder, f)));
        const b = elementsOf(readFileSync(path.join(zipDir, f)));
        for (const key of ['00080018', '0020000D', '00100010', '00080020', '00080021']) assert.equal(a.get(key)?.value, b.get(key)?.value, `${f} ${key}`);
      }
      // CT_small's dates moved back by the person's offset (30 days to 2 years), its times kept.
      const ct = files.map((f) => elementsOf(readFileSync(path.join(folder, f)))).find((e) => e.get('00080060')?.value === 'CT')!;
      const studyDate = ct.get('00080020')!.value!;
      const days = (Date.UTC(2004, 0, 19) - Date.UTC(Number(studyDate.slice(0, 4)), Number(studyDate.slice(4, 6)) - 1, Number(studyDate.slice(6, 8)))) / 86_400_000;
      assert.ok(days >= 30 && days <= 730, `shifted by ${days} days`);
      assert.equal(ct.get('00080030')?.value, '072730');
      assert.equal(ct.get('00181000')?.value, undefined, 'CT_small has no serial number');
      assert.equal(ct.get('00081010')?.value, 'CT01_OC0', 'Retain Device Identity keeps the station name');
      assert.equal(ct.get('00080080')?.value, '', 'the institution name is emptied');
    });

    it('excludes a patient who objects after an approved export from the next one, and the earlier manifest shows it', async () => {
      await json(as('tiers', 'POST', '/api/research/objections', { site: 'CHU-NORD', PatientID: 'LATE-1' }), 201);
      const next = await exported<{ patients: unknown[]; objectingPatientsExcluded: number }>(projectId, 'zip');
      assert.equal(next.manifest.objectingPatientsExcluded, 2);
      assert.equal(next.manifest.patients.length, 4);
      const earlier = await json<{ manifest: { patients: Array<{ pseudonym: string; objectedSince?: string }> } }>(as('chercheur', 'GET', `/api/research/exports/${firstExport}`));
      const marked = earlier.manifest.patients.filter((p) => p.objectedSince);
      assert.equal(marked.length, 1, 'the late objector is marked in the earlier manifest');
      // Who that is, the trusted third party alone reads (audited).
      assert.equal((await as('chercheur', 'POST', `/api/research/projects/${projectId}/reidentify`, { pseudonym: marked[0]!.pseudonym })).status, 403);
      const who = await json<{ identity: { records: Array<{ PatientID: string }> } }>(as('tiers', 'POST', `/api/research/projects/${projectId}/reidentify`, { pseudonym: marked[0]!.pseudonym }));
      assert.equal(who.identity.records[0]!.PatientID, 'LATE-1');
      const reads = await atrium.archive.index.sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM audit_events WHERE action = 'reidentify' AND outcome = 'success'`);
      assert.equal(Number(reads!.n), 1);
      // The mapping is sealed in the index: neither the name nor the identifier is there in clear.
      const rows = await atrium.archive.index.sql.all<{ identity_sealed: string }>('SELECT identity_sealed FROM research_subjects');
      assert.ok(rows.length >= 5);
      for (const r of rows) assert.doesNotMatch(r.identity_sealed, /LATE-1|Tardif|1CT1/);
    });

    it('sends the export to the project\'s approved DICOMweb destination (another Atrium), and fails clearly when it does not answer', async () => {
      const destination = await startAtrium();
      try {
        const token = destination.tokens['CHU-NORD']!;
        const project = await json<{ id: number }>(as('chercheur', 'POST', '/api/research/projects', {
          name: 'Cohorte IRM', options: ['modifiedDates'], criteria: { modalities: ['MR'] }, dicomwebUrl: destination.dicomweb, dicomwebToken: token,
        }), 201);
        const shownProject = await json<Record<string, unknown>>(as('chercheur', 'GET', `/api/research/projects/${project.id}`));
        assert.ok(!JSON.stringify(shownProject).includes(token), 'the destination\'s token is never answered');
        await json(as('admin.nord', 'POST', `/api/research/projects/${project.id}/approve`));
        const { manifest } = await exported<{ patients: Array<{ pseudonym: string; studies: Array<{ StudyInstanceUID: string }> }>; instances: number }>(project.id, 'dicomweb');
        assert.equal(manifest.instances, 1, 'MR_small (the late MR objector is left out)');
        const found = await fetch(`${destination.dicomweb}/studies?PatientID=${manifest.patients[0]!.pseudonym}`, { headers: { authorization: `Bearer ${token}`, accept: 'application/dicom+json' } });
        const studies = await found.json() as Array<Record<string, { Value?: unknown[] }>>;
        assert.equal(studies.length, 1);
        assert.equal(studies[0]!['0020000D']!.Value![0], manifest.patients[0]!.studies[0]!.StudyInstanceUID);
        assert.equal(studies[0]!['00100010']!.Value!.length, 1);
        assert.doesNotMatch(JSON.stringify(studies), /4MR1|CompressedSamples/);
      } finally {
        await destination.close();
      }
      // A destination that does not answer: the export fails, recorded as failed with the reason.
      const gone = await json<{ id: number }>(as('chercheur', 'POST', '/api/research/projects', {
        name: 'Cohorte perdue', criteria: { modalities: ['MR'] }, dicomwebUrl: 'http://127.0.0.1:9/dicom-web',
      }), 201);
      await json(as('admin.nord', 'POST', `/api/research/projects/${gone.id}/approve`));
      const failed = await exported(gone.id, 'dicomweb');
      assert.equal(failed.status, 'failed');
      assert.match(failed.error!, /did not answer/);
      const listed = await json<{ exports: Array<{ status: string; error?: string }> }>(as('chercheur', 'GET', `/api/research/projects/${gone.id}`));
      assert.equal(listed.exports[0]!.status, 'failed');
      assert.match(listed.exports[0]!.error!, /did not answer/);
    });

    it('selects a cohort by the text of the studies\' signed reports', async () => {
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'manip.nord', displayName: 'Manipulateur Nord', roles: ['technologist'], sites: ['CHU-NORD'], password }, by);
      sessions['manip.nord'] = await loginLocal(base, 'manip.nord', password);
      const ctStudy = '1.3.6.1.4.1.5962.1.2.1.20040119072730.12322'; // CT_small's
      const tele = await json<{ id: number }>(as('manip.nord', 'POST', '/api/teleradiology/requests', {
        patient: { PatientID: '1CT1' }, StudyInstanceUID: ctStudy, urgency: 'routine', modality: 'CT', bodyPart: 'CHEST', specialty: 'msk',
        clinicalContext: 'Toux persistante', clinicalQuestion: 'Nodule ?', requestingPhysician: { name: 'Dr Généraliste' }, proposedProtocol: 'Scanner thoracique sans injection',
      }), 201);
      await json(as('rad.nord', 'POST', `/api/teleradiology/requests/${tele.id}/protocol`, { decision: 'validated' }));
      await json(as('rad.nord', 'POST', `/api/teleradiology/requests/${tele.id}/claim`));
      await json(as('rad.nord', 'PUT', `/api/teleradiology/requests/${tele.id}/report`, { findings: 'Nodule SPICULÉ du lobe supérieur droit', conclusion: 'Nodule suspect' }));
      const project = await json<{ id: number }>(as('chercheur', 'POST', '/api/research/projects', { name: 'Nodules', criteria: { reportText: 'nodule spiculé' } }), 201);
      // A draft report does not count; once signed, the study is in the cohort.
      assert.deepEqual(await json(as('chercheur', 'GET', `/api/research/projects/${project.id}/cohort`)), { studies: 0, patients: 0 });
      await json(as('rad.nord', 'POST', `/api/teleradiology/requests/${tele.id}/report/sign`, {}));
      assert.deepEqual(await json(as('chercheur', 'GET', `/api/research/projects/${project.id}/cohort`)), { studies: 1, patients: 1 });
    });

    it('shows another site\'s administrator neither the project nor its exports', async () => {
      const listed = await json<{ projects: unknown[] }>(as('admin.sud', 'GET', '/api/research/projects'));
      assert.deepEqual(listed.projects, []);
      assert.equal((await as('admin.sud', 'GET', `/api/research/exports/${firstExport}`)).status, 404);
      assert.equal((await as('admin.sud', 'GET', `/api/research/exports/${firstExport}/download`)).status, 404);
      // Nor are a machine client's approval and another site's objections taken.
      const viaKey = await fetch(`${base}/api/research/projects/${projectId}/approve`, { method: 'POST', headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}` } });
      assert.equal(viaKey.status, 403);
      assert.equal((await as('admin.sud', 'POST', '/api/research/objections', { site: 'CHU-NORD', PatientID: '4MR1' })).status, 404);
    });

    it('lifts an objection when the patient withdraws it: the next export takes them again', async () => {
      const before = await json<{ objections: unknown[] }>(as('tiers', 'GET', '/api/research/objections'));
      assert.equal(before.objections.length, 2);
      assert.deepEqual(await json(as('tiers', 'POST', '/api/research/objections/withdraw', { site: 'CHU-NORD', PatientID: 'OBJ-1' })), { withdrawn: true });
      assert.equal((await json<{ objections: unknown[] }>(as('tiers', 'GET', '/api/research/objections'))).objections.length, 1);
      const next = await exported<{ patients: unknown[]; objectingPatientsExcluded: number }>(projectId, 'folder');
      assert.equal(next.manifest.objectingPatientsExcluded, 1);
      assert.equal(next.manifest.patients.length, 5);
    });
  });
}
