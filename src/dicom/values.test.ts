import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Tags, tag, type DicomDataset, type DicomElement, type Tag, type VR } from './dataset.ts';
import {
  bigIntValues, itemContext, numberValue, numberValues, parseDecimalString, personName, personNameValue,
  personNameValues, stringValue, stringValues, tagValues, valueContextOf,
} from './values.ts';

/** A dataset built by hand: [tag, VR, value bytes or items]. */
function dataset(...els: Array<[Tag, VR, Buffer | DicomDataset[]]>): DicomDataset {
  return new Map(els.map(([t, vr, v]): [Tag, DicomElement] => [t, Array.isArray(v) ? { tag: t, vr, items: v } : { tag: t, vr, value: v }]));
}
const latin1 = (s: string) => Buffer.from(s, 'latin1');
const el = (vr: VR, value: Buffer): DicomElement => ({ tag: tag(0x0009, 0x0010), vr, value });
const le = valueContextOf(new Map(), true);
const be = valueContextOf(new Map(), false);

describe('stringValues', () => {
  it('splits multi-valued strings on backslashes and trims their padding', () => {
    assert.deepEqual(stringValues(el('CS', latin1('ORIGINAL\\PRIMARY\\AXIAL ')), le), ['ORIGINAL', 'PRIMARY', 'AXIAL']);
    assert.deepEqual(stringValues(el('LO', latin1(' left \\ right ')), le), ['left', 'right']);
    assert.deepEqual(stringValues(el('UI', latin1('1.2.3\0')), le), ['1.2.3']);
  });
  it('keeps empty values in their position', () => {
    assert.deepEqual(stringValues(el('CS', latin1('A\\\\C')), le), ['A', '', 'C']);
    assert.deepEqual(stringValues(el('SH', Buffer.alloc(0)), le), []);
    assert.deepEqual(stringValues({ tag: 1, vr: 'SH' }, le), []);
  });
  it('keeps LT, ST and UT single-valued with their leading spaces, a backslash being a character', () => {
    assert.deepEqual(stringValues(el('LT', latin1('  C:\\report\r\nline 2  ')), le), ['  C:\\report\r\nline 2']);
    assert.deepEqual(stringValues(el('ST', latin1(' a\\b\0')), le), [' a\\b']);
    assert.deepEqual(stringValues(el('UR', latin1('http://x/a\\b ')), le), ['http://x/a\\b']);
  });
  it('decodes only the text VRs with the character set', () => {
    const ctx = valueContextOf(dataset([Tags.SpecificCharacterSet, 'CS', latin1('ISO_IR 192')]), true);
    assert.deepEqual(stringValues(el('LO', Buffer.from('Hôpital Nord', 'utf8')), ctx), ['Hôpital Nord']);
    // CS is ASCII by definition: the byte is not read as a UTF-8 lead byte.
    assert.deepEqual(stringValues(el('CS', latin1('\xe9')), ctx), ['é']);
  });
  it('drops empty trailing component groups of a PN', () => {
    assert.deepEqual(stringValues(el('PN', latin1('Doe^John==\\Roe^Jane=')), le), ['Doe^John', 'Roe^Jane']);
  });
  it('reads a PN of delimiters only as an empty name', () => {
    assert.deepEqual(stringValues(el('PN', latin1('^^^^\\Doe^^^')), le), ['', 'Doe^^^']);
    assert.equal(stringValue(new Map([[Tags.ReferringPhysicianName, { tag: Tags.ReferringPhysicianName, vr: 'PN', value: latin1('^^^^ ') }]]), Tags.ReferringPhysicianName, le), undefined);
  });
});

describe('stringValue', () => {
  const ds = dataset(
    [Tags.PatientID, 'LO', latin1('  12345 ')],
    [Tags.AccessionNumber, 'SH', latin1('  ')],
    [Tags.StudyDescription, 'UN', latin1('Thorax ')],
    [Tags.Rows, 'US', Buffer.from([0, 2])],
  );
  it('gives the first value trimmed', () => {
    assert.equal(stringValue(ds, Tags.PatientID, le), '12345');
  });
  it('gives undefined for absent and empty attributes', () => {
    assert.equal(stringValue(ds, Tags.PatientName, le), undefined);
    assert.equal(stringValue(ds, Tags.AccessionNumber, le), undefined);
  });
  it('reads text that arrived as UN, and nothing from a binary VR', () => {
    assert.equal(stringValue(ds, Tags.StudyDescription, le), 'Thorax');
    assert.equal(stringValue(ds, Tags.Rows, le), undefined);
  });
});

