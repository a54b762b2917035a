/**
 * Who may see what: the one access decision of Atrium. A professional sees a patient's
 * exams only with a reason (member of the producing site, referring physician of the exam,
 * assigned reader, explicit share, declared emergency access); a patient sees their own; a
 * share link opens what it shares; a machine client or DICOM peer sees its site's exams
 * unless trusted for the territory.
 *
 * The reasons a principal holds are gathered once per request into an AccessScope
 * (scopeOf). `reasonToSee` decides for one study, and `scopeCondition` is the same rule as
 * SQL, so that a search never returns, counts or pages over what the caller may not see.
 * Every entry point (DICOMweb, DIMSE, the API, exports) goes through these two.
 */
import type { SqlDatabase } from '../index/sql.ts';
import type { StudyPatient } from '../index/archive-index.ts';
import { professionalRoles, type Principal, type Role } from './principal.ts';
import { linkedRecords } from './linked-records.ts';

export type AccessReason =
  | 'territory' | 'site-member' | 'referring-physician' | 'assigned-reader' | 'share' | 'emergency' | 'own-record' | 'share-link';

/** Kinds of access_grants rows: each gives one user a reason to see a study or a patient's exams. */
export type GrantKind = 'share' | 'emergency' | 'assignment';

const reasonOfGrant: Record<GrantKind, AccessReason> = { share: 'share', emergency: 'emergency', assignment: 'assigned-reader' };

export interface AccessScope {
  /** Everything (a territory administrator or a client trusted for the territory). */
  all: boolean;
  /** Sites whose exams the principal sees as a member. */
  siteIds: number[];
  /** The principal's RPPS: exams naming it as referring physician. */
  referringPhysicianID?: string;
  /** Studies opened by a grant, with the reason. */
  studies: Map<string, AccessReason>;
  /** Patient records (index ids) whose every exam is opened, with the reason. */
  patients: Map<number, AccessReason>;
}

/** What the decision needs to know of a study (ArchiveIndex.studyPatient gives it). */
export type StudyFacts = Pick<StudyPatient, 'StudyInstanceUID' | 'siteId' | 'patientId' | 'ReferringPhysicianID'>;

export const nothing = (): AccessScope => ({ all: false, siteIds: [], studies: new Map(), patients: new Map() });

/** The reason the scope gives to see the study, or undefined: the single decision. */
export function reasonToSee(scope: AccessScope, study: StudyFacts): AccessReason | undefined {
  if (scope.all) return 'territory';
  if (scope.siteIds.includes(study.siteId)) return 'site-member';
  const byStudy = scope.studies.get(study.StudyInstanceUID);
  if (byStudy) return byStudy;
  const byPatient = scope.patients.get(study.patientId);
  if (byPatient) return byPatient;
  if (scope.referringPhysicianID !== undefined && study.ReferringPhysicianID === scope.referringPhysicianID) return 'referring-physician';
  return undefined;
}

/**
 * reasonToSee as a SQL condition on a studies row aliased `s`; undefined when the scope
 * is everything. An empty scope is a condition no row meets.
 */
export function scopeCondition(scope: AccessScope): { sql: string; params: unknown[] } | undefined {
  if (scope.all) return undefined;
  const parts: string[] = [];
  const params: unknown[] = [];
  const list = (column: string, values: unknown[]) => {
    if (values.length === 0) return;
    parts.push(`${column} IN (${values.map(() => '?').join(', ')})`);
    params.push(...values);
  };
  // Unary + keeps the planner from driving a search by the scope's columns: a site holds most
  // studies, so "site_id = ?" would walk the whole site (measured: a PatientID search on 100,000
  // studies went from 1 ms to 476 ms on SQLite). The search's own keys lead; the scope filters.
  list('+s.site_id', scope.siteIds);
  list('s.study_instance_uid', [...scope.studies.keys()]);
  list('+s.patient_id', [...scope.patients.keys()]);
  if (scope.referringPhysicianID !== undefined) {
    parts.push('s.referring_physician_id = ?');
    params.push(scope.referringPhysicianID);
  }
  return parts.length === 0 ? { sql: '1 = 0', params: [] } : { sql: `(${parts.join(' OR ')})`, params };
}

