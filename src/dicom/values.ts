import { Tags, tagToHex, type DicomDataset, type DicomElement, type Tag, type VR } from './dataset.ts';
import { characterSetDecoder, type CharacterSetDecoder } from './charset.ts';

/** What reading a value needs beyond its bytes: byte order and character set. */
export interface ValueContext {
  littleEndian: boolean;
  charset: CharacterSetDecoder;
}

const stringVRs: ReadonlySet<VR> = new Set<VR>(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UR', 'UT']);

export function isStringVR(vr: VR): boolean {
  return stringVRs.has(vr);
}

/** Single-valued text VRs: a backslash is a character there (PS3.5 6.1.3). */
function isSingleValued(vr: VR): boolean {
  return vr === 'LT' || vr === 'ST' || vr === 'UT' || vr === 'UR';
}

/** Leading spaces are significant in LT, ST and UT only (PS3.5 table 6.2-1). */
function keepsLeadingSpaces(vr: VR): boolean {
  return vr === 'LT' || vr === 'ST' || vr === 'UT';
}

/** The dataset's own (0008,0005), read once when the dataset is. */
export function valueContextOf(dataset: DicomDataset, littleEndian: boolean): ValueContext {
  const el = dataset.get(Tags.SpecificCharacterSet);
  const terms = el?.value && el.value.length > 0 ? el.value.toString('latin1').split('\\').map(trimPadding) : [];
  // A lone empty value is the default repertoire, as if the attribute were absent.
  return { littleEndian, charset: characterSetDecoder(terms.length === 1 && terms[0] === '' ? [] : terms) };
}

/** Items inherit their parent's character set unless they name their own (PS3.5 7.5.3). */
export function itemContext(item: DicomDataset, parent: ValueContext): ValueContext {
  return item.has(Tags.SpecificCharacterSet) ? valueContextOf(item, parent.littleEndian) : parent;
}

function isPadding(c: number): boolean {
  return c === 0x20 || c === 0x00;
}

/** Spaces and NULs at both ends. A hand loop: this runs for every value of every object ingested. */
function trimPadding(s: string): string {
  let start = 0;
  let end = s.length;
  while (end > start && isPadding(s.charCodeAt(end - 1))) end--;
  while (start < end && isPadding(s.charCodeAt(start))) start++;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

function trimTrailingPadding(s: string): string {
  let end = s.length;
  while (end > 0 && isPadding(s.charCodeAt(end - 1))) end--;
  return end === s.length ? s : s.slice(0, end);
}

/**
 * Empty trailing component groups carry nothing (PS3.5 6.2.1.1): "Doe^John==" is "Doe^John",
 * and a name of delimiters only ("^^^^", which some modalities send) is an empty name.
 */
function trimTrailingGroups(s: string): string {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === 0x3d) end--;
  return end === s.length ? s : s.slice(0, end);
}

function isOnlyDelimiters(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x5e && c !== 0x3d && c !== 0x20) return false;
  }
  return true;
}

/**
 * Text values of an element, decoded by the character set for SH, LO, ST, LT, UC, UT and PN,
 * split on backslashes except for single-valued VRs, with their padding removed (PS3.5 6.2).
 * An empty value stays as '' in its position; no value at all gives [].
 */
export function stringValues(el: DicomElement, ctx: ValueContext): string[] {
  const bytes = el.value;
  if (!bytes || bytes.length === 0) return [];
  const vr = el.vr;
  // Decoded before splitting: in GBK, GB18030 and ISO 2022 the byte 0x5C can be half of a character.
  const decoded = ctx.charset.decode(bytes, vr);
  // A NUL inside text is no character of DICOM's (PS3.5 6.1.2): dropped, so that every index
  // engine keeps the same value (PostgreSQL text cannot hold one). A UID keeps it, to be refused.
  const text = vr !== 'UI' && decoded.includes('\0') ? decoded.replaceAll('\0', '') : decoded;
  if (isSingleValued(vr)) return [keepsLeadingSpaces(vr) ? trimTrailingPadding(text) : trimPadding(text)];
  const values = text.split('\\');
  for (let i = 0; i < values.length; i++) {
    const v = trimPadding(values[i]!);
    values[i] = vr !== 'PN' ? v : isOnlyDelimiters(v) ? '' : trimTrailingGroups(v);
  }
  return values;
}

/** The first value of a text attribute, or undefined when absent or empty. */
export function stringValue(ds: DicomDataset, tag: Tag, ctx: ValueContext): string | undefined {
  const el = ds.get(tag);
  if (!el?.value) return undefined;
  let first: string | undefined;
  if (stringVRs.has(el.vr)) first = stringValues(el, ctx)[0];
  // Text stored as UN (an implicit-VR private element, or a writer's dictionary miss) is read as LO.
  else if (el.vr === 'UN') first = stringValues({ tag: el.tag, vr: 'LO', value: el.value }, ctx)[0];
  return first === '' ? undefined : first;
}

