/**
 * Each user's path through the portal in Debian's Chromium (issue 20, "Done when"), with what is
 * on screen asserted and screenshots saved (under $TMPDIR/atrium-user-paths-*, printed):
 *  - `atrium demo` (the CLI, compiled: `npx tsc -p tsconfig.build.json`), `atrium serve`, then a
 *    radiologist's night: the patient search in the forms people type, the worklist, the request
 *    read before it is claimed, the protocol, the claim, the images beside the report, the final
 *    signature confirmed, the PDF in French; the same screens on a phone (390 px) and a tablet
 *    without horizontal overflow; server refusals said in French;
 *  - a referring physician who opens a prior from another site after asking access: the
 *    viewer counts the exams elsewhere and takes the request with its reason, the other site's
 *    administrator reads it and shares the record from the portal;
 *  - a patient on a phone who opens a share link and sees the axial series first (not the
 *    localizer, not the coronal reformat).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { AtriumProcess } from './support/atrium-process.ts';
import { Browsers, haveChromium, Screenshots } from './support/chromium.ts';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { loginLocal, request } from './support/browser-session.ts';
import { pdfText } from './support/pdf-text.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import type { DicomElement } from '../src/dicom/dataset.ts';
import { newUID } from '../src/dicom/uids.ts';
import { INS_OIDS, insKeyOf, parseINS } from '../src/patients/ins.ts';
import { insOtherPatientIDsItem } from '../src/patients/ins-dicom.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const builtPortal = process.env.ATRIUM_TEST_PORTAL_DIR ?? path.join(repo, 'web', 'dist');

/**
 * A copy of the built portal, whole (every script and style its index.html names is there):
 * a build running meanwhile (web/dist emptied, then written again) does not pull it from
 * under the browsers of this long test.
 */
function portalCopy(): string {
  const copy = mkdtempSync(path.join(tmpdir(), 'atrium-user-paths-portal-'));
  for (let attempt = 0; ; attempt++) {
    rmSync(copy, { recursive: true, force: true });
    try {
      cpSync(builtPortal, copy, { recursive: true });
      const html = readFileSync(path.join(copy, 'index.html'), 'utf8');
      const named = [...html.matchAll(/(?:src|href)="\/app\/([^"]+)"/g)].map((m) => m[1]!);
      if (named.length > 0 && named.every((f) => existsSync(path.join(copy, f)))) return copy;
    } catch {
      // being rebuilt: again
    }
    if (attempt >= 60) throw new Error(`${builtPortal} stayed incomplete: build the portal (npm run build:web)`);
    execFileSync('sleep', ['2']);
  }
}
const cli = path.join(repo, 'bin', 'atrium.mjs');
const password = 'un mot de passe assez long pour les tests';
const shotsDir = mkdtempSync(path.join(tmpdir(), 'atrium-user-paths-'));
const phone = { width: 390, height: 844 };
const tablet = { width: 820, height: 1180 };
const skip = (!haveChromium && 'Debian\'s chromium is not installed (.ci/run installs it)')
  || (!existsSync(path.join(builtPortal, 'index.html')) && 'the portal is not built (npm run build:web)');
const portalDir = skip ? builtPortal : portalCopy();

/** The page is no wider than the window: nothing to scroll sideways (header, tables, toolbar). */
async function noHorizontalOverflow(page: Page, what: string): Promise<void> {
  const r = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, body: document.body.scrollWidth, inner: window.innerWidth }));
  assert.ok(r.scroll <= r.inner && r.body <= r.inner, `${what}: ${Math.max(r.scroll, r.body)} px wide in a ${r.inner} px window`);
}

async function logIn(page: Page, base: string, login: string, secret: string, start = '/app/'): Promise<void> {
  await page.goto(`${base}${start}`);
  await page.locator('input[name=login]').fill(login);
  await page.locator('input[name=password]').fill(secret);
  await page.locator('input[name=password]').press('Enter');
  await page.getByTestId('who').waitFor();
}

/** Text elements of a small header: (tag, VR, value). */
function el(tag: number, vr: DicomElement['vr'], value: string): DicomElement {
  let bytes = Buffer.from(value, 'latin1');
  if (bytes.length % 2 === 1) bytes = Buffer.concat([bytes, Buffer.from(' ')]);
  return { tag, vr, value: bytes };
}

