import { Tags, tagToHex, type DicomDataset, type DicomElement, type Tag, type VR } from './dataset.ts';
import { bigIntValues, itemContext, numberValues, parseDecimalString, personName, stringValues, tagValues, type PersonName, type ValueContext } from './values.ts';

/** DICOM JSON model, PS3.18 Annex F. */
export interface DicomJsonElement {
  vr: VR;
  Value?: Array<string | number | PersonName | DicomJsonDataset | null>;
  BulkDataURI?: string;
  InlineBinary?: string;
}
export type DicomJsonDataset = Record<string, DicomJsonElement>;

export interface DicomJsonOptions {
  /** The URI for a bulk value by tag path ("7FE00010", "00540016.0.00181072"); undefined leaves the value out. */
  bulkDataURI: (tagPath: string) => string | undefined;
  /** Which top-level attributes to write; a sequence that is written is written whole. */
  includeTags?: (tag: Tag) => boolean;
  /** In-memory binary values longer than this are given as bulk data rather than inline (default 1024). */
  inlineBinaryLimit?: number;
}

const binaryVRs: ReadonlySet<VR> = new Set<VR>(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);
const numericVRs: ReadonlySet<VR> = new Set<VR>(['US', 'SS', 'UL', 'SL', 'FL', 'FD']);
/** Bytes per word of the binary VRs whose bytes follow the transfer syntax's byte order. */
const wordSize: Partial<Record<VR, number>> = { OW: 2, OF: 4, OL: 4, OD: 8, OV: 8 };
const maxSafe = BigInt(Number.MAX_SAFE_INTEGER);
const minSafe = BigInt(Number.MIN_SAFE_INTEGER);

/**
 * The dataset as DICOM JSON (PS3.18 F.2): meta group and group lengths left out, keys in
 * ascending tag order. Choices where F leaves room:
 * - IS/DS values that are not decimal strings are kept as the JSON string received rather than lost;
 * - SV/UV values beyond ±2^53 are JSON strings (F.2.3.1), numbers otherwise;
 * - an empty value among several is null (F.2.5); only empty values give an element with "vr" alone;
 * - OW/OF/OL/OD/OV of a big-endian object are given inline in little-endian order, as JSON has no byte order of its own;
 * - (0008,0005) is written "ISO_IR 192" (as DCMTK's dcm2json does): the strings were decoded, the JSON is Unicode;
 * - FL values are written with the fewest digits that give back the same float32.
 */
export function toDicomJson(ds: DicomDataset, ctx: ValueContext, opts: DicomJsonOptions): DicomJsonDataset {
  return datasetJson(ds, ctx, opts, '', opts.includeTags);
}

function datasetJson(ds: DicomDataset, ctx: ValueContext, opts: DicomJsonOptions, prefix: string, include: ((tag: Tag) => boolean) | undefined): DicomJsonDataset {
  const out: DicomJsonDataset = {};
  for (const el of ascendingElements(ds)) {
    const t = el.tag;
    if ((t & 0xffff) === 0 || t >>> 16 === 0x0002) continue;
    if (include && !include(t)) continue;
    const key = hexKey(t);
    out[key] = elementJson(el, ctx, opts, prefix, key);
  }
  return out;
}

/** The parser gives elements in tag order; only hand-built datasets pay for a sort. */
function ascendingElements(ds: DicomDataset): Iterable<DicomElement> {
  let previous = -1;
  for (const t of ds.keys()) {
    if (t <= previous) return [...ds.values()].sort((a, b) => a.tag - b.tag);
    previous = t;
  }
  return ds.values();
}

/** Keys are the same few hundred tags object after object: formatted once. */
const hexKeys = new Map<Tag, string>();
function hexKey(t: Tag): string {
  let key = hexKeys.get(t);
  if (key === undefined) {
    key = tagToHex(t);
    // Private tags vary without bound across senders; past this size, format each time.
    if (hexKeys.size < 20000) hexKeys.set(t, key);
  }
  return key;
}

