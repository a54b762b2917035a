/**
 * A sliding-window limit of attempts per key (a client address), held in this node's memory:
 * enough to slow password guessing through one node; the account lockout holds across nodes.
 */
export class SlidingWindowLimiter {
  private readonly attempts = new Map<string, number[]>();
  /** When each key was last refused. */
  private readonly refused = new Map<string, number>();

  constructor(private readonly limit: number, private readonly windowMs: number) {}

  /**
   * Counts an attempt. Refused attempts are not counted (a client that keeps trying does not
   * push its own window forward); `firstRefusal` marks the one refusal worth recording.
   */
  attempt(key: string, now = Date.now()): { allowed: true } | { allowed: false; retryAfterSeconds: number; firstRefusal: boolean } {
    if (this.attempts.size > 10_000) this.sweep(now);
    const since = now - this.windowMs;
    const recent = (this.attempts.get(key) ?? []).filter((t) => t > since);
    if (recent.length >= this.limit) {
      const refusedBefore = this.refused.get(key);
      const firstRefusal = refusedBefore === undefined || refusedBefore <= since;
      this.refused.set(key, now);
      this.attempts.set(key, recent);
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((recent[0]! + this.windowMs - now) / 1000)), firstRefusal };
    }
    recent.push(now);
    this.attempts.set(key, recent);
    return { allowed: true };
  }

  private sweep(now: number): void {
    const since = now - this.windowMs;
    for (const [key, times] of this.attempts) if (times.every((t) => t <= since)) this.attempts.delete(key);
    for (const [key, at] of this.refused) if (at <= since) this.refused.delete(key);
  }
}
