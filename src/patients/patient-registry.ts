/**
 * The patient records a site's identity source (its HIS/RIS, over HL7 ADT) maintains:
 * demographics in the index's `patients` table, the identity (INS, status, traits)
 * through identities.ts, identifier changes and merges.
 * Every function here runs inside a transaction the caller holds, so one message
 * changes everything it says or nothing.
 */
import { foldPersonName } from '../dicom/person-name.ts';
import { applyMigrations, writePatientNameWords, type Migration } from '../index/migrations.ts';
import { RetryableConflict, type SqlDatabase } from '../index/sql.ts';
import { recordIdentity, type IdentityClaim } from './identities.ts';
import type { IdentityStatus } from './ins.ts';
import { appendEvent } from '../events/outbox.ts';

/** Tables of this module, applied with their own migrations table (beside the index's). */
export const patientRegistryMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'record of patient merges and identifier changes',
    sql: `
CREATE TABLE patient_identity_changes (
  id {id},
  site_id BIGINT NOT NULL REFERENCES sites (id),
  issuer {text} NOT NULL,
  kind {text} NOT NULL,
  previous_patient_id {text} NOT NULL,
  patient_id {text} NOT NULL,
  studies_moved INTEGER NOT NULL,
  source {text},
  created_at TEXT NOT NULL
);
CREATE INDEX patient_identity_changes_site ON patient_identity_changes (site_id, issuer, patient_id);
`,
  },
];

export const patientRegistryMigrationsTable = 'hl7_migrations';

export async function migratePatientRegistry(db: SqlDatabase): Promise<void> {
  await applyMigrations(db, patientRegistryMigrations, patientRegistryMigrationsTable);
}

/**
 * Demographics as the message states them: undefined keeps what the record holds,
 * null clears it (HL7's "" value).
 */
export interface PatientDemographics {
  PatientName?: string | null;
  PatientBirthDate?: string | null;
  PatientSex?: string | null;
}

export interface PatientKey {
  siteId: number;
  IssuerOfPatientID: string;
  PatientID: string;
}

export type PatientRegistryErrorReason = 'unknown-patient' | 'duplicate-patient';

export class PatientRegistryError extends Error {
  constructor(readonly reason: PatientRegistryErrorReason, message: string) {
    super(message);
    this.name = 'PatientRegistryError';
  }
}

type PatientRow = { id: number; patient_name: string | null; birth_date: string | null; sex: string | null };

const selectPatient = 'SELECT id, patient_name, birth_date, sex FROM patients WHERE site_id = ? AND issuer = ? AND patient_id = ?';

function keyOf(k: PatientKey): unknown[] {
  return [k.siteId, k.IssuerOfPatientID, k.PatientID];
}

/**
 * Creates or updates a site's patient record from its identity source and, when the
 * message says anything of it, the record's identity (INS, status, reference traits)
 * through the identities module, which links or opens reviews as its rules say.
 */
export async function registerPatientIn(
  tx: SqlDatabase,
  key: PatientKey,
  demographics: PatientDemographics,
  identity?: IdentityClaim,
): Promise<{ id: number; created: boolean }> {
  const now = new Date().toISOString();
  let created = false;
  let row = await tx.get<PatientRow>(selectPatient, keyOf(key));
  if (!row) {
    const name = demographics.PatientName ?? null;
    const inserted = await tx.get<{ id: number }>(
      `INSERT INTO patients (site_id, issuer, patient_id, patient_name, patient_name_folded, birth_date, sex, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (site_id, issuer, patient_id) DO NOTHING RETURNING id`,
      [...keyOf(key), name, name === null ? null : foldPersonName(name), demographics.PatientBirthDate ?? null, demographics.PatientSex ?? null, now],
    );
    if (inserted) {
      await writePatientNameWords(tx, inserted.id, name);
      row = { id: inserted.id, patient_name: name, birth_date: demographics.PatientBirthDate ?? null, sex: demographics.PatientSex ?? null };
      created = true;
    } else {
      row = await tx.get<PatientRow>(selectPatient, keyOf(key));
      if (!row) throw new RetryableConflict('patient row vanished');
    }
  }
  if (!created) {
    const pick = (v: string | null | undefined, old: string | null) => (v === undefined ? old : v);
    const name = pick(demographics.PatientName, row.patient_name);
    const birthDate = pick(demographics.PatientBirthDate, row.birth_date);
    const sex = pick(demographics.PatientSex, row.sex);
    if (name !== row.patient_name || birthDate !== row.birth_date || sex !== row.sex) {
      await tx.run(
        'UPDATE patients SET patient_name = ?, patient_name_folded = ?, birth_date = ?, sex = ?, updated_at = ? WHERE id = ?',
        [name, name === null ? null : foldPersonName(name), birthDate, sex, now, row.id],
      );
      if (name !== row.patient_name) await writePatientNameWords(tx, row.id, name);
    }
  }
  if (identity) await recordIdentity(tx, Number(row.id), identity);
  return { id: Number(row.id), created };
}

/** A patient record with its identity's INS and status, if any. */
export async function findRegisteredPatient(db: SqlDatabase, key: PatientKey): Promise<
  | { id: number; PatientName?: string; PatientBirthDate?: string; PatientSex?: string; identity?: { ins?: string; oid?: string; status: IdentityStatus } }
  | undefined
