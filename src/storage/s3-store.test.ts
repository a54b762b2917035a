import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { startS3Server, type TestS3Server } from '../../test/support/s3-server.ts';
import { BlobNotFoundError, BlobSizeError } from './blob-store.ts';
import { sha256Hex } from './hashing.ts';
import { S3BlobStore, type S3StoreConfig } from './s3-store.ts';

const MiB = 1024 * 1024;

describe('S3BlobStore', () => {
  let server: TestS3Server;
  const stores: S3BlobStore[] = [];
  before(async () => {
    server = await startS3Server();
  });
  after(async () => {
    for (const store of stores) await store.close();
    await server?.close();
  });

  function openStore(extra: Partial<S3StoreConfig> = {}): S3BlobStore {
    const store = new S3BlobStore({
      endpoint: server.endpoint,
      region: 'us-east-1',
      bucket: server.bucket,
      accessKeyId: server.accessKeyId,
      secretAccessKey: server.secretAccessKey,
      ...extra,
    });
    stores.push(store);
    return store;
  }

  /** Counts the S3 operations a store sends, by command name. */
  function countCommands(store: S3BlobStore): Map<string, number> {
    const counts = new Map<string, number>();
    store.client.middlewareStack.add(
      (next, context) => async (args) => {
        const name = String(context.commandName);
        counts.set(name, (counts.get(name) ?? 0) + 1);
        return next(args);
      },
      { step: 'initialize', name: `count-${Math.random()}` },
    );
    return counts;
  }

  it('refuses a part size below the 5 MiB minimum of S3', () => {
    assert.throws(() => new S3BlobStore({ region: 'us-east-1', bucket: 'b', partSizeBytes: 4 * MiB }), RangeError);
  });

  it('stores the SHA-256 as x-amz-meta-sha256 of a one-part object', async () => {
    const store = openStore();
    const counts = countCommands(store);
    const bytes = randomBytes(123_456);
    const stored = await store.put('meta/small', Readable.from([bytes]));
    assert.equal(stored.sha256, createHash('sha256').update(bytes).digest('hex'));
    const head = await store.client.send(new HeadObjectCommand({ Bucket: server.bucket, Key: 'meta/small' }));
    assert.equal(head.Metadata?.sha256, stored.sha256);
    assert.equal(await store.storedSha256('meta/small'), stored.sha256);
    assert.equal(counts.get('PutObjectCommand'), 1);
    assert.equal(counts.get('CreateMultipartUploadCommand'), undefined);
  });

  it('keeps every key under the configured prefix and lists keys without it', async () => {
    const store = openStore({ prefix: 'site-a' });
    await store.put('instances/1', Readable.from([Buffer.from('one')]));
    const raw = await store.client.send(new ListObjectsV2Command({ Bucket: server.bucket, Prefix: 'site-a/' }));
    assert.deepEqual(raw.Contents?.map((o) => o.Key), ['site-a/instances/1']);
    const listed: Array<{ key: string; size: number }> = [];
    for await (const blob of store.list('instances/')) listed.push(blob);
    assert.deepEqual(listed, [{ key: 'instances/1', size: 3 }]);
    assert.equal(await openStore().stat('instances/1'), undefined, 'a store without the prefix must not see it');
  });

  it('lists across pages of ListObjectsV2', async () => {
    const store = openStore({ prefix: 'paged' });
    // s3rver pages at 1000 keys, like S3.
    const keys = Array.from({ length: 1010 }, (_, i) => `k/${String(i).padStart(4, '0')}`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((k) => store.put(k, Readable.from([Buffer.from('x')]))));
    }
    const counts = countCommands(store);
    const listed: string[] = [];
    for await (const { key } of store.list('k/')) listed.push(key);
    assert.deepEqual(listed.sort(), keys);
    assert.ok((counts.get('ListObjectsV2Command') ?? 0) >= 2, 'expected more than one page');
  });

  it('uploads a 64 MiB object in several 5 MiB parts, never holding more than a few parts, with its SHA-256', async () => {
    const partSize = 5 * MiB;
    const store = openStore({ partSizeBytes: partSize });
    const counts = countCommands(store);
    let acknowledged = 0;
    store.client.middlewareStack.add(
      (next, context) => async (args) => {
        const result = await next(args);
        if (context.commandName === 'UploadPartCommand') {
          acknowledged += (args.input as { Body?: Uint8Array }).Body?.byteLength ?? 0;
        }
        return result;
      },
      { step: 'initialize', name: 'count-acknowledged-bytes' },
    );
    const total = 64 * MiB;
    let aheadOfServer = 0;
    const { stream, digest } = generated(total, (produced) => {
      aheadOfServer = Math.max(aheadOfServer, produced - acknowledged);
    });
    const stored = await store.put('large/64MiB.bin', stream);
    assert.deepEqual(stored, { key: 'large/64MiB.bin', size: total, sha256: digest() });
    assert.equal(counts.get('CreateMultipartUploadCommand'), 1);
    assert.equal(counts.get('UploadPartCommand'), Math.ceil(total / partSize));
    assert.equal(counts.get('CompleteMultipartUploadCommand'), 1);
    assert.equal(counts.get('PutObjectCommand'), undefined);
    // Read from the source but not yet acknowledged by S3: the parts in flight (4), the one
    // being filled, the read-ahead; bounded by the part size, not by the object's size.
    assert.ok(aheadOfServer <= 6 * partSize, `held ${(aheadOfServer / MiB).toFixed(1)} MiB not yet acknowledged`);

    assert.equal(await store.storedSha256('large/64MiB.bin'), stored.sha256);
    assert.deepEqual(await store.stat('large/64MiB.bin'), { size: total });
    assert.deepEqual(await sha256Hex(await store.get('large/64MiB.bin')), { sha256: stored.sha256, size: total });
  });

  it('aborts the multipart upload and leaves nothing when the source fails after several parts', async () => {
    const store = openStore({ partSizeBytes: 5 * MiB });
    const counts = countCommands(store);
    const failure = new Error('modality hung up');
    async function* failing(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 12; i++) yield Buffer.alloc(MiB, i);
      throw failure;
    }
    await assert.rejects(store.put('large/failed.bin', Readable.from(failing())), (e: unknown) => e === failure);
    assert.equal(counts.get('CreateMultipartUploadCommand'), 1);
    assert.equal(counts.get('AbortMultipartUploadCommand'), 1);
    assert.equal(counts.get('CompleteMultipartUploadCommand'), undefined);
    assert.equal(await store.stat('large/failed.bin'), undefined);
  });

  it('reads ranges across part boundaries of a multipart object', async () => {
    const store = openStore({ partSizeBytes: 5 * MiB });
    const bytes = randomBytes(11 * MiB);
    await store.put('large/ranged.bin', Readable.from([bytes.subarray(0, 3 * MiB), bytes.subarray(3 * MiB)]));
    const start = 5 * MiB - 10;
    const end = 5 * MiB + 9;
    assert.ok((await readAll(await store.get('large/ranged.bin', { start, end }))).equals(bytes.subarray(start, end + 1)));
    assert.ok((await readAll(await store.get('large/ranged.bin', { start: 0, end: 0 }))).equals(bytes.subarray(0, 1)));
    assert.ok((await store.readWhole('large/ranged.bin')).equals(bytes), 'readWhole gives every part back');
    assert.ok((await store.readWhole('large/ranged.bin', bytes.length)).equals(bytes));
    await assert.rejects(store.readWhole('large/ranged.bin', 5), BlobSizeError);
    await assert.rejects(store.readWhole('large/absent.bin'), BlobNotFoundError);
  });

  it('fails to open when the bucket is missing, naming it', async () => {
    await assert.rejects(
      S3BlobStore.open({
        endpoint: server.endpoint,
        region: 'us-east-1',
        bucket: 'missing-bucket',
        accessKeyId: server.accessKeyId,
        secretAccessKey: server.secretAccessKey,
      }),
      /missing-bucket/,
    );
  });
});

/** Deterministic bytes produced lazily, with the SHA-256 of what was produced. */
function generated(total: number, onRead: (produced: number) => void = () => {}): { stream: Readable; digest: () => string } {
  const hash = createHash('sha256');
  const chunkSize = 64 * 1024;
  let produced = 0;
  const stream = new Readable({
    read() {
      if (produced >= total) {
        this.push(null);
        return;
      }
      const chunk = Buffer.alloc(Math.min(chunkSize, total - produced), produced / chunkSize);
      produced += chunk.length;
      onRead(produced);
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return { stream, digest: () => hash.digest('hex') };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
