/**
 * Atrium as a DRIMbox source (issue 16 §3): a professional from outside the territory, whose
 * DRIMbox consumer found the study's KOS manifest in the DMP, retrieves over WADO-RS what the
 * manifest lists, with their Pro Santé Connect access token (checked by introspection at the
 * provider) and the manifest's UID in KOS-SOPInstanceUID; nothing else. The IHE Invoke Image
 * Display link opens a study in the viewer after a login. Over HTTP, with real tokens from
 * the test provider.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../src/config/config.ts';
import { startAtriumWithProvider } from './support/provider-and-atrium.ts';
import type { RunningAtrium } from './support/atrium.ts';
import type { TestIdentityProvider } from './support/oidc-provider.ts';
import { testDatabases } from './support/databases.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { CookieJar, loginLocal, loginThroughProvider, request } from './support/browser-session.ts';
import { addUser } from '../src/cli/users.ts';
import { INS_OIDS, insKeyOf, parseINS } from '../src/patients/ins.ts';
import { insOtherPatientIDsItem } from '../src/patients/ins-dicom.ts';
import { manifestSeriesUID } from '../src/exchange/study-documents.ts';

const password = 'un mot de passe assez long pour les tests';
const ins = (() => {
  const m = '2800175123456';
  return parseINS(m + insKeyOf(m), INS_OIDS.NIR_TEST);
})();
const remote = { sub: 'dr-lyon', SubjectNameID: '810101010101', given_name: 'Lucie', family_name: 'LYON' };
const brief = { sub: 'dr-brief', SubjectNameID: '810202020202', given_name: 'Bref', family_name: 'COURT', accessTokenSeconds: 1 };
const local = { sub: 'dr-sud', SubjectNameID: '810303030303', given_name: 'Paul', family_name: 'SUD' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const engine = testDatabases().at(-1)!;

describe('DRIMbox source: a remote consumer retrieves what the manifest names', () => {
  let atrium: RunningAtrium;
  let idp: TestIdentityProvider;
  let base: string;
  let close: () => Promise<void>;
  let kos: string;
  let token: string;
  const first = syntheticInstance({
    PatientID: 'DRIM-1', PatientName: 'DUBOIS^Anne', PatientBirthDate: '19800101', PatientSex: 'F', Rows: 4, Columns: 4,
    extra: [{ tag: 0x00101002, vr: 'SQ', items: [insOtherPatientIDsItem(ins)] }],
  });
  const second = syntheticInstance({
    StudyInstanceUID: first.uids.study, SeriesInstanceUID: first.uids.series,
    PatientID: 'DRIM-1', PatientName: 'DUBOIS^Anne', PatientBirthDate: '19800101', PatientSex: 'F', Rows: 4, Columns: 4,
    extra: [{ tag: 0x00101002, vr: 'SQ', items: [insOtherPatientIDsItem(ins)] }],
  });
  const other = syntheticInstance({ PatientID: 'DRIM-2', PatientName: 'AUTRE^Jean', Rows: 4, Columns: 4 });

  const consumerGet = (url: string, o: { bearer?: string; kos?: string; accept?: string; method?: string } = {}) => fetch(`${base}/dicom-web${url}`, {
    method: o.method ?? 'GET',
    headers: {
      authorization: `Bearer ${o.bearer ?? token}`,
      ...(o.kos !== '' ? { 'KOS-SOPInstanceUID': o.kos ?? kos } : {}),
      ...(o.accept ? { accept: o.accept } : {}),
    },
  });
  const auditOf = (actor: string) => atrium.archive.index.sql.all<{ action: string; outcome: string; study_instance_uid: string | null; details: string | null; reason: string | null }>(
    'SELECT action, outcome, study_instance_uid, details, reason FROM audit_events WHERE actor = ? ORDER BY id', [actor]);
  const series = `/studies/${first.uids.study}/series/${first.uids.series}`;

  before(async () => {
    ({ atrium, idp, base, close } = await startAtriumWithProvider({
      engine, accounts: [remote, brief, local],
      configure: (c, provider) => {
        c.auth.drimbox = {
          introspectionEndpoint: provider.introspectionEndpoint, clientId: provider.atriumClient.clientId, clientSecret: provider.atriumClient.clientSecret,
          cacheSeconds: 1, rppsClaim: 'SubjectNameID',
        };
      },
    }));
    for (const o of [first, second, other]) assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [o.file])).status, 200);
    await atrium.identities.drain();
    const made = await fetch(`${base}/api/studies/${first.uids.study}/documents/manifest`, { method: 'POST', headers: { authorization: `Bearer ${atrium.tokens['CLIN-SUD']!}` } });
    const body = await made.text();
    assert.equal(made.status, 201, body);
    kos = (JSON.parse(body) as { uniqueId: string }).uniqueId;
    token = await idp.consumerAccessToken(remote.sub);
    const by = { actor: 'test', via: 'cli' as const };
    await addUser(atrium.archive, { login: 'rad.sud', displayName: 'SUD^Paul', roles: ['radiologist'], sites: ['CLIN-SUD'], rpps: '10303030303' }, by);
    await addUser(atrium.archive, { login: 'admin.nord', displayName: 'Admin Nord', roles: ['site-admin'], sites: ['CHU-NORD'], password }, by);
  });

  after(async () => {
    // The provider may be down already (the last test): closing it again is harmless.
    await close?.();
  });

  it('serves a series the manifest lists, its metadata, an instance and its frames, each recorded with the professional\'s RPPS', async () => {
    const retrieved = await consumerGet(series, { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' });
    assert.equal(retrieved.status, 200, await retrieved.clone().text());
    assert.match(retrieved.headers.get('content-type') ?? '', /^multipart\/related/);
    const bytes = Buffer.from(await retrieved.arrayBuffer());
    assert.ok(bytes.includes(Buffer.from(first.uids.sop)) && bytes.includes(Buffer.from(second.uids.sop)), 'both instances of the series');
    const metadata = await consumerGet(`${series}/metadata`, { accept: 'application/dicom+json' });
    assert.equal(metadata.status, 200);
    assert.equal(((await metadata.json()) as unknown[]).length, 2);
    const instance = await consumerGet(`${series}/instances/${first.uids.sop}`);
    assert.equal(instance.status, 200);
    await instance.arrayBuffer();
    const frame = await consumerGet(`${series}/instances/${first.uids.sop}/frames/1`, { accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' });
    assert.equal(frame.status, 200, await frame.clone().text());
    await frame.arrayBuffer();
    const records = await auditOf('rpps:10101010101');
    assert.equal(records.length, 4);
    for (const r of records) {
      assert.equal(r.outcome, 'success');
      assert.equal(r.study_instance_uid, first.uids.study);
      const details = JSON.parse(r.details!) as { rpps: string; kos: string; access: string };
      assert.deepEqual([details.rpps, details.kos, details.access], ['10101010101', kos, 'drimbox-manifest']);
    }
    assert.deepEqual(records.map((r) => r.action), ['download', 'view', 'download', 'view']);
  });

  it('answers 404 to what the manifest does not list (another series of the study, an unknown series or instance, the study level, a search), each refusal recorded', async () => {
    const before = (await auditOf('rpps:10101010101')).length;
    const refused = [
      `/studies/${first.uids.study}/series/${manifestSeriesUID(first.uids.study)}`,
      `/studies/${first.uids.study}/series/1.2.3.4.5`,
      `${series}/instances/1.2.3.4.5`,
      `${series}/instances/1.2.3.4.5/metadata`,
      `/studies/${first.uids.study}`,
      `/studies/${first.uids.study}/metadata`,
      `${series}/instances`,
      `/studies?PatientID=DRIM-1`,
      '/series',
    ];
    for (const url of refused) {
      const r = await consumerGet(url);
      assert.equal(r.status, 404, `${url}: ${await r.clone().text()}`);
      await r.arrayBuffer();
    }
    const head = await consumerGet(`/studies/${first.uids.study}/series/1.2.3.4.5`, { method: 'HEAD' });
    assert.equal(head.status, 404);
    const records = (await auditOf('rpps:10101010101')).slice(before);
    assert.equal(records.length, refused.length + 1);
    assert.ok(records.every((r) => r.outcome === 'refused'), 'every refusal recorded as refused');
  });

  it('answers 404 to a manifest UID of another study, and without a manifest, recorded', async () => {
    const before = (await auditOf('rpps:10101010101')).length;
    const r = await consumerGet(`/studies/${other.uids.study}/series/${other.uids.series}`);
    assert.equal(r.status, 404);
    await r.arrayBuffer();
    // The manifest's UID given with another study's series it does not list.
    const wrongStudy = await consumerGet(`/studies/${other.uids.study}/series/${first.uids.series}`);
    assert.equal(wrongStudy.status, 404);
    await wrongStudy.arrayBuffer();
    const unknownManifest = await consumerGet(series, { kos: '1.2.3.4.5.6' });
    assert.equal(unknownManifest.status, 404);
    await unknownManifest.arrayBuffer();
    const records = (await auditOf('rpps:10101010101')).slice(before);
    assert.deepEqual(records.map((r) => [r.outcome, JSON.parse(r.details!).why]), [
      ['refused', 'not a current manifest of this study'], ['refused', 'not a current manifest of this study'], ['refused', 'not a current manifest of this study'],
    ]);
    assert.equal(records[0]!.study_instance_uid, other.uids.study);
  });

  it('answers 401 to a token the provider says is not active (revoked, expired, unknown), recorded, and to a consumer token without a manifest', async () => {
    const revoked = await idp.consumerAccessToken(remote.sub);
    assert.equal((await consumerGet(series, { bearer: revoked })).status, 200);
    await idp.revokeConsumerToken(revoked);
    // Past the short cache, the provider is asked again.
    await sleep(1100);
    const afterRevocation = await consumerGet(series, { bearer: revoked });
    assert.equal(afterRevocation.status, 401);
    assert.match(afterRevocation.headers.get('www-authenticate') ?? '', /invalid_token/);

    const expiring = await idp.consumerAccessToken(brief.sub);
    await sleep(1100);
    assert.equal((await consumerGet(series, { bearer: expiring })).status, 401, 'an expired token');
    assert.equal((await consumerGet(series, { bearer: 'not-a-token-the-provider-issued' })).status, 401);
    // Without KOS-SOPInstanceUID the token is not Atrium's own: refused as any unknown bearer.
    assert.equal((await consumerGet(series, { kos: '' })).status, 401);
    const refusals = await auditOf('drimbox-consumer');
    assert.ok(refusals.length >= 3 && refusals.every((r) => r.action === 'login-failed' && r.reason === 'expired-token'), JSON.stringify(refusals));
  });

  it('opens a study in the viewer from the IHE Invoke Image Display link after a Pro Santé Connect login, and refuses a study the caller may not see', async () => {
    const link = `/IHEInvokeImageDisplay?requestType=STUDY&studyUID=${first.uids.study}`;
    const jar = new CookieJar();
    const anonymous = await request(jar, `${base}${link}`);
    assert.equal(anonymous.status, 302);
    const login = new URL(anonymous.headers.get('location')!, base);
    assert.equal(login.pathname, '/auth/login');
    assert.equal(login.searchParams.get('returnTo'), link);
    const back = await loginThroughProvider(base, jar, local.sub, link);
    assert.equal(back.status, 302);
    assert.equal(back.headers.get('location'), link);
    const opened = await request(jar, `${base}${link}`);
    assert.equal(opened.status, 302);
    assert.equal(opened.headers.get('location'), `/app/viewer?StudyInstanceUID=${first.uids.study}`);
    // Another site's administrator: as if the study were not there, and recorded.
    const nord = await loginLocal(base, 'admin.nord', password);
    const refused = await request(nord.jar, `${base}${link}`);
    assert.equal(refused.status, 404);
    const records = await auditOf('admin.nord');
    assert.ok(records.some((r) => r.action === 'view' && r.outcome === 'refused' && r.study_instance_uid === first.uids.study));
    assert.equal((await request(nord.jar, `${base}/IHEInvokeImageDisplay?requestType=PATIENT&patientID=x`)).status, 400);
  });

  it('keeps an Atrium API client that sends KOS-SOPInstanceUID what it is (its key is not sent to the provider)', async () => {
    const r = await consumerGet(`/studies?StudyInstanceUID=${first.uids.study}`, { bearer: atrium.tokens['CLIN-SUD']! });
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as unknown[]).length, 1);
  });

  it('answers 503 when the provider does not answer, once the short cache is past: never a stale "active"', async () => {
    assert.equal((await consumerGet(series)).status, 200);
    await idp.close();
    await sleep(1100);
    const r = await consumerGet(series);
    assert.equal(r.status, 503, await r.clone().text());
  });
});

describe('auth.drimbox configuration', () => {
  const load = (yaml: string, env: Record<string, string> = {}) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'atrium-drimbox-'));
    try {
      writeFileSync(path.join(dir, 'atrium.yaml'), yaml);
      return loadConfig({ file: path.join(dir, 'atrium.yaml'), env, dataDir: dir });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const section = (extra = '') => `auth:\n  drimbox:\n    introspectionEndpoint: https://psc.example.fr/introspect\n    clientId: atrium\n${extra}`;

  it('reads the endpoint and client, the secret from the environment, with a 30 s cache and SubjectNameID by default', () => {
    const c = load(section(), { ATRIUM_DRIMBOX_CLIENT_SECRET: 's3cret' }).auth.drimbox!;
    assert.deepEqual(c, { introspectionEndpoint: 'https://psc.example.fr/introspect', clientId: 'atrium', clientSecret: 's3cret', cacheSeconds: 30, rppsClaim: 'SubjectNameID' });
    assert.equal(load(section('    clientSecretEnv: PSC_SECRET\n'), { PSC_SECRET: 'x' }).auth.drimbox!.clientSecret, 'x');
    assert.equal(load('auth: {}\n').auth.drimbox, undefined, 'off unless configured');
  });

  it('refuses a secret in the file, a missing secret, a plain-HTTP endpoint off the loopback, and a cache longer than 5 minutes', () => {
    const env = { ATRIUM_DRIMBOX_CLIENT_SECRET: 's' };
    assert.throws(() => load(section('    clientSecret: inline\n'), env), ConfigError);
    assert.throws(() => load(section()), /ATRIUM_DRIMBOX_CLIENT_SECRET is not set/);
    assert.throws(() => load(section().replace('https://psc.example.fr', 'http://psc.example.fr'), env), /https/);
    assert.throws(() => load(section('    cacheSeconds: 301\n'), env), /cacheSeconds/);
  });
});
