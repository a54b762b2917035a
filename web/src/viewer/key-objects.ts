/**
 * Key images as DICOM Key Object Selection documents (PS3.3 A.35.4, template TID 2010 "Of
 * Interest"), made in the browser and stored in the study by STOW-RS: every PACS and viewer
 * of the territory finds them. One document per image marked; the viewer lists the images
 * all the study's documents reference.
 */
import { csrfHeaders, type Me } from '../api.ts';
import { str, tag, type DicomJson } from '../dicom-json.ts';
import { items, SOPClass } from './documents.tsx';

export interface KeyImage {
  SeriesInstanceUID: string;
  SOPInstanceUID: string;
  SOPClassUID: string;
  /** 1-based, for a multi-frame image. */
  frame?: number;
}

/** Storing takes these roles and a single home site (the site the object is filed under), as src/access/policy.ts decides. */
export function mayStore(me: Me | undefined): boolean {
  const storing = ['territory-admin', 'site-admin', 'radiologist', 'technologist'];
  return me !== undefined && me.kind === 'user' && me.roles.some((r) => storing.includes(r)) && me.sites.length === 1;
}

/** A UID under 2.25 (PS3.5 B.2) from a random UUID. */
export function newUID(): string {
  return `2.25.${BigInt(`0x${crypto.randomUUID().replaceAll('-', '')}`).toString()}`;
}

// ---- a minimal Part 10 writer: explicit VR little endian, sequences of undefined length ----

type Element = { tag: number; vr: string; value: string | Uint8Array } | { tag: number; vr: 'SQ'; items: Element[][] };

