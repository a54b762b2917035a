/**
 * The DICOMDIR of a media file-set (PS3.10 §8, PS3.3 Annex F): writing one for an
 * export, reading the files one references for an import. Records are encoded in
 * explicit VR little endian with defined lengths, and every offset (PS3.3 F.3.2.1,
 * counted from the first byte of the preamble) is computed from the encoded bytes.
 */
import { tag, tagToHex, type DicomDataset, type DicomElement, type Tag, type VR } from '../dicom/dataset.ts';
import { buildPart10, encodeDataset } from '../dicom/part10-writer.ts';
import { DicomParseError, parsePart10 } from '../dicom/part10-parser.ts';
import { itemContext, numberValue, stringValue, stringValues, valueContextOf, type PersonName } from '../dicom/values.ts';
import type { DicomJsonDataset, DicomJsonElement } from '../dicom/json.ts';
import { TransferSyntax } from '../dicom/dataset.ts';

export const MediaStorageDirectoryStorage = '1.2.840.10008.1.3.10';

/** Directory tags (PS3.6 group 0004). */
export const DirectoryTags = {
  FileSetID: tag(0x0004, 0x1130),
  OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity: tag(0x0004, 0x1200),
  OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity: tag(0x0004, 0x1202),
  FileSetConsistencyFlag: tag(0x0004, 0x1212),
  DirectoryRecordSequence: tag(0x0004, 0x1220),
  OffsetOfTheNextDirectoryRecord: tag(0x0004, 0x1400),
  RecordInUseFlag: tag(0x0004, 0x1410),
  OffsetOfReferencedLowerLevelDirectoryEntity: tag(0x0004, 0x1420),
  DirectoryRecordType: tag(0x0004, 0x1430),
  ReferencedFileID: tag(0x0004, 0x1500),
  ReferencedSOPClassUIDInFile: tag(0x0004, 0x1510),
  ReferencedSOPInstanceUIDInFile: tag(0x0004, 0x1511),
  ReferencedTransferSyntaxUIDInFile: tag(0x0004, 0x1512),
} as const;

const SpecificCharacterSet = tag(0x0008, 0x0005);

export type DirectoryRecordType =
  | 'PATIENT' | 'STUDY' | 'SERIES' | 'IMAGE' | 'SR DOCUMENT' | 'KEY OBJECT DOC' | 'PRESENTATION'
  | 'RT DOSE' | 'RT STRUCTURE SET' | 'RT PLAN' | 'ENCAP DOC' | 'WAVEFORM';

/** A record and the records of its lower-level directory entity. */
export interface DirectoryRecord {
  type: DirectoryRecordType;
  /** The record's keys, values already encoded little endian (see recordKeysOf). */
  keys: DicomDataset;
  /** The object the record references, for instance-level records. */
  file?: { id: string[]; SOPClassUID: string; SOPInstanceUID: string; TransferSyntaxUID: string };
  children: DirectoryRecord[];
}

/** A legal file ID component of the general-purpose profiles (PS3.11 §8.2, PS3.10 §8.5). */
export function isValidFileIDComponent(c: string): boolean {
  return /^[A-Z0-9_]{1,8}$/.test(c);
}

/**
 * Record types by SOP class (PS3.3 F.4 and F.5). Classes not listed are IMAGE records,
 * which is what every image storage class (and segmentation, parametric maps) uses.
 */
export function recordTypeOfSOPClass(SOPClassUID: string): DirectoryRecordType {
  const storage = '1.2.840.10008.5.1.4.1.1.';
  if (!SOPClassUID.startsWith(storage)) return 'IMAGE';
  const rest = SOPClassUID.slice(storage.length);
  if (rest === '88.59') return 'KEY OBJECT DOC';
  if (rest.startsWith('88.')) return 'SR DOCUMENT';
  if (rest.startsWith('11.')) return 'PRESENTATION';
  if (rest === '481.2') return 'RT DOSE';
  if (rest === '481.3') return 'RT STRUCTURE SET';
  if (rest === '481.5' || rest === '481.8') return 'RT PLAN';
  if (rest.startsWith('104.')) return 'ENCAP DOC';
  if (rest.startsWith('9.')) return 'WAVEFORM';
  return 'IMAGE';
}

