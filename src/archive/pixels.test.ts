import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { Tags, TransferSyntax } from '../dicom/dataset.ts';
import { parsePart10 } from '../dicom/part10-parser.ts';
import { numberValue, stringValue, valueContextOf } from '../dicom/values.ts';
import {
  PixelDataError, UnsupportedTransferSyntaxError, canDecode, decodeFrame, jpegColorTransform, nativeFrameRange, pixelModuleFrom,
  type DecodedFrame, type ImagePixelModule,
} from './pixels.ts';
import { CodecPool } from './codec-pool.ts';

const pydicomFiles = '/usr/lib/python3/dist-packages/pydicom/data/test_files/';
const haveFiles = existsSync(pydicomFiles);
if (!haveFiles) console.warn(`\n!!! ${pydicomFiles} is missing: pixel decoding tests on real DICOM files are SKIPPED !!!\n`);
const skip = haveFiles ? false : 'pydicom test files missing';

interface Loaded {
  px: ImagePixelModule;
  transferSyntaxUID: string;
  /** Frame bytes (0-based index) as the archive would read them from the stored file. */
  frame(index: number): Buffer;
}

function load(name: string): Loaded {
  const buf = readFileSync(pydicomFiles + name);
  const obj = parsePart10(buf);
  const ds = obj.dataset;
  const ctx = valueContextOf(ds, obj.littleEndian);
  const num = (t: number) => numberValue(ds, t, ctx);
  const px = pixelModuleFrom(num, (t: number) => stringValue(ds, t, ctx), obj.littleEndian)!;
  const pd = ds.get(Tags.PixelData)!;
  const slice = (r: { offset: number; length: number }) => buf.subarray(r.offset, r.offset + r.length);
  return {
    px,
    transferSyntaxUID: obj.transferSyntaxUID,
    frame(index) {
      if (pd.bulk) {
        const r = nativeFrameRange(px, index);
        return buf.subarray(pd.bulk.offset + r.offset, pd.bulk.offset + r.offset + r.length);
      }
      const fragments = pd.fragments!;
      if (fragments.length === px.NumberOfFrames) return slice(fragments[index]!);
      assert.equal(px.NumberOfFrames, 1, 'test helper: multi-fragment frames need the offset table');
      return Buffer.concat(fragments.map(slice));
    },
  };
}

function decodeFile(name: string, index = 0): { frame: DecodedFrame; px: ImagePixelModule } {
  const f = load(name);
  return { frame: decodeFrame(f.frame(index), f.transferSyntaxUID, f.px), px: f.px };
}

/** RLE frames are decoded in a codec worker (dcmjs-codecs), then read as native samples here, as retrieval does. */
let pool: CodecPool | undefined;
after(async () => {
  await pool?.close();
});
async function decodeRLE(frame: Buffer, px: ImagePixelModule): Promise<DecodedFrame> {
  pool ??= new CodecPool({ size: 1 });
  const { bytes } = await pool.decode(frame, TransferSyntax.RLELossless, px);
  return decodeFrame(bytes, TransferSyntax.ExplicitVRLittleEndian, { ...px, littleEndian: true });
}

/** A frame of a test file, by whichever way Atrium decodes its syntax. */
async function decodeAny(name: string, index = 0): Promise<{ frame: DecodedFrame; px: ImagePixelModule }> {
  const f = load(name);
  if (f.transferSyntaxUID !== TransferSyntax.RLELossless) return decodeFile(name, index);
  return { frame: await decodeRLE(f.frame(index), f.px), px: f.px };
}

function stats(a: ArrayLike<number>): { sum: number; min: number; max: number } {
  let sum = 0, min = Infinity, max = -Infinity;
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    sum += v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { sum, min, max };
}

const grayAt = (f: DecodedFrame, a: ArrayLike<number>, row: number, col: number) => a[row * f.columns + col];
const rgbAt = (f: DecodedFrame, a: ArrayLike<number>, row: number, col: number) => {
  const i = (row * f.columns + col) * 3;
  return [a[i], a[i + 1], a[i + 2]];
};

