/**
 * An IHE IOCM rejection note: a Key Object Selection document (PS3.3 A.35.4) whose title
 * says why the objects it references are withdrawn (PS3.16 CID 7011; Atrium writes 113039
 * "Data Retention Policy Expired"). Peers that receive it hide or remove the objects it
 * lists. Pure: the caller gathers the objects.
 */
import { TransferSyntax, type DicomDataset, type DicomElement, type Tag, type VR } from '../dicom/dataset.ts';
import { buildPart10, encodeDataset } from '../dicom/part10-writer.ts';

export const KeyObjectSelectionDocumentStorage = '1.2.840.10008.5.1.4.1.1.88.59';

/** Titles of rejection notes (PS3.16 CID 7011) Atrium writes. */
export const rejectionTitles = {
  dataRetentionExpired: { value: '113039', meaning: 'Data Retention Policy Expired' },
} as const;

export interface RejectionNoteInput {
  SOPInstanceUID: string;
  SeriesInstanceUID: string;
  createdAt: Date;
  title: { value: string; meaning: string };
  patient: { PatientID: string; IssuerOfPatientID: string };
  StudyInstanceUID: string;
  series: Array<{ SeriesInstanceUID: string; instances: Array<{ SOPClassUID: string; SOPInstanceUID: string }> }>;
}

const el = (tag: Tag, vr: VR, value: string): [Tag, DicomElement] => [tag, { tag, vr, value: Buffer.from(value, 'utf8') }];
const sq = (tag: Tag, items: DicomDataset[]): [Tag, DicomElement] => [tag, { tag, vr: 'SQ', items }];
const dicomDate = (d: Date) => d.toISOString().slice(0, 10).replaceAll('-', '');
const dicomTime = (d: Date) => d.toISOString().slice(11, 19).replaceAll(':', '');

/** The Part 10 rejection note (explicit VR little endian). */
export function rejectionNoteOf(n: RejectionNoteInput): Buffer {
  const referenced = (i: { SOPClassUID: string; SOPInstanceUID: string }) => new Map([el(0x00081150, 'UI', i.SOPClassUID), el(0x00081155, 'UI', i.SOPInstanceUID)]);
  const evidence = new Map<Tag, DicomElement>([
    sq(0x00081115, n.series.map((se) => new Map<Tag, DicomElement>([sq(0x00081199, se.instances.map(referenced)), el(0x0020000e, 'UI', se.SeriesInstanceUID)]))),
    el(0x0020000d, 'UI', n.StudyInstanceUID),
  ]);
  const content = n.series.flatMap((se) => se.instances.map((i) => new Map<Tag, DicomElement>([
    sq(0x00081199, [referenced(i)]), el(0x0040a010, 'CS', 'CONTAINS'), el(0x0040a040, 'CS', 'COMPOSITE'),
  ])));
  const ds: DicomDataset = new Map([
    el(0x00080016, 'UI', KeyObjectSelectionDocumentStorage),
    el(0x00080018, 'UI', n.SOPInstanceUID),
    el(0x00080023, 'DA', dicomDate(n.createdAt)),
    el(0x00080033, 'TM', dicomTime(n.createdAt)),
    el(0x00080060, 'CS', 'KO'),
    el(0x00080070, 'LO', 'Atrium'),
    el(0x00100020, 'LO', n.patient.PatientID),
    el(0x00100021, 'LO', n.patient.IssuerOfPatientID),
    el(0x0020000d, 'UI', n.StudyInstanceUID),
    el(0x0020000e, 'UI', n.SeriesInstanceUID),
    el(0x00200011, 'IS', '9003'),
    el(0x00200013, 'IS', '1'),
    el(0x0040a040, 'CS', 'CONTAINER'),
    sq(0x0040a043, [new Map([el(0x00080100, 'SH', n.title.value), el(0x00080102, 'SH', 'DCM'), el(0x00080104, 'LO', n.title.meaning)])]),
    el(0x0040a050, 'CS', 'SEPARATE'),
    sq(0x0040a375, [evidence]),
    sq(0x0040a504, [new Map([el(0x00080105, 'CS', 'DCMR'), el(0x0040db00, 'CS', '2010')])]),
    sq(0x0040a730, content),
  ]);
  return buildPart10(
    { MediaStorageSOPClassUID: KeyObjectSelectionDocumentStorage, MediaStorageSOPInstanceUID: n.SOPInstanceUID, TransferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian },
    encodeDataset(ds, true, true),
  );
}
