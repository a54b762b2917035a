import { randomBytes } from 'node:crypto';
import type { SqlDatabase } from './sql.ts';

/**
 * The forwarding queue: one row per (instance, destination peer), in the index, so that
 * what is to be sent survives a restart and several nodes share the sending (PostgreSQL
 * rows are claimed with FOR UPDATE SKIP LOCKED; SQLite has one node).
 * States: pending (due at next_attempt_at), in-progress (claimed by a sender), done, failed
 * (max attempts reached; stays until requeued).
 */
export type ForwardState = 'pending' | 'in-progress' | 'done' | 'failed';

export interface ForwardItem {
  SOPInstanceUID: string;
  StudyInstanceUID: string;
  /** AE title of the destination peer. */
  destination: string;
  /** Why it is queued: the rule's name, or "prefetch". */
  reason: string;
}

export interface ClaimedRow {
  id: number;
  SOPInstanceUID: string;
  attempts: number;
}

export interface Claim {
  claimId: string;
  destination: string;
  rows: ClaimedRow[];
}

export interface RetryPolicy {
  baseDelayMs: number;
  maxDelayMs: number;
  maxAttempts: number;
}

/** Per destination: rows by state, the oldest waiting, the last error seen. */
export interface DestinationStatus {
  destination: string;
  pending: number;
  inProgress: number;
  done: number;
  failed: number;
  /** Pending rows that have failed at least once and wait for their next attempt. */
  retrying: number;
  /** When the oldest pending row was queued. */
  oldestPendingSince?: string;
  /** The earliest next attempt of a pending row. */
  nextAttemptAt?: string;
  lastDoneAt?: string;
  lastError?: { message: string; at: string; attempts: number; state: ForwardState };
}

/** Delay before attempt `attempts + 1`, the first retry waiting baseDelayMs. */
export function retryDelayMs(policy: RetryPolicy, attempts: number): number {
  const exp = Math.min(Math.max(attempts - 1, 0), 40);
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** exp);
}

const insertChunk = 100;

function placeholders(n: number, per = 1): string {
  const one = per === 1 ? '?' : `(${Array.from({ length: per }, () => '?').join(', ')})`;
  return Array.from({ length: n }, () => one).join(', ');
}

export class ForwardingQueue {
  constructor(private readonly sql: SqlDatabase) {}

  /**
   * Queues objects for destinations. A row already present (sent, failed or waiting) is
   * made pending again and due now: the object is sent again (a replaced object, a new prefetch).
   */
  enqueue(items: readonly ForwardItem[]): Promise<number> {
    return this.sql.transaction((tx) => this.enqueueIn(tx, items));
  }

  /** Queues items inside the caller's transaction (routing queues what a batch of events asked for, with its position). */
  async enqueueIn(tx: SqlDatabase, items: readonly ForwardItem[]): Promise<number> {
    const now = new Date().toISOString();
    // One statement may not touch the same row twice (ON CONFLICT DO UPDATE).
    const unique = [...new Map(items.map((i) => [`${i.SOPInstanceUID}|${i.destination}`, i])).values()];
    for (let i = 0; i < unique.length; i += insertChunk) {
      const chunk = unique.slice(i, i + insertChunk);
      await tx.run(
        `INSERT INTO forward_queue (sop_instance_uid, study_instance_uid, destination, reason, state, attempts, next_attempt_at, created_at, updated_at)
         VALUES ${placeholders(chunk.length, 9)}
         ON CONFLICT (sop_instance_uid, destination) DO UPDATE SET
           study_instance_uid = excluded.study_instance_uid, reason = excluded.reason, state = 'pending', attempts = 0,
           next_attempt_at = excluded.next_attempt_at, last_error = NULL, claim_id = NULL, claimed_at = NULL,
           updated_at = excluded.updated_at, done_at = NULL`,
        chunk.flatMap((it) => [it.SOPInstanceUID, it.StudyInstanceUID, it.destination, it.reason, 'pending', 0, now, now, now]),
      );
    }
    return unique.length;
  }