type KeyType = '1' | '1C' | '2';
interface KeyDefinition { tag: Tag; vr: VR; type: KeyType; keyword: string }
const key = (group: number, element: number, vr: VR, type: KeyType, keyword: string): KeyDefinition => ({ tag: tag(group, element), vr, type, keyword });

const InstanceNumber = key(0x0020, 0x0013, 'IS', '1', 'InstanceNumber');
const ContentDate = key(0x0008, 0x0023, 'DA', '1', 'ContentDate');
const ContentTime = key(0x0008, 0x0033, 'TM', '1', 'ContentTime');
const ConceptNameCodeSequence = key(0x0040, 0xa043, 'SQ', '1', 'ConceptNameCodeSequence');

/** The keys of each record type (PS3.3 F.5), less SpecificCharacterSet, added when a value needs it. */
export const recordKeyDefinitions: Record<DirectoryRecordType, KeyDefinition[]> = {
  PATIENT: [key(0x0010, 0x0010, 'PN', '2', 'PatientName'), key(0x0010, 0x0020, 'LO', '1', 'PatientID')],
  STUDY: [
    key(0x0008, 0x0020, 'DA', '1', 'StudyDate'), key(0x0008, 0x0030, 'TM', '1', 'StudyTime'),
    key(0x0008, 0x0050, 'SH', '2', 'AccessionNumber'), key(0x0008, 0x1030, 'LO', '2', 'StudyDescription'),
    key(0x0020, 0x000d, 'UI', '1', 'StudyInstanceUID'), key(0x0020, 0x0010, 'SH', '1', 'StudyID'),
  ],
  SERIES: [key(0x0008, 0x0060, 'CS', '1', 'Modality'), key(0x0020, 0x000e, 'UI', '1', 'SeriesInstanceUID'), key(0x0020, 0x0011, 'IS', '1', 'SeriesNumber')],
  IMAGE: [InstanceNumber],
  'SR DOCUMENT': [
    InstanceNumber, key(0x0040, 0xa491, 'CS', '1', 'CompletionFlag'), key(0x0040, 0xa493, 'CS', '1', 'VerificationFlag'),
    ContentDate, ContentTime, key(0x0040, 0xa030, 'DT', '1C', 'VerificationDateTime'), ConceptNameCodeSequence,
  ],
  'KEY OBJECT DOC': [InstanceNumber, ContentDate, ContentTime, ConceptNameCodeSequence],
  PRESENTATION: [
    InstanceNumber, key(0x0070, 0x0080, 'CS', '1', 'ContentLabel'), key(0x0070, 0x0081, 'LO', '2', 'ContentDescription'),
    key(0x0070, 0x0082, 'DA', '1', 'PresentationCreationDate'), key(0x0070, 0x0083, 'TM', '1', 'PresentationCreationTime'),
    key(0x0070, 0x0084, 'PN', '2', 'ContentCreatorName'), key(0x0008, 0x1115, 'SQ', '1C', 'ReferencedSeriesSequence'),
  ],
  'RT DOSE': [InstanceNumber, key(0x3004, 0x000a, 'CS', '1', 'DoseSummationType')],
  'RT STRUCTURE SET': [
    InstanceNumber, key(0x3006, 0x0002, 'SH', '1', 'StructureSetLabel'),
    key(0x3006, 0x0008, 'DA', '2', 'StructureSetDate'), key(0x3006, 0x0009, 'TM', '2', 'StructureSetTime'),
  ],
  'RT PLAN': [InstanceNumber, key(0x300a, 0x0002, 'SH', '1', 'RTPlanLabel'), key(0x300a, 0x0006, 'DA', '2', 'RTPlanDate'), key(0x300a, 0x0007, 'TM', '2', 'RTPlanTime')],
  'ENCAP DOC': [
    { ...ContentDate, type: '2' }, { ...ContentTime, type: '2' }, InstanceNumber,
    key(0x0042, 0x0010, 'ST', '2', 'DocumentTitle'), key(0x0040, 0xe001, 'ST', '1C', 'HL7InstanceIdentifier'),
    { ...ConceptNameCodeSequence, type: '2' }, key(0x0042, 0x0012, 'LO', '1', 'MIMETypeOfEncapsulatedDocument'),
  ],
  WAVEFORM: [InstanceNumber, ContentDate, ContentTime],
};

/**
 * The keys of a record from an object's DICOM JSON. `fallbacks` give values for type 1
 * keys the object lacks (by keyword), reported in `invented`; a type 1 key with neither
 * is written empty and reported in `missing`. The JSON holds decoded text, re-encoded here.
 */
