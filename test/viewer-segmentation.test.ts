/**
 * DICOM Segmentations in the viewer (Debian's Chromium): a CT series of 4 slices and SEG objects
 * of it written with pydicom (test/support/segmentation-objects.py), stored by STOW-RS. The
 * viewer lists the segments over the CT pane and draws each one in its colour on the slice it
 * segments, at the place it segments (compared with the CT's own bright square, read from the
 * viewport's canvas), not on the other slices; a toggle hides one segment. A SEG whose frames
 * name no source image is placed by its positions, a FRACTIONAL one drawn where it is at least
 * 50 %, a compressed one (RLE) from its frames decoded by the server; a SEG of images not in the study is said in
 * words. Screenshots under .tmp/portal-screenshots.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { stowFiles } from './support/stow.ts';
import { addUser } from '../src/cli/users.ts';
import { newUID } from '../src/dicom/uids.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const portalDir = path.join(repo, 'web', 'dist');
const screenshots = path.join(repo, '.tmp', 'portal-screenshots');
const engine = testDatabases().at(-1)!;
const chromiumPath = '/usr/bin/chromium';
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const password = 'un mot de passe assez long pour les tests';
const havePydicom = (() => {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import pydicom'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

interface Uids { ctSeries: string; ct: string[]; seg: string; segSeries: string; segPositions: string; segOrphan: string; segOrphanSeries: string }

/** A bounding box of canvas pixels (CSS pixels of the viewport), and how many there are. */
interface Box { n: number; x0: number; y0: number; x1: number; y1: number }

/**
 * The pixels of the segmentation canvas of pane 0 that are of one colour (red, green, blue,
 * yellow or magenta), and the CT's bright pixels on Cornerstone's own canvas, as bounding boxes.
 */
async function canvasBoxes(page: Page): Promise<{ red: Box; green: Box; blue: Box; yellow: Box; magenta: Box; bright: Box; imageId: string }> {
  // A script in a string: tsx would name the functions of a callback with a helper the page lacks.
  return page.evaluate(`(() => {
    const box = () => ({ n: 0, x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity });
    const add = (b, x, y) => {
      b.n++; b.x0 = Math.min(b.x0, x); b.y0 = Math.min(b.y0, y); b.x1 = Math.max(b.x1, x); b.y1 = Math.max(b.y1, y);
    };
    const overlay = document.querySelector('[data-testid=segmentation-canvas-0]');
    const red = box(), green = box(), blue = box(), yellow = box(), magenta = box(), bright = box();
    const o = overlay.getContext('2d').getImageData(0, 0, overlay.width, overlay.height).data;
    for (let i = 0; i < o.length; i += 4) {
      if (o[i + 3] < 40) continue;
      const x = (i / 4) % overlay.width, y = Math.floor(i / 4 / overlay.width);
      const r = o[i], g = o[i + 1], b = o[i + 2];
      if (r > 200 && g > 200 && b < 80) add(yellow, x, y);
      else if (r > 200 && b > 200 && g < 80) add(magenta, x, y);
      else if (r > 200 && g < 80 && b < 80) add(red, x, y);
      else if (g > 200 && r < 80 && b < 80) add(green, x, y);
      else if (b > 200 && r < 80 && g < 80) add(blue, x, y);
    }
    const cs = document.querySelector('[data-testid=viewport-0] canvas.cornerstone-canvas');
    const copy = document.createElement('canvas');
    copy.width = overlay.width;
    copy.height = overlay.height;
    const context = copy.getContext('2d');
    context.drawImage(cs, 0, 0, copy.width, copy.height);
    const c = context.getImageData(0, 0, copy.width, copy.height).data;
    for (let i = 0; i < c.length; i += 4) if (c[i] > 200 && c[i + 1] > 200 && c[i + 2] > 200) add(bright, (i / 4) % copy.width, Math.floor(i / 4 / copy.width));
    return { red, green, blue, yellow, magenta, bright, imageId: overlay.dataset.imageId || '' };
  })()`);
}

