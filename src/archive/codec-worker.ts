/**
 * A codec worker thread (see codec-pool.ts): decodes compressed frames to native
 * little-endian samples and encodes native frames to lossless syntaxes, with the
 * WebAssembly builds of CharLS, OpenJPEG, OpenJPH and libjpeg-turbo that Cornerstone
 * publishes, jpeg-lossless-decoder-js for JPEG lossless (process 14), and dcmjs-codecs for
 * JPEG extended 12-bit and RLE Lossless. Nothing here
 * is a codec of its own; what is here is the DICOM side: which library for which
 * syntax, and the layout of the samples it gives back (PS3.5 §8.2, A.4).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { parentPort } from 'node:worker_threads';
import { Decoder as JPEGLosslessDecoder } from '@cornerstonejs/jpeg-lossless-decoder-js';
import type { CodecJob, CodecPixels, CodecReply } from './codec-pool.ts';
import { jpegColorTransform, PixelDataError } from './pixels.ts';
import { TransferSyntax } from '../dicom/dataset.ts';

const require = createRequire(import.meta.url);

/** What the Emscripten builds' coders share: a buffer to fill in WebAssembly memory, and the other. */
interface FrameInfo { width: number; height: number; bitsPerSample: number; componentCount: number; isSigned?: boolean; isUsingColorTransform?: boolean }
interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array;
  decode(): void;
  getFrameInfo(): FrameInfo;
  getInterleaveMode?(): number;
  getColorSpace?(): number;
  delete(): void;
}
interface WasmEncoder {
  getDecodedBuffer(frameInfo: FrameInfo): Uint8Array;
  getEncodedBuffer(): Uint8Array;
  encode(): void;
  setQuality?(lossless: boolean, quality: number): void;
  setInterleaveMode?(mode: number): void;
  setNearLossless?(n: number): void;
  setDecompositions?(n: number): void;
  delete(): void;
}
interface WasmModule {
  getExceptionMessage?(e: number): string;
  [coder: string]: unknown;
}
type Factory = (overrides: { print: (s: string) => void; printErr: (s: string) => void }) => Promise<WasmModule>;

const modules = new Map<string, Promise<WasmModule>>();
/** Each library is loaded the first time a frame needs it (about 20-90 ms), then kept. */
function codec(name: 'charls' | 'openjpeg' | 'openjph' | 'libjpeg-turbo'): Promise<WasmModule> {
  let m = modules.get(name);
  if (!m) {
    const path = {
      charls: '@cornerstonejs/codec-charls/wasmjs',
      openjpeg: '@cornerstonejs/codec-openjpeg/wasmjs',
      openjph: '@cornerstonejs/codec-openjph/wasmjs',
      'libjpeg-turbo': '@cornerstonejs/codec-libjpeg-turbo-8bit/wasmjs',
    }[name];
    // OpenJPEG reports progress on stdout: the server's output is its log, not the codec's chatter.
    m = (require(path) as Factory)({ print: () => {}, printErr: () => {} });
    modules.set(name, m);
  }
  return m;
}

/**
 * dcmjs-codecs (its WebAssembly build of libjpeg with 12-bit support and of an RLE coder),
 * for what the Cornerstone builds do not do: JPEG extended 12-bit decoding and RLE.
 */
interface DcmjsContext { getEncodedBuffer(): Uint8Array | undefined; getDecodedBuffer(): Uint8Array | undefined }
interface DcmjsCodecs {
  Context: new (attrs: Record<string, unknown>) => DcmjsContext;
  NativeCodecs: {
    initializeAsync(opts: { webAssemblyModulePathOrUrl?: string; logCodecsInfo?: boolean; logCodecsTrace?: boolean }): Promise<void>;
    decodeJpeg(c: DcmjsContext, p?: { convertColorspaceToRgb?: boolean }): DcmjsContext;
    decodeRle(c: DcmjsContext, p?: Record<string, unknown>): DcmjsContext;
    encodeRle(c: DcmjsContext, p?: Record<string, unknown>): DcmjsContext;
  };
  log?: { setLevel(level: string): void };
}
let dcmjsCodecsLoaded: Promise<DcmjsCodecs> | undefined;
function dcmjsCodecs(): Promise<DcmjsCodecs> {
  dcmjsCodecsLoaded ??= (async () => {
    const lib = require('dcmjs-codecs') as DcmjsCodecs;
    lib.log?.setLevel('silent');
    const wasm = path.join(path.dirname(require.resolve('dcmjs-codecs/package.json')), 'build', 'dcmjs-native-codecs.wasm');
    await lib.NativeCodecs.initializeAsync({ webAssemblyModulePathOrUrl: wasm, logCodecsInfo: false, logCodecsTrace: false });
    return lib;
  })();
  return dcmjsCodecsLoaded;
}

