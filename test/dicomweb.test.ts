import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { testDatabases } from './support/databases.ts';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { havePydicomFiles, readTestFile } from './support/pydicom-files.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { stowFiles } from './support/stow.ts';
import { boundaryOf, readMultipartStream } from '../web/src/viewer/multipart-stream.ts';
import { dicomwebClient, retrieveInstanceAsStored, toArrayBuffer, type DicomwebClient } from './support/dicomweb-client.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';
import { stringValue, valueContextOf } from '../src/dicom/values.ts';
import { Tags } from '../src/dicom/dataset.ts';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';

/** Real objects of several transfer syntaxes and character sets, each with its own SOPInstanceUID. */
const corpus = [
  'CT_small.dcm', // explicit VR little endian, CT
  'rtdose.dcm', // implicit VR little endian, multi-frame
  'SC_rgb_rle.dcm', // RLE lossless, colour
  'SC_rgb_jpeg_dcmtk.dcm', // JPEG baseline
  '693_J2KI.dcm', // JPEG 2000
  'liver_expb_1frame.dcm', // explicit VR big endian
  'image_dfl.dcm', // deflated
  'test-SR.dcm', // structured report, no pixel data
  'chrFren.dcm', // ISO_IR 100
  'chrH31.dcm', // ISO 2022 with Japanese
  'chrX1.dcm', // ISO_IR 192
];

function uidsOf(file: Buffer): { study: string; series: string; sop: string; sopClass: string } {
  const obj = parsePart10(file);
  const ctx = valueContextOf(obj.dataset, obj.littleEndian);
  return {
    study: stringValue(obj.dataset, Tags.StudyInstanceUID, ctx)!,
    series: stringValue(obj.dataset, Tags.SeriesInstanceUID, ctx)!,
    sop: stringValue(obj.dataset, Tags.SOPInstanceUID, ctx)!,
    sopClass: stringValue(obj.dataset, Tags.SOPClassUID, ctx)!,
  };
}

const value = (json: Record<string, { Value?: unknown[] }>, tag: string): unknown => json[tag]?.Value?.[0];
const sha = (b: Buffer | ArrayBuffer) => createHash('sha256').update(Buffer.from(b as ArrayBuffer)).digest('hex');

function stowBody(file: Buffer): [Buffer, string] {
  const { body, contentType } = multipartBody([{ type: 'application/dicom', body: file }]);
  return [body, contentType];
}

/** A STOW-RS body by hand, for the requests dicomweb-client would never send. */
function multipartBody(parts: Array<{ type: string; body: Buffer }>, boundary = 'atrium-test-boundary'): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Type: ${p.type}\r\n\r\n`), p.body, Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/related; type="application/dicom"; boundary=${boundary}` };
}

