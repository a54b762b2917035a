import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SlidingWindowRateLimiter } from './rate-limit.ts';

function limiter(options: { limit: number; windowMs: number; maxKeys?: number }) {
  const clock = { t: 1_000_000 };
  const l = new SlidingWindowRateLimiter({ ...options, now: () => clock.t });
  return { l, clock };
}

describe('SlidingWindowRateLimiter', () => {
  it('allows `limit` hits within the window, then refuses with the seconds until the oldest expires', () => {
    const { l, clock } = limiter({ limit: 3, windowMs: 60_000 });
    assert.deepEqual(l.hit('ip:1'), { allowed: true, retryAfterSeconds: 0 });
    clock.t += 10_000;
    assert.equal(l.hit('ip:1').allowed, true);
    clock.t += 10_000;
    assert.equal(l.hit('ip:1').allowed, true);
    clock.t += 5_000;
    // The first hit was 25 s ago: it leaves the window in 35 s.
    assert.deepEqual(l.hit('ip:1'), { allowed: false, retryAfterSeconds: 35, firstRefusal: true });
  });

  it('slides: a hit leaving the window frees one place, not the whole quota', () => {
    const { l, clock } = limiter({ limit: 2, windowMs: 1_000 });
    l.hit('k');
    clock.t += 600;
    l.hit('k');
    clock.t += 401; // the first hit is now 1001 ms old
    assert.equal(l.hit('k').allowed, true);
    assert.equal(l.hit('k').allowed, false, 'the second and third hits still fill the window');
    clock.t += 600; // the second hit expires
    assert.equal(l.hit('k').allowed, true);
  });

  it('does not count refused attempts: hammering does not lengthen the wait', () => {
    const { l, clock } = limiter({ limit: 1, windowMs: 10_000 });
    l.hit('pin:abc');
    for (let i = 0; i < 100; i++) {
      clock.t += 50;
      assert.equal(l.hit('pin:abc').allowed, false);
    }
    clock.t = 1_000_000 + 10_001;
    assert.equal(l.hit('pin:abc').allowed, true);
  });

  it('keeps keys apart, and reset forgets one', () => {
    const { l } = limiter({ limit: 1, windowMs: 10_000 });
    assert.equal(l.hit('a').allowed, true);
    assert.equal(l.hit('b').allowed, true);
    assert.equal(l.hit('a').allowed, false);
    l.reset('a');
    assert.equal(l.hit('a').allowed, true);
    assert.equal(l.hit('b').allowed, false);
  });

  it('holds at most maxKeys keys, forgetting expired keys first, then the least recently hit', () => {
    const { l, clock } = limiter({ limit: 1, windowMs: 1_000, maxKeys: 3 });
    l.hit('old');
    clock.t += 2_000;
    l.hit('a'); // 'old' has expired: it is dropped on the way
    assert.equal(l.size, 1);
    l.hit('b');
    l.hit('c');
    assert.equal(l.size, 3);
    assert.equal(l.hit('a').allowed, false, 'a is still counted');
    l.hit('d'); // full and nothing expired: the least recently hit (a) goes
    assert.equal(l.size, 3);
    assert.equal(l.hit('b').allowed, false, 'b is still counted');
    assert.equal(l.hit('c').allowed, false, 'c is still counted');
    assert.equal(l.hit('a').allowed, true, 'a was forgotten');
  });

  it('stays bounded under a flood of distinct keys', () => {
    const { l, clock } = limiter({ limit: 5, windowMs: 60_000, maxKeys: 1_000 });
    for (let i = 0; i < 50_000; i++) {
      clock.t += 1;
      l.hit(`ip:${i}`);
    }
    assert.equal(l.size, 1_000);
  });

  it('marks only the first refusal of a window, so that a flood leaves one audit record', () => {
    const { l, clock } = limiter({ limit: 1, windowMs: 1000 });
    assert.equal(l.hit('a').allowed, true);
    assert.equal(l.hit('a').firstRefusal, true);
    assert.equal(l.hit('a').firstRefusal, false);
    clock.t += 1001;
    assert.equal(l.hit('a').allowed, true);
    assert.equal(l.hit('a').firstRefusal, true);
  });

  it('refuses nonsensical settings', () => {
    assert.throws(() => new SlidingWindowRateLimiter({ limit: 0, windowMs: 1000 }), RangeError);
    assert.throws(() => new SlidingWindowRateLimiter({ limit: 1, windowMs: 0 }), RangeError);
    assert.throws(() => new SlidingWindowRateLimiter({ limit: 1, windowMs: 1000, maxKeys: 0 }), RangeError);
  });
});
