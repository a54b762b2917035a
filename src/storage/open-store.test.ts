import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startS3Server, type TestS3Server } from '../../test/support/s3-server.ts';
import { BlobNotFoundError, InvalidBlobKeyError, type BlobStore } from './blob-store.ts';
import { FilesystemBlobStore } from './filesystem-store.ts';
import { openBlobStore } from './open-store.ts';
import { S3BlobStore } from './s3-store.ts';

/**
 * What every BlobStore promises, whatever holds the bytes. `open` gives a fresh,
 * empty store for each call; `afterFailedPut` lets a store check it left no trace
 * of its own (a temporary file, an unfinished upload).
 */
function describeBlobStoreContract(
  name: string,
  open: () => Promise<BlobStore>,
  hooks: { afterFailedPut?: (store: BlobStore) => Promise<void> } = {},
): void {
  describe(`BlobStore contract: ${name}`, () => {
    let store: BlobStore;
    before(async () => {
      store = await open();
    });
    after(async () => {
      await store?.close();
    });

    it('returns the size and the SHA-256 of the bytes put, and gives them back unchanged', async () => {
      const bytes = randomBytes(300_000);
      const stored = await store.put('round/trip.dcm', Readable.from(chunksOf(bytes, 7_001)));
      assert.deepEqual(stored, { key: 'round/trip.dcm', size: bytes.length, sha256: sha256Of(bytes) });
      assert.ok((await readAll(await store.get('round/trip.dcm'))).equals(bytes));
    });

    it('stores an empty blob', async () => {
      const stored = await store.put('empty', Readable.from([]));
      assert.deepEqual(stored, { key: 'empty', size: 0, sha256: sha256Of(Buffer.alloc(0)) });
      assert.equal((await readAll(await store.get('empty'))).length, 0);
      assert.deepEqual(await store.stat('empty'), { size: 0 });
    });

    it('reads inclusive ranges: the first byte, the middle, the last byte', async () => {
      const bytes = randomBytes(10_000);
      await store.put('ranges', Readable.from([bytes]));
      assert.deepEqual(await readAll(await store.get('ranges', { start: 0, end: 0 })), bytes.subarray(0, 1));
      assert.deepEqual(await readAll(await store.get('ranges', { start: 1234, end: 5677 })), bytes.subarray(1234, 5678));
      assert.deepEqual(await readAll(await store.get('ranges', { start: 9999, end: 9999 })), bytes.subarray(9999));
    });

    it('clamps a range that ends beyond the blob, as HTTP does', async () => {
      const bytes = randomBytes(100);
      await store.put('clamped', Readable.from([bytes]));
      assert.deepEqual(await readAll(await store.get('clamped', { start: 90, end: 1_000 })), bytes.subarray(90));
    });

    it('rejects a range that starts beyond the blob or is inverted with a RangeError', async () => {
      await store.put('short', Readable.from([Buffer.from('0123456789')]));
      await assert.rejects(store.get('short', { start: 10, end: 20 }), RangeError);
      await assert.rejects(store.get('short', { start: 5, end: 4 }), RangeError);
      await assert.rejects(store.get('short', { start: -1, end: 4 }), RangeError);
    });

    it('rejects get of an absent key with BlobNotFoundError, and stat answers undefined', async () => {
      await assert.rejects(store.get('absent/key'), (e: unknown) => e instanceof BlobNotFoundError && e.key === 'absent/key');
      await assert.rejects(store.get('absent/key', { start: 0, end: 1 }), BlobNotFoundError);
      assert.equal(await store.stat('absent/key'), undefined);
    });

    it('reports the size of a stored blob', async () => {
      await store.put('sized', Readable.from([Buffer.alloc(4321, 7)]));
      assert.deepEqual(await store.stat('sized'), { size: 4321 });
    });

    it('replaces the blob when a key is put again', async () => {
      await store.put('replaced', Readable.from([Buffer.from('first version')]));
      const stored = await store.put('replaced', Readable.from([Buffer.from('second')]));
      assert.equal(stored.size, 6);
      assert.equal((await readAll(await store.get('replaced'))).toString(), 'second');
    });

    it('deletes a blob, and deleting an absent key is not an error', async () => {
      await store.put('deleted', Readable.from([Buffer.from('x')]));
      await store.delete('deleted');
      assert.equal(await store.stat('deleted'), undefined);
      await assert.rejects(store.get('deleted'), BlobNotFoundError);
      await store.delete('deleted');
      await store.delete('never/was/here');
    });

    it('lists every blob under a prefix with its size', async () => {
      await store.put('listing/a/1', Readable.from([Buffer.alloc(1)]));
      await store.put('listing/a/2', Readable.from([Buffer.alloc(2)]));
      await store.put('listing/b/3', Readable.from([Buffer.alloc(3)]));
      await store.put('listing-other', Readable.from([Buffer.alloc(4)]));
      assert.deepEqual(await listSorted(store, 'listing/'), [
        { key: 'listing/a/1', size: 1 },
        { key: 'listing/a/2', size: 2 },
        { key: 'listing/b/3', size: 3 },
      ]);
      assert.deepEqual(await listSorted(store, 'listing/a/'), [
        { key: 'listing/a/1', size: 1 },
        { key: 'listing/a/2', size: 2 },
      ]);
      assert.deepEqual((await listSorted(store, 'listing')).map((b) => b.key), ['listing-other', 'listing/a/1', 'listing/a/2', 'listing/b/3']);
      assert.deepEqual(await listSorted(store, 'nothing/here/'), []);
      const all = (await listSorted(store)).map((b) => b.key);
      assert.ok(all.includes('listing-other') && all.includes('listing/b/3'), `full listing: ${all.join(', ')}`);
    });

    it('refuses keys that could escape the store', async () => {
      for (const key of ['../x', '/etc/passwd', 'a/../../b', '', 'a//b', 'a/./b', 'back\\slash']) {
        await assert.rejects(store.put(key, Readable.from([Buffer.from('x')])), InvalidBlobKeyError, `put ${key}`);
        await assert.rejects(store.get(key), InvalidBlobKeyError, `get ${key}`);
        await assert.rejects(store.stat(key), InvalidBlobKeyError, `stat ${key}`);
        await assert.rejects(store.delete(key), InvalidBlobKeyError, `delete ${key}`);
      }
    });

    it('leaves nothing under the key when the source stream fails midway, and rejects with its error', async () => {
      const failure = new Error('connection reset by modality');
      async function* failing(): AsyncGenerator<Buffer> {
        yield randomBytes(50_000);
        yield randomBytes(50_000);
        throw failure;
      }
      await assert.rejects(store.put('failed/midway', Readable.from(failing())), (e: unknown) => e === failure);
      assert.equal(await store.stat('failed/midway'), undefined);
      assert.deepEqual(await listSorted(store, 'failed/'), []);
      await hooks.afterFailedPut?.(store);
    });

    it('leaves nothing under the key when the source is destroyed midway without an error', async () => {
      const source = new Readable({ read() {} });
      source.push(randomBytes(10_000));
      const put = store.put('aborted/midway', source);
      setTimeout(() => source.destroy(), 20);
      await assert.rejects(put);
      assert.equal(await store.stat('aborted/midway'), undefined);
      await hooks.afterFailedPut?.(store);
    });

    it('keeps the previous blob when a replacing put fails', async () => {
      await store.put('kept', Readable.from([Buffer.from('good')]));
      async function* failing(): AsyncGenerator<Buffer> {
        yield Buffer.from('half of a bad');
        throw new Error('boom');
      }
      await assert.rejects(store.put('kept', Readable.from(failing())));
      assert.equal((await readAll(await store.get('kept'))).toString(), 'good');
    });

    it('stores concurrent puts of different keys each intact', async () => {
      const blobs = Array.from({ length: 16 }, (_, i) => ({ key: `concurrent/${i}.bin`, bytes: randomBytes(20_000 + i * 997) }));
      const stored = await Promise.all(blobs.map((b) => store.put(b.key, Readable.from(chunksOf(b.bytes, 4_096)))));
      for (const [i, b] of blobs.entries()) {
        assert.equal(stored[i]!.sha256, sha256Of(b.bytes));
        assert.ok((await readAll(await store.get(b.key))).equals(b.bytes), b.key);
      }
      assert.equal((await listSorted(store, 'concurrent/')).length, blobs.length);
    });
  });
}

