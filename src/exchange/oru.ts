/**
 * A signed teleradiology report as HL7 v2.5 ORU^R01 (chapter 7), for the requesting site's
 * RIS: PID names the patient as the site knows them, ORC/OBR the request (placer: Atrium's
 * request number, filler: the accession number), OBR-25 the result status (P preliminary,
 * F final, C corrected: an addendum), OBR-32 the signing radiologist, and one OBX per part:
 * structured fields, findings, conclusion (impression), each addendum, the study's UID.
 * Pure: the delivery worker reads what it needs and sends the bytes.
 */
import { hl7Timestamp } from '../hl7/acknowledgment.ts';
import { encodeMessage, segment, standardDelimiters, type Field, type Hl7Message, type Segment } from '../hl7/message.ts';
import { encodeText, type Hl7CharacterSet } from '../hl7/character-sets.ts';

export type ResultStatus = 'P' | 'F' | 'C';

export interface OruReport {
  controlId: string;
  sending: { application: string; facility: string };
  receiving: { application: string; facility: string };
  characterSet: Hl7CharacterSet;
  patient: { PatientID: string; IssuerOfPatientID: string; PatientName?: string; PatientBirthDate?: string; PatientSex?: string };
  /** Atrium's request number (ORC-2/OBR-2). */
  placerOrderNumber: string;
  AccessionNumber?: string;
  StudyInstanceUID?: string;
  procedure: { code: string; text: string };
  orderingProvider: { name: string; rpps?: string };
  observedAt: Date;
  resultStatus: ResultStatus;
  signedAt: Date;
  interpreter: { id: string; name: string };
  fields: Record<string, string>;
  findings: string;
  conclusion: string;
  addenda: Array<{ text: string; signedBy: string; signedAt: Date }>;
}

/** DICOM PN (family^given^middle^prefix^suffix) as HL7 XPN (family^given^middle^suffix^prefix). */
export function xpnOfPersonName(pn: string): string[] {
  const [family = '', given = '', middle = '', prefix = '', suffix = ''] = pn.split('=')[0]!.split('^');
  return [family, given, middle, suffix, prefix];
}

/** A field of one repetition whose components may have subcomponents. */
function field(...components: string[][]): Field {
  return [components];
}

function withField(seg: Segment, n: number, value: Field): Segment {
  while (seg.fields.length <= n) seg.fields.push([]);
  seg.fields[n] = value;
  return seg;
}

export function buildOru(r: OruReport): Hl7Message {
  const status = r.resultStatus;
  const observed = hl7Timestamp(r.observedAt);
  const signed = hl7Timestamp(r.signedAt);
  const segments: Segment[] = [
    segment('MSH', '|', '^~\\&', r.sending.application, r.sending.facility, r.receiving.application, r.receiving.facility, hl7Timestamp(), undefined,
      ['ORU', 'R01', 'ORU_R01'], r.controlId, 'P', '2.5', undefined, undefined, 'AL', 'NE', undefined, r.characterSet),
    segment('PID', '1', undefined, [r.patient.PatientID, '', '', r.patient.IssuerOfPatientID, 'PI'], undefined,
      r.patient.PatientName !== undefined ? xpnOfPersonName(r.patient.PatientName) : undefined, undefined, r.patient.PatientBirthDate, r.patient.PatientSex),
    segment('ORC', 'RE', r.placerOrderNumber, r.AccessionNumber, undefined, 'CM'),
  ];
  const provider = [r.orderingProvider.rpps ?? '', ...xpnOfPersonName(r.orderingProvider.name).slice(0, 2)];
  const obr = segment('OBR', '1', r.placerOrderNumber, r.AccessionNumber, [r.procedure.code, r.procedure.text, 'L'], undefined, undefined, observed,
    undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined, provider, undefined, undefined, undefined, undefined,
    undefined, signed, undefined, undefined, status);
  // OBR-32 principal result interpreter (NDL): its first component is a CNN, whose parts are subcomponents.
  segments.push(withField(obr, 32, field([r.interpreter.id, r.interpreter.name])));
  let n = 0;
  const obx = (type: string, code: string[], value: string, at = signed, observer = r.interpreter) => {
    n++;
    segments.push(withField(segment('OBX', String(n), type, code, undefined, value, undefined, undefined, undefined, undefined, undefined, status,
      undefined, undefined, at), 16, field([observer.id, observer.name])));
  };
  if (r.StudyInstanceUID) obx('ST', ['113014', 'Study Instance UID', 'DCM'], r.StudyInstanceUID);
  for (const [name, value] of Object.entries(r.fields)) if (value.trim() !== '') obx('ST', [name, name, 'L'], value);
  if (r.findings.trim() !== '') obx('FT', ['18782-3', 'Radiology Study observation (narrative)', 'LN'], r.findings);
  obx('FT', ['19005-8', 'Radiology Imaging study [Impression] (narrative)', 'LN'], r.conclusion);
  for (const a of r.addenda) obx('FT', ['55107-7', 'Addendum', 'LN'], a.text, hl7Timestamp(a.signedAt), { id: a.signedBy, name: a.signedBy });
  return { delimiters: standardDelimiters, segments };
}

/** The message's bytes in its declared character set (MSH-18). */
export function encodeOru(r: OruReport): Buffer {
  return encodeText(encodeMessage(buildOru(r)), r.characterSet);
}