/** The attributes dcmjs-codecs describes a frame with. */
function dcmjsContext(lib: DcmjsCodecs, px: CodecPixels, buffer: { encodedBuffer: Uint8Array } | { decodedBuffer: Uint8Array }): DcmjsContext {
  return new lib.Context({
    width: px.Columns, height: px.Rows, bitsAllocated: px.BitsAllocated, bitsStored: px.BitsStored, samplesPerPixel: px.SamplesPerPixel,
    pixelRepresentation: px.PixelRepresentation, planarConfiguration: 0, photometricInterpretation: px.PhotometricInterpretation, ...buffer,
  });
}

/** The sample precision of a JPEG stream's frame header (SOF), or undefined. */
function jpegPrecision(frame: Uint8Array): number | undefined {
  let i = 2;
  while (i + 4 < frame.length) {
    if (frame[i] !== 0xff) { i++; continue; }
    const marker = frame[i + 1]!;
    if (marker === 0xff) { i++; continue; }
    if (marker === 0xda || marker === 0xd9) return undefined;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { i += 2; continue; }
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) return frame[i + 4];
    i += 2 + ((frame[i + 2]! << 8) | frame[i + 3]!);
  }
  return undefined;
}

/** A JPEG extended (process 2 and 4) frame of 12-bit samples, with dcmjs-codecs's 12-bit libjpeg. */
async function decodeJPEG12(frame: Uint8Array, px: CodecPixels): Promise<Decoded> {
  const lib = await dcmjsCodecs();
  let out: Uint8Array | undefined;
  try {
    out = lib.NativeCodecs.decodeJpeg(dcmjsContext(lib, px, { encodedBuffer: frame }), { convertColorspaceToRgb: px.SamplesPerPixel === 3 }).getDecodedBuffer();
  } catch (e) {
    throw new PixelDataError(`the 12-bit JPEG frame does not decode: ${e instanceof Error ? e.message : String(e)}`);
  }
  const expected = px.Rows * px.Columns * px.SamplesPerPixel * 2;
  if (!out || out.length < expected) throw new PixelDataError(`the 12-bit JPEG frame gave ${out?.length ?? 0} bytes, ${expected} expected`);
  return { bytes: new Uint8Array(out.subarray(0, expected)), PhotometricInterpretation: px.SamplesPerPixel === 3 ? 'RGB' : px.PhotometricInterpretation };
}

function coder<T>(m: WasmModule, name: string): T {
  const C = m[name] as new () => T;
  return new C();
}

/** A codec's C++ exception surfaces as a number: its message, when the module can tell it. */
function codecMessage(m: WasmModule | undefined, e: unknown): string {
  if (typeof e === 'number' && m?.getExceptionMessage) return m.getExceptionMessage(e);
  if (e instanceof Error) return e.message;
  return String(e);
}

interface Decoded {
  /** Native little-endian samples, interleaved (Planar Configuration 0). */
  bytes: Uint8Array;
  PhotometricInterpretation: string;
}

