/**
 * De-identification of one DICOM object by PS3.15 Annex E: the Basic Application Level
 * Confidentiality Profile (E.1.1) and the options a research project chose, applied to every
 * attribute of Table E.1-1 (annex-e.ts) at every level of nesting, private attributes removed.
 *
 * What stays consistent across a project comes from the caller (DeidentifyContext): the
 * pseudonym written as Patient's Name and Patient ID, the per-person date offset, and the
 * function that replaces a UID by the same new UID every time.
 *
 * Pixel data is kept as it is (native pixels re-encoded in explicit VR little endian,
 * encapsulated ones as they are). An object flagged Burned In Annotation YES (or without the
 * flag, for the SOP classes that commonly burn text: secondary capture) is cleaned when the
 * project gives a pixel mask for its modality and size (Clean Pixel Data Option: the mask's
 * rectangles blanked in every frame, native pixel data only); otherwise it is refused with
 * code 'burned-in', and left out of an export.
 */
import { Tags, TransferSyntax, isNativeTransferSyntax, tag, type DicomDataset, type DicomElement, type Tag, type VR } from '../dicom/dataset.ts';
import { parsePart10 } from '../dicom/part10-parser.ts';
import { writePart10 } from '../dicom/part10-writer.ts';
import { framesOfFragments } from '../archive/retrieve.ts';
import { profileAttributeOf, resolveAction, type ProfileOption } from './annex-e.ts';

/** The options a project may choose: those Atrium implements. */
export const projectOptions = ['modifiedDates', 'patient', 'device', 'descriptors'] as const satisfies readonly ProfileOption[];
export type ProjectOption = (typeof projectOptions)[number];

export interface DeidentifyContext {
  options: ReadonlySet<ProjectOption>;
  /** The person's pseudonym in the project (Patient's Name and Patient ID). */
  pseudonym: string;
  /** Days added to every date the Modified Dates option keeps (negative: earlier). */
  dateOffsetDays: number;
  /** The project's replacement of a UID: the same new UID for the same UID, always. */
  uid: (original: string) => string;
  /** Identifying words of the source (names, identifiers) that cleaning removes from kept text. */
  identifying: readonly string[];
  /** Clean Pixel Data: where text is burned in, by modality and image size. */
  pixelMasks?: readonly PixelMask[];
}

/** Rectangles to blank (x, y, width, height in pixels from the top left) in images of a modality and size. */
export interface PixelMask {
  modality?: string;
  rows?: number;
  columns?: number;
  rectangles: ReadonlyArray<readonly [number, number, number, number]>;
}

export interface DeidentifiedObject {
  bytes: Buffer;
  SOPClassUID: string;
  SOPInstanceUID: string;
  SeriesInstanceUID: string;
  StudyInstanceUID: string;
  TransferSyntaxUID: string;
  /** Attributes removed, emptied, replaced (counted at every level). */
  counts: { removed: number; emptied: number; replaced: number; cleaned: number; kept: number };
}

export class DeidentifyError extends Error {
  override readonly name = 'DeidentifyError';
  constructor(readonly code: 'burned-in' | 'unsupported' | 'malformed', message: string) {
    super(message);
  }
}

const PatientIdentityRemoved = tag(0x0012, 0x0062);
const DeidentificationMethod = tag(0x0012, 0x0063);
const DeidentificationMethodCodeSequence = tag(0x0012, 0x0064);
const LongitudinalTemporalInformationModified = tag(0x0028, 0x0303);
const BurnedInAnnotation = tag(0x0028, 0x0301);
const CodingSchemeDesignator = tag(0x0008, 0x0102);
const CodeMeaning = tag(0x0008, 0x0104);
const PrivateInformationCreatorUID = tag(0x0002, 0x0100);
const PrivateInformation = tag(0x0002, 0x0102);
const TextValue = tag(0x0040, 0xa160);

/** PS3.16 CID 7050 De-identification Methods: the code of the profile and of each option. */
const methodCodes: Record<'basic' | 'pixels' | ProjectOption, [string, string]> = {
  basic: ['113100', 'Basic Application Confidentiality Profile'],
  pixels: ['113101', 'Clean Pixel Data Option'],
  modifiedDates: ['113107', 'Retain Longitudinal Temporal Information Modified Dates Option'],
  patient: ['113108', 'Retain Patient Characteristics Option'],
  device: ['113109', 'Retain Device Identity Option'],
  descriptors: ['113105', 'Clean Descriptors Option'],
};

