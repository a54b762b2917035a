/**
 * Rendered resources (PS3.18 §8.3.5, §9.5): a decoded frame made into an 8-bit
 * picture with VOI windowing (PS3.3 C.11.2.1.2), fitted into a viewport, and
 * encoded as baseline JPEG (below) or PNG (pngjs).
 */
import { createRequire } from 'node:module';
import type { PNG } from 'pngjs';
import type { DecodedFrame, ImagePixelModule } from './pixels.ts';

// pngjs is loaded at the first PNG, not with the server (about 35 ms of CPU at start).
const require = createRequire(import.meta.url);
let pngjsModule: typeof import('pngjs') | undefined;
const pngjs = (): typeof import('pngjs') => (pngjsModule ??= require('pngjs') as typeof import('pngjs'));

export type VOILUTFunction = 'LINEAR' | 'LINEAR_EXACT' | 'SIGMOID';

export interface VOIWindow {
  center: number;
  width: number;
  function?: VOILUTFunction;
}

export interface RenderOptions {
  format: 'image/jpeg' | 'image/png';
  /** JPEG quality 1-100 (default 90). */
  quality?: number;
  window?: VOIWindow;
  /** Fit inside, keeping the aspect ratio. */
  viewport?: { width: number; height: number };
}

const MAX_VIEWPORT = 4096;
/** Integer frames whose value range is at most this wide are windowed through a lookup table. */
const MAX_LUT_ENTRIES = 1 << 22;

/** An 8-bit picture: one byte a pixel (gray) or three (RGB, interleaved). */
interface Picture {
  channels: 1 | 3;
  width: number;
  height: number;
  data: Uint8Array;
}

export async function renderFrame(frame: DecodedFrame, px: ImagePixelModule, opts: RenderOptions): Promise<Buffer> {
  let picture: Picture = frame.kind === 'rgb'
    ? { channels: 3, width: frame.columns, height: frame.rows, data: frame.samples as Uint8Array }
    : { channels: 1, width: frame.columns, height: frame.rows, data: windowGray(frame, px, opts.window) };
  if (opts.viewport) {
    const { width, height } = fitInside(picture.width, picture.height, opts.viewport.width, opts.viewport.height);
    picture = resize(picture, width, height);
  }
  return opts.format === 'image/png' ? encodePNG(picture) : encodeJPEG(picture, opts.quality ?? 90);
}

// ---------------------------------------------------------------- VOI windowing

