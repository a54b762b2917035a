/**
 * Access requests: a professional who opens a patient's exam, and is told that the same
 * person has N exams at other sites they may not open ("N exams elsewhere", never named),
 * asks for access with a reason. The request is recorded here (who, which person, how many
 * exams, at which sites, why) and in the audit trail; the administrators of those sites read
 * it and, if they agree, share the exams with the requester (a share grant, src/api/sharing.ts).
 * Nothing is opened by the request itself.
 */
import { linkedRecords } from './linked-records.ts';
import { scopeCondition, sitesActedFor, type AccessScope } from './policy.ts';
import type { Principal } from './principal.ts';
import { applyMigrations, type Migration } from '../index/migrations.ts';
import type { SqlDatabase } from '../index/sql.ts';

export const accessRequestMigrationsTable = 'access_request_migrations';

export const accessRequestMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'access requests to a person\'s exams at other sites, with their reason',
    // target_sites: the ids of the sites holding the exams asked for, comma-delimited (",3,5,").
    sql: `
CREATE TABLE access_requests (
  id {id},
  requested_by {text} NOT NULL,
  requester_name {text} NOT NULL,
  patient_id BIGINT NOT NULL,
  study_instance_uid {text} NOT NULL,
  target_sites {text} NOT NULL,
  exams INTEGER NOT NULL,
  reason {text} NOT NULL,
  created_at {text} NOT NULL
);
CREATE INDEX access_requests_created ON access_requests (created_at);
`,
  },
];

const migrated = new WeakMap<SqlDatabase, Promise<void>>();

/** The module's table in place (once per database handle). */
export function migrateAccessRequests(sql: SqlDatabase): Promise<void> {
  let done = migrated.get(sql);
  if (!done) {
    done = applyMigrations(sql, accessRequestMigrations, accessRequestMigrationsTable).then(() => undefined, (e: unknown) => {
      migrated.delete(sql);
      throw e;
    });
    migrated.set(sql, done);
  }
  return done;
}

/** The same person's exams the scope does not reach, per site holding them. */
export async function examsElsewhere(sql: SqlDatabase, patientId: number, scope: AccessScope): Promise<Map<number, number>> {
  const records = await linkedRecords(sql, [patientId], 'ins-or-territory');
  const marks = records.map(() => '?').join(', ');
  const count = async (condition: { sql: string; params: unknown[] } | undefined) => {
    const rows = await sql.all<{ site_id: number; n: number }>(
      `SELECT s.site_id, COUNT(*) AS n FROM studies s WHERE s.patient_id IN (${marks})${condition ? ` AND ${condition.sql}` : ''} GROUP BY s.site_id`,
      [...records, ...(condition?.params ?? [])],
    );
    return new Map(rows.map((r) => [Number(r.site_id), Number(r.n)]));
  };
  const all = await count(undefined);
  const condition = scopeCondition(scope);
  const seen = condition ? await count(condition) : all;
  const hidden = new Map<number, number>();
  for (const [site, n] of all) if (n - (seen.get(site) ?? 0) > 0) hidden.set(site, n - (seen.get(site) ?? 0));
  return hidden;
}

export interface AccessRequest {
  id: number;
  requestedBy: string;
  requesterName: string;
  patientId: number;
  StudyInstanceUID: string;
  siteIds: number[];
  exams: number;
  reason: string;
  createdAt: string;
}

interface Row {
  id: number; requested_by: string; requester_name: string; patient_id: number; study_instance_uid: string; target_sites: string; exams: number; reason: string; created_at: string;
}

const fromRow = (r: Row): AccessRequest => ({
  id: Number(r.id), requestedBy: r.requested_by, requesterName: r.requester_name, patientId: Number(r.patient_id), StudyInstanceUID: r.study_instance_uid,
  siteIds: r.target_sites.split(',').filter((s) => s !== '').map(Number), exams: Number(r.exams), reason: r.reason, createdAt: r.created_at,
});

export class AccessRequests {
  constructor(private readonly sql: SqlDatabase) {}

  async create(r: { principal: Principal; patientId: number; StudyInstanceUID: string; hidden: ReadonlyMap<number, number>; reason: string }, now = new Date()): Promise<AccessRequest> {
    await migrateAccessRequests(this.sql);
    const siteIds = [...r.hidden.keys()].sort((a, b) => a - b);
    const exams = [...r.hidden.values()].reduce((a, b) => a + b, 0);
    const { lastId: id } = await this.sql.run(
      `INSERT INTO access_requests (requested_by, requester_name, patient_id, study_instance_uid, target_sites, exams, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
      [r.principal.id, r.principal.name, r.patientId, r.StudyInstanceUID, `,${siteIds.join(',')},`, exams, r.reason, now.toISOString()],
    );
    return { id: Number(id), requestedBy: r.principal.id, requesterName: r.principal.name, patientId: r.patientId, StudyInstanceUID: r.StudyInstanceUID, siteIds, exams, reason: r.reason, createdAt: now.toISOString() };
  }

  /** The requests for exams at the sites the caller acts for (every site for the territory), newest first. */
  async forReviewer(principal: Principal, limit = 200): Promise<AccessRequest[]> {
    await migrateAccessRequests(this.sql);
    const sites = sitesActedFor(principal);
    if (sites !== undefined && sites.length === 0) return [];
    const where = sites === undefined ? '' : ` WHERE ${sites.map(() => 'target_sites LIKE ?').join(' OR ')}`;
    const rows = await this.sql.all<Row>(`SELECT * FROM access_requests${where} ORDER BY created_at DESC, id DESC LIMIT ${Math.max(1, Math.floor(limit))}`,
      sites === undefined ? [] : sites.map((s) => `%,${s},%`));
    return rows.map(fromRow);
  }
}
