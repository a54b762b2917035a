/**
 * The HTTP access decision, driven by the routes the server registered (not by a list kept
 * by hand): every method of every route (HEAD included, which Fastify adds to each GET)
 * refuses an unauthenticated caller unless declared public; every route naming a study
 * answers another site's study exactly as a study that does not exist, and records the
 * refusal; every route naming an object by id answers another site's administrator exactly
 * as for an id that does not exist. A route added later falls under these rules by itself,
 * or fails here until it is given a rule or declared exempt with a reason.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { loginLocal, request, type CookieJar } from './support/browser-session.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { isPublicRoute, sha256Hex } from '../src/api/auth.ts';
import { registeredRoutes, type RegisteredRoute } from '../src/api/server.ts';
import { openReview } from '../src/patients/identities.ts';
import { workitemUID } from '../src/dicomweb/workitems.ts';
import { migrateDmp } from '../src/exchange/dmp/publications.ts';
import { migrateRedundancy } from '../src/workflow/redundancy.ts';
import { ResearchStore } from '../src/research/projects.ts';
import { ResearchKeys } from '../src/research/keys.ts';

const engine = testDatabases().at(-1)!;
const password = 'un mot de passe assez long pour les tests';

/** Routes that answer without authentication, each with why it may. */
const publicRoutes: Record<string, string> = {
  '/health': 'liveness probe, no data',
  '/healthz': 'liveness probe, no data',
  '/readyz': 'readiness probe: whether the index and the storage answer, no data',
  '/metrics': 'Prometheus metrics (counts, ages, sizes; no patient data), answered only to monitoring.allowFrom',
  '/auth/methods': 'which login methods the login page offers (no data)',
  '/auth/login': 'starts a Pro Santé Connect login',
  '/auth/callback': 'ends a Pro Santé Connect login',
  '/auth/local': 'a local account logs in with its password (limited per address)',
  '/share/open': 'the holder of a share link opens it with its token (and PIN)',
  '/IHEInvokeImageDisplay': 'IHE Invoke Image Display: sends a browser without a session to log in, then decides with the session itself (src/api/iid.ts)',
  '/drimbox/context': 'the RIS\'s contextual call (a cross-site form, without the session cookie): checks the form and redirects to the patient\'s page, reads nothing (src/api/drimbox-consumer.ts)',
  '/': 'redirects to the portal',
  '/app': 'redirects to the portal',
  '/app/*': 'the portal\'s built files (no patient data; the login page loads before any session)',
  '/share': 'the portal\'s share link page (the token stays in the fragment)',
};

/** Parameters of the study rule: a study, and what lies inside it (its objects, its documents for the DMP). */
const studyParams = new Set(['study', 'series', 'instance', 'frames', 'tagPath', 'document']);

const paramsOf = (url: string) => [...url.matchAll(/:(\w+)/g)].map((m) => m[1]!);
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A URL of the route: each parameter given its value, a wildcard a portal file. */
function fill(url: string, values: Record<string, string>): string {
  return url.replace(/:(\w+)/g, (_, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`no value for :${name} in ${url}`);
    return encodeURIComponent(v);
  }).replace('*', 'index.html');
}

/** A UID of the same length that names nothing: answers of the same length are comparable byte for byte. */
function missingLike(uid: string): string {
  const dot = uid.lastIndexOf('.');
  const last = uid.slice(dot + 1);
  const other = last[0] + last.slice(1).replace(/[0-9]/g, (d) => String((Number(d) + 3) % 10));
  assert.notEqual(other, last);
  return uid.slice(0, dot + 1) + other;
}

