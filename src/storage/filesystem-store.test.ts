import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BlobNotFoundError, BlobSizeError, InvalidBlobKeyError } from './blob-store.ts';
import { FilesystemBlobStore } from './filesystem-store.ts';

const made: string[] = [];
after(async () => {
  for (const dir of made) await rm(dir, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'atrium-fs-store-'));
  made.push(dir);
  return dir;
}

describe('FilesystemBlobStore', () => {
  let outer: string;
  let root: string;
  let store: FilesystemBlobStore;
  beforeEach(async () => {
    outer = await freshDir();
    root = path.join(outer, 'blobs');
    store = await FilesystemBlobStore.open(root);
  });
  afterEach(async () => {
    await store.close();
  });

  it('creates the root and its temporary folder at open', async () => {
    assert.ok((await stat(root)).isDirectory());
    assert.ok((await stat(path.join(root, '.tmp'))).isDirectory());
  });

  it('writes a blob as the file <root>/<key>, creating its folders, and leaves no temporary file', async () => {
    await store.put('instances/1.2.3/4.5.6.dcm', Readable.from([Buffer.from('DICM')]));
    assert.equal(await readFile(path.join(root, 'instances', '1.2.3', '4.5.6.dcm'), 'utf8'), 'DICM');
    assert.deepEqual(await readdir(path.join(root, '.tmp')), []);
  });

  it('reads a whole blob into memory, and refuses an absent key or a folder as not found', async () => {
    const bytes = Buffer.from(createHash('sha256').update('x').digest().toString('hex').repeat(3000));
    await store.put('whole/blob', Readable.from([bytes]));
    assert.ok((await store.readWhole('whole/blob')).equals(bytes));
    assert.ok((await store.readWhole('whole/blob', bytes.length)).equals(bytes), 'read in one go when the size is known');
    await assert.rejects(store.readWhole('whole/blob', bytes.length + 10), (e: unknown) => e instanceof BlobSizeError && e.actual === bytes.length);
    await assert.rejects(store.readWhole('whole/blob', bytes.length - 10), /holds more than .* bytes, not the/);
    await assert.rejects(store.readWhole('whole/absent'), BlobNotFoundError);
    await assert.rejects(store.readWhole('whole/absent', 10), BlobNotFoundError);
    await assert.rejects(store.readWhole('whole'), BlobNotFoundError);
    await assert.rejects(store.readWhole('whole', 10), BlobNotFoundError);
  });

  it('keeps an upload in the temporary folder, not under its key, until the source ends', async () => {
    const source = new Readable({ read() {} });
    const put = store.put('pending/blob', source);
    source.push(Buffer.alloc(1000, 1));
    await waitFor(async () => (await readdir(path.join(root, '.tmp'))).length === 1);
    assert.equal(await store.stat('pending/blob'), undefined);
    assert.equal(existsSync(path.join(root, 'pending')), false);
    source.push(Buffer.alloc(24, 2));
    source.push(null);
    assert.equal((await put).size, 1024);
    assert.deepEqual(await store.stat('pending/blob'), { size: 1024 });
    assert.deepEqual(await readdir(path.join(root, '.tmp')), []);
  });

  it('refuses path traversal and writes nothing outside the root', async () => {
    for (const key of ['../x', '/etc/passwd', 'a/../../b', '..', './a', 'a/..']) {
      await assert.rejects(store.put(key, Readable.from([Buffer.from('pwned')])), InvalidBlobKeyError, key);
      await assert.rejects(store.get(key), InvalidBlobKeyError, key);
      await assert.rejects(store.delete(key), InvalidBlobKeyError, key);
    }
    assert.deepEqual((await readdir(outer)).sort(), ['blobs']);
    assert.deepEqual((await readdir(root)).sort(), ['.tmp']);
    await assert.rejects(async () => {
      for await (const _ of store.list('../')) assert.fail('listed outside the root');
    }, InvalidBlobKeyError);
  });

  it('refuses keys inside its temporary folder', async () => {
    await assert.rejects(store.put('.tmp/x', Readable.from([Buffer.from('x')])), InvalidBlobKeyError);
    await assert.rejects(store.get('.tmp'), InvalidBlobKeyError);
  });

  it('does not list temporary files', async () => {
    await writeFile(path.join(root, '.tmp', 'left-by-a-crash'), 'partial');
    await store.put('real', Readable.from([Buffer.from('r')]));
    const keys: string[] = [];
    for await (const { key } of store.list()) keys.push(key);
    assert.deepEqual(keys, ['real']);
  });

  it('removes a failed upload\'s temporary file and destroys its source', async () => {
    const source = new Readable({ read() {} });
    source.push(Buffer.alloc(5000));
    const put = store.put('failing', source);
    await waitFor(async () => (await readdir(path.join(root, '.tmp'))).length === 1);
    source.destroy(new Error('peer vanished'));
    await assert.rejects(put, /peer vanished/);
    assert.deepEqual(await readdir(path.join(root, '.tmp')), []);
    assert.equal(existsSync(path.join(root, 'failing')), false);
  });

  it('rejects a key below an existing blob, leaving no temporary file', async () => {
    await store.put('file', Readable.from([Buffer.from('a blob, not a folder')]));
    await assert.rejects(store.put('file/child', Readable.from([Buffer.from('x')])));
    assert.deepEqual(await readdir(path.join(root, '.tmp')), []);
    assert.equal(await readFile(path.join(root, 'file'), 'utf8'), 'a blob, not a folder');
  });

  it('treats a folder of blobs as no blob', async () => {
    await store.put('folder/inside', Readable.from([Buffer.from('x')]));
    await assert.rejects(store.get('folder'), BlobNotFoundError);
    assert.equal(await store.stat('folder'), undefined);
    await store.delete('folder');
    assert.deepEqual(await store.stat('folder/inside'), { size: 1 });
  });

  it('lets a reader opened before a replacement finish reading the old bytes', async () => {
    const old = Buffer.alloc(200_000, 0xaa);
    await store.put('swapped', Readable.from([old]));
    const reading = await store.get('swapped');
    await store.put('swapped', Readable.from([Buffer.from('new')]));
    await store.delete('swapped');
    assert.ok((await readAllBytes(reading)).equals(old));
  });

  it('removes only temporary files older than asked', async () => {
    const tmp = path.join(root, '.tmp');
    await writeFile(path.join(tmp, 'stale-1'), 'x');
    await writeFile(path.join(tmp, 'stale-2'), 'y');
    await writeFile(path.join(tmp, 'fresh'), 'z');
    const anHourAgo = new Date(Date.now() - 3600_000);
    await utimes(path.join(tmp, 'stale-1'), anHourAgo, anHourAgo);
    await utimes(path.join(tmp, 'stale-2'), anHourAgo, anHourAgo);
    assert.equal(await store.cleanTemporary(60_000), 2);
    assert.deepEqual(await readdir(tmp), ['fresh']);
    assert.equal(await store.cleanTemporary(60_000), 0);
  });

  it('streams a 64 MiB blob generated on the fly to disk with the right SHA-256', async () => {
    const { stream, digest } = generated(64 * 1024 * 1024);
    const stored = await store.put('large.bin', stream);
    assert.equal(stored.size, 64 * 1024 * 1024);
    assert.equal(stored.sha256, digest());
    assert.equal((await stat(path.join(root, 'large.bin'))).size, 64 * 1024 * 1024);
  });

  it('hashes on the main thread one object at a time, and on the hasher thread when several arrive at once, with the same SHA-256 either way', async () => {
    const one = generated(700 * 1024);
    const alone = await store.putDeferred('alone.bin', one.stream, 1024 * 1024);
    assert.equal(alone.blob.sha256, one.digest());
    assert.equal(store.hasher.completed, 0);
    // Sizes around the threshold of the hasher thread (256 KiB) and the write batch (1 MiB), and above the inline limit.
    const sizes = [100 * 1024, 256 * 1024, 700 * 1024 + 3, 3 * 1024 * 1024 + 17];
    const sources = sizes.map((n) => generated(n));
    const stored = await Promise.all(sources.map((g, i) => store.putDeferred(`several/${i}.bin`, g.stream, 1024 * 1024)));
    stored.forEach((r, i) => {
      assert.equal(r.blob.size, sizes[i]);
      assert.equal(r.blob.sha256, sources[i]!.digest(), `object ${i}`);
    });
    assert.ok(store.hasher.completed >= 1, 'some objects were hashed on the hasher thread');
    for (const [i, r] of stored.entries()) {
      const bytes = await readFile(path.join(root, 'several', `${i}.bin`));
      assert.equal(createHash('sha256').update(bytes).digest('hex'), r.blob.sha256);
    }
  });
});

/** Deterministic bytes produced lazily, with the SHA-256 of what was produced. */
function generated(total: number): { stream: Readable; digest: () => string } {
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
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return { stream, digest: () => hash.digest('hex') };
}

async function readAllBytes(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail('condition not reached within 2 s');
}
