/**
 * The PS3.6 data dictionary, as far as Atrium needs it: the VR of a tag (to read
 * implicit VR datasets) and the keyword of a tag (to speak DICOM JSON and QIDO).
 * Built once from dcmjs's dictionary at its first use, not at module load: loading dcmjs
 * and indexing its dictionary cost about 90 ms of CPU that `atrium serve` does not need
 * before its first answer.
 */
import { createRequire } from 'node:module';
import type { Tag, VR } from './dataset.ts';

interface DcmjsDictionaryEntry {
  tag: string; // "(GGGG,EEEE)"
  vr: string;
  name: string;
  vm: string;
}

// dcmjs ships no type declarations; require() lets us type the one object we read.
const require = createRequire(import.meta.url);

const validVRs: ReadonlySet<string> = new Set<VR>([
  'AE', 'AS', 'AT', 'CS', 'DA', 'DS', 'DT', 'FL', 'FD', 'IS', 'LO', 'LT',
  'OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'PN', 'SH', 'SL', 'SQ', 'SS', 'ST',
  'SV', 'TM', 'UC', 'UI', 'UL', 'UN', 'UR', 'US', 'UT', 'UV',
]);

export function isVR(s: string): s is VR {
  return validVRs.has(s);
}

/**
 * dcmjs writes multi-VR entries as lower-case codes. In implicit VR the value's
 * VR must be chosen without context; these are the choices DCMTK makes:
 * "OB or OW" data is OW (PS3.5 A.1: implicit VR pixel data is OW), "US or SS" is
 * US (the parser refines it with PixelRepresentation), "US or OW" LUT data is OW
 * (its length may exceed the 2-byte length of US), DICOMDIR offsets are UL.
 */
const multiVRChoice: Record<string, VR> = { ox: 'OW', xs: 'US', lt: 'OW', up: 'UL', na: 'UN' };

interface Dictionary {
  /** Tags whose VR is "US or SS": the reader picks SS when PixelRepresentation is 1. */
  usOrSs: Set<Tag>;
  vrByTag: Map<Tag, VR>;
  keywordByTag: Map<Tag, string>;
  tagByKeyword: Map<string, Tag>;
}

let built: Dictionary | undefined;

function dictionary(): Dictionary {
  return (built ??= build());
}

function build(): Dictionary {
  const dcmjs = require('dcmjs') as { data: { DicomMetaDictionary: { nameMap: Record<string, DcmjsDictionaryEntry> } } };
  const d: Dictionary = { usOrSs: new Set(), vrByTag: new Map(), keywordByTag: new Map(), tagByKeyword: new Map() };
  for (const entry of Object.values(dcmjs.data.DicomMetaDictionary.nameMap)) {
    const m = /^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$/.exec(entry.tag);
    if (!m) continue;
    const t = ((parseInt(m[1]!, 16) << 16) | parseInt(m[2]!, 16)) >>> 0;
    const vr = isVR(entry.vr) ? entry.vr : multiVRChoice[entry.vr] ?? 'UN';
    if (entry.vr === 'xs') d.usOrSs.add(t);
    d.vrByTag.set(t, vr);
    // PS3.6 keywords of retired attributes carry no prefix; dcmjs adds one.
    const retired = entry.name.startsWith('RETIRED_');
    const keyword = retired ? entry.name.slice('RETIRED_'.length) : entry.name;
    d.keywordByTag.set(t, keyword);
    if (!retired || !d.tagByKeyword.has(keyword)) d.tagByKeyword.set(keyword, t);
  }
  return d;
}

/** The tag under which a repeating-group attribute is listed in PS3.6, e.g. (6002,0010) → (6000,0010). */
function dictionaryTagOf(t: Tag): Tag {
  const group = t >>> 16;
  if ((group & 0xff00) === 0x5000 || (group & 0xff00) === 0x6000) {
    if ((group & 1) === 0) return (((group & 0xff00) << 16) | (t & 0xffff)) >>> 0;
  } else if ((group & 0xff00) === 0x7f00 && group !== 0x7fe0 && (group & 1) === 0) {
    return ((0x7f00 << 16) | (t & 0xffff)) >>> 0;
  }
  return t;
}

function isPrivateGroup(group: number): boolean {
  return (group & 1) === 1;
}

/** The VR to read an element with in implicit VR (PS3.5 §7.1.3). Never throws. */
export function vrOf(t: Tag): VR {
  const group = t >>> 16;
  const element = t & 0xffff;
  if (element === 0x0000) return 'UL'; // group length
  if (isPrivateGroup(group)) {
    return element >= 0x0010 && element <= 0x00ff ? 'LO' : 'UN'; // private creator or private data
  }
  const { vrByTag } = dictionary();
  return vrByTag.get(t) ?? vrByTag.get(dictionaryTagOf(t)) ?? 'UN';
}

/** Whether PS3.6 lists this tag as "US or SS" (its VR follows PixelRepresentation). */
export function isUSorSS(t: Tag): boolean {
  return dictionary().usOrSs.has(t);
}

/** The PS3.6 keyword of a tag, e.g. "PatientName"; undefined for private and unknown tags. */
export function keywordOf(t: Tag): string | undefined {
  const group = t >>> 16;
  if (isPrivateGroup(group)) return undefined;
  const { keywordByTag } = dictionary();
  return keywordByTag.get(t) ?? keywordByTag.get(dictionaryTagOf(t));
}

/** The tag of a PS3.6 keyword; repeating groups answer their first group (e.g. OverlayRows → (6000,0010)). */
export function tagOfKeyword(keyword: string): Tag | undefined {
  return dictionary().tagByKeyword.get(keyword);
}
