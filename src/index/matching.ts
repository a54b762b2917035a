import { Tags, tagToHex } from '../dicom/dataset.ts';
import { foldPersonName } from '../dicom/person-name.ts';
import type { QueryLevel } from './records.ts';
import type { SqlDatabase } from './sql.ts';

/**
 * C-FIND / QIDO-RS attribute matching (PS3.4 C.2.2.2, PS3.18 8.3.4) translated to SQL
 * conditions over the index tables, aliased p (patients), s (studies), se (series),
 * i (instances).
 */

/** A search the index cannot answer as asked (unknown keyword, malformed value): a client error. */
export class QueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QueryError';
  }
}

type Kind = 'text' | 'pn' | 'uid' | 'date' | 'time' | 'number' | 'code-list' | 'modalities-in-study' | 'person-ins';
type FieldLevel = 'patient' | 'study' | 'series' | 'instance';

interface Field {
  level: FieldLevel;
  column: string;
  kind: Kind;
  /** For a PN: a subquery giving the ids (of `column`'s table) having a name word in [?, ?). */
  words?: { id: string; subquery: string };
}

const fields: Record<string, Field> = {
  PatientID: { level: 'patient', column: 'p.patient_id', kind: 'text' },
  IssuerOfPatientID: { level: 'patient', column: 'p.issuer', kind: 'text' },
  PatientName: {
    level: 'patient',
    column: 'p.patient_name_folded',
    kind: 'pn',
    words: { id: 'p.id', subquery: 'SELECT w.patient_id FROM patient_name_words w WHERE w.word >= ? AND w.word < ?' },
  },
  PatientBirthDate: { level: 'patient', column: 'p.birth_date', kind: 'date' },
  /** Not a DICOM keyword: every record of the person holding this qualified INS (see patients/person-query.ts). */
  PersonINS: { level: 'patient', column: 'p.id', kind: 'person-ins' },
  PatientSex: { level: 'patient', column: 'p.sex', kind: 'text' },
  StudyInstanceUID: { level: 'study', column: 's.study_instance_uid', kind: 'uid' },
  StudyDate: { level: 'study', column: 's.study_date', kind: 'date' },
  StudyTime: { level: 'study', column: 's.study_time', kind: 'time' },
  AccessionNumber: { level: 'study', column: 's.accession_number', kind: 'text' },
  StudyID: { level: 'study', column: 's.study_id', kind: 'text' },
  StudyDescription: { level: 'study', column: 's.description', kind: 'text' },
  ReferringPhysicianName: { level: 'study', column: 's.referring_physician_name_folded', kind: 'pn' },
  ModalitiesInStudy: { level: 'study', column: 's.id', kind: 'modalities-in-study' },
  InstitutionName: { level: 'study', column: 's.institution_name', kind: 'text' },
  SeriesInstanceUID: { level: 'series', column: 'se.series_instance_uid', kind: 'uid' },
  Modality: { level: 'series', column: 'se.modality', kind: 'code-list' },
  SeriesNumber: { level: 'series', column: 'se.series_number', kind: 'number' },
  SeriesDescription: { level: 'series', column: 'se.description', kind: 'text' },
  BodyPartExamined: { level: 'series', column: 'se.body_part', kind: 'text' },
  SeriesDate: { level: 'series', column: 'se.series_date', kind: 'date' },
  SeriesTime: { level: 'series', column: 'se.series_time', kind: 'time' },
  PerformedProcedureStepStartDate: { level: 'series', column: 'se.pps_start_date', kind: 'date' },
  PerformedProcedureStepStartTime: { level: 'series', column: 'se.pps_start_time', kind: 'time' },
  SOPInstanceUID: { level: 'instance', column: 'i.sop_instance_uid', kind: 'uid' },
  SOPClassUID: { level: 'instance', column: 'i.sop_class_uid', kind: 'uid' },
  InstanceNumber: { level: 'instance', column: 'i.instance_number', kind: 'number' },
  ContentDate: { level: 'instance', column: 'i.content_date', kind: 'date' },
  ContentTime: { level: 'instance', column: 'i.content_time', kind: 'time' },
};

