import { Readable } from 'node:stream';
import { applyPalette, PaletteError, paletteElements, paletteOf, type Palette } from './palette.ts';
import { coercePatientModule, setPatientModule, storedPatientDiffers } from './coercion.ts';
import { buffer as readAll } from 'node:stream/consumers';
import { Tags, TransferSyntax, isNativeTransferSyntax, tagToHex, type ByteRange } from '../dicom/dataset.ts';
import { parsePart10 } from '../dicom/part10-parser.ts';
import { writePart10 } from '../dicom/part10-writer.ts';
import type { ArchiveIndex } from '../index/archive-index.ts';
import type { PatientAttributes, SqlRestriction, StoredInstance } from '../index/records.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { canDecode, decodeFrame, encodableSyntaxes, nativeFrameRange, PixelDataError, pixelModuleFrom, type ImagePixelModule } from './pixels.ts';
import { CodecPool } from './codec-pool.ts';
import { canTranscode, readHeader, storedRange, TranscodeError, transcodeInstance } from './transcode.ts';
import { renderFrame, type RenderOptions } from './render.ts';
import { readAhead } from '../lib/read-ahead.ts';
import type { Logger } from 'pino';

/** bad-pixel-data: a stored frame that does not decode, or frames that do not fit the header's count and size. */
export type RetrieveErrorCode = 'not-found' | 'not-acceptable' | 'bad-request' | 'bad-pixel-data';

export class RetrieveError extends Error {
  constructor(readonly code: RetrieveErrorCode, message: string) {
    super(message);
    this.name = 'RetrieveError';
  }
}


export interface FrameBytes {
  bytes: Buffer;
  /** The transfer syntax the bytes are in (native frames are always little endian). */
  transferSyntaxUID: string;
}

/** Objects larger than this are streamed from storage rather than read whole. */
const wholeReadLimit = 16 * 1024 * 1024;
/** How many objects a retrieve reads ahead of the one being sent (memory: readAheadCount x wholeReadLimit at most). */
const readAheadCount = 4;

/**
 * Buffers for the objects a retrieve reads whole, given back once the socket has taken them.
 * Allocating a fresh buffer per object made a series retrieve allocate its whole size in
 * external memory, and V8 answered with a full GC every few megabytes (measured: a dozen
 * mark-compacts per 262 MB series, up to half of the main thread).
 */
class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private pooledBytes = 0;

  constructor(private readonly maxPooledBytes: number) {}

  /** A buffer of at least size + 1 bytes (one more, to see a blob longer than expected). */
  take(size: number): Buffer {
    const capacity = Math.max(64 * 1024, 2 ** Math.ceil(Math.log2(size + 1)));
    const buffer = this.free.get(capacity)?.pop();
    if (!buffer) return Buffer.allocUnsafeSlow(capacity);
    this.pooledBytes -= capacity;
    return buffer;
  }

  give(buffer: Buffer): void {
    if (this.pooledBytes + buffer.length > this.maxPooledBytes) return;
    let list = this.free.get(buffer.length);
    if (!list) this.free.set(buffer.length, (list = []));
    list.push(buffer);
    this.pooledBytes += buffer.length;
  }
}

/** Reading stored objects back: whole, re-encoded, by frame, by bulk value, rendered. */
/**
 * The answer for what is not there, and for what the caller may not see: the same words,
 * so that a refusal tells nothing of what exists.
 */
export function notInArchive(where: { StudyInstanceUID?: string; SeriesInstanceUID?: string; SOPInstanceUID?: string }): RetrieveError {
  const what = where.SOPInstanceUID ? `instance ${where.SOPInstanceUID}` : where.SeriesInstanceUID ? `series ${where.SeriesInstanceUID}` : `study ${where.StudyInstanceUID}`;
  return new RetrieveError('not-found', `${what} is not in the archive`);
}

export class Retriever {
  private readonly buffers = new BufferPool(64 * 1024 * 1024);
  /** The worker threads that decode and encode frames (off the main thread). */
  readonly codecs: CodecPool;

  constructor(private readonly index: ArchiveIndex, private readonly store: BlobStore, private readonly logger?: Logger, codecs?: CodecPool) {
    this.codecs = codecs ?? new CodecPool({ logger });
  }

