import type { Readable } from 'node:stream';

/** What a store knows of a blob once it is durably written. */
export interface StoredBlob {
  key: string;
  size: number;
  /** Lower-case hex SHA-256 of the bytes as stored. */
  sha256: string;
}

/** Inclusive byte range, as in HTTP Range. */
export interface BlobRange {
  start: number;
  end: number;
}

/**
 * Durable storage of opaque blobs by key. Keys are chosen by the caller
 * ([A-Za-z0-9/._-], no "..", no leading "/").
 * put() resolves only when the bytes are durable (fsynced, or acknowledged by the
 * object store); on error or abort nothing is left under the key.
 */
/** What put() stores: a stream, or any async source of chunks (an ingest's tapped generator). */
export type BlobSource = Readable | AsyncIterable<Buffer>;

/** Releases a source put() will not read (a stream is destroyed, a generator returned). */
export function abandonSource(body: BlobSource): void {
  if (typeof (body as Readable).destroy === 'function') (body as Readable).destroy();
  else void (body as AsyncGenerator<Buffer>).return?.(undefined)?.catch(() => {});
}

export interface BlobStore {
  readonly kind: 'filesystem' | 's3';
  put(key: string, body: BlobSource): Promise<StoredBlob>;
  /** Rejects with BlobNotFoundError when absent. */
  get(key: string, range?: BlobRange): Promise<Readable>;
  /**
   * The whole blob in memory, for small ones (a retrieve reads ahead with it). Rejects with
   * BlobNotFoundError when absent, and with BlobSizeError when `size` (what the caller
   * knows it to be) is not its size. With `into` (at least size + 1 bytes) the bytes may be
   * read into it, the result then being a view of it.
   */
  readWhole(key: string, size?: number, into?: Buffer): Promise<Buffer>;
  /** Size of the blob, or undefined when absent. */
  stat(key: string): Promise<{ size: number } | undefined>;
  /** Deleting an absent key is not an error. */
  delete(key: string): Promise<void>;
  /** Every blob under a prefix, in no particular order (temporary uploads excluded). */
  list(prefix?: string): AsyncIterable<{ key: string; size: number }>;
  /**
   * Stores without making durable a blob of at most inlineMaxBytes, returning its bytes (the fragments as received) for
   * the caller to make durable (the ingest journal); larger ones are stored as put() does.
   * Absent where put() costs no local flush (S3).
   */
  putDeferred?(key: string, body: BlobSource, inlineMaxBytes: number): Promise<{ blob: StoredBlob; inline?: Buffer[] }>;
  /** Makes every blob stored by putDeferred() so far durable (the named keys at least). */
  syncAll?(keys: string[]): Promise<void>;
  close(): Promise<void>;
}

export class BlobNotFoundError extends Error {
  constructor(readonly key: string) {
    super(`blob not found: ${key}`);
    this.name = 'BlobNotFoundError';
  }
}

export class BlobSizeError extends Error {
  constructor(readonly key: string, readonly expected: number, readonly actual: number) {
    super(`blob ${key} holds ${actual === expected + 1 ? `more than ${expected}` : actual} bytes, not the ${expected} it was stored with`);
    this.name = 'BlobSizeError';
  }
}

export class InvalidBlobKeyError extends Error {
  constructor(readonly key: string) {
    super(`invalid blob key: ${JSON.stringify(key)}`);
    this.name = 'InvalidBlobKeyError';
  }
}

const keyPattern = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

export function assertValidBlobKey(key: string): void {
  if (!keyPattern.test(key) || key.split('/').some((p) => p === '.' || p === '..')) {
    throw new InvalidBlobKeyError(key);
  }
}