for (const db of testDatabases()) {
  describe(`DICOMweb archive on ${db.name}`, { skip: !havePydicomFiles }, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    let client: DicomwebClient;
    const files = new Map<string, Buffer>();

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      atrium = await startAtrium({ index: opened.config });
      client = dicomwebClient(atrium.dicomweb, atrium.tokens['CHU-NORD']!);
      for (const name of corpus) files.set(name, readTestFile(name));
    });
    after(async () => {
      await atrium?.close();
      await cleanup?.();
    });

    const post = (path: string, body: Buffer, contentType: string, token = atrium.tokens['CHU-NORD']) =>
      fetch(atrium.dicomweb + path, {
        method: 'POST',
        body: body as unknown as BodyInit,
        headers: { 'Content-Type': contentType, ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      });
    const get = (path: string, accept?: string) =>
      fetch(atrium.dicomweb + path, { headers: { Authorization: `Bearer ${atrium.tokens['CHU-NORD']}`, ...(accept ? { Accept: accept } : {}) } });

    it('answers 401 to a request without a valid bearer token, and stores nothing', async () => {
      const { body, contentType } = multipartBody([{ type: 'application/dicom', body: files.get('CT_small.dcm')! }]);
      const res = await post('/studies', body, contentType, 'not-a-token');
      assert.equal(res.status, 401);
      assert.equal((await fetch(atrium.dicomweb + '/studies')).status, 401);
      assert.equal(await atrium.archive.index.countInstances(), 0);
    });

    it('stores real objects of eleven transfer syntaxes and character sets through STOW-RS with dicomweb-client', async () => {
      const response = await client.storeInstances({ datasets: corpus.map((n) => toArrayBuffer(files.get(n)!)) }) as unknown;
      // dicomweb-client resolves 200 with the raw body; parse it to check every instance.
      const json = JSON.parse(Buffer.from(response as ArrayBuffer).toString('utf8')) as Record<string, { Value?: Array<Record<string, { Value?: unknown[] }>> }>;
      assert.equal(json['00081198'], undefined, 'no failed instance');
      const referenced = json['00081199']!.Value!;
      assert.equal(referenced.length, corpus.length);
      for (const name of corpus) {
        const { sop } = uidsOf(files.get(name)!);
        const item = referenced.find((r) => value(r, '00081155') === sop);
        assert.ok(item, `${name} is referenced`);
        assert.match(String(value(item, '00081190')), new RegExp(`/instances/${sop.replaceAll('.', '\\.')}$`));
      }
      assert.equal(await atrium.archive.index.countInstances(), corpus.length);
    });

    it('re-sending the same objects is idempotent', async () => {
      const { body, contentType } = multipartBody([{ type: 'application/dicom', body: files.get('CT_small.dcm')! }]);
      const res = await post('/studies', body, contentType);
      assert.equal(res.status, 200);
      assert.equal(await atrium.archive.index.countInstances(), corpus.length);
    });

    it('serves every object back byte for byte as stored (transfer-syntax=*)', async () => {
      for (const name of corpus) {
        const { study, series, sop } = uidsOf(files.get(name)!);
        const got = await retrieveInstanceAsStored(atrium.dicomweb, atrium.tokens['CHU-NORD']!, { study, series, sop });
        assert.equal(sha(got), sha(files.get(name)!), `${name} comes back identical`);
      }
    });

    it('re-encodes an implicit VR original to explicit VR little endian by default (PS3.18 8.7.3.5.2)', async () => {
      const { study, series, sop } = uidsOf(files.get('rtdose.dcm')!);
      const got = Buffer.from(await client.retrieveInstance({ studyInstanceUID: study, seriesInstanceUID: series, sopInstanceUID: sop }));
      const obj = parsePart10(got);
      assert.equal(obj.transferSyntaxUID, '1.2.840.10008.1.2.1');
      assert.equal(obj.explicitVR, true);
      const original = parsePart10(files.get('rtdose.dcm')!);
      const pd = obj.dataset.get(Tags.PixelData)!;
      const opd = original.dataset.get(Tags.PixelData)!;
      assert.ok(pd.bulk && opd.bulk);
      assert.equal(sha(got.subarray(pd.bulk.offset, pd.bulk.offset + pd.bulk.length)), sha(files.get('rtdose.dcm')!.subarray(opd.bulk.offset, opd.bulk.offset + opd.bulk.length)));
    });

    it('answers 406 when a compressed original is asked for in a transfer syntax it cannot be re-encoded to', async () => {
      const { study, series, sop } = uidsOf(files.get('693_J2KI.dcm')!);
      // Decoded, it can go uncompressed (test/codecs.test.ts); Atrium encodes no lossy syntax.
      const res = await get(`/studies/${study}/series/${series}/instances/${sop}`, 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50');
      assert.equal(res.status, 406);
      assert.match((await res.json() as { detail: string }).detail, /1\.2\.840\.10008\.1\.2\.4\.91/);
    });

    it('finds studies with QIDO-RS by PatientID, wildcard name, fuzzy accented name, date range and modality', async () => {
      const ct = uidsOf(files.get('CT_small.dcm')!);
      const byId = await client.searchForStudies({ queryParams: { PatientID: '1CT1' } });
      assert.deepEqual(byId.map((s) => value(s, '0020000D')), [ct.study]);
      assert.deepEqual(value(byId[0]!, '00100010'), { Alphabetic: 'CompressedSamples^CT1' });
      assert.equal(value(byId[0]!, '00201208'), 1);
      assert.deepEqual(byId[0]!['00080061']!.Value, ['CT']);

      const wildcard = await client.searchForStudies({ queryParams: { PatientName: 'Compressed*' } });
      assert.ok(wildcard.some((s) => value(s, '0020000D') === ct.study));

      // Person names match ignoring case and accents (PS3.4 C.2.2.2.1.1 allows it for PN);
      // fuzzymatching adds a match on the start of any name component.
      const folded = await client.searchForStudies({ queryParams: { PatientName: 'buc^jerome' } });
      assert.equal(folded.length, 1);
      assert.deepEqual(value(folded[0]!, '00100010'), { Alphabetic: 'Buc^Jérôme' });
      const byFirstName = await client.searchForStudies({ queryParams: { PatientName: 'jer', fuzzymatching: true } });
      assert.deepEqual(byFirstName.map((s) => value(s, '00100010')), [{ Alphabetic: 'Buc^Jérôme' }]);
      const noFuzzy = await client.searchForStudies({ queryParams: { PatientName: 'jer' } });
      assert.equal(noFuzzy.length, 0, 'without fuzzymatching a name component alone does not match');

      const japanese = await client.searchForStudies({ queryParams: { PatientID: 'H31EXAMPLE' } });
      assert.deepEqual(value(japanese[0]!, '00100010'), { Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' });

      const ctDate = String(value(byId[0]!, '00080020'));
      const inRange = await client.searchForStudies({ queryParams: { StudyDate: `${ctDate}-${ctDate}`, ModalitiesInStudy: 'CT' } });
      assert.ok(inRange.some((s) => value(s, '0020000D') === ct.study));
      const outOfRange = await client.searchForStudies({ queryParams: { StudyDate: '-19000101' } });
      assert.equal(outOfRange.length, 0);
    });

    it('pages QIDO-RS results with limit and offset and adds includefield attributes', async () => {
      const all = await client.searchForStudies();
      const studies = new Set(corpus.map((n) => uidsOf(files.get(n)!).study));
      assert.equal(all.length, studies.size);
      const page1 = await client.searchForStudies({ queryParams: { limit: 2, offset: 0 } });
      const page2 = await client.searchForStudies({ queryParams: { limit: 2, offset: 2 } });
      assert.equal(page1.length, 2);
      assert.equal(page2.length, 2);
      assert.equal(new Set([...page1, ...page2].map((s) => value(s, '0020000D'))).size, 4);
      const ct = uidsOf(files.get('CT_small.dcm')!);
      const [withField] = await client.searchForStudies({ queryParams: { StudyInstanceUID: ct.study, includefield: 'PatientAge' } });
      assert.ok(withField && '00101010' in withField, 'PatientAge included');
    });

    it('caps a limit above the server maximum with a Warning: 299 header instead of refusing it (PS3.18 8.3.4.4)', async () => {
      const capped = await get('/studies?limit=1000000');
      assert.equal(capped.status, 200);
      assert.match(capped.headers.get('warning') ?? '', /^299 atrium "The number of results exceeded the maximum supported by the server \(10000\)/);
      const studies = new Set(corpus.map((n) => uidsOf(files.get(n)!).study));
      assert.equal(((await capped.json()) as unknown[]).length, studies.size);
      const within = await get('/studies?limit=10000');
      assert.equal(within.headers.get('warning'), null, 'no warning when the limit is within the maximum');
      assert.equal((await get('/studies?limit=0')).status, 400);
    });

    it('searches series and instances of a study', async () => {
      const dose = uidsOf(files.get('rtdose.dcm')!);
      const series = await client.searchForSeries({ studyInstanceUID: dose.study });
      assert.ok(series.some((s) => value(s, '0020000E') === dose.series && value(s, '00080060') === 'RTDOSE'));
      const instances = await client.searchForInstances({ studyInstanceUID: dose.study, seriesInstanceUID: dose.series });
      const inst = instances.find((i) => value(i, '00080018') === dose.sop);
      assert.ok(inst);
      assert.equal(value(inst, '00280008'), 15, 'NumberOfFrames of the multi-frame dose');
      const byClass = await client.searchForInstances({ queryParams: { SOPClassUID: dose.sopClass } });
      assert.ok(byClass.every((i) => value(i, '00080016') === dose.sopClass));
    });

    it('answers 400 with a message to malformed QIDO-RS queries', async () => {
      for (const q of ['NotAnAttribute=1', 'StudyDate=2020-13-45', 'limit=-1', 'fuzzymatching=maybe']) {
        const res = await get(`/studies?${q}`);
        assert.equal(res.status, 400, q);
        const problem = await res.json() as { detail: string };
        assert.ok(problem.detail.length > 0);
      }
    });

    it('serves study metadata as DICOM JSON with bulk data URIs that resolve', async () => {
      const dose = uidsOf(files.get('rtdose.dcm')!);
      const md = await client.retrieveStudyMetadata({ studyInstanceUID: dose.study });
      const inst = md.find((m) => value(m, '00080018') === dose.sop)!;
      assert.ok(inst);
      assert.equal(value(inst, '00280010'), 10, 'Rows');
      const pixel = inst['7FE00010'] as { BulkDataURI?: string };
      assert.ok(pixel?.BulkDataURI?.startsWith(atrium.dicomweb));
      const [bulk] = await client.retrieveBulkData({ BulkDataURI: pixel.BulkDataURI! });
      const original = parsePart10(files.get('rtdose.dcm')!).dataset.get(Tags.PixelData)!.bulk!;
      assert.equal(sha(bulk!), sha(files.get('rtdose.dcm')!.subarray(original.offset, original.offset + original.length)));
    });

    it('serves frames: native as little-endian bytes, RLE decoded on request, JPEG as stored', async () => {
      const dose = uidsOf(files.get('rtdose.dcm')!);
      const frames = await client.retrieveInstanceFrames({ studyInstanceUID: dose.study, seriesInstanceUID: dose.series, sopInstanceUID: dose.sop, frameNumbers: [1, 15] });
      assert.equal(frames.length, 2);
      // 10 x 10 x 32 bits per frame
      assert.equal(frames[0]!.byteLength, 400);
      const original = parsePart10(files.get('rtdose.dcm')!).dataset.get(Tags.PixelData)!.bulk!;
      const src = files.get('rtdose.dcm')!;
      assert.equal(sha(frames[1]!), sha(src.subarray(original.offset + 14 * 400, original.offset + 15 * 400)));

      const rle = uidsOf(files.get('SC_rgb_rle.dcm')!);
      const [decoded] = await client.retrieveInstanceFrames({
        studyInstanceUID: rle.study, seriesInstanceUID: rle.series, sopInstanceUID: rle.sop, frameNumbers: [1],
        mediaTypes: [{ mediaType: 'application/octet-stream', transferSyntaxUID: '1.2.840.10008.1.2.1' }],
      });
      assert.equal(decoded!.byteLength, 100 * 100 * 3);

      const jpg = uidsOf(files.get('SC_rgb_jpeg_dcmtk.dcm')!);
      const res = await get(`/studies/${jpg.study}/series/${jpg.series}/instances/${jpg.sop}/frames/1`, 'multipart/related; type="image/jpeg"');
      assert.equal(res.status, 200);
      const body = Buffer.from(await res.arrayBuffer());
      assert.ok(body.includes(Buffer.from([0xff, 0xd8, 0xff])), 'a JPEG bitstream');

      const missing = await get(`/studies/${dose.study}/series/${dose.series}/instances/${dose.sop}/frames/16`);
      assert.equal(missing.status, 404);
    });

    it('serves a series\' pixel data in one response, one part a frame named by its frame URL, read by the viewer\'s stream reader', async () => {
      // Three slices given out of order, one of them with two frames: the answer follows InstanceNumber.
      const series = { StudyInstanceUID: '1.2.826.0.1.3680043.8.498.7701', SeriesInstanceUID: '1.2.826.0.1.3680043.8.498.7701.1' };
      const slices = [3, 1, 2].map((n) => syntheticInstance({
        ...series, SOPInstanceUID: `${series.SeriesInstanceUID}.${n}`, PatientID: 'PIX-1', Rows: 8, Columns: 8, NumberOfFrames: n === 2 ? 2 : 1,
        extra: [{ tag: Tags.InstanceNumber, vr: 'IS', value: Buffer.from(`${n} `) }],
      }));
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, slices.map((s) => s.file))).status, 200);
      const base = `/studies/${series.StudyInstanceUID}/series/${series.SeriesInstanceUID}`;
      const res = await get(`${base}/pixeldata`, 'multipart/related; type="application/octet-stream"; transfer-syntax=*');
      assert.equal(res.status, 200);
      const boundary = boundaryOf(res.headers.get('content-type'));
      assert.match(res.headers.get('content-type')!, /^multipart\/related; type="application\/octet-stream"/);
      const parts = [];
      for await (const part of readMultipartStream(res.body!, boundary!)) parts.push(part);
      const expected = [[1, 1], [2, 1], [2, 2], [3, 1]].map(([n, f]) => `${atrium.dicomweb}${base}/instances/${series.SeriesInstanceUID}.${n}/frames/${f}`);
      assert.deepEqual(parts.map((p) => p.headers.get('content-location')), expected);
      // The read is one audit record, not one a frame.
      const views = await atrium.archive.index.sql.all<{ n: number | string }>(`SELECT count(*) AS n FROM audit_events WHERE action = 'view' AND study_instance_uid = ?`, [series.StudyInstanceUID]);
      assert.equal(Number(views[0]!.n), 1);
      for (const [i, part] of parts.entries()) {
        assert.equal(part.headers.get('content-type'), 'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1');
        assert.equal(part.body.byteLength, 8 * 8 * 2);
        // The same bytes as the frame asked for alone.
        const [alone] = await client.retrieveInstanceFrames({
          studyInstanceUID: series.StudyInstanceUID, seriesInstanceUID: series.SeriesInstanceUID,
          sopInstanceUID: expected[i]!.split('/instances/')[1]!.split('/')[0]!, frameNumbers: [Number(expected[i]!.split('/frames/')[1])],
        });
        assert.equal(sha(Buffer.from(part.body)), sha(alone!), expected[i]);
      }

      // Frames stored in JPEG 2000 go as bytes, decoded; as JPEG-LS, which nothing here makes of them: 406 before any byte.
      const j2k = uidsOf(files.get('693_J2KI.dcm')!);
      const decoded = await get(`/studies/${j2k.study}/series/${j2k.series}/pixeldata`, 'multipart/related; type="application/octet-stream"');
      assert.equal(decoded.status, 200);
      assert.match(decoded.headers.get('content-type')!, /type="application\/octet-stream"/);
      await decoded.arrayBuffer();
      const refused = await get(`/studies/${j2k.study}/series/${j2k.series}/pixeldata`, 'multipart/related; type="image/jls"');
      assert.equal(refused.status, 406);
      assert.match(((await refused.json()) as { detail: string }).detail, /1\.2\.840\.10008\.1\.2\.4\.91/);
      // As stored, they can: one part in image/jp2.
      const asStored = await get(`/studies/${j2k.study}/pixeldata`, 'multipart/related; type="image/jp2"');
      assert.equal(asStored.status, 200);
      assert.match(asStored.headers.get('content-type')!, /type="image\/jp2"/);
      const j2kParts = [];
      for await (const part of readMultipartStream(asStored.body!, boundaryOf(asStored.headers.get('content-type'))!)) j2kParts.push(part);
      assert.equal(j2kParts.length, 1);
      assert.deepEqual([...j2kParts[0]!.body.subarray(0, 4)], [0xff, 0x4f, 0xff, 0x51], 'a JPEG 2000 codestream');

      // An SR has no pixel data; a series that is not there is a 404.
      const sr = uidsOf(files.get('test-SR.dcm')!);
      assert.equal((await get(`/studies/${sr.study}/series/${sr.series}/pixeldata`)).status, 404);
      assert.equal((await get(`/studies/${series.StudyInstanceUID}/series/1.2.3.404/pixeldata`)).status, 404);
    });

    it('renders a CT slice as JPEG and PNG with the requested window and viewport', async () => {
      const ct = uidsOf(files.get('CT_small.dcm')!);
      // dicomweb-client 0.11 resolves a rendered image as a one-element array.
      const [rendered] = await client.retrieveInstanceRendered({ studyInstanceUID: ct.study, seriesInstanceUID: ct.series, sopInstanceUID: ct.sop });
      const jpegBytes = Buffer.from(rendered!);
      const img = jpeg.decode(jpegBytes);
      assert.equal(img.width, 128);
      assert.equal(img.height, 128);
      const res = await get(`/studies/${ct.study}/series/${ct.series}/instances/${ct.sop}/rendered?window=40,400&viewport=64,64`, 'image/png');
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'image/png');
      const png = PNG.sync.read(Buffer.from(await res.arrayBuffer()));
      assert.equal(png.width, 64);
      let distinct = new Set<number>();
      for (let i = 0; i < png.data.length; i += 4) distinct.add(png.data[i]!);
      assert.ok(distinct.size > 10, 'not a blank image');
      const thumb = await get(`/studies/${ct.study}/thumbnail`);
      assert.equal(thumb.status, 200);
      assert.equal(thumb.headers.get('content-type'), 'image/jpeg');
      const bad = await get(`/studies/${ct.study}/series/${ct.series}/instances/${ct.sop}/rendered?window=abc`);
      assert.equal(bad.status, 400);
    });

    it('answers 404 for an unknown study, 406 for an unacceptable media type and 400 for a malformed Accept', async () => {
      assert.equal((await get('/studies/1.2.3.4.5/metadata')).status, 404);
      const ct = uidsOf(files.get('CT_small.dcm')!);
      assert.equal((await get(`/studies/${ct.study}`, 'application/pdf')).status, 406);
      const malformed = await get(`/studies/${ct.study}`, 'multipart/related; type="application/dicom');
      assert.equal(malformed.status, 400);
      assert.match((await malformed.json() as { detail: string }).detail, /malformed Accept header/);
    });

    it('refuses bad objects one by one with a reason, stores the good ones, and indexes nothing of the bad', async () => {
      const before = await atrium.archive.index.countInstances();
      const ct = files.get('CT_small.dcm')!;
      const truncated = readTestFile('rtplan_truncated.dcm');
      const noMeta = readTestFile('no_meta.dcm');
      // Pixel data half as long as Rows x Columns x BitsAllocated need.
      const short = syntheticInstance({ PatientID: 'SHORT-1', Rows: 32, Columns: 32, pixelBytes: 32 * 32 }).file;
      // A meta header naming another SOPInstanceUID than its dataset: kept, with a warning.
      const inconsistentMeta = syntheticInstance({ PatientID: 'META-1' });
      const otherUid = inconsistentMeta.uids.sop.slice(0, -1) + (inconsistentMeta.uids.sop.endsWith('9') ? '8' : '9');
      const metaEnd = 132 + 12 + inconsistentMeta.file.readUInt32LE(140);
      const mismatchedMeta = Buffer.concat([
        Buffer.from(inconsistentMeta.file.subarray(0, metaEnd).toString('latin1').replace(inconsistentMeta.uids.sop, otherUid), 'latin1'),
        inconsistentMeta.file.subarray(metaEnd),
      ]);
      const unknownTs = Buffer.from(ct.toString('latin1').replace('1.2.840.10008.1.2.1\0', '1.2.840.99999.1.2.1\0'), 'latin1');
      const good = readTestFile('chrGerm.dcm');
      const { body, contentType } = multipartBody([
        { type: 'application/dicom', body: truncated },
        { type: 'application/dicom', body: noMeta },
        { type: 'application/dicom', body: short },
        { type: 'application/dicom', body: unknownTs },
        { type: 'application/dicom', body: good },
        { type: 'application/dicom', body: mismatchedMeta },
      ]);
      const res = await post('/studies', body, contentType);
      assert.equal(res.status, 202);
      const json = await res.json() as Record<string, { Value: Array<Record<string, { Value?: unknown[] }>> }>;
      const failed = json['00081198']!.Value;
      assert.equal(failed.length, 4);
      const reasons = failed.map((f) => value(f, '00081197'));
      assert.deepEqual(reasons, [0xc000, 0xc000, 0xa900, 0xc122]);
      const texts = failed.map((f) => String(value(f, '00091001')));
      assert.match(texts[0]!, /truncat/i);
      assert.match(texts[2]!, /PixelData holds 1024 bytes where 32x32x1x1 at 16 bits need 2048/);
      assert.match(texts[3]!, /transfer syntax/);
      const stored = json['00081199']!.Value;
      assert.equal(stored.length, 2);
      assert.equal(value(stored[1]!, '00081155'), inconsistentMeta.uids.sop, 'indexed under the dataset UID');
      assert.match(String(value(stored[1]!, '00091001')), /MediaStorageSOPInstanceUID .* differs from SOPInstanceUID/);
      assert.equal(await atrium.archive.index.countInstances(), before + 2);
      // Nothing of the refused objects stays in storage either.
      const report = await (await import('../src/archive/maintenance.ts')).verifyArchive(atrium.archive, { checksums: true, repair: false, orphanGraceMs: 0 });
      assert.deepEqual(report.orphans, []);
      assert.deepEqual(report.missing, []);
      assert.deepEqual(report.corrupt, []);
    });

    it('answers 409 when no object of the request could be stored, and 415/400 to bodies that are not multipart DICOM', async () => {
      const { body, contentType } = multipartBody([{ type: 'application/dicom', body: readTestFile('rtplan_truncated.dcm') }]);
      assert.equal((await post('/studies', body, contentType)).status, 409);
      assert.equal((await post('/studies', files.get('CT_small.dcm')!, 'application/dicom')).status, 415);
      assert.equal((await post('/studies', Buffer.from('{}'), 'application/json')).status, 415);
      const notMultipart = await post('/studies', Buffer.from('this is not a multipart body at all'), 'multipart/related; type="application/dicom"; boundary=xyz');
      assert.equal(notMultipart.status, 400);
      assert.match((await notMultipart.json() as { detail: string }).detail, /multipart/i);
    });

    it('refuses an object sent to /studies/{uid} of another study with 0xA900', async () => {
      const { body, contentType } = multipartBody([{ type: 'application/dicom', body: readTestFile('chrRuss.dcm') }]);
      const res = await post('/studies/1.2.3.4', body, contentType);
      assert.equal(res.status, 409);
      const json = await res.json() as Record<string, { Value: Array<Record<string, { Value?: unknown[] }>> }>;
      assert.equal(value(json['00081198']!.Value[0]!, '00081197'), 0xa900);
    });

    it('keeps the same PatientID sent by two sites as two patients', async () => {
      const north = syntheticInstance({ PatientID: 'IPP-42', PatientName: 'Martin^Zoé' });
      const south = syntheticInstance({ PatientID: 'IPP-42', PatientName: 'Durand^Léa' });
      assert.equal((await post('/studies', ...stowBody(north.file), atrium.tokens['CHU-NORD'])).status, 200);
      assert.equal((await post('/studies', ...stowBody(south.file), atrium.tokens['CLIN-SUD'])).status, 200);
      const found = await client.searchForStudies({ queryParams: { PatientID: 'IPP-42' } });
      const patients = found.map((s) => `${value(s, '00100021')} ${(value(s, '00100010') as { Alphabetic: string }).Alphabetic}`).sort();
      assert.deepEqual(patients, ['CHUNORD Martin^Zoé', 'CLINSUD Durand^Léa']);
    });

    it('refuses objects whose study belongs to another patient one by one, in the same request and commit group as good ones', async () => {
      const first = syntheticInstance({ PatientID: 'OWNER-1', PatientName: 'Owner^Anne' });
      assert.equal((await post('/studies', ...stowBody(first.file))).status, 200);
      const before = await atrium.archive.index.countInstances();
      // Interleaved: objects of another patient claiming the same study, and objects of a study of their own.
      const parts = Array.from({ length: 12 }, (_, i) => i % 2 === 0
        ? syntheticInstance({ PatientID: 'INTRUDER-1', StudyInstanceUID: first.uids.study, SeriesInstanceUID: first.uids.series })
        : syntheticInstance({ PatientID: 'GOOD-1', StudyInstanceUID: `${first.uids.study}.7`, SeriesInstanceUID: `${first.uids.series}.7` }));
      const { body, contentType } = multipartBody(parts.map((p) => ({ type: 'application/dicom', body: p.file })));
      const res = await post('/studies', body, contentType);
      assert.equal(res.status, 202);
      const json = await res.json() as Record<string, { Value: Array<Record<string, { Value?: unknown[] }>> }>;
      const failed = json['00081198']!.Value;
      assert.deepEqual(failed.map((f) => value(f, '00081155')), parts.filter((_, i) => i % 2 === 0).map((p) => p.uids.sop));
      assert.ok(failed.every((f) => value(f, '00081197') === 0xa900 && /patient/i.test(String(value(f, '00091001')))));
      assert.equal(json['00081199']!.Value.length, 6);
      assert.equal(await atrium.archive.index.countInstances(), before + 6);
      const owner = await client.searchForStudies({ queryParams: { StudyInstanceUID: first.uids.study } });
      assert.equal(value(owner[0]!, '00100020'), 'OWNER-1');
      assert.equal(value(owner[0]!, '00201208'), 1, 'the intruders added nothing to the study');
      const good = await client.searchForStudies({ queryParams: { PatientID: 'GOOD-1' } });
      assert.equal(value(good[0]!, '00201208'), 6);
    });

    it('retrieves a whole series with dicomweb-client, small objects read ahead and a large one streamed', async () => {
      const series = syntheticInstance({ PatientID: 'SERIES-1' }).uids;
      const objects = [
        ...Array.from({ length: 7 }, () => syntheticInstance({ PatientID: 'SERIES-1', StudyInstanceUID: series.study, SeriesInstanceUID: series.series, Rows: 64, Columns: 64 }).file),
        // Above the 16 MiB read-whole limit: streamed from storage.
        syntheticInstance({ PatientID: 'SERIES-1', StudyInstanceUID: series.study, SeriesInstanceUID: series.series, Rows: 2048, Columns: 2048, NumberOfFrames: 3 }).file,
      ];
      await client.storeInstances({ datasets: objects.map(toArrayBuffer) });
      const got = await client.retrieveSeries({ studyInstanceUID: series.study, seriesInstanceUID: series.series });
      assert.deepEqual(got.map(sha).sort(), objects.map(sha).sort());
      // Retrieves at once share the pool of read buffers: a buffer reused too early would show here.
      const together = await Promise.all(Array.from({ length: 4 }, () => client.retrieveSeries({ studyInstanceUID: series.study, seriesInstanceUID: series.series })));
      for (const one of together) assert.deepEqual(one.map(sha).sort(), objects.map(sha).sort());
    });

    it('goes on serving after a client leaves in the middle of a series retrieve', async () => {
      const [ct] = await client.searchForStudies({ queryParams: { PatientID: 'SERIES-1' } });
      const study = String(value(ct!, '0020000D'));
      const abort = new AbortController();
      const res = await fetch(`${atrium.dicomweb}/studies/${study}`, {
        headers: { Authorization: `Bearer ${atrium.tokens['CHU-NORD']}`, Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
        signal: abort.signal,
      });
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      assert.ok((await reader.read()).value!.length > 0);
      abort.abort();
      await reader.read().catch(() => {});
      // The same series, whole, to the next client: nothing was left half-sent or locked.
      const got = await retrieveInstanceAsStored(atrium.dicomweb, atrium.tokens['CHU-NORD']!, uidsOf(files.get('CT_small.dcm')!));
      assert.equal(sha(got), sha(files.get('CT_small.dcm')!));
      const again = await client.retrieveStudy({ studyInstanceUID: study });
      assert.equal(again.length, 8);
    });
  });
}

