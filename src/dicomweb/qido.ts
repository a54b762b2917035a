import { Tags, hexToTag, tagToHex, type Tag, type VR } from '../dicom/dataset.ts';
import { keywordOf, tagOfKeyword, vrOf } from '../dicom/dictionary.ts';
import type { DicomJsonDataset, DicomJsonElement } from '../dicom/json.ts';
import { personName } from '../dicom/values.ts';
import type { InstanceRow, PatientAttributes, QueryLevel, SearchQuery, SeriesAttributes, SeriesRow, StudyAttributes, StudyRow } from '../index/records.ts';

/** QIDO-RS query parameters (PS3.18 8.3.4) that are not attribute matches. */
const controlParameters = new Set(['includefield', 'fuzzymatching', 'limit', 'offset']);

export const qidoDefaults = { limit: 1000, maxLimit: 10000 } as const;

export class QidoRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QidoRequestError';
  }
}

export interface ParsedQido {
  query: SearchQuery;
  /** Extra attributes asked for, or 'all'. */
  includeFields: Tag[] | 'all';
  /** Warning header values (RFC 7234 §5.5, code 299) the answer must carry, e.g. a capped limit. */
  warnings: string[];
  /**
   * The most results the answer holds. Without a limit parameter the query asks the index for
   * one more, so that the answer can say when more matched (see resultsCappedWarning).
   */
  maxResults: number;
}

/**
 * PS3.18 8.3.4.4: when more results match than the server returns (a limit above its maximum,
 * or no limit and more matches than it returns without one), the answer holds the maximum and says so.
 */
export const resultsCappedWarning = (max: number): string =>
  `299 atrium "The number of results exceeded the maximum supported by the server (${max}). Additional results can be requested with offset."`;

export const limitCappedWarning = resultsCappedWarning(qidoDefaults.maxLimit);

/** Turns a QIDO-RS query string into a SearchQuery; attribute keys may be keywords or tags. */
export function parseQidoQuery(level: QueryLevel, params: URLSearchParams): ParsedQido {
  const matches: Record<string, string> = {};
  const includeFields: Tag[] = [];
  let includeAll = false;
  let fuzzymatching = false;
  let limit: number | undefined;
  let offset = 0;
  const warnings: string[] = [];
  for (const [key, value] of params) {
    if (controlParameters.has(key)) {
      switch (key) {
        case 'includefield':
          for (const f of value.split(',')) {
            if (f === 'all') includeAll = true;
            else includeFields.push(attributeTag(f));
          }
          break;
        case 'fuzzymatching':
          if (value !== 'true' && value !== 'false') throw new QidoRequestError(`fuzzymatching must be true or false, not ${JSON.stringify(value)}`);
          fuzzymatching = value === 'true';
          break;
        case 'limit':
          limit = wholeNumber(key, value);
          if (limit === 0) throw new QidoRequestError(`limit must be between 1 and ${qidoDefaults.maxLimit}`);
          if (limit > qidoDefaults.maxLimit) {
            limit = qidoDefaults.maxLimit;
            warnings.push(limitCappedWarning);
          }
          break;
        case 'offset':
          offset = wholeNumber(key, value);
          break;
      }
      continue;
    }
    const tag = attributeTag(key);
    const keyword = keywordOf(tag);
    if (keyword === undefined) throw new QidoRequestError(`${key} is not a DICOM attribute Atrium can match on`);
    if (keyword in matches) throw new QidoRequestError(`${keyword} is given twice`);
    matches[keyword] = value;
  }
  const maxResults = limit ?? qidoDefaults.limit;
  return { query: { level, matches, fuzzymatching, limit: limit ?? maxResults + 1, offset }, includeFields: includeAll ? 'all' : includeFields, warnings, maxResults };
}

function attributeTag(key: string): Tag {
  if (/^[0-9A-Fa-f]{8}$/.test(key)) return hexToTag(key);
  if (key.includes('.')) throw new QidoRequestError(`sequence matching (${key}) is not supported`);
  const t = tagOfKeyword(key);
  if (t === undefined) throw new QidoRequestError(`${key} is neither a DICOM keyword nor a tag`);
  return t;
}

function wholeNumber(key: string, value: string): number {
  if (!/^\d{1,9}$/.test(value)) throw new QidoRequestError(`${key} must be a whole number, not ${JSON.stringify(value)}`);
  return Number(value);
}


/** Builds DICOM JSON (PS3.18 F) from decoded index values, skipping absent ones. */
class JsonBuilder {
  readonly out: DicomJsonDataset = {};

  set(t: Tag, vr: VR, value: string | number | string[] | undefined): this {
    const values = value === undefined ? [] : Array.isArray(value) ? value : [value];
    const key = tagToHex(t);
    if (values.length === 0 || (values.length === 1 && values[0] === '')) {
      this.out[key] = { vr };
      return this;
    }
    this.out[key] = { vr, Value: (vr === 'PN' ? values.map((v) => personName(String(v))) : values) as DicomJsonElement['Value'] };
    return this;
  }
}

