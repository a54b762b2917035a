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
  | 'identity-review' | 'order' | 'share' | 'share-open' | 'share-revoke' | 'emergency-access' | 'access-request'
  | 'login' | 'login-failed' | 'logout' | 'user-admin'
  | 'tele-request' | 'tele-protocol' | 'tele-assign' | 'tele-claim' | 'tele-rota' | 'tele-template' | 'report-draft' | 'report-sign' | 'report-addendum' | 'report-send' | 'second-reading'
  | 'deletion' | 'legal-hold'
  | 'research-project' | 'research-objection' | 'reidentify';

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

export interface AuditVerification {
  ok: boolean;
  /** Records whose hash, link and patient rows held. */
  records: number;
  brokenAt?: number;
  why?: string;
  /** With anchors: how many the trail held, and the last of them. */
  anchorsVerified?: number;
  lastAnchorVerified?: { seq: number; hash: string; at: string };
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
    // Inside a transaction this joins it; given the database itself (no transaction open), it
    // opens one: the chain's lock, its head and the insert must be one transaction, or two
    // appends at once (two nodes, two requests) read the same head and fork the chain.
    await (tx ?? this.sql).transaction((t) => this.append(t, list));
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
      // One statement per 500 patients, not one per patient: a search answer touches up to a
      // page of patients, and on PostgreSQL each statement is a round trip under the chain's
      // lock (100 of them made a 100-study QIDO-RS answer ~10x slower; bench/large-index.ts).
      const refs = patients ?? [];
      for (let from = 0; from < refs.length; from += 500) {
        const chunk = refs.slice(from, from + 500);
        await tx.run(`INSERT INTO audit_event_patients (event_id, patient_ref) VALUES ${chunk.map(() => '(?, ?)').join(', ')}`, chunk.flatMap((p) => [id, p]));
      }
      prev = hash;
    }
  }

  /**
   * Walks the chain; the first record whose hash or link does not hold is reported. Each
   * record's rows of audit_event_patients must be exactly the patient records its hash
   * covers (the `patients` column), so that removing one is found too. With anchors
   * (audit-anchor.ts, signatures already checked), each anchored record must be there with
   * its anchored hash: a removed tail or a chain rewritten with fresh hashes fails.
   */
  async verify(anchors?: ReadonlyArray<{ seq: number; hash: string; at: string }>): Promise<AuditVerification> {
    const pending = [...(anchors ?? [])].sort((a, b) => a.seq - b.seq);
    let next = 0;
    let lastVerified: AuditVerification['lastAnchorVerified'];
    let prev = GENESIS;
    let after = 0;
    let records = 0;
    const result = (r: Omit<AuditVerification, 'records' | 'anchorsVerified' | 'lastAnchorVerified'>): AuditVerification => ({
      ...r, records,
      ...(anchors ? { anchorsVerified: next, ...(lastVerified ? { lastAnchorVerified: lastVerified } : {}) } : {}),
    });
    for (;;) {
      const rows = await this.sql.all<Row>('SELECT * FROM audit_events WHERE id > ? ORDER BY id LIMIT 1000', [after]);
      const last = rows.length > 0 ? Number(rows[rows.length - 1]!.id) : undefined;
      // The patient rows of this stretch of ids (and of none between: an orphan row fails too).
      const refs = new Map<number, string[]>();
      const refRows = last === undefined ? [] : await this.sql.all<{ event_id: number; patient_ref: string }>(
        'SELECT event_id, patient_ref FROM audit_event_patients WHERE event_id > ? AND event_id <= ?', [after, last]);
      for (const p of refRows) {
        const id = Number(p.event_id);
        refs.set(id, [...(refs.get(id) ?? []), p.patient_ref]);
      }
      for (const r of rows) {
        const id = Number(r.id);
        if (next < pending.length && pending[next]!.seq < id) {
          return result({ ok: false, brokenAt: pending[next]!.seq, why: `record ${pending[next]!.seq}, anchored at ${pending[next]!.at}, is missing (records were removed or the chain rewritten)` });
        }
        if (r.prev_hash !== prev) return result({ ok: false, brokenAt: id, why: 'its link to the previous record does not hold (a record was removed or changed before it)' });
        const event = eventOf(r);
        if (auditHash(prev, r.at, event) !== r.hash) return result({ ok: false, brokenAt: id, why: 'its content does not match its hash (it was edited)' });
        const want = JSON.stringify([...(event.patients ?? [])].sort());
        if (JSON.stringify((refs.get(id) ?? []).sort()) !== want) {
          return result({ ok: false, brokenAt: id, why: 'its patient records (audit_event_patients) are not the ones its hash covers (a row was removed, added or changed)' });
        }
        refs.delete(id);
        while (next < pending.length && pending[next]!.seq === id) {
          const a = pending[next]!;
          if (a.hash !== r.hash) return result({ ok: false, brokenAt: id, why: `its hash is not the one anchored at ${a.at} (the chain was rewritten)` });
          lastVerified = { seq: a.seq, hash: a.hash, at: a.at };
          next++;
        }
        prev = r.hash;
        records++;
        after = id;
      }
      const orphan = refs.keys().next();
      if (!orphan.done) return result({ ok: false, brokenAt: orphan.value, why: 'audit_event_patients names a record that is not in the trail' });
      if (rows.length < 1000) break;
    }
    const orphan = await this.sql.get<{ event_id: number }>('SELECT event_id FROM audit_event_patients WHERE event_id > ? LIMIT 1', [after]);
    if (orphan) return result({ ok: false, brokenAt: Number(orphan.event_id), why: 'audit_event_patients names a record that is not in the trail' });
    if (next < pending.length) {
      const a = pending[pending.length - 1]!;
      return result({ ok: false, brokenAt: pending[next]!.seq, why: `the trail ends at record ${after}, but record ${a.seq} was anchored at ${a.at} (records were removed from its end)` });
    }
    return result({ ok: true });
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
