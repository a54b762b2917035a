/**
 * Streaming multipart/related (RFC 2387 over RFC 2046 5.1) for STOW-RS request bodies and
 * WADO-RS responses (PS3.18 8.6, 8.7). Parts are never buffered: a part body flows from the
 * request to its consumer with backpressure, and only the few bytes that could start a
 * delimiter are held back.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Readable, type Writable } from 'node:stream';

export class MultipartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MultipartError';
  }
}

export interface MultipartPart {
  /** Header names lower-case; repeated headers joined with ", ". */
  headers: Record<string, string>;
  contentType?: string;
  /** Must be consumed or destroyed before asking for the next part. */
  body: Readable;
}

export interface MultipartLimits {
  /** Largest header block of one part, in bytes (default 16 KiB). */
  maxHeaderBytes?: number;
  /** Most parts in one body (default 100 000). */
  maxParts?: number;
  /** Most bytes before the first delimiter (default 64 KiB): past that the body is not multipart. */
  maxPreambleBytes?: number;
}

export interface MultipartSource {
  contentType: string;
  headers?: Record<string, string>;
  body: Buffer | Uint8Array | AsyncIterable<Buffer> | Readable;
  /** For a Buffer body given to sendMultipart: called once it is written, the buffer free again. */
  sent?: () => void;
}

const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;
const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');
/** Transport padding allowed after a boundary (RFC 2046 5.1.1 LWSP); more is not a delimiter line. */
const MAX_PADDING = 256;

// ---- reading -----------------------------------------------------------------

/**
 * Pulls chunks from a Readable through 'data' events (no copies, unlike read() which
 * concatenates what is buffered) and pauses it while chunks wait, so backpressure reaches the
 * socket. It never destroys the source: an HTTP request stream must stay open for the answer.
 */
class ChunkSource {
  private readonly queue: Buffer[] = [];
  private ended = false;
  private failure: unknown;
  private wake: (() => void) | undefined;
  private readonly onData = (chunk: Buffer | string | Uint8Array): void => {
    this.queue.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.stream.pause();
    this.notify();
  };
  private readonly onEnd = (): void => {
    this.ended = true;
    this.notify();
  };
  private readonly onError = (e: unknown): void => {
    this.failure ??= e;
    this.notify();
  };
  private readonly onClose = (): void => {
    if (!this.ended) this.failure ??= new MultipartError('the multipart body stream closed before its end');
    this.notify();
  };

