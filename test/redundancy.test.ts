/**
 * Redundant-exam alert (issue 19 §1), over HL7 MLLP and HTTP: a patient with the same
 * qualified INS at two sites had a CT of the head at CLIN-SUD six weeks ago; an order for a
 * CT of the head arriving at CHU-NORD is accepted with a warning (ERR severity W) and listed
 * as an alert, and a teleradiology request for it answers with the prior, named only to a
 * caller who may see it ("elsewhere" counted otherwise). The requesting side decides: kept
 * with a reason, or cancelled (the order leaves the worklist); the activity counts both.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { sendHl7 } from './support/hl7.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { CookieJar, loginLocal, request } from './support/browser-session.ts';
import { addUser } from '../src/cli/users.ts';
import { Browsers, haveChromium } from './support/chromium.ts';
import { tag } from '../src/dicom/dataset.ts';
import { ScheduledProcedures } from '../src/patients/scheduled-procedures.ts';
import { DoseRecording } from '../src/workflow/dose-records.ts';
import { radiationDoseSR } from './support/rdsr.ts';
import { pino } from 'pino';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const password = 'un mot de passe assez long pour les tests';
const validINS = '280017512345610';
const insAuthority = 'ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO';
let control = 0;

const ymd = (d: Date) => d.toISOString().slice(0, 10).replace(/-/g, '');
const sixWeeksAgo = ymd(new Date(Date.now() - 42 * 86_400_000));

function msh(type: string, app: string, facility: string): string {
  control++;
  return `MSH|^~\\&|${app}|${facility}|ATRIUM|GHT|20261201093000||${type}|RED${control}|P|2.5|||||FRA|8859/1`;
}
const pid = (PatientID: string, issuer: string) =>
  `PID|1||${PatientID}^^^${issuer}^PI~${validINS}^^^${insAuthority}^INS||Redondant^Rose||19800115|F${'|'.repeat(24)}QUAL`;
const adt = (app: string, facility: string, PatientID: string, issuer: string) =>
  [msh('ADT^A04^ADT_A01', app, facility), 'EVN||20261201093000', pid(PatientID, issuer), 'PV1|1|O'].join('\r');
const orm = (accession: string, service: string) => [
  msh('ORM^O01^ORM_O01', 'RIS_NORD', 'CHU_NORD'), pid('RN-100', 'CHUNORD'), 'PV1|1|O',
  `ORC|NW|PL-${accession}|${accession}`,
  `OBR|1|PL-${accession}|${accession}|${service}|||20261210090000||||||||||||${accession}|||||CT`,
].join('\r');

for (const engine of testDatabases()) {
  describe(`redundant-exam alert (${engine.name})`, () => {
    let atrium: RunningAtrium;
    let base: string;
    let cleanup: () => Promise<void>;
    const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-redundancy-'));
    const priorCT = syntheticInstance({
      PatientID: 'RS-100', PatientName: 'Redondant^Rose', Modality: 'CT', StudyDate: sixWeeksAgo, Rows: 4, Columns: 4,
      extra: [{ tag: tag(0x0018, 0x0015), vr: 'CS', value: Buffer.from('HEAD') }],
    });
    const send = (who: string, url: string, body: unknown) => request(sessions[who]!.jar, `${base}${url}`, {
      method: 'POST', headers: { 'x-csrf-token': sessions[who]!.csrf, 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    const get = (who: string, url: string) => request(sessions[who]!.jar, `${base}${url}`);
    const json = async <T>(r: Response, status: number): Promise<T> => {
      const text = await r.text();
      assert.equal(r.status, status, text);
      return JSON.parse(text) as T;
    };
    type Alert = { id: number; kind: string; ref: string; decision?: string; redundancy: { priors: Array<{ StudyInstanceUID: string; site: string; StudyDate: string; modality: string; bodyPart: string }>; elsewhere?: number } };

    before(async () => {
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({
        index: db.config, hl7: true,
        configure: (c) => {
          c.hl7.senders = [
            { application: 'RIS_NORD', facility: 'CHU_NORD', site: 'CHU-NORD' },
            { application: 'RIS_SUD', facility: 'CLIN_SUD', site: 'CLIN-SUD' },
          ];
        },
      });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      // One person, one qualified INS, a record at each site.
      assert.equal((await sendHl7(atrium.hl7!.port, adt('RIS_SUD', 'CLIN_SUD', 'RS-100', 'CLINSUD'))).code, 'AA');
      assert.equal((await sendHl7(atrium.hl7!.port, adt('RIS_NORD', 'CHU_NORD', 'RN-100', 'CHUNORD'))).code, 'AA');
      const stored = await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [priorCT.file, radiationDoseSR(work, 'RS-100', priorCT.uids.study, sixWeeksAgo, 'complete')]);
      assert.equal(stored.status, 200, await stored.text());
      // An exam of the person at the ordering site (another region): the portal opens the record by it.
      const chest = syntheticInstance({ PatientID: 'RN-100', PatientName: 'Redondant^Rose', Modality: 'CT', StudyDate: sixWeeksAgo, Rows: 4, Columns: 4, extra: [{ tag: tag(0x0018, 0x0015), vr: 'CS', value: Buffer.from('CHEST ') }] });
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [chest.file])).status, 200);
      // The prior's dose on record (DLP 800 mGy.cm on the head: 1.68 mSv), as `atrium serve` records it behind ingest.
      await new DoseRecording(atrium.archive.index.sql, atrium.archive.outbox, pino({ level: 'silent' })).drain();
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'med.nord', displayName: 'Dr Nord', roles: ['referring-physician'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'med.sud', displayName: 'Dr Sud', roles: ['referring-physician'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'admin.ght', displayName: 'Admin GHT', roles: ['territory-admin'], sites: [], password }, by);
      for (const who of ['med.nord', 'med.sud', 'admin.ght']) sessions[who] = await loginLocal(base, who, password);
    });

    after(async () => {
      await atrium?.close();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    it('accepts an order for a head CT done at another site six weeks ago with a warning in the ACK (ERR severity W), and lists the alert without naming the prior to the ordering site', async () => {
      const ack = await sendHl7(atrium.hl7!.port, orm('ACC-R1', 'CTHEAD^Scanner cérébral'));
      assert.equal(ack.code, 'AA', ack.text);
      const err = ack.message.segments.find((s) => s.id === 'ERR');
      assert.ok(err, ack.text);
      assert.match(ack.text, /\|W\|/);
      assert.match(ack.text, /ACC-R1: possible redundant exam: 1 CT HEAD exam\(s\).*0 at this site, 1 elsewhere/);
      assert.doesNotMatch(ack.text, new RegExp(priorCT.uids.study.replaceAll('.', '\\.')));
      // An order of another region raises nothing.
      const knee = await sendHl7(atrium.hl7!.port, orm('ACC-R2', 'CTKNEE^Scanner du genou'));
      assert.equal(knee.code, 'AA');
      assert.ok(!knee.message.segments.some((s) => s.id === 'ERR'), knee.text);

      const body = await (await get('med.nord', '/api/redundancy/alerts?kind=order')).text();
      const alerts = JSON.parse(body) as Alert[];
      assert.deepEqual(alerts.map((a) => [a.ref, a.redundancy.priors.length, a.redundancy.elsewhere]), [['ACC-R1', 0, 1]]);
      assert.ok(!body.includes(priorCT.uids.study), 'the ordering site is not told which study the other site holds');
      // The territory sees the prior named.
      const all = await json<Alert[]>(await get('admin.ght', '/api/redundancy/alerts?kind=order'), 200);
      assert.deepEqual(all[0]!.redundancy.priors, [{ StudyInstanceUID: priorCT.uids.study, site: 'CLIN-SUD', StudyDate: sixWeeksAgo, modality: 'CT', bodyPart: 'HEAD' }]);
    });

    it('answers a teleradiology request with its redundancy, the prior named only to a caller who may see it, and flags it on the worklist', async () => {
      const created = await json<{ id: number; redundancy?: { priors: unknown[]; elsewhere?: number } }>(await send('med.nord', '/api/teleradiology/requests', {
        site: 'CHU-NORD', patient: { PatientID: 'RN-100' }, AccessionNumber: 'ACC-R1', urgency: 'urgent', modality: 'CT', bodyPart: 'HEAD', specialty: 'neuro',
        clinicalContext: 'Céphalées', clinicalQuestion: 'Saignement ?', requestingPhysician: { name: 'Dr Nord' }, proposedProtocol: 'TDM cérébrale sans injection',
      }), 201);
      assert.deepEqual(created.redundancy && { priors: created.redundancy.priors, elsewhere: created.redundancy.elsewhere }, { priors: [], elsewhere: 1 });
      const seen = await json<{ redundancy?: { priors: Array<{ StudyInstanceUID: string; site: string; StudyDate: string; modality: string; bodyPart: string }> } }>(
        await get('admin.ght', `/api/teleradiology/requests/${created.id}`), 200);
      assert.deepEqual(seen.redundancy?.priors, [{ StudyInstanceUID: priorCT.uids.study, site: 'CLIN-SUD', StudyDate: sixWeeksAgo, modality: 'CT', bodyPart: 'HEAD' }]);
      const worklist = await json<Array<{ id: number; redundancy?: { priors: number } }>>(await get('admin.ght', '/api/teleradiology/worklist'), 200);
      assert.deepEqual(worklist.find((e) => e.id === created.id)?.redundancy, { priors: 1 });
    });

    it('shows a professional opening the patient in the portal a banner of recent exams at other sites, those they may not open counted, not named', async () => {
      const url = '/api/patients/timeline?site=CHU-NORD&PatientID=RN-100';
      const body = await (await get('med.nord', url)).text();
      const mine = JSON.parse(body) as { recentElsewhere?: { priors: unknown[]; elsewhere?: number } };
      assert.deepEqual(mine.recentElsewhere && [mine.recentElsewhere.priors, mine.recentElsewhere.elsewhere], [[], 1], body);
      assert.ok(!body.includes(priorCT.uids.study));
      const territory = await json<{ recentElsewhere?: { priors: Array<{ StudyInstanceUID: string; site: string }> } }>(await get('admin.ght', url), 200);
      assert.deepEqual(territory.recentElsewhere?.priors.map((p) => [p.StudyInstanceUID, p.site]), [[priorCT.uids.study, 'CLIN-SUD']]);
    });

    it('shows the banner in the portal, the prior opened in the viewer in one click, and the person\'s dose on request', { skip: !haveChromium && 'Chromium is not installed' }, async () => {
      const browsers = new Browsers();
      try {
        const page = await browsers.open();
        await page.goto(`${base}/app/`);
        await page.locator('input[name=login]').fill('admin.ght');
        await page.locator('input[name=password]').fill(password);
        await page.getByRole('button', { name: 'Se connecter', exact: true }).click();
        await page.getByTestId('who').waitFor();
        await page.goto(`${base}/app/patients?site=CHU-NORD&PatientID=RN-100`);
        const banner = page.getByTestId('recent-elsewhere');
        await banner.waitFor();
        assert.match(await banner.innerText(), /Examens récents dans d'autres sites[\s\S]*CT HEAD · CLIN-SUD/);
        await banner.getByTestId('open-recent').click();
        await page.waitForURL(`${base}/app/viewer?StudyInstanceUID=${priorCT.uids.study}`);
        // The person's dose, on request: the prior's RDSR (DLP 800 mGy.cm on the head), its effective dose and the method.
        await page.goto(`${base}/app/patients?site=CHU-NORD&PatientID=RN-100`);
        await page.getByTestId('show-dose').click();
        const dose = page.getByTestId('dose');
        await dose.waitFor();
        assert.match(await dose.innerText(), /CT\s+HEAD\s+50\s+800\s+1\.68\s+1\.68[\s\S]*AAPM Report 96/);
      } finally {
        await browsers.close();
      }
    });

    it('records the requesting side\'s decision: kept needs a reason, cancelled takes the order off the worklist, another site\'s alert does not exist; the activity counts them', async () => {
      const alerts = await json<Alert[]>(await get('med.nord', '/api/redundancy/alerts?undecided=true'), 200);
      const order = alerts.find((a) => a.kind === 'order')!;
      const tele = alerts.find((a) => a.kind === 'tele-request')!;
      await json(await send('med.nord', `/api/redundancy/alerts/${tele.id}/decision`, { decision: 'kept' }), 400);
      assert.equal((await json<Alert>(await send('med.nord', `/api/redundancy/alerts/${tele.id}/decision`, { decision: 'kept', reason: 'nouveau déficit depuis le scanner' }), 200)).decision, 'kept');
      await json(await send('med.sud', `/api/redundancy/alerts/${order.id}/decision`, { decision: 'cancelled' }), 404);
      assert.equal((await json<Alert>(await send('med.nord', `/api/redundancy/alerts/${order.id}/decision`, { decision: 'cancelled' }), 200)).decision, 'cancelled');
      await json(await send('med.nord', `/api/redundancy/alerts/${order.id}/decision`, { decision: 'kept', reason: 'x' }), 409);
      const siteId = atrium.archive.sites.get('CHU-NORD')!.id;
      assert.equal((await new ScheduledProcedures(atrium.archive.index.sql).findByAccession(siteId, 'ACC-R1'))!.status, 'CANCELED');
      const activity = await json<{ alerts: number; kept: number; cancelled: number; undecided: number; doseAvoided_mSv: number }>(
        await get('med.nord', '/api/redundancy/activity?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z'), 200);
      // The cancelled CT would have cost what its prior did: 800 mGy.cm x 0.0021 on the head.
      assert.deepEqual(activity, { alerts: 2, kept: 1, cancelled: 1, undecided: 0, doseAvoided_mSv: 1.68 });
    });
  });
}