/** What a principal may do besides seeing exams: gates checked before the study decision. */
export type Capability =
  | 'store' | 'correct' | 'review-identities' | 'forward' | 'share' | 'emergency-access' | 'read-audit' | 'administer-users'
  | 'research' | 'approve-research' | 'record-objection' | 'reidentify';

const capabilitiesOfRole: Record<Role, Capability[]> = {
  'territory-admin': ['store', 'correct', 'review-identities', 'forward', 'share', 'read-audit', 'administer-users', 'research', 'approve-research', 'record-objection'],
  'site-admin': ['store', 'correct', 'review-identities', 'forward', 'share', 'read-audit', 'administer-users', 'research', 'approve-research', 'record-objection'],
  radiologist: ['store', 'share', 'emergency-access'],
  technologist: ['store'],
  'referring-physician': ['share', 'emergency-access'],
  patient: ['share', 'read-audit'],
  researcher: ['research'],
  'trusted-third-party': ['reidentify', 'record-objection'],
};

export function may(p: Principal, capability: Capability): boolean {
  if (p.kind === 'share-link' || p.kind === 'remote-professional') return false;
  if (p.kind === 'client' || p.kind === 'dicom-peer') {
    // Machine callers store and forward; only a territory-trusted integration (the operator's key) administers.
    return capability === 'store' || capability === 'forward' || (p.territory === true && capability !== 'emergency-access' && capability !== 'reidentify');
  }
  return p.roles.some((r) => capabilitiesOfRole[r].includes(capability));
}

/**
 * Acting on an object that belongs to sites (a share, a correction, an identity review, a
 * teleradiology request): the territory (its administrators, a client trusted for it), or a
 * member of one of the object's sites. What this refuses, the caller is told does not exist.
 * sitesActedFor is the same rule as a list (undefined: every site), for queries.
 */
export function mayActForSites(p: Principal, siteIds: readonly number[]): boolean {
  const sites = sitesActedFor(p);
  return sites === undefined || siteIds.some((id) => sites.includes(id));
}

export function sitesActedFor(p: Principal): number[] | undefined {
  if (p.kind === 'share-link' || p.kind === 'remote-professional') return [];
  if (p.territory === true || p.roles.includes('territory-admin')) return undefined;
  return p.sites.map((s) => s.id);
}

/** A machine caller's scope: its site, or the territory; no grant applies to it. */
export function peerScope(p: Principal): AccessScope {
  const scope = nothing();
  if (p.territory) scope.all = true;
  else scope.siteIds = p.sites.map((s) => s.id);
  return scope;
}

/** Reads the grants and identity links that make a principal's scope. */
export class AccessPolicy {
  constructor(private readonly sql: SqlDatabase) {}

  async scopeOf(p: Principal, now = new Date()): Promise<AccessScope> {
    if (p.kind === 'client' || p.kind === 'dicom-peer') return peerScope(p);
    const scope = nothing();
    // A remote DRIMbox consumer sees no study by scope: only the manifest it names, decided per request (drimbox.ts).
    if (p.kind === 'remote-professional') return scope;
    if (p.kind === 'share-link') {
      if (p.shareLinkId !== undefined) await this.addShareLink(scope, p.shareLinkId, now);
      return scope;
    }
    if (p.roles.includes('territory-admin')) {
      scope.all = true;
      return scope;
    }
    if (p.roles.some((r) => professionalRoles.includes(r))) {
      scope.siteIds = p.sites.map((s) => s.id);
      if (p.rpps) scope.referringPhysicianID = p.rpps;
    }
    if (p.roles.includes('patient') && p.patientId !== undefined) {
      for (const id of await this.samePerson([p.patientId])) scope.patients.set(id, 'own-record');
    }
    if (p.userId !== undefined) await this.addGrants(scope, p.userId, now);
    return scope;
  }