/** Centre pixel of each of SC_rgb's ten horizontal bands, as RGB (pydicom, converted where YBR). */
const scRgbBands: [number, number, number][] = [
  [255, 0, 0], [255, 128, 128], [0, 255, 0], [128, 255, 128], [0, 0, 255],
  [128, 128, 255], [0, 0, 0], [64, 64, 64], [192, 192, 192], [255, 255, 255],
];

/** The same bands once through YBR_FULL (8-bit rounding moves some by a few units), per pydicom. */
const pydicomYbrBands: [number, number, number][] = [
  [254, 0, 0], [255, 127, 127], [0, 255, 5], [129, 255, 129], [0, 0, 254],
  [128, 127, 255], [0, 0, 0], [64, 64, 64], [192, 192, 192], [255, 255, 255],
];

function assertBands(frame: DecodedFrame, tolerance: number, bands = scRgbBands): void {
  bands.forEach((expected, band) => {
    const got = rgbAt(frame, frame.samples, band * 10 + 5, 50) as number[];
    for (let c = 0; c < 3; c++) {
      assert.ok(Math.abs(got[c]! - expected[c]!) <= tolerance, `band ${band} channel ${c}: ${got} vs ${expected} (±${tolerance})`);
    }
  });
}

// Expected values below were computed once with pydicom 2.3 (numpy, Pillow) from the same files.
describe('decodeFrame on pydicom test files (pydicom as oracle)', { skip }, () => {
  it('decodes CT_small (explicit VR LE, signed 16-bit) and applies the rescale intercept of -1024', () => {
    const { frame } = decodeFile('CT_small.dcm');
    assert.equal(frame.kind, 'gray');
    assert.ok(frame.raw instanceof Int16Array);
    assert.deepEqual(stats(frame.raw), { sum: 14826310, min: 128, max: 2191 });
    assert.deepEqual([grayAt(frame, frame.raw, 0, 0), grayAt(frame, frame.raw, 10, 20), grayAt(frame, frame.raw, 63, 63), grayAt(frame, frame.raw, 31, 17), grayAt(frame, frame.raw, 127, 127)], [175, 185, 1843, 380, 909]);
    assert.deepEqual(stats(frame.samples), { sum: 14826310 - 1024 * 128 * 128, min: 128 - 1024, max: 2191 - 1024 });
    assert.equal(grayAt(frame, frame.samples, 0, 0), 175 - 1024);
  });

  const mrPixels = (f: DecodedFrame) => [grayAt(f, f.raw, 0, 0), grayAt(f, f.raw, 10, 20), grayAt(f, f.raw, 63, 63), grayAt(f, f.raw, 31, 17)];
  for (const name of ['MR_small.dcm', 'MR_small_bigendian.dcm', 'MR_small_RLE.dcm']) {
    it(`decodes ${name} to MR_small's pixels`, async () => {
      const { frame } = await decodeAny(name);
      assert.ok(frame.raw instanceof Int16Array);
      assert.deepEqual(stats(frame.raw), { sum: 2125338, min: 127, max: 2145 });
      assert.deepEqual(mrPixels(frame), [905, 316, 862, 287]);
      assert.deepEqual(stats(frame.samples), stats(frame.raw), 'no rescale: modality values are the stored values');
    });
  }

  it('gives identical raw bytes for MR_small in little endian, big endian and RLE', async () => {
    const bytes = async (n: string) => Buffer.from((await decodeAny(n)).frame.raw.buffer);
    const le = await bytes('MR_small.dcm');
    assert.ok(le.equals(await bytes('MR_small_bigendian.dcm')));
    assert.ok(le.equals(await bytes('MR_small_RLE.dcm')));
  });

  it('decodes SC_rgb_rle (RLE, 3 samples of 8 bits) to interleaved RGB', async () => {
    const { frame } = await decodeAny('SC_rgb_rle.dcm');
    assert.equal(frame.kind, 'rgb');
    assert.equal(stats(frame.samples).sum, 3831000);
    assertBands(frame, 0);
  });

  it('decodes SC_rgb_rle_16bit (6 segments, most significant byte first)', async () => {
    const { frame } = await decodeAny('SC_rgb_rle_16bit.dcm');
    assert.ok(frame.raw instanceof Uint16Array);
    assert.equal(stats(frame.raw).sum, 984567000);
    assert.deepEqual(rgbAt(frame, frame.raw, 5, 50), [65535, 0, 0]);
    assert.deepEqual(rgbAt(frame, frame.raw, 15, 50), [65535, 32896, 32896]);
    assert.deepEqual(rgbAt(frame, frame.raw, 75, 50), [16448, 16448, 16448]);
    assertBands(frame, 0);
  });

  it('decodes SC_rgb_rle_32bit (12 segments) without losing the top bit', async () => {
    const { frame } = await decodeAny('SC_rgb_rle_32bit.dcm');
    assert.ok(frame.raw instanceof Uint32Array);
    assert.equal(stats(frame.raw).sum, 64525567479000);
    assert.deepEqual(rgbAt(frame, frame.raw, 15, 50), [4294967295, 2155905152, 2155905152]);
    assert.deepEqual(rgbAt(frame, frame.raw, 75, 50), [1077952576, 1077952576, 1077952576]);
    assertBands(frame, 0);
  });

  it('decodes SC_rgb_small_odd (native RGB, 3x3, odd length padded)', () => {
    const { frame } = decodeFile('SC_rgb_small_odd.dcm');
    assert.equal(frame.kind, 'rgb');
    assert.deepEqual([...frame.samples], [
      166, 141, 52, 166, 141, 52, 166, 141, 52,
      63, 87, 176, 63, 87, 176, 63, 87, 176,
      158, 158, 158, 158, 158, 158, 158, 158, 158,
    ]);
  });

  it('converts SC_ybr_full_422_uncompressed (native YBR_FULL_422) to RGB', () => {
    const { frame } = decodeFile('SC_ybr_full_422_uncompressed.dcm');
    assert.equal(frame.kind, 'rgb');
    assert.equal(frame.samples.length, 100 * 100 * 3);
    // pydicom's convert_color_space gives 3832000 and these bands; rounding may differ by one.
    assert.ok(Math.abs(stats(frame.samples).sum - 3832000) <= 100 * 100 * 3 * 0.5, `sum ${stats(frame.samples).sum}`);
    assertBands(frame, 1, pydicomYbrBands);
  });

  it('decodes SC_rgb_jpeg_dcmtk (JPEG baseline, YBR_FULL) to RGB within a lossy tolerance', () => {
    const { frame } = decodeFile('SC_rgb_jpeg_dcmtk.dcm');
    assert.equal(frame.kind, 'rgb');
    assert.ok(Math.abs(stats(frame.samples).sum - 3832000) / 3832000 < 0.01, `sum ${stats(frame.samples).sum}`);
    assertBands(frame, 4, pydicomYbrBands);
  });

  it('does not colour-transform a JPEG with an Adobe marker saying RGB (SC_rgb_jpeg_app14_dcmd)', () => {
    const { frame } = decodeFile('SC_rgb_jpeg_app14_dcmd.dcm');
    assert.ok(Math.abs(stats(frame.samples).sum - 48294002) / 48294002 < 0.005, `sum ${stats(frame.samples).sum}`);
    assert.deepEqual(rgbAt(frame, frame.samples, 100, 100), [246, 246, 246]);
  });

  it('does not colour-transform an RGB JPEG without JFIF or Adobe marker (SC_jpeg_no_color_transform)', () => {
    const { frame } = decodeFile('SC_jpeg_no_color_transform.dcm');
    assert.ok(Math.abs(stats(frame.samples).sum - 47966767) / 47966767 < 0.005, `sum ${stats(frame.samples).sum}`);
    assert.deepEqual(rgbAt(frame, frame.samples, 128, 128), [244, 244, 244]);
  });

  for (const name of ['rtdose.dcm', 'rtdose_rle.dcm']) {
    it(`decodes frame 15 of ${name} (32-bit unsigned, 15 frames)`, async () => {
      const { frame } = await decodeAny(name, 14);
      assert.ok(frame.raw instanceof Uint32Array);
      assert.deepEqual(stats(frame.raw), { sum: 101391000, min: 796000, max: 1251000 });
      assert.deepEqual([grayAt(frame, frame.raw, 0, 0), grayAt(frame, frame.raw, 4, 7), grayAt(frame, frame.raw, 9, 9)], [1249000, 1032000, 799000]);
      assert.equal(stats((await decodeAny(name, 0)).frame.raw).sum, 101378000, 'frame 1 differs from frame 15');
    });
  }

  it('throws UnsupportedTransferSyntaxError naming the UID for JPEG 2000, which only the codec workers decode', () => {
    const f = load('JPEG2000.dcm');
    assert.equal(canDecode(f.transferSyntaxUID), true);
    assert.throws(() => decodeFrame(f.frame(0), f.transferSyntaxUID, f.px), (e: unknown) => e instanceof UnsupportedTransferSyntaxError && e.message.includes('1.2.840.10008.1.2.4.91'));
  });
});

