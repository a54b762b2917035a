import type { TimelineStudy } from './api.ts';

/** The DICOM JSON model (PS3.18 F.2), as QIDO-RS and WADO-RS metadata answer. */
export type DicomJson = Record<string, { vr: string; Value?: unknown[]; BulkDataURI?: string; InlineBinary?: string }>;

export const tag = {
  StudyDate: '00080020', Modality: '00080060', ModalitiesInStudy: '00080061', StudyDescription: '00081030', SeriesDescription: '0008103E',
  PatientName: '00100010', PatientID: '00100020', IssuerOfPatientID: '00100021', PatientBirthDate: '00100030', BodyPartExamined: '00180015',
  StudyInstanceUID: '0020000D', SeriesInstanceUID: '0020000E', SeriesNumber: '00200011', InstanceNumber: '00200013', SOPInstanceUID: '00080018',
  SOPClassUID: '00080016', NumberOfFrames: '00280008', NumberOfSeriesRelatedInstances: '00201209', NumberOfStudyRelatedInstances: '00201208',
  NumberOfStudyRelatedSeries: '00201206', AccessionNumber: '00080050', RetrieveAETitle: '00080054',
} as const;

export function str(ds: DicomJson, t: string): string | undefined {
  const v = ds[t]?.Value?.[0];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object' && 'Alphabetic' in (v as object)) return (v as { Alphabetic: string }).Alphabetic;
  return String(v);
}

export function strs(ds: DicomJson, t: string): string[] {
  return (ds[t]?.Value ?? []).map(String);
}

export function num(ds: DicomJson, t: string): number | undefined {
  const s = str(ds, t);
  return s === undefined ? undefined : Number(s);
}

export function studyOfQido(ds: DicomJson): TimelineStudy {
  return {
    site: str(ds, tag.IssuerOfPatientID) ?? '', IssuerOfPatientID: str(ds, tag.IssuerOfPatientID) ?? '', PatientID: str(ds, tag.PatientID) ?? '', StudyInstanceUID: str(ds, tag.StudyInstanceUID) ?? '',
    ...(str(ds, tag.StudyDate) ? { StudyDate: str(ds, tag.StudyDate) } : {}),
    ...(str(ds, tag.StudyDescription) ? { StudyDescription: str(ds, tag.StudyDescription) } : {}),
    ModalitiesInStudy: strs(ds, tag.ModalitiesInStudy), BodyPartsExamined: [],
    NumberOfStudyRelatedSeries: num(ds, tag.NumberOfStudyRelatedSeries) ?? 0, NumberOfStudyRelatedInstances: num(ds, tag.NumberOfStudyRelatedInstances) ?? 0,
  };
}
