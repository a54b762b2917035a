/**
 * The audit trail: every access to and change of patient data, recorded who, what, when,
 * where and why, before the answer goes out. Append-only and hash-chained: each record's
 * hash covers its content and the previous record's hash, so an edited or deleted record
 * breaks the chain where `atrium audit verify` finds it. Searchable by patient ("who
 * looked at my images?") through the patient records each event touched.
 */
import { createHash } from 'node:crypto';
import type { SqlDatabase } from '../index/sql.ts';
import type { ArchiveIndex } from '../index/archive-index.ts';
import type { Site } from '../index/records.ts';

export type AuditAction =
  | 'query' | 'view' | 'download' | 'store' | 'export' | 'correction' | 'merge' | 'identity-change'
  | 'identity-review' | 'order' | 'share' | 'share-open' | 'share-revoke' | 'emergency-access'
  | 'login' | 'login-failed' | 'logout' | 'user-admin'
  | 'tele-request' | 'tele-protocol' | 'tele-assign' | 'tele-claim' | 'tele-rota' | 'tele-template' | 'report-draft' | 'report-sign' | 'report-addendum' | 'report-send' | 'second-reading';

export type AuditOutcome = 'success' | 'failure' | 'refused';

export interface AuditEvent {
  action: AuditAction;
  outcome: AuditOutcome;
  /** Who: an API client, a DICOM peer's AE title, an HL7 sender, a person once OIDC lands. */
  actor: string;
  actorKind: 'api-client' | 'dicom-peer' | 'hl7-sender' | 'user' | 'share-link' | 'system';
  /** The actor's site code. */
  site?: string;
  /** Where from: an address, a host:port. */
  source?: string;
  via: 'dicomweb' | 'dimse' | 'hl7' | 'api' | 'cli' | 'portal';
  /** Why, when the actor said (a correction's reason, an emergency access). */
  reason?: string;
  StudyInstanceUID?: string;
  /** Patient records touched, as "<site code>|<issuer>|<PatientID>". */
  patients?: string[];
  /** What was asked or done, without patient names: keys of a query, counts, UIDs. */
  details?: Record<string, unknown>;
}

export interface StoredAuditEvent extends AuditEvent {
  id: number;
  at: string;
  hash: string;
}

const GENESIS = '0'.repeat(64);

function canonical(at: string, e: AuditEvent): string {
  return JSON.stringify([
    at, e.action, e.outcome, e.actor, e.actorKind, e.site ?? null, e.source ?? null, e.via, e.reason ?? null,
    e.StudyInstanceUID ?? null, [...(e.patients ?? [])].sort(), e.details ?? null,
  ]);
}

export function auditHash(prevHash: string, at: string, e: AuditEvent): string {
  return createHash('sha256').update(prevHash).update('\n').update(canonical(at, e)).digest('hex');
}

interface Row {
  id: number;
  at: string;
  action: AuditAction;
  outcome: AuditOutcome;
  actor: string;
  actor_kind: AuditEvent['actorKind'];
  site: string | null;
  source: string | null;
  via: AuditEvent['via'];
  reason: string | null;
  study_instance_uid: string | null;
  patients: string | null;
  details: string | null;
  prev_hash: string;
  hash: string;
}

function eventOf(r: Row): AuditEvent {
  return {
    action: r.action, outcome: r.outcome, actor: r.actor, actorKind: r.actor_kind, via: r.via,
    ...(r.site !== null ? { site: r.site } : {}),
    ...(r.source !== null ? { source: r.source } : {}),
    ...(r.reason !== null ? { reason: r.reason } : {}),
    ...(r.study_instance_uid !== null ? { StudyInstanceUID: r.study_instance_uid } : {}),
    ...(r.patients !== null ? { patients: JSON.parse(r.patients) as string[] } : {}),
    ...(r.details !== null ? { details: JSON.parse(r.details) as Record<string, unknown> } : {}),
  };
}

function storedEventOf(r: Row): StoredAuditEvent {
  return { ...eventOf(r), id: Number(r.id), at: r.at, hash: r.hash };
}

export class AuditTrail {
  constructor(private readonly sql: SqlDatabase) {}

  /** Appends events (one transaction, chained in order); in the caller's transaction when given. */
  async record(events: AuditEvent | AuditEvent[], tx?: SqlDatabase): Promise<void> {
    const list = Array.isArray(events) ? events : [events];
    if (list.length === 0) return;
    if (tx) return this.append(tx, list);
    await this.sql.transaction((t) => this.append(t, list));
  }

