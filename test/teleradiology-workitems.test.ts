/**
 * UPS-RS, read side, over HTTP: the teleradiology worklist as Unified Procedure Step
 * workitems (PS3.18 §11.5 RetrieveUPS, §11.9 SearchForUPS), with the requests' visibility.
 */
import assert from 'node:assert/strict';
import { stowFiles } from './support/stow.ts';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { CookieJar, loginLocal, request } from './support/browser-session.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { UPSPushSOPClassUID, workitemUID } from '../src/dicomweb/workitems.ts';

const engine = testDatabases().at(-1)!;
const password = 'un mot de passe assez long pour les tests';
type Workitem = Record<string, { vr: string; Value?: unknown[] }>;

describe(`UPS-RS workitems from teleradiology requests (${engine.name})`, () => {
  let atrium: RunningAtrium;
  /** This archive's UID root, under which its workitem UIDs are made. */
  let root: string;
  let base: string;
  let cleanup: () => Promise<void>;
  const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
  const head = syntheticInstance({ PatientID: 'UPS-1', PatientName: 'Sud^Jeanne', Modality: 'CT', Rows: 4, Columns: 4 });
  const knee = syntheticInstance({ PatientID: 'UPS-2', PatientName: 'Sud^Marc', Modality: 'MR', Rows: 4, Columns: 4 });
  const ids: Record<string, number> = {};

  const call = async (who: string, url: string, body?: unknown) => request(sessions[who]!.jar, `${base}${url}`, body === undefined ? {} : {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': sessions[who]!.csrf }, body: JSON.stringify(body),
  });
  const search = async (who: string, query = ''): Promise<{ status: number; items: Workitem[]; type: string | null }> => {
    const r = await call(who, `/dicom-web/workitems${query}`);
    const text = await r.text();
    return { status: r.status, items: r.status === 200 ? (JSON.parse(text) as Workitem[]) : [], type: r.headers.get('content-type') };
  };
  const value = (w: Workitem, tag: string) => w[tag]?.Value?.[0];

  before(async () => {
    const db = await engine.open();
    cleanup = db.cleanup;
    atrium = await startAtrium({ index: db.config });
    base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    root = await atrium.archive.index.installationUidRoot();
    assert.match(root, /^2\.25\.[1-9][0-9]{0,38}$/);
    for (const f of [head.file, knee.file]) {
      const r = await stowFiles(`${base}/dicom-web`, atrium.tokens['CLIN-SUD']!, [f]);
      assert.equal(r.status, 200);
    }
    const by = { actor: 'test', via: 'cli' as const };
    await addUser(atrium.archive, { login: 'manip.sud', displayName: 'Manipulateur Sud', roles: ['technologist'], sites: ['CLIN-SUD'], password }, by);
    await addUser(atrium.archive, { login: 'manip.nord', displayName: 'Manipulateur Nord', roles: ['technologist'], sites: ['CHU-NORD'], password }, by);
    await addUser(atrium.archive, { login: 'neuro', displayName: 'Dr Neuro', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
    await addUser(atrium.archive, { login: 'admin', displayName: 'Admin', roles: ['territory-admin'], sites: [], password }, by);
    for (const who of ['manip.sud', 'manip.nord', 'neuro', 'admin']) {
      sessions[who] = await loginLocal(base, who, password);
    }
    const now = Date.now();
    assert.equal((await call('admin', '/api/teleradiology/oncall', { login: 'neuro', specialty: 'neuro', startsAt: new Date(now - 60_000).toISOString(), endsAt: new Date(now + 3_600_000).toISOString() })).status, 201);
    const common = { clinicalContext: 'Contexte', clinicalQuestion: 'Question ?', requestingPhysician: { name: 'Dr Demandeur' } };
    for (const [name, body] of Object.entries({
      knee: { patient: { PatientID: 'UPS-2' }, StudyInstanceUID: knee.uids.study, urgency: 'routine', modality: 'MR', bodyPart: 'KNEE', specialty: 'msk', proposedProtocol: 'IRM genou', ...common },
      stroke: { patient: { PatientID: 'UPS-1' }, StudyInstanceUID: head.uids.study, urgency: 'stroke', modality: 'CT', bodyPart: 'HEAD', specialty: 'neuro', proposedProtocol: 'Scanner cérébral', ...common },
      later: { patient: { PatientID: 'UPS-1' }, AccessionNumber: 'UPS-0099', urgency: 'urgent', modality: 'CT', bodyPart: 'CHEST', specialty: 'thorax', proposedProtocol: 'Angioscanner thoracique', ...common },
    })) {
      const r = await call('manip.sud', '/api/teleradiology/requests', body);
      assert.equal(r.status, 201, await r.clone().text());
      ids[name] = ((await r.json()) as { id: number }).id;
    }
  });

  after(async () => {
    await atrium?.close();
    await cleanup?.();
  });

  it('answers SearchForUPS with every open request as a SCHEDULED workitem, in deadline order, without patient identity', async () => {
    const { status, items, type } = await search('neuro');
    assert.equal(status, 200);
    assert.match(type ?? '', /^application\/dicom\+json/);
    assert.deepEqual(items.map((w) => value(w, '00080018')), [ids.stroke, ids.later, ids.knee].map((id) => workitemUID(root, id!)));
    const stroke = items[0]!;
    assert.equal(value(stroke, '00080016'), UPSPushSOPClassUID);
    assert.deepEqual([value(stroke, '00741000'), value(stroke, '00741200'), value(stroke, '00741202'), value(stroke, '00741204'), value(stroke, '00404041')],
      ['SCHEDULED', 'HIGH', 'neuro', 'CT HEAD', 'READY']);
    const input = value(stroke, '00404021') as Workitem;
    assert.equal(value(input, '0020000D'), head.uids.study);
    assert.equal(value(input, '0040E020'), 'DICOM');
    assert.equal(value(value(input, '0040E021') as Workitem, '00081190'), `${base}/dicom-web/studies/${head.uids.study}`);
    assert.equal(((value(stroke, '00404034') as Workitem)['00404037']?.Value?.[0] as { Alphabetic: string }).Alphabetic, 'neuro', 'the one on call');
    assert.equal(value(value(stroke, '0040A370') as Workitem, '00401001'), `TELE-${ids.stroke}`);
    assert.equal(stroke['00100010']?.Value, undefined, 'no patient name in a search');
    assert.equal(stroke['00100020']?.Value, undefined);
    const later = items[1]!;
    assert.deepEqual([value(later, '00741200'), value(later, '00080050'), value(later, '00404041'), (later['00404021']?.Value ?? []).length], ['MEDIUM', 'UPS-0099', 'INCOMPLETE', 0]);
    // Attributes in tag order, as the JSON model lists them.
    assert.deepEqual(Object.keys(stroke), Object.keys(stroke).sort());
  });

  it('matches on state, priority, worklist label, study and accession number, with limit and offset', async () => {
    const uids = async (q: string) => (await search('neuro', q)).items.map((w) => value(w, '00080018'));
    assert.deepEqual(await uids('?ScheduledProcedureStepPriority=HIGH'), [workitemUID(root, ids.stroke!)]);
    assert.deepEqual(await uids('?00741202=msk'), [workitemUID(root, ids.knee!)]);
    assert.deepEqual(await uids(`?StudyInstanceUID=${head.uids.study}`), [workitemUID(root, ids.stroke!)]);
    assert.deepEqual(await uids('?AccessionNumber=UPS-0099'), [workitemUID(root, ids.later!)]);
    assert.deepEqual(await uids('?limit=1&offset=1'), [workitemUID(root, ids.later!)]);
    assert.equal((await search('neuro', '?ProcedureStepState=COMPLETED')).status, 204);
    assert.equal((await search('neuro', '?ProcedureStepState=DONE')).status, 400);
    assert.equal((await search('neuro', '?PatientName=Sud')).status, 400, 'not a matching key here');

    // A claimed reading is IN PROGRESS.
    assert.equal((await call('neuro', `/api/teleradiology/requests/${ids.stroke}/claim`, {})).status, 200);
    assert.deepEqual(await uids('?ProcedureStepState=IN%20PROGRESS'), [workitemUID(root, ids.stroke!)]);
    assert.deepEqual(await uids('?ProcedureStepState=SCHEDULED'), [workitemUID(root, ids.later!), workitemUID(root, ids.knee!)]);
    // A returned request is CANCELED.
    assert.equal((await call('neuro', `/api/teleradiology/requests/${ids.knee}/return`, { reason: 'Protocole inadapté' })).status, 200);
    assert.deepEqual(await uids('?ProcedureStepState=CANCELED'), [workitemUID(root, ids.knee!)]);
  });

  it('shows a site its own requests only, and nothing to another site', async () => {
    assert.equal((await search('manip.sud')).items.length, 2);
    assert.equal((await search('manip.nord')).status, 204);
  });

  it('answers RetrieveUPS with the workitem whole, patient included, to those who may see the request; absent to others', async () => {
    const r = await call('neuro', `/dicom-web/workitems/${workitemUID(root, ids.stroke!)}`);
    assert.equal(r.status, 200);
    const [w] = (await r.json()) as Workitem[];
    assert.deepEqual([value(w!, '00741000'), value(w!, '00100020'), value(w!, '00100021'), (value(w!, '00100010') as { Alphabetic: string }).Alphabetic],
      ['IN PROGRESS', 'UPS-1', 'CLINSUD', 'Sud^Jeanne']);
    assert.equal(value(value(w!, '0040A370') as Workitem, '00321060'), 'Scanner cérébral');
    // Its input: the study's series, each with its instances and where to retrieve them.
    const input = w!['00404021']?.Value as Workitem[];
    assert.equal(input.length, 1);
    assert.deepEqual([value(input[0]!, '0020000D'), value(input[0]!, '0020000E'), value(value(input[0]!, '0040E021') as Workitem, '00081190')],
      [head.uids.study, head.uids.series, `${base}/dicom-web/studies/${head.uids.study}/series/${head.uids.series}`]);
    assert.deepEqual((input[0]!['00081199']?.Value as Workitem[]).map((i) => value(i, '00081155')), [head.uids.sop]);
    assert.equal((await call('manip.nord', `/dicom-web/workitems/${workitemUID(root, ids.stroke!)}`)).status, 404);
    assert.equal((await call('neuro', `/dicom-web/workitems/${workitemUID(root, 999_999)}`)).status, 404);
    assert.equal((await call('neuro', '/dicom-web/workitems/1.2.3.4')).status, 404);
    assert.equal((await fetch(`${base}/dicom-web/workitems`)).status, 401, 'not without a session or token');
  });
});
