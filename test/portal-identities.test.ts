/**
 * The identitovigilance screen in a real browser (Debian's Chromium): a site administrator
 * logs in, sees their site's open identity reviews, asks INSi (the double of the CNAM's
 * service) for a record with an identity document seen, sees the identity qualified, sees a
 * homonym answered "several" open a review, and decides a review; every step is audited.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Browsers, chromiumPath, Screenshots } from './support/chromium.ts';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { InsiDouble } from './support/insi-double.ts';
import { makeCertificates } from './support/rsyslog.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { openReview } from '../src/patients/identities.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const portalDir = path.join(repo, 'web', 'dist');
const engine = testDatabases().at(-1)!;
const password = 'un mot de passe assez long pour les tests';

describe(`the identitovigilance screen in Chromium (${engine.name})`, { skip: !existsSync(chromiumPath) && 'Debian\'s chromium is not installed (.ci/run installs it)' }, () => {
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  const browsers = new Browsers();
  const screenshots = new Screenshots(path.join(repo, '.tmp', 'portal-identities-screenshots'));
  const pki = mkdtempSync(path.join(tmpdir(), 'atrium-insi-portal-'));
  makeCertificates(pki, 'cnam-ca', [{ name: 'insi', usage: 'server' }, { name: 'chu-nord', usage: 'client' }]);
  const insi = new InsiDouble({ cert: readFileSync(path.join(pki, 'insi.crt')), key: readFileSync(path.join(pki, 'insi.key')), ca: readFileSync(path.join(pki, 'cnam-ca.crt')) });
  insi.identities.push({ matricule: '2790351215189', key: '89', oid: '1.2.250.1.213.1.4.10', birthName: 'PAT-TROIS', firstNames: ['DOMINIQUE'], sex: 'F', birthDate: '19790328' });
  insi.homonyms.add('HOMONYME');
  const reviews: Record<string, number> = {};

  const reviewOf = async (site: string, PatientID: string, PatientName: string, PatientSex: string, PatientBirthDate: string) => {
    const object = syntheticInstance({ PatientID, PatientName, PatientSex, PatientBirthDate, Rows: 2, Columns: 2 });
    assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens[site]!, [object.file])).status, 200);
    const s = atrium.archive.sites.get(site)!;
    const patientId = (await atrium.archive.index.patientRecordId(s.id, s.issuerOfPatientID, PatientID))!;
    await atrium.archive.index.sql.transaction((tx) => openReview(tx, 'ins-invalid', patientId, null, 'INS absente du dossier'));
    return Number((await atrium.archive.index.sql.get<{ id: number }>(`SELECT MAX(id) AS id FROM identity_reviews WHERE patient_id = ?`, [patientId]))!.id);
  };

  before(async () => {
    if (!existsSync(path.join(portalDir, 'index.html'))) execFileSync('npm', ['run', 'build:web'], { cwd: repo, stdio: 'inherit' });
    const endpoint = await insi.listen();
    const db = await engine.open();
    cleanup = db.cleanup;
    atrium = await startAtrium({
      index: db.config,
      configure: (c) => {
        c.http.portalDir = portalDir;
        c.insi = {
          endpoint, caFile: path.join(pki, 'cnam-ca.crt'), timeoutMs: 5_000, software: { name: 'Atrium', version: '0.1.0', approval: 'TEST-IDAM' },
          sites: [{ site: 'CHU-NORD', certFile: path.join(pki, 'chu-nord.crt'), keyFile: path.join(pki, 'chu-nord.key') }],
        };
      },
    });
    base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    await addUser(atrium.archive, { login: 'iv.nord', displayName: 'Cellule IV Nord', roles: ['site-admin'], sites: ['CHU-NORD'], password }, { actor: 'test', via: 'cli' });
    reviews.found = await reviewOf('CHU-NORD', 'PIV-1', 'PAT-TROIS^DOMINIQUE', 'F', '19790328');
    reviews.several = await reviewOf('CHU-NORD', 'PIV-2', 'HOMONYME^CLAUDE', 'M', '19600101');
    reviews.south = await reviewOf('CLIN-SUD', 'PIV-9', 'SUD^ALIX', 'F', '19800101');
  });

  after(async () => {
    await browsers.close();
    await atrium?.close();
    await insi.close();
    await cleanup?.();
    rmSync(pki, { recursive: true, force: true });
  });

  it('lets the identitovigilance team ask INSi from a review, qualify with a document seen, and decide, each step audited', async () => {
    const page = await browsers.open();
    await page.goto(`${base}/app/`);
    await page.locator('input[name=login]').fill('iv.nord');
    await page.locator('input[name=password]').fill(password);
    await page.locator('input[name=password]').press('Enter');
    await page.getByTestId('nav-identities').click();
    const found = page.getByTestId(`review-${reviews.found}`);
    await found.waitFor();
    // Only this site's reviews.
    assert.equal(await page.getByTestId(`review-${reviews.south}`).count(), 0);
    await found.locator('select[name=proof]').selectOption('identity-card');
    await found.getByTestId('insi').click();
    const result = found.getByTestId('insi-result');
    await result.waitFor();
    assert.equal(await result.getAttribute('data-outcome'), 'found');
    assert.equal(await result.getAttribute('data-status'), 'qualified');
    assert.match(await result.innerText(), /INSi : identité trouvée — identité qualifiée/);
    await screenshots.shootNonBlank(page, 'insi-found');

    const several = page.getByTestId(`review-${reviews.several}`);
    await several.getByTestId('insi').click();
    await several.getByTestId('insi-result').waitFor();
    assert.equal(await several.getByTestId('insi-result').getAttribute('data-outcome'), 'several');
    // The review INSi's answer opened is listed.
    await page.locator('[data-kind="insi-several"]').first().waitFor();

    await found.getByTestId('accept').click();
    await page.getByTestId('review-notice').waitFor();
    await page.getByTestId(`review-${reviews.found}`).waitFor({ state: 'detached' });

    const identity = await atrium.archive.index.sql.get<{ status: string; ins: string }>(
      `SELECT i.status, i.ins FROM patient_identities i JOIN identity_reviews r ON r.patient_id = i.patient_id WHERE r.id = ?`, [reviews.found]);
    assert.deepEqual(identity, { status: 'qualified', ins: '279035121518989' });
    const audited = await atrium.archive.index.sql.all<{ details: string }>(`SELECT details FROM audit_events WHERE action = 'identity-review' AND actor = 'iv.nord' ORDER BY id`);
    const steps = audited.map((a) => JSON.parse(a.details) as { review: number; insi?: string; accepted?: boolean });
    assert.deepEqual(steps.map((s) => [s.review, s.insi ?? (s.accepted ? 'accepted' : 'rejected')]), [[reviews.found, 'found'], [reviews.several, 'several'], [reviews.found, 'accepted']]);
  });
});