export function recordKeysOf(
  type: DirectoryRecordType,
  json: DicomJsonDataset,
  fallbacks: Record<string, string> = {},
): { keys: DicomDataset; missing: string[]; invented: string[] } {
  // Latin-1 (ISO_IR 100) when every character fits, as most of Western Europe's objects are
  // written and older viewers read best; UTF-8 (ISO_IR 192) beyond it.
  let result = keysIn('ascii');
  if (result.maxCodePoint > 0xff) result = keysIn('utf8');
  else if (result.maxCodePoint > 0x7f) result = keysIn('latin1');
  const { keys, missing, invented } = result;
  if (result.maxCodePoint > 0x7f) {
    keys.set(SpecificCharacterSet, { tag: SpecificCharacterSet, vr: 'CS', value: Buffer.from(result.maxCodePoint > 0xff ? 'ISO_IR 192' : 'ISO_IR 100', 'latin1') });
  }
  return { keys, missing, invented };

  function keysIn(encoding: TextEncoding) {
    const keys: DicomDataset = new Map();
    const missing: string[] = [];
    const invented: string[] = [];
    let maxCodePoint = 0;
    for (const def of recordKeyDefinitions[type]) {
      const found = json[tagToHex(def.tag)];
      const el = found && (found.Value?.length ?? 0) > 0 ? elementOfJson(def.tag, found, encoding) : undefined;
      if (el) {
        keys.set(def.tag, el.element);
        maxCodePoint = Math.max(maxCodePoint, el.maxCodePoint);
        continue;
      }
      if (def.type === '1C') continue;
      const fallback = fallbacks[def.keyword];
      if (def.type === '1') (fallback === undefined ? missing : invented).push(def.keyword);
      keys.set(def.tag, def.vr === 'SQ' ? { tag: def.tag, vr: 'SQ', items: [] } : { tag: def.tag, vr: def.vr, value: Buffer.from(fallback ?? '', 'latin1') });
    }
    return { keys, missing, invented, maxCodePoint };
  }
}

type TextEncoding = 'ascii' | 'latin1' | 'utf8';

