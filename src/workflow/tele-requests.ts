/**
 * Teleradiology requests (demandes de télé-interprétation): a requesting site asks a remote
 * radiologist to validate an exam's protocol and read it. A request is refused whole when a
 * field the French teleradiology charter makes mandatory is missing (the sender is told
 * which); it then waits for its protocol decision, is put on worklists in deadline order,
 * claimed by one radiologist at a time (the claim lapses without activity), assigned by the
 * on-call rota (stroke requests at once), and closed by its final report (tele-reports.ts).
 * The assigned reader holds an assignment grant on the study, so that DICOMweb shows it to
 * them; a reassignment revokes it. Every step is in the audit trail, in its transaction.
 */
import { invalidRecipients, migrateMssante, recordRequestRecipients } from '../exchange/mssante/channel.ts';
import { AuditTrail, patientRef, type AuditEvent } from '../access/audit.ts';
import { Grants } from '../access/grants.ts';
import { actorOf, homeSiteOf, type Principal } from '../access/principal.ts';
import { mayActForSites } from '../access/policy.ts';
import type { Archive } from '../archive/archive.ts';
import type { TeleradiologyConfig } from '../config/config.ts';
import type { SqlDatabase } from '../index/sql.ts';

export const urgencies = ['routine', 'urgent', 'stroke'] as const;
export type Urgency = (typeof urgencies)[number];

/** awaiting-protocol → open (protocol validated or changed) → reported (final report); or returned to the sender. */
export const requestStatuses = ['awaiting-protocol', 'open', 'reported', 'returned'] as const;
export type RequestStatus = (typeof requestStatuses)[number];
export const openStatuses: readonly RequestStatus[] = ['awaiting-protocol', 'open'];

export type TeleErrorCode = 'incomplete' | 'invalid' | 'not-found' | 'forbidden' | 'conflict';

/** A refusal of the workflow; `missing` lists the mandatory fields an incomplete request lacks. */
export class TeleError extends Error {
  constructor(readonly code: TeleErrorCode, message: string, readonly missing?: string[]) {
    super(message);
    this.name = 'TeleError';
  }
}

/** What a requesting site sends; every field is checked by the domain, so that all missing ones are named at once. */
export interface NewTeleRequest {
  /** Requesting site code; the caller's own site when it has one. */
  site?: string;
  patient?: { PatientID?: string; IssuerOfPatientID?: string };
  /** The images: a study already in Atrium, or the accession number they will arrive with. */
  StudyInstanceUID?: string;
  AccessionNumber?: string;
  urgency?: string;
  modality?: string;
  bodyPart?: string;
  /** Organ specialty of the reading (neuro, msk, thorax…): the rota it goes to. */
  specialty?: string;
  clinicalContext?: string;
  clinicalQuestion?: string;
  /** mssante: the physician's MSSanté address, when typed (else found by RPPS in the directory). */
  requestingPhysician?: { name?: string; rpps?: string; mssante?: string };
  /** Who else gets the signed report over MSSanté: by address, or by RPPS. */
  copies?: Array<{ name?: string; rpps?: string; mssante?: string }>;
  proposedProtocol?: string;
}

export interface TeleRequest {
  id: number;
  requestingSite: string;
  patientId: number;
  StudyInstanceUID?: string;
  AccessionNumber?: string;
  urgency: Urgency;
  modality: string;
  bodyPart: string;
  specialty: string;
  clinicalContext: string;
  clinicalQuestion: string;
  requestingPhysician: { name: string; rpps?: string };
  proposedProtocol: string;
  protocol?: { decision: 'validated' | 'changed'; protocol: string; reason?: string; by: string; at: string };
  status: RequestStatus;
  returnedReason?: string;
  assignedTo?: string;
  claimedBy?: string;
  claimExpiresAt?: string;
  imagesArrivedAt?: string;
  deadlineAt: string;
  /** When the request was escalated (its deadline near, nobody reading it). */
  escalatedAt?: string;
  reportedAt?: string;
  createdBy: string;
  createdAt: string;
}

export interface RequestRow {
  id: number; requesting_site_id: number; patient_id: number; study_instance_uid: string | null; accession_number: string | null;
  urgency: Urgency; modality: string; body_part: string; specialty: string; clinical_context: string; clinical_question: string;
  requesting_physician: string; requesting_physician_rpps: string | null; proposed_protocol: string; protocol: string | null;
  protocol_decision: 'validated' | 'changed' | null; protocol_reason: string | null; protocol_by: string | null; protocol_at: string | null;
  status: RequestStatus; returned_reason: string | null; assigned_user_id: number | null; assignment_grant_id: number | null;
  claimed_by: number | null; claim_expires_at: string | null; images_arrived_at: string | null; deadline_at: string;
  reported_at: string | null; escalated_at: string | null; created_by: string; created_at: string;
  assigned_login?: string | null; claimed_login?: string | null;
}

