/**
 * The whole teleradiology chain, end to end, through public interfaces only (issue 17's "done
 * when"): a site's RIS files a request in the CI-SIS teleradiology volet's format over MLLP
 * (ORM^O01 NW, MSH-21 1.0^CISIS_TLR_HL7_V2); the radiologist validates the protocol in the
 * portal's API and the RIS receives the volet's ORU^R01 OK; the post-exam message (OMI^O23)
 * names the study; the images arrive over STOW-RS and are read by the radiologist, who writes
 * and signs the report; the background workers (as `atrium serve` runs them) send it over
 * MSSanté, and the requesting physician's mailbox, read over IMAP from the test operator
 * (test/support/mail-servers.ts: smtp-server with STARTTLS and client certificates, Debian's
 * dovecot), holds an IHE XDM archive that unpacks to the CR-IMG CDA and the KOS, with the PDF
 * beside it; the physician's mail client answers with an MDN, and the delivery is shown as
 * processed by GET /api/teleradiology/requests/{id}/deliveries.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { simpleParser, type ParsedMail } from 'mailparser';
import nodemailer from 'nodemailer';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { loginLocal, request, type CookieJar } from './support/browser-session.ts';
import { makeCertificates } from './support/rsyslog.ts';
import { haveDovecot, TestMailServers } from './support/mail-servers.ts';
import { haveDcmtk, dcmtk } from './support/dcmtk.ts';
import { sendHl7 } from './support/hl7.ts';
import { RisListener } from './support/ris-listener.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { Tags } from '../src/dicom/dataset.ts';
import { newUID } from '../src/dicom/uids.ts';
import { findSegment, valueOf } from '../src/hl7/message.ts';
import { insKeyOf } from '../src/patients/ins.ts';

const password = 'un mot de passe assez long pour les tests';
const mailPassword = 'mot de passe des boites de test';
const SITE = 'imagerie@clin-sud.mssante.fr';
/** The prescriber of the volet's example (ORC-12: IDNPS 8 + RPPS 01234567897), found in the directory. */
const PHYSICIAN = 'adam.hoda@hopital.mssante.fr';
const PHYSICIAN_RPPS = '01234567897';
/** The example's test INS (PID-3) and its authority's OID. */
const INS = '279035121518989';
const INS_OID = '1.2.250.1.213.1.4.10';
const PLACER = 'DEM-CHAINE-1';
const ACCESSION = 'ACC-CHAINE-1';
const CONCLUSION = 'Pas d\'anomalie encéphalique décelable';

/**
 * The volet's flux 1 example, sent as published but for its placer number and PID-32: a site
 * sends documents only for a qualified INS (QUAL), the example says VALI.
 */
const example = (name: string) => readFileSync(new URL(`./fixtures/cisis-tlr/${name}`, import.meta.url), 'utf8').trim().split('\n').join('\r') + '\r';
const flux1 = () => example('flux1-orm-o01-nw.hl7').replaceAll('IdentifiantDemandeExamen', PLACER).replace(/\|N\|VALI\r/, '|N|QUAL\r');

