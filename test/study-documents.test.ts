/**
 * The documents of a study for the DMP (issue 16 §1): once its teleradiology report is signed
 * final, the study has a CR-IMG (CDA R2, CI-SIS IMG-CR-IMG) and a KOS manifest, listed and
 * served by /api/studies/{StudyInstanceUID}/documents; the manifest is made again when the
 * study changes; nothing is made for a patient without a qualified INS. The CDA and the KOS
 * are read back as a receiver would (an XML parser, pydicom and Atrium's DICOM parser) and
 * checked for what the CI-SIS schematrons ask (docs/dmp.md says how to run those by hand).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { DOMParser } from '@xmldom/xmldom';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { loginLocal, request, type CookieJar } from './support/browser-session.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { INS_OIDS, insKeyOf, insValue, parseINS } from '../src/patients/ins.ts';
import { insOtherPatientIDsItem } from '../src/patients/ins-dicom.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';
import type { DicomDataset, DicomElement } from '../src/dicom/dataset.ts';
import { StudyDocumentSource, StudyDocumentsConsumer } from '../src/exchange/study-documents.ts';
import { startWorkers } from '../src/cli/workers.ts';
import { sendHl7 } from './support/hl7.ts';
import { crImgDocumentOf, type CrImgInput } from '../src/exchange/cda-cr-img.ts';

const password = 'un mot de passe assez long pour les tests';
const HL7 = 'urn:hl7-org:v3';
const ins = (() => {
  const m = '2800175123456';
  return parseINS(m + insKeyOf(m), INS_OIDS.NIR_TEST);
})();

/** An FD value (CTDIvol) for the synthetic object's header. */
function fd(tag: number, n: number): DicomElement {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(n);
  return { tag, vr: 'FD', value: b };
}

// ---- A few DOM helpers: the generated CDA read as any receiver reads it ----
type El = Element;
const kids = (e: El, name: string): El[] => Array.from(e.childNodes).filter((n): n is El => n.nodeType === 1 && (n as El).localName === name && (n as El).namespaceURI === HL7);
const kid = (e: El, name: string): El => {
  const found = kids(e, name);
  assert.equal(found.length, 1, `one <${name}> in <${e.localName}>, found ${found.length}`);
  return found[0]!;
};
const all = (e: El, name: string): El[] => Array.from(e.getElementsByTagNameNS(HL7, name));
const templates = (e: El) => kids(e, 'templateId').map((t) => t.getAttribute('root'));
const patientIdsOf = (doc: El) => kids(kid(kid(doc, 'recordTarget'), 'patientRole'), 'id').map((i) => [i.getAttribute('root'), i.getAttribute('extension')]);
const sectionsOf = (e: El) => kids(e, 'component').map((c) => kids(c, 'section')[0]).filter((s): s is El => s !== undefined);

const text = (ds: DicomDataset, tag: number) => ds.get(tag)?.value?.toString('utf8').replace(/[\0 ]+$/, '');
const items = (ds: DicomDataset, tag: number) => ds.get(tag)?.items ?? [];

