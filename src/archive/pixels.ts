/**
 * Frames of pixel data turned into numbers (PS3.5 §8; PS3.3 C.7.6.3): native (little and
 * big endian) and JPEG Baseline via jpeg-js here; the other compressed syntaxes, RLE
 * Lossless included, are decoded to native samples first by the codec workers
 * (codec-pool.ts, WebAssembly builds: nothing native to build on the nodes).
 */
import { createRequire } from 'node:module';
import { Tags, TransferSyntax } from '../dicom/dataset.ts';

// jpeg-js is loaded at the first JPEG Baseline frame decoded here, not with the server.
const require = createRequire(import.meta.url);
let jpegModule: typeof import('jpeg-js') | undefined;
const jpeg = (): typeof import('jpeg-js') => (jpegModule ??= require('jpeg-js') as typeof import('jpeg-js'));

/** The Image Pixel module attributes (PS3.3 C.7.6.3) that decoding and rendering need. */
export interface ImagePixelModule {
  Rows: number;
  Columns: number;
  SamplesPerPixel: number;
  BitsAllocated: number;
  BitsStored: number;
  HighBit: number;
  PixelRepresentation: number;
  PhotometricInterpretation: string;
  PlanarConfiguration?: number;
  NumberOfFrames: number;
  RescaleSlope?: number;
  RescaleIntercept?: number;
  WindowCenter?: number;
  WindowWidth?: number;
  /** Byte order of native frame bytes as given to decodeFrame. */
  littleEndian: boolean;
}

/**
 * The Image Pixel module from attribute readers (of a parsed dataset, of stored DICOM JSON),
 * with the defaults PS3.3 C.7.6.3 implies; undefined when Rows, Columns or BitsAllocated is missing.
 */
export function pixelModuleFrom(
  num: (tag: number) => number | undefined,
  str: (tag: number) => string | undefined,
  littleEndian: boolean,
): ImagePixelModule | undefined {
  const rows = num(Tags.Rows), columns = num(Tags.Columns), bits = num(Tags.BitsAllocated);
  if (rows === undefined || columns === undefined || bits === undefined) return undefined;
  const bitsStored = num(Tags.BitsStored) ?? bits;
  return {
    Rows: rows,
    Columns: columns,
    SamplesPerPixel: num(Tags.SamplesPerPixel) ?? 1,
    BitsAllocated: bits,
    BitsStored: bitsStored,
    HighBit: num(Tags.HighBit) ?? bitsStored - 1,
    PixelRepresentation: num(Tags.PixelRepresentation) ?? 0,
    PhotometricInterpretation: str(Tags.PhotometricInterpretation) ?? 'MONOCHROME2',
    PlanarConfiguration: num(Tags.PlanarConfiguration),
    NumberOfFrames: num(Tags.NumberOfFrames) ?? 1,
    RescaleSlope: num(Tags.RescaleSlope),
    RescaleIntercept: num(Tags.RescaleIntercept),
    WindowCenter: num(Tags.WindowCenter),
    WindowWidth: num(Tags.WindowWidth),
    littleEndian,
  };
}

export type RawSamples = Uint8Array | Uint16Array | Int16Array | Uint32Array | Int32Array;

export interface DecodedFrame {
  kind: 'gray' | 'rgb';
  rows: number;
  columns: number;
  /**
   * gray: modality values (Rescale Slope and Intercept applied), one a pixel;
   * rgb: interleaved 8-bit R, G, B.
   */
  samples: Float32Array | Int32Array | Uint8Array;
  /**
   * The stored values before rescale (masked to Bits Stored, sign-extended from High Bit),
   * in a native little-endian array matching Bits Allocated and Pixel Representation;
   * interleaved RGB for colour. Bits Allocated 1 gives one byte (0 or 1) a pixel.
   */
  raw: RawSamples;
}

export class UnsupportedTransferSyntaxError extends Error {
  override readonly name = 'UnsupportedTransferSyntaxError';
  constructor(readonly transferSyntaxUID: string) {
    super(`Atrium does not decode pixel data in transfer syntax ${transferSyntaxUID}`);
  }
}

