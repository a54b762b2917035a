/**
 * The signed report as a DICOM Encapsulated PDF object (PS3.3 A.45.1), stored in the study
 * it reports on, so that every viewer and PACS of the territory finds it beside the images:
 * Patient and General Study modules copied from the index, a DOC series of its own, the PDF
 * in Encapsulated Document. UIDs are derived from what the object is (study, report, which
 * version), so that storing it again replaces it rather than adding a copy.
 */
import { createHash } from 'node:crypto';
import { TransferSyntax, type DicomDataset, type DicomElement, type Tag, type VR } from '../dicom/dataset.ts';
import { buildPart10, encodeDataset } from '../dicom/part10-writer.ts';
import type { SignedReport } from './signed-report.ts';

export const EncapsulatedPDFStorage = '1.2.840.10008.5.1.4.1.1.104.1';

/** A UID under 2.25 (PS3.5 B.2) from a UUID-sized hash of a name: the same name, the same UID. */
export function uidOfName(name: string): string {
  return `2.25.${BigInt(`0x${createHash('sha256').update(name).digest('hex').slice(0, 32)}`).toString()}`;
}

function text(tag: Tag, vr: VR, value: string): [Tag, DicomElement] {
  return [tag, { tag, vr, value: Buffer.from(value, 'utf8') }];
}

function dicomDate(d: Date): string {
  return d.toISOString().slice(0, 10).replaceAll('-', '');
}

function dicomTime(d: Date): string {
  return d.toISOString().slice(11, 19).replaceAll(':', '');
}

export interface EncapsulatedReport { file: Buffer; SOPInstanceUID: string; SeriesInstanceUID: string }

/** The Part 10 object (explicit VR little endian, UTF-8) of a report's PDF, version = how many addenda it carries. */
export function encapsulatedPdfOf(r: SignedReport, pdf: Buffer): EncapsulatedReport {
  if (!r.StudyInstanceUID) throw new Error(`report ${r.reportId} has no study to be stored in`);
  const signedAt = r.signedAt ?? r.observedAt;
  const version = r.addenda.length;
  const SeriesInstanceUID = uidOfName(`atrium:teleradiology-report-series:${r.StudyInstanceUID}:${r.reportId}`);
  const SOPInstanceUID = uidOfName(`atrium:teleradiology-report:${r.StudyInstanceUID}:${r.reportId}:${version}:${r.status}`);
  const when = r.addenda.at(-1)?.signedAt ?? signedAt;
  const length = Buffer.alloc(4);
  length.writeUInt32LE(pdf.length);
  const s = r.study ?? {};
  const ds: DicomDataset = new Map([
    text(0x00080005, 'CS', 'ISO_IR 192'),
    text(0x00080016, 'UI', EncapsulatedPDFStorage),
    text(0x00080018, 'UI', SOPInstanceUID),
    text(0x00080020, 'DA', s.StudyDate ?? ''),
    text(0x00080023, 'DA', dicomDate(when)),
    text(0x0008002a, 'DT', `${dicomDate(when)}${dicomTime(when)}`),
    text(0x00080030, 'TM', s.StudyTime ?? ''),
    text(0x00080033, 'TM', dicomTime(when)),
    text(0x00080050, 'SH', r.AccessionNumber ?? ''),
    text(0x00080060, 'CS', 'DOC'),
    text(0x00080064, 'CS', 'WSD'),
    text(0x00080070, 'LO', 'Atrium'),
    text(0x00080090, 'PN', s.ReferringPhysicianName ?? ''),
    ...(s.StudyDescription !== undefined ? [text(0x00081030, 'LO', s.StudyDescription)] : []),
    text(0x0008103e, 'LO', 'Compte rendu de télé-interprétation'),
    text(0x00100010, 'PN', r.patient.PatientName ?? ''),
    text(0x00100020, 'LO', r.patient.PatientID),
    text(0x00100021, 'LO', r.patient.IssuerOfPatientID),
    text(0x00100030, 'DA', r.patient.PatientBirthDate ?? ''),
    text(0x00100040, 'CS', r.patient.PatientSex ?? ''),
    text(0x0020000d, 'UI', r.StudyInstanceUID),
    text(0x0020000e, 'UI', SeriesInstanceUID),
    text(0x00200010, 'SH', s.StudyID ?? ''),
    text(0x00200011, 'IS', '9001'),
    text(0x00200013, 'IS', String(version + 1)),
    text(0x00280301, 'CS', 'YES'),
    [0x0040a043, { tag: 0x0040a043, vr: 'SQ', items: [] }],
    text(0x00420010, 'ST', `Compte rendu de télé-interprétation ${r.requestId}`),
    [0x00420011, { tag: 0x00420011, vr: 'OB', value: pdf }],
    text(0x00420012, 'LO', 'application/pdf'),
    [0x00420015, { tag: 0x00420015, vr: 'UL', value: length }],
  ]);
  const file = buildPart10(
    { MediaStorageSOPClassUID: EncapsulatedPDFStorage, MediaStorageSOPInstanceUID: SOPInstanceUID, TransferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian },
    encodeDataset(ds, true, true),
  );
  return { file, SOPInstanceUID, SeriesInstanceUID };
}
