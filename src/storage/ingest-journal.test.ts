import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { IngestJournal, journaledKeys } from './ingest-journal.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function folder(): string {
  return path.join(mkdtempSync(path.join(tmpdir(), 'atrium-journal-')), 'journal');
}

/** The journal's segment files (the folder also holds owner.json while a journal is open). */
const segments = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.log')).sort();

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
      const segment = path.join(dir, segments(dir)[0]!);
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
      assert.equal(segments(dir).length, 2);
      a.settle();
      // The checkpoint runs in the background: waited for, however loaded the machine.
      for (let waited = 0; (checkpoints.length === 0 || segments(dir).length > 1) && waited < 30_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(checkpoints, [['instances/A/1.dcm', 'instances/A/2.dcm']]);
      assert.equal(segments(dir).length, 1);
      assert.ok(!journal.has('instances/A/1.dcm'));
      await journal.close();
      assert.deepEqual(checkpoints, [['instances/A/1.dcm', 'instances/A/2.dcm'], ['instances/A/3.dcm']]);
      assert.deepEqual(readdirSync(dir), [], 'no segment, and the folder given back (owner.json)');
      await assert.rejects(journal.append(record(4)), /closed/);
    } finally {
      rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });

  it('writes an object given in fragments as they are, and reads back as torn a record whose bytes do not match its SHA-256', async () => {
    const dir = folder();
    try {
      const journal = await IngestJournal.open(dir, { checkpoint: async () => {} });
      const fragments = [Buffer.from('DICM fragment one, '), Buffer.alloc(0), Buffer.alloc(70_000, 7), Buffer.from(' and the last')];
      const whole = Buffer.concat(fragments);
      (await journal.append({ type: 'object', key: 'instances/A/1.dcm', size: whole.length, sha256: sha(whole), inline: fragments })).settle();
      const second = Buffer.alloc(500, 9);
      (await journal.append({ type: 'object', key: 'instances/A/2.dcm', size: 500, sha256: sha(second), inline: second })).settle();
      const pending = await (await IngestJournal.open(dir, { checkpoint: async () => {} })).pending();
      assert.deepEqual(pending.objects.map((o) => o.key), ['instances/A/1.dcm', 'instances/A/2.dcm']);
      assert.deepEqual(await journal.readInline(pending.objects[0]!), whole);
      // A byte of the second object's bytes changed (a write cut short on a disk that reorders): that record and any after it are torn.
      const segment = path.join(dir, segments(dir)[0]!);
      const data = readFileSync(segment);
      data[data.length - 100] ^= 0xff;
      writeFileSync(segment, data);
      const after = await (await IngestJournal.open(dir, { checkpoint: async () => {} })).pending();
      assert.deepEqual(after.objects.map((o) => o.key), ['instances/A/1.dcm']);
      assert.equal(after.tornSegments, 1);
    } finally {
      rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });

  it('still reads the records of a segment an earlier version wrote (a CRC-32 of the whole record at its end)', async () => {
    const dir = folder();
    try {
      mkdirSync(dir, { recursive: true });
      const bytes = Buffer.from('an object journaled by the earlier version');
      const key = Buffer.from('instances/A/old.dcm');
      const record = Buffer.alloc(49 + key.length + bytes.length + 4);
      record.writeUInt32BE(0x41494a31, 0);
      record.writeUInt8(1, 4);
      record.writeUInt16BE(key.length, 5);
      record.writeUIntBE(bytes.length, 7, 6);
      Buffer.from(sha(bytes), 'hex').copy(record, 13);
      record.writeUInt32BE(bytes.length, 45);
      key.copy(record, 49);
      bytes.copy(record, 49 + key.length);
      record.writeUInt32BE(crc32(record.subarray(0, record.length - 4)), record.length - 4);
      writeFileSync(path.join(dir, '000000000001.log'), record);
      const journal = await IngestJournal.open(dir, { checkpoint: async () => {} });
      const pending = await journal.pending();
      assert.deepEqual(pending.objects.map((o) => [o.key, o.sha256]), [['instances/A/old.dcm', sha(bytes)]]);
      assert.deepEqual(await journal.readInline(pending.objects[0]!), bytes);
    } finally {
      rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });
});