const levelsSearchable: Record<QueryLevel, ReadonlySet<FieldLevel>> = {
  patient: new Set(['patient']),
  study: new Set(['patient', 'study']),
  series: new Set(['patient', 'study', 'series']),
  instance: new Set(['patient', 'study', 'series', 'instance']),
};

/** QIDO-RS also names attributes by tag ("00100010"). */
const keywordByTag = new Map<string, string>(
  Object.keys(fields).flatMap((keyword) => {
    const t = (Tags as Record<string, number>)[keyword];
    return t === undefined ? [] : [[tagToHex(t), keyword] as [string, string]];
  }),
);

/** The keywords a search at this level may match on. */
export function matchableKeywords(level: QueryLevel): string[] {
  return Object.entries(fields)
    .filter(([, field]) => levelsSearchable[level].has(field.level))
    .map(([keyword]) => keyword);
}

/**
 * The matches split into those on the patient record (PatientName, PatientID, ...) and the
 * others, keys named by keyword or tag as buildConditions takes them; universal values dropped.
 */
export function splitPatientMatches(matches: Record<string, string>): { patient: Record<string, string>; rest: Record<string, string> } {
  const patient: Record<string, string> = {};
  const rest: Record<string, string> = {};
  for (const [key, value] of Object.entries(matches)) {
    if (isUniversal(String(value ?? ''))) continue;
    const keyword = keywordByTag.get(key.toUpperCase()) ?? key;
    (fields[keyword]?.level === 'patient' ? patient : rest)[key] = value;
  }
  return { patient, rest };
}

export interface Conditions {
  where: string[];
  params: unknown[];
}

/** Beyond any character a stored value holds, so [p, p + this) is "starts with p" in memcmp order. */
const highest = '\u{10FFFF}';

export function buildConditions(
  engine: SqlDatabase['engine'],
  level: QueryLevel,
  matches: Record<string, string>,
  fuzzymatching: boolean,
): Conditions {
  const out: Conditions = { where: [], params: [] };
  for (const [key, rawValue] of Object.entries(matches)) {
    const value = String(rawValue ?? '');
    // A key without a value only asks for the attribute to be returned (a C-FIND return key).
    if (isUniversal(value)) continue;
    const keyword = keywordByTag.get(key.toUpperCase()) ?? key;
    const field = fields[keyword];
    if (!field) throw new QueryError(`unsupported matching attribute: ${key}`);
    if (!levelsSearchable[level].has(field.level)) {
      throw new QueryError(`${keyword} cannot be matched in a ${level}-level search`);
    }
    matchField(engine, keyword, field, value, fuzzymatching, out);
  }
  return out;
}

/** How another table's column is matched (a worklist, a queue): by kind, as the index's own. */
export interface MatchableColumn {
  column: string;
  kind: 'text' | 'pn' | 'uid' | 'date' | 'time' | 'number';
}

/**
 * The same matching rules over another table: `columns` names, for each keyword the
 * search may carry, its column and kind. A keyword not listed is a QueryError.
 */
export function matchConditions(
  engine: SqlDatabase['engine'],
  columns: Record<string, MatchableColumn>,
  matches: Record<string, string>,
): Conditions {
  const out: Conditions = { where: [], params: [] };
  for (const [keyword, rawValue] of Object.entries(matches)) {
    const value = String(rawValue ?? '');
    if (isUniversal(value)) continue;
    const c = columns[keyword];
    if (!c) throw new QueryError(`unsupported matching attribute: ${keyword}`);
    matchField(engine, keyword, { level: 'patient', column: c.column, kind: c.kind }, value, false, out);
  }
  return out;
}

/** An empty value, or one made only of "*", matches everything (C.2.2.2.3, C.2.2.2.4). */
function isUniversal(value: string): boolean {
  return /^\**$/.test(value);
}

function hasWildcard(value: string): boolean {
  return /[*?]/.test(value);
}