async function decode(ts: string, frame: Uint8Array, px: CodecPixels): Promise<Decoded> {
  switch (ts) {
    case TransferSyntax.JPEGBaseline8Bit:
      // libjpeg takes three components without JFIF or Adobe markers for YCbCr; DICOM says RGB means
      // no transform (as dcmdjpeg reads it). An Adobe marker saying "no transform" tells libjpeg so.
      if (px.SamplesPerPixel === 3 && jpegColorTransform(frame, 'YBR_FULL') && !jpegColorTransform(frame, px.PhotometricInterpretation)) frame = withAdobeNoTransform(frame);
      return decodeWith('libjpeg-turbo', 'JPEGDecoder', frame, px, (info) => (info.componentCount === 3 ? 'RGB' : px.PhotometricInterpretation));
    case TransferSyntax.JPEGExtended12Bit:
      // Process 2 (8-bit samples) is libjpeg-turbo's like baseline; process 4 (12-bit), dcmjs-codecs's.
      if ((jpegPrecision(frame) ?? px.BitsStored) > 8) {
        if (px.BitsAllocated !== 16) throw new PixelDataError(`a 12-bit JPEG frame needs Bits Allocated 16, the header says ${px.BitsAllocated}`);
        return decodeJPEG12(frame, px);
      }
      if (px.SamplesPerPixel === 3 && jpegColorTransform(frame, 'YBR_FULL') && !jpegColorTransform(frame, px.PhotometricInterpretation)) frame = withAdobeNoTransform(frame);
      return decodeWith('libjpeg-turbo', 'JPEGDecoder', frame, px, (info) => (info.componentCount === 3 ? 'RGB' : px.PhotometricInterpretation));
    case TransferSyntax.JPEGLSLossless:
    case TransferSyntax.JPEGLSNearLossless:
      return decodeWith('charls', 'JpegLSDecoder', frame, px, () => px.PhotometricInterpretation);
    case TransferSyntax.JPEG2000Lossless:
    case TransferSyntax.JPEG2000:
      // OpenJPEG undoes the reversible or irreversible colour transform itself.
      return decodeWith('openjpeg', 'J2KDecoder', frame, px, (info) => (info.componentCount === 3 && px.PhotometricInterpretation.startsWith('YBR_') && px.PhotometricInterpretation !== 'YBR_FULL' ? 'RGB' : px.PhotometricInterpretation));
    case TransferSyntax.HTJ2KLossless:
    case TransferSyntax.HTJ2KLosslessRPCL:
    case TransferSyntax.HTJ2K:
      return decodeWith('openjph', 'HTJ2KDecoder', frame, px, (info) => (info.componentCount === 3 && px.PhotometricInterpretation.startsWith('YBR_') && px.PhotometricInterpretation !== 'YBR_FULL' ? 'RGB' : px.PhotometricInterpretation));
    case TransferSyntax.JPEGLossless:
    case TransferSyntax.JPEGLosslessSV1:
      return decodeJPEGLossless(frame, px);
    case TransferSyntax.RLELossless:
      return decodeRLE(frame, px);
    default:
      throw new PixelDataError(`no decoder for transfer syntax ${ts}`);
  }
}

async function decodeWith(lib: 'charls' | 'openjpeg' | 'openjph' | 'libjpeg-turbo', name: string, frame: Uint8Array, px: CodecPixels, photometric: (info: FrameInfo) => string): Promise<Decoded> {
  const m = await codec(lib);
  const d = coder<WasmDecoder>(m, name);
  try {
    d.getEncodedBuffer(frame.length).set(frame);
    d.decode();
    const info = d.getFrameInfo();
    checkGeometry(info.width, info.height, info.componentCount, px);
    const out = d.getDecodedBuffer();
    const bytesPerSample = info.bitsPerSample <= 8 ? 1 : 2;
    const expected = info.width * info.height * info.componentCount * bytesPerSample;
    if (out.length < expected) throw new PixelDataError(`${lib} gave ${out.length} bytes for a frame of ${expected}`);
    let bytes: Uint8Array = new Uint8Array(out.subarray(0, expected)); // a copy: the codec's memory is reused
    // CharLS gives colour planes one after the other when the stream is not interleaved.
    if (lib === 'charls' && info.componentCount === 3 && d.getInterleaveMode?.() === 0) bytes = interleave(bytes, info.width * info.height, bytesPerSample);
    return { bytes: widen(bytes, bytesPerSample, px), PhotometricInterpretation: photometric(info) };
  } catch (e) {
    if (e instanceof PixelDataError) throw e;
    throw new PixelDataError(`${lib} cannot decode the frame: ${codecMessage(m, e)}`);
  } finally {
    d.delete();
  }
}

/** The JPEG stream with an Adobe APP14 segment (transform 0: the components are RGB) after its SOI. */
function withAdobeNoTransform(frame: Uint8Array): Uint8Array {
  const app14 = [0xff, 0xee, 0x00, 0x0e, 0x41, 0x64, 0x6f, 0x62, 0x65, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00];
  const out = new Uint8Array(frame.length + app14.length);
  out.set(frame.subarray(0, 2));
  out.set(app14, 2);
  out.set(frame.subarray(2), 2 + app14.length);
  return out;
}