/** Where a step comes from, for the audit trail. */
export interface Origin { source?: string; via: AuditEvent['via'] }

const requestColumns = `r.*, a.login AS assigned_login, c.login AS claimed_login`;
const requestJoins = `LEFT JOIN users a ON a.id = r.assigned_user_id LEFT JOIN users c ON c.id = r.claimed_by`;

function isoPlusMinutes(from: Date, minutes: number): string {
  return new Date(from.getTime() + minutes * 60_000).toISOString();
}

const text = (v: string | undefined): string | undefined => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined);

export class TeleRequests {
  readonly sql: SqlDatabase;
  readonly audit: AuditTrail;
  readonly grants: Grants;

  constructor(readonly archive: Archive, readonly config: TeleradiologyConfig) {
    this.sql = archive.index.sql;
    this.audit = new AuditTrail(this.sql);
    this.grants = new Grants(this.sql);
  }

  requestOf(r: RequestRow, now = new Date()): TeleRequest {
    const claimActive = r.claimed_by !== null && r.claim_expires_at !== null && r.claim_expires_at > now.toISOString();
    return {
      id: Number(r.id), requestingSite: this.archive.siteById.get(Number(r.requesting_site_id))?.code ?? '?', patientId: Number(r.patient_id),
      ...(r.study_instance_uid !== null ? { StudyInstanceUID: r.study_instance_uid } : {}),
      ...(r.accession_number !== null ? { AccessionNumber: r.accession_number } : {}),
      urgency: r.urgency, modality: r.modality, bodyPart: r.body_part, specialty: r.specialty,
      clinicalContext: r.clinical_context, clinicalQuestion: r.clinical_question,
      requestingPhysician: { name: r.requesting_physician, ...(r.requesting_physician_rpps !== null ? { rpps: r.requesting_physician_rpps } : {}) },
      proposedProtocol: r.proposed_protocol,
      ...(r.protocol_decision !== null ? { protocol: { decision: r.protocol_decision, protocol: r.protocol!, by: r.protocol_by!, at: r.protocol_at!, ...(r.protocol_reason !== null ? { reason: r.protocol_reason } : {}) } } : {}),
      status: r.status,
      ...(r.returned_reason !== null ? { returnedReason: r.returned_reason } : {}),
      ...(r.assigned_login ? { assignedTo: r.assigned_login } : {}),
      ...(claimActive && r.claimed_login ? { claimedBy: r.claimed_login, claimExpiresAt: r.claim_expires_at! } : {}),
      ...(r.images_arrived_at !== null ? { imagesArrivedAt: r.images_arrived_at } : {}),
      deadlineAt: r.deadline_at,
      ...(r.escalated_at !== null ? { escalatedAt: r.escalated_at } : {}),
      ...(r.reported_at !== null ? { reportedAt: r.reported_at } : {}),
      createdBy: r.created_by, createdAt: r.created_at,
    };
  }

  async row(tx: SqlDatabase, id: number): Promise<RequestRow> {
    const row = await tx.get<RequestRow>(`SELECT ${requestColumns} FROM tele_requests r ${requestJoins} WHERE r.id = ?`, [id]);
    if (!row) throw new TeleError('not-found', `teleradiology request ${id} does not exist`);
    return row;
  }

  /** The patient record a request names, as the audit trail names it. */
  async patientRefOfRequest(tx: SqlDatabase, r: Pick<RequestRow, 'patient_id'>): Promise<string> {
    const p = await tx.get<{ site_id: number; issuer: string; patient_id: string }>('SELECT site_id, issuer, patient_id FROM patients WHERE id = ?', [r.patient_id]);
    return p ? patientRef(this.archive.siteById.get(Number(p.site_id))?.code ?? '?', p.issuer, p.patient_id) : '?';
  }

  /** Records a step of a request, in its transaction. */
  async record(tx: SqlDatabase, who: Principal | 'system', origin: Origin, action: AuditEvent['action'], r: RequestRow, details: Record<string, unknown>, outcome: AuditEvent['outcome'] = 'success'): Promise<void> {
    const actor = who === 'system' ? { actor: 'atrium', actorKind: 'system' as const } : actorOf(who);
    await this.audit.record({
      action, outcome, ...actor, ...origin, patients: [await this.patientRefOfRequest(tx, r)],
      ...(r.study_instance_uid !== null ? { StudyInstanceUID: r.study_instance_uid } : {}),
      details: { request: Number(r.id), ...details },
    }, tx);
  }