  /** An object that goes out with the patient it was stored under, though the index holds another: said. */
  private uncoerced(inst: StoredInstance): void {
    this.logger?.warn({ sop: inst.SOPInstanceUID, study: inst.StudyInstanceUID },
      'object sent with the patient module it was stored with: it cannot be rewritten faithfully (deflated, or a character set that cannot write the current name)');
  }

  async findInstances(where: { StudyInstanceUID: string; SeriesInstanceUID?: string; SOPInstanceUID?: string; restriction?: SqlRestriction }): Promise<StoredInstance[]> {
    const found = await this.index.getStoredInstances(where);
    if (found.length === 0) throw notInArchive(where);
    return found;
  }

  /** Whether the object can be sent in this transfer syntax ("*" = as stored). */
  canSendAs(inst: StoredInstance, transferSyntaxUID: string): boolean {
    if (transferSyntaxUID === '*' || transferSyntaxUID === inst.TransferSyntaxUID) return true;
    // Native to native needs no look at the pixels (a series retrieve asks this of every object).
    if (isNativeTransferSyntax(inst.TransferSyntaxUID) && canTranscode(inst.TransferSyntaxUID, transferSyntaxUID, undefined)) return true;
    let px: ImagePixelModule | undefined;
    try {
      px = inst.layout.pixelData ? this.pixelModuleOf(inst) : undefined;
    } catch {
      px = undefined;
    }
    return canTranscode(inst.TransferSyntaxUID, transferSyntaxUID, px);
  }

  /**
   * The objects of a retrieve, in order, each as stored or re-encoded. Objects sent as stored
   * and small enough are read whole, up to readAheadCount of them ahead of the one being sent, so
   * that storage reads overlap network writes; larger ones are streamed.
   */
  async *openInstances(
    plan: ReadonlyArray<{ inst: StoredInstance; transferSyntaxUID: string }>,
    /** An object that cannot be re-encoded comes as an item with `failed` (and an empty body) instead of ending the retrieve. */
    failuresAsItems = false,
  ): AsyncGenerator<{ inst: StoredInstance; transferSyntaxUID: string; body: Buffer | Readable; release?: () => void; failed?: string }> {
    type Opened = { body: Buffer | Readable; release?: () => void; failed?: string };
    // The patient each study is filed under now: objects stored under another go out corrected.
    const patients = new Map<string, Promise<PatientAttributes | undefined>>();
    const patientOf = (study: string) => {
      let p = patients.get(study);
      if (!p) {
        p = this.index.studyPatient(study).then((r) => r?.patient);
        patients.set(study, p);
      }
      return p;
    };
    const open = async ({ inst, transferSyntaxUID }: { inst: StoredInstance; transferSyntaxUID: string }): Promise<Opened> => {
      if ((transferSyntaxUID === '*' || transferSyntaxUID === inst.TransferSyntaxUID) && inst.size <= wholeReadLimit) {
        const buffer = this.buffers.take(inst.size);
        let body: Buffer;
        try {
          body = await this.store.readWhole(inst.blobKey, inst.size, buffer);
        } catch (e) {
          this.buffers.give(buffer);
          throw e;
        }
        const patient = await patientOf(inst.StudyInstanceUID);
        if (patient && storedPatientDiffers(inst.metadataJson, patient)) {
          const coerced = coercePatientModule(body, patient);
          if (coerced) {
            this.buffers.give(buffer);
            return { body: coerced };
          }
          this.uncoerced(inst);
        }
        return { body, release: () => this.buffers.give(buffer) };
      }
      try {
        return { body: await this.openInstance(inst, transferSyntaxUID, await patientOf(inst.StudyInstanceUID)) };
      } catch (e) {
        if (failuresAsItems && e instanceof RetrieveError) return { body: Buffer.alloc(0), failed: e.message };
        throw e;
      }
    };
    // The client went away or a read failed: what was opened ahead is closed.
    const close = ({ body, release }: Opened) => (body instanceof Readable ? body.destroy() : release?.());
    for await (const [item, opened] of readAhead(plan, open, readAheadCount, close)) yield { ...item, ...opened };
  }

