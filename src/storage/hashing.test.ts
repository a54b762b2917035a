import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HashingStream, sha256Hex } from './hashing.ts';

const emptySha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe('sha256Hex', () => {
  it('hashes what a stream yields, whatever its chunking', async () => {
    const bytes = randomBytes(100_003);
    const expected = createHash('sha256').update(bytes).digest('hex');
    assert.deepEqual(await sha256Hex(Readable.from([bytes])), { sha256: expected, size: bytes.length });
    const pieces = [bytes.subarray(0, 1), bytes.subarray(1, 70_000), bytes.subarray(70_000)];
    assert.deepEqual(await sha256Hex(Readable.from(pieces)), { sha256: expected, size: bytes.length });
  });

  it('knows the SHA-256 of nothing', async () => {
    assert.deepEqual(await sha256Hex(Readable.from([])), { sha256: emptySha256, size: 0 });
  });

  it('matches the published digest of "abc" (FIPS 180-2)', async () => {
    const { sha256 } = await sha256Hex(Readable.from([Buffer.from('abc')]));
    assert.equal(sha256, 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('rejects with the error of the stream', async () => {
    const failure = new Error('disk gone');
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.from('some');
      throw failure;
    }
    await assert.rejects(sha256Hex(Readable.from(failing())), (e: unknown) => e === failure);
  });
});

describe('HashingStream', () => {
  it('passes the bytes through unchanged while counting and hashing them', async () => {
    const bytes = randomBytes(50_000);
    const hashing = new HashingStream();
    const received: Buffer[] = [];
    await pipeline(
      Readable.from([bytes.subarray(0, 123), bytes.subarray(123)]),
      hashing,
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          received.push(chunk);
          callback();
        },
      }),
    );
    assert.ok(Buffer.concat(received).equals(bytes));
    assert.equal(hashing.size, bytes.length);
    assert.equal(hashing.sha256, createHash('sha256').update(bytes).digest('hex'));
  });

  it('refuses to give a SHA-256 before the input has ended', () => {
    const hashing = new HashingStream();
    hashing.write(Buffer.from('partial'));
    assert.equal(hashing.size, 7);
    assert.throws(() => hashing.sha256, /before the stream ended/);
    hashing.destroy();
  });
});
