/**
 * Metering: every billable event, counted per site and month, kept for good. An outbox
 * consumer records one row per event in `metering_events` (this module owns it, and
 * `metering_studies`): objects stored and removed with their bytes, the first object of
 * each study (an exam archived, counted once whatever happens to the study later), exams
 * shared, share links opened, teleradiology acts and second readings, DMP publications.
 * The rows stay when studies are deleted, so that a past month's counts come out the same
 * after deletions: the invoices and the operator's dashboard are sums over these rows with
 * the SQL below (docs/billing.md quotes it), nothing read from the live tables.
 */
import type { Logger } from 'pino';
import type { Archive } from '../archive/archive.ts';
import { OutboxConsumer } from '../events/consumer.ts';
import type { OutboxEvent } from '../events/outbox.ts';
import { applyMigrations, type Migration } from '../index/migrations.ts';
import type { SqlDatabase } from '../index/sql.ts';
import type { BillingService } from '../config/billing-config.ts';

export const meteringMigrationsTable = 'metering_migrations';

export const meteringMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'metering events per site and month, the studies already counted',
    // month: the calendar month (YYYY-MM) of occurred_at in billing.timeZone, fixed when the row
    // is written; source: the outbox event (one row per event and item, never twice).
    sql: `
CREATE TABLE metering_events (
  id {id},
  site_id BIGINT NOT NULL,
  month {text} NOT NULL,
  occurred_at {text} NOT NULL,
  item {text} NOT NULL,
  quantity BIGINT NOT NULL,
  bytes BIGINT NOT NULL,
  study_instance_uid {text},
  source {text} NOT NULL
);
CREATE UNIQUE INDEX metering_events_source ON metering_events (source, item);
CREATE INDEX metering_events_site_month ON metering_events (site_id, month, item);
CREATE INDEX metering_events_month ON metering_events (month);
CREATE TABLE metering_studies (
  study_instance_uid {text} PRIMARY KEY,
  site_id BIGINT NOT NULL,
  first_at {text} NOT NULL
);
`,
  },
];

const migrated = new WeakMap<SqlDatabase, Promise<unknown>>();

export function migrateMetering(sql: SqlDatabase): Promise<unknown> {
  let done = migrated.get(sql);
  if (!done) {
    done = applyMigrations(sql, meteringMigrations, meteringMigrationsTable);
    done.catch(() => migrated.delete(sql));
    migrated.set(sql, done);
  }
  return done;
}

/** What a metering row counts. quantity is signed (objects removed count -1), bytes too. */
export const meteringItems = [
  'exam-archived', 'instance-stored', 'instance-replaced', 'instance-deleted',
  'exam-shared', 'share-opened', 'tele-act', 'second-reading', 'dmp-publication',
] as const;
export type MeteringItem = (typeof meteringItems)[number];

/** Which service each item belongs to (storage is the archive's). */
export const serviceOfItem: Record<MeteringItem, BillingService> = {
  'exam-archived': 'archive', 'instance-stored': 'archive', 'instance-replaced': 'archive', 'instance-deleted': 'archive',
  'exam-shared': 'sharing', 'share-opened': 'sharing', 'tele-act': 'teleradiology', 'second-reading': 'teleradiology', 'dmp-publication': 'dmp',
};

const storageItems: readonly MeteringItem[] = ['instance-stored', 'instance-replaced', 'instance-deleted'];

/** One formatter per time zone: building one costs more than the rest of an event's metering. */
const monthFormats = new Map<string, Intl.DateTimeFormat>();
/**
 * The month last formatted per time zone, for its quarter hour: every UTC offset in use is a
 * whole number of quarter hours, so a month changes only at a quarter-hour boundary, and the
 * events of an ingest (one per object) share one formatting instead of one each.
 */
const lastMonth = new Map<string, { quarter: number; month: string }>();
const quarterHourMs = 15 * 60_000;

/** The calendar month (YYYY-MM) of an instant in a time zone. */
export function monthOf(at: Date, timeZone: string): string {
  const quarter = Math.floor(at.getTime() / quarterHourMs);
  const last = lastMonth.get(timeZone);
  if (last?.quarter === quarter) return last.month;
  let format = monthFormats.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit' });
    monthFormats.set(timeZone, format);
  }
  const parts = format.formatToParts(at);
  const year = parts.find((p) => p.type === 'year')!.value;
  const month = parts.find((p) => p.type === 'month')!.value;
  lastMonth.set(timeZone, { quarter, month: `${year}-${month}` });
  return `${year}-${month}`;
}

interface Row { siteId: number; item: MeteringItem; quantity: number; bytes: number; StudyInstanceUID?: string | undefined }

/**
 * The metering consumer: each batch of outbox events into metering rows, in the transaction
 * that moves its position (so each event is counted once, with one node or several). A row's
 * time is its event's; `drainAt` records a batch at a given instant instead, for the tests
 * that drive a year in fast-forward (as the lifecycle's evaluation is given its day).
 */
