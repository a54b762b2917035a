/**
 * Writing DICOM Part 10 objects (PS3.10 §7) and datasets (PS3.5 §7): re-encoding a
 * parsed native object in another uncompressed transfer syntax, streamed so that
 * bulk values are never loaded whole, and encoding small in-memory datasets.
 */
import { Tags, TransferSyntax, type ByteRange, type DicomDataset, type DicomElement, type ParsedObject, type Tag, type VR } from './dataset.ts';
import { hasLongLength } from './part10-parser.ts';

/** Atrium's Implementation Class UID (PS3.7 D.3.3.2), a UUID-derived UID (PS3.5 B.2). */
export const ATRIUM_IMPLEMENTATION_CLASS_UID = '2.25.247912004733604316924616254317412690523';
export const ATRIUM_IMPLEMENTATION_VERSION_NAME = 'ATRIUM_0_1';
/**
 * Private Information Creator UID (0002,0100) of the record compression at rest keeps in the
 * file it writes (src/archive/original-record.ts): an arc under the implementation's UUID-derived UID.
 */
export const ATRIUM_ORIGINAL_RECORD_UID = `${ATRIUM_IMPLEMENTATION_CLASS_UID}.1`;

const UNDEFINED_LENGTH = 0xffffffff;
const OUTPUT_CHUNK = 256 * 1024;

/** Re-encodable targets: the uncompressed little-endian syntaxes every peer accepts. */
export type WritableTransferSyntax = typeof TransferSyntax.ExplicitVRLittleEndian | typeof TransferSyntax.ImplicitVRLittleEndian;

export interface Part10Source {
  obj: ParsedObject;
  /** The bytes of a range of the stored object (bulk values). */
  readRange: (r: ByteRange) => AsyncIterable<Buffer> | Promise<Buffer> | Buffer;
}

export interface WritePart10Options {
  /** Any syntax when `pixelData` gives the new pixel data (compressed syntaxes are explicit VR little endian). */
  transferSyntaxUID: WritableTransferSyntax | string;
  implementationClassUID?: string;
  /** The pixel data, re-encoded by the caller frame by frame, in place of the stored value. */
  pixelData?: PixelDataOutput;
  /** Top-level elements to set (values little endian), e.g. a new Photometric Interpretation. */
  replace?: DicomElement[];
  /** Top-level elements to leave out (an Extended Offset Table that no longer fits the frames). */
  remove?: Tag[];
  /** File meta elements to set (group 0002), e.g. the record of the original that compression at rest keeps. */
  meta?: DicomElement[];
}

/** New pixel data, one frame at a time (PS3.5 §8.2, A.4). */
export interface PixelDataOutput {
  /** Encapsulated: one fragment a frame after an empty basic offset table; native: the frames back to back. */
  encapsulated: boolean;
  vr: 'OB' | 'OW';
  /** Native: the value's length, known before the first frame is read. */
  length?: number;
  frames: AsyncIterable<Buffer>;
}