  private async addGrants(scope: AccessScope, userId: number, now: Date): Promise<void> {
    const rows = await this.sql.all<{ kind: GrantKind; study_instance_uid: string | null; patient_id: number | null; patient_ids: string | null }>(
      `SELECT kind, study_instance_uid, patient_id, patient_ids FROM access_grants
        WHERE user_id = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)`,
      [userId, now.toISOString()],
    );
    for (const r of rows) {
      const reason = reasonOfGrant[r.kind];
      if (r.study_instance_uid !== null && !scope.studies.has(r.study_instance_uid)) scope.studies.set(r.study_instance_uid, reason);
      if (r.patient_id !== null) for (const id of await this.recordsOpened(r)) if (!scope.patients.has(id)) scope.patients.set(id, reason);
    }
  }

  private async addShareLink(scope: AccessScope, linkId: number, now: Date): Promise<void> {
    const link = await this.sql.get<{ study_instance_uid: string | null; patient_id: number | null; patient_ids: string | null }>(
      'SELECT study_instance_uid, patient_id, patient_ids FROM share_links WHERE id = ? AND revoked_at IS NULL AND expires_at > ?',
      [linkId, now.toISOString()],
    );
    if (!link) return;
    if (link.study_instance_uid !== null) scope.studies.set(link.study_instance_uid, 'share-link');
    if (link.patient_id !== null) for (const id of await this.recordsOpened(link)) scope.patients.set(id, 'share-link');
  }

  /**
   * The records a grant or link naming a patient opens: those listed when it was made (a
   * share), else (an emergency access, a share made before lists were kept) the named record
   * and the records trustworthy links join to it.
   */
  private async recordsOpened(row: { patient_id: number | null; patient_ids: string | null }): Promise<number[]> {
    if (row.patient_ids !== null) return (JSON.parse(row.patient_ids) as number[]).map(Number);
    return row.patient_id === null ? [] : this.samePerson([Number(row.patient_id)]);
  }

  /**
   * What sharing a patient record opens: its own exams, and those of the records linked to it
   * by qualified INS at which the sharer sees an exam; never what a weaker link reaches, nor
   * what the sharer does not see.
   */
  async recordsToShare(scope: AccessScope, patientId: number): Promise<number[]> {
    const records = [patientId];
    for (const id of (await linkedRecords(this.sql, [patientId], 'qualified-ins')).slice(1)) {
      if (await this.seesAnyExamOf(scope, id)) records.push(id);
    }
    return records;
  }

  /** Does the scope give a reason to see at least one exam of the patient record? */
  async seesAnyExamOf(scope: AccessScope, patientId: number): Promise<boolean> {
    const condition = scopeCondition(scope);
    const row = await this.sql.get<{ one: number }>(
      `SELECT 1 AS one FROM studies s WHERE s.patient_id = ?${condition ? ` AND ${condition.sql}` : ''} LIMIT 1`,
      [patientId, ...(condition?.params ?? [])],
    );
    return row !== undefined;
  }

  /**
   * May the principal revoke this share (a grant or a link)? Its author, or an administrator
   * of the site whose exams it opens: never another site's administrator.
   */
  async mayRevokeShare(p: Principal, share: { createdBy: string; StudyInstanceUID?: string; patientId?: number }): Promise<boolean> {
    if (p.kind === 'share-link') return false;
    if (share.createdBy === p.id) return true;
    return may(p, 'correct') && mayActForSites(p, await this.sitesOfShared(share));
  }

  /** The site of the study or patient record a share opens. */
  private async sitesOfShared(share: { StudyInstanceUID?: string; patientId?: number }): Promise<number[]> {
    const row = share.StudyInstanceUID !== undefined
      ? await this.sql.get<{ site_id: number }>('SELECT site_id FROM studies WHERE study_instance_uid = ?', [share.StudyInstanceUID])
      : share.patientId !== undefined ? await this.sql.get<{ site_id: number }>('SELECT site_id FROM patients WHERE id = ?', [share.patientId]) : undefined;
    return row ? [Number(row.site_id)] : [];
  }

  /**
   * The patient records of the same person as these (themselves first) that access may
   * follow: joined by qualified INS or by the territory's decision (linked-records.ts).
   */
  async samePerson(patientIds: number[]): Promise<number[]> {
    return linkedRecords(this.sql, patientIds, 'ins-or-territory');
  }

}
