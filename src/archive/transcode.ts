/**
 * A stored object in another transfer syntax, written frame by frame: compressed frames
 * decoded to native samples, native frames encoded to a lossless syntax, or both, in the
 * codec workers (codec-pool.ts). Only the header and a couple of frames are in memory at
 * a time, whatever the size of the object.
 */
import { Readable } from 'node:stream';
import { buffer as readAll } from 'node:stream/consumers';
import { Tags, TransferSyntax, isNativeTransferSyntax, type ByteRange, type DicomElement, type ParsedObject } from '../dicom/dataset.ts';
import { Part10Parser } from '../dicom/part10-parser.ts';
import { writePart10 } from '../dicom/part10-writer.ts';
import type { StoredInstance } from '../index/records.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { readAhead } from '../lib/read-ahead.ts';
import type { CodecPool } from './codec-pool.ts';
import { canDecode, encodableSyntaxes, nativeFrameRange, PixelDataError, type ImagePixelModule } from './pixels.ts';

const uncompressedTargets: ReadonlySet<string> = new Set([TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian]);

/** Extended Offset Table and its lengths (PS3.3 C.7.6.3): they describe the stored fragments only. */
const ExtendedOffsetTable = 0x7fe00001;
const ExtendedOffsetTableLengths = 0x7fe00002;

/** Why an object cannot be re-encoded, said before its first byte goes out. */
export class TranscodeError extends Error {
  override readonly name = 'TranscodeError';
  constructor(readonly code: 'not-acceptable' | 'bad-pixel-data', message: string) {
    super(message);
  }
}

/**
 * Whether an object stored in `stored` can be sent in `target`: uncompressed from anything
 * decoded, a lossless syntax from 8- or 16-bit interleavable pixels.
 */
export function canTranscode(stored: string, target: string, px: ImagePixelModule | undefined): boolean {
  if (target === stored) return true;
  if (uncompressedTargets.has(target)) return isNativeTransferSyntax(stored) || (px !== undefined && canDecode(stored));
  if (!encodableSyntaxes.has(target) || !px || !canDecode(stored)) return false;
  return (px.BitsAllocated === 8 || px.BitsAllocated === 16) && px.PhotometricInterpretation !== 'YBR_FULL_422' && !px.PhotometricInterpretation.startsWith('PALETTE');
}

/** The dataset of a stored object, its bulk values left on storage: read through, never whole. */
export async function readHeader(store: BlobStore, inst: StoredInstance): Promise<ParsedObject> {
  const parser = new Part10Parser();
  for await (const chunk of await store.get(inst.blobKey)) parser.write(chunk as Buffer);
  return parser.end();
}

export interface TranscodeSource {
  store: BlobStore;
  codecs: CodecPool;
  inst: StoredInstance;
  obj: ParsedObject;
  px: ImagePixelModule;
}

/** One frame in native little-endian interleaved samples, and the photometric interpretation they are in. */
interface NativeFrame {
  bytes: Buffer;
  PhotometricInterpretation: string;
}

/**
 * The object in `target`, streamed. Throws TranscodeError before anything is written when
 * the frames cannot be told apart or the first one does not decode; a later frame that
 * does not decode ends the stream with its error.
 */
