/**
 * Retention and deletion. Each study is kept as long as the first retention rule covering
 * it says, counted from the patient's last contact: the newest exam, order or stay of the
 * same person across their linked records (patient_identities.person_id). Legal holds on a
 * study or a patient record suspend deletion. Deletion takes two steps: the daily
 * evaluation lists the studies past their retention (lifecycle_due), an administrator
 * approves one, then Atrium withdraws it: an IOCM rejection note (113039 "Data Retention
 * Policy Expired") made for peers, index rows removed (instance.deleted events: the DMP
 * publication unpublishes a study that lost its last object), blobs deleted, and a deletion
 * record (who, when, rule, every object's SHA-256) kept after the data are gone.
 * This module owns lifecycle_holds, lifecycle_due, lifecycle_deletions and lifecycle_contacts.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Archive } from './archive.ts';
import type { RetentionRule } from '../config/lifecycle-config.ts';
import { applyMigrations, type Migration } from '../index/migrations.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { appendEvent } from '../events/outbox.ts';
import { AuditTrail, type AuditEvent } from '../access/audit.ts';
import { newUID } from '../dicom/uids.ts';
import { rejectionNoteOf, rejectionTitles } from './rejection-note.ts';
import { BlobNotFoundError } from '../storage/blob-store.ts';
import { LeasedQueue } from '../index/leased-queue.ts';

export const lifecycleMigrationsTable = 'lifecycle_migrations';

export const lifecycleMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'legal holds, studies due for deletion, deletion records, contacts from HL7',
    // Dates are DICOM dates (YYYYMMDD); lifecycle_deletions keeps no patient data but the
    // rejection note, which peers need to learn which objects went.
    sql: `
CREATE TABLE lifecycle_holds (
  id {id},
  site_id BIGINT NOT NULL,
  study_instance_uid {text},
  patient_id BIGINT,
  reason TEXT NOT NULL,
  placed_by {text} NOT NULL,
  placed_at {text} NOT NULL,
  released_by {text},
  released_at {text}
);
CREATE INDEX lifecycle_holds_study ON lifecycle_holds (study_instance_uid);
CREATE INDEX lifecycle_holds_patient ON lifecycle_holds (patient_id);
CREATE TABLE lifecycle_due (
  study_instance_uid {text} PRIMARY KEY,
  site_id BIGINT NOT NULL,
  rule {text} NOT NULL,
  last_contact {text} NOT NULL,
  keep_until {text} NOT NULL,
  kept_for_minor INTEGER NOT NULL,
  held INTEGER NOT NULL,
  evaluated_at {text} NOT NULL
);
CREATE INDEX lifecycle_due_site ON lifecycle_due (site_id);
CREATE TABLE lifecycle_deletions (
  id {id},
  study_instance_uid {text} NOT NULL,
  site_id BIGINT NOT NULL,
  rule {text} NOT NULL,
  reason TEXT,
  approved_by {text} NOT NULL,
  deleted_at {text} NOT NULL,
  objects INTEGER NOT NULL,
  bytes BIGINT NOT NULL,
  object_hashes TEXT NOT NULL,
  blob_keys TEXT NOT NULL,
  rejection_note_uid {text} NOT NULL,
  rejection_note TEXT NOT NULL,
  state {text} NOT NULL,
  completed_at {text}
);
CREATE INDEX lifecycle_deletions_study ON lifecycle_deletions (study_instance_uid);
CREATE INDEX lifecycle_deletions_site ON lifecycle_deletions (site_id, id);
CREATE TABLE lifecycle_contacts (
  patient_id BIGINT PRIMARY KEY,
  last_contact {text} NOT NULL,
  source {text},
  updated_at {text} NOT NULL
);
`,
  },
  {
    version: 2,
    name: 'rejection notes owed to the peers a deleted study was forwarded to',
    sql: `
CREATE TABLE lifecycle_notices (
  id {id},
  deletion_id BIGINT NOT NULL,
  destination {text} NOT NULL,
  state {text} NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at {text} NOT NULL,
  last_error TEXT,
  updated_at {text} NOT NULL,
  UNIQUE (deletion_id, destination)
);
CREATE INDEX lifecycle_notices_due ON lifecycle_notices (state, next_attempt_at);
`,
  },
];

const migrated = new WeakMap<SqlDatabase, Promise<unknown>>();

/** Creates this module's tables once per database handle (every entry point calls it; only the first pays). */
export async function migrateLifecycle(sql: SqlDatabase): Promise<void> {
  let done = migrated.get(sql);
  if (!done) {
    done = applyMigrations(sql, lifecycleMigrations, lifecycleMigrationsTable);
    migrated.set(sql, done);
    // A failure is not remembered: the next call tries again.
    done.catch(() => migrated.delete(sql));
  }
  await done;
}

export class LifecycleError extends Error {
  override readonly name = 'LifecycleError';
  constructor(readonly code: 'not-found' | 'held' | 'not-due', message: string) {
    super(message);
  }
}