  constructor(private readonly stream: Readable) {
    if (stream.readableEnded) this.ended = true;
    else if (stream.destroyed) this.failure = new MultipartError('the multipart body stream is already destroyed');
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('error', this.onError);
    stream.on('close', this.onClose);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** The next chunk, or null at the end of the stream. */
  async next(): Promise<Buffer | null> {
    for (;;) {
      const chunk = this.queue.shift();
      if (chunk !== undefined) {
        if (this.queue.length === 0 && !this.ended) this.stream.resume();
        if (chunk.length > 0) return chunk;
        continue;
      }
      if (this.failure !== undefined) throw this.failure;
      if (this.ended) return null;
      this.stream.resume();
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  detach(): void {
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onEnd);
    this.stream.off('error', this.onError);
    this.stream.off('close', this.onClose);
    if (!this.ended) this.stream.pause();
  }
}

type ScanState = 'preamble' | 'headers' | 'body' | 'epilogue';

/** The byte-level state machine: preamble, then (headers, body)*, then epilogue. */
class MultipartScanner {
  state: ScanState = 'preamble';
  /** Parts begun so far (1-based number of the current part). */
  partNumber = 0;
  private readonly source: ChunkSource;
  /** "\r\n--" + boundary: every delimiter, the first one included once a CRLF is put before the body. */
  private readonly delimiter: Buffer;
  /** Unprocessed bytes; in a body, only a possible delimiter start is kept between chunks. */
  private buf: Buffer;
  private searchFrom = 0;
  private readonly maxHeaderBytes: number;
  private readonly maxPreambleBytes: number;
  private preambleSeen = 0;

  constructor(body: Readable, private readonly boundary: string, limits: MultipartLimits) {
    this.source = new ChunkSource(body);
    this.delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
    // The first delimiter may open the body without a CRLF before it: supply one.
    this.buf = CRLF;
    this.maxHeaderBytes = limits.maxHeaderBytes ?? 16 * 1024;
    this.maxPreambleBytes = limits.maxPreambleBytes ?? 64 * 1024;
  }

  /** Appends the next chunk to buf; false at the end of the body. */
  private async fill(): Promise<boolean> {
    const chunk = await this.source.next();
    if (chunk === null) return false;
    // buf is empty or small here except across a header block, so this copy is rare and short.
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    return true;
  }

  /**
   * What the candidate delimiter at `at` is: 'next' (delimiter line, a part follows), 'close',
   * 'none' (the bytes only look like one) or 'more' (cannot tell yet). `end` is where the line ends.
   */
  private delimiterAt(at: number): { kind: 'next' | 'close' | 'none' | 'more'; end: number } {
    const buf = this.buf;
    let p = at + this.delimiter.length;
    if (p + 2 > buf.length) {
      // Even a truncated "--" can be told apart from "\r\n" or padding by its first byte.
      if (p < buf.length && buf[p] !== DASH && buf[p] !== CR && buf[p] !== 0x20 && buf[p] !== 0x09) return { kind: 'none', end: 0 };
      return { kind: 'more', end: 0 };
    }
    if (buf[p] === DASH && buf[p + 1] === DASH) return { kind: 'close', end: p + 2 };
    const paddingStart = p;
    while (p < buf.length && (buf[p] === 0x20 || buf[p] === 0x09)) {
      p++;
      if (p - paddingStart > MAX_PADDING) return { kind: 'none', end: 0 };
    }
    if (p + 2 > buf.length) return p < buf.length && buf[p] !== CR ? { kind: 'none', end: 0 } : { kind: 'more', end: 0 };
    if (buf[p] === CR && buf[p + 1] === LF) return { kind: 'next', end: p + 2 };
    return { kind: 'none', end: 0 };
  }

  /** Length of the longest suffix of buf[from..] that begins the delimiter (so might end as one). */
  private heldBack(from: number): number {
    const buf = this.buf;
    const len = buf.length;
    let i = buf.indexOf(CR, Math.max(from, len - this.delimiter.length + 1));
    while (i !== -1) {
      if (buf.compare(this.delimiter, 0, len - i, i, len) === 0) return len - i;
      i = buf.indexOf(CR, i + 1);
    }
    return 0;
  }

  private after(kind: 'next' | 'close', end: number): void {
    this.buf = this.buf.subarray(end);
    this.searchFrom = 0;
    this.state = kind === 'next' ? 'headers' : 'epilogue';
  }

  /** Skips the preamble up to the first delimiter line. */
  async skipPreamble(): Promise<void> {
    for (;;) {
      const idx = this.buf.indexOf(this.delimiter, this.searchFrom);
      if (idx === -1) {
        const keep = this.heldBack(this.searchFrom);
        this.preambleSeen += this.buf.length - keep;
        this.buf = this.buf.subarray(this.buf.length - keep);
        this.searchFrom = 0;
        if (this.preambleSeen > this.maxPreambleBytes) throw this.notMultipart(`in its first ${this.maxPreambleBytes} bytes`);
        if (!(await this.fill())) throw this.notMultipart('');
        continue;
      }
      const d = this.delimiterAt(idx);
      if (d.kind === 'more') {
        this.preambleSeen += idx;
        this.buf = this.buf.subarray(idx);
        this.searchFrom = 0;
        if (!(await this.fill())) throw this.notMultipart('');
        continue;
      }
      if (d.kind === 'none') {
        this.searchFrom = idx + 1;
        continue;
      }
      this.after(d.kind, d.end);
      return;
    }
  }

  private notMultipart(where: string): MultipartError {
    return new MultipartError(`body is not multipart/related with boundary ${JSON.stringify(this.boundary)}: no delimiter line "--${this.boundary}" ${where}`.trimEnd());
  }

  /** Reads the header block of the part that starts at buf. */
  async readHeaders(): Promise<Record<string, string>> {
    this.partNumber++;
    for (;;) {
      // A part without headers starts with the CRLF that ends its (empty) header block.
      if (this.buf.length >= 2 && this.buf[0] === CR && this.buf[1] === LF) {
        this.buf = this.buf.subarray(2);
        this.state = 'body';
        return {};
      }
      const end = this.buf.indexOf(HEADER_END);
      if (end !== -1) {
        if (end > this.maxHeaderBytes) throw this.headersTooLarge();
        const headers = parseHeaderBlock(this.buf.toString('utf8', 0, end), this.partNumber);
        this.buf = this.buf.subarray(end + HEADER_END.length);
        this.state = 'body';
        return headers;
      }
      if (this.buf.length > this.maxHeaderBytes + HEADER_END.length) throw this.headersTooLarge();
      if (!(await this.fill())) throw new MultipartError(`missing closing boundary: the body ended inside the headers of part ${this.partNumber}`);
    }
  }

  private headersTooLarge(): MultipartError {
    return new MultipartError(`the headers of part ${this.partNumber} are larger than ${this.maxHeaderBytes} bytes`);
  }

  /** The next non-empty piece of the current part's body, or null once its delimiter is passed. */
  async nextBodySlice(): Promise<Buffer | null> {
    for (;;) {
      if (this.state !== 'body') return null;
      const idx = this.buf.indexOf(this.delimiter, this.searchFrom);
      if (idx === -1) {
        const keep = this.heldBack(this.searchFrom);
        const out = this.buf.subarray(0, this.buf.length - keep);
        this.buf = this.buf.subarray(this.buf.length - keep);
        this.searchFrom = 0;
        if (out.length > 0) return out;
      } else if (idx > 0) {
        const out = this.buf.subarray(0, idx);
        this.buf = this.buf.subarray(idx);
        this.searchFrom = 0;
        return out;
      } else {
        const d = this.delimiterAt(0);
        if (d.kind === 'next' || d.kind === 'close') {
          this.after(d.kind, d.end);
          return null;
        }
        if (d.kind === 'none') {
          this.searchFrom = 1;
          continue;
        }
      }
      const chunk = await this.source.next();
      if (chunk === null) throw new MultipartError(`missing closing boundary: the body ended inside part ${this.partNumber}`);
      if (this.buf.length > 0 && this.buf.length < this.delimiter.length) {
        const content = this.joinHeld(chunk);
        if (content.length > 0) return content;
      } else {
        this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      }
    }
  }

  /**
   * Puts the next chunk after the held-back bytes (a possible delimiter start), copying only when
   * together they may really form a delimiter; returns the held bytes that turn out to be content.
   */
  private joinHeld(chunk: Buffer): Buffer {
    const held = this.buf;
    const d = this.delimiter;
    let i = held.indexOf(CR);
    while (i !== -1) {
      const a = held.length - i;
      const n = Math.min(d.length - a, chunk.length);
      if (held.compare(d, 0, a, i, held.length) === 0 && chunk.compare(d, a, a + n, 0, n) === 0) break;
      i = held.indexOf(CR, i + 1);
    }
    if (i === -1) {
      this.buf = chunk;
      return held;
    }
    this.buf = Buffer.concat([held.subarray(i), chunk]);
    return held.subarray(0, i);
  }

  /** Reads and drops whatever follows the close delimiter, so the request is read to its end. */
  async skipEpilogue(): Promise<void> {
    this.buf = Buffer.alloc(0);
    while ((await this.source.next()) !== null) { /* epilogue is ignored (RFC 2046 5.1.1) */ }
  }

  detach(): void {
    this.source.detach();
  }
}

const headerNamePattern = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function parseHeaderBlock(text: string, partNumber: number): Record<string, string> {
  const headers: Record<string, string> = {};
  let last: string | undefined;
  for (const line of text.split('\r\n')) {
    if (line.startsWith(' ') || line.startsWith('\t')) {
      // Obsolete line folding (RFC 5322 2.2.3): the line continues the previous header.
      if (last === undefined) throw new MultipartError(`malformed headers in part ${partNumber}: the block starts with a folded line`);
      headers[last] = `${headers[last]} ${line.trim()}`.trim();
      continue;
    }
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!headerNamePattern.test(name)) {
      throw new MultipartError(`malformed headers in part ${partNumber}: ${JSON.stringify(line.slice(0, 80))} is not "Name: value"`);
    }
    const key = name.toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[key] = Object.hasOwn(headers, key) ? `${headers[key]}, ${value}` : value;
    last = key;
  }
  return headers;
}

/** The Readable handed out for one part, fed from the scanner on demand. */
class PartBody {
  readonly stream: Readable;
  private pending: Promise<void> | undefined;
  /** The scanner is past this part (its delimiter was read, or reading failed). */
  private done = false;
  private stopped = false;
  private failure: unknown;

