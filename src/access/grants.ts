/**
 * Grants: a reason for one user to see a study or a patient's exams beyond their sites and
 * the exams they referred. An explicit share from someone who may see it, an emergency
 * access declared with a typed reason (break-the-glass: shown afterwards to the patient's
 * sites and the administrators), or the assignment of a reader to a teleradiology request.
 * Grants expire or are revoked; none is ever deleted (they explain the audit trail).
 */
import type { SqlDatabase } from '../index/sql.ts';
import { appendEvent } from '../events/outbox.ts';
import type { GrantKind } from './policy.ts';

export class GrantError extends Error {
  constructor(readonly code: 'not-found' | 'invalid', message: string) {
    super(message);
  }
}

export interface Grant {
  id: number;
  kind: GrantKind;
  userId: number;
  StudyInstanceUID?: string;
  patientId?: number;
  reason?: string;
  grantedBy: string;
  createdAt: string;
  expiresAt?: string;
  revokedAt?: string;
  reviewedAt?: string;
  reviewedBy?: string;
}

interface Row {
  id: number; kind: GrantKind; user_id: number; study_instance_uid: string | null; patient_id: number | null; reason: string | null;
  granted_by: string; created_at: string; expires_at: string | null; revoked_at: string | null; reviewed_at: string | null; reviewed_by: string | null;
}

function grantOf(r: Row): Grant {
  return {
    id: Number(r.id), kind: r.kind, userId: Number(r.user_id), grantedBy: r.granted_by, createdAt: r.created_at,
    ...(r.study_instance_uid !== null ? { StudyInstanceUID: r.study_instance_uid } : {}),
    ...(r.patient_id !== null ? { patientId: Number(r.patient_id) } : {}),
    ...(r.reason !== null ? { reason: r.reason } : {}),
    ...(r.expires_at !== null ? { expiresAt: r.expires_at } : {}),
    ...(r.revoked_at !== null ? { revokedAt: r.revoked_at } : {}),
    ...(r.reviewed_at !== null ? { reviewedAt: r.reviewed_at } : {}),
    ...(r.reviewed_by !== null ? { reviewedBy: r.reviewed_by } : {}),
  };
}

/** Emergency access lasts this long unless configured otherwise: one shift. */
export const EMERGENCY_ACCESS_HOURS = 12;

export class Grants {
  constructor(private readonly sql: SqlDatabase) {}

  /**
   * `patientIds`: for a share of a patient, the records it opens (AccessPolicy.recordsToShare),
   * kept with it so that a link made later never widens it; the named record comes first.
   */
  async grant(g: { kind: GrantKind; userId: number; StudyInstanceUID?: string; patientId?: number; patientIds?: number[]; reason?: string; grantedBy: string; expiresAt?: Date }, tx: SqlDatabase = this.sql): Promise<Grant> {
    if ((g.StudyInstanceUID === undefined) === (g.patientId === undefined)) throw new GrantError('invalid', 'a grant opens either one study or one patient\'s exams');
    if (g.kind === 'emergency' && (g.reason ?? '').trim().length < 10) throw new GrantError('invalid', 'an emergency access needs a typed reason (10 characters at least)');
    if (g.patientIds !== undefined && g.patientIds[0] !== g.patientId) throw new GrantError('invalid', 'the records a grant opens start with the one it names');
    const insert = async (t: SqlDatabase) => {
      const at = new Date().toISOString();
      const row = await t.get<Row>(
        `INSERT INTO access_grants (kind, user_id, study_instance_uid, patient_id, patient_ids, reason, granted_by, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        [g.kind, g.userId, g.StudyInstanceUID ?? null, g.patientId ?? null, g.patientIds === undefined ? null : JSON.stringify(g.patientIds),
          g.reason?.trim() ?? null, g.grantedBy, at, g.expiresAt?.toISOString() ?? null],
      );
      // An exam shared, for metering (src/billing/metering.ts).
      if (g.kind === 'share') await appendEvent(t, 'share.created', { grantId: Number(row!.id), ...(g.StudyInstanceUID ? { StudyInstanceUID: g.StudyInstanceUID } : { patientId: g.patientId }) }, at);
      return row!;
    };
    return grantOf(g.kind === 'share' && tx === this.sql ? await this.sql.transaction(insert) : await insert(tx));
  }

  async get(id: number): Promise<Grant | undefined> {
    const row = await this.sql.get<Row>('SELECT * FROM access_grants WHERE id = ?', [id]);
    return row && grantOf(row);
  }

  async revoke(id: number, by: string): Promise<Grant> {
    const row = await this.sql.get<Row>('UPDATE access_grants SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL RETURNING *', [new Date().toISOString(), by, id]);
    if (!row) throw new GrantError('not-found', `grant ${id} does not exist or is already revoked`);
    return grantOf(row);
  }

  /** Grants a user holds or held, newest first. */
  async ofUser(userId: number): Promise<Grant[]> {
    return (await this.sql.all<Row>('SELECT * FROM access_grants WHERE user_id = ? ORDER BY id DESC', [userId])).map(grantOf);
  }

  /**
   * Emergency accesses to patient records of these sites (all sites when undefined), newest
   * first: what the patient's sites and the administrators review afterwards.
   */
  async emergencyAccesses(siteIds?: number[], limit = 200): Promise<Array<Grant & { userLogin: string; siteId: number }>> {
    const where = siteIds === undefined ? '' : siteIds.length === 0 ? ' AND 1 = 0' : ` AND p.site_id IN (${siteIds.map(() => '?').join(', ')})`;
    const rows = await this.sql.all<Row & { login: string; p_site_id: number }>(
      `SELECT g.*, u.login, p.site_id AS p_site_id FROM access_grants g
         JOIN users u ON u.id = g.user_id
         JOIN patients p ON p.id = COALESCE(g.patient_id, (SELECT s.patient_id FROM studies s WHERE s.study_instance_uid = g.study_instance_uid))
        WHERE g.kind = 'emergency'${where} ORDER BY g.id DESC LIMIT ?`,
      [...(siteIds ?? []), limit],
    );
    return rows.map((r) => ({ ...grantOf(r), userLogin: r.login, siteId: Number(r.p_site_id) }));
  }

  async markReviewed(id: number, by: string): Promise<Grant> {
    const row = await this.sql.get<Row>(
      `UPDATE access_grants SET reviewed_at = ?, reviewed_by = ? WHERE id = ? AND kind = 'emergency' AND reviewed_at IS NULL RETURNING *`,
      [new Date().toISOString(), by, id],
    );
    if (!row) throw new GrantError('not-found', `emergency access ${id} does not exist or was already reviewed`);
    return grantOf(row);
  }
}
