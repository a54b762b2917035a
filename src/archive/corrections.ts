/**
 * Corrections (IHE IOCM ideas): a study filed under the wrong patient is moved to the
 * right one; an object (wrong patient, poor quality) is rejected, so that no query or
 * retrieve shows it any more. The stored objects are never changed: the index says what
 * is true now, the served patient module follows it, and each correction is kept with who
 * asked and why, so an administrator can undo it.
 */
import type { Archive } from './archive.ts';
import { siteCodeOfBlobKey } from './ingest.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { appendEvent } from '../events/outbox.ts';

export type CorrectionKind = 'study-move' | 'instance-reject';

export class CorrectionError extends Error {
  override readonly name = 'CorrectionError';
  constructor(readonly code: 'not-found' | 'conflict', message: string) {
    super(message);
  }
}

export interface Correction {
  id: number;
  kind: CorrectionKind;
  StudyInstanceUID?: string;
  SOPInstanceUID?: string;
  reason: string;
  requestedBy: string;
  createdAt: string;
  undoneAt?: string;
  undoneBy?: string;
}

export interface PatientRecordKey {
  siteId: number;
  IssuerOfPatientID: string;
  PatientID: string;
}

const now = () => new Date().toISOString();
const forUpdate = (tx: SqlDatabase) => (tx.engine === 'postgres' ? ' FOR UPDATE' : '');

/** Moves a study to another patient record of its site. */
export async function moveStudy(db: SqlDatabase, request: { StudyInstanceUID: string; to: PatientRecordKey; reason: string; requestedBy: string }): Promise<{ id: number }> {
  return db.transaction(async (tx) => {
    const study = await tx.get<{ id: number; patient_id: number; site_id: number }>(
      `SELECT id, patient_id, site_id FROM studies WHERE study_instance_uid = ?${forUpdate(tx)}`, [request.StudyInstanceUID],
    );
    if (!study) throw new CorrectionError('not-found', `study ${request.StudyInstanceUID} is not in the archive`);
    if (Number(study.site_id) !== request.to.siteId) throw new CorrectionError('conflict', 'a study moves to a patient record of the site that produced it');
    const target = await tx.get<{ id: number }>(
      'SELECT id FROM patients WHERE site_id = ? AND issuer = ? AND patient_id = ?',
      [request.to.siteId, request.to.IssuerOfPatientID, request.to.PatientID],
    );
    if (!target) throw new CorrectionError('not-found', `patient ${request.to.PatientID} (issuer ${request.to.IssuerOfPatientID}) is not known at this site: register it first (HL7 A28)`);
    if (Number(target.id) === Number(study.patient_id)) throw new CorrectionError('conflict', 'the study is already filed under this patient');
    await tx.run('UPDATE studies SET patient_id = ?, moved_from_patient_id = ?, updated_at = ? WHERE id = ?', [target.id, study.patient_id, now(), study.id]);
    const row = await tx.get<{ id: number }>(
      `INSERT INTO corrections (kind, study_instance_uid, from_patient_id, to_patient_id, reason, requested_by, created_at)
       VALUES ('study-move', ?, ?, ?, ?, ?, ?) RETURNING id`,
      [request.StudyInstanceUID, study.patient_id, target.id, request.reason, request.requestedBy, now()],
    );
    // Those who follow studies (their documents for the DMP) learn the study changed patient.
    await appendEvent(tx, 'study.moved', { StudyInstanceUID: request.StudyInstanceUID, siteId: Number(study.site_id), fromPatientId: Number(study.patient_id), toPatientId: Number(target.id) });
    return { id: Number(row!.id) };
  });
}