/** SOP classes whose pixels carry text as a rule even unflagged: Secondary Capture (PS3.3 A.8). */
const burnedInClasses = new Set(['1.2.840.10008.5.1.4.1.1.7', '1.2.840.10008.5.1.4.1.1.7.1', '1.2.840.10008.5.1.4.1.1.7.2', '1.2.840.10008.5.1.4.1.1.7.3', '1.2.840.10008.5.1.4.1.1.7.4']);

const textVRs: ReadonlySet<VR> = new Set<VR>(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UR', 'UT']);

const ascii = (s: string) => Buffer.from(s, 'latin1');
const textOf = (el: DicomElement) => (el.value ?? Buffer.alloc(0)).toString('latin1').replace(/[\0 ]+$/, '');

/** A dummy value of the VR (action D), or undefined when the VR has none (the value is emptied). */
function dummyOf(vr: VR): string | undefined {
  switch (vr) {
    case 'PN': return 'ANONYMOUS';
    case 'LO': case 'SH': case 'LT': case 'ST': case 'UT': case 'UC': case 'CS': case 'AE': return 'ANONYMIZED';
    case 'DA': return '19000101';
    case 'TM': return '000000';
    case 'DT': return '19000101000000';
    case 'DS': case 'IS': return '0';
    case 'AS': return '000Y';
    default: return undefined;
  }
}

function shiftDate(yyyymmdd: string, days: number): string | undefined {
  const d = yyyymmdd.replaceAll('.', ''); // ACR-NEMA "YYYY.MM.DD"
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(d);
  if (!m) return undefined;
  const t = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  if (Number.isNaN(t)) return undefined;
  const shifted = new Date(t + days * 86_400_000);
  const y = shifted.getUTCFullYear();
  if (y < 1 || y > 9999) return undefined;
  return `${String(y).padStart(4, '0')}${String(shifted.getUTCMonth() + 1).padStart(2, '0')}${String(shifted.getUTCDate()).padStart(2, '0')}`;
}

/** A DA or DT value with its dates moved by the offset; times are kept; an unreadable value is emptied. */
function shiftedDates(el: DicomElement, days: number): string {
  const values = textOf(el).split('\\').map((v) => v.trim());
  return values.map((v) => {
    if (v === '') return '';
    if (el.vr === 'DT') {
      const shifted = shiftDate(v.slice(0, 8), days);
      return shifted === undefined ? '' : shifted + v.slice(8);
    }
    return v.includes('-') ? v.split('-').map((p) => (p === '' ? '' : shiftDate(p, days) ?? '')).join('-') : shiftDate(v, days) ?? '';
  }).join('\\');
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

class Deidentifier {
  readonly counts = { removed: 0, emptied: 0, replaced: 0, cleaned: 0, kept: 0 };
  private readonly options: ReadonlySet<ProfileOption>;
  private readonly words: RegExp | undefined;

  constructor(private readonly ctx: DeidentifyContext) {
    this.options = ctx.options;
    // Identifying words, longest first, as the bytes the object would hold them in (latin1 view of UTF-8 too).
    const words = [...new Set(ctx.identifying.flatMap((w) => [w, Buffer.from(w, 'utf8').toString('latin1')])
      .map((w) => w.trim()).filter((w) => w.length >= 3))].sort((a, b) => b.length - a.length);
    this.words = words.length > 0 ? new RegExp(words.map(escapeRegExp).join('|'), 'gi') : undefined;
  }

  private set(el: DicomElement, value: string): void {
    el.value = ascii(value);
    delete el.bulk;
    delete el.fragments;
    delete el.items;
  }

  private empty(ds: DicomDataset, el: DicomElement): void {
    if (el.vr === 'SQ' || el.items) {
      ds.set(el.tag, { tag: el.tag, vr: 'SQ', items: [] });
    } else {
      ds.set(el.tag, { tag: el.tag, vr: el.vr, value: Buffer.alloc(0) });
    }
    this.counts.emptied++;
  }

  /** Clean (C): a date is shifted, a time kept; text keeps its words but those that identify the person. */
  private clean(ds: DicomDataset, el: DicomElement, dummyContent: boolean): void {
    if (el.vr === 'SQ' || el.items) {
      for (const item of el.items ?? []) this.dataset(item, dummyContent);
      this.counts.cleaned++;
      return;
    }
    if (el.vr === 'DA' || el.vr === 'DT') {
      if (this.options.has('modifiedDates')) this.set(el, shiftedDates(el, this.ctx.dateOffsetDays));
      else this.set(el, '');
      this.counts.cleaned++;
      return;
    }
    if (el.vr === 'TM' || !textVRs.has(el.vr)) {
      this.counts.kept++;
      return;
    }
    const text = (el.value ?? Buffer.alloc(0)).toString('latin1');
    if (this.words && this.words.test(text)) {
      this.words.lastIndex = 0;
      el.value = Buffer.from(text.replace(this.words, 'XXXXXX'), 'latin1');
    }
    if (this.words) this.words.lastIndex = 0;
    this.counts.cleaned++;
    ds.set(el.tag, el);
  }

  private replaceUIDs(el: DicomElement): void {
    const values = textOf(el).split('\\');
    this.set(el, values.map((v) => (v.trim() === '' ? '' : this.ctx.uid(v.trim()))).join('\\'));
    this.counts.replaced++;
  }

  /**
   * De-identifies a dataset in place. `dummyContent`: inside a sequence replaced by a dummy
   * (Content Sequence, D), where Text Value, which Table E.1-1 does not list, holds free text
   * about the patient: it becomes a dummy too (codes, numbers and the tree's shape stay).
   */
  dataset(ds: DicomDataset, dummyContent = false): void {
    for (const el of [...ds.values()]) {
      const t = el.tag;
      if (dummyContent && t === TextValue) {
        this.set(el, 'ANONYMIZED');
        this.counts.replaced++;
        continue;
      }
      if ((t & 0xffff) === 0x0000) { // group lengths: retired, and wrong once values change
        ds.delete(t);
        continue;
      }
      if (t === Tags.PatientName || t === Tags.PatientID) {
        this.set(el, this.ctx.pseudonym);
        this.counts.replaced++;
        continue;
      }
      const attribute = profileAttributeOf(t);
      if (!attribute) {
        if (el.vr === 'PN') { // a person's name the table does not list yet: emptied all the same
          this.empty(ds, el);
          continue;
        }
        for (const item of el.items ?? []) this.dataset(item, dummyContent);
        continue;
      }
      const action = resolveAction(attribute, this.options);
      switch (action) {
        case 'X':
          ds.delete(t);
          this.counts.removed++;
          break;
        case 'Z':
          this.empty(ds, el);
          break;
        case 'K':
          for (const item of el.items ?? []) this.dataset(item, dummyContent);
          this.counts.kept++;
          break;
        case 'C':
          this.clean(ds, el, dummyContent);
          break;
        case 'U':
          if (el.vr === 'SQ' || el.items) for (const item of el.items ?? []) this.dataset(item, dummyContent);
          else if (el.vr === 'UI') this.replaceUIDs(el);
          else this.empty(ds, el);
          break;
        case 'D': {
          if (el.vr === 'SQ' || el.items) { // a sequence's dummy: its items, each de-identified, their free text replaced
            for (const item of el.items ?? []) this.dataset(item, true);
            this.counts.replaced++;
            break;
          }
          if (el.vr === 'UI') {
            this.replaceUIDs(el);
            break;
          }
          const dummy = dummyOf(el.vr);
          if (dummy === undefined) this.empty(ds, el);
          else {
            this.set(el, dummy);
            this.counts.replaced++;
          }
          break;
        }
      }
    }
  }
}

function codeItem(value: string, meaning: string): DicomDataset {
  const item: DicomDataset = new Map();
  item.set(Tags.CodeValue, { tag: Tags.CodeValue, vr: 'SH', value: ascii(value) });
  item.set(CodingSchemeDesignator, { tag: CodingSchemeDesignator, vr: 'SH', value: ascii('DCM') });
  item.set(CodeMeaning, { tag: CodeMeaning, vr: 'LO', value: ascii(meaning) });
  return item;
}

const numberOf = (ds: DicomDataset, t: Tag, littleEndian: boolean): number | undefined => {
  const el = ds.get(t);
  if (!el?.value || el.value.length < 2) return undefined;
  return littleEndian ? el.value.readUInt16LE(0) : el.value.readUInt16BE(0);
};

/**
 * Clean Pixel Data (PS3.15 E.3.1): blanks the rectangles of the mask that fits the image
 * (modality, rows, columns) in every frame and sample. Native pixel data only; without a
 * fitting mask, or compressed, the object is refused ('burned-in').
 */
function cleanPixels(file: Buffer, ds: DicomDataset, transferSyntaxUID: string, masks: readonly PixelMask[]): void {
  const littleEndian = transferSyntaxUID !== TransferSyntax.ExplicitVRBigEndian;
  const rows = numberOf(ds, Tags.Rows, littleEndian);
  const columns = numberOf(ds, Tags.Columns, littleEndian);
  const modalityEl = ds.get(Tags.Modality);
  const modality = modalityEl ? textOf(modalityEl).trim().toUpperCase() : undefined;
  const mask = masks.find((m) => (m.modality === undefined || m.modality.toUpperCase() === modality)
    && (m.rows === undefined || m.rows === rows) && (m.columns === undefined || m.columns === columns));
  if (!mask) throw new DeidentifyError('burned-in', 'the pixels may show identifying text (Burned In Annotation) and the project has no pixel mask for this image: not exported');
  const pixel = ds.get(Tags.PixelData);
  if (!pixel || pixel.fragments || !isNativeTransferSyntax(transferSyntaxUID) || rows === undefined || columns === undefined) {
    throw new DeidentifyError('burned-in', 'burned-in text in compressed (or absent) pixel data cannot be cleaned: not exported');
  }
  const samples = numberOf(ds, Tags.SamplesPerPixel, littleEndian) ?? 1;
  const bitsAllocated = numberOf(ds, Tags.BitsAllocated, littleEndian) ?? 16;
  const planar = numberOf(ds, Tags.PlanarConfiguration, littleEndian) ?? 0;
  const photometric = ds.get(Tags.PhotometricInterpretation);
  if (photometric && /42[02]/.test(textOf(photometric))) throw new DeidentifyError('burned-in', 'subsampled colour pixel data cannot be cleaned: not exported');
  if (bitsAllocated % 8 !== 0) throw new DeidentifyError('burned-in', `pixel data of ${bitsAllocated} bits allocated cannot be cleaned: not exported`);
  const bytes = bitsAllocated / 8;
  const value = Buffer.from(pixel.bulk ? file.subarray(pixel.bulk.offset, pixel.bulk.offset + pixel.bulk.length) : pixel.value ?? Buffer.alloc(0));
  const frameBytes = rows * columns * samples * bytes;
  const frames = Math.floor(value.length / frameBytes);
  for (let f = 0; f < frames; f++) {
    for (const [x, y, w, h] of mask.rectangles) {
      for (let r = Math.max(0, y); r < Math.min(rows, y + h); r++) {
        const c0 = Math.max(0, x), c1 = Math.min(columns, x + w);
        if (c1 <= c0) continue;
        if (samples === 1 || planar === 0) {
          const start = f * frameBytes + (r * columns + c0) * samples * bytes;
          value.fill(0, start, start + (c1 - c0) * samples * bytes);
        } else {
          for (let p = 0; p < samples; p++) {
            const start = f * frameBytes + p * rows * columns * bytes + (r * columns + c0) * bytes;
            value.fill(0, start, start + (c1 - c0) * bytes);
          }
        }
      }
    }
  }
  ds.set(Tags.PixelData, { tag: Tags.PixelData, vr: pixel.vr, value });
}

const uiText = (ds: DicomDataset, t: Tag) => {
  const el = ds.get(t);
  return el ? textOf(el) : '';
};

/** De-identifies one Part 10 object. Throws DeidentifyError for what it cannot de-identify safely. */
export async function deidentifyObject(file: Buffer, ctx: DeidentifyContext): Promise<DeidentifiedObject> {
  let obj;
  try {
    obj = parsePart10(file, { bulkThreshold: Number.MAX_SAFE_INTEGER, maxHeaderBytes: 1024 ** 3 });
  } catch (e) {
    throw new DeidentifyError('malformed', `not a readable DICOM object: ${(e as Error).message}`);
  }
  if (obj.deflated) throw new DeidentifyError('unsupported', 'deflated transfer syntax: not de-identified');
  const ds = obj.dataset;
  const SOPClassUID = uiText(ds, Tags.SOPClassUID);
  const burnedIn = ds.get(BurnedInAnnotation);
  let pixelsCleaned = false;
  if ((burnedIn && textOf(burnedIn).trim().toUpperCase() === 'YES') || (burnedInClasses.has(SOPClassUID) && !(burnedIn && textOf(burnedIn).trim().toUpperCase() === 'NO'))) {
    cleanPixels(file, ds, obj.transferSyntaxUID, ctx.pixelMasks ?? []);
    pixelsCleaned = true;
  }
  const d = new Deidentifier(ctx);
  d.dataset(ds);
  // Patient's Name and Patient ID are the pseudonym, present even where the source left them out.
  ds.set(Tags.PatientName, { tag: Tags.PatientName, vr: 'PN', value: ascii(ctx.pseudonym) });
  ds.set(Tags.PatientID, { tag: Tags.PatientID, vr: 'LO', value: ascii(ctx.pseudonym) });
  // PS3.15 E.1.1: say that it was done, and how (PS3.3 C.7.1.1, CID 7050).
  ds.set(PatientIdentityRemoved, { tag: PatientIdentityRemoved, vr: 'CS', value: ascii('YES') });
  const used = ['basic' as const, ...projectOptions.filter((o) => ctx.options.has(o)), ...(pixelsCleaned ? ['pixels' as const] : [])];
  if (pixelsCleaned) ds.set(BurnedInAnnotation, { tag: BurnedInAnnotation, vr: 'CS', value: ascii('NO') });
  ds.set(DeidentificationMethod, { tag: DeidentificationMethod, vr: 'LO', value: ascii('Atrium PS3.15 E.1.1 Basic Profile') });
  ds.set(DeidentificationMethodCodeSequence, { tag: DeidentificationMethodCodeSequence, vr: 'SQ', items: used.map((o) => codeItem(...methodCodes[o])) });
  ds.set(LongitudinalTemporalInformationModified, {
    tag: LongitudinalTemporalInformationModified, vr: 'CS', value: ascii(ctx.options.has('modifiedDates') ? 'MODIFIED' : 'REMOVED'),
  });

  const SOPInstanceUID = uiText(ds, Tags.SOPInstanceUID);
  // The file meta information: the new instance UID, no trace of who sent it.
  obj.meta.set(Tags.MediaStorageSOPInstanceUID, { tag: Tags.MediaStorageSOPInstanceUID, vr: 'UI', value: ascii(SOPInstanceUID) });
  for (const t of [Tags.SourceApplicationEntityTitle, PrivateInformationCreatorUID, PrivateInformation]) obj.meta.delete(t);

  const readRange = (r: { offset: number; length: number }) => file.subarray(r.offset, r.offset + r.length);
  const pixel = ds.get(Tags.PixelData);
  let transferSyntaxUID: string = TransferSyntax.ExplicitVRLittleEndian;
  let pixelData;
  if (pixel?.fragments) {
    if (isNativeTransferSyntax(obj.transferSyntaxUID)) throw new DeidentifyError('malformed', 'encapsulated pixel data in a native transfer syntax');
    transferSyntaxUID = obj.transferSyntaxUID;
    const nf = ds.get(Tags.NumberOfFrames);
    const frames = framesOfFragments(pixel.fragments, pixel.basicOffsetTable ?? [], Math.max(1, Number(nf ? textOf(nf) : '1') || 1));
    pixelData = {
      encapsulated: true, vr: 'OB' as const,
      frames: (async function* () {
        for (const f of frames) yield Buffer.concat(f.map(readRange));
      })(),
    };
  }
  const chunks: Buffer[] = [];
  for await (const c of writePart10({ obj, readRange }, { transferSyntaxUID, ...(pixelData ? { pixelData } : {}) })) chunks.push(c);
  return {
    bytes: Buffer.concat(chunks),
    SOPClassUID,
    SOPInstanceUID,
    SeriesInstanceUID: uiText(ds, Tags.SeriesInstanceUID),
    StudyInstanceUID: uiText(ds, Tags.StudyInstanceUID),
    TransferSyntaxUID: transferSyntaxUID,
    counts: d.counts,
  };
}
