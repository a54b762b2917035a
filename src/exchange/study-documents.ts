/**
 * The documents of a study meant for the DMP and the territory's image sharing: the imaging
 * report as CDA R2 CR-IMG (cda-cr-img.ts) and the image manifest as DICOM KOS
 * (kos-manifest.ts). This module owns the `study_documents` and `study_documents_due` tables.
 *
 * INTERFACE (for the DMP publication, src/exchange/dmp/):
 *   - Each new document (or new version) appends `document.final` { documentId: String(id),
 *     siteId, StudyInstanceUID, replaces?: String(id of the version it replaces) } to the
 *     outbox in the transaction that stores it (dmp/document.ts's contract).
 *   - `new StudyDocumentSource(sql)` is the DmpDocumentSource: documentFor(documentId) gives
 *     the document as sent (content: the CDA XML as UTF-8, or the KOS Part 10 object as filed
 *     in the DMP: PatientID = the qualified INS) with its XDS metadata; publicationChanged()
 *     records the state in the document's `publicationStatus` (shown by the API).
 *   - Without the queue: `documentsToPublish(sql, { status: 'pending', limit })` lists what to
 *     publish, oldest first; `loadStudyDocument(sql, id)` gives one with its bytes;
 *     `setPublicationStatus(sql, id, status, { detail, at })` records what the DMP said
 *     (publicationStatuses); `detail` is free text (the registry's answer), never patient data.
 *   - Each document carries what XDS metadata needs: `kind` ('CR-IMG' | 'KOS'), `typeCode`
 *     (LOINC 18748-4 / IMG-KOS) and its system, `classCode`, `mimeType`, `uniqueId` (the CDA
 *     id / the SOP Instance UID), `setId` and `version` (a new version replaces: `replacesId`
 *     names the document it replaces, whose `current` is then false), `StudyInstanceUID`,
 *     `patientId` (index id of the study's patient record).
 *   - The documents themselves, pure: `crImgOfSignedReport(report, { identity, site, study, ... })`
 *     (or cda-cr-img.ts `crImgDocumentOf` for any input, PDF body included) gives the CR-IMG
 *     XML; kos-manifest.ts `kosManifestOf(input)` the KOS Part 10 Buffer.
 *   - `StudyDocuments.buildForStudy(StudyInstanceUID)` builds what is due now; the HTTP API
 *     and the worker call it, so a caller never has to.
 *
 * When: a final (or amended) teleradiology report marks its study due in the signing
 * transaction (`markStudyDocumentsDue`); so does any change to a study that already has
 * documents (StudyDocumentsConsumer, an outbox consumer: new objects, replaced or rejected
 * ones, a study moved or merged into another patient). Due studies are built by the worker
 * (cli/workers.ts, 'studyDocuments'), or at once when their documents are asked for. A report
 * the site wrote in its own RIS arrives over HL7 (hl7/document-messages.ts → acceptSiteReport).
 * Nothing is built for a patient without a qualified INS (RNIV: the INS leaves the site only
 * qualified): the manifest asked for on demand is refused with `no-qualified-ins`; a study
 * moved to such a patient has its documents withdrawn (`document.withdrawn` { documentId }).
 */
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Archive } from '../archive/archive.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { OutboxConsumer } from '../events/consumer.ts';
import { appendEvent } from '../events/outbox.ts';
import type { OutboxEvent } from '../events/outbox.ts';
import { PollingLoop } from '../lib/polling-loop.ts';
import { parseXml, XmlError } from './dmp/xml.ts';
import { insValue, shareableINS, type INS, type PatientIdentity } from '../patients/ins.ts';
import { uidOfName } from './encapsulated-pdf.ts';
import { loadSignedReport, type SignedReport } from './signed-report.ts';
import { dosesOfStudies } from '../workflow/dose-records.ts';
import { anatomicRegionOf, CR_IMG_LOINC, crImgDocumentOf, LOINC, type CrImgDose, type CrImgSeries } from './cda-cr-img.ts';
import { kosManifestOf, type ManifestInput } from './kos-manifest.ts';
import { patientIdentityOf } from '../patients/identities.ts';

/** Moved to the owner of patient_identities; still exported here for its callers. */
export { patientIdentityOf };

export type DocumentKind = 'CR-IMG' | 'KOS';
/** The DMP publication's states (src/exchange/dmp/publications.ts), 'pending' until it says otherwise. */
export const publicationStatuses = ['pending', 'published', 'unpublished', 'replaced', 'withdrawn', 'refused', 'failed', 'no-ins', 'no-dmp', 'opposed'] as const;
export type PublicationStatus = (typeof publicationStatuses)[number];

/** XDS classCode / typeCode of each kind (CI-SIS JDV J06 / J07), as dmp/metadata.ts sends them. */
const xdsCodes: Record<DocumentKind, { typeCode: string; typeCodeSystem: string; classCode: string; mimeType: string }> = {
  'CR-IMG': { typeCode: CR_IMG_LOINC, typeCodeSystem: LOINC, classCode: '10', mimeType: 'text/xml' },
  KOS: { typeCode: 'IMG-KOS', typeCodeSystem: '1.2.250.1.213.1.1.4.12', classCode: '31', mimeType: 'application/dicom' },
};

export interface StudyDocument {
  id: number;
  kind: DocumentKind;
  StudyInstanceUID: string;
  patientId: number;
  typeCode: string;
  typeCodeSystem: string;
  classCode: string;
  mimeType: string;
  uniqueId: string;
  setId: string;
  version: number;
  current: boolean;
  replacesId?: number;
  reportId?: number;
  publicationStatus: PublicationStatus;
  publicationDetail?: string;
  publishedAt?: string;
  createdAt: string;
}

/** What XDS metadata needs of a document beyond its bytes, fixed when it is built. */
export interface DocumentMeta {
  title: string;
  creationTime: string;
  serviceStartTime?: string;
  siteId: number;
  PatientID: string;
  IssuerOfPatientID: string;
  AccessionNumber?: string;
  order?: { id: string; issuerOid: string };
  modalities: string[];
  regions: Array<{ code: string; scheme: string; display: string }>;
  author: { id: string; family: string; given?: string; role?: { code: string; scheme: string; display: string }; specialty?: { code: string; scheme: string; display: string } };
}

export class DocumentError extends Error {
  override readonly name = 'DocumentError';
  constructor(readonly code: 'no-qualified-ins' | 'no-study' | 'incomplete' | 'invalid-document', message: string) {
    super(message);
  }
}

