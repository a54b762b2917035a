import { createHash, randomUUID, type Hash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, opendir, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { GroupSync } from '../lib/group-sync.ts';
import { FileHasher, type FileHashJob } from './file-hasher.ts';
import {
  abandonSource,
  assertValidBlobKey,
  BlobNotFoundError,
  BlobSizeError,
  InvalidBlobKeyError,
  type BlobRange,
  type BlobSource,
  type BlobStore,
  type StoredBlob,
} from './blob-store.ts';

const execFileAsync = promisify(execFile);

/** Folder under the root where uploads are written before they are renamed into place. */
const temporaryFolder = '.tmp';

/**
 * Blobs as files under one root folder: written to `<root>/.tmp/<random>`,
 * fsynced, renamed to `<root>/<key>`, and the directories fsynced, so a blob is
 * either absent or complete after a crash. A crash may leave temporary files,
 * which cleanTemporary() removes.
 */
export class FilesystemBlobStore implements BlobStore {
  readonly kind = 'filesystem' as const;
  readonly root: string;
  readonly #temporaryRoot: string;
  /** Directories whose own entry this process has fsynced in their parent (the root's at open). */
  readonly #durableDirectories = new Set<string>();
  /** Directories this process made or found (a journaled object's folder is not flushed, but needs no mkdir again). */
  readonly #existingDirectories = new Set<string>();
  /** Writes under way: with several, hashing leaves the main thread (see file-hasher.ts). */
  #writing = 0;
  /** The hasher's thread, started at the first object written while another one was. */
  readonly hasher = new FileHasher();

  constructor(root: string) {
    this.root = path.resolve(root);
    this.#temporaryRoot = path.join(this.root, temporaryFolder);
  }

  /** Opens a store, creating the root and its temporary folder when missing. */
  static async open(root: string): Promise<FilesystemBlobStore> {
    const store = new FilesystemBlobStore(root);
    const firstCreated = await mkdir(store.#temporaryRoot, { recursive: true });
    // The root, and any folder above it created just now, must survive a crash too.
    const top = firstCreated !== undefined && firstCreated.length < store.root.length ? firstCreated : store.root;
    for (let dir = store.#temporaryRoot; ; dir = path.dirname(dir)) {
      await syncDirectory(path.dirname(dir));
      if (dir === top || dir === path.dirname(dir)) break;
    }
    store.#durableDirectories.add(store.root);
    return store;
  }

  async put(key: string, body: BlobSource): Promise<StoredBlob> {
    return (await this.#write(key, body, 0)).blob;
  }

  /**
   * Writes a blob without flushing it when it is at most inlineMaxBytes long: its bytes are
   * then returned, and the caller makes them durable elsewhere (the ingest journal) until
   * syncAll(). A larger blob is made durable as put() does, and no bytes are returned.
   */
  async putDeferred(key: string, body: BlobSource, inlineMaxBytes: number): Promise<{ blob: StoredBlob; inline?: Buffer[] }> {
    return this.#write(key, body, inlineMaxBytes);
  }

  /**
   * Makes every blob written so far durable, with their folders: one sync of the whole file
   * system (syncfs, through coreutils' `sync -f`) rather than a flush per file. Where that
   * command is unavailable, each named key's file and folders are flushed instead.
   */
  async syncAll(keys: string[]): Promise<void> {
    try {
      await execFileAsync('sync', ['-f', this.root]);
      return;
    } catch {
      // No `sync` (a minimal image), or one without -f: flush file by file.
    }
    for (const key of keys) {
      const file = this.#pathOf(key);
      let handle: FileHandle;
      try {
        handle = await open(file, fsConstants.O_RDONLY);
      } catch (e) {
        if (isAbsent(e)) continue;
        throw e;
      }
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      const directory = path.dirname(file);
      await this.#directorySync(directory).afterWrite();
      this.#durableDirectories.delete(directory);
      await this.#makeDurable(directory);
    }
  }

  async #write(key: string, body: BlobSource, inlineMaxBytes: number): Promise<{ blob: StoredBlob; inline?: Buffer[] }> {
    this.#writing++;
    try {
      return await this.#writeOnce(key, body, inlineMaxBytes);
    } finally {
      this.#writing--;
    }
  }

  async #writeOnce(key: string, body: BlobSource, inlineMaxBytes: number): Promise<{ blob: StoredBlob; inline?: Buffer[] }> {
    let target: string;
    try {
      target = this.#pathOf(key);
    } catch (e) {
      abandonSource(body);
      throw e;
    }
    const temporary = path.join(this.#temporaryRoot, randomUUID());
    let handle: FileHandle | undefined;
    let renamed = false;
    // A stream may fail while the temporary file is being opened, before anything listens to it.
    let earlyError: unknown;
    const onEarlyError = (e: unknown) => (earlyError ??= e);
    const stream = body instanceof Readable ? body : undefined;
    stream?.on('error', onEarlyError);
    try {
      handle = await open(temporary, 'wx', 0o640);
      stream?.off('error', onEarlyError);
      if (earlyError !== undefined) throw earlyError;
      // Written through the handle itself: it must stay open for the fsync after the last write.
      // One loop hashes and writes (no Transform, no pipeline): this is the hot path of ingest.
      const kept: Buffer[] | undefined = inlineMaxBytes > 0 ? [] : undefined;
      // With one object at a time the main thread has time to spare and hashing here costs no
      // latency; with several, the main thread is the limit and the hash is done on another.
      const offload = () => (this.#writing > 1 ? this.hasher.start(temporary) : undefined);
      const { size, sha256 } = await writeHashed(body, handle, kept, inlineMaxBytes, offload);
      // The fragments as they came, never joined: the journal writes them as they are.
      const inline = kept && size <= inlineMaxBytes ? kept : undefined;
      if (!inline) await handle.sync();
      await handle.close();
      handle = undefined;

      const directory = path.dirname(target);
      if (!this.#durableDirectories.has(directory) && !this.#existingDirectories.has(directory)) await mkdir(directory, { recursive: true });
      try {
        await rename(temporary, target);
      } catch (e) {
        // A folder known to exist was removed meanwhile (by hand, by a cleanup): make it again.
        if (!isErrno(e, 'ENOENT')) throw e;
        this.#durableDirectories.delete(directory);
        this.#existingDirectories.delete(directory);
        await mkdir(directory, { recursive: true });
        await rename(temporary, target);
      }
      this.#existingDirectories.add(directory);
      renamed = true;
      // The caller's journal holds these bytes: no flush of the file nor of its folders.
      if (inline) return { blob: { key, size, sha256 }, inline };
      // Objects renamed into one folder at about the same time share its fsync.
      await this.#directorySync(directory).afterWrite();
      await this.#makeDurable(directory);
      return { blob: { key, size, sha256 } };
    } catch (e) {
      stream?.off('error', onEarlyError);
      abandonSource(body);
      await handle?.close().catch(() => {});
      if (!renamed) await unlink(temporary).catch(() => {});
      throw e;
    }
  }

  async get(key: string, range?: BlobRange): Promise<Readable> {
    const file = this.#pathOf(key);
    if (range) assertValidRange(range);
    let handle: FileHandle;
    try {
      // Holding the descriptor keeps the bytes readable even if the key is deleted or replaced meanwhile.
      handle = await open(file, fsConstants.O_RDONLY);
    } catch (e) {
      if (isAbsent(e)) throw new BlobNotFoundError(key);
      throw e;
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new BlobNotFoundError(key);
      if (range && range.start >= info.size) {
        throw new RangeError(`range ${range.start}-${range.end} starts beyond the ${info.size} bytes of ${key}`);
      }
    } catch (e) {
      await handle.close();
      throw e;
    }
    return handle.createReadStream(range ? { start: range.start, end: range.end } : {});
  }

  async readWhole(key: string, size?: number, into?: Buffer): Promise<Buffer> {
    let handle: FileHandle;
    try {
      handle = await open(this.#pathOf(key), fsConstants.O_RDONLY);
    } catch (e) {
      if (isAbsent(e)) throw new BlobNotFoundError(key);
      throw e;
    }
    try {
      if (size === undefined) {
        if (!(await handle.stat()).isFile()) throw new BlobNotFoundError(key);
        return await handle.readFile();
      }
      // The size is known (from the index): one read, no stat. Each file operation is a
      // round trip through libuv's thread pool, which costs more than a small read itself.
      // One byte more than expected, to see a blob that grew.
      const buffer = into && into.length > size ? into : Buffer.allocUnsafe(size + 1);
      let filled = 0;
      for (;;) {
        const asked = size + 1 - filled;
        const { bytesRead } = await handle.read(buffer, filled, asked, filled);
        filled += bytesRead;
        // A regular file reads short only at its end: no second call to learn it.
        if (bytesRead === 0 || bytesRead < asked || filled > size) break;
      }
      if (filled !== size) throw new BlobSizeError(key, size, filled);
      return buffer.subarray(0, size);
    } catch (e) {
      if (isErrno(e, 'EISDIR')) throw new BlobNotFoundError(key);
      throw e;
    } finally {
      await handle.close();
    }
  }

  async stat(key: string): Promise<{ size: number } | undefined> {
    try {
      const info = await stat(this.#pathOf(key));
      return info.isFile() ? { size: info.size } : undefined;
    } catch (e) {
      if (isAbsent(e)) return undefined;
      throw e;
    }
  }

  async delete(key: string): Promise<void> {
    const file = this.#pathOf(key);
    try {
      await unlink(file);
    } catch (e) {
      // EISDIR/EPERM: the key names a folder of other blobs, so there is no blob to delete.
      if (isAbsent(e) || isErrno(e, 'EISDIR') || isErrno(e, 'EPERM')) return;
      throw e;
    }
    await syncDirectory(path.dirname(file));
  }

  async *list(prefix = ''): AsyncIterable<{ key: string; size: number }> {
    // Walk only the folder the prefix names; the rest of the prefix filters names.
    const slash = prefix.lastIndexOf('/');
    const folder = slash >= 0 ? prefix.slice(0, slash) : '';
    if (folder !== '') {
      assertValidBlobKey(folder);
      if (isTemporaryKey(folder)) throw new InvalidBlobKeyError(prefix);
    }
    yield* this.#walk(folder, prefix);
  }

  async close(): Promise<void> {
    // Nothing else is held open between calls.
    await this.hasher.close();
  }

  /**
   * Removes temporary files not written to for longer than olderThanMs (left by a
   * crash or a killed process); uploads in progress keep their files fresh.
   * Returns how many were removed.
   */
  async cleanTemporary(olderThanMs: number): Promise<number> {
    const now = Date.now();
    let removed = 0;
    let names: string[];
    try {
      names = await readdir(this.#temporaryRoot);
    } catch (e) {
      if (isAbsent(e)) return 0;
      throw e;
    }
    for (const name of names) {
      const file = path.join(this.#temporaryRoot, name);
      try {
        const info = await stat(file);
        if (!info.isFile() || now - info.mtimeMs < olderThanMs) continue;
        await unlink(file);
        removed++;
      } catch (e) {
        // Renamed into place or removed by someone else meanwhile.
        if (isAbsent(e)) continue;
        throw e;
      }
    }
    return removed;
  }

  async *#walk(folder: string, prefix: string): AsyncGenerator<{ key: string; size: number }> {
    let dir;
    try {
      dir = await opendir(path.join(this.root, folder));
    } catch (e) {
      if (isAbsent(e)) return;
      throw e;
    }
    // opendir streams entries, so a folder of a million blobs is not read into memory at once.
    for await (const entry of dir) {
      const key = folder === '' ? entry.name : `${folder}/${entry.name}`;
      if (folder === '' && entry.name === temporaryFolder) continue;
      if (entry.isDirectory()) {
        // Descend only where keys can still start with the prefix.
        const asFolder = `${key}/`;
        if (asFolder.startsWith(prefix) || prefix.startsWith(asFolder)) yield* this.#walk(key, prefix);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        try {
          const info = await stat(path.join(this.root, key));
          yield { key, size: info.size };
        } catch (e) {
          if (!isAbsent(e)) throw e;
        }
      }
    }
  }

  /**
   * fsyncs the parent of each folder between `directory` and the root not yet known
   * durable: a new folder's entry lives in its parent. A folder is marked only once its
   * parent is synced, so a concurrent put into a folder another put just created syncs
   * it too rather than trusting an fsync still under way.
   */
  async #makeDurable(directory: string): Promise<void> {
    const pending: string[] = [];
    for (let dir = directory; !this.#durableDirectories.has(dir) && dir.startsWith(this.root + path.sep); dir = path.dirname(dir)) {
      pending.push(dir);
    }
    for (const dir of pending) {
      await syncDirectory(path.dirname(dir));
      // Bounded: folders are few (a site, a day), but a long-lived process should not grow without end.
      if (this.#durableDirectories.size > 100_000) this.#durableDirectories.clear();
      this.#durableDirectories.add(dir);
    }
  }

  readonly #directorySyncs = new Map<string, GroupSync>();

  #directorySync(directory: string): GroupSync {
    let group = this.#directorySyncs.get(directory);
    if (!group) {
      // Bounded like #durableDirectories; a dropped group only costs a sync of its own.
      if (this.#directorySyncs.size > 10_000) this.#directorySyncs.clear();
      group = new GroupSync(() => syncDirectory(directory));
      this.#directorySyncs.set(directory, group);
    }
    return group;
  }

  #pathOf(key: string): string {
    assertValidBlobKey(key);
    if (isTemporaryKey(key)) throw new InvalidBlobKeyError(key);
    const file = path.join(this.root, key);
    // The key pattern already forbids traversal; this guards against a future change to it.
    if (!file.startsWith(this.root + path.sep)) throw new InvalidBlobKeyError(key);
    return file;
  }
}

/**
 * Bytes are gathered into writes of about this size: fewer system calls for sources with small
 * chunks, and one write for most objects (each call through the thread pool costs the main
 * thread more than its size suggests on a busy machine: bench/RESULTS.md, 7 Dec 2026).
 */
const writeBatchBytes = 1024 * 1024;
/** Below this, hashing on the main thread costs less than the messages to the hasher's. */
const offloadMinBytes = 256 * 1024;

/**
 * Writes every chunk of the source to the file, in batches, hashing as it goes. With `kept`,
 * the chunks are also gathered there as long as the total stays within keepUpTo. With
 * `offload`, asked once offloadMinBytes have arrived (a smaller object is hashed here), the
 * hash may be computed by the file hasher's thread from what was written.
 */
async function writeHashed(
  source: BlobSource, handle: FileHandle, kept?: Buffer[], keepUpTo = 0, offload?: () => FileHashJob | undefined,
): Promise<{ size: number; sha256: string }> {
  let hash: Hash | undefined;
  let job: FileHashJob | undefined;
  let decided = false;
  let size = 0;
  let batch: Buffer[] = [];
  let batchBytes = 0;
  const flush = async () => {
    await writeAll(handle, batch);
    if (job) {
      job.add(batchBytes);
    } else {
      hash ??= createHash('sha256');
      for (const b of batch) hash.update(b);
    }
    batch = [];
    batchBytes = 0;
  };
  try {
    for await (const chunk of source) {
      size += chunk.length;
      if (kept) {
        if (size <= keepUpTo) kept.push(chunk);
        else kept.length = 0;
      }
      batch.push(chunk);
      batchBytes += chunk.length;
      // Decided once the object is known not to be small, while the others under way are still arriving.
      if (!decided && size >= offloadMinBytes) {
        decided = true;
        job = offload?.();
        // The hasher's thread reads what is on disk: the bytes so far are written now.
        if (job) {
          await flush();
          continue;
        }
      }
      if (batchBytes >= writeBatchBytes) await flush();
    }
    if (batchBytes > 0) await flush();
  } catch (e) {
    job?.abort();
    throw e;
  }
  if (!job) return { size, sha256: (hash ?? createHash('sha256')).digest('hex') };
  try {
    return { size, sha256: await job.digest() };
  } catch {
    // The hasher's thread failed: the file is read back and hashed here.
    return { size, sha256: await hashOpenFile(handle, size) };
  }
}

async function hashOpenFile(handle: FileHandle, size: number): Promise<string> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(Math.min(size, writeBatchBytes) || 1);
  for (let at = 0; at < size;) {
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - at), at);
    if (bytesRead === 0) throw new Error('the file is shorter than what was written to it');
    hash.update(buffer.subarray(0, bytesRead));
    at += bytesRead;
  }
  return hash.digest('hex');
}

async function writeAll(handle: FileHandle, buffers: Buffer[]): Promise<void> {
  // writev may write less than asked (a full disk reports ENOSPC only on the next call).
  let pending = buffers;
  while (pending.length > 0) {
    const { bytesWritten } = await handle.writev(pending);
    if (bytesWritten === 0) throw new Error('the file system accepted no bytes');
    pending = skipBytes(pending, bytesWritten);
  }
}

function skipBytes(buffers: Buffer[], count: number): Buffer[] {
  let rest = count;
  const out: Buffer[] = [];
  for (const b of buffers) {
    if (rest >= b.length) {
      rest -= b.length;
    } else {
      out.push(rest > 0 ? b.subarray(rest) : b);
      rest = 0;
    }
  }
  return out;
}

function isTemporaryKey(key: string): boolean {
  return key === temporaryFolder || key.startsWith(`${temporaryFolder}/`);
}

function assertValidRange(range: BlobRange): void {
  if (!Number.isSafeInteger(range.start) || !Number.isSafeInteger(range.end) || range.start < 0 || range.end < range.start) {
    throw new RangeError(`invalid byte range ${range.start}-${range.end}`);
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isErrno(e: unknown, code: string): boolean {
  return e instanceof Error && (e as NodeJS.ErrnoException).code === code;
}

function isAbsent(e: unknown): boolean {
  return isErrno(e, 'ENOENT') || isErrno(e, 'ENOTDIR');
}
