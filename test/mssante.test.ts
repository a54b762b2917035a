/**
 * Signed reports over MSSanté, through the public interfaces, against a real mail operator on
 * loopback (test/support/mail-servers.ts: an SMTP submission server requiring STARTTLS and a
 * client certificate, dovecot serving the mailboxes over IMAP with TLS): a report signed in
 * teleradiology reaches the requesting physician's mailbox as an IHE XDM archive (CDA, KOS)
 * with the PDF, and the patient's when the site allows; the physician's MDN comes back and is
 * recorded against the delivery (GET .../deliveries), an MDN's error code too; a server that
 * is down or refuses the site's certificate leaves the delivery queued and retried, never
 * lost; a refused address is shown bounced.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import { pino } from 'pino';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { loginLocal, request, type CookieJar } from './support/browser-session.ts';
import { makeCertificates } from './support/rsyslog.ts';
import { haveDovecot, TestMailServers } from './support/mail-servers.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { ReportDelivery } from '../src/exchange/report-delivery.ts';
import { SiteReportSender, SiteReportsConsumer } from '../src/exchange/mssante/site-reports.ts';
import { sendHl7 } from './support/hl7.ts';
import { INS_OIDS, insKeyOf, parseINS } from '../src/patients/ins.ts';
import { insOtherPatientIDsItem } from '../src/patients/ins-dicom.ts';

const password = 'un mot de passe assez long pour les tests';
const mailPassword = 'mot de passe des boites de test';
const SITE = 'imagerie@clin-sud.mssante.fr';
const PHYSICIAN = 'paul.urgentiste@hopital.mssante.fr';
const UNKNOWN = 'personne@hopital.mssante.fr';
const COPY_BY_RPPS = 'dr.traitant@cabinet.mssante.fr';
const COPY_TYPED = 'secretariat.ortho@hopital.mssante.fr';
const FROM_ANNUAIRE = 'dr.annuaire@chu-est.mssante.fr';
const ins = (() => {
  const m = '2800175123456';
  return parseINS(m + insKeyOf(m), INS_OIDS.NIR_TEST);
})();
const patientAddress = `${ins.matricule}${ins.key}@patient.mssante.fr`;

interface DeliveryView { id: number; channel: string; destination: string; status: string; attempts: number; resultStatus: string; lastError?: string; answer?: { status: string; code?: string; label?: string } }

function unzip(zip: Buffer, into: string): string[] {
  mkdirSync(into, { recursive: true });
  const file = path.join(into, '..', `${path.basename(into)}.zip`);
  writeFileSync(file, zip);
  if (existsSync('/usr/bin/unzip')) execFileSync('/usr/bin/unzip', ['-q', file, '-d', into]);
  else execFileSync('/usr/bin/python3', ['-m', 'zipfile', '-e', file, into]);
  const list = (dir: string, prefix = ''): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => e.isDirectory() ? list(path.join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`]);
  return list(into).sort();
}

for (const engine of testDatabases()) {
  describe(`signed reports sent over MSSanté (${engine.name})`, { skip: haveDovecot ? false : 'dovecot (Debian dovecot-imapd) and root are needed' }, () => {
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-mssante-'));
    const pki = path.join(work, 'pki');
    let mail: TestMailServers;
    let atrium: RunningAtrium;
    let delivery: ReportDelivery;
    let cleanup: () => Promise<void>;
    let base: string;
    let studyCount = 0;
    /** The Annuaire Santé FHIR API's double: one practitioner, an MSSanté address on their role. */
    const annuaireCalls: Array<{ url: string; key: string | undefined }> = [];
    const annuaire: Server = createServer((req, res) => {
      annuaireCalls.push({ url: req.url ?? '', key: req.headers['esante-api-key'] as string | undefined });
      const found = (req.url ?? '').includes('identifier=10006666666');
      res.writeHead(200, { 'content-type': 'application/fhir+json' });
      res.end(JSON.stringify({
        resourceType: 'Bundle', type: 'searchset', total: found ? 1 : 0,
        entry: found ? [
          { resource: { resourceType: 'Practitioner', id: 'p1', telecom: [{ system: 'email', value: 'perso@example.fr' }] } },
          { resource: { resourceType: 'PractitionerRole', id: 'r1', practitioner: { reference: 'Practitioner/p1' }, telecom: [{ system: 'email', value: FROM_ANNUAIRE }] } },
        ] : [],
      }));
    });
    const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
    const cert = (name: string) => ({ cert: path.join(pki, `${name}.crt`), key: path.join(pki, `${name}.key`) });
    const siteCert = path.join(work, 'site.crt');
    const siteKey = path.join(work, 'site.key');

    const call = async (who: string, method: string, url: string, body?: unknown) => {
      const r = await request(sessions[who]!.jar, `${base}${url}`, {
        method, headers: { 'x-csrf-token': sessions[who]!.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const t = await r.text();
      assert.ok(r.status < 300, `${method} ${url}: ${r.status} ${t}`);
      return JSON.parse(t) as unknown;
    };
    const deliveries = async (requestId: number) => ((await call('manip.sud', 'GET', `/api/teleradiology/requests/${requestId}/deliveries`)) as DeliveryView[]).filter((d) => d.channel === 'mssante');
    /** A request for a new study of the patient, its report drafted; signed unless told otherwise. */
    const reportedRequest = async (rpps: string | undefined, sign = true, recipients: { mssante?: string; copies?: unknown[] } = {}): Promise<number> => {
      const study = syntheticInstance({
        PatientID: 'MSS-1', PatientName: 'DUBOIS^Anne', PatientBirthDate: '19800101', PatientSex: 'F', Modality: 'CT', Rows: 4, Columns: 4,
        extra: [{ tag: 0x00101002, vr: 'SQ', items: [insOtherPatientIDsItem(ins)] }],
      });
      studyCount++;
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [study.file])).status, 200);
      await atrium.identities.drain();
      const created = await call('manip.sud', 'POST', '/api/teleradiology/requests', {
        patient: { PatientID: 'MSS-1' }, StudyInstanceUID: study.uids.study, AccessionNumber: `ACC-MSS-${studyCount}`, urgency: 'urgent', modality: 'CT', bodyPart: 'KNEE', specialty: 'msk',
        clinicalContext: 'Chute à ski', clinicalQuestion: 'Fracture du plateau tibial ?', requestingPhysician: { name: 'URGENTISTE^Paul', ...(rpps ? { rpps } : {}), ...(recipients.mssante ? { mssante: recipients.mssante } : {}) },
        ...(recipients.copies ? { copies: recipients.copies } : {}), proposedProtocol: 'Scanner du genou sans injection',
      }) as { id: number };
      await call('rad.a', 'POST', `/api/teleradiology/requests/${created.id}/protocol`, { decision: 'validated' });
      await call('rad.a', 'POST', `/api/teleradiology/requests/${created.id}/claim`);
      await call('rad.a', 'PUT', `/api/teleradiology/requests/${created.id}/report`, { findings: 'Pas de trait de fracture.', conclusion: 'Pas de fracture' });
      if (sign) await call('rad.a', 'POST', `/api/teleradiology/requests/${created.id}/report/sign`, {});
      return created.id;
    };
    /** The physician's mail client answering a message with an MDN (RFC 8098), sent through the operator. */
    const answerWithMdn = async (original: { messageId: string }, disposition: string, error?: string) => {
      const transport = nodemailer.createTransport({
        host: '127.0.0.1', port: mail.smtpPort, secure: false, requireTLS: true,
        tls: { ca: readFileSync(path.join(pki, 'operator-ca.crt')), cert: readFileSync(cert('physician').cert), key: readFileSync(cert('physician').key) },
      });
      const boundary = 'mdn-boundary-1';
      const raw = [
        `From: ${PHYSICIAN}`, `To: ${SITE}`, 'Subject: Accusé de traitement', `Message-ID: <mdn.${Date.now()}@hopital.mssante.fr>`, 'MIME-Version: 1.0',
        `Content-Type: multipart/report; report-type=disposition-notification; boundary="${boundary}"`, '',
        `--${boundary}`, 'Content-Type: text/plain; charset=utf-8', '', 'Votre message a été traité.', '',
        `--${boundary}`, 'Content-Type: message/disposition-notification', '',
        'Reporting-UA: hopital.mssante.fr; Logiciel DPI', `Final-Recipient: rfc822;${PHYSICIAN}`, `Original-Message-ID: ${original.messageId}`,
        `Disposition: automatic-action/MDN-sent-automatically; ${disposition}`, ...(error ? [`Error: ${error}`] : []), '',
        `--${boundary}--`, '',
      ].join('\r\n');
      await transport.sendMail({ envelope: { from: PHYSICIAN, to: [SITE] }, raw });
      transport.close();
    };
    const lastMessageTo = async (user: string) => {
      const all = await mail.messages(user, cert(user === SITE ? 'clin-sud' : 'physician'));
      return simpleParser(all.at(-1)!);
    };

    before(async () => {
      makeCertificates(pki, 'operator-ca', [{ name: 'server', usage: 'server' }, { name: 'clin-sud', usage: 'client' }, { name: 'physician', usage: 'client' }]);
      makeCertificates(path.join(pki, 'rogue'), 'rogue-ca', [{ name: 'rogue', usage: 'client' }]);
      copyFileSync(cert('clin-sud').cert, siteCert);
      copyFileSync(cert('clin-sud').key, siteKey);
      mail = new TestMailServers({
        dir: path.join(work, 'operator'), ca: path.join(pki, 'operator-ca.crt'), cert: path.join(pki, 'server.crt'), key: path.join(pki, 'server.key'),
        users: [SITE, PHYSICIAN], password: mailPassword,
      });
      await mail.start();
      mail.unknown.add(UNKNOWN);
      const directory = path.join(work, 'annuaire.json');
      writeFileSync(directory, JSON.stringify([{ rpps: '10009999999', address: PHYSICIAN }, { rpps: '10008888888', address: UNKNOWN }, { rpps: '10007777777', address: COPY_BY_RPPS }]));
      process.env.ATRIUM_TEST_MSS_IMAP = mailPassword;
      process.env.ATRIUM_TEST_ANNUAIRE_KEY = 'clef-de-test';
      await new Promise<void>((resolve) => annuaire.listen(0, '127.0.0.1', resolve));
      const annuairePort = (annuaire.address() as { port: number }).port;
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({
        index: db.config, hl7: true,
        configure: (c) => {
          c.hl7.senders = [{ application: 'RIS_SUD', facility: 'CLIN_SUD', site: 'CLIN-SUD' }];
          c.teleradiology.delivery = { ackTimeoutMs: 5_000, retryBaseMs: 1, maxAttempts: 5, pollMs: 50 };
          c.teleradiology.mssante = {
            smtp: { host: '127.0.0.1', port: mail.smtpPort }, imap: { host: '127.0.0.1', port: mail.imapPort }, caFile: path.join(pki, 'operator-ca.crt'),
            productReference: 'ATRIUM-TEST-0001', directoryFile: directory, timeoutMs: 5_000, pollMs: 1_000,
            annuaire: { baseUrl: `http://127.0.0.1:${annuairePort}/fhir/v2`, apiKeyEnv: 'ATRIUM_TEST_ANNUAIRE_KEY' },
            sites: [{ site: 'CLIN-SUD', address: SITE, certFile: siteCert, keyFile: siteKey, imapPasswordEnv: 'ATRIUM_TEST_MSS_IMAP', patients: true }],
          };
        },
      });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      delivery = new ReportDelivery(atrium.archive, atrium.config.teleradiology, pino({ level: 'silent' }));
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'manip.sud', displayName: 'Manipulateur Sud', roles: ['technologist'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'rad.a', displayName: 'LECTEUR^Anne', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10001234567', password }, by);
      for (const who of ['manip.sud', 'rad.a']) sessions[who] = await loginLocal(base, who, password);
    });

    after(async () => {
      await atrium?.close();
      await cleanup?.();
      await mail?.stop();
      await new Promise((resolve) => annuaire.close(resolve));
      rmSync(work, { recursive: true, force: true });
    });

    let firstRequest = 0;

    it('sends a signed report to the physician as an XDM archive (CDA, KOS) with its PDF, and records the MDN that comes back', async () => {
      firstRequest = await reportedRequest('10009999999');
      await delivery.deliverDue();
      const sent = await deliveries(firstRequest);
      assert.deepEqual(sent.map((d) => [d.destination, d.status]).sort(), [[patientAddress, 'sent'], [PHYSICIAN, 'sent']], JSON.stringify(sent));

      const m = await lastMessageTo(PHYSICIAN);
      assert.match(m.subject ?? '', /^XDM\/1\.0\/DDM\+/);
      assert.equal(m.headers.get('x-mss-codecda'), '18748-4');
      assert.equal(m.headers.get('x-mss-ins'), 'O');
      assert.equal(m.headers.get('x-mss-nil'), 'ATRIUM-TEST-0001');
      assert.equal(m.headers.get('x-mss-mes'), undefined, 'the physician may answer');
      assert.match(String(m.headers.get('disposition-notification-to') ? JSON.stringify(m.headers.get('disposition-notification-to')) : ''), new RegExp(SITE.replace(/\./g, '\\.')));
      const zip = m.attachments.find((a) => a.filename === 'IHE_XDM.ZIP');
      const pdf = m.attachments.find((a) => a.contentType === 'application/pdf');
      assert.ok(zip && pdf, m.attachments.map((a) => a.filename).join(', '));
      assert.equal(pdf.content.subarray(0, 5).toString('latin1'), '%PDF-');
      const files = unzip(zip.content, path.join(work, 'xdm1'));
      assert.deepEqual(files, ['IHE_XDM/SUBSET01/DOC0001.XML', 'IHE_XDM/SUBSET01/DOC0002.DCM', 'IHE_XDM/SUBSET01/METADATA.XML', 'INDEX.HTM', 'README.TXT']);
      const read = (f: string) => readFileSync(path.join(work, 'xdm1', f));
      assert.match(read('IHE_XDM/SUBSET01/DOC0001.XML').toString('utf8'), /<ClinicalDocument[\s\S]*18748-4/);
      assert.equal(read('IHE_XDM/SUBSET01/DOC0002.DCM').subarray(128, 132).toString('latin1'), 'DICM');
      const metadata = read('IHE_XDM/SUBSET01/METADATA.XML').toString('utf8');
      assert.match(metadata, /<lcm:SubmitObjectsRequest/);
      assert.doesNotMatch(metadata, /ProvideAndRegister/);
      assert.match(metadata, /<rim:Slot name="URI"><rim:ValueList><rim:Value>DOC0001.XML</);
      assert.match(metadata, /<rim:Slot name="URI"><rim:ValueList><rim:Value>DOC0002.DCM</);
      assert.ok(metadata.includes(`${ins.matricule}${ins.key}^^^&amp;${INS_OIDS.NIR_TEST}&amp;ISO^NH`), 'the patient by qualified INS');
      assert.match(read('INDEX.HTM').toString('utf8'), /DOC0001\.XML/);

      // The patient's mailbox: the same documents, no reply wanted.
      const toPatient = mail.received.find((r) => r.to.includes(patientAddress));
      assert.ok(toPatient);
      const pm = await simpleParser(toPatient.raw);
      assert.equal(pm.headers.get('x-mss-mes'), 'FIN');
      assert.ok(pm.attachments.some((a) => a.filename === 'IHE_XDM.ZIP'));

      await answerWithMdn({ messageId: m.messageId! }, 'processed');
      assert.equal(await delivery.mssante!.readAnswers(), 1);
      const answered = (await deliveries(firstRequest)).find((d) => d.destination === PHYSICIAN)!;
      assert.deepEqual(answered.answer && [answered.answer.status], ['processed']);
      assert.equal(await delivery.mssante!.readAnswers(), 0, 'an answer is read once');
    });

    it('shows an MDN error code and label on the report\'s delivery', async () => {
      await call('rad.a', 'POST', `/api/teleradiology/requests/${firstRequest}/report/addenda`, { text: 'Fissure du plateau tibial externe.' });
      await delivery.deliverDue();
      const m = await lastMessageTo(PHYSICIAN);
      await answerWithMdn({ messageId: m.messageId! }, 'processed/error', '2.4 Document non intégrable dans le dossier');
      assert.equal(await delivery.mssante!.readAnswers(), 1);
      const amended = (await deliveries(firstRequest)).filter((d) => d.destination === PHYSICIAN && d.resultStatus === 'C');
      assert.equal(amended.length, 1);
      assert.deepEqual(amended[0]!.answer && [amended[0]!.answer.status, amended[0]!.answer.code, amended[0]!.answer.label], ['error', '2.4', 'Document non intégrable dans le dossier']);
      assert.match(amended[0]!.lastError ?? '', /MDN 2\.4/);
    });

    it('sends to the address typed in the request and to the copies it names (by address or RPPS), and refuses a copy that is no address', async () => {
      const requestId = await reportedRequest(undefined, true, { mssante: PHYSICIAN, copies: [{ name: 'Secrétariat', mssante: COPY_TYPED }, { rpps: '10007777777' }] });
      await delivery.deliverDue();
      const sent = await deliveries(requestId);
      assert.deepEqual(sent.map((d) => [d.destination, d.status]).sort(), [[patientAddress, 'sent'], [COPY_BY_RPPS, 'sent'], [PHYSICIAN, 'sent'], [COPY_TYPED, 'sent']].sort());
      for (const to of [COPY_TYPED, COPY_BY_RPPS]) {
        const m = mail.received.find((r) => r.to.includes(to));
        assert.ok(m, to);
        assert.ok((await simpleParser(m.raw)).attachments.some((a) => a.filename === 'IHE_XDM.ZIP'));
      }
      const r = await request(sessions['manip.sud']!.jar, `${base}/api/teleradiology/requests`, {
        method: 'POST', headers: { 'x-csrf-token': sessions['manip.sud']!.csrf, 'content-type': 'application/json' },
        body: JSON.stringify({
          patient: { PatientID: 'MSS-1' }, AccessionNumber: 'ACC-MSS-X', urgency: 'routine', modality: 'CT', bodyPart: 'KNEE', specialty: 'msk', clinicalContext: 'x', clinicalQuestion: 'y',
          requestingPhysician: { name: 'URGENTISTE^Paul' }, copies: [{ name: 'Sans adresse' }], proposedProtocol: 'z',
        }),
      });
      assert.equal(r.status, 400);
      assert.match(await r.text(), /copies\[0\] names an MSSanté address or an RPPS/);
    });

    it('finds an RPPS the directory file lacks in the Annuaire Santé FHIR API, and fails one nobody knows', async () => {
      const requestId = await reportedRequest(undefined, true, { copies: [{ rpps: '10006666666' }, { rpps: '10005555555' }] });
      await delivery.deliverDue();
      const sent = await deliveries(requestId);
      assert.ok(mail.received.some((r) => r.to.includes(FROM_ANNUAIRE)));
      assert.deepEqual(sent.find((d) => d.destination === FROM_ANNUAIRE)?.status, 'sent', JSON.stringify(sent));
      const unknown = sent.find((d) => d.destination === 'rpps:10005555555')!;
      assert.deepEqual([unknown.status, unknown.lastError], ['failed', 'no MSSanté address for RPPS 10005555555 in the directory']);
      assert.ok(annuaireCalls.some((c) => c.url.startsWith('/fhir/v2/Practitioner?identifier=10006666666') && c.key === 'clef-de-test'));
    });

    it('sends a report received from the site\'s RIS (ORU^R01 with a PDF) to the physician OBR-16 names, shown with the study\'s documents', async () => {
      const study = syntheticInstance({
        PatientID: 'MSS-1', PatientName: 'DUBOIS^Anne', PatientBirthDate: '19800101', PatientSex: 'F', Modality: 'DX', Rows: 4, Columns: 4,
        extra: [{ tag: 0x00101002, vr: 'SQ', items: [insOtherPatientIDsItem(ins)] }],
      });
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [study.file])).status, 200);
      await atrium.identities.drain();
      const pdf = Buffer.from('%PDF-1.4\n% compte rendu du RIS\n%%EOF\n');
      const message = [
        'MSH|^~\\&|RIS_SUD|CLIN_SUD|ATRIUM|GHT|20261206100000||ORU^R01^ORU_R01|RISMSS1|P|2.5|||||FRA|UNICODE UTF-8',
        'PID|1||MSS-1^^^CLINSUD^PI||DUBOIS^Anne',
        'OBR|1|RIS-9|RIS-ACC-9|18748-4^CR imagerie^LN|||20261206090000|||||||||10009999999^URGENTISTE^Paul||||||20261206103000|||F|||||||10007654321&RADIOLOGUE&Jean',
        `ZDS|${study.uids.study}^Atrium^Application^DICOM`,
        `OBX|1|ED|18748-4^CR d'imagerie médicale^LN||^application^pdf^Base64^${pdf.toString('base64')}||||||F`,
      ].join('\r');
      const ack = await sendHl7(atrium.hl7!.port, Buffer.from(message, 'utf8'));
      assert.equal(ack.code, 'AA', ack.text);
      const queue = new SiteReportsConsumer(atrium.archive, atrium.config.teleradiology.mssante!, pino({ level: 'silent' }), 50);
      const sender = new SiteReportSender(atrium.archive, delivery.mssante!, atrium.config.teleradiology, pino({ level: 'silent' }));
      await queue.drain();
      assert.equal(await sender.deliverDue(), 2, 'the physician and the patient');
      const m = await lastMessageTo(PHYSICIAN);
      assert.equal(m.headers.get('x-mss-codecda'), '18748-4');
      assert.deepEqual(m.attachments.find((a) => a.contentType === 'application/pdf')?.content, pdf, 'the PDF the RIS sent');
      const files = unzip(m.attachments.find((a) => a.filename === 'IHE_XDM.ZIP')!.content, path.join(work, 'xdm-ris'));
      assert.ok(files.includes('IHE_XDM/SUBSET01/DOC0001.XML') && files.includes('IHE_XDM/SUBSET01/DOC0002.DCM'), files.join(', '));
      await answerWithMdn({ messageId: m.messageId! }, 'processed');
      assert.equal(await delivery.mssante!.readAnswers(), 1);
      const listed = await call('manip.sud', 'GET', `/api/studies/${study.uids.study}/documents`) as { mssante?: Array<{ destination: string; status: string; answer?: { status: string } }> };
      assert.deepEqual(listed.mssante?.map((d) => [d.destination, d.status, d.answer?.status]).sort(), [[patientAddress, 'sent', undefined], [PHYSICIAN, 'sent', 'processed']]);
      await queue.drain();
      assert.equal(await sender.deliverDue(), 0, 'a document is sent once');
    });

    it('keeps a delivery queued while the MSSanté server is down, and sends it once it is back', async () => {
      await mail.stopSmtp();
      const requestId = await reportedRequest('10009999999');
      await delivery.deliverDue();
      const waiting = (await deliveries(requestId)).find((d) => d.destination === 'rpps:10009999999')!;
      assert.equal(waiting.status, 'pending');
      assert.equal(waiting.attempts, 1);
      assert.match(waiting.lastError ?? '', /ECONNREFUSED|ECONNECTION|connect/i);
      await mail.startSmtp();
      await new Promise((r) => setTimeout(r, 5)); // past the retry delay (retryBaseMs 1)
      await delivery.deliverDue();
      const sent = (await deliveries(requestId)).find((d) => d.id === waiting.id)!;
      assert.deepEqual([sent.status, sent.attempts, sent.destination], ['sent', 2, PHYSICIAN]);
    });

    it('keeps a delivery queued when the server refuses the site\'s certificate, and retries it', async () => {
      copyFileSync(path.join(pki, 'rogue', 'rogue.crt'), siteCert);
      copyFileSync(path.join(pki, 'rogue', 'rogue.key'), siteKey);
      const before = mail.received.length;
      const requestId = await reportedRequest('10009999999');
      await delivery.deliverDue();
      const waiting = (await deliveries(requestId)).find((d) => d.destination === 'rpps:10009999999')!;
      assert.equal(waiting.status, 'pending');
      assert.ok(waiting.lastError, 'the refusal is shown');
      assert.equal(mail.received.length, before, 'nothing went through');
      copyFileSync(cert('clin-sud').cert, siteCert);
      copyFileSync(cert('clin-sud').key, siteKey);
      await new Promise((r) => setTimeout(r, 5));
      await delivery.deliverDue();
      assert.equal((await deliveries(requestId)).find((d) => d.id === waiting.id)!.status, 'sent');
    });

    it('shows an address the operator refuses as bounced, and a later bounce notice too', async () => {
      mail.unknown.add(patientAddress);
      const requestId = await reportedRequest('10008888888');
      await delivery.deliverDue();
      mail.unknown.delete(patientAddress);
      const bounced = (await deliveries(requestId)).find((d) => d.destination.startsWith('rpps:') || d.destination === UNKNOWN)!;
      assert.equal(bounced.status, 'bounced');
      assert.match(bounced.lastError ?? '', /550|mailbox unknown/);
      // The patient's address (their INS) is never in what is shown or logged of a refusal.
      const patient = (await deliveries(requestId)).find((d) => d.destination === 'patient')!;
      assert.equal(patient.status, 'bounced');
      assert.match(patient.lastError ?? '', /^the patient's mailbox: .*mailbox unknown/);
      assert.ok(!(patient.lastError ?? '').includes(ins.matricule), patient.lastError);

      // A DSN (RFC 3464) for a message the operator first accepted.
      const other = await reportedRequest('10009999999');
      await delivery.deliverDue();
      const m = await lastMessageTo(PHYSICIAN);
      const boundary = 'dsn-boundary-1';
      mail.deliver(SITE, [
        'From: MAILER-DAEMON@hopital.mssante.fr', `To: ${SITE}`, 'Subject: Undelivered Mail', 'MIME-Version: 1.0',
        `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`, '',
        `--${boundary}`, 'Content-Type: text/plain', '', 'Your message could not be delivered.', '',
        `--${boundary}`, 'Content-Type: message/delivery-status', '', 'Reporting-MTA: dns; mx.hopital.mssante.fr', '',
        `Final-Recipient: rfc822; ${PHYSICIAN}`, 'Action: failed', 'Status: 5.2.2', 'Diagnostic-Code: smtp; 552 5.2.2 mailbox full', '',
        `--${boundary}`, 'Content-Type: text/rfc822-headers', '', `Message-ID: ${m.messageId}`, `From: ${SITE}`, '',
        `--${boundary}--`, '',
      ].join('\r\n'));
      assert.equal(await delivery.mssante!.readAnswers(), 1);
      const later = (await deliveries(other)).find((d) => d.destination === PHYSICIAN)!;
      assert.equal(later.status, 'bounced');
      assert.match(later.lastError ?? '', /5\.2\.2/);
    });
  });
}