/** A study past its retention, as listed for review. */
export interface DueStudy {
  StudyInstanceUID: string;
  site: string;
  rule: string;
  /** The person's last contact (DICOM date), and the first day the study may go. */
  lastContact: string;
  keepUntil: string;
  /** The study was kept past the rule's years because the patient was a minor. */
  keptForMinor: boolean;
  /** A legal hold stops its deletion. */
  held: boolean;
}

export interface DeletionRecord {
  id: number;
  StudyInstanceUID: string;
  site: string;
  rule: string;
  reason?: string;
  approvedBy: string;
  deletedAt: string;
  objects: number;
  bytes: number;
  objectHashes: Array<{ SOPInstanceUID: string; sha256: string; size: number }>;
  rejectionNoteUID: string;
  state: 'removing' | 'done';
  completedAt?: string;
}

export interface LegalHold {
  id: number;
  site: string;
  StudyInstanceUID?: string;
  patient?: { PatientID: string; IssuerOfPatientID: string };
  reason: string;
  placedBy: string;
  placedAt: string;
}

/** YYYYMMDD of a moment (UTC). */
export function dicomDateOf(d: Date): string {
  return d.toISOString().slice(0, 10).replaceAll('-', '');
}

/** A DICOM date plus whole years (29 February falls on 28 February in a common year). */
export function addYears(date: string, years: number): string {
  const y = Number(date.slice(0, 4)) + years;
  let md = date.slice(4, 8);
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  if (md === '0229' && !leap) md = '0228';
  return `${String(y).padStart(4, '0')}${md}`;
}

const validDate = (d: string | null | undefined): d is string => typeof d === 'string' && /^[0-9]{8}$/.test(d);

/** The first rule covering a study of this site with these modalities ("\CT\MR\"). */
export function ruleFor(rules: readonly RetentionRule[], siteCode: string, modalitiesInStudy: string): RetentionRule | undefined {
  return rules.find((r) => (!r.sites || r.sites.includes(siteCode)) && (!r.modalities || r.modalities.some((m) => modalitiesInStudy.includes(`\\${m}\\`))));
}

/** When a study may go under a rule: the later of last contact + years and (for a minor) the birthday of that age. */
export function keepUntilOf(rule: RetentionRule, lastContact: string, birthDate: string | null): { keepUntil: string; keptForMinor: boolean } {
  const byContact = addYears(lastContact, rule.yearsAfterLastContact);
  if (rule.keepMinorsUntilAge !== undefined && validDate(birthDate)) {
    const byAge = addYears(birthDate, rule.keepMinorsUntilAge);
    if (byAge > byContact) return { keepUntil: byAge, keptForMinor: true };
  }
  return { keepUntil: byContact, keptForMinor: false };
}

/** Records a contact of a patient record (an admission, an outpatient visit from HL7 ADT). */
export async function recordContactIn(tx: SqlDatabase, patientRecordId: number, date: string, source: string): Promise<void> {
  if (!validDate(date)) return;
  const at = new Date().toISOString();
  const existing = await tx.get<{ last_contact: string }>('SELECT last_contact FROM lifecycle_contacts WHERE patient_id = ?', [patientRecordId]);
  if (!existing) await tx.run('INSERT INTO lifecycle_contacts (patient_id, last_contact, source, updated_at) VALUES (?, ?, ?, ?)', [patientRecordId, date, source, at]);
  else if (existing.last_contact < date) await tx.run('UPDATE lifecycle_contacts SET last_contact = ?, source = ?, updated_at = ? WHERE patient_id = ?', [date, source, at, patientRecordId]);
}

const marks = (n: number) => Array.from({ length: n }, () => '?').join(', ');

/**
 * The last contact of each of these patient records, taken across the records of the same
 * person: the newest exam (StudyDate, else the day it arrived), order, or stay told by HL7.
 * Asked per page of studies, by indexed lookups of the page's records and their persons'.
 */
