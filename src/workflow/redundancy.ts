/**
 * Redundant-exam alert: when an order arrives or a teleradiology request is filed, the same
 * person's recent exams of the same modality and body region, at every site (records linked
 * by qualified INS or by the territory's decision), within a window per modality. The alert
 * is recorded with its priors; who sees it is shown only the priors the access policy lets
 * them see (the others are counted, "N exams elsewhere", never named). The requesting
 * professional records a decision (kept, with a reason, or cancelled); the activity counts
 * alerts, cancellations and the effective dose the cancellations avoided (the priors'
 * recorded dose, src/workflow/dose-records.ts; none when unrecorded).
 */
import { linkedRecords } from '../access/linked-records.ts';
import { mayActForSites, reasonToSee, sitesActedFor, type AccessScope } from '../access/policy.ts';
import type { Principal } from '../access/principal.ts';
import { applyMigrations, type Migration } from '../index/migrations.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { dosesOfStudies, effectiveDoseOf, regionOf } from './dose-records.ts';

export const redundancyMigrationsTable = 'redundancy_migrations';

export const redundancyMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'redundant-exam alerts of orders and teleradiology requests, and the decisions taken',
    // ref: the order's accession number, or the request's id; priors_json: the priors found, all of them.
    sql: `
CREATE TABLE redundancy_alerts (
  id {id},
  kind {text} NOT NULL,
  site_id BIGINT NOT NULL,
  ref {text} NOT NULL,
  patient_id BIGINT NOT NULL,
  modality {text} NOT NULL,
  region {text},
  priors_json {text} NOT NULL,
  created_at {text} NOT NULL,
  decision {text},
  reason {text},
  decided_by {text},
  decided_at {text},
  dose_avoided_msv DOUBLE PRECISION,
  UNIQUE (kind, site_id, ref)
);
CREATE INDEX redundancy_alerts_site ON redundancy_alerts (site_id, created_at);
`,
  },
];

const migrated = new WeakMap<SqlDatabase, Promise<void>>();

/** The module's table in place (once per database handle). */
export function migrateRedundancy(sql: SqlDatabase): Promise<void> {
  let done = migrated.get(sql);
  if (!done) {
    done = applyMigrations(sql, redundancyMigrations, redundancyMigrationsTable).then(() => undefined, (e: unknown) => {
      migrated.delete(sql);
      throw e;
    });
    migrated.set(sql, done);
  }
  return done;
}

/**
 * Default windows in days by modality group: Atrium's defaults, not a regulation (an exam
 * of the same region repeated within them is worth a second look); radiation.redundancyWindowDays
 * overrides them, 0 turns a modality off.
 */
export const defaultRedundancyWindowDays: Readonly<Record<string, number>> = { CT: 90, MR: 90, NM: 90, PT: 90, XR: 30, MG: 180, US: 30 };

/** CR, DX and their kin are one kind of exam: projection radiography. */
export function modalityGroup(modality: string): string {
  const m = modality.trim().toUpperCase();
  return ['CR', 'DX', 'RG', 'XR', 'DR'].includes(m) ? 'XR' : m;
}

export interface Prior {
  StudyInstanceUID: string; siteId: number; patientId: number; StudyDate: string; modality: string; bodyPart: string; ReferringPhysicianID?: string;
}

/** What a caller is shown of the priors: those it may see named, the others counted. */
export interface Redundancy {
  priors: Array<{ StudyInstanceUID: string; site: string; StudyDate: string; modality: string; bodyPart: string }>;
  /** Priors the caller may not see: their number only. */
  elsewhere?: number;
  message?: string;
  alertId?: number;
}

const ymd = (d: Date) => d.toISOString().slice(0, 10).replace(/-/g, '');

/**
 * The person's exams of this modality group and region within the window before `now`, at
 * every site, the exam being ordered (its StudyInstanceUID) excepted. No region known: none.
 */