  /**
   * Runs a step in a transaction; a refusal (403) is recorded after the rollback, so that the
   * attempt stays in the audit trail though nothing else of the step does.
   */
  async auditingRefusals<T>(who: Principal, origin: Origin, action: AuditEvent['action'], requestId: number, fn: (tx: SqlDatabase) => Promise<T>): Promise<T> {
    try {
      return await this.sql.transaction(fn);
    } catch (e) {
      if (e instanceof TeleError && e.code === 'forbidden') {
        const row = await this.sql.get<RequestRow>('SELECT * FROM tele_requests WHERE id = ?', [requestId]);
        if (row) await this.record(this.sql, who, origin, action, row, { why: e.message }, 'refused');
      }
      throw e;
    }
  }

  /**
   * Files a request from a requesting site. Incomplete: refused with the list of missing
   * fields; an unknown patient or study: refused by name. Stroke and urgent requests go at
   * once to the radiologist on call for their specialty.
   */
  async createRequest(who: Principal, input: NewTeleRequest, origin: Origin, now = new Date()): Promise<TeleRequest> {
    const missing: string[] = [];
    const need = <T>(value: T | undefined, name: string): T | undefined => {
      if (value === undefined) missing.push(name);
      return value;
    };
    const PatientID = need(text(input.patient?.PatientID), 'patient.PatientID');
    const urgency = need(text(input.urgency), 'urgency');
    const modality = need(text(input.modality), 'modality');
    const bodyPart = need(text(input.bodyPart), 'bodyPart');
    const specialty = need(text(input.specialty), 'specialty');
    const clinicalContext = need(text(input.clinicalContext), 'clinicalContext');
    const clinicalQuestion = need(text(input.clinicalQuestion), 'clinicalQuestion');
    const physician = need(text(input.requestingPhysician?.name), 'requestingPhysician.name');
    const proposedProtocol = need(text(input.proposedProtocol), 'proposedProtocol');
    const StudyInstanceUID = text(input.StudyInstanceUID);
    const AccessionNumber = text(input.AccessionNumber);
    if (StudyInstanceUID === undefined && AccessionNumber === undefined) missing.push('StudyInstanceUID or AccessionNumber');
    const siteCode = text(input.site) ?? homeSiteOf(who)?.code;
    if (siteCode === undefined) missing.push('site');
    if (missing.length > 0) {
      await this.audit.record({ action: 'tele-request', outcome: 'failure', ...actorOf(who), ...origin, details: { why: 'incomplete', missing } });
      throw new TeleError('incomplete', `incomplete request, returned to the sender: missing ${missing.join(', ')}`, missing);
    }
    if (!(urgencies as readonly string[]).includes(urgency!)) throw new TeleError('invalid', `urgency must be one of ${urgencies.join(', ')}`);
    const site = this.archive.sites.get(siteCode!);
    if (!site) throw new TeleError('invalid', `${siteCode} is not a site of the territory`);
    if (!this.mayRequestFor(who, site.id)) throw new TeleError('forbidden', `this caller may not send requests for ${site.code}`);
    const issuer = text(input.patient?.IssuerOfPatientID) ?? site.issuerOfPatientID;
    const patientId = await this.archive.index.patientRecordId(site.id, issuer, PatientID!);
    if (patientId === undefined) throw new TeleError('not-found', `patient ${PatientID} (${issuer}) is unknown at ${site.code}: send the patient (ADT) or the images first`);
    if (StudyInstanceUID !== undefined) {
      const study = await this.archive.index.studyPatient(StudyInstanceUID);
      // Another site's study is answered as one the archive lacks: the sender learns nothing of what other sites hold.
      if (!study || study.siteId !== site.id) throw new TeleError('not-found', `study ${StudyInstanceUID} is not in the archive: name it by AccessionNumber if its images are still to come`);
      if (study.patientId !== patientId) throw new TeleError('invalid', `study ${StudyInstanceUID} belongs to another patient record than ${PatientID}`);
    }
    // Named by accession number, images already archived at the site for this patient: the
    // request meets them now (the arrival consumer only sees images stored after it).
    let archived: string | undefined;
    if (StudyInstanceUID === undefined && AccessionNumber !== undefined && !/[*?\\]/.test(AccessionNumber)) {
      const [found] = await this.archive.index.searchStudies({
        level: 'study', matches: { AccessionNumber }, fuzzymatching: false, limit: 1, offset: 0, restriction: { sql: 'p.id = ?', params: [patientId] },
      });
      archived = found?.study.StudyInstanceUID;
    }
    const rpps = text(input.requestingPhysician?.rpps);
    if (rpps !== undefined && !/^[0-9]{11}$/.test(rpps)) throw new TeleError('invalid', 'requestingPhysician.rpps must be an 11-digit RPPS number');
    const physicianAddress = text(input.requestingPhysician?.mssante);
    const copies = (input.copies ?? []).map((c) => ({ ...(text(c.name) ? { name: text(c.name)! } : {}), ...(text(c.rpps) ? { rpps: text(c.rpps)! } : {}), ...(text(c.mssante) ? { address: text(c.mssante)! } : {}) }));
    const badRecipients = invalidRecipients(physicianAddress, copies);
    if (badRecipients) throw new TeleError('invalid', badRecipients);
    if (physicianAddress !== undefined || copies.length > 0) await migrateMssante(this.sql);
    const deadline = isoPlusMinutes(now, this.config.deadlineMinutes[urgency as Urgency]);
    const at = now.toISOString();
    // Images already in the archive start the clock now.
    const arrived = StudyInstanceUID !== undefined || archived !== undefined ? at : null;
    return this.sql.transaction(async (tx) => {
      const inserted = await tx.get<{ id: number }>(
        `INSERT INTO tele_requests (requesting_site_id, patient_id, study_instance_uid, accession_number, urgency, modality, body_part, specialty,
           clinical_context, clinical_question, requesting_physician, requesting_physician_rpps, proposed_protocol, status, images_arrived_at,
           deadline_at, created_by, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'awaiting-protocol', ?, ?, ?, ?, ?) RETURNING id`,
        [site.id, patientId, StudyInstanceUID ?? archived ?? null, AccessionNumber ?? null, urgency, modality, bodyPart, specialty, clinicalContext,
          clinicalQuestion, physician, rpps ?? null, proposedProtocol, arrived, deadline, who.id, at, at],
      );
      if (physicianAddress !== undefined || copies.length > 0) await recordRequestRecipients(tx, Number(inserted!.id), physicianAddress, copies);
      let row = await this.row(tx, Number(inserted!.id));
      await this.record(tx, who, origin, 'tele-request', row, { urgency, modality, bodyPart, specialty, site: site.code });
      if (urgency === 'stroke' || urgency === 'urgent') {
        const oncall = await this.onCallFor(tx, urgency === 'stroke' ? this.config.strokeSpecialty : specialty!, now);
        if (oncall !== undefined) {
          await this.assignReading(tx, row, oncall, 'atrium', now);
          row = await this.row(tx, row.id);
          await this.record(tx, 'system', origin, 'tele-assign', row, { to: row.assigned_login, why: 'on call' });
        }
      }
      return this.requestOf(row, now);
    });
  }

