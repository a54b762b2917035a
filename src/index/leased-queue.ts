/**
 * The claim and lease of a queue row whose next attempt time doubles as its lease, shared by
 * the queues whose work leaves the node (report and MSSanté deliveries, teleradiology alerts,
 * the teleradiology volet's answers, DMP publications). Each queue's module owns its table and
 * calls this with its table's names; nothing else writes these columns' lease.
 *
 * - due(): the rows pending whose next attempt time has come.
 * - take(): a node takes a row by moving its next attempt time to the end of its lease, on
 *   the condition that the row is still as it read it (a compare-and-set). Of several nodes
 *   that read the same row, exactly one update matches: on PostgreSQL the others wait for its
 *   row lock and then find the time moved; SQLite has one writer. The lease is that new time.
 * - settle(): the attempt's outcome is written only while the row still holds this node's
 *   lease (pending, next attempt time = the lease). An attempt that outlived its lease (a slow
 *   peer, a clock behind) changes nothing: the node that took the row over since decides.
 * A node that dies mid-attempt leaves the row pending with its lease as next attempt time: it
 * is due again, for any node, once the lease has passed.
 */
import type { SqlDatabase } from './sql.ts';

export interface LeasedQueueColumns {
  /** The table (owned by the caller's module). */
  table: string;
  /** The row's key column. Default `id`. */
  key?: string;
  /** The state column; `pending` while the row is to be attempted. Default `status`. */
  state?: string;
  /** The next attempt time (ISO 8601 text), which is also the lease. Default `next_attempt_at`. */
  next?: string;
}

export class LeasedQueue {
  private readonly table: string;
  private readonly key: string;
  private readonly state: string;
  private readonly next: string;

  constructor(columns: LeasedQueueColumns) {
    const names = [columns.table, columns.key, columns.state, columns.next].filter((n) => n !== undefined);
    for (const n of names) if (!/^[a-z_][a-z0-9_]*$/.test(n)) throw new Error(`not a column or table name: ${n}`);
    this.table = columns.table;
    this.key = columns.key ?? 'id';
    this.state = columns.state ?? 'status';
    this.next = columns.next ?? 'next_attempt_at';
  }

  /** The rows pending and due at `now` (`columns`: the select list), in `orderBy` order, at most `limit`. */
  due<T>(sql: SqlDatabase, columns: string, now: Date, o: { orderBy: string; limit: number }): Promise<T[]> {
    return sql.all<T>(
      `SELECT ${columns} FROM ${this.table} WHERE ${this.state} = 'pending' AND ${this.next} <= ? ORDER BY ${o.orderBy} LIMIT ?`,
      [now.toISOString(), o.limit]);
  }

  /**
   * Takes the row `key` as it was read (its state and next attempt time, null when never
   * attempted) until `until`: answers the lease (to give to settle), or undefined when another
   * node changed the row first. The row is pending afterwards.
   */
  async take(sql: SqlDatabase, key: unknown, seen: { state: string | null; next: string | null }, until: Date): Promise<string | undefined> {
    const lease = until.toISOString();
    const { changes } = await sql.run(
      `UPDATE ${this.table} SET ${this.state} = 'pending', ${this.next} = ?
        WHERE ${this.key} = ? AND COALESCE(${this.state}, '') = ? AND COALESCE(${this.next}, '') = ?`,
      [lease, key, seen.state ?? '', seen.next ?? '']);
    return changes === 1 ? lease : undefined;
  }

  /**
   * Writes the outcome (`assignments`, an SQL SET list, with `params`) of the attempt made
   * under `lease`, only if the row still holds it: answers whether it did. `sql` may be the
   * caller's transaction.
   */
  async settle(sql: SqlDatabase, key: unknown, lease: string, assignments: string, params: readonly unknown[]): Promise<boolean> {
    const { changes } = await sql.run(
      `UPDATE ${this.table} SET ${assignments} WHERE ${this.key} = ? AND ${this.state} = 'pending' AND ${this.next} = ?`,
      [...params, key, lease]);
    return changes === 1;
  }
}
