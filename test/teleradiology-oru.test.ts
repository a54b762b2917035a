/**
 * A signed report goes back to its requesting site as ORU^R01 over MLLP, to a real TCP
 * listener speaking MLLP (standing for the site's RIS) that acknowledges, refuses, or is
 * down: refused and unreachable sends are retried with the same control ID, nothing is
 * marked sent before an AA, and every attempt is audited.
 */
import assert from 'node:assert/strict';
import { stowFiles } from './support/stow.ts';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { CookieJar, loginLocal, request } from './support/browser-session.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { findSegment, valueOf, type Hl7Message } from '../src/hl7/message.ts';
import { RisListener } from './support/ris-listener.ts';
import { ReportDelivery } from '../src/exchange/report-delivery.ts';

const password = 'un mot de passe assez long pour les tests';

for (const engine of testDatabases()) {
  describe(`teleradiology reports to the requesting site (${engine.name})`, () => {
    let atrium: RunningAtrium;
    let base: string;
    let cleanup: () => Promise<void>;
    let delivery: ReportDelivery;
    let requestId: number;
    const ris = new RisListener();
    const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
    const knee = syntheticInstance({ PatientID: 'OR-1', PatientName: 'Sud^Hélène', Modality: 'MR', Rows: 4, Columns: 4 });

    const send = async (who: string, url: string, body?: unknown, method = 'POST') => {
      const r = await request(sessions[who]!.jar, `${base}/api/teleradiology${url}`, {
        method, headers: { 'x-csrf-token': sessions[who]!.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await r.text();
      assert.ok(r.status < 300, `${method} ${url}: ${r.status} ${text}`);
      return JSON.parse(text) as Record<string, unknown>;
    };
    const deliveries = async () => (await atrium.archive.index.sql.all<{ status: string; attempts: number; result_status: string; last_error: string | null }>(
      `SELECT status, attempts, result_status, last_error FROM tele_deliveries WHERE channel = 'hl7-oru' ORDER BY id`)).map((d) => ({ ...d, attempts: Number(d.attempts) }));
    const sendAttempts = async () => (await atrium.archive.index.sql.all<{ outcome: string; details: string }>(
      `SELECT outcome, details FROM audit_events WHERE action = 'report-send' ORDER BY id`)).filter((e) => e.details.includes('"hl7-oru"')).map((e) => e.outcome);

    before(async () => {
      const port = await ris.listen();
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({
        index: db.config,
        configure: (c) => {
          c.teleradiology.sites = [{ site: 'CLIN-SUD', oru: { host: '127.0.0.1', port, application: 'RIS', facility: 'CLIN-SUD', characterSet: 'UNICODE UTF-8' } }];
          c.teleradiology.delivery = { ackTimeoutMs: 2_000, retryBaseMs: 1, maxAttempts: 5, pollMs: 50 };
        },
      });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      delivery = new ReportDelivery(atrium.archive, atrium.config.teleradiology, pino({ level: 'silent' }));
      const stored = await stowFiles(`${base}/dicom-web`, atrium.tokens['CLIN-SUD']!, [knee.file]);
      assert.equal(stored.status, 200);
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'manip.sud', displayName: 'Manipulateur Sud', roles: ['technologist'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'rad.a', displayName: 'Dr Anne Lecteur', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
      for (const who of ['manip.sud', 'rad.a']) {
        sessions[who] = await loginLocal(base, who, password);
      }
      const created = await send('manip.sud', '/requests', {
        patient: { PatientID: 'OR-1' }, StudyInstanceUID: knee.uids.study, urgency: 'urgent', modality: 'MR', bodyPart: 'KNEE', specialty: 'msk',
        clinicalContext: 'Entorse', clinicalQuestion: 'Rupture du LCA ?', requestingPhysician: { name: 'Urgentiste^Paul', rpps: '10009999999' },
        proposedProtocol: 'IRM genou',
      });
      requestId = created.id as number;
      await send('rad.a', `/requests/${requestId}/protocol`, { decision: 'validated' });
      await send('rad.a', `/requests/${requestId}/claim`);
      await send('rad.a', `/requests/${requestId}/report`, { fields: { LCA: 'rompu' }, findings: 'Rupture complète du LCA.\nÉpanchement.', conclusion: 'Rupture du LCA | à opérer' }, 'PUT');
    });

    after(async () => {
      await atrium?.close();
      await ris.close().catch(() => {});
      await cleanup?.();
    });

    it('queues nothing before the signature, then sends the final report as ORU^R01, retrying a refusal with the same control ID', async () => {
      assert.deepEqual(await deliveries(), []);
      await send('rad.a', `/requests/${requestId}/report/sign`, {});
      assert.deepEqual((await deliveries()).map((d) => [d.status, d.result_status]), [['pending', 'F']]);
      ris.answers.push('AE');
      assert.equal(await delivery.deliverDue(), 1, 'the encapsulated PDF is stored, the ORU refused');
      const refused = (await deliveries())[0]!;
      assert.deepEqual([refused.status, refused.attempts], ['pending', 1]);
      assert.match(refused.last_error!, /refused with AE: base RIS en maintenance/);
      await new Promise((r) => setTimeout(r, 5));
      assert.equal(await delivery.deliverDue(), 1);
      assert.deepEqual((await deliveries()).map((d) => [d.status, d.attempts]), [['sent', 2]]);
      assert.equal(ris.received.length, 2);
      const [first, second] = ris.received;
      const msh = (m: Hl7Message, n: number, c = 1) => valueOf(findSegment(m, 'MSH'), n, c);
      assert.equal(msh(first!, 10), msh(second!, 10), 'a retry carries the same control ID');
      const m = second!;
      assert.deepEqual([msh(m, 9, 1), msh(m, 9, 2), msh(m, 9, 3), msh(m, 12), msh(m, 18), msh(m, 5), msh(m, 6)], ['ORU', 'R01', 'ORU_R01', '2.5', 'UNICODE UTF-8', 'RIS', 'CLIN-SUD']);
      const pid = findSegment(m, 'PID');
      assert.deepEqual([valueOf(pid, 3, 1), valueOf(pid, 3, 4), valueOf(pid, 5, 1), valueOf(pid, 5, 2)], ['OR-1', 'CLINSUD', 'Sud', 'Hélène']);
      const obr = findSegment(m, 'OBR');
      assert.deepEqual([valueOf(obr, 2), valueOf(obr, 4, 2), valueOf(obr, 16, 1), valueOf(obr, 25), valueOf(obr, 32, 1, 1), valueOf(obr, 32, 1, 2)],
        [`TELE-${requestId}`, 'IRM genou', '10009999999', 'F', 'rad.a', 'Dr Anne Lecteur']);
      const obx = m.segments.filter((s) => s.id === 'OBX');
      assert.deepEqual(obx.map((s) => [valueOf(s, 3, 1), valueOf(s, 5), valueOf(s, 11)]), [
        ['113014', knee.uids.study, 'F'],
        ['LCA', 'rompu', 'F'],
        ['18782-3', 'Rupture complète du LCA.\nÉpanchement.', 'F'],
        ['19005-8', 'Rupture du LCA | à opérer', 'F'],
      ]);
      assert.deepEqual(await sendAttempts(), ['failure', 'success']);
    });

    it('sends an addendum as a corrected result (OBR-25 C) carrying it', async () => {
      await send('rad.a', `/requests/${requestId}/report/addenda`, { text: 'Lésion du ménisque externe associée.' });
      assert.equal(await delivery.deliverDue(), 2);
      const m = ris.received.at(-1)!;
      assert.equal(valueOf(findSegment(m, 'OBR'), 25), 'C');
      const last = m.segments.filter((s) => s.id === 'OBX').at(-1)!;
      assert.deepEqual([valueOf(last, 3, 1), valueOf(last, 5), valueOf(last, 11)], ['55107-7', 'Lésion du ménisque externe associée.', 'C']);
      const list = await request(sessions['manip.sud']!.jar, `${base}/api/teleradiology/requests/${requestId}/deliveries`);
      assert.deepEqual(((await list.json()) as Array<{ channel: string; resultStatus: string; status: string }>).map((d) => [d.channel, d.resultStatus, d.status]),
        [['dicom-pdf', 'F', 'sent'], ['hl7-oru', 'F', 'sent'], ['dicom-pdf', 'C', 'sent'], ['hl7-oru', 'C', 'sent']]);
    });

    it('stores the signed report in its study as a DICOM encapsulated PDF, one object per version, and serves it as FHIR DiagnosticReport and PDF', async () => {
      const r = await fetch(`${base}/dicom-web/studies/${knee.uids.study}/metadata`, { headers: { authorization: `Bearer ${atrium.tokens['CLIN-SUD']!}` } });
      assert.equal(r.status, 200);
      const instances = (await r.json()) as Array<Record<string, { Value?: unknown[]; BulkDataURI?: string }>>;
      const docs = instances.filter((i) => i['00080060']?.Value?.[0] === 'DOC');
      assert.equal(docs.length, 2, 'the final report, then with its addendum');
      for (const d of docs) {
        assert.equal(d['00080016']!.Value![0], '1.2.840.10008.5.1.4.1.1.104.1');
        assert.equal(d['00420012']!.Value![0], 'application/pdf');
        assert.equal(d['00100020']!.Value![0], 'OR-1');
        assert.ok(d['00420011']!.BulkDataURI ?? d['00420011']!.Value, 'the document is there');
      }
      assert.deepEqual(docs.map((d) => d['00200013']!.Value![0]).sort(), [1, 2]);
      const fhir = await request(sessions['manip.sud']!.jar, `${base}/api/teleradiology/requests/${requestId}/report/fhir`);
      assert.match(fhir.headers.get('content-type')!, /^application\/fhir\+json/);
      const dr = (await fhir.json()) as { resourceType: string; status: string; conclusion: string; subject: { identifier: { value: string } }; imagingStudy: Array<{ identifier: { value: string } }>; presentedForm: Array<{ data: string }> };
      assert.deepEqual([dr.resourceType, dr.status, dr.conclusion, dr.subject.identifier.value], ['DiagnosticReport', 'appended', 'Rupture du LCA | à opérer', 'OR-1']);
      assert.equal(dr.imagingStudy[0]!.identifier.value, `urn:oid:${knee.uids.study}`);
      assert.match(Buffer.from(dr.presentedForm[0]!.data, 'base64').toString('utf8'), /Lésion du ménisque externe associée/);
      const pdf = await request(sessions['manip.sud']!.jar, `${base}/api/teleradiology/requests/${requestId}/report/pdf`);
      assert.equal(pdf.headers.get('content-type'), 'application/pdf');
      assert.equal(Buffer.from(await pdf.arrayBuffer()).subarray(0, 5).toString('latin1'), '%PDF-');
    });

    it('leaves a delivery another node sent as sent when its own late attempt then fails (no third send)', async () => {
      await send('rad.a', `/requests/${requestId}/report/addenda`, { text: 'Contrôle à 6 semaines.' });
      const before = ris.received.length;
      // This node's ORU reaches a RIS slow to answer, and is refused at last.
      let answerFirst!: () => void;
      const gate = new Promise<void>((resolve) => { answerFirst = resolve; });
      ris.beforeAnswer = (n) => (n === before + 1 ? gate : Promise.resolve());
      ris.answers.push('AE');
      const late = delivery.deliverDue();
      for (let i = 0; i < 500 && ris.received.length === before; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(ris.received.length, before + 1);
      // Meanwhile another node finds the lease run out (its clock is ahead) and sends it: accepted.
      const other = new ReportDelivery(atrium.archive, atrium.config.teleradiology, pino({ level: 'silent' }));
      assert.equal(await other.deliverDue(new Date(Date.now() + 60_000)), 1);
      assert.equal((await deliveries()).at(-1)!.status, 'sent');
      answerFirst();
      await late;
      ris.beforeAnswer = undefined;
      assert.deepEqual((await deliveries()).map((d) => d.status), ['sent', 'sent', 'sent'], 'the late refusal does not make it pending again');
      assert.equal(await delivery.deliverDue(new Date(Date.now() + 3_600_000)), 0);
      assert.equal(ris.received.length, before + 2);
    });

    it('keeps a delivery pending, with the reason, while the site\'s listener is down', async () => {
      await ris.close();
      await send('rad.a', `/requests/${requestId}/report/addenda`, { text: 'Second addendum.' });
      assert.equal(await delivery.deliverDue(), 1, 'the PDF is stored whatever the RIS');
      const down = (await deliveries()).at(-1)!;
      assert.deepEqual([down.status, down.attempts, down.result_status], ['pending', 1, 'C']);
      assert.match(down.last_error!, /ECONNREFUSED|closed the connection/);
      assert.equal((await sendAttempts()).at(-1), 'failure');
    });
  });
}
