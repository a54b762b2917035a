import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testDatabases } from '../../test/support/databases.ts';
import { openSqlDatabase, type SqlDatabase } from '../index/sql.ts';
import { AttemptLimits } from './attempt-limits.ts';

const minute = 60_000;
/** The start of a window, so that tests know where in it they are. */
const t0 = 1_000 * minute;

for (const db of testDatabases()) {
  describe(`attempt limits shared by the nodes (${db.name})`, () => {
    let cleanup: () => Promise<void>;
    // Two nodes: two connections to one index, each with its own limiters.
    let sqlA: SqlDatabase;
    let sqlB: SqlDatabase;
    const clock = { t: t0 };
    let nodeA: AttemptLimits;
    let nodeB: AttemptLimits;

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      sqlA = await openSqlDatabase(opened.config);
      sqlB = await openSqlDatabase(opened.config);
      // Counted in the index on both engines here (serve counts in memory on SQLite: one node).
      nodeA = await AttemptLimits.open(sqlA, { now: () => clock.t, shared: true });
      nodeB = await AttemptLimits.open(sqlB, { now: () => clock.t, shared: true });
    });
    after(async () => {
      await sqlA.close();
      await sqlB.close();
      await cleanup();
    });

    it('allows `limit` attempts across both nodes together, then refuses on either, the first refusal marked', async () => {
      clock.t = t0 + 1_000;
      const a = nodeA.limiter('login', 4);
      const b = nodeB.limiter('login', 4);
      assert.equal((await a.hit('10.0.0.1')).allowed, true);
      assert.equal((await b.hit('10.0.0.1')).allowed, true);
      assert.equal((await a.hit('10.0.0.1')).allowed, true);
      assert.equal((await b.hit('10.0.0.1')).allowed, true);
      assert.deepEqual(await a.hit('10.0.0.1'), { allowed: false, retryAfterSeconds: 59, firstRefusal: true });
      assert.deepEqual(await b.hit('10.0.0.1'), { allowed: false, retryAfterSeconds: 59, firstRefusal: false });
      assert.equal((await b.hit('10.0.0.2')).allowed, true, 'another address has its own count');
      assert.equal((await nodeB.limiter('share-open', 4).hit('10.0.0.1')).allowed, true, 'another purpose has its own count');
    });

    it('does not count refused attempts, and lets the previous window weigh in proportion to its overlap', async () => {
      clock.t = t0 + 10 * minute;
      const a = nodeA.limiter('login', 4);
      for (let i = 0; i < 4; i++) assert.equal((await a.hit('10.0.1.1')).allowed, true);
      for (let i = 0; i < 20; i++) assert.equal((await a.hit('10.0.1.1')).allowed, false);
      // Half-way through the next window, half of the previous window's 4 still count: 2 more allowed.
      clock.t = t0 + 11.5 * minute;
      assert.equal((await a.hit('10.0.1.1')).allowed, true);
      assert.equal((await nodeB.limiter('login', 4).hit('10.0.1.1')).allowed, true);
      assert.equal((await a.hit('10.0.1.1')).allowed, false);
      // Two windows later nothing is left.
      clock.t = t0 + 13 * minute;
      for (let i = 0; i < 4; i++) assert.equal((await a.hit('10.0.1.1')).allowed, true);
    });

    it('allows exactly `limit` of many attempts racing on two nodes', async () => {
      clock.t = t0 + 20 * minute;
      const a = nodeA.limiter('share-open', 5);
      const b = nodeB.limiter('share-open', 5);
      const decisions = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? a : b).hit('10.0.2.1')));
      assert.equal(decisions.filter((d) => d.allowed).length, 5);
      assert.equal(decisions.filter((d) => d.firstRefusal).length, 1, 'one refusal is the first');
    });

    it('removes the windows that count no more', async () => {
      clock.t = t0 + 30 * minute;
      await nodeA.limiter('login', 4).hit('10.0.3.1');
      clock.t = t0 + 40 * minute;
      await nodeA.limiter('login', 4).hit('10.0.3.2');
      const rows = await sqlA.all<{ window_start: number }>(`SELECT window_start FROM access_attempts WHERE attempt_key LIKE 'login:%'`);
      assert.deepEqual(rows.map((r) => Number(r.window_start)), [t0 + 40 * minute]);
    });
  });
}
