/**
 * The viewer's non-image objects in Debian's Chromium: a study holding images, a signed report
 * as DICOM Encapsulated PDF and a Comprehensive SR. The viewer lists the document series beside
 * the images, shows the PDF in the browser's PDF viewer (a frame on a blob: URL, allowed by the
 * portal's CSP) and the SR's content tree as text. Screenshots under .tmp/portal-screenshots.
 */
import assert from 'node:assert/strict';
import { stowFiles } from './support/stow.ts';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { PNG } from 'pngjs';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { comprehensiveSr, encapsulatedPdf, pdfSaying, type DocumentPatient } from './support/documents.ts';
import { addUser } from '../src/cli/users.ts';
import { newUID } from '../src/dicom/uids.ts';
import type { DicomElement } from '../src/dicom/dataset.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const portalDir = path.join(repo, 'web', 'dist');
const screenshots = path.join(repo, '.tmp', 'portal-screenshots');
const engine = testDatabases().at(-1)!;
const chromiumPath = '/usr/bin/chromium';
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const password = 'un mot de passe assez long pour les tests';

/** A decimal string element, even length. */
function ds(tag: number, values: number[]): DicomElement {
  let v = Buffer.from(values.join('\\'), 'latin1');
  if (v.length % 2) v = Buffer.concat([v, Buffer.from(' ')]);
  return { tag, vr: 'DS', value: v };
}

/** Distinct colours in a screenshot: a blank viewport has one or two. */
async function colours(region: Locator): Promise<number> {
  const image = PNG.sync.read(await region.screenshot());
  const seen = new Set<number>();
  for (let i = 0; i < image.data.length; i += 4) seen.add((image.data[i]! << 16) | (image.data[i + 1]! << 8) | image.data[i + 2]!);
  return seen.size;
}

