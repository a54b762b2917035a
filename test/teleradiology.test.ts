/**
 * The teleradiology workflow over HTTP, as its people use it: a requesting site's
 * technologist files a request, a remote radiologist validates its protocol, claims the
 * reading from the worklist, drafts, signs, and adds an addendum; a stroke request goes to
 * the on-call neuroradiologist, who sees the images once they arrive. Faults are answered
 * as the issue asks: an incomplete request 422 with the missing fields, an unknown patient
 * or study 404, a second claimer 409, a signer not assigned 403, an edit after signature 409.
 */
import assert from 'node:assert/strict';
import { stowFiles } from './support/stow.ts';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { CookieJar, loginLocal, request } from './support/browser-session.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { Tags, type DicomElement } from '../src/dicom/dataset.ts';
import { TeleRequests } from '../src/workflow/tele-requests.ts';

const password = 'un mot de passe assez long pour les tests';

function accession(value: string): DicomElement {
  let bytes = Buffer.from(value, 'latin1');
  if (bytes.length % 2 === 1) bytes = Buffer.concat([bytes, Buffer.from(' ')]);
  return { tag: Tags.AccessionNumber, vr: 'SH', value: bytes };
}

for (const engine of testDatabases()) {
  describe(`teleradiology (${engine.name})`, () => {
    let atrium: RunningAtrium;
    let base: string;
    let cleanup: () => Promise<void>;
    const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
    const knee = syntheticInstance({ PatientID: 'TS-1', PatientName: 'Sud^Bruno', Modality: 'MR', Rows: 4, Columns: 4 });
    const prior = syntheticInstance({ PatientID: 'TS-2', PatientName: 'Sud^Claire', Modality: 'CR', Rows: 4, Columns: 4 });
    const head = syntheticInstance({ PatientID: 'TS-2', PatientName: 'Sud^Claire', Modality: 'CT', Rows: 4, Columns: 4, extra: [accession('AVC-0001')] });

    const stow = async (token: string, file: Buffer) => {
      const r = await stowFiles(`${base}/dicom-web`, token, [file]);
      assert.equal(r.status, 200, await r.text());
    };
    const login = async (who: string) => {
      sessions[who] = await loginLocal(base, who, password);
    };
    const get = (who: string, url: string) => request(sessions[who]!.jar, `${base}/api/teleradiology${url}`);
    const send = (who: string, url: string, body?: unknown, method = 'POST') => request(sessions[who]!.jar, `${base}/api/teleradiology${url}`, {
      method, headers: { 'x-csrf-token': sessions[who]!.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const json = async <T = Record<string, unknown>>(r: Response, status: number): Promise<T> => {
      const text = await r.text();
      assert.equal(r.status, status, text);
      return JSON.parse(text) as T;
    };
    const complete = {
      patient: { PatientID: 'TS-1' }, urgency: 'routine', modality: 'MR', bodyPart: 'KNEE', specialty: 'msk',
      clinicalContext: 'Chute de sa hauteur, genou gonflé', clinicalQuestion: 'Lésion méniscale ?',
      requestingPhysician: { name: 'Dr Urgentiste Sud', rpps: '10009999999' }, proposedProtocol: 'IRM genou sans injection',
    };
    const auditActions = async (request: number) => (await atrium.archive.index.sql.all<{ action: string; outcome: string; details: string }>(
      `SELECT action, outcome, details FROM audit_events WHERE action LIKE 'tele-%' OR action LIKE 'report-%' ORDER BY id`,
    )).filter((e) => (JSON.parse(e.details) as { request?: number }).request === request).map((e) => `${e.action}:${e.outcome}`);

    before(async () => {
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({ index: db.config });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      await stow(atrium.tokens['CLIN-SUD']!, knee.file);
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'manip.sud', displayName: 'Manipulateur Sud', roles: ['technologist'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'rad.a', displayName: 'Dr A', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'rad.b', displayName: 'Dr B', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'neuro', displayName: 'Dr Neuro', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'admin.ght', displayName: 'Admin GHT', roles: ['territory-admin'], sites: [], password }, by);
      for (const who of ['manip.sud', 'rad.a', 'rad.b', 'neuro', 'admin.ght']) await login(who);
      // The TS-2 patient record exists (a prior exam); the stroke exam's images are still to come.
      await stow(atrium.tokens['CLIN-SUD']!, prior.file);
    });

    after(async () => {
      await atrium?.close();
      await cleanup?.();
    });

    it('returns an incomplete request to its sender with every missing mandatory field, and files nothing', async () => {
      const r = await send('manip.sud', '/requests', { patient: { PatientID: 'TS-1' }, urgency: 'routine', modality: 'MR' });
      assert.equal(r.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      const problem = await json<{ missing: string[]; detail: string }>(r, 422);
      assert.deepEqual(problem.missing, ['bodyPart', 'specialty', 'clinicalContext', 'clinicalQuestion', 'requestingPhysician.name', 'proposedProtocol', 'StudyInstanceUID or AccessionNumber']);
      assert.match(problem.detail, /returned to the sender/);
      const n = await atrium.archive.index.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM tele_requests');
      assert.equal(Number(n!.n), 0);
    });

    it('refuses a request for an unknown patient or an unknown study with 404 naming it', async () => {
      const p = await json<{ detail: string }>(await send('manip.sud', '/requests', { ...complete, patient: { PatientID: 'NOBODY' }, StudyInstanceUID: knee.uids.study }), 404);
      assert.match(p.detail, /patient NOBODY .* is unknown at CLIN-SUD/);
      const s = await json<{ detail: string }>(await send('manip.sud', '/requests', { ...complete, StudyInstanceUID: '1.2.3.999' }), 404);
      assert.match(s.detail, /study 1\.2\.3\.999 is not in the archive/);
      // Another site's study is answered exactly as a missing one (it named 'another patient record').
      const elsewhere = syntheticInstance({ PatientID: 'TS-NORD', Modality: 'MR', Rows: 4, Columns: 4 });
      await stow(atrium.tokens['CHU-NORD']!, elsewhere.file);
      const other = await json<{ detail: string }>(await send('manip.sud', '/requests', { ...complete, StudyInstanceUID: elsewhere.uids.study }), 404);
      assert.equal(other.detail, `study ${elsewhere.uids.study} is not in the archive: name it by AccessionNumber if its images are still to come`);
      const urgency = await json<{ detail: string }>(await send('manip.sud', '/requests', { ...complete, urgency: 'soon', StudyInstanceUID: knee.uids.study }), 400);
      assert.match(urgency.detail, /urgency must be one of routine, urgent, stroke/);
    });

    let kneeRequest: number;

    it('files a complete request, validates its protocol, and lets exactly one of two radiologists claim it (the other: 409)', async () => {
      const created = await json<{ id: number; status: string; requestingSite: string; deadlineAt: string }>(
        await send('manip.sud', '/requests', { ...complete, StudyInstanceUID: knee.uids.study }), 201);
      kneeRequest = created.id;
      assert.equal(created.status, 'awaiting-protocol');
      assert.equal(created.requestingSite, 'CLIN-SUD');
      // A change of protocol needs its reason.
      await json(await send('rad.a', `/requests/${kneeRequest}/protocol`, { decision: 'changed', protocol: 'IRM genou avec arthro' }), 400);
      const decided = await json<{ status: string; protocol: { decision: string; protocol: string; by: string } }>(
        await send('rad.a', `/requests/${kneeRequest}/protocol`, { decision: 'changed', protocol: 'IRM genou 3D DP FS', reason: 'séquence 3D pour le ménisque' }), 200);
      assert.equal(decided.status, 'open');
      assert.deepEqual([decided.protocol.decision, decided.protocol.protocol, decided.protocol.by], ['changed', 'IRM genou 3D DP FS', 'rad.a']);
      await json(await send('rad.b', `/requests/${kneeRequest}/protocol`, { decision: 'validated' }), 409);

      const claims = await Promise.all([send('rad.a', `/requests/${kneeRequest}/claim`), send('rad.b', `/requests/${kneeRequest}/claim`)]);
      const statuses = claims.map((r) => r.status).sort();
      assert.deepEqual(statuses, [200, 409]);
      const winner = claims[0]!.status === 200 ? 'rad.a' : 'rad.b';
      const loser = winner === 'rad.a' ? 'rad.b' : 'rad.a';
      const lost = await json<{ detail: string }>(claims.find((r) => r.status === 409)!, 409);
      assert.match(lost.detail, new RegExp(`already claimed by ${winner}`));
      const won = await json<{ assignedTo: string; claimedBy: string }>(claims.find((r) => r.status === 200)!, 200);
      assert.deepEqual([won.assignedTo, won.claimedBy], [winner, winner]);
      // Whoever holds the reading, the loser releases nothing and the winner's claim stands.
      await json(await send(loser, `/requests/${kneeRequest}/claim`, undefined, 'DELETE'), 409);
      if (winner !== 'rad.a') {
        // rad.a reads this one in the next test: hand it over.
        await json(await send('rad.b', `/requests/${kneeRequest}/claim`, undefined, 'DELETE'), 200);
        await json(await send('rad.a', `/requests/${kneeRequest}/claim`), 200);
      }
    });

    it('lists the worklist in deadline order with its filters, without patient identity', async () => {
      const list = await json<Array<Record<string, unknown>>>(await get('rad.b', '/worklist?site=CLIN-SUD&modality=MR&urgency=routine'), 200);
      assert.equal(list.length, 1);
      assert.equal(list[0]!.id, kneeRequest);
      assert.equal(list[0]!.claimedBy, 'rad.a');
      assert.equal(JSON.stringify(list).includes('TS-1') || JSON.stringify(list).includes('Bruno'), false);
      assert.deepEqual(await json(await get('rad.b', '/worklist?modality=CT'), 200), []);
      assert.deepEqual(await json(await get('rad.b', '/worklist?status=reported'), 200), []);
      await json(await get('rad.b', '/worklist?status=lost'), 400);
      // The requesting site's technologist sees its own requests; the request whole (patient) too.
      assert.equal((await json<unknown[]>(await get('manip.sud', '/worklist'), 200)).length, 1);
      const whole = await json<{ patient: { PatientID: string } }>(await get('manip.sud', `/requests/${kneeRequest}`), 200);
      assert.equal(whole.patient.PatientID, 'TS-1');
      // A radiologist not assigned does not see the patient's request whole.
      await json(await get('rad.b', `/requests/${kneeRequest}`), 404);
    });

    it('offers report templates per exam type, written by administrators, and holds drafts to their fields', async () => {
      const template = { name: 'IRM du genou', modality: 'MR', bodyPart: 'KNEE', findings: 'Ménisques :\nLigaments :', fields: [{ name: 'menisque_interne', label: 'Ménisque interne', required: true }, { name: 'menisque_externe', required: true }, { name: 'LCA' }] };
      await json(await send('manip.sud', '/templates/irm-genou', template, 'PUT'), 403);
      await json(await send('admin.ght', '/templates/irm-genou', template, 'PUT'), 200);
      await json(await send('admin.ght', '/templates/ct-crane', { name: 'Scanner cérébral', modality: 'CT', bodyPart: 'HEAD', fields: [] }, 'PUT'), 200);
      const offered = await json<Array<{ code: string; fields: Array<{ name: string; label: string; required: boolean }> }>>(await get('rad.a', '/templates?modality=MR&bodyPart=KNEE'), 200);
      assert.deepEqual(offered.map((t) => t.code), ['irm-genou']);
      assert.deepEqual(offered[0]!.fields[1], { name: 'menisque_externe', label: 'menisque_externe', required: true });
      assert.match((await json<{ detail: string }>(await send('rad.a', `/requests/${kneeRequest}/report`, { template: 'nope' }, 'PUT'), 400)).detail, /no report template nope/);
      assert.match((await json<{ detail: string }>(await send('rad.a', `/requests/${kneeRequest}/report`, { template: 'irm-genou', fields: { rotule: 'x' } }, 'PUT'), 400)).detail, /has no field rotule/);
    });

    it('keeps the draft on the server as typed: a reader whose connection drops finds it again in a new session', async () => {
      const first = await json<{ status: string; version: number }>(
        await send('rad.a', `/requests/${kneeRequest}/report`, { template: 'irm-genou', findings: 'Fissure horizontale de la corne postérieure', fields: { menisque_interne: 'fissure' } }, 'PUT'), 200);
      assert.deepEqual([first.status, first.version], ['draft', 1]);
      await json(await send('rad.a', `/requests/${kneeRequest}/report`, { conclusion: 'Lésion méniscale interne', baseVersion: 1 }, 'PUT'), 200);
      // A second tab still at version 1 does not overwrite what the first saved.
      const stale = await json<{ detail: string }>(await send('rad.a', `/requests/${kneeRequest}/report`, { conclusion: 'ancienne', baseVersion: 1 }, 'PUT'), 409);
      assert.match(stale.detail, /saved meanwhile \(version 2, not 1\)/);
      // Another radiologist cannot write into the reading rad.a holds.
      await json(await send('rad.b', `/requests/${kneeRequest}/report`, { conclusion: 'autre' }, 'PUT'), 409);
      await login('rad.a');
      const again = await json<{ findings: string; conclusion: string; fields: Record<string, string>; version: number; status: string }>(await get('rad.a', `/requests/${kneeRequest}/report`), 200);
      assert.deepEqual(again, { ...again, findings: 'Fissure horizontale de la corne postérieure', conclusion: 'Lésion méniscale interne', fields: { menisque_interne: 'fissure' }, version: 2, status: 'draft' });
    });

    it('refuses a signature by a radiologist not assigned (403), signs for the reader, then refuses edits (409) and takes an addendum', async () => {
      await json(await send('rad.b', `/requests/${kneeRequest}/report/sign`, {}), 403);
      const incomplete = await json<{ missing: string[] }>(await send('rad.a', `/requests/${kneeRequest}/report/sign`, {}), 422);
      assert.deepEqual(incomplete.missing, ['menisque_externe'], 'the template\'s required fields');
      await json(await send('rad.a', `/requests/${kneeRequest}/report`, { fields: { menisque_interne: 'fissure', menisque_externe: 'normal' } }, 'PUT'), 200);
      const signed = await json<{ status: string; signedBy: string; signedAt: string }>(await send('rad.a', `/requests/${kneeRequest}/report/sign`, {}), 200);
      assert.deepEqual([signed.status, signed.signedBy], ['final', 'rad.a']);
      const edit = await json<{ detail: string }>(await send('rad.a', `/requests/${kneeRequest}/report`, { conclusion: 'changée en silence' }, 'PUT'), 409);
      assert.match(edit.detail, /signed: add an addendum instead/);
      await json(await send('rad.a', `/requests/${kneeRequest}/report/sign`, {}), 409);
      await json(await send('rad.b', `/requests/${kneeRequest}/report/addenda`, { text: 'pas le mien' }), 403);
      const amended = await json<{ status: string; conclusion: string; addenda: Array<{ text: string; signedBy: string }> }>(
        await send('rad.a', `/requests/${kneeRequest}/report/addenda`, { text: 'Épanchement articulaire modéré associé.' }), 201);
      assert.equal(amended.status, 'amended');
      assert.equal(amended.conclusion, 'Lésion méniscale interne');
      assert.deepEqual(amended.addenda.map((a) => [a.text, a.signedBy]), [['Épanchement articulaire modéré associé.', 'rad.a']]);
      const request = await json<{ status: string }>(await get('manip.sud', `/requests/${kneeRequest}`), 200);
      assert.equal(request.status, 'reported');
      assert.deepEqual(await json(await get('rad.b', '/worklist'), 200), [], 'a reported request leaves the worklists');
      assert.deepEqual(await auditActions(kneeRequest), [
        'tele-request:success', 'tele-protocol:success', 'tele-claim:success', ...(await auditActions(kneeRequest)).slice(3, -7),
        'report-draft:success', 'report-draft:success', 'report-sign:refused', 'report-draft:success', 'report-sign:success', 'report-addendum:refused', 'report-addendum:success',
      ]);
    });

    it('asks an expert for a second reading of a reported exam, opens the study to them, and records their answer and agreement once', async () => {
      const asked = await json<{ id: number; expert: string; status: string }>(
        await send('manip.sud', `/requests/${kneeRequest}/second-readings`, { specialty: 'msk', question: 'Avis sur la corne postérieure ?', expert: 'rad.b' }), 201);
      assert.deepEqual([asked.expert, asked.status], ['rad.b', 'requested']);
      // The first reader is not a second opinion; nobody on call for a specialty without a rota: name one.
      await json(await send('manip.sud', `/requests/${kneeRequest}/second-readings`, { specialty: 'msk', question: 'Avis ?', expert: 'rad.a' }), 400);
      await json(await send('manip.sud', `/requests/${kneeRequest}/second-readings`, { specialty: 'thorax', question: 'Avis ?' }), 409);
      const images = await request(sessions['rad.b']!.jar, `${base}/dicom-web/studies/${knee.uids.study}/metadata`);
      assert.equal(images.status, 200, 'the expert sees the study (assignment grant)');
      assert.deepEqual((await json<Array<{ id: number }>>(await get('rad.b', '/second-readings'), 200)).map((r) => r.id), [asked.id]);
      await json(await send('rad.a', `/second-readings/${asked.id}/answer`, { conclusion: 'Pas de lésion', agreement: 'disagree' }), 403);
      await json(await send('rad.b', `/second-readings/${asked.id}/answer`, { conclusion: 'Pas de lésion', agreement: 'perhaps' }), 400);
      const answered = await json<{ status: string; agreement: string; conclusion: string }>(
        await send('rad.b', `/second-readings/${asked.id}/answer`, { findings: 'Signal intraméniscal sans fissure', conclusion: 'Pas de lésion méniscale', agreement: 'disagree' }), 200);
      assert.deepEqual([answered.status, answered.agreement, answered.conclusion], ['answered', 'disagree', 'Pas de lésion méniscale']);
      await json(await send('rad.b', `/second-readings/${asked.id}/answer`, { conclusion: 'autre', agreement: 'agree' }), 409);
      const after = await request(sessions['rad.b']!.jar, `${base}/dicom-web/studies/${knee.uids.study}/metadata`);
      assert.equal(after.status, 404, 'the grant ends with the answer');
      // The requesting site reads the answer.
      assert.equal((await json<{ agreement: string }>(await get('manip.sud', `/second-readings/${asked.id}`), 200)).agreement, 'disagree');
    });

    it('counts the acts by month, specialty, sites and urgency with their turnaround, as JSON and CSV, for administrators only', async () => {
      await json(await get('manip.sud', '/activity?from=2000-01-01&to=2100-01-01'), 403);
      await json(await get('admin.ght', '/activity?from=2100-01-01&to=2000-01-01'), 400);
      const rows = await json<Array<{ period: string; act: string; specialty: string; requestingSite: string; readingSite: string; urgency: string; count: number; medianMinutes: number }>>(
        await get('admin.ght', '/activity?from=2000-01-01&to=2100-01-01'), 200);
      const month = new Date().toISOString().slice(0, 7);
      assert.deepEqual(rows.map((r) => [r.period, r.act, r.specialty, r.requestingSite, r.readingSite, r.urgency, r.count]), [
        [month, 'primary-reading', 'msk', 'CLIN-SUD', 'CHU-NORD', 'routine', 1],
        [month, 'second-reading', 'msk', 'CLIN-SUD', 'CHU-NORD', 'routine', 1],
      ]);
      assert.ok(rows.every((r) => r.medianMinutes >= 0 && r.medianMinutes < 5));
      const csv = await get('admin.ght', '/activity.csv?from=2000-01-01&to=2100-01-01&by=year');
      assert.equal(csv.status, 200);
      assert.match(csv.headers.get('content-type')!, /^text\/csv/);
      const lines = (await csv.text()).trimEnd().split('\r\n');
      assert.equal(lines[0], 'period,act,specialty,requestingSite,readingSite,urgency,count,medianMinutes,p90Minutes');
      assert.match(lines[1]!, new RegExp(`^${month.slice(0, 4)},primary-reading,msk,CLIN-SUD,CHU-NORD,routine,1,`));
      assert.equal(lines.length, 3);
    });

    it('gives a stroke request to the on-call neuroradiologist at once, and opens its images to them when they arrive', async () => {
      const now = Date.now();
      await json(await send('manip.sud', '/oncall', { login: 'neuro', specialty: 'neuro', startsAt: new Date(now - 3_600_000).toISOString(), endsAt: new Date(now + 3_600_000).toISOString() }), 403);
      const shift = await json<{ login: string }>(await send('admin.ght', '/oncall', { login: 'neuro', specialty: 'neuro', startsAt: new Date(now - 3_600_000).toISOString(), endsAt: new Date(now + 3_600_000).toISOString() }), 201);
      assert.equal(shift.login, 'neuro');
      const stroke = await json<{ id: number; assignedTo: string; deadlineAt: string }>(await send('manip.sud', '/requests', {
        ...complete, patient: { PatientID: 'TS-2' }, urgency: 'stroke', modality: 'CT', bodyPart: 'HEAD', specialty: 'neuro',
        clinicalContext: 'Hémiplégie droite brutale à 10h20', clinicalQuestion: 'Thrombolyse ?', proposedProtocol: 'Scanner cérébral sans injection + angioscanner',
        AccessionNumber: 'AVC-0001',
      }), 201);
      assert.equal(stroke.assignedTo, 'neuro');
      assert.ok(Date.parse(stroke.deadlineAt) - now <= 31 * 60_000, 'a stroke deadline is minutes away');
      const top = await json<Array<{ id: number; urgency: string }>>(await get('neuro', '/worklist?mine=true'), 200);
      assert.deepEqual(top.map((e) => [e.id, e.urgency]), [[stroke.id, 'stroke']]);
      // The study does not exist yet: nothing to see.
      const before = await request(sessions.neuro!.jar, `${base}/dicom-web/studies/${head.uids.study}/metadata`);
      assert.equal(before.status, 404);
      await stow(atrium.tokens['CLIN-SUD']!, head.file);
      await atrium.teleImages.drain();
      const arrived = await json<{ StudyInstanceUID: string; imagesArrivedAt: string }>(await get('neuro', `/requests/${stroke.id}`), 200);
      assert.equal(arrived.StudyInstanceUID, head.uids.study);
      assert.ok(arrived.imagesArrivedAt);
      const images = await request(sessions.neuro!.jar, `${base}/dicom-web/studies/${head.uids.study}/metadata`);
      assert.equal(images.status, 200, 'the assigned reader sees the images (assignment grant)');
      // rad.b, a member of another site and not assigned, does not.
      const others = await request(sessions['rad.b']!.jar, `${base}/dicom-web/studies/${head.uids.study}/metadata`);
      assert.equal(others.status, 404);
    });

    it('releases a claim when it lapses: another radiologist then claims the reading, and the first loses its grant', async () => {
      const created = await json<{ id: number }>(await send('manip.sud', '/requests', { ...complete, urgency: 'urgent', StudyInstanceUID: knee.uids.study }), 201);
      await json(await send('rad.a', `/requests/${created.id}/claim`), 200);
      await json(await send('rad.b', `/requests/${created.id}/claim`), 409);
      await atrium.archive.index.sql.run('UPDATE tele_requests SET claim_expires_at = ? WHERE id = ?', [new Date(Date.now() - 1000).toISOString(), created.id]);
      const taken = await json<{ claimedBy: string; assignedTo: string }>(await send('rad.b', `/requests/${created.id}/claim`), 200);
      assert.deepEqual([taken.claimedBy, taken.assignedTo], ['rad.b', 'rad.b']);
      const grants = await atrium.archive.index.sql.all<{ login: string; revoked: number }>(
        `SELECT u.login, CASE WHEN g.revoked_at IS NULL THEN 0 ELSE 1 END AS revoked FROM access_grants g JOIN users u ON u.id = g.user_id
          WHERE g.kind = 'assignment' AND g.reason = ? ORDER BY g.id`, [`teleradiology request ${created.id}`]);
      assert.deepEqual(grants.map((g) => [g.login, Number(g.revoked)]), [['rad.a', 1], ['rad.b', 0]]);
      // The first reader's draft after the lapse is refused: the reading is rad.b's now.
      await json(await send('rad.a', `/requests/${created.id}/report`, { findings: 'trop tard' }, 'PUT'), 409);
    });

    it('lets a radiologist return a request to its site with the reason', async () => {
      const created = await json<{ id: number }>(await send('manip.sud', '/requests', { ...complete, StudyInstanceUID: knee.uids.study }), 201);
      await json(await send('rad.a', `/requests/${created.id}/return`, { reason: '' }), 400);
      const returned = await json<{ status: string; returnedReason: string }>(await send('rad.a', `/requests/${created.id}/return`, { reason: 'Examen non indiqué : radiographie d\'abord' }), 200);
      assert.deepEqual([returned.status, returned.returnedReason], ['returned', 'Examen non indiqué : radiographie d\'abord']);
      await json(await send('rad.a', `/requests/${created.id}/claim`), 409);
    });

    it('escalates a request nobody reads as its deadline nears: flagged once, and given to the radiologist on call for its specialty', async () => {
      const created = await json<{ id: number; deadlineAt: string; assignedTo?: string }>(await send('manip.sud', '/requests', { ...complete, StudyInstanceUID: knee.uids.study }), 201);
      assert.equal(created.assignedTo, undefined, 'a routine request waits in the pool');
      const now = Date.now();
      await json(await send('admin.ght', '/oncall', { login: 'rad.b', specialty: 'msk', startsAt: new Date(now - 3_600_000).toISOString(), endsAt: new Date(now + 3 * 86_400_000).toISOString() }), 201);
      const requests = new TeleRequests(atrium.archive, atrium.config.teleradiology);
      const early = new Date(Date.parse(created.deadlineAt) - 300 * 60_000);
      assert.equal((await requests.escalateNearDeadlines(early)).includes(created.id), false, 'not yet: 300 minutes before a routine deadline');
      const near = new Date(Date.parse(created.deadlineAt) - 100 * 60_000);
      assert.ok((await requests.escalateNearDeadlines(near)).includes(created.id));
      assert.deepEqual(await requests.escalateNearDeadlines(near), [], 'once');
      const escalated = await json<{ assignedTo: string; escalatedAt: string }>(await get('rad.b', `/requests/${created.id}`), 200);
      assert.equal(escalated.assignedTo, 'rad.b');
      assert.ok(escalated.escalatedAt);
      const mine = await json<Array<{ id: number; escalated: boolean }>>(await get('rad.b', '/worklist?mine=true'), 200);
      assert.equal(mine.find((e) => e.id === created.id)?.escalated, true);
    });

    it('keeps the audit chain whole', async () => {
      const { AuditTrail } = await import('../src/access/audit.ts');
      assert.equal((await new AuditTrail(atrium.archive.index.sql).verify()).ok, true);
    });
  });
}
