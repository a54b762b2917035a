/**
 * The portal in a real browser: Debian's Chromium driven by playwright-core against Atrium
 * serving the built portal (web/dist) and the test Pro Santé Connect provider. A radiologist
 * logs in, finds a patient, opens an exam in the Cornerstone3D viewer, scrolls, changes the
 * window, measures, compares with the prior, downloads the ZIP, and is refused an exam outside
 * the care relationship; a patient opens a share link. Screenshots of each screen are saved
 * under .tmp/portal-screenshots (gitignored) and checked to show an image, not a blank canvas.
 */
import assert from 'node:assert/strict';
import { PNG } from 'pngjs';
import { stowFiles } from './support/stow.ts';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { chromiumArgs, chromiumPath, distinctColours, dragThrough } from './support/chromium.ts';
import type { RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { startAtriumWithProvider } from './support/provider-and-atrium.ts';
import type { TestIdentityProvider } from './support/oidc-provider.ts';
import { CookieJar, loginThroughProvider, request } from './support/browser-session.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { newUID } from '../src/dicom/uids.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const portalDir = path.join(repo, 'web', 'dist');
const screenshots = path.join(repo, '.tmp', 'portal-screenshots');
const engine = testDatabases().at(-1)!;
const radiologist = { sub: 'psc-rad-nord', SubjectNameID: '810002222222', given_name: 'Anne', family_name: 'Radiologue' };
const password = 'un mot de passe assez long pour les tests';

/** A series of `slices` CT images of 64 x 64 (the synthetic ramp: visible stripes). */
function series(o: { PatientID: string; PatientName: string; StudyInstanceUID: string; StudyDate: string; slices: number }): Buffer[] {
  const SeriesInstanceUID = newUID();
  return Array.from({ length: o.slices }, () => syntheticInstance({
    PatientID: o.PatientID, PatientName: o.PatientName, PatientBirthDate: '19700412', PatientSex: 'F',
    StudyInstanceUID: o.StudyInstanceUID, SeriesInstanceUID, StudyDate: o.StudyDate, Rows: 64, Columns: 64,
  }).file);
}

async function shoot(page: Page, name: string, region?: Locator): Promise<Buffer> {
  const png = region ? await region.screenshot() : await page.screenshot();
  writeFileSync(path.join(screenshots, `${name}.png`), png);
  return png;
}

/** Waits until the viewport shows an image (many grey levels), and returns its screenshot. */
async function renderedViewport(page: Page, name: string, region: Locator): Promise<Buffer> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const png = await region.screenshot();
    if (distinctColours(png) >= 32) {
      writeFileSync(path.join(screenshots, `${name}.png`), png);
      return png;
    }
    if (Date.now() > deadline) {
      writeFileSync(path.join(screenshots, `${name}-blank.png`), png);
      assert.fail(`${name}: the viewport stayed blank (${distinctColours(png)} colours)`);
    }
    await page.waitForTimeout(250);
  }
}

