/**
 * The portal's patient API over HTTP: search by name (case and accents ignored), birth date,
 * INS and a site's PatientID; a person's timeline across sites. What the caller has no
 * reason to see is neither found nor counted, and every search is in the audit trail.
 */
import assert from 'node:assert/strict';
import { stowFiles } from './support/stow.ts';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { CookieJar, request } from './support/browser-session.ts';
import { syntheticInstance, type SyntheticOptions } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { INS_OIDS, insKeyOf, insValue, parseINS } from '../src/patients/ins.ts';
import { insOtherPatientIDsItem } from '../src/patients/ins-dicom.ts';

const engine = testDatabases().at(-1)!;
const password = 'un mot de passe assez long pour les tests';
const ins = parseINS('2800175123456' + insKeyOf('2800175123456'), INS_OIDS.NIR_TEST);
const withINS = [{ tag: 0x00101002, vr: 'SQ' as const, items: [insOtherPatientIDsItem(ins)] }];

interface Record { site: string; PatientID: string; PatientName?: string; INS?: string; NumberOfPatientRelatedStudies: number }
interface Study { site: string; PatientID: string; StudyInstanceUID: string; StudyDate?: string; ModalitiesInStudy: string[] }

describe(`the portal's patient API (${engine.name})`, () => {
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  const jars: { [who: string]: CookieJar } = {};
  const uids: { [name: string]: string } = {};

  const stow = async (site: string, o: SyntheticOptions) => {
    const obj = syntheticInstance({ Rows: 4, Columns: 4, ...o });
    const r = await stowFiles(`${base}/dicom-web`, atrium.tokens[site], [obj.file]);
    assert.equal(r.status, 200, await r.text());
    return obj.uids.study;
  };
  const get = async <T>(who: string, url: string): Promise<{ status: number; body: T }> => {
    const r = await request(jars[who]!, `${base}${url}`);
    return { status: r.status, body: (await r.json()) as T };
  };
  const search = async (who: string, query: string) => {
    const r = await get<{ patients: Record[] }>(who, `/api/patients?${query}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.patients.map((p) => `${p.site}/${p.PatientID}`).sort();
  };

  before(async () => {
    const db = await engine.open();
    cleanup = db.cleanup;
    atrium = await startAtrium({ index: db.config });
    base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    uids.nord = await stow('CHU-NORD', { PatientID: 'N-100', PatientName: 'Dubois^Anne', PatientBirthDate: '19800101', PatientSex: 'F', StudyDate: '20250101', extra: withINS });
    uids.sud = await stow('CLIN-SUD', { PatientID: 'S-977', PatientName: 'DUBOIS^Anne Marie', PatientBirthDate: '19800101', PatientSex: 'F', StudyDate: '20260202', extra: withINS });
    uids.other = await stow('CLIN-SUD', { PatientID: 'S-555', PatientName: 'Lefèvre^Élodie', PatientBirthDate: '19500101', PatientSex: 'F' });
    await atrium.identities.drain();
    const by = { actor: 'test', via: 'cli' as const };
    await addUser(atrium.archive, { login: 'rad.nord', displayName: 'Dr Anne Radiologue', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
    await addUser(atrium.archive, { login: 'admin.ght', displayName: 'Paul Territoire', roles: ['territory-admin'], sites: [], password }, by);
    for (const login of ['rad.nord', 'admin.ght']) {
      const jar = new CookieJar();
      const r = await request(jar, `${base}/auth/local`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login, password }) });
      assert.equal(r.status, 200, await r.text());
      jars[login] = jar;
    }
  });

  after(async () => {
    await atrium?.close();
    await cleanup?.();
  });

  it('finds patient records by any name component, ignoring case and accents', async () => {
    assert.deepEqual(await search('admin.ght', 'name=dubois'), ['CHU-NORD/N-100', 'CLIN-SUD/S-977']);
    assert.deepEqual(await search('admin.ght', 'name=MARIE'), ['CLIN-SUD/S-977']);
    assert.deepEqual(await search('admin.ght', 'name=lefevre'), ['CLIN-SUD/S-555']);
    assert.deepEqual(await search('admin.ght', 'name=%C3%A9lodie'), ['CLIN-SUD/S-555']);
  });

  it('finds them by birth date, by INS (every linked record), and by a site\'s PatientID', async () => {
    assert.deepEqual(await search('admin.ght', 'birthDate=19800101'), ['CHU-NORD/N-100', 'CLIN-SUD/S-977']);
    assert.deepEqual(await search('admin.ght', 'birthDate=19800101&site=CLIN-SUD'), ['CLIN-SUD/S-977']);
    assert.deepEqual(await search('admin.ght', `ins=${insValue(ins)}`), ['CHU-NORD/N-100', 'CLIN-SUD/S-977']);
    assert.deepEqual(await search('admin.ght', 'PatientID=S-555&site=CLIN-SUD'), ['CLIN-SUD/S-555']);
    assert.deepEqual(await search('admin.ght', 'PatientID=S-555&site=CHU-NORD'), []);
    const found = await get<{ patients: Record[] }>('admin.ght', '/api/patients?PatientID=N-100');
    assert.equal(found.body.patients[0]!.INS, insValue(ins), 'a qualified INS is shown');
    assert.equal(found.body.patients[0]!.NumberOfPatientRelatedStudies, 1);
    assert.equal((await get('admin.ght', '/api/patients')).status, 400, 'a search names something');
    assert.equal((await get('admin.ght', '/api/patients?name=x&site=NOWHERE')).status, 400);
  });

  it('pages a search: a page at most, where the next one starts, every record once over the pages', async () => {
    // Two "Dubois" records in scope for the territory: pages of one.
    type Page = { patients: Record[]; offset: number; limit: number; next?: number };
    const first = await get<Page>('admin.ght', '/api/patients?name=dubois&limit=1');
    assert.equal(first.status, 200);
    assert.deepEqual([first.body.patients.length, first.body.offset, first.body.limit, first.body.next], [1, 0, 1, 1]);
    const second = await get<Page>('admin.ght', `/api/patients?name=dubois&limit=1&offset=${first.body.next}`);
    assert.deepEqual([second.body.patients.length, second.body.offset, second.body.next], [1, 1, undefined], 'the last page says so');
    const seen = [...first.body.patients, ...second.body.patients].map((p) => `${p.site}/${p.PatientID}`).sort();
    assert.deepEqual(seen, ['CHU-NORD/N-100', 'CLIN-SUD/S-977']);
    const whole = await get<Page>('admin.ght', '/api/patients?name=dubois');
    assert.deepEqual([whole.body.limit, whole.body.next], [100, undefined]);
    // Past the end: an empty page; out of range: 400.
    assert.deepEqual((await get<Page>('admin.ght', '/api/patients?name=dubois&offset=5')).body.patients, []);
    for (const bad of ['limit=0', 'limit=101', 'offset=-1', 'limit=deux']) {
      assert.equal((await get('admin.ght', `/api/patients?name=dubois&${bad}`)).status, 400, bad);
    }
  });

  it('finds only the records the caller has a reason to see', async () => {
    assert.deepEqual(await search('rad.nord', 'name=dubois'), ['CHU-NORD/N-100']);
    assert.deepEqual(await search('rad.nord', `ins=${insValue(ins)}`), ['CHU-NORD/N-100']);
    assert.deepEqual(await search('rad.nord', 'name=lefevre'), []);
    assert.equal((await fetch(`${base}/api/patients?name=dubois`)).status, 401);
  });

  it('gives a person\'s timeline across sites, newest first, within the caller\'s scope', async () => {
    const all = await get<{ patient: Record; studies: Study[] }>('admin.ght', '/api/patients/timeline?site=CHU-NORD&PatientID=N-100');
    assert.equal(all.status, 200, JSON.stringify(all.body));
    assert.equal(all.body.patient.PatientID, 'N-100');
    assert.deepEqual(all.body.studies.map((s) => [s.site, s.StudyInstanceUID, s.StudyDate]), [['CLIN-SUD', uids.sud, '20260202'], ['CHU-NORD', uids.nord, '20250101']]);
    assert.deepEqual(all.body.studies[0]!.ModalitiesInStudy, ['CT']);
    const byStudy = await get<{ studies: Study[] }>('admin.ght', `/api/patients/timeline?StudyInstanceUID=${uids.sud}`);
    assert.equal(byStudy.body.studies.length, 2, 'found from one of its studies');
    const own = await get<{ studies: Study[] }>('rad.nord', '/api/patients/timeline?site=CHU-NORD&PatientID=N-100');
    assert.deepEqual(own.body.studies.map((s) => s.StudyInstanceUID), [uids.nord], 'the other site\'s exam stays out of a site radiologist\'s sight');
    assert.equal((await get('rad.nord', '/api/patients/timeline?site=CLIN-SUD&PatientID=S-555')).status, 404);
    assert.equal((await get('rad.nord', '/api/patients/timeline?site=CLIN-SUD&PatientID=NOBODY')).status, 404);
    assert.equal((await get('rad.nord', `/api/patients/timeline?StudyInstanceUID=${uids.other}`)).status, 404);
  });

  it('records every search and timeline in the audit trail, with the patients it touched', async () => {
    const rows = await atrium.archive.index.sql.all<{ actor: string; outcome: string; details: string }>(
      `SELECT actor, outcome, details FROM audit_events WHERE action = 'query' AND actor IN ('rad.nord', 'admin.ght') ORDER BY id`);
    const portal = rows.map((r) => ({ ...r, details: JSON.parse(r.details) as { portal?: string } })).filter((r) => r.details.portal);
    assert.ok(portal.some((r) => r.details.portal === 'patient-search' && r.actor === 'admin.ght'));
    assert.ok(portal.some((r) => r.details.portal === 'timeline' && r.outcome === 'success'));
    assert.ok(portal.some((r) => r.details.portal === 'timeline' && r.outcome === 'refused' && r.actor === 'rad.nord'));
    const touched = await atrium.archive.index.sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM audit_events WHERE action = 'query' AND actor = 'admin.ght' AND patients LIKE ?`, ['%S-977%']);
    assert.ok(Number(touched?.n) > 0, 'the patients touched are named');
  });
});
