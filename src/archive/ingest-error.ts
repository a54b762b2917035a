import type { IdentityConflict } from '../index/archive-index.ts';

/**
 * Why an object was refused. Each protocol maps the code to its own form
 * (DICOMweb FailureReason, DIMSE status) in one place: statusOfIngestError.
 */
export type IngestErrorCode =
  | 'not-dicom' // no preamble/DICM, no meta header
  | 'malformed' // the dataset does not parse
  | 'truncated'
  | 'header-too-large'
  | 'unknown-transfer-syntax'
  | 'missing-attribute'
  | 'invalid-uid'
  | 'uid-mismatch' // meta header and dataset disagree (ingest.metaHeaderMismatch: reject)
  | 'inconsistent-size' // pixel data shorter than its description
  | 'study-mismatch' // STOW-RS to /studies/{uid} with an object of another study
  | 'duplicate-rejected'
  | 'duplicate-kept'
  | 'unknown-site'
  | 'identity-conflict' // the study is filed under another patient, the series under another study, the instance under another site's or patient's study
  | 'storage-failure';

export class IngestError extends Error {
  constructor(readonly code: IngestErrorCode, message: string, readonly conflict?: IdentityConflict) {
    super(message);
    this.name = 'IngestError';
  }
}

/** Status codes of PS3.4 Annex B / PS3.18 Table 10.5.3-2 used for refused objects. */
export const IngestStatus = {
  ProcessingFailure: 0x0110,
  DuplicateSOPInstance: 0x0111,
  OutOfResources: 0xa700,
  DataSetDoesNotMatchSOPClass: 0xa900,
  CannotUnderstand: 0xc000,
  ReferencedTransferSyntaxNotSupported: 0xc122,
  NotAuthorized: 0x0124,
} as const;

export function statusOfIngestError(code: IngestErrorCode): number {
  switch (code) {
    case 'unknown-transfer-syntax':
      return IngestStatus.ReferencedTransferSyntaxNotSupported;
    case 'duplicate-rejected':
    case 'duplicate-kept':
      return IngestStatus.DuplicateSOPInstance;
    case 'study-mismatch':
    case 'identity-conflict':
    case 'uid-mismatch':
    case 'inconsistent-size':
      return IngestStatus.DataSetDoesNotMatchSOPClass;
    case 'storage-failure':
    case 'header-too-large':
      return IngestStatus.OutOfResources;
    case 'unknown-site':
      return IngestStatus.NotAuthorized;
    case 'not-dicom':
    case 'malformed':
    case 'truncated':
    case 'missing-attribute':
    case 'invalid-uid':
      return IngestStatus.CannotUnderstand;
  }
}