async function lastContactsOf(sql: SqlDatabase, recordIds: readonly number[]): Promise<Map<number, string>> {
  if (recordIds.length === 0) return new Map();
  const own = await sql.all<{ patient_id: number | string; person_id: number | string }>(
    `SELECT patient_id, person_id FROM patient_identities WHERE patient_id IN (${marks(recordIds.length)}) AND person_id IS NOT NULL`, [...recordIds]);
  const personOf = new Map(own.map((r) => [Number(r.patient_id), Number(r.person_id)]));
  const persons = [...new Set(personOf.values())];
  const members = persons.length === 0 ? [] : await sql.all<{ patient_id: number | string; person_id: number | string }>(
    `SELECT patient_id, person_id FROM patient_identities WHERE person_id IN (${marks(persons.length)})`, persons);
  for (const m of members) personOf.set(Number(m.patient_id), Number(m.person_id));
  const all = [...new Set([...recordIds, ...personOf.keys()])];
  const newest = new Map<number, string>();
  const take = (rows: Array<{ patient_id: number | string; d: string | null }>) => {
    for (const r of rows) if (validDate(r.d) && (newest.get(Number(r.patient_id)) ?? '') < r.d) newest.set(Number(r.patient_id), r.d);
  };
  for (let i = 0; i < all.length; i += 500) {
    const chunk = all.slice(i, i + 500);
    const inChunk = marks(chunk.length);
    take(await sql.all(`SELECT patient_id, MAX(CASE WHEN study_date IS NULL OR study_date = '' THEN substr(replace(created_at, '-', ''), 1, 8) ELSE study_date END) AS d
                          FROM studies WHERE patient_id IN (${inChunk}) GROUP BY patient_id`, chunk));
    take(await sql.all(`SELECT p.id AS patient_id, MAX(sp.start_date) AS d FROM patients p
                          JOIN scheduled_procedures sp ON sp.site_id = p.site_id AND sp.issuer = p.issuer AND sp.patient_id = p.patient_id
                         WHERE p.id IN (${inChunk}) GROUP BY p.id`, chunk));
    take(await sql.all(`SELECT patient_id, last_contact AS d FROM lifecycle_contacts WHERE patient_id IN (${inChunk})`, chunk));
  }
  const byPerson = new Map<number, string>();
  for (const [record, person] of personOf) {
    const d = newest.get(record);
    if (d && (byPerson.get(person) ?? '') < d) byPerson.set(person, d);
  }
  const result = new Map<number, string>();
  for (const record of recordIds) {
    const mine = newest.get(record) ?? '';
    const person = personOf.get(record);
    const shared = person === undefined ? '' : byPerson.get(person) ?? '';
    const d = mine > shared ? mine : shared;
    if (d) result.set(record, d);
  }
  return result;
}

/** Patient records under an active hold, with every record of the same person. */
async function heldRecords(sql: SqlDatabase): Promise<{ records: Set<number>; studies: Set<string> }> {
  const holds = await sql.all<{ study_instance_uid: string | null; patient_id: number | string | null }>(
    'SELECT study_instance_uid, patient_id FROM lifecycle_holds WHERE released_at IS NULL',
  );
  const studies = new Set(holds.flatMap((h) => (h.study_instance_uid ? [h.study_instance_uid] : [])));
  const direct = holds.flatMap((h) => (h.patient_id !== null ? [Number(h.patient_id)] : []));
  const records = new Set(direct);
  if (direct.length > 0) {
    const linked = await sql.all<{ patient_id: number | string }>(
      `SELECT other.patient_id FROM patient_identities mine JOIN patient_identities other ON other.person_id = mine.person_id
        WHERE mine.patient_id IN (${marks(direct.length)}) AND mine.person_id IS NOT NULL`, direct);
    for (const l of linked) records.add(Number(l.patient_id));
  }
  return { records, studies };
}

export interface EvaluationOptions {
  rules: readonly RetentionRule[];
  /** The day of the evaluation (tests move it). */
  now: Date;
  /** Only these sites (undefined: all). */
  siteIds?: readonly number[];
  /** Studies read (and due rows written) per batch; the event loop gets a turn between batches. */
  batchSize?: number;
}

const defaultBatchSize = 500;

/**
 * A turn of the event loop. better-sqlite3 answers synchronously, so awaiting its promises
 * alone never lets a request in: an evaluation over millions of studies would hold the
 * thread for its whole length.
 */
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * The studies past their retention on `now`, held ones included (marked held), oldest
 * keep-until first. Pure reading: evaluateRetention records them.
 */
export async function findDueStudies(archive: Archive, o: EvaluationOptions): Promise<DueStudy[]> {
  const sql = archive.index.sql;
  await migrateLifecycle(sql);
  const today = dicomDateOf(o.now);
  const holds = await heldRecords(sql);
  const batchSize = batchSizeOf(o);
  const due: DueStudy[] = [];
  let after = 0;
  for (;;) {
    // Short batches by id (keyset on the primary key; no statement reads or sorts the whole
    // table), a turn of the event loop between them: a territory's index holds millions of studies.
    const studies = await sql.all<{ id: number | string; study_instance_uid: string; site_id: number | string; patient_id: number | string; modalities_in_study: string }>(
      'SELECT id, study_instance_uid, site_id, patient_id, modalities_in_study FROM studies WHERE id > ? ORDER BY id LIMIT ?', [after, batchSize]);
    if (studies.length === 0) break;
    after = Number(studies.at(-1)!.id);
    const recordIds = [...new Set(studies.map((st) => Number(st.patient_id)))];
    const births = new Map<number, string | null>();
    for (let i = 0; i < recordIds.length; i += 500) {
      const chunk = recordIds.slice(i, i + 500);
      for (const p of await sql.all<{ id: number | string; birth_date: string | null }>(`SELECT id, birth_date FROM patients WHERE id IN (${marks(chunk.length)})`, chunk)) births.set(Number(p.id), p.birth_date);
    }
    const page = studies.flatMap((st) => (births.has(Number(st.patient_id)) ? [{ ...st, birth_date: births.get(Number(st.patient_id))! }] : []));
    const contacts = await lastContactsOf(sql, recordIds);
    for (const s of page) {
      const siteId = Number(s.site_id);
      if (o.siteIds && !o.siteIds.includes(siteId)) continue;
      const site = archive.siteById.get(siteId);
      if (!site) continue;
      const rule = ruleFor(o.rules, site.code, s.modalities_in_study);
      const lastContact = contacts.get(Number(s.patient_id));
      if (!rule || !lastContact) continue;
      const { keepUntil, keptForMinor } = keepUntilOf(rule, lastContact, s.birth_date);
      if (keepUntil > today) continue;
      const held = holds.studies.has(s.study_instance_uid) || holds.records.has(Number(s.patient_id));
      due.push({ StudyInstanceUID: s.study_instance_uid, site: site.code, rule: rule.name, lastContact, keepUntil, keptForMinor, held });
    }
    await yieldToEventLoop();
  }
  return due.sort((a, b) => a.keepUntil.localeCompare(b.keepUntil) || a.StudyInstanceUID.localeCompare(b.StudyInstanceUID));
}

