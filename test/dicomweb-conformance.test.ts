import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { testDatabases } from './support/databases.ts';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { havePydicomFiles, readTestFile } from './support/pydicom-files.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { stowFiles } from './support/stow.ts';
import { dicomwebClient, type DicomwebClient } from './support/dicomweb-client.ts';
import { boundaryOf, readMultipartStream, type StreamedPart } from '../web/src/viewer/multipart-stream.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';
import { stringValue, valueContextOf } from '../src/dicom/values.ts';
import { Tags, TransferSyntax, type DicomElement } from '../src/dicom/dataset.ts';

/**
 * DICOMweb as PS3.18 says: content negotiation (8.7), WADO-RS representations (10.4),
 * STOW-RS statuses (10.5.3), QIDO-RS result limits (8.3.4.4) and XML answers (PS3.19 A.1).
 */

const CT = 'CT_small.dcm'; // explicit VR little endian, 16-bit
const DOSE = 'rtdose.dcm'; // implicit VR little endian
const J2K = '693_J2KI.dcm'; // JPEG 2000 (lossy)
const YBR422 = 'SC_ybr_full_422_uncompressed.dcm';
const dicomMultipart = (ts?: string) => `multipart/related; type="application/dicom"${ts ? `; transfer-syntax=${ts}` : ''}`;

