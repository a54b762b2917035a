import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readdir, readFile, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { GroupSync } from '../lib/group-sync.ts';

/**
 * The ingest journal: an append-only log of the objects acknowledged recently, so that an
 * acknowledgement costs one flush shared by every object ready at the same moment (group
 * commit) rather than a flush of the object, of its folder and of the index each.
 *
 * A record names an object's key, size and SHA-256; a small object's bytes go in the record
 * itself, so its own file and folder need no flush (the journal holds the durable copy).
 * Once a record is durable the index may commit without waiting for the disk: after a crash,
 * recovery replays the journal (rewriting any small object whose file did not survive) and
 * indexes every object the index lacks, before Atrium answers anything.
 *
 * The journal is cut in segments. When one is full, the next one takes the appends and the
 * full one is checkpointed: once every ingest that wrote to it has committed to the index,
 * the owner's checkpoint makes the stored files and the index durable by other means (one
 * file-system sync, one WAL flush) and the segment is deleted. Recovery therefore reads at
 * most a few segments, never the whole store.
 */

/**
 * A record of the journal. `inline` holds the object's bytes when the journal is their durable
 * copy: the fragments as they arrived, written as they are (never joined into one buffer).
 */
export type JournalRecord =
  | { type: 'object'; key: string; size: number; sha256: string; inline?: Buffer | Buffer[] }
  | { type: 'discard'; key: string };

/** An object the journal names and no later record discarded, as found at start. */
export interface JournaledObject {
  key: string;
  size: number;
  sha256: string;
  /** Where the object's bytes lie in its segment, when the record holds them. */
  inline?: { segment: string; offset: number };
}

export interface PendingRecovery {
  /** Segment files found, oldest first; drop them with dropSegments() once recovered. */
  segments: string[];
  /** Live objects, in the order they were journaled. */
  objects: JournaledObject[];
  records: number;
  discarded: number;
  /** Segments whose end was cut short by the crash (a record half written, never acknowledged). */
  tornSegments: number;
}

/** What an ingest holds once its record is durable; settle() when its index commit has ended, whatever its outcome. */
export interface JournalEntry {
  settle(): void;
}

export interface IngestJournalOptions {
  /** Makes the stored files of these keys and every index commit so far durable; then the segment can go. */
  checkpoint: (keys: string[]) => Promise<void>;
  /** Reports a checkpoint that failed (its segment is kept for the next start). */
  onCheckpointError?: (error: unknown) => void;
  segmentBytes?: number;
  segmentRecords?: number;
  /** How long close() waits for ingests still under way before leaving their segment to recovery. */
  closeWaitMs?: number;
}

/**
 * A record: a 49-byte header (magic, type, key length, size, SHA-256, inline length), the key,
 * then in "AIJ2" records a CRC-32 of header and key followed by the inline bytes, which the
 * SHA-256 already in the header guards (checked on reading back): no second pass over an
 * object's bytes when it is journaled. "AIJ1" records (earlier versions) end with a CRC-32 of
 * the whole record instead; they are still read.
 */
const magic = 0x41494a32; // "AIJ2"
const magicV1 = 0x41494a31; // "AIJ1"
const headerBytes = 49;
const trailerBytes = 4;
const crcBytes = 4;
const typeInline = 1;
const typeKeyOnly = 2;
const typeDiscard = 3;
const zeroSha = Buffer.alloc(32);

interface Segment {
  readonly name: string;
  readonly handle: FileHandle;
  readonly group: GroupSync;
  size: number;
  records: number;
  /** Ingests that wrote here and have not settled. */
  pending: number;
  keys: string[];
  /** Writes are chained so that a sync after a record's write covers every record before it. */
  tail: Promise<void>;
  full: boolean;
  failed: boolean;
  whenSettled?: () => void;
}

