import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tags, TransferSyntax, tag, type ByteRange, type DicomDataset, type DicomElement, type ParsedObject } from './dataset.ts';
import { parsePart10 } from './part10-parser.ts';
import { ATRIUM_IMPLEMENTATION_CLASS_UID, buildPart10, encodeDataset, writePart10, type WritableTransferSyntax } from './part10-writer.ts';

const pydicomFiles = '/usr/lib/python3/dist-packages/pydicom/data/test_files/';
const haveFiles = existsSync(pydicomFiles);
const haveDcmdump = spawnSync('dcmdump', ['--version']).status === 0;
if (!haveFiles) console.warn(`\n!!! ${pydicomFiles} is missing: round trips of real DICOM files are SKIPPED !!!\n`);
if (!haveDcmdump) console.warn('\n!!! dcmdump (DCMTK) is not installed: checks against DCMTK are SKIPPED !!!\n');
const file = (name: string) => readFileSync(pydicomFiles + name);

async function collect(gen: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of gen) parts.push(b);
  return Buffer.concat(parts);
}

async function transcode(whole: Buffer, ts: WritableTransferSyntax, readRange?: (r: ByteRange) => AsyncIterable<Buffer> | Promise<Buffer> | Buffer): Promise<Buffer> {
  const obj = parsePart10(whole);
  return collect(writePart10({ obj, readRange: readRange ?? ((r) => whole.subarray(r.offset, r.offset + r.length)) }, { transferSyntaxUID: ts }));
}

const el = (t: number, vr: DicomElement['vr'], value: Buffer): DicomElement => ({ tag: t, vr, value });
const dataset = (...els: DicomElement[]): DicomDataset => new Map(els.map((e) => [e.tag, e]));
const text = (ds: DicomDataset, t: number) => ds.get(t)?.value?.toString('latin1').replace(/[\0 ]+$/, '');

function pixelBytes(buf: Buffer): Buffer {
  const px = parsePart10(buf).dataset.get(Tags.PixelData);
  if (!px) return Buffer.alloc(0); // RT plans have no image
  return px.value ?? buf.subarray(px.bulk!.offset, px.bulk!.offset + px.bulk!.length);
}

describe('writePart10 checked by DCMTK', { skip: !haveFiles || !haveDcmdump ? 'pydicom files or dcmdump missing' : false }, () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'atrium-part10-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** The dataset as DCMTK reads it, values only: lengths and sequence encodings may differ. */
  function dumpValues(path: string): string[] {
    const r = spawnSync('dcmdump', ['+L', '-q', path], { encoding: 'utf8' });
    assert.equal(r.status, 0, `dcmdump failed on ${path}: ${r.stderr}`);
    const lines = r.stdout.split('\n');
    const start = lines.findIndex((l) => l.includes('# Dicom-Data-Set'));
    return lines.slice(start + 2)
      // Pixel data is compared as bytes below: in implicit VR, DCMTK shows an OB value as OW words.
      .filter((l) => !/,0000\) UL|ItemDelimitationItem|SequenceDelimitationItem|^\(7fe0,0010\)/.test(l) && l.trim() !== '')
      .map((l) => l.replace(/ *#.*$/, '').replace(/\((Sequence|Item) with (explicit|undefined) length.*/, '').trim());
  }

  for (const name of ['MR_small_implicit.dcm', 'MR_small_bigendian.dcm', 'CT_small.dcm', 'rtplan.dcm', 'image_dfl.dcm']) {
    for (const ts of [TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian] as const) {
      it(`re-encodes ${name} as ${ts} with every value DCMTK reads unchanged`, async () => {
        const out = await transcode(file(name), ts);
        const path = join(dir, `${name}.${ts}.dcm`);
        writeFileSync(path, out);
        const check = spawnSync('dcmdump', ['-q', path], { encoding: 'utf8' });
        assert.equal(check.status, 0, check.stderr);
        assert.equal(check.stderr, '', 'DCMTK has no warning about the output');
        const meta = execFileSync('dcmdump', ['-q', '-M', '+P', 'TransferSyntaxUID', '+P', 'MediaStorageSOPInstanceUID', path], { encoding: 'utf8' });
        assert.ok(meta.includes(ts === TransferSyntax.ExplicitVRLittleEndian ? '=LittleEndianExplicit' : '=LittleEndianImplicit'), meta);
        const original = execFileSync('dcmdump', ['-q', '+P', 'PatientName', '+P', 'Rows', '+P', 'SOPInstanceUID', pydicomFiles + name], { encoding: 'utf8' });
        const copy = execFileSync('dcmdump', ['-q', '+P', 'PatientName', '+P', 'Rows', '+P', 'SOPInstanceUID', path], { encoding: 'utf8' });
        assert.equal(copy, original);
        assert.deepEqual(dumpValues(path), dumpValues(pydicomFiles + name));
        assert.ok(pixelBytes(out).equals(pixelBytes(file(name.replace('_bigendian', '')))), 'pixel data bytes as in the little endian original');
      });
    }
  }
});