  /** The Modality of each series, for matching routing rules (events do not carry it). */
  async seriesModalities(seriesInstanceUIDs: readonly string[], db: SqlDatabase = this.sql): Promise<Map<string, string | undefined>> {
    const out = new Map<string, string | undefined>();
    for (let i = 0; i < seriesInstanceUIDs.length; i += 500) {
      const chunk = seriesInstanceUIDs.slice(i, i + 500);
      const rows = await db.all<{ series_instance_uid: string; modality: string | null }>(
        `SELECT series_instance_uid, modality FROM series WHERE series_instance_uid IN (${placeholders(chunk.length)})`,
        chunk,
      );
      for (const r of rows) out.set(r.series_instance_uid, r.modality ?? undefined);
    }
    return out;
  }

  /** Whether a destination has a row due now (an index seek, cheap to ask at every poll). */
  async hasDue(destination: string): Promise<boolean> {
    const row = await this.sql.get(
      `SELECT id FROM forward_queue WHERE destination = ? AND state = 'pending' AND next_attempt_at <= ? LIMIT 1`,
      [destination, new Date().toISOString()],
    );
    return row !== undefined;
  }

  /** Claims up to `limit` due rows of a destination, earliest due first. */
  claimDue(destination: string, limit: number): Promise<Claim> {
    return this.sql.transaction(async (tx) => {
      const now = new Date().toISOString();
      const lock = tx.engine === 'postgres' ? ' FOR UPDATE SKIP LOCKED' : '';
      const rows = await tx.all<{ id: number; sop_instance_uid: string; attempts: number }>(
        `SELECT id, sop_instance_uid, attempts FROM forward_queue
          WHERE destination = ? AND state = 'pending' AND next_attempt_at <= ?
          ORDER BY next_attempt_at, id LIMIT ?${lock}`,
        [destination, now, Math.max(1, Math.trunc(limit))],
      );
      const claimId = randomBytes(8).toString('hex');
      if (rows.length > 0) {
        await tx.run(
          `UPDATE forward_queue SET state = 'in-progress', claim_id = ?, claimed_at = ?, updated_at = ? WHERE id IN (${placeholders(rows.length)})`,
          [claimId, now, now, ...rows.map((r) => r.id)],
        );
      }
      return {
        claimId,
        destination,
        rows: rows.map((r) => ({ id: Number(r.id), SOPInstanceUID: r.sop_instance_uid, attempts: Number(r.attempts) })),
      };
    });
  }

  /**
   * Rows claimed longer ago than `olderThanMs` whose sender died (a node crashed mid-send)
   * are made pending again. Returns how many.
   */
  async reclaimStale(olderThanMs: number): Promise<number> {
    const now = new Date();
    const stale = new Date(now.getTime() - olderThanMs).toISOString();
    const r = await this.sql.run(
      `UPDATE forward_queue SET state = 'pending', claim_id = NULL, claimed_at = NULL, next_attempt_at = ?, updated_at = ?
        WHERE state = 'in-progress' AND claimed_at < ?`,
      [now.toISOString(), now.toISOString(), stale],
    );
    return r.changes;
  }

  /** A live sender still holds these claims: their rows are not stale (see reclaimStale). */
  async renewClaims(claimIds: readonly string[]): Promise<void> {
    if (claimIds.length === 0) return;
    const now = new Date().toISOString();
    await this.sql.run(
      `UPDATE forward_queue SET claimed_at = ? WHERE state = 'in-progress' AND claim_id IN (${placeholders(claimIds.length)})`,
      [now, ...claimIds],
    );
  }

