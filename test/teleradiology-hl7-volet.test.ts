/**
 * The CI-SIS teleradiology volet over MLLP: a site's RIS files a request (flux 1), the
 * radiologist's protocol decision in the portal goes back to the RIS as ORU^R01 OK or OC
 * (flux 3), the post-exam message (flux 4) completes the request, and CA cancels it
 * (flux 2). The volet's published examples are the fixtures, sent as they are.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { loginLocal, request, type CookieJar } from './support/browser-session.ts';
import { sendHl7 } from './support/hl7.ts';
import { RisListener } from './support/ris-listener.ts';
import { addUser } from '../src/cli/users.ts';
import { findSegment, parseMessage, valueOf, type Hl7Message } from '../src/hl7/message.ts';
import { ReportDelivery } from '../src/exchange/report-delivery.ts';
import { teleradiologyVolet } from '../src/hl7/teleradiology-volet.ts';

const password = 'un mot de passe assez long pour les tests';
const example = (name: string) => readFileSync(new URL(`./fixtures/cisis-tlr/${name}`, import.meta.url), 'utf8').trim().split('\n').join('\r') + '\r';
const utf8 = (text: string) => Buffer.from(text, 'utf8');
/** An example with its placer order number (ORC-2 and OBR-2 of flux 1 and 2) replaced. */
const withPlacer = (text: string, placer: string) => text.replaceAll('IdentifiantDemandeExamen', placer);