export async function transcodeInstance(src: TranscodeSource, target: string, options: { meta?: DicomElement[] } = {}): Promise<Readable> {
  const { obj, px, inst } = src;
  const pixel = obj.dataset.get(Tags.PixelData);
  const frames = Math.max(1, px.NumberOfFrames);
  const stored = obj.transferSyntaxUID;
  if (!pixel) throw new TranscodeError('not-acceptable', `instance ${inst.SOPInstanceUID} has no pixel data to re-encode`);
  const nativeSource = isNativeTransferSyntax(stored);
  const readNative = nativeSource ? nativeReader(src, pixel) : compressedReader(src, pixel);
  const encapsulated = !uncompressedTargets.has(target);
  if (encapsulated && !encodableSyntaxes.has(target)) throw new TranscodeError('not-acceptable', `Atrium does not encode ${target}`);

  // The first frame says what the decoded samples are (a JPEG's YCbCr comes out RGB): read before the header is written.
  const first = await readNative(0);
  const photometric = first.PhotometricInterpretation;
  const frameSize = (px.Rows * px.Columns * px.SamplesPerPixel * px.BitsAllocated) / 8;
  const encode = async (f: NativeFrame): Promise<Buffer> => {
    const bytes = px.SamplesPerPixel === 3 && px.PlanarConfiguration === 1 && nativeSource ? interleave(f.bytes, px) : f.bytes;
    if (!encapsulated) {
      if (bytes.length !== frameSize) throw new TranscodeError('bad-pixel-data', `a frame of instance ${inst.SOPInstanceUID} decodes to ${bytes.length} bytes, not the ${frameSize} its header says`);
      return bytes;
    }
    try {
      return await src.codecs.encode(bytes, target, { ...px, PhotometricInterpretation: f.PhotometricInterpretation, PlanarConfiguration: 0 });
    } catch (e) {
      throw frameError(e, inst, -1);
    }
  };
  // The first frame encoded too before anything is written: an encoder that refuses the image is an answer, not a cut stream.
  const firstOut = await encode(first);
  const frameNumbers = Array.from({ length: frames - 1 }, (_, i) => i + 1);
  async function* frameBytes(): AsyncGenerator<Buffer> {
    yield firstOut;
    // Two frames in flight: one a codec worker.
    for await (const [, f] of readAhead(frameNumbers, async (i) => encode(await readNative(i)), 2)) yield f;
  }
  const replace: DicomElement[] = [];
  const le = obj.littleEndian || !nativeSource;
  if (photometric !== px.PhotometricInterpretation) replace.push(csElement(Tags.PhotometricInterpretation, photometric));
  if (px.SamplesPerPixel === 3 && (!nativeSource || encapsulated)) replace.push(usElement(Tags.PlanarConfiguration, 0, le));
  const body = writePart10(
    { obj, readRange: (r: ByteRange) => storedRange(src.store, inst.blobKey, r) },
    {
      transferSyntaxUID: target,
      pixelData: {
        encapsulated,
        vr: encapsulated || px.BitsAllocated <= 8 ? 'OB' : 'OW',
        length: encapsulated ? undefined : frameSize * frames,
        frames: frameBytes(),
      },
      replace,
      remove: [ExtendedOffsetTable, ExtendedOffsetTableLengths],
      ...(options.meta ? { meta: options.meta } : {}),
    },
  );
  return Readable.from(body, { objectMode: false });
}

/** A range of a stored object, streamed. */
export async function* storedRange(store: BlobStore, key: string, r: ByteRange): AsyncGenerator<Buffer> {
  if (r.length === 0) return;
  for await (const chunk of await store.get(key, { start: r.offset, end: r.offset + r.length - 1 })) yield chunk as Buffer;
}

function csElement(tag: number, value: string): DicomElement {
  return { tag, vr: 'CS', value: Buffer.from(value.length % 2 ? `${value} ` : value, 'latin1') };
}

function usElement(tag: number, value: number, littleEndian: boolean): DicomElement {
  const b = Buffer.alloc(2);
  if (littleEndian) b.writeUInt16LE(value);
  else b.writeUInt16BE(value);
  return { tag, vr: 'US', value: b };
}

function frameError(e: unknown, inst: StoredInstance, index: number): Error {
  if (e instanceof PixelDataError) {
    const which = index >= 0 ? `frame ${index + 1} of instance ${inst.SOPInstanceUID}` : `a frame of instance ${inst.SOPInstanceUID}`;
    return new TranscodeError('bad-pixel-data', `${which} cannot be re-encoded: ${e.message}`);
  }
  return e as Error;
}

