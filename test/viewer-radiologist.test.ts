/**
 * The viewer as a radiologist expects it (issue 20 §3), in Debian's Chromium: the axial series
 * opened first (not the localizer, nor a larger coronal reformat), the four-corner overlay,
 * orientation markers and scale, invert/rotate/flip, the tag browser and PNG export, ROI
 * statistics checked against the synthetic pixels' own mean and SD, measurements saved as a
 * TID 1500 SR in the study (STOW-RS, audited) and drawn again after a reload, keyboard scrolling
 * that drops no press while frames load, a phone's thumbnail strip, and no console error; the
 * first image painted before the tools' chunk is asked for, the series' frames sent in JPEG-LS lossless.
 * Screenshots under .tmp/viewer-radiologist.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { PNG } from 'pngjs';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { Browsers, dragThrough, haveChromium, Screenshots } from './support/chromium.ts';
import { testDatabases } from './support/databases.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticHeader, syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { TransferSyntax, type DicomDataset, type DicomElement } from '../src/dicom/dataset.ts';
import { buildPart10, encodeDataset } from '../src/dicom/part10-writer.ts';
import { newUID } from '../src/dicom/uids.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const portalDir = path.join(repo, 'web', 'dist');
const engine = testDatabases().at(-1)!;
const password = 'un mot de passe assez long pour les tests';

function textElement(tag: number, vr: DicomElement['vr'], value: string): DicomElement {
  let v = Buffer.from(value, 'latin1');
  if (v.length % 2) v = Buffer.concat([v, Buffer.from(vr === 'UI' ? [0] : [0x20])]);
  return { tag, vr, value: v };
}
const ds = (tag: number, values: number[]) => textElement(tag, 'DS', values.join('\\'));

/** The axial series' pixels: a checkerboard of 1100 and 1300 (with the rescale, 76 and 276 HU). */
const stored = [1100, 1300];
const intercept = -1024;
const checker = (row: number, column: number) => stored[(row + column) % 2]!;