  /**
   * The Part 10 object in the requested transfer syntax, streamed, with the patient module
   * its study is filed under now (`patient`, looked up when not given) where that changed
   * since it was stored.
   */
  async openInstance(inst: StoredInstance, transferSyntaxUID: string, patient?: PatientAttributes): Promise<Readable> {
    patient ??= (await this.index.studyPatient(inst.StudyInstanceUID))?.patient;
    const coerce = patient && storedPatientDiffers(inst.metadataJson, patient) ? patient : undefined;
    if (transferSyntaxUID === '*' || transferSyntaxUID === inst.TransferSyntaxUID) {
      if (coerce) {
        const coerced = await this.openCoerced(inst, coerce);
        if (coerced) return coerced;
        this.uncoerced(inst);
      }
      return this.store.get(inst.blobKey);
    }
    if (!this.canSendAs(inst, transferSyntaxUID)) {
      throw new RetrieveError('not-acceptable', `instance ${inst.SOPInstanceUID} is stored as ${inst.TransferSyntaxUID} and cannot be sent as ${transferSyntaxUID}`);
    }
    // The header is read through the stored object; bulk values stay on storage and are read
    // (native) or decoded and encoded (frame by frame) as they are written.
    const obj = await readHeader(this.store, inst);
    if (coerce && !setPatientModule(obj.dataset, coerce)) this.uncoerced(inst);
    const nativeToNative = isNativeTransferSyntax(inst.TransferSyntaxUID) && isNativeTransferSyntax(transferSyntaxUID);
    if (nativeToNative || !inst.layout.pixelData) {
      return Readable.from(writePart10(
        { obj, readRange: (r: ByteRange) => storedRange(this.store, inst.blobKey, r) },
        { transferSyntaxUID: transferSyntaxUID as '1.2.840.10008.1.2.1' },
      ));
    }
    try {
      return await transcodeInstance({ store: this.store, codecs: this.codecs, inst, obj, px: this.pixelModuleOf(inst) }, transferSyntaxUID);
    } catch (e) {
      if (e instanceof TranscodeError) throw new RetrieveError(e.code, e.message);
      throw e;
    }
  }

  /**
   * A large object as stored but for its patient module: the dataset up to its first bulk
   * value (the pixel data) is read and re-encoded, the rest streamed from storage as it is.
   * Undefined when that cannot be done faithfully.
   */
  private async openCoerced(inst: StoredInstance, patient: PatientAttributes): Promise<Readable | undefined> {
    const firstBulk = Math.min(...Object.entries(inst.layout.bulk).filter(([path]) => !path.includes('.')).map(([, r]) => r.offset));
    if (!Number.isFinite(firstBulk) || firstBulk > wholeReadLimit) return undefined;
    const upToValue = await this.readRange(inst.blobKey, 0, firstBulk);
    // The element's header: 12 bytes (explicit VR, 4-byte length) or 8 (implicit VR, or a 2-byte length).
    const tag = Object.entries(inst.layout.bulk).find(([, r]) => r.offset === firstBulk)![0];
    const headEnd = [12, 8].map((n) => firstBulk - n).find((at) => at >= inst.layout.datasetOffset && tagAt(upToValue, at, inst.layout.littleEndian) === tag);
    if (headEnd === undefined) return undefined;
    const head = coercePatientModule(upToValue.subarray(0, headEnd), patient);
    if (!head) return undefined;
    const rest = await this.store.get(inst.blobKey, { start: headEnd, end: inst.size - 1 });
    return Readable.from((async function* () {
      yield head;
      yield* rest;
    })(), { objectMode: false });
  }

  /** A bulk value of the instance by tag path, as stored. */
  async openBulk(inst: StoredInstance, tagPath: string): Promise<Readable> {
    // An own key only: 'toString' or 'constructor' would otherwise find Object.prototype's.
    const range = Object.hasOwn(inst.layout.bulk, tagPath) ? inst.layout.bulk[tagPath] : undefined;
    if (!range) throw new RetrieveError('not-found', `instance ${inst.SOPInstanceUID} has no bulk data at ${tagPath}`);
    if (range.length === 0) return Readable.from([]);
    return this.store.get(inst.blobKey, { start: range.offset, end: range.offset + range.length - 1 });
  }

  /**
   * Whether the instance has pixel data to render or send frame by frame: stored apart (its
   * byte range in the layout), or inside a deflated dataset, which has no byte ranges (its
   * metadata names the pixel data and the image pixel module).
   */
  hasPixelData(inst: StoredInstance): boolean {
    if (inst.layout.pixelData !== undefined) return true;
    if (inst.TransferSyntaxUID !== TransferSyntax.DeflatedExplicitVRLittleEndian) return false;
    const md = JSON.parse(inst.metadataJson) as Record<string, unknown>;
    return md[tagToHex(Tags.PixelData)] !== undefined && md[tagToHex(Tags.Rows)] !== undefined && md[tagToHex(Tags.Columns)] !== undefined;
  }