export class MeteringConsumer extends OutboxConsumer {
  private at: Date | undefined;
  private recorded = 0;

  constructor(private readonly archive: Archive, private readonly timeZone: string, logger: Logger, pollMs = 1000) {
    super(archive.outbox, 'metering', logger, 500, pollMs);
  }

  /** Applies every committed event as if it happened at `at`. */
  async drainAt(at: Date): Promise<number> {
    await migrateMetering(this.archive.index.sql);
    this.at = at;
    try {
      return await this.drain();
    } finally {
      this.at = undefined;
    }
  }

  override async drain(): Promise<number> {
    await migrateMetering(this.archive.index.sql);
    return super.drain();
  }

  override async runOnce(): Promise<number> {
    await migrateMetering(this.archive.index.sql);
    return super.runOnce();
  }

  protected override afterBatch(): void {
    if (this.recorded > 0) this.logger.debug({ rows: this.recorded }, 'metering rows recorded');
    this.recorded = 0;
  }

  protected async apply(tx: SqlDatabase, events: OutboxEvent[]): Promise<void> {
    for (const e of events) {
      const rows = await this.rowsOf(tx, e);
      if (rows.length === 0) continue;
      const at = this.at ?? new Date(e.createdAt);
      const month = monthOf(at, this.timeZone);
      for (const r of rows) {
        await tx.run(
          `INSERT INTO metering_events (site_id, month, occurred_at, item, quantity, bytes, study_instance_uid, source)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, item) DO NOTHING`,
          [r.siteId, month, at.toISOString(), r.item, r.quantity, r.bytes, r.StudyInstanceUID ?? null, `outbox:${e.id}`]);
        this.recorded++;
      }
    }
  }

  private async rowsOf(tx: SqlDatabase, e: OutboxEvent): Promise<Row[]> {
    const p = (e.payload ?? {}) as Record<string, unknown>;
    const uid = typeof p.StudyInstanceUID === 'string' ? p.StudyInstanceUID : undefined;
    const siteId = typeof p.siteId === 'number' ? p.siteId : p.siteId !== undefined && p.siteId !== null ? Number(p.siteId) : undefined;
    const size = Number(p.size ?? 0);
    switch (e.type) {
      case 'instance.stored': {
        if (siteId === undefined || uid === undefined) return [];
        const rows: Row[] = [{ siteId, item: 'instance-stored', quantity: 1, bytes: size, StudyInstanceUID: uid }];
        // The study's first object: an exam archived, once for good (metering_studies outlives the study).
        const first = await tx.run(
          'INSERT INTO metering_studies (study_instance_uid, site_id, first_at) VALUES (?, ?, ?) ON CONFLICT (study_instance_uid) DO NOTHING',
          [uid, siteId, (this.at ?? new Date(e.createdAt)).toISOString()]);
        if (first.changes === 1) rows.push({ siteId, item: 'exam-archived', quantity: 1, bytes: 0, StudyInstanceUID: uid });
        return rows;
      }
      case 'instance.replaced':
        if (siteId === undefined) return [];
        return [{ siteId, item: 'instance-replaced', quantity: 0, bytes: size - Number(p.previousSize ?? size), StudyInstanceUID: uid }];
      case 'instance.deleted':
        if (siteId === undefined) return [];
        return [{ siteId, item: 'instance-deleted', quantity: -1, bytes: -size, StudyInstanceUID: uid }];
      case 'share.created':
      case 'share.opened': {
        const site = await this.siteOf(tx, uid, typeof p.patientId === 'number' ? p.patientId : undefined);
        if (site === undefined) return this.unattributed(e);
        return [{ siteId: site, item: e.type === 'share.created' ? 'exam-shared' : 'share-opened', quantity: 1, bytes: 0, StudyInstanceUID: uid }];
      }
      case 'tele.reported':
      case 'tele.second-reading-answered':
        if (siteId === undefined) return this.unattributed(e);
        return [{ siteId, item: e.type === 'tele.reported' ? 'tele-act' : 'second-reading', quantity: 1, bytes: 0, StudyInstanceUID: uid }];
      case 'dmp.published':
        if (siteId === undefined) return this.unattributed(e);
        return [{ siteId, item: 'dmp-publication', quantity: 1, bytes: 0, StudyInstanceUID: uid }];
      default:
        return [];
    }
  }

  private unattributed(e: OutboxEvent): Row[] {
    this.logger.warn({ event: e.id, type: e.type }, 'metering: the event names no site it can be counted for; not counted');
    return [];
  }