function patientAndStudy(b: JsonBuilder, patient: PatientAttributes, study: StudyAttributes): void {
  b.set(Tags.SpecificCharacterSet, 'CS', 'ISO_IR 192')
    .set(Tags.StudyDate, 'DA', study.StudyDate)
    .set(Tags.StudyTime, 'TM', study.StudyTime)
    .set(Tags.AccessionNumber, 'SH', study.AccessionNumber)
    .set(Tags.InstitutionName, 'LO', study.InstitutionName)
    .set(Tags.ReferringPhysicianName, 'PN', study.ReferringPhysicianName)
    .set(Tags.StudyDescription, 'LO', study.StudyDescription)
    .set(Tags.PatientName, 'PN', patient.PatientName)
    .set(Tags.PatientID, 'LO', patient.PatientID)
    .set(Tags.IssuerOfPatientID, 'LO', patient.IssuerOfPatientID)
    .set(Tags.PatientBirthDate, 'DA', patient.PatientBirthDate)
    .set(Tags.PatientSex, 'CS', patient.PatientSex)
    .set(Tags.StudyInstanceUID, 'UI', study.StudyInstanceUID)
    .set(Tags.StudyID, 'SH', study.StudyID);
}

function seriesAttributes(b: JsonBuilder, series: SeriesAttributes): void {
  b.set(Tags.Modality, 'CS', series.Modality)
    .set(Tags.SeriesDescription, 'LO', series.SeriesDescription)
    .set(Tags.BodyPartExamined, 'CS', series.BodyPartExamined)
    .set(Tags.SeriesInstanceUID, 'UI', series.SeriesInstanceUID)
    .set(Tags.SeriesNumber, 'IS', series.SeriesNumber)
    .set(Tags.SeriesDate, 'DA', series.SeriesDate)
    .set(Tags.SeriesTime, 'TM', series.SeriesTime)
    .set(Tags.PerformedProcedureStepStartDate, 'DA', series.PerformedProcedureStepStartDate)
    .set(Tags.PerformedProcedureStepStartTime, 'TM', series.PerformedProcedureStepStartTime);
}

const InstanceAvailability = 0x00080056;

export function studyJson(row: StudyRow, baseUrl: string): DicomJsonDataset {
  const b = new JsonBuilder();
  patientAndStudy(b, row.patient, row.study);
  b.set(InstanceAvailability, 'CS', 'ONLINE')
    .set(Tags.ModalitiesInStudy, 'CS', row.ModalitiesInStudy)
    .set(Tags.SOPClassesInStudy, 'UI', row.SOPClassesInStudy)
    .set(Tags.NumberOfStudyRelatedSeries, 'IS', row.NumberOfStudyRelatedSeries)
    .set(Tags.NumberOfStudyRelatedInstances, 'IS', row.NumberOfStudyRelatedInstances)
    .set(Tags.RetrieveURL, 'UR', `${baseUrl}/studies/${row.study.StudyInstanceUID}`);
  return b.out;
}

export function seriesJson(row: SeriesRow, baseUrl: string): DicomJsonDataset {
  const b = new JsonBuilder();
  patientAndStudy(b, row.patient, row.study);
  seriesAttributes(b, row.series);
  b.set(InstanceAvailability, 'CS', 'ONLINE')
    .set(Tags.NumberOfSeriesRelatedInstances, 'IS', row.NumberOfSeriesRelatedInstances)
    .set(Tags.RetrieveURL, 'UR', `${baseUrl}/studies/${row.study.StudyInstanceUID}/series/${row.series.SeriesInstanceUID}`);
  return b.out;
}

export function instanceJson(row: InstanceRow, baseUrl: string): DicomJsonDataset {
  const b = new JsonBuilder();
  patientAndStudy(b, row.patient, row.study);
  seriesAttributes(b, row.series);
  const i = row.instance;
  b.set(InstanceAvailability, 'CS', 'ONLINE')
    .set(Tags.SOPClassUID, 'UI', i.SOPClassUID)
    .set(Tags.SOPInstanceUID, 'UI', i.SOPInstanceUID)
    .set(Tags.InstanceNumber, 'IS', i.InstanceNumber)
    .set(Tags.ContentDate, 'DA', i.ContentDate)
    .set(Tags.ContentTime, 'TM', i.ContentTime)
    .set(Tags.Rows, 'US', i.Rows)
    .set(Tags.Columns, 'US', i.Columns)
    .set(Tags.NumberOfFrames, 'IS', i.NumberOfFrames)
    .set(Tags.RetrieveURL, 'UR', `${baseUrl}/studies/${row.study.StudyInstanceUID}/series/${row.series.SeriesInstanceUID}/instances/${i.SOPInstanceUID}`);
  return b.out;
}

/**
 * Adds the requested attributes that the index does not keep, from a stored
 * instance's metadata (the first of the study or series: attributes of that level
 * are the same in all of its instances).
 */
export function addIncludedFields(target: DicomJsonDataset, metadata: DicomJsonDataset, include: Tag[] | 'all', level: QueryLevel): DicomJsonDataset {
  const wanted = include === 'all' ? Object.keys(metadata).filter((k) => level === 'instance' || isLevelAttribute(k, level)) : include.map(tagToHex);
  for (const key of wanted) {
    if (key in target) continue;
    const el = metadata[key];
    if (el && el.BulkDataURI === undefined && el.InlineBinary === undefined) target[key] = el;
    else if (!el && include !== 'all') target[key] = { vr: vrOf(hexToTag(key)) };
    // Answers are serialized with stringifyDicomJson, which orders the keys.
  }
  return target;
}

/** Patient and study modules' attributes live in groups 0008/0010/0020/0032 at study level; keep 'all' modest. */
function isLevelAttribute(key: string, level: QueryLevel): boolean {
  const group = key.slice(0, 4);
  if (level === 'study') return group === '0010' || key === '00081030' || key === '00080090' || key === '00080080' || key === '00321060';
  return group === '0010' || group === '0018' || group === '0008' || group === '0020';
}
