/**
 * Break-the-glass and the administrators' screens in a real browser (Debian's Chromium): a
 * radiologist declares an emergency access with its reason from the timeline of a patient of
 * another site, that site's administrator reviews it, the patient sees who looked at their
 * images (the radiologist by name and site); administrators create and disable users, add a
 * DICOM peer (live at once, kept in the index) and remove it, edit report templates. French and English; every
 * change audited; a site administrator refused outside their site.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import type { Page } from 'playwright-core';
import { Browsers, chromiumPath, Screenshots } from './support/chromium.ts';
import { startAtrium, testSites, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { loginLocal, request } from './support/browser-session.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { dcmtk, haveDcmtk } from './support/dcmtk.ts';
import { addUser } from '../src/cli/users.ts';
import { openReview } from '../src/patients/identities.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const portalDir = process.env.ATRIUM_TEST_PORTAL_DIR ?? path.join(repo, 'web', 'dist');
const engine = testDatabases().at(-1)!;
const password = 'un mot de passe assez long pour les tests';

describe(`break-the-glass and the administrators' screens in Chromium (${engine.name})`, { skip: !existsSync(chromiumPath) && 'Debian\'s chromium is not installed (.ci/run installs it)' }, () => {
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  const browsers = new Browsers();
  const screenshots = new Screenshots(path.join(repo, '.tmp', 'portal-admin-screenshots'));
  const configDir = mkdtempSync(path.join(tmpdir(), 'atrium-admin-config-'));
  const configFile = path.join(configDir, 'atrium.yaml');
  const southExam = syntheticInstance({ PatientID: 'PA-9', PatientName: 'URGENCE^ALEX', Rows: 8, Columns: 8 });

  const login = async (page: Page, who: string) => {
    await page.goto(`${base}/app/`);
    await page.locator('input[name=login]').fill(who);
    await page.locator('input[name=password]').fill(password);
    await page.locator('input[name=password]').press('Enter');
    await page.getByTestId('who').waitFor();
  };
  const audited = async (action: string, actor: string) => (await atrium.archive.index.sql.all<{ details: string }>(
    'SELECT details FROM audit_events WHERE action = ? AND actor = ? ORDER BY id', [action, actor])).map((r) => JSON.parse(r.details) as Record<string, unknown>);
  const toEnglish = async (page: Page) => {
    await page.getByRole('button', { name: 'English' }).click();
    await page.getByRole('button', { name: 'Français' }).waitFor();
  };

  before(async () => {
    if (!existsSync(path.join(portalDir, 'index.html'))) execFileSync('npm', ['run', 'build:web'], { cwd: repo, stdio: 'inherit' });
    // A configuration file as an operator keeps one, with a comment that must survive the peer's addition.
    writeFileSync(configFile, `# the territory's sites\n${YAML.stringify({ sites: testSites })}peers:\n  - aeTitle: PACSNORD\n    site: CHU-NORD\n    may: { store: true, query: true, retrieve: true }\n`);
    const db = await engine.open();
    cleanup = db.cleanup;
    atrium = await startAtrium({
      index: db.config,
      dimse: true,
      configure: (c) => {
        c.http.portalDir = portalDir;
        c.configFile = configFile;
        c.peers = [
          { aeTitle: 'PACSNORD', site: 'CHU-NORD', may: { store: true, query: true, retrieve: true } },
          { aeTitle: 'PACSSUD', site: 'CLIN-SUD', may: { store: true, query: true, retrieve: true } },
        ];
      },
    });
    base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [southExam.file])).status, 200);
    const by = { actor: 'test', via: 'cli' as const };
    const sud = atrium.archive.sites.get('CLIN-SUD')!;
    const patientId = (await atrium.archive.index.patientRecordId(sud.id, sud.issuerOfPatientID, 'PA-9'))!;
    await addUser(atrium.archive, { login: 'rad.nord', displayName: 'Dr Radiologue Nord', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
    await addUser(atrium.archive, { login: 'admin.nord', displayName: 'Admin Nord', roles: ['site-admin'], sites: ['CHU-NORD'], password }, by);
    await addUser(atrium.archive, { login: 'admin.sud', displayName: 'Admin Sud', roles: ['site-admin'], sites: ['CLIN-SUD'], password }, by);
    await addUser(atrium.archive, { login: 'rad.sud', displayName: 'Dr Sud', roles: ['radiologist'], sites: ['CLIN-SUD'], password }, by);
    await addUser(atrium.archive, { login: 'terr', displayName: 'Admin Territoire', roles: ['territory-admin'], sites: [], password }, by);
    await addUser(atrium.archive, { login: 'alex', displayName: 'Alex Urgence', roles: ['patient'], sites: [], patientId, password }, by);
    console.log(`screenshots: ${screenshots.dir}`);
  });

  after(async () => {
    await browsers.close();
    await atrium?.close();
    await cleanup?.();
    rmSync(configDir, { recursive: true, force: true });
  });

  it('breaks the glass with a typed reason from the timeline (French), then the patient\'s site administrator reviews it (English)', async () => {
    const page = await browsers.open({ locale: 'fr-FR' });
    await login(page, 'rad.nord');
    await page.goto(`${base}/app/patients?site=CLIN-SUD&PatientID=PA-9`);
    // Not theirs: the record does not open, the emergency access is offered.
    await page.getByTestId('open-emergency').click();
    assert.match(await page.locator('h1').innerText(), /Accès d'urgence \(bris de glace\)/);
    const form = page.getByTestId('emergency-form');
    assert.equal(await form.locator('input[name=site]').inputValue(), 'CLIN-SUD');
    await form.locator('textarea[name=reason]').fill('Patient inconscient aux urgences du CHU, antériorités nécessaires');
    await form.locator('button[type=submit]').click();
    await page.getByTestId('emergency-granted').waitFor();
    assert.match(await page.getByTestId('emergency-granted').innerText(), /Accès d'urgence accordé jusqu'au/);
    await screenshots.shootNonBlank(page, 'emergency-fr');
    await page.getByTestId('emergency-open').click();
    await page.locator('h1', { hasText: 'PA-9' }).waitFor();
    const grant = (await atrium.archive.index.sql.get<{ id: number; reason: string }>(`SELECT id, reason FROM access_grants WHERE kind = 'emergency'`))!;
    assert.equal(grant.reason, 'Patient inconscient aux urgences du CHU, antériorités nécessaires');
    const declared = await atrium.archive.index.sql.get<{ reason: string }>(`SELECT reason FROM audit_events WHERE action = 'emergency-access' AND actor = 'rad.nord'`);
    assert.equal(declared?.reason, grant.reason);

    // Another site's administrator does not see it; the patient's site's does, and reviews it.
    const nord = await loginLocal(base, 'admin.nord', password);
    const seenByNord = (await (await request(nord.jar, `${base}/api/emergency-access`)).json()) as { accesses: unknown[] };
    assert.deepEqual(seenByNord.accesses, []);
    const admin = await browsers.open({ locale: 'en-US' });
    await login(admin, 'admin.sud');
    await admin.getByTestId('nav-emergency-reviews').click();
    const row = admin.getByTestId(`emergency-${grant.id}`);
    await row.waitFor();
    assert.match(await row.innerText(), /rad\.nord.*CLIN-SUD PA-9.*Patient inconscient/s);
    assert.equal(await admin.locator('h1').innerText(), 'Emergency accesses to review');
    await row.getByTestId('mark-reviewed').click();
    await admin.locator(`[data-testid="emergency-${grant.id}"][data-reviewed="yes"]`).waitFor();
    assert.match(await row.innerText(), /reviewed by admin\.sud/);
    await screenshots.shootNonBlank(admin, 'emergency-review-en');
    assert.equal((await atrium.archive.index.sql.get<{ reviewed_by: string }>('SELECT reviewed_by FROM access_grants WHERE id = ?', [grant.id]))!.reviewed_by, 'admin.sud');
    assert.deepEqual((await audited('emergency-access', 'admin.sud')).map((d) => d.reviewed), [true]);
  });

  it('shows the patient who looked at their images: the radiologist by name and site, in French and English', async () => {
    const page = await browsers.open({ locale: 'fr-FR' });
    await login(page, 'alex');
    await page.getByTestId('nav-who-looked').click();
    const table = page.getByTestId('who-looked');
    await table.waitFor();
    const emergency = table.locator('[data-action="emergency-access"]');
    assert.match(await emergency.innerText(), /Dr Radiologue Nord\s+CHU Nord\s+accès d'urgence\s+Patient inconscient/);
    // The timeline the radiologist then opened is there too, by name.
    assert.ok(await table.locator('[data-actor="rad.nord"]').count() >= 2);
    // Other patients are never named; the administrators' logins are not the patient's business either.
    assert.doesNotMatch(await table.innerText(), /rad\.nord|admin\.sud/);
    await screenshots.shootNonBlank(page, 'who-looked-fr');
    await toEnglish(page);
    assert.equal(await page.locator('h1').innerText(), 'Who looked at my images?');
    assert.match(await table.locator('[data-action="emergency-access"]').innerText(), /Dr Radiologue Nord\s+CHU Nord\s+emergency access/);
    await screenshots.shootNonBlank(page, 'who-looked-en');
  });

  it('lets the territory\'s administrators decide identity reviews, conflicts and link candidates, from records they can open (English, then French)', async () => {
    const northExam = syntheticInstance({ PatientID: 'PA-1', PatientName: 'URGENCE^ALEX', Rows: 4, Columns: 4 });
    assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [northExam.file])).status, 200);
    const recordOf = async (code: string, PatientID: string) => {
      const site = atrium.archive.sites.get(code)!;
      return (await atrium.archive.index.patientRecordId(site.id, site.issuerOfPatientID, PatientID))!;
    };
    const north = await recordOf('CHU-NORD', 'PA-1');
    const south = await recordOf('CLIN-SUD', 'PA-9');
    await atrium.archive.index.sql.transaction(async (tx) => {
      await openReview(tx, 'link-candidate', north, south, 'same name, birth date and sex at two sites');
      await openReview(tx, 'traits-conflict', south, null, 'two birth dates under one INS');
    });
    const reviewId = async (kind: string) => Number((await atrium.archive.index.sql.get<{ id: number }>(`SELECT id FROM identity_reviews WHERE kind = ? AND state = 'open'`, [kind]))!.id);
    const candidate = await reviewId('link-candidate');
    const conflict = await reviewId('traits-conflict');
    // A site's administrator sees their site's conflict, not a candidate that spans another site.
    const sud = await loginLocal(base, 'admin.sud', password);
    const seenBySud = (await (await request(sud.jar, `${base}/api/identity-reviews`)).json()) as { reviews: Array<{ id: number }> };
    assert.deepEqual(seenBySud.reviews.map((r) => r.id), [conflict]);

    const page = await browsers.open({ locale: 'en-US' });
    await login(page, 'terr');
    await page.getByTestId('nav-identities').click();
    const link = page.getByTestId(`review-${candidate}`);
    await link.waitFor();
    assert.match(await link.innerText(), /Proposed link.*CHU-NORD · PA-1.*Other record.*CLIN-SUD · PA-9/s);
    assert.match(await page.getByTestId(`review-${conflict}`).innerText(), /Conflicting traits under one INS/);
    // Each record opens on its timeline, to compare the two before deciding.
    await link.getByTestId('review-record').nth(1).click();
    await page.locator('h1', { hasText: 'PA-9' }).waitFor();
    await page.goBack();
    await link.getByTestId('accept').click();
    await page.getByTestId('review-notice').waitFor();
    assert.equal(await page.getByTestId('review-notice').innerText(), 'Decision recorded.');
    await page.getByTestId(`review-${candidate}`).waitFor({ state: 'detached' });
    await screenshots.shootNonBlank(page, 'identity-reviews-en');
    await page.getByRole('button', { name: 'Français' }).click();
    await page.getByTestId(`review-${conflict}`).getByTestId('reject').click();
    await page.locator('[data-testid=review-notice]', { hasText: 'Décision enregistrée.' }).waitFor();
    const decided = await atrium.archive.index.sql.all<{ id: number; state: string }>('SELECT id, state FROM identity_reviews WHERE id IN (?, ?) ORDER BY id', [candidate, conflict]);
    assert.deepEqual(decided.map((d) => [Number(d.id), d.state]), [[candidate, 'accepted'], [conflict, 'rejected']]);
    assert.deepEqual((await audited('identity-review', 'terr')).map((d) => [d.review, d.accepted]), [[candidate, true], [conflict, false]]);
  });

  it('lets a site administrator create and disable users of their site only (French, then English)', async () => {
    const page = await browsers.open({ locale: 'fr-FR' });
    await login(page, 'admin.nord');
    await page.getByTestId('nav-users').click();
    await page.getByTestId('user-rad.nord').waitFor();
    // Only their site's users.
    assert.equal(await page.getByTestId('user-rad.sud').count(), 0);
    const form = page.getByTestId('user-form');
    await form.locator('input[name=login]').fill('manip.nord');
    await form.locator('input[name=name]').fill('Manip Nord');
    await form.locator('input[name=role-radiologist]').uncheck();
    await form.locator('input[name=role-technologist]').check();
    assert.equal(await form.locator('input[name=role-territory-admin]').count(), 0, 'a site administrator is not offered the territory role');
    await form.locator('input[name=password]').fill('un autre mot de passe assez long');
    await form.locator('button[type=submit]').click();
    await page.locator('[data-testid=users-notice]', { hasText: 'Utilisateur manip.nord créé' }).waitFor();
    const created = page.getByTestId('user-manip.nord');
    await created.waitFor();
    assert.match(await created.innerText(), /manipulateur.*CHU-NORD.*actif/s);
    assert.equal((await loginLocal(base, 'manip.nord', 'un autre mot de passe assez long')).csrf.length > 0, true);

    // Another site: refused.
    await form.locator('input[name=login]').fill('intrus');
    await form.locator('input[name=name]').fill('Intrus');
    await form.locator('input[name=sites]').fill('CLIN-SUD');
    await form.locator('button[type=submit]').click();
    await page.getByTestId('users-error').waitFor();
    // The refusal in the user's language, not the server's English words.
    assert.equal(await page.getByTestId('users-error').innerText(), 'Vous n\'avez pas le droit de faire cela.');
    // A login already used: refused, said in French with the login.
    await form.locator('input[name=login]').fill('manip.nord');
    await form.locator('input[name=sites]').fill('CHU-NORD');
    await form.locator('button[type=submit]').click();
    await page.locator('[data-testid=users-error]', { hasText: 'L\'identifiant manip.nord est déjà pris' }).waitFor();
    assert.doesNotMatch(await page.getByTestId('users-error').innerText(), /taken/);
    // A password too short: said why, in French (the problem's code), not only "invalid request".
    await form.locator('input[name=login]').fill('manip.court');
    await form.locator('input[name=password]').fill('trop court');
    await form.locator('button[type=submit]').click();
    await page.locator('[data-testid=users-error]', { hasText: 'Le mot de passe doit compter au moins 12 caractères.' }).waitFor();
    await form.locator('input[name=password]').fill('');

    await created.getByTestId('disable').click();
    await page.locator('[data-testid="user-manip.nord"][data-state="disabled"]').waitFor();
    assert.match(await created.innerText(), /désactivé/);
    const refused = await fetch(`${base}/auth/local`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login: 'manip.nord', password: 'un autre mot de passe assez long' }) });
    assert.ok(refused.status === 401 || refused.status === 403, `a disabled account logs in: ${refused.status}`);
    await screenshots.shootNonBlank(page, 'users-fr');

    await toEnglish(page);
    assert.equal(await page.locator('h1').innerText(), 'Users');
    await created.getByTestId('enable').click();
    await page.locator('[data-testid=users-notice]', { hasText: 'User manip.nord changed.' }).waitFor();
    await page.locator('[data-testid="user-manip.nord"][data-state="active"]').waitFor();
    assert.match(await created.innerText(), /technologist.*active/s);

    // Another site's user, through the API: as if it did not exist.
    const nord = await loginLocal(base, 'admin.nord', password);
    const other = await request(nord.jar, `${base}/api/admin/users/rad.sud`, { method: 'PUT', headers: { 'x-csrf-token': nord.csrf, 'content-type': 'application/json' }, body: JSON.stringify({ disabled: true }) });
    assert.equal(other.status, 404);
    const asNord = (method: string, url: string, body: unknown) => request(nord.jar, `${base}${url}`, { method, headers: { 'x-csrf-token': nord.csrf, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal((await asNord('POST', '/api/admin/users', { login: 'chef', name: 'Chef', roles: ['territory-admin'], sites: ['CHU-NORD'] })).status, 403, 'a site administrator makes no territory administrator');
    assert.equal((await asNord('PUT', '/api/admin/users/manip.nord', { sites: ['CHU-NORD', 'CLIN-SUD'] })).status, 403, 'nor moves a user to another site');
    assert.equal((await asNord('PUT', '/api/admin/users/admin.nord', { disabled: true })).status, 400, 'nor disables their own account');
    // A taken login: the problem document says so by a stable code, its English detail kept.
    const taken = await asNord('POST', '/api/admin/users', { login: 'manip.nord', name: 'Autre', roles: ['technologist'], sites: ['CHU-NORD'] });
    assert.equal(taken.status, 400);
    const problem = await taken.json() as { code?: string; detail?: string; status?: number };
    assert.equal(problem.code, 'username-taken');
    assert.equal(problem.status, 400);
    assert.match(problem.detail!, /login manip\.nord is taken/);
    // A radiologist is no administrator: refused, and the refusal recorded.
    const rad = await loginLocal(base, 'rad.nord', password);
    assert.equal((await request(rad.jar, `${base}/api/admin/users`)).status, 403);
    assert.ok(await atrium.archive.index.sql.get(`SELECT id FROM audit_events WHERE action = 'user-admin' AND outcome = 'refused' AND actor = 'rad.nord'`), 'the refusal is audited');
    assert.deepEqual((await audited('user-admin', 'admin.nord')).map((d) => [d.operation, d.login]), [['add', 'manip.nord'], ['disable', 'manip.nord'], ['enable', 'manip.nord']]);
  });

  it('lets a site administrator add a DICOM peer of their site, live at once without touching the configuration file, and remove it (English, then French)', async () => {
    const page = await browsers.open({ locale: 'en-US' });
    await login(page, 'admin.nord');
    await page.getByTestId('nav-peers').click();
    await page.getByTestId('peer-PACSNORD').waitFor();
    assert.equal(await page.getByTestId('peer-PACSNORD').getAttribute('data-state'), 'file');
    assert.equal(await page.getByTestId('remove-peer-PACSNORD').count(), 0, 'a peer of the configuration file is not removed here');
    assert.equal(await page.getByTestId('peer-PACSSUD').count(), 0, 'another site\'s peer is not shown');
    const echo = () => dcmtk('echoscu', ['-aet', 'CT_NORD_2', '-aec', 'ATRIUM', '127.0.0.1', String(atrium.dimse!.port)]);
    if (haveDcmtk) assert.notEqual((await echo()).code, 0, 'not a peer yet: refused');
    const form = page.getByTestId('peer-form');
    await form.locator('input[name=aeTitle]').fill('CT_NORD_2');
    await form.locator('input[name=host]').fill('10.1.2.3');
    await form.locator('input[name=port]').fill('104');
    await form.locator('input[name=query]').check();
    await form.locator('button[type=submit]').click();
    await page.getByTestId('peers-notice').waitFor();
    assert.match(await page.getByTestId('peers-notice').innerText(), /Peer CT_NORD_2 added: live at once, on every Atrium node, without a restart/);
    await page.locator('[data-testid=peer-CT_NORD_2][data-state=api]').waitFor();
    // Kept in the index, for every node: the configuration file is not written.
    assert.doesNotMatch(readFileSync(configFile, 'utf8'), /CT_NORD_2/);
    if (haveDcmtk) {
      const accepted = await echo();
      assert.equal(accepted.code, 0, accepted.output);
    }
    await screenshots.shootNonBlank(page, 'peers-en');

    // The modality moves: its new port and what it may do, changed here, live at once.
    await page.getByTestId('edit-peer-CT_NORD_2').click();
    assert.equal(await form.locator('input[name=aeTitle]').inputValue(), 'CT_NORD_2');
    assert.equal(await form.locator('input[name=host]').inputValue(), '10.1.2.3');
    await form.locator('input[name=port]').fill('105');
    await form.locator('input[name=retrieve]').check();
    // Moved to another site: refused, nothing changed.
    await form.locator('input[name=site]').fill('CLIN-SUD');
    await form.getByRole('button', { name: 'Save the changes' }).click();
    await page.getByTestId('peers-error').waitFor();
    assert.equal(await page.getByTestId('peers-error').innerText(), 'You may not do this.');
    assert.equal(atrium.archive.peers.get('CT_NORD_2')?.site, 'CHU-NORD');
    await form.locator('input[name=site]').fill('CHU-NORD');
    await form.getByRole('button', { name: 'Save the changes' }).click();
    await page.locator('[data-testid=peers-notice]', { hasText: 'Peer CT_NORD_2 changed: live at once, on every Atrium node.' }).waitFor();
    await page.locator('[data-testid=peer-CT_NORD_2]', { hasText: '10.1.2.3:105' }).waitFor();
    assert.match(await page.getByTestId('peer-CT_NORD_2').innerText(), /send images, query, retrieve/);
    const moved = atrium.archive.peers.get('CT_NORD_2');
    assert.deepEqual([moved?.port, moved?.may.retrieve], [105, true]);
    assert.equal(await form.getByRole('button', { name: 'Add the peer' }).count(), 1, 'the form adds again');
    if (haveDcmtk) assert.equal((await echo()).code, 0, 'still let in');

    // Another site's peer: refused, nothing added.
    await form.locator('input[name=aeTitle]').fill('CT_SUD_2');
    await form.locator('input[name=site]').fill('CLIN-SUD');
    await form.locator('button[type=submit]').click();
    await page.getByTestId('peers-error').waitFor();
    assert.equal(await page.getByTestId('peers-error').innerText(), 'You may not do this.');
    assert.equal(atrium.archive.peers.get('CT_SUD_2'), undefined);

    await page.getByRole('button', { name: 'Français' }).click();
    assert.match(await page.locator('h1').innerText(), /Équipements DICOM/);
    assert.match(await page.locator('tr[data-state=api]').innerText(), /CT_NORD_2.*10\.1\.2\.3:105.*envoyer des images, interroger, récupérer.*ici/s);
    await page.getByTestId('remove-peer-CT_NORD_2').click();
    await page.locator('[data-testid=peers-notice]', { hasText: 'Équipement CT_NORD_2 retiré.' }).waitFor();
    await page.getByTestId('peer-CT_NORD_2').waitFor({ state: 'detached' });
    assert.ok(!(await atrium.archive.peers.fresh()).some((p) => p.aeTitle === 'CT_NORD_2'), 'the node no longer lists it');
    if (haveDcmtk) assert.notEqual((await echo()).code, 0, 'removed: refused again');
    assert.deepEqual((await audited('user-admin', 'admin.nord')).filter((d) => String(d.operation).startsWith('peer-')).map((d) => `${String(d.operation)} ${(d.peer as { aeTitle: string }).aeTitle}`),
      ['peer-add CT_NORD_2', 'peer-update CT_NORD_2', 'peer-remove CT_NORD_2']);
  });

  it('lets an administrator write and edit report templates (French, then English)', async () => {
    const page = await browsers.open({ locale: 'fr-FR' });
    await login(page, 'admin.nord');
    await page.getByTestId('nav-templates').click();
    await page.getByTestId('new-template').click();
    const form = page.getByTestId('template-form');
    await form.locator('input[name=code]').fill('irm-genou');
    await form.locator('input[name=name]').fill('IRM du genou');
    await form.locator('input[name=modality]').fill('MR');
    await form.locator('input[name=bodyPart]').fill('KNEE');
    await page.getByTestId('add-field').click();
    await form.locator('input[name=field-name-1]').fill('menisques');
    await form.locator('input[name=field-label-1]').fill('Ménisques');
    await form.locator('textarea[name=findings]').fill('Technique : IRM 1,5 T.\nRésultats :');
    await form.locator('button[type=submit]').click();
    await page.locator('[data-testid=templates-notice]', { hasText: 'Modèle irm-genou enregistré.' }).waitFor();
    const item = page.getByTestId('template-irm-genou');
    await item.waitFor();
    assert.match(await item.innerText(), /IRM du genou.*MR · KNEE.*conclusion, Ménisques.*modifié par admin\.nord/s);
    await screenshots.shootNonBlank(page, 'templates-fr');

    await toEnglish(page);
    assert.equal(await page.locator('h1').innerText(), 'Report templates');
    await item.getByTestId('edit-template').click();
    await form.locator('input[name=name]').fill('Knee MRI');
    await form.locator('button[type=submit]').click();
    await page.locator('[data-testid=templates-notice]', { hasText: 'Template irm-genou saved.' }).waitFor();
    await item.filter({ hasText: 'Knee MRI' }).waitFor();
    assert.match(await item.innerText(), /Knee MRI.*changed by admin\.nord/s);
    const stored = await atrium.archive.index.sql.get<{ name: string; fields_json: string }>(`SELECT name, fields_json FROM tele_report_templates WHERE code = 'irm-genou'`);
    assert.equal(stored?.name, 'Knee MRI');
    assert.deepEqual(JSON.parse(stored!.fields_json), [{ name: 'conclusion', label: 'conclusion', required: true }, { name: 'menisques', label: 'Ménisques', required: false }]);
    assert.equal((await audited('tele-template', 'admin.nord')).length, 2);
    // A radiologist is not offered the screen, and the server refuses the change.
    const rad = await loginLocal(base, 'rad.nord', password);
    const refused = await request(rad.jar, `${base}/api/teleradiology/templates/irm-genou`, { method: 'PUT', headers: { 'x-csrf-token': rad.csrf, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x', fields: [] }) });
    assert.equal(refused.status, 403);
  });
});