const longVRs = new Set(['OB', 'OD', 'OF', 'OL', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT']);
const utf8 = new TextEncoder();

function valueBytes(vr: string, value: string | Uint8Array): Uint8Array {
  if (value instanceof Uint8Array) return value.length % 2 ? Uint8Array.of(...value, 0) : value;
  const bytes = utf8.encode(value);
  if (bytes.length % 2 === 0) return bytes;
  const padded = new Uint8Array(bytes.length + 1);
  padded.set(bytes);
  padded[bytes.length] = vr === 'UI' ? 0 : 0x20;
  return padded;
}

function header(tagNumber: number, vr: string, length: number): Uint8Array {
  const long = longVRs.has(vr);
  const b = new DataView(new ArrayBuffer(long ? 12 : 8));
  b.setUint16(0, tagNumber >>> 16, true);
  b.setUint16(2, tagNumber & 0xffff, true);
  b.setUint8(4, vr.charCodeAt(0));
  b.setUint8(5, vr.charCodeAt(1));
  if (long) b.setUint32(8, length, true);
  else b.setUint16(6, length, true);
  return new Uint8Array(b.buffer);
}

function delimiter(tagNumber: number): Uint8Array {
  const b = new DataView(new ArrayBuffer(8));
  b.setUint16(0, 0xfffe, true);
  b.setUint16(2, tagNumber, true);
  b.setUint32(4, tagNumber === 0xe000 ? 0xffffffff : 0, true);
  return new Uint8Array(b.buffer);
}

function encode(elements: Element[], out: Uint8Array[]): void {
  for (const el of [...elements].sort((a, b) => a.tag - b.tag)) {
    if ('items' in el) {
      out.push(header(el.tag, 'SQ', 0xffffffff));
      for (const item of el.items) {
        out.push(delimiter(0xe000));
        encode(item, out);
        out.push(delimiter(0xe00d));
      }
      out.push(delimiter(0xe0dd));
    } else {
      const v = valueBytes(el.vr, el.value);
      out.push(header(el.tag, el.vr, v.length), v);
    }
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function part10(SOPClassUID: string, SOPInstanceUID: string, dataset: Element[]): Uint8Array {
  const metaElements: Element[] = [
    { tag: 0x00020001, vr: 'OB', value: Uint8Array.of(0, 1) },
    { tag: 0x00020002, vr: 'UI', value: SOPClassUID },
    { tag: 0x00020003, vr: 'UI', value: SOPInstanceUID },
    { tag: 0x00020010, vr: 'UI', value: '1.2.840.10008.1.2.1' },
    { tag: 0x00020012, vr: 'UI', value: '2.25.329800735698586629295641978511506172918' },
    { tag: 0x00020013, vr: 'SH', value: 'ATRIUM_WEB' },
  ];
  const meta: Uint8Array[] = [];
  encode(metaElements, meta);
  const metaBytes = concat(meta);
  const groupLength = new DataView(new ArrayBuffer(4));
  groupLength.setUint32(0, metaBytes.length, true);
  const body: Uint8Array[] = [];
  encode(dataset, body);
  const preamble = new Uint8Array(132);
  preamble.set(utf8.encode('DICM'), 128);
  return concat([preamble, header(0x00020000, 'UL', 4), new Uint8Array(groupLength.buffer), metaBytes, ...body]);
}

const code = (value: string, scheme: string, meaning: string): Element[] => [
  { tag: 0x00080100, vr: 'SH', value }, { tag: 0x00080102, vr: 'SH', value: scheme }, { tag: 0x00080104, vr: 'LO', value: meaning },
];

function twoDigits(n: number): string {
  return String(n).padStart(2, '0');
}

/** The series the viewer files its key object selections in. */
export const keyImagesSeriesDescription = 'Images clés';

/**
 * The KOS document selecting `image`, with the patient and study of `source` (the image's metadata),
 * in `series` (the study's key images series, when the viewer made one already) or a new one.
 */
export function keyObjectSelection(source: DicomJson, image: KeyImage, series?: { SeriesInstanceUID: string; InstanceNumber: number }, now = new Date()): { file: Uint8Array; SOPInstanceUID: string } {
  const SOPInstanceUID = newUID();
  const copied = (t: string, vr: string): Element[] => {
    const v = source[t]?.Value?.[0];
    const value = v === undefined ? '' : typeof v === 'object' && v !== null && 'Alphabetic' in v ? String((v as { Alphabetic: string }).Alphabetic) : String(v);
    return [{ tag: parseInt(t, 16), vr, value }];
  };
  const date = `${now.getFullYear()}${twoDigits(now.getMonth() + 1)}${twoDigits(now.getDate())}`;
  const time = `${twoDigits(now.getHours())}${twoDigits(now.getMinutes())}${twoDigits(now.getSeconds())}`;
  const reference: Element[] = [
    { tag: 0x00081150, vr: 'UI', value: image.SOPClassUID },
    { tag: 0x00081155, vr: 'UI', value: image.SOPInstanceUID },
    ...(image.frame !== undefined ? [{ tag: 0x00081160, vr: 'IS', value: String(image.frame) }] : []),
  ];
  const dataset: Element[] = [
    { tag: 0x00080005, vr: 'CS', value: 'ISO_IR 192' },
    { tag: 0x00080016, vr: 'UI', value: SOPClass.KeyObjectSelection },
    { tag: 0x00080018, vr: 'UI', value: SOPInstanceUID },
    ...copied(tag.StudyDate, 'DA'), ...copied('00080030', 'TM'),
    { tag: 0x00080023, vr: 'DA', value: date }, { tag: 0x00080033, vr: 'TM', value: time },
    ...copied(tag.AccessionNumber, 'SH'),
    { tag: 0x00080060, vr: 'CS', value: 'KO' },
    ...copied('00080090', 'PN'),
    { tag: 0x0008103e, vr: 'LO', value: keyImagesSeriesDescription },
    { tag: 0x00081111, vr: 'SQ', items: [] },
    ...copied(tag.PatientName, 'PN'), ...copied(tag.PatientID, 'LO'), ...copied(tag.IssuerOfPatientID, 'LO'),
    ...copied(tag.PatientBirthDate, 'DA'), ...copied('00100040', 'CS'),
    ...copied(tag.StudyInstanceUID, 'UI'),
    { tag: 0x0020000e, vr: 'UI', value: series?.SeriesInstanceUID ?? newUID() },
    ...copied('00200010', 'SH'),
    { tag: 0x00200011, vr: 'IS', value: '9100' },
    { tag: 0x00200013, vr: 'IS', value: String(series?.InstanceNumber ?? 1) },
    { tag: 0x0040a040, vr: 'CS', value: 'CONTAINER' },
    { tag: 0x0040a043, vr: 'SQ', items: [code('113000', 'DCM', 'Of Interest')] },
    { tag: 0x0040a050, vr: 'CS', value: 'SEPARATE' },
    { tag: 0x0040a370, vr: 'SQ', items: [] },
    { tag: 0x0040a375, vr: 'SQ', items: [[
      ...copied(tag.StudyInstanceUID, 'UI'),
      { tag: 0x00081115, vr: 'SQ', items: [[
        { tag: 0x0020000e, vr: 'UI', value: image.SeriesInstanceUID },
        { tag: 0x00081199, vr: 'SQ', items: [reference.filter((e) => e.tag !== 0x00081160)] },
      ]] },
    ]] },
    { tag: 0x0040a504, vr: 'SQ', items: [[{ tag: 0x00080105, vr: 'CS', value: 'DCMR' }, { tag: 0x0040db00, vr: 'CS', value: '2010' }]] },
    { tag: 0x0040a730, vr: 'SQ', items: [[
      { tag: 0x00081199, vr: 'SQ', items: [reference] },
      { tag: 0x0040a010, vr: 'CS', value: 'CONTAINS' },
      { tag: 0x0040a040, vr: 'CS', value: 'IMAGE' },
    ]] },
  ];
  return { file: part10(SOPClass.KeyObjectSelection, SOPInstanceUID, dataset), SOPInstanceUID };
}

/** STOW-RS of one object, with the session's CSRF token. */
export async function storeObject(file: Uint8Array): Promise<void> {
  const boundary = `atrium-${crypto.randomUUID()}`;
  const body = new Blob([`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, file as BlobPart, `\r\n--${boundary}--\r\n`]);
  const r = await fetch('/dicom-web/studies', {
    method: 'POST', body, credentials: 'same-origin',
    headers: { ...csrfHeaders(), accept: 'application/dicom+json', 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}` },
  });
  if (r.status !== 200) throw new Error(`STOW-RS: ${r.status} ${await r.text()}`);
}

/** The images the study's KOS documents reference (their series' metadata, already fetched). */
export function keyImagesOf(documents: DicomJson[]): KeyImage[] {
  const found = new Map<string, KeyImage>();
  for (const d of documents) {
    if (str(d, tag.SOPClassUID) !== SOPClass.KeyObjectSelection) continue;
    const seriesOf = new Map<string, string>();
    for (const study of items(d, '0040A375')) {
      for (const series of items(study, '00081115')) {
        for (const sop of items(series, '00081199')) seriesOf.set(str(sop, '00081155') ?? '', str(series, tag.SeriesInstanceUID) ?? '');
      }
    }
    for (const item of items(d, '0040A730')) {
      if (str(item, '0040A040') !== 'IMAGE') continue;
      for (const ref of items(item, '00081199')) {
        const SOPInstanceUID = str(ref, '00081155') ?? '';
        const frame = str(ref, '00081160');
        const key = `${SOPInstanceUID}/${frame ?? ''}`;
        if (!found.has(key)) {
          found.set(key, {
            SeriesInstanceUID: seriesOf.get(SOPInstanceUID) ?? '', SOPInstanceUID, SOPClassUID: str(ref, '00081150') ?? '',
            ...(frame !== undefined ? { frame: Number(frame) } : {}),
          });
        }
      }
    }
  }
  return [...found.values()];
}