> {
  const row = await db.get<PatientRow & { ins: string | null; ins_oid: string | null; status: IdentityStatus | null }>(
    `SELECT p.id, p.patient_name, p.birth_date, p.sex, i.ins, i.ins_oid, i.status
     FROM patients p LEFT JOIN patient_identities i ON i.patient_id = p.id WHERE p.site_id = ? AND p.issuer = ? AND p.patient_id = ?`,
    keyOf(key),
  );
  if (!row) return undefined;
  return {
    id: Number(row.id),
    ...(row.patient_name !== null ? { PatientName: row.patient_name } : {}),
    ...(row.birth_date !== null ? { PatientBirthDate: row.birth_date } : {}),
    ...(row.sex !== null ? { PatientSex: row.sex } : {}),
    ...(row.status !== null
      ? { identity: { status: row.status, ...(row.ins !== null ? { ins: row.ins } : {}), ...(row.ins_oid !== null ? { oid: row.ins_oid } : {}) } }
      : {}),
  };
}

async function recordChange(tx: SqlDatabase, kind: 'merge' | 'identifier-change', from: PatientKey, to: string, studiesMoved: number, source: string | undefined): Promise<void> {
  await tx.run(
    `INSERT INTO patient_identity_changes (site_id, issuer, kind, previous_patient_id, patient_id, studies_moved, source, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    [from.siteId, from.IssuerOfPatientID, kind, from.PatientID, to, studiesMoved, source ?? null, new Date().toISOString()],
  );
}

/**
 * Gives a patient record a new PatientID within its site and issuer (HL7 A47), nothing
 * else changed. The new identifier must not be in use (that would be a merge).
 */
export async function changePatientIDIn(tx: SqlDatabase, from: PatientKey, newPatientID: string, source?: string): Promise<void> {
  const row = await tx.get<PatientRow>(selectPatient, keyOf(from));
  if (!row) throw new PatientRegistryError('unknown-patient', `patient ${from.PatientID} (issuer ${from.IssuerOfPatientID}) is unknown`);
  const clash = await tx.get<PatientRow>(selectPatient, [from.siteId, from.IssuerOfPatientID, newPatientID]);
  if (clash) throw new PatientRegistryError('duplicate-patient', `patient ${newPatientID} (issuer ${from.IssuerOfPatientID}) already exists: that is a merge (A40), not an identifier change`);
  await tx.run('UPDATE patients SET patient_id = ?, updated_at = ? WHERE id = ?', [newPatientID, new Date().toISOString(), row.id]);
  await moveOrders(tx, from, newPatientID);
  await recordChange(tx, 'identifier-change', from, newPatientID, 0, source);
}

/** The site's orders follow their patient's identifier (the worklist shows the current one). */
async function moveOrders(tx: SqlDatabase, from: PatientKey, PatientID: string): Promise<void> {
  await tx.run('UPDATE scheduled_procedures SET patient_id = ?, updated_at = ? WHERE site_id = ? AND issuer = ? AND patient_id = ?',
    [PatientID, new Date().toISOString(), from.siteId, from.IssuerOfPatientID, from.PatientID]);
}

/**
 * Merges patient `merged` into `surviving` (HL7 A40) in the index: the merged record's
 * studies move to the surviving record and the change is recorded. The merged record
 * stays, without studies, so that identities and reviews naming it keep their subject;
 * the stored objects keep the PatientID they were received with.
 */
export async function mergePatientsIn(tx: SqlDatabase, surviving: PatientKey, merged: PatientKey, source?: string): Promise<{ studiesMoved: number }> {
  const from = await tx.get<PatientRow>(selectPatient, keyOf(merged));
  if (!from) throw new PatientRegistryError('unknown-patient', `merged patient ${merged.PatientID} (issuer ${merged.IssuerOfPatientID}) is unknown`);
  const to = await tx.get<PatientRow>(selectPatient, keyOf(surviving));
  if (!to) throw new PatientRegistryError('unknown-patient', `surviving patient ${surviving.PatientID} (issuer ${surviving.IssuerOfPatientID}) is unknown`);
  if (Number(from.id) === Number(to.id)) throw new PatientRegistryError('duplicate-patient', 'a patient cannot be merged into itself');
  const studies = await tx.all<{ study_instance_uid: string }>('SELECT study_instance_uid FROM studies WHERE patient_id = ?', [from.id]);
  const moved = await tx.run('UPDATE studies SET patient_id = ?, updated_at = ? WHERE patient_id = ?', [to.id, new Date().toISOString(), from.id]);
  // Those who follow studies (their documents for the DMP) learn each one changed patient.
  for (const s of studies) await appendEvent(tx, 'study.moved', { StudyInstanceUID: s.study_instance_uid, siteId: merged.siteId, fromPatientId: Number(from.id), toPatientId: Number(to.id) });
  await tx.run('UPDATE patients SET merged_into = ?, updated_at = ? WHERE id = ?', [to.id, new Date().toISOString(), from.id]);
  await moveOrders(tx, merged, surviving.PatientID);
  await recordChange(tx, 'merge', merged, surviving.PatientID, moved.changes, source);
  return { studiesMoved: moved.changes };
}