const base: ImagePixelModule = {
  Rows: 2, Columns: 3, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, HighBit: 15, PixelRepresentation: 0,
  PhotometricInterpretation: 'MONOCHROME2', NumberOfFrames: 1, littleEndian: true,
};

describe('canDecode', () => {
  it('accepts native syntaxes and every compressed image syntax but video, of which decodeFrame itself reads JPEG baseline', () => {
    for (const uid of ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2', '1.2.840.10008.1.2.5', '1.2.840.10008.1.2.4.50']) {
      assert.equal(canDecode(uid), true, uid);
    }
    for (const uid of [TransferSyntax.RLELossless, TransferSyntax.JPEGExtended12Bit, TransferSyntax.JPEGLossless, TransferSyntax.JPEGLosslessSV1, TransferSyntax.JPEGLSLossless,
      TransferSyntax.JPEGLSNearLossless, TransferSyntax.JPEG2000Lossless, TransferSyntax.JPEG2000, TransferSyntax.HTJ2KLossless, TransferSyntax.HTJ2K]) {
      assert.equal(canDecode(uid), true, uid);
      assert.throws(() => decodeFrame(Buffer.alloc(12), uid, base), (e: unknown) => e instanceof UnsupportedTransferSyntaxError && e.transferSyntaxUID === uid);
    }
    for (const uid of [TransferSyntax.MPEG2MPML, '1.2.3']) {
      assert.equal(canDecode(uid), false, uid);
      assert.throws(() => decodeFrame(Buffer.alloc(12), uid, base), (e: unknown) => e instanceof UnsupportedTransferSyntaxError && e.transferSyntaxUID === uid);
    }
  });
});

