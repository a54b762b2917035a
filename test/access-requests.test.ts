/**
 * "N exams elsewhere" and the request for access (issue 20 §3): one person (one qualified INS)
 * with an exam at CHU-NORD and two at CLIN-SUD. A CHU-NORD radiologist opening the CHU-NORD
 * exam is told the number of the others (never their sites or UIDs), asks for access with a
 * reason; the request is recorded and audited; CLIN-SUD's administrator reads it with their own
 * record's identifier; CHU-NORD's administrator does not see it; a study the caller may not see
 * is answered as absent; a patient account may not ask; a too-short reason is refused.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { sendHl7 } from './support/hl7.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { loginLocal, request, type CookieJar } from './support/browser-session.ts';
import { addUser } from '../src/cli/users.ts';
import { Browsers, haveChromium, Screenshots } from './support/chromium.ts';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const portalDir = path.join(repo, 'web', 'dist');

const password = 'un mot de passe assez long pour les tests';
const validINS = '280017512345610';
const insAuthority = 'ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO';
let control = 0;

const adt = (app: string, facility: string, PatientID: string, issuer: string) => [
  `MSH|^~\\&|${app}|${facility}|ATRIUM|GHT|20261201093000||ADT^A04^ADT_A01|AR${++control}|P|2.5|||||FRA|8859/1`,
  'EVN||20261201093000',
  `PID|1||${PatientID}^^^${issuer}^PI~${validINS}^^^${insAuthority}^INS||Ailleurs^Alice||19800115|F${'|'.repeat(24)}QUAL`,
  'PV1|1|O',
].join('\r');

for (const engine of testDatabases()) {
  describe(`access requests to exams elsewhere (${engine.name})`, () => {
    let atrium: RunningAtrium;
    let base: string;
    let cleanup: () => Promise<void>;
    const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
    // A copy of the built portal: another build of web/dist during the test does not pull files from under the browser.
    const portalCopy = mkdtempSync(path.join(tmpdir(), 'atrium-access-requests-portal-'));
    const north = syntheticInstance({ PatientID: 'AN-1', PatientName: 'Ailleurs^Alice', Rows: 4, Columns: 4 });
    const south = [1, 2].map(() => syntheticInstance({ PatientID: 'AS-1', PatientName: 'Ailleurs^Alice', Rows: 4, Columns: 4 }));
    const get = (who: string, url: string) => request(sessions[who]!.jar, `${base}${url}`);
    const post = (who: string, url: string, body: unknown) => request(sessions[who]!.jar, `${base}${url}`, {
      method: 'POST', headers: { 'x-csrf-token': sessions[who]!.csrf, 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    const json = async <T>(r: Response, status: number): Promise<T> => {
      const text = await r.text();
      assert.equal(r.status, status, text);
      return JSON.parse(text) as T;
    };

    before(async () => {
      const db = await engine.open();
      cleanup = db.cleanup;
      if (existsSync(path.join(portalDir, 'index.html'))) cpSync(portalDir, portalCopy, { recursive: true });
      atrium = await startAtrium({
        index: db.config, hl7: true,
        configure: (c) => {
          c.http.portalDir = portalCopy;
          c.hl7.senders = [
            { application: 'RIS_NORD', facility: 'CHU_NORD', site: 'CHU-NORD' },
            { application: 'RIS_SUD', facility: 'CLIN_SUD', site: 'CLIN-SUD' },
          ];
        },
      });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      assert.equal((await sendHl7(atrium.hl7!.port, adt('RIS_SUD', 'CLIN_SUD', 'AS-1', 'CLINSUD'))).code, 'AA');
      assert.equal((await sendHl7(atrium.hl7!.port, adt('RIS_NORD', 'CHU_NORD', 'AN-1', 'CHUNORD'))).code, 'AA');
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [north.file])).status, 200);
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, south.map((s) => s.file))).status, 200);
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'rad.nord', displayName: 'Dr Nord', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'admin.sud', displayName: 'Admin Sud', roles: ['site-admin'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'admin.nord', displayName: 'Admin Nord', roles: ['site-admin'], sites: ['CHU-NORD'], password }, by);
      const nord = atrium.archive.sites.get('CHU-NORD')!;
      const record = (await atrium.archive.index.patientRecordId(nord.id, nord.issuerOfPatientID, 'AN-1'))!;
      await addUser(atrium.archive, { login: 'alice', displayName: 'Alice Ailleurs', roles: ['patient'], sites: [], patientId: record, password }, by);
      for (const who of ['rad.nord', 'admin.sud', 'admin.nord', 'alice']) sessions[who] = await loginLocal(base, who, password);
    });

    after(async () => {
      await atrium?.close();
      await cleanup?.();
      rmSync(portalCopy, { recursive: true, force: true });
    });

    it('counts the person\'s exams the caller may not open, without naming them', async () => {
      const r = await get('rad.nord', `/api/access-requests/elsewhere?StudyInstanceUID=${north.uids.study}`);
      const text = await r.text();
      assert.equal(r.status, 200, text);
      assert.deepEqual(JSON.parse(text), { exams: 2, mayRequest: true });
      for (const mark of ['CLIN-SUD', 'AS-1', south[0]!.uids.study, south[1]!.uids.study]) assert.ok(!text.includes(mark), `names ${mark}`);
      // Who sees everything of the person is told there is nothing elsewhere.
      assert.deepEqual(await json(await get('admin.sud', `/api/access-requests/elsewhere?StudyInstanceUID=${south[0]!.uids.study}`), 200), { exams: 1, mayRequest: false });
    });

    it('answers a study the caller may not see exactly as one that does not exist, and records the attempt', async () => {
      const foreign = await get('rad.nord', `/api/access-requests/elsewhere?StudyInstanceUID=${south[0]!.uids.study}`);
      const absent = await get('rad.nord', '/api/access-requests/elsewhere?StudyInstanceUID=1.2.3.4.5.6.7');
      assert.equal(foreign.status, 404);
      assert.equal(absent.status, 404);
      assert.equal((await foreign.text()).replace(south[0]!.uids.study, 'X'), (await absent.text()).replace('1.2.3.4.5.6.7', 'X'));
      const refused = await atrium.archive.index.sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM audit_events WHERE action = 'access-request' AND outcome = 'refused' AND actor = 'rad.nord'`);
      assert.ok(Number(refused?.n) >= 2);
    });

    it('records a request with its reason, audited; CLIN-SUD\'s administrator reads it with their record, CHU-NORD\'s does not', async () => {
      assert.equal((await post('rad.nord', '/api/access-requests', { StudyInstanceUID: north.uids.study, reason: 'court' })).status, 400, 'a reason of 10 characters at least');
      assert.equal((await post('alice', '/api/access-requests', { StudyInstanceUID: north.uids.study, reason: 'je veux tout voir de mon dossier' })).status, 403);
      const reason = 'Comparaison avec le scanner antérieur pour suivi du nodule';
      const { request: created } = await json<{ request: { id: number; exams: number } }>(await post('rad.nord', '/api/access-requests', { StudyInstanceUID: north.uids.study, reason }), 201);
      assert.equal(created.exams, 2);
      const audited = await atrium.archive.index.sql.get<{ reason: string; study_instance_uid: string | null }>(
        `SELECT reason, study_instance_uid FROM audit_events WHERE action = 'access-request' AND outcome = 'success' AND actor = 'rad.nord'`);
      assert.equal(audited?.reason, reason);
      const { requests } = await json<{ requests: Array<{ id: number; requestedBy: string; requesterName: string; reason: string; exams: number; records: Array<{ site: string; PatientID: string }> }> }>(
        await get('admin.sud', '/api/access-requests'), 200);
      assert.equal(requests.length, 1);
      assert.deepEqual({ ...requests[0], createdAt: undefined }, {
        id: created.id, requestedBy: 'rad.nord', requesterName: 'Dr Nord', reason, exams: 2, records: [{ site: 'CLIN-SUD', PatientID: 'AS-1' }], createdAt: undefined,
      });
      assert.deepEqual((await json<{ requests: unknown[] }>(await get('admin.nord', '/api/access-requests'), 200)).requests, []);
      // Nothing was opened by asking.
      assert.equal((await get('rad.nord', `/dicom-web/studies/${south[0]!.uids.study}/metadata`)).status, 404);
      // Nothing left to ask for: refused.
      assert.equal((await post('admin.sud', '/api/access-requests', { StudyInstanceUID: south[0]!.uids.study, reason })).status, 403, 'an administrator does not break the glass');
    });

    it('says "2 exams elsewhere" in the viewer and sends the request with its reason (Chromium)', { skip: (!haveChromium || !existsSync(path.join(portalDir, 'index.html'))) && 'no Chromium or no built portal' }, async () => {
      const browsers = new Browsers();
      const shots = new Screenshots(path.join(repo, '.tmp', `access-requests-${engine.name}`));
      try {
        const page = await browsers.open();
        await page.goto(`${base}/app/viewer?StudyInstanceUID=${north.uids.study}`);
        await page.locator('input[name=login]').fill('rad.nord');
        await page.locator('input[name=password]').fill(password);
        await page.getByRole('button', { name: 'Se connecter', exact: true }).click();
        await page.getByTestId('exams-elsewhere').waitFor();
        assert.equal(await page.getByTestId('exams-elsewhere-count').innerText(), '2 examens de ce patient dans d\'autres sites, que vous ne pouvez pas ouvrir');
        await page.getByTestId('ask-access').click();
        assert.ok(await page.getByTestId('send-access-request').isDisabled(), 'no request without a reason');
        // Typed key by key, as a person does: letters that are the viewer's shortcuts (a, e, o, l, h, r, i, c, k, w, p, z, 1-5)
        // go into the reason, not to the viewer.
        const typed = 'Bilan d\'extension, kyste hépatique : comparer avec les scanners 1 à 5 (zone Ouest, rapport préalable)';
        await page.getByTestId('access-reason').click();
        await page.keyboard.type(typed);
        assert.equal(await page.getByTestId('access-reason').inputValue(), typed);
        await page.getByTestId('send-access-request').click();
        await page.getByTestId('access-request-sent').waitFor();
        await shots.shootNonBlank(page, 'viewer-access-request');
        const { requests } = await json<{ requests: Array<{ reason: string }> }>(await get('admin.sud', '/api/access-requests'), 200);
        assert.equal(requests[0]?.reason, typed);
      } finally {
        await browsers.close();
      }
    });

    it('lists the requests for CLIN-SUD\'s administrator, who answers by sharing the record with the requester (Chromium, French then English)', { skip: (!haveChromium || !existsSync(path.join(portalDir, 'index.html'))) && 'no Chromium or no built portal' }, async () => {
      const browsers = new Browsers();
      const shots = new Screenshots(path.join(repo, '.tmp', `access-requests-${engine.name}`));
      try {
        // CHU-NORD's administrator holds none of the exams asked for: nothing to read.
        const northPage = await browsers.open({ locale: 'fr-FR' });
        await northPage.goto(`${base}/app/`);
        await northPage.locator('input[name=login]').fill('admin.nord');
        await northPage.locator('input[name=password]').fill(password);
        await northPage.getByRole('button', { name: 'Se connecter', exact: true }).click();
        await northPage.getByTestId('nav-access-requests').click();
        assert.equal(await northPage.getByTestId('access-requests-empty').innerText(), 'Aucune demande d\'accès.');

        const page = await browsers.open({ locale: 'fr-FR' });
        await page.goto(`${base}/app/`);
        await page.locator('input[name=login]').fill('admin.sud');
        await page.locator('input[name=password]').fill(password);
        await page.getByRole('button', { name: 'Se connecter', exact: true }).click();
        await page.getByTestId('nav-access-requests').click();
        await page.locator('h1', { hasText: 'Demandes d\'accès' }).waitFor();
        const row = page.getByTestId('access-requests').locator('tr', { hasText: 'kyste hépatique' });
        await row.waitFor();
        assert.equal(await row.getByTestId('requester').innerText(), 'Dr Nord (rad.nord)');
        assert.match(await row.getByTestId('request-reason').innerText(), /^Bilan d'extension, kyste hépatique/);
        assert.match(await row.getByTestId('request-date').innerText(), /^\d{2}\/\d{2}\/\d{4}/);
        assert.equal(await row.getByTestId('request-records').innerText(), 'AS-1 (CLIN-SUD)');
        await shots.shootNonBlank(page, 'access-requests-fr');
        // Not shared yet: rad.nord still may not open CLIN-SUD's exams.
        assert.equal((await get('rad.nord', `/dicom-web/studies/${south[0]!.uids.study}/metadata`)).status, 404);
        await row.getByTestId('share-with-requester').click();
        await page.getByTestId('share-with-pro').waitFor();
        assert.equal(await page.getByTestId('sharing-target').innerText(), 'Ce qui est partagé : les examens du patient AS-1 (CLIN-SUD)');
        assert.equal(await page.locator('input[name=toUser]').inputValue(), 'rad.nord', 'the requester is prefilled');
        await page.getByTestId('share-with-pro').locator('button[type=submit]').click();
        await page.getByTestId('grant-created').waitFor();
        // The answer opens what was asked for.
        assert.equal((await get('rad.nord', `/dicom-web/studies/${south[0]!.uids.study}/metadata`)).status, 200);

        await page.getByRole('button', { name: 'English' }).click();
        await page.getByTestId('nav-access-requests').click();
        await page.locator('h1', { hasText: 'Access requests' }).waitFor();
        const again = page.getByTestId('access-requests').locator('tr', { hasText: 'kyste hépatique' });
        assert.equal(await again.getByTestId('share-with-requester').innerText(), 'Share with Dr Nord');
        await shots.shootNonBlank(page, 'access-requests-en');
      } finally {
        await browsers.close();
      }
    });
  });
}