export async function findPriors(
  sql: SqlDatabase, q: { patientId: number; modality: string; region: string | undefined; exceptStudy?: string },
  windows: Readonly<Record<string, number>>, now = new Date(),
): Promise<Prior[]> {
  const group = modalityGroup(q.modality);
  const days = windows[group] ?? defaultRedundancyWindowDays[group];
  if (!days || q.region === undefined) return [];
  const records = await linkedRecords(sql, [q.patientId], 'ins-or-territory');
  const since = ymd(new Date(now.getTime() - days * 86_400_000));
  const rows = await sql.all<{ study_instance_uid: string; site_id: number; patient_id: number; study_date: string; referring_physician_id: string | null; modality: string | null; body_part: string | null; description: string | null }>(
    `SELECT s.study_instance_uid, s.site_id, s.patient_id, s.study_date, s.referring_physician_id, se.modality, se.body_part, s.description
       FROM studies s JOIN series se ON se.study_id = s.id
      WHERE s.patient_id IN (${records.map(() => '?').join(', ')}) AND s.study_date >= ? AND s.study_date <= ?
      ORDER BY s.study_date DESC, s.id`,
    [...records, since, ymd(now)],
  );
  const found = new Map<string, Prior>();
  for (const r of rows) {
    if (r.study_instance_uid === q.exceptStudy || found.has(r.study_instance_uid) || !r.modality || modalityGroup(r.modality) !== group) continue;
    if (regionOf(r.body_part ?? r.description) !== q.region) continue;
    found.set(r.study_instance_uid, {
      StudyInstanceUID: r.study_instance_uid, siteId: Number(r.site_id), patientId: Number(r.patient_id), StudyDate: r.study_date,
      modality: r.modality, bodyPart: r.body_part ?? r.description ?? '', ...(r.referring_physician_id ? { ReferringPhysicianID: r.referring_physician_id } : {}),
    });
  }
  return [...found.values()];
}