  private async append(tx: SqlDatabase, events: AuditEvent[]): Promise<void> {
    // One chain: appends are serialized (SQLite has one writer; PostgreSQL takes a lock).
    if (tx.engine === 'postgres') await tx.get(`SELECT pg_advisory_xact_lock(hashtext('atrium:audit'))`);
    const last = await tx.get<{ hash: string }>('SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1');
    let prev = last?.hash ?? GENESIS;
    for (const e of events) {
      const at = new Date().toISOString();
      const patients = e.patients && e.patients.length > 0 ? [...new Set(e.patients)] : undefined;
      const hash = auditHash(prev, at, { ...e, patients });
      const inserted = await tx.get<{ id: number }>(
        `INSERT INTO audit_events (at, action, outcome, actor, actor_kind, site, source, via, reason, study_instance_uid, patients, details, prev_hash, hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
        [at, e.action, e.outcome, e.actor, e.actorKind, e.site ?? null, e.source ?? null, e.via, e.reason ?? null,
          e.StudyInstanceUID ?? null, patients ? JSON.stringify(patients) : null, e.details ? JSON.stringify(e.details) : null, prev, hash],
      );
      const id = Number(inserted!.id);
      for (const p of patients ?? []) await tx.run('INSERT INTO audit_event_patients (event_id, patient_ref) VALUES (?, ?)', [id, p]);
      prev = hash;
    }
  }

  /** Walks the chain; the first record whose hash or link does not hold is reported. */
  async verify(): Promise<{ ok: boolean; records: number; brokenAt?: number; why?: string }> {
    let prev = GENESIS;
    let after = 0;
    let records = 0;
    for (;;) {
      const rows = await this.sql.all<Row>('SELECT * FROM audit_events WHERE id > ? ORDER BY id LIMIT 1000', [after]);
      for (const r of rows) {
        const id = Number(r.id);
        if (r.prev_hash !== prev) return { ok: false, records, brokenAt: id, why: 'its link to the previous record does not hold (a record was removed or changed before it)' };
        if (auditHash(prev, r.at, eventOf(r)) !== r.hash) return { ok: false, records, brokenAt: id, why: 'its content does not match its hash (it was edited)' };
        prev = r.hash;
        records++;
        after = id;
      }
      if (rows.length < 1000) return { ok: true, records };
    }
  }

  /** Stored events after an id, oldest first (exporters read the trail in order at their own cursor). */
  async eventsAfter(afterId: number, limit: number): Promise<StoredAuditEvent[]> {
    const rows = await this.sql.all<Row>('SELECT * FROM audit_events WHERE id > ? ORDER BY id LIMIT ?', [afterId, limit]);
    return rows.map(storedEventOf);
  }

  /** Events that touched a patient record ("who looked at my images?"), newest first. */
  async forPatient(patientRef: string, limit = 500): Promise<StoredAuditEvent[]> {
    const rows = await this.sql.all<Row>(
      `SELECT e.* FROM audit_events e JOIN audit_event_patients p ON p.event_id = e.id WHERE p.patient_ref = ? ORDER BY e.id DESC LIMIT ?`,
      [patientRef, limit],
    );
    return rows.map(storedEventOf);
  }
}

/** How an event names a patient record. */
export function patientRef(siteCode: string, IssuerOfPatientID: string, PatientID: string): string {
  return `${siteCode}|${IssuerOfPatientID}|${PatientID}`;
}

/** patientRef of an index row (a search result, a study's patient). */
export function patientRefOf(siteById: ReadonlyMap<number, Site>, row: { siteId: number; patient: { IssuerOfPatientID: string; PatientID: string } }): string {
  return patientRef(siteById.get(row.siteId)?.code ?? '?', row.patient.IssuerOfPatientID, row.patient.PatientID);
}

/** The patient records the studies are filed under now (studies no longer indexed are left out). */
export async function patientRefsOfStudies(index: ArchiveIndex, siteById: ReadonlyMap<number, Site>, studies: Iterable<string>): Promise<string[]> {
  const refs: string[] = [];
  for (const uid of studies) {
    const row = await index.studyPatient(uid);
    if (row) refs.push(patientRefOf(siteById, row));
  }
  return refs;
}
