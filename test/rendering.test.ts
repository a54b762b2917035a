/**
 * Rendered images and pixel data of objects whose pixels need more than reading a byte range:
 * a deflated dataset (1.2.840.10008.1.2.1.99, pydicom's image_dfl.dcm), checked against DCMTK
 * (dcmconv inflates it, dcm2pnm renders it).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { haveDcmtk } from './support/dcmtk.ts';
import { havePydicomFiles, pydicomTestFiles } from './support/pydicom-files.ts';
import { splitMultipart } from './support/dicomweb-client.ts';
import { stowFiles } from './support/stow.ts';
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

/** The pixel data value of a Part 10 file (native). */
function pixelsOf(bytes: Buffer): Buffer {
  const el = parsePart10(bytes).dataset.get(Tags.PixelData)!;
  return el.value ?? bytes.subarray(el.bulk!.offset, el.bulk!.offset + el.bulk!.length);
}

/** The largest difference between two same-sized pictures, channel by channel. */
function largestDifference(a: { width: number; height: number; data: Buffer }, b: { width: number; height: number; data: Buffer }): number {
  assert.deepEqual([a.width, a.height], [b.width, b.height]);
  let worst = 0;
  for (let i = 0; i < a.data.length; i++) if (i % 4 !== 3) worst = Math.max(worst, Math.abs(a.data[i]! - b.data[i]!));
  return worst;
}

describe('Rendered images and pixel data of a deflated object', { skip }, () => {
  let atrium: RunningAtrium;
  let work: string;
  let token: string;
  const get = (url: string, accept: string) => fetch(url, { headers: { authorization: `Bearer ${token}`, accept } });

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'atrium-rendering-'));
    atrium = await startAtrium();
    token = atrium.tokens['CHU-NORD']!;
  });

  after(async () => {
    await atrium?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('renders it (instance, frame, series, thumbnail) as DCMTK renders it, and answers its pixel data per instance and series as DCMTK inflates it', async () => {
    const file = path.join(pydicomTestFiles, 'image_dfl.dcm');
    const bytes = readFileSync(file);
    assert.equal(parsePart10(bytes).transferSyntaxUID, TransferSyntax.DeflatedExplicitVRLittleEndian);
    assert.ok((await stowFiles(atrium.dicomweb, token, [bytes])).status < 300);
    const uids = uidsOf(bytes);
    const series = `${atrium.dicomweb}/studies/${uids.study}/series/${uids.series}`;
    const instance = `${series}/instances/${uids.sop}`;

    // DCMTK's picture: the same VOI as Atrium's default for an image without a window (min-max).
    const reference = path.join(work, 'dfl.png');
    execFileSync('dcm2pnm', ['+on', '+Wm', file, reference], { stdio: 'pipe' });
    const want = PNG.sync.read(readFileSync(reference));
    for (const url of [`${instance}/rendered`, `${instance}/frames/1/rendered`, `${series}/rendered`, `${atrium.dicomweb}/studies/${uids.study}/rendered`]) {
      const res = await get(url, 'image/png');
      assert.equal(res.status, 200, `${url}: ${await res.clone().text()}`);
      const got = PNG.sync.read(Buffer.from(await res.arrayBuffer()));
      assert.ok(largestDifference(got, want) <= 1, `${url} differs from dcm2pnm's picture`);
    }
    const thumbnail = await get(`${instance}/thumbnail`, 'image/jpeg');
    assert.equal(thumbnail.status, 200);
    assert.equal(thumbnail.headers.get('content-type'), 'image/jpeg');

    // The pixel data, as dcmconv inflates it.
    const inflated = path.join(work, 'dfl-le.dcm');
    execFileSync('dcmconv', ['+te', file, inflated], { stdio: 'pipe' });
    const samples = pixelsOf(readFileSync(inflated));
    for (const url of [`${instance}/pixeldata`, `${series}/pixeldata`]) {
      const res = await get(url, `multipart/related; type="application/octet-stream"; transfer-syntax=${TransferSyntax.ExplicitVRLittleEndian}`);
      assert.equal(res.status, 200, `${url}: ${await res.clone().text()}`);
      const parts = splitMultipart(Buffer.from(await res.arrayBuffer()), res.headers.get('content-type')!);
      assert.equal(parts.length, 1);
      assert.ok(parts[0]!.equals(samples), `${url}: the inflated samples`);
    }
  });
});

describe('Rendered PALETTE COLOR images', { skip }, () => {
  let atrium: RunningAtrium;
  let work: string;
  let token: string;

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'atrium-palette-'));
    // Written by pydicom, a writer other than Atrium's (test/support/palette-images.py).
    execFileSync('/usr/bin/python3', [path.join(import.meta.dirname, 'support', 'palette-images.py'), work], { stdio: 'pipe' });
    atrium = await startAtrium();
    token = atrium.tokens['CHU-NORD']!;
  });

  after(async () => {
    await atrium?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const rendered = async (name: string, accept = 'image/png') => {
    const bytes = readFileSync(path.join(work, name));
    assert.ok((await stowFiles(atrium.dicomweb, token, [bytes])).status < 300, name);
    const uids = uidsOf(bytes);
    const res = await fetch(`${atrium.dicomweb}/studies/${uids.study}/series/${uids.series}/instances/${uids.sop}/rendered`, { headers: { authorization: `Bearer ${token}`, accept } });
    assert.equal(res.status, 200, `${name}: ${await res.clone().text()}`);
    return Buffer.from(await res.arrayBuffer());
  };
  const dcmtkPicture = (name: string) => {
    const out = path.join(work, `${name}.png`);
    execFileSync('dcm2pnm', ['+on', path.join(work, name), out], { stdio: 'pipe' });
    return PNG.sync.read(readFileSync(out));
  };

  it('maps the stored values through the red, green and blue tables as DCMTK does (8-bit values, and 12-bit values with tables starting above 0)', async () => {
    for (const name of ['palette-8bit.dcm', 'palette-16bit.dcm']) {
      const got = PNG.sync.read(await rendered(name));
      const want = dcmtkPicture(name);
      assert.ok(largestDifference(got, want) <= 1, `${name} differs from dcm2pnm's picture`);
      // A colour picture, not the indices in grey.
      assert.ok(Array.from({ length: got.width * got.height }, (_, i) => i * 4).some((i) => got.data[i] !== got.data[i + 1] || got.data[i] !== got.data[i + 2]), name);
    }
    const jpeg = await rendered('palette-8bit.dcm', 'image/jpeg');
    assert.equal(jpeg.subarray(0, 2).toString('hex'), 'ffd8');
  });

  it('expands a segmented palette (discrete and linear segments) as its expanded twin is rendered by DCMTK, which reads no segmented palette', async () => {
    const got = PNG.sync.read(await rendered('palette-segmented.dcm'));
    const want = dcmtkPicture('palette-segmented-expanded.dcm');
    assert.ok(largestDifference(got, want) <= 1, 'the segmented palette differs from its expanded twin');
  });
});