function decodeJPEGLossless(frame: Uint8Array, px: CodecPixels): Decoded {
  const bytesPerSample = px.BitsAllocated <= 8 ? 1 : 2;
  let out: ArrayBufferView;
  try {
    const copy = new Uint8Array(frame); // the decoder reads the ArrayBuffer from its start
    out = new JPEGLosslessDecoder().decode(copy.buffer, 0, copy.length, bytesPerSample) as ArrayBufferView;
  } catch (e) {
    throw new PixelDataError(`JPEG lossless frame does not decode: ${(e as Error).message ?? String(e)}`);
  }
  const expected = px.Rows * px.Columns * px.SamplesPerPixel * bytesPerSample;
  if (!out || out.byteLength < expected) throw new PixelDataError(`JPEG lossless frame gave ${out?.byteLength ?? 0} bytes, ${expected} expected`);
  return { bytes: new Uint8Array(out.buffer, out.byteOffset, expected), PhotometricInterpretation: px.PhotometricInterpretation };
}

function checkGeometry(width: number, height: number, components: number, px: CodecPixels): void {
  if (width !== px.Columns || height !== px.Rows) throw new PixelDataError(`the frame is ${width}x${height}, the header says ${px.Columns}x${px.Rows}`);
  if (components !== px.SamplesPerPixel) throw new PixelDataError(`the frame has ${components} components, the header says ${px.SamplesPerPixel}`);
}

function interleave(planar: Uint8Array, pixels: number, bytesPerSample: number): Uint8Array {
  const out = new Uint8Array(planar.length);
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < pixels; i++) {
      for (let b = 0; b < bytesPerSample; b++) out[(i * 3 + s) * bytesPerSample + b] = planar[(s * pixels + i) * bytesPerSample + b]!;
    }
  }
  return out;
}

/** Samples of one byte where Bits Allocated is 16 (an 8-bit stream in a 16-bit object): two bytes each. */
function widen(bytes: Uint8Array, bytesPerSample: number, px: CodecPixels): Uint8Array {
  const want = px.BitsAllocated / 8;
  if (want === bytesPerSample || bytesPerSample !== 1 || want !== 2) return bytes;
  const out = new Uint8Array(bytes.length * 2);
  for (let i = 0; i < bytes.length; i++) out[i * 2] = bytes[i]!;
  return out;
}

// ---------------------------------------------------------------- encode (lossless only)

async function encode(ts: string, frame: Uint8Array, px: CodecPixels): Promise<Uint8Array> {
  if (px.BitsAllocated !== 8 && px.BitsAllocated !== 16) throw new PixelDataError(`lossless encoding takes Bits Allocated 8 or 16, not ${px.BitsAllocated}`);
  if (px.SamplesPerPixel === 3 && px.PlanarConfiguration === 1) throw new PixelDataError('lossless encoding takes interleaved colour (Planar Configuration 0)');
  const info: FrameInfo = {
    width: px.Columns,
    height: px.Rows,
    bitsPerSample: px.BitsStored,
    componentCount: px.SamplesPerPixel,
    isSigned: px.PixelRepresentation === 1,
    // No colour transform: the stored samples, as they are, must come back.
    isUsingColorTransform: false,
  };
  switch (ts) {
    case TransferSyntax.JPEGLSLossless:
      return encodeWith('charls', 'JpegLSEncoder', frame, info, (e) => {
        e.setNearLossless?.(0);
        if (info.componentCount === 3) e.setInterleaveMode?.(2);
      });
    case TransferSyntax.JPEG2000Lossless:
      return encodeWith('openjpeg', 'J2KEncoder', frame, info, (e) => {
        e.setQuality?.(true, 0);
        e.setDecompositions?.(decompositionsFor(info));
      });
    case TransferSyntax.HTJ2KLossless:
      return encodeWith('openjph', 'HTJ2KEncoder', frame, info, (e) => {
        e.setQuality?.(true, 0);
        e.setDecompositions?.(decompositionsFor(info));
      });
    case TransferSyntax.RLELossless:
      return encodeRLE(frame, px);
    default:
      throw new PixelDataError(`no lossless encoder for transfer syntax ${ts}`);
  }
}

/**
 * An RLE Lossless frame (PS3.5 Annex G) to interleaved little-endian samples, with
 * dcmjs-codecs's RLE coder; the header is checked against the pixel module first (G.3.1: one
 * segment a byte of each sample, offsets within the frame).
 */