  /** The peer took these objects. Rows requeued since the claim are left pending. */
  async markDone(claimId: string, ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    const now = new Date().toISOString();
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      await this.sql.run(
        `UPDATE forward_queue SET state = 'done', done_at = ?, updated_at = ?, last_error = NULL, claim_id = NULL, claimed_at = NULL
          WHERE claim_id = ? AND id IN (${placeholders(chunk.length)})`,
        [now, now, claimId, ...chunk],
      );
    }
  }

  /**
   * An attempt failed: the row waits for its next attempt (exponential back-off), or is
   * marked failed once it has had maxAttempts.
   */
  async markAttemptFailed(claimId: string, rows: ReadonlyArray<{ row: ClaimedRow; error: string }>, policy: RetryPolicy): Promise<void> {
    if (rows.length === 0) return;
    await this.sql.transaction(async (tx) => {
      const now = Date.now();
      const iso = new Date(now).toISOString();
      for (const { row, error } of rows) {
        const attempts = row.attempts + 1;
        const failed = attempts >= policy.maxAttempts;
        await tx.run(
          `UPDATE forward_queue SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, claim_id = NULL, claimed_at = NULL, updated_at = ?
            WHERE id = ? AND claim_id = ?`,
          [failed ? 'failed' : 'pending', attempts, new Date(now + (failed ? 0 : retryDelayMs(policy, attempts))).toISOString(),
            error.slice(0, 1000), iso, row.id, claimId],
        );
      }
    });
  }

  /** Gives claimed rows back untouched (shutdown before they were tried). */
  async release(claimId: string, ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    const now = new Date().toISOString();
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      await this.sql.run(
        `UPDATE forward_queue SET state = 'pending', claim_id = NULL, claimed_at = NULL, updated_at = ?
          WHERE claim_id = ? AND id IN (${placeholders(chunk.length)})`,
        [now, claimId, ...chunk],
      );
    }
  }

  /** Failed rows (of one destination, or all) become pending again, with their attempts reset. */
  async requeueFailed(destination?: string): Promise<number> {
    const now = new Date().toISOString();
    const r = await this.sql.run(
      `UPDATE forward_queue SET state = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?
        WHERE state = 'failed'${destination === undefined ? '' : ' AND destination = ?'}`,
      destination === undefined ? [now, now] : [now, now, destination],
    );
    return r.changes;
  }

  /** How many rows each destination has in each state but done (metrics). */
  async countsByState(): Promise<Array<{ destination: string; state: ForwardState; count: number }>> {
    const rows = await this.sql.all<{ destination: string; state: ForwardState; n: number | string }>(
      `SELECT destination, state, COUNT(*) AS n FROM forward_queue WHERE state <> 'done' GROUP BY destination, state`);
    return rows.map((r) => ({ destination: r.destination, state: r.state, count: Number(r.n) }));
  }

  /** When the oldest row still to send (pending or in progress) of each destination was queued (metrics). */
  async oldestWaiting(): Promise<Array<{ destination: string; at: string | null }>> {
    return this.sql.all<{ destination: string; at: string | null }>(
      `SELECT destination, MIN(created_at) AS at FROM forward_queue WHERE state IN ('pending', 'in-progress') GROUP BY destination`);
  }

  async status(): Promise<DestinationStatus[]> {
    const groups = await this.sql.all<{
      destination: string; state: ForwardState; n: number; oldest: string | null; next_at: string | null; last_done: string | null; retrying: number;
    }>(
      `SELECT destination, state, COUNT(*) AS n, MIN(created_at) AS oldest, MIN(next_attempt_at) AS next_at, MAX(done_at) AS last_done,
              SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END) AS retrying
         FROM forward_queue GROUP BY destination, state ORDER BY destination`,
    );
    const byDestination = new Map<string, DestinationStatus>();
    for (const g of groups) {
      let s = byDestination.get(g.destination);
      if (!s) {
        s = { destination: g.destination, pending: 0, inProgress: 0, done: 0, failed: 0, retrying: 0 };
        byDestination.set(g.destination, s);
      }
      const n = Number(g.n);
      if (g.state === 'pending') {
        s.pending = n;
        s.retrying = Number(g.retrying);
        s.oldestPendingSince = g.oldest ?? undefined;
        s.nextAttemptAt = g.next_at ?? undefined;
      } else if (g.state === 'in-progress') s.inProgress = n;
      else if (g.state === 'done') {
        s.done = n;
        s.lastDoneAt = g.last_done ?? undefined;
      } else if (g.state === 'failed') s.failed = n;
    }
    for (const s of byDestination.values()) {
      if (s.pending + s.failed + s.inProgress === 0) continue;
      const e = await this.sql.get<{ last_error: string; updated_at: string; attempts: number; state: ForwardState }>(
        `SELECT last_error, updated_at, attempts, state FROM forward_queue
          WHERE destination = ? AND state IN ('pending', 'failed') AND last_error IS NOT NULL
          ORDER BY updated_at DESC LIMIT 1`,
        [s.destination],
      );
      if (e) s.lastError = { message: e.last_error, at: e.updated_at, attempts: Number(e.attempts), state: e.state };
    }
    return [...byDestination.values()];
  }
}