/** The element's tag path is prefix + key ("00540016.0." + "00181072"), built only when a bulk value needs it. */
function elementJson(el: DicomElement, ctx: ValueContext, opts: DicomJsonOptions, prefix: string, key: string): DicomJsonElement {
  const vr = el.vr;
  if (vr === 'SQ' || el.items) {
    const items = el.items ?? [];
    if (items.length === 0) return { vr: 'SQ' };
    const value: DicomJsonDataset[] = new Array(items.length);
    for (let i = 0; i < items.length; i++) value[i] = datasetJson(items[i]!, itemContext(items[i]!, ctx), opts, `${prefix}${key}.${i}.`, undefined);
    return { vr: 'SQ', Value: value };
  }
  const limit = opts.inlineBinaryLimit ?? 1024;
  if (el.bulk || el.fragments || (binaryVRs.has(vr) && el.value && el.value.length > limit)) {
    const uri = opts.bulkDataURI(prefix + key);
    return uri === undefined ? { vr } : { vr, BulkDataURI: uri };
  }
  if (!el.value || el.value.length === 0) return { vr };
  if (binaryVRs.has(vr)) return { vr, InlineBinary: littleEndianBytes(el.value, vr, ctx.littleEndian).toString('base64') };
  if (vr === 'FL') return withValues(vr, numberValues(el, ctx).map(shortestFloat32));
  if (numericVRs.has(vr)) return withValues(vr, numberValues(el, ctx));
  // The JSON text is Unicode whatever the object's repertoire: a reader re-encoding it must not apply the original one.
  if (el.tag === Tags.SpecificCharacterSet) return { vr: 'CS', Value: ['ISO_IR 192'] };
  if (vr === 'SV' || vr === 'UV') return withValues(vr, bigIntValues(el, ctx).map((b) => (b <= maxSafe && b >= minSafe ? Number(b) : b.toString())));
  if (vr === 'AT') return withValues(vr, tagValues(el, ctx));
  const strings = stringValues(el, ctx);
  const values: Array<string | number | PersonName | null> = new Array(strings.length);
  for (let i = 0; i < strings.length; i++) {
    const s = strings[i]!;
    if (s === '') values[i] = null;
    else if (vr === 'PN') values[i] = personName(s);
    else if (vr === 'IS' || vr === 'DS') values[i] = parseDecimalString(s) ?? s;
    else values[i] = s;
  }
  return withValues(vr, values);
}

/** The shortest decimal that reads back as the same float32: -77.204063 rather than -77.20406341552734. */
function shortestFloat32(v: number): number {
  if (!Number.isFinite(v) || Number.isInteger(v)) return v;
  for (let digits = 6; digits < 9; digits++) {
    const n = Number(v.toPrecision(digits));
    if (Math.fround(n) === v) return n;
  }
  return Number(v.toPrecision(9));
}

function littleEndianBytes(value: Buffer, vr: VR, littleEndian: boolean): Buffer {
  const size = wordSize[vr];
  if (littleEndian || size === undefined || value.length % size !== 0) return value;
  const copy = Buffer.from(value);
  if (size === 2) copy.swap16();
  else if (size === 4) copy.swap32();
  else copy.swap64();
  return copy;
}

function withValues(vr: VR, values: Array<string | number | PersonName | null>): DicomJsonElement {
  if (values.length === 0 || values.every((v) => v === null)) return { vr };
  return { vr, Value: values };
}

/** The values of a tag in a DICOM JSON dataset. */
export function dicomJsonValue(json: DicomJsonDataset, tag: Tag): unknown[] | undefined {
  return json[tagToHex(tag)]?.Value;
}

/** A DICOM JSON person name back to its PN form "Alphabetic=Ideographic=Phonetic", empty trailing groups left out. */
export function personNameToString(pn: PersonName): string {
  const a = pn.Alphabetic ?? '';
  if (pn.Phonetic) return `${a}=${pn.Ideographic ?? ''}=${pn.Phonetic}`;
  if (pn.Ideographic) return `${a}=${pn.Ideographic}`;
  return a;
}

/**
 * JSON text of a DICOM JSON dataset with keys in ascending tag order. JSON.stringify
 * would put all-digit keys such as "30040002" first (integer-like property order).
 */
export function stringifyDicomJson(ds: DicomJsonDataset): string {
  let out = '{';
  let first = true;
  for (const key of sortedKeys(ds)) {
    const el = ds[key]!;
    out += `${first ? '' : ','}"${key}":{"vr":"${el.vr}"`;
    first = false;
    const values = el.Value;
    if (values !== undefined) {
      out += ',"Value":[';
      const items = el.vr === 'SQ';
      for (let i = 0; i < values.length; i++) {
        if (i > 0) out += ',';
        const v = values[i];
        out += items && v !== null ? stringifyDicomJson(v as DicomJsonDataset) : JSON.stringify(v);
      }
      out += ']';
    }
    if (el.BulkDataURI !== undefined) out += `,"BulkDataURI":${JSON.stringify(el.BulkDataURI)}`;
    if (el.InlineBinary !== undefined) out += `,"InlineBinary":"${el.InlineBinary}"`;
    out += '}';
  }
  return out + '}';
}

/** Upper-case 8-digit hex keys sort as their tags do; most datasets only need the check. */
function sortedKeys(ds: DicomJsonDataset): string[] {
  const keys = Object.keys(ds);
  for (let i = 1; i < keys.length; i++) if (keys[i - 1]! > keys[i]!) return keys.sort();
  return keys;
}