interface DocumentRow {
  id: number; kind: DocumentKind; study_instance_uid: string; patient_id: number; type_code: string; type_code_system: string; class_code: string;
  mime_type: string; unique_id: string; set_id: string; version: number; current: number; replaces_id: number | null; report_id: number | null;
  fingerprint: string; meta_json: string; publication_status: PublicationStatus; publication_detail: string | null; published_at: string | null; created_at: string;
}

const columns = `id, kind, study_instance_uid, patient_id, type_code, type_code_system, class_code, mime_type, unique_id, set_id, version, current,
  replaces_id, report_id, fingerprint, meta_json, publication_status, publication_detail, published_at, created_at`;

function documentOf(r: DocumentRow): StudyDocument {
  return {
    id: Number(r.id), kind: r.kind, StudyInstanceUID: r.study_instance_uid, patientId: Number(r.patient_id), typeCode: r.type_code,
    typeCodeSystem: r.type_code_system, classCode: r.class_code, mimeType: r.mime_type, uniqueId: r.unique_id, setId: r.set_id,
    version: Number(r.version), current: Number(r.current) === 1, ...(r.replaces_id !== null ? { replacesId: Number(r.replaces_id) } : {}),
    ...(r.report_id !== null ? { reportId: Number(r.report_id) } : {}), publicationStatus: r.publication_status,
    ...(r.publication_detail !== null ? { publicationDetail: r.publication_detail } : {}), ...(r.published_at !== null ? { publishedAt: r.published_at } : {}),
    createdAt: r.created_at,
  };
}

/** The series UID of a study's manifests: its own objects never make the study due again. */
export function manifestSeriesUID(StudyInstanceUID: string): string {
  return uidOfName(`atrium:manifest-series:${StudyInstanceUID}`);
}

/** Marks a study's documents to be built (again), inside the caller's transaction. */
export async function markStudyDocumentsDue(tx: SqlDatabase, StudyInstanceUID: string, reason: string, now = new Date()): Promise<void> {
  await tx.run(
    `INSERT INTO study_documents_due (study_instance_uid, reason, due_at) VALUES (?, ?, ?)
     ON CONFLICT (study_instance_uid) DO UPDATE SET reason = excluded.reason, due_at = excluded.due_at, leased_until = NULL`,
    [StudyInstanceUID, reason, now.toISOString()]);
}

/** A study's documents, current ones first then older versions, newest first. */
export async function listStudyDocuments(sql: SqlDatabase, StudyInstanceUID: string): Promise<StudyDocument[]> {
  const rows = await sql.all<DocumentRow>(`SELECT ${columns} FROM study_documents WHERE study_instance_uid = ? ORDER BY current DESC, id DESC`, [StudyInstanceUID]);
  return rows.map(documentOf);
}

/** One document with its bytes, or undefined. */
export async function loadStudyDocument(sql: SqlDatabase, id: number): Promise<{ document: StudyDocument; content: Buffer } | undefined> {
  const row = await sql.get<DocumentRow & { content: string }>(`SELECT ${columns}, content FROM study_documents WHERE id = ?`, [id]);
  if (!row) return undefined;
  return { document: documentOf(row), content: row.mime_type === 'application/dicom' ? Buffer.from(row.content, 'base64') : Buffer.from(row.content, 'utf8') };
}

/** Current documents in a publication status, oldest first: what the DMP publication works through. */
export async function documentsToPublish(sql: SqlDatabase, options: { status?: PublicationStatus; limit?: number } = {}): Promise<StudyDocument[]> {
  const rows = await sql.all<DocumentRow>(`SELECT ${columns} FROM study_documents WHERE publication_status = ? AND current = 1 ORDER BY id LIMIT ?`,
    [options.status ?? 'pending', options.limit ?? 50]);
  return rows.map(documentOf);
}

/** Records the DMP publication's outcome for a document; false when there is no such document. */
export async function setPublicationStatus(sql: SqlDatabase, id: number, status: PublicationStatus, options: { detail?: string; at?: Date } = {}): Promise<boolean> {
  if (!publicationStatuses.includes(status)) throw new Error(`unknown publication status ${status}`);
  const at = (options.at ?? new Date()).toISOString();
  const r = await sql.run(
    `UPDATE study_documents SET publication_status = ?, publication_detail = ?, published_at = ${status === 'published' ? '?' : 'published_at'}, updated_at = ? WHERE id = ?`,
    status === 'published' ? [status, options.detail ?? null, at, at, id] : [status, options.detail ?? null, at, id]);
  return r.changes === 1;
}

interface Identity { ins: INS; birthName?: string; firstNames?: string[]; birthPlaceCode?: string }

/** The qualified INS of a patient record with its traits, or undefined (no INS, not qualified, not valid). */
async function qualifiedIdentity(sql: SqlDatabase, patientId: number): Promise<Identity | undefined> {
  const identity = await patientIdentityOf(sql, patientId);
  const ins = identity ? shareableINS(identity) : undefined;
  if (!identity || !ins) return undefined;
  const { traits } = identity;
  return {
    ins, ...(traits.birthName ? { birthName: traits.birthName } : {}), ...(traits.firstNames.length > 0 ? { firstNames: [...traits.firstNames] } : {}),
    ...(traits.birthPlaceCode ? { birthPlaceCode: traits.birthPlaceCode } : {}),
  };
}

interface StudyFacts {
  StudyInstanceUID: string; patientId: number; siteId: number; PatientID: string; IssuerOfPatientID: string; PatientName?: string; PatientBirthDate?: string; PatientSex?: string;
  StudyDate?: string; StudyTime?: string; StudyID?: string; ReferringPhysicianName?: string; StudyDescription?: string; AccessionNumber?: string;
}

interface InstanceFacts { SeriesInstanceUID: string; Modality: string; SOPClassUID: string; SOPInstanceUID: string; image: boolean }

const some = (v: string | null): v is string => v !== null && v !== '';

/** Radiation dose indices read from the objects' headers: CTDIvol (0018,9345), the largest; DAP (0018,115E), summed. */
function dosesOf(headers: string[]): CrImgDose[] {
  let ctdi: number | undefined;
  let dap = 0;
  for (const h of headers) {
    const json = JSON.parse(h) as Record<string, { Value?: unknown[] }>;
    const c = Number(json['00189345']?.Value?.[0]);
    if (Number.isFinite(c) && c > 0) ctdi = Math.max(ctdi ?? 0, c);
    const d = Number(json['0018115E']?.Value?.[0]);
    if (Number.isFinite(d) && d > 0) dap += d;
  }
  return [
    ...(ctdi !== undefined ? [{ code: '113830', meaning: 'IDSV Moyen : Indice de Dose Scanographique Volumique', value: Math.round(ctdi * 100) / 100, unit: 'mGy' }] : []),
    // (0018,115E) is in dGy·cm²; the value set's unit for the dose-area product is Gy·m².
    ...(dap > 0 ? [{ code: '113722', meaning: 'PDS Total : Produit Dose Surface Total', value: Math.round(dap * 1e-5 * 1e6) / 1e6, unit: 'Gy.m2' }] : []),
  ];
}