const textVRs: ReadonlySet<VR> = new Set<VR>(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UR', 'UT']);

/** Bytes per value unit to reverse when the byte order changes (PS3.5 §7.3); 1 means none. */
function swapUnitOf(vr: VR): 1 | 2 | 4 | 8 {
  switch (vr) {
    case 'US': case 'SS': case 'OW': case 'AT': // AT is a pair of 16-bit numbers
      return 2;
    case 'UL': case 'SL': case 'FL': case 'OL': case 'OF':
      return 4;
    case 'FD': case 'SV': case 'UV': case 'OD': case 'OV':
      return 8;
    default:
      return 1;
  }
}

function swapped(buf: Buffer, unit: 1 | 2 | 4 | 8): Buffer {
  if (unit === 1) return buf;
  const out = Buffer.from(buf); // never change the caller's bytes
  const whole = out.length - (out.length % unit);
  const view = out.subarray(0, whole);
  if (unit === 2) view.swap16();
  else if (unit === 4) view.swap32();
  else view.swap64();
  return out;
}

function padByteOf(vr: VR): number {
  return textVRs.has(vr) ? 0x20 : 0x00;
}

/** Odd values get one padding byte (PS3.5 §7.1.1): a space for text, NUL otherwise. */
function padded(value: Buffer, vr: VR): Buffer {
  if (value.length % 2 === 0) return value;
  return Buffer.concat([value, Buffer.from([padByteOf(vr)])]);
}

function tagBytes(t: Tag, littleEndian: boolean): Buffer {
  const b = Buffer.allocUnsafe(4);
  if (littleEndian) {
    b.writeUInt16LE(t >>> 16, 0);
    b.writeUInt16LE(t & 0xffff, 2);
  } else {
    b.writeUInt16BE(t >>> 16, 0);
    b.writeUInt16BE(t & 0xffff, 2);
  }
  return b;
}

/** The header of an element, an item or a delimiter (PS3.5 §7.1.2, §7.1.3, §7.5). */
function headerBytes(t: Tag, vr: VR, length: number, littleEndian: boolean, explicitVR: boolean): Buffer {
  const group = t >>> 16;
  const u32 = (n: number) => {
    const b = Buffer.allocUnsafe(4);
    if (littleEndian) b.writeUInt32LE(n >>> 0, 0);
    else b.writeUInt32BE(n >>> 0, 0);
    return b;
  };
  if (!explicitVR || group === 0xfffe) return Buffer.concat([tagBytes(t, littleEndian), u32(length)]);
  if (hasLongLength(vr)) return Buffer.concat([tagBytes(t, littleEndian), Buffer.from(vr, 'latin1'), Buffer.alloc(2), u32(length)]);
  const b = Buffer.allocUnsafe(8);
  tagBytes(t, littleEndian).copy(b, 0);
  b.write(vr, 4, 'latin1');
  if (littleEndian) b.writeUInt16LE(length, 6);
  else b.writeUInt16BE(length, 6);
  return b;
}

/** A value too long for its VR's 2-byte length is written as UN (PS3.5 §6.2.2 note). */
function vrForLength(vr: VR, length: number, explicitVR: boolean): VR {
  return explicitVR && !hasLongLength(vr) && length > 0xffff ? 'UN' : vr;
}

function sortedElements(ds: DicomDataset): DicomElement[] {
  return [...ds.values()].sort((a, b) => a.tag - b.tag);
}

/** Group lengths other than the meta header's are retired (PS3.5 §7.2) and would be wrong after re-encoding. */
function isGroupLength(t: Tag): boolean {
  return (t & 0xffff) === 0;
}

const itemHeader = (le: boolean, ex: boolean) => headerBytes(Tags.Item, 'UN', UNDEFINED_LENGTH, le, ex);
const itemEnd = (le: boolean, ex: boolean) => headerBytes(Tags.ItemDelimitationItem, 'UN', 0, le, ex);
const sequenceEnd = (le: boolean, ex: boolean) => headerBytes(Tags.SequenceDelimitationItem, 'UN', 0, le, ex);

/**
 * Encodes an in-memory dataset. Values must already be in the target byte order;
 * sequences and items are written with undefined length, as writePart10 does.
 * Throws for elements whose value is not in memory (bulk ranges, fragments).
 */
export function encodeDataset(ds: DicomDataset, littleEndian: boolean, explicitVR: boolean): Buffer {
  const parts: Buffer[] = [];
  const encode = (d: DicomDataset) => {
    for (const el of sortedElements(d)) {
      if (el.vr === 'SQ' || el.items) {
        parts.push(headerBytes(el.tag, 'SQ', UNDEFINED_LENGTH, littleEndian, explicitVR));
        for (const item of el.items ?? []) {
          parts.push(itemHeader(littleEndian, explicitVR));
          encode(item);
          parts.push(itemEnd(littleEndian, explicitVR));
        }
        parts.push(sequenceEnd(littleEndian, explicitVR));
        continue;
      }
      if (el.value === undefined) {
        throw new Error(`encodeDataset: element ${tagLabel(el.tag)} has no value in memory`);
      }
      const value = padded(el.value, el.vr);
      parts.push(headerBytes(el.tag, vrForLength(el.vr, value.length, explicitVR), value.length, littleEndian, explicitVR), value);
    }
  };
  encode(ds);
  return Buffer.concat(parts);
}

function uidValue(uid: string): Buffer {
  return padded(Buffer.from(uid, 'latin1'), 'UI');
}

/** The file meta information (PS3.10 §7.1), group length first and computed. */
function encodeMeta(meta: DicomDataset): Buffer {
  const rest = new Map(meta);
  rest.delete(Tags.FileMetaInformationGroupLength);
  const body = encodeDataset(rest, true, true);
  const gl = Buffer.allocUnsafe(4);
  gl.writeUInt32LE(body.length, 0);
  return Buffer.concat([headerBytes(Tags.FileMetaInformationGroupLength, 'UL', 4, true, true), gl, body]);
}

const FileMetaInformationVersion: Tag = 0x00020001;

function preambleAndMeta(meta: DicomDataset): Buffer {
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), encodeMeta(meta)]);
}

export interface Part10Meta {
  MediaStorageSOPClassUID: string;
  MediaStorageSOPInstanceUID: string;
  TransferSyntaxUID: string;
  /** Who sent the object over the network (PS3.10 7.1). */
  SourceApplicationEntityTitle?: string;
}

