/**
 * The image manifest of a study as a DICOM Key Object Selection document (PS3.3 A.35.4,
 * title 113030 "Manifest", TID 2010), as IHE XDS-I.b and the DMP want it: the patient by
 * their qualified INS (Issuer of Patient ID ASIP-SANTE-INS-NIR/NIA, the authority's OID in
 * the qualifiers, type ISO), the INS and the site's own identifier again in Other Patient
 * IDs; the request it fulfils (Referenced Request Sequence: accession number with its
 * issuer, placer order); the one study in Current Requested Procedure Evidence, each series
 * with its WADO-RS Retrieve URL on this Atrium; a Key Object Description text item and one
 * reference per object.
 *
 * `filedUnder: 'site'` writes the same object with the site's identifier at the top and the
 * INS in Other Patient IDs: the copy stored in the study, which the index files under the
 * study's patient record (XDS-I: the affinity domain's identifier travels in the manifest
 * published, the local one in the source's archive). Pure: study-documents.ts gathers the input.
 */
import { TransferSyntax, type DicomDataset, type DicomElement, type Tag, type VR } from '../dicom/dataset.ts';
import { buildPart10, encodeDataset } from '../dicom/part10-writer.ts';
import { insValue, type INS } from '../patients/ins.ts';
import { INS_ISSUER_OF_PATIENT_ID, insOtherPatientIDsItem } from '../patients/ins-dicom.ts';

export const KeyObjectSelectionDocumentStorage = '1.2.840.10008.5.1.4.1.1.88.59';

export interface ManifestInstance { SOPClassUID: string; SOPInstanceUID: string; image: boolean }
export interface ManifestSeries { SeriesInstanceUID: string; instances: ManifestInstance[] }

export interface ManifestInput {
  SOPInstanceUID: string;
  SeriesInstanceUID: string;
  /** The manifest's version, from 1. */
  version: number;
  createdAt: Date;
  /** A qualified identity's INS (shareableINS): the caller refuses a patient without one. */
  ins: INS;
  patient: { PatientID: string; IssuerOfPatientID: string; PatientName?: string; PatientBirthDate?: string; PatientSex?: string };
  study: {
    StudyInstanceUID: string; StudyDate?: string; StudyTime?: string; StudyID?: string; ReferringPhysicianName?: string; StudyDescription?: string;
    AccessionNumber?: string;
  };
  /** Who numbers the accession numbers: the site (its code), and an OID for it. */
  accessionIssuer: { LocalNamespaceEntityID: string; UniversalEntityID: string };
  order?: { PlacerOrderNumber?: string; RequestedProcedureDescription?: string };
  series: ManifestSeries[];
  /** This Atrium's DICOMweb root (http.publicBaseUrl + /dicom-web), for the Retrieve URLs. */
  dicomwebBaseUrl?: string;
  description: string;
  filedUnder?: 'ins' | 'site';
}

function el(tag: Tag, vr: VR, value: string): [Tag, DicomElement] {
  return [tag, { tag, vr, value: Buffer.from(value, 'utf8') }];
}

function sq(tag: Tag, items: DicomDataset[]): [Tag, DicomElement] {
  return [tag, { tag, vr: 'SQ', items }];
}

function code(value: string, scheme: string, meaning: string): DicomDataset {
  return new Map([el(0x00080100, 'SH', value), el(0x00080102, 'SH', scheme), el(0x00080104, 'LO', meaning)]);
}

const dicomDate = (d: Date) => d.toISOString().slice(0, 10).replaceAll('-', '');
const dicomTime = (d: Date) => d.toISOString().slice(11, 19).replaceAll(':', '');

/** The site's identifier as an Other Patient IDs item. */
function localIdItem(p: ManifestInput['patient']): DicomDataset {
  return new Map([el(0x00100020, 'LO', p.PatientID), el(0x00100021, 'LO', p.IssuerOfPatientID), el(0x00100022, 'CS', 'TEXT')]);
}

