import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { parseMediaType } from './media-type.ts';
import { multipartBoundary, MultipartError, readMultipart, writeMultipart, type MultipartPart, type MultipartSource } from './multipart.ts';

interface ReadPart {
  headers: Record<string, string>;
  contentType?: string;
  body: Buffer;
}

async function bufferOf(stream: AsyncIterable<Buffer | Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

/** Reads every part, each body to its end before asking for the next. */
async function readAll(body: Readable, boundary: string, limits?: Parameters<typeof readMultipart>[2]): Promise<ReadPart[]> {
  const out: ReadPart[] = [];
  for await (const part of readMultipart(body, boundary, limits)) {
    const p: ReadPart = { headers: part.headers, body: await bufferOf(part.body) };
    if (part.contentType !== undefined) p.contentType = part.contentType;
    out.push(p);
  }
  return out;
}

/** A body made of these chunks exactly (no coalescing), as a socket would deliver them. */
function chunked(...chunks: Array<Buffer | string>): Readable {
  return Readable.from(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c, 'latin1') : c)));
}

async function* sources(...parts: MultipartSource[]): AsyncGenerator<MultipartSource> {
  yield* parts;
}

async function written(parts: MultipartSource[], boundary: string): Promise<Buffer> {
  return bufferOf(writeMultipart(sources(...parts), boundary));
}

/** Bytes that are not a boundary but are hard on a scanner: every byte value, CRs, dashes, CRLF--. */
function trickyBytes(size: number, seed = 1): Buffer {
  const b = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const r = x >> 16;
    b[i] = r % 7 === 0 ? 0x0d : r % 11 === 0 ? 0x0a : r % 13 === 0 ? 0x2d : r & 0xff;
  }
  return b;
}

describe('writeMultipart then readMultipart', () => {
  it('gives back parts of 0, 1 and 100 KiB bytes, their types and headers', async () => {
    const boundary = multipartBoundary();
    const bodies = [Buffer.alloc(0), Buffer.from([0x42]), trickyBytes(100 * 1024)];
    const bytes = await written(
      bodies.map((body, i) => ({ contentType: 'application/dicom', headers: { 'Content-Location': `/part/${i}` }, body })),
      boundary,
    );
    const parts = await readAll(chunked(bytes), boundary);
    assert.equal(parts.length, 3);
    parts.forEach((p, i) => {
      assert.equal(p.contentType, 'application/dicom');
      assert.deepEqual(p.headers, { 'content-type': 'application/dicom', 'content-location': `/part/${i}` });
      assert.ok(p.body.equals(bodies[i]!), `body of part ${i}`);
    });
  });

  it('keeps bytes in a body that look like a delimiter but are not one', async () => {
    const boundary = multipartBoundary();
    const lookalikes = [
      `\r\n--${boundary}X`, // longer boundary
      `\r\n--${boundary.slice(0, -1)}`, // one byte short
      `\r\n--${boundary} \t x\r\n`, // padding followed by something else than CRLF
      `--${boundary}\r\n`, // no CRLF before it
      `\r\n-${boundary}\r\n`,
      `\r\n--${boundary}-\r\n`,
    ];
    const bodies = [
      Buffer.from(lookalikes.join('payload'), 'latin1'),
      Buffer.from(`ends with a partial delimiter\r\n--${boundary.slice(0, 10)}`, 'latin1'),
      Buffer.from(`\r\n--${boundary}x`, 'latin1'),
      Buffer.from('\r\n\r\n--\r'),
    ];
    const bytes = await written(bodies.map((body) => ({ contentType: 'application/octet-stream', body })), boundary);
    const parts = await readAll(chunked(bytes), boundary);
    assert.deepEqual(parts.map((p) => p.body.toString('latin1')), bodies.map((b) => b.toString('latin1')));
  });

  it('streams bodies given as Readables and async iterables, and ends with the close delimiter', async () => {
    const boundary = 'b';
    async function* pieces(): AsyncGenerator<Buffer> {
      yield Buffer.from('ab');
      yield Buffer.alloc(0);
      yield Buffer.from('cd');
    }
    const bytes = await written([
      { contentType: 'image/jpeg', body: Readable.from([Buffer.from('xy'), Buffer.from('z')]) },
      { contentType: 'application/dicom', body: pieces() },
    ], boundary);
    assert.equal(bytes.toString(), '--b\r\nContent-Type: image/jpeg\r\n\r\nxyz\r\n--b\r\nContent-Type: application/dicom\r\n\r\nabcd\r\n--b--\r\n');
  });
});

