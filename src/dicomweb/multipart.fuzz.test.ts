/**
 * The multipart/related reader against bodies split anywhere and mutated anywhere (fixed seed,
 * bounded count): a well-formed body gives back its parts byte for byte however it arrives;
 * a broken one ends in MultipartError, never another error and never a wait without end.
 * ATRIUM_FUZZ_RUNS and ATRIUM_FUZZ_SEED make a longer run (test/support/fuzz.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Readable } from 'node:stream';
import { buffer as readAll } from 'node:stream/consumers';
import { MultipartError, readMultipart } from './multipart.ts';
import { fuzz, mutateBytes, type Fuzz } from '../../test/support/fuzz.ts';
import { stowBody } from '../../test/support/stow.ts';

/** The body in chunks of random sizes, some of one byte (a delimiter split anywhere). */
function chunked(f: Fuzz, body: Buffer): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < body.length;) {
    const n = 1 + f.int(f.random() < 0.3 ? 4 : 512);
    chunks.push(body.subarray(i, i + n));
    i += n;
  }
  return Readable.from(chunks, { objectMode: false });
}

async function partsOf(body: Readable, boundary: string): Promise<Buffer[]> {
  const parts: Buffer[] = [];
  for await (const part of readMultipart(body, boundary, { maxHeaderBytes: 1024, maxParts: 50, maxPreambleBytes: 1024 })) parts.push(await readAll(part.body));
  return parts;
}

/** Part bodies that look like delimiters: CRLF, dashes and the boundary's own prefix. */
function trickyPart(f: Fuzz, boundary: string): Buffer {
  const pieces = ['\r\n', '--', '\r', '\n', `--${boundary.slice(0, f.int(boundary.length))}`, `\r\n--${boundary.slice(0, boundary.length - 1)}`, 'x', '\0'];
  for (;;) {
    const text = Array.from({ length: f.int(40) }, () => f.pick(pieces)).join('');
    // A body holding the delimiter itself is the sender's error (RFC 2046 5.1.1): not one of these.
    if (!`\r\n${text}`.includes(`\r\n--${boundary}`)) return Buffer.from(text, 'latin1');
  }
}

describe('multipart/related reader fuzz', () => {
  const f = fuzz(0x3a17_9a27);
  it(`reads ${f.count(1500)} bodies split anywhere, mutated or not, and fails only with MultipartError (seed ${f.seed})`, { timeout: f.timeout(30_000) }, async () => {
    const outcomes = { read: 0, refused: 0 };
    for (let n = 0; n < f.count(1500); n++) {
      const boundary = f.pick(['b', 'fuzz-boundary', `x${f.int(1e6)}`, '--', 'a b']);
      const parts = Array.from({ length: 1 + f.int(4) }, () => trickyPart(f, boundary));
      const { body } = stowBody(parts, boundary);
      const mutate = f.random() < 0.5;
      const sent = mutate ? mutateBytes(f, body) : body;
      try {
        const got = await partsOf(chunked(f, sent), boundary);
        if (!mutate) assert.deepEqual(got.map((b) => b.toString('latin1')), parts.map((b) => b.toString('latin1')), `case ${n}: parts as sent`);
        outcomes.read++;
      } catch (e) {
        if (!(e instanceof MultipartError)) throw new Error(`case ${n} (seed ${f.seed}, ${mutate ? 'mutated' : 'intact'}): ${(e as Error).name}: ${(e as Error).message}\n${sent.toString('base64')}`);
        assert.ok(mutate, `case ${n}: an intact body was refused: ${e.message}`);
        outcomes.refused++;
      }
    }
    assert.ok(outcomes.read > 0 && outcomes.refused > 0, JSON.stringify(outcomes));
  });
});