/** The Part 10 object (explicit VR little endian, UTF-8). */
export function kosManifestOf(m: ManifestInput): Buffer {
  const byINS = (m.filedUnder ?? 'ins') === 'ins';
  const s = m.study;
  const issuerOfAccession = new Map([
    el(0x00400031, 'UT', m.accessionIssuer.LocalNamespaceEntityID),
    el(0x00400032, 'UT', m.accessionIssuer.UniversalEntityID),
    el(0x00400033, 'CS', 'ISO'),
  ]);
  const patientIdentity: Array<[Tag, DicomElement]> = byINS
    ? [
      el(0x00100020, 'LO', insValue(m.ins)),
      el(0x00100021, 'LO', INS_ISSUER_OF_PATIENT_ID[m.ins.system]),
      el(0x00100022, 'CS', 'TEXT'),
      sq(0x00100024, [new Map([el(0x00400032, 'UT', m.ins.oid), el(0x00400033, 'CS', 'ISO'), el(0x00400035, 'CS', 'INS')])]),
    ]
    : [el(0x00100020, 'LO', m.patient.PatientID), el(0x00100021, 'LO', m.patient.IssuerOfPatientID)];
  const retrieveUrl = (series: string) => m.dicomwebBaseUrl ? `${m.dicomwebBaseUrl}/studies/${s.StudyInstanceUID}/series/${series}` : undefined;
  const referencedSOP = (i: ManifestInstance) => new Map([el(0x00081150, 'UI', i.SOPClassUID), el(0x00081155, 'UI', i.SOPInstanceUID)]);
  const evidence = new Map<Tag, DicomElement>([
    el(0x0020000d, 'UI', s.StudyInstanceUID),
    sq(0x00081115, m.series.map((se) => {
      const url = retrieveUrl(se.SeriesInstanceUID);
      return new Map<Tag, DicomElement>([
        ...(url ? [el(0x00081190, 'UR', url)] : []),
        sq(0x00081199, se.instances.map(referencedSOP)),
        el(0x0020000e, 'UI', se.SeriesInstanceUID),
      ]);
    })),
  ]);
  const request = new Map<Tag, DicomElement>([
    el(0x00080050, 'SH', s.AccessionNumber ?? ''),
    sq(0x00080051, s.AccessionNumber ? [issuerOfAccession] : []),
    sq(0x00081110, []),
    el(0x0020000d, 'UI', s.StudyInstanceUID),
    el(0x00321060, 'LO', m.order?.RequestedProcedureDescription ?? ''),
    sq(0x00321064, []),
    el(0x00401001, 'SH', ''),
    el(0x00402016, 'LO', m.order?.PlacerOrderNumber ?? ''),
    el(0x00402017, 'LO', ''),
  ]);
  const content: DicomDataset[] = [
    new Map([
      el(0x0040a010, 'CS', 'CONTAINS'),
      el(0x0040a040, 'CS', 'TEXT'),
      sq(0x0040a043, [code('113012', 'DCM', 'Key Object Description')]),
      el(0x0040a160, 'UT', m.description),
    ]),
    ...m.series.flatMap((se) => se.instances.map((i) => new Map<Tag, DicomElement>([
      sq(0x00081199, [referencedSOP(i)]),
      el(0x0040a010, 'CS', 'CONTAINS'),
      el(0x0040a040, 'CS', i.image ? 'IMAGE' : 'COMPOSITE'),
    ]))),
  ];
  const ds: DicomDataset = new Map([
    el(0x00080005, 'CS', 'ISO_IR 192'),
    el(0x00080016, 'UI', KeyObjectSelectionDocumentStorage),
    el(0x00080018, 'UI', m.SOPInstanceUID),
    el(0x00080020, 'DA', s.StudyDate ?? ''),
    el(0x00080023, 'DA', dicomDate(m.createdAt)),
    el(0x00080030, 'TM', s.StudyTime ?? ''),
    el(0x00080033, 'TM', dicomTime(m.createdAt)),
    el(0x00080050, 'SH', s.AccessionNumber ?? ''),
    sq(0x00080051, s.AccessionNumber ? [issuerOfAccession] : []),
    el(0x00080060, 'CS', 'KO'),
    el(0x00080070, 'LO', 'Atrium'),
    el(0x00080090, 'PN', s.ReferringPhysicianName ?? ''),
    ...(s.StudyDescription !== undefined ? [el(0x00081030, 'LO', s.StudyDescription)] : []),
    el(0x0008103e, 'LO', 'Manifeste'),
    sq(0x00081111, []),
    el(0x00100010, 'PN', m.patient.PatientName ?? ''),
    ...patientIdentity,
    el(0x00100030, 'DA', m.patient.PatientBirthDate ?? ''),
    el(0x00100040, 'CS', m.patient.PatientSex ?? ''),
    // Both identifiers again: the INS (as every INS-bearing object carries it) and the site's.
    sq(0x00101002, [insOtherPatientIDsItem(m.ins), localIdItem(m.patient)]),
    el(0x0020000d, 'UI', s.StudyInstanceUID),
    el(0x0020000e, 'UI', m.SeriesInstanceUID),
    el(0x00200010, 'SH', s.StudyID ?? ''),
    el(0x00200011, 'IS', '9002'),
    el(0x00200013, 'IS', String(m.version)),
    el(0x0040a040, 'CS', 'CONTAINER'),
    sq(0x0040a043, [code('113030', 'DCM', 'Manifest')]),
    el(0x0040a050, 'CS', 'SEPARATE'),
    sq(0x0040a370, [request]),
    sq(0x0040a375, [evidence]),
    sq(0x0040a504, [new Map([el(0x00080105, 'CS', 'DCMR'), el(0x0040db00, 'CS', '2010')])]),
    sq(0x0040a730, content),
  ]);
  return buildPart10(
    { MediaStorageSOPClassUID: KeyObjectSelectionDocumentStorage, MediaStorageSOPInstanceUID: m.SOPInstanceUID, TransferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian },
    encodeDataset(ds, true, true),
  );
}
