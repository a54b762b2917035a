import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { testDatabases } from '../../test/support/databases.ts';
import { applyMigrations, indexMigrations, personNameWords, portableSql } from './migrations.ts';
import { openSqlDatabase, RetryableConflict, toPostgresPlaceholders, type SqlDatabase } from './sql.ts';

describe('toPostgresPlaceholders', () => {
  it('numbers ? placeholders in order, leaving quoted question marks alone', () => {
    assert.equal(
      toPostgresPlaceholders(`SELECT '?' AS q, "a?" FROM t WHERE a = ? AND b LIKE ? ESCAPE '\\' AND c IN (?, ?)`),
      `SELECT '?' AS q, "a?" FROM t WHERE a = $1 AND b LIKE $2 ESCAPE '\\' AND c IN ($3, $4)`,
    );
  });
});

describe('portableSql', () => {
  it('writes an auto-increment key and byte-ordered text for each engine', () => {
    assert.equal(portableSql('sqlite', 'id {id}, a {text}, i (a DESC{nulls-last})'), 'id INTEGER PRIMARY KEY, a TEXT, i (a DESC)');
    assert.equal(
      portableSql('postgres', 'id {id}, a {text}, i (a DESC{nulls-last})'),
      'id BIGSERIAL PRIMARY KEY, a TEXT COLLATE "C", i (a DESC NULLS LAST)',
    );
  });
});

describe('personNameWords', () => {
  it('folds a name and splits it into components and parts of compound names', () => {
    assert.deepEqual(personNameWords('Müller-Lüdenscheidt^Jean Pierre^^Dr'), ['MULLER', 'LUDENSCHEIDT', 'JEAN', 'PIERRE', 'DR']);
  });
});

describe('PostgreSQL schema made by nodes starting at once', { skip: !process.env.DATABASE_URL && 'DATABASE_URL is not set' }, () => {
  it('opens eight connections at once on a schema none has made yet, and all of them work', async () => {
    const schema = `t_race_${Date.now().toString(36)}`;
    const url = process.env.DATABASE_URL!;
    const opened = await Promise.allSettled(Array.from({ length: 8 }, () => openSqlDatabase({ engine: 'postgres', url, schema })));
    const dbs = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    try {
      assert.deepEqual(opened.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason)), []);
      for (const db of dbs) assert.equal(Number((await db.get<{ n: number }>('SELECT 1 AS n'))!.n), 1);
    } finally {
      await Promise.all(dbs.map((db) => db.close()));
      const { default: pg } = await import('pg');
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
    }
  });
});

for (const engine of testDatabases()) {
  describe(`SqlDatabase on ${engine.name}`, () => {
    async function withDatabase(fn: (db: SqlDatabase) => Promise<void>): Promise<void> {
      const { config, cleanup } = await engine.open();
      const db = await openSqlDatabase(config);
      try {
        await fn(db);
      } finally {
        await db.close();
        await cleanup();
      }
    }

    it('returns the id of an inserted row and the number of changed rows', () =>
      withDatabase(async (db) => {
        await db.exec(portableSql(db.engine, 'CREATE TABLE t (id {id}, v {text} NOT NULL)'));
        const a = await db.run('INSERT INTO t (v) VALUES (?) RETURNING id', ['a']);
        const b = await db.run('INSERT INTO t (v) VALUES (?) RETURNING id', ['b']);
        assert.equal(a.changes, 1);
        assert.equal(typeof a.lastId, 'number');
        assert.equal(b.lastId, a.lastId! + 1);
        assert.equal((await db.run('UPDATE t SET v = ? WHERE id > ?', ['z', 0])).changes, 2);
        assert.deepEqual(await db.all('SELECT v FROM t ORDER BY id'), [{ v: 'z' }, { v: 'z' }]);
        assert.deepEqual(await db.get('SELECT COUNT(*) AS n FROM t'), { n: 2 });
        assert.equal(await db.get('SELECT v FROM t WHERE id = ?', [-1]), undefined);
      }));

    it('rolls a transaction back when its function throws', () =>
      withDatabase(async (db) => {
        await db.exec(portableSql(db.engine, 'CREATE TABLE t (id {id}, v TEXT)'));
        await assert.rejects(
          db.transaction(async (tx) => {
            await tx.run('INSERT INTO t (v) VALUES (?)', ['lost']);
            throw new Error('boom');
          }),
          /boom/,
        );
        assert.deepEqual(await db.get('SELECT COUNT(*) AS n FROM t'), { n: 0 });
      }));

    it('does not let a statement from another caller see or join an open transaction', () =>
      withDatabase(async (db) => {
        await db.exec(portableSql(db.engine, 'CREATE TABLE t (id {id}, v TEXT)'));
        let inserted!: () => void;
        const insertedSignal = new Promise<void>((resolve) => (inserted = resolve));
        let finish!: () => void;
        const finishSignal = new Promise<void>((resolve) => (finish = resolve));
        const tx = db.transaction(async (t) => {
          await t.run('INSERT INTO t (v) VALUES (?)', ['inside']);
          inserted();
          await finishSignal;
          throw new Error('rolled back');
        });
        await insertedSignal;
        const outsideCount = db.get<{ n: number }>('SELECT COUNT(*) AS n FROM t WHERE v = ?', ['inside']);
        const outsideInsert = db.run('INSERT INTO t (v) VALUES (?)', ['outside']);
        finish();
        await assert.rejects(tx, /rolled back/);
        assert.deepEqual(await outsideCount, { n: 0 });
        await outsideInsert;
        assert.deepEqual(await db.all('SELECT v FROM t'), [{ v: 'outside' }]);
      }));

    it('runs a transaction again when it throws RetryableConflict on PostgreSQL', async (t) => {
      if (engine.name !== 'postgres') {
        t.skip('SQLite transactions never race');
        return;
      }
      await withDatabase(async (db) => {
        let attempts = 0;
        const result = await db.transaction(async () => {
          if (++attempts < 3) throw new RetryableConflict('lost a race');
          return 'done';
        });
        assert.equal(result, 'done');
        assert.equal(attempts, 3);
      });
    });

    it('applies each migration once, also when opened again', () =>
      withDatabase(async (db) => {
        const first = await applyMigrations(db, indexMigrations);
        assert.deepEqual(first, indexMigrations.map((m) => m.version));
        assert.deepEqual(await applyMigrations(db, indexMigrations), []);
        const own = [{ version: 1, name: 'own table', sql: 'CREATE TABLE own_things (id {id})' }];
        assert.deepEqual(await applyMigrations(db, own, 'own_migrations'), [1]);
        assert.deepEqual(await db.all('SELECT id FROM own_things'), []);
      }));
  });
}
