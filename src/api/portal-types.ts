/**
 * What the portal API (src/api/patients.ts) answers, as the server writes it and the portal
 * (web/src/api.ts) reads it: one definition for both sides. No imports, so that the web
 * build can take it as it is.
 */

/** A patient record found by a search. */
export interface PatientRecordSummary {
  site: string;
  PatientID: string;
  IssuerOfPatientID: string;
  PatientName?: string;
  PatientBirthDate?: string;
  PatientSex?: string;
  /** The INS (matricule and key), only once the record's identity is qualified. */
  INS?: string;
  NumberOfPatientRelatedStudies: number;
}

/** A page of a patient search; `next` is the offset of the following page, when there is one. */
export interface PatientPage {
  patients: PatientRecordSummary[];
  offset: number;
  limit: number;
  next?: number;
}

/** One exam of a person's timeline. */
export interface TimelineStudy {
  site: string;
  PatientID: string;
  IssuerOfPatientID: string;
  StudyInstanceUID: string;
  StudyDate?: string;
  StudyTime?: string;
  StudyDescription?: string;
  AccessionNumber?: string;
  ModalitiesInStudy: string[];
  BodyPartsExamined: string[];
  NumberOfStudyRelatedSeries: number;
  NumberOfStudyRelatedInstances: number;
  /** The study's latest teleradiology request: where it stands, and its report's status once one is written. */
  teleradiology?: { request: string; report?: string };
}
