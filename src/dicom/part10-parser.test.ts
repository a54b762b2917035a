import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { deflateRawSync } from 'node:zlib';
import { Tags, TransferSyntax, tag, type DicomDataset, type ParsedObject } from './dataset.ts';
import { DicomParseError, Part10Parser, parsePart10 } from './part10-parser.ts';

const pydicomFiles = '/usr/lib/python3/dist-packages/pydicom/data/test_files/';
const haveFiles = existsSync(pydicomFiles);
if (!haveFiles) console.warn(`\n!!! ${pydicomFiles} is missing: tests on real DICOM files are SKIPPED !!!\n`);
const skip = haveFiles ? false : 'pydicom test files missing';
const file = (name: string) => readFileSync(pydicomFiles + name);

const text = (ds: DicomDataset, t: number) => ds.get(t)?.value?.toString('latin1').replace(/[\0 ]+$/, '');

/** Feeds buf in chunks whose sizes come from next(), and ends. */
function parseInChunks(buf: Buffer, next: () => number, opts?: ConstructorParameters<typeof Part10Parser>[0]): ParsedObject {
  const p = new Part10Parser(opts);
  for (let i = 0; i < buf.length;) {
    const n = Math.max(1, next());
    p.write(buf.subarray(i, i + n));
    i += n;
  }
  return p.end();
}

/** A deterministic pseudo-random chunk size, so failures can be replayed. */
function randomSizes(seed: number, max: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return 1 + (s % max);
  };
}