const batchSizeOf = (o: EvaluationOptions) => {
  const n = o.batchSize ?? defaultBatchSize;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`batchSize must be a positive integer, not ${n}`);
  return n;
};

/**
 * The daily evaluation: the list for review replaced by what is due on `now`; deletions left
 * half-done finished. The list is written in batches too (a transaction each, a turn of the
 * event loop between them): the due studies upserted, then the rows no longer due removed.
 */
export async function evaluateRetention(archive: Archive, o: EvaluationOptions & { logger?: Logger }): Promise<DueStudy[]> {
  const due = await findDueStudies(archive, o);
  const batchSize = batchSizeOf(o);
  const sql = archive.index.sql;
  const at = o.now.toISOString();
  for (let i = 0; i < due.length; i += batchSize) {
    const batch = due.slice(i, i + batchSize);
    await sql.transaction(async (tx) => {
      for (const d of batch) {
        await tx.run(
          `INSERT INTO lifecycle_due (study_instance_uid, site_id, rule, last_contact, keep_until, kept_for_minor, held, evaluated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (study_instance_uid) DO UPDATE SET site_id = excluded.site_id, rule = excluded.rule, last_contact = excluded.last_contact,
             keep_until = excluded.keep_until, kept_for_minor = excluded.kept_for_minor, held = excluded.held, evaluated_at = excluded.evaluated_at`,
          [d.StudyInstanceUID, archive.sites.get(d.site)!.id, d.rule, d.lastContact, d.keepUntil, d.keptForMinor ? 1 : 0, d.held ? 1 : 0, at]);
      }
    });
    await yieldToEventLoop();
  }
  const dueUids = new Set(due.map((d) => d.StudyInstanceUID));
  let afterUid = '';
  for (;;) {
    const listed = await sql.all<{ study_instance_uid: string }>(
      'SELECT study_instance_uid FROM lifecycle_due WHERE study_instance_uid > ? ORDER BY study_instance_uid LIMIT ?', [afterUid, batchSize]);
    if (listed.length === 0) break;
    afterUid = listed.at(-1)!.study_instance_uid;
    const gone = listed.map((r) => r.study_instance_uid).filter((uid) => !dueUids.has(uid));
    if (gone.length > 0) await sql.run(`DELETE FROM lifecycle_due WHERE study_instance_uid IN (${marks(gone.length)})`, gone);
    await yieldToEventLoop();
  }
  await finishDeletions(archive, o.logger);
  o.logger?.info({ due: due.length, held: due.filter((d) => d.held).length }, 'retention evaluated');
  return due;
}

const inSites = (column: string, siteIds: readonly number[] | undefined) => siteIds === undefined
  ? { sql: '', params: [] as number[] }
  : siteIds.length === 0 ? { sql: ' AND 1 = 0', params: [] as number[] } : { sql: ` AND ${column} IN (${siteIds.map(() => '?').join(', ')})`, params: [...siteIds] };

/** The list for review, as the last evaluation left it (undefined sites: every site). */
export async function listDueStudies(archive: Archive, siteIds?: readonly number[]): Promise<DueStudy[]> {
  await migrateLifecycle(archive.index.sql);
  const scope = inSites('site_id', siteIds);
  const rows = await archive.index.sql.all<{ study_instance_uid: string; site_id: number | string; rule: string; last_contact: string; keep_until: string; kept_for_minor: number | string; held: number | string }>(
    `SELECT * FROM lifecycle_due WHERE 1 = 1${scope.sql} ORDER BY keep_until, study_instance_uid`, scope.params);
  return rows.map((r) => ({
    StudyInstanceUID: r.study_instance_uid, site: archive.siteById.get(Number(r.site_id))?.code ?? '', rule: r.rule,
    lastContact: r.last_contact, keepUntil: r.keep_until, keptForMinor: Number(r.kept_for_minor) === 1, held: Number(r.held) === 1,
  }));
}

