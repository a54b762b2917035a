/**
 * Compressed objects on every way out (WADO-RS frames, instances, rendered; C-GET), decoded
 * in the codec workers and checked sample for sample against DCMTK (dcmdjpeg, dcmdjpls,
 * dcmdrle) or GDCM (gdcmconv) on every compressed pydicom test file and on images made
 * here with DCMTK and GDCM; and what a bad frame or a failing codec does.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { dcmtk, haveDcmtk, startStorescp } from './support/dcmtk.ts';
import { havePydicomFiles, pydicomTestFiles } from './support/pydicom-files.ts';
import { splitMultipart } from './support/dicomweb-client.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';
import { Tags, TransferSyntax } from '../src/dicom/dataset.ts';
import { numberValue, stringValue, valueContextOf } from '../src/dicom/values.ts';
import { decodableCompressedSyntaxes, pixelModuleFrom } from '../src/archive/pixels.ts';
import { CodecPool } from '../src/archive/codec-pool.ts';

const haveGdcm = existsSync('/usr/bin/gdcmconv');
const skip = !haveDcmtk ? 'DCMTK is not installed (apt-get install dcmtk)'
  : !haveGdcm ? 'GDCM is not installed (apt-get install libgdcm-tools)'
    : !havePydicomFiles ? 'pydicom test files are missing (apt-get install python3-pydicom)' : false;

interface Sample {
  name: string;
  file: string;
  transferSyntaxUID: string;
  sop: string;
  study: string;
  series: string;
  frames: number;
  rows: number;
  columns: number;
  /** The pixel data and photometric interpretation of the reference tool's decompressed copy. */
  reference: { pixels: Buffer; photometric: string; tool: string };
}

/** The pixel data value and a string attribute of a Part 10 file. */
function pixelsOf(bytes: Buffer): { pixels: Buffer; get: (tag: number) => string | undefined } {
  const obj = parsePart10(bytes);
  const el = obj.dataset.get(Tags.PixelData)!;
  const pixels = el.value ?? bytes.subarray(el.bulk!.offset, el.bulk!.offset + el.bulk!.length);
  const ctx = valueContextOf(obj.dataset, obj.littleEndian);
  return { pixels, get: (tag) => stringValue(obj.dataset, tag, ctx) };
}

/** Decompressed by DCMTK where it reads the syntax, else by GDCM (JPEG 2000). */
function referenceDecode(file: string, transferSyntaxUID: string, work: string): Sample['reference'] | undefined {
  const out = path.join(work, `ref-${path.basename(file)}`);
  const tool = transferSyntaxUID === TransferSyntax.RLELossless ? 'dcmdrle'
    : transferSyntaxUID.startsWith('1.2.840.10008.1.2.4.8') ? 'dcmdjpls'
      : ['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70'].includes(transferSyntaxUID) ? 'dcmdjpeg' : 'gdcmconv';
  try {
    execFileSync(tool, tool === 'gdcmconv' ? ['--raw', file, out] : [file, out], { stdio: 'pipe' });
  } catch {
    return undefined;
  }
  const bytes = readFileSync(out);
  const { pixels, get } = pixelsOf(bytes);
  const obj = parsePart10(bytes);
  const ctx = valueContextOf(obj.dataset, obj.littleEndian);
  const num = (t: number) => numberValue(obj.dataset, t, ctx);
  // dcmdrle keeps colour planes apart (Planar Configuration 1); Atrium's decoded frames are interleaved, and say so.
  const planar = num(Tags.SamplesPerPixel) === 3 && num(Tags.PlanarConfiguration) === 1;
  return { pixels: planar ? interleaved(pixels, num(Tags.Rows)! * num(Tags.Columns)!, num(Tags.BitsAllocated)! / 8) : pixels, photometric: get(Tags.PhotometricInterpretation)!, tool };
}

