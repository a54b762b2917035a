/**
 * What DMP publication needs of a document, and the events that drive it: the contract
 * between the documents module (CR-IMG CDA reports and KOS manifests, built by another
 * part of src/exchange/) and the publication queue (publications.ts).
 *
 * The documents module
 * - appends `document.final` (DocumentFinalEvent) with appendEvent (src/events/outbox.ts)
 *   in the transaction that makes a document final; `replaces` names the document it
 *   supersedes (a corrected report, a new manifest of the same study);
 * - appends `document.withdrawn` when a document is withdrawn (a manifest of a study whose
 *   images were corrected away);
 * - implements DmpDocumentSource: the document as it is to be sent, read when it is sent.
 * A study that loses its last instance (`instance.deleted` leaving no study) unpublishes
 * every document published for it.
 */
import type { PatientIdentity } from '../../patients/ins.ts';

export const documentEvents = { final: 'document.final', withdrawn: 'document.withdrawn' } as const;

export interface DocumentFinalEvent {
  documentId: string;
  siteId: number;
  StudyInstanceUID: string;
  /** The document this one supersedes: its DMP entry is replaced (RPLC), not duplicated. */
  replaces?: string;
  /**
   * INDIRECTE_RENFORCEE when a professional logged in with Pro Santé Connect made it final
   * (the VIHF then says so); INDIRECTE (default) for a publication by the structure's system.
   */
  mode?: 'INDIRECTE' | 'INDIRECTE_RENFORCEE';
}

export interface DocumentWithdrawnEvent {
  documentId: string;
}

/** A coded value as XDS carries it: code, coding scheme (OID or name), display name. */
export interface Coded {
  code: string;
  scheme: string;
  display: string;
}

export type DmpDocumentKind = 'CR-IMG' | 'KOS';

export interface DmpAuthor {
  /** National identifier of the professional (RPPS, prefixed 8 as in the IHE France XCN), or of the device. */
  id: string;
  family: string;
  given?: string;
  /** Profession / role code (TRE_G15 profession, e.g. 10 for a physician). */
  role?: Coded;
  /** Specialty (TRE_R38, e.g. G15_10/SM44 for radiology). */
  specialty?: Coded;
}

export interface DmpDocument {
  /** The documents module's id of the document (what document.final names). */
  id: string;
  kind: DmpDocumentKind;
  /** XDSDocumentEntry.uniqueId: the CDA's ClinicalDocument/id (root^extension) or the KOS's SOPInstanceUID. */
  uniqueId: string;
  /** text/xml for a CDA, application/pdf for a report sent as PDF, application/dicom for a KOS. */
  mimeType: 'text/xml' | 'application/pdf' | 'application/dicom';
  content: Buffer;
  title: string;
  /** ClinicalDocument/effectiveTime, or the KOS's content date and time. */
  creationTime: Date;
  /** The act the document describes: the study's date and time. */
  serviceStartTime?: Date;
  siteId: number;
  patient: { PatientID: string; IssuerOfPatientID: string; identity?: PatientIdentity };
  StudyInstanceUID: string;
  AccessionNumber?: string;
  /** The order (placer order number) with the OID of its assigning authority. */
  order?: { id: string; issuerOid: string };
  /** DICOM modality codes of the study (CT, MR...): eventCodeList. */
  modalities: readonly string[];
  /** Anatomic region(s) examined: eventCodeList. */
  regions: readonly Coded[];
  author: DmpAuthor;
  /** N (normal) unless the patient asked for the document to be masked from professionals. */
  confidentiality?: 'N' | 'R' | 'V';
}

/** Where publication reads documents; the documents module implements it. */
export interface DmpDocumentSource {
  documentFor(documentId: string): Promise<DmpDocument | undefined>;
  /** Told of every change of a document's publication state (optional: the queue is the record). */
  publicationChanged?(documentId: string, state: string, details: { entryUUID?: string; error?: string }): Promise<void>;
}
