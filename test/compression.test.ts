/**
 * Lossless compression at rest (storage.compression): objects stored over STOW-RS, re-encoded
 * in the background, checked against their original samples, and sent back in the original
 * syntax on request.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { havePydicomFiles, readTestFile } from './support/pydicom-files.ts';
import { retrieveInstanceAsStored } from './support/dicomweb-client.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { CompressionAtRest } from '../src/archive/compression.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';
import { Tags, TransferSyntax } from '../src/dicom/dataset.ts';
import { createHash } from 'node:crypto';

const CTImageStorage = '1.2.840.10008.5.1.4.1.1.2';

function pixelData(file: Buffer): Buffer {
  const el = parsePart10(file).dataset.get(Tags.PixelData)!;
  return el.value ?? file.subarray(el.bulk!.offset, el.bulk!.offset + el.bulk!.length);
}

/** A synthetic CT whose header says 12 bits stored while its samples use all 16: no 12-bit codec keeps them. */
function overflowing12Bit(): { file: Buffer; uids: { study: string; series: string; sop: string } } {
  const made = syntheticInstance({ PatientID: 'COMPRESS-3', Rows: 16, Columns: 16 });
  const file = Buffer.from(made.file);
  const obj = parsePart10(file);
  for (const [tag, value] of [[Tags.BitsStored, 12], [Tags.HighBit, 11]] as const) {
    const el = obj.dataset.get(tag)!;
    // Explicit VR little endian, short form: the value follows an 8-byte header.
    const at = file.indexOf(Buffer.from([tag >>> 16 & 0xff, tag >>> 24, tag & 0xff, (tag >>> 8) & 0xff, 0x55, 0x53]));
    assert.ok(at > 0 && el.value);
    file.writeUInt16LE(value, at + 8);
  }
  const pd = obj.dataset.get(Tags.PixelData)!.bulk!;
  for (let i = 0; i < pd.length; i += 2) file.writeUInt16LE(0xf000 | (i & 0xfff), pd.offset + i);
  return { file, uids: made.uids };
}

for (const db of testDatabases()) describe(`Lossless compression at rest (${db.name})`, { skip: !havePydicomFiles && 'pydicom test files missing' }, () => {
  let atrium: RunningAtrium;
  let compression: CompressionAtRest;
  let cleanup: (() => Promise<void>) | undefined;

  before(async () => {
    const opened = await db.open();
    cleanup = opened.cleanup;
    atrium = await startAtrium({
      index: opened.config,
      configure: (c) => (c.storageCompression = [{ transferSyntax: TransferSyntax.JPEGLSLossless, sites: ['CHU-NORD'], sopClasses: [CTImageStorage] }]),
    });
    compression = new CompressionAtRest(atrium.archive, atrium.config.storageCompression, pino({ level: 'silent' }), 100, 0);
  });

  after(async () => {
    await compression?.stop();
    await atrium?.close();
    await cleanup?.();
  });

  it('keeps new CT objects of a site with a rule in JPEG-LS lossless after ingest, sends the original syntax with the original samples on request, and keeps the original\'s hash', async () => {
    const ct = readTestFile('CT_small.dcm');
    const multi = syntheticInstance({ PatientID: 'COMPRESS-1', Rows: 128, Columns: 96, NumberOfFrames: 4 });
    const other = syntheticInstance({ PatientID: 'COMPRESS-2', Rows: 32, Columns: 32 });
    const res = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [ct, multi.file]);
    assert.ok(res.status === 200 || res.status === 202, await res.text());
    assert.ok((await stowFiles(atrium.dicomweb, atrium.tokens['CLIN-SUD']!, [other.file])).status < 300);
    const ctSop = parsePart10(ct).dataset.get(Tags.SOPInstanceUID)!.value!.toString('latin1').replace(/\0$/, '');
    // The acknowledgement did not wait for compression: stored as received.
    const before = await Promise.all([ctSop, multi.uids.sop].map((sop) => atrium.archive.index.findInstanceBySOPInstanceUID(sop)));
    assert.deepEqual(before.map((i) => i!.TransferSyntaxUID), [TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ExplicitVRLittleEndian]);

    await compression.drain();

    for (const [i, original] of [ct, multi.file].entries()) {
      const was = before[i]!;
      const now = (await atrium.archive.index.findInstanceBySOPInstanceUID(was.SOPInstanceUID))!;
      assert.equal(now.TransferSyntaxUID, TransferSyntax.JPEGLSLossless);
      assert.ok(now.size < was.size, `${now.size} < ${was.size}`);
      assert.deepEqual(now.layout.original, { TransferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian, size: was.size, sha256: createHash('sha256').update(original).digest('hex') });
      assert.equal(await atrium.archive.store.stat(was.blobKey), undefined, 'the uncompressed file is gone');
      const uids = { study: now.StudyInstanceUID, series: now.SeriesInstanceUID, sop: now.SOPInstanceUID };
      const asStored = await retrieveInstanceAsStored(atrium.dicomweb, atrium.tokens['CHU-NORD']!, uids);
      assert.equal(parsePart10(asStored).transferSyntaxUID, TransferSyntax.JPEGLSLossless);
      const asReceived = await retrieveInstanceAsStored(atrium.dicomweb, atrium.tokens['CHU-NORD']!, uids, TransferSyntax.ExplicitVRLittleEndian);
      assert.equal(parsePart10(asReceived).transferSyntaxUID, TransferSyntax.ExplicitVRLittleEndian);
      assert.ok(pixelData(asReceived).equals(pixelData(original)), 'the original samples');
    }
    // Another site, no rule: as received.
    assert.equal((await atrium.archive.index.findInstanceBySOPInstanceUID(other.uids.sop))!.TransferSyntaxUID, TransferSyntax.ExplicitVRLittleEndian);
    assert.ok(compression.stats.bytesAfter * 2 < compression.stats.bytesBefore, JSON.stringify(compression.stats));
  });

  it('compresses in the background once started, with nobody draining it', async () => {
    compression.start();
    const slice = syntheticInstance({ PatientID: 'COMPRESS-4', Rows: 64, Columns: 64 });
    assert.ok((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [slice.file])).status < 300);
    let ts = '';
    for (let i = 0; i < 300 && ts !== TransferSyntax.JPEGLSLossless; i++) {
      await new Promise((r) => setTimeout(r, 100));
      ts = (await atrium.archive.index.findInstanceBySOPInstanceUID(slice.uids.sop))!.TransferSyntaxUID;
    }
    assert.equal(ts, TransferSyntax.JPEGLSLossless);
    await compression.stop();
  });

  it('keeps the original when the compressed frames would not decode to its samples', async () => {
    const bad = overflowing12Bit();
    assert.ok((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [bad.file])).status < 300);
    const was = (await atrium.archive.index.findInstanceBySOPInstanceUID(bad.uids.sop))!;
    const failedBefore = compression.stats.failedVerification + compression.stats.skipped;
    await compression.drain();
    const now = (await atrium.archive.index.findInstanceBySOPInstanceUID(bad.uids.sop))!;
    assert.equal(now.TransferSyntaxUID, TransferSyntax.ExplicitVRLittleEndian);
    assert.equal(now.blobKey, was.blobKey);
    assert.equal(now.layout.original, undefined);
    assert.equal(compression.stats.failedVerification + compression.stats.skipped, failedBefore + 1);
    const stored = await retrieveInstanceAsStored(atrium.dicomweb, atrium.tokens['CHU-NORD']!, bad.uids);
    assert.ok(pixelData(stored).equals(pixelData(bad.file)));
  });
});