for (const engine of testDatabases()) {
  describe(`study documents for the DMP (${engine.name})`, () => {
    let atrium: RunningAtrium;
    let base: string;
    let cleanup: () => Promise<void>;
    let requestId: number;
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-docs-'));
    const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
    const knee = syntheticInstance({
      PatientID: 'DOC-1', PatientName: 'DUBOIS^Anne', PatientBirthDate: '19800101', PatientSex: 'F', Modality: 'CT', Rows: 4, Columns: 4,
      extra: [{ tag: 0x00101002, vr: 'SQ', items: [insOtherPatientIDsItem(ins)] }, fd(0x00189345, 12.5)],
    });
    const plain = syntheticInstance({ PatientID: 'DOC-2', PatientName: 'SANS^Ins', Rows: 4, Columns: 4 });

    const call = async (who: string, method: string, url: string, body?: unknown) => request(sessions[who]!.jar, `${base}${url}`, {
      method, headers: { 'x-csrf-token': sessions[who]!.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const tele = async (who: string, url: string, body?: unknown, method = 'POST') => {
      const r = await call(who, method, `/api/teleradiology${url}`, body);
      const t = await r.text();
      assert.ok(r.status < 300, `${method} ${url}: ${r.status} ${t}`);
      return JSON.parse(t) as Record<string, unknown>;
    };
    type Listed = { id: number; type: string; typeCode: { code: string; system: string }; version: number; current: boolean; publicationStatus: string; uniqueId: string };
    const list = async (study = knee.uids.study, who = 'manip.sud') => {
      const r = await call(who, 'GET', `/api/studies/${study}/documents`);
      const t = await r.text();
      assert.equal(r.status, 200, t);
      return (JSON.parse(t) as { documents: Listed[] }).documents;
    };
    const fetchDocument = async (id: number, study = knee.uids.study) => {
      const r = await call('manip.sud', 'GET', `/api/studies/${study}/documents/${id}`);
      assert.equal(r.status, 200);
      return { type: r.headers.get('content-type') ?? '', body: Buffer.from(await r.arrayBuffer()) };
    };
    const current = async (type: string) => (await list()).find((d) => d.type === type && d.current)!;

    before(async () => {
      const db = await engine.open();
      cleanup = db.cleanup;
      atrium = await startAtrium({
        index: db.config, hl7: true,
        configure: (c) => {
          c.http.publicBaseUrl = 'https://atrium.example.fr';
          c.hl7.senders = [{ application: 'RIS_SUD', facility: 'CLIN_SUD', site: 'CLIN-SUD' }];
        },
      });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      for (const o of [knee, plain]) assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [o.file])).status, 200);
      await atrium.identities.drain();
      const by = { actor: 'test', via: 'cli' as const };
      await addUser(atrium.archive, { login: 'manip.sud', displayName: 'Manipulateur Sud', roles: ['technologist'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'admin.nord', displayName: 'Admin Nord', roles: ['site-admin'], sites: ['CHU-NORD'], password }, by);
      await addUser(atrium.archive, { login: 'admin.sud', displayName: 'Admin Sud', roles: ['site-admin'], sites: ['CLIN-SUD'], password }, by);
      await addUser(atrium.archive, { login: 'rad.a', displayName: 'LECTEUR^Anne', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10001234567', password }, by);
      for (const who of ['manip.sud', 'admin.nord', 'admin.sud', 'rad.a']) sessions[who] = await loginLocal(base, who, password);
      const created = await tele('manip.sud', '/requests', {
        patient: { PatientID: 'DOC-1' }, StudyInstanceUID: knee.uids.study, AccessionNumber: 'ACC-77', urgency: 'urgent', modality: 'CT', bodyPart: 'KNEE', specialty: 'msk',
        clinicalContext: 'Chute à ski', clinicalQuestion: 'Fracture du plateau tibial ?', requestingPhysician: { name: 'URGENTISTE^Paul', rpps: '10009999999' },
        proposedProtocol: 'Scanner du genou sans injection',
      });
      requestId = created.id as number;
      await tele('rad.a', `/requests/${requestId}/protocol`, { decision: 'validated' });
      await tele('rad.a', `/requests/${requestId}/claim`);
      await tele('rad.a', `/requests/${requestId}/report`, { findings: 'Pas de trait de fracture.\nÉpanchement modéré.', conclusion: 'Pas de fracture & épanchement <modéré>' }, 'PUT');
    });

    after(async () => {
      await atrium?.close();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    it('has no document before the report is signed final, then a CR-IMG (LOINC 18748-4) and a KOS manifest, both pending publication', async () => {
      assert.deepEqual(await list(), []);
      await tele('rad.a', `/requests/${requestId}/report/sign`, {});
      const docs = await list();
      assert.deepEqual(docs.map((d) => [d.type, d.typeCode.code, d.typeCode.system, d.version, d.current, d.publicationStatus]).sort(), [
        ['CR-IMG', '18748-4', '2.16.840.1.113883.6.1', 1, true, 'pending'],
        ['KOS', 'IMG-KOS', '1.2.250.1.213.1.1.4.12', 1, true, 'pending'],
      ]);
      // Listing again builds nothing more.
      assert.equal((await list()).length, 2);
    });

    it('serves the CR-IMG as CDA XML: CI-SIS and PS3.20 templates, the patient by qualified INS, the signer as author and legal authenticator, the site as custodian', async () => {
      const { type, body } = await fetchDocument((await current('CR-IMG')).id);
      assert.match(type, /^text\/xml/);
      const doc = new DOMParser().parseFromString(body.toString('utf8'), 'text/xml').documentElement!;
      assert.equal(doc.localName, 'ClinicalDocument');
      assert.deepEqual(templates(doc), ['2.16.840.1.113883.2.8.2.1', '1.2.250.1.213.1.1.1.1', '1.2.840.10008.9.1', '1.2.840.10008.9.20', '1.2.840.10008.9.21', '1.2.250.1.213.1.1.1.45']);
      assert.equal(kids(doc, 'templateId').find((t) => t.getAttribute('root') === '1.2.250.1.213.1.1.1.45')!.getAttribute('extension'), '2024.01');
      assert.deepEqual([kid(doc, 'code').getAttribute('code'), kid(doc, 'code').getAttribute('codeSystem')], ['18748-4', '2.16.840.1.113883.6.1']);
      // The patient: the INS under its authority's OID, the traits of the record.
      const patientIds = kids(kid(kid(doc, 'recordTarget'), 'patientRole'), 'id');
      assert.deepEqual(patientIds.map((i) => [i.getAttribute('root'), i.getAttribute('extension')]), [[INS_OIDS.NIR_TEST, insValue(ins)]]);
      const patient = kid(kid(kid(doc, 'recordTarget'), 'patientRole'), 'patient');
      assert.equal(kids(kid(patient, 'name'), 'family')[0]!.textContent, 'DUBOIS');
      assert.equal(kid(patient, 'birthTime').getAttribute('value'), '19800101');
      // The signing radiologist (RPPS, prefixed 8) is author and legal authenticator; the site (FINESS, prefixed 1) the custodian.
      const rpps = (e: El) => kid(e, 'id').getAttribute('extension');
      assert.equal(rpps(kid(kid(doc, 'author'), 'assignedAuthor')), '810001234567');
      const legal = kid(doc, 'legalAuthenticator');
      assert.equal(kid(legal, 'signatureCode').getAttribute('code'), 'S');
      assert.equal(rpps(kid(legal, 'assignedEntity')), '810001234567');
      const custodian = kid(kid(kid(doc, 'custodian'), 'assignedCustodian'), 'representedCustodianOrganization');
      assert.equal(kid(custodian, 'id').getAttribute('root'), '1.2.250.1.71.4.2.2');
      assert.equal(kid(custodian, 'id').getAttribute('extension'), `1${atrium.archive.sites.get('CLIN-SUD')!.finess}`);
      // The requesting physician as the referrer; the order with its accession number.
      const referrer = kids(doc, 'participant').find((p) => p.getAttribute('typeCode') === 'REF')!;
      assert.equal(rpps(kid(referrer, 'associatedEntity')), '810009999999');
      const order = kid(kid(doc, 'inFulfillmentOf'), 'order');
      assert.equal(kid(order, 'id').getAttribute('extension'), `TELE-${requestId}`);
      assert.equal(order.getElementsByTagNameNS('urn:dicom-org:ps3-20', 'accessionNumber')[0]!.getAttribute('extension'), 'ACC-77');
      assert.equal(kid(kid(kid(doc, 'documentationOf'), 'serviceEvent'), 'id').getAttribute('root'), knee.uids.study);

      // The body: one act section with its dose and its object catalog, exactly one conclusion.
      const structured = kid(kid(doc, 'component'), 'structuredBody');
      const sections = sectionsOf(structured);
      const byTemplate = (root: string) => sections.filter((s) => templates(s).includes(root));
      assert.equal(byTemplate('1.2.250.1.213.1.1.2.209').length, 1, 'one conclusion');
      const conclusion = byTemplate('1.2.250.1.213.1.1.2.209')[0]!;
      assert.equal(kid(conclusion, 'code').getAttribute('code'), '19005-8');
      assert.match(kid(conclusion, 'text').textContent!, /Pas de fracture & épanchement <modéré>/);
      const acts = byTemplate('1.2.250.1.213.1.1.2.206');
      assert.equal(acts.length, 1);
      assert.equal(kid(acts[0]!, 'code').getAttribute('code'), '55111-9');
      const procedure = all(acts[0]!, 'procedure').find((p) => templates(p).includes('1.2.250.1.213.1.1.3.153'))!;
      assert.equal(kid(procedure, 'methodCode').getAttribute('code'), 'CT');
      assert.equal(kid(procedure, 'targetSiteCode').getAttribute('codeSystem'), '2.16.840.1.113883.6.96');
      const inner = sectionsOf(acts[0]!);
      const dose = inner.find((s) => kid(s, 'code').getAttribute('code') === '73569-6')!;
      const ctdi = all(dose, 'observation').find((o) => kid(o, 'code').getAttribute('code') === '113830')!;
      assert.deepEqual([kid(ctdi, 'value').getAttribute('value'), kid(ctdi, 'value').getAttribute('unit')], ['12.5', 'mGy']);
      const catalog = inner.find((s) => kid(s, 'code').getAttribute('code') === '121181')!;
      const studyAct = all(catalog, 'act').find((a) => templates(a).includes('1.2.840.10008.9.16'))!;
      assert.equal(kid(studyAct, 'id').getAttribute('root'), knee.uids.study);
      const seriesAct = all(studyAct, 'act').find((a) => templates(a).includes('1.2.840.10008.9.17'))!;
      assert.equal(kid(seriesAct, 'id').getAttribute('root'), knee.uids.series);
      const image = all(seriesAct, 'observation').find((o) => kid(o, 'id').getAttribute('root') === knee.uids.sop)!;
      assert.equal(kid(kid(image, 'text'), 'reference').getAttribute('value'),
        `https://atrium.example.fr/dicom-web/studies/${knee.uids.study}/series/${knee.uids.series}/instances/${knee.uids.sop}`);
      // The IHE Invoke Image Display link in the narrative: the study in the viewer, after a login.
      assert.deepEqual(all(kid(catalog, 'text'), 'linkHtml').map((l) => l.getAttribute('href')),
        [`https://atrium.example.fr/IHEInvokeImageDisplay?requestType=STUDY&studyUID=${knee.uids.study}`]);
    });

    it('serves the manifest as a DICOM KOS (113030 Manifest) named by the qualified INS, with the request, one study and each series\' Retrieve URL, and keeps it in the study', async () => {
      const kos = await current('KOS');
      const { type, body } = await fetchDocument(kos.id);
      assert.equal(type, 'application/dicom');
      const ds = parsePart10(body).dataset;
      assert.equal(text(ds, 0x00080016), '1.2.840.10008.5.1.4.1.1.88.59');
      assert.equal(text(ds, 0x00080018), kos.uniqueId);
      assert.equal(text(ds, 0x00100020), insValue(ins));
      assert.equal(text(ds, 0x00100021), 'ASIP-SANTE-INS-NIR');
      const qualifiers = items(ds, 0x00100024)[0]!;
      assert.deepEqual([text(qualifiers, 0x00400032), text(qualifiers, 0x00400033)], [INS_OIDS.NIR_TEST, 'ISO']);
      assert.deepEqual(items(ds, 0x00101002).map((i) => [text(i, 0x00100020), text(i, 0x00100021)]), [[insValue(ins), 'ASIP-SANTE-INS-NIR'], ['DOC-1', 'CLINSUD']]);
      const title = items(ds, 0x0040a043)[0]!;
      assert.deepEqual([text(title, 0x00080100), text(title, 0x00080102), text(title, 0x00080104)], ['113030', 'DCM', 'Manifest']);
      const request0 = items(ds, 0x0040a370)[0]!;
      assert.equal(text(request0, 0x00080050), 'ACC-77');
      assert.equal(text(items(request0, 0x00080051)[0]!, 0x00400031), 'CLIN-SUD');
      assert.equal(text(request0, 0x00402016), `TELE-${requestId}`);
      const evidence = items(ds, 0x0040a375);
      assert.equal(evidence.length, 1);
      assert.equal(text(evidence[0]!, 0x0020000d), knee.uids.study);
      const series = items(evidence[0]!, 0x00081115);
      assert.deepEqual(series.map((s) => text(s, 0x0020000e)), [knee.uids.series], 'the images\' series (not the manifest\'s own)');
      assert.equal(text(series[0]!, 0x00081190), `https://atrium.example.fr/dicom-web/studies/${knee.uids.study}/series/${knee.uids.series}`);
      assert.deepEqual(items(series[0]!, 0x00081199).map((r) => text(r, 0x00081155)), [knee.uids.sop]);
      const description = items(ds, 0x0040a730).find((c) => text(c, 0x0040a040) === 'TEXT')!;
      assert.equal(text(items(description, 0x0040a043)[0]!, 0x00080100), '113012');
      // As another DICOM toolkit reads it.
      const file = path.join(work, 'kos.dcm');
      writeFileSync(file, body);
      const seen = execFileSync('/usr/bin/python3', ['-c', [
        'import sys, pydicom', 'd = pydicom.dcmread(sys.argv[1])',
        'print(d.SOPClassUID, d.PatientID, d.IssuerOfPatientID, d.ConceptNameCodeSequence[0].CodeValue, len(d.CurrentRequestedProcedureEvidenceSequence))',
      ].join('\n'), file], { encoding: 'utf8' }).trim();
      assert.equal(seen, `1.2.840.10008.5.1.4.1.1.88.59 ${insValue(ins)} ASIP-SANTE-INS-NIR 113030 1`);
      // The same object is in the study, filed under the study's patient record.
      const r = await fetch(`${atrium.dicomweb}/studies/${knee.uids.study}/series?Modality=KO`, { headers: { authorization: `Bearer ${atrium.tokens['CLIN-SUD']!}` } });
      assert.equal(r.status, 200);
      const stored = await fetch(`${atrium.dicomweb}/studies/${knee.uids.study}/instances?SOPInstanceUID=${kos.uniqueId}`, { headers: { authorization: `Bearer ${atrium.tokens['CLIN-SUD']!}` } });
      assert.equal(stored.status, 200);
      const [row] = (await stored.json()) as Array<Record<string, { Value?: string[] }>>;
      assert.equal(row!['00100020']!.Value![0], 'DOC-1');
    });

    it('announces each document to the DMP publication (document.final) and shows the publication status it reports', async () => {
      const events = await atrium.archive.index.sql.all<{ payload_json: string }>(`SELECT payload_json FROM outbox WHERE type = 'document.final' ORDER BY id`);
      const docs = await list();
      assert.deepEqual(events.map((e) => (JSON.parse(e.payload_json) as { documentId: string }).documentId).sort(), docs.map((d) => String(d.id)).sort());
      const source = new StudyDocumentSource(atrium.archive.index.sql);
      const cr = await current('CR-IMG');
      const sent = await source.documentFor(String(cr.id));
      assert.equal(sent!.uniqueId, cr.uniqueId);
      assert.equal(sent!.patient.identity!.status, 'qualified');
      assert.equal(sent!.author.id, '810001234567');
      assert.deepEqual(sent!.modalities, ['CT']);
      await source.publicationChanged(String(cr.id), 'published', { entryUUID: 'urn:uuid:1' });
      assert.equal((await current('CR-IMG')).publicationStatus, 'published');
    });

    it('makes a new manifest when the study changes and a new CR-IMG with an addendum, each replacing the previous version', async () => {
      const before = await current('KOS');
      const more = syntheticInstance({ PatientID: 'DOC-1', PatientName: 'DUBOIS^Anne', StudyInstanceUID: knee.uids.study, Modality: 'CT', Rows: 4, Columns: 4 });
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [more.file])).status, 200);
      const consumer = new StudyDocumentsConsumer(atrium.archive.outbox, 'study-documents-test', pino({ level: 'silent' }), 100, 100);
      await consumer.drain();
      const kos = await current('KOS');
      assert.equal(kos.version, before.version + 1);
      const ds = parsePart10((await fetchDocument(kos.id)).body).dataset;
      assert.deepEqual(items(items(ds, 0x0040a375)[0]!, 0x00081115).map((s) => text(s, 0x0020000e)).sort(), [knee.uids.series, more.uids.series].sort());
      // One manifest in the study: the previous version left the index.
      const manifests = await atrium.archive.index.sql.all<{ sop_instance_uid: string }>(
        `SELECT i.sop_instance_uid FROM instances i WHERE i.sop_class_uid = '1.2.840.10008.5.1.4.1.1.88.59'`);
      assert.deepEqual(manifests.map((m) => m.sop_instance_uid), [kos.uniqueId]);
      // The manifest's own arrival does not make the study due again.
      await consumer.drain();
      assert.equal((await current('KOS')).version, kos.version);

      await tele('rad.a', `/requests/${requestId}/report/addenda`, { text: 'Lésion méniscale associée.' });
      const cr = await current('CR-IMG');
      assert.equal(cr.version, 2);
      const all2 = await list();
      assert.equal(all2.filter((d) => d.type === 'CR-IMG').length, 2, 'both versions listed');
      const xml = (await fetchDocument(cr.id)).body.toString('utf8');
      const doc = new DOMParser().parseFromString(xml, 'text/xml').documentElement!;
      assert.equal(kid(doc, 'versionNumber').getAttribute('value'), '2');
      const replaced = all2.find((d) => d.type === 'CR-IMG' && d.version === 1)!;
      assert.equal(kid(kid(kid(doc, 'relatedDocument'), 'parentDocument'), 'id').getAttribute('root'), replaced.uniqueId);
      assert.match(xml, /Lésion méniscale associée/);
      // Each series in the object catalog, in an entry of its own (one series per study act, as the CI-SIS schematron takes them).
      const catalog = all(doc, 'section').find((x) => kid(x, 'code').getAttribute('code') === '121181')!;
      const seriesActs = all(catalog, 'act').filter((x) => templates(x).includes('1.2.840.10008.9.17'));
      assert.deepEqual(seriesActs.map((x) => kid(x, 'id').getAttribute('root')).sort(), [knee.uids.series, more.uids.series].sort());
      assert.equal(kids(catalog, 'entry').length, 2);
    });

    it('makes a new manifest without an object its site rejects', async () => {
      const before = await current('KOS');
      const r = await call('admin.sud', 'POST', '/api/corrections/reject', { SOPInstanceUID: knee.uids.sop, reason: 'mauvais côté' });
      assert.equal(r.status, 201, await r.text());
      await new StudyDocumentsConsumer(atrium.archive.outbox, 'study-documents-test', pino({ level: 'silent' }), 100, 100).drain();
      const kos = await current('KOS');
      assert.equal(kos.version, before.version + 1);
      const ds = parsePart10((await fetchDocument(kos.id)).body).dataset;
      const referenced = items(items(ds, 0x0040a375)[0]!, 0x00081115).flatMap((se) => items(se, 0x00081199).map((i) => text(i, 0x00081155)));
      assert.ok(referenced.length > 0);
      assert.ok(!referenced.includes(knee.uids.sop), 'the rejected object is no longer in the manifest');
    });

    it('builds the documents in the background once the report is final (the studyDocuments worker), with nobody asking', async () => {
      const second = syntheticInstance({ PatientID: 'DOC-1', PatientName: 'DUBOIS^Anne', Modality: 'MR', Rows: 4, Columns: 4 });
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [second.file])).status, 200);
      const created = await tele('manip.sud', '/requests', {
        patient: { PatientID: 'DOC-1' }, StudyInstanceUID: second.uids.study, urgency: 'routine', modality: 'MR', bodyPart: 'KNEE', specialty: 'msk',
        clinicalContext: 'Douleur', clinicalQuestion: 'Ménisque ?', requestingPhysician: { name: 'URGENTISTE^Paul' }, proposedProtocol: 'IRM genou',
      });
      const id = created.id as number;
      await tele('rad.a', `/requests/${id}/protocol`, { decision: 'validated' });
      await tele('rad.a', `/requests/${id}/claim`);
      await tele('rad.a', `/requests/${id}/report`, { conclusion: 'Ménisque normal' }, 'PUT');
      const workers = await startWorkers(atrium.archive, atrium.config, pino({ level: 'silent' }), { auditHostname: 'test', start: ['studyDocuments'], pollMs: 20 });
      try {
        await tele('rad.a', `/requests/${id}/report/sign`, {});
        const count = async () => Number((await atrium.archive.index.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM study_documents WHERE study_instance_uid = ?', [second.uids.study]))!.n);
        // Bounded wait for the background pass (not a speed requirement): at most 300 polls.
        for (let i = 0; i < 300 && (await count()) < 2; i++) await new Promise((r) => setTimeout(r, 50));
        assert.equal(await count(), 2);
      } finally {
        await workers.stop(1000);
      }
    });

    /** An HL7 message of the site's RIS carrying a document in an OBX of type ED (CI-SIS "Transmission d'un document CDA-R2 en HL7v2"). */
    let control = 0;
    const documentMessage = (type: string, study: string, PatientID: string, content: { xml: string } | { pdf: Buffer }, extra: string[] = []) => [
      `MSH|^~\\&|RIS_SUD|CLIN_SUD|ATRIUM|GHT|20261206100000||${type}|DOC${++control}|P|2.5|||||FRA|UNICODE UTF-8`,
      `PID|1||${PatientID}^^^CLINSUD^PI||DUBOIS^Anne`,
      ...extra,
      `ZDS|${study}^Atrium^Application^DICOM`,
      'xml' in content
        ? `OBX|1|ED|18748-4^CR d'imagerie médicale^LN||^TEXT^XML^Base64^${Buffer.from(content.xml, 'utf8').toString('base64')}||||||F`
        : `OBX|1|ED|18748-4^CR d'imagerie médicale^LN||^application^pdf^Base64^${content.pdf.toString('base64')}||||||F`,
    ].join('\r');
    const risStudy = syntheticInstance({ PatientID: 'DOC-1', PatientName: 'DUBOIS^Anne', Modality: 'DX', Rows: 4, Columns: 4 });
    const risCda = (documentId: string, who = ins): CrImgInput => ({
      documentId, setId: '1.2.250.1.999.1', version: 1,
      patient: { ins: who, PatientName: 'DUBOIS^Anne', PatientSex: 'F', PatientBirthDate: '19800101' },
      site: { name: 'Clinique du Sud', finess: atrium.archive.sites.get('CLIN-SUD')!.finess },
      signer: { name: 'RADIOLOGUE^Jean', rpps: '10007654321' }, signedAt: new Date('2026-12-06T10:00:00Z'),
      requestingPhysician: { name: 'TRAITANT^Marie' },
      order: { placerOrderNumber: 'RIS-1', placerOrderOid: '1.2.250.1.999.2', accessionIssuerOid: '1.2.250.1.999.3', AccessionNumber: 'RIS-ACC-1' },
      performedAt: new Date('2026-12-06T09:00:00Z'),
      acts: [{ modality: 'DX', bodyPart: 'CHEST', description: 'Radiographie du thorax', doses: [] }],
      study: { StudyInstanceUID: risStudy.uids.study, series: [] },
      clinicalContext: 'Toux', clinicalQuestion: 'Pneumopathie ?', findings: 'Pas de foyer.', conclusion: 'Radiographie normale.', addenda: [],
    });

    it('takes a CR-IMG the site\'s RIS sends in MDM^T02 (CDA base64 in an OBX of type ED) as the study\'s CR-IMG, kept byte for byte, and makes its manifest', async () => {
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [risStudy.file])).status, 200);
      const xml = crImgDocumentOf(risCda('1.2.250.1.999.4'));
      const ack = await sendHl7(atrium.hl7!.port, Buffer.from(documentMessage('MDM^T02^MDM_T02', risStudy.uids.study, 'DOC-1', { xml }, ['TXA|1|CR|TX|20261206100000']), 'utf8'));
      assert.equal(ack.code, 'AA', ack.text);
      const docs = await list(risStudy.uids.study);
      const cr = docs.find((d) => d.type === 'CR-IMG')!;
      assert.deepEqual([cr.uniqueId, cr.version, cr.publicationStatus], ['1.2.250.1.999.4', 1, 'pending']);
      assert.equal((await fetchDocument(cr.id, risStudy.uids.study)).body.toString('utf8'), xml);
      assert.ok(docs.some((d) => d.type === 'KOS' && d.current), 'the study has its manifest');
      const stored = await atrium.archive.index.sql.get<{ n: number }>(
        `SELECT COUNT(*) AS n FROM audit_events WHERE study_instance_uid = ? AND action = 'store' AND via = 'hl7' AND outcome = 'success'`, [risStudy.uids.study]);
      assert.equal(Number(stored!.n), 1);
    });

    it('wraps a PDF the site\'s RIS sends in ORU^R01 in a CR-IMG with a PDF body (XDS-SD), signed by OBR-32, replacing the previous version', async () => {
      const pdf = Buffer.from('%PDF-1.4\n% compte rendu du site\n%%EOF\n');
      const obr = 'OBR|1|RIS-2|RIS-ACC-1|18748-4^CR imagerie^LN|||20261206090000|||||||||11111111111^TRAITANT^Marie||||||20261206103000|||F|||||||10007654321&RADIOLOGUE&Jean';
      const ack = await sendHl7(atrium.hl7!.port, Buffer.from(documentMessage('ORU^R01^ORU_R01', risStudy.uids.study, 'DOC-1', { pdf }, [obr]), 'utf8'));
      assert.equal(ack.code, 'AA', ack.text);
      const cr = (await list(risStudy.uids.study)).find((d) => d.type === 'CR-IMG' && d.current)!;
      assert.equal(cr.version, 2);
      const doc = new DOMParser().parseFromString((await fetchDocument(cr.id, risStudy.uids.study)).body.toString('utf8'), 'text/xml').documentElement!;
      assert.ok(templates(doc).includes('1.3.6.1.4.1.19376.1.2.20'), 'XDS-SD');
      assert.equal(kid(doc, 'code').getAttribute('code'), '18748-4');
      const body = kid(kid(doc, 'component'), 'nonXMLBody');
      const embedded = kid(body, 'text');
      assert.deepEqual([embedded.getAttribute('mediaType'), embedded.getAttribute('representation')], ['application/pdf', 'B64']);
      assert.deepEqual(Buffer.from(embedded.textContent!, 'base64'), pdf);
      assert.equal(kid(kid(kid(doc, 'legalAuthenticator'), 'assignedEntity'), 'id').getAttribute('extension'), '810007654321');
      assert.equal(kid(kid(kid(doc, 'relatedDocument'), 'parentDocument'), 'id').getAttribute('root'), '1.2.250.1.999.4');
      assert.deepEqual(patientIdsOf(doc), [[INS_OIDS.NIR_TEST, insValue(ins)]]);
    });

    it('refuses (AE) a report whose CDA names another patient, and a report for a patient without a qualified INS, keeping nothing', async () => {
      const m = '1700575222333';
      const other = parseINS(m + insKeyOf(m), INS_OIDS.NIR_TEST);
      const before = (await list(risStudy.uids.study)).length;
      const wrong = await sendHl7(atrium.hl7!.port, Buffer.from(documentMessage('MDM^T10^MDM_T02', risStudy.uids.study, 'DOC-1', { xml: crImgDocumentOf(risCda('1.2.250.1.999.5', other)) }, ['TXA|1|CR|TX|20261206100000']), 'utf8'));
      assert.equal(wrong.code, 'AE');
      assert.match(wrong.errorMessage ?? '', /qualified INS/);
      assert.equal((await list(risStudy.uids.study)).length, before);
      const unqualified = await sendHl7(atrium.hl7!.port, Buffer.from(documentMessage('MDM^T02^MDM_T02', plain.uids.study, 'DOC-2', { xml: crImgDocumentOf(risCda('1.2.250.1.999.6')) }, ['TXA|1|CR|TX|20261206100000']), 'utf8'));
      assert.equal(unqualified.code, 'AE');
      assert.match(unqualified.errorMessage ?? '', /no qualified INS/);
      assert.deepEqual(await list(plain.uids.study), []);
    });

    it('refuses the manifest of a patient without a qualified INS, and makes nothing', async () => {
      const r = await call('manip.sud', 'POST', `/api/studies/${plain.uids.study}/documents/manifest`);
      const body = (await r.json()) as { detail: string };
      assert.equal(r.status, 409);
      assert.match(body.detail, /no qualified INS/);
      assert.deepEqual(await list(plain.uids.study), []);
      const stored = await atrium.archive.index.sql.get<{ n: number }>(
        `SELECT COUNT(*) AS n FROM instances i JOIN series se ON se.id = i.series_id JOIN studies s ON s.id = se.study_id WHERE s.study_instance_uid = ? AND se.modality = 'KO'`, [plain.uids.study]);
      assert.equal(Number(stored!.n), 0);
      const refused = await atrium.archive.index.sql.get<{ n: number }>(
        `SELECT COUNT(*) AS n FROM audit_events WHERE study_instance_uid = ? AND action = 'store' AND outcome = 'failure'`, [plain.uids.study]);
      assert.equal(Number(refused!.n), 1);
    });

    it('withdraws a study\'s documents when the study moves to a patient without a qualified INS', async () => {
      const before = (await list(risStudy.uids.study)).filter((d) => d.current);
      assert.deepEqual(before.map((d) => d.type).sort(), ['CR-IMG', 'KOS']);
      const moved = await call('admin.sud', 'POST', '/api/corrections/study-move', { StudyInstanceUID: risStudy.uids.study, PatientID: 'DOC-2', reason: 'mauvais patient' });
      assert.equal(moved.status, 201, await moved.text());
      await new StudyDocumentsConsumer(atrium.archive.outbox, 'study-documents-test', pino({ level: 'silent' }), 100, 100).drain();
      const after = await list(risStudy.uids.study);
      assert.deepEqual(after.filter((d) => d.current), [], 'nothing current names the previous patient');
      const withdrawn = await atrium.archive.index.sql.all<{ payload_json: string }>(`SELECT payload_json FROM outbox WHERE type = 'document.withdrawn'`);
      assert.deepEqual(withdrawn.map((w) => Number((JSON.parse(w.payload_json) as { documentId: string }).documentId)).sort(), before.map((d) => d.id).sort());
      const kos = await atrium.archive.index.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM instances WHERE sop_instance_uid = ?', [before.find((d) => d.type === 'KOS')!.uniqueId]);
      assert.equal(Number(kos!.n), 0, 'the manifest naming the previous patient left the study');
    });

    it('answers another site\'s administrator as for a study that does not exist, and records the refusal', async () => {
      // A document is read only under its own study.
      const elsewhere = await call('manip.sud', 'GET', `/api/studies/${plain.uids.study}/documents/${(await list())[0]!.id}`);
      assert.equal(elsewhere.status, 404);
      const foreign = await call('admin.nord', 'GET', `/api/studies/${knee.uids.study}/documents`);
      assert.equal(foreign.status, 404);
      assert.doesNotMatch(await foreign.text(), /CR-IMG|KOS/);
      const refused = await atrium.archive.index.sql.get<{ n: number }>(
        `SELECT COUNT(*) AS n FROM audit_events WHERE study_instance_uid = ? AND outcome = 'refused' AND actor = 'admin.nord'`, [knee.uids.study]);
      assert.ok(Number(refused!.n) >= 1);
      const viewed = await atrium.archive.index.sql.get<{ n: number }>(
        `SELECT COUNT(*) AS n FROM audit_events WHERE study_instance_uid = ? AND action = 'download' AND outcome = 'success'`, [knee.uids.study]);
      assert.ok(Number(viewed!.n) >= 1, 'each document read is recorded');
    });
    it('withdraws a patient\'s documents when HL7 A40 merges them into a record without a qualified INS', async () => {
      const knees = (await list()).filter((d) => d.current);
      assert.ok(knees.length > 0);
      const msh = (type: string) => `MSH|^~\\&|RIS_SUD|CLIN_SUD|ATRIUM|GHT|20261206110000||${type}|MRG${++control}|P|2.5`;
      assert.equal((await sendHl7(atrium.hl7!.port, [msh('ADT^A28^ADT_A05'), 'PID|1||DOC-3^^^CLINSUD^PI||DUBOIS^Anne'].join('\r'))).code, 'AA');
      const merged = await sendHl7(atrium.hl7!.port, [msh('ADT^A40^ADT_A39'), 'PID|1||DOC-3^^^CLINSUD^PI||DUBOIS^Anne', 'MRG|DOC-1^^^CLINSUD^PI'].join('\r'));
      assert.equal(merged.code, 'AA', merged.text);
      await new StudyDocumentsConsumer(atrium.archive.outbox, 'study-documents-test', pino({ level: 'silent' }), 100, 100).drain();
      assert.deepEqual((await list()).filter((d) => d.current), []);
    });
  });
}
