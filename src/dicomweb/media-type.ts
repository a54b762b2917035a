/**
 * Media types (RFC 9110 8.3.1) and Accept headers (RFC 9110 12.5.1) as DICOMweb uses them
 * (PS3.18 8.7): `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1`.
 */

export interface MediaType {
  /** type/subtype, lower-case: "multipart/related". */
  type: string;
  /** Parameter names lower-case, values unquoted and unescaped, case kept (a boundary is case-sensitive). */
  params: Record<string, string>;
}

/** One media range of an Accept header; `q` is removed from `params`. */
export interface AcceptedMediaType extends MediaType {
  q: number;
}

export class MediaTypeError extends Error {
  /** Which header was wrong: a malformed Accept is a bad request (400), a bad Content-Type unsupported (415). */
  constructor(message: string, readonly header: 'accept' | 'content-type' = 'content-type') {
    super(message);
    this.name = 'MediaTypeError';
  }
}

const tokenPattern = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const isTokenChar = (c: string): boolean => tokenPattern.test(c);

/** A position in a header value; every read advances it. */
class Cursor {
  i = 0;
  constructor(readonly s: string, readonly what: string) {}

  get atEnd(): boolean {
    return this.i >= this.s.length;
  }

  peek(): string {
    return this.s[this.i] ?? '';
  }

  skipSpaces(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.i++;
  }

  fail(problem: string): never {
    throw new MediaTypeError(`malformed ${this.what} ${JSON.stringify(this.s)}: ${problem} at position ${this.i}`, this.what === 'Accept header' ? 'accept' : 'content-type');
  }

  token(name: string): string {
    const start = this.i;
    while (!this.atEnd && isTokenChar(this.peek())) this.i++;
    if (this.i === start) this.fail(this.atEnd ? `missing ${name}` : `unexpected ${JSON.stringify(this.peek())} where a ${name} should be`);
    return this.s.slice(start, this.i);
  }

  quoted(): string {
    this.i++; // opening quote
    let out = '';
    for (;;) {
      if (this.atEnd) this.fail('unterminated quoted string');
      const c = this.peek();
      this.i++;
      if (c === '"') return out;
      if (c === '\\') {
        if (this.atEnd) this.fail('unterminated quoted string');
        out += this.peek();
        this.i++;
        continue;
      }
      if (c < ' ' && c !== '\t' || c === '\x7f') this.fail('control character in quoted string');
      out += c;
    }
  }

  /**
   * An unquoted parameter value. Wider than a token on purpose: many DICOMweb clients send
   * `type=application/dicom` unquoted, and '/' is not a token character.
   */
  bareValue(name: string, inList: boolean): string {
    const start = this.i;
    for (; !this.atEnd; this.i++) {
      const c = this.peek();
      if (c === ';' || c === ' ' || c === '\t' || (inList && c === ',')) break;
      if (c === '"' || c < ' ' || c === '\x7f') this.fail(`unexpected ${JSON.stringify(c)} in the value of ${name}`);
    }
    if (this.i === start) this.fail(`parameter ${name} has no value`);
    return this.s.slice(start, this.i);
  }
}

/** type "/" subtype *( OWS ";" OWS parameter ); leaves the cursor after the last parameter. */
function readMediaType(c: Cursor, inList: boolean): MediaType {
  c.skipSpaces();
  let type = c.token('type').toLowerCase();
  if (inList && type === '*' && c.peek() !== '/') {
    // Java's default Accept ("*; q=.2") says */* this way.
    type = '*/*';
  } else {
    if (c.peek() !== '/') c.fail(c.atEnd ? 'missing "/subtype"' : `expected "/" but found ${JSON.stringify(c.peek())}`);
    c.i++;
    const subtype = c.token('subtype').toLowerCase();
    if (type === '*' && subtype !== '*') c.fail(`"*/${subtype}" is not a media range`);
    type = `${type}/${subtype}`;
  }
  const params: Record<string, string> = Object.create(null) as Record<string, string>;
  for (;;) {
    c.skipSpaces();
    if (c.peek() !== ';') break;
    c.i++;
    c.skipSpaces();
    // Empty parameters ("a/b;;c=d", trailing ";") are tolerated, as most servers do.
    if (c.atEnd || c.peek() === ';' || (inList && c.peek() === ',')) continue;
    const name = c.token('parameter name').toLowerCase();
    c.skipSpaces();
    if (c.peek() !== '=') c.fail(`parameter ${name} has no "="`);
    c.i++;
    c.skipSpaces();
    const value = c.peek() === '"' ? c.quoted() : c.bareValue(name, inList);
    // Two different boundaries would make the body ambiguous; refuse rather than guess.
    if (name in params) c.fail(`parameter ${name} given twice`);
    params[name] = value;
  }
  return { type, params: { ...params } };
}

