/**
 * Serving an object whose patient changed after it was stored (a merge, an identifier
 * change, a study moved to the right patient): the stored file stays as received, and the
 * copy that goes out carries the patient module the index holds now (PS3.4 C.4.2.1.4.2
 * allows an SCP to coerce attributes). The dataset before the pixel data is re-encoded
 * in the object's own transfer syntax; the pixel data and what follows go out as stored.
 */
import { Tags, type DicomDataset, type DicomElement, type Tag, type VR } from '../dicom/dataset.ts';
import { parsePart10 } from '../dicom/part10-parser.ts';
import { encodeDataset } from '../dicom/part10-writer.ts';
import { stringifyDicomJson, type DicomJsonDataset } from '../dicom/json.ts';
import type { PatientAttributes } from '../index/records.ts';

/** How the stored metadata JSON reads when its PatientID is already the index's. */
export function patientIDMarker(p: PatientAttributes): string {
  return `"00100020":{"vr":"LO","Value":[${JSON.stringify(p.PatientID)}]}`;
}

export function storedPatientDiffers(metadataJson: string, p: PatientAttributes): boolean {
  // An object without a PatientID is indexed under an empty one: nothing to correct.
  return p.PatientID !== '' && !metadataJson.includes(patientIDMarker(p));
}

/** The stored DICOM JSON of an instance with its patient module replaced (WADO-RS metadata). */
export function coercePatientJson(json: string, p: PatientAttributes): string {
  const ds = JSON.parse(json) as DicomJsonDataset;
  const set = (tag: string, vr: VR, value: string | { Alphabetic: string } | undefined) => {
    if (value === undefined || value === '') delete ds[tag];
    else ds[tag] = { vr, Value: [value] };
  };
  set('00100020', 'LO', p.PatientID);
  set('00100021', 'LO', p.IssuerOfPatientID);
  set('00100010', 'PN', p.PatientName === undefined ? undefined : { Alphabetic: p.PatientName });
  set('00100030', 'DA', p.PatientBirthDate);
  set('00100040', 'CS', p.PatientSex);
  return stringifyDicomJson(ds);
}

const isGroupLength = (t: Tag) => (t & 0xffff) === 0;

/**
 * The object with its patient module replaced (and `extra` elements set, which must come before
 * the pixel data), or undefined when it cannot be done
 * faithfully (deflated dataset; a name the object's character set cannot write).
 */
export function coercePatientModule(object: Buffer, p: PatientAttributes, extra: readonly DicomElement[] = []): Buffer | undefined {
  const parsed = parsePart10(object, { bulkThreshold: Number.MAX_SAFE_INTEGER });
  if (parsed.deflated) return undefined;
  // Everything from the first value not held in memory (the pixel data) goes out as stored.
  let cut = object.length;
  let tailFrom = Infinity;
  for (const el of parsed.dataset.values()) {
    if (el.headerOffset !== undefined && el.headerOffset < cut) {
      cut = el.headerOffset;
      tailFrom = el.tag;
    }
  }
  const head: DicomDataset = new Map();
  for (const el of parsed.dataset.values()) {
    if (el.tag >= tailFrom || isGroupLength(el.tag)) continue;
    head.set(el.tag, el);
  }
  if (!setPatientModule(head, p)) return undefined;
  // Elements of the patient module given besides (an import's INS in Other Patient IDs).
  for (const el of extra) if (el.tag < tailFrom) head.set(el.tag, el);
  return Buffer.concat([
    object.subarray(0, parsed.datasetOffset),
    encodeDataset(head, parsed.littleEndian, parsed.explicitVR),
    object.subarray(cut),
  ]);
}

/**
 * Puts the patient module of `p` into a dataset, in the dataset's own character set.
 * False, and the dataset untouched, when that character set cannot write p's texts.
 */
export function setPatientModule(dataset: DicomDataset, p: PatientAttributes): boolean {
  const charset = dataset.get(Tags.SpecificCharacterSet)?.value?.toString('latin1').replace(/[\0 ]+$/, '') ?? '';
  const utf8 = charset === 'ISO_IR 192';
  const latin1 = charset === '' || charset === 'ISO_IR 100';
  const texts = [p.PatientName ?? '', p.PatientID, p.IssuerOfPatientID];
  // eslint-disable-next-line no-control-regex
  if (!utf8 && texts.some((t) => (latin1 ? /[^\u0000-\u00ff]/ : /[^\u0000-\u007f]/).test(t))) return false;
  const put = (tag: Tag, vr: VR, value: string | undefined) => {
    if (value === undefined || value === '') {
      dataset.delete(tag);
      return;
    }
    dataset.set(tag, { tag, vr, value: Buffer.from(value, utf8 ? 'utf8' : 'latin1') } satisfies DicomElement);
  };
  put(Tags.PatientName, 'PN', p.PatientName);
  put(Tags.PatientID, 'LO', p.PatientID);
  put(Tags.IssuerOfPatientID, 'LO', p.IssuerOfPatientID);
  put(Tags.PatientBirthDate, 'DA', p.PatientBirthDate);
  put(Tags.PatientSex, 'CS', p.PatientSex);
  return true;
}