  constructor(private readonly scanner: MultipartScanner) {
    this.stream = new Readable({ highWaterMark: 64 * 1024, read: () => this.pull() });
    // The generator rethrows a reading error itself; a consumer that only resume()s must not crash the process.
    this.stream.on('error', () => {});
  }

  private pull(): void {
    if (this.pending !== undefined || this.done || this.stopped) return;
    this.pending = this.scanner.nextBodySlice().then(
      (slice) => {
        this.pending = undefined;
        if (slice === null) this.done = true;
        if (!this.stream.destroyed) this.stream.push(slice);
      },
      (e: unknown) => {
        this.pending = undefined;
        this.done = true;
        this.failure = e;
        this.stream.destroy(e instanceof Error ? e : new MultipartError(String(e)));
      },
    );
  }

  /** Makes sure the scanner is past this part: drains what the consumer left, rethrows a reading error. */
  async finish(): Promise<void> {
    this.stopped = true;
    while (this.pending !== undefined) await this.pending;
    if (this.failure !== undefined) throw this.failure;
    if (this.done) return;
    // The caller moved on without reading it all: whoever still holds the stream sees it closed early.
    this.stream.destroy();
    this.done = true;
    while ((await this.scanner.nextBodySlice()) !== null) { /* dropped */ }
  }

