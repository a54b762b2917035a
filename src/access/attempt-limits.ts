/**
 * Limits on the attempts an attacker would hammer (logins, share-link PINs), per key (a
 * client address) and per purpose, counted where every node sees them. On PostgreSQL, where
 * several nodes share one index, the counts live in a table of the access module: one row
 * per key per one-minute window, moved by one atomic upsert, so that two nodes behind a load
 * balancer allow `limit` attempts in all, not `limit` each. On SQLite (one node) the
 * in-memory sliding window (rate-limit.ts) does the same without a write per attempt.
 *
 * The shared count is a sliding window approximated from two fixed ones (the previous
 * window's count weighted by how much of it still overlaps the sliding window): exact enough
 * for a limit, one row per key and window, and no row per attempt.
 */
import { applyMigrations, type Migration } from '../index/migrations.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { SlidingWindowRateLimiter, type RateLimitDecision } from './rate-limit.ts';

export type { RateLimitDecision };

/** One purpose's limit: `hit` counts an attempt of `key`, or refuses it without counting it. */
export interface AttemptLimiter {
  readonly limit: number;
  hit(key: string): Promise<RateLimitDecision>;
}

export const attemptLimitsMigrationsTable = 'access_migrations';

export const attemptLimitsMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'attempt limits shared by the nodes: attempts and refusals per key per window',
    // window_start is the window's start in milliseconds since 1970 (BIGINT on PostgreSQL).
    sql: `
CREATE TABLE access_attempts (
  attempt_key {text} NOT NULL,
  window_start BIGINT NOT NULL,
  hits INTEGER NOT NULL,
  refusals INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (attempt_key, window_start)
);
CREATE INDEX access_attempts_window ON access_attempts (window_start);
`,
  },
];

export interface AttemptLimitsOptions {
  /** Clock, for tests. */
  now?: () => number;
  /** Count in the index even on SQLite (tests of the shared count on both engines). */
  shared?: boolean;
}

/** The attempt limiters of one node, built once the access module's table is in place. */
export class AttemptLimits {
  private constructor(private readonly sql: SqlDatabase, private readonly options: AttemptLimitsOptions) {}

  static async open(sql: SqlDatabase, options: AttemptLimitsOptions = {}): Promise<AttemptLimits> {
    await applyMigrations(sql, attemptLimitsMigrations, attemptLimitsMigrationsTable);
    return new AttemptLimits(sql, options);
  }

  /** `limit` attempts per key per `windowMs` for one purpose ('login', 'share-open'). */
  limiter(purpose: string, limit: number, windowMs = 60_000): AttemptLimiter {
    if (this.sql.engine === 'postgres' || this.options.shared) return new SharedAttemptLimiter(this.sql, purpose, limit, windowMs, this.options.now ?? Date.now);
    const local = new SlidingWindowRateLimiter({ limit, windowMs, ...(this.options.now ? { now: this.options.now } : {}) });
    return { limit, hit: async (key) => local.hit(key) };
  }
}

class SharedAttemptLimiter implements AttemptLimiter {
  /** When this node last removed expired windows. */
  private lastPurge = 0;

  constructor(
    private readonly sql: SqlDatabase,
    private readonly purpose: string,
    readonly limit: number,
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError('limit must be a whole number of at least 1');
    if (!(windowMs > 0)) throw new RangeError('windowMs must be positive');
  }

  async hit(key: string): Promise<RateLimitDecision> {
    const now = this.now();
    const windowStart = Math.floor(now / this.windowMs) * this.windowMs;
    const attemptKey = `${this.purpose}:${key}`;
    await this.purge(windowStart);
    const previous = await this.sql.get<{ hits: number }>(
      'SELECT hits FROM access_attempts WHERE attempt_key = ? AND window_start = ?', [attemptKey, windowStart - this.windowMs]);
    // The part of the previous window still inside the sliding window counts in proportion.
    const overlap = 1 - (now - windowStart) / this.windowMs;
    const room = Math.floor(this.limit - Number(previous?.hits ?? 0) * overlap + 1e-9);
    if (room > 0) {
      // Counted only while there is room: the WHERE of the update makes check and count one step.
      const counted = await this.sql.get<{ hits: number }>(
        `INSERT INTO access_attempts (attempt_key, window_start, hits, refusals) VALUES (?, ?, 1, 0)
         ON CONFLICT (attempt_key, window_start) DO UPDATE SET hits = access_attempts.hits + 1
         WHERE access_attempts.hits < ?
         RETURNING hits`,
        [attemptKey, windowStart, room]);
      if (counted) return { allowed: true, retryAfterSeconds: 0 };
    }
    // Refused, and not counted (hammering does not lengthen the wait); the first refusal of the window is told apart for the audit trail.
    const refused = await this.sql.get<{ refusals: number }>(
      `INSERT INTO access_attempts (attempt_key, window_start, hits, refusals) VALUES (?, ?, 0, 1)
       ON CONFLICT (attempt_key, window_start) DO UPDATE SET refusals = access_attempts.refusals + 1
       RETURNING refusals`,
      [attemptKey, windowStart]);
    return {
      allowed: false,
      retryAfterSeconds: Math.max(1, Math.ceil((windowStart + this.windowMs - now) / 1000)),
      firstRefusal: Number(refused?.refusals ?? 1) === 1,
    };
  }

  /** Windows older than the previous one count no more: removed, at most once a window per node. */
  private async purge(windowStart: number): Promise<void> {
    if (this.lastPurge === windowStart) return;
    this.lastPurge = windowStart;
    // Per purpose: another purpose may count over a longer window.
    await this.sql.run('DELETE FROM access_attempts WHERE attempt_key >= ? AND attempt_key < ? AND window_start < ?',
      [`${this.purpose}:`, `${this.purpose};`, windowStart - this.windowMs]);
  }
}
