/**
 * PALETTE COLOR images (PS3.3 C.7.6.3.1.5-6, C.7.9.2): each stored value indexes three lookup
 * tables (red, green, blue) given by a descriptor (entries, first value mapped, bits an entry)
 * and their data, plain (0028,1201-1203) or segmented (0028,1221-1223: discrete and linear
 * segments). Rendering maps a frame's stored values through them to 8-bit RGB.
 * Pure: the elements in, the picture out.
 */
import { tag, type DicomDataset, type Tag } from '../dicom/dataset.ts';
import type { DecodedFrame } from './pixels.ts';

export const PaletteTags = {
  descriptors: [tag(0x0028, 0x1101), tag(0x0028, 0x1102), tag(0x0028, 0x1103)],
  data: [tag(0x0028, 0x1201), tag(0x0028, 0x1202), tag(0x0028, 0x1203)],
  segmented: [tag(0x0028, 0x1221), tag(0x0028, 0x1222), tag(0x0028, 0x1223)],
} as const;

export class PaletteError extends Error {
  override readonly name = 'PaletteError';
}

/** One channel's table, as 8-bit display values, and the first stored value it maps. */
interface Channel { first: number; table: Uint8Array }
export interface Palette { red: Channel; green: Channel; blue: Channel }

/** The bytes of an element's value (a bulk value read by the caller). */
export type ValueOf = (t: Tag) => Buffer | undefined;

const words = (b: Buffer): Uint16Array => {
  const out = new Uint16Array(Math.floor(b.length / 2));
  for (let i = 0; i < out.length; i++) out[i] = b.readUInt16LE(i * 2);
  return out;
};

/** The tags a palette needs, for a caller that reads bulk values on demand. */
export const paletteTags: readonly Tag[] = [...PaletteTags.descriptors, ...PaletteTags.data, ...PaletteTags.segmented];

/**
 * The palette of an image, from its elements' little-endian values; `signed`: Pixel
 * Representation 1 (the first mapped value is then read as a signed 16-bit number).
 */
export function paletteOf(valueOf: ValueOf, signed: boolean): Palette {
  const channel = (i: 0 | 1 | 2): Channel => {
    const name = ['red', 'green', 'blue'][i]!;
    const d = valueOf(PaletteTags.descriptors[i]);
    if (!d || d.length < 6) throw new PaletteError(`PALETTE COLOR without a ${name} palette descriptor`);
    const entries = d.readUInt16LE(0) || 65536;
    const first = signed ? d.readInt16LE(2) : d.readUInt16LE(2);
    const bits = d.readUInt16LE(4);
    if (bits !== 8 && bits !== 16) throw new PaletteError(`the ${name} palette has ${bits} bits an entry (8 or 16)`);
    const plain = valueOf(PaletteTags.data[i]);
    const segmented = valueOf(PaletteTags.segmented[i]);
    let values: ArrayLike<number>;
    if (plain && plain.length > 0) {
      // 8-bit entries are bytes, unless the data holds a 16-bit word an entry (as some writers do).
      values = bits === 8 && plain.length < entries * 2 ? plain : words(plain);
    } else if (segmented && segmented.length > 0) {
      values = expandSegments(words(segmented), entries, name);
    } else {
      throw new PaletteError(`PALETTE COLOR without ${name} palette data`);
    }
    if (values.length < entries) throw new PaletteError(`the ${name} palette has ${values.length} entries, its descriptor says ${entries}`);
    const table = new Uint8Array(entries);
    // To 8 bits for display: 16-bit entries keep their high byte; 8-bit entries held in words, their low byte.
    const shift = bits === 16 ? 8 : 0;
    for (let e = 0; e < entries; e++) table[e] = (values[e]! >>> shift) & 0xff;
    return { first, table };
  };
  return { red: channel(0), green: channel(1), blue: channel(2) };
}

/**
 * A segmented palette's entries (PS3.3 C.7.9.2): discrete (0) and linear (1) segments. Indirect
 * segments (2), which copy earlier ones, are refused: they are rare, and writers disagree on
 * whether their offset counts bytes or words.
 */
function expandSegments(data: Uint16Array, entries: number, name: string): number[] {
  const out: number[] = [];
  let i = 0;
  while (i + 1 < data.length && out.length < entries) {
    const op = data[i]!, length = data[i + 1]!;
    if (op === 0) {
      if (i + 2 + length > data.length) throw new PaletteError(`a discrete segment of the ${name} palette runs past its data`);
      for (let k = 0; k < length; k++) out.push(data[i + 2 + k]!);
      i += 2 + length;
    } else if (op === 1) {
      const end = data[i + 2];
      if (end === undefined || out.length === 0) throw new PaletteError(`a linear segment of the ${name} palette has no value to start from`);
      const start = out[out.length - 1]!;
      for (let k = 1; k <= length; k++) out.push(Math.round(start + ((end - start) * k) / length));
      i += 3;
    } else {
      throw new PaletteError(`segment type ${op} of the segmented ${name} palette is not supported (discrete and linear segments are)`);
    }
  }
  return out;
}

/** A frame's stored values (`raw`) through the palette: interleaved 8-bit RGB. */
export function applyPalette(frame: DecodedFrame, palette: Palette): DecodedFrame {
  const raw = frame.raw;
  const n = frame.rows * frame.columns;
  const rgb = new Uint8Array(n * 3);
  const { red, green, blue } = palette;
  const look = (c: Channel, v: number) => {
    const e = v - c.first;
    return c.table[e < 0 ? 0 : e >= c.table.length ? c.table.length - 1 : e]!;
  };
  for (let i = 0; i < n; i++) {
    const v = raw[i]!;
    rgb[i * 3] = look(red, v);
    rgb[i * 3 + 1] = look(green, v);
    rgb[i * 3 + 2] = look(blue, v);
  }
  return { kind: 'rgb', rows: frame.rows, columns: frame.columns, samples: rgb, raw: rgb };
}

/**
 * The palette elements of a parsed dataset as little-endian values (every one is 16-bit words,
 * but 8-bit entries), read by `bulk` where they were left on storage.
 */
export async function paletteElements(dataset: DicomDataset, littleEndian: boolean, bulk: (range: { offset: number; length: number }) => Promise<Buffer>): Promise<Map<Tag, Buffer>> {
  const out = new Map<Tag, Buffer>();
  for (const t of paletteTags) {
    const el = dataset.get(t);
    if (!el) continue;
    const value = el.value ?? (el.bulk ? await bulk(el.bulk) : undefined);
    if (!value) continue;
    const copy = Buffer.from(value);
    if (!littleEndian && copy.length % 2 === 0) copy.swap16();
    out.set(t, copy);
  }
  return out;
}
