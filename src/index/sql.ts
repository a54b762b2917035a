import Database from 'better-sqlite3';
import { open, type FileHandle } from 'node:fs/promises';
import { GroupSync } from '../lib/group-sync.ts';
import type pg from 'pg';

/**
 * The thin dialect layer under the index: SQL is written once with `?` placeholders
 * and runs on the embedded engine (SQLite) or on PostgreSQL.
 */
export interface SqlDatabase {
  readonly engine: 'sqlite' | 'postgres';
  all<T>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  get<T>(sql: string, params?: readonly unknown[]): Promise<T | undefined>;
  /** `lastId` is the `id` of the first row a `RETURNING id` clause gave, or SQLite's last rowid after an INSERT. */
  run(sql: string, params?: readonly unknown[]): Promise<{ changes: number; lastId?: number }>;
  /** Several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /**
   * Runs fn in one transaction. Inside fn, use only `tx`: on SQLite a statement on the
   * outer database waits for the transaction to end, so it would never run.
   * On PostgreSQL the whole fn is run again on serialization failures, deadlocks and
   * RetryableConflict, so fn must have no side effects outside the database.
   * With `durable: false` it resolves once committed, perhaps before the commit is on disk
   * (the ingest journal makes such a commit recoverable); flush() later makes it durable.
   */
  transaction<T>(fn: (tx: SqlDatabase) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /** Resolves once every commit made so far, durable or not, is on disk. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface TransactionOptions {
  /** Default true: the commit is on disk when transaction() resolves. */
  durable?: boolean;
}

export type DatabaseConfig =
  | { engine: 'sqlite'; path: string }
  | { engine: 'postgres'; url: string; schema?: string; poolSize?: number };

/** Thrown inside a transaction to have it rolled back and run again (a concurrent writer won a race). */
export class RetryableConflict extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RetryableConflict';
  }
}

export async function openSqlDatabase(config: DatabaseConfig): Promise<SqlDatabase> {
  if (config.engine === 'sqlite') return new SqliteDatabase(config.path);
  return PostgresDatabase.open(config);
}

/** Plain values only: better-sqlite3 refuses undefined and booleans. */
function sqliteParams(params: readonly unknown[] | undefined): unknown[] {
  if (!params) return [];
  return params.map((p) => (p === undefined ? null : typeof p === 'boolean' ? (p ? 1 : 0) : p));
}

