/**
 * The codecs dcmjs-codecs brings to the codec workers (src/archive/codec-worker.ts): JPEG
 * extended 12-bit decoding, checked sample for sample against DCMTK's dcmdjpeg on pydicom's
 * JPGExtended.dcm (frames, the instance re-encoded, rendered), and RLE Lossless encoding,
 * checked by DCMTK's dcmdrle decoding Atrium's RLE objects back to the original samples
 * (16-bit grey in several frames, signed 16-bit, 8-bit RGB of odd size).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { haveDcmtk } from './support/dcmtk.ts';
import { havePydicomFiles, pydicomTestFiles } from './support/pydicom-files.ts';
import { splitMultipart } from './support/dicomweb-client.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';
import { Tags, TransferSyntax } from '../src/dicom/dataset.ts';
import { stringValue, valueContextOf } from '../src/dicom/values.ts';

const skip = !haveDcmtk ? 'DCMTK is not installed (apt-get install dcmtk)' : !havePydicomFiles ? 'pydicom test files are missing (apt-get install python3-pydicom)' : false;

function uidsOf(bytes: Buffer): { study: string; series: string; sop: string } {
  const obj = parsePart10(bytes);
  const ctx = valueContextOf(obj.dataset, obj.littleEndian);
  const uid = (t: number) => stringValue(obj.dataset, t, ctx)!;
  return { study: uid(Tags.StudyInstanceUID), series: uid(Tags.SeriesInstanceUID), sop: uid(Tags.SOPInstanceUID) };
}

/** The pixel data value of a native Part 10 file, and one of its string attributes. */
function nativeOf(bytes: Buffer): { pixels: Buffer; get: (t: number) => string | undefined; ts: string } {
  const obj = parsePart10(bytes);
  const el = obj.dataset.get(Tags.PixelData)!;
  const ctx = valueContextOf(obj.dataset, obj.littleEndian);
  return { pixels: el.value ?? bytes.subarray(el.bulk!.offset, el.bulk!.offset + el.bulk!.length), get: (t) => stringValue(obj.dataset, t, ctx), ts: obj.transferSyntaxUID };
}

describe('JPEG extended 12-bit decoding and RLE encoding (dcmjs-codecs, in the codec workers)', { skip }, () => {
  let atrium: RunningAtrium;
  let work: string;
  let token: string;
  const get = (url: string, accept: string) => fetch(url, { headers: { authorization: `Bearer ${token}`, accept } });
  const instanceUrl = (u: { study: string; series: string; sop: string }) => `${atrium.dicomweb}/studies/${u.study}/series/${u.series}/instances/${u.sop}`;
  /** The instance in a transfer syntax, as one Part 10 object. */
  const retrieve = async (u: { study: string; series: string; sop: string }, ts: string): Promise<Buffer> => {
    const res = await get(instanceUrl(u), `multipart/related; type="application/dicom"; transfer-syntax=${ts}`);
    assert.equal(res.status, 200, await res.clone().text());
    const [part] = splitMultipart(Buffer.from(await res.arrayBuffer()), res.headers.get('content-type')!);
    return part!;
  };

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'atrium-dcmjs-codecs-'));
    atrium = await startAtrium();
    token = atrium.tokens['CHU-NORD']!;
  });

  after(async () => {
    await atrium?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('decodes a 12-bit JPEG (process 4) as dcmdjpeg does: frames, the instance in explicit VR little endian, and a rendered picture', async () => {
    const file = path.join(pydicomTestFiles, 'JPGExtended.dcm');
    const bytes = readFileSync(file);
    assert.equal(parsePart10(bytes).transferSyntaxUID, TransferSyntax.JPEGExtended12Bit);
    assert.ok((await stowFiles(atrium.dicomweb, token, [bytes])).status < 300);
    execFileSync('dcmdjpeg', [file, path.join(work, 'ext-ref.dcm')], { stdio: 'pipe' });
    const want = nativeOf(readFileSync(path.join(work, 'ext-ref.dcm'))).pixels;
    const u = uidsOf(bytes);

    const frames = await get(`${instanceUrl(u)}/frames/1`, `multipart/related; type="application/octet-stream"; transfer-syntax=${TransferSyntax.ExplicitVRLittleEndian}`);
    assert.equal(frames.status, 200, await frames.clone().text());
    const [frame] = splitMultipart(Buffer.from(await frames.arrayBuffer()), frames.headers.get('content-type')!);
    assert.ok(frame!.equals(want), 'the decoded frame is dcmdjpeg\'s');

    const native = nativeOf(await retrieve(u, TransferSyntax.ExplicitVRLittleEndian));
    assert.equal(native.ts, TransferSyntax.ExplicitVRLittleEndian);
    assert.ok(native.pixels.equals(want), 'the re-encoded instance holds dcmdjpeg\'s samples');

    const png = await get(`${instanceUrl(u)}/rendered`, 'image/png');
    assert.equal(png.status, 200, await png.clone().text());
    const picture = PNG.sync.read(Buffer.from(await png.arrayBuffer()));
    assert.deepEqual([picture.width, picture.height], [256, 1024], 'the image\'s 256 columns and 1024 rows');
  });

  it('sends objects in RLE Lossless on request, which dcmdrle decodes back to the original samples (16-bit grey in 3 frames, signed 16-bit, 8-bit RGB of odd size)', async () => {
    const grey = syntheticInstance({ PatientID: 'RLE-1', Rows: 40, Columns: 30, NumberOfFrames: 3 });
    const mr = readFileSync(path.join(pydicomTestFiles, 'MR_small.dcm'));
    const rgb = readFileSync(path.join(pydicomTestFiles, 'SC_rgb_small_odd.dcm'));
    assert.ok((await stowFiles(atrium.dicomweb, token, [grey.file, mr, rgb])).status < 300);
    for (const [name, original, u] of [['grey', grey.file, grey.uids], ['mr', mr, uidsOf(mr)], ['rgb', rgb, uidsOf(rgb)]] as const) {
      const rle = await retrieve(u, TransferSyntax.RLELossless);
      assert.equal(parsePart10(rle).transferSyntaxUID, TransferSyntax.RLELossless, name);
      const out = path.join(work, `${name}.rle.dcm`);
      writeFileSync(out, rle);
      execFileSync('dcmdrle', [out, `${out}.dec`], { stdio: 'pipe' });
      const decoded = nativeOf(readFileSync(`${out}.dec`));
      const want = nativeOf(original);
      assert.ok(decoded.pixels.subarray(0, want.pixels.length).equals(want.pixels) && decoded.pixels.length - want.pixels.length <= 1, `${name}: dcmdrle gives the original samples back`);
      assert.equal(decoded.get(Tags.PhotometricInterpretation), want.get(Tags.PhotometricInterpretation), name);
    }
  });
});
