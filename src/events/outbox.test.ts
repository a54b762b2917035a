import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testDatabases } from '../../test/support/databases.ts';
import { openArchiveIndex, type ArchiveIndex } from '../index/archive-index.ts';
import { appendEvent, Outbox, type OutboxEvent } from './outbox.ts';

for (const db of testDatabases()) {
  describe(`the outbox on ${db.name}`, () => {
    let index: ArchiveIndex;
    let cleanup: () => Promise<void>;
    let config: Parameters<typeof openArchiveIndex>[0];
    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      config = opened.config;
      index = await openArchiveIndex(opened.config);
    });
    after(async () => {
      await index?.close();
      await cleanup?.();
    });

    const append = (n: number, type = 'test.event') =>
      index.sql.transaction(async (tx) => {
        for (let i = 0; i < n; i++) await appendEvent(tx, type, { n: i });
      });

    it('gives each consumer every event once, in order, at its own position', async () => {
      await append(5, 'order.test');
      const outbox = new Outbox(index.sql);
      const seen: Record<string, number[]> = { a: [], b: [] };
      for (const consumer of ['a', 'b'] as const) {
        await outbox.drain(`order-${consumer}`, 2, async (_tx, events) => {
          seen[consumer]!.push(...events.filter((e) => e.type === 'order.test').map((e) => (e.payload as { n: number }).n));
        });
      }
      assert.deepEqual(seen.a, [0, 1, 2, 3, 4]);
      assert.deepEqual(seen.b, [0, 1, 2, 3, 4]);
      assert.equal(await outbox.backlog('order-a'), 0);
      await append(1, 'order.test');
      assert.equal(await outbox.backlog('order-a'), 1);
    });

    it('leaves its position where it was when the batch fails, and applies the batch again next time', async () => {
      const outbox = new Outbox(index.sql);
      await outbox.drain('retry', 1000, async () => {}); // starts after what earlier tests wrote
      await append(3, 'retry.test');
      await assert.rejects(outbox.drain('retry', 10, async (tx) => {
        await tx.run("INSERT INTO outbox_cursors (consumer, last_id, last_txid, updated_at) VALUES ('made-in-failed-batch', 0, 0, 'x')");
        throw new Error('the consumer failed half-way');
      }), /half-way/);
      assert.equal(await index.sql.get("SELECT consumer FROM outbox_cursors WHERE consumer = 'made-in-failed-batch'"), undefined, 'rolled back');
      const again: OutboxEvent[] = [];
      await outbox.drain('retry', 10, async (_tx, events) => { again.push(...events); });
      assert.deepEqual(again.map((e) => (e.payload as { n: number }).n), [0, 1, 2]);
    });

    it('applies each event once in effect with two nodes consuming and four writers appending at once', async () => {
      // Two nodes: on PostgreSQL two pools on the same schema; SQLite serves one node, so two consumers share it.
      const other = db.name === 'postgres' ? await openArchiveIndex(config) : undefined;
      const nodes = [new Outbox(index.sql), new Outbox((other ?? index).sql)];
      await nodes[0]!.drain('effects', 10_000, async () => {});
      await index.sql.exec('CREATE TABLE IF NOT EXISTS outbox_test_effects (event_id BIGINT PRIMARY KEY, node INTEGER NOT NULL)');
      const writers = Array.from({ length: 4 }, async (_, w) => {
        for (let k = 0; k < 25; k++) {
          await index.sql.transaction(async (tx) => {
            await appendEvent(tx, 'effect.test', { w, k });
            await appendEvent(tx, 'effect.test', { w, k, second: true });
          });
        }
      });
      let writing = true;
      const consumers = nodes.map(async (outbox, node) => {
        for (;;) {
          const n = await outbox.consume('effects', 7, async (tx, events) => {
            for (const e of events) {
              // A primary key: a second application of the same event fails the test's batch loudly.
              await tx.run('INSERT INTO outbox_test_effects (event_id, node) VALUES (?, ?)', [e.id, node]);
            }
          });
          if (n === 0 && !writing) {
            if ((await outbox.backlog('effects')) === 0) return;
          }
          if (n === 0) await new Promise((r) => setTimeout(r, 5));
        }
      });
      await Promise.all(writers);
      writing = false;
      await Promise.all(consumers);
      const applied = await index.sql.all<{ event_id: number }>('SELECT event_id FROM outbox_test_effects');
      const written = await index.sql.all<{ id: number }>("SELECT id FROM outbox WHERE type = 'effect.test'");
      assert.equal(applied.length, 200);
      assert.deepEqual(new Set(applied.map((r) => Number(r.event_id))), new Set(written.map((r) => Number(r.id))));
      await other?.close();
    });

    it('never skips an event whose transaction commits after a later event\'s (PostgreSQL)', { skip: db.name !== 'postgres' && 'one SQLite writer commits in id order' }, async () => {
      const outbox = new Outbox(index.sql);
      await outbox.drain('late', 10_000, async () => {});
      let release!: () => void;
      const held = new Promise<void>((r) => { release = r; });
      let appended!: () => void;
      const inserted = new Promise<void>((r) => { appended = r; });
      // The early transaction takes its id first and commits last.
      const early = index.sql.transaction(async (tx) => {
        await appendEvent(tx, 'late.test', { which: 'early' });
        appended();
        await held;
      });
      await inserted;
      await append(1, 'late.test'); // a later id, committed at once
      const first: string[] = [];
      await outbox.consume('late', 10, async (_tx, events) => { first.push(...events.map((e) => (e.payload as { which?: string }).which ?? 'later')); });
      assert.deepEqual(first, [], 'nothing is handed out while an older transaction may still add an event before it');
      release();
      await early;
      const second: string[] = [];
      await outbox.drain('late', 10, async (_tx, events) => { second.push(...events.map((e) => (e.payload as { which?: string }).which ?? 'later')); });
      assert.deepEqual(second, ['early', 'later'], 'both, in the order their transactions began');
    });
  });
}