/** A Part 10 object: preamble, "DICM", a new meta header, then the dataset bytes as given. */
export function buildPart10(meta: Part10Meta, dataset: Buffer): Buffer {
  return Buffer.concat([part10Header(meta), dataset]);
}

/** Preamble, "DICM" and a new meta header: what precedes a received dataset's bytes when it is stored. */
export function part10Header(meta: Part10Meta): Buffer {
  const m: DicomDataset = new Map();
  const put = (t: Tag, vr: VR, value: Buffer) => m.set(t, { tag: t, vr, value });
  put(FileMetaInformationVersion, 'OB', Buffer.from([0x00, 0x01]));
  put(Tags.MediaStorageSOPClassUID, 'UI', uidValue(meta.MediaStorageSOPClassUID));
  put(Tags.MediaStorageSOPInstanceUID, 'UI', uidValue(meta.MediaStorageSOPInstanceUID));
  put(Tags.TransferSyntaxUID, 'UI', uidValue(meta.TransferSyntaxUID));
  put(Tags.ImplementationClassUID, 'UI', uidValue(ATRIUM_IMPLEMENTATION_CLASS_UID));
  put(Tags.ImplementationVersionName, 'SH', padded(Buffer.from(ATRIUM_IMPLEMENTATION_VERSION_NAME, 'latin1'), 'SH'));
  if (meta.SourceApplicationEntityTitle) put(Tags.SourceApplicationEntityTitle, 'AE', padded(Buffer.from(meta.SourceApplicationEntityTitle, 'latin1'), 'AE'));
  return preambleAndMeta(m);
}

/**
 * Re-encodes a parsed native object in explicit or implicit VR little endian:
 * a new meta header, then the dataset element by element, bulk values streamed
 * from readRange (byte-swapped when the source is big endian).
 */
