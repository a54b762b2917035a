import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dicomJsonValue, personNameToString, toDicomJson, stringifyDicomJson, type DicomJsonDataset } from './json.ts';
import { parsePart10 } from './part10-parser.ts';
import { valueContextOf, numberValue, stringValue } from './values.ts';
import { Tags, tag, type DicomDataset, type DicomElement, type VR } from './dataset.ts';

function ds(...els: Array<[number, VR, Buffer | DicomDataset[]]>): DicomDataset {
  return new Map(els.map(([t, vr, v]): [number, DicomElement] => [t, Array.isArray(v) ? { tag: t, vr, items: v } : { tag: t, vr, value: v }]));
}
const ctx = valueContextOf(new Map(), true);
const charsetDir = '/usr/lib/python3/dist-packages/pydicom/data/charset_files/';
const us = (n: number) => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };

describe('toDicomJson (PS3.18 Annex F)', () => {
  it('writes strings, numbers, person names, IS/DS as numbers and empty values as vr only', () => {
    const data = ds(
      [Tags.SpecificCharacterSet, 'CS', Buffer.from('ISO_IR 192')],
      [Tags.PatientName, 'PN', Buffer.from('Doe^John=ジョン ')],
      [Tags.Rows, 'US', us(512)],
      [Tags.SeriesNumber, 'IS', Buffer.from(' 3 ')],
      [tag(0x0028, 0x0030), 'DS', Buffer.from('0.5\\0.25')],
      [Tags.AccessionNumber, 'SH', Buffer.alloc(0)],
      [Tags.ImageType, 'CS', Buffer.from('ORIGINAL\\PRIMARY')],
    );
    const json = toDicomJson(data, valueContextOf(data, true), { bulkDataURI: () => undefined });
    assert.deepEqual(json['00100010'], { vr: 'PN', Value: [{ Alphabetic: 'Doe^John', Ideographic: 'ジョン' }] });
    assert.deepEqual(json['00280010'], { vr: 'US', Value: [512] });
    assert.deepEqual(json['00200011'], { vr: 'IS', Value: [3] });
    assert.deepEqual(json['00280030'], { vr: 'DS', Value: [0.5, 0.25] });
    assert.deepEqual(json['00080050'], { vr: 'SH' });
    assert.deepEqual(json['00080008'], { vr: 'CS', Value: ['ORIGINAL', 'PRIMARY'] });
  });

  it('nests sequences, gives bulk values a URI by tag path and small binaries inline', () => {
    const item = ds([tag(0x0018, 0x1072), 'OB', Buffer.alloc(4000, 1)], [tag(0x0018, 0x1074), 'OB', Buffer.from([1, 2])]);
    const json = toDicomJson(new Map([
      [tag(0x0054, 0x0016), { tag: tag(0x0054, 0x0016), vr: 'SQ', items: [item] }],
      [Tags.PixelData, { tag: Tags.PixelData, vr: 'OW', bulk: { offset: 100, length: 10 } }],
    ]) as DicomDataset, ctx, { bulkDataURI: (p) => `bulk/${p}` });
    const seq = json['00540016']!.Value![0] as Record<string, { BulkDataURI?: string; InlineBinary?: string }>;
    assert.equal(seq['00181072']!.BulkDataURI, 'bulk/00540016.0.00181072');
    assert.equal(seq['00181074']!.InlineBinary, 'AQI=');
    assert.equal(json['7FE00010']!.BulkDataURI, 'bulk/7FE00010');
  });

  it('leaves out group lengths and the file meta group', () => {
    const json = toDicomJson(ds([tag(0x0008, 0x0000), 'UL', Buffer.alloc(4)], [Tags.TransferSyntaxUID, 'UI', Buffer.from('1.2\0')], [Tags.Modality, 'CS', Buffer.from('CT')]), ctx, { bulkDataURI: () => undefined });
    assert.deepEqual(Object.keys(json), ['00080060']);
  });

  it('serializes keys in ascending tag order, all-digit tags included', () => {
    const text = stringifyDicomJson({ '30040002': { vr: 'CS', Value: ['X'] }, '00080060': { vr: 'CS', Value: ['RTDOSE'] } });
    assert.equal(text, '{"00080060":{"vr":"CS","Value":["RTDOSE"]},"30040002":{"vr":"CS","Value":["X"]}}');
    assert.deepEqual(JSON.parse(text), { '00080060': { vr: 'CS', Value: ['RTDOSE'] }, '30040002': { vr: 'CS', Value: ['X'] } });
  });

  it('reads a big-endian object with the same values as its little-endian twin', { skip: !existsSync('/usr/lib/python3/dist-packages/pydicom') }, () => {
    const dir = '/usr/lib/python3/dist-packages/pydicom/data/test_files/';
    const le = parsePart10(readFileSync(dir + 'MR_small.dcm'));
    const be = parsePart10(readFileSync(dir + 'MR_small_bigendian.dcm'));
    const c1 = valueContextOf(le.dataset, true), c2 = valueContextOf(be.dataset, false);
    assert.equal(numberValue(be.dataset, Tags.Rows, c2), numberValue(le.dataset, Tags.Rows, c1));
    assert.equal(numberValue(be.dataset, Tags.Rows, c2), 64);
    assert.equal(stringValue(be.dataset, Tags.PatientName, c2), 'CompressedSamples^MR1');
  });

  const none = { bulkDataURI: () => undefined };
  const latin1 = (v: string) => Buffer.from(v, 'latin1');

  it('writes PN with three component groups as an object, and an empty value among several as null', () => {
    const data = ds(
      [Tags.SpecificCharacterSet, 'CS', latin1('\\ISO 2022 IR 87')],
      [Tags.PatientName, 'PN', Buffer.concat([latin1('Yamada^Tarou='), latin1('\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B='), latin1('\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B')])],
      [tag(0x0010, 0x1001), 'PN', latin1('A^B\\\\C^D')],
      [Tags.ImageType, 'CS', latin1('DERIVED\\\\SECONDARY')],
    );
    const json = toDicomJson(data, valueContextOf(data, true), none);
    assert.deepEqual(json['00100010'], { vr: 'PN', Value: [{ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' }] });
    assert.deepEqual(json['00101001'], { vr: 'PN', Value: [{ Alphabetic: 'A^B' }, null, { Alphabetic: 'C^D' }] });
    assert.deepEqual(json['00080008'], { vr: 'CS', Value: ['DERIVED', null, 'SECONDARY'] });
  });

  it('writes AT as hex strings, SV/UV as numbers while exact and as strings beyond 2^53', () => {
    const sv = Buffer.alloc(16);
    sv.writeBigInt64LE(-42n, 0);
    sv.writeBigInt64LE(-(2n ** 62n), 8);
    const uv = Buffer.alloc(8);
    uv.writeBigUInt64LE(2n ** 64n - 1n);
    const json = toDicomJson(ds(
      [tag(0x0020, 0x5000), 'AT', Buffer.from([0x10, 0x00, 0x20, 0x00])],
      [tag(0x0009, 0x1001), 'SV', sv],
      [tag(0x0009, 0x1002), 'UV', uv],
    ), ctx, none);
    assert.deepEqual(json['00205000'], { vr: 'AT', Value: ['00100020'] });
    assert.deepEqual(json['00091001'], { vr: 'SV', Value: [-42, '-4611686018427387904'] });
    assert.deepEqual(json['00091002'], { vr: 'UV', Value: ['18446744073709551615'] });
  });

  it('keeps an IS/DS value that is not a number as the string received, rather than losing it', () => {
    const json = toDicomJson(ds([tag(0x0028, 0x1050), 'DS', latin1('40\\n/a\\1e2')]), ctx, none);
    assert.deepEqual(json['00281050'], { vr: 'DS', Value: [40, 'n/a', 100] });
  });

  it('writes empty values, empty sequences and bulk values without a URI as "vr" alone', () => {
    const json = toDicomJson(new Map<number, DicomElement>([
      [Tags.PatientName, { tag: Tags.PatientName, vr: 'PN', value: latin1('  ') }],
      [Tags.ReferencedSOPSequence, { tag: Tags.ReferencedSOPSequence, vr: 'SQ', items: [] }],
      [Tags.PixelData, { tag: Tags.PixelData, vr: 'OB', fragments: [{ offset: 10, length: 4 }] }],
    ]), ctx, none);
    assert.deepEqual(json, { '00100010': { vr: 'PN' }, '00081199': { vr: 'SQ' }, '7FE00010': { vr: 'OB' } });
  });

  it('gives encapsulated pixel data a BulkDataURI', () => {
    const json = toDicomJson(new Map<number, DicomElement>([
      [Tags.PixelData, { tag: Tags.PixelData, vr: 'OB', fragments: [{ offset: 10, length: 4 }] }],
    ]), ctx, { bulkDataURI: (p) => `https://x/bulk/${p}` });
    assert.deepEqual(json['7FE00010'], { vr: 'OB', BulkDataURI: 'https://x/bulk/7FE00010' });
  });

  it('gives inline OW of a big-endian object in little-endian order', () => {
    const json = toDicomJson(ds([tag(0x0028, 0x1201), 'OW', Buffer.from([0x12, 0x34])], [tag(0x0009, 0x1010), 'OB', Buffer.from([0x12, 0x34])]), valueContextOf(new Map(), false), none);
    assert.equal(json['00281201']!.InlineBinary, Buffer.from([0x34, 0x12]).toString('base64'));
    assert.equal(json['00091010']!.InlineBinary, Buffer.from([0x12, 0x34]).toString('base64'));
  });

  it('orders keys by tag even when the dataset was built out of order', () => {
    const json = toDicomJson(ds([Tags.Modality, 'CS', latin1('CT')], [Tags.PatientID, 'LO', latin1('1')], [Tags.ImageType, 'CS', latin1('X')]), ctx, none);
    assert.deepEqual(Object.keys(json), ['00080008', '00080060', '00100020']);
  });

  it('filters top-level attributes with includeTags and writes a chosen sequence whole', () => {
    const item = ds([Tags.ReferencedSOPClassUID, 'UI', latin1('1.2\0')], [Tags.ReferencedSOPInstanceUID, 'UI', latin1('1.3\0')]);
    const json = toDicomJson(ds([Tags.Modality, 'CS', latin1('CT')], [Tags.ReferencedSOPSequence, 'SQ', [item]]), ctx, {
      ...none,
      includeTags: (t) => t === Tags.ReferencedSOPSequence,
    });
    assert.deepEqual(json, { '00081199': { vr: 'SQ', Value: [{ '00081150': { vr: 'UI', Value: ['1.2'] }, '00081155': { vr: 'UI', Value: ['1.3'] } }] } });
  });

  it('decodes a sequence item with its own Specific Character Set, and others with the parent one', () => {
    const own = ds([Tags.SpecificCharacterSet, 'CS', latin1('ISO_IR 126')], [Tags.PatientName, 'PN', latin1('\xc4\xe9\xef')]);
    const inherited = ds([Tags.PatientName, 'PN', latin1('J\xe9r\xf4me')]);
    const top = ds([Tags.SpecificCharacterSet, 'CS', latin1('ISO_IR 100')], [Tags.OtherPatientIDsSequence, 'SQ', [own, inherited]]);
    const json = toDicomJson(top, valueContextOf(top, true), none);
    const items = dicomJsonValue(json, Tags.OtherPatientIDsSequence) as DicomJsonDataset[];
    assert.deepEqual(dicomJsonValue(items[0]!, Tags.PatientName), [{ Alphabetic: 'Διο' }]);
    assert.deepEqual(dicomJsonValue(items[1]!, Tags.PatientName), [{ Alphabetic: 'Jérôme' }]);
    assert.equal(dicomJsonValue(json, Tags.PatientID), undefined);
  });

  it('personNameToString gives back the PN form', () => {
    assert.equal(personNameToString({ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' }), 'Yamada^Tarou=山田^太郎=やまだ^たろう');
    assert.equal(personNameToString({ Alphabetic: 'Doe^John' }), 'Doe^John');
    assert.equal(personNameToString({ Ideographic: '山田' }), '=山田');
    assert.equal(personNameToString({ Alphabetic: 'A', Phonetic: 'a' }), 'A==a');
    assert.equal(personNameToString({}), '');
  });

  it('writes (0008,0005) as ISO_IR 192, the values having been decoded to Unicode', () => {
    const data = ds([Tags.SpecificCharacterSet, 'CS', latin1('ISO_IR 100')], [Tags.PatientName, 'PN', latin1('Buc^J\xe9r\xf4me')]);
    const json = toDicomJson(data, valueContextOf(data, true), none);
    assert.deepEqual(json['00080005'], { vr: 'CS', Value: ['ISO_IR 192'] });
    assert.deepEqual(json['00100010'], { vr: 'PN', Value: [{ Alphabetic: 'Buc^Jérôme' }] });
  });

  it('writes FL with the fewest digits that give back the same float32', () => {
    const fl = Buffer.alloc(12);
    fl.writeFloatLE(-11.2, 0);
    fl.writeFloatLE(0.1, 4);
    fl.writeFloatLE(3, 8);
    const json = toDicomJson(ds([tag(0x0018, 0x9089), 'FL', fl]), ctx, none);
    assert.deepEqual(json['00189089'], { vr: 'FL', Value: [-11.2, 0.1, 3] });
  });

  it('writes a PN of delimiters only ("^^^^") as empty', () => {
    const json = toDicomJson(ds([Tags.ReferringPhysicianName, 'PN', latin1('^^^^')], [Tags.PatientName, 'PN', latin1('Doe^John=^^^')]), ctx, none);
    assert.deepEqual(json['00080090'], { vr: 'PN' });
    assert.deepEqual(json['00100010'], { vr: 'PN', Value: [{ Alphabetic: 'Doe^John' }] });
  });

  for (const [file, expected] of [
    ['chrH31.dcm', { Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' }],
    ['chrX1.dcm', { Alphabetic: 'Wang^XiaoDong', Ideographic: '王^小東' }],
    ['chrX2.dcm', { Alphabetic: 'Wang^XiaoDong', Ideographic: '王^小东' }],
  ] as const) {
    it(`writes PatientName of pydicom's ${file} by component group`, { skip: !existsSync(charsetDir) && 'python3-pydicom not installed' }, () => {
      const obj = parsePart10(readFileSync(charsetDir + file));
      const json = toDicomJson(obj.dataset, valueContextOf(obj.dataset, obj.littleEndian), none);
      assert.deepEqual(json['00100010'], { vr: 'PN', Value: [expected] });
    });
  }
});