/** Rejects an object: out of every query and retrieve, its blob kept for the undo. */
export async function rejectInstance(archive: Archive, request: { SOPInstanceUID: string; reason: string; requestedBy: string }): Promise<{ id: number }> {
  return archive.index.sql.transaction(async (tx) => {
    const inst = await tx.get<{ blob_key: string; size: number; sha256: string; study_uid: string }>(
      `SELECT i.blob_key, i.size, i.sha256, s.study_instance_uid AS study_uid FROM instances i JOIN series se ON se.id = i.series_id
        JOIN studies s ON s.id = se.study_id WHERE i.sop_instance_uid = ?`, [request.SOPInstanceUID],
    );
    if (!inst) throw new CorrectionError('not-found', `instance ${request.SOPInstanceUID} is not in the archive`);
    await archive.index.deleteInstanceIndexIn(tx, request.SOPInstanceUID);
    // Kept in the history, so `atrium verify` still counts the blob as referenced.
    await tx.run('INSERT INTO instance_history (sop_instance_uid, blob_key, size, sha256, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      [request.SOPInstanceUID, inst.blob_key, inst.size, inst.sha256, 'rejected', now()]);
    const row = await tx.get<{ id: number }>(
      `INSERT INTO corrections (kind, study_instance_uid, sop_instance_uid, blob_key, reason, requested_by, created_at)
       VALUES ('instance-reject', ?, ?, ?, ?, ?, ?) RETURNING id`,
      [inst.study_uid, request.SOPInstanceUID, inst.blob_key, request.reason, request.requestedBy, now()],
    );
    return { id: Number(row!.id) };
  });
}

/**
 * The site a correction belongs to: the moved study's patient record's, or the site the
 * rejected object was stored for (named by its blob key, the study may be gone since).
 */
const correctionSite = `COALESCE(pt.site_id, st.site_id,
  (SELECT si.id FROM sites si WHERE substr(c.blob_key, 1, length(si.code) + 11) = 'instances/' || si.code || '/'))`;
const correctionsWithSite = `SELECT c.*, ${correctionSite} AS site_id FROM corrections c
  LEFT JOIN patients pt ON pt.id = c.to_patient_id LEFT JOIN studies st ON st.study_instance_uid = c.study_instance_uid`;

/** Sites as a condition on correctionsWithSite's rows (undefined: every site). */
function inSitesCondition(siteIds: readonly number[] | undefined): { sql: string; params: number[] } {
  if (siteIds === undefined) return { sql: '', params: [] };
  if (siteIds.length === 0) return { sql: ' WHERE 1 = 0', params: [] };
  return { sql: ` WHERE x.site_id IN (${siteIds.map(() => '?').join(', ')})`, params: [...siteIds] };
}

/**
 * Undoes a correction: the study goes back, the rejected object is indexed again from its blob.
 * `inSites` (undefined: every site) are the sites the caller acts for: another site's
 * correction is answered as one that does not exist.
 */
export async function undoCorrection(archive: Archive, id: number, undoneBy: string, inSites?: readonly number[]): Promise<void> {
  const db = archive.index.sql;
  const scope = inSitesCondition(inSites);
  const c = await db.get<{ kind: CorrectionKind; study_instance_uid: string | null; sop_instance_uid: string | null; from_patient_id: number | null; to_patient_id: number | null; blob_key: string | null; undone_at: string | null }>(
    `SELECT x.kind, x.study_instance_uid, x.sop_instance_uid, x.from_patient_id, x.to_patient_id, x.blob_key, x.undone_at
       FROM (${correctionsWithSite} WHERE c.id = ?) x${scope.sql}`, [id, ...scope.params],
  );
  if (!c) throw new CorrectionError('not-found', `correction ${id} does not exist`);
  if (c.undone_at) throw new CorrectionError('conflict', `correction ${id} was already undone`);
  if (c.kind === 'study-move') {
    await db.transaction(async (tx) => {
      const study = await tx.get<{ id: number; patient_id: number }>(`SELECT id, patient_id FROM studies WHERE study_instance_uid = ?${forUpdate(tx)}`, [c.study_instance_uid]);
      if (!study || Number(study.patient_id) !== Number(c.to_patient_id)) throw new CorrectionError('conflict', 'the study has changed patient since: undo the later correction first');
      await tx.run('UPDATE studies SET patient_id = ?, moved_from_patient_id = ?, updated_at = ? WHERE id = ?', [c.from_patient_id, c.to_patient_id, now(), study.id]);
      await tx.run('UPDATE corrections SET undone_at = ?, undone_by = ? WHERE id = ?', [now(), undoneBy, id]);
      await appendEvent(tx, 'study.moved', { StudyInstanceUID: c.study_instance_uid, fromPatientId: Number(c.to_patient_id), toPatientId: Number(c.from_patient_id) });
    });
    return;
  }
  const site = archive.sites.get(siteCodeOfBlobKey(c.blob_key!) ?? '');
  if (!site) throw new CorrectionError('conflict', `the site of the rejected object is not configured any more`);
  const result = await archive.ingestor.reindexBlob(c.blob_key!, { site, via: 'reindex' });
  if (!result.ok) throw new CorrectionError('conflict', `the rejected object could not be indexed again: ${result.error.message}`);
  await db.transaction(async (tx) => {
    await tx.run(`DELETE FROM instance_history WHERE blob_key = ? AND reason = 'rejected'`, [c.blob_key]);
    await tx.run('UPDATE corrections SET undone_at = ?, undone_by = ? WHERE id = ?', [now(), undoneBy, id]);
  });
}

/** The latest corrections of these sites (undefined: every site), newest first. */
export async function listCorrections(db: SqlDatabase, inSites?: readonly number[], limit = 200): Promise<Correction[]> {
  const scope = inSitesCondition(inSites);
  const rows = await db.all<{ id: number; kind: CorrectionKind; study_instance_uid: string | null; sop_instance_uid: string | null; reason: string; requested_by: string; created_at: string; undone_at: string | null; undone_by: string | null }>(
    `SELECT x.id, x.kind, x.study_instance_uid, x.sop_instance_uid, x.reason, x.requested_by, x.created_at, x.undone_at, x.undone_by
       FROM (${correctionsWithSite}) x${scope.sql} ORDER BY x.id DESC LIMIT ?`, [...scope.params, limit],
  );
  return rows.map((r) => ({
    id: Number(r.id), kind: r.kind, reason: r.reason, requestedBy: r.requested_by, createdAt: r.created_at,
    ...(r.study_instance_uid ? { StudyInstanceUID: r.study_instance_uid } : {}),
    ...(r.sop_instance_uid ? { SOPInstanceUID: r.sop_instance_uid } : {}),
    ...(r.undone_at ? { undoneAt: r.undone_at, undoneBy: r.undone_by ?? undefined } : {}),
  }));
}
