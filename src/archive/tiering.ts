/**
 * Storage tiers (storage.cold, storage.tiering): studies nobody read for a while move from
 * the hot tier to the cold one, in the background; a read of a cold study is served from
 * cold (src/storage/tiered-store.ts reads hot, then cold) and, with onRead: recall, brings
 * the study back to hot.
 *
 * Each object goes through steps that leave it whole somewhere after a crash at any point:
 *   move:   copy to cold -> read the cold copy back, SHA-256 = the index's -> row (cold,
 *           hot copy still there) -> delete the hot copy -> row (cold)
 *   recall: copy to hot -> read back, hash checked -> row (hot, cold copy still there) ->
 *           delete the cold copy -> no row
 * So an object without a row (or with a 'hot' row) is whole in the hot tier, one with a
 * 'cold' row is whole in the cold tier, and a row marked other_copy names a copy the next
 * run removes. Every step on a study is taken under a lease on the study (one node at a
 * time), renewed before each removal.
 *
 * This module owns storage_tiers (the tier of each object moved) and storage_study_reads
 * (the last read of each study, and the lease). It reads studies, series and instances to
 * choose the studies to move (as the lifecycle does).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ArchiveIndex } from '../index/archive-index.ts';
import { applyMigrations, type Migration } from '../index/migrations.ts';
import type { SqlDatabase } from '../index/sql.ts';
import type { StorageTieringConfig } from '../config/tiering-config.ts';
import { BlobNotFoundError, type BlobStore } from '../storage/blob-store.ts';
import type { TieredBlobStore } from '../storage/tiered-store.ts';

export const tieringMigrationsTable = 'storage_tier_migrations';

export const tieringMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'the tier of each object moved, the last read of each study',
    sql: `
CREATE TABLE storage_tiers (
  blob_key {text} PRIMARY KEY,
  study_instance_uid {text} NOT NULL,
  tier {text} NOT NULL,
  other_copy INTEGER NOT NULL,
  size BIGINT NOT NULL,
  sha256 {text} NOT NULL,
  moved_at {text} NOT NULL
);
CREATE INDEX storage_tiers_study ON storage_tiers (study_instance_uid);
CREATE INDEX storage_tiers_other_copy ON storage_tiers (other_copy);
CREATE TABLE storage_study_reads (
  study_instance_uid {text} PRIMARY KEY,
  last_read_at {text},
  claimed_by {text},
  claimed_until {text}
);
`,
  },
];

const migrated = new WeakMap<SqlDatabase, Promise<unknown>>();

/** Creates this module's tables once per database handle. */
export async function migrateTiering(sql: SqlDatabase): Promise<void> {
  let done = migrated.get(sql);
  if (!done) {
    done = applyMigrations(sql, tieringMigrations, tieringMigrationsTable);
    migrated.set(sql, done);
    done.catch(() => migrated.delete(sql));
  }
  await done;
}

export interface TieringReport {
  /** Objects now in the cold tier, and their studies. */
  moved: number;
  studiesMoved: number;
  /** Objects brought back to hot. */
  recalled: number;
  /** Copies left by an interrupted move or recall, removed now. */
  finished: number;
  /** Objects left where they were (a copy that did not read back the same, a missing file...). */
  failed: number;
}

/** Points between the steps of a move, for tests that stop a move there (a crash). */
export interface TieringFaults {
  afterColdCopy?(key: string): void | Promise<void>;
  beforeHotDelete?(key: string): void | Promise<void>;
  beforeColdDelete?(key: string): void | Promise<void>;
}

interface TierRow {
  blob_key: string;
  study_instance_uid: string;
  tier: 'hot' | 'cold';
  other_copy: number | string;
  size: number | string;
  sha256: string;
}

const leaseMs = 15 * 60_000;

class LeaseLostError extends Error {
  constructor(study: string) {
    super(`lease on study ${study} lost`);
    this.name = 'LeaseLostError';
  }
}
const maxPendingReads = 50_000;

