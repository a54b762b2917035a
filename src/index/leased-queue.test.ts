import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testDatabases } from '../../test/support/databases.ts';
import { LeasedQueue } from './leased-queue.ts';
import { openSqlDatabase, type SqlDatabase } from './sql.ts';

type Row = { id: number | string; status: string | null; next_attempt_at: string | null; attempts: number | string };

for (const engine of testDatabases()) {
  describe(`leased queue (${engine.name})`, () => {
    // Two nodes: two connections (pools on PostgreSQL) to the same database.
    let one: SqlDatabase;
    let two: SqlDatabase;
    let cleanup: () => Promise<void>;
    const queue = new LeasedQueue({ table: 'work' });
    const at = (ms: number) => new Date(Date.now() + ms);

    before(async () => {
      const opened = await engine.open();
      cleanup = opened.cleanup;
      one = await openSqlDatabase(opened.config);
      await one.exec('CREATE TABLE work (id INTEGER PRIMARY KEY, status TEXT, next_attempt_at TEXT, attempts INTEGER NOT NULL DEFAULT 0)');
      two = await openSqlDatabase(opened.config);
    });
    after(async () => {
      await two?.close();
      await one?.close();
      await cleanup?.();
    });

    const row = async (id: number) => (await one.get<Row>('SELECT * FROM work WHERE id = ?', [id]))!;

    it('answers only the pending rows whose time has come, in the order asked', async () => {
      await one.run(`INSERT INTO work (id, status, next_attempt_at) VALUES (1, 'pending', ?), (2, 'pending', ?), (3, 'sent', ?), (4, 'pending', ?)`,
        [at(-2000).toISOString(), at(-1000).toISOString(), at(-3000).toISOString(), at(60_000).toISOString()]);
      const due = await queue.due<Row>(one, 'id, next_attempt_at', new Date(), { orderBy: 'next_attempt_at DESC, id', limit: 10 });
      assert.deepEqual(due.map((r) => Number(r.id)), [2, 1]);
      assert.deepEqual((await queue.due<Row>(one, 'id', new Date(), { orderBy: 'id', limit: 1 })).map((r) => Number(r.id)), [1]);
    });

    it('lets one node of two take a row it read, and writes the outcome of the holder only', async () => {
      const seen = (await row(1));
      const [a, b] = await Promise.all([
        queue.take(one, 1, { state: seen.status, next: seen.next_attempt_at }, at(60_000)),
        queue.take(two, 1, { state: seen.status, next: seen.next_attempt_at }, at(60_000)),
      ]);
      assert.equal([a, b].filter((l) => l !== undefined).length, 1, 'exactly one node takes the row');
      const lease = (a ?? b)!;
      assert.equal((await row(1)).next_attempt_at, lease, 'the lease is the next attempt time');
      assert.deepEqual((await queue.due<Row>(one, 'id', new Date(), { orderBy: 'id', limit: 10 })).map((r) => Number(r.id)), [2], 'a taken row is not due');
      assert.equal(await queue.settle(one, 1, 'not-the-lease', `status = 'sent'`, []), false);
      assert.equal(await queue.settle(two, 1, lease, `status = 'sent', attempts = ?`, [1]), true);
      const done = await row(1);
      assert.equal(done.status, 'sent');
      assert.equal(Number(done.attempts), 1);
      assert.equal(await queue.settle(one, 1, lease, `status = 'failed'`, []), false, 'a settled row is no longer pending');
    });

    it('gives a lapsed lease to the next node; the late outcome of the first changes nothing', async () => {
      const seen = await row(2);
      const first = await queue.take(one, 2, { state: seen.status, next: seen.next_attempt_at }, at(-1));
      assert.ok(first);
      const [due] = await queue.due<Row>(two, 'id, status, next_attempt_at', new Date(), { orderBy: 'id', limit: 10 });
      assert.equal(Number(due!.id), 2, 'due again once its lease has passed');
      const second = await queue.take(two, 2, { state: due!.status, next: due!.next_attempt_at }, at(60_000));
      assert.ok(second);
      assert.equal(await queue.settle(one, 2, first, `status = 'failed'`, []), false);
      assert.equal(await queue.settle(two, 2, second, `status = 'sent'`, []), true);
      assert.equal((await row(2)).status, 'sent');
    });

    it('takes a row never attempted (no state, no time yet)', async () => {
      await one.run('INSERT INTO work (id) VALUES (5)');
      assert.equal(await queue.take(one, 5, { state: 'pending', next: null }, at(60_000)), undefined, 'read otherwise: not taken');
      const lease = await queue.take(one, 5, { state: null, next: null }, at(60_000));
      assert.ok(lease);
      const taken = await row(5);
      assert.deepEqual([taken.status, taken.next_attempt_at], ['pending', lease]);
    });

    it('refuses a table or column name that is not a plain name', () => {
      assert.throws(() => new LeasedQueue({ table: 'work; DROP TABLE work' }), /not a column or table name/);
    });
  });
}
