import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CodecFailureError, CodecPool } from './codec-pool.ts';
import { PixelDataError } from './pixels.ts';
import { parsePart10 } from '../dicom/part10-parser.ts';
import { Tags } from '../dicom/dataset.ts';
import { havePydicomFiles, pydicomTestFiles } from '../../test/support/pydicom-files.ts';

const px = { Rows: 64, Columns: 64, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, HighBit: 15, PixelRepresentation: 1, PhotometricInterpretation: 'MONOCHROME2' };

function jpegLSFrame(): { frame: Buffer; transferSyntaxUID: string } {
  const file = readFileSync(`${pydicomTestFiles}/MR_small_jpeg_ls_lossless.dcm`);
  const obj = parsePart10(file);
  const f = obj.dataset.get(Tags.PixelData)!.fragments![0]!;
  return { frame: file.subarray(f.offset, f.offset + f.length), transferSyntaxUID: obj.transferSyntaxUID };
}

describe('CodecPool', { skip: !havePydicomFiles && 'pydicom test files missing' }, () => {
  it('fails the frame of a worker that runs out of memory with CodecFailureError, and starts a new worker for the next', async () => {
    const { frame, transferSyntaxUID } = jpegLSFrame();
    // A heap of 1 MB cannot even load a codec: the worker dies of it.
    const pool = new CodecPool({ size: 1, maxHeapMb: 1 });
    try {
      await assert.rejects(pool.decode(frame, transferSyntaxUID, px), (e: unknown) => e instanceof CodecFailureError && /memory/.test(e.message));
      assert.equal(pool.replaced, 1);
      await assert.rejects(pool.decode(frame, transferSyntaxUID, px), CodecFailureError);
      assert.equal(pool.replaced, 2, 'a fresh worker took the second frame');
    } finally {
      await pool.close();
    }
  });

  it('decodes frames queued beyond its workers, one a worker at a time, and fails only the bad one', async () => {
    const { frame, transferSyntaxUID } = jpegLSFrame();
    const pool = new CodecPool({ size: 2 });
    try {
      const bad = Buffer.from(frame);
      bad.fill(0, 0, 16);
      const results = await Promise.allSettled([frame, frame, bad, frame, frame].map((f) => pool.decode(f, transferSyntaxUID, px)));
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      assert.ok((results[2] as PromiseRejectedResult).reason instanceof PixelDataError);
      for (const r of results) if (r.status === 'fulfilled') assert.equal(r.value.bytes.length, 64 * 64 * 2);
      assert.equal(pool.replaced, 1);
    } finally {
      await pool.close();
    }
  });

  it('encodes losslessly to JPEG-LS, JPEG 2000 and HTJ2K, and decodes each back to the same samples', async () => {
    const pool = new CodecPool();
    try {
      const samples = Buffer.alloc(64 * 64 * 2);
      for (let i = 0; i < 64 * 64; i++) samples.writeInt16LE(((i * 7919) % 4000) - 1024, i * 2);
      for (const ts of ['1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.201']) {
        const encoded = await pool.encode(samples, ts, px);
        assert.ok(encoded.length < samples.length, ts);
        const back = await pool.decode(encoded, ts, px);
        assert.ok(back.bytes.equals(samples), `${ts} round trip`);
      }
    } finally {
      await pool.close();
    }
  });
});
