/**
 * An in-memory sliding-window rate limiter, for the endpoints an attacker would hammer:
 * login, share-link PINs. Each key (an IP address, a login, a share link) keeps the times
 * of its last `limit` accepted hits; a hit is allowed when fewer than `limit` fall within
 * the last `windowMs`. Memory is bounded: at most `maxKeys` keys, the least recently hit
 * evicted first, and keys whose hits have all expired dropped as they are met.
 *
 * Per process: the limiter of a single node (SQLite). Several nodes on PostgreSQL count
 * together in the index instead (attempt-limits.ts), behind the same interface.
 */
export interface RateLimitOptions {
  /** Hits allowed per key within the window. */
  limit: number;
  windowMs: number;
  /** Keys held at most; beyond, the least recently hit key is forgotten. */
  maxKeys?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export interface RateLimitDecision {
  allowed: boolean;
  /** When refused: seconds until the oldest hit in the window expires (for Retry-After); 0 when allowed. */
  retryAfterSeconds: number;
  /** The first refusal of this key in the window: the one worth an audit record, not the flood after it. */
  firstRefusal?: boolean;
}

export class SlidingWindowRateLimiter {
  readonly limit: number;
  readonly windowMs: number;
  readonly maxKeys: number;
  private readonly now: () => number;
  /** Accepted hit times by key, oldest first; Map order is least recently hit first. */
  private readonly hits = new Map<string, number[]>();
  /** When each key was last refused (bounded like hits: dropped with its key). */
  private readonly refusedAt = new Map<string, number>();

  constructor(options: RateLimitOptions) {
    if (!Number.isSafeInteger(options.limit) || options.limit < 1) throw new RangeError('limit must be a whole number of at least 1');
    if (!(options.windowMs > 0)) throw new RangeError('windowMs must be positive');
    const maxKeys = options.maxKeys ?? 100_000;
    if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) throw new RangeError('maxKeys must be a whole number of at least 1');
    this.limit = options.limit;
    this.windowMs = options.windowMs;
    this.maxKeys = maxKeys;
    this.now = options.now ?? Date.now;
  }

  /** Counts one attempt for `key`. A refused attempt is not counted: it does not lengthen the wait. */
  hit(key: string): RateLimitDecision {
    const now = this.now();
    const since = now - this.windowMs;
    let times = this.hits.get(key);
    if (times) {
      while (times.length > 0 && times[0]! <= since) times.shift();
      if (times.length >= this.limit) {
        const before = this.refusedAt.get(key);
        this.refusedAt.set(key, now);
        return {
          allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((times[0]! + this.windowMs - now) / 1000)),
          firstRefusal: before === undefined || before <= since,
        };
      }
      // Moved to the end: the Map stays ordered by last accepted hit.
      this.hits.delete(key);
    } else {
      times = [];
      this.evict(since);
    }
    times.push(now);
    this.hits.set(key, times);
    return { allowed: true, retryAfterSeconds: 0 };
  }

  /** Forgets a key's attempts (after a successful login, say). */
  reset(key: string): void {
    this.hits.delete(key);
    this.refusedAt.delete(key);
  }

  /** Keys currently held. */
  get size(): number {
    return this.hits.size;
  }

  /** Makes room for one new key: expired keys first (the oldest are at the front), then the least recently hit. */
  private evict(since: number): void {
    for (const [key, times] of this.hits) {
      if (this.hits.size < this.maxKeys && times[times.length - 1]! > since) break;
      // A key whose last hit expired holds nothing; past maxKeys the oldest goes even if live.
      this.hits.delete(key);
      this.refusedAt.delete(key);
    }
  }
}
