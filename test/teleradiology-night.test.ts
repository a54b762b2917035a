/**
 * A whole night of teleradiology, end to end over the real interfaces (issue 6, "Done when"):
 * the emergency of the Clinique du Sud sends a stroke request from the portal and the CT by
 * DIMSE (DCMTK's storescu against Atrium's port); the request is given to the neuroradiologist
 * on call, who sees it on their worklist with its countdown, validates the protocol, claims it,
 * opens the images in the viewer, types the report (saved as typed) and signs it, all in
 * Debian's Chromium; the ORU^R01 reaches the clinic's RIS (a real MLLP listener); a second
 * reading is asked and answered in the portal; and the administrators' activity page counts
 * exactly those two acts. Screenshots under .tmp/tele-night-screenshots, checked non-blank.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { dcmtk, haveDcmtk } from './support/dcmtk.ts';
import { CookieJar, loginLocal, request } from './support/browser-session.ts';
import { Browsers, haveChromium, Screenshots } from './support/chromium.ts';
import { RisListener } from './support/ris-listener.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { Tags } from '../src/dicom/dataset.ts';
import { newUID } from '../src/dicom/uids.ts';
import { findSegment, valueOf } from '../src/hl7/message.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const portalDir = path.join(repo, 'web', 'dist');
const engine = testDatabases().at(-1)!;
const password = 'un mot de passe assez long pour les tests';

describe(`a night of teleradiology, portal and DIMSE (${engine.name})`, {
  skip: (!haveChromium && 'Debian\'s chromium is not installed (.ci/run installs it)') || (!haveDcmtk && 'DCMTK is not installed (apt-get install dcmtk)'),
}, () => {
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  let screenshots: Screenshots;
  const browsers = new Browsers();
  const ris = new RisListener();
  const work = mkdtempSync(path.join(tmpdir(), 'atrium-night-'));
  const pageErrors: string[] = [];
  const StudyInstanceUID = newUID();
  const priorStudy = newUID();
  const nightStart = new Date();
  let requestId: number;
  let admin: { jar: CookieJar; csrf: string };

  /** Files of a series for storescu: `slices` CT images of 64 x 64 with the clinic's accession number. */
  const writeSeries = (o: { StudyInstanceUID: string; Modality: string; slices: number; AccessionNumber?: string }): string[] => {
    const SeriesInstanceUID = newUID();
    return Array.from({ length: o.slices }, (_, i) => {
      const file = syntheticInstance({
        PatientID: 'SUD-4711', PatientName: 'Garnier^Louis', PatientBirthDate: '19480203', PatientSex: 'M', Modality: o.Modality,
        StudyInstanceUID: o.StudyInstanceUID, SeriesInstanceUID, StudyDate: '20261123', Rows: 64, Columns: 64,
        ...(o.AccessionNumber ? { extra: [{ tag: Tags.AccessionNumber, vr: 'SH', value: Buffer.from(o.AccessionNumber) }] } : {}),
      }).file;
      const p = path.join(work, `${o.StudyInstanceUID}-${i}.dcm`);
      writeFileSync(p, file);
      return p;
    });
  };
  const storescu = async (files: string[]) => {
    const r = await dcmtk('storescu', ['-aet', 'SUD-CT', '-aec', 'ATRIUM', '127.0.0.1', String(atrium.dimse!.port), ...files]);
    assert.equal(r.code, 0, r.output);
  };

  /** A fresh Chromium, logged in with a local account. */
  const loggedIn = async (login: string, name: RegExp): Promise<Page> => {
    const page = await browsers.open();
    page.on('pageerror', (e) => pageErrors.push(`${login}: ${String(e)}`));
    page.on('response', (r) => {
      if (r.status() >= 400 && !(r.status() === 401 && r.url().endsWith('/auth/me'))
        // A report not yet begun is a 404 the editor expects.
        && !(r.status() === 404 && /\/report$/.test(new URL(r.url()).pathname))) pageErrors.push(`${login}: ${r.status()} ${r.url()}`);
    });
    await page.goto(`${base}/app/tele`);
    await page.locator('input[name=login]').fill(login);
    await page.locator('input[name=password]').fill(password);
    await page.getByRole('button', { name: 'Se connecter', exact: true }).click();
    await page.getByTestId('who').waitFor();
    assert.match(await page.getByTestId('who').innerText(), name);
    return page;
  };

  before(async () => {
    if (!existsSync(path.join(portalDir, 'index.html'))) execFileSync('npm', ['run', 'build:web'], { cwd: repo, stdio: 'inherit' });
    screenshots = new Screenshots(path.join(repo, '.tmp', 'tele-night-screenshots'));
    const risPort = await ris.listen();
    const db = await engine.open();
    cleanup = db.cleanup;
    atrium = await startAtrium({
      index: db.config, dimse: true, teleradiology: true,
      configure: (c) => {
        c.http.portalDir = portalDir;
        c.peers = [{ aeTitle: 'SUD-CT', site: 'CLIN-SUD', may: { store: true, query: false, retrieve: false } }];
        c.teleradiology.sites = [{ site: 'CLIN-SUD', oru: { host: '127.0.0.1', port: risPort, application: 'RIS', facility: 'CLIN-SUD', characterSet: 'UNICODE UTF-8' } }];
        c.teleradiology.delivery = { ackTimeoutMs: 2_000, retryBaseMs: 10, maxAttempts: 5, pollMs: 100 };
      },
    });
    base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    const by = { actor: 'test', via: 'cli' as const };
    await addUser(atrium.archive, { login: 'urgences.sud', displayName: 'Dr Urgences Sud', roles: ['referring-physician'], sites: ['CLIN-SUD'], password }, by);
    await addUser(atrium.archive, { login: 'neuro', displayName: 'Dr Nadia Neuro', roles: ['radiologist'], sites: ['CHU-NORD'], password, rpps: '10001111111' }, by);
    await addUser(atrium.archive, { login: 'expert', displayName: 'Pr Paul Expert', roles: ['radiologist'], sites: ['CHU-NORD'], password, rpps: '10003333333' }, by);
    await addUser(atrium.archive, { login: 'admin', displayName: 'Admin Territoire', roles: ['territory-admin'], sites: [], password }, by);
    admin = await loginLocal(base, 'admin', password);
    // Tonight's rota: the neuroradiologist on call until morning.
    const shift = await request(admin.jar, `${base}/api/teleradiology/oncall`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': admin.csrf },
      body: JSON.stringify({ login: 'neuro', specialty: 'neuro', startsAt: new Date(Date.now() - 60_000).toISOString(), endsAt: new Date(Date.now() + 12 * 3_600_000).toISOString() }),
    });
    assert.equal(shift.status, 201, await shift.text());
    // The territory's template for stroke CTs: the ASPECTS score is required before signing.
    const template = await request(admin.jar, `${base}/api/teleradiology/templates/ct-avc`, {
      method: 'PUT', headers: { 'content-type': 'application/json', 'x-csrf-token': admin.csrf },
      body: JSON.stringify({ name: 'Scanner AVC', modality: 'CT', bodyPart: 'HEAD', fields: [{ name: 'ASPECTS', label: 'Score ASPECTS', required: true }], findings: 'Parenchyme :\nVaisseaux :' }),
    });
    assert.equal(template.status, 200, await template.text());
    // The patient's earlier exam at the clinic: the patient is known there before tonight's request.
    await storescu(writeSeries({ StudyInstanceUID: priorStudy, Modality: 'CR', slices: 1 }));
  });

  after(async () => {
    await browsers.close();
    await atrium?.close();
    await ris.close().catch(() => {});
    await cleanup?.();
    rmSync(work, { recursive: true, force: true });
  });

  it('the clinic sends a stroke request from the portal, and the CT by DIMSE', async () => {
    const page = await loggedIn('urgences.sud', /Urgences Sud/);
    await page.getByTestId('tele-new').click();
    const form = page.getByTestId('request-form');
    await form.waitFor();
    // A request without its clinical question is not sent (the charter's mandatory fields).
    await form.locator('input[name=PatientID]').fill('SUD-4711');
    await form.locator('input[name=AccessionNumber]').fill('AVC-2311');
    await form.locator('select[name=urgency]').selectOption('stroke');
    await form.locator('input[name=modality]').fill('CT');
    await form.locator('input[name=bodyPart]').fill('HEAD');
    await form.locator('input[name=specialty]').fill('neuro');
    await form.locator('input[name=physician]').fill('Dr Urgences Sud');
    await form.locator('input[name=rpps]').fill('10002222222');
    await form.locator('textarea[name=clinicalContext]').fill('Hémiplégie droite et aphasie depuis 45 min, sous anticoagulant');
    await form.locator('textarea[name=proposedProtocol]').fill('Scanner sans injection + angioscanner des troncs supra-aortiques');
    await screenshots.shootNonBlank(page, '1-request-form');
    assert.equal(await form.locator('textarea[name=clinicalQuestion]').evaluate((e) => (e as HTMLTextAreaElement).validity.valueMissing), true);
    await form.locator('textarea[name=clinicalQuestion]').fill('Occlusion proximale ? Thrombectomie ?');
    await form.getByRole('button', { name: 'Envoyer la demande' }).click();
    await page.waitForURL(/\/app\/tele\/request\?id=\d+$/);
    requestId = Number(new URL(page.url()).searchParams.get('id'));
    await page.getByTestId('request-status').waitFor();
    assert.equal(await page.getByTestId('request-status').innerText(), 'Protocole à valider');
    assert.match(await page.getByTestId('tele-request').innerText(), /Alerte AVC[\s\S]*neuro/);

    await storescu(writeSeries({ StudyInstanceUID, Modality: 'CT', slices: 8, AccessionNumber: 'AVC-2311' }));
    // The site's own list shows the request and its images once they met.
    await page.getByTestId('tele-worklist').click();
    await page.getByTestId(`request-${requestId}`).getByText('reçues').waitFor({ timeout: 60_000 });
    assert.match(await page.getByTestId(`request-${requestId}`).innerText(), /Neuro|neuro/);
    await screenshots.shootNonBlank(page, '2-site-requests');
  });

  it('the neuroradiologist on call sees it on their worklist with its countdown, validates the protocol, claims it and opens the images', async () => {
    const page = await loggedIn('neuro', /Nadia Neuro/);
    await page.getByTestId('tele-worklist').click();
    await page.getByLabel('Mes demandes').check();
    const row = page.getByTestId(`request-${requestId}`);
    await row.waitFor();
    assert.match(await row.innerText(), /Alerte AVC[\s\S]*CLIN-SUD[\s\S]*CT[\s\S]*HEAD[\s\S]*reçues[\s\S]*neuro/);
    assert.match(await row.getByTestId('countdown').innerText(), /^\d\d:\d\d$|^\d+ h \d\d:\d\d$/);
    await screenshots.shootNonBlank(page, '3-worklist');
    // The same worklist in English, for a visiting radiologist.
    await page.getByRole('button', { name: 'English' }).click();
    await page.getByRole('heading', { name: /^Worklist/ }).waitFor();
    assert.match(await row.innerText(), /Stroke alert[\s\S]*Protocol to validate[\s\S]*arrived/);
    await screenshots.shootNonBlank(page, '3-worklist-en');
    await page.getByRole('button', { name: 'Français' }).click();
    await page.getByRole('heading', { name: /^Liste de travail/ }).waitFor();

    await row.getByRole('button', { name: 'Ouvrir' }).click();
    await page.getByTestId('validate-protocol').click();
    await page.getByTestId('protocol').waitFor();
    assert.match(await page.getByTestId('protocol').innerText(), /angioscanner[\s\S]*validé[\s\S]*neuro/);
    await page.getByTestId('claim').click();
    await page.getByTestId('release').waitFor();
    assert.equal(await page.getByTestId('request-status').innerText(), 'À interpréter');
    await screenshots.shootNonBlank(page, '4-request');

    await page.getByTestId('open-images').click();
    await page.waitForURL(`${base}/app/viewer?StudyInstanceUID=${StudyInstanceUID}`);
    await screenshots.renderedViewport(page, '5-viewer', page.getByTestId('viewport-0'));
    await page.goBack();
    await page.getByTestId('report').waitFor();
  });

  it('the report is saved as typed, signed preliminary then final in the portal, and amended; each ORU^R01 reaches the clinic\'s RIS', async () => {
    const page = await loggedIn('neuro', /Nadia Neuro/);
    await page.goto(`${base}/app/tele/request?id=${requestId}`);
    const report = page.getByTestId('report');
    await report.locator('select[name=template]').selectOption('ct-avc');
    assert.equal(await report.locator('textarea[name=findings]').inputValue(), 'Parenchyme :\nVaisseaux :', 'the template\'s text to start from');
    await report.locator('textarea[name=findings]').fill('Hypodensité débutante du territoire sylvien gauche. Thrombus de l\'artère cérébrale moyenne gauche (M1).');
    await report.locator('textarea[name=conclusion]').pressSequentially('Occlusion M1 gauche');
    await page.getByTestId('save-state').getByText('Brouillon enregistré').waitFor();
    // Not signed while the template's required field is empty.
    await page.getByTestId('sign-preliminary').click();
    await report.getByRole('alert').waitFor();
    assert.match(await report.getByRole('alert').innerText(), /ASPECTS/);
    assert.deepEqual(pageErrors.splice(0), [`neuro: 422 ${base}/api/teleradiology/requests/${requestId}/report/sign`], 'that refusal, and nothing else, failed so far');
    await report.locator('input[name=field-ASPECTS]').fill('8');
    await page.getByTestId('save-state').getByText('Brouillon enregistré').waitFor();
    // Saved on the server as typed, before any signature.
    const draft = (await (await request(admin.jar, `${base}/api/teleradiology/requests/${requestId}/report`)).json()) as { status: string; conclusion: string; fields: Record<string, string> };
    assert.deepEqual([draft.status, draft.conclusion, draft.fields], ['draft', 'Occlusion M1 gauche', { ASPECTS: '8' }]);
    await screenshots.shootNonBlank(page, '6-report-draft');

    // A preliminary report first (the emergency physician can act on it), then the final one.
    await page.getByTestId('sign-preliminary').click();
    await page.getByTestId('report-status').getByText('préliminaire').waitFor();
    assert.equal(await page.getByTestId('request-status').innerText(), 'À interpréter');
    // A final signature is asked twice: cancelled, nothing is signed; confirmed, it is.
    await page.getByTestId('sign-final').click();
    await page.getByTestId('cancel-sign-final').click();
    assert.equal(await page.getByTestId('confirm-final').count(), 0);
    assert.equal(await page.getByTestId('report-status').innerText(), 'préliminaire');
    await page.getByTestId('sign-final').click();
    assert.match(await page.getByTestId('confirm-final').innerText(), /ne peut plus être modifié/);
    await page.getByTestId('confirm-sign-final').click();
    await page.getByTestId('report-status').getByText('définitif').waitFor();
    await page.getByTestId('request-status').getByText('Interprétée').waitFor();
    await screenshots.shootNonBlank(page, '7-report-signed');

    /** The ORU^R01 messages the RIS got, once there are `n` (each waits for its AA before the next). */
    const received = async (n: number) => {
      const deadline = Date.now() + 10_000;
      while (ris.received.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(ris.received.length, n, `${n} ORU^R01 at the RIS`);
      return ris.received;
    };
    const resultStatus = (i: number) => valueOf(findSegment(ris.received[i]!, 'OBR'), 25);
    await received(2);
    assert.deepEqual([resultStatus(0), resultStatus(1)], ['P', 'F'], 'the preliminary result, then the final one');
    const m = ris.received[1]!;
    assert.deepEqual([valueOf(findSegment(m, 'MSH'), 9, 1), valueOf(findSegment(m, 'MSH'), 9, 2)], ['ORU', 'R01']);
    assert.equal(valueOf(findSegment(m, 'OBR'), 2), `TELE-${requestId}`);
    const obx = m.segments.filter((s) => s.id === 'OBX');
    assert.equal(valueOf(obx[0]!, 5), StudyInstanceUID);
    assert.equal(valueOf(obx.at(-1)!, 5), 'Occlusion M1 gauche');
    assert.ok(obx.some((o) => valueOf(o, 3, 1) === 'ASPECTS' && valueOf(o, 5) === '8'), 'the template\'s field in the result');

    // After the final signature, an addendum only: the RIS gets it as a corrected result.
    await page.locator('textarea[name=addendum]').fill('Appel du neurologue de garde à 02:10 : transfert pour thrombectomie.');
    await page.getByTestId('add-addendum').click();
    await page.getByTestId('report-status').getByText('complété').waitFor();
    await page.locator('p.addendum').waitFor();
    await received(3);
    assert.equal(resultStatus(2), 'C');
  });

  it('a second reading is asked from the request and answered by the expert in the portal', async () => {
    const neuro = await loggedIn('neuro', /Nadia Neuro/);
    await neuro.goto(`${base}/app/tele/request?id=${requestId}`);
    const ask = neuro.getByTestId('second-reading-ask');
    await ask.locator('input[name=secondSpecialty]').fill('neuro-interventionnel');
    await ask.locator('input[name=expert]').fill('expert');
    await ask.locator('textarea[name=question]').fill('Indication de thrombectomie ?');
    await neuro.getByTestId('ask-second-reading').click();
    await neuro.getByTestId('second-reading-asked').waitFor();

    const expert = await loggedIn('expert', /Paul Expert/);
    await expert.getByTestId('tele-second-readings').click();
    const asked = expert.locator('article.second-reading');
    await asked.first().waitFor();
    assert.equal(await asked.count(), 1);
    assert.match(await asked.first().innerText(), /Indication de thrombectomie/);
    await asked.first().locator('textarea[name=conclusion]').fill('Thrombectomie indiquée, transfert immédiat.');
    await asked.first().locator('select[name=agreement]').selectOption('agree');
    await screenshots.shootNonBlank(expert, '8-second-reading');
    await asked.first().getByTestId('answer').click();
    await asked.first().getByTestId('answered').waitFor();
    assert.match(await asked.first().getByTestId('answered').innerText(), /d'accord[\s\S]*Thrombectomie indiquée/);
  });

  it('the activity page counts exactly tonight\'s two acts, and its CSV says the same', async () => {
    const page = await loggedIn('admin', /Admin Territoire/);
    await page.getByTestId('tele-activity').click();
    await page.getByTestId('activity').waitFor();
    assert.equal(await page.getByTestId('activity-total').innerText(), '2');
    assert.match(await page.getByTestId('activity-primary-reading').innerText(), /Interprétation[\s\S]*neuro[\s\S]*CLIN-SUD[\s\S]*Alerte AVC\s+1/);
    assert.match(await page.getByTestId('activity-second-reading').innerText(), /Télé-expertise[\s\S]*neuro-interventionnel[\s\S]*\s1\s/);
    await screenshots.shootNonBlank(page, '9-activity');
    const from = new Date(nightStart.getTime() - 3_600_000).toISOString();
    const to = new Date(Date.now() + 3_600_000).toISOString();
    const csv = await (await request(admin.jar, `${base}${await page.getByTestId('activity-csv').getAttribute('href')}`)).text();
    const api = (await (await request(admin.jar, `${base}/api/teleradiology/activity?${new URLSearchParams({ from, to })}`)).json()) as Array<{ act: string; count: number }>;
    assert.deepEqual(api.map((r) => [r.act, r.count]).sort(), [['primary-reading', 1], ['second-reading', 1]]);
    assert.equal(csv.trim().split('\n').length, 3, csv);
    // The annual report, as a PDF with its charts.
    const pdf = await request(admin.jar, `${base}${await page.getByTestId('activity-pdf').getAttribute('href')}`);
    assert.equal(pdf.status, 200);
    assert.equal(pdf.headers.get('content-type'), 'application/pdf');
    const bytes = Buffer.from(await pdf.arrayBuffer());
    assert.equal(bytes.subarray(0, 5).toString('latin1'), '%PDF-');
    assert.match(pdf.headers.get('content-disposition') ?? '', new RegExp(`teleradiologie-activite-${new Date().getUTCFullYear()}\\.pdf`));
    assert.match(bytes.subarray(-8).toString('latin1'), /%%EOF/);
    assert.deepEqual(pageErrors, []);
  });
});