/** Pixel data that the transfer syntax allows but that this decoder cannot make sense of. */
export class PixelDataError extends Error {
  override readonly name = 'PixelDataError';
}

const nativeSyntaxes: ReadonlySet<string> = new Set([
  TransferSyntax.ImplicitVRLittleEndian,
  TransferSyntax.ExplicitVRLittleEndian,
  TransferSyntax.DeflatedExplicitVRLittleEndian,
  TransferSyntax.ExplicitVRBigEndian,
]);

/** Compressed syntaxes the codec workers decode (codec-worker.ts). */
export const decodableCompressedSyntaxes: ReadonlySet<string> = new Set([
  TransferSyntax.RLELossless,
  TransferSyntax.JPEGBaseline8Bit,
  TransferSyntax.JPEGExtended12Bit,
  TransferSyntax.JPEGLossless,
  TransferSyntax.JPEGLosslessSV1,
  TransferSyntax.JPEGLSLossless,
  TransferSyntax.JPEGLSNearLossless,
  TransferSyntax.JPEG2000Lossless,
  TransferSyntax.JPEG2000,
  TransferSyntax.HTJ2KLossless,
  TransferSyntax.HTJ2KLosslessRPCL,
  TransferSyntax.HTJ2K,
]);

/** Lossless syntaxes the codec workers encode native frames to. */
export const encodableSyntaxes: ReadonlySet<string> = new Set([
  TransferSyntax.RLELossless,
  TransferSyntax.JPEGLSLossless,
  TransferSyntax.JPEG2000Lossless,
  TransferSyntax.HTJ2KLossless,
]);

/** Whether Atrium can turn frames in this syntax into native samples (here or in a codec worker). */
export function canDecode(transferSyntaxUID: string): boolean {
  return nativeSyntaxes.has(transferSyntaxUID) || decodableCompressedSyntaxes.has(transferSyntaxUID);
}

/** Whether decodeFrame, on this thread, reads this syntax (native, JPEG baseline). */
export function decodesInProcess(transferSyntaxUID: string): boolean {
  return nativeSyntaxes.has(transferSyntaxUID) || transferSyntaxUID === TransferSyntax.JPEGBaseline8Bit;
}

/** Bits of one native frame: YBR_FULL_422 keeps two samples a pixel (PS3.3 C.7.6.3.1.2). */
function frameBits(px: ImagePixelModule): number {
  const samples = px.PhotometricInterpretation === 'YBR_FULL_422' ? 2 : px.SamplesPerPixel;
  return px.Rows * px.Columns * samples * px.BitsAllocated;
}

/**
 * Where frame `frameIndex` (0-based) lies within a native pixel data value.
 * With Bits Allocated 1 frames are packed without padding, so a frame may start
 * inside a byte; the range then covers the bytes the frame touches.
 */
export function nativeFrameRange(px: ImagePixelModule, frameIndex: number): { offset: number; length: number } {
  if (!Number.isSafeInteger(frameIndex) || frameIndex < 0 || frameIndex >= Math.max(1, px.NumberOfFrames)) {
    throw new RangeError(`frame index ${frameIndex} is outside 0..${Math.max(1, px.NumberOfFrames) - 1}`);
  }
  const bits = frameBits(px);
  const offset = Math.floor((frameIndex * bits) / 8);
  const end = Math.ceil(((frameIndex + 1) * bits) / 8);
  return { offset, length: end - offset };
}

export function decodeFrame(frame: Buffer, transferSyntaxUID: string, px: ImagePixelModule): DecodedFrame {
  checkPixelModule(px);
  if (nativeSyntaxes.has(transferSyntaxUID)) return decodeNative(frame, px);
  if (transferSyntaxUID === TransferSyntax.JPEGBaseline8Bit) return decodeJPEGBaseline(frame, px);
  throw new UnsupportedTransferSyntaxError(transferSyntaxUID);
}