describe('interoperability with dicomweb-client (the peer our tests drive STOW-RS and WADO-RS with)', () => {
  interface Message {
    multipartEncode(datasets: ArrayBuffer[], boundary?: string, contentType?: string): { data: ArrayBuffer; boundary: string };
    multipartDecode(response: ArrayBuffer): Uint8Array[];
  }
  // The package exports only its API object; its multipart codec sits in an untyped ES module.
  const load = async (): Promise<Message> => (await import('dicomweb-client/src/message.js' as string)) as Message;
  const arrayBufferOf = (b: Buffer): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.length) as ArrayBuffer;
  const bodies = [trickyBytes(70_000, 21), Buffer.from([0]), trickyBytes(5000, 22)];

  it('reads the STOW-RS body dicomweb-client builds (CRLF before the first delimiter, no CRLF after the last)', async () => {
    const { multipartEncode } = await load();
    const { data, boundary } = multipartEncode(bodies.map(arrayBufferOf));
    const bytes = Buffer.from(data);
    assert.equal(bytes.subarray(0, 4).toString(), '\r\n--');
    const parts = await readAll(chunked(bytes.subarray(0, 3000), bytes.subarray(3000)), boundary);
    assert.deepEqual(parts.map((p) => p.contentType), ['application/dicom', 'application/dicom', 'application/dicom']);
    parts.forEach((p, i) => assert.ok(p.body.equals(bodies[i]!), `part ${i}`));
  });

  it('writes a WADO-RS body that dicomweb-client decodes into the same parts', async () => {
    const { multipartDecode } = await load();
    const bytes = await written(bodies.map((body) => ({ contentType: 'application/dicom; transfer-syntax=1.2.840.10008.1.2.1', body })), multipartBoundary());
    const parts = multipartDecode(arrayBufferOf(bytes));
    assert.equal(parts.length, 3);
    parts.forEach((p, i) => assert.ok(Buffer.from(p).equals(bodies[i]!), `part ${i}`));
  });
});