describe(`DICOM Segmentations over their images in the viewer, Chromium (${engine.name})`, {
  skip: (!existsSync(chromiumPath) && 'Debian\'s chromium is not installed (.ci/run installs it)') || (!havePydicom && 'python3-pydicom is not installed'),
}, () => {
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  let browser: Browser;
  let portalCopy: string;
  let objects: string;
  let uids: Uids;
  const pageErrors: string[] = [];
  const StudyInstanceUID = newUID();
  const PatientID = 'SEG-7';

  const loggedIn = async (): Promise<Page> => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'fr-FR', deviceScaleFactor: 1 });
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('response', (r) => {
      if (r.status() >= 400 && !(r.status() === 401 && r.url().endsWith('/auth/me'))) pageErrors.push(`${r.status()} ${r.url()}`);
    });
    await page.goto(`${base}/app/viewer?StudyInstanceUID=${StudyInstanceUID}`);
    await page.locator('input[name=login]').fill('rad.seg');
    await page.locator('input[name=password]').fill(password);
    await page.getByRole('button', { name: 'Se connecter', exact: true }).click();
    await page.getByTestId('who').waitFor();
    return page;
  };

  /** Goes to slice `n` (1-based) of pane 0 with the keyboard and waits for the overlay to be drawn on it. */
  const goTo = async (page: Page, n: number) => {
    // The keys go to the viewer, not to a check box just clicked (the viewer leaves keys typed in a field alone).
    await page.evaluate('document.activeElement && document.activeElement.blur()');
    for (;;) {
      const at = Number((await page.getByTestId('slice-0').innerText()).split(' / ')[0]);
      if (at === n) break;
      await page.keyboard.press(at < n ? 'ArrowDown' : 'ArrowUp');
      await page.waitForFunction((want) => document.querySelector('[data-testid=slice-0]')?.textContent?.startsWith(`${want} /`), at < n ? at + 1 : at - 1);
    }
    const sop = uids.ct[n - 1]!;
    await page.waitForFunction((s) => (document.querySelector('[data-testid=segmentation-canvas-0]') as HTMLElement | null)?.dataset.imageId?.includes(`/instances/${s}/frames/1`), sop);
  };

  /** Boxes agree within a displayed CT pixel (the viewport shows 64 pixels over some 700 CSS pixels). */
  const sameBox = (a: Box, b: Box, tolerance: number, what: string) => {
    for (const k of ['x0', 'y0', 'x1', 'y1'] as const) assert.ok(Math.abs(a[k] - b[k]) <= tolerance, `${what}: ${k} ${a[k]} vs ${b[k]} (${JSON.stringify(a)} / ${JSON.stringify(b)})`);
  };

  before(async () => {
    if (!existsSync(path.join(portalDir, 'index.html'))) execFileSync('npm', ['run', 'build:web'], { cwd: repo, stdio: 'inherit' });
    mkdirSync(screenshots, { recursive: true });
    // A copy of the built portal: another build of web/dist during the test does not pull files from under the browser.
    portalCopy = mkdtempSync(path.join(tmpdir(), 'atrium-segmentation-portal-'));
    cpSync(portalDir, portalCopy, { recursive: true });
    objects = mkdtempSync(path.join(tmpdir(), 'atrium-segmentation-objects-'));
    uids = JSON.parse(execFileSync('/usr/bin/python3', [path.join(repo, 'test', 'support', 'segmentation-objects.py'), objects, PatientID, 'Martin^Claire', StudyInstanceUID], { encoding: 'utf8' })) as Uids;
    // Valid objects, as David Clunie's dicom3tools see them, when they are installed.
    if (existsSync('/usr/bin/dciodvfy')) {
      for (const f of readdirSync(objects).filter((name) => name.startsWith('seg'))) {
        const r = spawnSync('/usr/bin/dciodvfy', [path.join(objects, f)], { encoding: 'utf8' });
        assert.doesNotMatch(`${r.stdout}${r.stderr}`, /^Error/m, `${f}: ${r.stderr}`);
      }
    }
    const db = await engine.open();
    cleanup = db.cleanup;
    atrium = await startAtrium({ index: db.config, configure: (c) => { c.http.portalDir = portalCopy; } });
    base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    const files = readdirSync(objects).filter((f) => f.endsWith('.dcm')).sort().map((f) => readFileSync(path.join(objects, f)));
    const r = await stowFiles(`${base}/dicom-web`, atrium.tokens['CHU-NORD']!, files);
    assert.equal(r.status, 200, await r.text());
    await addUser(atrium.archive, { login: 'rad.seg', displayName: 'Dr Seg', roles: ['radiologist'], sites: ['CHU-NORD'], password }, { actor: 'test', via: 'cli' });
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await atrium?.close();
    await cleanup?.();
    if (portalCopy) rmSync(portalCopy, { recursive: true, force: true });
    if (objects) rmSync(objects, { recursive: true, force: true });
  });

  it('lists the segments over the CT and draws each in its colour on the slice and at the place it segments; a toggle hides one', async () => {
    const page = await loggedIn();
    await page.getByTestId('slice-0').waitFor();
    assert.equal(await page.getByTestId('slice-0').innerText(), '1 / 4', 'the CT, not a segmentation, fills the viewport');
    await page.getByTestId('progress-0').waitFor({ state: 'detached', timeout: 30_000 });
    const panel = page.getByTestId('segmentation-0');
    await panel.waitFor();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=segment-toggle]').length === 5);
    assert.deepEqual((await page.getByTestId('segment-label').allInnerTexts()).sort(), ['Kyste', 'Kyste RLE', 'Nodule', 'Oedeme', 'Rein']);
    assert.equal(await panel.locator('[data-testid=segment-toggle]:checked').count(), 5, 'all shown at first');

    // Slice 1: nothing segmented; the CT's square is there (the reference for the places below).
    await goTo(page, 1);
    const first = await canvasBoxes(page);
    assert.equal(first.red.n + first.green.n + first.blue.n + first.yellow.n + first.magenta.n, 0, `nothing drawn on slice 1: ${JSON.stringify(first)}`);
    assert.ok(first.bright.n > 1000, `the CT's bright square: ${JSON.stringify(first.bright)}`);
    const square = first.bright;
    // One CT pixel on the screen, in CSS pixels (the square is 16 pixels wide).
    const pixel = (square.x1 - square.x0 + 1) / 16;

    // Slice 2: "Nodule" in red exactly over the square, "Kyste" in green further down and right; no blue.
    await goTo(page, 2);
    await page.waitForFunction(() => Number((document.querySelector('[data-testid=segmentation-canvas-0]') as HTMLElement).dataset.drawn) === 2);
    const second = await canvasBoxes(page);
    sameBox(second.red, square, Math.ceil(pixel / 2) + 1, 'the red segment over the CT square');
    assert.ok(second.green.n > 0 && second.green.x0 > square.x1 + 7 * pixel && second.green.y0 > square.y1 + 7 * pixel, `green at rows and columns 40..47: ${JSON.stringify(second.green)}`);
    assert.ok(Math.abs((second.green.x1 - second.green.x0 + 1) - 8 * pixel) <= pixel, `green is 8 pixels wide: ${JSON.stringify(second.green)}`);
    assert.equal(second.blue.n + second.yellow.n + second.magenta.n, 0);
    writeFileSync(path.join(screenshots, 'viewer-segmentation.png'), await page.screenshot());

    // The red segment hidden: gone, the green one stays; shown again, back.
    await panel.locator('[data-testid=segment-toggle][data-label=Nodule]').click();
    await page.waitForFunction(() => Number((document.querySelector('[data-testid=segmentation-canvas-0]') as HTMLElement).dataset.drawn) === 1);
    const hidden = await canvasBoxes(page);
    assert.equal(hidden.red.n, 0, 'no red once hidden');
    assert.equal(hidden.green.n, second.green.n);
    await panel.locator('[data-testid=segment-toggle][data-label=Nodule]').click();
    await page.waitForFunction(() => Number((document.querySelector('[data-testid=segmentation-canvas-0]') as HTMLElement).dataset.drawn) === 2);
    assert.equal((await canvasBoxes(page)).red.n, second.red.n);

    // Slice 3: "Rein", a SEG naming no source image, placed by its position, in blue over the square;
    // "Kyste RLE", compressed, its frame decoded by the server, in magenta where "Kyste" is on slice 2.
    await goTo(page, 3);
    await page.waitForFunction(() => Number((document.querySelector('[data-testid=segmentation-canvas-0]') as HTMLElement).dataset.drawn) === 2);
    const third = await canvasBoxes(page);
    sameBox(third.blue, square, Math.ceil(pixel / 2) + 1, 'the blue segment over the CT square');
    sameBox(third.magenta, second.green, 1, 'the compressed segment where the green one was');
    assert.equal(third.red.n + third.green.n + third.yellow.n, 0);

    // Slice 4: "Oedeme", FRACTIONAL, drawn where it is at least 50 %: the square's left half (200/255), not its right half (100/255).
    await goTo(page, 4);
    await page.waitForFunction(() => Number((document.querySelector('[data-testid=segmentation-canvas-0]') as HTMLElement).dataset.drawn) === 1);
    const fourth = await canvasBoxes(page);
    sameBox(fourth.yellow, { ...square, x1: square.x0 + 8 * pixel - 1 }, Math.ceil(pixel / 2) + 1, 'the yellow segment over the left half of the CT square');
    assert.equal(fourth.red.n + fourth.green.n + fourth.blue.n + fourth.magenta.n, 0);
    assert.deepEqual(pageErrors, []);
  });

  it('says where a SEG is drawn when it is opened from the series list, and that a SEG of images not in the study is not drawn', async () => {
    const page = await loggedIn();
    await page.getByTestId('slice-0').waitFor();
    await page.locator(`[data-testid=series][data-series="${uids.segSeries}"]`).click();
    const note = page.getByTestId('document-segmentation');
    await note.waitFor();
    assert.equal(await note.getAttribute('data-state'), 'shown');
    assert.match(await note.innerText(), /superposée aux images de la série 1 CT Thorax/);
    assert.match(await note.innerText(), /Nodule[\s\S]*Kyste/);
    await page.getByTestId('document-close').click();

    await page.locator(`[data-testid=series][data-series="${uids.segOrphanSeries}"]`).click();
    await note.waitFor();
    assert.equal(await note.getAttribute('data-state'), 'not-shown');
    assert.match(await note.innerText(), /les images qu'elle désigne ne sont pas dans cet examen/);
    writeFileSync(path.join(screenshots, 'viewer-segmentation-elsewhere.png'), await page.screenshot());
    // The CT pane lists only the segments of the SEGs that are its own.
    assert.deepEqual((await page.getByTestId('segment-label').allInnerTexts()).sort(), ['Kyste', 'Kyste RLE', 'Nodule', 'Oedeme', 'Rein']);
    assert.deepEqual(pageErrors, []);
  });
});
