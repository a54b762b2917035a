/**
 * Issue 16, end to end, with two Atrium instances: territory A's plays the DRIMbox source,
 * territory B's the DRIMbox consumer. A stroke CT is read by teleradiology in A and its report
 * signed; its CR-IMG and KOS go to the DMP test double (over mutual TLS, as the DMP checks
 * them). A physician of B, logged in to B's portal with the test Pro Santé Connect, opens the
 * patient from the RIS's contextual call, finds the documents by INS (TD0.2, ITI-18), reads the
 * report (ITI-43), sees the images in B's viewer in Chromium (fetched from A over WADO-RS with
 * their access token and the manifest's UID, nothing kept by B) and imports them into B's
 * archive under B's PatientID, the INS kept. Faults: a malformed ITI-18 answer, a series the
 * manifest does not list, an expired token, a source that is down (and the retry once it is back).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import type { Page } from 'playwright-core';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { CookieJar, loginLocal, loginThroughProvider, request } from './support/browser-session.ts';
import { Browsers, haveChromium, Screenshots } from './support/chromium.ts';
import { freePort } from './support/dcmtk.ts';
import { DmpDouble, repositoryUniqueId } from './support/dmp-double.ts';
import { atriumOidcConfig, startIdentityProvider, type TestIdentityProvider } from './support/oidc-provider.ts';
import { makeCertificates } from './support/rsyslog.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { startWorkers, type Workers } from '../src/cli/workers.ts';
import { SessionAccessTokens } from '../src/access/session-tokens.ts';
import type { AtriumConfig } from '../src/config/config.ts';
import { documentCodes } from '../src/exchange/dmp/metadata.ts';
import { INS_OIDS, insKeyOf, parseINS } from '../src/patients/ins.ts';
import { insOtherPatientIDsItem } from '../src/patients/ins-dicom.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const portalDir = path.join(repo, 'web', 'dist');
const password = 'un mot de passe assez long pour les tests';
const engine = testDatabases().at(-1)!;
const pki = mkdtempSync(path.join(tmpdir(), 'atrium-drimbox-e2e-'));
makeCertificates(pki, 'igc', [{ name: 'server', usage: 'server' }, { name: 'clin-sud', usage: 'client' }, { name: 'chu-nord', usage: 'client' }]);
const file = (name: string) => readFileSync(path.join(pki, name), 'utf8');
const ins = (() => {
  const m = '1670275123456';
  return parseINS(m + insKeyOf(m), INS_OIDS.NIR_TEST);
})();
const insItem = insOtherPatientIDsItem(ins);
/** Dr Bernard, emergency physician in territory B, and a colleague whose tokens last two seconds. */
const drB = { sub: 'dr-bernard', SubjectNameID: '810505050505', given_name: 'Claire', family_name: 'BERNARD' };
const briefB = { sub: 'dr-bref', SubjectNameID: '810606060606', given_name: 'Marc', family_name: 'BREF', accessTokenSeconds: 2 };
const revokedB = { sub: 'dr-revoque', SubjectNameID: '810707070707', given_name: 'Paul', family_name: 'REVOQUE' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The network between the territories: a TCP relay to the source, which the test cuts and restores. */
class Link {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  constructor(readonly port: number, private readonly to: number) {}

  up(): Promise<void> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.to, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => (s === client ? upstream : client).destroy());
      }
      client.pipe(upstream).pipe(client);
    });
    return new Promise((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
  }

  down(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

const dmpSite = (site: string, cert: string): AtriumConfig['dmp']['sites'][number] => ({
  site, certFile: path.join(pki, `${cert}.crt`), keyFile: path.join(pki, `${cert}.key`),
  sector: { code: 'SA01', scheme: '1.2.250.1.71.4.2.4', display: 'Etablissement public de santé' },
  practiceSetting: { code: 'ETABLISSEMENT', scheme: '1.2.250.1.213.1.1.4.9', display: 'Etablissement de santé' },
});

describe(`DRIMbox: a stroke CT of territory A seen and imported in territory B through the DMP (${engine.name})`, { skip: !haveChromium && 'Chromium is not installed' }, () => {
  let dmp: DmpDouble;
  let idp: TestIdentityProvider;
  let source: RunningAtrium;
  let consumer: RunningAtrium;
  /** A second node of territory B on B's index, behind the same load balancer: what one node opened, the other serves. */
  let consumerB2: RunningAtrium;
  let baseB2: string;
  let workersA: Workers;
  let baseA: string;
  let baseB: string;
  let link: Link;
  const cleanups: Array<() => Promise<void>> = [];
  const browsers = new Browsers();
  const screenshots = new Screenshots(path.join(repo, '.tmp', 'drimbox-end-to-end'));
  let page: Page;
  /** Dr Bernard's session in B, outside the browser, for the API checks. */
  const jarB = new CookieJar();
  let csrfB = '';
  let studyUID = '';
  let kosUID = '';

  // Territory A: the stroke CT at Clinique du Sud, the patient identified by their qualified INS.
  const ct = (() => {
    const first = syntheticInstance({
      PatientID: 'SUD-AVC-1', PatientName: 'MARTIN^Louise', PatientBirthDate: '19670201', PatientSex: 'F', Modality: 'CT', StudyDate: '20261206', Rows: 64, Columns: 64,
      extra: [{ tag: 0x00101002, vr: 'SQ', items: [insItem] }, { tag: 0x00180015, vr: 'CS', value: Buffer.from('HEAD') }],
    });
    const more = [1, 2].map(() => syntheticInstance({
      StudyInstanceUID: first.uids.study, SeriesInstanceUID: first.uids.series,
      PatientID: 'SUD-AVC-1', PatientName: 'MARTIN^Louise', PatientBirthDate: '19670201', PatientSex: 'F', Modality: 'CT', StudyDate: '20261206', Rows: 64, Columns: 64,
      extra: [{ tag: 0x00101002, vr: 'SQ', items: [insItem] }, { tag: 0x00180015, vr: 'CS', value: Buffer.from('HEAD') }],
    }));
    return [first, ...more];
  })();
  // Territory B: an older chest X-ray of the same person at CHU Nord, under B's own PatientID.
  const prior = syntheticInstance({
    PatientID: 'NORD-77', PatientName: 'MARTIN^Louise', PatientBirthDate: '19670201', PatientSex: 'F', Modality: 'CR', StudyDate: '20240115', Rows: 16, Columns: 16,
    extra: [{ tag: 0x00101002, vr: 'SQ', items: [insItem] }],
  });

  const callB = async (method: string, url: string, body?: unknown) => request(jarB, `${baseB}${url}`, {
    method, headers: { 'x-csrf-token': csrfB, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const auditOf = (atrium: RunningAtrium, where: string, params: unknown[]) => atrium.archive.index.sql.all<{ action: string; outcome: string; actor: string; study_instance_uid: string | null; details: string | null }>(
    `SELECT action, outcome, actor, study_instance_uid, details FROM audit_events WHERE ${where} ORDER BY id`, params);
  const patient = { site: 'CHU-NORD', PatientID: 'NORD-77' };

  before(async () => {
    if (!existsSync(path.join(portalDir, 'index.html'))) execFileSync('npm', ['run', 'build:web'], { cwd: repo, stdio: 'inherit' });
    dmp = new DmpDouble({ cert: file('server.crt'), key: file('server.key'), ca: file('igc.crt') });
    await dmp.start();
    cleanups.push(() => dmp.stop());
    dmp.patients.set(ins.matricule + ins.key, { dmp: 'active' });
    const [portA, portB, portLink] = [await freePort(), await freePort(), await freePort()];
    baseA = `http://127.0.0.1:${portA}`;
    // Territory B reaches A's DICOMweb (the manifests' Retrieve URLs) through the link.
    link = new Link(portLink, portA);
    await link.up();
    cleanups.push(() => link.down());
    baseB = `http://127.0.0.1:${portB}`;
    idp = await startIdentityProvider({ redirectUri: `${baseA}/auth/callback`, moreRedirectUris: [`${baseB}/auth/callback`], resources: {}, accounts: [drB, briefB, revokedB] });
    cleanups.push(() => idp.close());
    const dbA = await engine.open();
    const dbB = await engine.open();
    cleanups.push(dbA.cleanup, dbB.cleanup);
    source = await startAtrium({
      index: dbA.config,
      configure: (c) => {
        c.http.port = portA;
        c.http.publicBaseUrl = `http://127.0.0.1:${link.port}`;
        c.auth.drimbox = { introspectionEndpoint: idp.introspectionEndpoint, clientId: idp.atriumClient.clientId, clientSecret: idp.atriumClient.clientSecret, cacheSeconds: 0, rppsClaim: 'SubjectNameID' };
        c.dmp.endpoint = dmp.endpoint;
        c.dmp.caFile = path.join(pki, 'igc.crt');
        c.dmp.sites = [dmpSite('CLIN-SUD', 'clin-sud')];
      },
    });
    cleanups.unshift(async () => {
      await workersA?.stop(500);
      await source.close().catch(() => {});
    });
    consumer = await startAtrium({
      index: dbB.config,
      configure: (c) => {
        c.http.port = portB;
        c.http.portalDir = portalDir;
        c.auth.oidc = atriumOidcConfig(idp, baseB);
        c.dmp.endpoint = dmp.endpoint;
        c.dmp.caFile = path.join(pki, 'igc.crt');
        c.dmp.sites = [dmpSite('CHU-NORD', 'chu-nord')];
      },
    });
    cleanups.unshift(() => consumer.close());
    const portB2 = await freePort();
    baseB2 = `http://127.0.0.1:${portB2}`;
    consumerB2 = await startAtrium({
      index: dbB.config,
      configure: (c) => {
        c.http.port = portB2;
        c.auth.oidc = atriumOidcConfig(idp, baseB);
        c.dmp.endpoint = dmp.endpoint;
        c.dmp.caFile = path.join(pki, 'igc.crt');
        c.dmp.sites = [dmpSite('CHU-NORD', 'chu-nord')];
      },
    });
    cleanups.unshift(() => consumerB2.close());
    workersA = await startWorkers(source.archive, source.config, pino({ level: 'silent' }), { auditHostname: 'test', start: [] });

    // A: the stroke CT, read by teleradiology, the report signed final, its documents published.
    for (const o of ct) assert.equal((await stowFiles(source.dicomweb, source.tokens['CLIN-SUD']!, [o.file])).status, 200);
    await source.identities.drain();
    studyUID = ct[0]!.uids.study;
    const by = { actor: 'test', via: 'cli' as const };
    await addUser(source.archive, { login: 'manip.sud', displayName: 'Manipulateur Sud', roles: ['technologist'], sites: ['CLIN-SUD'], password }, by);
    await addUser(source.archive, { login: 'neuro.a', displayName: 'NEURO^Anne', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10001234567', password }, by);
    const sessionsA = { manip: await loginLocal(baseA, 'manip.sud', password), neuro: await loginLocal(baseA, 'neuro.a', password) };
    const callA = async (who: keyof typeof sessionsA, url: string, body: unknown = {}) => {
      const r = await request(sessionsA[who].jar, `${baseA}${url}`, { method: url.endsWith('/report') ? 'PUT' : 'POST', headers: { 'x-csrf-token': sessionsA[who].csrf, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const text = await r.text();
      assert.ok(r.status < 300, `${url}: ${r.status} ${text}`);
      return JSON.parse(text || '{}') as Record<string, unknown>;
    };
    const { id } = await callA('manip', '/api/teleradiology/requests', {
      patient: { PatientID: 'SUD-AVC-1' }, StudyInstanceUID: studyUID, AccessionNumber: 'AVC-2026-1', urgency: 'stroke', modality: 'CT', bodyPart: 'HEAD', specialty: 'neuro',
      clinicalContext: 'Hémiplégie droite brutale à 7 h', clinicalQuestion: 'AVC ischémique ? Hémorragie ?', requestingPhysician: { name: 'URGENTISTE^Paul', rpps: '10009999999' },
      proposedProtocol: 'Scanner cérébral sans injection',
    }) as { id: number };
    await callA('neuro', `/api/teleradiology/requests/${id}/protocol`, { decision: 'validated' });
    await callA('neuro', `/api/teleradiology/requests/${id}/claim`);
    await callA('neuro', `/api/teleradiology/requests/${id}/report`, { findings: 'Hypodensité du territoire sylvien gauche. Pas d\'hémorragie.', conclusion: 'AVC ischémique sylvien gauche' });
    await callA('neuro', `/api/teleradiology/requests/${id}/report/sign`, {});
    await workersA.studyDocuments.builder.buildDue();
    await workersA.dmp!.queue.drain();
    await workersA.dmp!.publisher.publishDue();
    const published = dmp.entries.filter((e) => e.status === 'urn:oasis:names:tc:ebxml-regrep:StatusType:Approved' && e.typeCode !== documentCodes.signature.typeCode.code);
    assert.deepEqual(published.map((e) => e.typeCode).sort(), [documentCodes['CR-IMG'].typeCode.code, documentCodes.KOS.typeCode.code].sort(), 'the CR-IMG and the KOS are in the DMP');
    kosUID = published.find((e) => e.typeCode === documentCodes.KOS.typeCode.code)!.uniqueId;

    // B: the patient's own older exam, the physicians known by their RPPS (Pro Santé Connect logins).
    assert.equal((await stowFiles(consumer.dicomweb, consumer.tokens['CHU-NORD']!, [prior.file])).status, 200);
    await consumer.identities.drain();
    await addUser(consumer.archive, { login: 'dr.bernard', displayName: 'BERNARD^Claire', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10505050505' }, by);
    await addUser(consumer.archive, { login: 'dr.bref', displayName: 'BREF^Marc', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10606060606' }, by);
    await addUser(consumer.archive, { login: 'dr.revoque', displayName: 'REVOQUE^Paul', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10707070707' }, by);
    await addUser(consumer.archive, { login: 'local.nord', displayName: 'Sans PSC', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
    const back = await loginThroughProvider(baseB, jarB, drB.sub, '/app/');
    assert.equal(back.status, 302);
    const me = (await (await request(jarB, `${baseB}/auth/me`)).json()) as { csrfToken: string };
    csrfB = me.csrfToken;
  });

  after(async () => {
    await browsers.close();
    for (const c of cleanups) await c().catch(() => {});
    rmSync(pki, { recursive: true, force: true });
  });

  it('keeps the Pro Santé Connect access token on the server, sealed: the browser never gets it', async () => {
    const me = await (await request(jarB, `${baseB}/auth/me`)).text();
    assert.doesNotMatch(me, /access_token|accessToken/);
    const cookie = jarB.get(baseB, 'atrium_session')!;
    // Opened with the key every node derives from the client secret, it is a token the provider says is Dr Bernard's.
    const token = await new SessionAccessTokens(consumer.archive.index.sql, idp.atriumClient.clientSecret).tokenOf(cookie);
    assert.ok(token);
    const introspected = await fetch(idp.introspectionEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${idp.atriumClient.clientId}:${idp.atriumClient.clientSecret}`).toString('base64')}` },
      body: new URLSearchParams({ token }),
    });
    const answer = (await introspected.json()) as { active: boolean; SubjectNameID?: string };
    assert.deepEqual([answer.active, answer.SubjectNameID], [true, drB.SubjectNameID]);
    // At rest it is not the token, and another key, or another session's row, opens nothing.
    const rows = await consumer.archive.index.sql.all<{ sealed: string }>('SELECT sealed FROM session_access_tokens');
    assert.ok(rows.length >= 1 && rows.every((r) => !r.sealed.includes(token) && !Buffer.from(r.sealed, 'base64').includes(Buffer.from(token))));
    assert.equal(await new SessionAccessTokens(consumer.archive.index.sql, 'another secret').tokenOf(cookie), undefined);
    assert.equal(await new SessionAccessTokens(consumer.archive.index.sql, idp.atriumClient.clientSecret).tokenOf(`${cookie.slice(0, -1)}${cookie.endsWith('A') ? 'B' : 'A'}`), undefined);
  });

  it('answers the RIS\'s contextual POST with a redirect to the patient\'s page, and refuses one without the consent flag or with a bad INS', async () => {
    const post = (form: Record<string, string>) => fetch(`${baseB}/drimbox/context`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form) });
    const context = { ins: `${ins.matricule}${ins.key}`, insOid: INS_OIDS.NIR_TEST, PatientID: 'NORD-77', IssuerOfPatientID: 'CHUNORD', birthName: 'MARTIN', firstNames: 'Louise', birthDate: '1967-02-01', sex: 'F', consent: 'true' };
    const ok = await post(context);
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get('location'), '/app/patients?site=CHU-NORD&PatientID=NORD-77&dmp=1');
    assert.equal((await post({ ...context, consent: 'false' })).status, 403);
    assert.equal((await post({ ...context, ins: '1670275123456' + String((Number(insKeyOf('1670275123456')) + 1) % 97).padStart(2, '0') })).status, 400);
    assert.equal((await post({ ...context, IssuerOfPatientID: 'ELSEWHERE' })).status, 400);
  });

  it('finds the CR-IMG and the KOS by INS with filters, as the professional (VIHF mode INDIRECTE_RENFORCEE), recorded', async () => {
    const search = async (query: Record<string, string>) => {
      const r = await callB('GET', `/api/drimbox/documents?${new URLSearchParams({ ...patient, ...query })}`);
      const text = await r.text();
      assert.equal(r.status, 200, text);
      return JSON.parse(text) as { dmp: string; documents: Array<{ kind: string; uniqueId: string; StudyInstanceUID?: string; AccessionNumber?: string }> };
    };
    const all = await search({});
    assert.equal(all.dmp, 'active');
    assert.deepEqual(all.documents.map((d) => d.kind).sort(), ['CR-IMG', 'KOS']);
    assert.ok(all.documents.every((d) => d.StudyInstanceUID === studyUID && d.AccessionNumber === 'AVC-2026-1'));
    assert.equal((await search({ modality: 'CT' })).documents.length, 2);
    assert.equal((await search({ modality: 'MR' })).documents.length, 0, 'filtered by modality (event codes)');
    assert.equal((await search({ accession: 'AUTRE-1' })).documents.length, 0, 'filtered by accession number');
    assert.equal((await search({ from: '20000101', to: '20991231' })).documents.length, 2);
    assert.equal((await search({ region: 'HEAD' })).documents.length, 2, 'filtered by region (event codes)');
    assert.equal((await search({ region: 'CHEST' })).documents.length, 0);
    const find = dmp.requests.filter((r) => r.action === 'urn:ihe:iti:2007:RegistryStoredQuery');
    assert.ok(find.length >= 7 && find.every((r) => r.mode === 'INDIRECTE_RENFORCEE' && r.subject === '10505050505'), JSON.stringify(find.slice(-1)));
    const records = await auditOf(consumer, `actor = 'dr.bernard' AND action = 'query' AND details LIKE ?`, ['%ITI-18%']);
    assert.equal(records.length, 7);
    assert.ok(records.every((r) => r.outcome === 'success'));
    // The local account without a Pro Santé Connect login has no RPPS to consult the DMP with.
    const local = await loginLocal(baseB, 'local.nord', password);
    const refused = await request(local.jar, `${baseB}/api/drimbox/documents?${new URLSearchParams(patient)}`);
    assert.equal(refused.status, 403);
  });

  it('answers a malformed ITI-18 answer with a clear 502, recorded as a failure, and searches again after', async () => {
    dmp.rawNext = { path: '/registry', status: 200, contentType: 'application/soap+xml; charset=UTF-8', body: '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><query:AdhocQueryResponse' };
    const r = await callB('GET', `/api/drimbox/documents?${new URLSearchParams(patient)}`);
    const body = (await r.json()) as { detail: string };
    assert.equal(r.status, 502);
    assert.match(body.detail, /DMP/);
    const failures = await auditOf(consumer, `actor = 'dr.bernard' AND action = 'query' AND outcome = 'failure'`, []);
    assert.equal(failures.length, 1);
    assert.ok(JSON.parse(failures[0]!.details!).code, 'the code is recorded');
    assert.equal((await callB('GET', `/api/drimbox/documents?${new URLSearchParams(patient)}`)).status, 200);
  });

  it('shows the report and the images in the viewer from the patient\'s page reached by the RIS\'s context, fetched from the source with the physician\'s token and the manifest\'s UID', async () => {
    page = await browsers.open();
    await page.goto(`${baseB}/app/`);
    await page.getByTestId('psc-login').click();
    await page.locator('input[name=login]').fill(drB.sub);
    await page.locator('button').click();
    await page.getByTestId('who').waitFor();
    // The RIS's page posts its context form to Atrium B.
    await page.setContent(`<form method="post" action="${baseB}/drimbox/context">
      <input name="ins" value="${ins.matricule}${ins.key}"><input name="insOid" value="${INS_OIDS.NIR_TEST}"><input name="PatientID" value="NORD-77">
      <input name="IssuerOfPatientID" value="CHUNORD"><input name="consent" value="true"><button id="go">DMP</button></form>`);
    await page.locator('#go').click();
    await page.waitForURL(/\/app\/patients\?site=CHU-NORD&PatientID=NORD-77&dmp=1$/);
    await page.getByTestId('timeline').locator('li').first().waitFor();
    const documents = page.getByTestId('dmp-document');
    await documents.nth(1).waitFor({ timeout: 60_000 }).catch(async (e: unknown) => {
      await screenshots.shoot(page, '1-patient-page-failed');
      throw new Error(`${(e as Error).message}\n${await page.getByTestId('dmp').innerText().catch(() => 'no DMP section')}`);
    });
    assert.equal(await documents.count(), 2);
    await screenshots.shootNonBlank(page, '1-patient-page-with-dmp');
    await page.locator('[data-testid=dmp-document][data-kind=CR-IMG] [data-testid=dmp-report]').click();
    await page.getByTestId('dmp-report-text').waitFor();
    assert.match(await page.getByTestId('dmp-report-text').innerText(), /sylvien gauche/);

    const sourceBefore = (await auditOf(source, `actor = 'rpps:10505050505'`, [])).length;
    await page.locator('[data-testid=dmp-document][data-kind=KOS] [data-testid=dmp-open]').click();
    await page.waitForURL(/\/app\/viewer\?StudyInstanceUID=.*&source=dmp$/, { timeout: 60_000 });
    const viewport = page.getByTestId('viewport-0');
    await screenshots.renderedViewport(page, '2-viewer-remote-images', viewport);
    await page.getByTestId('slice-0').waitFor();
    assert.match(await page.getByTestId('slice-0').innerText(), /\/ 3$/);
    // A served them: every read named the manifest and the physician's RPPS, and succeeded.
    const served = (await auditOf(source, `actor = 'rpps:10505050505'`, [])).slice(sourceBefore);
    assert.ok(served.length >= 2, `${served.length} reads at the source`);
    for (const r of served) {
      assert.equal(r.outcome, 'success', r.details ?? '');
      const d = JSON.parse(r.details!) as { kos: string; rpps: string };
      assert.deepEqual([d.kos, d.rpps], [kosUID, '10505050505']);
    }
    // B kept nothing: the study is not in B's archive.
    const inB = await fetch(`${consumer.dicomweb}/studies?StudyInstanceUID=${studyUID}`, { headers: { authorization: `Bearer ${consumer.tokens['CHU-NORD']}` } });
    assert.equal(inB.status === 204 ? 0 : ((await inB.json()) as unknown[]).length, 0);
    // B recorded the retrieval and the reads.
    const viewsB = await auditOf(consumer, `actor = 'dr.bernard' AND action = 'view' AND study_instance_uid = ?`, [studyUID]);
    assert.ok(viewsB.some((r) => JSON.parse(r.details!).dmp === 'ITI-43') && viewsB.some((r) => JSON.parse(r.details!).drimbox === 'consumer'));
  });

  it('refuses a series the manifest does not list (404), recorded, without asking the source', async () => {
    const opened = await callB('POST', '/api/drimbox/open', { ...patient, uniqueId: kosUID, repositoryUniqueId });
    assert.equal(opened.status, 200, await opened.clone().text());
    assert.equal(((await opened.json()) as { StudyInstanceUID: string }).StudyInstanceUID, studyUID);
    const r = await callB('GET', `/api/drimbox/dicom-web/studies/${studyUID}/series/1.2.3.4.5.6.7/metadata`);
    assert.equal(r.status, 404);
    const refused = await auditOf(consumer, `actor = 'dr.bernard' AND outcome = 'refused' AND study_instance_uid = ?`, [studyUID]);
    assert.ok(refused.some((x) => JSON.parse(x.details!).why === 'series not in the manifest'));
    // The source records every request it gets with its series (access/drimbox.ts): none for this one.
    // (Not a count of the source's records: the viewer of the test before may still be reading images through B.)
    assert.ok((await auditOf(source, `actor = 'rpps:10505050505'`, [])).some((x) => ct.some((o) => o.uids.series === JSON.parse(x.details!).series)), 'the source records the series it is asked for');
    assert.deepEqual((await auditOf(source, `actor = 'rpps:10505050505'`, [])).filter((x) => JSON.parse(x.details!).series === '1.2.3.4.5.6.7'), []);
    // A study never opened from the DMP is not served either.
    assert.equal((await callB('GET', `/api/drimbox/dicom-web/studies/${prior.uids.study}/series`)).status, 404);
  });

  it('serves through another node of territory B the manifest opened through the first (one index; the session and its sealed token shared)', async () => {
    const opened = await callB('POST', '/api/drimbox/open', { ...patient, uniqueId: kosUID, repositoryUniqueId });
    assert.equal(opened.status, 200, await opened.clone().text());
    // The viewer's next requests land on the other node: the session cookie of the first.
    const cookie = jarB.header(baseB);
    const onB2 = (url: string) => fetch(`${baseB2}${url}`, { headers: { cookie } });
    const series = await onB2(`/api/drimbox/dicom-web/studies/${studyUID}/series`);
    assert.equal(series.status, 200, await series.clone().text());
    const listed = (await series.json()) as Array<Record<string, { Value: unknown[] }>>;
    assert.deepEqual(listed.map((x) => x['0020000E']!.Value[0]), [ct[0]!.uids.series]);
    const metadata = await onB2(`/api/drimbox/dicom-web/studies/${studyUID}/series/${ct[0]!.uids.series}/metadata`);
    assert.equal(metadata.status, 200, await metadata.clone().text());
    const instances = ((await metadata.json()) as Array<Record<string, { Value: string[] }>>).map((i) => i['00080018']!.Value[0]).sort();
    assert.deepEqual(instances, ct.map((o) => o.uids.sop).sort());
    // A series the manifest does not list, and a study not opened: refused there too.
    assert.equal((await onB2(`/api/drimbox/dicom-web/studies/${studyUID}/series/1.2.3.4.5.6.7/metadata`)).status, 404);
    assert.equal((await onB2(`/api/drimbox/dicom-web/studies/${prior.uids.study}/series`)).status, 404);
    // Another professional's session does not open Dr Bernard's manifest.
    const colleague = await loginLocal(baseB2, 'local.nord', password);
    assert.equal((await request(colleague.jar, `${baseB2}/api/drimbox/dicom-web/studies/${studyUID}/series`)).status, 404);
  });

  it('imports the images into B\'s archive under B\'s PatientID, the INS kept in Other Patient IDs, recorded', async () => {
    await page.goto(`${baseB}/app/patients?site=CHU-NORD&PatientID=NORD-77`);
    await page.getByTestId('dmp-search').click();
    await page.getByTestId('dmp-document').nth(1).waitFor();
    await page.locator('[data-testid=dmp-document][data-kind=KOS] [data-testid=dmp-import]').click();
    await page.getByTestId('dmp-notice').waitFor({ timeout: 60_000 });
    assert.match(await page.getByTestId('dmp-notice').innerText(), /3 image/);
    const metadata = await fetch(`${consumer.dicomweb}/studies/${studyUID}/metadata`, { headers: { authorization: `Bearer ${consumer.tokens['CHU-NORD']}`, accept: 'application/dicom+json' } });
    assert.equal(metadata.status, 200);
    const instances = (await metadata.json()) as Array<Record<string, { Value?: Array<Record<string, { Value?: unknown[] }>> | unknown[] }>>;
    assert.equal(instances.length, 3);
    for (const i of instances) {
      assert.deepEqual(i['00100020']?.Value, ['NORD-77'], 'filed under B\'s PatientID');
      const other = (i['00101002']?.Value ?? []) as Array<Record<string, { Value?: unknown[] }>>;
      assert.ok(other.some((item) => item['00100020']?.Value?.[0] === `${ins.matricule}${ins.key}`), 'the INS in Other Patient IDs');
    }
    const stored = await auditOf(consumer, `actor = 'dr.bernard' AND action = 'store'`, []);
    assert.equal(stored.length, 1);
    assert.equal(stored[0]!.outcome, 'success');
    assert.equal(JSON.parse(stored[0]!.details!).stored, 3);
    // The timeline now lists it beside the older exam.
    await page.reload();
    await page.getByTestId('timeline').locator('li').nth(1).waitFor();
  });

  it('answers 401 when the physician\'s token has expired, telling them to log in with Pro Santé Connect again', async () => {
    const jar = new CookieJar();
    await loginThroughProvider(baseB, jar, briefB.sub, '/app/');
    const { csrfToken } = (await (await request(jar, `${baseB}/auth/me`)).json()) as { csrfToken: string };
    const found = (await (await request(jar, `${baseB}/api/drimbox/documents?${new URLSearchParams(patient)}`)).json()) as { documents: Array<{ kind: string; uniqueId: string; repositoryUniqueId: string }> };
    const kos = found.documents.find((d) => d.kind === 'KOS')!;
    await sleep(2500);
    const r = await request(jar, `${baseB}/api/drimbox/open`, {
      method: 'POST', headers: { 'x-csrf-token': csrfToken, 'content-type': 'application/json' },
      body: JSON.stringify({ ...patient, uniqueId: kos.uniqueId, repositoryUniqueId: kos.repositoryUniqueId }),
    });
    assert.equal(r.status, 401);
    assert.match(((await r.json()) as { detail: string }).detail, /Pro Santé Connect/);
    const refused = await auditOf(consumer, `actor = 'dr.bref' AND outcome = 'refused'`, []);
    assert.ok(refused.some((x) => /access token/.test(JSON.parse(x.details!).why ?? '')));
  });

  it('answers 401 when the source refuses the token (revoked at the provider), recorded on both sides', async () => {
    const jar = new CookieJar();
    await loginThroughProvider(baseB, jar, revokedB.sub, '/app/');
    const { csrfToken } = (await (await request(jar, `${baseB}/auth/me`)).json()) as { csrfToken: string };
    const opened = await request(jar, `${baseB}/api/drimbox/open`, {
      method: 'POST', headers: { 'x-csrf-token': csrfToken, 'content-type': 'application/json' },
      body: JSON.stringify({ ...patient, uniqueId: kosUID, repositoryUniqueId }),
    });
    assert.equal(opened.status, 200, await opened.clone().text());
    const series = [...new Set(ct.map((o) => o.uids.series))][0]!;
    const metadata = `${baseB}/api/drimbox/dicom-web/studies/${studyUID}/series/${series}/metadata`;
    assert.equal((await request(jar, metadata)).status, 200);
    // The provider revokes the token (RFC 7009, by the client it was issued to).
    const token = (await new SessionAccessTokens(consumer.archive.index.sql, idp.atriumClient.clientSecret).tokenOf(jar.get(baseB, 'atrium_session')!))!;
    const revoked = await fetch(`${idp.issuer}/token/revocation`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${idp.atriumClient.clientId}:${idp.atriumClient.clientSecret}`).toString('base64')}` },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
    });
    assert.equal(revoked.status, 200);
    const refused = await request(jar, metadata);
    assert.equal(refused.status, 401);
    assert.match(((await refused.json()) as { detail: string }).detail, /refused your Pro Santé Connect token/);
    const atB = await auditOf(consumer, `actor = 'dr.revoque' AND outcome = 'refused'`, []);
    assert.ok(atB.some((x) => JSON.parse(x.details!).status === 401));
    const atA = await auditOf(source, `action = 'login-failed' AND actor = 'drimbox-consumer'`, []);
    assert.ok(atA.length >= 1, 'the source recorded the refused token');
  });

  it('says the source is down and offers to retry; the retry opens the images once it answers again', async () => {
    await link.down();
    await page.goto(`${baseB}/app/patients?site=CHU-NORD&PatientID=NORD-77`);
    await page.getByTestId('dmp-search').click();
    await page.getByTestId('dmp-document').nth(1).waitFor();
    await page.locator('[data-testid=dmp-document][data-kind=KOS] [data-testid=dmp-open]').click();
    const error = page.getByTestId('dmp-error');
    await error.waitFor({ timeout: 60_000 });
    assert.match(await error.innerText(), /ne répond pas/);
    await screenshots.shootNonBlank(page, '3-source-down');
    const failures = await auditOf(consumer, `actor = 'dr.bernard' AND outcome = 'failure' AND study_instance_uid = ?`, [studyUID]);
    assert.ok(failures.some((x) => /unreachable/.test(JSON.parse(x.details!).why ?? '')));
    assert.ok(page.url().includes('/app/patients'), 'the page stays, with its message');
    await link.up();
    await page.getByTestId('dmp-retry').click();
    await page.waitForURL(/\/app\/viewer\?StudyInstanceUID=.*&source=dmp$/, { timeout: 60_000 });
    await screenshots.renderedViewport(page, '4-viewer-after-retry', page.getByTestId('viewport-0'));
  });
});