for (const engine of testDatabases()) {
  describe(`the CI-SIS teleradiology volet over HL7 (${engine.name})`, () => {
    let atrium: RunningAtrium;
    let base: string;
    let cleanup: () => Promise<void>;
    let delivery: ReportDelivery;
    let port: number;
    const ris = new RisListener();
    const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};

    const api = async (who: string, url: string, body?: unknown, method = body === undefined ? 'GET' : 'POST') => {
      const r = await request(sessions[who]!.jar, `${base}/api/teleradiology${url}`, {
        method, headers: { 'x-csrf-token': sessions[who]!.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await r.text();
      assert.ok(r.status < 300, `${method} ${url}: ${r.status} ${text}`);
      return JSON.parse(text) as unknown;
    };
    const voletRow = async (placer: string) => atrium.archive.index.sql.get<{ request_id: number; answer_status: string | null; image_retention: string | null; cancelled_at: string | null }>(
      'SELECT request_id, answer_status, image_retention, cancelled_at FROM tlr_volet_orders WHERE placer_order_number = ?', [placer]);
    const requestRow = async (id: number) => (await atrium.archive.index.sql.get<{ status: string; accession_number: string | null; study_instance_uid: string | null; returned_reason: string | null; body_part: string; modality: string; clinical_context: string; requesting_physician_rpps: string | null }>(
      'SELECT status, accession_number, study_instance_uid, returned_reason, body_part, modality, clinical_context, requesting_physician_rpps FROM tele_requests WHERE id = ?', [id]))!;

    before(async () => {
      const risPort = await ris.listen();
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({
        index: db.config,
        hl7: true,
        configure: (c) => {
          c.hl7.senders = [{ application: 'StructureApp', facility: 'StructureFacility', site: 'CLIN-SUD', teleradiologySpecialty: 'neuro' }];
          c.teleradiology.sites = [{ site: 'CLIN-SUD', oru: { host: '127.0.0.1', port: risPort, application: 'StructureApp', facility: 'StructureFacility', characterSet: 'UNICODE UTF-8' } }];
          c.teleradiology.delivery = { ackTimeoutMs: 2_000, retryBaseMs: 1, maxAttempts: 5, pollMs: 50 };
        },
      });
      port = atrium.hl7!.port;
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      delivery = new ReportDelivery(atrium.archive, atrium.config.teleradiology, pino({ level: 'silent' }));
      await addUser(atrium.archive, { login: 'rad.tlr', displayName: 'Dr Télé', roles: ['radiologist'], sites: ['CHU-NORD'], password }, { actor: 'test', via: 'cli' });
      sessions['rad.tlr'] = await loginLocal(base, 'rad.tlr', password);
    });

    after(async () => {
      await atrium?.close();
      await ris.close().catch(() => {});
      await cleanup?.();
    });

    it('accepts the volet\'s flux 1 example as it is and puts the request on the worklist like one filed in the portal', async () => {
      const ack = await sendHl7(port, utf8(example('flux1-orm-o01-nw.hl7')));
      assert.equal(ack.code, 'AA', ack.text);
      const row = (await voletRow('IdentifiantDemandeExamen'))!;
      assert.ok(row, 'the request is linked to its placer number');
      const request = await requestRow(Number(row.request_id));
      assert.equal(request.status, 'awaiting-protocol');
      assert.equal(request.modality, 'MR');
      assert.match(request.body_part, /tête et\/ou cou, côté droit/);
      assert.match(request.clinical_context, /poids 68 kg ; taille 170 cm ; grossesse : non enceinte/);
      assert.equal(request.requesting_physician_rpps, '01234567897', 'the RPPS of the IDNPS');
      const worklist = await api('rad.tlr', '/worklist') as Array<{ id: number; requestingSite: string; specialty: string }>;
      const entry = worklist.find((w) => w.id === Number(row.request_id));
      assert.deepEqual([entry?.requestingSite, entry?.specialty], ['CLIN-SUD', 'neuro']);
      // The patient is the example's: its test INS, with the VALI status of PID-32.
      const identity = await atrium.archive.index.sql.get<{ ins: string; ins_oid: string; status: string }>(
        `SELECT i.ins, i.ins_oid, i.status FROM patient_identities i JOIN tele_requests r ON r.patient_id = i.patient_id WHERE r.id = ?`, [row.request_id]);
      assert.deepEqual(identity, { ins: '279035121518989', ins_oid: '1.2.250.1.213.1.4.10', status: 'validated' });
      // The same request again is a duplicate, nothing filed twice.
      const again = await sendHl7(port, utf8(example('flux1-orm-o01-nw.hl7')));
      assert.deepEqual([again.code, again.errorCode], ['AE', '205']);
    });

    it('sends the protocol validated in the portal back to the RIS as the volet\'s ORU^R01 OK', async () => {
      const { request_id: id } = (await voletRow('IdentifiantDemandeExamen'))!;
      assert.equal(await delivery.deliverDue(), 0, 'nothing is owed before the decision');
      await api('rad.tlr', `/requests/${id}/protocol`, { decision: 'changed', protocol: 'IRM encéphale T1 T2 FLAIR diffusion', reason: 'bilan complet' });
      const before = ris.received.length;
      assert.equal(await delivery.deliverDue(), 1);
      assert.equal(ris.received.length, before + 1);
      const sent = ris.received.at(-1)!;
      const published = parseMessage(example('flux3-oru-r01-ok.hl7'));
      // The segments and the fields the volet fixes are those of its example.
      assert.deepEqual(sent.segments.map((s) => s.id), published.segments.map((s) => s.id));
      const field = (m: Hl7Message, seg: string, n: number, c = 1) => valueOf(findSegment(m, seg), n, c);
      for (const [seg, n, c] of [['MSH', 9, 1], ['MSH', 9, 2], ['MSH', 9, 3], ['MSH', 12, 1], ['MSH', 17, 1], ['MSH', 18, 1], ['MSH', 21, 1], ['MSH', 21, 2],
        ['MSH', 5, 1], ['MSH', 6, 1], ['ORC', 1, 1], ['ORC', 2, 1], ['ORC', 17, 1], ['ORC', 17, 3], ['OBR', 2, 1], ['OBR', 4, 1], ['OBR', 4, 3],
        ['OBX', 2, 1], ['OBX', 3, 1], ['OBX', 3, 3], ['OBX', 11, 1], ['PID', 3, 1], ['PID', 32, 1]] as const) {
        assert.equal(field(sent, seg, n, c), field(published, seg, n, c), `${seg}-${n}.${c}`);
      }
      assert.equal(field(sent, 'MSH', 21, 1), teleradiologyVolet.version);
      assert.equal(field(sent, 'OBX', 5), 'IRM encéphale T1 T2 FLAIR diffusion');
      assert.equal((await voletRow('IdentifiantDemandeExamen'))!.answer_status, 'sent');
      assert.equal(await delivery.deliverDue(), 0, 'answered once');
    });

    it('accepts the volet\'s flux 4 example: the accession number and the images\' retention complete the request', async () => {
      const ack = await sendHl7(port, utf8(example('flux4-omi-o23-sr.hl7')));
      assert.equal(ack.code, 'AA', ack.text);
      const row = (await voletRow('IdentifiantDemandeExamen'))!;
      const request = await requestRow(Number(row.request_id));
      assert.equal(request.accession_number, 'Accession Identifier');
      assert.equal(request.study_instance_uid, null, 'the example\'s placeholder is no UID: not recorded');
      assert.equal(row.image_retention, 'Durée de rétention des images');
      // An OMI^O23 with a real Study Instance UID records it.
      const uid = '1.2.250.1.999.1.20260106.1';
      const real = example('flux4-omi-o23-sr.hl7').replace('ORM^O01^ORM_O01', 'OMI^O23^OMI_O23').replace('IPC|Accession Identifier|Accession number|Study Instance UID', `IPC|ACC-TLR-1|RP1|${uid}`)
        .replace('TQ1||||||Durée de rétention des images', 'TQ1||||||72^h');
      assert.equal((await sendHl7(port, utf8(real))).code, 'AA');
      const after = await requestRow(Number(row.request_id));
      assert.deepEqual([after.accession_number, after.study_instance_uid], ['ACC-TLR-1', uid]);
      assert.equal((await voletRow('IdentifiantDemandeExamen'))!.image_retention, '72 h');
    });

    it('accepts the volet\'s flux 2 example: the request is cancelled and leaves the worklist', async () => {
      const ack = await sendHl7(port, utf8(example('flux2-orm-o01-ca.hl7')));
      assert.equal(ack.code, 'AA', ack.text);
      const row = (await voletRow('IdentifiantDemandeExamen'))!;
      assert.ok(row.cancelled_at);
      const request = await requestRow(Number(row.request_id));
      assert.equal(request.status, 'returned');
      assert.match(request.returned_reason!, /annulée par le demandeur/);
      const worklist = await api('rad.tlr', '/worklist') as Array<{ id: number }>;
      assert.ok(!worklist.some((w) => w.id === Number(row.request_id)));
      // Cancelling a request nobody filed is AE 204.
      const unknown = await sendHl7(port, utf8(withPlacer(example('flux2-orm-o01-ca.hl7'), 'INCONNUE-1')));
      assert.deepEqual([unknown.code, unknown.errorCode], ['AE', '204']);
    });

    it('answers a request the radiologist returns with ORU^R01 OC carrying the reason', async () => {
      assert.equal((await sendHl7(port, utf8(withPlacer(example('flux1-orm-o01-nw.hl7'), 'DEM-OC-1')))).code, 'AA');
      const { request_id: id } = (await voletRow('DEM-OC-1'))!;
      await api('rad.tlr', `/requests/${id}/return`, { reason: 'indication non retenue : échographie d\'abord' });
      assert.equal(await delivery.deliverDue(), 1);
      const sent = ris.received.at(-1)!;
      assert.equal(valueOf(findSegment(sent, 'ORC'), 1), 'OC');
      assert.equal(valueOf(findSegment(sent, 'ORC'), 2), 'DEM-OC-1');
      assert.equal(valueOf(findSegment(sent, 'ORC'), 16, 2), 'indication non retenue : échographie d\'abord');
      assert.equal(findSegment(sent, 'OBX'), undefined, 'no protocol in a refusal');
    });

    it('answers AE naming every mandatory item of the volet that an ORM NW lacks, and files nothing', async () => {
      const lacking = withPlacer(example('flux1-orm-o01-nw.hl7'), 'DEM-AE-1')
        .replace('|||||||||||||||JustificationDemande', '')
        .split('\r').filter((s) => !s.startsWith('OBX|1|CE|LOCALISATION') && !s.startsWith('OBX|2|CE|LOCALISATION')).join('\r');
      const ack = await sendHl7(port, utf8(lacking));
      assert.deepEqual([ack.code, ack.errorCode], ['AE', '101'], ack.text);
      assert.match(ack.errorMessage!, /OBR-31 \(justification de la demande\)/);
      assert.match(ack.errorMessage!, /OBX LOCALISATION_ANATOMIQUE \(localisation anatomique\)/);
      assert.equal(await voletRow('DEM-AE-1'), undefined);
    });

    it('refuses with AR 203 a message of another version of the volet', async () => {
      const other = withPlacer(example('flux1-orm-o01-nw.hl7'), 'DEM-V-1').replace('|||1.0^CISIS_TLR_HL7_V2', '|||9.9^CISIS_TLR_HL7_V2');
      const ack = await sendHl7(port, utf8(other));
      assert.deepEqual([ack.code, ack.errorCode, ack.errorLocation], ['AR', '203', 'MSH-21']);
      assert.equal(await voletRow('DEM-V-1'), undefined);
    });
  });
}