describe(`the access decision on every registered route (${engine.name})`, () => {
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  let routes: readonly RegisteredRoute[];
  const keys = { nord: randomBytes(24).toString('base64url') };
  const north = syntheticInstance({ PatientID: 'RN-1', PatientName: 'Nord^Anna', Rows: 4, Columns: 4 });
  const south = syntheticInstance({ PatientID: 'RS-1', PatientName: 'Sud^Basile', Rows: 4, Columns: 4 });
  /** Site B's object that its administrator rejects (a correction of site B). */
  const rejected = syntheticInstance({ PatientID: 'RS-9', Rows: 2, Columns: 2 });
  const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
  const missing = { study: missingLike(south.uids.study), series: missingLike(south.uids.series), instance: missingLike(south.uids.sop) };
  const teleRequest = {
    patient: { PatientID: 'RS-1' }, urgency: 'routine', modality: 'MR', bodyPart: 'KNEE', specialty: 'msk',
    clinicalContext: 'Chute de sa hauteur', clinicalQuestion: 'Lésion méniscale ?',
    requestingPhysician: { name: 'Dr Urgentiste Sud' }, proposedProtocol: 'IRM genou sans injection',
  };

  /** A call as a logged-in user: the session cookie, its CSRF token, a JSON body when given. */
  const as = (who: string, method: string, url: string, body?: unknown) => request(sessions[who]!.jar, `${base}${url}`, {
    method, headers: { 'x-csrf-token': sessions[who]!.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const byKey = (method: string, url: string) => fetch(`${base}${url}`, { method, headers: { authorization: `Bearer ${keys.nord}` } });
  const created = async <T>(r: Promise<Response>): Promise<T> => {
    const response = await r;
    const text = await response.text();
    assert.ok(response.status === 200 || response.status === 201, `${response.status} ${text}`);
    return JSON.parse(text) as T;
  };
  /** Status, type, length and body of an answer, with `from` written as `to` (the ids differ, nothing else may). */
  const answer = async (r: Response, from?: string, to?: string) => {
    let body = await r.text();
    if (from !== undefined && to !== undefined) body = body.replace(new RegExp(`(?<![0-9])${escape(from)}(?![0-9])`, 'g'), to);
    return { status: r.status, type: r.headers.get('content-type'), body };
  };
  const refusedViews = async () => (await atrium.archive.index.sql.get<{ n: number }>(
    `SELECT COUNT(*) AS n FROM audit_events WHERE study_instance_uid = ? AND outcome = 'refused'`, [south.uids.study]))!.n;
  const southRecord = async (PatientID: string) => {
    const sud = atrium.archive.sites.get('CLIN-SUD')!;
    return (await atrium.archive.index.patientRecordId(sud.id, sud.issuerOfPatientID, PatientID))!;
  };
  const stow = async (site: string, file: Buffer) => {
    const r = await stowFiles(atrium.dicomweb, atrium.tokens[site]!, [file]);
    assert.equal(r.status, 200, await r.text());
  };
  const newTeleRequest = async () => (await created<{ id: number }>(as('admin.sud', 'POST', '/api/teleradiology/requests', { ...teleRequest, StudyInstanceUID: south.uids.study }))).id;

  before(async () => {
    const db = await engine.open();
    cleanup = db.cleanup;
    atrium = await startAtrium({
      index: db.config,
      configure: (c) => {
        c.apiClients.push({ name: 'ris-nord', tokenSha256: sha256Hex(keys.nord), site: 'CHU-NORD', territory: false });
        // Each site's PACS, a forwarding destination; nothing listens (the forwarder is not started).
        c.peers = [
          { aeTitle: 'PACSNORD', host: '127.0.0.1', port: 9, site: 'CHU-NORD', may: { store: true, query: true, retrieve: true } },
          { aeTitle: 'PACSSUD', host: '127.0.0.1', port: 9, site: 'CLIN-SUD', may: { store: true, query: true, retrieve: true } },
        ];
      },
    });
    base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    routes = registeredRoutes(atrium.app);
    await stow('CHU-NORD', north.file);
    await stow('CLIN-SUD', south.file);
    const by = { actor: 'test', via: 'cli' as const };
    await addUser(atrium.archive, { login: 'admin.nord', displayName: 'Admin Nord', roles: ['site-admin'], sites: ['CHU-NORD'], password }, by);
    await addUser(atrium.archive, { login: 'admin.sud', displayName: 'Admin Sud', roles: ['site-admin'], sites: ['CLIN-SUD'], password }, by);
    await addUser(atrium.archive, { login: 'rad.nord', displayName: 'Dr Nord', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
    await addUser(atrium.archive, { login: 'rad.sud', displayName: 'Dr Sud', roles: ['radiologist'], sites: ['CLIN-SUD'], password }, by);
    for (const who of ['admin.nord', 'admin.sud', 'rad.nord', 'rad.sud']) sessions[who] = await loginLocal(base, who, password);
  });

  after(async () => {
    await atrium?.close();
    await cleanup?.();
  });

  it('gives every registered route and method an access rule, or a declared reason to be public', () => {
    assert.ok(routes.length > 50, `only ${routes.length} routes seen`);
    assert.ok(routes.some((r) => r.method === 'HEAD'), 'HEAD routes are walked too');
    for (const { method, url } of routes) {
      const params = paramsOf(url);
      const filled = fill(url, Object.fromEntries(params.map((p) => [p, '1'])));
      // What the authentication hook lets through is exactly what is declared public.
      assert.equal(isPublicRoute(filled), publicRoutes[url] !== undefined, `${method} ${url}: public routes are declared here with a reason`);
      if (params.includes('study')) {
        for (const p of params) assert.ok(studyParams.has(p), `${method} ${url}: :${p} is covered by no rule of this test`);
      } else if (params.length > 0 && publicRoutes[url] === undefined) {
        assert.ok(objectRules.some((r) => r.route.test(url)), `${method} ${url}: an id route needs an object rule (or an exemption with its reason) in objectRules`);
      }
    }
  });

  it('answers 401 on every method of every route but the public ones to a caller without credentials', async () => {
    for (const { method, url } of routes) {
      if (publicRoutes[url] !== undefined) continue;
      const values = Object.fromEntries(paramsOf(url).map((p) => [p, p === 'study' ? south.uids.study : '1']));
      const r = await fetch(`${base}${fill(url, values)}`, { method, redirect: 'manual' });
      await r.arrayBuffer();
      assert.equal(r.status, 401, `${method} ${url}`);
    }
  });

  it('answers every method of every study route (HEAD included) for another site\'s study exactly as for one that does not exist, and records each refusal GET records', async () => {
    const own = { study: south.uids.study, series: south.uids.series, instance: south.uids.sop, frames: '1', tagPath: '7FE00010', document: '1' };
    const absent = { ...missing, frames: '1', tagPath: '7FE00010', document: '1' };
    const refusalsBy = new Map<string, number>();
    let checked = 0;
    for (const { method, url } of routes) {
      if (!paramsOf(url).includes('study')) continue;
      const before = await refusedViews();
      const refused = await byKey(method, fill(url, own));
      const refusedLength = refused.headers.get('content-length');
      let seen = await answer(refused);
      for (const [k, v] of Object.entries(missing)) seen = { ...seen, body: seen.body.split(own[k as keyof typeof missing]).join(v) };
      const unknown = await byKey(method, fill(url, absent));
      const expected = await answer(unknown);
      assert.deepEqual(seen, expected, `${method} ${url}`);
      assert.equal(refusedLength, unknown.headers.get('content-length'), `${method} ${url}: the same length`);
      assert.ok(refused.status >= 400 || seen.body === expected.body, `${method} ${url}`);
      refusalsBy.set(`${method} ${url}`, (await refusedViews()) - before);
      checked++;
    }
    assert.ok(checked > 30, `${checked} study routes`);
    // A HEAD is decided and recorded as its GET is.
    for (const [route, n] of refusalsBy) {
      if (!route.startsWith('GET ')) continue;
      const head = refusalsBy.get(`HEAD ${route.slice(4)}`);
      assert.ok(head !== undefined, `${route} has its HEAD`);
      if (n > 0) assert.ok(head > 0, `HEAD ${route.slice(4)}: refused without an audit record`);
    }
    assert.ok((refusalsBy.get('GET /dicom-web/studies/:study/metadata') ?? 0) > 0, 'a refused WADO-RS read is recorded');
    // The study is there for its own site: the refusals above are refusals, not a wrong fixture.
    const mine = await fetch(`${base}/dicom-web/studies/${south.uids.study}/metadata`, { method: 'HEAD', headers: { authorization: `Bearer ${atrium.tokens['CLIN-SUD']}` } });
    assert.equal(mine.status, 200);
  });

  /**
   * Routes naming an object by id: how to make one of site B (CLIN-SUD), or why the route is
   * exempt. A new id route matches none of these and fails the first test until it is added.
   */
  const objectRules: Array<{ route: RegExp; siteB: () => Promise<string>; missing?: string } | { route: RegExp; exempt: string }> = [
    {
      route: /^\/api\/shares\/links\/:id$/,
      siteB: async () => String((await created<{ link: { id: number } }>(as('admin.sud', 'POST', '/api/shares', { StudyInstanceUID: south.uids.study, link: { expiresInHours: 1 } }))).link.id),
    },
    {
      route: /^\/api\/shares\/grants\/:id$/,
      siteB: async () => String((await created<{ grant: { id: number } }>(as('admin.sud', 'POST', '/api/shares', { StudyInstanceUID: south.uids.study, toUser: 'rad.sud' }))).grant.id),
    },
    {
      route: /^\/api\/emergency-access\/:id\//,
      siteB: async () => String((await created<{ grant: { id: number } }>(as('rad.sud', 'POST', '/api/emergency-access', {
        patient: { site: 'CLIN-SUD', PatientID: 'RS-1' }, reason: 'patient inconscient aux urgences',
      }))).grant.id),
    },
    {
      route: /^\/api\/corrections\/:id\//,
      siteB: async () => {
        await stow('CLIN-SUD', rejected.file);
        return String((await created<{ id: number }>(as('admin.sud', 'POST', '/api/corrections/reject', { SOPInstanceUID: rejected.uids.sop, reason: 'mauvais patient' }))).id);
      },
    },
    {
      route: /^\/api\/identity-reviews\/:id(\/|$)/,
      siteB: async () => {
        const patientId = await southRecord('RS-1');
        await atrium.archive.index.sql.transaction((tx) => openReview(tx, 'traits-conflict', patientId, null, 'route access test'));
        return String((await atrium.archive.index.sql.get<{ id: number }>(`SELECT MAX(id) AS id FROM identity_reviews WHERE patient_id = ? AND state = 'open'`, [patientId]))!.id);
      },
    },
    { route: /^\/api\/teleradiology\/requests\/:id(\/|$)/, siteB: async () => String(await newTeleRequest()) },
    {
      route: /^\/api\/teleradiology\/second-readings\/:id(\/|$)/,
      siteB: async () => {
        const requestId = await newTeleRequest();
        const expert = (await atrium.archive.index.sql.get<{ id: number }>(`SELECT id FROM users WHERE login = 'rad.sud'`))!.id;
        const row = await atrium.archive.index.sql.get<{ id: number }>(
          `INSERT INTO tele_second_readings (request_id, specialty, question, asked_by, expert_user_id, status, created_at)
           VALUES (?, 'msk', 'Avis ?', 'admin.sud', ?, 'requested', ?) RETURNING id`, [requestId, expert, new Date().toISOString()]);
        return String(row!.id);
      },
    },
    {
      route: /^\/dicom-web\/workitems\/:uid$/,
      siteB: async () => workitemUID(await atrium.archive.index.installationUidRoot(), await newTeleRequest()),
    },
    {
      route: /^\/api\/lifecycle\/holds\/:id$/,
      siteB: async () => String((await created<{ hold: { id: number } }>(as('admin.sud', 'POST', '/api/lifecycle/holds', { StudyInstanceUID: south.uids.study, reason: 'contentieux' }))).hold.id),
    },
    { route: /^\/api\/dose\/sites\/:site\//, siteB: async () => 'CLIN-SUD', missing: 'NOSUCHSITE' },
    {
      route: /^\/api\/redundancy\/alerts\/:id\//,
      siteB: async () => {
        const sql = atrium.archive.index.sql;
        await migrateRedundancy(sql);
        const row = await sql.get<{ id: number }>(
          `INSERT INTO redundancy_alerts (kind, site_id, ref, patient_id, modality, priors_json, created_at) VALUES ('order', ?, ?, 1, 'CT', '[]', ?) RETURNING id`,
          [atrium.archive.sites.get('CLIN-SUD')!.id, `RA-${Date.now()}-${Math.random()}`, new Date().toISOString()]);
        return String(row!.id);
      },
    },
    { route: /^\/api\/admin\/users\/:login$/, siteB: async () => 'rad.sud', missing: 'nobody.sud' },
    {
      route: /^\/api\/admin\/peers\/:ae$/, missing: 'NOBODY-SUD',
      siteB: async () => {
        await as('admin.sud', 'POST', '/api/admin/peers', { aeTitle: 'PACS-SUD-2', site: 'CLIN-SUD' });
        return 'PACS-SUD-2';
      },
    },
    {
      route: /^\/api\/research\/projects\/:id(\/|$)/,
      siteB: async () => String((await created<{ id: number }>(as('admin.sud', 'POST', '/api/research/projects', { name: 'Cohorte', criteria: { modalities: ['CT'] } }))).id),
    },
    {
      route: /^\/api\/research\/exports\/:id(\/|$)/,
      siteB: async () => {
        const project = await created<{ id: number }>(as('admin.sud', 'POST', '/api/research/projects', { name: 'Cohorte', criteria: { modalities: ['CT'] } }));
        return String(await new ResearchStore(atrium.archive.index.sql, ResearchKeys.fromKey(randomBytes(32))).startExport(project.id, 'zip', 'admin.sud'));
      },
    },
    { route: /^\/api\/teleradiology\/templates\/:code$/, exempt: 'report templates are the territory\'s catalogue: no site owns one' },
  ];

  /** Valid bodies, so that the call reaches the decision rather than the schema's 400. */
  const bodies: Record<string, unknown> = {
    'POST /api/identity-reviews/:id': { accept: false },
    'PUT /api/admin/users/:login': { disabled: true },
    'POST /api/redundancy/alerts/:id/decision': { decision: 'cancelled' },
    'POST /api/identity-reviews/:id/insi': {},
    'POST /api/teleradiology/requests/:id/protocol': { decision: 'validated' },
    'POST /api/teleradiology/requests/:id/return': { reason: 'images manquantes' },
    'POST /api/teleradiology/requests/:id/assign': { login: 'rad.nord' },
    'PUT /api/teleradiology/requests/:id/report': { findings: 'Pas d\'anomalie' },
    'POST /api/teleradiology/requests/:id/report/sign': {},
    'POST /api/teleradiology/requests/:id/report/addenda': { text: 'Addendum' },
    'POST /api/teleradiology/requests/:id/second-readings': { specialty: 'msk', question: 'Avis ?' },
    'POST /api/teleradiology/second-readings/:id/answer': { conclusion: 'D\'accord', agreement: 'agree' },
    'POST /api/research/projects/:id/exports': { kind: 'zip' },
    'POST /api/research/projects/:id/reidentify': { pseudonym: 'RP1-0000000000' },
  };

  it('answers site A\'s administrator on every method of every id route with site B\'s id exactly as with an id that does not exist', async () => {
    let checked = 0;
    for (const { method, url } of routes) {
      const params = paramsOf(url);
      if (params.length === 0 || params.includes('study') || publicRoutes[url] !== undefined) continue;
      const rule = objectRules.find((r) => r.route.test(url));
      assert.ok(rule, `${method} ${url}: no object rule`);
      if ('exempt' in rule) continue;
      assert.equal(params.length, 1, `${method} ${url}: one id`);
      const id = await rule.siteB();
      const nothing = rule.missing ?? (/^[0-9]+$/.test(id) ? '987654321' : id.replace(/[0-9]+$/, '987654321'));
      const body = bodies[`${method} ${url}`];
      const foreign = await answer(await as('admin.nord', method, fill(url, { [params[0]!]: id }), body), id, nothing);
      const absent = await answer(await as('admin.nord', method, fill(url, { [params[0]!]: nothing }), body));
      assert.ok(foreign.status >= 400, `${method} ${url}: site A's administrator acted on site B's object: ${foreign.status} ${foreign.body}`);
      assert.deepEqual(foreign, absent, `${method} ${url}`);
      assert.doesNotMatch(foreign.body, new RegExp(escape(south.uids.study)), `${method} ${url} names the study`);
      checked++;
    }
    assert.ok(checked > 20, `${checked} id routes`);
  });

  /** Queries that make a list route list something (or name site B's patient, to see it refused). */
  const listQueries: Record<string, string> = {
    '/dicom-web/studies': '?PatientID=RS-1', '/dicom-web/series': '?PatientID=RS-1', '/dicom-web/instances': '?PatientID=RS-1',
    '/api/patients': '?PatientID=RS-1', '/api/patients/timeline': '?site=CLIN-SUD&PatientID=RS-1', '/api/audit/patient': '?site=CLIN-SUD&PatientID=RS-1', '/api/dose/patients': '?site=CLIN-SUD&PatientID=RS-1',
    '/api/teleradiology/worklist': '?status=awaiting-protocol,open,reported,returned',
    '/api/teleradiology/activity': '?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z', '/api/redundancy/activity': '?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z', '/api/teleradiology/activity.csv': '?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z',
  };

  it('shows site A\'s administrator nothing of site B in any list (every GET route without an id)', async () => {
    const at = new Date().toISOString();
    for (const [destination, sop] of [['PACSSUD', south.uids.sop], ['PACSNORD', north.uids.sop]] as const) {
      await atrium.archive.index.sql.run(
        `INSERT INTO forward_queue (sop_instance_uid, study_instance_uid, destination, reason, state, attempts, next_attempt_at, last_error, created_at, updated_at)
         VALUES (?, ?, ?, 'rule', 'failed', 5, ?, 'refused', ?, ?)`, [sop, sop === south.uids.sop ? south.uids.study : north.uids.study, destination, at, at, at]);
    }
    // A DMP publication of each site's study, refused with its code: each site's own to see.
    await migrateDmp(atrium.archive.index.sql);
    for (const [code, study] of [['CLIN-SUD', south.uids.study], ['CHU-NORD', north.uids.study]] as const) {
      await atrium.archive.index.sql.run(
        `INSERT INTO dmp_publications (action, document_id, site_id, study_instance_uid, mode, state, attempts, next_attempt_at, last_error_code, last_error, created_at, updated_at)
         VALUES ('publish', ?, ?, ?, 'INDIRECTE', 'refused', 1, ?, 'XDSRegistryMetadataError', 'refused', ?, ?)`, [`doc-${code}`, atrium.archive.sites.get(code)!.id, study, at, at, at]);
    }
    // Site B's marks: its study, its patients, its site, its PACS.
    const marks = [south.uids.study, rejected.uids.study, 'RS-1', 'RS-9', 'Basile', 'CLIN-SUD', 'PACSSUD'];
    const mention = (body: string) => marks.filter((m) => body.includes(m));
    let listed = 0;
    const seenByB: string[] = [];
    for (const { method, url } of routes) {
      if (method !== 'GET' || paramsOf(url).length > 0 || publicRoutes[url] !== undefined) continue;
      const query = listQueries[url] ?? '';
      const a = await as('admin.nord', 'GET', `${url}${query}`);
      const body = await a.text();
      assert.ok(a.status < 500, `${url}: ${a.status} ${body}`);
      assert.deepEqual(mention(body), [], `GET ${url}${query} shows site A's administrator site B's ${mention(body).join(', ')}: ${body.slice(0, 300)}`);
      if (mention(await (await as('admin.sud', 'GET', `${url}${query}`)).text()).length > 0) seenByB.push(url);
      listed++;
    }
    assert.ok(listed > 15, `${listed} lists`);
    // The lists do hold site B's objects: its administrator sees them.
    for (const url of ['/api/forwarding', '/api/corrections', '/api/identity-reviews', '/api/emergency-access', '/api/teleradiology/worklist', '/dicom-web/studies', '/api/dmp/publications']) {
      assert.ok(seenByB.includes(url), `${url} shows site B's administrator site B's objects (${seenByB.join(', ')})`);
    }
    // Requeueing: only the caller's sites' destinations.
    assert.deepEqual(await created(as('admin.nord', 'POST', '/api/forwarding/retry-failed', {})), { requeued: 1 });
    assert.deepEqual(await created(as('admin.nord', 'POST', '/api/forwarding/retry-failed', { destination: 'PACSSUD' })), { requeued: 0 });
    assert.equal((await atrium.archive.index.sql.get<{ state: string }>(`SELECT state FROM forward_queue WHERE destination = 'PACSSUD'`))!.state, 'failed');
    assert.deepEqual(await created(as('admin.sud', 'POST', '/api/forwarding/retry-failed', {})), { requeued: 1 });
    // Prefetching: only to the caller's sites' peers; another site's peer is answered as one not configured.
    const toOther = await answer(await as('admin.nord', 'POST', '/api/forwarding/prefetch', { PatientID: 'RN-1', destination: 'PACSSUD' }), 'PACSSUD', 'NOSUCHPEER');
    assert.deepEqual(toOther, await answer(await as('admin.nord', 'POST', '/api/forwarding/prefetch', { PatientID: 'RN-1', destination: 'NOSUCHPEER' })));
    assert.equal(toOther.status, 400);
    assert.equal((await as('admin.nord', 'POST', '/api/forwarding/prefetch', { PatientID: 'RN-1', destination: 'PACSNORD' })).status, 202);
  });

  it('lets a site administrator revoke their own site\'s share links and grants only, and tells another site\'s they do not exist', async () => {
    const { link, token } = await created<{ link: { id: number }; token: string }>(as('admin.sud', 'POST', '/api/shares', { StudyInstanceUID: south.uids.study, link: { expiresInHours: 1 } }));
    const { grant } = await created<{ grant: { id: number } }>(as('admin.sud', 'POST', '/api/shares', { StudyInstanceUID: south.uids.study, toUser: 'rad.nord' }));
    for (const [kind, id] of [['links', link.id], ['grants', grant.id]] as const) {
      const refused = await answer(await as('admin.nord', 'DELETE', `/api/shares/${kind}/${id}`), String(id), '987654321');
      assert.deepEqual(refused, await answer(await as('admin.nord', 'DELETE', `/api/shares/${kind}/987654321`)));
      assert.equal(refused.status, 404);
      assert.doesNotMatch(refused.body, new RegExp(escape(south.uids.study)));
    }
    // Both still open what they share.
    assert.equal((await as('rad.nord', 'GET', `/dicom-web/studies/${south.uids.study}/metadata`)).status, 200);
    const opened = await fetch(`${base}/share/open`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
    assert.equal(opened.status, 200, await opened.text());
    // Their site's administrator revokes them.
    assert.equal((await as('admin.sud', 'DELETE', `/api/shares/links/${link.id}`)).status, 200);
    assert.equal((await as('admin.sud', 'DELETE', `/api/shares/grants/${grant.id}`)).status, 200);
    assert.equal((await as('rad.nord', 'GET', `/dicom-web/studies/${south.uids.study}/metadata`)).status, 404);
  });

  it('lists and undoes a site\'s corrections for that site\'s administrators only', async () => {
    const other = syntheticInstance({ PatientID: 'RS-8', Rows: 2, Columns: 2 });
    await stow('CLIN-SUD', other.file);
    const { id } = await created<{ id: number }>(as('admin.sud', 'POST', '/api/corrections/reject', { SOPInstanceUID: other.uids.sop, reason: 'mauvais patient' }));
    const listed = async (who: string) => (await created<{ corrections: Array<{ id: number; undoneAt?: string }> }>(as(who, 'GET', '/api/corrections'))).corrections;
    assert.ok(!(await listed('admin.nord')).some((c) => c.id === id), 'another site\'s correction is not listed');
    assert.ok((await listed('admin.sud')).some((c) => c.id === id));
    const refused = await answer(await as('admin.nord', 'POST', `/api/corrections/${id}/undo`), String(id), '987654321');
    assert.deepEqual(refused, await answer(await as('admin.nord', 'POST', '/api/corrections/987654321/undo')));
    assert.equal(refused.status, 404);
    assert.equal((await listed('admin.sud')).find((c) => c.id === id)?.undoneAt, undefined, 'not undone');
    assert.equal((await as('admin.sud', 'POST', `/api/corrections/${id}/undo`)).status, 200);
    assert.ok((await listed('admin.sud')).find((c) => c.id === id)?.undoneAt);
  });

  it('lets a site administrator decide only the identity reviews that concern their site\'s records', async () => {
    const patientId = await southRecord('RS-1');
    await atrium.archive.index.sql.transaction((tx) => openReview(tx, 'ins-invalid', patientId, null, 'route access test'));
    const id = (await atrium.archive.index.sql.get<{ id: number }>(`SELECT id FROM identity_reviews WHERE kind = 'ins-invalid' AND patient_id = ? AND state = 'open'`, [patientId]))!.id;
    const listed = async (who: string) => (await created<{ reviews: Array<{ id: number }> }>(as(who, 'GET', '/api/identity-reviews'))).reviews.map((r) => r.id);
    assert.ok(!(await listed('admin.nord')).includes(Number(id)));
    assert.ok((await listed('admin.sud')).includes(Number(id)));
    const refused = await answer(await as('admin.nord', 'POST', `/api/identity-reviews/${id}`, { accept: true }), String(id), '987654321');
    assert.deepEqual(refused, await answer(await as('admin.nord', 'POST', '/api/identity-reviews/987654321', { accept: true })));
    assert.equal(refused.status, 404);
    assert.ok((await listed('admin.sud')).includes(Number(id)), 'still open after the refusal');
    // Decided, it is still answered as absent to another site (its state is not told either).
    assert.equal((await as('admin.sud', 'POST', `/api/identity-reviews/${id}`, { accept: false })).status, 200);
    assert.deepEqual(await answer(await as('admin.nord', 'POST', `/api/identity-reviews/${id}`, { accept: true }), String(id), '987654321'), refused);
  });

  it('lets a site administrator assign only their own site\'s teleradiology requests: the would-be reader of another site\'s reads nothing', async () => {
    const id = await newTeleRequest();
    const refused = await answer(await as('admin.nord', 'POST', `/api/teleradiology/requests/${id}/assign`, { login: 'rad.nord' }), String(id), '987654321');
    assert.deepEqual(refused, await answer(await as('admin.nord', 'POST', '/api/teleradiology/requests/987654321/assign', { login: 'rad.nord' })));
    assert.equal(refused.status, 404);
    assert.equal((await as('rad.nord', 'GET', `/dicom-web/studies/${south.uids.study}/metadata`)).status, 404);
    const assigned = await created<{ assignedTo?: string }>(as('admin.sud', 'POST', `/api/teleradiology/requests/${id}/assign`, { login: 'rad.nord' }));
    assert.equal(assigned.assignedTo, 'rad.nord');
    assert.equal((await as('rad.nord', 'GET', `/dicom-web/studies/${south.uids.study}/metadata`)).status, 200, 'assigned by its own site, the reader reads');
  });
});