/** Planar colour frames (RRR GGG BBB) as interleaved ones (RGB RGB). */
function interleaved(planar: Buffer, pixels: number, bytesPerSample: number): Buffer {
  const frameBytes = pixels * 3 * bytesPerSample;
  const out = Buffer.alloc(planar.length);
  for (let f = 0; f + frameBytes <= planar.length; f += frameBytes) {
    for (let s = 0; s < 3; s++) {
      for (let i = 0; i < pixels; i++) {
        planar.copy(out, f + (i * 3 + s) * bytesPerSample, f + (s * pixels + i) * bytesPerSample, f + (s * pixels + i + 1) * bytesPerSample);
      }
    }
  }
  return out;
}

async function get(url: string, token: string, accept: string): Promise<Response> {
  return fetch(url, { headers: { Authorization: `Bearer ${token}`, Accept: accept } });
}

describe('Compressed pixel data decoded on the way out, as DCMTK and GDCM decode it', { skip }, () => {
  let atrium: RunningAtrium;
  let work: string;
  let token: string;
  let moved: string;
  let dest: Awaited<ReturnType<typeof startStorescp>>;
  const samples: Sample[] = [];
  /** Files the reference tool itself cannot decode: nothing to compare with. */
  const unreferenced: string[] = [];
  const unreadable: string[] = [];
  const url = (s: Sample) => `${atrium.dicomweb}/studies/${s.study}/series/${s.series}/instances/${s.sop}`;

  /** A copy of a file with new study, series and instance UIDs (pydicom's variants share theirs). */
  function withNewUIDs(source: string, name: string): string {
    const copy = path.join(work, name);
    writeFileSync(copy, readFileSync(source));
    execFileSync('dcmodify', ['-nb', '-gst', '-gse', '-gin', '-i', '(0010,0020)=CODEC-1', copy], { stdio: 'pipe' });
    return copy;
  }

  async function add(name: string, file: string): Promise<void> {
    const bytes = readFileSync(file);
    const obj = parsePart10(bytes);
    if (!decodableCompressedSyntaxes.has(obj.transferSyntaxUID)) return;
    const ctx = valueContextOf(obj.dataset, obj.littleEndian);
    const uid = (t: number) => stringValue(obj.dataset, t, ctx)!;
    const reference = referenceDecode(file, obj.transferSyntaxUID, work);
    if (!reference) {
      unreferenced.push(name);
      return;
    }
    const res = await stowFiles(atrium.dicomweb, token, [bytes]);
    assert.ok(res.status === 200 || res.status === 202, `${name}: ${res.status} ${await res.text()}`);
    samples.push({
      name, file, transferSyntaxUID: obj.transferSyntaxUID,
      sop: uid(Tags.SOPInstanceUID), study: uid(Tags.StudyInstanceUID), series: uid(Tags.SeriesInstanceUID),
      frames: Number(stringValue(obj.dataset, Tags.NumberOfFrames, ctx) ?? 1),
      rows: numberValue(obj.dataset, Tags.Rows, ctx)!, columns: numberValue(obj.dataset, Tags.Columns, ctx)!,
      reference,
    });
  }

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'atrium-codecs-'));
    // storescp as it comes accepts uncompressed syntaxes only: a peer that takes nothing else.
    moved = mkdtempSync(path.join(work, 'moved-'));
    dest = await startStorescp('DEST', moved, ['+xi']);
    atrium = await startAtrium({
      dimse: true,
      configure: (c) => (c.peers = [
        { aeTitle: 'GETSCU', site: 'CHU-NORD', may: { store: true, query: true, retrieve: true } },
        { aeTitle: 'DEST', host: '127.0.0.1', port: dest.port, site: 'CHU-NORD', may: { store: false, query: false, retrieve: false } },
      ]),
    });
    token = atrium.tokens['CHU-NORD']!;
    for (const name of readdirSync(pydicomTestFiles).filter((n) => n.endsWith('.dcm')).sort()) {
      let obj;
      try {
        obj = parsePart10(readFileSync(path.join(pydicomTestFiles, name)));
      } catch {
        continue;
      }
      if (!decodableCompressedSyntaxes.has(obj.transferSyntaxUID) || !obj.dataset.has(Tags.PixelData)) continue;
      let copy: string;
      try {
        copy = withNewUIDs(path.join(pydicomTestFiles, name), name);
      } catch {
        unreadable.push(name); // DCMTK cannot read it either (no meta header, broken VRs)
        continue;
      }
      await add(name, copy);
    }
    assert.deepEqual(unreadable, ['SC_rgb_jpeg.dcm']);
    // Made here: what the pydicom files lack (JPEG lossless of 16-bit and multi-frame, JPEG-LS and
    // JPEG 2000 of signed CT, colour and several frames, RLE of a multi-frame).
    const multi = path.join(work, 'multiframe.dcm');
    writeFileSync(multi, syntheticInstance({ Rows: 64, Columns: 48, NumberOfFrames: 3, PatientID: 'CODEC-1' }).file);
    const made: Array<[string, string, string[]]> = [
      ['CT_small.dcm', 'dcmcjpeg', ['+e1']], ['MR_small.dcm', 'dcmcjpeg', ['+el']], ['multiframe.dcm', 'dcmcjpeg', ['+e1']],
      ['CT_small.dcm', 'dcmcjpls', []], ['SC_rgb_small_odd.dcm', 'dcmcjpls', []], ['multiframe.dcm', 'dcmcjpls', []],
      ['CT_small.dcm', 'dcmcrle', []], ['multiframe.dcm', 'dcmcrle', []],
      ['CT_small.dcm', 'gdcmconv', ['--j2k']], ['ExplVR_BigEnd.dcm', 'gdcmconv', ['--j2k']], ['ExplVR_BigEnd.dcm', 'dcmcjpls', []], ['ExplVR_BigEnd.dcm', 'dcmcrle', []], ['multiframe.dcm', 'gdcmconv', ['--j2k']],
    ];
    for (const [source, tool, args] of made) {
      const from = source === 'multiframe.dcm' ? multi : path.join(pydicomTestFiles, source);
      const name = `${tool}${args.join('')}-${source}`;
      const to = path.join(work, `made-${name}`);
      execFileSync(tool, [...args, from, to], { stdio: 'pipe' });
      await add(name, withNewUIDs(to, name));
    }
  });

  after(async () => {
    await atrium?.close();
    await dest?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('answers the frames of every compressed pydicom file and made image as native samples identical to DCMTK\'s or GDCM\'s', async () => {
    assert.ok(samples.length >= 40, `${samples.length} samples`);
    // GDCM refuses this one (a sequence delimiter inside the codestream's fragments).
    assert.deepEqual(unreferenced, ['JPEG2000-embedded-sequence-delimiter.dcm']);
    for (const s of samples) {
      const frameList = Array.from({ length: s.frames }, (_, i) => i + 1).join(',');
      const res = await get(`${url(s)}/frames/${frameList}`, token, `multipart/related; type="application/octet-stream"; transfer-syntax=${TransferSyntax.ExplicitVRLittleEndian}`);
      assert.equal(res.status, 200, `${s.name}: ${await res.clone().text()}`);
      const parts = splitMultipart(Buffer.from(await res.arrayBuffer()), res.headers.get('content-type')!);
      assert.equal(parts.length, s.frames, s.name);
      const got = Buffer.concat(parts);
      // The reference's value may end in a padding byte (an odd length); the frames do not.
      assert.ok(got.length === s.reference.pixels.length || got.length + 1 === s.reference.pixels.length, `${s.name}: ${got.length} bytes of frames`);
      assert.ok(got.equals(s.reference.pixels.subarray(0, got.length)), `${s.name} (${s.transferSyntaxUID}) differs from ${s.reference.tool}'s decoding`);
    }
  });

  it('sends every compressed object re-encoded to explicit VR little endian when asked, with the reference tool\'s samples and photometric interpretation', async () => {
    for (const s of samples) {
      const res = await get(url(s), token, `multipart/related; type="application/dicom"; transfer-syntax=${TransferSyntax.ExplicitVRLittleEndian}`);
      assert.equal(res.status, 200, `${s.name}: ${await res.clone().text()}`);
      const [part] = splitMultipart(Buffer.from(await res.arrayBuffer()), res.headers.get('content-type')!);
      const obj = parsePart10(part!);
      assert.equal(obj.transferSyntaxUID, TransferSyntax.ExplicitVRLittleEndian, s.name);
      const { pixels, get: attr } = pixelsOf(part!);
      assert.ok(pixels.subarray(0, s.reference.pixels.length).equals(s.reference.pixels.subarray(0, pixels.length)), `${s.name}: pixel data differs from ${s.reference.tool}'s`);
      assert.equal(attr(Tags.PhotometricInterpretation), s.reference.photometric, s.name);
      const planar = parsePart10(part!).dataset.get(Tags.PlanarConfiguration)?.value;
      if (planar) assert.equal(planar.readUInt16LE(0), 0, `${s.name}: colour samples interleaved`);
      assert.equal(attr(Tags.SOPInstanceUID), s.sop);
    }
  });

  it('renders a frame of every compressed syntax as PNG and JPEG of the image\'s size, and its thumbnail', async () => {
    for (const s of samples) {
      const png = await get(`${url(s)}/rendered`, token, 'image/png');
      assert.equal(png.status, 200, `${s.name}: ${await png.clone().text()}`);
      const img = PNG.sync.read(Buffer.from(await png.arrayBuffer()));
      assert.deepEqual([img.width, img.height], [s.columns, s.rows], s.name);
      const jpeg = await get(`${url(s)}/frames/${s.frames}/rendered`, token, 'image/jpeg');
      assert.equal(jpeg.status, 200, s.name);
      assert.deepEqual([...Buffer.from(await jpeg.arrayBuffer()).subarray(0, 2)], [0xff, 0xd8], s.name);
      const thumbnail = await get(`${url(s)}/thumbnail`, token, 'image/png');
      assert.equal(thumbnail.status, 200, s.name);
      const small = PNG.sync.read(Buffer.from(await thumbnail.arrayBuffer()));
      assert.ok(small.width <= 128 && small.height <= 128, s.name);
    }
  });

  it('C-GETs compressed objects for a peer that accepts implicit VR only, decoded as the reference tool decodes them', async () => {
    const out = mkdtempSync(path.join(work, 'get-'));
    const picked = samples.filter((s) => ['MR_small_jpeg_ls_lossless.dcm', 'JPEG2000.dcm', 'SC_rgb_jpeg_dcmtk.dcm', 'dcmcrle-multiframe.dcm', 'dcmcjpeg+e1-CT_small.dcm'].includes(s.name));
    assert.equal(picked.length, 5);
    for (const s of picked) {
      const r = await dcmtk('getscu', ['-d', '+xi', '-aet', 'GETSCU', '-aec', 'ATRIUM', '-od', out, '-k', 'QueryRetrieveLevel=IMAGE', '-k', `StudyInstanceUID=${s.study}`, '-k', `SeriesInstanceUID=${s.series}`, '-k', `SOPInstanceUID=${s.sop}`, '127.0.0.1', String(atrium.dimse!.port)]);
      assert.equal(r.code, 0, r.output);
      assert.match(r.output, /DcmDataset::read\(\) TransferSyntax="Little Endian Implicit"/, `${s.name} came in implicit VR`);
    }
    const got = readdirSync(out).map((n) => readFileSync(path.join(out, n)));
    assert.equal(got.length, picked.length);
    for (const g of got) {
      const { pixels, get: attr } = pixelsOf(g);
      const s = picked.find((p) => p.sop === attr(Tags.SOPInstanceUID))!;
      assert.ok(pixels.subarray(0, s.reference.pixels.length).equals(s.reference.pixels.subarray(0, pixels.length)), `${s.name}: pixel data differs from ${s.reference.tool}'s`);
    }
  });

  it('C-MOVEs every compressed object to a peer that accepts implicit VR only, decoded as the reference tool decodes them', async () => {
    for (const s of samples) {
      const r = await dcmtk('movescu', ['-S', '-aet', 'GETSCU', '-aec', 'ATRIUM', '-aem', 'DEST', '-k', 'QueryRetrieveLevel=IMAGE', '-k', `StudyInstanceUID=${s.study}`, '-k', `SeriesInstanceUID=${s.series}`, '-k', `SOPInstanceUID=${s.sop}`, '127.0.0.1', String(atrium.dimse!.port)]);
      assert.equal(r.code, 0, `${s.name}: ${r.output} ${dest.output().slice(-3000)}`);
    }
    const got = readdirSync(moved).map((n) => readFileSync(path.join(moved, n)));
    assert.equal(got.length, samples.length, dest.output());
    for (const g of got) {
      assert.equal(parsePart10(g).transferSyntaxUID, TransferSyntax.ImplicitVRLittleEndian);
      const { pixels, get: attr } = pixelsOf(g);
      const s = samples.find((p) => p.sop === attr(Tags.SOPInstanceUID))!;
      assert.ok(pixels.subarray(0, s.reference.pixels.length).equals(s.reference.pixels.subarray(0, pixels.length)), `${s.name}: pixel data differs from ${s.reference.tool}'s`);
    }
  });

  it('sends native objects encoded to JPEG-LS, JPEG 2000 and HTJ2K lossless on request, which DCMTK and GDCM decode back to the original samples', async () => {
    for (const source of ['CT_small.dcm', 'MR_small_bigendian.dcm', 'SC_rgb_small_odd.dcm', 'ExplVR_BigEnd.dcm']) {
      const file = withNewUIDs(path.join(pydicomTestFiles, source), `native-${source}`);
      const bytes = readFileSync(file);
      assert.ok((await stowFiles(atrium.dicomweb, token, [bytes])).status < 300, source);
      const obj = parsePart10(bytes);
      const ctx = valueContextOf(obj.dataset, obj.littleEndian);
      const uid = (t: number) => stringValue(obj.dataset, t, ctx)!;
      const original = pixelsOf(readFileSync(execFileSync('sh', ['-c', `dcmconv +te "${file}" "${file}.le" && echo "${file}.le"`]).toString().trim()));
      const planar = numberValue(obj.dataset, Tags.PlanarConfiguration, ctx) === 1;
      const want = planar ? interleaved(original.pixels, numberValue(obj.dataset, Tags.Rows, ctx)! * numberValue(obj.dataset, Tags.Columns, ctx)!, 1) : original.pixels;
      for (const ts of [TransferSyntax.JPEGLSLossless, TransferSyntax.JPEG2000Lossless, TransferSyntax.HTJ2KLossless]) {
        const res = await get(`${atrium.dicomweb}/studies/${uid(Tags.StudyInstanceUID)}/series/${uid(Tags.SeriesInstanceUID)}/instances/${uid(Tags.SOPInstanceUID)}`, token, `multipart/related; type="application/dicom"; transfer-syntax=${ts}`);
        assert.equal(res.status, 200, `${source} as ${ts}: ${await res.clone().text()}`);
        const [part] = splitMultipart(Buffer.from(await res.arrayBuffer()), res.headers.get('content-type')!);
        assert.equal(parsePart10(part!).transferSyntaxUID, ts);
        const encoded = path.join(work, `enc-${ts}-${source}`);
        writeFileSync(encoded, part!);
        let decoded: Buffer;
        if (ts === TransferSyntax.HTJ2KLossless) {
          // No Debian tool reads HTJ2K (GDCM 3.0, DCMTK 3.6.7): OpenJPH decodes it back, in a pool of this test's own.
          const pool = new CodecPool({ size: 1 });
          try {
            const sent = parsePart10(part!);
            const sctx = valueContextOf(sent.dataset, true);
            const px = pixelModuleFrom((t) => numberValue(sent.dataset, t, sctx), (t) => stringValue(sent.dataset, t, sctx), true)!;
            decoded = Buffer.concat(await Promise.all(sent.dataset.get(Tags.PixelData)!.fragments!.map((f) => pool.decode(part!.subarray(f.offset, f.offset + f.length), ts, px).then((d) => d.bytes))));
          } finally {
            await pool.close();
          }
        } else {
          const reference = referenceDecode(encoded, ts, work);
          assert.ok(reference, `${source} as ${ts}: the reference tool reads it`);
          decoded = reference.pixels;
        }
        assert.ok(decoded.subarray(0, want.length).equals(want.subarray(0, decoded.length)) && Math.abs(decoded.length - want.length) <= 1, `${source} as ${ts}: decoded samples differ from the original's`);
      }
    }
  });

  it('answers the frames of a deflated object as DCMTK inflates them', async () => {
    const file = withNewUIDs(path.join(pydicomTestFiles, 'image_dfl.dcm'), 'deflated.dcm');
    const bytes = readFileSync(file);
    const obj = parsePart10(bytes);
    assert.equal(obj.transferSyntaxUID, TransferSyntax.DeflatedExplicitVRLittleEndian);
    assert.ok((await stowFiles(atrium.dicomweb, token, [bytes])).status < 300);
    execFileSync('dcmconv', ['+te', file, `${file}.le`], { stdio: 'pipe' });
    const want = pixelsOf(readFileSync(`${file}.le`)).pixels;
    const ctx = valueContextOf(obj.dataset, true);
    const uid = (t: number) => stringValue(obj.dataset, t, ctx)!;
    const res = await get(`${atrium.dicomweb}/studies/${uid(Tags.StudyInstanceUID)}/series/${uid(Tags.SeriesInstanceUID)}/instances/${uid(Tags.SOPInstanceUID)}/frames/1`, token, `multipart/related; type="application/octet-stream"; transfer-syntax=${TransferSyntax.ExplicitVRLittleEndian}`);
    assert.equal(res.status, 200, await res.clone().text());
    const [frame] = splitMultipart(Buffer.from(await res.arrayBuffer()), res.headers.get('content-type')!);
    assert.ok(frame!.equals(want.subarray(0, frame!.length)) && want.length - frame!.length <= 1);
  });
});

