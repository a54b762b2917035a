/**
 * Two tiers of blob storage seen as one store: a hot tier (where objects arrive) and a cold
 * tier (a cheaper bucket or storage class) that the mover (src/archive/tiering.ts) fills.
 * Every read tries the hot tier, then the cold one, so an object is served from wherever it
 * is whole whatever the index says and whatever step a move or a recall stopped at: the
 * mover removes a copy only after the other one was read back and its hash checked.
 * Writes go to the hot tier; a delete removes the key from both.
 */
import type { Readable } from 'node:stream';
import { BlobNotFoundError, type BlobRange, type BlobSource, type BlobStore, type StoredBlob } from './blob-store.ts';

export interface TierHooks {
  /** A read found the key (any tier): the mover's access rule counts it. */
  onRead?(key: string, tier: 'hot' | 'cold'): void;
  /** The key was deleted from both tiers (a deletion, a replaced object); awaited, never failing. */
  onDeleted?(key: string): Promise<void>;
}

export class TieredBlobStore implements BlobStore {
  readonly kind: 'filesystem' | 's3';
  hooks: TierHooks = {};

  constructor(readonly hot: BlobStore, readonly cold: BlobStore) {
    this.kind = hot.kind;
    // Only where the hot tier defers flushes (the filesystem): the ingest journal relies on them.
    if (hot.putDeferred) this.putDeferred = (key, body, inlineMaxBytes) => hot.putDeferred!(key, body, inlineMaxBytes);
    if (hot.syncAll) this.syncAll = (keys) => hot.syncAll!(keys);
  }

  putDeferred?: BlobStore['putDeferred'];
  syncAll?: BlobStore['syncAll'];

  put(key: string, body: BlobSource): Promise<StoredBlob> {
    return this.hot.put(key, body);
  }

  /**
   * Hot, else cold; else hot once more: a recall that wrote the hot copy and removed the cold
   * one between the two looks must not make the object look absent.
   */
  private async fromEither<T>(key: string, read: (store: BlobStore) => Promise<T>): Promise<T> {
    try {
      const r = await read(this.hot);
      this.hooks.onRead?.(key, 'hot');
      return r;
    } catch (e) {
      if (!(e instanceof BlobNotFoundError)) throw e;
    }
    try {
      const r = await read(this.cold);
      this.hooks.onRead?.(key, 'cold');
      return r;
    } catch (e) {
      if (!(e instanceof BlobNotFoundError)) throw e;
    }
    const r = await read(this.hot);
    this.hooks.onRead?.(key, 'hot');
    return r;
  }

  get(key: string, range?: BlobRange): Promise<Readable> {
    return this.fromEither(key, (s) => s.get(key, range));
  }

  readWhole(key: string, size?: number, into?: Buffer): Promise<Buffer> {
    return this.fromEither(key, (s) => s.readWhole(key, size, into));
  }

  async stat(key: string): Promise<{ size: number } | undefined> {
    return (await this.hot.stat(key)) ?? (await this.cold.stat(key)) ?? (await this.hot.stat(key));
  }

  async delete(key: string): Promise<void> {
    await Promise.all([this.hot.delete(key), this.cold.delete(key)]);
    await this.hooks.onDeleted?.(key);
  }

  /** Every key of either tier once (a key in both, mid-move, is listed with its hot size). */
  async *list(prefix?: string): AsyncIterable<{ key: string; size: number }> {
    const seen = new Set<string>();
    for await (const b of this.hot.list(prefix)) {
      seen.add(b.key);
      yield b;
    }
    for await (const b of this.cold.list(prefix)) if (!seen.has(b.key)) yield b;
  }

  /** Temporary uploads of both tiers (filesystem tiers only), for `atrium verify --repair`. */
  async cleanTemporary(olderThanMs: number): Promise<number> {
    let n = 0;
    for (const s of [this.hot, this.cold] as Array<BlobStore & { cleanTemporary?: (ms: number) => Promise<number> }>) {
      if (s.cleanTemporary) n += await s.cleanTemporary(olderThanMs);
    }
    return n;
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.hot.close(), this.cold.close()]);
  }
}