/** How many studies past retention are held and not (metrics). Throws while the tables do not exist yet (the module not run). */
export async function dueStudyCounts(sql: SqlDatabase): Promise<Array<{ held: boolean; count: number }>> {
  const rows = await sql.all<{ held: number | string; n: number | string }>('SELECT held, COUNT(*) AS n FROM lifecycle_due GROUP BY held');
  return rows.map((r) => ({ held: Number(r.held) === 1, count: Number(r.n) }));
}

/** How many rejection notes owed to peers are in each state (metrics); throws like dueStudyCounts. */
export async function rejectionNoticeCounts(sql: SqlDatabase): Promise<Array<{ state: string; count: number }>> {
  const rows = await sql.all<{ state: string; n: number | string }>('SELECT state, COUNT(*) AS n FROM lifecycle_notices GROUP BY state');
  return rows.map((r) => ({ state: r.state, count: Number(r.n) }));
}

/** A rejection note owed to a peer (lifecycle_notices), sent by src/dimse/rejection-notes.ts. */
export interface RejectionNotice {
  id: number; deletionId: number; destination: string; attempts: number; nextAttemptAt: string;
  /** The note (base64 of its Part 10 file) and its SOP Instance UID, from the deletion record. */
  rejectionNote: string; rejectionNoteUid: string;
}

/** lifecycle_notices' claim and lease (src/index/leased-queue.ts): several nodes may send the notes. */
const notices = new LeasedQueue({ table: 'lifecycle_notices', state: 'state' });

/** The notes due at `now`, oldest first, at most 100. */
export async function dueRejectionNotices(sql: SqlDatabase, now: Date): Promise<RejectionNotice[]> {
  const rows = await sql.all<{ id: number | string; deletion_id: number | string; destination: string; attempts: number | string; next_attempt_at: string; rejection_note: string; rejection_note_uid: string }>(
    `SELECT n.id, n.deletion_id, n.destination, n.attempts, n.next_attempt_at, d.rejection_note, d.rejection_note_uid
       FROM lifecycle_notices n JOIN lifecycle_deletions d ON d.id = n.deletion_id
      WHERE n.state = 'pending' AND n.next_attempt_at <= ? ORDER BY n.id LIMIT 100`, [now.toISOString()]);
  return rows.map((r) => ({
    id: Number(r.id), deletionId: Number(r.deletion_id), destination: r.destination, attempts: Number(r.attempts), nextAttemptAt: r.next_attempt_at,
    rejectionNote: r.rejection_note, rejectionNoteUid: r.rejection_note_uid,
  }));
}

/** Takes a due note until `until` (no other node sends it meanwhile): the lease, or undefined when another node has it. */
export function takeRejectionNotice(sql: SqlDatabase, n: RejectionNotice, until: Date): Promise<string | undefined> {
  return notices.take(sql, n.id, { state: 'pending', next: n.nextAttemptAt }, until);
}

/** The peer stored the note (written only while `lease` holds). */
export async function rejectionNoticeSent(sql: SqlDatabase, id: number, lease: string, attempts: number, at: string): Promise<void> {
  await notices.settle(sql, id, lease, `state = 'done', attempts = ?, last_error = NULL, updated_at = ?`, [attempts, at]);
}

/** The note was not delivered: tried again at nextAttemptAt, or given up (failed); written only while `lease` holds. */
export async function rejectionNoticeNotSent(sql: SqlDatabase, id: number, lease: string, o: { failed: boolean; attempts: number; nextAttemptAt: string; error: string; at: string }): Promise<boolean> {
  return notices.settle(sql, id, lease, 'state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, updated_at = ?',
    [o.failed ? 'failed' : 'pending', o.attempts, o.nextAttemptAt, o.error, o.at]);
}

export interface Actor {
  /** Who, as the audit trail names them. */
  audit: Pick<AuditEvent, 'actor' | 'actorKind' | 'site' | 'source' | 'via'>;
  /** The sites they act for (undefined: every site): another site's study is answered as absent. */
  siteIds?: readonly number[];
}