function checkPixelModule(px: ImagePixelModule): void {
  if (!(px.Rows > 0 && px.Columns > 0)) throw new PixelDataError(`no image: ${px.Rows} rows, ${px.Columns} columns`);
  if (px.SamplesPerPixel !== 1 && px.SamplesPerPixel !== 3) throw new PixelDataError(`Samples per Pixel ${px.SamplesPerPixel} is not 1 or 3`);
  if (![1, 8, 16, 32].includes(px.BitsAllocated)) throw new PixelDataError(`Bits Allocated ${px.BitsAllocated} is not supported`);
  if (px.BitsStored < 1 || px.BitsStored > px.BitsAllocated || px.HighBit < px.BitsStored - 1 || px.HighBit >= px.BitsAllocated) {
    throw new PixelDataError(`inconsistent Bits Stored ${px.BitsStored} / High Bit ${px.HighBit} for Bits Allocated ${px.BitsAllocated}`);
  }
}

// ---------------------------------------------------------------- native

function decodeNative(frame: Buffer, px: ImagePixelModule): DecodedFrame {
  const needed = Math.ceil(frameBits(px) / 8);
  if (frame.length < needed) throw new PixelDataError(`frame has ${frame.length} bytes, ${needed} expected`);
  const pixels = px.Rows * px.Columns;
  if (px.BitsAllocated === 1) {
    if (px.SamplesPerPixel !== 1) throw new PixelDataError('Bits Allocated 1 with colour is not supported');
    const raw = new Uint8Array(pixels);
    // PS3.5 8.1.1: the first pixel sits in the least significant bit.
    for (let i = 0; i < pixels; i++) raw[i] = (frame[i >>> 3]! >>> (i & 7)) & 1;
    return finish(raw, px, px.PhotometricInterpretation);
  }
  // A copy: the frame may be unaligned, a view of a larger buffer, or big endian.
  const bytes = new Uint8Array(needed);
  bytes.set(frame.subarray(0, needed));
  if (!px.littleEndian) {
    const b = Buffer.from(bytes.buffer, 0, needed);
    if (px.BitsAllocated === 16) b.swap16();
    else if (px.BitsAllocated === 32) b.swap32();
  }
  let raw = typedView(bytes.buffer, px);
  if (px.PhotometricInterpretation === 'YBR_FULL_422') {
    if (px.BitsAllocated !== 8 || px.SamplesPerPixel !== 3) throw new PixelDataError('YBR_FULL_422 is supported with 3 samples of Bits Allocated 8 only');
    if (px.Columns % 2 !== 0) throw new PixelDataError(`YBR_FULL_422 needs an even number of columns, not ${px.Columns}`);
    return finishColour(ybr422ToRGB(raw as Uint8Array, px.Rows, px.Columns), px);
  }
  if (px.SamplesPerPixel === 3 && px.PlanarConfiguration === 1) raw = interleavePlanes(raw, px, pixels);
  return finish(raw, px, px.PhotometricInterpretation);
}

function typedView(buf: ArrayBufferLike, px: ImagePixelModule): RawSamples {
  const signed = px.PixelRepresentation === 1;
  switch (px.BitsAllocated) {
    case 8: return new Uint8Array(buf);
    case 16: return signed ? new Int16Array(buf) : new Uint16Array(buf);
    default: return signed ? new Int32Array(buf) : new Uint32Array(buf);
  }
}

function newRaw(px: ImagePixelModule, length: number): RawSamples {
  const signed = px.PixelRepresentation === 1;
  switch (px.BitsAllocated) {
    case 8: return new Uint8Array(length);
    case 16: return signed ? new Int16Array(length) : new Uint16Array(length);
    default: return signed ? new Int32Array(length) : new Uint32Array(length);
  }
}

function interleavePlanes(planar: RawSamples, px: ImagePixelModule, pixels: number): RawSamples {
  const interleaved = newRaw(px, pixels * 3);
  for (let s = 0; s < 3; s++) {
    const base = s * pixels;
    for (let i = 0; i < pixels; i++) interleaved[i * 3 + s] = planar[base + i]!;
  }
  return interleaved;
}

// ---------------------------------------------------------------- JPEG Baseline