describe('writePart10', { skip: haveFiles ? false : 'pydicom test files missing' }, () => {
  it('turns big endian pixel data into the bytes of its little endian twin', async () => {
    const out = parsePart10(await transcode(file('MR_small_bigendian.dcm'), TransferSyntax.ExplicitVRLittleEndian));
    const twinBuf = file('MR_small.dcm');
    const twin = parsePart10(twinBuf).dataset.get(Tags.PixelData)!.bulk!;
    const outBuf = await transcode(file('MR_small_bigendian.dcm'), TransferSyntax.ExplicitVRLittleEndian);
    const px = out.dataset.get(Tags.PixelData)!.bulk!;
    assert.equal(px.length, twin.length);
    assert.ok(outBuf.subarray(px.offset, px.offset + px.length).equals(twinBuf.subarray(twin.offset, twin.offset + twin.length)));
    assert.equal(out.dataset.get(Tags.Rows)?.value?.readUInt16LE(0), 64);
  });

  it('swaps big endian bulk values correctly when readRange yields chunks cut inside a word', async () => {
    const whole = file('MR_small_bigendian.dcm');
    const oddChunks = async function* (r: ByteRange) {
      for (let i = 0; i < r.length; i += 3) yield whole.subarray(r.offset + i, r.offset + Math.min(r.length, i + 3));
    };
    const a = await transcode(whole, TransferSyntax.ExplicitVRLittleEndian);
    const b = await transcode(whole, TransferSyntax.ExplicitVRLittleEndian, oddChunks);
    const c = await transcode(whole, TransferSyntax.ExplicitVRLittleEndian, async (r) => whole.subarray(r.offset, r.offset + r.length));
    assert.ok(a.equals(b));
    assert.ok(a.equals(c));
  });

  it('writes a new meta header: group length, transfer syntax, implementation, other elements kept', async () => {
    const original = parsePart10(file('CT_small.dcm'));
    const buf = await collect(writePart10(
      { obj: original, readRange: (r) => file('CT_small.dcm').subarray(r.offset, r.offset + r.length) },
      { transferSyntaxUID: TransferSyntax.ImplicitVRLittleEndian, implementationClassUID: '1.2.3.4' },
    ));
    const copy = parsePart10(buf);
    assert.equal(copy.transferSyntaxUID, TransferSyntax.ImplicitVRLittleEndian);
    assert.equal(copy.explicitVR, false);
    assert.equal(text(copy.meta, Tags.ImplementationClassUID), '1.2.3.4');
    assert.equal(text(copy.meta, Tags.MediaStorageSOPInstanceUID), text(original.meta, Tags.MediaStorageSOPInstanceUID));
    const gl = copy.meta.get(Tags.FileMetaInformationGroupLength)!.value!.readUInt32LE(0);
    assert.equal(copy.datasetOffset, 132 + 12 + gl);
    assert.equal(text(copy.dataset, Tags.PatientName), 'CompressedSamples^CT1');
  });

  it('fails when readRange delivers fewer bytes than the range', async () => {
    const whole = file('MR_small.dcm');
    await assert.rejects(transcode(whole, TransferSyntax.ImplicitVRLittleEndian, (r) => whole.subarray(r.offset, r.offset + r.length - 2)), /read 8190 bytes/);
  });

  it('refuses encapsulated objects', async () => {
    await assert.rejects(transcode(file('JPEG2000.dcm'), TransferSyntax.ExplicitVRLittleEndian), /encapsulated/);
  });

  it('yields the header before reading a bulk value, and bulk values in pieces', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 1);
    const obj: ParsedObject = {
      meta: dataset(el(Tags.TransferSyntaxUID, 'UI', Buffer.from('1.2.840.10008.1.2.1\0')), el(Tags.MediaStorageSOPInstanceUID, 'UI', Buffer.from('1.2\0'))),
      dataset: new Map([[Tags.PixelData, { tag: Tags.PixelData, vr: 'OW', bulk: { offset: 0, length: big.length } }]]),
      transferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian, littleEndian: true, explicitVR: true, deflated: false, datasetOffset: 0, byteLength: big.length,
    };
    let reads = 0;
    const sizes: number[] = [];
    for await (const chunk of writePart10({ obj, readRange: (r) => { reads++; return Promise.resolve(big.subarray(r.offset, r.offset + r.length)); } }, { transferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian })) {
      if (sizes.length === 0) assert.equal(reads, 0, 'the header comes before any bulk read');
      sizes.push(chunk.length);
    }
    assert.equal(reads, 1);
    assert.ok(Math.max(...sizes) <= 1024 * 1024, `largest piece ${Math.max(...sizes)} bytes`);
  });
});