/** Parses a Content-Type value; throws MediaTypeError when it does not follow RFC 9110. */
export function parseMediaType(header: string): MediaType {
  const c = new Cursor(header, 'media type');
  const mt = readMediaType(c, false);
  c.skipSpaces();
  if (!c.atEnd) c.fail(`unexpected ${JSON.stringify(c.peek())}`);
  return mt;
}

function formatValue(value: string): string {
  if (value !== '' && tokenPattern.test(value)) return value;
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) throw new MediaTypeError(`a media type parameter cannot hold control characters: ${JSON.stringify(value)}`);
  return `"${value.replace(/["\\]/g, (ch) => `\\${ch}`)}"`;
}

/** The header form of a media type; values that are not tokens are quoted. */
export function formatMediaType(mt: MediaType): string {
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(mt.type)) {
    throw new MediaTypeError(`not a media type: ${JSON.stringify(mt.type)}`);
  }
  let out = mt.type;
  for (const [name, value] of Object.entries(mt.params)) {
    if (!tokenPattern.test(name)) throw new MediaTypeError(`not a parameter name: ${JSON.stringify(name)}`);
    out += `; ${name}=${formatValue(value)}`;
  }
  return out;
}

function specificity(r: AcceptedMediaType): number {
  const kind = r.type === '*/*' ? 0 : r.type.endsWith('/*') ? 1 : 2;
  return kind * 1000 + Object.keys(r.params).length;
}

function parseQuality(value: string): number | undefined {
  // RFC 9110 qvalue, plus the ".2" that Java's default Accept sends.
  if (!/^(0(\.\d{0,3})?|\.\d{1,3}|1(\.0{0,3})?)$/.test(value)) return undefined;
  return Number(value);
}

/**
 * The media ranges of an Accept header, most preferred first: by q, then the more specific
 * (type/subtype before type/* before * /*, more parameters first), then in the order given.
 * Ranges with q=0 are kept (last) so that callers can see what is refused. A malformed range
 * throws MediaTypeError: guessing what a client meant could answer a type it did not ask for.
 * Real clients' quirks (Java's bare "*" and ".2", unquoted "type=application/dicom") are read.
 * An absent or empty header gives [] (no preference).
 */
export function parseAccept(header: string | undefined): AcceptedMediaType[] {
  return readAcceptRanges(header)
    .map((r, order) => ({ r, order, s: specificity(r) }))
    .sort((a, b) => b.r.q - a.r.q || b.s - a.s || a.order - b.order)
    .map((x) => x.r);
}

/**
 * The media ranges of an Accept header in the client's order of preference, as DICOMweb content
 * negotiation takes it (PS3.18 8.7.5): by q, then type/subtype before type/* before * /*, then
 * in the order given. Unlike parseAccept, the number of parameters does not reorder ranges of
 * one type: `type="application/dicom"` listed before `type="application/dicom"; transfer-syntax=*`
 * is preferred to it. Same errors and quirks as parseAccept.
 */
export function parseAcceptPreferences(header: string | undefined): AcceptedMediaType[] {
  const kind = (r: AcceptedMediaType) => Math.floor(specificity(r) / 1000);
  return readAcceptRanges(header)
    .map((r, order) => ({ r, order }))
    .sort((a, b) => b.r.q - a.r.q || kind(b.r) - kind(a.r) || a.order - b.order)
    .map((x) => x.r);
}

/** The ranges of an Accept header as given. */
function readAcceptRanges(header: string | undefined): AcceptedMediaType[] {
  if (header === undefined) return [];
  // Typed explicitly so that TypeScript treats c.fail() (never) as the end of the path.
  const c: Cursor = new Cursor(header, 'Accept header');
  const ranges: AcceptedMediaType[] = [];
  while (!c.atEnd) {
    c.skipSpaces();
    // Empty list elements are allowed (RFC 9110 5.6.1).
    if (c.peek() === ',') {
      c.i++;
      continue;
    }
    if (c.atEnd) break;
    const { type, params } = readMediaType(c, true);
    c.skipSpaces();
    if (!c.atEnd && c.peek() !== ',') c.fail(`unexpected ${JSON.stringify(c.peek())}`);
    let q = 1;
    if (params.q !== undefined) {
      const parsed = parseQuality(params.q);
      if (parsed === undefined) c.fail(`q=${params.q} is not a quality value (0 to 1, at most 3 decimals)`);
      q = parsed;
      delete params.q;
    }
    ranges.push({ type, params, q });
  }
  return ranges;
}