  pixelModuleOf(inst: StoredInstance): ImagePixelModule {
    const md = JSON.parse(inst.metadataJson) as Record<string, { Value?: unknown[] }>;
    const num = (t: number): number | undefined => {
      const v = md[tagToHex(t)]?.Value?.[0];
      return typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : undefined;
    };
    const str = (t: number): string | undefined => {
      const v = md[tagToHex(t)]?.Value?.[0];
      return typeof v === 'string' ? v : undefined;
    };
    const px = pixelModuleFrom(num, str, inst.layout.littleEndian);
    if (!px) throw new RetrieveError('not-found', `instance ${inst.SOPInstanceUID} has no image pixel data`);
    return px;
  }

  /** Throws not-found unless every frame number names a frame of the instance (checked before an answer starts). */
  checkFrameNumbers(inst: StoredInstance, frameNumbers: readonly number[], px = this.pixelModuleOf(inst)): void {
    for (const f of frameNumbers) {
      if (!Number.isSafeInteger(f) || f < 1 || f > px.NumberOfFrames) {
        throw new RetrieveError('not-found', `frame ${f} does not exist: instance ${inst.SOPInstanceUID} has ${px.NumberOfFrames} frame(s)`);
      }
    }
  }

  /** Frames (1-based numbers) as stored: native frames in little endian, compressed frames as their bitstream. */
  async readFrames(inst: StoredInstance, frameNumbers: number[], px = this.pixelModuleOf(inst)): Promise<FrameBytes[]> {
    this.checkFrameNumbers(inst, frameNumbers, px);
    const pixelData = inst.layout.pixelData;
    if (!pixelData && inst.TransferSyntaxUID === TransferSyntax.DeflatedExplicitVRLittleEndian) return this.readDeflatedFrames(inst, frameNumbers, px);
    if (!pixelData) throw new RetrieveError('not-found', `instance ${inst.SOPInstanceUID} has no pixel data stored apart`);
    if (isNativeTransferSyntax(inst.TransferSyntaxUID)) {
      return Promise.all(frameNumbers.map(async (f) => {
        const r = nativeFrameRange(px, f - 1);
        if (r.offset + r.length > pixelData.range.length) {
          throw new RetrieveError('bad-pixel-data', `frame ${f} of instance ${inst.SOPInstanceUID} lies beyond its pixel data: ${px.NumberOfFrames} frame(s) of ${r.length} bytes declared, ${pixelData.range.length} bytes stored`);
        }
        const start = pixelData.range.offset + r.offset;
        const bytes = await this.readRange(inst.blobKey, start, r.length);
        if (!px.littleEndian) swapToLittleEndian(bytes, px.BitsAllocated);
        return { bytes, transferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian };
      }));
    }
    const fragmentsOfFrame = framesOfFragments(pixelData.fragments ?? [], pixelData.basicOffsetTable ?? [], px.NumberOfFrames);
    return Promise.all(frameNumbers.map(async (f) => {
      const parts = fragmentsOfFrame[f - 1];
      if (!parts || parts.length === 0) throw new RetrieveError('bad-pixel-data', `frame ${f} of instance ${inst.SOPInstanceUID} has no fragment: ${px.NumberOfFrames} frame(s) declared`);
      const first = parts[0]!;
      const last = parts[parts.length - 1]!;
      const span = await this.readRange(inst.blobKey, first.offset, last.offset + last.length - first.offset);
      // Fragments of one frame are contiguous but for 8-byte item headers between them.
      const bytes = parts.length === 1 ? span : Buffer.concat(parts.map((p) => span.subarray(p.offset - first.offset, p.offset - first.offset + p.length)));
      return { bytes, transferSyntaxUID: inst.TransferSyntaxUID };
    }));
  }

