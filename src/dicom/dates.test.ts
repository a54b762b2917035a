import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  normalizeDate, normalizeDateTime, normalizeTime, parseDate, parseDateRange, parseDateTime,
  parseDateTimeRange, parseTime, parseTimeRange,
} from './dates.ts';

describe('parseDate (DA)', () => {
  it('reads YYYYMMDD, padded or not', () => {
    assert.equal(parseDate('20240229'), '20240229');
    assert.equal(parseDate('19991231 '), '19991231');
  });
  it('reads the ACR-NEMA form YYYY.MM.DD', () => {
    assert.equal(parseDate('1993.08.22'), '19930822');
  });
  it('rejects impossible dates with a RangeError naming the fault', () => {
    assert.throws(() => parseDate('20201332'), { name: 'RangeError', message: /month 13/ });
    assert.throws(() => parseDate('20230229'), { name: 'RangeError', message: /day 29 of month 2/ });
    assert.throws(() => parseDate('19000229'), RangeError);
    assert.throws(() => parseDate('20200431'), RangeError);
    assert.throws(() => parseDate('00000000'), RangeError);
  });
  it('rejects other shapes', () => {
    for (const v of ['2020', '2020-01-01', '202001011', '2020O101', '', '2020.1.01']) {
      assert.throws(() => parseDate(v), RangeError, v);
    }
  });
  it('normalizeDate gives undefined instead of throwing, for indexing what objects carry', () => {
    assert.equal(normalizeDate('2020.01.02'), '20200102');
    assert.equal(normalizeDate('garbage'), undefined);
    assert.equal(normalizeDate(undefined), undefined);
  });
});

describe('parseTime (TM)', () => {
  it('pads every precision to HHMMSS.FFFFFF with zeros', () => {
    assert.equal(parseTime('10'), '100000.000000');
    assert.equal(parseTime('1030'), '103000.000000');
    assert.equal(parseTime('103015'), '103015.000000');
    assert.equal(parseTime('103015.5'), '103015.500000');
    assert.equal(parseTime('103015.123456 '), '103015.123456');
  });
  it('reads the ACR-NEMA form HH:MM:SS and a bare trailing dot', () => {
    assert.equal(parseTime('10:30:15'), '103015.000000');
    assert.equal(parseTime('10:30'), '103000.000000');
    assert.equal(parseTime('103015.'), '103015.000000');
  });
  it('accepts a leap second but no 24th hour or 60th minute', () => {
    assert.equal(parseTime('235960'), '235960.000000');
    assert.throws(() => parseTime('2400'), { name: 'RangeError', message: /time of day/ });
    assert.throws(() => parseTime('1060'), RangeError);
  });
  it('rejects odd lengths, fractions without seconds, and more than 6 fraction digits', () => {
    for (const v of ['1', '103', '10301', '1030.5', '103015.1234567', '10:3', '1o30', '']) {
      assert.throws(() => parseTime(v), RangeError, v);
    }
  });
  it('normalizeTime makes stored times comparable with range bounds', () => {
    assert.equal(normalizeTime('0830'), '083000.000000');
    assert.ok(normalizeTime('0830')! < normalizeTime('083000.5')!);
    assert.equal(normalizeTime('25'), undefined);
  });
});

describe('parseDateTime (DT)', () => {
  it('pads to YYYYMMDDHHMMSS.FFFFFF and keeps the UTC offset apart', () => {
    assert.deepEqual(parseDateTime('2020'), { value: '20200101000000.000000' });
    assert.deepEqual(parseDateTime('20200315103000.25'), { value: '20200315103000.250000' });
    assert.deepEqual(parseDateTime('20200315103000+0100'), { value: '20200315103000.000000', offset: '+0100' });
    assert.deepEqual(parseDateTime('202003151030-0500'), { value: '20200315103000.000000', offset: '-0500' });
  });
  it('rejects impossible dates, times and offsets', () => {
    for (const v of ['20201301', '20200230', '2020010125', '20200101120000+2500', '20200101120000+01', '20200101.5', '2020010']) {
      assert.throws(() => parseDateTime(v), RangeError, v);
    }
    assert.equal(normalizeDateTime('2020013'), undefined);
    assert.equal(normalizeDateTime('20200131'), '20200131000000.000000');
  });
});

