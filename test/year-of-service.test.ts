/**
 * A year of service in fast-forward (issue 18 §3, "done when"), on each index engine: studies
 * arrive at three sites month after month over STOW-RS; some are read remotely (a request,
 * its report signed final, a second reading), some shared (a link opened, a share to a
 * professional); retention expires for some (the CSP R1112-7 rule, a minor kept until 28),
 * a legal hold stops one deletion; then each site's monthly invoice is checked against
 * totals computed by hand from the scenario and the tariffs, through the operator's API and
 * `atrium billing invoice`. Time is driven, not waited for: each month the metering consumer
 * records what happened at a day of that month (MeteringConsumer.drainAt), as the retention
 * evaluation is given its day. A month's invoice taken at the time comes out the same at the
 * end of the year, after the deletions.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance, type SyntheticOptions } from './support/synthetic.ts';
import { loginLocal, request, type CookieJar } from './support/browser-session.ts';
import { addUser } from '../src/cli/users.ts';
import { sha256Hex } from '../src/api/auth.ts';
import { evaluateRetention } from '../src/archive/lifecycle.ts';
import { MeteringConsumer } from '../src/billing/metering.ts';
import type { SiteUsage } from '../src/billing/metering.ts';
import type { AtriumConfig } from '../src/config/config.ts';
import { Browsers, haveChromium, Screenshots } from './support/chromium.ts';
import { pdfText } from './support/pdf-text.ts';
import { atriumCliArgs } from './support/cli.ts';

const execFileAsync = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');
const builtPortal = process.env.ATRIUM_TEST_PORTAL_DIR ?? path.join(root, 'web', 'dist');
const password = 'un mot de passe assez long pour les tests';
const est = { code: 'CDI-EST', name: 'Centre d\'imagerie Est', finess: '590000003', issuerOfPatientID: 'CDIEST' };

/** The tariffs of the year (euros), as the configuration file says them. */
const billingYaml = `billing:
  issuer: GHT des Trois Sites
  sites:
    CHU-NORD:
      services: { archive: '2026-01', sharing: '2026-01', teleradiology: '2026-03' }
      tariffs:
        archive: { setupFee: 1500, perExam: 0.80, storagePerGBMonth: 250 }
        sharing: { setupFee: 200, perExam: 0.10 }
        teleradiology: { setupFee: 0, perExam: 25, perSecondReading: 15 }
    CLIN-SUD:
      services: { archive: '2026-01', teleradiology: '2026-01' }
      tariffs:
        archive: { setupFee: 500, perExam: 1.00 }
        teleradiology: { setupFee: 300, perExam: 30 }
    CDI-EST:
      services: { archive: '2026-06', sharing: '2026-06' }
      tariffs:
        archive: { setupFee: 800, perExam: 0.50, storagePerGBMonth: 100 }
        sharing: { setupFee: 0, perExam: 0.20 }
`;

/** The same tariffs as the configuration object (for the in-process server; the CLI reads the YAML). */
function configureBilling(c: AtriumConfig): void {
  c.billing.issuer = 'GHT des Trois Sites';
  c.billing.sites = [
    { site: 'CHU-NORD', services: { archive: '2026-01', sharing: '2026-01', teleradiology: '2026-03' }, tariffs: {
      archive: { setupFeeCents: 150000, perExamCents: 80, storagePerGBMonthCents: 25000 }, sharing: { setupFeeCents: 20000, perExamCents: 10 },
      teleradiology: { setupFeeCents: 0, perExamCents: 2500, perSecondReadingCents: 1500 } } },
    { site: 'CLIN-SUD', services: { archive: '2026-01', teleradiology: '2026-01' }, tariffs: {
      archive: { setupFeeCents: 50000, perExamCents: 100 }, teleradiology: { setupFeeCents: 30000, perExamCents: 3000 } } },
    { site: 'CDI-EST', services: { archive: '2026-06', sharing: '2026-06' }, tariffs: {
      archive: { setupFeeCents: 80000, perExamCents: 50, storagePerGBMonthCents: 10000 }, sharing: { setupFeeCents: 0, perExamCents: 20 } } },
  ];
}