describe('nativeFrameRange', () => {
  it('places frame n at n times the frame size', () => {
    const px = { ...base, Rows: 10, Columns: 10, BitsAllocated: 32, NumberOfFrames: 15 };
    assert.deepEqual(nativeFrameRange(px, 0), { offset: 0, length: 400 });
    assert.deepEqual(nativeFrameRange(px, 14), { offset: 5600, length: 400 });
    assert.deepEqual(nativeFrameRange({ ...px, SamplesPerPixel: 3, BitsAllocated: 8 }, 2), { offset: 600, length: 300 });
  });

  it('counts two samples a pixel for YBR_FULL_422', () => {
    const px = { ...base, Rows: 100, Columns: 100, SamplesPerPixel: 3, BitsAllocated: 8, PhotometricInterpretation: 'YBR_FULL_422', NumberOfFrames: 2 };
    assert.deepEqual(nativeFrameRange(px, 1), { offset: 20000, length: 20000 });
  });

  it('covers the bytes a packed 1-bit frame touches', () => {
    const px = { ...base, Rows: 3, Columns: 3, BitsAllocated: 1, BitsStored: 1, HighBit: 0, NumberOfFrames: 3 };
    assert.deepEqual(nativeFrameRange(px, 0), { offset: 0, length: 2 }); // bits 0..8
    assert.deepEqual(nativeFrameRange(px, 1), { offset: 1, length: 2 }); // bits 9..17
    assert.deepEqual(nativeFrameRange(px, 2), { offset: 2, length: 2 }); // bits 18..26
  });

  it('rejects a frame index outside the object', () => {
    assert.throws(() => nativeFrameRange({ ...base, NumberOfFrames: 2 }, 2), RangeError);
    assert.throws(() => nativeFrameRange(base, -1), RangeError);
  });
});