describe('parseDateRange (C-FIND / QIDO-RS range matching on DA)', () => {
  it('reads a single date as a one-day range', () => {
    assert.deepEqual(parseDateRange('20200101'), { from: '20200101', to: '20200101' });
  });
  it('reads closed and open ranges', () => {
    assert.deepEqual(parseDateRange('20200101-20201231'), { from: '20200101', to: '20201231' });
    assert.deepEqual(parseDateRange('20200101-'), { from: '20200101' });
    assert.deepEqual(parseDateRange('-20201231'), { to: '20201231' });
    assert.deepEqual(parseDateRange('1993.08.22-1993.08.23'), { from: '19930822', to: '19930823' });
  });
  it('throws a RangeError on malformed or impossible bounds', () => {
    assert.throws(() => parseDateRange('20201332'), { name: 'RangeError', message: /20201332/ });
    assert.throws(() => parseDateRange('20200101-20201332'), RangeError);
    assert.throws(() => parseDateRange('-'), { name: 'RangeError', message: /no bound/ });
    assert.throws(() => parseDateRange(''), RangeError);
    assert.throws(() => parseDateRange('2020-01-01'), { name: 'RangeError', message: /more than one/ });
    assert.throws(() => parseDateRange('20201231-20200101'), { name: 'RangeError', message: /ends before it starts/ });
  });
});

describe('parseTimeRange (range matching on TM)', () => {
  it('widens a value of lower precision to the span it covers', () => {
    assert.deepEqual(parseTimeRange('10'), { from: '100000.000000', to: '105959.999999' });
    assert.deepEqual(parseTimeRange('1030'), { from: '103000.000000', to: '103059.999999' });
    assert.deepEqual(parseTimeRange('103015.5'), { from: '103015.500000', to: '103015.599999' });
    assert.deepEqual(parseTimeRange('103015.123456'), { from: '103015.123456', to: '103015.123456' });
  });
  it('reads closed and open ranges, the upper bound inclusive of its whole precision', () => {
    assert.deepEqual(parseTimeRange('0800-1230'), { from: '080000.000000', to: '123059.999999' });
    assert.deepEqual(parseTimeRange('08-'), { from: '080000.000000' });
    assert.deepEqual(parseTimeRange('-12'), { to: '125959.999999' });
  });
  it('gives bounds that order stored values correctly as strings', () => {
    const { from, to } = parseTimeRange('1000-1030');
    for (const [stored, inside] of [['0959', false], ['10', true], ['103059.9', true], ['1031', false]] as const) {
      const v = normalizeTime(stored)!;
      assert.equal(v >= from! && v <= to!, inside, stored);
    }
  });
  it('refuses ranges crossing midnight and malformed bounds', () => {
    assert.throws(() => parseTimeRange('2200-0200'), { name: 'RangeError', message: /ends before it starts/ });
    assert.throws(() => parseTimeRange('25-'), RangeError);
    assert.throws(() => parseTimeRange('10-11-12'), RangeError);
  });
});

describe('parseDateTimeRange (range matching on DT)', () => {
  it('widens a single value to the span it covers, to the real end of the month', () => {
    assert.deepEqual(parseDateTimeRange('2020'), { from: '20200101000000.000000', to: '20201231235959.999999' });
    assert.deepEqual(parseDateTimeRange('202002'), { from: '20200201000000.000000', to: '20200229235959.999999' });
    assert.deepEqual(parseDateTimeRange('2021021510'), { from: '20210215100000.000000', to: '20210215105959.999999' });
  });
  it('reads closed and open ranges', () => {
    assert.deepEqual(parseDateTimeRange('20200101-20200131'), { from: '20200101000000.000000', to: '20200131235959.999999' });
    assert.deepEqual(parseDateTimeRange('20200101120000-'), { from: '20200101120000.000000' });
    assert.deepEqual(parseDateTimeRange('-2019'), { to: '20191231235959.999999' });
  });
  it('tells a negative UTC offset from the range hyphen', () => {
    assert.deepEqual(parseDateTimeRange('20200101120000-0500'), { from: '20200101120000.000000', to: '20200101120000.999999' });
    assert.deepEqual(parseDateTimeRange('20200101120000-0500-20200102'), { from: '20200101120000.000000', to: '20200102235959.999999' });
    assert.deepEqual(parseDateTimeRange('20200101-20200102120000-0500'), { from: '20200101000000.000000', to: '20200102120000.999999' });
  });
  it('throws a RangeError on malformed input', () => {
    for (const v of ['', '-', '2020133', '20201301-', 'x-2020', '2021-2020']) {
      assert.throws(() => parseDateTimeRange(v), RangeError, v);
    }
  });
});
