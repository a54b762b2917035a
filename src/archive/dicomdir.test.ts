import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { DicomJsonDataset } from '../dicom/json.ts';
import { encodeDicomdir, filesOfDicomdir, recordKeysOf, recordTypeOfSOPClass, type DirectoryRecord } from './dicomdir.ts';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const ELE = '1.2.840.10008.1.2.1';

function image(n: number, id: string[]): DirectoryRecord {
  return {
    type: 'IMAGE', children: [],
    keys: recordKeysOf('IMAGE', { '00200013': { vr: 'IS', Value: [n] } }).keys,
    file: { id, SOPClassUID: CT, SOPInstanceUID: `1.2.3.${n}`, TransferSyntaxUID: ELE },
  };
}

/** A record as found by following offsets: its type, its next record's and first child's offsets. */
function recordAt(bytes: Buffer, offset: number): { type: string; next: number; lower: number } {
  assert.equal(bytes.readUInt16LE(offset), 0xfffe, `an item starts at ${offset}`);
  assert.equal(bytes.readUInt16LE(offset + 2), 0xe000);
  const end = offset + 8 + bytes.readUInt32LE(offset + 4);
  const out = { type: '', next: -1, lower: -1 };
  for (let p = offset + 8; p < end;) {
    const element = bytes.readUInt16LE(p + 2);
    const vr = bytes.toString('latin1', p + 4, p + 6);
    const long = ['SQ', 'OB', 'OW', 'UN', 'UT', 'UC', 'UR'].includes(vr);
    const length = long ? bytes.readUInt32LE(p + 8) : bytes.readUInt16LE(p + 6);
    const value = p + (long ? 12 : 8);
    if (bytes.readUInt16LE(p) === 0x0004 && element === 0x1400) out.next = bytes.readUInt32LE(value);
    if (bytes.readUInt16LE(p) === 0x0004 && element === 0x1420) out.lower = bytes.readUInt32LE(value);
    if (bytes.readUInt16LE(p) === 0x0004 && element === 0x1430) out.type = bytes.toString('latin1', value, value + length).trim();
    p = value + length;
  }
  return out;
}

/** The tree as a reader following the offsets sees it, as "TYPE(children...)". */
function treeFrom(bytes: Buffer, offset: number): string[] {
  const out: string[] = [];
  for (let at = offset; at !== 0;) {
    const r = recordAt(bytes, at);
    out.push(r.lower === 0 ? r.type : `${r.type}(${treeFrom(bytes, r.lower).join(' ')})`);
    at = r.next;
  }
  return out;
}

describe('DICOMDIR', () => {
  it('links every record by offsets counted from the first byte of the file', () => {
    const patient = (id: string, studies: DirectoryRecord[]): DirectoryRecord => ({
      type: 'PATIENT', children: studies,
      keys: recordKeysOf('PATIENT', { '00100020': { vr: 'LO', Value: [id] }, '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Doe^Jane' }] } }).keys,
    });
    const series = (images: DirectoryRecord[]): DirectoryRecord => ({ type: 'SERIES', keys: new Map(), children: images });
    const study = (s: DirectoryRecord[]): DirectoryRecord => ({ type: 'STUDY', keys: new Map(), children: s });
    const roots = [
      patient('P1', [study([series([image(1, ['DICOM', 'IM1']), image(2, ['DICOM', 'IM2'])]), series([image(3, ['DICOM', 'IM3'])])])]),
      patient('P2', [study([series([image(4, ['DICOM', 'IM4'])])]), study([series([image(5, ['DICOM', 'IM5'])])])]),
    ];
    const bytes = encodeDicomdir({ roots, SOPInstanceUID: '1.2.3.4', fileSetID: 'TEST' });
    assert.equal(bytes.toString('latin1', 128, 132), 'DICM');
    // (0004,1200) and (0004,1202): first and last root records.
    const first = bytes.readUInt32LE(bytes.indexOf(Buffer.from([0x04, 0x00, 0x00, 0x12, 0x55, 0x4c])) + 8);
    const last = bytes.readUInt32LE(bytes.indexOf(Buffer.from([0x04, 0x00, 0x02, 0x12, 0x55, 0x4c])) + 8);
    assert.deepEqual(treeFrom(bytes, first), [
      'PATIENT(STUDY(SERIES(IMAGE IMAGE) SERIES(IMAGE)))',
      'PATIENT(STUDY(SERIES(IMAGE)) STUDY(SERIES(IMAGE)))',
    ]);
    assert.equal(recordAt(bytes, last).next, 0);
    assert.equal(treeFrom(bytes, last).length, 1);
    assert.deepEqual(filesOfDicomdir(bytes).map((f) => f.id.join('/')), ['DICOM/IM1', 'DICOM/IM2', 'DICOM/IM3', 'DICOM/IM4', 'DICOM/IM5']);
  });

  it('refuses file IDs that the general-purpose profiles forbid', () => {
    for (const id of [['dicom', 'IM1'], ['DICOM', 'IMAGE0001'], ['DICOM', 'IM-1'], []]) {
      assert.throws(() => encodeDicomdir({ roots: [image(1, id)], SOPInstanceUID: '1.2.3' }), RangeError);
    }
  });

  it('writes keys in Latin-1 when they fit, in UTF-8 beyond, and says which type 1 keys were missing', () => {
    const json = (name: string): DicomJsonDataset => ({ '00100010': { vr: 'PN', Value: [{ Alphabetic: name }] } });
    const latin = recordKeysOf('PATIENT', json('Lefèvre^Zoé'), { PatientID: 'X' });
    assert.equal(latin.keys.get(0x00080005)?.value?.toString('latin1'), 'ISO_IR 100');
    assert.deepEqual(latin.keys.get(0x00100010)?.value, Buffer.from('Lefèvre^Zoé', 'latin1'));
    assert.deepEqual(latin.invented, ['PatientID']);
    const utf8 = recordKeysOf('PATIENT', json('Łukasz^Wójcik'));
    assert.equal(utf8.keys.get(0x00080005)?.value?.toString('latin1'), 'ISO_IR 192');
    assert.deepEqual(utf8.keys.get(0x00100010)?.value, Buffer.from('Łukasz^Wójcik', 'utf8'));
    assert.deepEqual(utf8.missing, ['PatientID']);
    assert.equal(recordKeysOf('PATIENT', json('Doe^John'), { PatientID: 'X' }).keys.has(0x00080005), false);
  });

  it('names record types by SOP class', () => {
    assert.equal(recordTypeOfSOPClass(CT), 'IMAGE');
    assert.equal(recordTypeOfSOPClass('1.2.840.10008.5.1.4.1.1.88.11'), 'SR DOCUMENT');
    assert.equal(recordTypeOfSOPClass('1.2.840.10008.5.1.4.1.1.88.59'), 'KEY OBJECT DOC');
    assert.equal(recordTypeOfSOPClass('1.2.840.10008.5.1.4.1.1.11.1'), 'PRESENTATION');
    assert.equal(recordTypeOfSOPClass('1.2.840.10008.5.1.4.1.1.481.2'), 'RT DOSE');
    assert.equal(recordTypeOfSOPClass('1.2.840.10008.5.1.4.1.1.104.1'), 'ENCAP DOC');
  });
});