describe('encodeDataset', () => {
  it('encodes explicit VR little endian with 2-byte lengths for short VRs and 4-byte lengths for OB and SQ', () => {
    const ds = dataset(
      el(Tags.Rows, 'US', Buffer.from([0x00, 0x02])),
      el(tag(0x0009, 0x1001), 'OB', Buffer.from([1, 2])),
    );
    assert.deepEqual(encodeDataset(ds, true, true), Buffer.from([
      0x09, 0x00, 0x01, 0x10, 0x4f, 0x42, 0, 0, 2, 0, 0, 0, 1, 2,
      0x28, 0x00, 0x10, 0x00, 0x55, 0x53, 2, 0, 0x00, 0x02,
    ]), 'elements come in tag order');
  });

  it('encodes implicit VR and big endian headers', () => {
    const ds = dataset(el(Tags.Rows, 'US', Buffer.from([0x02, 0x00])));
    assert.deepEqual(encodeDataset(ds, true, false), Buffer.from([0x28, 0x00, 0x10, 0x00, 2, 0, 0, 0, 0x02, 0x00]));
    assert.deepEqual(encodeDataset(ds, false, true), Buffer.from([0x00, 0x28, 0x00, 0x10, 0x55, 0x53, 0, 2, 0x02, 0x00]));
  });

  it('pads odd values: UI with NUL, text with a space', () => {
    const ds = dataset(el(Tags.SOPInstanceUID, 'UI', Buffer.from('1.2.3')), el(Tags.Modality, 'CS', Buffer.from('MRI')));
    const out = encodeDataset(ds, true, true);
    assert.equal(out.readUInt16LE(6), 6);
    assert.deepEqual(out.subarray(8, 14), Buffer.from('1.2.3\0'));
    assert.equal(out.readUInt16LE(20), 4);
    assert.deepEqual(out.subarray(22), Buffer.from('MRI '));
  });

  it('writes sequences and items of undefined length that the parser reads back', () => {
    const item = dataset(el(Tags.ReferencedSOPInstanceUID, 'UI', Buffer.from('1.2.3\0')));
    const ds: DicomDataset = new Map([[Tags.ReferencedSOPSequence, { tag: Tags.ReferencedSOPSequence, vr: 'SQ', items: [item, new Map()] }]]);
    const bytes = encodeDataset(ds, true, true);
    assert.equal(bytes.readUInt32LE(8), 0xffffffff);
    const obj = parsePart10(buildPart10({ MediaStorageSOPClassUID: '1.2', MediaStorageSOPInstanceUID: '1.2.3', TransferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian }, bytes));
    const sq = obj.dataset.get(Tags.ReferencedSOPSequence)!;
    assert.equal(sq.items?.length, 2);
    assert.equal(text(sq.items[0]!, Tags.ReferencedSOPInstanceUID), '1.2.3');
    assert.equal(sq.items[1]!.size, 0);
  });

  it('writes a value too long for a 2-byte length as UN', () => {
    const ds = dataset(el(tag(0x0028, 0x3006), 'US', Buffer.alloc(70000)));
    const out = encodeDataset(ds, true, true);
    assert.equal(out.toString('latin1', 4, 6), 'UN');
    assert.equal(out.readUInt32LE(8), 70000);
  });

  it('refuses elements whose value is not in memory', () => {
    const ds: DicomDataset = new Map([[Tags.PixelData, { tag: Tags.PixelData, vr: 'OW', bulk: { offset: 0, length: 10 } }]]);
    assert.throws(() => encodeDataset(ds, true, true), /no value in memory/);
  });
});

describe('buildPart10', () => {
  it('prefixes preamble, "DICM" and a complete meta header with an exact group length', () => {
    const body = encodeDataset(dataset(el(Tags.Modality, 'CS', Buffer.from('OT'))), true, false);
    const buf = buildPart10({ MediaStorageSOPClassUID: '1.2.840.10008.5.1.4.1.1.7', MediaStorageSOPInstanceUID: '1.2.3.4.5', TransferSyntaxUID: TransferSyntax.ImplicitVRLittleEndian }, body);
    assert.equal(buf.toString('latin1', 128, 132), 'DICM');
    const obj = parsePart10(buf);
    assert.equal(obj.transferSyntaxUID, TransferSyntax.ImplicitVRLittleEndian);
    assert.equal(text(obj.meta, Tags.MediaStorageSOPInstanceUID), '1.2.3.4.5');
    assert.equal(text(obj.meta, Tags.ImplementationClassUID), ATRIUM_IMPLEMENTATION_CLASS_UID);
    assert.deepEqual(obj.meta.get(tag(0x0002, 0x0001))?.value, Buffer.from([0, 1]));
    const gl = obj.meta.get(Tags.FileMetaInformationGroupLength)!.value!.readUInt32LE(0);
    assert.equal(obj.datasetOffset, 144 + gl);
    assert.deepEqual(buf.subarray(obj.datasetOffset), body);
    assert.equal(text(obj.dataset, Tags.Modality), 'OT');
  });
});