const textVRs: ReadonlySet<VR> = new Set<VR>(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UR', 'UT']);

function maxCodePointOf(s: string): number {
  let max = 0;
  for (const c of s) max = Math.max(max, c.codePointAt(0)!);
  return max;
}

/** A DICOM JSON element back to little-endian bytes; undefined for bulk and binary values. */
function elementOfJson(t: Tag, el: DicomJsonElement, encoding: TextEncoding): { element: DicomElement; maxCodePoint: number } | undefined {
  const values = el.Value ?? [];
  if (el.vr === 'SQ') {
    let maxCodePoint = 0;
    const items = values.map((item) => {
      const ds: DicomDataset = new Map();
      for (const [hex, child] of Object.entries(item as DicomJsonDataset)) {
        const childTag = parseInt(hex, 16) >>> 0;
        if (childTag === SpecificCharacterSet) continue; // the record's own applies
        const converted = elementOfJson(childTag, child, encoding);
        if (!converted) continue;
        ds.set(childTag, converted.element);
        maxCodePoint = Math.max(maxCodePoint, converted.maxCodePoint);
      }
      return ds;
    });
    return { element: { tag: t, vr: 'SQ', items }, maxCodePoint };
  }
  if (textVRs.has(el.vr)) {
    const text = values.map((v) => (v === null ? '' : el.vr === 'PN' ? personNameString(v as PersonName) : String(v))).join('\\');
    return { element: { tag: t, vr: el.vr, value: Buffer.from(text, encoding === 'utf8' ? 'utf8' : 'latin1') }, maxCodePoint: maxCodePointOf(text) };
  }
  const numbers = values.map((v) => Number(v));
  const sizes: Partial<Record<VR, number>> = { US: 2, SS: 2, UL: 4, SL: 4, FL: 4, FD: 8 };
  const size = sizes[el.vr];
  if (size !== undefined) {
    const b = Buffer.alloc(size * numbers.length);
    numbers.forEach((n, i) => {
      const at = i * size;
      if (el.vr === 'US') b.writeUInt16LE(n, at);
      else if (el.vr === 'SS') b.writeInt16LE(n, at);
      else if (el.vr === 'UL') b.writeUInt32LE(n, at);
      else if (el.vr === 'SL') b.writeInt32LE(n, at);
      else if (el.vr === 'FL') b.writeFloatLE(n, at);
      else b.writeDoubleLE(n, at);
    });
    return { element: { tag: t, vr: el.vr, value: b }, maxCodePoint: 0 };
  }
  if (el.vr === 'AT') {
    const b = Buffer.alloc(4 * values.length);
    values.forEach((v, i) => {
      const at = parseInt(String(v), 16) >>> 0;
      b.writeUInt16LE(at >>> 16, i * 4);
      b.writeUInt16LE(at & 0xffff, i * 4 + 2);
    });
    return { element: { tag: t, vr: 'AT', value: b }, maxCodePoint: 0 };
  }
  return undefined;
}

function personNameString(pn: PersonName): string {
  const groups = [pn.Alphabetic ?? '', pn.Ideographic ?? '', pn.Phonetic ?? ''];
  while (groups.length > 1 && groups[groups.length - 1] === '') groups.pop();
  return groups.join('=');
}

// Positions inside an encoded record item: the three offset/flag elements come first
// (their tags are the lowest a record holds), each with an 8-byte explicit VR header.
const ITEM_HEADER = 8;
const NEXT_VALUE = ITEM_HEADER + 8;
const LOWER_VALUE = ITEM_HEADER + 12 + 10 + 8;

function ul(t: Tag, n: number): DicomElement {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return { tag: t, vr: 'UL', value: b };
}
function us(t: Tag, n: number): DicomElement {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return { tag: t, vr: 'US', value: b };
}
function text(t: Tag, vr: VR, s: string): DicomElement {
  return { tag: t, vr, value: Buffer.from(s, 'latin1') };
}

/**
 * The DICOMDIR file of a file-set whose root directory entity holds `roots` (PATIENT
 * records). Records are laid out depth first, as readers expect, each item with its length.
 */
export function encodeDicomdir(options: { roots: DirectoryRecord[]; SOPInstanceUID: string; fileSetID?: string }): Buffer {
  const T = DirectoryTags;
  const flat: Array<{ record: DirectoryRecord; bytes: Buffer; offset: number; next?: DirectoryRecord; firstChild?: DirectoryRecord }> = [];
  const indexOf = new Map<DirectoryRecord, number>();
  const visit = (records: DirectoryRecord[]) => {
    records.forEach((record, i) => {
      const ds: DicomDataset = new Map(record.keys);
      ds.set(T.OffsetOfTheNextDirectoryRecord, ul(T.OffsetOfTheNextDirectoryRecord, 0));
      ds.set(T.RecordInUseFlag, us(T.RecordInUseFlag, 0xffff));
      ds.set(T.OffsetOfReferencedLowerLevelDirectoryEntity, ul(T.OffsetOfReferencedLowerLevelDirectoryEntity, 0));
      ds.set(T.DirectoryRecordType, text(T.DirectoryRecordType, 'CS', record.type));
      if (record.file) {
        for (const c of record.file.id) if (!isValidFileIDComponent(c)) throw new RangeError(`not a legal file ID component: ${JSON.stringify(c)}`);
        if (record.file.id.length === 0 || record.file.id.length > 8) throw new RangeError('a file ID has 1 to 8 components');
        ds.set(T.ReferencedFileID, text(T.ReferencedFileID, 'CS', record.file.id.join('\\')));
        ds.set(T.ReferencedSOPClassUIDInFile, text(T.ReferencedSOPClassUIDInFile, 'UI', record.file.SOPClassUID));
        ds.set(T.ReferencedSOPInstanceUIDInFile, text(T.ReferencedSOPInstanceUIDInFile, 'UI', record.file.SOPInstanceUID));
        ds.set(T.ReferencedTransferSyntaxUIDInFile, text(T.ReferencedTransferSyntaxUIDInFile, 'UI', record.file.TransferSyntaxUID));
      }
      const content = encodeDataset(ds, true, true);
      const header = Buffer.alloc(ITEM_HEADER);
      header.writeUInt16LE(0xfffe, 0);
      header.writeUInt16LE(0xe000, 2);
      header.writeUInt32LE(content.length, 4);
      indexOf.set(record, flat.length);
      flat.push({ record, bytes: Buffer.concat([header, content]), offset: 0, next: records[i + 1], firstChild: record.children[0] });
      visit(record.children);
    });
  };
  visit(options.roots);

  const head = (first: number, last: number, sequenceLength: number): Buffer => {
    const ds: DicomDataset = new Map();
    ds.set(T.FileSetID, text(T.FileSetID, 'CS', options.fileSetID ?? ''));
    ds.set(T.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity, ul(T.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity, first));
    ds.set(T.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity, ul(T.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity, last));
    ds.set(T.FileSetConsistencyFlag, us(T.FileSetConsistencyFlag, 0));
    const sequenceHeader = Buffer.alloc(12);
    sequenceHeader.writeUInt16LE(0x0004, 0);
    sequenceHeader.writeUInt16LE(0x1220, 2);
    sequenceHeader.write('SQ', 4, 'latin1');
    sequenceHeader.writeUInt32LE(sequenceLength, 8);
    return buildPart10(
      { MediaStorageSOPClassUID: MediaStorageDirectoryStorage, MediaStorageSOPInstanceUID: options.SOPInstanceUID, TransferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian },
      Buffer.concat([encodeDataset(ds, true, true), sequenceHeader]),
    );
  };
  // The head's length does not depend on the offsets it holds (fixed-size UL values).
  const sequenceLength = flat.reduce((n, f) => n + f.bytes.length, 0);
  let position = head(0, 0, sequenceLength).length;
  for (const f of flat) {
    f.offset = position;
    position += f.bytes.length;
  }
  const offsetOf = (r: DirectoryRecord | undefined) => (r === undefined ? 0 : flat[indexOf.get(r)!]!.offset);
  for (const f of flat) {
    if (f.bytes.readUInt16LE(ITEM_HEADER) !== 0x0004 || f.bytes.readUInt16LE(ITEM_HEADER + 2) !== 0x1400 || f.bytes.readUInt16LE(LOWER_VALUE - 6) !== 0x1420) {
      throw new Error('encodeDicomdir: a record does not start with its offset elements');
    }
    f.bytes.writeUInt32LE(offsetOf(f.next), NEXT_VALUE);
    f.bytes.writeUInt32LE(offsetOf(f.firstChild), LOWER_VALUE);
  }
  const roots = options.roots;
  return Buffer.concat([head(offsetOf(roots[0]), offsetOf(roots[roots.length - 1]), sequenceLength), ...flat.map((f) => f.bytes)]);
}

export class DicomdirError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DicomdirError';
  }
}