function matchField(
  engine: SqlDatabase['engine'],
  keyword: string,
  field: Field,
  value: string,
  fuzzy: boolean,
  out: Conditions,
): void {
  const c = field.column;
  switch (field.kind) {
    case 'text':
      matchText(engine, c, value, out);
      return;
    case 'pn':
      matchPersonName(engine, field, value, fuzzy, out);
      return;
    case 'uid': {
      const uids = splitList(value);
      if (uids.some((uid) => !/^[0-9.]+$/.test(uid))) {
        throw new QueryError(`${keyword} takes UIDs (wildcards are not allowed): ${value}`);
      }
      inList(c, uids, out);
      return;
    }
    case 'code-list':
      inList(c, splitList(value), out);
      return;
    case 'person-ins':
      // The person who held the INS first: a record whose traits conflict under the same INS is
      // its own person until a human decides, and is not mixed into the answer meanwhile.
      out.where.push(`${c} IN (SELECT pi2.patient_id FROM patient_identities pi2 WHERE pi2.person_id =
        (SELECT MIN(pi.person_id) FROM patient_identities pi WHERE pi.ins = ? AND pi.status = 'qualified'))`);
      out.params.push(value.replace(/\s+/g, ''));
      return;
    case 'modalities-in-study': {
      const inner: Conditions = { where: [], params: [] };
      inList('ms.modality', splitList(value), inner);
      out.where.push(`EXISTS (SELECT 1 FROM series ms WHERE ms.study_id = s.id AND ${inner.where[0]})`);
      out.params.push(...inner.params);
      return;
    }
    case 'number': {
      if (!/^\s*[+-]?\d+\s*$/.test(value)) throw new QueryError(`${keyword} takes an integer: ${value}`);
      out.where.push(`${c} = ?`);
      out.params.push(Number(value));
      return;
    }
    case 'date':
    case 'time': {
      const range = field.kind === 'date' ? parseDateMatch(keyword, value) : parseTimeMatch(keyword, value);
      if (range.from !== undefined) {
        out.where.push(`${c} >= ?`);
        out.params.push(range.from);
      }
      if (range.to !== undefined) {
        out.where.push(`${c} <= ?`);
        out.params.push(range.to);
      }
      return;
    }
  }
}

/** UID list matching (C.2.2.2.2): "\"-separated in C-FIND, also ","-separated in QIDO-RS. */
function splitList(value: string): string[] {
  return value
    .split(/[\\,]/)
    .map((v) => v.trim())
    .filter((v) => v !== '');
}

function inList(column: string, values: string[], out: Conditions): void {
  if (values.length === 1) {
    out.where.push(`${column} = ?`);
  } else {
    out.where.push(`${column} IN (${values.map(() => '?').join(', ')})`);
  }
  out.params.push(...values);
}

/** Single value or wildcard matching (C.2.2.2.1, C.2.2.2.4), byte for byte. */
function matchText(engine: SqlDatabase['engine'], column: string, value: string, out: Conditions): void {
  if (!hasWildcard(value)) {
    out.where.push(`${column} = ?`);
    out.params.push(value);
    return;
  }
  const prefix = /^([^*?]*)\*+$/.exec(value)?.[1];
  if (prefix !== undefined) {
    // A range the engine answers from an ordinary index, on both engines.
    out.where.push(`(${column} >= ? AND ${column} < ?)`);
    out.params.push(prefix, prefix + highest);
    return;
  }
  out.where.push(patternCondition(engine, column));
  out.params.push(pattern(engine, value));
}

function patternCondition(engine: SqlDatabase['engine'], column: string): string {
  // SQLite's LIKE ignores ASCII case; GLOB is case-sensitive and already speaks * and ?.
  return engine === 'sqlite' ? `${column} GLOB ?` : `${column} LIKE ? ESCAPE '\\'`;
}

