import type { ByteRange } from '../dicom/dataset.ts';
import type { StoredBlob } from '../storage/blob-store.ts';

/**
 * What the index stores and answers. Attribute names are DICOM keywords;
 * values are the decoded strings as received (DA as YYYYMMDD, TM as HHMMSS.FFFFFF,
 * PN in its DICOM form "Family^Given^Middle^Prefix^Suffix", multi-values joined by "\").
 */

/** An establishment of the territory that sends images. */
export interface Site {
  id: number;
  /** Short stable code, used in configuration and URLs (e.g. "CHU-NORD"). */
  code: string;
  name: string;
  /** FINESS number of the establishment (9 characters). */
  finess: string;
  /** Issuer of Patient ID for the patient identifiers this site assigns. */
  issuerOfPatientID: string;
}

export interface NewSite {
  code: string;
  name: string;
  finess: string;
  issuerOfPatientID: string;
}

export interface PatientAttributes {
  PatientID: string;
  /** The issuer as resolved by ingest (the site's issuer when the object has none). */
  IssuerOfPatientID: string;
  PatientName?: string;
  PatientBirthDate?: string;
  PatientSex?: string;
}

export interface StudyAttributes {
  StudyInstanceUID: string;
  StudyDate?: string;
  StudyTime?: string;
  AccessionNumber?: string;
  StudyID?: string;
  StudyDescription?: string;
  ReferringPhysicianName?: string;
  /**
   * The referring physician's identifier (RPPS in France) from Referring Physician
   * Identification Sequence > Person Identification Code Sequence > Code Value: it gives the
   * referring physician access to the exam (access/policy.ts). Not a DICOM keyword of its own.
   */
  ReferringPhysicianID?: string;
  InstitutionName?: string;
}

export interface SeriesAttributes {
  SeriesInstanceUID: string;
  Modality?: string;
  SeriesNumber?: number;
  SeriesDescription?: string;
  BodyPartExamined?: string;
  SeriesDate?: string;
  SeriesTime?: string;
  PerformedProcedureStepStartDate?: string;
  PerformedProcedureStepStartTime?: string;
}

export interface InstanceAttributes {
  SOPInstanceUID: string;
  SOPClassUID: string;
  InstanceNumber?: number;
  /** Transfer syntax of the stored object, as received. */
  TransferSyntaxUID: string;
  NumberOfFrames?: number;
  Rows?: number;
  Columns?: number;
  ContentDate?: string;
  ContentTime?: string;
}

/**
 * Where the parts of a stored object lie, so frames and bulk data are served with
 * range reads and no reparse.
 */
export interface InstanceLayout {
  datasetOffset: number;
  littleEndian: boolean;
  explicitVR: boolean;
  /** Native pixel data value range, or encapsulated fragments. */
  pixelData?: {
    range: ByteRange;
    fragments?: ByteRange[];
    basicOffsetTable?: number[];
  };
  /** Bulk values by tag path ("7FE00010", or "00540016.0.00181072" inside sequences). */
  bulk: Record<string, ByteRange>;
  /**
   * The object as it was received, when it is kept re-encoded to a lossless syntax
   * (storage.compression, src/archive/compression.ts): its syntax (sent on request) and
   * the size and SHA-256 of its bytes (for audit: the file itself is gone).
   */
  original?: { TransferSyntaxUID: string; size: number; sha256: string };
}

export interface InstanceRecord {
  siteId: number;
  patient: PatientAttributes;
  study: StudyAttributes;
  series: SeriesAttributes;
  instance: InstanceAttributes;
  blob: StoredBlob;
  layout: InstanceLayout;
  /**
   * DICOM JSON (PS3.18 F) of the whole instance without bulk data, as a string.
   * Bulk elements carry "BulkDataURI": "atrium:bulk/<tag path>", which the
   * DICOMweb layer rewrites to the instance's public URL.
   */
  metadataJson: string;
}

/** What to do with a different object that reuses a stored SOPInstanceUID. */
export type DuplicatePolicy = 'keep' | 'replace' | 'reject';

export type StoreOutcome =
  /** New instance indexed. */
  | { status: 'stored'; instanceId: number }
  /** Same bytes already stored (same SHA-256): nothing changed; the new blob is not needed. */
  | { status: 'identical'; instanceId: number; existingBlobKey: string }
  /** Different object, policy keep: the stored one stays, the new blob is kept aside in history. */
  | { status: 'kept-existing'; instanceId: number }
  /** Different object, policy replace: the new one is current, the old one is in history. */
  | { status: 'replaced'; instanceId: number; previousBlobKey: string }
  /** Different object, policy reject: nothing changed; the new blob is not needed. */
  | { status: 'rejected'; instanceId: number };

export type QueryLevel = 'patient' | 'study' | 'series' | 'instance';

/**
 * A search, already parsed from QIDO-RS or C-FIND. `matches` holds the raw matching
 * values by keyword (PS3.4 C.2.2.2 / PS3.18 8.3.4): "DOE*", "2020-", "1.2.3\\1.2.4", "".
 */
/** A condition the caller adds to a search (the access scope), over the studies row aliased `s`. */
export interface SqlRestriction {
  sql: string;
  params: unknown[];
}

export interface SearchQuery {
  level: QueryLevel;
  matches: Record<string, string>;
  fuzzymatching: boolean;
  limit: number;
  offset: number;
  /**
   * The caller's access scope as a SQL condition on the studies row `s` (access/policy.ts
   * scopeCondition); undefined means no restriction.
   */
  restriction?: SqlRestriction;
}

/** A patient found by a patient-level search (C-FIND patient root), with what the index holds of them. */
export interface PatientRow {
  patient: PatientAttributes;
  siteId: number;
  NumberOfPatientRelatedStudies: number;
  NumberOfPatientRelatedSeries: number;
  NumberOfPatientRelatedInstances: number;
}

export interface StudyRow {
  study: StudyAttributes;
  patient: PatientAttributes;
  siteId: number;
  ModalitiesInStudy: string[];
  SOPClassesInStudy: string[];
  NumberOfStudyRelatedSeries: number;
  NumberOfStudyRelatedInstances: number;
}

export interface SeriesRow {
  study: StudyAttributes;
  patient: PatientAttributes;
  series: SeriesAttributes;
  siteId: number;
  NumberOfSeriesRelatedInstances: number;
}

export interface InstanceRow {
  study: StudyAttributes;
  patient: PatientAttributes;
  series: SeriesAttributes;
  instance: InstanceAttributes;
  siteId: number;
}

/** What retrieval needs to serve one stored instance. */
export interface StoredInstance {
  instanceId: number;
  siteId: number;
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  SOPInstanceUID: string;
  SOPClassUID: string;
  TransferSyntaxUID: string;
  InstanceNumber?: number;
  NumberOfFrames?: number;
  blobKey: string;
  size: number;
  sha256: string;
  layout: InstanceLayout;
  metadataJson: string;
}

