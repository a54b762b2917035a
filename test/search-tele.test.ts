/**
 * Issue 20 §4 over HTTP, on both index engines: a name found in the forms people type it
 * ("LEFEVRE HELENE", "Lefèvre Hélène", "lefevre h"); a teleradiology request named by an
 * accession number whose images are already archived meets them at once; a radiologist reads
 * an open request (its clinical question) before claiming it; the report's PDF says the
 * urgency and the template's field labels in French, and its times in the sites' time zone.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { loginLocal, request, type CookieJar } from './support/browser-session.ts';
import { stowFiles } from './support/stow.ts';
import { pdfText } from './support/pdf-text.ts';
import { syntheticInstance, type SyntheticOptions } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { Tags } from '../src/dicom/dataset.ts';

const password = 'un mot de passe assez long pour les tests';

for (const engine of testDatabases()) {
  describe(`search and teleradiology screens' server side (${engine.name})`, () => {
    let atrium: RunningAtrium;
    let base: string;
    let cleanup: () => Promise<void>;
    const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
    let archivedStudy: string;

    const stow = async (site: string, o: SyntheticOptions) => {
      const obj = syntheticInstance({ Rows: 4, Columns: 4, ...o });
      const r = await stowFiles(`${base}/dicom-web`, atrium.tokens[site]!, [obj.file]);
      assert.equal(r.status, 200, await r.text());
      return obj.uids.study;
    };
    const call = async <T>(who: string, method: string, url: string, body?: unknown): Promise<{ status: number; body: T }> => {
      const s = sessions[who]!;
      const r = await request(s.jar, `${base}${url}`, {
        method, headers: { 'x-csrf-token': s.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await r.text();
      return { status: r.status, body: (text && r.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text) as T };
    };
    const names = async (name: string) => {
      const r = await call<{ patients: Array<{ PatientID: string }> }>('admin', 'GET', `/api/patients?${new URLSearchParams({ name })}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.patients.map((p) => p.PatientID).sort();
    };
    const newRequest = (extra: Record<string, unknown>) => ({
      patient: { PatientID: 'N-1' }, urgency: 'urgent', modality: 'CT', bodyPart: 'HEAD', specialty: 'neuro',
      clinicalContext: 'Céphalées brutales', clinicalQuestion: 'Hémorragie méningée ?', requestingPhysician: { name: 'Dr Durand' },
      proposedProtocol: 'TDM sans injection', ...extra,
    });

    before(async () => {
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({ index: db.config, teleradiology: true, configure: (c) => { c.teleradiology.timeZone = 'Indian/Reunion'; } });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      archivedStudy = await stow('CHU-NORD', {
        PatientID: 'N-1', PatientName: 'Lefèvre^Hélène', PatientBirthDate: '19610304', PatientSex: 'F', StudyDate: '20261206', Modality: 'CT',
        extra: [{ tag: Tags.AccessionNumber, vr: 'SH', value: Buffer.from('ACC-2071') }],
      });
      await stow('CHU-NORD', { PatientID: 'N-2', PatientName: 'LEFEBVRE^Henri', PatientBirthDate: '19500101', PatientSex: 'M' });
      await stow('CHU-NORD', { PatientID: 'N-3', PatientName: 'HELENE^Martin', PatientBirthDate: '19700101', PatientSex: 'M' });
      await stow('CHU-NORD', { PatientID: 'N-4', PatientName: 'Lefèvre-Dubois^Anne Hélène', PatientBirthDate: '19800101', PatientSex: 'F' });
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'admin', displayName: 'Admin Territoire', roles: ['territory-admin'], sites: [], password }, by);
      await addUser(atrium.archive, { login: 'manip', displayName: 'Marc Manip', roles: ['technologist'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'rad', displayName: 'Dr Rad', roles: ['radiologist'], sites: ['CLIN-SUD'], password, rpps: '10001111111' }, by);
      await addUser(atrium.archive, { login: 'rad2', displayName: 'Dr Deux', roles: ['radiologist'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'sud', displayName: 'Dr Sud', roles: ['referring-physician'], sites: ['CLIN-SUD'], password }, by);
      for (const login of ['admin', 'manip', 'rad', 'rad2', 'sud']) sessions[login] = await loginLocal(base, login, password);
    });

    after(async () => {
      await atrium?.close();
      await cleanup?.();
    });

    it('finds a patient by the name in the forms people type: spaces or carets, any case, accents or none, initials', async () => {
      assert.deepEqual(await names('LEFEVRE HELENE'), ['N-1', 'N-4']);
      assert.deepEqual(await names('Lefèvre Hélène'), ['N-1', 'N-4']);
      assert.deepEqual(await names('lefevre h'), ['N-1', 'N-4']);
      assert.deepEqual(await names('LEFEVRE^HELENE'), ['N-1', 'N-4']);
      assert.deepEqual(await names('hélène lefèvre'), ['N-1', 'N-4'], 'in either order');
      assert.deepEqual(await names('lefe h'), ['N-1', 'N-2', 'N-4']);
      assert.deepEqual(await names('lefevre dubois'), ['N-4'], 'the parts of a compound family name');
      assert.deepEqual(await names('helene'), ['N-1', 'N-3', 'N-4']);
      assert.deepEqual(await names('lefevre x'), []);
      assert.deepEqual(await names('martin lefevre'), []);
    });

    it('a request named by the accession number of images already archived meets them at once', async () => {
      const created = await call<{ id: number; StudyInstanceUID?: string; imagesArrivedAt?: string; AccessionNumber?: string }>(
        'manip', 'POST', '/api/teleradiology/requests', newRequest({ AccessionNumber: 'ACC-2071' }));
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal(created.body.StudyInstanceUID, archivedStudy);
      assert.equal(created.body.AccessionNumber, 'ACC-2071');
      assert.ok(created.body.imagesArrivedAt, 'the clock runs from now: the images are there');
      const list = await call<Array<{ id: number; imagesArrived: boolean }>>('rad', 'GET', '/api/teleradiology/worklist');
      assert.equal(list.body.find((e) => e.id === created.body.id)?.imagesArrived, true);
      // Another accession number (images to come) still waits for them.
      const waiting = await call<{ StudyInstanceUID?: string; imagesArrivedAt?: string }>('manip', 'POST', '/api/teleradiology/requests', newRequest({ AccessionNumber: 'ACC-9999' }));
      assert.equal(waiting.status, 201);
      assert.equal(waiting.body.StudyInstanceUID, undefined);
      assert.equal(waiting.body.imagesArrivedAt, undefined);
    });

    it('a radiologist reads an open request before claiming it (not one another radiologist holds); another site\'s physician does not', async () => {
      const created = await call<{ id: number }>('manip', 'POST', '/api/teleradiology/requests', newRequest({ StudyInstanceUID: archivedStudy }));
      assert.equal(created.status, 201);
      const read = await call<{ clinicalQuestion: string; claimedBy?: string; patient?: { PatientName?: string } }>('rad', 'GET', `/api/teleradiology/requests/${created.body.id}`);
      assert.equal(read.status, 200, JSON.stringify(read.body));
      assert.equal(read.body.clinicalQuestion, 'Hémorragie méningée ?');
      assert.equal(read.body.claimedBy, undefined, 'reading is not claiming');
      assert.equal(read.body.patient?.PatientName, 'Lefèvre^Hélène');
      assert.equal((await call('sud', 'GET', `/api/teleradiology/requests/${created.body.id}`)).status, 404);
      // Once another radiologist holds it, it is theirs to read.
      assert.equal((await call('rad2', 'POST', `/api/teleradiology/requests/${created.body.id}/claim`)).status, 200);
      assert.equal((await call('rad', 'GET', `/api/teleradiology/requests/${created.body.id}`)).status, 404);
      assert.equal((await call('rad2', 'DELETE', `/api/teleradiology/requests/${created.body.id}/claim`)).status, 200);
      const audit = await atrium.archive.index.sql.all<{ actor: string }>(`SELECT actor FROM audit_events WHERE action = 'view' AND outcome = 'success'`);
      assert.ok(audit.some((a) => /\brad\b/.test(a.actor)), `the reading is audited: ${JSON.stringify(audit)}`);
    });

    it('the report\'s PDF says the urgency and the template\'s labels in French, its times in the sites\' time zone', async () => {
      const template = await call('admin', 'PUT', '/api/teleradiology/templates/tdm-crane', {
        name: 'TDM crâne', modality: 'CT', bodyPart: 'HEAD', fields: [{ name: 'HSA', label: 'Hémorragie sous-arachnoïdienne', required: true }],
      });
      assert.equal(template.status, 200, JSON.stringify(template.body));
      const created = await call<{ id: number }>('manip', 'POST', '/api/teleradiology/requests', newRequest({ StudyInstanceUID: archivedStudy }));
      const id = created.body.id;
      assert.equal((await call('rad', 'POST', `/api/teleradiology/requests/${id}/protocol`, { decision: 'validated' })).status, 200);
      assert.equal((await call('rad', 'POST', `/api/teleradiology/requests/${id}/claim`)).status, 200);
      const draft = await call('rad', 'PUT', `/api/teleradiology/requests/${id}/report`, { template: 'tdm-crane', fields: { HSA: 'absente' }, findings: 'Pas de saignement.', conclusion: 'Examen normal.' });
      assert.equal(draft.status, 200, JSON.stringify(draft.body));
      const signed = await call<{ signedAt: string }>('rad', 'POST', `/api/teleradiology/requests/${id}/report/sign`, { preliminary: false });
      assert.equal(signed.status, 200, JSON.stringify(signed.body));
      const r = await request(sessions.rad!.jar, `${base}/api/teleradiology/requests/${id}/report/pdf`);
      assert.equal(r.status, 200);
      const text = pdfText(Buffer.from(await r.arrayBuffer()));
      assert.match(text, /Urgence :\s*urgente/);
      assert.match(text, /Hémorragie sous-arachnoïdienne : absente/);
      const at = new Date(signed.body.signedAt);
      const reunion = new Intl.DateTimeFormat('fr-FR', { timeZone: 'Indian/Reunion', day: '2-digit', month: '2-digit', year: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
        .format(at).replace(' ', ' à ');
      assert.ok(text.includes(`le ${reunion} (heure de Reunion)`), `${reunion} in ${text}`);
      assert.doesNotMatch(text, /UTC|routine|urgent\b/);
    });
  });
}