describe('decodeFrame on hand-made native frames', () => {
  const le16 = (...v: number[]) => { const b = Buffer.alloc(v.length * 2); v.forEach((x, i) => b.writeUInt16LE(x & 0xffff, i * 2)); return b; };

  it('masks Bits Stored and sign-extends from High Bit (signed 12 of 16 bits)', () => {
    const px = { ...base, BitsStored: 12, HighBit: 11, PixelRepresentation: 1, RescaleSlope: 2, RescaleIntercept: 10 };
    // 0xF000 bits above High Bit are overlay garbage; 0x0FFF is -1; 0x0800 is -2048.
    const { raw, samples } = decodeFrame(le16(0xffff, 0x0fff, 0x0800, 0x07ff, 0xf001, 0), TransferSyntax.ExplicitVRLittleEndian, px);
    assert.ok(raw instanceof Int16Array);
    assert.deepEqual([...raw], [-1, -1, -2048, 2047, 1, 0]);
    assert.ok(samples instanceof Int32Array);
    assert.deepEqual([...samples], [8, 8, -4086, 4104, 12, 10]);
  });

  it('uses float modality values for a fractional rescale', () => {
    const px = { ...base, RescaleSlope: 0.5, RescaleIntercept: -0.25 };
    const { samples } = decodeFrame(le16(0, 1, 2, 3, 4, 5), TransferSyntax.ImplicitVRLittleEndian, px);
    assert.ok(samples instanceof Float32Array);
    assert.deepEqual([...samples], [-0.25, 0.25, 0.75, 1.25, 1.75, 2.25]);
  });

  it('reads big endian frames when littleEndian is false', () => {
    const be = Buffer.from([0x01, 0x02, 0x00, 0x03, 0xff, 0xff, 0, 0, 0, 0, 0, 0]);
    const { raw } = decodeFrame(be, TransferSyntax.ExplicitVRBigEndian, { ...base, littleEndian: false });
    assert.deepEqual([...raw], [0x0102, 3, 65535, 0, 0, 0]);
  });

  it('reads signed 8-bit values as negative modality values', () => {
    const px = { ...base, BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 1 };
    const { samples } = decodeFrame(Buffer.from([0x80, 0xff, 0, 1, 0x7f, 2]), TransferSyntax.ExplicitVRLittleEndian, px);
    assert.deepEqual([...samples], [-128, -1, 0, 1, 127, 2]);
  });

  it('de-planarises RGB with Planar Configuration 1', () => {
    const px = { ...base, Rows: 1, Columns: 2, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8, HighBit: 7, PhotometricInterpretation: 'RGB', PlanarConfiguration: 1 };
    const { kind, samples } = decodeFrame(Buffer.from([1, 2, 10, 20, 100, 200]), TransferSyntax.ExplicitVRLittleEndian, px);
    assert.equal(kind, 'rgb');
    assert.deepEqual([...samples], [1, 10, 100, 2, 20, 200]);
  });

  it('converts native YBR_FULL to RGB', () => {
    const px = { ...base, Rows: 1, Columns: 2, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8, HighBit: 7, PhotometricInterpretation: 'YBR_FULL' };
    // Pure red (76, 85, 255) and mid-gray (128, 128, 128).
    const { samples } = decodeFrame(Buffer.from([76, 85, 255, 128, 128, 128]), TransferSyntax.ExplicitVRLittleEndian, px);
    assert.deepEqual([...samples.subarray(3)], [128, 128, 128]);
    assert.ok(samples[0]! >= 253 && samples[1]! <= 1 && samples[2]! <= 1, `red came out as ${[...samples.subarray(0, 3)]}`);
  });

  it('unpacks 1-bit pixels least significant bit first', () => {
    const px = { ...base, Rows: 2, Columns: 5, BitsAllocated: 1, BitsStored: 1, HighBit: 0 };
    const { raw, samples } = decodeFrame(Buffer.from([0b10100101, 0b00000011]), TransferSyntax.ExplicitVRLittleEndian, px);
    assert.deepEqual([...raw], [1, 0, 1, 0, 0, 1, 0, 1, 1, 1]);
    assert.deepEqual([...samples], [...raw]);
  });

  it('rejects a frame shorter than Rows x Columns x samples', () => {
    assert.throws(() => decodeFrame(Buffer.alloc(11), TransferSyntax.ExplicitVRLittleEndian, base), PixelDataError);
  });
});