/** Samples to 8-bit display values: VOI LUT function, then MONOCHROME1 inversion. */
function windowGray(frame: DecodedFrame, px: ImagePixelModule, requested: VOIWindow | undefined): Uint8Array {
  const samples = frame.samples;
  const n = samples.length;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = samples[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (n === 0) { min = 0; max = 0; }
  const voi = requested ?? headerWindow(px) ?? { center: (min + max + 1) / 2, width: max - min + 1 };
  const toDisplay = voiFunction(voi, px.PhotometricInterpretation === 'MONOCHROME1');
  const out = new Uint8Array(n);
  const integral = samples instanceof Int32Array || samples instanceof Uint8Array;
  if (integral && max - min + 1 <= MAX_LUT_ENTRIES) {
    const lut = new Uint8Array(max - min + 1);
    for (let v = min; v <= max; v++) lut[v - min] = toDisplay(v);
    if (min === 0) for (let i = 0; i < n; i++) out[i] = lut[samples[i]!]!;
    else for (let i = 0; i < n; i++) out[i] = lut[samples[i]! - min]!;
  } else {
    for (let i = 0; i < n; i++) out[i] = toDisplay(samples[i]!);
  }
  return out;
}

function headerWindow(px: ImagePixelModule): VOIWindow | undefined {
  const c = px.WindowCenter, w = px.WindowWidth;
  return c !== undefined && w !== undefined && Number.isFinite(c) && Number.isFinite(w) && w > 0 ? { center: c, width: w } : undefined;
}

/** PS3.3 C.11.2.1.2 with an output range of 0..255. */
function voiFunction(voi: VOIWindow, invert: boolean): (x: number) => number {
  const c = voi.center;
  const w = voi.width;
  const f = voi.function ?? 'LINEAR';
  const out = invert ? (y: number) => 255 - y : (y: number) => y;
  if (f === 'SIGMOID') {
    return (x) => out(Math.round(255 / (1 + Math.exp((-4 * (x - c)) / w))));
  }
  if (f === 'LINEAR_EXACT') {
    const lo = c - w / 2, hi = c + w / 2;
    return (x) => out(x <= lo ? 0 : x > hi ? 255 : Math.round(((x - c) / w + 0.5) * 255));
  }
  // LINEAR: a width below 1 is not allowed (C.11.2.1.2.1); treat it as a threshold.
  const wm1 = Math.max(0, w - 1);
  const lo = c - 0.5 - wm1 / 2, hi = c - 0.5 + wm1 / 2;
  return (x) => out(x <= lo ? 0 : x > hi ? 255 : Math.round(((x - (c - 0.5)) / wm1 + 0.5) * 255));
}

// ---------------------------------------------------------------- viewport

function fitInside(width: number, height: number, vw: number, vh: number): { width: number; height: number } {
  const scale = Math.min(vw / width, vh / height);
  return {
    width: Math.max(1, Math.min(vw, Math.round(width * scale))),
    height: Math.max(1, Math.min(vh, Math.round(height * scale))),
  };
}

/** For each output index, the source indices and weights that make it. */
interface Contributions {
  start: Int32Array;
  count: Int32Array;
  /** `maxCount` weights per output index. */
  weights: Float32Array;
  maxCount: number;
}

/** Area averaging when shrinking, bilinear (pixel centres aligned) when enlarging. */
function contributions(inSize: number, outSize: number): Contributions {
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  if (outSize <= inSize) {
    const scale = inSize / outSize;
    const maxCount = Math.ceil(scale) + 1;
    const weights = new Float32Array(outSize * maxCount);
    for (let j = 0; j < outSize; j++) {
      const a = j * scale, b = Math.min(inSize, (j + 1) * scale);
      const first = Math.floor(a);
      const last = Math.min(inSize - 1, Math.ceil(b) - 1);
      start[j] = first;
      count[j] = last - first + 1;
      for (let i = first; i <= last; i++) {
        const overlap = Math.min(b, i + 1) - Math.max(a, i);
        weights[j * maxCount + (i - first)] = overlap / scale;
      }
    }
    return { start, count, weights, maxCount };
  }
  const maxCount = 2;
  const weights = new Float32Array(outSize * maxCount);
  const scale = inSize / outSize;
  for (let j = 0; j < outSize; j++) {
    const x = Math.min(inSize - 1, Math.max(0, (j + 0.5) * scale - 0.5));
    const i0 = Math.floor(x);
    const frac = x - i0;
    start[j] = i0;
    if (i0 + 1 < inSize && frac > 0) {
      count[j] = 2;
      weights[j * 2] = 1 - frac;
      weights[j * 2 + 1] = frac;
    } else {
      count[j] = 1;
      weights[j * 2] = 1;
    }
  }
  return { start, count, weights, maxCount };
}

function resize(p: Picture, width: number, height: number): Picture {
  if (width === p.width && height === p.height) return p;
  const ch = p.channels;
  const cx = contributions(p.width, width);
  const cy = contributions(p.height, height);
  // Rows first into floats, then columns, so each output pixel is rounded once.
  const tmp = new Float32Array(width * p.height * ch);
  for (let y = 0; y < p.height; y++) {
    const srcRow = y * p.width * ch;
    const dstRow = y * width * ch;
    for (let x = 0; x < width; x++) {
      const s = cx.start[x]!, cnt = cx.count[x]!, wBase = x * cx.maxCount;
      for (let c = 0; c < ch; c++) {
        let acc = 0;
        for (let k = 0; k < cnt; k++) acc += p.data[srcRow + (s + k) * ch + c]! * cx.weights[wBase + k]!;
        tmp[dstRow + x * ch + c] = acc;
      }
    }
  }
  const out = new Uint8Array(width * height * ch);
  const rowLen = width * ch;
  for (let y = 0; y < height; y++) {
    const s = cy.start[y]!, cnt = cy.count[y]!, wBase = y * cy.maxCount;
    const dstRow = y * rowLen;
    for (let i = 0; i < rowLen; i++) {
      let acc = 0;
      for (let k = 0; k < cnt; k++) acc += tmp[(s + k) * rowLen + i]! * cy.weights[wBase + k]!;
      out[dstRow + i] = acc < 0 ? 0 : acc > 255 ? 255 : Math.round(acc);
    }
  }
  return { channels: ch, width, height, data: out };
}

// ---------------------------------------------------------------- encoding: JPEG (ITU T.81 baseline)
//
// jpeg-js's encoder rebuilds 65535-entry tables of small arrays on every call (about 20 ms
// before the first pixel) and encodes gray images as three components; a rendered frame
// must cost a few milliseconds, so the baseline encoder below keeps its tables for the
// process and writes gray pictures as one component. jpeg-js still decodes.

/** Natural (row-major) index -> zig-zag position. */
const zigZag = new Uint8Array([
  0, 1, 5, 6, 14, 15, 27, 28, 2, 4, 7, 13, 16, 26, 29, 42,
  3, 8, 12, 17, 25, 30, 41, 43, 9, 11, 18, 24, 31, 40, 44, 53,
  10, 19, 23, 32, 39, 45, 52, 54, 20, 22, 33, 38, 46, 51, 55, 60,
  21, 34, 37, 47, 50, 56, 59, 61, 35, 36, 48, 49, 57, 58, 62, 63,
]);

/** ITU T.81 Annex K.1 quantization tables, natural order. */
const lumaQuant = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
  14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
  18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
  49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
const chromaQuant = [
  17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
  24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
  ...new Array<number>(32).fill(99),
];

/** ITU T.81 Annex K.3 Huffman tables: code counts for lengths 1..16, then symbols. */
interface HuffmanSpec { counts: number[]; symbols: number[] }
const dcLumaSpec: HuffmanSpec = { counts: [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], symbols: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] };
const dcChromaSpec: HuffmanSpec = { counts: [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], symbols: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] };
const acLumaSpec: HuffmanSpec = {
  counts: [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d],
  symbols: [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
    0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
    0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
  ],
};
const acChromaSpec: HuffmanSpec = {
  counts: [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
  symbols: [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0,
    0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26,
    0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
    0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
    0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
    0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
  ],
};

interface HuffmanTable { spec: HuffmanSpec; code: Uint16Array; length: Uint8Array }

/** Canonical codes (T.81 Annex C) by symbol. */
function huffmanTable(spec: HuffmanSpec): HuffmanTable {
  const code = new Uint16Array(256);
  const length = new Uint8Array(256);
  let next = 0;
  let k = 0;
  for (let len = 1; len <= 16; len++) {
    for (let i = 0; i < spec.counts[len - 1]!; i++) {
      const sym = spec.symbols[k++]!;
      code[sym] = next++;
      length[sym] = len;
    }
    next <<= 1;
  }
  return { spec, code, length };
}

const dcLuma = huffmanTable(dcLumaSpec), acLuma = huffmanTable(acLumaSpec);
const dcChroma = huffmanTable(dcChromaSpec), acChroma = huffmanTable(acChromaSpec);

/** AAN scale factors of the float DCT (IJG jfdctflt.c). */
const aanScale = [1.0, 1.387039845, 1.306562965, 1.175875602, 1.0, 0.785694958, 0.5411961, 0.275899379];

interface QuantTables {
  /** Zig-zag order, as DQT writes them. */
  lumaZigZag: Uint8Array;
  chromaZigZag: Uint8Array;
  /** Natural order reciprocals including the AAN scaling. */
  lumaDivisors: Float64Array;
  chromaDivisors: Float64Array;
}

const quantByQuality = new Map<number, QuantTables>();

/** IJG quality scaling of the Annex K tables. */
function quantTables(quality: number): QuantTables {
  const cached = quantByQuality.get(quality);
  if (cached) return cached;
  const scale = quality < 50 ? Math.floor(5000 / quality) : 200 - quality * 2;
  const make = (base: number[]) => {
    const zz = new Uint8Array(64);
    const div = new Float64Array(64);
    for (let i = 0; i < 64; i++) {
      const q = Math.min(255, Math.max(1, Math.floor((base[i]! * scale + 50) / 100)));
      zz[zigZag[i]!] = q;
      div[i] = 1 / (q * aanScale[i >> 3]! * aanScale[i & 7]! * 8);
    }
    return { zz, div };
  };
  const luma = make(lumaQuant), chroma = make(chromaQuant);
  const tables = { lumaZigZag: luma.zz, chromaZigZag: chroma.zz, lumaDivisors: luma.div, chromaDivisors: chroma.div };
  quantByQuality.set(quality, tables);
  return tables;
}

/** Bytes out, with 0xFF stuffing in the entropy-coded segment. */
class JPEGWriter {
  private buf: Uint8Array;
  private pos = 0;
  private acc = 0;
  private nbits = 0;

  constructor(capacity: number) {
    this.buf = new Uint8Array(Math.max(1024, capacity));
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    bigger.set(this.buf.subarray(0, this.pos));
    this.buf = bigger;
  }

  bytes(b: ArrayLike<number>): void {
    this.ensure(b.length);
    for (let i = 0; i < b.length; i++) this.buf[this.pos++] = b[i]!;
  }

  /** A marker segment: marker, 2-byte length, body. */
  segment(marker: number, body: number[]): void {
    this.bytes([0xff, marker, (body.length + 2) >> 8, (body.length + 2) & 0xff]);
    this.bytes(body);
  }

  /** Up to 16 bits, most significant first. */
  bits(value: number, count: number): void {
    this.acc = (this.acc << count) | (value & ((1 << count) - 1));
    this.nbits += count;
    while (this.nbits >= 8) {
      this.nbits -= 8;
      const byte = (this.acc >>> this.nbits) & 0xff;
      this.ensure(2);
      this.buf[this.pos++] = byte;
      if (byte === 0xff) this.buf[this.pos++] = 0;
    }
    this.acc &= (1 << this.nbits) - 1;
  }

  /** Pads the last byte with ones (T.81 F.1.2.3). */
  flushBits(): void {
    if (this.nbits > 0) this.bits(0x7f, 8 - this.nbits);
  }

  result(): Buffer {
    return Buffer.from(this.buf.buffer, this.buf.byteOffset, this.pos);
  }
}

/** Forward DCT of one 8x8 block (values centred on 0), quantized, into `out` in zig-zag order. */
function forwardDCTQuantize(d: Float64Array, divisors: Float64Array, out: Int32Array): void {
  for (let pass = 0; pass < 2; pass++) {
    // pass 0: rows (stride 1 within, 8 between); pass 1: columns.
    const step = pass === 0 ? 1 : 8;
    const next = pass === 0 ? 8 : 1;
    for (let line = 0, o = 0; line < 8; line++, o += next) {
      const d0 = d[o]!, d1 = d[o + step]!, d2 = d[o + 2 * step]!, d3 = d[o + 3 * step]!;
      const d4 = d[o + 4 * step]!, d5 = d[o + 5 * step]!, d6 = d[o + 6 * step]!, d7 = d[o + 7 * step]!;
      const t0 = d0 + d7, t7 = d0 - d7, t1 = d1 + d6, t6 = d1 - d6;
      const t2 = d2 + d5, t5 = d2 - d5, t3 = d3 + d4, t4 = d3 - d4;
      let t10 = t0 + t3;
      const t13 = t0 - t3;
      let t11 = t1 + t2;
      let t12 = t1 - t2;
      d[o] = t10 + t11;
      d[o + 4 * step] = t10 - t11;
      const z1 = (t12 + t13) * 0.707106781;
      d[o + 2 * step] = t13 + z1;
      d[o + 6 * step] = t13 - z1;
      t10 = t4 + t5;
      t11 = t5 + t6;
      t12 = t6 + t7;
      const z5 = (t10 - t12) * 0.382683433;
      const z2 = 0.5411961 * t10 + z5;
      const z4 = 1.306562965 * t12 + z5;
      const z3 = t11 * 0.707106781;
      const z11 = t7 + z3, z13 = t7 - z3;
      d[o + 5 * step] = z13 + z2;
      d[o + 3 * step] = z13 - z2;
      d[o + step] = z11 + z4;
      d[o + 7 * step] = z11 - z4;
    }
  }
  for (let i = 0; i < 64; i++) {
    const v = d[i]! * divisors[i]!;
    out[zigZag[i]!] = v > 0 ? (v + 0.5) | 0 : (v - 0.5) | 0;
  }
}

/** Huffman-codes one quantized block; returns its DC value for the next block's prediction. */
function encodeBlock(w: JPEGWriter, zz: Int32Array, previousDC: number, dc: HuffmanTable, ac: HuffmanTable): number {
  const diff = zz[0]! - previousDC;
  const dcCat = diff === 0 ? 0 : 32 - Math.clz32(diff < 0 ? -diff : diff);
  w.bits(dc.code[dcCat]!, dc.length[dcCat]!);
  if (dcCat > 0) w.bits(diff < 0 ? diff - 1 : diff, dcCat);
  let run = 0;
  for (let k = 1; k < 64; k++) {
    const v = zz[k]!;
    if (v === 0) { run++; continue; }
    while (run > 15) {
      w.bits(ac.code[0xf0]!, ac.length[0xf0]!);
      run -= 16;
    }
    const cat = 32 - Math.clz32(v < 0 ? -v : v);
    const sym = (run << 4) | cat;
    w.bits(ac.code[sym]!, ac.length[sym]!);
    w.bits(v < 0 ? v - 1 : v, cat);
    run = 0;
  }
  if (run > 0) w.bits(ac.code[0]!, ac.length[0]!);
  return zz[0]!;
}

/** Copies the 8x8 block at (bx, by) of a plane, repeating the last row and column past the edges. */
function loadBlock(plane: Float32Array | Uint8Array, width: number, height: number, bx: number, by: number, offset: number, d: Float64Array): void {
  for (let r = 0; r < 8; r++) {
    const row = Math.min(by + r, height - 1) * width;
    if (bx + 8 <= width) {
      for (let c = 0; c < 8; c++) d[r * 8 + c] = plane[row + bx + c]! - offset;
    } else {
      for (let c = 0; c < 8; c++) d[r * 8 + c] = plane[row + Math.min(bx + c, width - 1)]! - offset;
    }
  }
}

function huffmanSegmentBody(tableClassAndId: number, spec: HuffmanSpec): number[] {
  return [tableClassAndId, ...spec.counts, ...spec.symbols];
}

function encodeJPEG(p: Picture, quality: number): Buffer {
  const q = Math.min(100, Math.max(1, Math.round(quality)));
  const tables = quantTables(q);
  const { width, height } = p;
  if (width > 0xffff || height > 0xffff) throw new RangeError(`a baseline JPEG is at most 65535 pixels wide and high, not ${width}x${height}`);
  const gray = p.channels === 1;
  const w = new JPEGWriter(width * height * (gray ? 1 : 2) / 4 + 1024);
  w.bytes([0xff, 0xd8]);
  // JFIF 1.01, no density, no thumbnail: tells every decoder that 3 components are YCbCr.
  w.segment(0xe0, [0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
  w.segment(0xdb, gray ? [0, ...tables.lumaZigZag] : [0, ...tables.lumaZigZag, 1, ...tables.chromaZigZag]);
  const components = gray ? [[1, 0x11, 0]] : [[1, 0x11, 0], [2, 0x11, 1], [3, 0x11, 1]];
  w.segment(0xc0, [8, height >> 8, height & 0xff, width >> 8, width & 0xff, components.length, ...components.flat()]);
  w.segment(0xc4, gray
    ? [...huffmanSegmentBody(0x00, dcLumaSpec), ...huffmanSegmentBody(0x10, acLumaSpec)]
    : [...huffmanSegmentBody(0x00, dcLumaSpec), ...huffmanSegmentBody(0x10, acLumaSpec), ...huffmanSegmentBody(0x01, dcChromaSpec), ...huffmanSegmentBody(0x11, acChromaSpec)]);
  w.segment(0xda, gray ? [1, 1, 0x00, 0, 63, 0] : [3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);

  const block = new Float64Array(64);
  const zz = new Int32Array(64);
  if (gray) {
    let dc = 0;
    for (let by = 0; by < height; by += 8) {
      for (let bx = 0; bx < width; bx += 8) {
        loadBlock(p.data, width, height, bx, by, 128, block);
        forwardDCTQuantize(block, tables.lumaDivisors, zz);
        dc = encodeBlock(w, zz, dc, dcLuma, acLuma);
      }
    }
  } else {
    // 4:4:4: no chroma subsampling, so thin coloured annotations stay sharp.
    const n = width * height;
    const y = new Float32Array(n), cb = new Float32Array(n), cr = new Float32Array(n);
    for (let i = 0, s = 0; i < n; i++, s += 3) {
      const r = p.data[s]!, g = p.data[s + 1]!, b = p.data[s + 2]!;
      y[i] = 0.299 * r + 0.587 * g + 0.114 * b;
      cb[i] = -0.168736 * r - 0.331264 * g + 0.5 * b;
      cr[i] = 0.5 * r - 0.418688 * g - 0.081312 * b;
    }
    let dcY = 0, dcCb = 0, dcCr = 0;
    for (let by = 0; by < height; by += 8) {
      for (let bx = 0; bx < width; bx += 8) {
        loadBlock(y, width, height, bx, by, 128, block);
        forwardDCTQuantize(block, tables.lumaDivisors, zz);
        dcY = encodeBlock(w, zz, dcY, dcLuma, acLuma);
        loadBlock(cb, width, height, bx, by, 0, block);
        forwardDCTQuantize(block, tables.chromaDivisors, zz);
        dcCb = encodeBlock(w, zz, dcCb, dcChroma, acChroma);
        loadBlock(cr, width, height, bx, by, 0, block);
        forwardDCTQuantize(block, tables.chromaDivisors, zz);
        dcCr = encodeBlock(w, zz, dcCr, dcChroma, acChroma);
      }
    }
  }
  w.flushBits();
  w.bytes([0xff, 0xd9]);
  return w.result();
}

function encodePNG(p: Picture): Buffer {
  const colorType = p.channels === 1 ? 0 : 2;
  const data = Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength);
  // pngjs only reads width, height and data; a full PNG object would allocate an RGBA buffer.
  const image = { width: p.width, height: p.height, data } as unknown as PNG;
  return pngjs().PNG.sync.write(image, { colorType, inputColorType: colorType, bitDepth: 8, inputHasAlpha: false });
}

// ---------------------------------------------------------------- query parameters (PS3.18 §8.3.5.1)

const functionNames: Readonly<Record<string, VOILUTFunction>> = { 'linear': 'LINEAR', 'linear-exact': 'LINEAR_EXACT', 'sigmoid': 'SIGMOID' };

function parseDecimal(s: string, what: string): number {
  const t = s.trim();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) throw new RangeError(`${what} is not a number: ${JSON.stringify(s)}`);
  const v = Number(t);
  if (!Number.isFinite(v)) throw new RangeError(`${what} is not a finite number: ${JSON.stringify(s)}`);
  return v;
}

/** `window=center,width[,function]`. */
export function parseWindowParam(s: string): VOIWindow {
  const parts = s.split(',');
  if (parts.length < 2 || parts.length > 3) throw new RangeError(`window is center,width[,function], not ${JSON.stringify(s)}`);
  const center = parseDecimal(parts[0]!, 'window center');
  const width = parseDecimal(parts[1]!, 'window width');
  if (width <= 0) throw new RangeError(`window width must be positive, not ${width}`);
  const fn = parts.length === 3 ? functionNames[parts[2]!.trim().toLowerCase()] : 'LINEAR';
  if (!fn) throw new RangeError(`window function is linear, linear-exact or sigmoid, not ${JSON.stringify(parts[2])}`);
  if (fn === 'LINEAR' && width < 1) throw new RangeError(`a linear window needs a width of at least 1 (PS3.3 C.11.2.1.2.1), not ${width}`);
  return parts.length === 3 ? { center, width, function: fn } : { center, width };
}

/** `viewport=vw,vh`. */
export function parseViewportParam(s: string): { width: number; height: number } {
  const parts = s.split(',');
  if (parts.length !== 2) throw new RangeError(`viewport is width,height, not ${JSON.stringify(s)}`);
  const [width, height] = parts.map((p) => {
    const t = p.trim();
    if (!/^\d+$/.test(t)) throw new RangeError(`viewport sizes are positive integers, not ${JSON.stringify(p)}`);
    const v = Number(t);
    if (v < 1 || v > MAX_VIEWPORT) throw new RangeError(`viewport sizes are 1..${MAX_VIEWPORT}, not ${v}`);
    return v;
  }) as [number, number];
  return { width, height };
}
