/**
 * The outbox: the one module that owns the `outbox` and `outbox_cursors` tables. A writer
 * appends an event inside the transaction that makes the change it announces; each consumer
 * (routing, identities, order matching, teleradiology arrival...) reads every event once,
 * in order, at its own position, and applies a batch in one transaction that also moves its
 * position. So an event is applied once in effect, whatever crashes.
 *
 * Correct with several nodes on PostgreSQL:
 * - Event ids are taken from a sequence when a row is inserted, not when its transaction
 *   commits: a transaction holding id 7 may commit after another committed id 8. A reader
 *   that took 8 and moved past it would skip 7 for good. So each event also records the id
 *   of the transaction that wrote it (`txid`), and a consumer reads only events of
 *   transactions older than the oldest one still running (the snapshot's xmin): no event can
 *   appear behind its position any more. Events are read in (txid, id) order.
 * - A consumer's position row is locked (FOR UPDATE SKIP LOCKED) in the transaction that
 *   reads and applies the batch: two nodes never apply the same batch; the one that finds
 *   the row locked does nothing this time.
 * On SQLite one writer at a time commits in id order, and the position is the id alone.
 */
import type { SqlDatabase } from '../index/sql.ts';

export interface OutboxEvent {
  id: number;
  type: string;
  payload: unknown;
  createdAt: string;
}

/** Where a consumer stands: the last (txid, id) it applied. txid is 0 on SQLite. */
export interface Position {
  txid: number;
  id: number;
}

interface EventRow {
  id: number | string;
  txid: number | string | null;
  type: string;
  payload_json: string;
  created_at: string;
}

/** Appends an event in the caller's transaction: it exists if and only if the change commits. */
export async function appendEvent(tx: SqlDatabase, type: string, payload: unknown, at = new Date().toISOString()): Promise<void> {
  // On PostgreSQL the txid column's default is the writing transaction's id (migration 'outbox txid').
  await tx.run('INSERT INTO outbox (type, payload_json, created_at) VALUES (?, ?, ?)', [type, JSON.stringify(payload), at]);
}

export class Outbox {
  constructor(private readonly sql: SqlDatabase) {}

  /**
   * Applies the next events after `consumer`'s position, at most `limit`, with `apply` in one
   * transaction that moves the position past them. Answers how many events were read (0:
   * none new, or another node is applying this consumer's batch right now).
   * `apply` may run more than once on PostgreSQL (a transaction retried after a conflict), so
   * it must change nothing outside the transaction it is given.
   */
  async consume(consumer: string, limit: number, apply: (tx: SqlDatabase, events: OutboxEvent[]) => Promise<void>): Promise<number> {
    await ensurePosition(this.sql, consumer);
    return this.sql.transaction(async (tx) => {
      const position = await lockPosition(tx, consumer);
      if (!position) return 0;
      const rows = await this.eventsAfter(tx, position, limit);
      if (rows.length === 0) return 0;
      const events = rows.map(toEvent);
      await apply(tx, events);
      const last = rows[rows.length - 1]!;
      await advancePosition(tx, consumer, { txid: Number(last.txid ?? 0), id: Number(last.id) });
      return events.length;
    });
  }

  /**
   * Committed events the consumer has not applied yet, those held back behind a running
   * transaction included (see consume): 0 means the consumer is up to date.
   */
  async backlog(consumer: string): Promise<number> {
    const p = await readPosition(this.sql, consumer);
    const [where, params] = this.sql.engine === 'sqlite' ? ['id > ?', [p.id]] : ['(txid, id) > (?, ?)', [p.txid, p.id]];
    const row = await this.sql.get<{ n: number | string }>(`SELECT COUNT(*) AS n FROM outbox WHERE ${where}`, params);
    return Number(row?.n ?? 0);
  }

  /** The consumers that have a position, by name. */
  async consumers(): Promise<string[]> {
    const rows = await this.sql.all<{ consumer: string }>('SELECT consumer FROM outbox_cursors ORDER BY consumer');
    return rows.map((r) => r.consumer);
  }

  /** When the oldest event the consumer has not applied yet was written (undefined: none). */
  async oldestPendingAt(consumer: string): Promise<string | undefined> {
    const p = await readPosition(this.sql, consumer);
    const [where, params] = this.sql.engine === 'sqlite' ? ['id > ?', [p.id]] : ['(txid, id) > (?, ?)', [p.txid, p.id]];
    const row = await this.sql.get<{ at: string | null }>(`SELECT MIN(created_at) AS at FROM outbox WHERE ${where}`, params);
    return row?.at ?? undefined;
  }

