/**
 * Query/retrieve identifiers (PS3.4 C.4): read the keys of a C-FIND/C-MOVE/C-GET
 * request, and write the matches back with the keys that were asked for.
 */
import { Tags, TransferSyntax, type DicomDataset, type DicomElement, type Tag, type VR } from '../dicom/dataset.ts';
import { keywordOf, vrOf } from '../dicom/dictionary.ts';
import type { DicomJsonDataset, DicomJsonElement } from '../dicom/json.ts';
import { parsePart10 } from '../dicom/part10-parser.ts';
import { buildPart10, encodeDataset } from '../dicom/part10-writer.ts';
import { stringValues, valueContextOf, type PersonName, type ValueContext } from '../dicom/values.ts';

export const QueryRetrieveLevel: Tag = 0x00080052;
export const RetrieveAETitle: Tag = 0x00080054;
export const FailedSOPInstanceUIDList: Tag = 0x00080058;

export type QRLevel = 'PATIENT' | 'STUDY' | 'SERIES' | 'IMAGE';

export class IdentifierError extends Error {
  override readonly name = 'IdentifierError';
}

export interface Identifier {
  dataset: DicomDataset;
  ctx: ValueContext;
  level: QRLevel;
  /** Matching values by keyword, as sent ("" for a return key). Sequences are return keys only. */
  keys: Record<string, string>;
  /** Every top-level tag asked for, in order, with its VR. */
  requested: Array<{ tag: Tag; vr: VR }>;
}

/** A small dataset received in a DIMSE message (identifier, N-ACTION argument), parsed whole. */
export function readDataset(bytes: Buffer, transferSyntaxUID: string): DicomDataset {
  try {
    // The Part 10 reader is the one that knows every VR rule: give it a meta header.
    return parsePart10(buildPart10({ MediaStorageSOPClassUID: '1.2', MediaStorageSOPInstanceUID: '1.2', TransferSyntaxUID: transferSyntaxUID }, bytes), { maxHeaderBytes: 1024 * 1024 }).dataset;
  } catch (e) {
    throw new IdentifierError(`the dataset does not parse: ${(e as Error).message}`);
  }
}

/** Reads an identifier received in `transferSyntaxUID` (implicit or explicit little endian). */
export function readIdentifier(bytes: Buffer, transferSyntaxUID: string): Identifier {
  const dataset = readDataset(bytes, transferSyntaxUID);
  const ctx = valueContextOf(dataset, true);
  const levelEl = dataset.get(QueryRetrieveLevel);
  const level = levelEl ? stringValues({ ...levelEl, vr: 'CS' }, ctx)[0] : undefined;
  if (level !== 'PATIENT' && level !== 'STUDY' && level !== 'SERIES' && level !== 'IMAGE') {
    throw new IdentifierError(level === undefined ? 'the identifier has no QueryRetrieveLevel (0008,0052)' : `QueryRetrieveLevel ${level} is not PATIENT, STUDY, SERIES or IMAGE`);
  }
  const keys: Record<string, string> = {};
  const requested: Identifier['requested'] = [];
  for (const el of dataset.values()) {
    if (el.tag === QueryRetrieveLevel || el.tag === Tags.SpecificCharacterSet || (el.tag >>> 16) <= 0x0002) continue;
    const vr = el.vr === 'UN' ? vrOf(el.tag) : el.vr;
    requested.push({ tag: el.tag, vr });
    const keyword = keywordOf(el.tag);
    if (!keyword) continue;
    if (vr === 'SQ') {
      keys[keyword] = '';
      continue;
    }
    keys[keyword] = stringValues({ ...el, vr }, ctx).join('\\');
  }
  return { dataset, ctx, level, keys, requested };
}

/** The UIDs a retrieve names at its level (a list is allowed at the level retrieved, PS3.4 C.4.2.2.1). */
export function uidList(id: Identifier, keyword: 'PatientID' | 'StudyInstanceUID' | 'SeriesInstanceUID' | 'SOPInstanceUID'): string[] {
  const v = id.keys[keyword];
  if (v === undefined || v === '') return [];
  return v.split('\\').map((s) => s.trim()).filter((s) => s !== '');
}

type TextEncoding = 'latin1' | 'utf8';

function encodeText(values: string[], vr: VR, encoding: TextEncoding = 'utf8'): Buffer {
  const text = values.join('\\');
  return Buffer.from(text, vr === 'UI' || vr === 'AE' ? 'latin1' : encoding);
}