/** Places a legal hold on a study or on a patient record (and so on every record of that person). */
export async function placeHold(archive: Archive, by: Actor, target: { StudyInstanceUID: string } | { siteId: number; IssuerOfPatientID: string; PatientID: string }, reason: string): Promise<LegalHold> {
  const sql = archive.index.sql;
  await migrateLifecycle(sql);
  let siteId: number;
  let studyUid: string | null = null;
  let patientId: number | null = null;
  if ('StudyInstanceUID' in target) {
    const study = await archive.index.studyPatient(target.StudyInstanceUID);
    if (!study || (by.siteIds && !by.siteIds.includes(study.siteId))) throw new LifecycleError('not-found', `study ${target.StudyInstanceUID} is not in the archive`);
    siteId = study.siteId;
    studyUid = target.StudyInstanceUID;
  } else {
    if (by.siteIds && !by.siteIds.includes(target.siteId)) throw new LifecycleError('not-found', 'no such patient record');
    const id = await archive.index.patientRecordId(target.siteId, target.IssuerOfPatientID, target.PatientID);
    if (id === undefined) throw new LifecycleError('not-found', 'no such patient record');
    siteId = target.siteId;
    patientId = id;
  }
  const at = new Date().toISOString();
  const id = await sql.transaction(async (tx) => {
    const row = await tx.get<{ id: number }>(
      'INSERT INTO lifecycle_holds (site_id, study_instance_uid, patient_id, reason, placed_by, placed_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id',
      [siteId, studyUid, patientId, reason, by.audit.actor, at]);
    // The list for review follows at once: a held study is not approved on yesterday's list.
    if (studyUid) await tx.run('UPDATE lifecycle_due SET held = 1 WHERE study_instance_uid = ?', [studyUid]);
    await new AuditTrail(tx).record({ action: 'legal-hold', outcome: 'success', ...by.audit, reason, ...(studyUid ? { StudyInstanceUID: studyUid } : {}), details: { hold: Number(row!.id), placed: true } }, tx);
    return Number(row!.id);
  });
  return (await listHolds(archive, [siteId])).find((h) => h.id === id)!;
}

/** Lifts a legal hold; another site's hold is answered as absent. */
export async function releaseHold(archive: Archive, by: Actor, id: number): Promise<void> {
  const sql = archive.index.sql;
  await migrateLifecycle(sql);
  const scope = inSites('site_id', by.siteIds);
  const hold = await sql.get<{ id: number; study_instance_uid: string | null }>(
    `SELECT id, study_instance_uid FROM lifecycle_holds WHERE id = ? AND released_at IS NULL${scope.sql}`, [id, ...scope.params]);
  if (!hold) throw new LifecycleError('not-found', `legal hold ${id} does not exist`);
  await sql.transaction(async (tx) => {
    await tx.run('UPDATE lifecycle_holds SET released_at = ?, released_by = ? WHERE id = ?', [new Date().toISOString(), by.audit.actor, id]);
    await new AuditTrail(tx).record({ action: 'legal-hold', outcome: 'success', ...by.audit, ...(hold.study_instance_uid ? { StudyInstanceUID: hold.study_instance_uid } : {}), details: { hold: id, released: true } }, tx);
  });
}

export async function listHolds(archive: Archive, siteIds?: readonly number[]): Promise<LegalHold[]> {
  await migrateLifecycle(archive.index.sql);
  const scope = inSites('h.site_id', siteIds);
  const rows = await archive.index.sql.all<{ id: number | string; site_id: number | string; study_instance_uid: string | null; issuer: string | null; pid: string | null; reason: string; placed_by: string; placed_at: string }>(
    `SELECT h.id, h.site_id, h.study_instance_uid, p.issuer, p.patient_id AS pid, h.reason, h.placed_by, h.placed_at
       FROM lifecycle_holds h LEFT JOIN patients p ON p.id = h.patient_id WHERE h.released_at IS NULL${scope.sql} ORDER BY h.id`, scope.params);
  return rows.map((r) => ({
    id: Number(r.id), site: archive.siteById.get(Number(r.site_id))?.code ?? '', reason: r.reason, placedBy: r.placed_by, placedAt: r.placed_at,
    ...(r.study_instance_uid ? { StudyInstanceUID: r.study_instance_uid } : {}),
    ...(r.pid !== null && r.issuer !== null ? { patient: { PatientID: r.pid, IssuerOfPatientID: r.issuer } } : {}),
  }));
}

/** Whether a legal hold covers a study: on the study, or on a record of its patient's person. */
async function isHeld(sql: SqlDatabase, StudyInstanceUID: string, patientRecordId: number): Promise<boolean> {
  const holds = await heldRecords(sql);
  return holds.studies.has(StudyInstanceUID) || holds.records.has(patientRecordId);
}

export interface DeletionRequest {
  StudyInstanceUID: string;
  /**
   * 'retention': an approval of a study on the list for review (refused when it is not on
   * it); 'administrator': a DICOMweb DELETE by an administrator, whatever its retention.
   */
  basis: 'retention' | 'administrator';
  reason?: string;
  now?: Date;
}

/**
 * Withdraws a study: refused under a legal hold (whoever asks) or, for a retention
 * approval, when the study is not due. The index rows, the deletion record and the audit
 * record are one transaction; the blobs go after it (finishDeletions completes a deletion a
 * crash interrupted: the record keeps their keys).
 */