/**
 * Numeric values: binary VRs by byte order, IS and DS from their text.
 * Empty or unparsable IS/DS values are skipped, so positions may shift: use stringValues
 * where a position matters. SV and UV beyond ±2^53 come back rounded to the nearest
 * double; bigIntValues reads them exactly.
 */
export function numberValues(el: DicomElement, ctx: ValueContext): number[] {
  const v = el.value;
  if (!v || v.length === 0) return [];
  const le = ctx.littleEndian;
  switch (el.vr) {
    case 'US': return readEach(v, 2, le ? (o) => v.readUInt16LE(o) : (o) => v.readUInt16BE(o));
    case 'SS': return readEach(v, 2, le ? (o) => v.readInt16LE(o) : (o) => v.readInt16BE(o));
    case 'UL': return readEach(v, 4, le ? (o) => v.readUInt32LE(o) : (o) => v.readUInt32BE(o));
    case 'SL': return readEach(v, 4, le ? (o) => v.readInt32LE(o) : (o) => v.readInt32BE(o));
    case 'FL': return readEach(v, 4, le ? (o) => v.readFloatLE(o) : (o) => v.readFloatBE(o));
    case 'FD': return readEach(v, 8, le ? (o) => v.readDoubleLE(o) : (o) => v.readDoubleBE(o));
    case 'SV':
    case 'UV':
      return bigIntValues(el, ctx).map(Number);
    case 'IS':
    case 'DS': {
      const out: number[] = [];
      for (const s of stringValues(el, ctx)) {
        const n = parseDecimalString(s);
        if (n !== undefined) out.push(n);
      }
      return out;
    }
    default:
      return [];
  }
}

function readEach(v: Buffer, size: number, read: (offset: number) => number): number[] {
  const out: number[] = new Array(Math.floor(v.length / size));
  for (let i = 0, o = 0; i < out.length; i++, o += size) out[i] = read(o);
  return out;
}

/** SV and UV values, exactly. */
export function bigIntValues(el: DicomElement, ctx: ValueContext): bigint[] {
  const v = el.value;
  if (!v || (el.vr !== 'SV' && el.vr !== 'UV')) return [];
  const out: bigint[] = [];
  const le = ctx.littleEndian;
  for (let o = 0; o + 8 <= v.length; o += 8) {
    out.push(el.vr === 'SV'
      ? (le ? v.readBigInt64LE(o) : v.readBigInt64BE(o))
      : (le ? v.readBigUInt64LE(o) : v.readBigUInt64BE(o)));
  }
  return out;
}

/**
 * An IS or DS value as a number, or undefined when it is not one. Number() alone would also
 * take "0x10", "Infinity" and "" (as 0), none of which is a decimal string (PS3.5 6.2).
 */
export function parseDecimalString(s: string): number | undefined {
  if (s.length === 0) return undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // digits + - . e E
    if (!((c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e || c === 0x45 || c === 0x65)) return undefined;
  }
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

export function numberValue(ds: DicomDataset, tag: Tag, ctx: ValueContext): number | undefined {
  const el = ds.get(tag);
  return el ? numberValues(el, ctx)[0] : undefined;
}

/** AT values as "GGGGEEEE". */
export function tagValues(el: DicomElement, ctx: ValueContext): string[] {
  const v = el.value;
  if (!v) return [];
  const out: string[] = [];
  for (let o = 0; o + 4 <= v.length; o += 4) {
    const group = ctx.littleEndian ? v.readUInt16LE(o) : v.readUInt16BE(o);
    const element = ctx.littleEndian ? v.readUInt16LE(o + 2) : v.readUInt16BE(o + 2);
    out.push(tagToHex(((group << 16) | element) >>> 0));
  }
  return out;
}

/** A PN value by component group, as the DICOM JSON model names them (PS3.18 F.2.2). */
export interface PersonName {
  Alphabetic?: string;
  Ideographic?: string;
  Phonetic?: string;
}

/** A PN value split into its component groups (PS3.5 6.2.1); empty groups, or groups of "^" only, are left out. */
export function personName(value: string): PersonName {
  const first = value.indexOf('=');
  if (first < 0) return isOnlyDelimiters(value) ? {} : { Alphabetic: value };
  const second = value.indexOf('=', first + 1);
  const a = value.slice(0, first);
  const i = second < 0 ? value.slice(first + 1) : value.slice(first + 1, second);
  const p = second < 0 ? '' : value.slice(second + 1);
  const pn: PersonName = {};
  if (!isOnlyDelimiters(a)) pn.Alphabetic = a;
  if (!isOnlyDelimiters(i)) pn.Ideographic = i;
  if (!isOnlyDelimiters(p)) pn.Phonetic = p;
  return pn;
}

/** Every value of a PN element by component group; an empty value gives {}. */
export function personNameValues(el: DicomElement, ctx: ValueContext): PersonName[] {
  return stringValues(el, ctx).map(personName);
}

/** The first value of a PN attribute, or undefined when absent or empty. */
export function personNameValue(ds: DicomDataset, tag: Tag, ctx: ValueContext): PersonName | undefined {
  const s = stringValue(ds, tag, ctx);
  return s === undefined ? undefined : personName(s);
}
