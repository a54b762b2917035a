/**
 * Non-image objects for the viewer's tests: an Encapsulated PDF (a signed report as the
 * teleradiology workflow stores it) and a Comprehensive SR with a small content tree.
 */
import PDFDocument from 'pdfkit';
import { TransferSyntax, type DicomDataset, type DicomElement, type Tag, type VR } from '../../src/dicom/dataset.ts';
import { buildPart10, encodeDataset } from '../../src/dicom/part10-writer.ts';
import { newUID } from '../../src/dicom/uids.ts';

export const EncapsulatedPDFStorage = '1.2.840.10008.5.1.4.1.1.104.1';
export const ComprehensiveSRStorage = '1.2.840.10008.5.1.4.1.1.88.33';

export interface DocumentPatient {
  PatientID: string;
  PatientName: string;
  StudyInstanceUID: string;
  StudyDate: string;
}

function text(tag: Tag, vr: VR, value: string): [Tag, DicomElement] {
  return [tag, { tag, vr, value: Buffer.from(value, 'utf8') }];
}

function sequence(tag: Tag, items: DicomDataset[]): [Tag, DicomElement] {
  return [tag, { tag, vr: 'SQ', items }];
}

function code(value: string, scheme: string, meaning: string): DicomDataset {
  return new Map([text(0x00080100, 'SH', value), text(0x00080102, 'SH', scheme), text(0x00080104, 'LO', meaning)]);
}

function common(p: DocumentPatient, SOPClassUID: string, SOPInstanceUID: string, Modality: string, SeriesDescription: string, SeriesNumber: number): Array<[Tag, DicomElement]> {
  return [
    text(0x00080005, 'CS', 'ISO_IR 192'),
    text(0x00080016, 'UI', SOPClassUID),
    text(0x00080018, 'UI', SOPInstanceUID),
    text(0x00080020, 'DA', p.StudyDate),
    text(0x00080060, 'CS', Modality),
    text(0x0008103e, 'LO', SeriesDescription),
    text(0x00100010, 'PN', p.PatientName),
    text(0x00100020, 'LO', p.PatientID),
    text(0x0020000d, 'UI', p.StudyInstanceUID),
    text(0x0020000e, 'UI', newUID()),
    text(0x00200011, 'IS', String(SeriesNumber)),
    text(0x00200013, 'IS', '1'),
  ];
}

function part10(SOPClassUID: string, SOPInstanceUID: string, ds: DicomDataset): Buffer {
  return buildPart10({ MediaStorageSOPClassUID: SOPClassUID, MediaStorageSOPInstanceUID: SOPInstanceUID, TransferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian }, encodeDataset(ds, true, true));
}

/** A one-page PDF saying `line`. */
export async function pdfSaying(line: string): Promise<Buffer> {
  const doc = new PDFDocument({ size: 'A4', margin: 56 });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (c: Buffer) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  doc.fontSize(20).text(line);
  doc.end();
  return done;
}

export function encapsulatedPdf(p: DocumentPatient, pdf: Buffer, title: string): Buffer {
  const SOPInstanceUID = newUID();
  const length = Buffer.alloc(4);
  length.writeUInt32LE(pdf.length);
  return part10(EncapsulatedPDFStorage, SOPInstanceUID, new Map([
    ...common(p, EncapsulatedPDFStorage, SOPInstanceUID, 'DOC', 'Compte rendu signé', 9001),
    text(0x00280301, 'CS', 'YES'),
    sequence(0x0040a043, []),
    text(0x00420010, 'ST', title),
    [0x00420011, { tag: 0x00420011, vr: 'OB', value: pdf }],
    text(0x00420012, 'LO', 'application/pdf'),
    [0x00420015, { tag: 0x00420015, vr: 'UL', value: length }],
  ]));
}

/** A Comprehensive SR: "Rapport d'imagerie" > Constatation (TEXT), Diamètre (NUM, mm), Conclusion (CODE). */
export function comprehensiveSr(p: DocumentPatient, finding: string, diameterMm: number, conclusion: string): Buffer {
  const SOPInstanceUID = newUID();
  const item = (relationship: string, valueType: string, name: DicomDataset, rest: Array<[Tag, DicomElement]>): DicomDataset => new Map([
    text(0x0040a010, 'CS', relationship), text(0x0040a040, 'CS', valueType), sequence(0x0040a043, [name]), ...rest,
  ]);
  const measured: DicomDataset = new Map([sequence(0x004008ea, [code('mm', 'UCUM', 'millimètre')]), text(0x0040a30a, 'DS', String(diameterMm))]);
  return part10(ComprehensiveSRStorage, SOPInstanceUID, new Map([
    ...common(p, ComprehensiveSRStorage, SOPInstanceUID, 'SR', 'Rapport structuré', 9002),
    text(0x0040a040, 'CS', 'CONTAINER'),
    sequence(0x0040a043, [code('18748-4', 'LN', 'Rapport d\'imagerie')]),
    text(0x0040a050, 'CS', 'SEPARATE'),
    text(0x0040a491, 'CS', 'COMPLETE'),
    text(0x0040a493, 'CS', 'UNVERIFIED'),
    sequence(0x0040a730, [
      item('CONTAINS', 'TEXT', code('121071', 'DCM', 'Constatation'), [text(0x0040a160, 'UT', finding)]),
      item('CONTAINS', 'NUM', code('81827009', 'SCT', 'Diamètre'), [sequence(0x0040a300, [measured])]),
      item('CONTAINS', 'CODE', code('121076', 'DCM', 'Conclusion'), [sequence(0x0040a168, [code('R-0038D', 'SRT', conclusion)])]),
    ]),
  ]));
}