function expectParseError(fn: () => unknown, code: DicomParseError['code']): DicomParseError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof DicomParseError, `expected a DicomParseError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  return caught;
}

// --- hand-made objects, so the parser is not only checked against our own writer ---

function le16(n: number) { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; }
function le32(n: number) { const b = Buffer.alloc(4); b.writeUInt32LE(n >>> 0); return b; }
function tagLE(g: number, e: number) { return Buffer.concat([le16(g), le16(e)]); }
/** Explicit VR little endian element with a 2-byte length. */
function ex(g: number, e: number, vr: string, value: Buffer) { return Buffer.concat([tagLE(g, e), Buffer.from(vr), le16(value.length), value]); }
/** Explicit VR little endian element with a 4-byte length (or undefined length). */
function exLong(g: number, e: number, vr: string, value: Buffer, length = value.length) { return Buffer.concat([tagLE(g, e), Buffer.from(vr), Buffer.alloc(2), le32(length), value]); }
function im(g: number, e: number, value: Buffer, length = value.length) { return Buffer.concat([tagLE(g, e), le32(length), value]); }
const item = (body: Buffer, defined = true) => Buffer.concat([tagLE(0xfffe, 0xe000), le32(defined ? body.length : 0xffffffff), body, defined ? Buffer.alloc(0) : Buffer.concat([tagLE(0xfffe, 0xe00d), le32(0)])]);
const seqDelim = () => Buffer.concat([tagLE(0xfffe, 0xe0dd), le32(0)]);

function part10(ts: string, dataset: Buffer, opts: { groupLength?: boolean } = {}): Buffer {
  let tsValue = Buffer.from(ts);
  if (tsValue.length % 2) tsValue = Buffer.concat([tsValue, Buffer.from([0])]);
  const metaBody = Buffer.concat([
    ex(2, 2, 'UI', Buffer.from('1.2.840.10008.5.1.4.1.1.7\0')),
    ex(2, 3, 'UI', Buffer.from('1.2.3.4\0')),
    ex(2, 0x10, 'UI', tsValue),
  ]);
  const gl = opts.groupLength === false ? Buffer.alloc(0) : ex(2, 0, 'UL', le32(metaBody.length));
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), gl, metaBody, dataset]);
}

describe('Part10Parser on real files', { skip }, () => {
  const names = [
    'CT_small.dcm', 'MR_small.dcm', 'MR_small_implicit.dcm', 'MR_small_bigendian.dcm', 'image_dfl.dcm',
    'JPEG2000.dcm', 'SC_rgb_rle.dcm', 'rtplan.dcm', 'UN_sequence.dcm', 'nested_priv_SQ.dcm', 'badVR.dcm', 'no_meta_group_length.dcm',
  ];

  for (const name of names) {
    it(`reads ${name} identically whether fed whole, byte by byte or in random chunks`, () => {
      const buf = file(name);
      const whole = parsePart10(buf);
      assert.deepEqual(parseInChunks(buf, () => 1), whole);
      for (const seed of [1, 2, 3]) assert.deepEqual(parseInChunks(buf, randomSizes(seed, 700)), whole);
      assert.equal(whole.byteLength, buf.length);
    });
  }

  it('reads explicit VR little endian values and places the dataset right after the meta group', () => {
    const buf = file('CT_small.dcm');
    const obj = parsePart10(buf);
    assert.equal(obj.transferSyntaxUID, TransferSyntax.ExplicitVRLittleEndian);
    assert.equal(obj.littleEndian, true);
    assert.equal(obj.explicitVR, true);
    assert.equal(obj.deflated, false);
    assert.equal(text(obj.dataset, Tags.PatientName), 'CompressedSamples^CT1');
    assert.equal(obj.dataset.get(Tags.Rows)?.value?.readUInt16LE(0), 128);
    const groupLength = obj.meta.get(Tags.FileMetaInformationGroupLength)!.value!.readUInt32LE(0);
    assert.equal(obj.datasetOffset, 132 + 12 + groupLength);
    assert.equal(buf.readUInt16LE(obj.datasetOffset), 0x0008, 'the dataset starts with a group 0008 tag');
  });

  it('records native pixel data as a byte range, not a value', () => {
    const buf = file('MR_small.dcm');
    const px = parsePart10(buf).dataset.get(Tags.PixelData)!;
    assert.equal(px.value, undefined);
    assert.equal(px.vr, 'OW');
    assert.equal(px.bulk?.length, 8192); // 64 × 64 × 16 bits
    assert.equal(buf.readUInt16LE(px.bulk.offset), 0x0389, 'first pixel as DCMTK dumps it');
    assert.equal(buf.readUInt32LE(px.bulk.offset - 4), 8192, 'the range starts right after the length field');
  });

  it('keeps big endian values raw and says so', () => {
    const obj = parsePart10(file('MR_small_bigendian.dcm'));
    assert.equal(obj.littleEndian, false);
    assert.equal(obj.explicitVR, true);
    assert.equal(obj.dataset.get(Tags.Rows)?.value?.readUInt16BE(0), 64);
  });

  it('reads implicit VR with dictionary VRs', () => {
    const obj = parsePart10(file('MR_small_implicit.dcm'));
    assert.equal(obj.explicitVR, false);
    assert.equal(obj.dataset.get(Tags.Rows)?.vr, 'US');
    assert.equal(obj.dataset.get(Tags.PatientName)?.vr, 'PN');
    assert.equal(obj.dataset.get(Tags.PixelData)?.vr, 'OW');
    assert.equal(obj.dataset.get(Tags.PixelData)?.bulk?.length, 8192);
  });

  it('records encapsulated fragments and the basic offset table without reading fragment bytes', () => {
    const buf = file('JPEG2000.dcm');
    const px = parsePart10(buf).dataset.get(Tags.PixelData)!;
    assert.equal(px.value, undefined);
    assert.deepEqual(px.basicOffsetTable, []);
    assert.ok(px.fragments && px.fragments.length >= 1);
    const first = px.fragments[0]!;
    assert.equal(buf.readUInt16BE(first.offset), 0xff4f, 'a JPEG 2000 codestream starts with SOC');
    const last = px.fragments.at(-1)!;
    assert.equal(last.offset + last.length + 8, buf.length, 'the sequence delimiter ends the file');
  });

  it('finds RLE segment headers at the fragment offsets', () => {
    const buf = file('SC_rgb_rle.dcm');
    const px = parsePart10(buf).dataset.get(Tags.PixelData)!;
    assert.equal(px.fragments?.length, 1);
    assert.equal(buf.readUInt32LE(px.fragments[0]!.offset), 3, 'an RGB RLE frame has 3 segments');
  });

  it('inflates a deflated dataset and keeps its values in memory', () => {
    const obj = parsePart10(file('image_dfl.dcm'));
    assert.equal(obj.deflated, true);
    assert.equal(obj.littleEndian, true);
    const px = obj.dataset.get(Tags.PixelData)!;
    assert.equal(px.bulk, undefined);
    assert.ok(px.value && px.value.length > 0);
    assert.equal(text(obj.dataset, Tags.SOPClassUID), '1.2.840.10008.5.1.4.1.1.7');
  });

  it('reads an explicit UN of undefined length as an implicit VR little endian sequence', () => {
    const obj = parsePart10(file('UN_sequence.dcm'));
    const sq = obj.dataset.get(tag(0x4453, 0x100c))!;
    assert.equal(sq.vr, 'SQ');
    assert.equal(sq.items?.length, 1);
    const inner = sq.items[0]!.get(tag(0x0008, 0x1115))!;
    assert.equal(inner.vr, 'SQ');
    assert.equal(inner.items?.length, 1);
  });

  it('reads explicit UN elements of known tags with their dictionary VR', () => {
    const obj = parsePart10(file('rtdose_rle.dcm'));
    assert.equal(obj.dataset.get(Tags.PatientName)?.vr, 'PN');
    const rois = obj.dataset.get(tag(0x300c, 0x0002))!;
    assert.equal(rois.vr, 'SQ');
    assert.equal(rois.items?.length, 1);
  });

  it('survives elements whose VR bytes are not a VR', () => {
    const obj = parsePart10(file('badVR.dcm'));
    assert.ok(obj.dataset.size > 40);
  });

  it('reads a meta group that has no group length', () => {
    const obj = parsePart10(file('no_meta_group_length.dcm'));
    assert.equal(obj.meta.has(Tags.FileMetaInformationGroupLength), false);
    assert.equal(obj.transferSyntaxUID, TransferSyntax.ImplicitVRLittleEndian);
    assert.ok(obj.dataset.size > 0);
  });

  it('refuses a file without preamble with no-preamble', () => {
    expectParseError(() => parsePart10(file('no_meta.dcm')), 'no-preamble');
  });

  it('refuses a meta group without TransferSyntaxUID with bad-meta', () => {
    expectParseError(() => parsePart10(file('meta_missing_tsyntax.dcm')), 'bad-meta');
  });

  it('reports truncated files, with the offset, whatever the chunking', () => {
    for (const name of ['rtplan_truncated.dcm', 'MR_truncated.dcm']) {
      const buf = file(name);
      const e = expectParseError(() => parsePart10(buf), 'truncated');
      assert.match(e.message, /at byte \d+/);
      expectParseError(() => parseInChunks(buf, randomSizes(7, 100)), 'truncated');
    }
  });
});

describe('Part10Parser on hand-made objects', () => {
  it('throws no-preamble from write() as soon as "DICM" is missing', () => {
    const p = new Part10Parser();
    expectParseError(() => p.write(Buffer.alloc(200)), 'no-preamble');
    expectParseError(() => p.end(), 'no-preamble');
  });

  it('answers no-preamble for an object shorter than the preamble', () => {
    expectParseError(() => parsePart10(Buffer.from('hello')), 'no-preamble');
  });

  it('answers no-meta when group 0002 is absent', () => {
    const buf = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), ex(8, 0x60, 'CS', Buffer.from('CT'))]);
    expectParseError(() => parsePart10(buf), 'no-meta');
  });

  it('reads nested sequences of defined and undefined length, items of both kinds', () => {
    const innerItem = ex(0x0008, 0x0100, 'SH', Buffer.from('CODE01'));
    const innerSeqUndefined = Buffer.concat([exLong(0x0040, 0xa043, 'SQ', Buffer.alloc(0), 0xffffffff), item(innerItem, false), seqDelim()]);
    const outerItems = Buffer.concat([item(innerSeqUndefined, true), item(ex(0x0008, 0x0104, 'LO', Buffer.from('Meaning ')), false)]);
    const ds = Buffer.concat([
      ex(0x0008, 0x0060, 'CS', Buffer.from('CT')),
      exLong(0x0040, 0xa730, 'SQ', outerItems),
      exLong(0x0040, 0xa731, 'SQ', Buffer.alloc(0)), // empty, defined length
      ex(0x0010, 0x0010, 'PN', Buffer.from('Doe^Jane')),
    ]);
    const buf = part10(TransferSyntax.ExplicitVRLittleEndian, ds);
    const obj = parsePart10(buf);
    assert.deepEqual(parseInChunks(buf, () => 1), obj);
    const content = obj.dataset.get(tag(0x0040, 0xa730))!;
    assert.equal(content.items?.length, 2);
    const concept = content.items[0]!.get(tag(0x0040, 0xa043))!;
    assert.equal(concept.items?.length, 1);
    assert.equal(text(concept.items[0]!, tag(0x0008, 0x0100)), 'CODE01');
    assert.equal(text(content.items[1]!, tag(0x0008, 0x0104)), 'Meaning');
    assert.deepEqual(obj.dataset.get(tag(0x0040, 0xa731))!.items, []);
    assert.equal(text(obj.dataset, Tags.PatientName), 'Doe^Jane', 'the element after the sequences is read');
  });

  it('reads implicit VR sequences of undefined length, and US-or-SS values by PixelRepresentation', () => {
    const ds = Buffer.concat([
      im(0x0008, 0x1140, Buffer.concat([item(im(0x0008, 0x1155, Buffer.from('1.2.3\0')), false), seqDelim()]), 0xffffffff),
      im(0x0028, 0x0103, le16(1)),
      im(0x0028, 0x0106, le16(0xfff0)),
    ]);
    const obj = parsePart10(part10(TransferSyntax.ImplicitVRLittleEndian, ds));
    const refs = obj.dataset.get(tag(0x0008, 0x1140))!;
    assert.equal(refs.vr, 'SQ');
    assert.equal(text(refs.items![0]!, Tags.ReferencedSOPInstanceUID), '1.2.3');
    assert.equal(obj.dataset.get(tag(0x0028, 0x0106))?.vr, 'SS');
  });

  it('keeps binary values up to bulkThreshold in memory and records longer ones as ranges', () => {
    const small = Buffer.alloc(16, 7);
    const large = Buffer.alloc(40, 9);
    const ds = Buffer.concat([exLong(0x0009, 0x1001, 'OB', small), exLong(0x0009, 0x1002, 'OB', large)]);
    const buf = part10(TransferSyntax.ExplicitVRLittleEndian, ds);
    const obj = parsePart10(buf, { bulkThreshold: 32 });
    assert.deepEqual(obj.dataset.get(tag(0x0009, 0x1001))!.value, small);
    const bulk = obj.dataset.get(tag(0x0009, 0x1002))!.bulk!;
    assert.equal(bulk.length, 40);
    assert.deepEqual(buf.subarray(bulk.offset, bulk.offset + bulk.length), large);
  });

  it('reads the basic offset table entries of encapsulated pixel data', () => {
    const bot = Buffer.concat([le32(0), le32(18)]);
    const frag1 = Buffer.alloc(10, 1);
    const frag2 = Buffer.alloc(6, 2);
    const ds = Buffer.concat([exLong(0x7fe0, 0x0010, 'OB', Buffer.alloc(0), 0xffffffff), item(bot), item(frag1), item(frag2), seqDelim()]);
    const buf = part10(TransferSyntax.JPEGBaseline8Bit, ds);
    const px = parsePart10(buf).dataset.get(Tags.PixelData)!;
    assert.deepEqual(px.basicOffsetTable, [0, 18]);
    assert.equal(px.fragments?.length, 2);
    assert.deepEqual(buf.subarray(px.fragments[1]!.offset, px.fragments[1]!.offset + 6), frag2);
  });

  it('parses unknown transfer syntaxes as explicit VR little endian', () => {
    const obj = parsePart10(part10('1.2.3.999', ex(0x0008, 0x0060, 'CS', Buffer.from('MR'))));
    assert.equal(obj.transferSyntaxUID, '1.2.3.999');
    assert.equal(text(obj.dataset, Tags.Modality), 'MR');
  });

  it('reads a deflated dataset pushed in small chunks', () => {
    const ds = Buffer.concat([ex(0x0008, 0x0060, 'CS', Buffer.from('US')), ex(0x0010, 0x0010, 'PN', Buffer.from('Doe^John'))]);
    const buf = part10(TransferSyntax.DeflatedExplicitVRLittleEndian, deflateRawSync(ds));
    const obj = parseInChunks(buf, randomSizes(5, 9));
    assert.equal(obj.deflated, true);
    assert.equal(text(obj.dataset, Tags.PatientName), 'Doe^John');
  });

  it('refuses with truncated when the stream ends inside a header, an item or a value', () => {
    const seq = Buffer.concat([exLong(0x0008, 0x1140, 'SQ', Buffer.alloc(0), 0xffffffff), item(ex(0x0008, 0x1155, 'UI', Buffer.from('1.2.3\0')), false), seqDelim()]);
    const full = part10(TransferSyntax.ExplicitVRLittleEndian, Buffer.concat([ex(0x0008, 0x0060, 'CS', Buffer.from('CT')), seq]));
    const datasetStart = full.length - seq.length - 10;
    for (const cut of [datasetStart + 3, datasetStart + 9, full.length - seq.length + 5, full.length - 20, full.length - 1]) {
      expectParseError(() => parsePart10(full.subarray(0, cut)), 'truncated');
    }
    assert.doesNotThrow(() => parsePart10(full));
  });

  it('refuses an element that runs past the end of its item with malformed', () => {
    const badItem = Buffer.concat([tagLE(0xfffe, 0xe000), le32(8), ex(0x0008, 0x1155, 'UI', Buffer.from('1.2.3\0'))]);
    const ds = Buffer.concat([exLong(0x0008, 0x1140, 'SQ', badItem)]);
    expectParseError(() => parsePart10(part10(TransferSyntax.ExplicitVRLittleEndian, ds)), 'malformed');
  });

  it('refuses absurdly deep sequence nesting with malformed instead of exhausting the stack', () => {
    let body = ex(0x0008, 0x0060, 'CS', Buffer.from('CT'));
    for (let i = 0; i < 200; i++) body = exLong(0x0040, 0xa730, 'SQ', item(body));
    expectParseError(() => parsePart10(part10(TransferSyntax.ExplicitVRLittleEndian, body)), 'malformed');
  });

  it('answers header-too-large when in-memory values exceed maxHeaderBytes', () => {
    const ds = ex(0x0008, 0x1030, 'LO', Buffer.alloc(2000, 0x41));
    expectParseError(() => parsePart10(part10(TransferSyntax.ExplicitVRLittleEndian, ds), { maxHeaderBytes: 1000 }), 'header-too-large');
  });

  it('streams 300 MB of pixel data in 1 MB chunks without growing memory or keeping chunks', async () => {
    const pixelLength = 300 * 1024 * 1024;
    const head = part10(TransferSyntax.ExplicitVRLittleEndian, Buffer.concat([
      ex(0x0028, 0x0010, 'US', le16(10240)),
      exLong(0x7fe0, 0x0010, 'OW', Buffer.alloc(0), pixelLength),
    ]));
    const p = new Part10Parser();
    p.write(head);
    const chunk = Buffer.alloc(1024 * 1024, 0x5a);
    const chunkRefs: WeakRef<Buffer>[] = [];
    const before = process.memoryUsage().rss;
    for (let sent = 0; sent < pixelLength; sent += chunk.length) {
      // Fresh buffers for the first chunks, so that their release can be observed.
      const c = sent < 8 * chunk.length ? Buffer.from(chunk) : chunk;
      if (c !== chunk) chunkRefs.push(new WeakRef(c));
      p.write(c);
    }
    const grown = process.memoryUsage().rss - before;
    const obj = p.end();
    assert.ok(grown < 50 * 1024 * 1024, `rss grew by ${grown} bytes`);
    assert.deepEqual(obj.dataset.get(Tags.PixelData)!.bulk, { offset: head.length, length: pixelLength });
    assert.equal(obj.byteLength, head.length + pixelLength);
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    await new Promise((r) => setImmediate(r)); // WeakRef targets live until the current job ends
    gc();
    assert.equal(chunkRefs.length, 8);
    assert.ok(chunkRefs.every((r) => r.deref() === undefined), 'the parser retains no pushed chunk');
    assert.ok(p, 'the parser itself is still alive while its chunks are gone');
  });
});
