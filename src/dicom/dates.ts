/**
 * DA, TM and DT values (PS3.5 6.2) and the range values of C-FIND and QIDO-RS
 * (PS3.4 C.2.2.2.5), normalised to fixed-width strings that compare as they order:
 *   DA  "YYYYMMDD"
 *   TM  "HHMMSS.FFFFFF"          (13 characters)
 *   DT  "YYYYMMDDHHMMSS.FFFFFF"  (21 characters)
 * The index stores values in these forms, so a range becomes two string comparisons.
 * A value given with less precision than the form stands for the whole span it covers:
 * as a lower bound it is padded with its earliest instant, as an upper bound with its latest.
 */

export interface Range {
  from?: string;
  to?: string;
}

const daysInMonth = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function isLeapYear(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

function lastDayOf(year: number, month: number): number {
  return month === 2 && isLeapYear(year) ? 29 : daysInMonth[month - 1]!;
}

function isDigits(s: string, from = 0, to = s.length): boolean {
  if (to <= from) return false;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** Trailing padding is not part of the value (PS3.5 6.2: DA, TM and DT may be padded with a space). */
function unpadded(v: string): string {
  let end = v.length;
  while (end > 0 && (v.charCodeAt(end - 1) === 0x20 || v.charCodeAt(end - 1) === 0)) end--;
  let start = 0;
  while (start < end && v.charCodeAt(start) === 0x20) start++;
  return v.slice(start, end);
}

function checkDate(v: string, year: number, month: number, day: number): void {
  if (month < 1 || month > 12) throw new RangeError(`not a date (month ${month}): ${v}`);
  if (day < 1 || day > lastDayOf(year, month)) throw new RangeError(`not a date (day ${day} of month ${month}): ${v}`);
}

/**
 * A DA value as "YYYYMMDD". Also reads the ACR-NEMA form "YYYY.MM.DD" that older objects
 * still carry. Throws a RangeError on anything else, impossible dates included.
 */
export function parseDate(value: string): string {
  let v = unpadded(value);
  if (v.length === 10 && v[4] === '.' && v[7] === '.') v = v.slice(0, 4) + v.slice(5, 7) + v.slice(8, 10);
  if (v.length !== 8 || !isDigits(v)) throw new RangeError(`not a DA (YYYYMMDD): ${JSON.stringify(value)}`);
  checkDate(value, Number(v.slice(0, 4)), Number(v.slice(4, 6)), Number(v.slice(6, 8)));
  return v;
}

/** The parts of a TM as written, before padding. */
interface TimeParts {
  /** "HH", "HHMM" or "HHMMSS". */
  hms: string;
  /** The fraction's digits, possibly empty. */
  fraction: string;
}

const acrNemaTime = /^\d{2}(:\d{2}(:\d{2}(\.\d*)?)?)?$/;

function timeParts(value: string): TimeParts {
  let v = unpadded(value);
  // ACR-NEMA wrote "HH:MM:SS"; the colons carry nothing.
  if (v.includes(':')) {
    if (!acrNemaTime.test(v)) throw new RangeError(`not a TM (HHMMSS.FFFFFF): ${JSON.stringify(value)}`);
    v = v.replaceAll(':', '');
  }
  const dot = v.indexOf('.');
  const hms = dot < 0 ? v : v.slice(0, dot);
  const fraction = dot < 0 ? '' : v.slice(dot + 1);
  // Some writers end the seconds with a bare "." ("103000."); it adds no precision.
  if (dot >= 0 && fraction !== '' && !isDigits(fraction)) throw new RangeError(`not a TM (HHMMSS.FFFFFF): ${JSON.stringify(value)}`);
  if (fraction.length > 6) throw new RangeError(`not a TM (more than 6 fraction digits): ${JSON.stringify(value)}`);
  if (!isDigits(hms) || (hms.length !== 2 && hms.length !== 4 && hms.length !== 6) || (dot >= 0 && hms.length !== 6)) {
    throw new RangeError(`not a TM (HHMMSS.FFFFFF): ${JSON.stringify(value)}`);
  }
  const hh = Number(hms.slice(0, 2));
  const mm = hms.length >= 4 ? Number(hms.slice(2, 4)) : 0;
  const ss = hms.length >= 6 ? Number(hms.slice(4, 6)) : 0;
  // 60 seconds: a leap second, which PS3.5 allows.
  if (hh > 23 || mm > 59 || ss > 60) throw new RangeError(`not a time of day: ${JSON.stringify(value)}`);
  return { hms, fraction };
}

const earliestTime = '000000.000000';
const latestTime = '235959.999999';

function padTime(p: TimeParts, latest: boolean): string {
  const fill = latest ? latestTime : earliestTime;
  if (p.hms.length < 6) return p.hms + fill.slice(p.hms.length);
  return `${p.hms}.${p.fraction}${fill.slice(7 + p.fraction.length)}`;
}

/** A TM value as "HHMMSS.FFFFFF", the missing precision filled with zeros. Throws a RangeError when malformed. */
export function parseTime(value: string): string {
  return padTime(timeParts(value), false);
}

/** The parts of a DT as written: the local date-time digits (4 to 14, then a fraction) and the UTC offset. */
interface DateTimeParts {
  date: string;
  time?: TimeParts;
  /** "+HHMM" or "-HHMM" when given. */
  offset?: string;
}

function dateTimeParts(value: string): DateTimeParts {
  let v = unpadded(value);
  let offset: string | undefined;
  const sign = Math.max(v.indexOf('+', 4), v.indexOf('-', 4));
  if (sign >= 0) {
    offset = v.slice(sign);
    v = v.slice(0, sign);
    if (offset.length !== 5 || !isDigits(offset, 1)) throw new RangeError(`not a DT (bad UTC offset): ${JSON.stringify(value)}`);
    const oh = Number(offset.slice(1, 3));
    const om = Number(offset.slice(3, 5));
    if (oh > 14 || om > 59) throw new RangeError(`not a DT (bad UTC offset): ${JSON.stringify(value)}`);
  }
  const dot = v.indexOf('.');
  const digits = dot < 0 ? v : v.slice(0, dot);
  if (!isDigits(digits) || ![4, 6, 8, 10, 12, 14].includes(digits.length) || (dot >= 0 && digits.length !== 14)) {
    throw new RangeError(`not a DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX): ${JSON.stringify(value)}`);
  }
  const year = Number(digits.slice(0, 4));
  const month = digits.length >= 6 ? Number(digits.slice(4, 6)) : 1;
  const day = digits.length >= 8 ? Number(digits.slice(6, 8)) : 1;
  checkDate(value, year, month, day);
  const time = digits.length > 8 ? timeParts(v.slice(8)) : undefined;
  return { date: digits.slice(0, 8), time, offset };
}

function padDateTime(p: DateTimeParts, latest: boolean): string {
  let date = p.date;
  if (date.length < 8) {
    if (!latest) date = date + '0101'.slice(date.length - 4);
    else {
      const year = Number(date.slice(0, 4));
      const month = date.length >= 6 ? Number(date.slice(4, 6)) : 12;
      date = `${date.slice(0, 4)}${String(month).padStart(2, '0')}${lastDayOf(year, month)}`;
    }
  }
  return date + (p.time ? padTime(p.time, latest) : latest ? latestTime : earliestTime);
}

/**
 * A DT value as "YYYYMMDDHHMMSS.FFFFFF" (local time as written) and its UTC offset when one
 * is given. The offset is not applied: stored values and queries compare as written,
 * which is what C-FIND matching does without a Timezone Offset From UTC.
 */
export function parseDateTime(value: string): { value: string; offset?: string } {
  const p = dateTimeParts(value);
  return p.offset === undefined ? { value: padDateTime(p, false) } : { value: padDateTime(p, false), offset: p.offset };
}

/** Lenient forms for indexing what objects carry: undefined where the value is malformed. */
export function normalizeDate(value: string | undefined): string | undefined {
  return value === undefined ? undefined : attempt(() => parseDate(value));
}

export function normalizeTime(value: string | undefined): string | undefined {
  return value === undefined ? undefined : attempt(() => parseTime(value));
}

export function normalizeDateTime(value: string | undefined): string | undefined {
  return value === undefined ? undefined : attempt(() => parseDateTime(value).value);
}

function attempt(f: () => string): string | undefined {
  try {
    return f();
  } catch (e) {
    if (e instanceof RangeError) return undefined;
    throw e;
  }
}

/** Splits "A", "A-", "-B", "A-B" around the one hyphen (DA and TM contain none). */
function splitAtHyphen(value: string, what: string): { from?: string; to?: string; single: boolean } {
  const v = unpadded(value);
  const hyphen = v.indexOf('-');
  if (hyphen < 0) {
    if (v === '') throw new RangeError(`empty ${what} range`);
    return { from: v, to: v, single: true };
  }
  if (v.indexOf('-', hyphen + 1) >= 0) throw new RangeError(`not a ${what} range (more than one "-"): ${JSON.stringify(value)}`);
  const from = v.slice(0, hyphen);
  const to = v.slice(hyphen + 1);
  if (from === '' && to === '') throw new RangeError(`not a ${what} range (no bound): ${JSON.stringify(value)}`);
  return { from: from || undefined, to: to || undefined, single: false };
}

function ordered(r: Range, value: string): Range {
  if (r.from !== undefined && r.to !== undefined && r.from > r.to) throw new RangeError(`range ends before it starts: ${JSON.stringify(value)}`);
  const out: Range = {};
  if (r.from !== undefined) out.from = r.from;
  if (r.to !== undefined) out.to = r.to;
  return out;
}

/** A DA match value ("20200101", "20200101-20201231", "20200101-", "-20201231") as YYYYMMDD bounds, both inclusive. */
export function parseDateRange(value: string): Range {
  const { from, to } = splitAtHyphen(value, 'DA');
  return ordered({ from: from === undefined ? undefined : parseDate(from), to: to === undefined ? undefined : parseDate(to) }, value);
}

/**
 * A TM match value as HHMMSS.FFFFFF bounds, both inclusive: "10" is 10:00:00 to 10:59:59.999999,
 * "1000-1030" is 10:00:00 to 10:30:59.999999. A range crossing midnight ("2200-0200") is
 * refused: PS3.4 gives it no meaning without a date.
 */
export function parseTimeRange(value: string): Range {
  const { from, to } = splitAtHyphen(value, 'TM');
  return ordered({
    from: from === undefined ? undefined : padTime(timeParts(from), false),
    to: to === undefined ? undefined : padTime(timeParts(to), true),
  }, value);
}

/**
 * A DT match value as YYYYMMDDHHMMSS.FFFFFF bounds, both inclusive ("2020" is the whole year).
 * A DT may carry a "-ZZXX" offset, so the range hyphen is the one that leaves a valid DT
 * (or nothing) on each side. Offsets are dropped, as parseDateTime explains.
 */
export function parseDateTimeRange(value: string): Range {
  const v = unpadded(value);
  if (v === '') throw new RangeError('empty DT range');
  if (!v.includes('-')) {
    const p = dateTimeParts(v);
    return { from: padDateTime(p, false), to: padDateTime(p, true) };
  }
  let lastError: unknown;
  for (let i = v.indexOf('-'); i >= 0; i = v.indexOf('-', i + 1)) {
    const left = v.slice(0, i);
    const right = v.slice(i + 1);
    if (left === '' && right === '') break;
    try {
      const from = left === '' ? undefined : padDateTime(dateTimeParts(left), false);
      const to = right === '' ? undefined : padDateTime(dateTimeParts(right), true);
      return ordered({ from, to }, value);
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      lastError = e;
    }
  }
  // A single DT with a negative offset ("20200101120000-0500") is a value, not a range.
  try {
    const p = dateTimeParts(v);
    return { from: padDateTime(p, false), to: padDateTime(p, true) };
  } catch {
    throw lastError instanceof RangeError ? lastError : new RangeError(`not a DT range: ${JSON.stringify(value)}`);
  }
}
