/**
 * Imaging reports a site's RIS sends Atrium in HL7 v2, as the CI-SIS volet "Transmission d'un
 * document CDA-R2 en HL7v2" carries a document: ORU^R01, MDM^T02 (original) or MDM^T10
 * (replacement), the document base64-encoded in an OBX of type ED whose OBX-5 says what it is:
 *   OBX|1|ED|18748-4^CR d'imagerie médicale^LN||^TEXT^XML^Base64^<the CR-IMG CDA>
 *   OBX|1|ED|18748-4^CR d'imagerie médicale^LN||^application^pdf^Base64^<a PDF>
 * The study is named by ZDS-1 (Study Instance UID, IHE RAD), an OBX 113014 (as Atrium's own
 * ORU names it), or the accession number (OBR-3, filler order number) among the site's studies.
 * A CDA is kept as sent once checked; a PDF is wrapped in a CR-IMG with a PDF body (XDS-SD),
 * signed by OBR-32 (ORU) or TXA-22 (MDM). The rules are the documents module's
 * (src/exchange/study-documents.ts); this file reads the message.
 */
import type { Archive } from '../archive/archive.ts';
import type { Site } from '../index/records.ts';
import { DocumentError, type ReceivedReport, type StudyDocument, type StudyDocuments } from '../exchange/study-documents.ts';
import { Hl7Error, Hl7ErrorCode } from './acknowledgment.ts';
import { recordedInsOf } from '../patients/identities.ts';
import { componentOf, findSegment, repetitionsOf, valueOf, type Hl7Message, type Segment } from './message.ts';

/** Document messages served, by MSH-9.1. */
export const documentTriggers: Record<string, readonly string[]> = { ORU: ['R01'], MDM: ['T02', 'T10'] };

/** An XCN/CNN identifier as an RPPS: 11 digits, or the 12 of the ANS form (8 + RPPS). */
function rppsOf(id: string): string | undefined {
  if (/^8[0-9]{11}$/.test(id)) return id.slice(1);
  return /^[0-9]{11}$/.test(id) ? id : undefined;
}

