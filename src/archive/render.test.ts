import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { Tags, TransferSyntax } from '../dicom/dataset.ts';
import { parsePart10 } from '../dicom/part10-parser.ts';
import { decodeFrame, type DecodedFrame, type ImagePixelModule } from './pixels.ts';
import { parseViewportParam, parseWindowParam, renderFrame, type RenderOptions } from './render.ts';

const pydicomFiles = '/usr/lib/python3/dist-packages/pydicom/data/test_files/';
const haveFiles = existsSync(pydicomFiles);
if (!haveFiles) console.warn(`\n!!! ${pydicomFiles} is missing: rendering tests on real DICOM files are SKIPPED !!!\n`);

const grayModule = (rows: number, columns: number, extra: Partial<ImagePixelModule> = {}): ImagePixelModule => ({
  Rows: rows, Columns: columns, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, HighBit: 15, PixelRepresentation: 1,
  PhotometricInterpretation: 'MONOCHROME2', NumberOfFrames: 1, littleEndian: true, ...extra,
});

/** A frame whose modality value is its column index plus `offset`. */
function horizontalGradient(rows: number, columns: number, offset = 0): DecodedFrame {
  const samples = new Int32Array(rows * columns);
  for (let r = 0; r < rows; r++) for (let c = 0; c < columns; c++) samples[r * columns + c] = c + offset;
  return { kind: 'gray', rows, columns, samples, raw: new Int16Array(samples) };
}

interface Image { width: number; height: number; colorType: number; gray(x: number, y: number): number; rgb(x: number, y: number): number[] }

function readPNG(buf: Buffer): Image {
  assert.equal(buf.subarray(1, 4).toString('latin1'), 'PNG');
  const colorType = buf[25]!; // IHDR: 8 signature + 8 chunk header + 9 bytes in
  const png = PNG.sync.read(buf);
  return {
    width: png.width, height: png.height, colorType,
    gray: (x, y) => png.data[(y * png.width + x) * 4]!,
    rgb: (x, y) => [...png.data.subarray((y * png.width + x) * 4, (y * png.width + x) * 4 + 3)],
  };
}

function readJPEG(buf: Buffer): Image {
  assert.deepEqual([buf[0], buf[1]], [0xff, 0xd8]);
  const img = jpeg.decode(buf, { useTArray: true, formatAsRGBA: false });
  const channels = img.data.length / (img.width * img.height);
  // jpeg-js expands gray to RGB; the component count is in the SOF0 segment.
  const sof = buf.indexOf(Buffer.from([0xff, 0xc0]));
  assert.ok(sof > 0, 'baseline SOF0 present');
  return {
    width: img.width, height: img.height, colorType: buf[sof + 9] === 1 ? 0 : 2,
    gray: (x, y) => img.data[(y * img.width + x) * channels]!,
    rgb: (x, y) => [...img.data.subarray((y * img.width + x) * channels, (y * img.width + x) * channels + 3)],
  };
}

async function render(frame: DecodedFrame, px: ImagePixelModule, opts: RenderOptions): Promise<Image> {
  const out = await renderFrame(frame, px, opts);
  return opts.format === 'image/png' ? readPNG(out) : readJPEG(out);
}

