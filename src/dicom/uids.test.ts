import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isValidUID, newUID } from './uids.ts';

describe('isValidUID (PS3.5 9.1)', () => {
  it('accepts digits and dots, "0" components included', () => {
    assert.ok(isValidUID('1.2.840.10008.1.2.1'));
    assert.ok(isValidUID('1.2.0.3'));
    assert.ok(isValidUID('0'));
  });
  it('refuses leading zeros, empty components, other characters and padding', () => {
    for (const s of ['1.02.3', '1..2', '.1.2', '1.2.', '1.2.a', '1.2 ', '1.2\0', '', '1.-2']) {
      assert.ok(!isValidUID(s), JSON.stringify(s));
    }
  });
  it('allows 64 characters and no more', () => {
    const uid64 = '1.' + '2'.repeat(62);
    assert.equal(uid64.length, 64);
    assert.ok(isValidUID(uid64));
    assert.ok(!isValidUID(uid64 + '3'));
  });
});

describe('newUID', () => {
  it('makes valid, distinct UIDs under the 2.25 root', () => {
    const uids = new Set(Array.from({ length: 1000 }, newUID));
    assert.equal(uids.size, 1000);
    for (const u of uids) {
      assert.ok(isValidUID(u), u);
      assert.match(u, /^2\.25\.[1-9][0-9]*$/);
    }
  });
  it('encodes a 128-bit integer, of at most 39 digits', () => {
    for (let i = 0; i < 100; i++) {
      const n = BigInt(newUID().slice(5));
      assert.ok(n < 2n ** 128n);
    }
  });
});