describe('RLE frames made by hand (PS3.5 Annex G), decoded in a codec worker', () => {
  function rle(segments: Buffer[]): Buffer {
    const header = Buffer.alloc(64);
    header.writeUInt32LE(segments.length, 0);
    let at = 64;
    segments.forEach((s, i) => { header.writeUInt32LE(at, 4 + i * 4); at += s.length; });
    return Buffer.concat([header, ...segments]);
  }

  it('expands literal runs, replicate runs and skips the -128 no-op', async () => {
    const px = { ...base, Rows: 1, Columns: 8, BitsAllocated: 8, BitsStored: 8, HighBit: 7 };
    // literal 2 bytes, no-op, repeat 7 three times (-2 = 0xfe), literal 3 bytes, padding byte
    const seg = Buffer.from([0x01, 9, 8, 0x80, 0xfe, 7, 0x02, 1, 2, 3, 0x00]);
    const { raw } = await decodeRLE(rle([seg]), px);
    assert.deepEqual([...raw], [9, 8, 7, 7, 7, 1, 2, 3]);
  });

  it('assembles 16-bit signed samples from high-byte and low-byte segments', async () => {
    const px = { ...base, Rows: 1, Columns: 2, PixelRepresentation: 1 };
    const { raw } = await decodeRLE(rle([Buffer.from([0x01, 0xff, 0x01]), Buffer.from([0x01, 0xfe, 0x02])]), px);
    assert.ok(raw instanceof Int16Array);
    assert.deepEqual([...raw], [-2, 0x0102]);
  });

  it('rejects a header whose segment count does not match the pixel module', async () => {
    await assert.rejects(decodeRLE(rle([Buffer.from([0x00, 1])]), base), PixelDataError);
  });
});

describe('jpegColorTransform', () => {
  const sof = (ids: number[]) => Buffer.from([0xff, 0xc0, 0, 17, 8, 0, 1, 0, 1, 3, ids[0]!, 0x11, 0, ids[1]!, 0x11, 0, ids[2]!, 0x11, 0]);
  const soi = Buffer.from([0xff, 0xd8]);
  const adobe = (transform: number) => Buffer.from([0xff, 0xee, 0, 14, ...Buffer.from('Adobe'), 0, 100, 0, 0, 0, 0, transform]);

  it('follows the Adobe transform flag over everything else', () => {
    assert.equal(jpegColorTransform(Buffer.concat([soi, adobe(0), sof([1, 2, 3])]), 'YBR_FULL_422'), false);
    assert.equal(jpegColorTransform(Buffer.concat([soi, adobe(1), sof([0x52, 0x47, 0x42])]), 'RGB'), true);
  });

  it('treats component identifiers R, G, B as untransformed, else follows the Photometric Interpretation', () => {
    assert.equal(jpegColorTransform(Buffer.concat([soi, sof([0x52, 0x47, 0x42])]), 'YBR_FULL_422'), false);
    assert.equal(jpegColorTransform(Buffer.concat([soi, sof([1, 2, 3])]), 'YBR_FULL_422'), true);
    assert.equal(jpegColorTransform(Buffer.concat([soi, sof([1, 2, 3])]), 'RGB'), false);
  });
});