describe('Bad compressed data and failing codecs', { skip }, () => {
  let atrium: RunningAtrium;
  let work: string;
  let token: string;
  const base = (uids: { study: string; series: string; sop: string }) => `${atrium.dicomweb}/studies/${uids.study}/series/${uids.series}/instances/${uids.sop}`;
  const octets = `multipart/related; type="application/octet-stream"; transfer-syntax=${TransferSyntax.ExplicitVRLittleEndian}`;

  /** A 3-frame synthetic CT compressed by a DCMTK or GDCM tool, then changed by `spoil` (frame fragments in hand). */
  function compressed(tool: string, args: string[], spoil: (file: Buffer, fragments: Array<{ offset: number; length: number }>) => Buffer): { file: Buffer; uids: { study: string; series: string; sop: string } } {
    const made = syntheticInstance({ Rows: 64, Columns: 48, NumberOfFrames: 3, PatientID: 'CODEC-2' });
    const from = path.join(work, `${made.uids.sop}.dcm`);
    const to = path.join(work, `${made.uids.sop}-${tool}.dcm`);
    writeFileSync(from, made.file);
    execFileSync(tool, [...args, from, to], { stdio: 'pipe' });
    const file = readFileSync(to);
    return { file: spoil(file, parsePart10(file).dataset.get(Tags.PixelData)!.fragments!), uids: made.uids };
  }

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'atrium-codec-faults-'));
    atrium = await startAtrium();
    token = atrium.tokens['CHU-NORD']!;
  });

  after(async () => {
    await atrium?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('answers 422 naming the frame for a corrupt compressed frame, and the other frames of the object as usual', async () => {
    // Frame 2's JPEG-LS header wiped out: no decoder can read it.
    const bad = compressed('dcmcjpls', [], (file, fragments) => {
      file.fill(0, fragments[1]!.offset, fragments[1]!.offset + 24);
      return file;
    });
    const res = await stowFiles(atrium.dicomweb, token, [bad.file]);
    assert.ok(res.status === 200 || res.status === 202, await res.text());
    const frame2 = await get(`${base(bad.uids)}/frames/2`, token, octets);
    assert.equal(frame2.status, 422);
    assert.match((await frame2.json() as { detail: string }).detail, new RegExp(`frame 2 of instance ${bad.uids.sop.replaceAll('.', '\\.')} does not decode`));
    const rendered = await get(`${base(bad.uids)}/frames/2/rendered`, token, 'image/png');
    assert.equal(rendered.status, 422);
    for (const f of [1, 3]) {
      const ok = await get(`${base(bad.uids)}/frames/${f}`, token, octets);
      assert.equal(ok.status, 200, `frame ${f}`);
      assert.equal(splitMultipart(Buffer.from(await ok.arrayBuffer()), ok.headers.get('content-type')!)[0]!.length, 64 * 48 * 2);
    }
    // Re-encoded whole, the object cannot be sent: the answer is cut, not completed with a wrong frame.
    const whole = await get(base(bad.uids), token, `multipart/related; type="application/dicom"; transfer-syntax=${TransferSyntax.ExplicitVRLittleEndian}`);
    await assert.rejects(async () => splitMultipart(Buffer.from(await whole.arrayBuffer()), whole.headers.get('content-type') ?? ''));
    // As stored, it goes as it is.
    const stored = await get(base(bad.uids), token, 'multipart/related; type="application/dicom"; transfer-syntax=*');
    assert.equal(stored.status, 200);
  });

  it('fails a frame cleanly when the codec throws (a JPEG 2000 header declaring 50000 x 50000 pixels), replaces that worker, and decodes the next frame', async () => {
    const huge = compressed('gdcmconv', ['--j2k'], (file, fragments) => {
      const at = file.indexOf(Buffer.from([0xff, 0x51]), fragments[0]!.offset); // SIZ: image and tile sizes
      for (const o of [6, 10, 22, 26]) file.writeUInt32BE(50_000, at + o);
      return file;
    });
    assert.ok((await stowFiles(atrium.dicomweb, token, [huge.file])).status < 300);
    const replacedBefore = atrium.archive.retriever.codecs.replaced;
    const res = await get(`${base(huge.uids)}/frames/1`, token, octets);
    assert.equal(res.status, 422, await res.clone().text());
    assert.match((await res.json() as { detail: string }).detail, /frame 1 of instance .* does not decode/);
    assert.equal(atrium.archive.retriever.codecs.replaced, replacedBefore + 1);
    const next = await get(`${base(huge.uids)}/frames/2`, token, octets);
    assert.equal(next.status, 200);
  });

  it('answers 422, before any byte, for frames and re-encoding of an object that declares more frames than its fragments and offset table hold', async () => {
    const more = compressed('dcmcjpls', [], (file) => file);
    const changed = path.join(work, 'four-frames.dcm');
    writeFileSync(changed, more.file);
    execFileSync('dcmodify', ['-nb', '-m', '(0028,0008)=4', changed], { stdio: 'pipe' });
    assert.ok((await stowFiles(atrium.dicomweb, token, [readFileSync(changed)])).status < 300);
    for (const [what, accept] of [['frames/4', octets], ['frames/1', octets], ['', `multipart/related; type="application/dicom"; transfer-syntax=${TransferSyntax.ExplicitVRLittleEndian}`]] as const) {
      const res = await get(`${base(more.uids)}${what ? `/${what}` : ''}`, token, accept);
      // Three fragments for four frames and no offset table: not even frame 1 can be told apart.
      assert.equal(res.status, 422, `${what}: ${await res.clone().text()}`);
      assert.match((await res.json() as { detail: string }).detail, /4 frame/);
    }
  });
});
