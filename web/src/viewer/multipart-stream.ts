/**
 * A multipart/related body read part by part as it arrives (RFC 2046 5.1): the viewer
 * takes a whole series' frames from one WADO-RS pixel data response and shows each frame
 * as soon as its part is complete, without waiting for the rest.
 */

export interface StreamedPart {
  /** Header names in lower case. */
  headers: Map<string, string>;
  /** The part's body, in an ArrayBuffer of its own (it can be handed to a worker). */
  body: Uint8Array;
}

export class MultipartStreamError extends Error {
  override name = 'MultipartStreamError';
}

/** The boundary parameter of a multipart Content-Type, quoted or not. */
export function boundaryOf(contentType: string | null | undefined): string | undefined {
  const match = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType ?? '');
  return match ? (match[1] ?? match[2]) : undefined;
}

const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;
const HEADER_END = new Uint8Array([CR, LF, CR, LF]);

/** Where `needle` first occurs in `hay[from, to)`, or -1. */
function indexOfBytes(hay: Uint8Array, needle: Uint8Array, from: number, to: number): number {
  const first = needle[0]!;
  const last = to - needle.length;
  const held = hay.subarray(0, to); // not the stale bytes past `to`
  for (let i = held.indexOf(first, from); i !== -1 && i <= last; i = held.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

async function* chunksOf(body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  if (!('getReader' in body)) {
    yield* body;
    return;
  }
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    // The consumer stopped early: the rest of the response is not wanted.
    reader.cancel().catch(() => {});
  }
}

/**
 * The parts of a multipart body, each yielded as soon as its closing delimiter has come.
 * Throws MultipartStreamError when the body ends before its close delimiter or a part's
 * header block is not terminated: a body cut short is never taken for a complete one.
 */
export async function* readMultipartStream(body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>, boundary: string, maxHeaderBytes = 16 * 1024): AsyncGenerator<StreamedPart> {
  // Every delimiter, the first included, is searched as CRLF "--" boundary: the buffer
  // starts with a CRLF of our own so that a body opening with its delimiter matches too.
  const delimiter = new TextEncoder().encode(`\r\n--${boundary}`);
  const decoder = new TextDecoder('utf-8');
  let buf = new Uint8Array(1 << 20);
  buf[0] = CR;
  buf[1] = LF;
  let end = 2; // bytes held
  let pos = 0; // first byte not consumed
  let scan = 0; // where the next delimiter search resumes
  let state: 'preamble' | 'after-delimiter' | 'headers' | 'body' | 'done' = 'preamble';
  let headers = new Map<string, string>();

  const append = (chunk: Uint8Array) => {
    if (end + chunk.length > buf.length) {
      // What is consumed goes; the rest moves to the front, into a larger buffer if need be.
      const held = end - pos;
      if (held + chunk.length > buf.length) {
        const next = new Uint8Array(2 ** Math.ceil(Math.log2(held + chunk.length)));
        next.set(buf.subarray(pos, end), 0);
        buf = next;
      } else {
        buf.copyWithin(0, pos, end);
      }
      scan -= pos;
      end = held;
      pos = 0;
    }
    buf.set(chunk, end);
    end += chunk.length;
  };

  for await (const chunk of chunksOf(body)) {
    append(chunk);
    for (;;) {
      if (state === 'preamble' || state === 'body') {
        const at = indexOfBytes(buf, delimiter, Math.max(scan, pos), end);
        if (at === -1) {
          scan = Math.max(pos, end - delimiter.length + 1);
          break;
        }
        if (state === 'body') yield { headers, body: buf.slice(pos, at) };
        pos = at + delimiter.length;
        state = 'after-delimiter';
      } else if (state === 'after-delimiter') {
        // "--" closes the body; otherwise transport padding, then CRLF, then the part's headers.
        if (end - pos < 2) break;
        if (buf[pos] === DASH && buf[pos + 1] === DASH) {
          state = 'done';
          break;
        }
        const lineEnd = buf.subarray(0, end).indexOf(LF, pos);
        if (lineEnd === -1) {
          if (end - pos > 1024) throw new MultipartStreamError('no line end after a multipart delimiter');
          break;
        }
        pos = lineEnd + 1;
        state = 'headers';
      } else if (state === 'headers') {
        if (end - pos >= 2 && buf[pos] === CR && buf[pos + 1] === LF) {
          headers = new Map();
          pos += 2;
        } else {
          const at = indexOfBytes(buf, HEADER_END, pos, end);
          if (at === -1) {
            if (end - pos > maxHeaderBytes) throw new MultipartStreamError(`a part's headers are longer than ${maxHeaderBytes} bytes`);
            break;
          }
          headers = new Map();
          for (const line of decoder.decode(buf.subarray(pos, at)).split('\r\n')) {
            const colon = line.indexOf(':');
            if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
          }
          pos = at + 4;
        }
        scan = pos;
        state = 'body';
      } else {
        break;
      }
    }
    if (state === 'done') return;
  }
  throw new MultipartStreamError(state === 'preamble' ? 'the body holds no multipart delimiter' : 'the multipart body ended before its closing delimiter');
}
