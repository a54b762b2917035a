/**
 * An incremental reader of DICOM Part 10 objects (PS3.10 §7, PS3.5 §7).
 * Bytes are pushed in chunks split anywhere; bulk values (pixel data, large binary
 * elements) are never kept: only their byte ranges in the object, while their bytes
 * stream past. Memory therefore grows with the header, never with the image.
 */
import { inflateRawSync } from 'node:zlib';
import { Tags, TransferSyntax, type DicomDataset, type DicomElement, type ParsedObject, type Tag, type VR } from './dataset.ts';
import { isUSorSS, isVR, vrOf } from './dictionary.ts';

export type DicomParseErrorCode = 'no-preamble' | 'no-meta' | 'bad-meta' | 'truncated' | 'malformed' | 'header-too-large';

export class DicomParseError extends Error {
  override readonly name = 'DicomParseError';
  constructor(readonly code: DicomParseErrorCode, message: string, readonly offset?: number) {
    super(offset === undefined ? message : `${message} (at byte ${offset})`);
  }
}

export interface Part10ParserOptions {
  /** Binary values (OB, OD, OF, OL, OV, OW, UN) longer than this are recorded as ranges, not read. */
  bulkThreshold?: number;
  /** Cap on the bytes of values kept in memory (and of a deflated dataset). */
  maxHeaderBytes?: number;
}

const UNDEFINED_LENGTH = 0xffffffff;
const PREAMBLE_LENGTH = 128;
/** Real objects nest a handful of levels; a hostile one must not exhaust the stack. */
const MAX_SEQUENCE_DEPTH = 64;

/** VRs whose explicit encoding has 2 reserved bytes and a 4-byte length (PS3.5 Table 7.1-1). */
const longLengthVRs: ReadonlySet<VR> = new Set<VR>(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const binaryVRs: ReadonlySet<VR> = new Set<VR>(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);
const pixelDataTags: ReadonlySet<Tag> = new Set<Tag>([Tags.PixelData, Tags.FloatPixelData, Tags.DoubleFloatPixelData]);

export function hasLongLength(vr: VR): boolean {
  return longLengthVRs.has(vr);
}

/**
 * The pushed bytes not yet consumed. Values taken out are copied, so a kept value
 * never pins a whole input chunk; skipped bytes are simply dropped.
 */
class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // bytes of chunks[0] already consumed
  available = 0;
  /** Offset in the object of the next unconsumed byte. */
  pos = 0;
  ended = false;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.available += chunk.length;
  }

  /** Copies the next n bytes (n <= available) without consuming them. */
  peek(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let skip = this.head;
    for (const c of this.chunks) {
      if (filled === n) break;
      const take = Math.min(c.length - skip, n - filled);
      c.copy(out, filled, skip, skip + take);
      filled += take;
      skip = 0;
    }
    return out;
  }

  /** Copies and consumes the next n bytes (n <= available). */
  take(n: number): Buffer {
    const out = this.peek(n);
    this.drop(n);
    return out;
  }

  /** Consumes up to n bytes; answers how many were consumed. */
  drop(n: number): number {
    let dropped = 0;
    while (dropped < n && this.chunks.length > 0) {
      const c = this.chunks[0]!;
      const left = c.length - this.head;
      const d = Math.min(left, n - dropped);
      dropped += d;
      if (d === left) {
        this.chunks.shift();
        this.head = 0;
      } else {
        this.head += d;
      }
    }
    this.available -= dropped;
    this.pos += dropped;
    return dropped;
  }

  /** Copies the partly consumed first chunk so the caller's larger buffer can be freed. */
  compact(): void {
    if (this.chunks.length > 0 && this.head > 0) {
      this.chunks[0] = Buffer.from(this.chunks[0]!.subarray(this.head));
      this.head = 0;
    }
  }
}

/** How the elements of the dataset being read are encoded. */
interface Syntax {
  littleEndian: boolean;
  explicitVR: boolean;
}

const implicitLE: Syntax = { littleEndian: true, explicitVR: false };
const explicitLE: Syntax = { littleEndian: true, explicitVR: true };

/** The generator suspends (yields) whenever it needs bytes not pushed yet. */
type Step<T> = Generator<undefined, T, undefined>;

interface ElementHeader {
  tag: Tag;
  vr: VR;
  length: number;
  /** Offset of the first byte of the header. */
  offset: number;
}