  /**
   * Applies batches until the consumer is up to date (backlog 0), waiting for the events
   * that a running transaction holds back; answers how many events were applied. For
   * shutdown, tests and tools: the workers themselves poll with consume.
   */
  async drain(consumer: string, limit: number, apply: (tx: SqlDatabase, events: OutboxEvent[]) => Promise<void>): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.consume(consumer, limit, apply);
      total += n;
      if (n > 0) continue;
      if ((await this.backlog(consumer)) === 0) return total;
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private afterCondition(engine: SqlDatabase['engine'], p: Position): { where: string; params: unknown[] } {
    if (engine === 'sqlite') return { where: 'id > ?', params: [p.id] };
    // A long transaction anywhere on the cluster holds every consumer back while it runs:
    // the price of never skipping an event; the index's transactions last milliseconds.
    // Only transactions older than every running one: none of them can still add an event.
    return {
      where: '(txid, id) > (?, ?) AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint',
      params: [p.txid, p.id],
    };
  }

  private eventsAfter(tx: SqlDatabase, position: Position, limit: number): Promise<EventRow[]> {
    const { where, params } = this.afterCondition(tx.engine, position);
    const order = tx.engine === 'sqlite' ? 'id' : 'txid, id';
    return tx.all<EventRow>(
      `SELECT id, txid, type, payload_json, created_at FROM outbox WHERE ${where} ORDER BY ${order} LIMIT ?`,
      [...params, Math.max(1, Math.trunc(limit))],
    );
  }
}

function toEvent(r: EventRow): OutboxEvent {
  return { id: Number(r.id), type: r.type, payload: JSON.parse(r.payload_json) as unknown, createdAt: r.created_at };
}

/*
 * Positions (the outbox_cursors table). The outbox's consumers use them through Outbox; a
 * reader of another append-only log whose ids commit in order (the audit trail's syslog
 * export, audit.ts serializes its appends) keeps its position here too, with the same lock.
 */

/** Creates the consumer's position at the start if it has none. */
export async function ensurePosition(sql: SqlDatabase, consumer: string): Promise<void> {
  await sql.run(
    'INSERT INTO outbox_cursors (consumer, last_id, last_txid, updated_at) VALUES (?, 0, 0, ?) ON CONFLICT (consumer) DO NOTHING',
    [consumer, new Date().toISOString()],
  );
}

/** The consumer's position, without a lock; (0, 0) before its first batch. */
export async function readPosition(sql: SqlDatabase, consumer: string): Promise<Position> {
  const row = await sql.get<{ last_id: number | string; last_txid: number | string }>(
    'SELECT last_id, last_txid FROM outbox_cursors WHERE consumer = ?', [consumer]);
  return { txid: Number(row?.last_txid ?? 0), id: Number(row?.last_id ?? 0) };
}

/**
 * The consumer's position, locked until the transaction ends; undefined when another node
 * holds it (PostgreSQL: FOR UPDATE SKIP LOCKED) or it was never created (ensurePosition).
 */
export async function lockPosition(tx: SqlDatabase, consumer: string): Promise<Position | undefined> {
  const lock = tx.engine === 'postgres' ? ' FOR UPDATE SKIP LOCKED' : '';
  const row = await tx.get<{ last_id: number | string; last_txid: number | string }>(
    `SELECT last_id, last_txid FROM outbox_cursors WHERE consumer = ?${lock}`, [consumer]);
  return row && { txid: Number(row.last_txid), id: Number(row.last_id) };
}

/** Moves the consumer's position, in the transaction that applied what lies before it. */
export async function advancePosition(tx: SqlDatabase, consumer: string, to: Position): Promise<void> {
  await tx.run(
    `INSERT INTO outbox_cursors (consumer, last_id, last_txid, updated_at) VALUES (?, ?, ?, ?)
     ON CONFLICT (consumer) DO UPDATE SET last_id = excluded.last_id, last_txid = excluded.last_txid, updated_at = excluded.updated_at`,
    [consumer, to.id, to.txid, new Date().toISOString()],
  );
}