  /** A requesting site's members, machine clients, and the territory's administrators may send for it. */
  mayRequestFor(who: Principal, siteId: number): boolean {
    if (who.kind === 'share-link' || who.roles.includes('patient') && who.roles.length === 1) return false;
    if (who.territory === true || who.roles.includes('territory-admin')) return true;
    return who.sites.some((s) => s.id === siteId);
  }

  /** Who may see a request whole (patient, clinical context): its site, its reader, the territory, and any radiologist while it is open and nobody else holds it. */
  async requestFor(who: Principal, id: number, origin: Origin, now = new Date()): Promise<TeleRequest> {
    const row = await this.row(this.sql, id);
    const reader = who.userId !== undefined && Number(row.assigned_user_id) === who.userId;
    // Its sender too (a referring physician without a site membership).
    const sender = row.created_by === who.id && who.kind !== 'share-link';
    // A radiologist reads an open request (its clinical question, the patient) before claiming it, while nobody else holds it.
    const heldByAnother = row.claimed_by !== null && Number(row.claimed_by) !== who.userId && row.claim_expires_at !== null && row.claim_expires_at > now.toISOString();
    const candidate = who.kind === 'user' && who.userId !== undefined && who.roles.includes('radiologist') && openStatuses.includes(row.status) && !heldByAnother;
    if (!reader && !sender && !candidate && !this.mayRequestFor(who, Number(row.requesting_site_id))) throw new TeleError('not-found', `teleradiology request ${id} does not exist`);
    await this.record(this.sql, who, origin, 'view', row, { what: 'tele-request' });
    return this.requestOf(row, now);
  }

  /**
   * The remote radiologist's decision on the proposed protocol, before acquisition: validated
   * as proposed, or changed (with the protocol to perform and why). Decided once.
   */
  async decideProtocol(who: Principal, id: number, decision: { decision: 'validated' | 'changed'; protocol?: string; reason?: string }, origin: Origin, now = new Date()): Promise<TeleRequest> {
    requireRadiologist(who);
    const reason = text(decision.reason);
    const changed = text(decision.protocol);
    if (decision.decision === 'changed' && (changed === undefined || reason === undefined)) throw new TeleError('invalid', 'a changed protocol needs the protocol to perform and the reason');
    return this.sql.transaction(async (tx) => {
      const row = await this.row(tx, id);
      if (row.status !== 'awaiting-protocol') throw new TeleError('conflict', `the protocol of request ${id} was already decided (status ${row.status})`);
      this.requireNotClaimedByAnother(row, who, now);
      const protocol = decision.decision === 'changed' ? changed! : row.proposed_protocol;
      const done = await tx.run(
        `UPDATE tele_requests SET protocol = ?, protocol_decision = ?, protocol_reason = ?, protocol_by = ?, protocol_at = ?, status = 'open', updated_at = ?
          WHERE id = ? AND status = 'awaiting-protocol'`,
        [protocol, decision.decision, reason ?? null, who.id, now.toISOString(), now.toISOString(), id],
      );
      if (done.changes !== 1) throw new TeleError('conflict', `the protocol of request ${id} was already decided`);
      const after = await this.row(tx, id);
      await this.record(tx, who, origin, 'tele-protocol', after, { decision: decision.decision, ...(reason ? { reason } : {}) });
      return this.requestOf(after, now);
    });
  }

