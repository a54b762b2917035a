import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BlobNotFoundError, type BlobStore } from './blob-store.ts';
import { FilesystemBlobStore } from './filesystem-store.ts';
import { TieredBlobStore } from './tiered-store.ts';

const made: string[] = [];
after(async () => {
  for (const dir of made) await rm(dir, { recursive: true, force: true });
});

describe('TieredBlobStore', () => {
  let hot: FilesystemBlobStore;
  let cold: FilesystemBlobStore;
  let store: TieredBlobStore;
  let reads: Array<[string, string]>;
  let deleted: string[];
  beforeEach(async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'atrium-tiered-'));
    made.push(dir);
    hot = await FilesystemBlobStore.open(path.join(dir, 'hot'));
    cold = await FilesystemBlobStore.open(path.join(dir, 'cold'));
    store = new TieredBlobStore(hot, cold);
    reads = [];
    deleted = [];
    store.hooks = { onRead: (key, tier) => void reads.push([key, tier]), onDeleted: async (key) => void deleted.push(key) };
  });

  it('writes to the hot tier and reads a key from whichever tier holds it, saying which', async () => {
    await store.put('a/1', Readable.from([Buffer.from('hot bytes')]));
    await cold.put('a/2', Readable.from([Buffer.from('cold bytes')]));
    assert.ok(await hot.stat('a/1'));
    assert.equal(await cold.stat('a/1'), undefined);
    assert.equal((await buffer(await store.get('a/1'))).toString(), 'hot bytes');
    assert.equal((await buffer(await store.get('a/2', { start: 5, end: 9 }))).toString(), 'bytes');
    assert.equal((await store.readWhole('a/2', 10)).toString(), 'cold bytes');
    assert.deepEqual(await store.stat('a/2'), { size: 10 });
    assert.deepEqual(reads, [['a/1', 'hot'], ['a/2', 'cold'], ['a/2', 'cold']]);
    await assert.rejects(store.get('a/3'), BlobNotFoundError);
    assert.equal(await store.stat('a/3'), undefined);
  });

  it('deletes a key from both tiers, and lists each key of either tier once', async () => {
    await store.put('a/1', Readable.from([Buffer.from('x')]));
    await cold.put('a/1', Readable.from([Buffer.from('x')]));
    await cold.put('a/2', Readable.from([Buffer.from('yy')]));
    const listed: string[] = [];
    for await (const b of store.list('a/')) listed.push(b.key);
    assert.deepEqual(listed.sort(), ['a/1', 'a/2']);
    await store.delete('a/1');
    assert.equal(await hot.stat('a/1'), undefined);
    assert.equal(await cold.stat('a/1'), undefined);
    assert.deepEqual(deleted, ['a/1']);
  });

  it('finds an object a recall moved to hot between its look in hot and its look in cold', async () => {
    await cold.put('a/1', Readable.from([Buffer.from('recalled')]));
    // The recall finishes while the read looks in hot: by the time it looks in cold, the copy is hot.
    const racing: BlobStore = Object.create(hot) as BlobStore;
    let first = true;
    racing.get = async (key, range) => {
      if (first) {
        first = false;
        await hot.put(key, await cold.get(key));
        await cold.delete(key);
        throw new BlobNotFoundError(key);
      }
      return hot.get(key, range);
    };
    const raced = new TieredBlobStore(racing, cold);
    assert.equal((await buffer(await raced.get('a/1'))).toString(), 'recalled');
  });
});