export interface StudyDocumentsOptions {
  /** http.publicBaseUrl: the Retrieve URLs and WADO references point to this Atrium. */
  publicBaseUrl?: string;
  pollMs?: number;
}

export class StudyDocuments {
  private loop: PollingLoop | undefined;

  constructor(private readonly archive: Archive, private readonly options: StudyDocumentsOptions, private readonly logger: Pick<Logger, 'warn' | 'error'>) {}

  private get sql(): SqlDatabase {
    return this.archive.index.sql;
  }

  start(): void {
    this.loop = new PollingLoop(() => this.buildDue(), this.options.pollMs ?? 1000, (e) => this.logger.error({ err: e }, 'building study documents failed; it retries'));
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }

  /** One pass over the due studies; answers how many were built. */
  async buildDue(now = new Date()): Promise<number> {
    const due = await this.sql.all<{ study_instance_uid: string }>(
      `SELECT study_instance_uid FROM study_documents_due WHERE leased_until IS NULL OR leased_until < ? ORDER BY due_at LIMIT 20`, [now.toISOString()]);
    let built = 0;
    for (const d of due) if (await this.buildIfDue(d.study_instance_uid)) built++;
    return built;
  }

  /**
   * Builds a study's documents if it is due and no other node is building them: the due mark
   * is leased, then removed once built (kept, with the error, when building failed).
   */
  async buildIfDue(StudyInstanceUID: string): Promise<boolean> {
    const mark = await this.sql.get<{ due_at: string; leased_until: string | null }>('SELECT due_at, leased_until FROM study_documents_due WHERE study_instance_uid = ?', [StudyInstanceUID]);
    if (!mark) return false;
    const now = new Date();
    if (mark.leased_until !== null && mark.leased_until >= now.toISOString()) return false;
    const lease = new Date(now.getTime() + 60_000).toISOString();
    const taken = await this.sql.run(
      `UPDATE study_documents_due SET leased_until = ? WHERE study_instance_uid = ? AND due_at = ? AND (leased_until IS NULL OR leased_until < ?)`,
      [lease, StudyInstanceUID, mark.due_at, now.toISOString()]);
    if (taken.changes !== 1) return false;
    try {
      await this.buildForStudy(StudyInstanceUID);
    } catch (e) {
      // A study without a qualified INS (or gone) stays without documents: nothing to retry.
      const final = e instanceof DocumentError;
      // Moved to a patient without a qualified INS: what was made for the previous one is withdrawn.
      if (e instanceof DocumentError && e.code === 'no-qualified-ins') await this.withdrawCurrent(StudyInstanceUID);
      await this.sql.run(`UPDATE study_documents_due SET leased_until = ?, last_error = ? WHERE study_instance_uid = ? AND leased_until = ?`,
        [final ? '9999-12-31T00:00:00.000Z' : new Date(Date.now() + 30_000).toISOString(), (e as Error).message, StudyInstanceUID, lease]);
      if (final) await this.sql.run('DELETE FROM study_documents_due WHERE study_instance_uid = ? AND due_at = ?', [StudyInstanceUID, mark.due_at]);
      this.logger.warn({ err: (e as Error).message }, 'study documents not built');
      return false;
    }
    // Marked again meanwhile (due_at moved): kept for the next pass.
    await this.sql.run('DELETE FROM study_documents_due WHERE study_instance_uid = ? AND due_at = ?', [StudyInstanceUID, mark.due_at]);
    return true;
  }

  /**
   * Withdraws a study's current documents (document.withdrawn for the DMP publication), its
   * manifest leaving the study: they name a patient the study no longer belongs to.
   */
  private async withdrawCurrent(StudyInstanceUID: string): Promise<number> {
    return this.sql.transaction(async (tx) => {
      const rows = await tx.all<DocumentRow>(`SELECT ${columns} FROM study_documents WHERE study_instance_uid = ? AND current = 1`, [StudyInstanceUID]);
      const at = new Date().toISOString();
      for (const r of rows) {
        await tx.run('UPDATE study_documents SET current = 0, updated_at = ? WHERE id = ?', [at, r.id]);
        if (r.kind === 'KOS') await this.unindexManifest(tx, r.unique_id, 'manifest-withdrawn');
        await appendEvent(tx, 'document.withdrawn', { documentId: String(r.id) }, at);
      }
      return rows.length;
    });
  }