  /** A radiologist sends a request back to its site, with the reason (incomplete, inappropriate, wrong images). */
  async returnRequest(who: Principal, id: number, reason: string, origin: Origin, now = new Date()): Promise<TeleRequest> {
    requireRadiologist(who);
    if (text(reason) === undefined) throw new TeleError('invalid', 'a returned request needs the reason');
    return this.sql.transaction(async (tx) => {
      const row = await this.row(tx, id);
      if (!openStatuses.includes(row.status)) throw new TeleError('conflict', `request ${id} is ${row.status}`);
      this.requireNotClaimedByAnother(row, who, now);
      await tx.run(`UPDATE tele_requests SET status = 'returned', returned_reason = ?, claimed_by = NULL, claim_expires_at = NULL, updated_at = ? WHERE id = ?`,
        [reason.trim(), now.toISOString(), id]);
      const after = await this.row(tx, id);
      await this.record(tx, who, origin, 'tele-request', after, { returned: true }, 'success');
      return this.requestOf(after, now);
    });
  }

  private requireNotClaimedByAnother(row: RequestRow, who: Principal, now: Date): void {
    if (row.claimed_by !== null && Number(row.claimed_by) !== who.userId && row.claim_expires_at !== null && row.claim_expires_at > now.toISOString()) {
      throw new TeleError('conflict', `request ${row.id} is being read by ${row.claimed_login ?? 'another radiologist'}`);
    }
  }

  /**
   * Claims a reading for the calling radiologist until the claim lapses (claimMinutes without
   * activity). One UPDATE decides between concurrent claims: the other is told 409. The
   * claimer becomes the assigned reader (the previous one loses their grant).
   */
  async claimReading(who: Principal, id: number, origin: Origin, now = new Date()): Promise<TeleRequest> {
    const userId = requireRadiologist(who);
    return this.sql.transaction(async (tx) => {
      const at = now.toISOString();
      const done = await tx.run(
        `UPDATE tele_requests SET claimed_by = ?, claim_expires_at = ?, updated_at = ?
          WHERE id = ? AND status IN ('awaiting-protocol', 'open') AND (claimed_by IS NULL OR claimed_by = ? OR claim_expires_at <= ?)`,
        [userId, isoPlusMinutes(now, this.config.claimMinutes), at, id, userId, at],
      );
      let row = await this.row(tx, id);
      if (done.changes !== 1) {
        if (!openStatuses.includes(row.status)) throw new TeleError('conflict', `request ${id} is ${row.status}: nothing to claim`);
        throw new TeleError('conflict', `request ${id} is already claimed by ${row.claimed_login ?? 'another radiologist'} until ${row.claim_expires_at}`);
      }
      if (Number(row.assigned_user_id) !== userId) {
        await this.assignReading(tx, row, userId, who.id, now);
        row = await this.row(tx, id);
      }
      await this.record(tx, who, origin, 'tele-claim', row, { until: row.claim_expires_at });
      return this.requestOf(row, now);
    });
  }

  /** The claimer lets the reading go back to the worklist (it stays assigned to them until claimed by another). */
  async releaseReading(who: Principal, id: number, origin: Origin, now = new Date()): Promise<TeleRequest> {
    const userId = requireRadiologist(who);
    return this.sql.transaction(async (tx) => {
      const done = await tx.run('UPDATE tele_requests SET claimed_by = NULL, claim_expires_at = NULL, updated_at = ? WHERE id = ? AND claimed_by = ?', [now.toISOString(), id, userId]);
      const row = await this.row(tx, id);
      if (done.changes !== 1) throw new TeleError('conflict', `request ${id} is not claimed by this radiologist`);
      await this.record(tx, who, origin, 'tele-claim', row, { released: true });
      return this.requestOf(row, now);
    });
  }