/** A storage line computed by hand: GB (10^9 bytes, six decimals, truncated) at the price per GB-month. */
function storageLine(bytes: number, euros: number): string {
  const gb = (Math.floor(bytes / 1000) / 1e6).toFixed(6);
  const amount = (Math.round((bytes * euros * 100) / 1e9) / 100).toFixed(2);
  return `archive,storage (GB-month),${gb},${euros.toFixed(2)},${amount},EUR`;
}

const header = 'service,item,quantity,unit_price,amount,currency';

for (const db of testDatabases()) {
  describe(`a year of service in fast-forward: metering and invoices (${db.name})`, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    let base: string;
    let metering: MeteringConsumer;
    const estToken = randomBytes(24).toString('base64url');
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-year-'));
    const configFile = path.join(work, 'atrium.yaml');
    // The portal as built now, copied: a build started meanwhile does not change it under the browser.
    const portalDir = path.join(work, 'portal');
    if (existsSync(path.join(builtPortal, 'index.html'))) cpSync(builtPortal, portalDir, { recursive: true });
    const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
    /** Bytes stored per site, as the scenario stores and deletes objects (the hand count). */
    const bytes: Record<string, number> = { 'CHU-NORD': 0, 'CLIN-SUD': 0, 'CDI-EST': 0 };
    const make = (o: SyntheticOptions) => syntheticInstance({ Rows: 64, Columns: 64, StudyDate: '20260110', ...o });

    // CHU-NORD
    const n1 = make({ PatientID: 'N-1', PatientBirthDate: '19700101' });
    const n1b = make({ PatientID: 'N-1', PatientBirthDate: '19700101', StudyInstanceUID: n1.uids.study });
    const n1c = make({ PatientID: 'N-1', PatientBirthDate: '19700101', StudyInstanceUID: n1.uids.study });
    const n2 = make({ PatientID: 'N-2', PatientBirthDate: '19800101' });
    // A child's exam of 2000, imported with the site's old archive: past the 20 years, kept until the 28th birthday (10 July 2026).
    const nMinor = make({ PatientID: 'N-MINOR', PatientBirthDate: '19980710', StudyDate: '20000301' });
    const n3 = make({ PatientID: 'N-3', PatientBirthDate: '19650101' });
    const n4 = make({ PatientID: 'N-4', PatientBirthDate: '19900101' });
    const n5 = make({ PatientID: 'N-5', PatientBirthDate: '19750101' });
    const n5b = make({ PatientID: 'N-5', PatientBirthDate: '19750101', StudyInstanceUID: n5.uids.study });
    // CLIN-SUD
    const sOld = make({ PatientID: 'S-OLD', PatientBirthDate: '19500101', StudyDate: '20000105' });
    const sHeld = make({ PatientID: 'S-HELD', PatientBirthDate: '19550101', StudyDate: '20010101' });
    const s1 = make({ PatientID: 'S-1', PatientBirthDate: '19850101', Modality: 'MR' });
    const s2 = make({ PatientID: 'S-2', PatientBirthDate: '19600101' });
    const s3 = make({ PatientID: 'S-3', PatientBirthDate: '19620101' });
    // CDI-EST: one exam before its subscription starts (June), metered but not invoiced.
    const e0 = make({ PatientID: 'E-0', PatientBirthDate: '19700101' });
    const e1 = make({ PatientID: 'E-1', PatientBirthDate: '19710101' });
    const e2 = make({ PatientID: 'E-2', PatientBirthDate: '19720101' });
    const e3 = make({ PatientID: 'E-3', PatientBirthDate: '19730101' });

    const tokenOf = (site: string) => (site === est.code ? estToken : atrium.tokens[site]!);
    const stow = async (site: string, ...objects: Array<{ file: Buffer }>) => {
      const r = await stowFiles(atrium.dicomweb, tokenOf(site), objects.map((o) => o.file));
      assert.equal(r.status, 200, await r.text());
      for (const o of objects) bytes[site]! += o.file.length;
    };
    const as = (who: string, method: string, url: string, body?: unknown) => request(sessions[who]!.jar, `${base}${url}`, {
      method, headers: { 'x-csrf-token': sessions[who]!.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const json = async <T>(r: Promise<Response> | Response, status = 200): Promise<T> => {
      const response = await r;
      const text = await response.text();
      assert.equal(response.status, status, text);
      return JSON.parse(text) as T;
    };
    /** What happened this month is metered at a day of it. */
    const endOf = async (day: string) => {
      await metering.drainAt(new Date(`${day}T10:00:00Z`));
    };
    const invoiceCsv = async (site: string, month: string) => {
      const r = await as('operator', 'GET', `/api/billing/invoice.csv?site=${site}&month=${month}`);
      const text = await r.text();
      assert.equal(r.status, 200, text);
      assert.match(r.headers.get('content-type') ?? '', /^text\/csv/);
      return text.trimEnd().split('\n');
    };
    /** A teleradiology request for the study, read and signed final by rad.a. */
    const readRemotely = async (requester: string, PatientID: string, StudyInstanceUID: string): Promise<number> => {
      const { id } = await json<{ id: number }>(as(requester, 'POST', '/api/teleradiology/requests', {
        patient: { PatientID }, StudyInstanceUID, urgency: 'routine', modality: 'CT', bodyPart: 'CHEST', specialty: 'thorax',
        clinicalContext: 'Toux persistante', clinicalQuestion: 'Pneumopathie ?', requestingPhysician: { name: 'Dr Demandeur' }, proposedProtocol: 'TDM thorax sans injection',
      }), 201);
      await json(as('rad.a', 'POST', `/api/teleradiology/requests/${id}/protocol`, { decision: 'validated' }));
      await json(as('rad.a', 'POST', `/api/teleradiology/requests/${id}/claim`));
      await json(as('rad.a', 'PUT', `/api/teleradiology/requests/${id}/report`, { findings: 'Pas de foyer.', conclusion: 'Examen normal.' }));
      await json(as('rad.a', 'POST', `/api/teleradiology/requests/${id}/report/sign`, {}));
      return id;
    };
    const shareLink = async (admin: string, StudyInstanceUID: string) =>
      (await json<{ token: string }>(as(admin, 'POST', '/api/shares', { StudyInstanceUID, link: { expiresInHours: 24 } }), 201)).token;
    const openLink = async (token: string) => {
      const r = await fetch(`${base}/share/open`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
      assert.equal(r.status, 200, await r.text());
    };
    const evaluate = (day: string) => evaluateRetention(atrium.archive, { rules: atrium.config.lifecycle.retention, now: new Date(`${day}T12:00:00Z`) });
    const cli = async (...args: string[]) => {
      const env: NodeJS.ProcessEnv = { ...process.env, ATRIUM_CONFIG: configFile, ATRIUM_DATA_DIR: path.join(work, 'data'), ATRIUM_LOG_LEVEL: 'warn' };
      delete env.DATABASE_URL;
      return execFileAsync(process.execPath, [...atriumCliArgs(), ...args], { cwd: root, env });
    };
    /** Invoices taken during the year, compared again at its end. */
    const takenAtTheTime = new Map<string, string[]>();

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      atrium = await startAtrium({
        index: opened.config,
        configure: (c) => {
          c.sites.push({ ...est });
          c.apiClients.push({ name: 'client-CDI-EST', tokenSha256: sha256Hex(estToken), site: est.code, territory: true });
          c.lifecycle.retention = [{ name: 'CSP R1112-7', yearsAfterLastContact: 20, keepMinorsUntilAge: 28 }];
          configureBilling(c);
          if (existsSync(portalDir)) c.http.portalDir = portalDir;
          // Hot and cold tiers (docs/storage-tiers.md): a study unread for 90 days goes cold, a read brings it back.
          c.storageTiering = { cold: { kind: 'filesystem', root: path.join(work, 'cold') }, moveAfterDaysWithoutRead: 90, onRead: 'recall', everyMinutes: 60 };
        },
      });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      metering = new MeteringConsumer(atrium.archive, atrium.config.billing.timeZone, pino({ level: 'silent' }));
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'operator', displayName: 'Exploitant GHT', roles: ['territory-admin'], sites: [], password }, by);
      await addUser(atrium.archive, { login: 'admin.nord', displayName: 'Admin Nord', roles: ['site-admin'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'admin.sud', displayName: 'Admin Sud', roles: ['site-admin'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'admin.est', displayName: 'Admin Est', roles: ['site-admin'], sites: [est.code], password }, by);
      await addUser(atrium.archive, { login: 'rad.a', displayName: 'Dr A', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'rad.b', displayName: 'Dr B', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'dr.est', displayName: 'Dr Est', roles: ['referring-physician'], sites: [est.code], password }, by);
      for (const who of ['operator', 'admin.nord', 'admin.sud', 'admin.est', 'rad.a', 'rad.b']) sessions[who] = await loginLocal(base, who, password);
      const index = opened.config.engine === 'sqlite'
        ? ['index:', '  engine: sqlite', `  path: ${JSON.stringify(opened.config.path)}`]
        : ['index:', '  engine: postgres', `  url: ${JSON.stringify(opened.config.url)}`, `  schema: ${opened.config.schema}`];
      writeFileSync(configFile, [
        ...index, 'sites:', ...atrium.config.sites.flatMap((s) => [`  - code: ${s.code}`, `    name: ${JSON.stringify(s.name)}`, `    finess: '${s.finess}'`, `    issuerOfPatientID: ${s.issuerOfPatientID}`]),
        billingYaml,
      ].join('\n'));
      // Nothing happened before the year: its metering starts empty.
      await endOf('2025-12-31');
    });
    after(async () => {
      await atrium?.close();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    it('January: exams archived at two sites, one shared by a link that is opened; each counted once, per site', async () => {
      await stow('CHU-NORD', n1, n1b, n2, nMinor);
      await stow('CLIN-SUD', sOld, sHeld, s1);
      const token = await shareLink('admin.nord', n1.uids.study);
      await openLink(token);
      await endOf('2026-01-20');
      const { usage } = await json<{ usage: SiteUsage[] }>(as('operator', 'GET', '/api/billing/usage?month=2026-01'));
      const nord = usage.find((u) => u.site === 'CHU-NORD')!;
      assert.deepEqual([nord.examsArchived, nord.instancesStored, nord.instancesTotal, nord.bytesTotal, nord.examsShared, nord.shareLinksOpened], [3, 4, 4, bytes['CHU-NORD'], 1, 1]);
      const sud = usage.find((u) => u.site === 'CLIN-SUD')!;
      assert.deepEqual([sud.examsArchived, sud.instancesStored, sud.bytesTotal], [3, 3, bytes['CLIN-SUD']]);
      assert.deepEqual(usage.find((u) => u.site === est.code)!.examsArchived, 0);
      // Set-up fees in the month each subscription starts; 3 exams at 0.80; the storage at the month's end.
      const january = await invoiceCsv('CHU-NORD', '2026-01');
      assert.deepEqual(january, [header,
        'archive,set-up fee,1,1500.00,1500.00,EUR', 'archive,exams archived,3,0.80,2.40,EUR', storageLine(bytes['CHU-NORD']!, 250),
        'sharing,set-up fee,1,200.00,200.00,EUR', 'sharing,exams shared,1,0.10,0.10,EUR', 'sharing,share links opened,1,0.00,0.00,EUR']);
      takenAtTheTime.set('CHU-NORD 2026-01', january);
      assert.deepEqual(await invoiceCsv('CLIN-SUD', '2026-01'), [header,
        'archive,set-up fee,1,500.00,500.00,EUR', 'archive,exams archived,3,1.00,3.00,EUR', 'teleradiology,set-up fee,1,300.00,300.00,EUR']);
    });

    it('February: an object added to a January study is stored but the exam is not counted again; a remote reading for CLIN-SUD; a legal hold', async () => {
      await stow('CHU-NORD', n1c, n3);
      await stow('CLIN-SUD', s2);
      await readRemotely('admin.sud', 'S-1', s1.uids.study);
      await json(as('admin.sud', 'POST', '/api/lifecycle/holds', { StudyInstanceUID: sHeld.uids.study, reason: 'contentieux en cours' }), 201);
      await endOf('2026-02-14');
      const february = await invoiceCsv('CHU-NORD', '2026-02');
      assert.deepEqual(february, [header, 'archive,exams archived,1,0.80,0.80,EUR', storageLine(bytes['CHU-NORD']!, 250)]);
      const sud = await invoiceCsv('CLIN-SUD', '2026-02');
      assert.deepEqual(sud, [header, 'archive,exams archived,1,1.00,1.00,EUR', 'teleradiology,teleradiology acts,1,30.00,30.00,EUR']);
      takenAtTheTime.set('CLIN-SUD 2026-02', sud);
    });

    it('March: CHU-NORD starts teleradiology (a reading and a second reading); CDI-EST archives before its subscription', async () => {
      await stow('CHU-NORD', n4);
      await stow(est.code, e0);
      const request = await readRemotely('admin.nord', 'N-3', n3.uids.study);
      const asked = await json<{ id: number }>(as('admin.nord', 'POST', `/api/teleradiology/requests/${request}/second-readings`, { specialty: 'thorax', question: 'Avis sur le nodule ?', expert: 'rad.b' }), 201);
      await json(as('rad.b', 'POST', `/api/teleradiology/second-readings/${asked.id}/answer`, { conclusion: 'Nodule bénin', agreement: 'agree' }));
      await endOf('2026-03-18');
      const march = await invoiceCsv('CHU-NORD', '2026-03');
      assert.deepEqual(march, [header, 'archive,exams archived,1,0.80,0.80,EUR', storageLine(bytes['CHU-NORD']!, 250),
        'teleradiology,teleradiology acts,1,25.00,25.00,EUR', 'teleradiology,second readings,1,15.00,15.00,EUR']);
      takenAtTheTime.set('CHU-NORD 2026-03', march);
      // Metered, not invoiced: CDI-EST subscribes from June.
      const { usage } = await json<{ usage: SiteUsage[] }>(as('operator', 'GET', '/api/billing/usage?month=2026-03'));
      assert.equal(usage.find((u) => u.site === est.code)!.examsArchived, 1);
      assert.deepEqual(await invoiceCsv(est.code, '2026-03'), [header]);
    });

    it('April and May: a month without activity is an invoice without lines (CLIN-SUD has no storage price), not an error', async () => {
      await endOf('2026-04-15');
      await endOf('2026-05-15');
      assert.deepEqual(await invoiceCsv('CLIN-SUD', '2026-04'), [header]);
      assert.deepEqual(await invoiceCsv('CLIN-SUD', '2026-05'), [header]);
      // CHU-NORD pays its storage only.
      assert.deepEqual(await invoiceCsv('CHU-NORD', '2026-05'), [header, storageLine(bytes['CHU-NORD']!, 250)]);
      const pdf = await as('operator', 'GET', '/api/billing/invoice.pdf?site=CLIN-SUD&month=2026-04');
      assert.equal(pdf.status, 200);
      assert.equal(Buffer.from(await pdf.arrayBuffer()).subarray(0, 5).toString('latin1'), '%PDF-');
    });

    it('June: CDI-EST\'s subscription starts (its earlier exam stored, not counted again) and it shares an exam with a physician; the minor\'s study is not due yet', async () => {
      await stow(est.code, e1, e2);
      await json(as('admin.est', 'POST', '/api/shares', { StudyInstanceUID: e1.uids.study, toUser: 'dr.est' }), 201);
      const due = await evaluate('2026-06-30');
      assert.deepEqual(due.map((d) => d.StudyInstanceUID).sort(), [sOld.uids.study, sHeld.uids.study].sort());
      await endOf('2026-06-20');
      assert.deepEqual(await invoiceCsv(est.code, '2026-06'), [header,
        'archive,set-up fee,1,800.00,800.00,EUR', 'archive,exams archived,2,0.50,1.00,EUR', storageLine(bytes[est.code]!, 100),
        'sharing,exams shared,1,0.20,0.20,EUR']);
    });

    it('July: retention expires: an adult\'s old study and, past their 28th birthday, the minor\'s are deleted; the legal hold stops one deletion', async () => {
      const due = await evaluate('2026-07-15');
      const minor = due.find((d) => d.StudyInstanceUID === nMinor.uids.study);
      assert.deepEqual(minor && [minor.keepUntil, minor.keptForMinor], ['20260710', true]);
      await json(as('admin.sud', 'POST', '/api/lifecycle/approvals', { StudyInstanceUID: sOld.uids.study, reason: 'durée de conservation échue' }), 201);
      bytes['CLIN-SUD']! -= sOld.file.length;
      await json(as('admin.nord', 'POST', '/api/lifecycle/approvals', { StudyInstanceUID: nMinor.uids.study, reason: 'durée de conservation échue' }), 201);
      bytes['CHU-NORD']! -= nMinor.file.length;
      const held = await as('admin.sud', 'POST', '/api/lifecycle/approvals', { StudyInstanceUID: sHeld.uids.study });
      assert.equal(held.status, 409, await held.text());
      await endOf('2026-07-15');
      const { usage } = await json<{ usage: SiteUsage[] }>(as('operator', 'GET', '/api/billing/usage?month=2026-07'));
      const nord = usage.find((u) => u.site === 'CHU-NORD')!;
      assert.deepEqual([nord.instancesDeleted, nord.bytesGrowth, nord.instancesTotal, nord.bytesTotal], [1, -nMinor.file.length, 6, bytes['CHU-NORD']]);
      const sud = usage.find((u) => u.site === 'CLIN-SUD')!;
      assert.deepEqual([sud.instancesDeleted, sud.instancesTotal, sud.bytesTotal], [1, 3, bytes['CLIN-SUD']]);
      // The held study is still there, so is its storage.
      assert.equal((await fetch(`${atrium.dicomweb}/studies/${sHeld.uids.study}/metadata`, { headers: { authorization: `Bearer ${atrium.tokens['CLIN-SUD']}` } })).status, 200);
      assert.deepEqual(await invoiceCsv('CHU-NORD', '2026-07'), [header, storageLine(bytes['CHU-NORD']!, 250)]);
    });

    it('August to October: the studies unread go to the cold tier and one comes back when read; the storage billed does not change with the tier', async () => {
      const tiering = atrium.archive.tiering!;
      assert.ok(tiering, 'storage.cold opens the tiers');
      const august = await invoiceCsv('CHU-NORD', '2026-08');
      assert.deepEqual(august, [header, storageLine(bytes['CHU-NORD']!, 250)]);
      await endOf('2026-08-14');
      // September: the mover, as of a day more than 90 days after the objects arrived (its own clock), moves every study.
      const moved = await tiering.runTiering(new Date(Date.now() + 100 * 86_400_000));
      assert.equal(moved.studiesMoved, 10, JSON.stringify(moved));
      assert.deepEqual(await tiering.studyTiers(n1.uids.study), { hot: 0, cold: 3 });
      await endOf('2026-09-15');
      // October: CHU-NORD reads N-1's exam again (WADO-RS): served from cold, then recalled to hot.
      const read = await fetch(`${atrium.dicomweb}/studies/${n1.uids.study}/series/${n1.uids.series}/instances/${n1.uids.sop}`, { headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}`, accept: 'multipart/related; type="application/dicom"' } });
      assert.equal(read.status, 200);
      assert.ok(Buffer.from(await read.arrayBuffer()).includes(n1.file.subarray(n1.file.length - 256)), 'the object as stored, from the cold tier');
      const recalled = await tiering.runTiering(new Date());
      assert.equal(recalled.recalled, 3, JSON.stringify(recalled));
      assert.deepEqual(await tiering.studyTiers(n1.uids.study), { hot: 3, cold: 0 });
      assert.deepEqual(await tiering.studyTiers(n2.uids.study), { hot: 0, cold: 1 });
      await endOf('2026-10-15');
      for (const month of ['2026-09', '2026-10']) {
        assert.deepEqual(await invoiceCsv('CHU-NORD', month), august, `${month}: moving between tiers is neither growth nor deletion`);
        const { usage } = await json<{ usage: SiteUsage[] }>(as('operator', 'GET', `/api/billing/usage?month=${month}`));
        assert.deepEqual(usage.map((u) => [u.site, u.instancesStored, u.instancesDeleted, u.bytesGrowth, u.bytesTotal]),
          [[est.code, 0, 0, 0, bytes[est.code]], ['CHU-NORD', 0, 0, 0, bytes['CHU-NORD']], ['CLIN-SUD', 0, 0, 0, bytes['CLIN-SUD']]]);
      }
    });

    it('November: `atrium billing invoice` prints the month\'s CSV, one line per service and item, matching the totals computed by hand', async () => {
      await stow('CHU-NORD', n5, n5b);
      await stow('CLIN-SUD', s3);
      await stow(est.code, e3);
      const token = await shareLink('admin.nord', n5.uids.study);
      await openLink(token);
      await openLink(token);
      await endOf('2026-11-10');
      const { stdout } = await cli('billing', 'invoice', '--site', 'CHU-NORD', '--month', '2026-11', '--pdf', path.join(work, 'nord-2026-11.pdf'));
      const lines = stdout.trimEnd().split('\n');
      const storage = storageLine(bytes['CHU-NORD']!, 250);
      assert.deepEqual(lines, [header, 'archive,exams archived,1,0.80,0.80,EUR', storage,
        'sharing,exams shared,1,0.10,0.10,EUR', 'sharing,share links opened,2,0.00,0.00,EUR']);
      // The total by hand: 0.80 + storage + 0.10.
      const total = lines.slice(1).reduce((n, l) => n + Math.round(Number(l.split(',')[4]) * 100), 0);
      assert.equal(total, 80 + Math.round((bytes['CHU-NORD']! * 250 * 100) / 1e9) + 10);
      const pdf = pdfText(readFileSync(path.join(work, 'nord-2026-11.pdf')));
      assert.match(pdf, /Relevé de facturation 2026-11/);
      assert.match(pdf, /Examens archivés/);
      assert.ok(pdf.includes((total / 100).toFixed(2).replace('.', ',')), pdf);
      assert.deepEqual(await invoiceCsv('CLIN-SUD', '2026-11'), [header, 'archive,exams archived,1,1.00,1.00,EUR']);
      assert.deepEqual(await invoiceCsv(est.code, '2026-11'), [header, 'archive,exams archived,1,0.50,0.50,EUR', storageLine(bytes[est.code]!, 100)]);
      // An unknown month or site is a clear error on the command line.
      await assert.rejects(cli('billing', 'invoice', '--site', 'CHU-NORD', '--month', '2026-13'), (e: { code: number; stderr: string }) => e.code === 2 && /--month must be a month YYYY-MM/.test(e.stderr));
      await assert.rejects(cli('billing', 'invoice', '--site', 'NOWHERE', '--month', '2026-11'), (e: { code: number; stderr: string }) => e.code === 2 && /site NOWHERE is not a site/.test(e.stderr));
    });

    it('December: the months invoiced during the year come out the same after the deletions; the year\'s volumes per site and month for the dashboard', async () => {
      await endOf('2026-12-05');
      for (const [key, lines] of takenAtTheTime) {
        const [site, month] = key.split(' ') as [string, string];
        assert.deepEqual(await invoiceCsv(site, month), lines, key);
      }
      const year = await json<{ months: string[]; usage: SiteUsage[] }>(as('operator', 'GET', '/api/billing/usage?from=2026-01&to=2026-12'));
      assert.equal(year.months.length, 12);
      const exams = (site: string) => year.usage.filter((u) => u.site === site).map((u) => u.examsArchived);
      assert.deepEqual(exams('CHU-NORD'), [3, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
      assert.deepEqual(exams('CLIN-SUD'), [3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
      assert.deepEqual(exams(est.code), [0, 0, 1, 0, 0, 2, 0, 0, 0, 0, 1, 0]);
      const acts = (site: string) => year.usage.filter((u) => u.site === site).reduce((n, u) => n + u.teleActs + u.secondReadings, 0);
      assert.deepEqual([acts('CHU-NORD'), acts('CLIN-SUD')], [2, 1]);
      // The operator's only: a site administrator is refused, and so is a caller without a session.
      assert.equal((await as('admin.nord', 'GET', '/api/billing/usage?month=2026-11')).status, 403);
      assert.equal((await as('admin.nord', 'GET', '/api/billing/invoice.csv?site=CHU-NORD&month=2026-11')).status, 403);
      assert.equal((await fetch(`${base}/api/billing/usage?month=2026-11`)).status, 401);
      assert.equal((await as('operator', 'GET', '/api/billing/invoice.csv?site=NOWHERE&month=2026-11')).status, 404);
      assert.equal((await as('operator', 'GET', '/api/billing/usage?month=2026-13')).status, 400);
    });

    it('shows the operator the year\'s volumes per site and month as charts in the portal, and a site\'s invoice (Chromium)', { skip: (!haveChromium && 'Debian\'s chromium is not installed') || (!existsSync(path.join(portalDir, 'index.html')) && 'the portal is not built (npm run build:web)') }, async () => {
      const browsers = new Browsers();
      const shots = new Screenshots(path.join(root, '.tmp', `billing-dashboard-${db.name}`));
      try {
        const page = await browsers.open();
        // Generous waits: the machine may be busy; nothing here is timed.
        page.setDefaultTimeout(120_000);
        await page.goto(`${base}/app/`);
        await page.locator('input[name=login]').fill('operator');
        await page.locator('input[name=password]').fill(password);
        await page.locator('input[name=password]').press('Enter');
        await page.getByTestId('nav-billing').click();
        await page.getByTestId('billing-year').fill('2026');
        const bar = page.getByTestId('bar-CHU-NORD-2026-01');
        await bar.waitFor();
        assert.equal(await bar.getAttribute('data-value'), '3');
        assert.equal(await page.getByTestId('bar-CDI-EST-2026-06').getAttribute('data-value'), '2');
        assert.equal(await page.getByTestId('bar-CLIN-SUD-2026-04').getAttribute('data-value'), '0');
        // The month's detail and the site's invoice.
        await page.getByTestId('billing-month').fill('2026-02');
        await page.getByTestId('billing-site').selectOption('CLIN-SUD');
        await page.getByTestId('invoice-total').waitFor();
        assert.match(await page.getByTestId('invoice-total').innerText(), /31,00\s€/);
        assert.equal(await page.getByTestId('usage-CLIN-SUD').locator('td').nth(5).innerText(), '1', 'one teleradiology act in February');
        await page.getByTestId('billing-metric').selectOption('teleActs');
        assert.equal(await page.getByTestId('bar-CLIN-SUD-2026-02').getAttribute('data-value'), '1');
        await shots.shoot(page, 'dashboard');
        await page.getByTestId('billing-month').fill('2026-04');
        await page.getByTestId('invoice-empty').waitFor();
        // A site administrator has no such link (and the API refuses them).
        const admin = await browsers.open();
        admin.setDefaultTimeout(120_000);
        await admin.goto(`${base}/app/`);
        await admin.locator('input[name=login]').fill('admin.nord');
        await admin.locator('input[name=password]').fill(password);
        await admin.locator('input[name=password]').press('Enter');
        await admin.getByTestId('who').waitFor();
        assert.equal(await admin.getByTestId('nav-billing').count(), 0);
      } finally {
        await browsers.close();
      }
    });
  });
}

describe('billing configuration checked at start', () => {
  it('refuses to start when a subscribed service has no tariff, naming the key to add', async () => {
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-billing-config-'));
    try {
      const file = path.join(work, 'atrium.yaml');
      writeFileSync(file, [
        'sites:', '  - code: CHU-NORD', '    name: CHU Nord', "    finess: '590000001'", '    issuerOfPatientID: CHUNORD',
        'billing:', '  sites:', '    CHU-NORD:', "      services: { archive: '2026-01', teleradiology: '2026-03' }", '      tariffs:', '        archive: { setupFee: 1500, perExam: 0.80 }', '',
      ].join('\n'));
      const env: NodeJS.ProcessEnv = { ...process.env, ATRIUM_CONFIG: file, ATRIUM_DATA_DIR: path.join(work, 'data'), ATRIUM_HTTP_PORT: '0' };
      delete env.DATABASE_URL;
      const run = execFileAsync(process.execPath, [...atriumCliArgs(), 'serve'], { cwd: root, env, timeout: 120_000 });
      await assert.rejects(run, (e: { code: number; stderr: string }) => {
        assert.equal(e.code, 2, e.stderr);
        assert.match(e.stderr, /billing\.sites\.CHU-NORD: teleradiology is subscribed without a tariff: add billing\.sites\.CHU-NORD\.tariffs\.teleradiology/);
        return true;
      });
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