/** A DICOM wildcard value as a GLOB (SQLite) or LIKE (PostgreSQL) pattern, other characters literal. */
export function pattern(engine: SqlDatabase['engine'], value: string): string {
  if (engine === 'sqlite') return value.replace(/\[/g, '[[]');
  return value
    .replace(/[\\%_]/g, (ch) => `\\${ch}`)
    .replace(/\*/g, '%')
    .replace(/\?/g, '_');
}

/**
 * Person names are matched on their folded form (no case, no accents), which PS3.4
 * C.2.2.2.1 allows for PN. With fuzzymatching, a value also matches any name whose
 * whole or any component (family, given, ... or a part of a compound name) starts with it;
 * a value of several words (split at spaces, carets, hyphens) matches a name each of whose
 * words begins one of its components (patient names, through their words' index).
 */
function matchPersonName(
  engine: SqlDatabase['engine'],
  field: Field,
  value: string,
  fuzzy: boolean,
  out: Conditions,
): void {
  const column = field.column;
  const folded = foldPersonName(value);
  if (isUniversal(folded)) return;
  if (!fuzzy) {
    matchText(engine, column, folded, out);
    return;
  }
  const typed = folded.replace(/\*+$/, '');
  const words = typed.split(/[\^= -]+/).filter((w) => w !== '');
  if (field.words && words.length > 0 && !/[*?]/.test(typed)) {
    // Words as people type them ("LEFEVRE HELENE", "lefevre h", "Lefèvre^Hélène"): each must
    // begin some component of the name, in any order, found through the index of name words
    // rather than by scanning every name.
    for (const word of words) {
      out.where.push(`${field.words.id} IN (${field.words.subquery})`);
      out.params.push(word, word + highest);
    }
    return;
  }
  const starts = folded.endsWith('*') ? folded : `${folded}*`;
  const whole: Conditions = { where: [], params: [] };
  matchText(engine, column, starts, whole);
  const anyComponent = ['^', ' ', '=', '-'].map((separator) => pattern(engine, `*${separator}${starts}`));
  const condition = patternCondition(engine, column);
  out.where.push(`(${whole.where[0]} OR ${anyComponent.map(() => condition).join(' OR ')})`);
  out.params.push(...whole.params, ...anyComponent);
}

interface Range {
  from?: string;
  to?: string;
}

/*
 * Range matching (C.2.2.2.5). src/dicom/dates.ts was not written yet when this was,
 * so the few forms the index needs are parsed here: "A", "A-", "-B", "A-B".
 */
function splitRange(keyword: string, value: string): { from?: string; to?: string; single: boolean } {
  const parts = value.split('-');
  if (parts.length === 1) return { from: parts[0]!.trim(), to: parts[0]!.trim(), single: true };
  if (parts.length !== 2) throw new QueryError(`${keyword}: malformed range: ${value}`);
  const from = parts[0]!.trim();
  const to = parts[1]!.trim();
  return { from: from || undefined, to: to || undefined, single: false };
}

function parseDateMatch(keyword: string, value: string): Range {
  const { from, to } = splitRange(keyword, value);
  for (const d of [from, to]) {
    if (d !== undefined && !/^\d{8}$/.test(d)) throw new QueryError(`${keyword}: not a DA (YYYYMMDD): ${d}`);
  }
  if (from && to && from > to) throw new QueryError(`${keyword}: range ends before it starts: ${value}`);
  return { from, to };
}

const timePattern = /^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$/;

/** "10" as an upper bound means up to 10:59:59.999999. */
function timeUpperBound(t: string): string {
  const full = '235959.999999';
  if (t.length <= 6) return t + full.slice(t.length);
  return t.padEnd(13, '9');
}

function parseTimeMatch(keyword: string, value: string): Range {
  const { from, to, single } = splitRange(keyword, value);
  for (const t of [from, to]) {
    if (t !== undefined && !timePattern.test(t)) throw new QueryError(`${keyword}: not a TM (HHMMSS.FFFFFF): ${t}`);
  }
  const upper = to === undefined ? undefined : timeUpperBound(to);
  if (from && upper && from > upper && !single) {
    throw new QueryError(`${keyword}: range ends before it starts: ${value}`);
  }
  return { from, to: upper };
}