  /**
   * The claim held by this user, renewed (a draft saved is activity); a lapsed claim nobody
   * took is taken back by the assigned reader. Inside the caller's transaction.
   */
  async holdReading(tx: SqlDatabase, who: Principal, id: number, now: Date): Promise<RequestRow> {
    const userId = requireRadiologist(who);
    const row = await this.row(tx, id);
    if (!openStatuses.includes(row.status)) throw new TeleError('conflict', `request ${id} is ${row.status}`);
    this.requireNotClaimedByAnother(row, who, now);
    if (Number(row.claimed_by) !== userId && Number(row.assigned_user_id) !== userId) throw new TeleError('forbidden', `request ${id} is not assigned to this radiologist: claim it first`);
    await tx.run('UPDATE tele_requests SET claimed_by = ?, claim_expires_at = ?, updated_at = ? WHERE id = ?', [userId, isoPlusMinutes(now, this.config.claimMinutes), now.toISOString(), id]);
    return this.row(tx, id);
  }

  /** An administrator (or the rota) gives a reading to a radiologist. */
  async assignTo(who: Principal, id: number, login: string, origin: Origin, now = new Date()): Promise<TeleRequest> {
    if (!who.roles.includes('territory-admin') && !who.roles.includes('site-admin') && who.territory !== true) throw new TeleError('forbidden', 'only administrators assign readings');
    const user = await this.radiologistByLogin(login);
    return this.sql.transaction(async (tx) => {
      const row = await this.row(tx, id);
      // Another site's administrator is told the request does not exist, as this.row says.
      if (!mayActForSites(who, [Number(row.requesting_site_id)])) throw new TeleError('not-found', `teleradiology request ${id} does not exist`);
      if (!openStatuses.includes(row.status)) throw new TeleError('conflict', `request ${id} is ${row.status}`);
      await this.assignReading(tx, row, user, who.id, now);
      // A reassigned reading is no longer held by the previous reader.
      await tx.run('UPDATE tele_requests SET claimed_by = NULL, claim_expires_at = NULL WHERE id = ? AND claimed_by <> ?', [id, user]);
      const after = await this.row(tx, id);
      await this.record(tx, who, origin, 'tele-assign', after, { to: login });
      return this.requestOf(after, now);
    });
  }

  async radiologistByLogin(login: string): Promise<number> {
    const u = await this.sql.get<{ id: number; roles: string; disabled_at: string | null }>('SELECT id, roles, disabled_at FROM users WHERE login = ?', [login]);
    if (!u || u.disabled_at !== null) throw new TeleError('not-found', `no active user ${login}`);
    if (!(JSON.parse(u.roles) as string[]).includes('radiologist')) throw new TeleError('invalid', `${login} is not a radiologist`);
    return Number(u.id);
  }

  /** Makes userId the reader of the request: the previous reader's grant is revoked, a new one opens the study. */
  async assignReading(tx: SqlDatabase, row: RequestRow, userId: number, by: string, now: Date): Promise<void> {
    if (Number(row.assigned_user_id) === userId && row.assignment_grant_id !== null) return;
    if (row.assignment_grant_id !== null) {
      await tx.run('UPDATE access_grants SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL', [now.toISOString(), by, row.assignment_grant_id]);
    }
    const grant = row.study_instance_uid !== null
      ? await this.grants.grant({ kind: 'assignment', userId, StudyInstanceUID: row.study_instance_uid, grantedBy: by, reason: `teleradiology request ${row.id}` }, tx)
      : undefined;
    await tx.run('UPDATE tele_requests SET assigned_user_id = ?, assignment_grant_id = ?, assigned_at = ?, updated_at = ? WHERE id = ?',
      [userId, grant?.id ?? null, now.toISOString(), now.toISOString(), row.id]);
    // The new reader of a stroke request is alerted (not again when its images open to them).
    if (row.urgency === 'stroke' && Number(row.assigned_user_id) !== userId) await this.queueAlert(tx, { ...row, assigned_user_id: userId }, 'stroke-assigned', now);
  }

  /**
   * An alert for the alert channel (teleradiology.alerts), in the caller's transaction: who
   * must read what, by when; never the patient's identity (pagers and SMS gateways are not
   * health data hosts).
   */
  async queueAlert(tx: SqlDatabase, row: RequestRow, kind: 'stroke-assigned' | 'escalated', now: Date): Promise<void> {
    if (!this.config.alerts) return;
    const reader = row.assigned_user_id === null ? undefined
      : await tx.get<{ login: string; display_name: string }>('SELECT login, display_name FROM users WHERE id = ?', [row.assigned_user_id]);
    const payload = {
      kind, request: Number(row.id), urgency: row.urgency, deadline: row.deadline_at,
      site: this.archive.siteById.get(Number(row.requesting_site_id))?.code, modality: row.modality, bodyPart: row.body_part, specialty: row.specialty,
      ...(reader ? { assignedTo: { login: reader.login, name: reader.display_name } } : {}),
    };
    await tx.run(
      `INSERT INTO tele_alerts (request_id, kind, payload, status, next_attempt_at, created_at) VALUES (?, ?, ?, 'pending', ?, ?)`,
      [row.id, kind, JSON.stringify(payload), now.toISOString(), now.toISOString()],
    );
  }