export class Part10Parser {
  private readonly bulkThreshold: number;
  private readonly maxHeaderBytes: number;
  private q = new ByteQueue();
  private readonly run: Step<ParsedObject>;
  private result: ParsedObject | undefined;
  private failure: unknown;
  private headerBytes = 0;
  private bulkAllowed = true;
  private totalBytes = 0;

  constructor(opts: Part10ParserOptions = {}) {
    this.bulkThreshold = opts.bulkThreshold ?? 1024;
    this.maxHeaderBytes = opts.maxHeaderBytes ?? 64 * 1024 * 1024;
    this.run = this.parseObject();
  }

  /** Pushes the next bytes of the object. Throws DicomParseError as soon as the object is known bad. */
  write(chunk: Buffer): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.q.ended) throw new Error('Part10Parser: write after end');
    this.totalBytes += chunk.length;
    this.q.push(chunk);
    this.resume();
    this.q.compact();
  }

  /** Declares the end of the object and answers what was read. */
  end(): ParsedObject {
    if (this.failure !== undefined) throw this.failure;
    if (this.result) return this.result;
    this.q.ended = true;
    this.resume();
    if (!this.result) throw new Error('Part10Parser: parser did not finish'); // cannot happen: ended input never suspends
    return this.result;
  }

  private resume(): void {
    try {
      const r = this.run.next();
      if (r.done) this.result = r.value;
    } catch (e) {
      this.failure = e;
      throw e;
    }
  }

  // --- reading primitives -------------------------------------------------

  /** The next n bytes, consumed. */
  private *read(n: number, what: string): Step<Buffer> {
    while (this.q.available < n) {
      if (this.q.ended) throw new DicomParseError('truncated', `truncated object: it ends inside ${what}`, this.q.pos + this.q.available);
      yield;
    }
    return this.q.take(n);
  }

  /** The next n bytes, not consumed; undefined when the object ends cleanly before them. */
  private *peekOrEnd(n: number, what: string): Step<Buffer | undefined> {
    while (this.q.available < n) {
      if (this.q.ended) {
        if (this.q.available === 0) return undefined;
        throw new DicomParseError('truncated', `truncated object: it ends inside ${what}`, this.q.pos + this.q.available);
      }
      yield;
    }
    return this.q.peek(n);
  }

  private *skip(n: number, what: string): Step<void> {
    let left = n;
    while (left > 0) {
      if (this.q.available === 0) {
        if (this.q.ended) throw new DicomParseError('truncated', `truncated object: it ends inside ${what}`, this.q.pos);
        yield;
        continue;
      }
      left -= this.q.drop(left);
    }
  }

  /** A value kept in memory, counted against maxHeaderBytes. */
  private *readValue(n: number, what: string): Step<Buffer> {
    this.countHeaderBytes(n);
    return yield* this.read(n, what);
  }

  private countHeaderBytes(n: number): void {
    this.headerBytes += n;
    if (this.headerBytes > this.maxHeaderBytes) {
      throw new DicomParseError('header-too-large', `values kept in memory exceed ${this.maxHeaderBytes} bytes`, this.q.pos);
    }
  }

  // --- structure ----------------------------------------------------------

  private *parseObject(): Step<ParsedObject> {
    while (this.q.available < PREAMBLE_LENGTH + 4) {
      if (this.q.ended) throw new DicomParseError('no-preamble', 'not a DICOM Part 10 file: shorter than the 128-byte preamble and "DICM"', 0);
      yield;
    }
    const prefix = this.q.take(PREAMBLE_LENGTH + 4);
    if (prefix.toString('latin1', PREAMBLE_LENGTH) !== 'DICM') {
      throw new DicomParseError('no-preamble', 'not a DICOM Part 10 file: no "DICM" after the 128-byte preamble', PREAMBLE_LENGTH);
    }

    const meta: DicomDataset = new Map();
    // Group 0002 is read while tags say 0002, so a missing or wrong group length does no harm.
    for (;;) {
      const next = yield* this.peekOrEnd(2, 'the file meta information');
      if (!next || next.readUInt16LE(0) !== 0x0002) break;
      const header = yield* this.readHeader(explicitLE);
      if (header.length === UNDEFINED_LENGTH || header.vr === 'SQ') {
        throw new DicomParseError('bad-meta', `file meta element ${tagLabel(header.tag)} has an undefined length or is a sequence`, header.offset);
      }
      const value = yield* this.readValue(header.length, `file meta element ${tagLabel(header.tag)}`);
      meta.set(header.tag, { tag: header.tag, vr: header.vr, value });
    }
    if (meta.size === 0) throw new DicomParseError('no-meta', 'no file meta information (group 0002) after "DICM"', this.q.pos);
    const tsValue = meta.get(Tags.TransferSyntaxUID)?.value;
    if (!tsValue) throw new DicomParseError('bad-meta', 'file meta information has no TransferSyntaxUID (0002,0010)', this.q.pos);
    const transferSyntaxUID = tsValue.toString('latin1').replace(/[\0 ]+$/, '');
    if (transferSyntaxUID === '') throw new DicomParseError('bad-meta', 'TransferSyntaxUID (0002,0010) is empty', this.q.pos);

    const datasetOffset = this.q.pos;
    const syntax: Syntax = transferSyntaxUID === TransferSyntax.ImplicitVRLittleEndian ? implicitLE
      : transferSyntaxUID === TransferSyntax.ExplicitVRBigEndian ? { littleEndian: false, explicitVR: true }
        : explicitLE; // unknown syntaxes too: the archive layer decides whether to keep them
    const deflated = transferSyntaxUID === TransferSyntax.DeflatedExplicitVRLittleEndian;

    const dataset: DicomDataset = new Map();
    if (deflated) {
      yield* this.parseDeflated(dataset);
    } else {
      yield* this.parseDataset(dataset, syntax, { kind: 'top' });
    }
    return {
      meta,
      dataset,
      transferSyntaxUID,
      littleEndian: syntax.littleEndian,
      explicitVR: syntax.explicitVR,
      deflated,
      datasetOffset,
      byteLength: this.totalBytes,
    };
  }

  /**
   * A deflated dataset's offsets would refer to the inflated stream, so its values
   * are all kept in memory; the compressed bytes are kept until the end, capped.
   */
  private *parseDeflated(dataset: DicomDataset): Step<void> {
    const compressed: Buffer[] = [];
    const start = this.q.pos;
    for (;;) {
      if (this.q.available > 0) {
        this.countHeaderBytes(this.q.available);
        compressed.push(this.q.take(this.q.available));
      } else if (this.q.ended) {
        break;
      } else {
        yield;
      }
    }
    let inflated: Buffer;
    try {
      inflated = inflateRawSync(Buffer.concat(compressed), { maxOutputLength: Math.max(1, this.maxHeaderBytes - this.headerBytes) });
    } catch (e) {
      if (e instanceof RangeError || (e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new DicomParseError('header-too-large', `deflated dataset inflates beyond ${this.maxHeaderBytes} bytes`, start);
      }
      throw new DicomParseError('truncated', `deflated dataset cannot be inflated: ${(e as Error).message}`, start);
    }
    this.q = new ByteQueue();
    this.q.push(inflated);
    this.q.ended = true;
    this.bulkAllowed = false;
    this.headerBytes = 0; // the inflated bytes were bounded above; values are counted afresh
    yield* this.parseDataset(dataset, explicitLE, { kind: 'top' });
  }

  /** Reads a tag and, unless it is an item or delimiter, its VR and length. */
  private *readHeader(syntax: Syntax): Step<ElementHeader> {
    const offset = this.q.pos;
    const h = yield* this.read(8, 'an element header');
    const le = syntax.littleEndian;
    const group = le ? h.readUInt16LE(0) : h.readUInt16BE(0);
    const element = le ? h.readUInt16LE(2) : h.readUInt16BE(2);
    const t = ((group << 16) | element) >>> 0;
    const len32 = le ? h.readUInt32LE(4) : h.readUInt32BE(4);
    if (group === 0xfffe || !syntax.explicitVR) {
      return { tag: t, vr: group === 0xfffe ? 'UN' : vrOf(t), length: len32, offset };
    }
    const vrText = h.toString('latin1', 4, 6);
    if (isVR(vrText)) {
      if (longLengthVRs.has(vrText)) {
        const l = yield* this.read(4, 'an element header');
        return { tag: t, vr: vrText, length: le ? l.readUInt32LE(0) : l.readUInt32BE(0), offset };
      }
      return { tag: t, vr: vrText, length: le ? h.readUInt16LE(6) : h.readUInt16BE(6), offset };
    }
    if (/^[A-Z]{2}$/.test(vrText)) {
      // An unknown upper-case VR is taken for a VR added after this reader: such VRs have a 4-byte length.
      const l = yield* this.read(4, 'an element header');
      return { tag: t, vr: 'UN', length: le ? l.readUInt32LE(0) : l.readUInt32BE(0), offset };
    }
    // Not a VR at all: a writer put an implicit VR element here; read it as such.
    return { tag: t, vr: vrOf(t), length: len32, offset };
  }

  /**
   * Reads elements into ds until the end of the object (top level), the end of a
   * defined-length item, or an item delimiter.
   */
  private *parseDataset(ds: DicomDataset, syntax: Syntax, until: { kind: 'top' } | { kind: 'end'; at: number } | { kind: 'delimiter' }): Step<void> {
    for (;;) {
      if (until.kind === 'end') {
        if (this.q.pos === until.at) return;
        if (this.q.pos > until.at) throw new DicomParseError('malformed', 'an element runs past the end of its item', this.q.pos);
      } else if (until.kind === 'top') {
        const next = yield* this.peekOrEnd(1, 'an element header');
        if (!next) return;
      }
      const header = yield* this.readHeader(syntax);
      const { tag: t, length } = header;
      if (t === Tags.ItemDelimitationItem) {
        if (until.kind === 'delimiter') return;
        continue; // a stray delimiter carries nothing; readers such as DCMTK skip it too
      }
      if (t === Tags.SequenceDelimitationItem) {
        if (until.kind === 'delimiter') throw new DicomParseError('malformed', 'sequence delimiter inside an item of undefined length', header.offset);
        continue;
      }
      if (t === Tags.Item) throw new DicomParseError('malformed', 'item outside a sequence', header.offset);
      if (until.kind === 'end' && length !== UNDEFINED_LENGTH && this.q.pos + length > until.at) {
        throw new DicomParseError('malformed', `element ${tagLabel(t)} of length ${length} runs past the end of its item`, header.offset);
      }
      const el = yield* this.parseValue(header, syntax, ds);
      if (el.bulk || el.fragments) el.headerOffset = header.offset;
      ds.set(t, el);
    }
  }

  private *parseValue(header: ElementHeader, syntax: Syntax, ds: DicomDataset): Step<DicomElement> {
    const { tag: t, length } = header;
    let vr = header.vr;
    const what = `element ${tagLabel(t)}`;
    if (vr === 'UN' && syntax.explicitVR && syntax.littleEndian && length !== UNDEFINED_LENGTH) {
      // An UN's value is implicit VR little endian (PS3.5 §6.2.2): with a known tag it is
      // read with its dictionary VR, so a sender's ignorance does not hide attributes.
      const known = vrOf(t);
      if (known === 'SQ') return { tag: t, vr: known, items: yield* this.parseItems(implicitLE, this.q.pos + length) };
      if (known !== 'UN') vr = isUSorSS(t) ? (pixelRepresentationOf(ds, syntax) === 1 ? 'SS' : 'US') : known;
    }
    if (!syntax.explicitVR && isUSorSS(t)) vr = pixelRepresentationOf(ds, syntax) === 1 ? 'SS' : 'US';

    if (length === UNDEFINED_LENGTH) {
      if (pixelDataTags.has(t) || (syntax.explicitVR && (vr === 'OB' || vr === 'OW'))) {
        return yield* this.parseEncapsulated(t, syntax.explicitVR && vr === 'OW' ? 'OW' : 'OB', syntax);
      }
      if (vr === 'SQ' || !syntax.explicitVR) {
        return { tag: t, vr: 'SQ', items: yield* this.parseItems(syntax, undefined) };
      }
      if (vr === 'UN') {
        // PS3.5 §6.2.2: an UN of undefined length holds a sequence in implicit VR little endian.
        return { tag: t, vr: 'SQ', items: yield* this.parseItems(implicitLE, undefined) };
      }
      throw new DicomParseError('malformed', `${what} (${vr}) has an undefined length`, header.offset);
    }
    if (vr === 'SQ') {
      return { tag: t, vr, items: yield* this.parseItems(syntax, this.q.pos + length) };
    }
    if (this.bulkAllowed && (pixelDataTags.has(t) || (binaryVRs.has(vr) && length > this.bulkThreshold))) {
      const bulk = { offset: this.q.pos, length };
      yield* this.skip(length, what);
      return { tag: t, vr, bulk };
    }
    return { tag: t, vr, value: yield* this.readValue(length, what) };
  }

  private depth = 0;

  private *parseItems(syntax: Syntax, endAt: number | undefined): Step<DicomDataset[]> {
    if (this.depth >= MAX_SEQUENCE_DEPTH) throw new DicomParseError('malformed', `sequences nested deeper than ${MAX_SEQUENCE_DEPTH} levels`, this.q.pos);
    this.depth++;
    const items = yield* this.parseItemList(syntax, endAt);
    this.depth--;
    return items;
  }

  private *parseItemList(syntax: Syntax, endAt: number | undefined): Step<DicomDataset[]> {
    const items: DicomDataset[] = [];
    for (;;) {
      if (endAt !== undefined) {
        if (this.q.pos === endAt) return items;
        if (this.q.pos > endAt) throw new DicomParseError('malformed', 'an item runs past the end of its sequence', this.q.pos);
      }
      const offset = this.q.pos;
      const h = yield* this.read(8, 'an item header');
      const t = itemTagOf(h, syntax);
      const length = syntax.littleEndian ? h.readUInt32LE(4) : h.readUInt32BE(4);
      if (t === Tags.SequenceDelimitationItem) {
        if (endAt === undefined) return items;
        continue; // tolerated inside a defined-length sequence
      }
      if (t !== Tags.Item) throw new DicomParseError('malformed', `expected an item in a sequence, found ${tagLabel(t)}`, offset);
      const item: DicomDataset = new Map();
      if (length === UNDEFINED_LENGTH) {
        yield* this.parseDataset(item, syntax, { kind: 'delimiter' });
      } else {
        if (endAt !== undefined && this.q.pos + length > endAt) {
          throw new DicomParseError('malformed', `item of length ${length} runs past the end of its sequence`, offset);
        }
        yield* this.parseDataset(item, syntax, { kind: 'end', at: this.q.pos + length });
      }
      items.push(item);
    }
  }

  /** Encapsulated pixel data (PS3.5 §A.4): item headers are read, fragment bytes skipped. */
  private *parseEncapsulated(t: Tag, vr: VR, syntax: Syntax): Step<DicomElement> {
    const fragments: { offset: number; length: number }[] = [];
    let basicOffsetTable: number[] | undefined;
    for (;;) {
      const offset = this.q.pos;
      const h = yield* this.read(8, 'an encapsulated pixel data item header');
      const it = itemTagOf(h, syntax);
      const length = syntax.littleEndian ? h.readUInt32LE(4) : h.readUInt32BE(4);
      if (it === Tags.SequenceDelimitationItem) break;
      if (it !== Tags.Item || length === UNDEFINED_LENGTH) {
        throw new DicomParseError('malformed', `expected a fragment item in encapsulated ${tagLabel(t)}, found ${tagLabel(it)}`, offset);
      }
      if (basicOffsetTable === undefined) {
        const bot = yield* this.readValue(length, 'the basic offset table');
        basicOffsetTable = [];
        for (let i = 0; i + 4 <= bot.length; i += 4) basicOffsetTable.push(syntax.littleEndian ? bot.readUInt32LE(i) : bot.readUInt32BE(i));
        continue;
      }
      fragments.push({ offset: this.q.pos, length });
      yield* this.skip(length, 'a pixel data fragment');
    }
    return { tag: t, vr, fragments, basicOffsetTable: basicOffsetTable ?? [] };
  }
}

function itemTagOf(h: Buffer, syntax: Syntax): Tag {
  return syntax.littleEndian
    ? ((h.readUInt16LE(0) << 16) | h.readUInt16LE(2)) >>> 0
    : ((h.readUInt16BE(0) << 16) | h.readUInt16BE(2)) >>> 0;
}

function pixelRepresentationOf(ds: DicomDataset, syntax: Syntax): number | undefined {
  const v = ds.get(Tags.PixelRepresentation)?.value;
  if (!v || v.length < 2) return undefined;
  return syntax.littleEndian ? v.readUInt16LE(0) : v.readUInt16BE(0);
}

function tagLabel(t: Tag): string {
  const hex = t.toString(16).toUpperCase().padStart(8, '0');
  return `(${hex.slice(0, 4)},${hex.slice(4)})`;
}

/** Parses a whole object held in memory. */
export function parsePart10(buf: Buffer, opts?: Part10ParserOptions): ParsedObject {
  const parser = new Part10Parser(opts);
  parser.write(buf);
  return parser.end();
}