describe('user paths in Chromium', { skip }, () => {
  const browsers = new Browsers();
  const screenshots = new Screenshots(shotsDir);
  before(() => console.log(`screenshots: ${shotsDir}`));
  after(async () => {
    await browsers.close();
    if (portalDir !== builtPortal) rmSync(portalDir, { recursive: true, force: true });
  });

  describe('atrium demo, then a radiologist\'s night', { skip: !existsSync(path.join(repo, 'dist', 'cli', 'main.js')) && 'the server is not compiled (npx tsc -p tsconfig.build.json)' }, () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'atrium-paths-demo-'));
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.DATABASE_URL;
    delete env.ATRIUM_CONFIG;
    let serve: AtriumProcess;
    let base: string;
    let demoPassword: string;
    let requestId: number;
    let page: Page;

    before(async () => {
      const loaded = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [cli, 'demo', '--data-dir', dir], { env, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '', stderr = '';
        child.stdout.on('data', (d) => { stdout += d; });
        child.stderr.on('data', (d) => { stderr += d; });
        child.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
      });
      assert.equal(loaded.code, 0, loaded.stderr);
      const report = JSON.parse(loaded.stdout) as { configFile: string; teleradiologyRequest: number };
      requestId = report.teleradiologyRequest;
      demoPassword = /password, shown this once: (\S+)/.exec(loaded.stderr)?.[1] ?? '';
      assert.ok(demoPassword, loaded.stderr);
      writeFileSync(path.join(dir, 'ports.yaml'), readFileSync(report.configFile, 'utf8') + `http: { port: 0, portalDir: ${portalDir} }\ndimse: { port: 0 }\nhl7: { port: 0 }\n`);
      serve = new AtriumProcess(path.join(dir, 'ports.yaml'), env);
      await serve.start();
      base = serve.url.replace(/\/dicom-web$/, '');
      page = await browsers.open();
      await logIn(page, base, 'demo.radiologue', demoPassword);
    });

    after(async () => {
      await serve?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('finds the patient by the name as typed; an empty search clears the results; a refusal is said in French', async () => {
      const names = page.locator('input[name=name]');
      for (const typed of ['MARTIN ELODIE', 'Martin Élodie', 'martin e']) {
        await names.fill(typed);
        await page.getByRole('button', { name: 'Rechercher', exact: true }).click();
        const table = page.getByTestId('patients');
        await table.getByText('DEMO-A-1001').waitFor();
        assert.match(await table.innerText(), /DEMO-B-2001/, `${typed}: her record at the other site too`);
        assert.doesNotMatch(await table.innerText(), /BERNARD|PETIT/, typed);
      }
      await screenshots.shootNonBlank(page, '01-search');
      // A search the server refuses (an INS is digits): the old results go, the reason is in French.
      await names.fill('');
      await page.locator('input[name=ins]').fill('pas un INS');
      await page.getByRole('button', { name: 'Rechercher', exact: true }).click();
      const alert = page.getByRole('alert');
      await alert.waitFor();
      assert.equal(await alert.innerText(), 'La demande n\'est pas valide : vérifiez les champs saisis.');
      assert.equal(await page.getByTestId('patients').count(), 0);
      // An empty search: no results left from before, and what to type.
      await page.locator('input[name=ins]').fill('');
      await names.fill('martin');
      await page.getByRole('button', { name: 'Rechercher', exact: true }).click();
      await page.getByTestId('patients').waitFor();
      await names.fill('   ');
      await page.getByRole('button', { name: 'Rechercher', exact: true }).click();
      await page.getByText('Saisissez au moins un critère').waitFor();
      assert.equal(await page.getByTestId('patients').count(), 0);
      await screenshots.shootNonBlank(page, '02-empty-search');
    });

    it('reads the demo request before claiming it, validates the protocol, claims it, reports beside the images and signs after confirming', async () => {
      await page.getByTestId('nav-tele').click();
      const row = page.getByTestId(`request-${requestId}`);
      await row.waitFor();
      assert.match(await row.innerText(), /Urgente[\s\S]*CHU-NORD[\s\S]*CT[\s\S]*HEAD/);
      await screenshots.shootNonBlank(page, '03-worklist');
      await row.getByRole('button', { name: 'Ouvrir' }).click();
      // The clinical question and the patient, before any claim.
      const requestCard = page.getByTestId('tele-request');
      await requestCard.waitFor();
      assert.match(await requestCard.innerText(), /BERNARD[\s\S]*Hémorragie intracrânienne \?/);
      await page.getByTestId('read-before-claim').waitFor();
      assert.equal(await page.getByTestId('release').count(), 0, 'not claimed by opening it');
      assert.equal(await page.getByTestId('images-beside').count(), 0, 'the images open to the reader');
      await screenshots.shootNonBlank(page, '04-request-before-claim');

      await page.getByTestId('validate-protocol').click();
      await page.getByTestId('protocol').waitFor();
      await page.getByTestId('claim').click();
      await page.getByTestId('release').waitFor();
      // The report editor beside the images.
      const beside = page.getByTestId('images-beside');
      await beside.waitFor();
      const report = page.getByTestId('report');
      const [reportBox, imagesBox] = [await report.boundingBox(), await beside.boundingBox()];
      assert.ok(reportBox && imagesBox && imagesBox.x >= reportBox.x + reportBox.width - 1, 'the images are to the right of the report');
      await screenshots.renderedViewport(page, '05-images-beside-report', beside.getByTestId('viewport-0'));
      const cut = await beside.evaluate((aside) => [...aside.querySelectorAll('.viewer-bar button')]
        .filter((b) => b.getBoundingClientRect().right > aside.getBoundingClientRect().right + 1).map((b) => b.textContent));
      assert.deepEqual(cut, [], 'the viewer\'s toolbar stays within its half of the page');
      await screenshots.shootNonBlank(page, '05-request-images-beside');
      await report.locator('textarea[name=findings]').fill('Hématome sous-dural aigu frontal droit de 8 mm, sans engagement.');
      await report.locator('textarea[name=conclusion]').pressSequentially('Hématome sous-dural aigu droit');
      await page.getByTestId('save-state').getByText('Brouillon enregistré').waitFor();

      await page.getByTestId('sign-final').click();
      const confirm = page.getByTestId('confirm-final');
      assert.match(await confirm.innerText(), /Signer le compte rendu définitif \?[\s\S]*ne peut plus être modifié/);
      await screenshots.shootNonBlank(page, '06-confirm-signature');
      await page.getByTestId('confirm-sign-final').click();
      await page.getByTestId('report-status').getByText('définitif').waitFor();
      await page.getByTestId('request-status').getByText('Interprétée').waitFor();
      await screenshots.shootNonBlank(page, '07-signed');

      const pdf = await page.context().request.get(`${base}/api/teleradiology/requests/${requestId}/report/pdf`);
      assert.equal(pdf.status(), 200);
      const text = pdfText(await pdf.body());
      assert.match(text, /Urgence :\s*urgente/);
      assert.match(text, /le \d\d\/\d\d\/\d{4} à \d\d:\d\d \(heure de Paris\)/);
      assert.match(text, /Hématome sous-dural aigu droit/);
    });

    it('a technologist files a request by picking the exam from the patient\'s list (no UID to type), and a radiologist reads it before claiming', async () => {
      const tech = await browsers.open();
      await logIn(tech, base, 'demo.manip', demoPassword, '/app/tele/new');
      const form = tech.getByTestId('request-form');
      await form.waitFor();
      assert.equal(await form.locator('input[name=StudyInstanceUID]').count(), 0, 'no UID field');
      await form.locator('input[name=PatientID]').fill('DEMO-A-1001');
      await form.getByTestId('find-studies').click();
      const picker = form.getByTestId('study-picker');
      await picker.waitFor();
      const options = await picker.locator('option').allInnerTexts();
      assert.equal(options.length, 2, `images to come, and her one CT at this site: ${options.join(' | ')}`);
      assert.match(options[1]!, /30\/11\/2026 · CT · TDM cérébrale sans injection · n° DEMOA2026001/);
      await picker.selectOption({ index: 1 });
      assert.equal(await form.locator('input[name=modality]').inputValue(), 'CT', 'filled from the exam');
      assert.equal(await form.locator('input[name=AccessionNumber]').count(), 0, 'no accession number once the exam is picked');
      await form.locator('input[name=bodyPart]').fill('HEAD');
      await form.locator('input[name=specialty]').fill('neuro');
      await form.locator('input[name=physician]').fill('Dr Claire Durand');
      await form.locator('textarea[name=clinicalContext]').fill('Céphalées persistantes, contrôle à une semaine');
      await form.locator('textarea[name=clinicalQuestion]').fill('Évolution de l\'hématome ?');
      await form.locator('textarea[name=proposedProtocol]').fill('TDM cérébrale sans injection');
      await screenshots.shootNonBlank(tech, '09-request-form-study-picked');
      await form.getByRole('button', { name: 'Envoyer la demande' }).click();
      await tech.waitForURL(/\/app\/tele\/request\?id=\d+$/);
      const id = Number(new URL(tech.url()).searchParams.get('id'));
      await tech.getByTestId('request-status').waitFor();
      assert.match(await tech.getByTestId('tele-request').innerText(), /reçues/, 'the picked exam\'s images are there');

      await page.goto(`${base}/app/tele/request?id=${id}`);
      await page.getByTestId('read-before-claim').waitFor();
      assert.match(await page.getByTestId('tele-request').innerText(), /MARTIN[\s\S]*Évolution de l'hématome \?/);
      // The same request in a second tab, its protocol validated there first: this tab's click is refused (409), said in French.
      const other = await page.context().newPage();
      await other.goto(`${base}/app/tele/request?id=${id}`);
      await other.getByTestId('validate-protocol').click();
      await other.getByTestId('protocol').waitFor();
      await page.getByTestId('validate-protocol').click();
      const refusal = page.getByTestId('tele-request').getByRole('alert');
      await refusal.waitFor();
      assert.equal(await refusal.innerText(), 'Cela a changé entre-temps (déjà fait, ou pris par quelqu\'un d\'autre) : la page montre l\'état actuel.');
      await page.getByTestId('protocol').waitFor();
      await screenshots.shootNonBlank(page, '09-conflict-in-french');
      await other.close();
    });

    it('shows the same screens on a phone (390 px) and a tablet without horizontal overflow', async () => {
      const screens: Array<[string, string, string]> = [
        ['search', '/app/?', 'patients-form'],
        ['timeline', '/app/patients?site=CHU-NORD&PatientID=DEMO-A-1001', 'timeline'],
        ['worklist', '/app/tele', 'worklist-filters'],
        ['request', `/app/tele/request?id=${requestId}`, 'report'],
        ['viewer', '/app/viewer?StudyInstanceUID=', 'viewport-0'],
      ];
      const timeline = await (await page.context().request.get(`${base}/api/patients/timeline?site=CHU-NORD&PatientID=DEMO-A-1001`)).json() as { studies: Array<{ StudyInstanceUID: string }> };
      for (const [size, label] of [[phone, 'phone'], [tablet, 'tablet']] as const) {
        await page.setViewportSize(size);
        for (const [name, url, testId] of screens) {
          const target = name === 'viewer' ? url + timeline.studies[0]!.StudyInstanceUID : url;
          await page.goto(`${base}${target}`);
          if (testId === 'patients-form') await page.locator('form.search').waitFor();
          else await page.getByTestId(testId).first().waitFor();
          if (name === 'search') {
            await page.locator('input[name=name]').fill('martin');
            await page.getByRole('button', { name: 'Rechercher', exact: true }).click();
            await page.getByTestId('patients').waitFor();
          }
          if (name === 'worklist') {
            // Every status: tonight's reported request is in the table.
            await page.locator('select[name=status]').selectOption('awaiting-protocol,open,reported,returned');
            await page.getByTestId(`request-${requestId}`).waitFor();
          }
          if (name === 'viewer') await screenshots.renderedViewport(page, `08-${label}-viewer-viewport`, page.getByTestId('viewport-0'));
          await noHorizontalOverflow(page, `${name} (${label})`);
          await screenshots.shootNonBlank(page, `08-${label}-${name}`);
        }
      }
      await page.setViewportSize({ width: 1280, height: 800 });
    });
  });

  describe('a referring physician and a patient', () => {
    let atrium: RunningAtrium;
    let base: string;
    const prior = { study: '', axial: '' };
    const today = newUID();
    const ins = parseINS('2850375123456' + insKeyOf('2850375123456'), INS_OIDS.NIR_TEST);
    const withINS: DicomElement[] = [{ tag: 0x00101002, vr: 'SQ', items: [insOtherPatientIDsItem(ins)] }];

    /** A series of `n` 64 x 64 slices in a plane (row and column cosines), its images numbered from 1. */
    const series = (o: { site: string; PatientID: string; study: string; number: number; description: string; n: number; orientation: string; localizer?: boolean; date: string }) => {
      const SeriesInstanceUID = newUID();
      return {
        SeriesInstanceUID,
        files: Array.from({ length: o.n }, (_, i) => syntheticInstance({
          PatientID: o.PatientID, PatientName: 'ROUSSEAU^Chloé', PatientBirthDate: '19850320', PatientSex: 'F', StudyInstanceUID: o.study, SeriesInstanceUID,
          StudyDate: o.date, Rows: 64, Columns: 64,
          extra: [
            ...withINS,
            el(0x00200011, 'IS', String(o.number)), el(0x00200013, 'IS', String(i + 1)), el(0x0008103e, 'LO', o.description),
            el(0x00080008, 'CS', o.localizer ? 'ORIGINAL\\PRIMARY\\LOCALIZER' : 'ORIGINAL\\PRIMARY\\AXIAL'),
            el(0x00200037, 'DS', o.orientation), el(0x00200032, 'DS', `-100\\-100\\${i * 5}`), el(0x00280030, 'DS', '0.5\\0.5'),
            el(0x00180050, 'DS', '5'), el(0x00180015, 'CS', 'CHEST'),
          ],
        }).file),
      };
    };

    before(async () => {
      atrium = await startAtrium({ identities: true, configure: (c) => { c.http.portalDir = portalDir; } });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      // Today's exam at the CHU Nord; her prior CT at the Clinique du Sud: localizer, coronal reformat (more images), axial.
      const todays = series({ site: 'CHU-NORD', PatientID: 'N-77', study: today, number: 1, description: 'Thorax axial', n: 3, orientation: '1\\0\\0\\0\\1\\0', date: '20261206' });
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, todays.files)).status, 200);
      prior.study = newUID();
      const localizer = series({ site: 'CLIN-SUD', PatientID: 'S-12', study: prior.study, number: 1, description: 'Topogramme', n: 1, orientation: '1\\0\\0\\0\\0\\-1', localizer: true, date: '20250610' });
      const coronal = series({ site: 'CLIN-SUD', PatientID: 'S-12', study: prior.study, number: 2, description: 'Reconstruction coronale', n: 12, orientation: '1\\0\\0\\0\\0\\-1', date: '20250610' });
      const axial = series({ site: 'CLIN-SUD', PatientID: 'S-12', study: prior.study, number: 3, description: 'Thorax axial 5 mm', n: 6, orientation: '1\\0\\0\\0\\1\\0', date: '20250610' });
      prior.axial = axial.SeriesInstanceUID;
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [...localizer.files, ...coronal.files, ...axial.files])).status, 200);
      await atrium.identities!.drain();
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'dr.nord', displayName: 'Dr Camille Nord', roles: ['referring-physician'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'admin.sud', displayName: 'Admin Sud', roles: ['site-admin'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'rad.sud', displayName: 'Dr Paul Sud', roles: ['radiologist'], sites: ['CLIN-SUD'], password }, by);
    });

    after(async () => {
      await atrium?.close();
    });

    it('a referring physician opens a prior from another site after asking access', async () => {
      const page = await browsers.open();
      await logIn(page, base, 'dr.nord', password, '/app/patients?site=CHU-NORD&PatientID=N-77');
      const timeline = page.getByTestId('timeline').first();
      await timeline.waitFor();
      assert.equal(await timeline.locator('li.exam').count(), 1, 'only her exam at the physician\'s own site');
      await screenshots.shootNonBlank(page, '10-physician-timeline');
      // In the viewer: one exam of hers elsewhere, not named; access asked for with a reason.
      await timeline.getByTestId('open-study').click();
      await page.waitForURL(`${base}/app/viewer?StudyInstanceUID=${today}`);
      await page.getByTestId('exams-elsewhere').waitFor();
      assert.match(await page.getByTestId('exams-elsewhere-count').innerText(), /^1 examen/);
      assert.doesNotMatch(await page.getByTestId('exams-elsewhere').innerText(), /CLIN-SUD|Clinique/);
      await page.getByTestId('ask-access').click();
      await page.getByTestId('access-reason').fill('Comparaison avec le scanner antérieur avant la consultation de suivi');
      await screenshots.shootNonBlank(page, '11-physician-asks-access');
      await page.getByTestId('send-access-request').click();
      await page.getByTestId('access-request-sent').waitFor();

      // The Clinique du Sud's administrator reads the request and shares her record with the physician.
      const admin = await loginLocal(base, 'admin.sud', password);
      const { requests } = (await (await request(admin.jar, `${base}/api/access-requests`)).json()) as { requests: Array<{ requestedBy: string; reason: string; records: Array<{ site: string; PatientID: string }> }> };
      const asked = requests.find((r) => /dr\.nord/.test(r.requestedBy));
      assert.ok(asked, JSON.stringify(requests));
      assert.match(asked.reason, /scanner antérieur/);
      assert.deepEqual(asked.records, [{ site: 'CLIN-SUD', PatientID: 'S-12' }]);
      const adminPage = await browsers.open();
      await logIn(adminPage, base, 'admin.sud', password, `/app/sharing?site=CLIN-SUD&PatientID=S-12`);
      const pro = adminPage.getByTestId('share-with-pro');
      await pro.locator('input[name=toUser]').fill('dr.nord');
      await pro.locator('button[type=submit]').click();
      await adminPage.getByTestId('grant-created').waitFor();
      await screenshots.shootNonBlank(adminPage, '11-site-admin-shares');

      // The physician's timeline now holds the prior at the other site, and it opens.
      await page.goto(`${base}/app/patients?site=CHU-NORD&PatientID=N-77`);
      const priorRow = page.getByTestId('timeline').first().locator('li.exam').filter({ hasText: 'CLIN-SUD' });
      await priorRow.first().waitFor();
      await screenshots.shootNonBlank(page, '12-physician-timeline-with-prior');
      await priorRow.first().getByTestId('open-study').click();
      await page.waitForURL(`${base}/app/viewer?StudyInstanceUID=${prior.study}`);
      await screenshots.renderedViewport(page, '12-physician-prior', page.getByTestId('viewport-0'));
      const audited = await atrium.archive.index.sql.all<{ reason: string }>(`SELECT reason FROM audit_events WHERE action = 'access-request' AND outcome = 'success' AND actor LIKE '%dr.nord%'`);
      assert.equal(audited.length, 1);
      assert.match(audited[0]!.reason, /scanner antérieur/);
    });

    it('a patient on a phone opens a share link and sees the axial series first', async () => {
      const rad = await loginLocal(base, 'rad.sud', password);
      const made = await request(rad.jar, `${base}/api/shares`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': rad.csrf },
        body: JSON.stringify({ StudyInstanceUID: prior.study, link: { expiresInHours: 72 } }),
      });
      assert.equal(made.status, 201, await made.clone().text());
      const { url } = (await made.json()) as { url: string };
      const page = await browsers.open();
      await page.setViewportSize(phone);
      await page.goto(url);
      await page.waitForURL(`${base}/app/viewer?StudyInstanceUID=${prior.study}`);
      const pane = page.getByTestId('pane-0');
      await pane.getByText('Thorax axial 5 mm').waitFor({ timeout: 30_000 });
      assert.doesNotMatch(await pane.innerText(), /Topogramme|coronale/);
      await screenshots.renderedViewport(page, '13-patient-phone-axial', page.getByTestId('viewport-0'));
      await noHorizontalOverflow(page, 'the viewer of a share link (phone)');
      await screenshots.shootNonBlank(page, '13-patient-phone');
    });
  });
});