export class IngestJournal {
  readonly dir: string;
  readonly #options: Required<Omit<IngestJournalOptions, 'onCheckpointError'>> & Pick<IngestJournalOptions, 'onCheckpointError'>;
  #nextSeq = 1;
  #current: Promise<Segment> | undefined;
  /** Keys of objects in segments not yet checkpointed, with their segment (a discard must be journaled). */
  readonly #live = new Map<string, Segment>();
  #checkpoints: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(dir: string, options: IngestJournalOptions) {
    this.dir = dir;
    this.#options = {
      segmentBytes: 64 * 1024 * 1024,
      segmentRecords: 4096,
      closeWaitMs: 10_000,
      ...options,
    };
  }

  /** Opens the journal's folder (created, and made durable, when missing). Read pending() before the first append. */
  static async open(dir: string, options: IngestJournalOptions): Promise<IngestJournal> {
    const journal = new IngestJournal(path.resolve(dir), options);
    const created = await mkdir(journal.dir, { recursive: true });
    if (created !== undefined) {
      for (let d = journal.dir; ; d = path.dirname(d)) {
        await syncDirectory(path.dirname(d));
        if (d === created || d === path.dirname(d)) break;
      }
    }
    await claimOwnership(journal.dir);
    const names = await segmentNames(journal.dir);
    journal.#nextSeq = names.length === 0 ? 1 : Number.parseInt(names[names.length - 1]!, 10) + 1;
    return journal;
  }

  /** What the segments left by the previous run hold (all of them: a clean stop leaves none). */
  async pending(): Promise<PendingRecovery> {
    return readSegments(this.dir);
  }

  /** The bytes of an object the journal holds. */
  async readInline(object: JournaledObject): Promise<Buffer> {
    if (!object.inline) throw new Error(`the journal does not hold the bytes of ${object.key}`);
    const handle = await open(path.join(this.dir, object.inline.segment), fsConstants.O_RDONLY);
    try {
      const bytes = Buffer.allocUnsafe(object.size);
      const { bytesRead } = await handle.read(bytes, 0, object.size, object.inline.offset);
      if (bytesRead !== object.size) throw new Error(`segment ${object.inline.segment} is shorter than when it was read`);
      return bytes;
    } finally {
      await handle.close();
    }
  }

  /** Deletes segments whose objects recovery has made durable and indexed. */
  async dropSegments(names: string[]): Promise<void> {
    // No folder sync: a deletion lost in a crash only has the segment replayed again, harmlessly.
    for (const name of names) await unlink(path.join(this.dir, name)).catch((e: unknown) => { if (!isAbsent(e)) throw e; });
  }

  /** Whether a record of this key may still be replayed (its discard must then be journaled). */
  has(key: string): boolean {
    return this.#live.has(key);
  }

  /** Appends a record and resolves once it is on disk. */
  async append(record: JournalRecord): Promise<JournalEntry> {
    if (this.#closed) throw new Error('the ingest journal is closed');
    const { buffers, length } = encodeRecord(record);
    const { segment, offset } = await this.#reserve(length);
    try {
      const write = segment.tail.then(() => writeAt(segment.handle, buffers, offset));
      segment.tail = write;
      try {
        await write;
      } catch (e) {
        // Records after a hole could not be read back: the segment takes no more.
        segment.failed = true;
        throw e;
      }
      await segment.group.afterWrite();
    } catch (e) {
      this.#settle(segment);
      throw e;
    }
    if (record.type === 'object') {
      segment.keys.push(record.key);
      this.#live.set(record.key, segment);
    }
    let settled = false;
    return {
      settle: () => {
        if (settled) return;
        settled = true;
        this.#settle(segment);
      },
    };
  }

  /** Journals that an object was deleted after its record (a refused or duplicate object), so recovery does not bring it back. */
  async discard(key: string): Promise<void> {
    if (!this.#live.has(key)) return;
    (await this.append({ type: 'discard', key })).settle();
  }

  /** Checkpoints the current segment and waits for every checkpoint; later appends fail. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const current = await this.#current?.catch(() => undefined);
    this.#current = undefined;
    if (current && !current.full) {
      current.full = true;
      this.#scheduleCheckpoint(current, this.#options.closeWaitMs);
    }
    await this.#checkpoints;
    await releaseOwnership(this.dir);
  }

  async #reserve(length: number): Promise<{ segment: Segment; offset: number }> {
    for (;;) {
      this.#current ??= this.#createSegment();
      let segment: Segment;
      try {
        segment = await this.#current;
      } catch (e) {
        this.#current = undefined;
        throw e;
      }
      if (segment.full) continue;
      const tooBig = segment.size > 0 && segment.size + length > this.#options.segmentBytes;
      if (segment.failed || tooBig || segment.records >= this.#options.segmentRecords) {
        segment.full = true;
        this.#current = undefined;
        this.#scheduleCheckpoint(segment);
        continue;
      }
      const offset = segment.size;
      segment.size += length;
      segment.records++;
      segment.pending++;
      return { segment, offset };
    }
  }

  async #createSegment(): Promise<Segment> {
    const name = `${String(this.#nextSeq++).padStart(12, '0')}.log`;
    const handle = await open(path.join(this.dir, name), 'wx', 0o640);
    try {
      // Once per segment: the file's own entry must survive a crash.
      await syncDirectory(this.dir);
    } catch (e) {
      await handle.close();
      throw e;
    }
    return {
      name, handle, group: new GroupSync(() => handle.datasync()),
      size: 0, records: 0, pending: 0, keys: [], tail: Promise.resolve(), full: false, failed: false,
    };
  }

  #settle(segment: Segment): void {
    segment.pending--;
    if (segment.pending === 0) segment.whenSettled?.();
  }

  #scheduleCheckpoint(segment: Segment, waitMs?: number): void {
    this.#checkpoints = this.#checkpoints.then(() => this.#checkpoint(segment, waitMs));
  }

  async #checkpoint(segment: Segment, waitMs: number | undefined): Promise<void> {
    let complete = true;
    if (segment.pending > 0) {
      complete = await new Promise<boolean>((resolve) => {
        const timer = waitMs === undefined ? undefined : setTimeout(() => resolve(false), waitMs);
        segment.whenSettled = () => {
          if (timer) clearTimeout(timer);
          resolve(true);
        };
      });
    }
    await segment.tail.catch(() => {});
    await segment.group.idle();
    try {
      if (!complete) throw new Error(`ingests still under way after ${waitMs} ms: segment ${segment.name} is left for recovery`);
      if (segment.records > 0) await this.#options.checkpoint([...new Set(segment.keys)]);
      await segment.handle.close();
      await unlink(path.join(this.dir, segment.name));
    } catch (e) {
      await segment.handle.close().catch(() => {});
      this.#options.onCheckpointError?.(e);
    }
    for (const key of segment.keys) if (this.#live.get(key) === segment) this.#live.delete(key);
  }
}

/** The live object keys of the journal in a folder, read without changing it (for `atrium verify`). */
export async function journaledKeys(dir: string): Promise<Set<string>> {
  try {
    return new Set((await readSegments(dir)).objects.map((o) => o.key));
  } catch (e) {
    if (isAbsent(e)) return new Set();
    throw e;
  }
}

function encodeRecord(record: JournalRecord): { buffers: Buffer[]; length: number } {
  const key = Buffer.from(record.key, 'utf8');
  const given = record.type === 'object' ? record.inline : undefined;
  const inline = given === undefined ? undefined : Array.isArray(given) ? given : [given];
  const inlineLength = inline?.reduce((n, b) => n + b.length, 0) ?? 0;
  if (inline && inlineLength !== (record as { size: number }).size) throw new RangeError('inline bytes differ from the object size');
  const head = Buffer.allocUnsafe(headerBytes + key.length + crcBytes);
  head.writeUInt32BE(magic, 0);
  head.writeUInt8(record.type === 'discard' ? typeDiscard : inline ? typeInline : typeKeyOnly, 4);
  head.writeUInt16BE(key.length, 5);
  head.writeUIntBE(record.type === 'object' ? record.size : 0, 7, 6);
  (record.type === 'object' ? Buffer.from(record.sha256, 'hex') : zeroSha).copy(head, 13);
  head.writeUInt32BE(inlineLength, 45);
  key.copy(head, headerBytes);
  head.writeUInt32BE(crc32(head.subarray(0, headerBytes + key.length)), headerBytes + key.length);
  return { buffers: inline ? [head, ...inline.filter((b) => b.length > 0)] : [head], length: head.length + inlineLength };
}

async function readSegments(dir: string): Promise<PendingRecovery> {
  const segments = await segmentNames(dir);
  const live = new Map<string, JournaledObject>();
  let records = 0;
  let discarded = 0;
  let tornSegments = 0;
  for (const name of segments) {
    // A segment is bounded (tens of MB): read whole.
    const data = await readFile(path.join(dir, name));
    let at = 0;
    while (at < data.length) {
      const record = decodeAt(data, at);
      if (!record) {
        tornSegments++;
        break;
      }
      records++;
      const { type, key, size, sha256, inlineOffset, length } = record;
      // A key journaled again (never, with random keys; but never trust order blindly) keeps its last record.
      live.delete(key);
      if (type === typeDiscard) {
        discarded++;
      } else {
        live.set(key, { key, size, sha256, ...(type === typeInline ? { inline: { segment: name, offset: inlineOffset } } : {}) });
      }
      at += length;
    }
  }
  return { segments, objects: [...live.values()], records, discarded, tornSegments };
}

function decodeAt(data: Buffer, at: number): { type: number; key: string; size: number; sha256: string; inlineOffset: number; length: number } | undefined {
  if (data.length - at < headerBytes + trailerBytes) return undefined;
  const version = data.readUInt32BE(at);
  if (version !== magic && version !== magicV1) return undefined;
  const type = data.readUInt8(at + 4);
  if (type !== typeInline && type !== typeKeyOnly && type !== typeDiscard) return undefined;
  const keyLength = data.readUInt16BE(at + 5);
  const size = data.readUIntBE(at + 7, 6);
  const inlineLength = data.readUInt32BE(at + 45);
  const length = headerBytes + keyLength + inlineLength + (version === magic ? crcBytes : trailerBytes);
  if (data.length - at < length) return undefined;
  if (type === typeInline && inlineLength !== size) return undefined;
  const sha256 = data.toString('hex', at + 13, at + 45);
  let inlineOffset: number;
  if (version === magic) {
    const crcAt = at + headerBytes + keyLength;
    if (crc32(data.subarray(at, crcAt)) !== data.readUInt32BE(crcAt)) return undefined;
    inlineOffset = crcAt + crcBytes;
    // The bytes of a record cut short by a crash do not match the SHA-256 its header names.
    if (inlineLength > 0 && createHash('sha256').update(data.subarray(inlineOffset, inlineOffset + inlineLength)).digest('hex') !== sha256) return undefined;
  } else {
    const crcAt = at + length - trailerBytes;
    if (crc32(data.subarray(at, crcAt)) !== data.readUInt32BE(crcAt)) return undefined;
    inlineOffset = at + headerBytes + keyLength;
  }
  return {
    type,
    key: data.toString('utf8', at + headerBytes, at + headerBytes + keyLength),
    size,
    sha256,
    inlineOffset,
    length,
  };
}

async function segmentNames(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => /^\d{12}\.log$/.test(n)).sort();
}

async function writeAt(handle: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  // writev may write less than asked: go on from where it stopped.
  let pending = buffers;
  let at = position;
  while (pending.length > 0) {
    const { bytesWritten } = await handle.writev(pending, at);
    if (bytesWritten === 0) throw new Error('the file system accepted no bytes');
    at += bytesWritten;
    pending = skipBytes(pending, bytesWritten);
  }
}

function skipBytes(buffers: Buffer[], count: number): Buffer[] {
  let rest = count;
  let i = 0;
  while (i < buffers.length && rest >= buffers[i]!.length) rest -= buffers[i++]!.length;
  if (i === buffers.length) return [];
  return [buffers[i]!.subarray(rest), ...buffers.slice(i + 1)];
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isAbsent(e: unknown): boolean {
  return e instanceof Error && (e as NodeJS.ErrnoException).code === 'ENOENT';
}

/**
 * The journal of a data folder belongs to one running `atrium serve`: a second one started on
 * it would replay and delete the segments the first is writing (its acknowledged objects then
 * depend on nothing). The owner's pid and host are written in `owner.json` beside the segments;
 * a start finding a live owner on this host is refused. A dead owner (killed, a reboot), this
 * process itself or another host's (a container's new hostname; a data folder is never shared
 * by two hosts) leave a stale file, which is replaced.
 */
export class JournalInUse extends Error {}

interface Owner { pid: number; host: string; since: string }

const ownerFile = (dir: string) => path.join(dir, 'owner.json');

async function claimOwnership(dir: string): Promise<void> {
  const me: Owner = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(ownerFile(dir), `${JSON.stringify(me)}\n`, { flag: 'wx' });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw e;
    }
    const owner = await readOwner(dir);
    if (owner && owner.host === me.host && owner.pid !== me.pid && (await atriumRuns(owner.pid))) {
      throw new JournalInUse(`the data folder's ingest journal (${dir}) belongs to an Atrium running since ${owner.since} (pid ${owner.pid}): one atrium serve per data folder; give each node its own dataDir`);
    }
    await unlink(ownerFile(dir)).catch((e: unknown) => { if (!isAbsent(e)) throw e; });
  }
}

async function releaseOwnership(dir: string): Promise<void> {
  const owner = await readOwner(dir);
  if (owner?.pid === process.pid && owner.host === hostname()) await unlink(ownerFile(dir)).catch(() => {});
}

async function readOwner(dir: string): Promise<Owner | undefined> {
  try {
    const o = JSON.parse(await readFile(ownerFile(dir), 'utf8')) as Partial<Owner>;
    return typeof o.pid === 'number' && typeof o.host === 'string' ? { pid: o.pid, host: o.host, since: String(o.since ?? '?') } : undefined;
  } catch {
    return undefined; // absent, or half written by an owner killed while writing it: stale
  }
}

/** Whether this pid is a live process that may be Atrium (node): a pid reused by another program after a reboot is not. */
async function atriumRuns(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  try {
    return /node|atrium/i.test(await readFile(`/proc/${pid}/cmdline`, 'latin1'));
  } catch {
    return true; // no /proc here: the pid lives, assume it is Atrium
  }
}