  abandon(): void {
    this.stopped = true;
    if (!this.done && !this.stream.destroyed) this.stream.destroy(new MultipartError('multipart reading stopped before the end of this part'));
  }
}

function checkReadBoundary(boundary: string): void {
  // Wider than RFC 2046's 70 bchars on purpose: be liberal in what is accepted, but bounded.
  if (boundary.length === 0 || boundary.length > 256 || !/^[\x20-\x7e]+$/.test(boundary)) {
    throw new MultipartError(`invalid multipart boundary ${JSON.stringify(boundary.slice(0, 80))}`);
  }
}

/**
 * The parts of a multipart body, one at a time. Each part's body must be read (or destroyed)
 * before asking for the next part; one that is not is drained, and destroyed for its holder.
 * Throws MultipartError on a body that is not multipart, a missing close delimiter
 * (the part being read errors too), headers too large or malformed, or too many parts.
 * The source stream is never destroyed: on an early exit it is left paused.
 */
export async function* readMultipart(body: Readable, boundary: string, limits: MultipartLimits = {}): AsyncGenerator<MultipartPart> {
  checkReadBoundary(boundary);
  const maxParts = limits.maxParts ?? 100_000;
  const scanner = new MultipartScanner(body, boundary, limits);
  let current: PartBody | undefined;
  try {
    await scanner.skipPreamble();
    while (scanner.state === 'headers') {
      if (scanner.partNumber >= maxParts) throw new MultipartError(`the body holds more than ${maxParts} parts`);
      const headers = await scanner.readHeaders();
      current = new PartBody(scanner);
      const part: MultipartPart = { headers, body: current.stream };
      if (headers['content-type'] !== undefined) part.contentType = headers['content-type'];
      yield part;
      await current.finish();
      current = undefined;
    }
    await scanner.skipEpilogue();
  } finally {
    current?.abandon();
    scanner.detach();
  }
}

// ---- writing -----------------------------------------------------------------

/** A fresh boundary: random, made of token characters only (never needs quoting), 46 characters. */
export function multipartBoundary(): string {
  return `atrium-${randomBytes(20).toString('hex')}`;
}

const bcharsPattern = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/;
const headerValuePattern = /^[^\r\n\0]*$/;

function partHead(part: MultipartSource, first: boolean, boundary: string): Buffer {
  let head = `${first ? '' : '\r\n'}--${boundary}\r\n`;
  const lines: Array<[string, string]> = [['Content-Type', part.contentType]];
  for (const [name, value] of Object.entries(part.headers ?? {})) {
    if (name.toLowerCase() !== 'content-type') lines.push([name, value]);
  }
  for (const [name, value] of lines) {
    if (!headerNamePattern.test(name) || !headerValuePattern.test(value)) {
      throw new MultipartError(`cannot write part header ${JSON.stringify(name)}: ${JSON.stringify(value)}`);
    }
    head += `${name}: ${value}\r\n`;
  }
  return Buffer.from(`${head}\r\n`, 'utf8');
}

/**
 * A multipart/related body, chunk by chunk: each part is taken from `parts` only when the
 * previous one is written, and its body is passed through as it comes. The boundary must be
 * RFC 2046 bchars (multipartBoundary() gives one); it is the caller's job that no body holds it.
 */
export async function* writeMultipart(parts: AsyncIterable<MultipartSource>, boundary: string): AsyncGenerator<Buffer> {
  for await (const { chunk } of frames(parts, boundary)) yield chunk;
}

/** The chunks of a multipart body; a whole-buffer part body comes with its part's `sent`. */
async function* frames(parts: AsyncIterable<MultipartSource>, boundary: string): AsyncGenerator<{ chunk: Buffer; sent?: () => void }> {
  if (!bcharsPattern.test(boundary)) throw new MultipartError(`invalid multipart boundary ${JSON.stringify(boundary)}`);
  let first = true;
  for await (const part of parts) {
    yield { chunk: partHead(part, first, boundary) };
    first = false;
    const body = part.body;
    if (body instanceof Uint8Array) {
      const chunk = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      if (chunk.length > 0) yield { chunk, sent: part.sent };
      else part.sent?.();
      continue;
    }
    for await (const chunk of body as AsyncIterable<Buffer | string>) {
      if (chunk.length === 0) continue;
      yield { chunk: typeof chunk === 'string' ? Buffer.from(chunk) : chunk };
    }
  }
  yield { chunk: Buffer.from(`${first ? '' : '\r\n'}--${boundary}--\r\n`, 'latin1') };
}

/**
 * Writes a multipart body to `out` (an HTTP response) and ends it, honouring backpressure.
 * A part's `sent` is called once `out` has handed its body to the system, so that the
 * buffer can be reused; it is not called for a write that failed. Rejects when `out`
 * closes or fails before the end (the client went away).
 */
export async function sendMultipart(out: Writable, parts: AsyncIterable<MultipartSource>, boundary: string): Promise<void> {
  // A client that goes away closes `out` with or without an error, maybe while a write is
  // pending: every wait below also ends on that 'close'.
  let closed = out.destroyed;
  const whenClosed = new Promise<never>((_, reject) => {
    out.once('close', () => {
      closed = true;
      reject(new MultipartError('the destination closed before the end of the body'));
    });
  });
  whenClosed.catch(() => {});
  for await (const { chunk, sent } of frames(parts, boundary)) {
    if (closed || out.destroyed) throw new MultipartError('the destination closed before the end of the body');
    const flushed = out.write(chunk, sent && ((error?: Error | null) => {
      if (!error) sent();
    }));
    if (!flushed) await Promise.race([once(out, 'drain'), whenClosed]);
  }
  await Promise.race([new Promise<void>((resolve) => out.end(() => resolve())), whenClosed]);
}
