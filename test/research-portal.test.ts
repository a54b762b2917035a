/**
 * The research screen in Chromium: a researcher defines a project, sees its cohort's size;
 * the site's administrator approves it (the author cannot); the trusted third party records
 * an objection; the researcher exports the cohort as a ZIP and downloads it, the objecting
 * patient left out. In French, then the screen's English.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Browsers, chromiumPath, Screenshots } from './support/chromium.ts';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { ResearchStore } from '../src/research/projects.ts';
import { ResearchKeys } from '../src/research/keys.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const portalDir = path.join(repo, 'web', 'dist');
const engine = testDatabases().at(-1)!;
const password = 'un mot de passe assez long pour les tests';

describe(`the research screen in Chromium (${engine.name})`, { skip: !existsSync(chromiumPath) && 'Debian\'s chromium is not installed (.ci/run installs it)' }, () => {
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  const browsers = new Browsers();
  const screenshots = new Screenshots(path.join(repo, '.tmp', 'research-portal-screenshots'));

  before(async () => {
    if (!existsSync(path.join(portalDir, 'index.html'))) execFileSync('npm', ['run', 'build:web'], { cwd: repo, stdio: 'inherit' });
    const db = await engine.open();
    cleanup = db.cleanup;
    atrium = await startAtrium({ index: db.config, configure: (c) => { c.http.portalDir = portalDir; } });
    base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    const objects = [
      syntheticInstance({ PatientID: 'RCH-1', PatientName: 'Premier^Pierre', Modality: 'CT', Rows: 4, Columns: 4 }),
      syntheticInstance({ PatientID: 'RCH-2', PatientName: 'Second^Sophie', Modality: 'CT', Rows: 4, Columns: 4 }),
      syntheticInstance({ PatientID: 'RCH-3', PatientName: 'Oppose^Olga', Modality: 'CT', Rows: 4, Columns: 4 }),
    ];
    assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, objects.map((o) => o.file))).status, 200);
    const by = { actor: 'test', via: 'cli' as const };
    await addUser(atrium.archive, { login: 'chercheur', displayName: 'Chercheuse', roles: ['researcher'], sites: ['CHU-NORD'], password }, by);
    await addUser(atrium.archive, { login: 'admin.nord', displayName: 'Admin Nord', roles: ['site-admin'], sites: ['CHU-NORD'], password }, by);
    await addUser(atrium.archive, { login: 'tiers', displayName: 'Tiers de confiance', roles: ['trusted-third-party'], sites: ['CHU-NORD'], password }, by);
  });

  after(async () => {
    await browsers.close();
    await atrium?.close();
    await cleanup?.();
  });

  const login = async (who: string) => {
    const page = await browsers.open();
    await page.goto(`${base}/app/`);
    await page.locator('input[name=login]').fill(who);
    await page.locator('input[name=password]').fill(password);
    await page.locator('input[name=password]').press('Enter');
    await page.getByTestId('nav-research').click();
    await page.getByTestId('research').waitFor();
    return page;
  };

  it('takes a project from its definition to a downloaded de-identified ZIP, with an objection respected', async () => {
    const researcher = await login('chercheur');
    // Research roles do not use teleradiology: no link to it in their bar (the administrator has one).
    assert.equal(await researcher.getByTestId('nav-tele').count(), 0, 'no teleradiology link for a researcher');
    await researcher.getByTestId('project-name').fill('Scanners thoraciques');
    await researcher.getByTestId('project-modalities').fill('CT');
    await researcher.getByTestId('option-modifiedDates').check();
    await researcher.getByTestId('create-project').click();
    const row = researcher.locator('[data-testid=research-project][data-name="Scanners thoraciques"]');
    await row.waitFor();
    assert.equal(await row.getAttribute('data-status'), 'draft');
    assert.equal(await row.getByTestId('approve').count(), 0, 'the author does not approve');
    await row.getByText('Cohorte').click();
    await row.getByTestId('cohort').waitFor();
    assert.match(await row.getByTestId('cohort').innerText(), /3 examens, 3 patients/);
    await screenshots.shootNonBlank(researcher, 'draft');

    const admin = await login('admin.nord');
    assert.equal(await admin.getByTestId('nav-tele').count(), 1);
    const adminRow = admin.locator('[data-testid=research-project][data-name="Scanners thoraciques"]');
    await adminRow.getByTestId('approve').click();
    await admin.locator('[data-testid=research-project][data-status=approved]').waitFor();

    const third = await login('tiers');
    assert.equal(await third.getByTestId('new-project').count(), 0, 'the trusted third party defines no project');
    assert.equal(await third.getByTestId('nav-tele').count(), 0, 'no teleradiology link for the trusted third party');
    await third.getByTestId('objection-patient').fill('RCH-3');
    await third.getByTestId('record-objection').click();
    await third.getByRole('status').filter({ hasText: 'Opposition enregistrée' }).waitFor();

    await researcher.reload();
    await researcher.getByTestId('research').waitFor();
    const approved = researcher.locator('[data-testid=research-project][data-name="Scanners thoraciques"]');
    await approved.getByTestId('export').click();
    const status = approved.locator('[data-testid=export-status][data-status=done]');
    await status.waitFor({ timeout: 120_000 });
    assert.match(await status.innerText(), /2 patients, 2 objets, 1 opposants exclus/);
    await screenshots.shootNonBlank(researcher, 'exported');
    const [download] = await Promise.all([researcher.waitForEvent('download'), status.getByTestId('download').click()]);
    const zip = readFileSync((await download.path())!);
    assert.equal(zip.readUInt32LE(0), 0x04034b50, 'a ZIP');
    const text = zip.toString('latin1');
    assert.ok(text.includes('manifest.json'));
    for (const phi of ['RCH-1', 'RCH-2', 'RCH-3', 'Premier', 'Second', 'Oppose']) assert.ok(!text.includes(phi), `${phi} in the ZIP`);

    // An export whose node died mid-way (its row left running, with no lease: test/research-export-restart.test.ts
    // kills a real node): the screen shows it interrupted when it opens, and restarts it.
    const project = await atrium.archive.index.sql.get<{ id: number }>('SELECT id FROM research_projects WHERE name = ?', ['Scanners thoraciques']);
    await new ResearchStore(atrium.archive.index.sql, ResearchKeys.fromKey(randomBytes(32))).startExport(Number(project!.id), 'zip', 'chercheur');
    await researcher.reload();
    const interrupted = approved.locator('[data-testid=export-status][data-status=interrupted]');
    await interrupted.waitFor();
    assert.match(await interrupted.innerText(), /interrompu \(le serveur s'est arrêté pendant l'export\)/);
    assert.equal(await interrupted.getByTestId('download').count(), 0);
    await interrupted.getByTestId('restart-export').click();
    const restarted = approved.locator('[data-testid=export-status][data-status=done]');
    await restarted.waitFor({ timeout: 120_000 });
    assert.match(await restarted.innerText(), /2 patients, 2 objets, 1 opposants exclus/);
    assert.equal(await restarted.getByTestId('restart-export').count(), 0);

    // The same screen in English.
    await researcher.getByRole('button', { name: 'English' }).click();
    await researcher.getByText('Research projects:').waitFor();
    assert.match(await approved.getByTestId('export-status').innerText(), /2 patients, 2 objects, 1 objecting patients left out/);
  });
});