  /**
   * Frames of a deflated object: its dataset is inflated (it has no byte ranges to read apart;
   * the parser caps what it inflates) and the frames cut from the pixel data value.
   */
  private async readDeflatedFrames(inst: StoredInstance, frameNumbers: number[], px: ImagePixelModule): Promise<FrameBytes[]> {
    const value = (await readHeader(this.store, inst)).dataset.get(Tags.PixelData)?.value;
    if (!value) throw new RetrieveError('not-found', `instance ${inst.SOPInstanceUID} has no pixel data`);
    return frameNumbers.map((f) => {
      const r = nativeFrameRange(px, f - 1);
      if (r.offset + r.length > value.length) {
        throw new RetrieveError('bad-pixel-data', `frame ${f} of instance ${inst.SOPInstanceUID} lies beyond its pixel data: ${px.NumberOfFrames} frame(s) of ${r.length} bytes declared, ${value.length} bytes stored`);
      }
      // Deflated is explicit VR little endian once inflated.
      return { bytes: Buffer.from(value.subarray(r.offset, r.offset + r.length)), transferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian };
    });
  }

  /**
   * Frames decoded to native little-endian bytes (interleaved colour), for clients that want
   * no compression; PhotometricInterpretation says what decoded colour frames are in (a JPEG's
   * YCbCr comes out RGB). Decoding runs in the codec workers.
   */
  async readDecodedFrames(inst: StoredInstance, frameNumbers: number[], px = this.pixelModuleOf(inst)): Promise<Array<FrameBytes & { PhotometricInterpretation: string }>> {
    if (isNativeTransferSyntax(inst.TransferSyntaxUID)) return (await this.readFrames(inst, frameNumbers, px)).map((f) => ({ ...f, PhotometricInterpretation: px.PhotometricInterpretation }));
    if (!canDecode(inst.TransferSyntaxUID)) {
      throw new RetrieveError('not-acceptable', `frames of ${inst.SOPInstanceUID} are stored as ${inst.TransferSyntaxUID}, which Atrium does not decode`);
    }
    const frames = await this.readFrames(inst, frameNumbers, px);
    return Promise.all(frames.map(async (f, i) => {
      const d = await this.decodeStoredFrame(inst, frameNumbers[i]!, f.bytes, px);
      return { bytes: d.bytes, transferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian, PhotometricInterpretation: d.PhotometricInterpretation };
    }));
  }

  /**
   * Whether native frames of this object can be sent encoded in `transferSyntaxUID` (a lossless
   * syntax Atrium encodes): smaller on the wire, the same samples once decoded. Only native
   * objects (a compressed one goes as stored) with interleaved or single-sample pixels.
   */
  canEncodeFrames(inst: StoredInstance, transferSyntaxUID: string, px = this.pixelModuleOf(inst)): boolean {
    return isNativeTransferSyntax(inst.TransferSyntaxUID) && encodableSyntaxes.has(transferSyntaxUID)
      && (px.SamplesPerPixel === 1 || px.PlanarConfiguration === 0) && canTranscode(inst.TransferSyntaxUID, transferSyntaxUID, px);
  }