function decodeJPEGBaseline(frame: Buffer, px: ImagePixelModule): DecodedFrame {
  const colorTransform = jpegColorTransform(frame, px.PhotometricInterpretation);
  let img: { width: number; height: number; data: Uint8Array };
  try {
    img = jpeg().decode(frame, { useTArray: true, formatAsRGBA: false, colorTransform, tolerantDecoding: true });
  } catch (err) {
    throw new PixelDataError(`JPEG baseline frame does not decode: ${(err as Error).message}`);
  }
  if (img.width !== px.Columns || img.height !== px.Rows) {
    throw new PixelDataError(`JPEG frame is ${img.width}x${img.height}, the header says ${px.Columns}x${px.Rows}`);
  }
  const pixels = img.width * img.height;
  const components = img.data.length / pixels;
  if (px.SamplesPerPixel === 1) {
    if (components !== 1) throw new PixelDataError(`JPEG frame has ${components} components, the header says 1`);
    return finish(img.data, { ...px, BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 0 }, 'MONOCHROME2');
  }
  if (components !== 3) throw new PixelDataError(`JPEG frame has ${components} components, the header says 3`);
  // The decoder has already produced RGB (or the bitstream was RGB).
  return { kind: 'rgb', rows: px.Rows, columns: px.Columns, samples: img.data, raw: img.data };
}

/**
 * Whether the three JPEG components are YCbCr to convert, as libjpeg decides it:
 * the Adobe APP14 transform flag, else JFIF (always YCbCr), else component
 * identifiers 'R','G','B', else what Photometric Interpretation says.
 */
export function jpegColorTransform(jpegData: Uint8Array, photometricInterpretation: string): boolean {
  let adobe: number | undefined;
  let jfif = false;
  let rgbIds = false;
  let i = 2;
  while (i + 4 <= jpegData.length) {
    if (jpegData[i] !== 0xff) { i++; continue; }
    const marker = jpegData[i + 1]!;
    if (marker === 0xff) { i++; continue; }
    if (marker === 0xda || marker === 0xd9) break;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { i += 2; continue; }
    const len = (jpegData[i + 2]! << 8) | jpegData[i + 3]!;
    const seg = i + 4;
    if (marker === 0xe0 && ascii(jpegData, seg, 5) === 'JFIF\0') jfif = true;
    if (marker === 0xee && ascii(jpegData, seg, 5) === 'Adobe' && seg + 11 < jpegData.length) adobe = jpegData[seg + 11]!;
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      const n = jpegData[seg + 5]!;
      if (n === 3) rgbIds = jpegData[seg + 6] === 0x52 && jpegData[seg + 9] === 0x47 && jpegData[seg + 12] === 0x42;
    }
    i += 2 + len;
  }
  if (adobe !== undefined) return adobe !== 0;
  if (jfif) return true;
  if (rgbIds) return false;
  return photometricInterpretation !== 'RGB';
}

function ascii(b: Uint8Array, at: number, n: number): string {
  return at + n <= b.length ? String.fromCharCode(...b.subarray(at, at + n)) : '';
}

// ---------------------------------------------------------------- values

/** Masks to Bits Stored, sign-extends from High Bit, then makes the frame's samples. */
function finish(raw: RawSamples, px: ImagePixelModule, photometric: string): DecodedFrame {
  if (px.BitsAllocated > 1) maskStoredBits(raw, px);
  if (px.SamplesPerPixel === 3) {
    if (photometric === 'YBR_FULL') return finishColour(ybrFullToRGB(raw), px);
    return finishColour(raw, px);
  }
  return { kind: 'gray', rows: px.Rows, columns: px.Columns, samples: modalityValues(raw, px), raw };
}

function maskStoredBits(raw: RawSamples, px: ImagePixelModule): void {
  if (px.BitsStored === px.BitsAllocated && px.HighBit === px.BitsAllocated - 1) return;
  const up = 31 - px.HighBit;
  const down = 32 - px.BitsStored;
  const n = raw.length;
  if (px.PixelRepresentation === 1) {
    for (let i = 0; i < n; i++) raw[i] = (raw[i]! << up) >> down;
  } else {
    for (let i = 0; i < n; i++) raw[i] = (raw[i]! << up) >>> down;
  }
}