describe('openBlobStore', () => {
  let s3: TestS3Server;
  before(async () => {
    s3 = await startS3Server();
  });
  after(async () => {
    await s3?.close();
  });

  it('opens a filesystem store, creating its folder', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'atrium-open-'));
    try {
      const store = await openBlobStore({ kind: 'filesystem', root: path.join(dir, 'deep', 'blobs') });
      assert.ok(store instanceof FilesystemBlobStore);
      assert.equal(store.kind, 'filesystem');
      await store.put('k', Readable.from([Buffer.from('v')]));
      assert.deepEqual(await store.stat('k'), { size: 1 });
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('opens an S3 store with the given endpoint, credentials and bucket', async () => {
    const store = await openBlobStore({ kind: 's3', region: 'us-east-1', ...s3Settings(s3) });
    try {
      assert.ok(store instanceof S3BlobStore);
      assert.equal(store.kind, 's3');
      await store.put('k', Readable.from([Buffer.from('v')]));
      assert.deepEqual(await store.stat('k'), { size: 1 });
    } finally {
      await store.close();
    }
  });

  it('fails at open when the S3 bucket does not exist', async () => {
    await assert.rejects(
      openBlobStore({ kind: 's3', region: 'us-east-1', ...s3Settings(s3), bucket: 'no-such-bucket' }),
      /no-such-bucket is not reachable/,
    );
  });
});

const roots: string[] = [];
describeBlobStoreContract('filesystem', async () => {
  const root = await mkdtemp(path.join(tmpdir(), 'atrium-contract-'));
  roots.push(root);
  return openBlobStore({ kind: 'filesystem', root });
}, {
  async afterFailedPut(store) {
    const fsStore = store as FilesystemBlobStore;
    assert.equal(await fsStore.cleanTemporary(0), 0, 'a failed put left a temporary file');
  },
});
after(async () => {
  for (const root of roots) await rm(root, { recursive: true, force: true });
});

let contractS3: TestS3Server | undefined;
describeBlobStoreContract('s3 (s3rver)', async () => {
  contractS3 = await startS3Server();
  const store = await openBlobStore({ kind: 's3', region: 'us-east-1', prefix: 'contract', ...s3Settings(contractS3) });
  // The server goes when the store is closed, so the suite needs no other hook.
  const close = store.close.bind(store);
  store.close = async () => {
    await close();
    await contractS3?.close();
  };
  return store;
});

function s3Settings(server: TestS3Server): { endpoint: string; bucket: string; accessKeyId: string; secretAccessKey: string } {
  return { endpoint: server.endpoint, bucket: server.bucket, accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey };
}

function* chunksOf(bytes: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

function sha256Of(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function listSorted(store: BlobStore, prefix?: string): Promise<Array<{ key: string; size: number }>> {
  const out: Array<{ key: string; size: number }> = [];
  for await (const blob of store.list(prefix)) out.push(blob);
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