  /** Native frames encoded in a lossless syntax in the codec workers (see canEncodeFrames); a frame the encoder refuses is bad-pixel-data, naming it. */
  async readEncodedFrames(inst: StoredInstance, frameNumbers: number[], transferSyntaxUID: string, px = this.pixelModuleOf(inst)): Promise<FrameBytes[]> {
    const frames = await this.readFrames(inst, frameNumbers, px);
    // Coded as unsigned words of Bits Allocated, not Bits Stored: every bit comes back whatever
    // the samples hold (negative values sign-extended past Bits Stored, bits above it), and a
    // decoder reads them as the native frame's words (signed or not, as the header says).
    const words = { ...px, BitsStored: px.BitsAllocated, HighBit: px.BitsAllocated - 1, PixelRepresentation: 0 };
    return Promise.all(frames.map(async (f, i) => {
      try {
        return { bytes: await this.codecs.encode(f.bytes, transferSyntaxUID, words), transferSyntaxUID };
      } catch (e) {
        throw new RetrieveError('bad-pixel-data', `frame ${frameNumbers[i]} of instance ${inst.SOPInstanceUID} was not encoded as ${transferSyntaxUID}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }));
  }

  /** A compressed frame decoded in a codec worker; a frame that does not decode is bad-pixel-data, naming it. */
  private async decodeStoredFrame(inst: StoredInstance, frameNumber: number, bytes: Buffer, px: ImagePixelModule): Promise<{ bytes: Buffer; PhotometricInterpretation: string }> {
    try {
      return await this.codecs.decode(bytes, inst.TransferSyntaxUID, px);
    } catch (e) {
      if (e instanceof PixelDataError) throw new RetrieveError('bad-pixel-data', `frame ${frameNumber} of instance ${inst.SOPInstanceUID} does not decode: ${e.message}`);
      throw e;
    }
  }

  async renderFrame(inst: StoredInstance, frameNumber: number, options: RenderOptions): Promise<Buffer> {
    if (!canDecode(inst.TransferSyntaxUID)) {
      throw new RetrieveError('not-acceptable', `instance ${inst.SOPInstanceUID} is stored as ${inst.TransferSyntaxUID}, which Atrium cannot render yet`);
    }
    const px = this.pixelModuleOf(inst);
    const [frame] = await this.readFrames(inst, [frameNumber], px);
    let native = frame!.bytes;
    let decodedPx: ImagePixelModule = { ...px, littleEndian: true };
    if (!isNativeTransferSyntax(inst.TransferSyntaxUID)) {
      const d = await this.decodeStoredFrame(inst, frameNumber, frame!.bytes, px);
      native = d.bytes;
      decodedPx = { ...decodedPx, PhotometricInterpretation: d.PhotometricInterpretation, PlanarConfiguration: 0 };
    }
    let decoded;
    try {
      decoded = decodeFrame(native, TransferSyntax.ExplicitVRLittleEndian, decodedPx);
    } catch (e) {
      if (e instanceof PixelDataError) throw new RetrieveError('bad-pixel-data', `frame ${frameNumber} of instance ${inst.SOPInstanceUID} cannot be rendered: ${e.message}`);
      throw e;
    }
    if (decodedPx.PhotometricInterpretation === 'PALETTE COLOR' && decoded.kind === 'gray') decoded = applyPalette(decoded, await this.paletteOf(inst, px));
    return renderFrame(decoded, decodedPx, options);
  }

  /** The palette of a PALETTE COLOR image, read from its stored header (tables left on storage read apart). */
  private async paletteOf(inst: StoredInstance, px: ImagePixelModule): Promise<Palette> {
    const obj = await readHeader(this.store, inst);
    const values = await paletteElements(obj.dataset, obj.littleEndian, (r) => this.readRange(inst.blobKey, r.offset, r.length));
    try {
      return paletteOf((t) => values.get(t), px.PixelRepresentation === 1);
    } catch (e) {
      if (e instanceof PaletteError) throw new RetrieveError('bad-pixel-data', `instance ${inst.SOPInstanceUID} cannot be rendered: ${e.message}`);
      throw e;
    }
  }

  private async readRange(key: string, offset: number, length: number): Promise<Buffer> {
    if (length === 0) return Buffer.alloc(0);
    return readAll(await this.store.get(key, { start: offset, end: offset + length - 1 }));
  }
}

/** The tag (as 8 hex digits) of the element header at `at`. */
function tagAt(bytes: Buffer, at: number, littleEndian: boolean): string {
  const group = littleEndian ? bytes.readUInt16LE(at) : bytes.readUInt16BE(at);
  const element = littleEndian ? bytes.readUInt16LE(at + 2) : bytes.readUInt16BE(at + 2);
  return (group * 0x10000 + element).toString(16).padStart(8, '0').toUpperCase();
}

function swapToLittleEndian(bytes: Buffer, bitsAllocated: number): void {
  if (bitsAllocated === 16) bytes.swap16();
  else if (bitsAllocated === 32) bytes.swap32();
  else if (bitsAllocated === 64) bytes.swap64();
}

function nativeBytesOf(raw: ArrayBufferView): Buffer {
  return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
}

/**
 * Which fragments make each frame (PS3.5 A.4): one fragment a frame when the counts
 * agree, else the basic offset table, else (single frame) all of them.
 */
export function framesOfFragments(fragments: ByteRange[], basicOffsetTable: number[], numberOfFrames: number): ByteRange[][] {
  if (fragments.length === numberOfFrames) return fragments.map((f) => [f]);
  if (numberOfFrames === 1) return [fragments];
  if (basicOffsetTable.length === numberOfFrames && fragments.length > 0) {
    // Offsets in the table count from the first fragment's item header (8 bytes before its value).
    const base = fragments[0]!.offset - 8;
    return basicOffsetTable.map((start, i) => {
      const end = i + 1 < basicOffsetTable.length ? basicOffsetTable[i + 1]! : Infinity;
      return fragments.filter((f) => f.offset - 8 - base >= start && f.offset - 8 - base < end);
    });
  }
  throw new RetrieveError('bad-pixel-data', `cannot tell frames apart: ${fragments.length} fragments, ${numberOfFrames} frames declared and no basic offset table`);
}