function unzip(zip: Buffer, into: string): string[] {
  mkdirSync(into, { recursive: true });
  const file = `${into}.zip`;
  writeFileSync(file, zip);
  if (existsSync('/usr/bin/unzip')) execFileSync('/usr/bin/unzip', ['-q', file, '-d', into]);
  else execFileSync('/usr/bin/python3', ['-m', 'zipfile', '-e', file, into]);
  const list = (dir: string, prefix = ''): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => e.isDirectory() ? list(path.join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`]);
  return list(into).sort();
}

/** Waits for `probe` to give a value, checking again every 200 ms (the workers poll on their own). */
async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface DeliveryView { id: number; channel: string; destination: string; status: string; resultStatus: string; lastError?: string; answer?: { status: string; code?: string } }

for (const engine of testDatabases()) {
  describe(`teleradiology end to end: volet request in, report to the physician's MSSanté mailbox, MDN back (${engine.name})`, {
    skip: haveDovecot ? false : 'dovecot (Debian dovecot-imapd) and root are needed',
  }, () => {
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-chain-'));
    const pki = path.join(work, 'pki');
    const cert = (name: string) => ({ cert: path.join(pki, `${name}.crt`), key: path.join(pki, `${name}.key`) });
    const ris = new RisListener();
    const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
    let mail: TestMailServers;
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    let base: string;

    const call = async (who: string, method: string, url: string, body?: unknown): Promise<unknown> => {
      const r = await request(sessions[who]!.jar, `${base}${url}`, {
        method, headers: { 'x-csrf-token': sessions[who]!.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const t = await r.text();
      assert.ok(r.status < 300, `${method} ${url}: ${r.status} ${t}`);
      return t === '' ? undefined : JSON.parse(t) as unknown;
    };

    before(async () => {
      makeCertificates(pki, 'operator-ca', [{ name: 'server', usage: 'server' }, { name: 'clin-sud', usage: 'client' }, { name: 'physician', usage: 'client' }]);
      mail = new TestMailServers({
        dir: path.join(work, 'operator'), ca: path.join(pki, 'operator-ca.crt'), cert: path.join(pki, 'server.crt'), key: path.join(pki, 'server.key'),
        users: [SITE, PHYSICIAN], password: mailPassword,
      });
      await mail.start();
      const directory = path.join(work, 'annuaire.json');
      writeFileSync(directory, JSON.stringify([{ rpps: PHYSICIAN_RPPS, address: PHYSICIAN }]));
      process.env.ATRIUM_TEST_CHAIN_IMAP = mailPassword;
      const risPort = await ris.listen();
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({
        index: db.config, hl7: true, teleradiology: true,
        configure: (c) => {
          c.hl7.senders = [{ application: 'StructureApp', facility: 'StructureFacility', site: 'CLIN-SUD', teleradiologySpecialty: 'neuro' }];
          c.teleradiology.sites = [{ site: 'CLIN-SUD', oru: { host: '127.0.0.1', port: risPort, application: 'StructureApp', facility: 'StructureFacility', characterSet: 'UNICODE UTF-8' } }];
          c.teleradiology.delivery = { ackTimeoutMs: 10_000, retryBaseMs: 50, maxAttempts: 10, pollMs: 200 };
          c.teleradiology.mssante = {
            smtp: { host: '127.0.0.1', port: mail.smtpPort }, imap: { host: '127.0.0.1', port: mail.imapPort }, caFile: path.join(pki, 'operator-ca.crt'),
            productReference: 'ATRIUM-CHAINE-0001', directoryFile: directory, timeoutMs: 10_000, pollMs: 500,
            sites: [{ site: 'CLIN-SUD', address: SITE, certFile: cert('clin-sud').cert, keyFile: cert('clin-sud').key, imapPasswordEnv: 'ATRIUM_TEST_CHAIN_IMAP', patients: false }],
          };
        },
      });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      await addUser(atrium.archive, { login: 'rad.neuro', displayName: 'LECTEUR^Thomas', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10001234567', password }, { actor: 'test', via: 'cli' });
      sessions['rad.neuro'] = await loginLocal(base, 'rad.neuro', password);
    });

    after(async () => {
      await atrium?.close();
      await ris.close().catch(() => {});
      await cleanup?.();
      await mail?.stop();
      rmSync(work, { recursive: true, force: true });
    });

    it('carries a request from the RIS to a signed report in the physician\'s mailbox, and records the physician\'s MDN', async () => {
      // 1. The RIS files the request (flux 1): accepted, on the radiologist's worklist.
      const ack = await sendHl7(atrium.hl7!.port, Buffer.from(flux1(), 'utf8'));
      assert.equal(ack.code, 'AA', ack.text);
      const worklist = await call('rad.neuro', 'GET', '/api/teleradiology/worklist') as Array<{ id: number; AccessionNumber?: string; requestingSite: string; status: string }>;
      const entry = worklist.find((w) => w.AccessionNumber === PLACER);
      assert.ok(entry, JSON.stringify(worklist));
      assert.deepEqual([entry.requestingSite, entry.status], ['CLIN-SUD', 'awaiting-protocol']);
      const id = entry.id;

      // 2. The radiologist validates the protocol: the RIS receives the volet's ORU^R01 OK (flux 3), from the delivery worker.
      await call('rad.neuro', 'POST', `/api/teleradiology/requests/${id}/protocol`, { decision: 'validated' });
      const ok = await eventually('the ORU^R01 OK at the RIS', async () => ris.received.find((m) => valueOf(findSegment(m, 'ORC'), 1) === 'OK'));
      assert.equal(valueOf(findSegment(ok, 'MSH'), 9, 1), 'ORU');
      assert.equal(valueOf(findSegment(ok, 'MSH'), 21, 2), 'CISIS_TLR_HL7_V2');
      assert.equal(valueOf(findSegment(ok, 'ORC'), 2), PLACER);
      assert.equal(valueOf(findSegment(ok, 'PID'), 3, 1), INS);

      // 3. After the exam, the RIS names the study (flux 4, OMI^O23): accession number and Study Instance UID.
      const study = newUID();
      const flux4 = example('flux4-omi-o23-sr.hl7').replaceAll('IdentifiantDemandeExamen', PLACER).replace('ORM^O01^ORM_O01', 'OMI^O23^OMI_O23')
        .replace('IPC|Accession Identifier|Accession number|Study Instance UID', `IPC|${ACCESSION}|RP1|${study}`).replace(/\|N\|VALI\r/, '|N|QUAL\r');
      const ack4 = await sendHl7(atrium.hl7!.port, Buffer.from(flux4, 'utf8'));
      assert.equal(ack4.code, 'AA', ack4.text);

      // 4. The images arrive from the site (the patient by INS under its OID, as the RIS named them); the request sees them.
      const image = syntheticInstance({
        StudyInstanceUID: study, PatientID: INS, PatientName: 'PAT-TROIS^DOMINIQUE', PatientBirthDate: '19790328', PatientSex: 'F', Modality: 'MR', Rows: 8, Columns: 8,
        extra: [
          { tag: Tags.IssuerOfPatientID, vr: 'LO', value: Buffer.from(INS_OID, 'latin1') },
          { tag: Tags.AccessionNumber, vr: 'SH', value: Buffer.from(ACCESSION, 'latin1') },
        ],
      });
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [image.file])).status, 200);
      const arrived = await eventually('the images matched to the request', async () => {
        const r = await call('rad.neuro', 'GET', `/api/teleradiology/requests/${id}`) as { imagesArrivedAt?: string; StudyInstanceUID?: string; AccessionNumber?: string };
        return r.imagesArrivedAt ? r : undefined;
      });
      assert.deepEqual([arrived.StudyInstanceUID, arrived.AccessionNumber], [study, ACCESSION]);

      // 5. The radiologist claims the request, reads the images, writes and signs the report.
      await call('rad.neuro', 'POST', `/api/teleradiology/requests/${id}/claim`);
      const metadata = await call('rad.neuro', 'GET', `/dicom-web/studies/${study}/metadata`) as Array<Record<string, { Value?: unknown[] }>>;
      assert.deepEqual(metadata.map((m) => m['00080018']?.Value?.[0]), [image.uids.sop]);
      const frame = await request(sessions['rad.neuro']!.jar, `${base}/dicom-web/studies/${study}/series/${image.uids.series}/instances/${image.uids.sop}/rendered`, { headers: { accept: 'image/png' } });
      assert.equal(frame.status, 200);
      assert.equal(Buffer.from(await frame.arrayBuffer()).subarray(1, 4).toString('latin1'), 'PNG');
      await call('rad.neuro', 'PUT', `/api/teleradiology/requests/${id}/report`, { findings: 'Pas de lésion parenchymateuse. Pas d\'hémorragie.', conclusion: CONCLUSION });
      await call('rad.neuro', 'POST', `/api/teleradiology/requests/${id}/report/sign`, {});

      // 6. The report reaches the physician's mailbox, read over IMAP with the physician's certificate.
      const raw = await eventually('the report in the physician\'s mailbox', async () => (await mail.messages(PHYSICIAN, cert('physician')))[0]);
      const m: ParsedMail = await simpleParser(raw);
      assert.match(m.subject ?? '', /^XDM\/1\.0\/DDM\+/);
      assert.equal(m.from?.value[0]?.address, SITE);
      // Référentiel socle MSSanté #2: X-MSS-CODECDA (ECO.2.4.1) one header, the CDA's code; X-MSS-INS (ECO.2.4.2) O, a
      // qualified INS inside; X-MSS-NIL (ECO.2.4.3) the product reference, on every message.
      assert.equal(m.headers.get('x-mss-codecda'), '18748-4');
      assert.equal(raw.toString('latin1').match(/^X-MSS-CODECDA:/gim)?.length, 1, 'one X-MSS-CODECDA header');
      assert.equal(m.headers.get('x-mss-ins'), 'O');
      assert.equal(m.headers.get('x-mss-nil'), 'ATRIUM-CHAINE-0001');
      const zip = m.attachments.find((a) => a.filename === 'IHE_XDM.ZIP');
      const pdf = m.attachments.find((a) => a.contentType === 'application/pdf');
      assert.ok(zip && pdf, m.attachments.map((a) => a.filename).join(', '));
      assert.equal(pdf.content.subarray(0, 5).toString('latin1'), '%PDF-');

      // 7. The archive unpacks to the XDM layout; its metadata describes the CDA and the KOS it holds.
      const dir = path.join(work, 'xdm');
      assert.deepEqual(unzip(zip.content, dir), ['IHE_XDM/SUBSET01/DOC0001.XML', 'IHE_XDM/SUBSET01/DOC0002.DCM', 'IHE_XDM/SUBSET01/METADATA.XML', 'INDEX.HTM', 'README.TXT']);
      const read = (f: string) => readFileSync(path.join(dir, f));
      const cda = read('IHE_XDM/SUBSET01/DOC0001.XML');
      const kos = read('IHE_XDM/SUBSET01/DOC0002.DCM');
      const metadataXml = read('IHE_XDM/SUBSET01/METADATA.XML').toString('utf8');
      for (const [name, bytes] of [['DOC0001.XML', cda], ['DOC0002.DCM', kos]] as const) {
        assert.ok(metadataXml.includes(`<rim:Value>${name}</rim:Value>`), `${name} is named in METADATA.XML`);
        assert.ok(metadataXml.includes(`<rim:Value>${createHash('sha1').update(bytes).digest('hex')}</rim:Value>`), `${name}'s SHA-1 is in METADATA.XML`);
        assert.ok(metadataXml.includes(`<rim:Value>${bytes.length}</rim:Value>`), `${name}'s size is in METADATA.XML`);
      }
      assert.ok(metadataXml.includes(`${INS}^^^&amp;${INS_OID}&amp;ISO^NH`), 'the submission names the patient by INS');
      assert.match(read('INDEX.HTM').toString('utf8'), /DOC0001\.XML[\s\S]*DOC0002\.DCM/);

      // The CDA: a CR-IMG for this patient (INS), this study, signed by this radiologist, with the conclusion written.
      const cdaText = cda.toString('utf8');
      assert.match(cdaText, /<ClinicalDocument[^>]*xmlns="urn:hl7-org:v3"/);
      assert.match(cdaText, /<code code="18748-4"/);
      assert.match(cdaText, new RegExp(`<id [^>]*root="${INS_OID.replace(/\./g, '\\.')}"[^>]*extension="${INS}"|<id [^>]*extension="${INS}"[^>]*root="${INS_OID.replace(/\./g, '\\.')}"`));
      assert.ok(cdaText.includes(study), 'the study\'s UID');
      assert.ok(cdaText.includes('810001234567'), 'the signing radiologist\'s RPPS as IDNPS');
      assert.ok(cdaText.includes(CONCLUSION.replace(/'/g, '&apos;')) || cdaText.includes(CONCLUSION), 'the conclusion');

      // The KOS, read by DCMTK: a Key Object Selection of this study naming the image, the patient by INS.
      assert.equal(kos.subarray(128, 132).toString('latin1'), 'DICM');
      if (haveDcmtk) {
        const kosFile = path.join(dir, 'IHE_XDM/SUBSET01/DOC0002.DCM');
        const dump = await dcmtk('dcmdump', ['+P', '0008,0016', '+P', '0010,0020', '+P', '0010,0021', '+P', '0020,000d', '+P', '0008,1155', kosFile]);
        assert.equal(dump.code, 0, dump.output);
        assert.match(dump.output, /\(0008,0016\) UI =KeyObjectSelectionDocumentStorage/);
        assert.match(dump.output, new RegExp(`\\(0010,0020\\) LO \\[${INS}\\]`));
        assert.match(dump.output, new RegExp(`\\(0010,0021\\) LO \\[${INS_OID.replace(/\./g, '\\.')}\\]`));
        assert.ok(dump.output.includes(`[${study}]`), dump.output);
        assert.ok(dump.output.includes(`[${image.uids.sop}]`), 'the image is referenced');
      }

      // The PDF is the report's own: the one the API renders for the request.
      const own = await request(sessions['rad.neuro']!.jar, `${base}/api/teleradiology/requests/${id}/report/pdf`);
      assert.equal(own.status, 200);
      assert.deepEqual(pdf.content, Buffer.from(await own.arrayBuffer()));

      // 8. The physician's client answers with an MDN (RFC 8098) through the operator; the answers worker records it.
      const transport = nodemailer.createTransport({
        host: '127.0.0.1', port: mail.smtpPort, secure: false, requireTLS: true,
        tls: { ca: readFileSync(path.join(pki, 'operator-ca.crt')), cert: readFileSync(cert('physician').cert), key: readFileSync(cert('physician').key) },
      });
      const boundary = 'mdn-chaine';
      await transport.sendMail({
        envelope: { from: PHYSICIAN, to: [SITE] },
        raw: [
          `From: ${PHYSICIAN}`, `To: ${SITE}`, 'Subject: Accusé de traitement', `Message-ID: <mdn.chaine.${Date.now()}@hopital.mssante.fr>`, 'MIME-Version: 1.0',
          `Content-Type: multipart/report; report-type=disposition-notification; boundary="${boundary}"`, '',
          `--${boundary}`, 'Content-Type: text/plain; charset=utf-8', '', 'Le compte rendu a été intégré au dossier.', '',
          `--${boundary}`, 'Content-Type: message/disposition-notification', '',
          'Reporting-UA: hopital.mssante.fr; DPI', `Final-Recipient: rfc822;${PHYSICIAN}`, `Original-Message-ID: ${m.messageId}`,
          'Disposition: automatic-action/MDN-sent-automatically; processed', '',
          `--${boundary}--`, '',
        ].join('\r\n'),
      });
      transport.close();
      const answered = await eventually('the MDN recorded on the delivery', async () => {
        const all = (await call('rad.neuro', 'GET', `/api/teleradiology/requests/${id}/deliveries`)) as DeliveryView[];
        const d = all.find((x) => x.channel === 'mssante' && x.destination === PHYSICIAN);
        return d?.answer ? d : undefined;
      });
      assert.deepEqual([answered.status, answered.resultStatus, answered.answer?.status], ['sent', 'F', 'processed']);
      // The report went back to the RIS too (ORU^R01 with the report), as the site asked.
      await eventually('the report at the RIS', async () => ris.received.find((m2) => valueOf(findSegment(m2, 'OBR'), 25) === 'F'));
    });

    it('sends the report of a patient whose INS is validated but not qualified (the example\'s VALI) as its PDF alone: no XDM, no X-MSS-CODECDA nor X-MSS-INS, X-MSS-NIL still', async () => {
      // Another patient of the example's kind, the volet's message as published (PID-32 VALI).
      const matricule = '1790375120123';
      const other = `${matricule}${insKeyOf(matricule)}`;
      const placer = 'DEM-CHAINE-2', accession = 'ACC-CHAINE-2', study = newUID();
      const asked = example('flux1-orm-o01-nw.hl7').replaceAll('IdentifiantDemandeExamen', placer).replaceAll(INS, other);
      assert.equal((await sendHl7(atrium.hl7!.port, Buffer.from(asked, 'utf8'))).code, 'AA');
      const worklist = await call('rad.neuro', 'GET', '/api/teleradiology/worklist') as Array<{ id: number; AccessionNumber?: string }>;
      const id = worklist.find((w) => w.AccessionNumber === placer)!.id;
      await call('rad.neuro', 'POST', `/api/teleradiology/requests/${id}/protocol`, { decision: 'validated' });
      const after = example('flux4-omi-o23-sr.hl7').replaceAll('IdentifiantDemandeExamen', placer).replaceAll(INS, other).replace('ORM^O01^ORM_O01', 'OMI^O23^OMI_O23')
        .replace('IPC|Accession Identifier|Accession number|Study Instance UID', `IPC|${accession}|RP1|${study}`);
      assert.equal((await sendHl7(atrium.hl7!.port, Buffer.from(after, 'utf8'))).code, 'AA');
      const image = syntheticInstance({
        StudyInstanceUID: study, PatientID: other, PatientName: 'PAT-TROIS^DOMINIQUE', PatientBirthDate: '19790328', PatientSex: 'F', Modality: 'MR', Rows: 8, Columns: 8,
        extra: [{ tag: Tags.IssuerOfPatientID, vr: 'LO', value: Buffer.from(INS_OID, 'latin1') }, { tag: Tags.AccessionNumber, vr: 'SH', value: Buffer.from(accession, 'latin1') }],
      });
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [image.file])).status, 200);
      await eventually('the images matched to the request', async () => ((await call('rad.neuro', 'GET', `/api/teleradiology/requests/${id}`)) as { imagesArrivedAt?: string }).imagesArrivedAt);
      await call('rad.neuro', 'POST', `/api/teleradiology/requests/${id}/claim`);
      await call('rad.neuro', 'PUT', `/api/teleradiology/requests/${id}/report`, { findings: 'Examen normal.', conclusion: 'Normal' });
      await call('rad.neuro', 'POST', `/api/teleradiology/requests/${id}/report/sign`, {});

      const raw = await eventually('the second report in the physician\'s mailbox', async () => (await mail.messages(PHYSICIAN, cert('physician')))[1]);
      const m = await simpleParser(raw);
      assert.deepEqual(m.attachments.map((a) => a.contentType), ['application/pdf'], 'the PDF alone');
      // Référentiel socle MSSanté #2: no CDA in an IHE_XDM archive, no X-MSS-CODECDA (ECO.2.4.1) nor X-MSS-INS (ECO.2.4.2); X-MSS-NIL on every message (ECO.2.4.3).
      assert.equal(m.headers.get('x-mss-codecda'), undefined);
      assert.equal(m.headers.get('x-mss-ins'), undefined);
      assert.equal(m.headers.get('x-mss-nil'), 'ATRIUM-CHAINE-0001');
      assert.ok(!raw.toString('latin1').includes(other), 'a validated INS that is not qualified does not leave the site');
      const sent = (await call('rad.neuro', 'GET', `/api/teleradiology/requests/${id}/deliveries`)) as DeliveryView[];
      assert.equal(sent.find((d) => d.channel === 'mssante' && d.destination === PHYSICIAN)?.status, 'sent');
    });
  });
}