async function decodeRLE(frame: Uint8Array, px: CodecPixels): Promise<Decoded> {
  if (px.BitsAllocated % 8 !== 0) throw new PixelDataError(`RLE with Bits Allocated ${px.BitsAllocated} is not supported`);
  if (frame.length < 64) throw new PixelDataError(`RLE frame of ${frame.length} bytes has no 64-byte header`);
  const header = Buffer.from(frame.buffer, frame.byteOffset, 64);
  const bytesPerSample = px.BitsAllocated / 8;
  const segments = header.readUInt32LE(0);
  if (segments !== px.SamplesPerPixel * bytesPerSample) throw new PixelDataError(`RLE header announces ${segments} segments, ${px.SamplesPerPixel * bytesPerSample} expected`);
  for (let seg = 0; seg < segments; seg++) {
    const start = header.readUInt32LE(4 + seg * 4);
    const end = seg + 1 < segments ? header.readUInt32LE(8 + seg * 4) : frame.length;
    if (start < 64 || end > frame.length || end < start) throw new PixelDataError(`RLE segment ${seg + 1} has bad bounds ${start}..${end}`);
  }
  const lib = await dcmjsCodecs();
  let out: Uint8Array | undefined;
  try {
    out = lib.NativeCodecs.decodeRle(dcmjsContext(lib, px, { encodedBuffer: frame })).getDecodedBuffer();
  } catch (e) {
    throw new PixelDataError(`the RLE frame does not decode: ${e instanceof Error ? e.message : String(e)}`);
  }
  const expected = px.Rows * px.Columns * px.SamplesPerPixel * bytesPerSample;
  if (!out || out.length < expected) throw new PixelDataError(`the RLE frame gave ${out?.length ?? 0} bytes, ${expected} expected`);
  return { bytes: new Uint8Array(out.subarray(0, expected)), PhotometricInterpretation: px.PhotometricInterpretation };
}

/** An RLE Lossless frame (PS3.5 Annex G), with dcmjs-codecs's RLE coder. */
async function encodeRLE(frame: Uint8Array, px: CodecPixels): Promise<Uint8Array> {
  const lib = await dcmjsCodecs();
  let out: Uint8Array | undefined;
  try {
    out = lib.NativeCodecs.encodeRle(dcmjsContext(lib, px, { decodedBuffer: frame })).getEncodedBuffer();
  } catch (e) {
    throw new PixelDataError(`dcmjs-codecs cannot encode the frame in RLE: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!out || out.length < 64) throw new PixelDataError('dcmjs-codecs gave no RLE frame');
  return new Uint8Array(out);
}

/** Wavelet levels: the codecs' 5 where the image allows, fewer for one a few pixels wide (OpenJPEG refuses more). */
function decompositionsFor(info: FrameInfo): number {
  return Math.max(0, Math.min(5, Math.floor(Math.log2(Math.min(info.width, info.height)))));
}

async function encodeWith(lib: 'charls' | 'openjpeg' | 'openjph', name: string, frame: Uint8Array, info: FrameInfo, setup: (e: WasmEncoder) => void): Promise<Uint8Array> {
  const m = await codec(lib);
  const e = coder<WasmEncoder>(m, name);
  try {
    setup(e);
    const input = e.getDecodedBuffer(info);
    if (input.length !== frame.length) throw new PixelDataError(`${lib} expects ${input.length} bytes for the frame, it has ${frame.length}`);
    input.set(frame);
    e.encode();
    return new Uint8Array(e.getEncodedBuffer());
  } catch (err) {
    if (err instanceof PixelDataError) throw err;
    throw new PixelDataError(`${lib} cannot encode the frame: ${codecMessage(m, err)}`);
  } finally {
    e.delete();
  }
}

// ---------------------------------------------------------------- messages

parentPort?.on('message', (job: CodecJob) => {
  void (async () => {
    try {
      if (job.op === 'decode') {
        const d = await decode(job.transferSyntaxUID, job.frame, job.px);
        const reply: CodecReply = { id: job.id, ok: true, bytes: d.bytes, PhotometricInterpretation: d.PhotometricInterpretation };
        parentPort!.postMessage(reply, [d.bytes.buffer as ArrayBuffer]);
      } else {
        const bytes = await encode(job.transferSyntaxUID, job.frame, job.px);
        const reply: CodecReply = { id: job.id, ok: true, bytes };
        parentPort!.postMessage(reply, [bytes.buffer as ArrayBuffer]);
      }
    } catch (e) {
      const reply: CodecReply = { id: job.id, ok: false, error: e instanceof Error ? e.message : String(e), pixelData: e instanceof PixelDataError };
      parentPort!.postMessage(reply);
    }
  })();
});