  /** The site a share is billed to: the study's (where it is now, else where it arrived), or the patient record's. */
  private async siteOf(tx: SqlDatabase, StudyInstanceUID: string | undefined, patientId: number | undefined): Promise<number | undefined> {
    if (StudyInstanceUID !== undefined) {
      const study = await this.archive.index.studyPatient(StudyInstanceUID, tx);
      if (study) return study.siteId;
      const counted = await tx.get<{ site_id: number | string }>('SELECT site_id FROM metering_studies WHERE study_instance_uid = ?', [StudyInstanceUID]);
      return counted ? Number(counted.site_id) : undefined;
    }
    if (patientId !== undefined) return (await this.archive.index.patientRecord(patientId, tx))?.siteId;
    return undefined;
  }
}

/** A site's usage in a month: what happened that month, and what is stored at its end. */
export interface SiteUsage {
  site: string;
  month: string;
  examsArchived: number;
  instancesStored: number;
  instancesDeleted: number;
  /** Bytes added less bytes removed during the month. */
  bytesGrowth: number;
  /** Objects and bytes stored at the end of the month. */
  instancesTotal: number;
  bytesTotal: number;
  examsShared: number;
  shareLinksOpened: number;
  teleActs: number;
  secondReadings: number;
  dmpPublications: number;
}

/** The month's counts per site and item: the SQL behind every figure of an invoice (docs/billing.md). */
export const monthlyCountsSql = `SELECT site_id, item, SUM(quantity) AS quantity, SUM(bytes) AS bytes, COUNT(*) AS events
  FROM metering_events WHERE month = ? GROUP BY site_id, item ORDER BY site_id, item`;

/** What is stored at the end of a month per site: every object stored, replaced or removed up to it. */
export const storedAtEndOfMonthSql = `SELECT site_id, SUM(quantity) AS objects, SUM(bytes) AS bytes
  FROM metering_events WHERE month <= ? AND item IN ('instance-stored', 'instance-replaced', 'instance-deleted') GROUP BY site_id`;

function emptyUsage(site: string, month: string): SiteUsage {
  return {
    site, month, examsArchived: 0, instancesStored: 0, instancesDeleted: 0, bytesGrowth: 0, instancesTotal: 0, bytesTotal: 0,
    examsShared: 0, shareLinksOpened: 0, teleActs: 0, secondReadings: 0, dmpPublications: 0,
  };
}

/**
 * Each site's usage in a month (`sites`: the codes to answer for; default every configured
 * site, and any other that has rows).
 */
export async function monthlyUsage(archive: Archive, month: string, sites?: readonly string[]): Promise<SiteUsage[]> {
  const sql = archive.index.sql;
  await migrateMetering(sql);
  const codeOf = (id: number | string) => archive.siteById.get(Number(id))?.code ?? `site ${id}`;
  const bySite = new Map<string, SiteUsage>();
  for (const code of sites ?? [...archive.sites.keys()]) bySite.set(code, emptyUsage(code, month));
  const wanted = (code: string) => sites === undefined || sites.includes(code);
  const usage = (code: string) => {
    let u = bySite.get(code);
    if (!u) bySite.set(code, (u = emptyUsage(code, month)));
    return u;
  };
  const counts = await sql.all<{ site_id: number | string; item: MeteringItem; quantity: number | string; bytes: number | string }>(monthlyCountsSql, [month]);
  for (const c of counts) {
    const code = codeOf(c.site_id);
    if (!wanted(code)) continue;
    const u = usage(code);
    const q = Number(c.quantity);
    switch (c.item) {
      case 'exam-archived': u.examsArchived += q; break;
      case 'instance-stored': u.instancesStored += q; break;
      case 'instance-deleted': u.instancesDeleted += -q; break;
      case 'exam-shared': u.examsShared += q; break;
      case 'share-opened': u.shareLinksOpened += q; break;
      case 'tele-act': u.teleActs += q; break;
      case 'second-reading': u.secondReadings += q; break;
      case 'dmp-publication': u.dmpPublications += q; break;
      default: break;
    }
    if (storageItems.includes(c.item)) u.bytesGrowth += Number(c.bytes);
  }
  const stored = await sql.all<{ site_id: number | string; objects: number | string; bytes: number | string }>(storedAtEndOfMonthSql, [month]);
  for (const s of stored) {
    const code = codeOf(s.site_id);
    if (!wanted(code)) continue;
    const u = usage(code);
    u.instancesTotal = Number(s.objects);
    u.bytesTotal = Number(s.bytes);
  }
  return [...bySite.values()].sort((a, b) => a.site.localeCompare(b.site));
}

/** The months from `from` to `to` (YYYY-MM, both included), at most 36. */
export function monthsBetween(from: string, to: string): string[] {
  const out: string[] = [];
  let [y, m] = from.split('-').map(Number) as [number, number];
  const [ty, tm] = to.split('-').map(Number) as [number, number];
  while ((y < ty || (y === ty && m <= tm)) && out.length < 36) {
    out.push(`${y}-${String(m).padStart(2, '0')}`);
    m++;
    if (m > 12) { m = 1; y++; }
  }
  return out;
}
