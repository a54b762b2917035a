import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testDatabases } from '../../test/support/databases.ts';
import { openArchiveIndex, type ArchiveIndex } from './archive-index.ts';
import { ForwardingQueue, retryDelayMs, type ForwardItem } from './forwarding-queue.ts';

let counter = 0;
const item = (destination = 'DEST'): ForwardItem => ({
  SOPInstanceUID: `1.2.826.0.1.3680043.10.543.9.${Date.now()}.${++counter}`, StudyInstanceUID: '1.2.3', destination, reason: 'test',
});
const policy = { baseDelayMs: 1000, maxDelayMs: 8000, maxAttempts: 3 };

describe('retryDelayMs', () => {
  it('doubles from the base delay at each failure, up to the maximum', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 60].map((n) => retryDelayMs(policy, n)), [1000, 2000, 4000, 8000, 8000, 8000]);
  });
});

for (const db of testDatabases()) {
  describe(`forwarding queue (${db.name})`, () => {
    let index: ArchiveIndex;
    let queue: ForwardingQueue;
    let cleanup: () => Promise<void>;

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      index = await openArchiveIndex(opened.config);
      queue = new ForwardingQueue(index.sql);
    });
    after(async () => {
      await index?.close();
      await cleanup?.();
    });

    it('holds one row per instance and destination; queueing a sent row again makes it pending', async () => {
      const a = item('ONE');
      await queue.enqueue([a, a, { ...a, destination: 'TWO' }]);
      let claim = await queue.claimDue('ONE', 10);
      assert.equal(claim.rows.length, 1);
      await queue.markDone(claim.claimId, claim.rows.map((r) => r.id));
      assert.deepEqual((await queue.claimDue('ONE', 10)).rows, []);
      await queue.enqueue([a]);
      claim = await queue.claimDue('ONE', 10);
      assert.equal(claim.rows.length, 1);
      await queue.markDone(claim.claimId, claim.rows.map((r) => r.id));
      const status = await queue.status();
      assert.deepEqual(status.map((s) => [s.destination, s.done, s.pending]), [['ONE', 1, 0], ['TWO', 0, 1]]);
    });

    it('backs a failed attempt off, and marks the row failed at the last attempt; requeueing resets it', async () => {
      await queue.enqueue([item('BACKOFF')]);
      let claim = await queue.claimDue('BACKOFF', 10);
      await queue.markAttemptFailed(claim.claimId, [{ row: claim.rows[0]!, error: 'refused' }], policy);
      assert.equal(await queue.hasDue('BACKOFF'), false, 'not due before its back-off');
      let s = (await queue.status()).find((d) => d.destination === 'BACKOFF')!;
      assert.equal(s.pending, 1);
      assert.equal(s.retrying, 1);
      assert.deepEqual({ ...s.lastError, at: undefined }, { message: 'refused', attempts: 1, state: 'pending', at: undefined });
      assert.ok(Date.parse(s.nextAttemptAt!) - Date.now() > 500);
      // Two more attempts (the back-off skipped by a policy without delay to the claim).
      for (let i = 0; i < 2; i++) {
        await index.sql.run(`UPDATE forward_queue SET next_attempt_at = ? WHERE destination = 'BACKOFF'`, [new Date(0).toISOString()]);
        claim = await queue.claimDue('BACKOFF', 10);
        assert.equal(claim.rows[0]!.attempts, i + 1);
        await queue.markAttemptFailed(claim.claimId, [{ row: claim.rows[0]!, error: `refused ${i}` }], policy);
      }
      s = (await queue.status()).find((d) => d.destination === 'BACKOFF')!;
      assert.equal(s.failed, 1);
      assert.equal(s.pending, 0);
      assert.equal(s.lastError?.state, 'failed');
      assert.equal(await queue.requeueFailed('ELSEWHERE'), 0);
      assert.equal(await queue.requeueFailed('BACKOFF'), 1);
      claim = await queue.claimDue('BACKOFF', 10);
      assert.equal(claim.rows[0]!.attempts, 0);
      await queue.markDone(claim.claimId, [claim.rows[0]!.id]);
    });

    it('never hands one row to two claims at once, and leaves a row queued again during its send pending', async () => {
      const items = Array.from({ length: 40 }, () => item('SHARED'));
      await queue.enqueue(items);
      const claims = await Promise.all(Array.from({ length: 4 }, () => queue.claimDue('SHARED', 15)));
      const ids = claims.flatMap((c) => c.rows.map((r) => r.id));
      assert.equal(ids.length, 40);
      assert.equal(new Set(ids).size, 40);
      // One object queued again (replaced) while its claim is out: the sender's "done" does not hide it.
      await queue.enqueue([items[0]!]);
      for (const c of claims) await queue.markDone(c.claimId, c.rows.map((r) => r.id));
      const s = (await queue.status()).find((d) => d.destination === 'SHARED')!;
      assert.deepEqual([s.done, s.pending], [39, 1]);
    });

    it('hands out again rows whose sender never reported, and takes back rows given back at shutdown', async () => {
      await queue.enqueue([item('STALE'), item('STALE')]);
      const claim = await queue.claimDue('STALE', 10);
      assert.equal(await queue.reclaimStale(60_000), 0);
      await queue.release(claim.claimId, [claim.rows[0]!.id]);
      await new Promise((r) => setTimeout(r, 5));
      assert.equal(await queue.reclaimStale(1), 1);
      const again = await queue.claimDue('STALE', 10);
      assert.deepEqual(again.rows.map((r) => r.id).sort(), claim.rows.map((r) => r.id).sort());
      assert.deepEqual(again.rows.map((r) => r.attempts), [0, 0], 'a row given back or reclaimed has not used an attempt');
      // The first sender's late report no longer counts.
      await queue.markDone(claim.claimId, claim.rows.map((r) => r.id));
      assert.equal((await queue.status()).find((d) => d.destination === 'STALE')!.inProgress, 2);
    });

    it('does not hand out again the rows of a claim its sender keeps renewing', async () => {
      await queue.enqueue([item('RENEWED'), item('RENEWED')]);
      const live = await queue.claimDue('RENEWED', 1);
      const dead = await queue.claimDue('RENEWED', 1);
      await new Promise((r) => setTimeout(r, 20));
      await queue.renewClaims([live.claimId]);
      await queue.reclaimStale(10);
      const s = (await queue.status()).find((d) => d.destination === 'RENEWED')!;
      assert.deepEqual([s.inProgress, s.pending], [1, 1], 'only the claim nobody renewed is handed out again');
      const again = await queue.claimDue('RENEWED', 10);
      assert.deepEqual(again.rows.map((r) => r.id), dead.rows.map((r) => r.id));
      await queue.markDone(live.claimId, live.rows.map((r) => r.id));
      await queue.markDone(again.claimId, again.rows.map((r) => r.id));
      assert.equal((await queue.status()).find((d) => d.destination === 'RENEWED')!.done, 2);
    });

    it('queues items inside the caller\'s transaction: nothing is queued when it rolls back', async () => {
      await assert.rejects(index.sql.transaction(async (tx) => {
        await queue.enqueueIn(tx, [item('ROLLED-BACK')]);
        throw new Error('the batch failed');
      }), /the batch failed/);
      assert.equal((await queue.status()).find((d) => d.destination === 'ROLLED-BACK'), undefined);
      await index.sql.transaction((tx) => queue.enqueueIn(tx, [item('COMMITTED')]));
      assert.equal((await queue.status()).find((d) => d.destination === 'COMMITTED')!.pending, 1);
    });
  });
}