  /** A manifest leaves the study's index; its file stays, named in the history. */
  private async unindexManifest(tx: SqlDatabase, SOPInstanceUID: string, reason: string): Promise<void> {
    const old = await tx.get<{ blob_key: string; size: number; sha256: string }>('SELECT blob_key, size, sha256 FROM instances WHERE sop_instance_uid = ?', [SOPInstanceUID]);
    if (!old) return;
    await this.archive.index.deleteInstanceIndexIn(tx, SOPInstanceUID);
    await tx.run('INSERT INTO instance_history (sop_instance_uid, blob_key, size, sha256, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      [SOPInstanceUID, old.blob_key, old.size, old.sha256, reason, new Date().toISOString()]);
  }

  /**
   * Builds what a study should have now: the CR-IMG of its latest final report (a new version
   * when the report changed), and its manifest (a new version when its objects or its
   * patient changed). Throws DocumentError no-qualified-ins, nothing produced, when the
   * patient has no qualified INS.
   */
  async buildForStudy(StudyInstanceUID: string): Promise<StudyDocument[]> {
    const study = await this.studyFacts(StudyInstanceUID);
    const identity = await qualifiedIdentity(this.sql, study.patientId);
    if (!identity) throw new DocumentError('no-qualified-ins', `the patient of study ${StudyInstanceUID} has no qualified INS: no document leaves the site without one`);
    const instances = await this.instancesOf(StudyInstanceUID);
    const report = await this.latestFinalReport(StudyInstanceUID);
    withRequestAccession(study, report);
    const built: StudyDocument[] = [];
    if (report) {
      try {
        const doc = await this.buildReport(study, identity, instances, report);
        if (doc) built.push(doc);
      } catch (e) {
        // A report that cannot be a CR-IMG (its signer has no RPPS) does not keep the images from their manifest.
        if (!(e instanceof DocumentError) || e.code !== 'incomplete') throw e;
        this.logger.warn({ err: e.message }, 'no CR-IMG for this report');
      }
    }
    const manifest = await this.buildManifestWith(study, identity, instances, report);
    if (manifest) built.push(manifest);
    return built;
  }

  /** The study's manifest on demand: built when missing or out of date; the current one otherwise. */
  async buildManifest(StudyInstanceUID: string): Promise<StudyDocument> {
    const study = await this.studyFacts(StudyInstanceUID);
    const identity = await qualifiedIdentity(this.sql, study.patientId);
    if (!identity) throw new DocumentError('no-qualified-ins', `the patient of study ${StudyInstanceUID} has no qualified INS: no manifest is made without one`);
    const instances = await this.instancesOf(StudyInstanceUID);
    const report = await this.latestFinalReport(StudyInstanceUID);
    withRequestAccession(study, report);
    const made = await this.buildManifestWith(study, identity, instances, report);
    return made ?? (await listStudyDocuments(this.sql, StudyInstanceUID)).find((d) => d.kind === 'KOS' && d.current)!;
  }

  /**
   * A report the study's site wrote in its own RIS and sent (HL7 ORU^R01 / MDM^T02, T10): a
   * CR-IMG CDA, kept as sent once checked to be a CR-IMG of this study's patient (their
   * qualified INS), or a PDF, wrapped in a CR-IMG with a PDF body (XDS-SD). It becomes the
   * study's current CR-IMG (a new version of the one before), and the study is due for its
   * manifest. Throws DocumentError: no-qualified-ins, invalid-document, incomplete.
   */
  async acceptSiteReport(StudyInstanceUID: string, sent: ReceivedReport): Promise<StudyDocument> {
    const study = await this.studyFacts(StudyInstanceUID);
    const identity = await qualifiedIdentity(this.sql, study.patientId);
    if (!identity) throw new DocumentError('no-qualified-ins', `the patient of study ${StudyInstanceUID} has no qualified INS: no report leaves the site without one`);
    const previous = await this.current(StudyInstanceUID, 'CR-IMG');
    const version = previous ? Number(previous.version) + 1 : 1;
    let xml: string;
    let uniqueId: string;
    let setId: string;
    let signer: SiteReportSigner | undefined;
    if ('cda' in sent) {
      const checked = checkCrImg(sent.cda, identity.ins);
      ({ xml, uniqueId, setId } = checked);
      signer = checked.signer;
    } else {
      if (!sent.signer.rpps) throw new DocumentError('incomplete', 'a PDF report names its signing radiologist by RPPS (OBR-32, TXA-22)');
      signer = sent.signer;
      uniqueId = uidOfName(`atrium:cr-img-pdf:${StudyInstanceUID}:${version}:${sent.messageControlId}`);
      setId = previous?.set_id ?? uidOfName(`atrium:cr-img-set:${StudyInstanceUID}`);
      const site = this.archive.siteById.get(study.siteId)!;
      const instances = await this.instancesOf(StudyInstanceUID);
      xml = crImgDocumentOf({
        documentId: uniqueId, setId, version, ...(previous ? { replaces: previous.unique_id } : {}),
        patient: {
          ins: identity.ins, ...(study.PatientName ? { PatientName: study.PatientName } : {}), ...(study.PatientSex ? { PatientSex: study.PatientSex } : {}),
          ...(study.PatientBirthDate ? { PatientBirthDate: study.PatientBirthDate } : {}), ...(identity.birthName ? { birthName: identity.birthName } : {}),
          ...(identity.firstNames ? { firstNames: identity.firstNames } : {}), ...(identity.birthPlaceCode ? { birthPlaceCode: identity.birthPlaceCode } : {}),
        },
        site: { name: site.name, finess: site.finess }, signer: { name: sent.signer.name, rpps: sent.signer.rpps }, signedAt: sent.signedAt,
        requestingPhysician: sent.requestingPhysician ?? { name: study.ReferringPhysicianName ?? 'Inconnu' },
        order: {
          placerOrderNumber: sent.placerOrderNumber ?? sent.messageControlId, placerOrderOid: this.siteOid(study.siteId, 'order'),
          accessionIssuerOid: this.siteOid(study.siteId, 'accession'), ...(study.AccessionNumber ? { AccessionNumber: study.AccessionNumber } : {}),
        },
        performedAt: (study.StudyDate ? dateOf(study.StudyDate, study.StudyTime) : undefined) ?? sent.signedAt,
        acts: [{ modality: instances[0]?.Modality ?? 'OT', bodyPart: '', description: study.StudyDescription ?? 'Examen d\'imagerie', doses: [] }],
        study: { StudyInstanceUID, series: [] }, clinicalContext: '', clinicalQuestion: '', findings: '', conclusion: '', addenda: [], pdf: sent.pdf,
      });
    }
    const exists = await this.sql.get<{ id: number }>('SELECT id FROM study_documents WHERE unique_id = ?', [uniqueId]);
    if (exists) throw new DocumentError('invalid-document', `document ${uniqueId} was received already: a new version has an id of its own`);
    const instances = await this.instancesOf(StudyInstanceUID);
    const meta = this.metaOf(study, instances, undefined, "CR d'imagerie médicale", 'cda' in sent ? new Date() : sent.signedAt);
    if (signer?.rpps) {
      meta.author = {
        id: `8${signer.rpps}`, family: signer.name, role: { code: '10', scheme: '1.2.250.1.71.1.2.7', display: 'Médecin' },
        specialty: { code: 'G15_10/SM44', scheme: '1.2.250.1.213.1.1.4.5', display: 'Médecin - Radio-diagnostic (SM)' },
      };
    }
    return this.sql.transaction(async (tx) => {
      const made = await this.insert(tx, { kind: 'CR-IMG', study, uniqueId, setId, version, fingerprint: `site:${uniqueId}`, content: xml, meta }, previous);
      await markStudyDocumentsDue(tx, StudyInstanceUID, 'site-report');
      return made;
    });
  }

  private async studyFacts(StudyInstanceUID: string): Promise<StudyFacts> {
    const row = await this.sql.get<{
      patient_id: number; site_id: number; pid: string; issuer: string; patient_name: string | null; birth_date: string | null; sex: string | null;
      study_date: string | null; study_time: string | null; study_id: string | null; referring_physician_name: string | null; description: string | null; accession_number: string | null;
    }>(
      `SELECT s.patient_id, s.site_id, p.patient_id AS pid, p.issuer, p.patient_name, p.birth_date, p.sex, s.study_date, s.study_time, s.study_id,
              s.referring_physician_name, s.description, s.accession_number
         FROM studies s JOIN patients p ON p.id = s.patient_id WHERE s.study_instance_uid = ?`, [StudyInstanceUID]);
    if (!row) throw new DocumentError('no-study', `study ${StudyInstanceUID} is not in the archive`);
    return {
      StudyInstanceUID, patientId: Number(row.patient_id), siteId: Number(row.site_id), PatientID: row.pid, IssuerOfPatientID: row.issuer,
      ...(some(row.patient_name) ? { PatientName: row.patient_name } : {}), ...(some(row.birth_date) ? { PatientBirthDate: row.birth_date } : {}),
      ...(some(row.sex) ? { PatientSex: row.sex } : {}), ...(some(row.study_date) ? { StudyDate: row.study_date } : {}),
      ...(some(row.study_time) ? { StudyTime: row.study_time } : {}), ...(some(row.study_id) ? { StudyID: row.study_id } : {}),
      ...(some(row.referring_physician_name) ? { ReferringPhysicianName: row.referring_physician_name } : {}),
      ...(some(row.description) ? { StudyDescription: row.description } : {}), ...(some(row.accession_number) ? { AccessionNumber: row.accession_number } : {}),
    };
  }

  /** The study's objects, its manifests left out. */
  private async instancesOf(StudyInstanceUID: string): Promise<InstanceFacts[]> {
    const rows = await this.sql.all<{ series_instance_uid: string; modality: string | null; sop_class_uid: string; sop_instance_uid: string; pixel_rows: number | null }>(
      `SELECT se.series_instance_uid, se.modality, i.sop_class_uid, i.sop_instance_uid, i.pixel_rows
         FROM instances i JOIN series se ON se.id = i.series_id JOIN studies s ON s.id = se.study_id
        WHERE s.study_instance_uid = ? AND se.series_instance_uid <> ? ORDER BY se.series_number, se.id, i.instance_number, i.id`,
      [StudyInstanceUID, manifestSeriesUID(StudyInstanceUID)]);
    return rows.map((r) => ({
      SeriesInstanceUID: r.series_instance_uid, Modality: r.modality ?? 'OT', SOPClassUID: r.sop_class_uid, SOPInstanceUID: r.sop_instance_uid,
      image: r.pixel_rows !== null,
    }));
  }

  /** The exam's dose on record (src/workflow/dose-records.ts: its RDSR, else its headers); the headers themselves for an exam not yet recorded. */
  private async dosesOfStudy(StudyInstanceUID: string): Promise<CrImgDose[]> {
    const recorded = (await dosesOfStudies(this.sql, [StudyInstanceUID]))[0];
    if (!recorded) return dosesOf(await this.doseHeaders(StudyInstanceUID));
    return [
      ...(recorded.DLP !== undefined ? [{ code: '113813', meaning: 'PDL Total : Produit Dose Longueur Total', value: Math.round(recorded.DLP * 100) / 100, unit: 'mGy.cm' }] : []),
      ...(recorded.CTDIvol !== undefined ? [{ code: '113830', meaning: 'IDSV Moyen : Indice de Dose Scanographique Volumique', value: Math.round(recorded.CTDIvol * 100) / 100, unit: 'mGy' }] : []),
      ...(recorded.DAP !== undefined ? [{ code: '113722', meaning: 'PDS Total : Produit Dose Surface Total', value: Math.round(recorded.DAP * 1e6) / 1e6, unit: 'Gy.m2' }] : []),
    ];
  }

  /** The stored headers of the study's X-ray objects, read only when a report is built (the dose indices are in them). */
  private async doseHeaders(StudyInstanceUID: string): Promise<string[]> {
    const rows = await this.sql.all<{ metadata_json: string }>(
      `SELECT i.metadata_json FROM instances i JOIN series se ON se.id = i.series_id JOIN studies s ON s.id = se.study_id
        WHERE s.study_instance_uid = ? AND se.modality IN ('CT', 'DX', 'CR', 'RF', 'XA', 'MG', 'IO', 'PX', 'RG')`, [StudyInstanceUID]);
    return rows.map((r) => r.metadata_json);
  }

  private async latestFinalReport(StudyInstanceUID: string): Promise<SignedReport | undefined> {
    const row = await this.sql.get<{ id: number }>(
      `SELECT t.id FROM tele_reports t JOIN tele_requests r ON r.id = t.request_id
        WHERE r.study_instance_uid = ? AND t.status IN ('final', 'amended') ORDER BY t.signed_at DESC, t.id DESC LIMIT 1`, [StudyInstanceUID]);
    return row ? loadSignedReport(this.archive, { reportId: Number(row.id) }) : undefined;
  }

  private dicomwebBaseUrl(): string | undefined {
    return this.options.publicBaseUrl ? `${this.options.publicBaseUrl.replace(/\/$/, '')}/dicom-web` : undefined;
  }

  /** The OID that qualifies a site's accession numbers and orders (derived from its code: stable, no configuration). */
  private siteOid(siteId: number, what: 'accession' | 'order'): string {
    return uidOfName(`atrium:${what}-issuer:${this.archive.siteById.get(siteId)?.code ?? siteId}`);
  }

  private async current(StudyInstanceUID: string, kind: DocumentKind): Promise<DocumentRow | undefined> {
    return this.sql.get<DocumentRow>(`SELECT ${columns} FROM study_documents WHERE study_instance_uid = ? AND kind = ? AND current = 1`, [StudyInstanceUID, kind]);
  }

  /** Inserts a new current version, the previous one (if any) no longer current; in one transaction. */
  private async insert(tx: SqlDatabase, d: { kind: DocumentKind; study: StudyFacts; uniqueId: string; setId: string; version: number; reportId?: number; fingerprint: string; content: string; meta: DocumentMeta }, previous: DocumentRow | undefined): Promise<StudyDocument> {
    const at = new Date().toISOString();
    const codes = xdsCodes[d.kind];
    if (previous) await tx.run('UPDATE study_documents SET current = 0, updated_at = ? WHERE id = ?', [at, previous.id]);
    const row = await tx.get<DocumentRow>(
      `INSERT INTO study_documents (kind, study_instance_uid, patient_id, type_code, type_code_system, class_code, mime_type, unique_id, set_id, version, current,
         replaces_id, report_id, fingerprint, content, meta_json, publication_status, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING ${columns}`,
      [d.kind, d.study.StudyInstanceUID, d.study.patientId, codes.typeCode, codes.typeCodeSystem, codes.classCode, codes.mimeType, d.uniqueId, d.setId, d.version,
        previous ? previous.id : null, d.reportId ?? null, d.fingerprint, d.content, JSON.stringify(d.meta), at, at]);
    const made = documentOf(row!);
    // The DMP publication queue follows the outbox: the document exists iff the event does.
    await appendEvent(tx, 'document.final', {
      documentId: String(made.id), siteId: d.study.siteId, StudyInstanceUID: d.study.StudyInstanceUID, ...(previous ? { replaces: String(previous.id) } : {}),
    }, at);
    return made;
  }

  /** The XDS metadata of a document of the study: the signing radiologist as author (the system when no report is signed yet). */
  private metaOf(study: StudyFacts, instances: InstanceFacts[], r: SignedReport | undefined, title: string, created: Date): DocumentMeta {
    const region = r ? anatomicRegionOf(r.bodyPart) : undefined;
    const start = study.StudyDate ? dateOf(study.StudyDate, study.StudyTime) : r?.observedAt;
    return {
      title, creationTime: created.toISOString(), ...(start ? { serviceStartTime: start.toISOString() } : {}), siteId: study.siteId,
      PatientID: study.PatientID, IssuerOfPatientID: study.IssuerOfPatientID, ...(study.AccessionNumber ? { AccessionNumber: study.AccessionNumber } : {}),
      ...(r ? { order: { id: `TELE-${r.requestId}`, issuerOid: this.siteOid(study.siteId, 'order') } } : {}),
      modalities: [...new Set([...(r ? [r.modality] : []), ...instances.map((i) => i.Modality)])].filter((m) => m !== 'OT' && m !== 'KO' && m !== 'DOC'),
      regions: region ? [region] : [],
      author: r?.signer.rpps
        ? {
          id: `8${r.signer.rpps}`, family: r.signer.name, role: { code: '10', scheme: '1.2.250.1.71.1.2.7', display: 'Médecin' },
          specialty: { code: 'G15_10/SM44', scheme: '1.2.250.1.213.1.1.4.5', display: 'Médecin - Radio-diagnostic (SM)' },
        }
        : { id: 'ATRIUM', family: 'Atrium' },
    };
  }

  private async buildReport(study: StudyFacts, identity: Identity, instances: InstanceFacts[], r: SignedReport): Promise<StudyDocument | undefined> {
    const fingerprint = `report:${r.reportId}:${r.status}:${r.addenda.length}:${identity.ins.oid}:${identity.ins.matricule}:${study.patientId}`;
    const previous = await this.current(study.StudyInstanceUID, 'CR-IMG');
    if (previous?.fingerprint === fingerprint) return undefined;
    const version = previous ? Number(previous.version) + 1 : 1;
    const setId = previous?.set_id ?? uidOfName(`atrium:cr-img-set:${study.StudyInstanceUID}`);
    const documentId = uidOfName(`atrium:cr-img:${study.StudyInstanceUID}:${version}`);
    const site = this.archive.siteById.get(study.siteId) ?? r.requestingSite;
    const dicomweb = this.dicomwebBaseUrl();
    const xml = crImgOfSignedReport(r, {
      document: { documentId, setId, version, ...(previous ? { replaces: previous.unique_id } : {}) },
      patient: {
        ...(study.PatientName ? { PatientName: study.PatientName } : {}), ...(study.PatientSex ? { PatientSex: study.PatientSex } : {}),
        ...(study.PatientBirthDate ? { PatientBirthDate: study.PatientBirthDate } : {}),
      },
      identity, site,
      study: { StudyInstanceUID: study.StudyInstanceUID, series: seriesOf(instances), ...(study.AccessionNumber ? { AccessionNumber: study.AccessionNumber } : {}), ...(dicomweb ? { wadoBaseUrl: dicomweb } : {}) },
      orderOid: this.siteOid(study.siteId, 'order'), accessionIssuerOid: this.siteOid(study.siteId, 'accession'),
      doses: await this.dosesOfStudy(study.StudyInstanceUID),
    });
    return this.sql.transaction((tx) => this.insert(tx, {
      kind: 'CR-IMG', study, uniqueId: documentId, setId, version, reportId: r.reportId, fingerprint, content: xml,
      meta: this.metaOf(study, instances, r, `CR d'imagerie médicale - ${r.protocol}`, r.signedAt ?? r.observedAt),
    }, previous));
  }

  private async buildManifestWith(study: StudyFacts, identity: Identity, instances: InstanceFacts[], report: SignedReport | undefined): Promise<StudyDocument | undefined> {
    const fingerprint = `kos:${identity.ins.oid}:${identity.ins.matricule}:${study.patientId}:${study.AccessionNumber ?? ''}:${instances.map((i) => i.SOPInstanceUID).sort().join(',')}`;
    const previous = await this.current(study.StudyInstanceUID, 'KOS');
    if (previous?.fingerprint === fingerprint) return undefined;
    const version = previous ? Number(previous.version) + 1 : 1;
    const SeriesInstanceUID = manifestSeriesUID(study.StudyInstanceUID);
    const SOPInstanceUID = uidOfName(`atrium:manifest:${study.StudyInstanceUID}:${version}`);
    const site = this.archive.siteById.get(study.siteId);
    const input: ManifestInput = {
      SOPInstanceUID, SeriesInstanceUID, version, createdAt: new Date(), ins: identity.ins,
      patient: {
        PatientID: study.PatientID, IssuerOfPatientID: study.IssuerOfPatientID, ...(study.PatientName ? { PatientName: study.PatientName } : {}),
        ...(study.PatientBirthDate ? { PatientBirthDate: study.PatientBirthDate } : {}), ...(study.PatientSex ? { PatientSex: study.PatientSex } : {}),
      },
      study: {
        StudyInstanceUID: study.StudyInstanceUID, ...(study.StudyDate ? { StudyDate: study.StudyDate } : {}), ...(study.StudyTime ? { StudyTime: study.StudyTime } : {}),
        ...(study.StudyID ? { StudyID: study.StudyID } : {}), ...(study.ReferringPhysicianName ? { ReferringPhysicianName: study.ReferringPhysicianName } : {}),
        ...(study.StudyDescription ? { StudyDescription: study.StudyDescription } : {}), ...(study.AccessionNumber ? { AccessionNumber: study.AccessionNumber } : {}),
      },
      accessionIssuer: { LocalNamespaceEntityID: site?.code ?? String(study.siteId), UniversalEntityID: this.siteOid(study.siteId, 'accession') },
      ...(report ? { order: { PlacerOrderNumber: `TELE-${report.requestId}`, RequestedProcedureDescription: report.protocol } } : {}),
      series: seriesOf(instances).map((s) => ({ SeriesInstanceUID: s.SeriesInstanceUID, instances: s.instances.map((i) => ({ ...i, image: instances.find((x) => x.SOPInstanceUID === i.SOPInstanceUID)!.image })) })),
      ...(this.dicomwebBaseUrl() ? { dicomwebBaseUrl: this.dicomwebBaseUrl()! } : {}),
      description: `Manifeste de l'examen${study.StudyDescription ? ` ${study.StudyDescription}` : ''} : ${instances.length} objet(s) en ${new Set(instances.map((i) => i.SeriesInstanceUID)).size} série(s)`,
    };
    const published = kosManifestOf(input);
    // The copy in the study is filed under the study's patient record (the index files by the
    // site's identifier); the one published names the patient by INS. Same object, same UID.
    const archived = kosManifestOf({ ...input, filedUnder: 'site' });
    if (!site) throw new DocumentError('no-study', `the site of study ${study.StudyInstanceUID} is not configured`);
    const stored = await this.archive.ingestor.ingestInstance(Readable.from([archived]), { site, via: 'report', expectedStudyInstanceUID: study.StudyInstanceUID });
    if (!stored.ok) throw new Error(`the archive refused the manifest: ${stored.error.message}`);
    return this.sql.transaction(async (tx) => {
      // One manifest in the study: the version it replaces leaves the index (its file stays, in the history).
      if (previous && previous.unique_id !== SOPInstanceUID) await this.unindexManifest(tx, previous.unique_id, 'manifest-replaced');
      return this.insert(tx, {
        kind: 'KOS', study, uniqueId: SOPInstanceUID, setId: SeriesInstanceUID, version, fingerprint, content: published.toString('base64'),
        meta: this.metaOf(study, instances, report, `Manifeste d'images${study.StudyDescription ? ` - ${study.StudyDescription}` : ''}`, input.createdAt),
      }, previous);
    });
  }
}

/**
 * The CR-IMG (structured CDA) of a signed teleradiology report: the study it reports on, the
 * site that keeps it (custodian), the patient's identity (its INS must be qualified:
 * DocumentError no-qualified-ins otherwise), and the document's ids. Pure.
 */
export function crImgOfSignedReport(r: SignedReport, c: {
  document: { documentId: string; setId: string; version: number; replaces?: string };
  identity: { ins: INS; birthName?: string; firstNames?: string[]; birthPlaceCode?: string } | PatientIdentity;
  /** The patient's demographics as the archive knows them (default: the report's). */
  patient?: { PatientName?: string; PatientSex?: string; PatientBirthDate?: string };
  site: { name: string; finess: string };
  study: { StudyInstanceUID: string; AccessionNumber?: string; series: CrImgSeries[]; wadoBaseUrl?: string };
  orderOid: string;
  accessionIssuerOid: string;
  doses?: CrImgDose[];
}): string {
  const ins = 'status' in c.identity ? shareableINS(c.identity) : c.identity.ins;
  if (!ins) throw new DocumentError('no-qualified-ins', `the patient of report ${r.reportId} has no qualified INS`);
  if (!r.signer.rpps) throw new DocumentError('incomplete', `the radiologist who signed report ${r.reportId} has no RPPS: the CR-IMG names its legal authenticator by RPPS`);
  const traits = 'status' in c.identity
    ? { birthName: c.identity.traits.birthName || undefined, firstNames: c.identity.traits.firstNames.length > 0 ? [...c.identity.traits.firstNames] : undefined, birthPlaceCode: c.identity.traits.birthPlaceCode }
    : c.identity;
  const p = c.patient ?? r.patient;
  const AccessionNumber = c.study.AccessionNumber ?? r.AccessionNumber;
  return crImgDocumentOf({
    ...c.document,
    patient: {
      ins, ...(p.PatientName ? { PatientName: p.PatientName } : {}), ...(p.PatientSex ? { PatientSex: p.PatientSex } : {}),
      ...(p.PatientBirthDate ? { PatientBirthDate: p.PatientBirthDate } : {}), ...(traits.birthName ? { birthName: traits.birthName } : {}),
      ...(traits.firstNames ? { firstNames: traits.firstNames } : {}), ...(traits.birthPlaceCode ? { birthPlaceCode: traits.birthPlaceCode } : {}),
    },
    site: c.site,
    signer: { name: r.signer.name, rpps: r.signer.rpps },
    signedAt: r.signedAt ?? r.observedAt,
    requestingPhysician: r.requestingPhysician,
    order: {
      placerOrderNumber: `TELE-${r.requestId}`, placerOrderOid: c.orderOid, accessionIssuerOid: c.accessionIssuerOid,
      ...(AccessionNumber ? { AccessionNumber } : {}),
    },
    performedAt: r.observedAt,
    acts: [{ modality: r.modality, bodyPart: r.bodyPart, description: r.protocol, doses: c.doses ?? [] }],
    study: { StudyInstanceUID: c.study.StudyInstanceUID, series: c.study.series, ...(c.study.wadoBaseUrl ? { wadoBaseUrl: c.study.wadoBaseUrl } : {}) },
    clinicalContext: r.clinicalContext, clinicalQuestion: r.clinicalQuestion,
    findings: [...Object.entries(r.fields).filter(([, v]) => v.trim() !== '').map(([k, v]) => `${k} : ${v}`), r.findings].join('\n'),
    conclusion: r.conclusion,
    addenda: r.addenda.map((a) => ({ text: a.text, signedAt: a.signedAt })),
  });
}

export interface SiteReportSigner { name: string; rpps?: string }

/** A report as a site's RIS sends it: its CR-IMG, or a PDF and who signed it. */
export type ReceivedReport =
  | { cda: Buffer }
  | { pdf: Buffer; signer: SiteReportSigner; signedAt: Date; requestingPhysician?: { name: string; rpps?: string }; placerOrderNumber?: string; messageControlId: string };

const HL7V3 = 'urn:hl7-org:v3';

/**
 * A CDA a site sent, checked to be a CR-IMG (LOINC 18748-4, the CI-SIS IMG-CR-IMG or XDS-SD
 * template) of the patient whose qualified INS is `ins`: its text as sent, its ids, its legal authenticator.
 */
function checkCrImg(cda: Buffer, ins: INS): { xml: string; uniqueId: string; setId: string; signer?: SiteReportSigner } {
  const xml = cda.toString('utf8');
  let root: Element | null;
  try {
    root = parseXml(xml).documentElement;
  } catch (e) {
    if (!(e instanceof XmlError)) throw e;
    throw new DocumentError('invalid-document', `the report is ${e.message.split('\n')[0]}`);
  }
  if (!root || root.localName !== 'ClinicalDocument' || root.namespaceURI !== HL7V3) throw new DocumentError('invalid-document', 'the report is not a CDA R2 ClinicalDocument');
  const children = (e: Element, name: string) => Array.from(e.childNodes).filter((n): n is Element => n.nodeType === 1 && (n as Element).localName === name && (n as Element).namespaceURI === HL7V3);
  const first = (e: Element | undefined, name: string) => (e ? children(e, name)[0] : undefined);
  if (first(root, 'code')?.getAttribute('code') !== CR_IMG_LOINC) throw new DocumentError('invalid-document', `the document is not an imaging report (code ${CR_IMG_LOINC})`);
  const templates = children(root, 'templateId').map((t) => t.getAttribute('root'));
  if (!templates.includes('1.2.250.1.213.1.1.1.45') && !templates.includes('1.3.6.1.4.1.19376.1.2.20')) {
    throw new DocumentError('invalid-document', 'the document follows neither the CI-SIS CR-IMG template (1.2.250.1.213.1.1.1.45) nor XDS-SD (1.3.6.1.4.1.19376.1.2.20)');
  }
  const patientIds = children(first(first(root, 'recordTarget'), 'patientRole') ?? root, 'id');
  if (!patientIds.some((i) => i.getAttribute('root') === ins.oid && i.getAttribute('extension') === insValue(ins))) {
    throw new DocumentError('invalid-document', "the document's patient is not named by the study's patient's qualified INS");
  }
  const id = first(root, 'id');
  const idRoot = id?.getAttribute('root') ?? '';
  if (idRoot === '') throw new DocumentError('invalid-document', 'the document has no id');
  const extension = id?.getAttribute('extension');
  const legal = first(first(root, 'legalAuthenticator'), 'assignedEntity');
  const rpps = first(legal, 'id')?.getAttribute('extension');
  const name = first(first(legal, 'assignedPerson'), 'name');
  return {
    xml, uniqueId: extension ? `${idRoot}^${extension}` : idRoot, setId: first(root, 'setId')?.getAttribute('root') ?? idRoot,
    ...(legal ? { signer: { name: name?.textContent?.trim().replace(/\s+/g, ' ') ?? '', ...(rpps?.startsWith('8') ? { rpps: rpps.slice(1) } : {}) } } : {}),
  };
}

/** The accession number the request gave, when the images carry none (a site whose modality does not fill it). */
function withRequestAccession(study: StudyFacts, report: SignedReport | undefined): void {
  if (!study.AccessionNumber && report?.AccessionNumber) study.AccessionNumber = report.AccessionNumber;
}

/** A DICOM date (and time) as a UTC instant; undefined when unreadable. */
function dateOf(date: string, time?: string): Date | undefined {
  const t = (time ?? '').replace(/[^0-9]/g, '').padEnd(6, '0').slice(0, 6);
  const d = new Date(`${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${t.slice(0, 2)}:${t.slice(2, 4)}:${t.slice(4, 6)}Z`);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

function seriesOf(instances: InstanceFacts[]): CrImgSeries[] {
  const bySeries = new Map<string, CrImgSeries>();
  for (const i of instances) {
    let s = bySeries.get(i.SeriesInstanceUID);
    if (!s) bySeries.set(i.SeriesInstanceUID, (s = { SeriesInstanceUID: i.SeriesInstanceUID, Modality: i.Modality, instances: [] }));
    s.instances.push({ SOPInstanceUID: i.SOPInstanceUID, SOPClassUID: i.SOPClassUID });
  }
  return [...bySeries.values()];
}

const studyEvents = new Set(['instance.stored', 'instance.replaced', 'instance.deleted', 'study.moved']);

/**
 * Studies that change after their documents were made are made due again: new objects, a
 * replaced or rejected object, a study moved to another patient. The study's own manifests
 * are not a change. A study without documents is left alone (its report makes it due).
 */
export class StudyDocumentsConsumer extends OutboxConsumer {
  protected async apply(tx: SqlDatabase, events: OutboxEvent[]): Promise<void> {
    const seen = new Set<string>();
    for (const e of events) {
      if (!studyEvents.has(e.type)) continue;
      const { StudyInstanceUID, SeriesInstanceUID } = e.payload as { StudyInstanceUID?: string; SeriesInstanceUID?: string };
      if (!StudyInstanceUID || seen.has(StudyInstanceUID)) continue;
      if (SeriesInstanceUID === manifestSeriesUID(StudyInstanceUID)) continue;
      seen.add(StudyInstanceUID);
      const has = await tx.get<{ one: number }>('SELECT 1 AS one FROM study_documents WHERE study_instance_uid = ? AND current = 1 LIMIT 1', [StudyInstanceUID]);
      if (has) await markStudyDocumentsDue(tx, StudyInstanceUID, e.type);
    }
  }
}

/**
 * The documents as DMP publication reads them (the DmpDocumentSource of src/exchange/dmp/
 * document.ts, matched by shape): the document's bytes and XDS metadata, and the patient's
 * identity read now, so that an INS no longer qualified is not sent.
 */
export class StudyDocumentSource {
  constructor(private readonly sql: SqlDatabase) {}

  async documentFor(documentId: string) {
    if (!/^[0-9]{1,15}$/.test(documentId)) return undefined;
    const found = await loadStudyDocument(this.sql, Number(documentId));
    if (!found) return undefined;
    const row = await this.sql.get<{ meta_json: string }>('SELECT meta_json FROM study_documents WHERE id = ?', [Number(documentId)]);
    const meta = JSON.parse(row!.meta_json) as DocumentMeta;
    const d = found.document;
    const identity = await patientIdentityOf(this.sql, d.patientId);
    return {
      id: String(d.id), kind: d.kind, uniqueId: d.uniqueId, mimeType: d.mimeType as 'text/xml' | 'application/dicom', content: found.content, title: meta.title,
      creationTime: new Date(meta.creationTime), ...(meta.serviceStartTime ? { serviceStartTime: new Date(meta.serviceStartTime) } : {}), siteId: meta.siteId,
      patient: { PatientID: meta.PatientID, IssuerOfPatientID: meta.IssuerOfPatientID, ...(identity ? { identity } : {}) },
      StudyInstanceUID: d.StudyInstanceUID, ...(meta.AccessionNumber ? { AccessionNumber: meta.AccessionNumber } : {}), ...(meta.order ? { order: meta.order } : {}),
      modalities: meta.modalities, regions: meta.regions, author: meta.author, confidentiality: 'N' as const,
    };
  }

  async publicationChanged(documentId: string, state: string, details: { entryUUID?: string; error?: string }): Promise<void> {
    if (!/^[0-9]{1,15}$/.test(documentId) || !(publicationStatuses as readonly string[]).includes(state)) return;
    await setPublicationStatus(this.sql, Number(documentId), state as PublicationStatus, { ...(details.error ?? details.entryUUID ? { detail: (details.error ?? details.entryUUID)! } : {}) });
  }
}