function finishColour(rgb: RawSamples, px: ImagePixelModule): DecodedFrame {
  let samples: Uint8Array;
  if (rgb instanceof Uint8Array && px.BitsStored === 8) {
    samples = rgb;
  } else {
    // Keep the most significant stored bits for display.
    samples = new Uint8Array(rgb.length);
    const shift = Math.max(0, px.BitsStored - 8);
    const n = rgb.length;
    if (shift === 0) for (let i = 0; i < n; i++) samples[i] = rgb[i]!;
    else for (let i = 0; i < n; i++) samples[i] = rgb[i]! >>> shift;
  }
  return { kind: 'rgb', rows: px.Rows, columns: px.Columns, samples, raw: rgb };
}

function modalityValues(raw: RawSamples, px: ImagePixelModule): Float32Array | Int32Array | Uint8Array {
  const slope = px.RescaleSlope ?? 1;
  const intercept = px.RescaleIntercept ?? 0;
  const n = raw.length;
  // 8-bit stored values have no signed array of their own here: read them as int8.
  const signed8 = raw instanceof Uint8Array && px.PixelRepresentation === 1;
  if (slope === 1 && intercept === 0 && raw instanceof Uint8Array && !signed8) return raw;
  const a = slope * minPossible(px), b = slope * maxPossible(px);
  const lo = Math.min(a, b) + intercept, hi = Math.max(a, b) + intercept;
  const integral = Number.isInteger(slope) && Number.isInteger(intercept) && lo >= -0x80000000 && hi <= 0x7fffffff;
  const out = integral ? new Int32Array(n) : new Float32Array(n);
  if (signed8) for (let i = 0; i < n; i++) out[i] = ((raw[i]! << 24) >> 24) * slope + intercept;
  else if (slope === 1) for (let i = 0; i < n; i++) out[i] = raw[i]! + intercept;
  else for (let i = 0; i < n; i++) out[i] = raw[i]! * slope + intercept;
  return out;
}

function minPossible(px: ImagePixelModule): number {
  return px.PixelRepresentation === 1 ? -(2 ** (px.BitsStored - 1)) : 0;
}

function maxPossible(px: ImagePixelModule): number {
  return px.PixelRepresentation === 1 ? 2 ** (px.BitsStored - 1) - 1 : 2 ** px.BitsStored - 1;
}

// ---------------------------------------------------------------- colour spaces (PS3.3 C.7.6.3.1.2)

const crToR = new Float32Array(256), cbToG = new Float32Array(256), crToG = new Float32Array(256), cbToB = new Float32Array(256);
for (let v = 0; v < 256; v++) {
  crToR[v] = 1.402 * (v - 128);
  cbToG[v] = -0.344136 * (v - 128);
  crToG[v] = -0.714136 * (v - 128);
  cbToB[v] = 1.772 * (v - 128);
}

function clamp8(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

function ybrFullToRGB(raw: RawSamples): RawSamples {
  if (!(raw instanceof Uint8Array)) throw new PixelDataError('YBR_FULL is supported with Bits Allocated 8 only');
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 3) {
    const y = raw[i]!, cb = raw[i + 1]!, cr = raw[i + 2]!;
    out[i] = clamp8(y + crToR[cr]!);
    out[i + 1] = clamp8(y + cbToG[cb]! + crToG[cr]!);
    out[i + 2] = clamp8(y + cbToB[cb]!);
  }
  return out;
}

/** Native YBR_FULL_422: Y1 Y2 Cb Cr for each pair of pixels of a row. */
function ybr422ToRGB(src: Uint8Array, rows: number, columns: number): Uint8Array {
  const out = new Uint8Array(rows * columns * 3);
  let s = 0;
  let o = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c += 2) {
      const y1 = src[s]!, y2 = src[s + 1]!, cb = src[s + 2]!, cr = src[s + 3]!;
      s += 4;
      const dr = crToR[cr]!, dg = cbToG[cb]! + crToG[cr]!, db = cbToB[cb]!;
      out[o++] = clamp8(y1 + dr); out[o++] = clamp8(y1 + dg); out[o++] = clamp8(y1 + db);
      if (c + 1 < columns) { out[o++] = clamp8(y2 + dr); out[o++] = clamp8(y2 + dg); out[o++] = clamp8(y2 + db); }
    }
  }
  return out;
}