describe(`the viewer's documents and key images in Chromium (${engine.name})`, { skip: !existsSync(chromiumPath) && 'Debian\'s chromium is not installed (.ci/run installs it)' }, () => {
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  let browser: Browser;
  const pageErrors: string[] = [];
  let mprStudy = '';
  const patient: DocumentPatient = { PatientID: 'PN-42', PatientName: 'Durand^Inès', StudyInstanceUID: newUID(), StudyDate: '20260402' };

  const stow = async (files: Buffer[]) => {
    const r = await stowFiles(`${base}/dicom-web`, atrium.tokens['CHU-NORD']!, files);
    assert.equal(r.status, 200, await r.text());
  };

  const loggedIn = async (login: string): Promise<Page> => {
    // A context of its own: nobody's session cookie but this login's.
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'fr-FR' });
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('response', (r) => {
      if (r.status() >= 400 && !(r.status() === 401 && r.url().endsWith('/auth/me'))) pageErrors.push(`${r.status()} ${r.url()}`);
    });
    await page.goto(`${base}/app/viewer?StudyInstanceUID=${patient.StudyInstanceUID}`);
    await page.locator('input[name=login]').fill(login);
    await page.locator('input[name=password]').fill(password);
    await page.getByRole('button', { name: 'Se connecter', exact: true }).click();
    await page.getByTestId('who').waitFor();
    return page;
  };

  before(async () => {
    if (!existsSync(path.join(portalDir, 'index.html'))) execFileSync('npm', ['run', 'build:web'], { cwd: repo, stdio: 'inherit' });
    mkdirSync(screenshots, { recursive: true });
    const db = await engine.open();
    cleanup = db.cleanup;
    atrium = await startAtrium({
      index: db.config,
      configure: (c) => {
        c.http.portalDir = portalDir;
      },
    });
    base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    const SeriesInstanceUID = newUID();
    await stow(Array.from({ length: 4 }, () => syntheticInstance({
      PatientID: patient.PatientID, PatientName: patient.PatientName, StudyInstanceUID: patient.StudyInstanceUID, SeriesInstanceUID, StudyDate: patient.StudyDate, Rows: 64, Columns: 64,
    }).file));
    // A volume: 24 slices 1 mm apart, with their geometry (position, orientation, spacing).
    const volumeSeries = newUID();
    mprStudy = newUID();
    await stow(Array.from({ length: 24 }, (_, z) => syntheticInstance({
      PatientID: patient.PatientID, PatientName: patient.PatientName, StudyInstanceUID: mprStudy, SeriesInstanceUID: volumeSeries, StudyDate: '20260301', Rows: 64, Columns: 64,
      extra: [ds(0x00200032, [-32, -32, z]), ds(0x00200037, [1, 0, 0, 0, 1, 0]), ds(0x00280030, [1, 1]), ds(0x00180050, [1])],
    }).file));
    await stow([
      encapsulatedPdf(patient, await pdfSaying('Compte rendu : examen normal'), 'Compte rendu de télé-interprétation'),
      comprehensiveSr(patient, 'Nodule pulmonaire lobaire supérieur droit', 12, 'Surveillance à 6 mois'),
    ]);
    const nord = atrium.archive.sites.get('CHU-NORD')!;
    const record = (await atrium.archive.index.patientRecordId(nord.id, nord.issuerOfPatientID, patient.PatientID))!;
    await addUser(atrium.archive, { login: 'ines.durand', displayName: 'Inès Durand', roles: ['patient'], sites: [], patientId: record, password }, { actor: 'test', via: 'cli' });
    await addUser(atrium.archive, { login: 'rad.nord', displayName: 'Dr Anne Radiologue', roles: ['radiologist'], sites: ['CHU-NORD'], password }, { actor: 'test', via: 'cli' });
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await atrium?.close();
    await cleanup?.();
  });

  it('lists the report and the structured report beside the images, and shows the PDF and the SR as text', async () => {
    const page = await loggedIn('rad.nord');
    // This exam's series (its CT prior is hung beside it: a radiologist's hanging protocol).
    const series = page.locator(`[data-testid=series][data-study="${patient.StudyInstanceUID}"]`);
    await series.nth(2).waitFor();
    assert.deepEqual(await series.evaluateAll((els) => els.map((e) => e.getAttribute('data-modality'))), ['CT', 'DOC', 'SR']);
    await page.getByTestId('slice-0').waitFor();
    assert.equal(await page.getByTestId('slice-0').innerText(), '1 / 4', 'the images, not a document, fill the viewport');
    // The hanging protocol of a CT opened by a radiologist: its CT prior (24 slices) beside it.
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-1]')?.textContent === '1 / 24', undefined, { timeout: 30_000 });
    assert.equal(await page.getByTestId('layout-1x2').getAttribute('aria-pressed'), 'true');

    await page.locator('[data-testid=series][data-modality=DOC]').click();
    const frame = page.getByTestId('document-pdf');
    await frame.waitFor();
    const src = (await frame.getAttribute('src'))!;
    assert.match(src, /^blob:/);
    // Chromium's own PDF viewer (its built-in extension) took the document.
    const pdfViewer = 'chrome-extension://mhjfbmdgcfjbbpaeojofohoefgiehjai/';
    for (let i = 0; i < 50 && !page.frames().some((f) => f.url().startsWith(pdfViewer)); i++) await page.waitForTimeout(100);
    assert.ok(page.frames().some((f) => f.url().startsWith(pdfViewer)), `frames: ${page.frames().map((f) => f.url()).join(', ')}`);
    assert.equal(await frame.getAttribute('title'), 'Compte rendu de télé-interprétation');
    await page.waitForTimeout(1000);
    writeFileSync(path.join(screenshots, 'viewer-pdf.png'), await page.screenshot());

    await page.locator('[data-testid=series][data-modality=SR]').click();
    const sr = page.getByTestId('document-sr');
    await sr.waitFor();
    const text = await sr.innerText();
    assert.match(text, /Rapport d'imagerie/);
    assert.match(text, /Constatation : Nodule pulmonaire lobaire supérieur droit/);
    assert.match(text, /Diamètre : 12 mm/);
    assert.match(text, /Conclusion : Surveillance à 6 mois/);
    writeFileSync(path.join(screenshots, 'viewer-sr.png'), await page.screenshot());
    await page.getByTestId('document-close').click();
    await sr.waitFor({ state: 'detached' });
    assert.deepEqual(pageErrors, []);
  });

  it('marks the image shown as a key image (button or K), stored as a Key Object Selection in the study, listed and navigable', async () => {
    const page = await loggedIn('rad.nord');
    await page.getByTestId('slice-0').waitFor();
    await page.getByTestId('progress-0').waitFor({ state: 'detached', timeout: 30_000 });
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '3 / 4');
    assert.ok(await page.getByTestId('mark-key-image').isEnabled());
    await page.keyboard.press('k');
    await page.getByTestId('key-image').first().waitFor();
    assert.equal(await page.getByTestId('key-image-status').innerText(), 'Image clé enregistrée');
    // The button does the same for the first image.
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('ArrowUp');
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '1 / 4');
    await page.getByTestId('mark-key-image').click();
    await page.getByTestId('key-image').nth(1).waitFor();
    assert.deepEqual(await page.locator(`[data-testid=series][data-study="${patient.StudyInstanceUID}"]`).evaluateAll((els) => els.map((e) => e.getAttribute('data-modality'))), ['CT', 'DOC', 'SR', 'KO']);
    writeFileSync(path.join(screenshots, 'viewer-key-images.png'), await page.screenshot());

    assert.match(await page.locator('[data-testid=series][data-modality=KO]').innerText(), /Images clés\s+2 images/, 'both in one key images series');

    // Navigable: the first key image listed is the third slice.
    await page.getByTestId('key-image').first().click();
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '3 / 4');
    await page.getByTestId('key-image').nth(1).click();
    await page.waitForFunction(() => document.querySelector('[data-testid=slice-0]')?.textContent === '1 / 4');

    // In the archive: Key Object Selection documents of the study, each pointing at one of its CT images.
    const headers = { authorization: `Bearer ${atrium.tokens['CHU-NORD']!}`, accept: 'application/dicom+json' };
    const metadata = (await (await fetch(`${base}/dicom-web/studies/${patient.StudyInstanceUID}/metadata`, { headers })).json()) as Array<Record<string, { Value?: unknown[] }>>;
    const value = (ds: Record<string, { Value?: unknown[] }>, t: string) => ds[t]?.Value?.[0];
    const images = new Set(metadata.filter((d) => value(d, '00080060') === 'CT').map((d) => value(d, '00080018')));
    const kos = metadata.filter((d) => value(d, '00080016') === '1.2.840.10008.5.1.4.1.1.88.59');
    assert.equal(kos.length, 2);
    for (const d of kos) {
      assert.equal(value(d, '00100020'), patient.PatientID);
      const item = value(d, '0040A730') as Record<string, { Value?: unknown[] }>;
      assert.equal(value(item, '0040A040'), 'IMAGE');
      const ref = value(item, '00081199') as Record<string, { Value?: unknown[] }>;
      assert.ok(images.has(value(ref, '00081155')), 'a reference to one of the study\'s images');
    }
    const stored = await atrium.archive.index.sql.get<{ n: number }>(
      `SELECT COUNT(*) AS n FROM audit_events WHERE actor = ? AND action = 'store' AND outcome = 'success'`, ['rad.nord']);
    assert.equal(Number(stored?.n), 2);
    assert.deepEqual(pageErrors, []);
  });

  it('lists key images to a patient, whose account may not store, with the button disabled', async () => {
    const page = await loggedIn('ines.durand');
    await page.getByTestId('key-image').nth(1).waitFor();
    assert.ok(await page.getByTestId('mark-key-image').isDisabled());
    await page.getByTestId('slice-0').waitFor();
    await page.keyboard.press('k');
    await page.waitForTimeout(300);
    assert.equal(await page.getByTestId('key-image-status').count(), 0);
    assert.equal(await page.getByTestId('key-image').count(), 2);
    assert.deepEqual(pageErrors, []);
  });

  it('reconstructs a CT volume in three planes (MPR: axial, sagittal, coronal) in WebGL without a GPU', async () => {
    const page = await loggedIn('rad.nord');
    await page.goto(`${base}/app/viewer?StudyInstanceUID=${mprStudy}`);
    await page.getByTestId('slice-0').waitFor();
    await page.getByTestId('mpr').click();
    await page.waitForFunction(() => document.querySelector('[data-testid=mpr-view]')?.getAttribute('data-state') !== 'loading', undefined, { timeout: 30_000 });
    assert.equal(await page.getByTestId('mpr-view').getAttribute('data-state'), 'shown');
    for (const plane of ['axial', 'sagittal', 'coronal']) {
      const region = page.getByTestId(`mpr-${plane}`);
      let n = 0;
      for (let i = 0; i < 40 && (n = await colours(region)) < 8; i++) await page.waitForTimeout(250);
      writeFileSync(path.join(screenshots, `viewer-mpr-${plane}.png`), await region.screenshot());
      assert.ok(n >= 8, `${plane}: ${n} colours`);
    }
    writeFileSync(path.join(screenshots, 'viewer-mpr.png'), await page.screenshot());
    await page.getByTestId('mpr').click();
    await page.getByTestId('slice-0').waitFor();
    assert.deepEqual(pageErrors, []);
  });

  it('shows in the timeline where each exam\'s teleradiology reading stands (from the teleradiology tables)', async () => {
    const sql = atrium.archive.index.sql;
    const nord = atrium.archive.sites.get('CHU-NORD')!;
    const record = (await atrium.archive.index.patientRecordId(nord.id, nord.issuerOfPatientID, patient.PatientID))!;
    const author = (await sql.get<{ id: number }>('SELECT id FROM users WHERE login = ?', ['rad.nord']))!.id;
    const now = new Date().toISOString();
    const request = async (StudyInstanceUID: string, status: string) => {
      await sql.run(`INSERT INTO tele_requests (requesting_site_id, patient_id, study_instance_uid, urgency, modality, body_part, specialty, clinical_context,
        clinical_question, requesting_physician, proposed_protocol, status, deadline_at, created_by, created_at, updated_at)
        VALUES (?, ?, ?, 'routine', 'CT', 'CHEST', 'thorax', 'toux', 'nodule ?', 'Dr Demandeur', 'TDM thorax', ?, ?, 'test', ?, ?)`,
      [nord.id, record, StudyInstanceUID, status, now, now, now]);
      return (await sql.get<{ id: number }>('SELECT MAX(id) AS id FROM tele_requests'))!.id;
    };
    const signed = await request(patient.StudyInstanceUID, 'reported');
    await sql.run(`INSERT INTO tele_reports (request_id, status, fields_json, findings, conclusion, author_user_id, version, created_at, updated_at, signed_at, signed_by)
      VALUES (?, 'final', '{}', 'RAS', 'Normal', ?, 1, ?, ?, ?, 'rad.nord')`, [signed, author, now, now, now]);
    await request(mprStudy, 'open');

    const page = await loggedIn('rad.nord');
    await page.goto(`${base}/app/patients?site=CHU-NORD&PatientID=${patient.PatientID}`);
    const exams = page.getByTestId('timeline').locator('li');
    await exams.nth(1).waitFor();
    assert.equal(await exams.count(), 2);
    // Newest first: the report of 02/04/2026 is signed; the request of 01/03/2026 is being read.
    assert.equal(await exams.nth(0).getByTestId('report-status').innerText(), 'Compte rendu : signé');
    assert.equal(await exams.nth(1).getByTestId('report-status').innerText(), 'Compte rendu : en cours');
    writeFileSync(path.join(screenshots, 'timeline-report-status.png'), await page.screenshot());
    assert.deepEqual(pageErrors, []);
  });
});