  /** The radiologist on call for a specialty at a time (the latest-starting shift when they overlap). */
  async onCallFor(tx: SqlDatabase, specialty: string, at: Date): Promise<number | undefined> {
    const row = await tx.get<{ user_id: number }>(
      `SELECT o.user_id FROM tele_oncall o JOIN users u ON u.id = o.user_id
        WHERE o.specialty = ? AND o.starts_at <= ? AND o.ends_at > ? AND u.disabled_at IS NULL ORDER BY o.starts_at DESC, o.id DESC LIMIT 1`,
      [specialty, at.toISOString(), at.toISOString()],
    );
    return row && Number(row.user_id);
  }

  /**
   * Escalates the open requests nobody is reading whose deadline is near
   * (escalateBeforeMinutes): flagged once, and given to the radiologist on call for their
   * specialty (stroke: strokeSpecialty) when one is and it is not already theirs. Answers
   * the ids escalated.
   */
  async escalateNearDeadlines(now = new Date()): Promise<number[]> {
    const at = now.toISOString();
    const escalated: number[] = [];
    for (const urgency of urgencies) {
      const horizon = isoPlusMinutes(now, this.config.escalateBeforeMinutes[urgency]);
      const due = await this.sql.all<{ id: number }>(
        `SELECT r.id FROM tele_requests r WHERE r.status IN ('awaiting-protocol', 'open') AND r.deadline_at <= ? AND r.urgency = ?
            AND r.escalated_at IS NULL AND (r.claimed_by IS NULL OR r.claim_expires_at <= ?) ORDER BY r.deadline_at LIMIT 200`,
        [horizon, urgency, at]);
      for (const { id } of due) {
        await this.sql.transaction(async (tx) => {
          const done = await tx.run('UPDATE tele_requests SET escalated_at = ?, updated_at = ? WHERE id = ? AND escalated_at IS NULL', [at, at, id]);
          if (done.changes !== 1) return;
          let row = await this.row(tx, Number(id));
          const oncall = await this.onCallFor(tx, row.urgency === 'stroke' ? this.config.strokeSpecialty : row.specialty, now);
          const reassigned = oncall !== undefined && oncall !== Number(row.assigned_user_id);
          if (reassigned) {
            await this.assignReading(tx, row, oncall, 'atrium', now);
            row = await this.row(tx, Number(id));
          }
          await this.record(tx, 'system', { via: 'api' }, 'tele-assign', row, { why: 'escalation', deadline: row.deadline_at, ...(reassigned ? { to: row.assigned_login } : {}) });
          await this.queueAlert(tx, row, 'escalated', now);
          escalated.push(Number(id));
        });
      }
    }
    return escalated;
  }

  /** A shift of the on-call rota. */
  async addShift(who: Principal, shift: { login: string; specialty: string; startsAt: string; endsAt: string }, origin: Origin): Promise<OnCallShift> {
    if (!who.roles.includes('territory-admin') && !who.roles.includes('site-admin') && who.territory !== true) throw new TeleError('forbidden', 'only administrators set the on-call rota');
    const starts = Date.parse(shift.startsAt);
    const ends = Date.parse(shift.endsAt);
    if (Number.isNaN(starts) || Number.isNaN(ends) || ends <= starts) throw new TeleError('invalid', 'a shift needs startsAt before endsAt (ISO 8601)');
    const userId = await this.radiologistByLogin(shift.login);
    return this.sql.transaction(async (tx) => {
      const row = await tx.get<{ id: number }>(
        'INSERT INTO tele_oncall (user_id, specialty, starts_at, ends_at, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id',
        [userId, shift.specialty, new Date(starts).toISOString(), new Date(ends).toISOString(), who.id, new Date().toISOString()],
      );
      await this.audit.record({ action: 'tele-rota', outcome: 'success', ...actorOf(who), ...origin, details: { shift: Number(row!.id), login: shift.login, specialty: shift.specialty } }, tx);
      return { id: Number(row!.id), login: shift.login, specialty: shift.specialty, startsAt: new Date(starts).toISOString(), endsAt: new Date(ends).toISOString() };
    });
  }