export async function deleteStudy(archive: Archive, by: Actor, request: DeletionRequest): Promise<DeletionRecord> {
  const sql = archive.index.sql;
  await migrateLifecycle(sql);
  const study = await archive.index.studyPatient(request.StudyInstanceUID);
  if (!study || (by.siteIds && !by.siteIds.includes(study.siteId))) throw new LifecycleError('not-found', `study ${request.StudyInstanceUID} is not in the archive`);
  const site = archive.siteById.get(study.siteId)!;
  const refuse = async (code: 'held' | 'not-due', message: string): Promise<never> => {
    await new AuditTrail(sql).record({ action: 'deletion', outcome: 'refused', ...by.audit, StudyInstanceUID: request.StudyInstanceUID, details: { basis: request.basis, why: code } });
    throw new LifecycleError(code, message);
  };
  if (await isHeld(sql, request.StudyInstanceUID, study.patientId)) await refuse('held', 'a legal hold suspends the deletion of this study');
  let rule = 'administrator request';
  if (request.basis === 'retention') {
    const due = await sql.get<{ rule: string; last_contact: string }>('SELECT rule, last_contact FROM lifecycle_due WHERE study_instance_uid = ?', [request.StudyInstanceUID]);
    if (!due) await refuse('not-due', 'this study is not past its retention (GET /api/lifecycle/due lists those that are)');
    // The person came back since the evaluation (an exam, an order, a stay): their retention starts again.
    const lastContact = (await lastContactsOf(sql, [study.patientId])).get(study.patientId);
    if (lastContact !== undefined && lastContact > due!.last_contact) {
      await sql.run('DELETE FROM lifecycle_due WHERE study_instance_uid = ?', [request.StudyInstanceUID]);
      await refuse('not-due', `the patient was seen again (${lastContact}) since the study was listed: it is kept`);
    }
    rule = due!.rule;
  }
  const now = request.now ?? new Date();
  const objects = await sql.all<{ sop_instance_uid: string; sop_class_uid: string; series_uid: string; blob_key: string; sha256: string; size: number | string }>(
    `SELECT i.sop_instance_uid, i.sop_class_uid, se.series_instance_uid AS series_uid, i.blob_key, i.sha256, i.size
       FROM instances i JOIN series se ON se.id = i.series_id JOIN studies s ON s.id = se.study_id
      WHERE s.study_instance_uid = ? ORDER BY se.series_instance_uid, i.sop_instance_uid`, [request.StudyInstanceUID]);
  // Objects of the study rejected earlier keep their blob (for the undo): they go too.
  const rejected = await sql.all<{ sop_instance_uid: string; blob_key: string; sha256: string; size: number | string }>(
    `SELECT h.sop_instance_uid, h.blob_key, h.sha256, h.size FROM instance_history h
       JOIN corrections c ON c.blob_key = h.blob_key AND c.kind = 'instance-reject' AND c.undone_at IS NULL
      WHERE c.study_instance_uid = ? AND h.reason = 'rejected'`, [request.StudyInstanceUID]);
  const series = new Map<string, Array<{ SOPClassUID: string; SOPInstanceUID: string }>>();
  for (const o of objects) series.set(o.series_uid, [...(series.get(o.series_uid) ?? []), { SOPClassUID: o.sop_class_uid, SOPInstanceUID: o.sop_instance_uid }]);
  const noteUID = newUID();
  const note = rejectionNoteOf({
    SOPInstanceUID: noteUID, SeriesInstanceUID: newUID(), createdAt: now, title: rejectionTitles.dataRetentionExpired,
    patient: { PatientID: study.patient.PatientID, IssuerOfPatientID: study.patient.IssuerOfPatientID ?? site.issuerOfPatientID },
    StudyInstanceUID: request.StudyInstanceUID,
    series: [...series].map(([SeriesInstanceUID, instances]) => ({ SeriesInstanceUID, instances })),
  });
  const hashes = [...objects, ...rejected].map((o) => ({ SOPInstanceUID: o.sop_instance_uid, sha256: o.sha256, size: Number(o.size) }));
  const keys = [...new Set([...objects, ...rejected].map((o) => o.blob_key))];
  const bytes = hashes.reduce((n, h) => n + h.size, 0);
  const at = now.toISOString();
  const id = await sql.transaction(async (tx) => {
    const row = await tx.get<{ id: number }>(
      `INSERT INTO lifecycle_deletions (study_instance_uid, site_id, rule, reason, approved_by, deleted_at, objects, bytes, object_hashes, blob_keys, rejection_note_uid, rejection_note, state)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'removing') RETURNING id`,
      [request.StudyInstanceUID, site.id, rule, request.reason ?? null, by.audit.actor, at, hashes.length, bytes, JSON.stringify(hashes), JSON.stringify(keys), noteUID, note.toString('base64')]);
    // The peers the study was forwarded to are owed the rejection note (src/dimse/rejection-notes.ts sends it).
    const destinations = await tx.all<{ destination: string }>(`SELECT DISTINCT destination FROM forward_queue WHERE study_instance_uid = ? AND state = 'done' ORDER BY destination`, [request.StudyInstanceUID]);
    for (const d of destinations) {
      await tx.run(`INSERT INTO lifecycle_notices (deletion_id, destination, state, attempts, next_attempt_at, updated_at) VALUES (?, ?, 'pending', 0, ?, ?)`, [row!.id, d.destination, at, at]);
    }
    // Each removal appends instance.deleted: study documents and the DMP publication follow.
    for (const o of objects) await archive.index.deleteInstanceIndexIn(tx, o.sop_instance_uid);
    for (const r of rejected) await tx.run(`DELETE FROM instance_history WHERE blob_key = ? AND reason = 'rejected'`, [r.blob_key]);
    await tx.run('DELETE FROM lifecycle_due WHERE study_instance_uid = ?', [request.StudyInstanceUID]);
    await appendEvent(tx, 'study.deleted', {
      StudyInstanceUID: request.StudyInstanceUID, siteId: site.id, deletion: Number(row!.id), rejectionNoteUID: noteUID, rejectionNoteSha256: createHash('sha256').update(note).digest('hex'),
    }, at);
    await new AuditTrail(tx).record({
      action: 'deletion', outcome: 'success', ...by.audit, StudyInstanceUID: request.StudyInstanceUID,
      patients: [`${site.code}|${study.patient.IssuerOfPatientID ?? site.issuerOfPatientID}|${study.patient.PatientID}`],
      ...(request.reason ? { reason: request.reason } : {}),
      details: { deletion: Number(row!.id), basis: request.basis, rule, objects: hashes.length, rejectionNoteUID: noteUID },
    }, tx);
    return Number(row!.id);
  });
  await removeBlobs(archive, id, keys);
  return (await listDeletions(archive, undefined, id))[0]!;
}