function uidsOf(file: Buffer): { study: string; series: string; sop: string } {
  const obj = parsePart10(file);
  const ctx = valueContextOf(obj.dataset, obj.littleEndian);
  return {
    study: stringValue(obj.dataset, Tags.StudyInstanceUID, ctx)!,
    series: stringValue(obj.dataset, Tags.SeriesInstanceUID, ctx)!,
    sop: stringValue(obj.dataset, Tags.SOPInstanceUID, ctx)!,
  };
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const value = (json: Record<string, { Value?: unknown[] }>, tag: string): unknown => json[tag]?.Value?.[0];

async function partsOf(res: Response): Promise<StreamedPart[]> {
  const boundary = boundaryOf(res.headers.get('content-type'));
  assert.ok(boundary, `a multipart answer: ${res.headers.get('content-type')}`);
  const parts: StreamedPart[] = [];
  for await (const p of readMultipartStream(res.body!, boundary)) parts.push(p);
  return parts;
}

/**
 * XML read by another parser than ours (Python's ElementTree): per document, the attributes
 * as { tag: { vr, keyword, values, privateCreator, bulk, names } }.
 */
function readNativeDicomModel(documents: string[]): Array<Record<string, { vr: string; keyword?: string; values: string[]; privateCreator?: string; bulk?: string; names: string[] }>> {
  const script = `
import json, sys, xml.etree.ElementTree as ET
ns = '{http://dicom.nema.org/PS3.19/models/NativeDICOM}'
out = []
for doc in json.load(sys.stdin):
    root = ET.fromstring(doc.encode('utf-8'))
    assert root.tag == ns + 'NativeDicomModel', root.tag
    attrs = {}
    for a in root.findall(ns + 'DicomAttribute'):
        bulk = a.find(ns + 'BulkData')
        names = [''.join((c.text or '') + '^' for c in g) for pn in a.findall(ns + 'PersonName') for g in pn.findall(ns + 'Alphabetic')]
        attrs[a.get('tag')] = {
            'vr': a.get('vr'), 'keyword': a.get('keyword'), 'privateCreator': a.get('privateCreator'),
            'values': [v.text or '' for v in a.findall(ns + 'Value')],
            'bulk': bulk.get('uri') if bulk is not None else None, 'names': names,
        }
    out.append(attrs)
print(json.dumps(out))
`;
  const r = spawnSync('/usr/bin/python3', ['-c', script], { input: JSON.stringify(documents), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as ReturnType<typeof readNativeDicomModel>;
}

const db = testDatabases()[0]!;

describe('DICOMweb as PS3.18 says', { skip: !havePydicomFiles }, () => {
  let atrium: RunningAtrium;
  let cleanup: () => Promise<void>;
  let client: DicomwebClient;
  const files = new Map<string, Buffer>();

  before(async () => {
    const opened = await db.open();
    cleanup = opened.cleanup;
    atrium = await startAtrium({ index: opened.config });
    client = dicomwebClient(atrium.dicomweb, atrium.tokens['CHU-NORD']!);
    for (const name of [CT, DOSE, J2K, 'SC_rgb_rle.dcm']) files.set(name, readTestFile(name));
    const stored = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [...files.values()]);
    assert.ok(stored.status === 200 || stored.status === 202, `stored: ${stored.status}`);
    assert.equal(await atrium.archive.index.countInstances(), files.size);
  });
  after(async () => {
    await atrium?.close();
    await cleanup?.();
  });

  const get = (path: string, accept?: string) =>
    fetch(atrium.dicomweb + path, { headers: { Authorization: `Bearer ${atrium.tokens['CHU-NORD']}`, ...(accept !== undefined ? { Accept: accept } : {}) } });
  const instancePath = (name: string) => {
    const { study, series, sop } = uidsOf(files.get(name)!);
    return `/studies/${study}/series/${series}/instances/${sop}`;
  };
  /** The transfer syntax of the one object a retrieve answered. */
  const retrievedSyntax = async (res: Response): Promise<{ ts: string; part: StreamedPart }> => {
    assert.equal(res.status, 200, await res.clone().text());
    const parts = await partsOf(res);
    assert.equal(parts.length, 1);
    const ts = parsePart10(Buffer.from(parts[0]!.body)).transferSyntaxUID;
    assert.equal(parts[0]!.headers.get('content-type'), `application/dicom; transfer-syntax=${ts}`);
    return { ts, part: parts[0]! };
  };

  describe('content negotiation of instances (PS3.18 8.7)', () => {
    it('answers the next acceptable media type when the first cannot be served', async () => {
      // A CT slice is no MPEG-2 video: the next entry, as stored, is served.
      const res = await get(instancePath(CT), `${dicomMultipart(TransferSyntax.MPEG2MPML)}, ${dicomMultipart('*')}`);
      const { ts, part } = await retrievedSyntax(res);
      assert.equal(ts, TransferSyntax.ExplicitVRLittleEndian);
      assert.equal(sha(part.body), sha(files.get(CT)!));
      // Down to anything (*/*): a lossy JPEG 2000 original comes as stored, as it would without a preference.
      const j2k = await get(instancePath(J2K), `${dicomMultipart(TransferSyntax.MPEG2MPML)}, ${dicomMultipart(TransferSyntax.ImplicitVRLittleEndian)}, */*`);
      assert.equal((await retrievedSyntax(j2k)).ts, TransferSyntax.JPEG2000);
    });

    it('takes entries of equal q in the order given, whatever their parameters', async () => {
      const res = await get(instancePath(DOSE), `${dicomMultipart()}, ${dicomMultipart('*')}`);
      assert.equal((await retrievedSyntax(res)).ts, TransferSyntax.ExplicitVRLittleEndian);
      const stored = await get(instancePath(DOSE), `${dicomMultipart('*')}, ${dicomMultipart()}`);
      assert.equal((await retrievedSyntax(stored)).ts, TransferSyntax.ImplicitVRLittleEndian);
    });

    it('follows q-values before the order of the Accept list', async () => {
      const res = await get(instancePath(DOSE), `${dicomMultipart('*')}; q=0.5, ${dicomMultipart(TransferSyntax.ExplicitVRLittleEndian)}`);
      assert.equal((await retrievedSyntax(res)).ts, TransferSyntax.ExplicitVRLittleEndian);
      const stored = await get(instancePath(DOSE), `${dicomMultipart('*')}; q=0.9, ${dicomMultipart(TransferSyntax.ExplicitVRLittleEndian)}; q=0.4`);
      assert.equal((await retrievedSyntax(stored)).ts, TransferSyntax.ImplicitVRLittleEndian, 'as stored, byte for byte');
    });

    it('answers 406 only when no entry of the Accept list can be served', async () => {
      const res = await get(instancePath(CT), `${dicomMultipart(TransferSyntax.MPEG2MPML)}, ${dicomMultipart(TransferSyntax.ImplicitVRLittleEndian)}; q=0.8, application/dicom+json`);
      assert.equal(res.status, 406);
      assert.match((await res.json() as { detail: string }).detail, /cannot be sent as 1\.2\.840\.10008\.1\.2\.4\.100; 1\.2\.840\.10008\.1\.2 is not used with web services/);
    });

    // dicomweb-client 0.11 cannot send a list of transfer syntaxes for instances (its retrieveInstance
    // and retrieveSeries compare "application/" with "application/dicom" and throw): fetch sends them.
    it('sends explicit VR little endian without a transfer-syntax parameter, never implicit VR little endian', async () => {
      const dose = uidsOf(files.get(DOSE)!);
      const got = await client.retrieveInstance({ studyInstanceUID: dose.study, seriesInstanceUID: dose.series, sopInstanceUID: dose.sop });
      assert.equal(parsePart10(Buffer.from(got)).transferSyntaxUID, TransferSyntax.ExplicitVRLittleEndian);
      for (const accept of [undefined, dicomMultipart(), '*/*', 'multipart/related']) {
        const res = await get(instancePath(DOSE), accept);
        assert.equal((await retrievedSyntax(res)).ts, TransferSyntax.ExplicitVRLittleEndian, `Accept: ${accept}`);
        assert.match(res.headers.get('content-type')!, /transfer-syntax=1\.2\.840\.10008\.1\.2\.1(;|$)/);
      }
      const implicit = await get(instancePath(DOSE), dicomMultipart(TransferSyntax.ImplicitVRLittleEndian));
      assert.equal(implicit.status, 406);
      assert.match((await implicit.json() as { detail: string }).detail, /not used with web services/);
      const thenExplicit = await get(instancePath(CT), `${dicomMultipart(TransferSyntax.ImplicitVRLittleEndian)}, ${dicomMultipart()}`);
      assert.equal((await retrievedSyntax(thenExplicit)).ts, TransferSyntax.ExplicitVRLittleEndian);
    });

    it('sends a lossy original as stored by default, as PS3.18 8.7.3 allows when only the lossy form exists', async () => {
      const res = await get(instancePath(J2K), dicomMultipart());
      assert.equal((await retrievedSyntax(res)).ts, TransferSyntax.JPEG2000);
    });

    it('decodes a lossless-compressed original by default, or answers 406 unless the stored syntax is accepted', async () => {
      const rle = await atrium.archive.retriever.findInstances({ ...uidsOfKeywords(files.get('SC_rgb_rle.dcm')!) });
      const res = await get(instancePath('SC_rgb_rle.dcm'), dicomMultipart());
      if (atrium.archive.retriever.canSendAs(rle[0]!, TransferSyntax.ExplicitVRLittleEndian)) {
        assert.equal((await retrievedSyntax(res)).ts, TransferSyntax.ExplicitVRLittleEndian);
      } else {
        assert.equal(res.status, 406);
        assert.match((await res.json() as { detail: string }).detail, /1\.2\.840\.10008\.1\.2\.5 is not decoded by Atrium yet/);
      }
      const asStored = await get(instancePath('SC_rgb_rle.dcm'), `${dicomMultipart(TransferSyntax.MPEG2MPML)}, ${dicomMultipart('*')}`);
      assert.equal((await retrievedSyntax(asStored)).ts, TransferSyntax.RLELossless);
    });

    it('answers 406 to a single-part application/dicom on a study, and to a media type a resource does not offer', async () => {
      const { study } = uidsOf(files.get(CT)!);
      assert.equal((await get(`/studies/${study}`, 'application/dicom')).status, 406);
      assert.equal((await get(`/studies/${study}`, 'application/dicom, multipart/related; type="application/dicom"')).status, 200);
      assert.equal((await get('/studies', 'image/jpeg')).status, 406);
      assert.equal((await get(`/studies/${study}/metadata`, 'image/jpeg')).status, 406);
      assert.equal((await get('/studies', 'image/jpeg, application/dicom+json')).status, 200);
    });
  });

  describe('bulk data of instances (PS3.18 10.4.3.3.5)', () => {
    it('answers multipart/related; type="application/octet-stream" on an instance with its bulk data, each part at its BulkDataURI', async () => {
      const res = await get(instancePath(DOSE), 'multipart/related; type="application/octet-stream"');
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type')!, /^multipart\/related; type="application\/octet-stream"/);
      const parts = await partsOf(res);
      const { study, series } = uidsOf(files.get(DOSE)!);
      const [metadata] = await client.retrieveSeriesMetadata({ studyInstanceUID: study, seriesInstanceUID: series }) as Array<Record<string, { BulkDataURI?: string }>>;
      const uris = Object.values(metadata!).flatMap((e) => (e.BulkDataURI ? [e.BulkDataURI] : []));
      assert.ok(uris.length > 0);
      for (const uri of uris) {
        const part = parts.find((p) => p.headers.get('content-location') === uri);
        assert.ok(part, `a part for ${uri}`);
        assert.equal(part.headers.get('content-type'), 'application/octet-stream');
        const [alone] = await client.retrieveBulkData({ BulkDataURI: uri });
        assert.equal(sha(part.body), sha(new Uint8Array(alone!)));
      }
      const original = parsePart10(files.get(DOSE)!).dataset.get(Tags.PixelData)!.bulk!;
      const pixels = parts.find((p) => p.headers.get('content-location')!.endsWith('/bulk/7FE00010'))!;
      assert.equal(sha(pixels.body), sha(files.get(DOSE)!.subarray(original.offset, original.offset + original.length)));
    });

    it('answers 406 for the bulk data of a compressed original, which is no little-endian value', async () => {
      const res = await get(instancePath(J2K), 'multipart/related; type="application/octet-stream"');
      assert.equal(res.status, 406);
      // Still served as an instance when the client also accepts that.
      const dicom = await get(instancePath(J2K), `multipart/related; type="application/octet-stream", ${dicomMultipart('*')}; q=0.5`);
      assert.equal((await retrievedSyntax(dicom)).ts, TransferSyntax.JPEG2000);
    });
  });

  describe('XML answers (PS3.19 Native DICOM Model)', () => {
    it('answers metadata as multipart/related of application/dicom+xml, one part an instance', async () => {
      const { study } = uidsOf(files.get(CT)!);
      const res = await get(`/studies/${study}/metadata`, 'multipart/related; type="application/dicom+xml"');
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type')!, /^multipart\/related; type="application\/dicom\+xml"/);
      const parts = await partsOf(res);
      const json = await client.retrieveStudyMetadata({ studyInstanceUID: study });
      assert.equal(parts.length, json.length);
      assert.ok(parts.every((p) => p.headers.get('content-type')!.startsWith('application/dicom+xml')));
      const [xml] = readNativeDicomModel(parts.map((p) => Buffer.from(p.body).toString('utf8')));
      const [first] = json;
      assert.equal(xml!['00080018']!.values[0], value(first!, '00080018'));
      assert.equal(xml!['00080018']!.keyword, 'SOPInstanceUID');
      assert.equal(xml!['00280010']!.values[0], String(value(first!, '00280010')));
      const name = (value(first!, '00100010') as { Alphabetic: string }).Alphabetic;
      assert.equal(xml!['00100010']!.names[0]!.replace(/\^+$/, ''), name.replace(/\^+$/, ''));
      assert.equal(xml!['7FE00010']!.bulk, (first!['7FE00010'] as { BulkDataURI?: string }).BulkDataURI);
    });

    it('answers a search as multipart/related of application/dicom+xml, one part a match', async () => {
      const res = await get('/studies?includefield=StudyDescription', 'multipart/related; type="application/dicom+xml"');
      assert.equal(res.status, 200);
      const parts = await partsOf(res);
      const json = await client.searchForStudies();
      assert.equal(parts.length, json.length);
      const xml = readNativeDicomModel(parts.map((p) => Buffer.from(p.body).toString('utf8')));
      assert.deepEqual(xml.map((d) => d['0020000D']!.values[0]).sort(), json.map((d) => value(d, '0020000D')).sort());
    });
  });

  describe('STOW-RS statuses (PS3.18 10.5.3)', () => {
    it('answers 202 with a Warning Reason when every object is stored but one with warnings', async () => {
      const clean = syntheticInstance({ PatientID: 'WARN-1' });
      const warned = syntheticInstance({ PatientID: '' });
      const res = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [clean.file, warned.file]);
      assert.equal(res.status, 202);
      const json = await res.json() as Record<string, { Value: Array<Record<string, { Value?: unknown[] }>> }>;
      assert.equal(json['00081198'], undefined, 'nothing failed');
      const [first, second] = json['00081199']!.Value;
      assert.equal(value(first!, '00081196'), undefined, 'no warning for the clean object');
      assert.equal(value(second!, '00081196'), 0xb007);
      assert.match(String(value(second!, '00091001')), /PatientID is empty/);
      // Stored without warnings: 200.
      assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [syntheticInstance({ PatientID: 'WARN-2' }).file])).status, 200);
    });
  });

  describe('uncompressed 4:2:2 colour images', () => {
    const ybr = (photometric: string, pixelBytes: number) => {
      const elements: DicomElement[] = [
        { tag: Tags.SamplesPerPixel, vr: 'US', value: Buffer.from([3, 0]) },
        { tag: Tags.PhotometricInterpretation, vr: 'CS', value: Buffer.from(photometric.padEnd(photometric.length + (photometric.length % 2), ' ')) },
        { tag: Tags.PlanarConfiguration, vr: 'US', value: Buffer.from([0, 0]) },
      ];
      return syntheticInstance({ PatientID: 'YBR-1', Rows: 4, Columns: 8, pixelBytes, extra: elements });
    };

    it('stores YBR_FULL_422 and YBR_PARTIAL_422 images whose pixel data holds 2 samples a pixel', async () => {
      const real = readTestFile(YBR422);
      const partial = ybr('YBR_PARTIAL_422', 4 * 8 * 2 * 2);
      const res = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [real, partial.file]);
      const json = await res.json() as Record<string, { Value: Array<Record<string, { Value?: unknown[] }>> }>;
      assert.equal(res.status, 200, JSON.stringify(json['00081198']));
      assert.equal(json['00081199']!.Value.length, 2);
      const got = await get(instancePath2(uidsOf(real)), dicomMultipart('*'));
      assert.equal(sha((await retrievedSyntax(got)).part.body), sha(real));
    });

    it('still refuses a 4:2:2 image with less pixel data than 2 samples a pixel need, with 0xA900', async () => {
      const short = ybr('YBR_FULL_422', 4 * 8 * 2);
      const res = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [short.file]);
      assert.equal(res.status, 409);
      const json = await res.json() as Record<string, { Value: Array<Record<string, { Value?: unknown[] }>> }>;
      assert.equal(value(json['00081198']!.Value[0]!, '00081197'), 0xa900);
    });
  });

  const instancePath2 = ({ study, series, sop }: { study: string; series: string; sop: string }) => `/studies/${study}/series/${series}/instances/${sop}`;
  const uidsOfKeywords = (file: Buffer) => {
    const { study, series, sop } = uidsOf(file);
    return { StudyInstanceUID: study, SeriesInstanceUID: series, SOPInstanceUID: sop };
  };
});

