/**
 * Who may see what, for people: each role logs in (Pro Santé Connect through a real OpenID
 * Connect provider, or a local account) and meets each HTTP entry point (QIDO-RS, WADO-RS,
 * the study archive, the portal API). A professional sees an exam only with a reason: their
 * site, the exam they referred, a share, a declared emergency; a patient sees their own; a
 * share link opens what it shares until revoked. What may not be seen is answered as absent.
 */
import assert from 'node:assert/strict';
import { stowBody, stowFiles } from './support/stow.ts';
import { after, before, describe, it } from 'node:test';
import type { RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { startAtriumWithProvider } from './support/provider-and-atrium.ts';
import type { TestIdentityProvider } from './support/oidc-provider.ts';
import { CookieJar, loginThroughProvider, request } from './support/browser-session.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { Tags, type DicomDataset, type DicomElement, type Tag, type VR } from '../src/dicom/dataset.ts';

const engine = testDatabases().at(-1)!;
const password = 'un mot de passe assez long pour les tests';
const accounts = {
  radiologist: { sub: 'psc-rad-nord', SubjectNameID: '810002222222', given_name: 'Anne', family_name: 'Radiologue' },
  referring: { sub: 'psc-med-ville', SubjectNameID: '810001111111', given_name: 'Marc', family_name: 'Generaliste' },
  siteAdmin: { sub: 'psc-admin-sud', SubjectNameID: '810003333333', given_name: 'Sophie', family_name: 'Admin' },
  territoryAdmin: { sub: 'psc-admin-ght', SubjectNameID: '810004444444', given_name: 'Paul', family_name: 'Territoire' },
};

function element(tag: Tag, vr: VR, value: string): [Tag, DicomElement] {
  let bytes = Buffer.from(value, 'latin1');
  if (bytes.length % 2 === 1) bytes = Buffer.concat([bytes, Buffer.from(' ')]);
  return [tag, { tag, vr, value: bytes }];
}

/** Referring Physician Identification Sequence naming an RPPS number. */
function referringPhysician(rpps: string): DicomElement[] {
  const code: DicomDataset = new Map([element(Tags.CodeValue, 'SH', rpps), element(0x00080102 as Tag, 'SH', 'RPPS')]);
  const person: DicomDataset = new Map([[Tags.PersonIdentificationCodeSequence, { tag: Tags.PersonIdentificationCodeSequence, vr: 'SQ', items: [code] }]]);
  return [{ tag: Tags.ReferringPhysicianIdentificationSequence, vr: 'SQ', items: [person] }];
}

describe(`access by role (${engine.name})`, () => {
  let idp: TestIdentityProvider;
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  const north = syntheticInstance({ PatientID: 'PN-1', PatientName: 'Nord^Alice', Rows: 4, Columns: 4, extra: referringPhysician('10001111111') });
  const south = syntheticInstance({ PatientID: 'PS-1', PatientName: 'Sud^Bruno', Rows: 4, Columns: 4 });
  const southOther = syntheticInstance({ PatientID: 'PS-2', PatientName: 'Sud^Claire', Rows: 4, Columns: 4 });
  const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};

  const stow = async (token: string, file: Buffer) => {
    const r = await stowFiles(`${base}/dicom-web`, token, [file]);
    assert.equal(r.status, 200, await r.text());
  };
  const as = (who: string) => sessions[who]!;
  const get = (who: string, url: string) => request(as(who).jar, `${base}${url}`);
  const post = (who: string, url: string, body: unknown, method = 'POST') => request(as(who).jar, `${base}${url}`, {
    method, headers: { 'content-type': 'application/json', 'x-csrf-token': as(who).csrf }, body: JSON.stringify(body),
  });
  const studiesSeen = async (who: string, query = '') => {
    const r = await get(who, `/dicom-web/studies${query}`);
    assert.equal(r.status, 200);
    return ((await r.json()) as Array<Record<string, { Value: string[] }>>).map((s) => s['0020000D']!.Value[0]).sort();
  };
  const sorted = (...uids: string[]) => [...uids].sort();
  const openSession = async (who: string, jar: CookieJar) => {
    const me = await request(jar, `${base}/auth/me`);
    assert.equal(me.status, 200, await me.clone().text());
    sessions[who] = { jar, csrf: ((await me.json()) as { csrfToken: string }).csrfToken };
  };
  const loginWithProvider = async (who: string, sub: string) => {
    const jar = new CookieJar();
    const r = await loginThroughProvider(base, jar, sub, '/app/');
    assert.equal(r.status, 302, await r.clone().text());
    await openSession(who, jar);
  };
  const loginLocal = async (who: string, login: string) => {
    const jar = new CookieJar();
    const r = await request(jar, `${base}/auth/local`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login, password }) });
    assert.equal(r.status, 200, await r.clone().text());
    await openSession(who, jar);
  };
  const lastView = async (actor: string, study: string) => atrium.archive.index.sql.get<{ outcome: string; details: string }>(
    `SELECT outcome, details FROM audit_events WHERE actor = ? AND study_instance_uid = ? AND action IN ('view', 'download') ORDER BY id DESC LIMIT 1`, [actor, study]);

  before(async () => {
    ({ atrium, idp, base, close: cleanup } = await startAtriumWithProvider({ engine, accounts: Object.values(accounts) }));
    await stow(atrium.tokens['CHU-NORD']!, north.file);
    await stow(atrium.tokens['CLIN-SUD']!, south.file);
    await stow(atrium.tokens['CLIN-SUD']!, southOther.file);
    const sud = atrium.archive.sites.get('CLIN-SUD')!;
    const patientRecord = (await atrium.archive.index.patientRecordId(sud.id, sud.issuerOfPatientID, 'PS-1'))!;
    const by = { actor: 'test', via: 'cli' as const };
    await addUser(atrium.archive, { login: 'rad.nord', displayName: 'Dr Anne Radiologue', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10002222222' }, by);
    await addUser(atrium.archive, { login: 'med.ville', displayName: 'Dr Marc Généraliste', roles: ['referring-physician'], sites: [], rpps: '10001111111' }, by);
    await addUser(atrium.archive, { login: 'admin.sud', displayName: 'Sophie Admin', roles: ['site-admin'], sites: ['CLIN-SUD'], rpps: '10003333333' }, by);
    await addUser(atrium.archive, { login: 'admin.ght', displayName: 'Paul Territoire', roles: ['territory-admin'], sites: [], rpps: '10004444444' }, by);
    await addUser(atrium.archive, { login: 'manip.sud', displayName: 'Manipulateur Sud', roles: ['technologist'], sites: ['CLIN-SUD'], password }, by);
    await addUser(atrium.archive, { login: 'bruno.sud', displayName: 'Bruno Sud', roles: ['patient'], sites: [], patientId: patientRecord, password }, by);
    await loginWithProvider('radiologist', accounts.radiologist.sub);
    await loginWithProvider('referring', accounts.referring.sub);
    await loginWithProvider('siteAdmin', accounts.siteAdmin.sub);
    await loginWithProvider('territoryAdmin', accounts.territoryAdmin.sub);
    await loginLocal('technologist', 'manip.sud');
    await loginLocal('patient', 'bruno.sud');
  });

  after(async () => {
    await cleanup?.();
  });

  it('shows each role the exams it has a reason for, and nothing of the others (not even a count)', async () => {
    assert.deepEqual(await studiesSeen('radiologist'), [north.uids.study], 'member of the producing site');
    assert.deepEqual(await studiesSeen('referring'), [north.uids.study], 'referring physician of the exam, by RPPS');
    assert.deepEqual(await studiesSeen('technologist'), sorted(south.uids.study, southOther.uids.study));
    assert.deepEqual(await studiesSeen('siteAdmin'), sorted(south.uids.study, southOther.uids.study));
    assert.deepEqual(await studiesSeen('territoryAdmin'), sorted(north.uids.study, south.uids.study, southOther.uids.study));
    assert.deepEqual(await studiesSeen('patient'), [south.uids.study], 'a patient sees their own exams');
    // A query naming another site's patient answers like a query for nobody.
    assert.deepEqual(await studiesSeen('radiologist', '?PatientID=PS-1'), []);
    assert.deepEqual(await studiesSeen('radiologist', '?PatientID=NOBODY'), []);
    const series = await get('radiologist', `/dicom-web/studies/${south.uids.study}/series`);
    assert.deepEqual(await series.json(), []);
  });

  it('answers WADO-RS and the study archive outside the care relationship as if the study were absent, and records the refusal', async () => {
    for (const url of [`/dicom-web/studies/${south.uids.study}/metadata`, `/dicom-web/studies/${south.uids.study}`, `/dicom-web/studies/${south.uids.study}/archive`]) {
      const r = await get('radiologist', url);
      assert.equal(r.status, 404, url);
      const body = await r.text();
      assert.match(body, /is not in the archive/);
      assert.doesNotMatch(body, /Sud\^Bruno|PS-1/);
    }
    assert.equal((await lastView('rad.nord', south.uids.study))?.outcome, 'refused');
    const own = await get('referring', `/dicom-web/studies/${north.uids.study}/metadata`);
    assert.equal(own.status, 200);
    assert.equal(JSON.parse((await lastView('med.ville', north.uids.study))!.details).access, 'referring-physician');
    const zip = await get('technologist', `/dicom-web/studies/${south.uids.study}/archive`);
    assert.equal(zip.status, 200);
    assert.equal(zip.headers.get('content-type'), 'application/zip');
    assert.equal((await lastView('manip.sud', south.uids.study))?.outcome, 'success');
  });

  it('lets only the roles that may do it store, share, correct and read the audit trail', async () => {
    // The referring physician and the patient store nothing; the technologist shares nothing.
    const { body, contentType } = stowBody([syntheticInstance({ PatientID: 'PX', Rows: 2, Columns: 2 }).file]);
    const stowBy = (who: string) => request(as(who).jar, `${base}/dicom-web/studies`, {
      method: 'POST', body: new Uint8Array(body), headers: { 'x-csrf-token': as(who).csrf, 'content-type': contentType },
    });
    assert.equal((await stowBy('referring')).status, 403);
    assert.equal((await stowBy('patient')).status, 403);
    assert.equal((await stowBy('technologist')).status, 200, 'a technologist of one site stores for it');
    assert.equal((await post('technologist', '/api/shares', { StudyInstanceUID: south.uids.study, toUser: 'rad.nord' })).status, 403);
    assert.equal((await post('radiologist', '/api/corrections/study-move', { StudyInstanceUID: north.uids.study, PatientID: 'X', reason: 'wrong patient' })).status, 403);
    assert.equal((await get('radiologist', '/api/audit/patient?site=CLIN-SUD&PatientID=PS-1')).status, 403);
    // A site administrator reads the trail of their own site's patients only.
    assert.equal((await get('siteAdmin', '/api/audit/patient?site=CHU-NORD&PatientID=PN-1')).status, 403);
    assert.equal((await get('siteAdmin', '/api/audit/patient?site=CLIN-SUD&PatientID=PS-1')).status, 200);
    // Cookie-authenticated changes need the session's CSRF token.
    const forged = await request(as('siteAdmin').jar, `${base}/api/shares`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ StudyInstanceUID: south.uids.study, toUser: 'rad.nord' }) });
    assert.equal(forged.status, 403);
  });

  it('opens an exam to a professional it is shared with, until the share is revoked', async () => {
    const shared = await post('siteAdmin', '/api/shares', { StudyInstanceUID: south.uids.study, toUser: 'rad.nord' });
    assert.equal(shared.status, 201, await shared.clone().text());
    const { grant } = (await shared.json()) as { grant: { id: number } };
    assert.deepEqual(await studiesSeen('radiologist'), sorted(north.uids.study, south.uids.study));
    assert.equal((await get('radiologist', `/dicom-web/studies/${south.uids.study}/metadata`)).status, 200);
    assert.equal(JSON.parse((await lastView('rad.nord', south.uids.study))!.details).access, 'share');
    // Nobody shares what they cannot see.
    assert.equal((await post('radiologist', '/api/shares', { StudyInstanceUID: southOther.uids.study, toUser: 'med.ville' })).status, 404);
    assert.equal((await post('siteAdmin', `/api/shares/grants/${grant.id}`, {}, 'DELETE')).status, 200);
    assert.deepEqual(await studiesSeen('radiologist'), [north.uids.study]);
    assert.equal((await get('radiologist', `/dicom-web/studies/${south.uids.study}/metadata`)).status, 404);
  });

  it('gives emergency access only with a typed reason, and shows it to the patient\'s site afterwards', async () => {
    const patient = { site: 'CLIN-SUD', PatientID: 'PS-2' };
    assert.equal((await post('radiologist', '/api/emergency-access', { patient, reason: 'urgent' })).status, 400);
    assert.equal((await post('patient', '/api/emergency-access', { patient, reason: 'je veux voir les images de quelqu\'un' })).status, 403);
    const declared = await post('radiologist', '/api/emergency-access', { patient, reason: 'AVC suspecté, patient transféré aux urgences du CHU' });
    assert.equal(declared.status, 201, await declared.clone().text());
    assert.deepEqual(await studiesSeen('radiologist'), sorted(north.uids.study, southOther.uids.study));
    assert.equal((await get('radiologist', `/dicom-web/studies/${southOther.uids.study}/metadata`)).status, 200);
    assert.equal(JSON.parse((await lastView('rad.nord', southOther.uids.study))!.details).access, 'emergency');
    const review = (await (await get('siteAdmin', '/api/emergency-access')).json()) as { accesses: Array<{ id: number; userLogin: string; reason: string; PatientID: string; reviewedAt?: string }> };
    const seen = review.accesses.find((a) => a.userLogin === 'rad.nord');
    assert.ok(seen, JSON.stringify(review));
    assert.equal(seen.PatientID, 'PS-2');
    assert.match(seen.reason, /AVC suspecté/);
    assert.equal((await post('siteAdmin', `/api/emergency-access/${seen.id}/reviewed`, {})).status, 200);
    const trail = (await (await get('siteAdmin', '/api/audit/patient?site=CLIN-SUD&PatientID=PS-2')).json()) as { events: Array<{ action: string; actor: string; reason?: string }> };
    assert.ok(trail.events.some((e) => e.action === 'emergency-access' && e.actor === 'rad.nord' && /AVC/.test(e.reason ?? '')));
  });

  it('opens a share link (PIN, QR code) for what it shares only, locks it after five wrong PINs, and ends it when revoked', async () => {
    const created = await post('siteAdmin', '/api/shares', { StudyInstanceUID: south.uids.study, link: { expiresInHours: 48, pin: '482913' } });
    assert.equal(created.status, 201, await created.clone().text());
    const link = (await created.json()) as { link: { id: number }; url: string; token: string; qrCodeSvg: string };
    assert.match(link.url, /\/share#/);
    assert.match(link.qrCodeSvg, /^<svg/);
    const holder = new CookieJar();
    const open = (pin?: string) => request(holder, `${base}/share/open`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: link.token, ...(pin ? { pin } : {}) }) });
    assert.equal((await open()).status, 401, 'the PIN is asked');
    assert.equal((await open('000000')).status, 401);
    const opened = await open('482913');
    assert.equal(opened.status, 200, await opened.clone().text());
    const seen = await request(holder, `${base}/dicom-web/studies`);
    assert.deepEqual(((await seen.json()) as Array<Record<string, { Value: string[] }>>).map((s) => s['0020000D']!.Value[0]), [south.uids.study]);
    assert.equal((await request(holder, `${base}/dicom-web/studies/${south.uids.study}/metadata`)).status, 200);
    assert.equal((await request(holder, `${base}/dicom-web/studies/${southOther.uids.study}/metadata`)).status, 404);
    assert.equal((await request(holder, `${base}/api/shares`, { method: 'GET' })).status, 200);
    assert.equal((await request(holder, `${base}/api/audit/patient`)).status, 403, 'a link holder reads no audit trail');
    const opening = await atrium.archive.index.sql.get<{ actor: string; study_instance_uid: string }>(`SELECT actor, study_instance_uid FROM audit_events WHERE action = 'share-open' AND outcome = 'success' ORDER BY id DESC LIMIT 1`);
    assert.deepEqual({ ...opening }, { actor: `share-link:${link.link.id}`, study_instance_uid: south.uids.study });
    // Revoked: the session opened on it ends, and the link opens no more.
    assert.equal((await post('siteAdmin', `/api/shares/links/${link.link.id}`, {}, 'DELETE')).status, 200);
    assert.equal((await request(holder, `${base}/dicom-web/studies`)).status, 401);
    assert.equal((await open('482913')).status, 404);
    // A PIN brute force: five wrong PINs lock the link, the right one no longer opens it.
    const guarded = (await (await post('siteAdmin', '/api/shares', { StudyInstanceUID: south.uids.study, link: { expiresInHours: 1, pin: '1234' } })).json()) as { token: string };
    const attempt = (pin: string) => fetch(`${base}/share/open`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: guarded.token, pin }) });
    const statuses = [];
    for (const pin of ['0000', '1111', '2222', '3333', '4444', '1234']) statuses.push((await attempt(pin)).status);
    assert.deepEqual(statuses, [401, 401, 401, 401, 423, 423]);
    const refused = await atrium.archive.index.sql.all<{ details: string }>(`SELECT details FROM audit_events WHERE action = 'share-open' AND outcome = 'refused'`);
    assert.ok(refused.length >= 8, 'every refused opening is recorded');
  });

  it('tells a patient who looked at their images', async () => {
    await get('territoryAdmin', `/dicom-web/studies/${south.uids.study}/metadata`);
    const r = await get('patient', '/api/audit/patient');
    assert.equal(r.status, 200);
    const { events } = (await r.json()) as { events: Array<{ action: string; actor: string; outcome: string }> };
    const viewers = new Set(events.filter((e) => e.action === 'view' && e.outcome === 'success').map((e) => e.actor));
    for (const who of ['rad.nord', 'admin.ght']) assert.ok(viewers.has(who), `${who} in ${[...viewers].join(', ')}`);
    assert.ok(!events.some((e) => e.actor === 'med.ville'), 'nobody else');
    assert.ok((await atrium.archive.index.sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM audit_events`))!.n > 0);
    assert.equal((await new (await import('../src/access/audit.ts')).AuditTrail(atrium.archive.index.sql).verify()).ok, true);
  });
});