/** An HL7 TS (YYYYMMDD[HHMM[SS]][+ZZZZ]) as an instant; undefined when absent or unreadable. */
function instantOf(ts: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$/.exec(ts);
  if (!m) return undefined;
  const zone = m[7] ? `${m[7].slice(0, 3)}:${m[7].slice(3)}` : 'Z';
  const d = new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4] ?? '00'}:${m[5] ?? '00'}:${m[6] ?? '00'}${zone}`);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** The name parts of an XCN (id^family^given) or CNN (id&family&given, as subcomponents of OBR-32.1) as one text. */
function nameOf(parts: string[]): string {
  return parts.filter((p) => p !== '').join(' ');
}

async function studyOf(archive: Archive, message: Hl7Message, site: Site): Promise<string> {
  const zds = findSegment(message, 'ZDS');
  const byUid = valueOf(zds, 1)
    || message.segments.filter((s) => s.id === 'OBX' && valueOf(s, 3) === '113014').map((s) => valueOf(s, 5))[0] || '';
  if (byUid !== '') {
    const study = await archive.index.studyPatient(byUid);
    // Another site's study is answered as one that does not exist.
    if (study && study.siteId === site.id) return byUid;
    throw new Hl7Error('AE', Hl7ErrorCode.unknownKeyIdentifier, `study ${byUid} is not in the archive`, { segment: zds ? 'ZDS' : 'OBX', field: zds ? 1 : 5 });
  }
  const accession = valueOf(findSegment(message, 'OBR'), 3) || valueOf(findSegment(message, 'ORC'), 3);
  if (accession === '') throw new Hl7Error('AE', Hl7ErrorCode.requiredFieldMissing, 'the study is named by ZDS-1 (Study Instance UID) or the accession number (OBR-3)', { segment: 'OBR', field: 3 });
  const rows = await archive.index.studiesByAccession(site.id, accession, 2);
  if (rows.length !== 1) {
    throw new Hl7Error('AE', Hl7ErrorCode.unknownKeyIdentifier, rows.length === 0 ? `no study of accession number ${accession} at this site` : `several studies of accession number ${accession}: name the study by ZDS-1`, { segment: 'OBR', field: 3 });
  }
  return rows[0]!;
}

/** The report the message carries, as the documents module takes it. */
function reportOf(message: Hl7Message, messageControlId: string): ReceivedReport {
  const obx = message.segments.find((s) => s.id === 'OBX' && valueOf(s, 2) === 'ED');
  if (!obx) throw new Hl7Error('AE', Hl7ErrorCode.requiredFieldMissing, 'no OBX of type ED carries the document', { segment: 'OBX', field: 2 });
  const type = valueOf(obx, 5, 2).toLowerCase(), subtype = valueOf(obx, 5, 3).toLowerCase(), encoding = valueOf(obx, 5, 4).toLowerCase();
  if (encoding !== 'base64') throw new Hl7Error('AE', Hl7ErrorCode.dataTypeError, `OBX-5.4 encoding ${JSON.stringify(valueOf(obx, 5, 4))} is not Base64`, { segment: 'OBX', field: 5 });
  const data = Buffer.from(valueOf(obx, 5, 5).replace(/\s+/g, ''), 'base64');
  if (data.length === 0) throw new Hl7Error('AE', Hl7ErrorCode.requiredFieldMissing, 'OBX-5.5 holds no document', { segment: 'OBX', field: 5 });
  if ((type === 'text' || type === 'application') && subtype === 'xml') return { cda: data };
  if ((type === 'application' || type === 'ap') && subtype === 'pdf') {
    const obr = findSegment(message, 'OBR');
    const txa = findSegment(message, 'TXA');
    // ORU: OBR-32 principal result interpreter (CNN as subcomponents); MDM: TXA-22 authentication person (XCN).
    const signerId = txa ? valueOf(txa, 22, 1) : valueOf(obr, 32, 1, 1);
    const signerName = txa ? nameOf([valueOf(txa, 22, 3), valueOf(txa, 22, 2)]) : nameOf([valueOf(obr, 32, 1, 3), valueOf(obr, 32, 1, 2)]);
    const rpps = rppsOf(signerId);
    const requester = obr ? { id: valueOf(obr, 16, 1), name: nameOf([valueOf(obr, 16, 3), valueOf(obr, 16, 2)]) } : undefined;
    const requesterRpps = requester ? rppsOf(requester.id) : undefined;
    const signedAt = instantOf(txa ? valueOf(txa, 22, 15) || valueOf(txa, 6) : valueOf(obr, 22)) ?? new Date();
    return {
      pdf: data, signer: { name: signerName || signerId, ...(rpps ? { rpps } : {}) }, signedAt, messageControlId,
      ...(requester && requester.name ? { requestingPhysician: { name: requester.name, ...(requesterRpps ? { rpps: requesterRpps } : {}) } } : {}),
      ...(valueOf(obr, 2) ? { placerOrderNumber: valueOf(obr, 2) } : {}),
    };
  }
  throw new Hl7Error('AE', Hl7ErrorCode.dataTypeError, `OBX-5 carries ${valueOf(obx, 5, 2)}/${valueOf(obx, 5, 3)}: a CR-IMG is sent as TEXT/XML (the CDA) or application/pdf`, { segment: 'OBX', field: 5 });
}

/** Whether PID names the study's patient (by the site's identifier or the INS): a report is never filed under another patient. */
function samePatient(pid: Segment | undefined, ids: string[]): boolean {
  if (!pid) return true;
  return repetitionsOf(pid, 3).some((rep) => ids.includes(componentOf(rep, 1)));
}

/**
 * Applies a document message of the site: the report becomes the study's current CR-IMG.
 * Refusals are Hl7Error AE (the RIS keeps the message and shows why).
 */
export async function applyDocumentMessage(
  archive: Archive, documents: StudyDocuments, message: Hl7Message, ctx: { site: Site; messageControlId: string },
): Promise<{ StudyInstanceUID: string; document: StudyDocument; PatientID: string; IssuerOfPatientID: string }> {
  const StudyInstanceUID = await studyOf(archive, message, ctx.site);
  const patient = (await archive.index.studyPatient(StudyInstanceUID))!;
  const ins = await recordedInsOf(archive.index.sql, patient.patientId);
  if (!samePatient(findSegment(message, 'PID'), [patient.patient.PatientID, ...(ins ? [ins] : [])])) {
    throw new Hl7Error('AE', Hl7ErrorCode.unknownKeyIdentifier, `PID-3 does not name the patient of study ${StudyInstanceUID}`, { segment: 'PID', field: 3 });
  }
  const report = reportOf(message, ctx.messageControlId);
  try {
    const document = await documents.acceptSiteReport(StudyInstanceUID, report);
    return { StudyInstanceUID, document, PatientID: patient.patient.PatientID, IssuerOfPatientID: patient.patient.IssuerOfPatientID };
  } catch (e) {
    if (!(e instanceof DocumentError)) throw e;
    const code = e.code === 'incomplete' ? Hl7ErrorCode.requiredFieldMissing : e.code === 'invalid-document' ? Hl7ErrorCode.dataTypeError : Hl7ErrorCode.unknownKeyIdentifier;
    throw new Hl7Error('AE', code, e.message, e.code === 'no-qualified-ins' ? { segment: 'PID', field: 3 } : { segment: 'OBX', field: 5 });
  }
}