for (const engine of testDatabases()) describe(`QIDO-RS without a limit on ${engine.name}`, () => {
  let atrium: RunningAtrium;
  let cleanup: () => Promise<void>;
  before(async () => {
    const opened = await engine.open();
    cleanup = opened.cleanup;
    atrium = await startAtrium({ index: opened.config });
  });
  after(async () => {
    await atrium?.close();
    await cleanup?.();
  });

  it('returns at most 1000 results with Warning: 299 when more match, and all of them when fewer do', async () => {
    const study = syntheticInstance().uids.study;
    const series = syntheticInstance().uids.series;
    const tiny = () => syntheticInstance({ PatientID: 'MANY-1', StudyInstanceUID: study, SeriesInstanceUID: series, Rows: 1, Columns: 1 }).file;
    // 1001 objects in a few requests: one more than an answer without a limit holds.
    for (let sent = 0; sent < 1001;) {
      const n = Math.min(250, 1001 - sent);
      const res = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, Array.from({ length: n }, tiny));
      assert.equal(res.status, 200);
      sent += n;
    }
    const search = (query: string) => fetch(`${atrium.dicomweb}/studies/${study}/instances${query}`, { headers: { Authorization: `Bearer ${atrium.tokens['CHU-NORD']}` } });
    const unlimited = await search('');
    assert.equal(unlimited.status, 200);
    assert.equal((await unlimited.json() as unknown[]).length, 1000);
    assert.match(unlimited.headers.get('warning') ?? '', /^299 atrium "The number of results exceeded the maximum supported by the server \(1000\)/);
    const rest = await search('?offset=1000');
    assert.equal((await rest.json() as unknown[]).length, 1);
    assert.equal(rest.headers.get('warning'), null, 'no warning when all the remaining results are there');
    const limited = await search('?limit=1001');
    assert.equal((await limited.json() as unknown[]).length, 1001);
    assert.equal(limited.headers.get('warning'), null);
  });
});

// The Python parser reading the XML answers is Debian's python3, there with python3-pydicom.
if (!existsSync('/usr/bin/python3')) console.warn('*** /usr/bin/python3 is missing: the XML answers cannot be read ***');