export interface ReferencedFile {
  /** File ID components as recorded (PS3.10 §8.5), e.g. ["DICOM", "IMG0001"]. */
  id: string[];
  recordType: string;
  SOPInstanceUID?: string;
}

/**
 * The files a DICOMDIR references, in record order, records not in use left out.
 * Every record of the sequence is read, whether or not the offsets link it: the files
 * are what an import wants, and media written by careless software have broken links.
 */
export function filesOfDicomdir(bytes: Buffer): ReferencedFile[] {
  let parsed;
  try {
    parsed = parsePart10(bytes);
  } catch (e) {
    if (e instanceof DicomParseError) throw new DicomdirError(`not a readable DICOMDIR: ${e.message}`);
    throw e;
  }
  const metaCtx = valueContextOf(new Map(), true);
  const sopClass = stringValue(parsed.meta, tag(0x0002, 0x0002), metaCtx);
  if (sopClass !== MediaStorageDirectoryStorage) throw new DicomdirError(`not a DICOMDIR: its SOP class is ${sopClass ?? 'missing'}`);
  const ctx = valueContextOf(parsed.dataset, parsed.littleEndian);
  const sequence = parsed.dataset.get(DirectoryTags.DirectoryRecordSequence);
  const files: ReferencedFile[] = [];
  for (const item of sequence?.items ?? []) {
    const c = itemContext(item, ctx);
    if (numberValue(item, DirectoryTags.RecordInUseFlag, c) === 0) continue;
    const el = item.get(DirectoryTags.ReferencedFileID);
    if (!el) continue;
    const id = stringValues(el, c).map((s) => s.trim()).filter((s) => s !== '');
    if (id.length === 0) continue;
    files.push({
      id,
      recordType: stringValue(item, DirectoryTags.DirectoryRecordType, c) ?? '',
      SOPInstanceUID: stringValue(item, DirectoryTags.ReferencedSOPInstanceUIDInFile, c),
    });
  }
  return files;
}