/** Records (or refreshes) the alert of an order or a request; none without priors. Inside the caller's transaction. */
export async function recordAlert(
  tx: SqlDatabase, a: { kind: 'order' | 'tele-request'; siteId: number; ref: string; patientId: number; modality: string; region?: string }, priors: Prior[], now = new Date(),
): Promise<number | undefined> {
  if (priors.length === 0) return undefined;
  const existing = await tx.get<{ id: number }>('SELECT id FROM redundancy_alerts WHERE kind = ? AND site_id = ? AND ref = ?', [a.kind, a.siteId, a.ref]);
  if (existing) {
    await tx.run('UPDATE redundancy_alerts SET priors_json = ?, modality = ?, region = ? WHERE id = ?', [JSON.stringify(priors), a.modality, a.region ?? null, existing.id]);
    return Number(existing.id);
  }
  const row = await tx.get<{ id: number }>(
    `INSERT INTO redundancy_alerts (kind, site_id, ref, patient_id, modality, region, priors_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
    [a.kind, a.siteId, a.ref, a.patientId, a.modality, a.region ?? null, JSON.stringify(priors), now.toISOString()],
  );
  return Number(row!.id);
}

/** The priors as a caller sees them: named when the access policy lets it see them, else counted. */
export function shownTo(scope: AccessScope, priors: readonly Prior[], siteCode: (id: number) => string): Redundancy {
  const shown: Redundancy['priors'] = [];
  let hidden = 0;
  for (const p of priors) {
    if (reasonToSee(scope, p) === undefined) {
      hidden++;
      continue;
    }
    shown.push({ StudyInstanceUID: p.StudyInstanceUID, site: siteCode(p.siteId), StudyDate: p.StudyDate, modality: p.modality, bodyPart: p.bodyPart });
  }
  return {
    priors: shown, ...(hidden > 0 ? { elsewhere: hidden } : {}),
    message: `${priors.length} recent exam${priors.length > 1 ? 's' : ''} of the same modality and region${hidden > 0 ? ` (${hidden} elsewhere)` : ''}`,
  };
}

/** The alert text of an HL7 answer: counts and dates only, no study named (a RIS sees its own site's exams). */
export function alertText(priors: readonly Prior[], modality: string, region: string | undefined, siteId: number): string {
  const here = priors.filter((p) => p.siteId === siteId).length;
  const latest = priors.map((p) => p.StudyDate).sort().at(-1);
  return `possible redundant exam: ${priors.length} ${modalityGroup(modality)} ${region ?? ''} exam(s) of this patient since the window's start `
    + `(latest ${latest}; ${here} at this site, ${priors.length - here} elsewhere)`;
}

export class RedundancyError extends Error {
  constructor(readonly status: 400 | 404 | 409, message: string) {
    super(message);
  }
}

export interface AlertView {
  id: number; kind: 'order' | 'tele-request'; site: string; ref: string; modality: string; region?: string; createdAt: string;
  decision?: 'kept' | 'cancelled'; reason?: string; decidedBy?: string; decidedAt?: string; doseAvoided_mSv?: number;
  redundancy: Redundancy;
}

interface AlertRow {
  id: number; kind: 'order' | 'tele-request'; site_id: number; ref: string; patient_id: number; modality: string; region: string | null; priors_json: string; created_at: string;
  decision: 'kept' | 'cancelled' | null; reason: string | null; decided_by: string | null; decided_at: string | null; dose_avoided_msv: number | null;
}

/** The alerts of the sites a caller acts for, and their decisions. */
export class RedundancyAlerts {
  constructor(private readonly sql: SqlDatabase, private readonly siteCode: (id: number) => string) {}

  private view(r: AlertRow, scope: AccessScope): AlertView {
    return {
      id: Number(r.id), kind: r.kind, site: this.siteCode(Number(r.site_id)), ref: r.ref, modality: r.modality, ...(r.region ? { region: r.region } : {}), createdAt: r.created_at,
      ...(r.decision ? { decision: r.decision } : {}), ...(r.reason ? { reason: r.reason } : {}), ...(r.decided_by ? { decidedBy: r.decided_by } : {}),
      ...(r.decided_at ? { decidedAt: r.decided_at } : {}), ...(r.dose_avoided_msv !== null ? { doseAvoided_mSv: Number(r.dose_avoided_msv) } : {}),
      redundancy: { ...shownTo(scope, JSON.parse(r.priors_json) as Prior[], this.siteCode), alertId: Number(r.id) },
    };
  }

  private siteCondition(who: Principal): { sql: string; params: unknown[] } {
    const sites = sitesActedFor(who);
    if (sites === undefined) return { sql: '1 = 1', params: [] };
    return sites.length === 0 ? { sql: '1 = 0', params: [] } : { sql: `site_id IN (${sites.map(() => '?').join(', ')})`, params: sites };
  }

  /** Undecided alerts first, newest first: the worklist of alerts. */
  async list(who: Principal, scope: AccessScope, filter: { site?: number; kind?: string; undecided?: boolean } = {}): Promise<AlertView[]> {
    await migrateRedundancy(this.sql);
    const c = this.siteCondition(who);
    const where = [c.sql];
    const params = [...c.params];
    if (filter.site !== undefined) { where.push('site_id = ?'); params.push(filter.site); }
    if (filter.kind !== undefined) { where.push('kind = ?'); params.push(filter.kind); }
    if (filter.undecided) where.push('decision IS NULL');
    const rows = await this.sql.all<AlertRow>(`SELECT * FROM redundancy_alerts WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT 500`, params);
    return rows.map((r) => this.view(r, scope));
  }

  /** The alert of one order or request, as the caller may see it. */
  async alertOf(kind: 'order' | 'tele-request', siteId: number, ref: string, scope: AccessScope): Promise<AlertView | undefined> {
    await migrateRedundancy(this.sql);
    const row = await this.sql.get<AlertRow>('SELECT * FROM redundancy_alerts WHERE kind = ? AND site_id = ? AND ref = ?', [kind, siteId, ref]);
    return row ? this.view(row, scope) : undefined;
  }

  /** The alerts of these requests (the teleradiology worklist's flag): request id -> number of priors. */
  async countsOfRequests(ids: readonly number[]): Promise<Map<number, number>> {
    await migrateRedundancy(this.sql);
    if (ids.length === 0) return new Map();
    const rows = await this.sql.all<{ ref: string; priors_json: string }>(
      `SELECT ref, priors_json FROM redundancy_alerts WHERE kind = 'tele-request' AND ref IN (${ids.map(() => '?').join(', ')})`, ids.map(String));
    return new Map(rows.map((r) => [Number(r.ref), (JSON.parse(r.priors_json) as unknown[]).length]));
  }

  /**
   * The requesting professional's decision: kept (a reason is required) or cancelled (an
   * order cancelled leaves the worklist). Those who act for the alert's site decide; another
   * site's alert is one that does not exist. Decided once.
   */
  async decide(who: Principal, id: number, d: { decision: 'kept' | 'cancelled'; reason?: string }, scope: AccessScope, now = new Date()): Promise<AlertView> {
    if (who.kind === 'share-link' || who.kind === 'remote-professional' || (who.roles.length > 0 && who.roles.every((r) => r === 'patient'))) throw new RedundancyError(404, `alert ${id} does not exist`);
    const reason = d.reason?.trim();
    if (d.decision === 'kept' && !reason) throw new RedundancyError(400, 'keeping the exam needs its reason');
    await migrateRedundancy(this.sql);
    return this.sql.transaction(async (tx) => {
      const row = await tx.get<AlertRow>('SELECT * FROM redundancy_alerts WHERE id = ?', [id]);
      if (!row || !mayActForSites(who, [Number(row.site_id)])) throw new RedundancyError(404, `alert ${id} does not exist`);
      if (row.decision !== null) throw new RedundancyError(409, `alert ${id} was already decided (${row.decision})`);
      let avoided: number | null = null;
      if (d.decision === 'cancelled') {
        // The dose avoided: the most recent prior's recorded effective dose (an exam like it), when recorded.
        const priors = JSON.parse(row.priors_json) as Prior[];
        const doses = await dosesOfStudies(tx, priors.map((p) => p.StudyInstanceUID));
        const latest = [...priors].sort((a, b) => b.StudyDate.localeCompare(a.StudyDate)).map((p) => doses.find((x) => x.StudyInstanceUID === p.StudyInstanceUID)).find((x) => x !== undefined);
        avoided = latest ? effectiveDoseOf(latest)?.mSv ?? null : null;
        if (row.kind === 'order') {
          await tx.run(`UPDATE scheduled_procedures SET status = 'CANCELED', updated_at = ? WHERE site_id = ? AND accession_number = ? AND status IN ('SCHEDULED', 'ARRIVED', 'READY')`,
            [now.toISOString(), row.site_id, row.ref]);
        }
      }
      await tx.run('UPDATE redundancy_alerts SET decision = ?, reason = ?, decided_by = ?, decided_at = ?, dose_avoided_msv = ? WHERE id = ?',
        [d.decision, reason ?? null, who.id, now.toISOString(), avoided, id]);
      return this.view((await tx.get<AlertRow>('SELECT * FROM redundancy_alerts WHERE id = ?', [id]))!, scope);
    });
  }

  /** Alerts, decisions and dose avoided over [from, to), for the sites the caller acts for. */
  async activity(who: Principal, range: { from: string; to: string }): Promise<{ alerts: number; kept: number; cancelled: number; undecided: number; doseAvoided_mSv: number }> {
    await migrateRedundancy(this.sql);
    const c = this.siteCondition(who);
    const r = await this.sql.get<{ alerts: number; kept: number | null; cancelled: number | null; avoided: number | null }>(
      `SELECT COUNT(*) AS alerts, SUM(CASE WHEN decision = 'kept' THEN 1 ELSE 0 END) AS kept, SUM(CASE WHEN decision = 'cancelled' THEN 1 ELSE 0 END) AS cancelled,
              SUM(dose_avoided_msv) AS avoided
         FROM redundancy_alerts WHERE ${c.sql} AND created_at >= ? AND created_at < ?`, [...c.params, range.from, range.to]);
    const alerts = Number(r?.alerts ?? 0);
    const kept = Number(r?.kept ?? 0);
    const cancelled = Number(r?.cancelled ?? 0);
    return { alerts, kept, cancelled, undecided: alerts - kept - cancelled, doseAvoided_mSv: Math.round(Number(r?.avoided ?? 0) * 100) / 100 };
  }
}

/**
 * A teleradiology request's priors, as the caller may see them; `record` (when the request is
 * filed) keeps the alert. Undefined when the person has no such recent exam.
 */
export async function redundancyOfTeleRequest(
  sql: SqlDatabase,
  q: { id: number; siteId: number; patientId: number; modality: string; bodyPart: string; StudyInstanceUID?: string },
  windows: Readonly<Record<string, number>>, scope: AccessScope, siteCode: (id: number) => string, record: boolean,
): Promise<Redundancy | undefined> {
  await migrateRedundancy(sql);
  const region = regionOf(q.bodyPart);
  const priors = await findPriors(sql, { patientId: q.patientId, modality: q.modality, region, ...(q.StudyInstanceUID ? { exceptStudy: q.StudyInstanceUID } : {}) }, windows);
  if (priors.length === 0) return undefined;
  const alertId = record
    ? await sql.transaction((tx) => recordAlert(tx, { kind: 'tele-request', siteId: q.siteId, ref: String(q.id), patientId: q.patientId, modality: q.modality, ...(region ? { region } : {}) }, priors))
    : (await sql.get<{ id: number }>(`SELECT id FROM redundancy_alerts WHERE kind = 'tele-request' AND site_id = ? AND ref = ?`, [q.siteId, String(q.id)]))?.id;
  return { ...shownTo(scope, priors, siteCode), ...(alertId !== undefined ? { alertId: Number(alertId) } : {}) };
}

/**
 * What the portal's banner says when a professional opens a patient: the person's exams at
 * other sites than the record's, each within its modality's window (a prior one might repeat),
 * named as the caller may see them, the others counted. Undefined when there are none.
 */
export async function recentExamsElsewhere(
  sql: SqlDatabase, record: { patientId: number; siteId: number }, windows: Readonly<Record<string, number>>,
  scope: AccessScope, siteCode: (id: number) => string, now = new Date(),
): Promise<Redundancy | undefined> {
  const days = { ...defaultRedundancyWindowDays, ...windows };
  const longest = Math.max(0, ...Object.values(days));
  if (longest === 0) return undefined;
  const records = await linkedRecords(sql, [record.patientId], 'ins-or-territory');
  const rows = await sql.all<{ study_instance_uid: string; site_id: number; patient_id: number; study_date: string; referring_physician_id: string | null; modality: string | null; body_part: string | null; description: string | null }>(
    `SELECT s.study_instance_uid, s.site_id, s.patient_id, s.study_date, s.referring_physician_id, se.modality, se.body_part, s.description
       FROM studies s JOIN series se ON se.study_id = s.id
      WHERE s.patient_id IN (${records.map(() => '?').join(', ')}) AND s.site_id <> ? AND s.study_date >= ? AND s.study_date <= ?
      ORDER BY s.study_date DESC, s.id`,
    [...records, record.siteId, ymd(new Date(now.getTime() - longest * 86_400_000)), ymd(now)],
  );
  const found = new Map<string, Prior>();
  for (const r of rows) {
    if (found.has(r.study_instance_uid) || !r.modality) continue;
    const window = days[modalityGroup(r.modality)];
    if (!window || r.study_date < ymd(new Date(now.getTime() - window * 86_400_000))) continue;
    found.set(r.study_instance_uid, {
      StudyInstanceUID: r.study_instance_uid, siteId: Number(r.site_id), patientId: Number(r.patient_id), StudyDate: r.study_date,
      modality: r.modality, bodyPart: r.body_part ?? r.description ?? '', ...(r.referring_physician_id ? { ReferringPhysicianID: r.referring_physician_id } : {}),
    });
  }
  if (found.size === 0) return undefined;
  const shown = shownTo(scope, [...found.values()], siteCode);
  return { ...shown, message: `${found.size} recent exam${found.size > 1 ? 's' : ''} at other sites${shown.elsewhere ? ` (${shown.elsewhere} you may not open)` : ''}` };
}
