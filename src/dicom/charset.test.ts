import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { characterSetDecoder } from './charset.ts';
import { parsePart10 } from './part10-parser.ts';
import { itemContext, stringValue, stringValues, valueContextOf } from './values.ts';
import { Tags, tag, type DicomElement, type VR } from './dataset.ts';

const dir = '/usr/lib/python3/dist-packages/pydicom/data/charset_files/';
if (!existsSync(dir)) console.error(`charset.test.ts: ${dir} is missing (python3-pydicom): the tests on real files are SKIPPED`);

const bytes = (...parts: Array<string | number[]>): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));
const ESC = 0x1b;
const element = (vr: VR, value: Buffer): DicomElement => ({ tag: tag(0x0010, 0x0010), vr, value });

describe('characterSetDecoder', () => {
  it('decodes ISO_IR 100 accents as Latin-1', () => {
    const d = characterSetDecoder(['ISO_IR 100']);
    assert.equal(d.decode(Buffer.from('Buc^J\xe9r\xf4me', 'latin1'), 'PN'), 'Buc^Jérôme');
  });

  it('decodes ISO_IR 192 as UTF-8 and leaves non-text VRs in ASCII', () => {
    const d = characterSetDecoder(['ISO_IR 192']);
    assert.equal(d.decode(Buffer.from('Hélène', 'utf8'), 'LO'), 'Hélène');
    assert.equal(d.decode(Buffer.from('CT', 'latin1'), 'CS'), 'CT');
  });

  it('follows ISO 2022 escapes to Latin-1 in G1 (ISO 2022 IR 6 \\ ISO 2022 IR 100)', () => {
    const d = characterSetDecoder(['ISO 2022 IR 6', 'ISO 2022 IR 100']);
    const bytes = Buffer.concat([Buffer.from('Dupont^'), Buffer.from([0x1b, 0x2d, 0x41]), Buffer.from('H\xe9l\xe8ne', 'latin1')]);
    assert.equal(d.decode(bytes, 'PN'), 'Dupont^Hélène');
  });

  it('returns to the initial character set after a PN component delimiter', () => {
    // ESC $ B (JIS X 0208) then ESC ( B back to ASCII before "^", as encoders must.
    const d = characterSetDecoder(['', 'ISO 2022 IR 87']);
    const yamada = Buffer.from([0x1b, 0x24, 0x42, 0x3b, 0x33, 0x45, 0x44, 0x1b, 0x28, 0x42]);
    assert.equal(d.decode(Buffer.concat([yamada, Buffer.from('^X')]), 'PN'), '山田^X');
  });

  it('reports Defined Terms it does not know and decodes them as Latin-1', () => {
    const d = characterSetDecoder(['ISO_IR 999']);
    assert.deepEqual(d.unknownTerms, ['ISO_IR 999']);
    assert.equal(d.decode(Buffer.from('\xe9', 'latin1'), 'LO'), 'é');
  });

  it('decodes each single-byte repertoire with its own table', () => {
    const cases: Array<[string, number[], string]> = [
      ['ISO_IR 101', [0xa3, 0xf3, 0x64, 0xea], 'Łódę'],
      ['ISO_IR 109', [0xa1, 0xfd], 'Ħŭ'],
      ['ISO_IR 110', [0xa1, 0xbd], 'ĄŊ'],
      ['ISO_IR 127', [0xc7, 0xe4], 'ال'],
      ['ISO_IR 138', [0xf9, 0xe0], 'שא'],
      ['ISO_IR 148', [0xdd, 0xfe, 0xf0], 'İşğ'],
      ['ISO_IR 203', [0xa4, 0xbd], '€œ'],
      ['ISO_IR 13', [0xd4, 0xcf, 0xc0, 0xde], 'ﾔﾏﾀﾞ'],
      ['ISO_IR 166', [0xa1, 0xd2], 'กา'],
      ['GBK', [0xcd, 0xf5], '王'],
      ['GB18030', [0x81, 0x30, 0x81, 0x30], '\u0080'],
    ];
    for (const [term, raw, text] of cases) assert.equal(characterSetDecoder([term]).decode(Buffer.from(raw), 'LO'), text, term);
  });

  it('decodes before splitting, so a GB18030 character whose second byte is 0x5C stays whole', () => {
    const ctx = { littleEndian: true, charset: characterSetDecoder(['GB18030']) };
    // 乗 is 81 5C in GB18030: splitting the bytes on 0x5C first would cut it in two.
    assert.deepEqual(stringValues(element('LO', bytes([0x81, 0x5c], '\\', [0xcd, 0xf5])), ctx), ['乗', '王']);
  });

  it('returns the same decoder for the same Specific Character Set', () => {
    assert.equal(characterSetDecoder(['ISO_IR 100']), characterSetDecoder(['ISO_IR 100']));
    assert.notEqual(characterSetDecoder(['ISO_IR 100']), characterSetDecoder(['ISO_IR 101']));
  });

  it('reads loosely spelled Defined Terms as meant', () => {
    assert.equal(characterSetDecoder(['ISO-IR 144']).decode(bytes([0xbb]), 'PN'), 'Л');
    assert.equal(characterSetDecoder(['ISO_IR100']).decode(bytes([0xe9]), 'PN'), 'é');
    assert.equal(characterSetDecoder(['utf-8']).decode(Buffer.from('ü', 'utf8'), 'PN'), 'ü');
    assert.deepEqual(characterSetDecoder(['ISO-IR 144']).unknownTerms, []);
  });

  it('reports an unknown term in any position', () => {
    assert.deepEqual(characterSetDecoder(['ISO 2022 IR 6', 'ISO 2022 IR 999']).unknownTerms, ['ISO 2022 IR 999']);
  });

  it('resets to the first character set at each value of a multi-valued string, but not inside LT', () => {
    const d = characterSetDecoder(['ISO 2022 IR 100', 'ISO 2022 IR 144']);
    const raw = bytes([ESC, 0x2d, 0x4c, 0xbb], '\\', [0xe9]);
    // After the backslash ESC - L no longer holds: 0xE9 is é (IR 100), not щ (IR 144).
    assert.equal(d.decode(raw, 'LO'), 'Л\\é');
    assert.equal(d.decode(raw, 'LT'), 'Л\\щ');
  });

  it('resets to the first character set at each PN component and component group', () => {
    const d = characterSetDecoder(['ISO 2022 IR 100', 'ISO 2022 IR 126']);
    assert.equal(d.decode(bytes([ESC, 0x2d, 0x46, 0xc4], '^', [0xc4], '=', [0xe9]), 'PN'), 'Δ^Ä=é');
  });

  it('follows ISO 2022 IR 13 with JIS X 0208 and ESC ( J, as in chrH32', () => {
    const d = characterSetDecoder(['ISO 2022 IR 13', 'ISO 2022 IR 87']);
    const raw = bytes([0xd4, 0xcf, 0xc0, 0xde], '^', [0xc0, 0xdb, 0xb3], '=', [ESC, 0x24, 0x42], ';3ED', [ESC, 0x28, 0x4a], '^', [ESC, 0x24, 0x42], 'B@O:', [ESC, 0x28, 0x4a]);
    assert.equal(d.decode(raw, 'PN'), 'ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎');
  });

  it('does not take a JIS X 0208 byte 0x5E or 0x5C for a delimiter', () => {
    // や ま = $d $^ : the second byte pair holds 0x5E, the PN component delimiter.
    const d = characterSetDecoder(['', 'ISO 2022 IR 87']);
    assert.equal(d.decode(bytes([ESC, 0x24, 0x42], '$d$^', [ESC, 0x28, 0x42]), 'PN'), 'やま');
    // 表 is 0x49 0x3D in JIS X 0208: its 0x3D is not the component group delimiter "=".
    assert.equal(d.decode(bytes([ESC, 0x24, 0x42], 'I=', [ESC, 0x28, 0x42], '=X'), 'PN'), '表=X');
  });

  it('decodes KS X 1001 after ESC $ ) C, as in chrI2', () => {
    const d = characterSetDecoder(['', 'ISO 2022 IR 149']);
    const raw = bytes('Hong^Gildong=', [ESC, 0x24, 0x29, 0x43, 0xfb, 0xf3], '^', [ESC, 0x24, 0x29, 0x43, 0xd1, 0xce, 0xd4, 0xd7], '=', [ESC, 0x24, 0x29, 0x43, 0xc8, 0xab], '^', [ESC, 0x24, 0x29, 0x43, 0xb1, 0xe6, 0xb5, 0xbf]);
    assert.equal(d.decode(raw, 'PN'), 'Hong^Gildong=洪^吉洞=홍^길동');
  });

  it('decodes JIS X 0212 after ESC $ ( D', () => {
    // 0x30 0x21 in JIS X 0212 is 丂 (U+4E02).
    const d = characterSetDecoder(['', 'ISO 2022 IR 159']);
    assert.equal(d.decode(bytes([ESC, 0x24, 0x28, 0x44, 0x30, 0x21, ESC, 0x28, 0x42], 'a'), 'LO'), '丂a');
  });

  it('leaves a non-text VR in ASCII even under ISO 2022', () => {
    const d = characterSetDecoder(['', 'ISO 2022 IR 87']);
    assert.equal(d.decode(bytes([ESC, 0x24, 0x42], ';3'), 'CS'), '\x1b$B;3');
  });

  // Expected names as pydicom 2.3 decodes them (computed once, kept here as the oracle).
  const expected: Record<string, string> = {
    'chrArab.dcm': 'قباني^لنزار',
    'chrFren.dcm': 'Buc^Jérôme',
    'chrFrenMulti.dcm': 'Buc^Jérôme',
    'chrGerm.dcm': 'Äneas^Rüdiger',
    'chrGreek.dcm': 'Διονυσιος',
    'chrH31.dcm': 'Yamada^Tarou=山田^太郎=やまだ^たろう',
    'chrH32.dcm': 'ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう',
    'chrHbrw.dcm': 'שרון^דבורה',
    'chrI2.dcm': 'Hong^Gildong=洪^吉洞=홍^길동',
    'chrJapMulti.dcm': 'やまだ^たろう',
    'chrJapMultiExplicitIR6.dcm': 'やまだ^たろう',
    'chrKoreanMulti.dcm': '김희중',
    'chrRuss.dcm': 'Люкceмбypг',
    'chrX1.dcm': 'Wang^XiaoDong=王^小東',
    'chrX2.dcm': 'Wang^XiaoDong=王^小东',
  };
  for (const [file, name] of Object.entries(expected)) {
    it(`reads PatientName of pydicom's ${file} as ${name}`, { skip: !existsSync(dir) && 'python3-pydicom not installed' }, () => {
      const obj = parsePart10(readFileSync(dir + file));
      assert.equal(stringValue(obj.dataset, Tags.PatientName, valueContextOf(obj.dataset, obj.littleEndian)), name);
    });
  }

  const skip = !existsSync(dir) && 'python3-pydicom not installed';
  const read = (file: string) => {
    const obj = parsePart10(readFileSync(dir + file));
    return { ds: obj.dataset, ctx: valueContextOf(obj.dataset, obj.littleEndian) };
  };

  it('reads every value of multi-valued PN and LO (chrFrenMulti, chrJapMulti, chrKoreanMulti)', { skip }, () => {
    const fren = read('chrFrenMulti.dcm');
    assert.deepEqual(stringValues(fren.ds.get(tag(0x0010, 0x1001))!, fren.ctx), ['Buc^Jérôme', 'Buc^Jérôme']);
    assert.deepEqual(stringValues(fren.ds.get(tag(0x0010, 0x1000))!, fren.ctx), ['eggs', 'spam']);
    const jap = read('chrJapMulti.dcm');
    assert.deepEqual(stringValues(jap.ds.get(tag(0x0010, 0x1001))!, jap.ctx), ['やまだ^たろう', 'やまだ^たろう']);
    assert.equal(stringValue(jap.ds, tag(0x0010, 0x21b0), jap.ctx), 'たろう');
    const kor = read('chrKoreanMulti.dcm');
    assert.deepEqual(stringValues(kor.ds.get(tag(0x0010, 0x1001))!, kor.ctx), ['김희중', '김희중']);
    assert.equal(stringValue(kor.ds, tag(0x0008, 0x1070), kor.ctx), '김희중');
  });

  for (const file of ['chrSQEncoding.dcm', 'chrSQEncoding1.dcm']) {
    it(`decodes a sequence item by its own or its parent's character set (${file})`, { skip }, () => {
      const { ds, ctx } = read(file);
      const item = ds.get(tag(0x0032, 0x1064))!.items![0]!;
      assert.equal(stringValue(item, Tags.PatientName, itemContext(item, ctx)), 'ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう');
      assert.equal(stringValue(ds, tag(0x0032, 0x1032), ctx), 'Doctor^Who^^MD');
    });
  }
});