/** Native frames of a stored native object (big endian swapped), checked against the value's length first. */
function nativeReader(src: TranscodeSource, pixel: DicomElement): (i: number) => Promise<NativeFrame> {
  const { px, inst, obj } = src;
  if (px.BitsAllocated !== 8 && px.BitsAllocated !== 16) throw new TranscodeError('not-acceptable', `Bits Allocated ${px.BitsAllocated} is not encoded losslessly`);
  if (px.PhotometricInterpretation === 'YBR_FULL_422') throw new TranscodeError('not-acceptable', 'native YBR_FULL_422 is not re-encoded');
  const valueLength = pixel.bulk?.length ?? pixel.value?.length ?? 0;
  const last = nativeFrameRange(px, Math.max(1, px.NumberOfFrames) - 1);
  if (last.offset + last.length > valueLength) {
    throw new TranscodeError('bad-pixel-data', `instance ${inst.SOPInstanceUID} declares ${px.NumberOfFrames} frame(s) of ${last.length} bytes, its pixel data has ${valueLength} bytes`);
  }
  return async (i) => {
    const r = nativeFrameRange(px, i);
    let bytes: Buffer;
    if (pixel.value) bytes = Buffer.from(pixel.value.subarray(r.offset, r.offset + r.length));
    else bytes = await readAll(await src.store.get(inst.blobKey, { start: pixel.bulk!.offset + r.offset, end: pixel.bulk!.offset + r.offset + r.length - 1 }));
    if (!obj.littleEndian && px.BitsAllocated === 16) bytes.swap16();
    return { bytes, PhotometricInterpretation: px.PhotometricInterpretation };
  };
}

/** Compressed frames decoded in the codec workers; the frames are told apart before anything is read. */
function compressedReader(src: TranscodeSource, pixel: DicomElement): (i: number) => Promise<NativeFrame> {
  const { px, inst, obj } = src;
  if (!canDecode(obj.transferSyntaxUID)) throw new TranscodeError('not-acceptable', `instance ${inst.SOPInstanceUID} is stored as ${obj.transferSyntaxUID}, which Atrium does not decode`);
  const fragments = pixel.fragments ?? [];
  const frames = Math.max(1, px.NumberOfFrames);
  const perFrame = fragmentsOfFrames(fragments, pixel.basicOffsetTable ?? [], frames);
  if (!perFrame) {
    throw new TranscodeError('bad-pixel-data', `instance ${inst.SOPInstanceUID} declares ${frames} frame(s) in ${fragments.length} fragment(s) and no basic offset table that tells them apart`);
  }
  return async (i) => {
    const parts = perFrame[i]!;
    const first = parts[0]!;
    const lastPart = parts[parts.length - 1]!;
    const span = await readAll(await src.store.get(inst.blobKey, { start: first.offset, end: lastPart.offset + lastPart.length - 1 }));
    const bytes = parts.length === 1 ? span : Buffer.concat(parts.map((p) => span.subarray(p.offset - first.offset, p.offset - first.offset + p.length)));
    try {
      return await src.codecs.decode(bytes, obj.transferSyntaxUID, px);
    } catch (e) {
      throw frameError(e, inst, i);
    }
  };
}

/** As framesOfFragments (retrieve.ts), but undefined where a frame would have no fragment. */
function fragmentsOfFrames(fragments: ByteRange[], basicOffsetTable: number[], numberOfFrames: number): ByteRange[][] | undefined {
  if (fragments.length === 0) return undefined;
  if (fragments.length === numberOfFrames) return fragments.map((f) => [f]);
  if (numberOfFrames === 1) return [fragments];
  if (basicOffsetTable.length !== numberOfFrames) return undefined;
  const base = fragments[0]!.offset - 8;
  const out = basicOffsetTable.map((start, i) => {
    const end = i + 1 < basicOffsetTable.length ? basicOffsetTable[i + 1]! : Infinity;
    return fragments.filter((f) => f.offset - 8 - base >= start && f.offset - 8 - base < end);
  });
  return out.every((p) => p.length > 0) ? out : undefined;
}

/** Planar Configuration 1 (RRR GGG BBB) to 0 (RGB RGB), for an encoder that takes interleaved samples. */
function interleave(planar: Buffer, px: ImagePixelModule): Buffer {
  const pixels = px.Rows * px.Columns;
  const w = px.BitsAllocated / 8;
  const out = Buffer.allocUnsafe(planar.length);
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < pixels; i++) {
      for (let b = 0; b < w; b++) out[(i * 3 + s) * w + b] = planar[(s * pixels + i) * w + b]!;
    }
  }
  return out;
}