function assertNear(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual}, expected ${expected} ± ${tolerance}`);
}

describe('renderFrame: VOI windowing (PS3.3 C.11.2.1.2)', () => {
  const frame = horizontalGradient(4, 256, -100); // values -100..155 along a row
  const px = grayModule(4, 256);

  it('applies LINEAR with its -0.5 and -1 terms: c=28, w=256 maps -100..155 one to one onto 0..255', async () => {
    const img = await render(frame, px, { format: 'image/png', window: { center: 28, width: 256 } });
    assert.equal(img.colorType, 0, 'gray PNG, colour type 0');
    for (let x = 0; x < 256; x++) assert.equal(img.gray(x, 2), x, `value ${x - 100}`);
  });

  it('applies LINEAR to a narrow window: c=0, w=101', async () => {
    const img = await render(frame, px, { format: 'image/png', window: { center: 0, width: 101 } });
    // x <= c - 0.5 - (w-1)/2 = -50.5 -> 0; x > c - 0.5 + (w-1)/2 = 49.5 -> 255; else ((x + 0.5) / 100 + 0.5) * 255
    const at = (v: number) => img.gray(v + 100, 2);
    assert.deepEqual([at(-100), at(-51), at(-50), at(0), at(25), at(49), at(50), at(155)], [0, 0, 1, 129, 193, 254, 255, 255]);
  });

  it('applies LINEAR_EXACT: c=0, w=100 maps -50 to 0, 0 to 128 and 50 to 255', async () => {
    const img = await render(frame, px, { format: 'image/png', window: { center: 0, width: 100, function: 'LINEAR_EXACT' } });
    // x <= c - w/2 -> 0; x > c + w/2 -> 255; else ((x - c) / w + 0.5) * 255
    const at = (v: number) => img.gray(v + 100, 0);
    assert.deepEqual([at(-51), at(-50), at(-25), at(0), at(25), at(50), at(51)], [0, 0, 64, 128, 191, 255, 255]);
    const shifted = await render(frame, px, { format: 'image/png', window: { center: 28, width: 256, function: 'LINEAR_EXACT' } });
    assert.equal(shifted.gray(255, 0), 254, 'LINEAR_EXACT has no -0.5 / -1 terms: 155 is not yet the top');
  });

  it('applies SIGMOID: 255 / (1 + exp(-4 (x - c) / w))', async () => {
    const img = await render(frame, px, { format: 'image/png', window: { center: 10, width: 80, function: 'SIGMOID' } });
    const expected = (x: number) => Math.round(255 / (1 + Math.exp((-4 * (x - 10)) / 80)));
    for (const x of [-100, -30, 0, 10, 30, 100, 155]) assert.equal(img.gray(x + 100, 1), expected(x), `x=${x}`);
    assert.equal(img.gray(110, 1), 128);
  });

  it('gives the same values through JPEG within a lossy tolerance', async () => {
    const img = await render(frame, px, { format: 'image/jpeg', quality: 95, window: { center: 28, width: 256 } });
    assert.equal(img.colorType, 0, 'gray pictures are one-component JPEG');
    for (const x of [0, 10, 64, 128, 200, 255]) assertNear(img.gray(x, 2), x, 3, `value ${x - 100}`);
  });

  it('defaults to the header window when none is requested', async () => {
    const img = await render(frame, grayModule(4, 256, { WindowCenter: 0, WindowWidth: 101 }), { format: 'image/png' });
    assert.deepEqual([img.gray(49, 0), img.gray(100, 0), img.gray(150, 0)], [0, 129, 255]);
  });

  it('prefers the requested window over the header one', async () => {
    const img = await render(frame, grayModule(4, 256, { WindowCenter: 0, WindowWidth: 101 }), { format: 'image/png', window: { center: 100, width: 101 } });
    assert.deepEqual([img.gray(149, 0), img.gray(200, 0)], [0, 129]);
  });

  it('spans the frame min..max when there is no window at all', async () => {
    const img = await render(frame, px, { format: 'image/png' });
    assert.deepEqual([img.gray(0, 0), img.gray(255, 0)], [0, 255]);
    assertNear(img.gray(128, 0), 128, 1, 'middle');
  });

  it('inverts MONOCHROME1', async () => {
    const opts: RenderOptions = { format: 'image/png', window: { center: 0, width: 101 } };
    const normal = await render(frame, px, opts);
    const inverted = await render(frame, grayModule(4, 256, { PhotometricInterpretation: 'MONOCHROME1' }), opts);
    for (const x of [0, 60, 100, 125, 255]) assert.equal(inverted.gray(x, 3), 255 - normal.gray(x, 3), `x=${x}`);
    assert.equal(inverted.gray(0, 0), 255);
  });

  it('windows float modality values like integer ones', async () => {
    const floats: DecodedFrame = { ...frame, samples: Float32Array.from(frame.samples) };
    const opts: RenderOptions = { format: 'image/png', window: { center: 0, width: 101 } };
    const a = await render(frame, px, opts);
    const b = await render(floats, px, opts);
    for (let x = 0; x < 256; x += 5) assert.equal(b.gray(x, 0), a.gray(x, 0), `x=${x}`);
  });

  it('windows values far apart (beyond any lookup table) correctly', async () => {
    const samples = Int32Array.from([-2_000_000_000, 0, 2_000_000_000, 1]);
    const wide: DecodedFrame = { kind: 'gray', rows: 1, columns: 4, samples, raw: Int32Array.from(samples) };
    const img = await render(wide, grayModule(1, 4, { BitsAllocated: 32, BitsStored: 32, HighBit: 31 }), { format: 'image/png' });
    assert.deepEqual([img.gray(0, 0), img.gray(1, 0), img.gray(2, 0)], [0, 128, 255]);
  });
});

describe('renderFrame: colour', () => {
  const rgb = Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]);
  const frame: DecodedFrame = { kind: 'rgb', rows: 2, columns: 2, samples: rgb, raw: rgb };
  const px = grayModule(2, 2, { SamplesPerPixel: 3, PhotometricInterpretation: 'RGB', BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 0 });

  it('writes RGB PNG (colour type 2) with the exact pixels', async () => {
    const img = await render(frame, px, { format: 'image/png' });
    assert.equal(img.colorType, 2);
    assert.deepEqual([img.rgb(0, 0), img.rgb(1, 0), img.rgb(0, 1), img.rgb(1, 1)], [[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]);
  });

  it('writes a colour JPEG that decodes to the same colours within a lossy tolerance', async () => {
    const flat = new Uint8Array(16 * 16 * 3);
    for (let i = 0; i < 256; i++) flat.set(i < 128 ? [200, 30, 60] : [20, 90, 220], i * 3);
    const img = await render({ kind: 'rgb', rows: 16, columns: 16, samples: flat, raw: flat }, { ...px, Rows: 16, Columns: 16 }, { format: 'image/jpeg', quality: 100 });
    assert.equal(img.colorType, 2);
    [200, 30, 60].forEach((v, c) => assertNear(img.rgb(3, 2)[c]!, v, 3, `top channel ${c}`));
    [20, 90, 220].forEach((v, c) => assertNear(img.rgb(12, 13)[c]!, v, 3, `bottom channel ${c}`));
  });
});

describe('renderFrame: viewport', () => {
  it('fits inside the viewport keeping the aspect ratio', async () => {
    const frame = horizontalGradient(100, 200);
    const px = grayModule(100, 200);
    const small = await render(frame, px, { format: 'image/png', viewport: { width: 64, height: 64 } });
    assert.deepEqual([small.width, small.height], [64, 32]);
    const tall = await render(frame, px, { format: 'image/jpeg', viewport: { width: 500, height: 120 } });
    assert.deepEqual([tall.width, tall.height], [240, 120]);
  });

  it('averages areas when shrinking', async () => {
    // Columns alternate 0 and 255 after windowing; halving averages each pair to 128 (127.5 rounded).
    const samples = new Int32Array(4 * 8);
    for (let i = 0; i < samples.length; i++) samples[i] = i % 2 === 0 ? 0 : 1000;
    const frame: DecodedFrame = { kind: 'gray', rows: 4, columns: 8, samples, raw: Int16Array.from(samples) };
    const img = await render(frame, grayModule(4, 8), { format: 'image/png', viewport: { width: 4, height: 2 } });
    assert.deepEqual([img.width, img.height], [4, 2]);
    for (let x = 0; x < 4; x++) assert.equal(img.gray(x, 1), 128);
  });

  it('interpolates bilinearly when enlarging', async () => {
    const samples = Int32Array.from([0, 255]);
    const frame: DecodedFrame = { kind: 'gray', rows: 1, columns: 2, samples, raw: Int16Array.from(samples) };
    const img = await render(frame, grayModule(1, 2), { format: 'image/png', window: { center: 128, width: 256 }, viewport: { width: 8, height: 4 } });
    assert.deepEqual([img.width, img.height], [8, 4]);
    const row = Array.from({ length: 8 }, (_, x) => img.gray(x, 2));
    // Pixel centres of the two source pixels fall at output x = 1.5 and 5.5.
    assert.deepEqual(row.slice(0, 2), [0, 0]);
    assert.deepEqual(row.slice(6), [255, 255]);
    for (let x = 1; x < 8; x++) assert.ok(row[x]! >= row[x - 1]!, `monotonic: ${row}`);
    assertNear(row[3]!, 96, 1, 'x=3 is 3/8 of the way');
  });
});

describe('renderFrame: JPEG quality', () => {
  it('makes smaller files at lower quality', async () => {
    const frame = horizontalGradient(64, 64);
    for (let i = 0; i < frame.samples.length; i++) frame.samples[i] = frame.samples[i]! + ((i * 7919) % 13);
    const px = grayModule(64, 64);
    const low = await renderFrame(frame, px, { format: 'image/jpeg', quality: 10 });
    const high = await renderFrame(frame, px, { format: 'image/jpeg', quality: 95 });
    assert.ok(low.length < high.length, `${low.length} < ${high.length}`);
  });
});

describe('renderFrame on a real file', { skip: haveFiles ? false : 'pydicom test files missing' }, () => {
  it('renders MR_small with its header window (600/1600): pixel (0,0) of 905 becomes 176', async () => {
    const buf = readFileSync(pydicomFiles + 'MR_small.dcm');
    const range = parsePart10(buf).dataset.get(Tags.PixelData)!.bulk!;
    const px = grayModule(64, 64, { WindowCenter: 600, WindowWidth: 1600 });
    const frame = decodeFrame(buf.subarray(range.offset, range.offset + range.length), TransferSyntax.ExplicitVRLittleEndian, px);
    const img = await render(frame, px, { format: 'image/png' });
    // ((905 - 599.5) / 1599 + 0.5) * 255 = 176.2
    assert.equal(img.gray(0, 0), 176);
    const thumb = await render(frame, px, { format: 'image/jpeg', viewport: { width: 32, height: 32 } });
    assert.deepEqual([thumb.width, thumb.height], [32, 32]);
  });
});

describe('parseWindowParam (PS3.18 window=center,width[,function])', () => {
  it('reads center and width, and the function case-insensitively', () => {
    assert.deepEqual(parseWindowParam('40,400'), { center: 40, width: 400 });
    assert.deepEqual(parseWindowParam('-600.5,1500,LINEAR'), { center: -600.5, width: 1500, function: 'LINEAR' });
    assert.deepEqual(parseWindowParam('0,0.5,linear-exact'), { center: 0, width: 0.5, function: 'LINEAR_EXACT' });
    assert.deepEqual(parseWindowParam('1e2, 3E1 ,Sigmoid'), { center: 100, width: 30, function: 'SIGMOID' });
  });

  it('rejects non-numbers, non-positive widths, unknown functions and wrong arity with RangeError', () => {
    for (const bad of ['', '40', 'a,400', '40,b', '40,', ',400', '40,400,cubic', '40,400,linear,x', '40,0', '40,-10', '40,0.5', '40,0.5,linear', 'NaN,10', 'Infinity,10', '0x10,10']) {
      assert.throws(() => parseWindowParam(bad), RangeError, bad);
    }
  });
});

describe('parseViewportParam (PS3.18 viewport=vw,vh)', () => {
  it('reads two positive integers', () => {
    assert.deepEqual(parseViewportParam('128,64'), { width: 128, height: 64 });
    assert.deepEqual(parseViewportParam('4096,1'), { width: 4096, height: 1 });
  });

  it('rejects zero, negatives, fractions, sizes over 4096 and wrong arity with RangeError', () => {
    for (const bad of ['', '128', '0,10', '10,0', '-1,10', '10.5,10', '4097,10', '10,99999', 'a,b', '10,10,10', '1e2,10']) {
      assert.throws(() => parseViewportParam(bad), RangeError, bad);
    }
  });
});