describe('over HTTP', () => {
  it('reads a STOW-RS request streamed in chunked encoding and answers on the same request', async () => {
    const bodies = [trickyBytes(3 * 1024 * 1024, 31), Buffer.alloc(0), trickyBytes(777, 32)];
    const server = createServer((req, res) => {
      void (async () => {
        const boundary = parseMediaType(req.headers['content-type']!).params.boundary!;
        const digests: string[] = [];
        for await (const part of readMultipart(req, boundary)) {
          const hash = createHash('sha256');
          await pipeline(part.body, hash);
          digests.push(`${part.contentType} ${hash.digest('hex')}`);
        }
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(digests));
      })().catch((e: unknown) => {
        res.statusCode = 400;
        res.end(String(e));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const boundary = multipartBoundary();
      const { port } = server.address() as AddressInfo;
      const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = httpRequest({ port, host: '127.0.0.1', method: 'POST', path: '/studies', headers: { 'content-type': `multipart/related; type="application/dicom"; boundary="${boundary}"` } }, (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
        });
        req.on('error', reject);
        Readable.from(writeMultipart(sources(...bodies.map((body) => ({ contentType: 'application/dicom', body }))), boundary)).pipe(req);
      });
      assert.equal(answer.status, 200, answer.text);
      assert.deepEqual(JSON.parse(answer.text), bodies.map((b) => `application/dicom ${createHash('sha256').update(b).digest('hex')}`));
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('writeMultipart', () => {
  it('takes the next part only once the previous one is written', async () => {
    const log: string[] = [];
    async function* lazyParts(): AsyncGenerator<MultipartSource> {
      for (let i = 0; i < 3; i++) {
        log.push(`open ${i}`);
        yield { contentType: 'application/dicom', body: Buffer.from(`part ${i}`) };
      }
    }
    for await (const chunk of writeMultipart(lazyParts(), 'b')) log.push(`out ${chunk.toString().replace(/\r\n/g, '|')}`);
    assert.deepEqual(log, [
      'open 0', 'out --b|Content-Type: application/dicom||', 'out part 0',
      'open 1', 'out |--b|Content-Type: application/dicom||', 'out part 1',
      'open 2', 'out |--b|Content-Type: application/dicom||', 'out part 2',
      'out |--b--|',
    ]);
  });

  it('writes a Uint8Array body that is not a Buffer, from its own window only', async () => {
    const backing = new Uint8Array([9, 9, 0x61, 0x62, 0x63, 9]);
    const bytes = await written([{ contentType: 'application/octet-stream', body: backing.subarray(2, 5) }], 'b');
    assert.equal(bytes.toString('latin1'), '--b\r\nContent-Type: application/octet-stream\r\n\r\nabc\r\n--b--\r\n');
  });

  it('refuses a boundary outside RFC 2046 and header values that would split a line', async () => {
    await assert.rejects(written([], 'a'.repeat(71)), MultipartError);
    await assert.rejects(written([], 'ends with space '), MultipartError);
    await assert.rejects(written([{ contentType: 'a/b\r\nX-Evil: 1', body: Buffer.alloc(0) }], 'b'), /cannot write part header/);
    await assert.rejects(written([{ contentType: 'a/b', headers: { 'Bad Name': 'x' }, body: Buffer.alloc(0) }], 'b'), /cannot write part header/);
  });

  it('writes a body with no part as a lone close delimiter', async () => {
    assert.equal((await written([], 'b')).toString(), '--b--\r\n');
    assert.deepEqual(await readAll(chunked('--b--\r\n'), 'b'), []);
  });

  it('passes the error of a part body on to the reader of the output', async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.from('x');
      throw new Error('disk gone');
    }
    await assert.rejects(written([{ contentType: 'application/dicom', body: failing() }], 'b'), /disk gone/);
  });
});

describe('multipartBoundary', () => {
  it('gives distinct boundaries made of token characters, within 70 characters', () => {
    const a = multipartBoundary();
    const b = multipartBoundary();
    assert.notEqual(a, b);
    assert.match(a, /^[0-9A-Za-z-]{20,70}$/);
    assert.equal(parseMediaType(`multipart/related; boundary=${a}`).params.boundary, a);
  });
});

describe('readMultipart', () => {
  // Preamble, padding after a delimiter, a part without headers, an empty part, folded header, epilogue.
  const boundary = 'simple boundary';
  const message = [
    'This is the preamble.  It is to be ignored.\r\n',
    `--${boundary}  \t\r\n`,
    'Content-Type: application/dicom\r\n',
    'X-Long: first\r\n  second\r\n',
    '\r\n',
    'one\r\n-- tricky\r',
    `\r\n--${boundary}\r\n`,
    '\r\n',
    'no headers',
    `\r\n--${boundary}\r\n`,
    'Content-Type: text/plain\r\n',
    '\r\n',
    `\r\n--${boundary}--  \r\n`,
    'This is the epilogue.  It is also to be ignored.\r\n',
  ].join('');
  const expected: ReadPart[] = [
    { headers: { 'content-type': 'application/dicom', 'x-long': 'first second' }, contentType: 'application/dicom', body: Buffer.from('one\r\n-- tricky\r') },
    { headers: {}, body: Buffer.from('no headers') },
    { headers: { 'content-type': 'text/plain' }, contentType: 'text/plain', body: Buffer.alloc(0) },
  ];

  it('reads RFC 2046 parts around a preamble, padding, a part without headers, an empty part and an epilogue', async () => {
    assert.deepEqual(await readAll(chunked(message), boundary), expected);
  });

  it('gives the same parts wherever the body is split in two chunks', async () => {
    const bytes = Buffer.from(message, 'latin1');
    for (let at = 0; at <= bytes.length; at++) {
      const parts = await readAll(chunked(bytes.subarray(0, at), bytes.subarray(at)), boundary);
      assert.deepEqual(parts, expected, `split at ${at}`);
    }
  });

  it('gives the same parts from one-byte chunks, and from every split in three chunks', async () => {
    const bytes = Buffer.from(message, 'latin1');
    const single = [...bytes].map((b) => Buffer.from([b]));
    assert.deepEqual(await readAll(Readable.from(single), boundary), expected);
    for (let a = 0; a <= bytes.length; a += 3) {
      for (let b = a; b <= bytes.length; b += 5) {
        const parts = await readAll(chunked(bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)), boundary);
        assert.deepEqual(parts, expected, `split at ${a} and ${b}`);
      }
    }
  });

  it('accepts a first delimiter after a CRLF, and an end without CRLF after the close delimiter', async () => {
    const parts = await readAll(chunked('\r\n--b\r\nContent-Type: a/b\r\n\r\nxyz\r\n--b--'), 'b');
    assert.deepEqual(parts, [{ headers: { 'content-type': 'a/b' }, contentType: 'a/b', body: Buffer.from('xyz') }]);
  });

  it('reads a body whose quoted boundary holds spaces and punctuation', async () => {
    const mt = parseMediaType(`multipart/related; type="application/dicom"; boundary="=_a b'(c)+,-./:=?z"`);
    const boundary = mt.params.boundary!;
    assert.equal(boundary, "=_a b'(c)+,-./:=?z");
    const bytes = await written([{ contentType: 'application/dicom', body: Buffer.from('DICM') }, { contentType: 'application/dicom', body: Buffer.from('more') }], boundary);
    const parts = await readAll(chunked(bytes), boundary);
    assert.deepEqual(parts.map((p) => p.body.toString()), ['DICM', 'more']);
  });

  it('joins repeated headers with ", "', async () => {
    const [part] = await readAll(chunked('--b\r\nX-A: 1\r\nx-a: 2\r\n\r\nz\r\n--b--'), 'b');
    assert.equal(part!.headers['x-a'], '1, 2');
  });

  describe('errors', () => {
    it('throws "missing closing boundary" and errors the part body when the stream ends inside a part', async () => {
      const parts = readMultipart(chunked('--b\r\nContent-Type: a/b\r\n\r\nhalf of a bo', 'dy'), 'b');
      const first = await parts.next();
      assert.equal(first.done, false);
      const part = first.value as MultipartPart;
      await assert.rejects(bufferOf(part.body), (e: unknown) => e instanceof MultipartError && /missing closing boundary: the body ended inside part 1/.test(e.message));
      await assert.rejects(parts.next(), /missing closing boundary/);
    });

    it('throws from the generator even when the truncated part was not read', async () => {
      const bytes = Buffer.from('--b\r\n\r\nfirst\r\n--b\r\n\r\nsecond, truncated', 'latin1');
      for (let cut = 7; cut < bytes.length; cut++) {
        await assert.rejects(readAll(chunked(bytes.subarray(0, cut)), 'b'), MultipartError, `cut at ${cut}`);
      }
      await assert.rejects(async () => {
        for await (const part of readMultipart(chunked(bytes), 'b')) part.body.resume();
      }, /missing closing boundary: the body ended inside part 2/);
    });

    it('throws when the stream ends inside the headers of a part or right after a delimiter', async () => {
      await assert.rejects(readAll(chunked('--b\r\nContent-Type: a'), 'b'), /missing closing boundary: the body ended inside the headers of part 1/);
      await assert.rejects(readAll(chunked('--b\r\n'), 'b'), /missing closing boundary/);
      await assert.rejects(readAll(chunked('--b\r\n\r\nx\r\n--b'), 'b'), /missing closing boundary/);
      await assert.rejects(readAll(chunked('--b\r\n\r\nx\r\n--b-'), 'b'), /missing closing boundary/);
    });

    it('says "body is not multipart/related with boundary ..." when no delimiter is found', async () => {
      await assert.rejects(readAll(chunked('{"00100010": {"vr": "PN"}}'), 'b'), (e: unknown) => e instanceof MultipartError && /^body is not multipart\/related with boundary "b": no delimiter line "--b"$/.test(e.message));
      await assert.rejects(readAll(chunked(''), 'b'), /body is not multipart/);
      await assert.rejects(readAll(chunked('--other\r\n\r\nx\r\n--other--'), 'b'), /body is not multipart/);
      // A DICOM file posted as is: fail after the preamble limit rather than read gigabytes.
      const large = Readable.from((function* () { for (let i = 0; i < 1000; i++) yield Buffer.alloc(64 * 1024, 1); })());
      await assert.rejects(readAll(large, 'b', { maxPreambleBytes: 100_000 }), /body is not multipart\/related with boundary "b": no delimiter line "--b" in its first 100000 bytes/);
    });

    it('refuses a header block larger than maxHeaderBytes', async () => {
      const body = `--b\r\nX-Big: ${'a'.repeat(2000)}\r\n\r\nx\r\n--b--`;
      await assert.rejects(readAll(chunked(body), 'b', { maxHeaderBytes: 1000 }), /the headers of part 1 are larger than 1000 bytes/);
      const unterminated = Readable.from((function* () { yield Buffer.from('--b\r\n'); for (;;) yield Buffer.alloc(1000, 0x61); })());
      await assert.rejects(readAll(unterminated, 'b', { maxHeaderBytes: 5000 }), /larger than 5000 bytes/);
      assert.equal((await readAll(chunked(body), 'b', { maxHeaderBytes: 3000 }))[0]!.headers['x-big']!.length, 2000);
    });

    it('refuses malformed header lines', async () => {
      await assert.rejects(readAll(chunked('--b\r\nno colon here\r\n\r\nx\r\n--b--'), 'b'), /malformed headers in part 1: "no colon here" is not "Name: value"/);
      await assert.rejects(readAll(chunked('--b\r\n\r\nx\r\n--b\r\nBad Name: 1\r\n\r\nx\r\n--b--'), 'b'), /malformed headers in part 2/);
      await assert.rejects(readAll(chunked('--b\r\n folded: first\r\n\r\nx\r\n--b--'), 'b'), /starts with a folded line/);
    });

    it('refuses more parts than maxParts', async () => {
      const body = '--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b\r\n\r\n3\r\n--b--';
      assert.equal((await readAll(chunked(body), 'b', { maxParts: 3 })).length, 3);
      await assert.rejects(readAll(chunked(body), 'b', { maxParts: 2 }), /more than 2 parts/);
    });

    it('refuses an empty boundary', async () => {
      await assert.rejects(readAll(chunked('--\r\n\r\n'), ''), /invalid multipart boundary/);
    });

    it('passes on the error of the source stream as it is', async () => {
      class TooLarge extends Error {}
      const source = new Readable({ read() {} });
      source.push(Buffer.from('--b\r\n\r\npart'));
      const parts = readMultipart(source, 'b');
      const part = (await parts.next()).value as MultipartPart;
      setImmediate(() => source.destroy(new TooLarge('the request is larger than 10 bytes')));
      await assert.rejects(bufferOf(part.body), TooLarge);
      await assert.rejects(parts.next(), TooLarge);
    });

    it('fails when the source closes without ending', async () => {
      const source = new Readable({ read() {} });
      source.push(Buffer.from('--b\r\n\r\npart'));
      setImmediate(() => source.destroy());
      await assert.rejects(readAll(source, 'b'), /closed before its end/);
    });
  });

  describe('flow', () => {
    it('drains a part the caller did not read, and closes its stream for whoever holds it', async () => {
      const bytes = await written([
        { contentType: 'a/b', body: trickyBytes(300 * 1024, 7) },
        { contentType: 'c/d', body: Buffer.from('second') },
      ], 'bnd');
      const seen: string[] = [];
      let skipped: Readable | undefined;
      for await (const part of readMultipart(chunked(bytes.subarray(0, 1000), bytes.subarray(1000, 200_000), bytes.subarray(200_000)), 'bnd')) {
        if (part.contentType === 'a/b') {
          skipped = part.body;
          continue;
        }
        seen.push((await bufferOf(part.body)).toString());
      }
      assert.deepEqual(seen, ['second']);
      assert.equal(skipped!.destroyed, true);
      assert.equal(skipped!.readableEnded, false);
    });

    it('drains the rest of a part the caller read half of or destroyed', async () => {
      const first = trickyBytes(500 * 1024, 3);
      const bytes = await written([{ contentType: 'a/b', body: first }, { contentType: 'c/d', body: Buffer.from('second') }], 'bnd');
      const chunks = Array.from({ length: Math.ceil(bytes.length / 16384) }, (_, i) => bytes.subarray(i * 16384, (i + 1) * 16384));
      for (const how of ['half', 'destroy']) {
        const seen: string[] = [];
        for await (const part of readMultipart(Readable.from(chunks), 'bnd')) {
          if (part.contentType !== 'a/b') {
            seen.push((await bufferOf(part.body)).toString());
            continue;
          }
          if (how === 'destroy') {
            part.body.destroy();
            continue;
          }
          let got = 0;
          for await (const c of part.body) {
            got += (c as Buffer).length;
            if (got > 100_000) break;
          }
        }
        assert.deepEqual(seen, ['second'], how);
      }
    });

    it('does not read ahead of a consumer that does not read (backpressure)', async () => {
      let produced = 0;
      const source = Readable.from((function* () {
        yield Buffer.from('--b\r\nContent-Type: a/b\r\n\r\n');
        for (let i = 0; i < 1000; i++) {
          produced++;
          yield Buffer.alloc(64 * 1024, 0x61);
        }
        yield Buffer.from('\r\n--b--');
      })());
      const parts = readMultipart(source, 'b');
      const part = (await parts.next()).value as MultipartPart;
      part.body.pause();
      await new Promise((r) => setTimeout(r, 50));
      // A few chunks fill the part's and the source's buffers; then reading stops.
      assert.ok(produced < 10, `${produced} chunks were read while nobody read the part`);
      let total = 0;
      for await (const c of part.body) total += (c as Buffer).length;
      assert.equal(total, 1000 * 64 * 1024);
      assert.equal((await parts.next()).done, true);
    });

    it('leaves the source open and paused when the caller stops early', async () => {
      const source = new Readable({ read() {} });
      source.push(Buffer.from('--b\r\n\r\none\r\n--b\r\n\r\ntwo'));
      for await (const part of readMultipart(source, 'b')) {
        assert.equal((await bufferOf(part.body)).toString(), 'one');
        break;
      }
      assert.equal(source.destroyed, false);
      assert.equal(source.isPaused(), true);
      assert.equal(source.listenerCount('data'), 0);
    });

    it('closes with an error a part body left open when the caller stops early', async () => {
      const source = chunked('--b\r\n\r\none', ' more\r\n--b--');
      let body: Readable | undefined;
      for await (const part of readMultipart(source, 'b')) {
        body = part.body;
        break;
      }
      await assert.rejects(bufferOf(body!), /multipart reading stopped before the end of this part/);
    });

    it('reads the epilogue to the end of the source', async () => {
      const source = chunked('--b\r\n\r\none\r\n--b--\r\n', 'epilogue '.repeat(1000));
      const parts = await readAll(source, 'b');
      assert.equal(parts.length, 1);
      assert.equal(source.readableEnded, true);
    });
  });

  it('passes 512 MiB generated on the fly with bounded memory', async (t) => {
    const partSize = 512 * 1024 * 1024;
    const chunkSize = 64 * 1024;
    const pattern = trickyBytes(chunkSize, 11);
    const boundary = multipartBoundary();
    async function* bigBody(): AsyncGenerator<Buffer> {
      for (let sent = 0; sent < partSize; sent += chunkSize) yield pattern;
    }
    // Pieces are cut at odd offsets (without copying), so that every delimiter straddles two chunks.
    async function* socket(): AsyncGenerator<Buffer> {
      for await (const piece of writeMultipart(sources(
        { contentType: 'application/dicom', body: bigBody() },
        { contentType: 'application/dicom', body: Buffer.from('tail part') },
      ), boundary)) {
        const cut = piece.length > 1000 ? 777 : 5;
        yield piece.subarray(0, cut);
        if (piece.length > cut) yield piece.subarray(cut);
      }
    }
    global.gc?.();
    const rssBefore = process.memoryUsage.rss();
    let rssPeak = rssBefore;
    const sizes: number[] = [];
    let tail = '';
    let checkedHead = false;
    for await (const part of readMultipart(Readable.from(socket()), boundary)) {
      let size = 0;
      let n = 0;
      for await (const chunk of part.body) {
        const c = chunk as Buffer;
        if (!checkedHead && sizes.length === 0) {
          assert.ok(c.equals(pattern.subarray(0, c.length)), 'first bytes of the big part');
          checkedHead = true;
        }
        size += c.length;
        if (++n % 256 === 0) rssPeak = Math.max(rssPeak, process.memoryUsage.rss());
        if (sizes.length === 1) tail += c.toString();
      }
      sizes.push(size);
    }
    const growthMB = (rssPeak - rssBefore) / 1e6;
    t.diagnostic(`512 MiB through writeMultipart + readMultipart: rss growth ${growthMB.toFixed(1)} MB (speed: npm run bench:multipart)`);
    assert.deepEqual(sizes, [partSize, 9]);
    assert.equal(tail, 'tail part');
    assert.ok(growthMB < 100, `rss grew by ${growthMB.toFixed(1)} MB`);
  });
});