describe('numberValues', () => {
  it('reads binary VRs in the dataset byte order', () => {
    assert.deepEqual(numberValues(el('US', Buffer.from([0x00, 0x02, 0x01, 0x00])), le), [512, 1]);
    assert.deepEqual(numberValues(el('US', Buffer.from([0x00, 0x02])), be), [2]);
    assert.deepEqual(numberValues(el('SS', Buffer.from([0xff, 0xff])), le), [-1]);
    assert.deepEqual(numberValues(el('UL', Buffer.from([0xff, 0xff, 0xff, 0xff])), le), [4294967295]);
    assert.deepEqual(numberValues(el('SL', Buffer.from([0xff, 0xff, 0xff, 0xfe])), be), [-2]);
    const fd = Buffer.alloc(16);
    fd.writeDoubleLE(0.1, 0);
    fd.writeDoubleLE(-2.5, 8);
    assert.deepEqual(numberValues(el('FD', fd), le), [0.1, -2.5]);
    const fl = Buffer.alloc(4);
    fl.writeFloatBE(1.5);
    assert.deepEqual(numberValues(el('FL', fl), be), [1.5]);
  });
  it('ignores a trailing partial value rather than reading past it', () => {
    assert.deepEqual(numberValues(el('US', Buffer.from([1, 0, 2])), le), [1]);
  });
  it('reads IS and DS from their text, skipping what is not a decimal string', () => {
    assert.deepEqual(numberValues(el('DS', latin1(' 0.5\\-1.25E2\\+3 ')), le), [0.5, -125, 3]);
    assert.deepEqual(numberValues(el('IS', latin1('12\\\\0x10\\Infinity\\7')), le), [12, 7]);
  });
  it('reads SV and UV as numbers, and exactly as bigints', () => {
    const b = Buffer.alloc(16);
    b.writeBigInt64LE(-5n, 0);
    b.writeBigInt64LE(2n ** 60n + 1n, 8);
    assert.deepEqual(numberValues(el('SV', b), le), [-5, 2 ** 60]);
    assert.deepEqual(bigIntValues(el('SV', b), le), [-5n, 2n ** 60n + 1n]);
    const u = Buffer.alloc(8);
    u.writeBigUInt64BE(2n ** 64n - 1n);
    assert.deepEqual(bigIntValues(el('UV', u), be), [2n ** 64n - 1n]);
  });
  it('numberValue gives the first value or undefined', () => {
    const ds = dataset([Tags.SeriesNumber, 'IS', latin1(' 3 ')], [Tags.InstanceNumber, 'IS', Buffer.alloc(0)]);
    assert.equal(numberValue(ds, Tags.SeriesNumber, le), 3);
    assert.equal(numberValue(ds, Tags.InstanceNumber, le), undefined);
    assert.equal(numberValue(ds, Tags.Rows, le), undefined);
  });
  it('parseDecimalString refuses what Number() would wrongly accept', () => {
    assert.equal(parseDecimalString(''), undefined);
    assert.equal(parseDecimalString('0x1A'), undefined);
    assert.equal(parseDecimalString('1e400'), undefined);
    assert.equal(parseDecimalString('1.5e-3'), 0.0015);
  });
});

describe('tagValues (AT)', () => {
  it('reads group then element in the byte order', () => {
    assert.deepEqual(tagValues(el('AT', Buffer.from([0x28, 0x00, 0x10, 0x00, 0x08, 0x00, 0x05, 0x00])), le), ['00280010', '00080005']);
    assert.deepEqual(tagValues(el('AT', Buffer.from([0x7f, 0xe0, 0x00, 0x10])), be), ['7FE00010']);
  });
});

describe('person names', () => {
  it('splits three component groups', () => {
    assert.deepEqual(personName('Yamada^Tarou=山田^太郎=やまだ^たろう'), { Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' });
  });
  it('leaves out empty groups', () => {
    assert.deepEqual(personName('=山田^太郎'), { Ideographic: '山田^太郎' });
    assert.deepEqual(personName('Doe^John'), { Alphabetic: 'Doe^John' });
    assert.deepEqual(personName(''), {});
  });
  it('personNameValue reads and decodes the first value; personNameValues all of them', () => {
    const ds = dataset(
      [Tags.SpecificCharacterSet, 'CS', latin1('ISO_IR 100')],
      [Tags.PatientName, 'PN', latin1('Buc^J\xe9r\xf4me\\Dupont^Ren\xe9e ')],
      [Tags.ReferringPhysicianName, 'PN', latin1(' ')],
    );
    const ctx = valueContextOf(ds, true);
    assert.deepEqual(personNameValue(ds, Tags.PatientName, ctx), { Alphabetic: 'Buc^Jérôme' });
    assert.deepEqual(personNameValues(ds.get(Tags.PatientName)!, ctx), [{ Alphabetic: 'Buc^Jérôme' }, { Alphabetic: 'Dupont^Renée' }]);
    assert.equal(personNameValue(ds, Tags.ReferringPhysicianName, ctx), undefined);
  });
});

describe('character set contexts', () => {
  it('reads (0008,0005) from the dataset, an empty value meaning the default repertoire', () => {
    const ctx = valueContextOf(dataset([Tags.SpecificCharacterSet, 'CS', latin1('ISO_IR 144 ')]), false);
    assert.equal(ctx.littleEndian, false);
    assert.equal(ctx.charset.decode(latin1('\xbb\xee\xda'), 'PN'), 'Люк');
    const empty = valueContextOf(dataset([Tags.SpecificCharacterSet, 'CS', latin1(' ')]), true);
    assert.deepEqual(empty.charset.unknownTerms, []);
    assert.equal(empty.charset.decode(latin1('\xe9'), 'LO'), 'é');
  });
  it('lets a sequence item inherit the parent character set unless it names its own', () => {
    const parent = valueContextOf(dataset([Tags.SpecificCharacterSet, 'CS', latin1('ISO_IR 100')]), true);
    const plain = dataset([Tags.PatientName, 'PN', latin1('J\xe9r\xf4me')]);
    assert.equal(itemContext(plain, parent), parent);
    assert.equal(stringValue(plain, Tags.PatientName, itemContext(plain, parent)), 'Jérôme');
    const greek = dataset([Tags.SpecificCharacterSet, 'CS', latin1('ISO_IR 126')], [Tags.PatientName, 'PN', latin1('\xc4\xe9\xef')]);
    assert.equal(stringValue(greek, Tags.PatientName, itemContext(greek, parent)), 'Διο');
  });
});