function personNameText(v: PersonName | string | null | undefined): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  const groups = [v.Alphabetic ?? '', v.Ideographic ?? '', v.Phonetic ?? ''];
  while (groups.length > 1 && groups[groups.length - 1] === '') groups.pop();
  return groups.join('=');
}

/** One JSON element's value as the raw bytes of `vr` (little endian). */
function rawValue(el: DicomJsonElement | undefined, vr: VR, encoding: TextEncoding): Buffer {
  const values = el?.Value ?? [];
  if (values.length === 0) return Buffer.alloc(0);
  switch (vr) {
    case 'PN':
      return encodeText(values.map((v) => personNameText(v as PersonName | string | null)), vr, encoding);
    case 'US': case 'SS': case 'UL': case 'SL': case 'FL': case 'FD': {
      const size = vr === 'US' || vr === 'SS' ? 2 : vr === 'FD' ? 8 : 4;
      const b = Buffer.alloc(size * values.length);
      values.forEach((v, i) => {
        const n = Number(v);
        if (vr === 'US') b.writeUInt16LE(n & 0xffff, i * 2);
        else if (vr === 'SS') b.writeInt16LE(n, i * 2);
        else if (vr === 'UL') b.writeUInt32LE(n >>> 0, i * 4);
        else if (vr === 'SL') b.writeInt32LE(n | 0, i * 4);
        else if (vr === 'FL') b.writeFloatLE(n, i * 4);
        else b.writeDoubleLE(n, i * 8);
      });
      return b;
    }
    default:
      if (values.some((v) => typeof v === 'object' && v !== null)) return Buffer.alloc(0);
      return encodeText(values.map((v) => (v === null ? '' : String(v))), vr, encoding);
  }
}

/**
 * A match: every requested key, valued from `json` when Atrium knows it, empty
 * otherwise (PS3.4 C.4.1.1.3.2), plus the level, the character set and where to retrieve it.
 * Values come from the index as Unicode: plain ASCII needs no character set; Latin-1 text
 * is sent as ISO_IR 100, which every client in France reads; anything else as ISO_IR 192.
 */
export function writeMatch(id: Identifier, level: QRLevel, json: DicomJsonDataset, retrieveAETitle: string, transferSyntaxUID: string): Buffer {
  const texts = id.requested.map(({ tag }) => JSON.stringify(json[tag.toString(16).toUpperCase().padStart(8, '0')]?.Value ?? []));
  // eslint-disable-next-line no-control-regex
  const needs = texts.some((t) => /[^\u0000-\u00ff]/.test(t)) ? 'ISO_IR 192' : texts.some((t) => /[^\u0000-\u007f]/.test(t)) ? 'ISO_IR 100' : undefined;
  const encoding: TextEncoding = needs === 'ISO_IR 192' ? 'utf8' : 'latin1';
  const ds: DicomDataset = new Map();
  const put = (tag: Tag, vr: VR, value: Buffer) => ds.set(tag, { tag, vr, value } satisfies DicomElement);
  for (const { tag, vr } of id.requested) {
    if (vr === 'SQ') {
      ds.set(tag, { tag, vr: 'SQ', items: [] });
      continue;
    }
    put(tag, vr, rawValue(json[tag.toString(16).toUpperCase().padStart(8, '0')], vr, encoding));
  }
  put(QueryRetrieveLevel, 'CS', Buffer.from(level, 'latin1'));
  put(RetrieveAETitle, 'AE', Buffer.from(retrieveAETitle, 'latin1'));
  if (needs) put(Tags.SpecificCharacterSet, 'CS', Buffer.from(needs, 'latin1'));
  return encodeDataset(ds, true, transferSyntaxUID !== TransferSyntax.ImplicitVRLittleEndian);
}

/** A small dataset of UIDs and strings, e.g. the final C-MOVE response's failed-instance list. */
export function writeDataset(elements: Array<{ tag: Tag; vr: VR; values: string[] }>, transferSyntaxUID: string): Buffer {
  const ds: DicomDataset = new Map();
  for (const e of elements) ds.set(e.tag, { tag: e.tag, vr: e.vr, value: encodeText(e.values, e.vr) });
  return encodeDataset(ds, true, transferSyntaxUID !== TransferSyntax.ImplicitVRLittleEndian);
}