describe('DICOMweb archive with a strict operator configuration', { skip: !havePydicomFiles }, () => {
  let atrium: RunningAtrium;
  before(async () => {
    atrium = await startAtrium({
      configure: (config) => {
        config.ingest.metaHeaderMismatch = 'reject';
        config.http.maxRequestBytes = 256 * 1024;
      },
    });
  });
  after(async () => {
    await atrium?.close();
  });
  const post = (body: Buffer | ReadableStream<Uint8Array>, contentType: string) =>
    fetch(atrium.dicomweb + '/studies', {
      method: 'POST',
      body: body as unknown as BodyInit,
      headers: { 'Content-Type': contentType, Authorization: `Bearer ${atrium.tokens['CHU-NORD']}` },
      ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
    } as RequestInit);
  const noTrace = async () => {
    assert.equal(await atrium.archive.index.countInstances(), 0);
    const report = await (await import('../src/archive/maintenance.ts')).verifyArchive(atrium.archive, { checksums: true, repair: false, orphanGraceMs: 0 });
    assert.deepEqual(report.orphans, [], 'no blob left behind');
  };

  it('refuses a real object whose meta header names another SOPInstanceUID (ingest.metaHeaderMismatch: reject)', async () => {
    const res = await post(...stowBody(readTestFile('rtdose.dcm')));
    assert.equal(res.status, 409);
    const json = await res.json() as Record<string, { Value: Array<Record<string, { Value?: unknown[] }>> }>;
    const failed = json['00081198']!.Value[0]!;
    assert.equal(value(failed, '00081197'), 0xa900);
    assert.match(String(value(failed, '00091001')), /MediaStorageSOPInstanceUID 1\.2\.999\S* differs from SOPInstanceUID 1\.9\.999/);
    await noTrace();
  });

  it('answers 413 to a request declared larger than http.maxRequestBytes, and to a chunked one that grows past it', async () => {
    const big = syntheticInstance({ PatientID: 'BIG-1', Rows: 512, Columns: 512 }).file;
    const declared = await post(...stowBody(big));
    assert.equal(declared.status, 413);
    assert.match((await declared.json() as { detail: string }).detail, /larger than 262144 bytes/);

    const [body, contentType] = stowBody(big);
    let sent = 0;
    const chunked = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= body.length) return controller.close();
        controller.enqueue(body.subarray(sent, sent + 16384));
        sent += 16384;
      },
    });
    const res = await post(chunked, contentType);
    assert.equal(res.status, 413);
    await noTrace();
  });
});