async function removeBlobs(archive: Archive, id: number, keys: readonly string[]): Promise<void> {
  for (const key of keys) {
    try {
      await archive.store.delete(key);
    } catch (e) {
      if (!(e instanceof BlobNotFoundError)) throw e;
    }
  }
  await archive.index.sql.run(`UPDATE lifecycle_deletions SET state = 'done', completed_at = ? WHERE id = ?`, [new Date().toISOString(), id]);
}

/** Deletes the blobs of deletions a crash or a storage fault left half-done. */
export async function finishDeletions(archive: Archive, logger?: Logger): Promise<number> {
  const left = await archive.index.sql.all<{ id: number | string; blob_keys: string }>(`SELECT id, blob_keys FROM lifecycle_deletions WHERE state = 'removing'`);
  for (const d of left) {
    try {
      await removeBlobs(archive, Number(d.id), JSON.parse(d.blob_keys) as string[]);
    } catch (e) {
      logger?.warn({ err: e, deletion: Number(d.id) }, 'blobs of a deletion not removed yet: retried at the next evaluation');
    }
  }
  return left.length;
}

/** Deletion records of these sites (undefined: every site), newest first. */
export async function listDeletions(archive: Archive, siteIds?: readonly number[], id?: number): Promise<DeletionRecord[]> {
  await migrateLifecycle(archive.index.sql);
  const scope = inSites('site_id', siteIds);
  const rows = await archive.index.sql.all<{ id: number | string; study_instance_uid: string; site_id: number | string; rule: string; reason: string | null; approved_by: string; deleted_at: string; objects: number | string; bytes: number | string; object_hashes: string; rejection_note_uid: string; state: 'removing' | 'done'; completed_at: string | null }>(
    `SELECT id, study_instance_uid, site_id, rule, reason, approved_by, deleted_at, objects, bytes, object_hashes, rejection_note_uid, state, completed_at
       FROM lifecycle_deletions WHERE 1 = 1${id !== undefined ? ' AND id = ?' : ''}${scope.sql} ORDER BY id DESC LIMIT 500`,
    [...(id !== undefined ? [id] : []), ...scope.params]);
  return rows.map((r) => ({
    id: Number(r.id), StudyInstanceUID: r.study_instance_uid, site: archive.siteById.get(Number(r.site_id))?.code ?? '', rule: r.rule,
    ...(r.reason ? { reason: r.reason } : {}), approvedBy: r.approved_by, deletedAt: r.deleted_at, objects: Number(r.objects), bytes: Number(r.bytes),
    objectHashes: JSON.parse(r.object_hashes) as DeletionRecord['objectHashes'], rejectionNoteUID: r.rejection_note_uid, state: r.state,
    ...(r.completed_at ? { completedAt: r.completed_at } : {}),
  }));
}

/** The daily evaluation in `atrium serve`: started with the other workers. */
export class RetentionEvaluation {
  private first: NodeJS.Timeout | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(private readonly archive: Archive, private readonly rules: readonly RetentionRule[], private readonly everyMs: number, private readonly logger: Logger) {}

  /** One evaluation (tests give `now`). */
  evaluate(now = new Date()): Promise<DueStudy[]> {
    return evaluateRetention(this.archive, { rules: this.rules, now, logger: this.logger });
  }

  start(): void {
    const run = () => {
      // One evaluation at a time: a slow one is not overtaken by the next.
      if (this.running) return;
      this.running = this.evaluate().catch((e: unknown) => this.logger.error({ err: e }, 'retention evaluation failed')).finally(() => { this.running = undefined; });
    };
    // A first evaluation a minute after start (not in the way of recovery), then one a period.
    this.first = setTimeout(run, 60_000);
    this.timer = setInterval(run, this.everyMs);
    this.first.unref();
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearTimeout(this.first);
    clearInterval(this.timer);
    await this.running;
  }
}