describe(`the viewer as a radiologist expects it, in Chromium (${engine.name})`, { skip: !haveChromium && 'Debian\'s chromium is not installed (.ci/run installs it)' }, () => {
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  const browsers = new Browsers();
  const shots = new Screenshots(path.join(repo, '.tmp', 'viewer-radiologist'));
  const problems: string[] = [];
  const StudyInstanceUID = newUID();
  const axialSeries = newUID();
  const coronalSeries = newUID();
  const localizerSeries = newUID();
  const ecgSeries = newUID();
  const patient = { PatientID: 'RAD-20', PatientName: 'Martin^Claire', StudyInstanceUID, StudyDate: '20260410' };
  const slices = 40;
  const portalCopy = mkdtempSync(path.join(tmpdir(), 'atrium-viewer-portal-'));

  const stow = async (files: Buffer[]) => {
    const r = await stowFiles(`${base}/dicom-web`, atrium.tokens['CHU-NORD']!, files);
    assert.equal(r.status, 200, await r.text());
  };

  /** Once logged in (the login page's own 401 is expected), every console error and failed request is recorded. */
  const watch = (page: Page) => {
    page.on('pageerror', (e) => problems.push(`page error: ${String(e)}`));
    // (Chromium asks for /favicon.ico, which the portal does not have.)
    page.on('console', (m) => { if (m.type() === 'error' && !JSON.stringify(m.location()).includes('favicon.ico')) problems.push(`console: ${m.text()} ${JSON.stringify(m.location())}`); });
    page.on('response', (r) => { if (r.status() >= 400 && !r.url().endsWith('/favicon.ico')) problems.push(`${r.status()} ${r.url()}`); });
  };

  const login = async (page: Page, url: string) => {
    await page.goto(url);
    await page.locator('input[name=login]').fill('rad.claire');
    await page.locator('input[name=password]').fill(password);
    await page.getByRole('button', { name: 'Se connecter', exact: true }).click();
    await page.getByTestId('who').waitFor();
    watch(page);
  };

  /** A logged-in radiologist's page on the study. */
  const open = async (viewport = { width: 1280, height: 800 }): Promise<Page> => {
    const page = await browsers.open();
    await page.setViewportSize(viewport);
    await login(page, `${base}/app/viewer?StudyInstanceUID=${StudyInstanceUID}`);
    return page;
  };

  const text = async (page: Page, testId: string) => (await page.getByTestId(testId).innerText()).trim();

  before(async () => {
    if (!existsSync(path.join(portalDir, 'index.html'))) execFileSync('npm', ['run', 'build:web'], { cwd: repo, stdio: 'inherit' });
    const db = await engine.open();
    cleanup = db.cleanup;
    // A copy of the built portal: another build of web/dist during the test does not pull files from under the browser.
    cpSync(portalDir, portalCopy, { recursive: true });
    atrium = await startAtrium({ index: db.config, configure: (c) => { c.http.portalDir = portalCopy; } });
    base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    const FrameOfReferenceUID = newUID();
    const common = (SeriesInstanceUID: string, SeriesNumber: number, n: number, rows: number, extra: DicomElement[]) => ({
      ...patient, SeriesInstanceUID, Rows: rows, Columns: rows,
      extra: [textElement(0x00200011, 'IS', String(SeriesNumber)), textElement(0x00200013, 'IS', String(n + 1)), textElement(0x00200052, 'UI', FrameOfReferenceUID),
        textElement(0x00080080, 'LO', 'CHU Nord'), textElement(0x00081030, 'LO', 'TDM thorax'), textElement(0x00100040, 'CS', 'F'), ...extra],
    });
    // Series 1: the localizer (a scout, 3 images), first by series number.
    await stow(Array.from({ length: 3 }, (_, n) => syntheticInstance(common(localizerSeries, 1, n, 64, [
      textElement(0x00080008, 'CS', 'ORIGINAL\\PRIMARY\\LOCALIZER'), ds(0x00200037, [1, 0, 0, 0, 0, -1]), ds(0x00200032, [-32, 0, 32]), ds(0x00280030, [1, 1]),
    ])).file));
    // Series 2: the axial acquisition, 40 slices 2.5 mm apart, 0.5 mm pixels, in HU.
    await stow(Array.from({ length: slices }, (_, n) => {
      const { header, pixelBytes } = syntheticHeader(common(axialSeries, 2, n, 64, [
        textElement(0x00080008, 'CS', 'ORIGINAL\\PRIMARY\\AXIAL'), ds(0x00200037, [1, 0, 0, 0, 1, 0]), ds(0x00200032, [-16, -16, n * 2.5]),
        ds(0x00280030, [0.5, 0.5]), ds(0x00180050, [2.5]), ds(0x00201041, [n * 2.5]), ds(0x00281052, [intercept]), ds(0x00281053, [1]),
        ds(0x00281050, [40]), ds(0x00281051, [400]),
      ]));
      const pixels = Buffer.alloc(pixelBytes);
      for (let r = 0; r < 64; r++) for (let c = 0; c < 64; c++) pixels.writeUInt16LE(checker(r, c), (r * 64 + c) * 2);
      return Buffer.concat([header, pixels]);
    }));
    // Series 3: a coronal reformat with more images than the axial series.
    await stow(Array.from({ length: 48 }, (_, n) => syntheticInstance(common(coronalSeries, 3, n, 16, [
      textElement(0x00080008, 'CS', 'DERIVED\\SECONDARY\\REFORMATTED'), ds(0x00200037, [1, 0, 0, 0, 0, -1]), ds(0x00200032, [-8, n, 8]), ds(0x00280030, [1, 1]),
    ])).file));
    // Series 4: an ECG waveform (no pixels): a clear message, never a black viewport.
    const ecgSop = newUID();
    const ecgClass = '1.2.840.10008.5.1.4.1.1.9.1.1';
    const ecg: DicomDataset = new Map([
      textElement(0x00080005, 'CS', 'ISO_IR 100'), textElement(0x00080016, 'UI', ecgClass), textElement(0x00080018, 'UI', ecgSop),
      textElement(0x00080020, 'DA', patient.StudyDate), textElement(0x00080060, 'CS', 'ECG'), textElement(0x0008103e, 'LO', 'ECG 12 dérivations'),
      textElement(0x00100010, 'PN', patient.PatientName), textElement(0x00100020, 'LO', patient.PatientID), textElement(0x0020000d, 'UI', StudyInstanceUID),
      textElement(0x0020000e, 'UI', ecgSeries), textElement(0x00200011, 'IS', '4'), textElement(0x00200013, 'IS', '1'),
    ].map((e) => [e.tag, e]));
    await stow([buildPart10({ MediaStorageSOPClassUID: ecgClass, MediaStorageSOPInstanceUID: ecgSop, TransferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian }, encodeDataset(ecg, true, true))]);
    // And one with its traces: two leads, 2 s at 250 Hz, 16-bit signed, 5 µV a unit.
    const traced = newUID();
    const samples = 500;
    const data = Buffer.alloc(samples * 2 * 2);
    for (let n = 0; n < samples; n++) {
      data.writeInt16LE(Math.round(200 * Math.sin((2 * Math.PI * n) / 250)), n * 4);
      data.writeInt16LE(n % 250 < 10 ? 300 : 0, n * 4 + 2);
    }
    const us = (tag: number, n: number): DicomElement => ({ tag, vr: 'US', value: Buffer.from([n & 0xff, n >> 8]) });
    const lead = (name: string): DicomDataset => new Map([
      [0x003a0208, { tag: 0x003a0208, vr: 'SQ', items: [new Map([textElement(0x00080100, 'SH', '5.6.3-9-1'), textElement(0x00080102, 'SH', 'MDC'), textElement(0x00080104, 'LO', name)].map((e) => [e.tag, e]))] }],
      [0x003a0210, ds(0x003a0210, [5])],
      [0x003a021a, us(0x003a021a, 16)],
    ] as Array<[number, DicomElement]>);
    const group: DicomDataset = new Map([
      textElement(0x003a0004, 'CS', 'RHYTHM'), us(0x003a0005, 2), { tag: 0x003a0010, vr: 'UL', value: Buffer.from(Uint32Array.of(samples).buffer) } as DicomElement,
      ds(0x003a001a, [250]), { tag: 0x003a0200, vr: 'SQ', items: [lead('Lead I'), lead('Lead II')] } as DicomElement,
      us(0x54001004, 16), textElement(0x54001006, 'CS', 'SS'), { tag: 0x54001010, vr: 'OW', value: data } as DicomElement,
    ].map((e) => [e.tag, e]));
    const withTraces: DicomDataset = new Map([...ecg, [0x00080018, textElement(0x00080018, 'UI', traced)], [0x00200013, textElement(0x00200013, 'IS', '2')],
      [0x54000100, { tag: 0x54000100, vr: 'SQ', items: [group] } as DicomElement]]);
    await stow([buildPart10({ MediaStorageSOPClassUID: ecgClass, MediaStorageSOPInstanceUID: traced, TransferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian }, encodeDataset(withTraces, true, true))]);
    await addUser(atrium.archive, { login: 'rad.claire', displayName: 'Dr Claire Radiologue', roles: ['radiologist'], sites: ['CHU-NORD'], password }, { actor: 'test', via: 'cli' });
  });

  after(async () => {
    await browsers.close();
    await atrium?.close();
    await cleanup?.();
    rmSync(portalCopy, { recursive: true, force: true });
  });

  it('opens the largest axial series (not the localizer, not a larger coronal reformat) with the four corners, markers and scale', async () => {
    const page = await open();
    await page.getByTestId('slice-0').waitFor();
    assert.equal(await text(page, 'slice-0'), `1 / ${slices}`, 'the axial series, 40 images');
    assert.equal(await page.locator('[data-testid=series].on').getAttribute('data-series'), axialSeries);
    // The series list: CT 1, 2, 3 with their pictures, then the ECG.
    assert.deepEqual(await page.getByTestId('series').evaluateAll((els) => els.map((e) => e.getAttribute('data-modality'))), ['CT', 'CT', 'CT', 'ECG']);
    await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('[data-testid=thumbnail]')].every((i) => i.complete && i.naturalWidth > 0), undefined, { timeout: 30_000 });
    assert.equal(await page.getByTestId('thumbnail').count(), 3);

    await shots.renderedViewport(page, 'axial-first', page.getByTestId('viewport-0'));
    await page.getByTestId('window-0').waitFor();
    assert.match(await text(page, 'corner-tl-0'), /MARTIN Claire|Martin Claire/i);
    assert.match(await text(page, 'corner-tl-0'), /RAD-20/);
    assert.match(await text(page, 'corner-tr-0'), /CHU Nord/);
    assert.match(await text(page, 'corner-tr-0'), /10\/04\/2026/);
    assert.equal(await text(page, 'window-0'), 'F 400 N 40', 'the window the images carry');
    const sliceInfo = (await page.getByTestId('slice-info-0').allInnerTexts()).join(' | ');
    assert.match(sliceInfo, /Pos\. 0 mm/);
    assert.match(sliceInfo, /Ép\. 2\.5 mm/);
    // An axial image as stored: the patient's left on the screen's right, anterior up.
    assert.deepEqual([await text(page, 'marker-top-0'), await text(page, 'marker-right-0'), await text(page, 'marker-bottom-0'), await text(page, 'marker-left-0')], ['A', 'G', 'P', 'D']);
    const scale = page.getByTestId('scale-0');
    assert.ok(Number(await scale.getAttribute('data-mm')) > 0 && Number(await scale.getAttribute('data-px')) > 0);
    await shots.shootNonBlank(page, 'overlay');

    // Scrolling moves the position.
    await page.keyboard.press('ArrowDown');
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '2 / 40');
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=slice-info-0]')].some((e) => e.textContent === 'Pos. 2.5 mm'));

    // Flip: left and right swap; rotate: anterior leaves the top; invert is said in the corner.
    await page.getByTestId('flip-h').click();
    await page.waitForFunction(() => document.querySelector('[data-testid=marker-right-0]')?.textContent === 'D');
    await page.getByTestId('flip-h').click();
    await page.waitForFunction(() => document.querySelector('[data-testid=marker-right-0]')?.textContent === 'G');
    await page.getByTestId('rotate').click();
    await page.waitForFunction(() => document.querySelector('[data-testid=marker-top-0]')?.textContent !== 'A');
    assert.ok(['G', 'D'].includes(await text(page, 'marker-top-0')), 'a quarter turn brings left or right to the top');
    await page.keyboard.press('i');
    await page.waitForFunction(() => /Inverser/.test(document.querySelector('[data-testid=corner-br-0]')?.textContent ?? ''));
    await shots.shootNonBlank(page, 'rotated-inverted');
    await page.keyboard.press('r');

    // The tag browser shows the image's elements with their keywords, filtered.
    await page.getByTestId('tags').click();
    await page.getByTestId('tag-browser').waitFor();
    await page.getByTestId('tag-filter').fill('SliceThickness');
    const row = page.locator('[data-testid=tag-browser] tr[data-tag="00180050"]');
    await row.waitFor();
    assert.match(await row.innerText(), /SliceThickness\s+DS\s+2\.5/);
    assert.equal(await page.locator('[data-testid=tag-browser] tr').count(), 1);
    await shots.shoot(page, 'tag-browser');
    await page.getByTestId('tag-browser-close').click();

    // Export: a PNG of the image as shown.
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-image').click()]);
    assert.match(download.suggestedFilename(), /^CT-2-\d+\.png$/);
    const png = PNG.sync.read(readFileSync(await download.path()));
    assert.ok(png.width > 64 && png.height > 64, `${png.width}x${png.height}`);
    assert.deepEqual(problems, []);
  });

  it('paints the first image before loading the tools (then they work), with the series\' frames sent in JPEG-LS lossless that show the stored values', async () => {
    const page = await browsers.open();
    await page.setViewportSize({ width: 1280, height: 800 });
    const frameRequests: Array<{ url: string; accept: string }> = [];
    const frameAnswers: string[] = [];
    page.on('request', (r) => { if (/\/(pixeldata|frames\/\d+)$/.test(r.url())) frameRequests.push({ url: r.url(), accept: r.headers().accept ?? '' }); });
    page.on('response', (r) => { if (/\/(pixeldata|frames\/\d+)$/.test(r.url())) frameAnswers.push(r.headers()['content-type'] ?? ''); });
    await login(page, `${base}/app/viewer?StudyInstanceUID=${StudyInstanceUID}`);
    await page.locator('[data-testid=viewport-0][data-first-image-ms]').waitFor({ timeout: 60_000 });
    await page.locator('section.viewer[data-tools=ready]').waitFor({ timeout: 60_000 });
    // The tools' chunk: asked for once the first image was painted, not before (same clock: the page's).
    const timing = await page.evaluate(() => ({
      firstImage: Number(document.querySelector<HTMLElement>('[data-testid=viewport-0]')!.dataset.firstImageMs),
      tools: performance.getEntriesByType('resource').filter((e) => /\/assets\/tools-[\w-]+\.js$/.test(e.name)).map((e) => e.startTime),
    }));
    assert.equal(timing.tools.length, 1, 'the tools chunk is loaded once');
    assert.ok(timing.tools[0]! >= timing.firstImage, `tools asked for at ${timing.tools[0]} ms, first image at ${timing.firstImage} ms`);

    // The series' stream asked for in JPEG-LS lossless (else as stored) and answered so; the first image, alone, as stored.
    await page.getByTestId('progress-0').waitFor({ state: 'detached', timeout: 60_000 });
    const streams = frameRequests.filter((r) => r.url.endsWith('/pixeldata'));
    assert.ok(streams.length > 0, JSON.stringify(frameRequests));
    for (const r of streams) assert.match(r.accept, /type="image\/jls"; transfer-syntax=1\.2\.840\.10008\.1\.2\.4\.80, multipart\/related; type="application\/octet-stream"; transfer-syntax=\*/, r.url);
    assert.ok(frameAnswers.some((t) => /type="image\/jls"/.test(t)), JSON.stringify(frameAnswers));
    assert.equal(await page.getByTestId('viewport-0').getAttribute('data-transfer-syntax'), '1.2.840.10008.1.2.1');
    // The next image came in the stream, decoded from JPEG-LS, and shows exactly as the first (every slice holds the same checkerboard).
    const canvas = () => page.evaluate(() => {
      const c = document.querySelector<HTMLCanvasElement>('[data-testid=viewport-0] canvas')!;
      const copy = document.createElement('canvas');
      copy.width = c.width;
      copy.height = c.height;
      copy.getContext('2d')!.drawImage(c, 0, 0);
      return Array.from(copy.getContext('2d')!.getImageData(0, 0, c.width, c.height).data).join(',');
    });
    const firstShown = await canvas();
    await page.keyboard.press('ArrowDown');
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '2 / 40');
    await page.waitForFunction(() => document.querySelector('[data-testid=viewport-0]')?.getAttribute('data-transfer-syntax') === '1.2.840.10008.1.2.4.80');
    assert.ok(new Set(firstShown.split(',')).size > 2, 'the image is drawn');
    assert.ok((await canvas()) === firstShown, 'the JPEG-LS slice shows the same pixels as the native one');
    await page.keyboard.press('ArrowUp');
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '1 / 40');

    // The values shown are the stored ones: the HU probe on several pixels (the stream's JPEG-LS frames are also
    // checked sample by sample in transfer-compression.test.ts).
    const hu = stored.map((v) => v + intercept);
    const box = (await page.getByTestId('viewport-0').boundingBox())!;
    await page.getByTestId('tool-Probe').click();
    const probe = async (fx: number, fy: number, n: number) => {
      await page.mouse.click(box.x + box.width * fx, box.y + box.height * fy);
      await page.waitForFunction((count) => [...document.querySelectorAll('[data-testid=measurements] li[data-tool=Probe]')].filter((li) => li.getAttribute('data-value')).length === count, n, { timeout: 30_000 })
        .catch(async (e: unknown) => {
          await shots.shoot(page, 'probes-missing');
          throw new Error(`${String(e)}: probe ${n}: ${await page.locator('.series-list').innerText()}`);
        });
    };
    await probe(0.5, 0.5, 1);
    await probe(0.4, 0.6, 2);
    await probe(0.6, 0.35, 3);
    // Each probe's value is the stored one at the pixel it names (column, row), rescaled to HU.
    const probes = () => page.locator('[data-testid=measurements] li[data-tool=Probe]').evaluateAll((lis) => lis.map((li) => ({ value: li.getAttribute('data-value'), pixel: li.getAttribute('data-pixel') })));
    const checkProbes = async (n: number) => {
      const probed = await probes();
      assert.equal(probed.length, n);
      for (const { value, pixel } of probed) {
        const [column, row] = (pixel ?? '').split(',').map(Number);
        assert.ok(Number.isInteger(column) && Number.isInteger(row), `pixel ${pixel}`);
        assert.equal(Number(value), checker(row!, column!) + intercept, `probe at ${pixel}: ${value}`);
      }
    };
    await checkProbes(3);
    // The same on slices that came in the series' JPEG-LS stream: the next one, and a later one scrolled to with the keyboard.
    await page.keyboard.press('ArrowDown');
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '2 / 40');
    await page.waitForFunction(() => document.querySelector('[data-testid=viewport-0]')?.getAttribute('data-transfer-syntax') === '1.2.840.10008.1.2.4.80');
    await probe(0.45, 0.55, 4);
    for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowDown');
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '7 / 40');
    await page.waitForFunction(() => document.querySelector('[data-testid=viewport-0]')?.getAttribute('data-transfer-syntax') === '1.2.840.10008.1.2.4.80');
    await probe(0.55, 0.45, 5);
    await probe(0.62, 0.6, 6);
    await checkProbes(6);
    // And an ellipse's statistics there: the checkerboard's mean and SD in HU.
    await page.getByTestId('tool-EllipticalROI').click();
    await dragThrough(page, box, [[0.5, 0.45], [0.53, 0.49], [0.56, 0.52]], 5);
    await page.waitForFunction(() => document.querySelector('[data-testid=measurements] li[data-tool=EllipticalROI]')?.getAttribute('data-sd'), undefined, { timeout: 30_000 });
    const ellipse = page.locator('[data-testid=measurements] li[data-tool=EllipticalROI]');
    assert.ok(Math.abs(Number(await ellipse.getAttribute('data-mean')) - (hu[0]! + hu[1]!) / 2) < 5, await ellipse.innerText());
    assert.ok(Math.abs(Number(await ellipse.getAttribute('data-sd')) - Math.abs(hu[1]! - hu[0]!) / 2) < 5, await ellipse.innerText());

    // Window/level (a tool of the chunk): a drag changes the window shown.
    await page.getByTestId('tool-WindowLevel').click();
    assert.equal(await text(page, 'window-0'), 'F 400 N 40');
    await dragThrough(page, box, [[0.3, 0.3], [0.45, 0.4]], 8);
    await page.waitForFunction(() => document.querySelector('[data-testid=window-0]')?.textContent !== 'F 400 N 40', undefined, { timeout: 30_000 });
    assert.deepEqual(problems, []);
  });

  it('measures an ellipse, a rectangle and a HU probe against the pixels\' own values, saves them as a TID 1500 SR and draws them again after a reload', async () => {
    const page = await open();
    await page.getByTestId('slice-0').waitFor();
    await page.getByTestId('progress-0').waitFor({ state: 'detached', timeout: 60_000 });
    const box = (await page.getByTestId('viewport-0').boundingBox())!;
    const at = (fx: number, fy: number) => [box.x + box.width * fx, box.y + box.height * fy] as const;
    // Fractions of the viewport, through their midpoint.
    const drag = (from: readonly [number, number], to: readonly [number, number]) =>
      dragThrough(page, box, [from, [(from[0] + to[0]) / 2, (from[1] + to[1]) / 2], to], 5);
    // The checkerboard's values in HU: half 76, half 276.
    const hu = stored.map((v) => v + intercept);
    const mean = (hu[0]! + hu[1]!) / 2;
    const sd = Math.abs(hu[1]! - hu[0]!) / 2;

    await page.getByTestId('tool-EllipticalROI').click();
    // The ellipse is drawn from its centre.
    await drag([0.5, 0.45], [0.56, 0.52]);
    await page.getByTestId('tool-RectangleROI').click();
    await drag([0.45, 0.3], [0.55, 0.38]);
    await page.getByTestId('tool-Probe').click();
    await page.mouse.click(...at(0.5, 0.7));
    const items = page.locator('[data-testid=measurements] li');
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=measurements] li')].filter((li) => li.getAttribute('data-mean') || li.getAttribute('data-value')).length === 3, undefined, { timeout: 30_000 })
      .catch(async (e: unknown) => {
        await shots.shoot(page, 'measurements-missing');
        throw new Error(`${String(e)}: ${await page.locator('.series-list').innerHTML()}`);
      });
    const values = await items.evaluateAll((lis) => lis.map((li) => ({ tool: li.getAttribute('data-tool'), mean: li.getAttribute('data-mean'), sd: li.getAttribute('data-sd'), area: li.getAttribute('data-area'), value: li.getAttribute('data-value'), text: li.textContent })));
    for (const roi of ['EllipticalROI', 'RectangleROI']) {
      const v = values.find((x) => x.tool === roi)!;
      // Many pixels of each value: the mean and SD of the region are the checkerboard's, within a pixel's weight.
      assert.ok(Math.abs(Number(v.mean) - mean) < 5, `${roi} mean ${v.mean}, expected ${mean}`);
      assert.ok(Math.abs(Number(v.sd) - sd) < 5, `${roi} SD ${v.sd}, expected ${sd}`);
      assert.ok(Number(v.area) > 1, `${roi} area ${v.area} mm²`);
      assert.match(v.text!, /moy\. \d+(\.\d)? HU, ÉT \d+(\.\d)?, aire \d+(\.\d)? mm²/);
    }
    const probe = values.find((x) => x.tool === 'Probe')!;
    assert.ok(hu.includes(Number(probe.value)), `probe ${probe.value}`);
    await shots.shootNonBlank(page, 'measurements');

    await page.getByTestId('save-measurements').click();
    await page.waitForFunction(() => document.querySelector('[data-testid=measurements-status]')?.textContent === 'Mesures enregistrées dans l\'examen', undefined, { timeout: 30_000 });
    await page.locator('[data-testid=saved-measurement]').nth(2).waitFor();

    // In the archive: a Comprehensive SR of template 1500 in the study, stored by the radiologist and audited.
    const headers = { authorization: `Bearer ${atrium.tokens['CHU-NORD']!}`, accept: 'application/dicom+json' };
    const metadata = (await (await fetch(`${base}/dicom-web/studies/${StudyInstanceUID}/metadata`, { headers })).json()) as Array<Record<string, { Value?: unknown[] }>>;
    const first = (d: Record<string, { Value?: unknown[] }> | undefined, t: string) => d?.[t]?.Value?.[0];
    const reports = metadata.filter((d) => first(d, '00080016') === '1.2.840.10008.5.1.4.1.1.88.33');
    assert.equal(reports.length, 1);
    const report = reports[0]!;
    assert.equal(first(report, '00100020'), patient.PatientID);
    assert.equal(first(first(report, '0040A504') as Record<string, { Value?: unknown[] }>, '0040DB00'), '1500');
    assert.equal(first(first(report, '0040A043') as Record<string, { Value?: unknown[] }>, '00080100'), '126000');
    const audited = await atrium.archive.index.sql.get<{ n: number }>(
      `SELECT COUNT(*) AS n FROM audit_events WHERE actor = ? AND action = 'store' AND outcome = 'success'`, ['rad.claire']);
    assert.equal(Number(audited?.n), 1);

    // After a reload: listed from the report, and drawn again on their image.
    await page.reload();
    await page.getByTestId('slice-0').waitFor();
    await page.locator('[data-testid=saved-measurement]').nth(2).waitFor();
    const listed = await page.locator('[data-testid=saved-measurement]').evaluateAll((lis) => lis.map((li) => `${li.getAttribute('data-tool')}: ${li.textContent}`));
    assert.equal(listed.length, 3);
    const ellipse = listed.find((l) => l.startsWith('EllipticalROI'))!;
    const savedMean = Number(/moy\. ([\d.]+)/.exec(ellipse)?.[1]);
    assert.equal(savedMean, Number(Number(values.find((x) => x.tool === 'EllipticalROI')!.mean).toFixed(1)), ellipse);
    await page.waitForFunction(() => document.querySelector('[data-testid=pane-0]')?.getAttribute('data-restored') === '3', undefined, { timeout: 30_000 });
    // Drawn: the annotations' SVG holds shapes again.
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=viewport-0] svg ellipse, [data-testid=viewport-0] svg path, [data-testid=viewport-0] svg polyline, [data-testid=viewport-0] svg rect').length > 0, undefined, { timeout: 30_000 });
    await shots.shootNonBlank(page, 'measurements-reloaded');
    assert.deepEqual(problems, []);
  });

  it('scrolls two viewports together once linked (Synchro), by position', async () => {
    const page = await open();
    await page.getByTestId('slice-0').waitFor();
    await page.getByTestId('layout-1x2').click();
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-1]')?.textContent === '1 / 40');
    await page.getByTestId('progress-1').waitFor({ state: 'detached', timeout: 60_000 });
    await page.getByTestId('sync-scroll').click();
    assert.equal(await page.getByTestId('sync-scroll').getAttribute('aria-pressed'), 'true');
    await page.waitForTimeout(700); // the panes are linked as their images arrive (every 300 ms)
    await page.getByTestId('pane-0').click();
    for (let i = 0; i < 3; i++) await page.keyboard.press('ArrowDown');
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '4 / 40');
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-1]')?.textContent === '4 / 40', undefined, { timeout: 30_000 });
    // Unlinked: the other stays.
    await page.getByTestId('sync-scroll').click();
    await page.keyboard.press('ArrowDown');
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '5 / 40');
    await page.waitForTimeout(500);
    assert.equal(await text(page, 'slice-1'), '4 / 40');
    await shots.shootNonBlank(page, 'sync');
    assert.deepEqual(problems, []);
  });

  it('drops no key press while frames are still loading (a slow line)', async () => {
    const page = await browsers.open();
    await login(page, `${base}/app/`);
    // 1 Mbit/s: the series takes seconds to arrive; the presses come during it.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 40, downloadThroughput: 125_000, uploadThroughput: 125_000 });
    await page.goto(`${base}/app/viewer?StudyInstanceUID=${StudyInstanceUID}`);
    await page.getByTestId('slice-0').waitFor({ timeout: 60_000 });
    await page.getByTestId('progress-0').waitFor();
    for (let i = 0; i < 25; i++) await page.keyboard.press('ArrowDown');
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '26 / 40', undefined, { timeout: 120_000 })
      .catch(async (e: unknown) => {
        await shots.shoot(page, 'keyboard-stuck');
        throw new Error(`${String(e)}: ${await page.getByTestId('pane-0').innerText()}`);
      });
    for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowUp');
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '21 / 40', undefined, { timeout: 120_000 });
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    assert.deepEqual(problems, []);
  });

  it('on a phone (390 px), shows the series as a strip of thumbnails under the image; an ECG says it is not an image', async () => {
    const page = await open({ width: 390, height: 844 });
    await page.getByTestId('slice-0').waitFor();
    const strip = page.locator('.series-list');
    assert.ok(await strip.isVisible());
    const thumbs = page.getByTestId('thumbnail');
    await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('[data-testid=thumbnail]')].every((i) => i.complete && i.naturalWidth > 0), undefined, { timeout: 30_000 });
    const boxes = await Promise.all([0, 1].map(async (i) => (await thumbs.nth(i).boundingBox())!));
    assert.ok(Math.abs(boxes[0]!.y - boxes[1]!.y) < 2 && boxes[1]!.x > boxes[0]!.x, 'side by side, a strip');
    const viewport = (await page.getByTestId('viewport-0').boundingBox())!;
    assert.ok(boxes[0]!.y > viewport.y, 'under the image');
    assert.ok(viewport.width <= 390 && viewport.height > 200, `${viewport.width}x${viewport.height}`);
    await shots.renderedViewport(page, 'phone-viewport', page.getByTestId('viewport-0'));
    await shots.shootNonBlank(page, 'phone');
    // A tap on the coronal series' picture shows it.
    await page.locator(`[data-testid=series][data-series="${coronalSeries}"]`).click();
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '1 / 48');
    // The ECG: no pixels, a clear message rather than a black viewport.
    await page.locator('[data-testid=series][data-modality=ECG]').click();
    await page.getByTestId('document-panel').waitFor();
    assert.match(await page.getByTestId('document-waveform').innerText(), /Tracé \(ECG ou autre signal\) illisible ici/);
    // The one with its traces: two leads drawn, named.
    await page.getByTestId('waveform').waitFor();
    assert.equal(await page.getByTestId('waveform-channel').count(), 2);
    assert.equal(await page.locator('[data-testid=waveform] svg').getAttribute('aria-label'), 'Lead I, Lead II');
    assert.match(await page.locator('[data-testid=waveform] figcaption').innerText(), /2 × 2\.0 s · 250 Hz/);
    await shots.shoot(page, 'phone-ecg');
    assert.deepEqual(problems, []);
  });
});