export async function* writePart10(source: Part10Source, opts: WritePart10Options): AsyncGenerator<Buffer> {
  const { obj } = source;
  const target = opts.transferSyntaxUID;
  if (target !== TransferSyntax.ExplicitVRLittleEndian && target !== TransferSyntax.ImplicitVRLittleEndian && !opts.pixelData?.encapsulated) {
    throw new Error(`writePart10: cannot write transfer syntax ${String(target)}`);
  }
  const explicitVR = target !== TransferSyntax.ImplicitVRLittleEndian;
  const swap = !obj.littleEndian;

  const meta: DicomDataset = new Map(obj.meta);
  if (!meta.has(FileMetaInformationVersion)) meta.set(FileMetaInformationVersion, { tag: FileMetaInformationVersion, vr: 'OB', value: Buffer.from([0x00, 0x01]) });
  meta.set(Tags.TransferSyntaxUID, { tag: Tags.TransferSyntaxUID, vr: 'UI', value: uidValue(target) });
  // The object now comes from this implementation, whose identity the meta header states.
  meta.set(Tags.ImplementationClassUID, { tag: Tags.ImplementationClassUID, vr: 'UI', value: uidValue(opts.implementationClassUID ?? ATRIUM_IMPLEMENTATION_CLASS_UID) });
  meta.set(Tags.ImplementationVersionName, { tag: Tags.ImplementationVersionName, vr: 'SH', value: padded(Buffer.from(ATRIUM_IMPLEMENTATION_VERSION_NAME, 'latin1'), 'SH') });
  // Atrium's record of a stored file's original describes that file, not this new encoding of it.
  if (meta.get(Tags.PrivateInformationCreatorUID)?.value?.toString('latin1').replace(/[\0 ]+$/, '') === ATRIUM_ORIGINAL_RECORD_UID) {
    meta.delete(Tags.PrivateInformationCreatorUID);
    meta.delete(Tags.PrivateInformation);
  }
  for (const el of opts.meta ?? []) meta.set(el.tag, el);

  let pending: Buffer[] = [preambleAndMeta(meta)];
  let pendingBytes = pending[0]!.length;
  const put = (b: Buffer) => {
    pending.push(b);
    pendingBytes += b.length;
  };
  const flush = (): Buffer | undefined => {
    if (pendingBytes === 0) return undefined;
    const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
    pending = [];
    pendingBytes = 0;
    return out;
  };

  async function* writePixelData(out: PixelDataOutput): AsyncGenerator<Buffer> {
    if (!out.encapsulated) {
      const length = out.length ?? 0;
      put(headerBytes(Tags.PixelData, vrForLength(out.vr, length + (length % 2), explicitVR), length + (length % 2), true, explicitVR));
      const head = flush();
      if (head) yield head;
      let total = 0;
      // Chunks of even length only: a DIMSE peer refuses an odd P-DATA fragment (DCMTK: "Odd Fragment Length").
      let carry: Buffer | undefined;
      for await (const frame of out.frames) {
        total += frame.length;
        const joined = carry ? Buffer.concat([carry, frame]) : frame;
        const even = joined.length - (joined.length % 2);
        carry = even < joined.length ? Buffer.from(joined.subarray(even)) : undefined;
        if (even > 0) yield joined.subarray(0, even);
      }
      if (total !== length) throw new Error(`writePart10: pixel data of ${total} bytes, ${length} announced`);
      if (carry) put(Buffer.concat([carry, Buffer.alloc(1)]));
      return;
    }
    put(headerBytes(Tags.PixelData, 'OB', UNDEFINED_LENGTH, true, explicitVR));
    put(headerBytes(Tags.Item, 'UN', 0, true, explicitVR)); // an empty basic offset table
    for await (const frame of out.frames) {
      const odd = frame.length % 2;
      put(headerBytes(Tags.Item, 'UN', frame.length + odd, true, explicitVR));
      const head = flush();
      if (head) yield head;
      yield odd ? Buffer.concat([frame, Buffer.alloc(1)]) : frame;
    }
    put(sequenceEnd(true, explicitVR));
  }

  const topLevel: DicomDataset = new Map(obj.dataset);
  for (const t of opts.remove ?? []) topLevel.delete(t);
  for (const el of opts.replace ?? []) topLevel.set(el.tag, el);

  async function* writeDataset(ds: DicomDataset): AsyncGenerator<Buffer> {
    for (const el of sortedElements(ds)) {
      if (isGroupLength(el.tag)) continue;
      if (el.tag === Tags.PixelData && ds === topLevel && opts.pixelData) {
        yield* writePixelData(opts.pixelData);
        continue;
      }
      if (el.fragments) {
        throw new Error(`writePart10: element ${tagLabel(el.tag)} is encapsulated; only native objects can be re-encoded`);
      }
      if (el.vr === 'SQ' || el.items) {
        put(headerBytes(el.tag, 'SQ', UNDEFINED_LENGTH, true, explicitVR));
        for (const item of el.items ?? []) {
          put(itemHeader(true, explicitVR));
          yield* writeDataset(item);
          put(itemEnd(true, explicitVR));
        }
        put(sequenceEnd(true, explicitVR));
      } else if (el.bulk) {
        const length = el.bulk.length + (el.bulk.length % 2);
        put(headerBytes(el.tag, vrForLength(el.vr, length, explicitVR), length, true, explicitVR));
        const out = flush();
        if (out) yield out;
        yield* streamBulk(el.bulk, swap ? swapUnitOf(el.vr) : 1);
        if (el.bulk.length % 2) put(Buffer.from([padByteOf(el.vr)]));
      } else {
        const value = padded(swap ? swapped(el.value ?? Buffer.alloc(0), swapUnitOf(el.vr)) : el.value ?? Buffer.alloc(0), el.vr);
        put(headerBytes(el.tag, vrForLength(el.vr, value.length, explicitVR), value.length, true, explicitVR));
        put(value);
      }
      if (pendingBytes >= OUTPUT_CHUNK) {
        const out = flush();
        if (out) yield out;
      }
    }
  }

  async function* streamBulk(range: ByteRange, unit: 1 | 2 | 4 | 8): AsyncGenerator<Buffer> {
    const got = source.readRange(range);
    const chunks: AsyncIterable<Buffer> | Iterable<Buffer> = Buffer.isBuffer(got) ? slices(got)
      : got instanceof Promise ? slices(await got)
        : got;
    let carry: Buffer = Buffer.alloc(0); // bytes of an incomplete swap unit across chunks
    let total = 0;
    for await (const raw of chunks) {
      total += raw.length;
      if (unit === 1) {
        yield raw;
        continue;
      }
      const joined = carry.length ? Buffer.concat([carry, raw]) : raw;
      const whole = joined.length - (joined.length % unit);
      if (whole > 0) yield swapped(joined.subarray(0, whole), unit);
      carry = Buffer.from(joined.subarray(whole));
    }
    if (carry.length) yield carry; // an odd tail is left as it is
    if (total !== range.length) {
      throw new Error(`writePart10: read ${total} bytes for a range of ${range.length} at offset ${range.offset}`);
    }
  }

  yield* writeDataset(topLevel);
  const last = flush();
  if (last) yield last;
}

/** A large in-memory value handed out in pieces, without copying. */
function* slices(buf: Buffer): Generator<Buffer> {
  for (let i = 0; i < buf.length; i += OUTPUT_CHUNK) yield buf.subarray(i, Math.min(buf.length, i + OUTPUT_CHUNK));
}

function tagLabel(t: Tag): string {
  const hex = t.toString(16).toUpperCase().padStart(8, '0');
  return `(${hex.slice(0, 4)},${hex.slice(4)})`;
}
