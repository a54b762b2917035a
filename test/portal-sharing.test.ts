/**
 * Sharing screens in a real browser (Debian's Chromium): a radiologist shares a patient's
 * exams with a professional from the timeline, creates a share link with a PIN and an
 * expiry (its QR code shown), the link opens in a second browser with its PIN only, then is
 * revoked from the list and refuses. In French and in English; each act audited.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { Browsers, chromiumPath, Screenshots } from './support/chromium.ts';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { loginLocal, request } from './support/browser-session.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const portalDir = process.env.ATRIUM_TEST_PORTAL_DIR ?? path.join(repo, 'web', 'dist');
const engine = testDatabases().at(-1)!;
const password = 'un mot de passe assez long pour les tests';

describe(`the sharing screens in Chromium (${engine.name})`, { skip: !existsSync(chromiumPath) && 'Debian\'s chromium is not installed (.ci/run installs it)' }, () => {
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  const browsers = new Browsers();
  const screenshots = new Screenshots(path.join(repo, '.tmp', 'portal-sharing-screenshots'));
  const exam = syntheticInstance({ PatientID: 'PS-1', PatientName: 'PARTAGE^CAMILLE', Rows: 8, Columns: 8 });

  const login = async (page: Page, who: string) => {
    await page.goto(`${base}/app/`);
    await page.locator('input[name=login]').fill(who);
    await page.locator('input[name=password]').fill(password);
    await page.locator('input[name=password]').press('Enter');
    await page.getByTestId('who').waitFor();
  };
  const audited = async (action: string, actor: string) => (await atrium.archive.index.sql.all<{ details: string }>(
    'SELECT details FROM audit_events WHERE action = ? AND actor = ? ORDER BY id', [action, actor])).map((r) => JSON.parse(r.details) as Record<string, unknown>);

  before(async () => {
    if (!existsSync(path.join(portalDir, 'index.html'))) execFileSync('npm', ['run', 'build:web'], { cwd: repo, stdio: 'inherit' });
    const db = await engine.open();
    cleanup = db.cleanup;
    atrium = await startAtrium({ index: db.config, configure: (c) => { c.http.portalDir = portalDir; } });
    base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [exam.file])).status, 200);
    const by = { actor: 'test', via: 'cli' as const };
    await addUser(atrium.archive, { login: 'rad.nord', displayName: 'Dr Nord', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
    await addUser(atrium.archive, { login: 'dr.ville', displayName: 'Dr Ville', roles: ['referring-physician'], sites: [], password }, by);
    const nord = atrium.archive.sites.get('CHU-NORD')!;
    const patientId = (await atrium.archive.index.patientRecordId(nord.id, nord.issuerOfPatientID, 'PS-1'))!;
    await addUser(atrium.archive, { login: 'camille', displayName: 'Camille Partage', roles: ['patient'], sites: [], patientId, password }, by);
    console.log(`screenshots: ${screenshots.dir}`);
  });

  after(async () => {
    await browsers.close();
    await atrium?.close();
    await cleanup?.();
  });

  it('shares with a professional from the timeline, makes a link with a PIN and an expiry that opens elsewhere with its PIN, then revokes it (in French)', async () => {
    const colleague = await loginLocal(base, 'dr.ville', password);
    const metadata = () => request(colleague.jar, `${base}/dicom-web/studies/${exam.uids.study}/metadata`);
    assert.equal((await metadata()).status, 404, 'not shared yet');

    const page = await browsers.open({ locale: 'fr-FR' });
    await login(page, 'rad.nord');
    await page.goto(`${base}/app/patients?site=CHU-NORD&PatientID=PS-1`);
    await page.getByTestId('open-sharing').click();
    assert.match(await page.getByTestId('sharing-target').innerText(), /les examens du patient PS-1 \(CHU-NORD\)/);

    // With a professional, for 7 days.
    const pro = page.getByTestId('share-with-pro');
    await pro.locator('input[name=toUser]').fill('dr.ville');
    await pro.locator('select[name=grantHours]').selectOption('168');
    await pro.locator('button[type=submit]').click();
    await page.getByTestId('grant-created').waitFor();
    assert.match(await page.getByTestId('grant-created').innerText(), /Partagé avec dr\.ville/);
    assert.equal((await metadata()).status, 200, 'the colleague now opens the exam');
    // An unknown professional is said so.
    await pro.locator('input[name=toUser]').fill('personne');
    await pro.locator('button[type=submit]').click();
    await page.getByTestId('sharing-error').waitFor();
    assert.match(await page.getByTestId('sharing-error').innerText(), /Aucun professionnel actif n'a l'identifiant personne/);

    // By a link, 3 days, behind a PIN.
    const form = page.getByTestId('share-link-form');
    await form.locator('select[name=linkHours]').selectOption('72');
    await form.locator('input[name=pin]').fill('482913');
    await form.locator('button[type=submit]').click();
    const createdBox = page.getByTestId('link-created');
    await createdBox.waitFor();
    assert.match(await createdBox.innerText(), /Lien créé/);
    const url = await page.getByTestId('link-url').inputValue();
    assert.match(url, new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/share#[A-Za-z0-9_-]{43}$`));
    const linkId = Number(await createdBox.getAttribute('data-link'));
    // The QR code is an image the browser drew (an SVG made by the server).
    const qr = page.getByTestId('link-qr');
    assert.ok(await qr.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0), 'the QR code image loaded');
    const stored = (await atrium.archive.index.sql.get<{ expires_at: string; created_at: string; pin_hash: string | null }>('SELECT expires_at, created_at, pin_hash FROM share_links WHERE id = ?', [linkId]))!;
    // Three days from its making (the expiry is taken a few milliseconds before the row's creation time).
    assert.ok(Math.abs(Date.parse(stored.expires_at) - Date.parse(stored.created_at) - 72 * 3_600_000) < 60_000, `${stored.created_at} → ${stored.expires_at}`);
    assert.ok(stored.pin_hash !== null && !stored.pin_hash.includes('482913'));
    await page.getByTestId(`link-${linkId}`).waitFor();
    assert.equal(await page.getByTestId(`link-${linkId}`).getAttribute('data-state'), 'active');
    await screenshots.shootNonBlank(page, 'sharing-fr');

    // The recipient, in another browser: the PIN is asked, a wrong one refused, the right one opens.
    const recipient = await browsers.open({ locale: 'fr-FR' });
    await recipient.goto(url);
    await recipient.locator('input[name=pin]').fill('000000');
    await recipient.locator('input[name=pin]').press('Enter');
    await recipient.getByRole('alert').waitFor();
    assert.match(await recipient.getByRole('alert').innerText(), /Code incorrect/);
    await recipient.locator('input[name=pin]').fill('482913');
    await recipient.locator('input[name=pin]').press('Enter');
    await recipient.waitForURL((u) => !u.pathname.endsWith('/share'));
    const asRecipient = () => recipient.evaluate(async (uid: string) => (await fetch(`/dicom-web/studies/${uid}/metadata`, { headers: { accept: 'application/dicom+json' } })).status, exam.uids.study);
    assert.equal(await asRecipient(), 200, 'the link opens the shared exam');
    await screenshots.shootNonBlank(recipient, 'share-link-opened');

    // Revoked from the list: the open session and the link itself refuse from then on.
    await page.getByTestId(`link-${linkId}`).getByTestId('revoke-link').click();
    await page.getByTestId('sharing-notice').waitFor();
    assert.match(await page.getByTestId('sharing-notice').innerText(), /Lien révoqué/);
    await page.locator(`[data-testid="link-${linkId}"][data-state="revoked"]`).waitFor();
    assert.equal(await asRecipient(), 401);
    const again = await browsers.open({ locale: 'fr-FR' });
    // A revoked link is simply gone: no PIN is asked.
    await again.goto(url);
    await again.getByRole('alert').waitFor();
    assert.equal(await again.locator('input[name=pin]').count(), 0);
    assert.match(await again.getByRole('alert').innerText(), /n'est plus valable/);

    // Withdrawing the professional's share.
    await page.getByTestId('revoke-grant').click();
    await page.locator('[data-testid=sharing-notice]', { hasText: 'Partage retiré' }).waitFor();
    assert.equal((await metadata()).status, 404, 'the colleague no longer opens the exam');

    const shares = await audited('share', 'rad.nord');
    assert.deepEqual(shares.map((d) => d.toUser ?? (d.pin === true ? 'link with PIN' : 'link')), ['dr.ville', 'link with PIN']);
    assert.equal((await audited('share-revoke', 'rad.nord')).length, 2);
    const openings = await atrium.archive.index.sql.all<{ outcome: string }>(`SELECT outcome FROM audit_events WHERE action = 'share-open' ORDER BY id`);
    // Asked for its PIN, a wrong PIN, the right one; then revoked.
    assert.deepEqual(openings.map((o) => o.outcome), ['refused', 'refused', 'success', 'refused']);
  });

  it('makes and revokes a link in English', async () => {
    const page = await browsers.open({ locale: 'en-US' });
    await login(page, 'rad.nord');
    await page.goto(`${base}/app/patients?site=CHU-NORD&PatientID=PS-1`);
    await page.getByTestId('open-sharing').click();
    assert.equal(await page.locator('h1').innerText(), 'Share exams');
    const form = page.getByTestId('share-link-form');
    await form.locator('select[name=linkHours]').selectOption('24');
    await form.locator('button[type=submit]').click();
    await page.getByTestId('link-created').waitFor();
    assert.match(await page.getByTestId('link-created').innerText(), /Link created/);
    const linkId = Number(await page.getByTestId('link-created').getAttribute('data-link'));
    const url = await page.getByTestId('link-url').inputValue();
    // No PIN: the link opens straight away, until revoked.
    const opened = await fetch(`${base}/share/open`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: url.split('#')[1] }) });
    assert.equal(opened.status, 200);
    await screenshots.shootNonBlank(page, 'sharing-en');
    await page.getByTestId(`link-${linkId}`).getByTestId('revoke-link').click();
    await page.locator('[data-testid=sharing-notice]', { hasText: 'Link revoked' }).waitFor();
    await page.locator(`[data-testid="link-${linkId}"][data-state="revoked"]`).waitFor();
    const refused = await fetch(`${base}/share/open`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: url.split('#')[1] }) });
    assert.equal(refused.status, 404);
  });

  it('lets a patient share one of their exams by a link instead of a CD (French, then English)', async () => {
    const page = await browsers.open({ locale: 'fr-FR' });
    await login(page, 'camille');
    await page.getByTestId('nav-sharing').click();
    const pick = page.locator('select[name=study]');
    await pick.locator('option').nth(1).waitFor({ state: 'attached' });
    assert.match(await page.locator('label', { has: pick }).innerText(), /Examen à partager/);
    await pick.selectOption(exam.uids.study);
    assert.match(await page.getByTestId('sharing-target').innerText(), new RegExp(`l'examen ${exam.uids.study.replaceAll('.', '\\.')}`));
    const form = page.getByTestId('share-link-form');
    await form.locator('input[name=pin]').fill('2468');
    await form.locator('button[type=submit]').click();
    await page.getByTestId('link-created').waitFor();
    const url = await page.getByTestId('link-url').inputValue();
    await screenshots.shootNonBlank(page, 'patient-sharing-fr');
    await page.getByRole('button', { name: 'English' }).click();
    assert.equal(await page.locator('h1').innerText(), 'Share exams');
    assert.match(await page.getByTestId('link-created').innerText(), /Link created/);
    // The recipient opens the exam with the PIN, straight on the viewer.
    const opened = await fetch(`${base}/share/open`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: url.split('#')[1], pin: '2468' }) });
    assert.equal(opened.status, 200);
    assert.equal(((await opened.json()) as { link: { StudyInstanceUID?: string } }).link.StudyInstanceUID, exam.uids.study);
    assert.deepEqual((await audited('share', 'camille')).map((d) => d.pin), [true]);
  });
});