  async shiftsAt(who: Principal, at: Date): Promise<OnCallShift[]> {
    if (who.kind === 'share-link' || (who.kind === 'user' && !who.roles.some((r) => r !== 'patient'))) throw new TeleError('forbidden', 'the rota is for professionals');
    const rows = await this.sql.all<{ id: number; login: string; specialty: string; starts_at: string; ends_at: string }>(
      `SELECT o.id, u.login, o.specialty, o.starts_at, o.ends_at FROM tele_oncall o JOIN users u ON u.id = o.user_id
        WHERE o.starts_at <= ? AND o.ends_at > ? ORDER BY o.specialty, o.starts_at`, [at.toISOString(), at.toISOString()]);
    return rows.map((r) => ({ id: Number(r.id), login: r.login, specialty: r.specialty, startsAt: r.starts_at, endsAt: r.ends_at }));
  }

  /**
   * A worklist: requests in deadline order, without patient identity (the request itself shows
   * it to those who may see it). Radiologists and the territory see every site's; a site's
   * members see their site's.
   */
  async worklist(who: Principal, filter: WorklistFilter, now = new Date()): Promise<WorklistEntry[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const statuses = filter.status ?? openStatuses;
    if (statuses.length === openStatuses.length && openStatuses.every((st) => statuses.includes(st))) {
      // Written as the partial index's predicate, so that both engines walk it in deadline order.
      where.push(`r.status IN ('awaiting-protocol', 'open')`);
    } else {
      where.push(`r.status IN (${statuses.map(() => '?').join(', ')})`);
      params.push(...statuses);
    }
    const seesAll = who.territory === true || who.roles.includes('territory-admin') || who.roles.includes('radiologist');
    if (!seesAll) {
      const ids = who.sites.map((s) => s.id);
      if (ids.length === 0) return [];
      where.push(`r.requesting_site_id IN (${ids.map(() => '?').join(', ')})`);
      params.push(...ids);
    }
    const eq = (column: string, value: string | undefined) => {
      if (value === undefined) return;
      where.push(`${column} = ?`);
      params.push(value);
    };
    if (filter.site !== undefined) {
      const site = this.archive.sites.get(filter.site);
      if (!site) throw new TeleError('invalid', `${filter.site} is not a site of the territory`);
      where.push('r.requesting_site_id = ?');
      params.push(site.id);
    }
    eq('r.modality', filter.modality);
    eq('r.body_part', filter.bodyPart);
    eq('r.urgency', filter.urgency);
    eq('r.specialty', filter.specialty);
    if (filter.mine) {
      if (who.userId === undefined) return [];
      where.push('r.assigned_user_id = ?');
      params.push(who.userId);
    }
    const rows = await this.sql.all<RequestRow>(
      `SELECT ${requestColumns} FROM tele_requests r ${requestJoins} WHERE ${where.join(' AND ')} ORDER BY r.deadline_at, r.id LIMIT ?`,
      [...params, Math.min(filter.limit ?? 100, 1000)],
    );
    return rows.map((r) => {
      const q = this.requestOf(r, now);
      return {
        id: q.id, requestingSite: q.requestingSite, urgency: q.urgency,
        ...(q.StudyInstanceUID !== undefined ? { StudyInstanceUID: q.StudyInstanceUID } : {}), ...(q.AccessionNumber !== undefined ? { AccessionNumber: q.AccessionNumber } : {}),
        createdAt: q.createdAt, status: q.status, modality: q.modality, bodyPart: q.bodyPart,
        specialty: q.specialty, deadlineAt: q.deadlineAt, escalated: q.escalatedAt !== undefined, imagesArrived: q.imagesArrivedAt !== undefined, protocolDecided: q.protocol !== undefined,
        ...(q.assignedTo ? { assignedTo: q.assignedTo } : {}), ...(q.claimedBy ? { claimedBy: q.claimedBy, claimExpiresAt: q.claimExpiresAt } : {}),
      };
    });
  }
}

export interface OnCallShift { id: number; login: string; specialty: string; startsAt: string; endsAt: string }

export interface WorklistFilter {
  site?: string; modality?: string; bodyPart?: string; urgency?: string; specialty?: string;
  status?: RequestStatus[]; mine?: boolean; limit?: number;
}

export interface WorklistEntry {
  id: number; requestingSite: string; urgency: Urgency; status: RequestStatus; modality: string; bodyPart: string; specialty: string;
  deadlineAt: string; escalated: boolean; imagesArrived: boolean; protocolDecided: boolean; assignedTo?: string; claimedBy?: string; claimExpiresAt?: string;
  /** The study the request names (a UID, or the accession number its images will carry): no patient identity. */
  StudyInstanceUID?: string; AccessionNumber?: string; createdAt: string;
}

/** Reading acts are a radiologist's, as a person (a session or a bearer token naming a user). */
export function requireRadiologist(who: Principal): number {
  if (who.kind !== 'user' || who.userId === undefined || !who.roles.includes('radiologist')) throw new TeleError('forbidden', 'only a radiologist, signed in as themselves, reads');
  return who.userId;
}
