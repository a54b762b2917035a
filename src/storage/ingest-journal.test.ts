import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { IngestJournal, journaledKeys } from './ingest-journal.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function folder(): string {
  return path.join(mkdtempSync(path.join(tmpdir(), 'atrium-journal-')), 'journal');
}

describe('the ingest journal', () => {
  it('gives back, after a run that never closed it, the objects it named, small ones with their bytes, minus those discarded', async () => {
    const dir = folder();
    try {
      const first = await IngestJournal.open(dir, { checkpoint: async () => {} });
      const small = Buffer.from('small object bytes');
      (await first.append({ type: 'object', key: 'instances/A/1.dcm', size: small.length, sha256: sha(small), inline: small })).settle();
      (await first.append({ type: 'object', key: 'instances/A/2.dcm', size: 5_000_000, sha256: 'ab'.repeat(32) })).settle();
      (await first.append({ type: 'object', key: 'instances/A/3.dcm', size: 3, sha256: sha(Buffer.from('abc')), inline: Buffer.from('abc') })).settle();
      assert.ok(first.has('instances/A/3.dcm'));
      await first.discard('instances/A/3.dcm');
      // No close(): the process died here.

      assert.deepEqual([...(await journaledKeys(dir))], ['instances/A/1.dcm', 'instances/A/2.dcm']);
      const second = await IngestJournal.open(dir, { checkpoint: async () => {} });
      const pending = await second.pending();
      assert.equal(pending.records, 4);
      assert.equal(pending.discarded, 1);
      assert.deepEqual(pending.objects.map((o) => [o.key, o.size, o.inline !== undefined]), [['instances/A/1.dcm', small.length, true], ['instances/A/2.dcm', 5_000_000, false]]);
      assert.deepEqual(await second.readInline(pending.objects[0]!), small);
      await second.dropSegments(pending.segments);
      assert.deepEqual((await second.pending()).objects, []);
      await second.close();
    } finally {
      rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });

  it('stops at a record cut short by a crash and keeps the ones before it', async () => {
    const dir = folder();
    try {
      const journal = await IngestJournal.open(dir, { checkpoint: async () => {} });
      for (const n of [1, 2]) {
        const bytes = Buffer.alloc(100, n);
        (await journal.append({ type: 'object', key: `instances/A/${n}.dcm`, size: 100, sha256: sha(bytes), inline: bytes })).settle();
      }
      const segment = path.join(dir, readdirSync(dir)[0]!);
      truncateSync(segment, statSync(segment).size - 10);
      const pending = await (await IngestJournal.open(dir, { checkpoint: async () => {} })).pending();
      assert.deepEqual(pending.objects.map((o) => o.key), ['instances/A/1.dcm']);
      assert.equal(pending.tornSegments, 1);
    } finally {
      rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });

  it('checkpoints a full segment only once its ingests have settled, then deletes it; close checkpoints the last one', async () => {
    const dir = folder();
    try {
      const checkpoints: string[][] = [];
      const journal = await IngestJournal.open(dir, { checkpoint: async (keys) => void checkpoints.push(keys), segmentRecords: 2 });
      const record = (n: number) => ({ type: 'object' as const, key: `instances/A/${n}.dcm`, size: 10, sha256: 'cd'.repeat(32) });
      const a = await journal.append(record(1));
      (await journal.append(record(2))).settle();
      // The third record opens a second segment; the first waits for its unsettled ingest.
      (await journal.append(record(3))).settle();
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(checkpoints, []);
      assert.equal(readdirSync(dir).length, 2);
      a.settle();
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(checkpoints, [['instances/A/1.dcm', 'instances/A/2.dcm']]);
      assert.equal(readdirSync(dir).length, 1);
      assert.ok(!journal.has('instances/A/1.dcm'));
      await journal.close();
      assert.deepEqual(checkpoints, [['instances/A/1.dcm', 'instances/A/2.dcm'], ['instances/A/3.dcm']]);
      assert.deepEqual(readdirSync(dir), []);
      await assert.rejects(journal.append(record(4)), /closed/);
    } finally {
      rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });
});