async function sha256Of(store: BlobStore, key: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of await store.get(key)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

function dicomDate(d: Date): string {
  return d.toISOString().slice(0, 10).replace(/-/g, '');
}

export class StorageTiering {
  /** The time the access rule sees (tests move it forward); leases use the real clock. */
  clock: () => Date = () => new Date();
  faults: TieringFaults = {};
  private readonly node = randomUUID();
  /** Keys read since the last flush: when, and whether from the cold tier. */
  private readonly reads = new Map<string, { at: string; cold: boolean }>();
  private running: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private lastMove = 0;
  private stopped = false;
  /** A background run is waiting for the one before it. */
  private queued = false;
  /** A read from cold asked for a recall (onRead: recall) since the reads were last written. */
  private recallWanted = false;

  constructor(
    private readonly index: ArchiveIndex,
    readonly store: TieredBlobStore,
    readonly config: StorageTieringConfig,
    private readonly logger: Logger,
  ) {
    store.hooks = {
      onRead: (key, tier) => this.noteRead(key, tier),
      onDeleted: async (key) => {
        // The object is gone from both tiers: so is its tier (a row left would be removed by the next run).
        await this.index.sql.run('DELETE FROM storage_tiers WHERE blob_key = ?', [key]).catch((e: unknown) => this.logger.warn({ err: (e as Error).message, key }, 'storage tiers: the row of a deleted object was not removed'));
      },
    };
  }

  private get sql(): SqlDatabase {
    return this.index.sql;
  }

  private noteRead(key: string, tier: 'hot' | 'cold'): void {
    // Without the background loop (a command: export, reindex), reads beyond the bound are not kept.
    if (!this.timer && this.reads.size >= maxPendingReads && !this.reads.has(key)) return;
    const at = this.clock().toISOString();
    const cold = tier === 'cold' || this.reads.get(key)?.cold === true;
    this.reads.set(key, { at, cold });
    // A cold read brings the study back soon (recall); a long list of reads is written soon.
    if (cold && this.config.onRead === 'recall') this.recallWanted = true;
    if ((cold && this.config.onRead === 'recall') || this.reads.size >= maxPendingReads) this.soon();
  }

  /** Runs the work of the background loop now (a cold read asked for a recall). */
  private soon(): void {
    // One run waiting at most: the reads noted until it starts are all in it.
    if (!this.timer || this.stopped || this.queued) return;
    this.timer.refresh();
    void this.tick();
  }

  /** The background mover: reads and recalls every few seconds, moves every storage.tiering.everyMinutes. */
  start(pollMs = 5000): void {
    this.stopped = false;
    this.timer = setInterval(() => void this.tick(), pollMs);
    this.timer.unref();
  }

  private tick(): Promise<unknown> {
    if (this.queued) return this.running;
    this.queued = true;
    this.running = this.running.then(async () => {
      this.queued = false;
      if (this.stopped) return;
      try {
        if (Date.now() - this.lastMove >= this.config.everyMinutes * 60_000) {
          this.lastMove = Date.now();
          const r = await this.runOnce(this.clock(), true, true);
          if (r.moved || r.recalled || r.finished || r.failed) this.logger.info(r, 'storage tiers: run done');
        } else {
          await this.runOnce(this.clock(), false, true);
        }
      } catch (e) {
        this.logger.error({ err: e }, 'storage tiers: run failed');
      }
    });
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    await this.flushReads().catch((e: unknown) => this.logger.warn({ err: (e as Error).message }, 'storage tiers: reads not recorded'));
  }

  /**
   * One whole run as of `now` (tests and a fast-forwarded clock give it): the reads noted
   * written, unfinished moves and recalls finished, studies read from cold recalled (onRead:
   * recall), then every study idle since `now` minus moveAfterDaysWithoutRead moved.
   */
  runTiering(now: Date = this.clock()): Promise<TieringReport> {
    const run = this.running.then(() => this.runOnce(now, true, false));
    this.running = run.catch(() => {});
    return run;
  }

  /** background: a run of the loop, which stop() interrupts between objects (runTiering's are not). */
  private async runOnce(now: Date, move: boolean, background: boolean): Promise<TieringReport> {
    const halted = () => background && this.stopped;
    await migrateTiering(this.sql);
    const report: TieringReport = { moved: 0, studiesMoved: 0, recalled: 0, finished: 0, failed: 0 };
    const toRecall = await this.flushReads();
    for (const study of await this.unfinishedStudies()) await this.underLease(study, () => this.finishStudy(study, report));
    for (const study of toRecall) await this.underLease(study, () => this.recallStudy(study, report));
    if (!move) return report;
    await this.pruneRows(report);
    for await (const study of this.idleStudies(now)) {
      if (halted()) break;
      // A study read from cold meanwhile is not kept waiting for the end of a long run of moves.
      if (this.recallWanted) {
        this.recallWanted = false;
        for (const s of await this.flushReads()) await this.underLease(s, () => this.recallStudy(s, report));
      }
      const before = report.moved;
      await this.underLease(study, () => this.moveStudy(study, report, halted));
      if (report.moved > before) report.studiesMoved++;
    }
    return report;
  }

  /** Writes the reads noted (the latest per study); the studies read from cold, to recall. */
  private async flushReads(): Promise<string[]> {
    if (this.reads.size === 0) return [];
    await migrateTiering(this.sql);
    const reads = [...this.reads];
    this.reads.clear();
    this.recallWanted = false;
    try {
      return await this.writeReads(reads);
    } catch (e) {
      // Kept for the next run (a read noted since is newer and stays).
      for (const [key, r] of reads) if (!this.reads.has(key)) this.reads.set(key, r);
      throw e;
    }
  }

  private async writeReads(reads: Array<[string, { at: string; cold: boolean }]>): Promise<string[]> {
    const byStudy = new Map<string, { at: string; cold: boolean }>();
    for (let i = 0; i < reads.length; i += 500) {
      const chunk = reads.slice(i, i + 500);
      const rows = await this.sql.all<{ blob_key: string; uid: string }>(
        `SELECT i.blob_key, st.study_instance_uid AS uid FROM instances i JOIN series se ON se.id = i.series_id JOIN studies st ON st.id = se.study_id
          WHERE i.blob_key IN (${chunk.map(() => '?').join(', ')})`, chunk.map(([k]) => k));
      const read = new Map(chunk);
      for (const r of rows) {
        const n = read.get(r.blob_key)!;
        const had = byStudy.get(r.uid);
        byStudy.set(r.uid, { at: had && had.at > n.at ? had.at : n.at, cold: (had?.cold ?? false) || n.cold });
      }
    }
    for (const [uid, r] of byStudy) {
      await this.sql.run(
        `INSERT INTO storage_study_reads (study_instance_uid, last_read_at) VALUES (?, ?)
         ON CONFLICT (study_instance_uid) DO UPDATE SET last_read_at = excluded.last_read_at
          WHERE storage_study_reads.last_read_at IS NULL OR storage_study_reads.last_read_at < excluded.last_read_at`, [uid, r.at]);
    }
    return this.config.onRead === 'recall' ? [...byStudy].filter(([, r]) => r.cold).map(([uid]) => uid) : [];
  }

  private async unfinishedStudies(): Promise<string[]> {
    const rows = await this.sql.all<{ uid: string }>('SELECT DISTINCT study_instance_uid AS uid FROM storage_tiers WHERE other_copy = 1');
    return rows.map((r) => r.uid);
  }

  /** Studies with an object in the hot tier, unchanged and unread since the rule's day (and old enough). */
  private async *idleStudies(now: Date): AsyncGenerator<string> {
    const cutoff = new Date(now.getTime() - this.config.moveAfterDaysWithoutRead * 86_400_000).toISOString();
    const ageClause = this.config.minAgeDays !== undefined
      ? ` AND (CASE WHEN st.study_date IS NULL OR st.study_date = '' THEN substr(replace(st.created_at, '-', ''), 1, 8) ELSE st.study_date END) <= ?` : '';
    const params: unknown[] = [cutoff, cutoff];
    if (this.config.minAgeDays !== undefined) params.push(dicomDate(new Date(now.getTime() - this.config.minAgeDays * 86_400_000)));
    let after = 0;
    for (;;) {
      const rows = await this.sql.all<{ id: number | string; uid: string }>(
        `SELECT st.id, st.study_instance_uid AS uid FROM studies st LEFT JOIN storage_study_reads r ON r.study_instance_uid = st.study_instance_uid
          WHERE st.updated_at < ? AND (r.last_read_at IS NULL OR r.last_read_at < ?)${ageClause}
            AND EXISTS (SELECT 1 FROM series se JOIN instances i ON i.series_id = se.id LEFT JOIN storage_tiers t ON t.blob_key = i.blob_key
                         WHERE se.study_id = st.id AND (t.blob_key IS NULL OR t.tier = 'hot'))
            AND st.id > ? ORDER BY st.id LIMIT 200`, [...params, after]);
      for (const r of rows) yield r.uid;
      if (rows.length < 200) return;
      after = Number(rows[rows.length - 1]!.id);
    }
  }

  /** Takes the study's lease (no other node works on it meanwhile), runs fn, gives it back. */
  private async underLease(study: string, fn: () => Promise<void>): Promise<void> {
    if (!(await this.claim(study))) return;
    try {
      await fn();
    } catch (e) {
      this.logger.warn({ study, err: (e as Error).message }, 'storage tiers: study left as it is for now');
    } finally {
      await this.sql.run('UPDATE storage_study_reads SET claimed_by = NULL, claimed_until = NULL WHERE study_instance_uid = ? AND claimed_by = ?', [study, this.node]).catch(() => {});
    }
  }

  private async claim(study: string): Promise<boolean> {
    await this.sql.run('INSERT INTO storage_study_reads (study_instance_uid) VALUES (?) ON CONFLICT (study_instance_uid) DO NOTHING', [study]);
    const now = Date.now();
    const { changes } = await this.sql.run(
      'UPDATE storage_study_reads SET claimed_by = ?, claimed_until = ? WHERE study_instance_uid = ? AND (claimed_by IS NULL OR claimed_by = ? OR claimed_until < ?)',
      [this.node, new Date(now + leaseMs).toISOString(), study, this.node, new Date(now).toISOString()]);
    return changes === 1;
  }

  /** Renewed before each removal: a node that lost its lease (stalled past it) removes nothing. */
  private async stillOurs(study: string): Promise<boolean> {
    const now = Date.now();
    const { changes } = await this.sql.run(
      'UPDATE storage_study_reads SET claimed_until = ? WHERE study_instance_uid = ? AND claimed_by = ? AND claimed_until >= ?',
      [new Date(now + leaseMs).toISOString(), study, this.node, new Date(now).toISOString()]);
    if (changes !== 1) throw new LeaseLostError(study);
    return true;
  }

  private async rowsOf(study: string): Promise<Map<string, TierRow>> {
    const rows = await this.sql.all<TierRow>('SELECT blob_key, study_instance_uid, tier, other_copy, size, sha256 FROM storage_tiers WHERE study_instance_uid = ?', [study]);
    return new Map(rows.map((r) => [r.blob_key, r]));
  }

  /** Copies `key` from one tier to the other and reads it back: true when the copy holds the expected bytes. */
  private async copyVerified(from: BlobStore, to: BlobStore, key: string, expected: { sha256: string; size: number }): Promise<boolean> {
    const written = await to.put(key, await from.get(key));
    if (written.sha256 !== expected.sha256 || written.size !== expected.size) {
      // The source itself does not hold what the index says: `atrium verify` reports it; nothing moves.
      this.logger.warn({ key, expected: expected.sha256, read: written.sha256 }, 'storage tiers: the object read differs from the index; not moved');
      return false;
    }
    const back = await sha256Of(to, key);
    if (back.sha256 !== expected.sha256 || back.size !== expected.size) {
      this.logger.warn({ key, expected: expected.sha256, readBack: back.sha256 }, 'storage tiers: the copy read back differs; the original is kept');
      return false;
    }
    return true;
  }

  private async moveStudy(study: string, report: TieringReport, halted: () => boolean): Promise<void> {
    const { hot, cold } = this.store;
    const rows = await this.rowsOf(study);
    for (const inst of await this.index.getStoredInstances({ StudyInstanceUID: study })) {
      if (halted()) return;
      const key = inst.blobKey;
      if (rows.has(key)) continue;
      try {
        // A whole cold copy already there (a move interrupted before its record, an index rebuilt
        // by `atrium reindex`) is taken as it is: never overwritten by a hot copy perhaps damaged.
        const there = (await cold.stat(key)) ? await sha256Of(cold, key) : undefined;
        if (!there || there.sha256 !== inst.sha256 || there.size !== inst.size) {
          if (!(await this.copyVerified(hot, cold, key, inst))) {
            await cold.delete(key);
            report.failed++;
            continue;
          }
        }
        await this.faults.afterColdCopy?.(key);
        // Replaced or deleted meanwhile (compression at rest, a correction, a deletion): its cold copy goes.
        if (!(await this.index.isBlobKeyReferenced(key))) {
          await cold.delete(key);
          continue;
        }
        await this.sql.run(
          `INSERT INTO storage_tiers (blob_key, study_instance_uid, tier, other_copy, size, sha256, moved_at) VALUES (?, ?, 'cold', 1, ?, ?, ?)
           ON CONFLICT (blob_key) DO UPDATE SET tier = 'cold', other_copy = 1, moved_at = excluded.moved_at`,
          [key, study, inst.size, inst.sha256, new Date().toISOString()]);
        await this.stillOurs(study);
        await this.faults.beforeHotDelete?.(key);
        await hot.delete(key);
        await this.sql.run(`UPDATE storage_tiers SET other_copy = 0 WHERE blob_key = ? AND tier = 'cold'`, [key]);
        report.moved++;
      } catch (e) {
        if (e instanceof LeaseLostError) throw e;
        // Left where it is whole (not in the hot tier: `atrium verify` reports it); the next run tries again.
        report.failed++;
        if (!(e instanceof BlobNotFoundError)) this.logger.warn({ key, err: (e as Error).message }, 'storage tiers: object not moved');
      }
    }
  }

  private async recallStudy(study: string, report: TieringReport): Promise<void> {
    const { hot, cold } = this.store;
    for (const row of (await this.rowsOf(study)).values()) {
      if (row.tier !== 'cold') continue;
      const key = row.blob_key;
      try {
        if (!(await this.copyVerified(cold, hot, key, { sha256: row.sha256, size: Number(row.size) }))) {
          // Reads look in hot first: a copy that did not read back right must not stay there.
          await hot.delete(key);
          report.failed++;
          continue;
        }
        await this.sql.run(`UPDATE storage_tiers SET tier = 'hot', other_copy = 1 WHERE blob_key = ?`, [key]);
        await this.stillOurs(study);
        await this.faults.beforeColdDelete?.(key);
        await cold.delete(key);
        await this.sql.run('DELETE FROM storage_tiers WHERE blob_key = ?', [key]);
        report.recalled++;
      } catch (e) {
        if (e instanceof LeaseLostError) throw e;
        // Left where it is whole; the next read from cold asks again.
        report.failed++;
        this.logger.warn({ key, err: (e as Error).message }, 'storage tiers: object not recalled');
      }
    }
  }

  /**
   * Rows of objects no index row refers to any more (a deletion that raced with a move between
   * its reference check and its record): whatever copy is left goes, and the row.
   */
  private async pruneRows(report: TieringReport): Promise<void> {
    const rows = await this.sql.all<{ blob_key: string }>(
      `SELECT t.blob_key FROM storage_tiers t WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.blob_key = t.blob_key)
          AND NOT EXISTS (SELECT 1 FROM instance_history h WHERE h.blob_key = t.blob_key) LIMIT 500`);
    for (const { blob_key: key } of rows) {
      if (await this.index.isBlobKeyReferenced(key)) continue;
      await this.store.delete(key);
      report.finished++;
    }
  }

  /** Removes the copies an interrupted move or recall left (the row says which tier holds the verified one). */
  private async finishStudy(study: string, report: TieringReport): Promise<void> {
    const { hot, cold } = this.store;
    for (const row of (await this.rowsOf(study)).values()) {
      if (Number(row.other_copy) !== 1) continue;
      const key = row.blob_key;
      if (!(await this.index.isBlobKeyReferenced(key))) {
        // Deleted meanwhile: nothing of it stays.
        await this.stillOurs(study);
        await Promise.all([hot.delete(key), cold.delete(key)]);
        await this.sql.run('DELETE FROM storage_tiers WHERE blob_key = ?', [key]);
        report.finished++;
        continue;
      }
      await this.stillOurs(study);
      if (row.tier === 'cold') {
        await hot.delete(key);
        await this.sql.run(`UPDATE storage_tiers SET other_copy = 0 WHERE blob_key = ? AND tier = 'cold'`, [key]);
      } else {
        await cold.delete(key);
        await this.sql.run(`DELETE FROM storage_tiers WHERE blob_key = ? AND tier = 'hot'`, [key]);
      }
      report.finished++;
    }
  }

  /**
   * Records the tier an object was found whole in, when the index said the other (`atrium
   * verify --repair` after an index rebuilt by `atrium reindex`): under the study's lease, only
   * if that tier still holds it at its indexed size. False when nothing was recorded.
   */
  async recordFound(key: string, tier: 'hot' | 'cold'): Promise<boolean> {
    await migrateTiering(this.sql);
    const inst = await this.sql.get<{ uid: string; size: number | string; sha256: string }>(
      `SELECT st.study_instance_uid AS uid, i.size, i.sha256 FROM instances i JOIN series se ON se.id = i.series_id JOIN studies st ON st.id = se.study_id WHERE i.blob_key = ?`, [key]);
    if (!inst) return false;
    let recorded = false;
    await this.underLease(inst.uid, async () => {
      const stat = await (tier === 'cold' ? this.store.cold : this.store.hot).stat(key);
      if (stat?.size !== Number(inst.size)) return;
      if (tier === 'cold') {
        await this.sql.run(
          `INSERT INTO storage_tiers (blob_key, study_instance_uid, tier, other_copy, size, sha256, moved_at) VALUES (?, ?, 'cold', 0, ?, ?, ?)
           ON CONFLICT (blob_key) DO UPDATE SET tier = 'cold', other_copy = 0`, [key, inst.uid, Number(inst.size), inst.sha256, new Date().toISOString()]);
      } else {
        await this.sql.run('DELETE FROM storage_tiers WHERE blob_key = ?', [key]);
      }
      recorded = true;
    });
    return recorded;
  }

  /** The tier of one object, as the index has it now (no row: hot). */
  async tierOf(key: string): Promise<{ tier: 'hot' | 'cold'; otherCopy: boolean }> {
    await migrateTiering(this.sql);
    const row = await this.sql.get<TierRow>('SELECT tier, other_copy FROM storage_tiers WHERE blob_key = ?', [key]);
    return { tier: row?.tier ?? 'hot', otherCopy: Number(row?.other_copy ?? 0) === 1 };
  }

  /** Objects by tier (hot: every current object not in the cold tier), for /metrics. */
  async counts(): Promise<{ hot: number; cold: number }> {
    await migrateTiering(this.sql);
    // Only current objects (a row a deletion raced with is not counted until the next run removes it).
    const row = await this.sql.get<{ n: number | string }>(`SELECT COUNT(*) AS n FROM storage_tiers t JOIN instances i ON i.blob_key = t.blob_key WHERE t.tier = 'cold'`);
    const cold = Number(row?.n ?? 0);
    return { hot: Math.max(0, (await this.index.countInstances()) - cold), cold };
  }

  /** The tier of a study's objects (tests, tools): how many in each. */
  async studyTiers(study: string): Promise<{ hot: number; cold: number }> {
    await migrateTiering(this.sql);
    const rows = await this.rowsOf(study);
    const all = await this.index.getStoredInstances({ StudyInstanceUID: study });
    const cold = all.filter((i) => rows.get(i.blobKey)?.tier === 'cold').length;
    return { hot: all.length - cold, cold };
  }
}
