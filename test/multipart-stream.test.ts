/**
 * The viewer's multipart reader (web/src/viewer/multipart-stream.ts), fed as the browser
 * feeds it: a ReadableStream cut into chunks anywhere, delimiters and CRLFs included.
 * Its use on a real WADO-RS answer is in dicomweb.test.ts and, in Chromium, portal.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { boundaryOf, readMultipartStream, MultipartStreamError } from '../web/src/viewer/multipart-stream.ts';

const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');

function streamOf(bytes: Buffer, cuts: number[]): ReadableStream<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    chunks.push(new Uint8Array(bytes.subarray(at, cut)));
    at = cut;
  }
  return new ReadableStream({
    pull(controller) {
      const next = chunks.shift();
      if (next) controller.enqueue(next);
      else controller.close();
    },
  });
}

async function partsOf(body: ReadableStream<Uint8Array>, boundary: string) {
  const parts = [];
  for await (const p of readMultipartStream(body, boundary)) parts.push({ headers: Object.fromEntries(p.headers), body: text(p.body), own: p.body.byteOffset === 0 && p.body.buffer.byteLength === p.body.byteLength });
  return parts;
}

const boundary = 'atrium-b0undary';
// A preamble, a part whose body holds CRLF "--" and a near-boundary, a part with no headers,
// transport padding after a delimiter, an empty body, then the close delimiter and an epilogue.
const body = Buffer.from([
  'preamble to ignore\r\n',
  `--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Location: http://a/frames/1\r\n\r\n`,
  `one\r\n--atrium-b0undar\r\n--not-it\r\n\r\n`,
  `--${boundary}  \r\n\r\n`,
  'two',
  `\r\n--${boundary}\r\nContent-Type: text/plain\r\n\r\n`,
  `\r\n--${boundary}--\r\nepilogue`,
].join(''), 'latin1');
const expected = [
  { headers: { 'content-type': 'application/octet-stream', 'content-location': 'http://a/frames/1' }, body: 'one\r\n--atrium-b0undar\r\n--not-it\r\n', own: true },
  { headers: {}, body: 'two', own: true },
  { headers: { 'content-type': 'text/plain' }, body: '', own: true },
];

describe('viewer multipart stream reader', () => {
  it('finds the boundary of a Content-Type, quoted or not', () => {
    assert.equal(boundaryOf('multipart/related; type="application/octet-stream"; boundary=abc-1'), 'abc-1');
    assert.equal(boundaryOf('multipart/related; boundary="a b:c"; type=x'), 'a b:c');
    assert.equal(boundaryOf('application/json'), undefined);
    assert.equal(boundaryOf(null), undefined);
  });

  it('gives the same parts however the body is cut into chunks', async () => {
    assert.deepEqual(await partsOf(streamOf(body, []), boundary), expected);
    for (let cut = 1; cut < body.length; cut++) {
      assert.deepEqual(await partsOf(streamOf(body, [cut]), boundary), expected, `cut at ${cut}`);
    }
    const everyByte = Array.from({ length: body.length - 1 }, (_, i) => i + 1);
    assert.deepEqual(await partsOf(streamOf(body, everyByte), boundary), expected, 'one byte a chunk');
  });

  it('reads parts larger than its buffer, in order', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    const whole = Buffer.concat([
      Buffer.from(`--${boundary}\r\n\r\n`), big, Buffer.from(`\r\n--${boundary}\r\n\r\n`), big.subarray(5), Buffer.from(`\r\n--${boundary}--`),
    ]);
    const cuts = Array.from({ length: Math.floor(whole.length / 65_536) }, (_, i) => (i + 1) * 65_536);
    const parts = [];
    for await (const p of readMultipartStream(streamOf(whole, cuts), boundary)) parts.push(Buffer.from(p.body));
    assert.equal(parts.length, 2);
    assert.ok(parts[0]!.equals(big));
    assert.ok(parts[1]!.equals(big.subarray(5)));
  });

  it('refuses a body cut short, or one that is not multipart, instead of taking it for complete', async () => {
    const cut = body.subarray(0, body.indexOf(`\r\n--${boundary}--`));
    await assert.rejects(partsOf(streamOf(cut, []), boundary), (e: unknown) => e instanceof MultipartStreamError && /before its closing delimiter/.test(e.message));
    await assert.rejects(partsOf(streamOf(Buffer.from('{"not":"multipart"}'), []), boundary), /no multipart delimiter/);
    const endless = Buffer.concat([Buffer.from(`--${boundary}\r\nX-Long: `), Buffer.alloc(20_000, 0x61)]);
    await assert.rejects(partsOf(streamOf(endless, [100]), boundary), /headers are longer/);
  });

  it('cancels the response when its reader stops early', async () => {
    let cancelled = false;
    const source = streamOf(body, [10, 200]);
    const reader = source.getReader();
    const watched = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel() {
        cancelled = true;
      },
    });
    for await (const part of readMultipartStream(watched, boundary)) {
      assert.equal(text(part.body), expected[0]!.body);
      break;
    }
    assert.ok(cancelled);
  });
});