describe(`the portal in Chromium (${engine.name})`, { skip: !existsSync(chromiumPath) && 'Debian\'s chromium is not installed (.ci/run installs it)' }, () => {
  let idp: TestIdentityProvider;
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  const contexts: BrowserContext[] = [];
  const profiles: string[] = [];
  const pageErrors: string[] = [];
  /** The policies the viewer's decoding workers ran under. */
  const workerPolicies: string[] = [];
  const current = newUID();
  const prior = newUID();
  const outside = newUID();

  const stow = async (token: string, files: Buffer[]) => {
    const r = await stowFiles(`${base}/dicom-web`, token, files);
    assert.equal(r.status, 200, await r.text());
  };

  /** A fresh browser: its own profile folder, nothing downloaded, nothing shared with another. */
  const browser = async (device: 'laptop' | 'tablet' = 'laptop'): Promise<Page> => {
    const profile = mkdtempSync(path.join(tmpdir(), 'atrium-chromium-'));
    profiles.push(profile);
    // A tablet: a 10-inch screen held upright, fingers instead of a mouse.
    const screen = device === 'tablet' ? { viewport: { width: 810, height: 1080 }, hasTouch: true, isMobile: true, deviceScaleFactor: 2 } : { viewport: { width: 1280, height: 800 } };
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath, headless: true, args: chromiumArgs, ...screen, acceptDownloads: true, locale: 'fr-FR',
    });
    contexts.push(context);
    const page = context.pages()[0] ?? await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('response', (r) => {
      if (/decodeImageFrameWorker/.test(r.url())) workerPolicies.push(r.headers()['content-security-policy'] ?? '');
      // Before login, /auth/me answers 401: that is how the portal learns it must show the login page.
      if (r.status() >= 400 && !(r.status() === 401 && r.url().endsWith('/auth/me'))) pageErrors.push(`${r.status()} ${r.url()}`);
    });
    return page;
  };

  /** Dr Radiologue logs in with Pro Santé Connect: the portal's button, the provider's form, back with a session. */
  const loginWithProSanteConnect = async (page: Page, by: 'click' | 'tap' = 'click') => {
    await page.goto(`${base}/app/`);
    await page.getByTestId('psc-login')[by]();
    await page.locator('input[name=login]').fill(radiologist.sub);
    await page.locator('button')[by]();
    await page.getByTestId('who').waitFor();
  };

  before(async () => {
    if (!existsSync(path.join(portalDir, 'index.html'))) execFileSync('npm', ['run', 'build:web'], { cwd: repo, stdio: 'inherit' });
    rmSync(screenshots, { recursive: true, force: true });
    mkdirSync(screenshots, { recursive: true });
    ({ atrium, idp, base, close: cleanup } = await startAtriumWithProvider({ engine, accounts: [radiologist], configure: (c) => (c.http.portalDir = portalDir) }));
    await stow(atrium.tokens['CHU-NORD']!, series({ PatientID: 'PN-7', PatientName: 'Lefèvre^Élodie', StudyInstanceUID: current, StudyDate: '20260310', slices: 12 }));
    await stow(atrium.tokens['CHU-NORD']!, series({ PatientID: 'PN-7', PatientName: 'Lefèvre^Élodie', StudyInstanceUID: prior, StudyDate: '20250105', slices: 6 }));
    await stow(atrium.tokens['CLIN-SUD']!, series({ PatientID: 'PS-1', PatientName: 'Sud^Bruno', StudyInstanceUID: outside, StudyDate: '20260101', slices: 2 }));
    const nord = atrium.archive.sites.get('CHU-NORD')!;
    const record = (await atrium.archive.index.patientRecordId(nord.id, nord.issuerOfPatientID, 'PN-7'))!;
    await addUser(atrium.archive, { login: 'elodie.lefevre', displayName: 'Élodie Lefèvre', roles: ['patient'], sites: [], patientId: record, password }, { actor: 'test', via: 'cli' });
    await addUser(atrium.archive, { login: 'rad.nord', displayName: 'Dr Anne Radiologue', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10002222222' }, { actor: 'test', via: 'cli' });
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    for (const p of profiles) rmSync(p, { recursive: true, force: true });
    await cleanup?.();
  });

  it('lets a radiologist log in with Pro Santé Connect, find a patient, view, scroll, window, measure, compare with the prior and download the exam', async () => {
    const page = await browser();
    await loginWithProSanteConnect(page);
    assert.equal(page.url(), `${base}/app/`, 'back where the login started');
    assert.match(await page.getByTestId('who').innerText(), /Anne Radiologue/);

    // The name without its accents, in lower case.
    await page.locator('input[name=name]').fill('lefevre');
    await page.getByRole('button', { name: 'Rechercher' }).click();
    const row = page.getByTestId('patients').locator('tbody tr');
    await row.first().waitFor();
    assert.equal(await row.count(), 1);
    assert.match(await row.first().innerText(), /LEFÈVRE\s+Élodie[\s\S]*12\/04\/1970[\s\S]*CHU-NORD[\s\S]*PN-7/);
    await shoot(page, '1-search');

    await row.first().click();
    const exams = page.getByTestId('timeline').locator('li');
    await exams.nth(1).waitFor();
    assert.equal(await exams.count(), 2);
    assert.match(await exams.first().innerText(), /10\/03\/2026/, 'newest first');
    await page.waitForFunction(() => [...document.querySelectorAll('img.thumbnail')].every((i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth > 0));
    await shoot(page, '2-timeline');

    await exams.first().getByTestId('open-study').click();
    await page.waitForURL(`${base}/app/viewer?StudyInstanceUID=${current}`);
    const viewport = page.getByTestId('viewport-0');
    const first = await renderedViewport(page, '3-viewer', viewport);
    await page.getByTestId('slice-0').waitFor();
    assert.equal(await page.getByTestId('slice-0').innerText(), '1 / 12');
    await page.getByTestId('progress-0').waitFor({ state: 'detached', timeout: 30_000 });
    await shoot(page, '3-viewer-page');

    // Scrolling: the mouse wheel, then the keyboard.
    const box = (await viewport.boundingBox())!;
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.wheel(0, 120);
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '2 / 12');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '4 / 12');

    // Window presets change what is shown.
    await page.getByTestId('preset-brain').click();
    const brain = await renderedViewport(page, '4-window-brain', viewport).catch(() => shoot(page, '4-window-brain', viewport));
    assert.ok(!brain.equals(first), 'the brain window shows the image differently');
    await page.keyboard.press('1');

    // Zoom (Z, a vertical drag) and pan (P, a drag) move the image; R puts it back.
    const unzoomed = await renderedViewport(page, '4-window-default', viewport);
    const drag = (dx: number, dy: number) => dragThrough(page, box, [[0.5, 0.5], [0.5 + dx / box.width, 0.5 + dy / box.height]], 10);
    await page.keyboard.press('z');
    await drag(0, -150);
    const zoomed = await renderedViewport(page, '4-zoom', viewport);
    assert.ok(!zoomed.equals(unzoomed), 'zoomed');
    await page.keyboard.press('p');
    await drag(120, 60);
    const panned = await renderedViewport(page, '4-pan', viewport);
    assert.ok(!panned.equals(zoomed), 'panned');
    await page.keyboard.press('r');
    await page.keyboard.press('w');

    // A length measurement, drawn with the mouse.
    await page.getByTestId('tool-Length').click();
    await dragThrough(page, box, [[0.3, 0.3], [0.5, 0.5], [0.7, 0.6]], 8);
    await page.getByTestId('measurements').waitFor();
    assert.match(await page.getByTestId('measurements').innerText(), /Longueur \d+(\.\d)?/);
    await renderedViewport(page, '5-measure', viewport);

    // The prior beside the current exam.
    await page.getByTestId('compare-prior').click();
    await page.getByTestId('slice-1').waitFor();
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-1]')?.textContent === '1 / 6');
    await renderedViewport(page, '6-compare-current', page.getByTestId('viewport-0'));
    await renderedViewport(page, '6-compare-prior', page.getByTestId('viewport-1'));
    await shoot(page, '6-compare');

    // Four viewports; cine runs through the active one's images and stops.
    await page.getByTestId('layout-2x2').click();
    for (const i of [0, 1, 2, 3]) await renderedViewport(page, `7-layout-2x2-${i}`, page.getByTestId(`viewport-${i}`));
    await shoot(page, '7-layout-2x2');
    const before = await page.getByTestId('slice-0').innerText();
    await page.keyboard.press('c');
    await page.waitForFunction((b) => document.querySelector('[data-testid=slice-0]')?.textContent !== b, before);
    await page.keyboard.press('c');
    assert.equal(await page.getByTestId('cine').innerText(), 'Ciné');

    // English on demand.
    await page.getByRole('button', { name: 'English' }).click();
    await page.getByTestId('tool-Length').getByText('Length').waitFor();

    // The exam as a ZIP, recorded as a download.
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download').click()]);
    const zip = readFileSync((await download.path())!);
    assert.equal(zip.subarray(0, 2).toString('latin1'), 'PK');
    const recorded = await atrium.archive.index.sql.get<{ outcome: string }>(
      `SELECT outcome FROM audit_events WHERE actor = ? AND study_instance_uid = ? AND action = 'download' ORDER BY id DESC LIMIT 1`, ['rad.nord', current]);
    assert.equal(recorded?.outcome, 'success');
    assert.deepEqual(pageErrors.filter((e) => !/favicon/.test(e)), []);
    assert.ok(workerPolicies.length > 0 && workerPolicies.every((p) => p.includes("'wasm-unsafe-eval'")), `decoding workers under ${workerPolicies.join(' | ')}`);
  });

  it('works on a tablet: a search pages through more patients than a page holds; the viewer fits the screen, one finger windows, two fingers pinch to zoom', async () => {
    const page = await browser('tablet');
    await loginWithProSanteConnect(page, 'tap');

    // A common name: more records than a page holds; the search says so and pages on.
    await stow(atrium.tokens['CHU-NORD']!, Array.from({ length: 101 }, (_, i) => syntheticInstance({ PatientID: `PM-${1000 + i}`, PatientName: `Martin^Jean ${i}`, Rows: 4, Columns: 4 }).file));
    await page.locator('input[name=name]').fill('martin');
    await page.getByRole('button', { name: 'Rechercher' }).tap();
    const rows = page.getByTestId('patients').locator('tbody tr');
    await page.getByTestId('pager').waitFor();
    assert.equal(await rows.count(), 100);
    assert.equal(await page.getByTestId('pager-range').innerText(), 'Patients 1–100');
    assert.ok(await page.getByTestId('refine').isVisible(), 'the first page says there are more');
    await shoot(page, '12-tablet-search');
    await page.getByTestId('next-page').tap();
    await page.waitForFunction(() => document.querySelector('[data-testid=pager-range]')?.textContent === 'Patients 101–101');
    assert.equal(await rows.count(), 1);
    assert.ok(await page.getByTestId('next-page').isDisabled(), 'no page after the last');

    await page.goto(`${base}/app/viewer?StudyInstanceUID=${current}`);
    const viewport = page.getByTestId('viewport-0');
    const first = await renderedViewport(page, '12-tablet-viewer', viewport);
    await page.getByTestId('progress-0').waitFor({ state: 'detached', timeout: 30_000 });
    await shoot(page, '12-tablet-page');
    // Nothing to scroll sideways, and the image takes most of the screen's width.
    const fits = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
    assert.ok(fits.scroll <= fits.width, `the page is ${fits.scroll} px wide on a ${fits.width} px screen`);
    const box = (await viewport.boundingBox())!;
    assert.ok(box.width >= 0.6 * fits.width && box.x + box.width <= fits.width, `viewport ${JSON.stringify(box)} on ${fits.width} px`);
    // The tools are in reach: the presets and the layout buttons are on screen, and a tap works.
    await page.getByTestId('preset-lung').tap();
    const lung = await renderedViewport(page, '12-tablet-lung', viewport).catch(() => shoot(page, '12-tablet-lung', viewport));
    assert.ok(!lung.equals(first), 'a tapped preset changes the window');

    const cdp = await page.context().newCDPSession(page);
    const touch = async (points: Array<[number, number]>, moves: Array<[number, number]>) => {
      const at = (step: number) => points.map(([x, y], i) => ({ x: x + moves[i]![0] * step, y: y + moves[i]![1] * step, id: i }));
      await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: at(0) });
      for (let step = 1; step <= 10; step++) await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: at(step / 10) });
      await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
    };
    const cx = box.x + box.width / 2;
    const cy = box.y + box.height / 2;
    // One finger drags the window (the primary tool).
    const before = await renderedViewport(page, '12-tablet-before-drag', viewport);
    await touch([[cx, cy]], [[80, 60]]);
    const windowed = await renderedViewport(page, '12-tablet-windowed', viewport);
    assert.ok(!windowed.equals(before), 'one finger changed the window');
    // Two fingers apart: the image grows; its bright area covers more of the viewport.
    const brightShare = (png: Buffer) => {
      const img = PNG.sync.read(png);
      let bright = 0;
      for (let i = 0; i < img.data.length; i += 4) if (img.data[i]! + img.data[i + 1]! + img.data[i + 2]! > 60) bright++;
      return bright / (img.width * img.height);
    };
    await touch([[cx - 30, cy], [cx + 30, cy]], [[-120, 0], [120, 0]]);
    const pinched = await renderedViewport(page, '12-tablet-pinched', viewport);
    assert.ok(brightShare(pinched) > brightShare(windowed) * 1.2, `zoomed: ${brightShare(windowed).toFixed(3)} then ${brightShare(pinched).toFixed(3)} of the viewport is image`);
    assert.deepEqual(pageErrors.filter((e) => !/favicon/.test(e)), []);
  });

  it('logs out of Pro Santé Connect too: the next person at a shared workstation is asked who they are', async () => {
    const page = await browser();
    await loginWithProSanteConnect(page);
    // Without the provider's logout, this click would let the next person in as Dr Radiologue.
    await page.getByRole('button', { name: 'Se déconnecter' }).click();
    await page.waitForURL(`${base}/app/`);
    await page.getByTestId('psc-login').waitFor();
    assert.equal((await page.request.get(`${base}/auth/me`)).status(), 401, 'the portal session is over');
    await page.goto(`${base}/app/`);
    await page.getByTestId('psc-login').click();
    // Either the provider asks who is there, or (its session still open) the portal lets them in.
    await page.locator('form[action*="/interaction/"] input[name=login], [data-testid=who]').first().waitFor();
    assert.equal(new URL(page.url()).origin, idp.issuer, `the provider asks again, not ${page.url()}`);
    await shoot(page, '13-provider-asks-again');
    const logouts = await atrium.archive.index.sql.get<{ n: number | string }>(`SELECT COUNT(*) AS n FROM audit_events WHERE action = 'logout' AND actor = 'rad.nord'`);
    assert.ok(Number(logouts!.n) >= 1);
  });

  it('lets a patient log in with a local account and see their own exams only', async () => {
    const page = await browser();
    await page.goto(`${base}/app/`);
    await page.locator('input[name=login]').fill('elodie.lefevre');
    await page.locator('input[name=password]').fill('pas le bon mot de passe');
    await page.getByRole('button', { name: 'Se connecter', exact: true }).click();
    await page.getByText('Identifiant ou mot de passe incorrect.').waitFor();
    await page.locator('input[name=password]').fill(password);
    await page.getByRole('button', { name: 'Se connecter', exact: true }).click();
    const exams = page.getByTestId('timeline').locator('li');
    await exams.nth(1).waitFor();
    assert.equal(await exams.count(), 2);
    await shoot(page, '8-patient-exams');
    await exams.nth(1).getByTestId('open-study').click();
    await page.waitForURL(`${base}/app/viewer?StudyInstanceUID=${prior}`);
    await renderedViewport(page, '8-patient-viewer', page.getByTestId('viewport-0'));

    // Progressive loading over a slow link: the first image shows on its own request while the
    // rest of the series (one WADO-RS pixel data stream) is still arriving, and a progress bar
    // says how far it is.
    const requests: string[] = [];
    page.on('request', (r) => requests.push(new URL(r.url()).pathname));
    await page.route('**/pixeldata', async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await route.continue();
    });
    await page.goto(`${base}/app/viewer?StudyInstanceUID=${current}`);
    await renderedViewport(page, '8-patient-first-image', page.getByTestId('viewport-0'));
    assert.ok(await page.getByTestId('progress-0').isVisible(), 'the series is still loading');
    assert.match(await page.getByTestId('progress-0').innerText(), /\d+\/12 chargées/);
    await shoot(page, '8-patient-progress');
    await page.getByTestId('progress-0').waitFor({ state: 'detached', timeout: 30_000 });
    const frameRequests = () => requests.filter((u) => /\/frames\/\d+$/.test(u));
    assert.equal(frameRequests().length, 1, `one frame fetched alone (the first shown), not ${frameRequests().length}`);
    assert.equal(requests.filter((u) => /\/series\/[\d.]+\/pixeldata$/.test(u)).length, 1, 'the rest in one request');
    await page.unroute('**/pixeldata');

    // A stream that fails loses nothing: the frames it did not bring are fetched one by one.
    await page.route('**/pixeldata', (route) => route.abort('connectionreset'));
    requests.length = 0;
    await page.goto(`${base}/app/viewer?StudyInstanceUID=${current}`);
    await renderedViewport(page, '8-patient-stream-failed', page.getByTestId('viewport-0'));
    await page.getByTestId('progress-0').waitFor({ state: 'detached', timeout: 30_000 });
    assert.equal(frameRequests().length, 12, 'every frame of the 12-slice series fetched alone');
    await page.unroute('**/pixeldata');
  });

  it('refuses a radiologist an exam outside the care relationship, as if it did not exist', async () => {
    const page = await browser();
    await loginWithProSanteConnect(page);
    await page.locator('input[name=name]').fill('sud');
    await page.getByRole('button', { name: 'Rechercher' }).click();
    await page.getByText('Aucun patient trouvé.').waitFor();
    await page.goto(`${base}/app/viewer?StudyInstanceUID=${outside}`);
    await page.getByTestId('refused').waitFor({ timeout: 60_000 }).catch(async (e: unknown) => {
      await shoot(page, '9-refused-failed');
      throw new Error(`${String(e)}\n${pageErrors.join('\n')}`);
    });
    await shoot(page, '9-refused');
    const refusal = await atrium.archive.index.sql.get<{ outcome: string }>(
      `SELECT outcome FROM audit_events WHERE actor = ? AND study_instance_uid = ? ORDER BY id DESC LIMIT 1`, ['rad.nord', outside]);
    assert.equal(refusal?.outcome, 'refused');
  });

  it('opens a share link for a patient, with its PIN, on the shared exam only', async () => {
    const jar = new CookieJar();
    assert.equal((await loginThroughProvider(base, jar, radiologist.sub, '/app/')).status, 302);
    const { csrfToken } = (await (await request(jar, `${base}/auth/me`)).json()) as { csrfToken: string };
    const created = await request(jar, `${base}/api/shares`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrfToken },
      body: JSON.stringify({ StudyInstanceUID: current, link: { expiresInHours: 24, pin: '482913' } }),
    });
    assert.equal(created.status, 201, await created.clone().text());
    const { url } = (await created.json()) as { url: string };

    const page = await browser();
    await page.goto(url);
    await page.locator('input[name=pin]').fill('000000');
    await page.getByRole('button', { name: 'Voir les images' }).click();
    await page.getByText('Code incorrect.').waitFor();
    await shoot(page, '10-share-pin');
    await page.locator('input[name=pin]').fill('482913');
    await page.getByRole('button', { name: 'Voir les images' }).click();
    await page.waitForURL(`${base}/app/viewer?StudyInstanceUID=${current}`);
    assert.ok(!page.url().includes('#'), 'the token leaves the address bar');
    await renderedViewport(page, '11-share-viewer', page.getByTestId('viewport-0'));
    await page.goto(`${base}/app/viewer?StudyInstanceUID=${prior}`);
    await page.getByTestId('refused').waitFor();
  });
});