/** FIFO lock: SQLite has one connection, and a transaction spans awaits. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private waiting = 0;

  get idle(): boolean {
    return this.waiting === 0;
  }

  lock(): Promise<() => void> {
    this.waiting++;
    let release!: () => void;
    const next = new Promise<void>((resolve) => {
      release = () => {
        this.waiting--;
        resolve();
      };
    });
    const previous = this.tail;
    this.tail = previous.then(() => next);
    return previous.then(() => release);
  }
}

type Statement = Database.Statement<unknown[], unknown>;

class SqliteDatabase implements SqlDatabase {
  readonly engine = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Statement>();
  private readonly mutex = new Mutex();
  private closed = false;
  /** Statements issued by the open transaction's fn run directly. */
  private readonly inside: SqlDatabase;
  /**
   * Durability without blocking the process. With synchronous = FULL every COMMIT is an
   * fsync of the WAL inside better-sqlite3's synchronous call: the whole event loop stops
   * for it (measured: 15% of the main thread during STOW-RS). Instead the connection runs
   * with synchronous = NORMAL (WAL written at COMMIT, synced at checkpoints; the database is
   * never corrupted) and every write is followed, before it returns, by an fdatasync of the
   * WAL file on libuv's thread pool: the same guarantee as FULL, but one sync covers every
   * commit made before it started (group commit) and the event loop goes on meanwhile.
   * A transaction with `durable: false` (an ingest the journal covers) skips that sync.
   */
  private readonly walPath: string | undefined;
  private walHandle: Promise<FileHandle> | undefined;
  private readonly walSync = new GroupSync(() => this.syncWal());

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.walPath = this.db.memory ? undefined : `${this.db.name}-wal`;
    this.db.pragma(this.walPath ? 'synchronous = NORMAL' : 'synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('cache_size = -65536');
    this.inside = {
      engine: 'sqlite',
      all: async <T>(sql: string, params?: readonly unknown[]) => this.allNow<T>(sql, params),
      get: async <T>(sql: string, params?: readonly unknown[]) => this.getNow<T>(sql, params),
      run: async (sql: string, params?: readonly unknown[]) => this.runNow(sql, params),
      exec: async (sql: string) => void this.db.exec(sql),
      // Nested transactions join the open one.
      transaction: <T>(fn: (tx: SqlDatabase) => Promise<T>) => fn(this.inside),
      flush: () => Promise.reject(new Error('flush() inside a transaction')),
      close: () => Promise.reject(new Error('close() inside a transaction')),
    };
  }

  private prepare(sql: string): Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  private allNow<T>(sql: string, params?: readonly unknown[]): T[] {
    return this.prepare(sql).all(...sqliteParams(params)) as T[];
  }

  private getNow<T>(sql: string, params?: readonly unknown[]): T | undefined {
    return this.prepare(sql).get(...sqliteParams(params)) as T | undefined;
  }

  private runNow(sql: string, params?: readonly unknown[]): { changes: number; lastId?: number } {
    const statement = this.prepare(sql);
    if (statement.reader) {
      const rows = statement.all(...sqliteParams(params)) as Array<{ id?: number }>;
      return { changes: rows.length, lastId: rows[0]?.id };
    }
    const result = statement.run(...sqliteParams(params));
    return /^\s*insert/i.test(sql)
      ? { changes: result.changes, lastId: Number(result.lastInsertRowid) }
      : { changes: result.changes };
  }

  /** Resolves once every commit made so far is on disk (see walPath). */
  private async durable(): Promise<void> {
    if (this.walPath) await this.walSync.afterWrite();
  }

  private async syncWal(): Promise<void> {
    try {
      this.walHandle ??= open(this.walPath!, 'r');
      await (await this.walHandle).datasync();
    } catch (e) {
      this.walHandle = undefined;
      // No WAL file yet: nothing was ever written through it.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  /** Runs a single statement, after any open or queued transaction. */
  private async outside<T>(work: () => T): Promise<T> {
    if (this.closed) throw new Error('database is closed');
    if (this.mutex.idle) return work();
    const release = await this.mutex.lock();
    try {
      return work();
    } finally {
      release();
    }
  }

  all<T>(sql: string, params?: readonly unknown[]): Promise<T[]> {
    return this.outside(() => this.allNow<T>(sql, params));
  }

  get<T>(sql: string, params?: readonly unknown[]): Promise<T | undefined> {
    return this.outside(() => this.getNow<T>(sql, params));
  }

  async run(sql: string, params?: readonly unknown[]): Promise<{ changes: number; lastId?: number }> {
    const result = await this.outside(() => this.runNow(sql, params));
    await this.durable();
    return result;
  }

  async exec(sql: string): Promise<void> {
    await this.outside(() => void this.db.exec(sql));
    await this.durable();
  }

  async transaction<T>(fn: (tx: SqlDatabase) => Promise<T>, options?: TransactionOptions): Promise<T> {
    if (this.closed) throw new Error('database is closed');
    const release = await this.mutex.lock();
    let result: T;
    try {
      // IMMEDIATE: take the write lock now, so another process cannot make us fail at COMMIT.
      this.prepare('BEGIN IMMEDIATE').run();
      try {
        result = await fn(this.inside);
        this.prepare('COMMIT').run();
      } catch (error) {
        if (this.db.inTransaction) this.prepare('ROLLBACK').run();
        throw error;
      }
    } finally {
      release();
    }
    // The next transaction may run while this one's WAL frames are synced.
    if (options?.durable !== false) await this.durable();
    return result;
  }

  async flush(): Promise<void> {
    if (this.closed) throw new Error('database is closed');
    await this.durable();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const release = await this.mutex.lock();
    try {
      this.closed = true;
      this.statements.clear();
      await this.walSync.idle();
      await (await this.walHandle?.catch(() => undefined))?.close();
      this.db.close();
    } finally {
      release();
    }
  }
}

/** `?` → `$n`, skipping quoted strings and identifiers. */
export function toPostgresPlaceholders(sql: string): string {
  let out = '';
  let n = 0;
  let quote: string | undefined;
  for (const ch of sql) {
    if (quote) {
      if (ch === quote) quote = undefined;
      out += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      out += ch;
    } else if (ch === '?') {
      out += `$${++n}`;
    } else {
      out += ch;
    }
  }
  return out;
}

// BIGINT ids and counts fit easily in a double; strings would leak into every caller.
const int8 = 20;
const typeParsers = (types: typeof pg.types): pg.CustomTypesConfig => ({
  getTypeParser: ((oid: number, format?: string) =>
    oid === int8 ? (value: string) => Number(value) : types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
});

const retryableCodes = new Set(['40001', '40P01']);
const maxAttempts = 8;

function isRetryable(error: unknown): boolean {
  if (error instanceof RetryableConflict) return true;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && retryableCodes.has(code);
}

interface Queryable {
  query(text: string, values?: unknown[]): Promise<pg.QueryResult>;
}

class PostgresDatabase implements SqlDatabase {
  readonly engine = 'postgres' as const;
  private readonly translated = new Map<string, string>();

  private constructor(private readonly pool: pg.Pool) {}

  static async open(config: { url: string; schema?: string; poolSize?: number }): Promise<PostgresDatabase> {
    const schema = config.schema;
    if (schema !== undefined && !/^[a-z_][a-z0-9_]*$/.test(schema)) {
      throw new Error(`invalid PostgreSQL schema name: ${schema}`);
    }
    // Loaded only for PostgreSQL: the embedded default (SQLite) starts without it.
    const { default: pg } = await import('pg');
    if (schema) {
      const client = new pg.Client({ connectionString: config.url });
      await client.connect();
      try {
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      } catch (e) {
        // Nodes started at once on an empty database: each sees no schema and creates it; the
        // losers' row in pg_namespace is a duplicate (23505, or 42P06): the schema is there.
        const code = (e as { code?: string }).code;
        if (code !== '23505' && code !== '42P06') throw e;
      } finally {
        await client.end();
      }
    }
    const pool = new pg.Pool({
      connectionString: config.url,
      max: config.poolSize ?? 10,
      types: typeParsers(pg.types),
      ...(schema ? { options: `-c search_path=${schema}` } : {}),
    });
    // An idle client's error (server restart) must not crash the process; the next query reconnects.
    pool.on('error', () => {});
    return new PostgresDatabase(pool);
  }

  private text(sql: string): string {
    let text = this.translated.get(sql);
    if (text === undefined) {
      text = toPostgresPlaceholders(sql);
      this.translated.set(sql, text);
    }
    return text;
  }

  private view(client: Queryable): SqlDatabase {
    const self = this;
    const view: SqlDatabase = {
      engine: 'postgres',
      async all<T>(sql: string, params?: readonly unknown[]) {
        return (await client.query(self.text(sql), params as unknown[] | undefined)).rows as T[];
      },
      async get<T>(sql: string, params?: readonly unknown[]) {
        return (await client.query(self.text(sql), params as unknown[] | undefined)).rows[0] as T | undefined;
      },
      async run(sql: string, params?: readonly unknown[]) {
        const result = await client.query(self.text(sql), params as unknown[] | undefined);
        const id = (result.rows[0] as { id?: unknown } | undefined)?.id;
        return { changes: result.rowCount ?? 0, lastId: typeof id === 'number' ? id : undefined };
      },
      async exec(sql: string) {
        await client.query(sql);
      },
      transaction: <T>(fn: (tx: SqlDatabase) => Promise<T>) => fn(view),
      flush: () => Promise.reject(new Error('flush() inside a transaction')),
      close: () => Promise.reject(new Error('close() inside a transaction')),
    };
    return view;
  }

  all<T>(sql: string, params?: readonly unknown[]): Promise<T[]> {
    return this.view(this.pool).all<T>(sql, params);
  }

  get<T>(sql: string, params?: readonly unknown[]): Promise<T | undefined> {
    return this.view(this.pool).get<T>(sql, params);
  }

  run(sql: string, params?: readonly unknown[]): Promise<{ changes: number; lastId?: number }> {
    return this.view(this.pool).run(sql, params);
  }

  exec(sql: string): Promise<void> {
    return this.view(this.pool).exec(sql);
  }

  async transaction<T>(fn: (tx: SqlDatabase) => Promise<T>, options?: TransactionOptions): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      let broken = false;
      try {
        await client.query('BEGIN');
        // The server flushes its WAL within a few hundred milliseconds anyway; flush() forces it.
        if (options?.durable === false) await client.query('SET LOCAL synchronous_commit = off');
        try {
          const result = await fn(this.view(client));
          await client.query('COMMIT');
          return result;
        } catch (error) {
          try {
            await client.query('ROLLBACK');
          } catch {
            broken = true;
          }
          if (attempt < maxAttempts && isRetryable(error)) {
            // Spread the retries of writers that collided.
            await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
            continue;
          }
          throw error;
        }
      } finally {
        client.release(broken);
      }
    }
  }

  /**
   * A synchronous commit of a transaction with a transaction id writes a commit record and
   * flushes the WAL up to it: every asynchronous commit before it is then on disk too.
   */
  async flush(): Promise<void> {
    await this.transaction((tx) => tx.get('SELECT txid_current()'));
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
