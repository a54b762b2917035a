/**
 * Compressed transfers (issue 20 §3): the portal's scripts and the DICOM JSON metadata go out
 * in Brotli or gzip to a client that accepts it, identical once decoded; a client that does
 * not (or refuses one with q=0) gets them as they are; each encoding has its own ETag, and a
 * revalidation of it answers 304. Native frames asked for in a lossless syntax (the viewer
 * asks for JPEG-LS lossless) come encoded, and decode to the stored samples exactly. Plain HTTP
 * requests (node:http), so the bytes on the wire are seen as they are sent.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { Readable } from 'node:stream';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticHeader, syntheticInstance } from './support/synthetic.ts';
import { acceptedEncoding } from '../src/api/static-files.ts';
import { CodecPool } from '../src/archive/codec-pool.ts';
import { readMultipart } from '../src/dicomweb/multipart.ts';

const engine = testDatabases().at(-1)!;

function get(url: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

function decoded(r: { headers: http.IncomingHttpHeaders; body: Buffer }): Buffer {
  const encoding = r.headers['content-encoding'];
  return encoding === 'br' ? zlib.brotliDecompressSync(r.body) : encoding === 'gzip' ? zlib.gunzipSync(r.body) : r.body;
}

describe(`compressed transfers (${engine.name})`, () => {
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;
  const portal = mkdtempSync(path.join(tmpdir(), 'atrium-compression-'));
  const script = Buffer.from(Array.from({ length: 4000 }, (_, i) => `export const value${i} = ${i} * 2; // the viewer's code\n`).join(''));
  const study = Array.from({ length: 30 }, () => syntheticInstance({ PatientID: 'CMP-1', StudyInstanceUID: '1.2.826.0.1.3680043.10.1001.1', SeriesInstanceUID: '1.2.826.0.1.3680043.10.1001.2', Rows: 4, Columns: 4 }));

  before(async () => {
    mkdirSync(path.join(portal, 'assets'));
    writeFileSync(path.join(portal, 'index.html'), '<!doctype html><title>Atrium</title>');
    writeFileSync(path.join(portal, 'assets', 'ViewerPage-Abcdefgh.js'), script);
    const db = await engine.open();
    cleanup = db.cleanup;
    atrium = await startAtrium({ index: db.config, configure: (c) => { c.http.portalDir = portal; } });
    base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    const r = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, study.map((s) => s.file));
    assert.equal(r.status, 200, await r.text());
  });

  after(async () => {
    await atrium?.close();
    await cleanup?.();
    rmSync(portal, { recursive: true, force: true });
  });

  it('reads Accept-Encoding: Brotli first, then gzip, never what q=0 refuses', () => {
    assert.equal(acceptedEncoding('gzip, deflate, br'), 'br');
    assert.equal(acceptedEncoding('gzip'), 'gzip');
    assert.equal(acceptedEncoding('br;q=0, gzip;q=0.5'), 'gzip');
    assert.equal(acceptedEncoding('identity'), undefined);
    assert.equal(acceptedEncoding(undefined), undefined);
    assert.equal(acceptedEncoding('*'), 'br');
    assert.equal(acceptedEncoding('*, br;q=0'), 'gzip');
  });

  it('sends the portal\'s scripts compressed, identical once decoded, each encoding with its own ETag', async () => {
    const url = `${base}/app/assets/ViewerPage-Abcdefgh.js`;
    const plain = await get(url, {});
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.deepEqual(plain.body, script);
    for (const encoding of ['br', 'gzip'] as const) {
      const r = await get(url, { 'accept-encoding': encoding });
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-encoding'], encoding);
      assert.equal(r.headers.vary, 'accept-encoding');
      assert.equal(Number(r.headers['content-length']), r.body.length);
      assert.ok(r.body.length < script.length / 4, `${encoding}: ${r.body.length} of ${script.length} bytes`);
      assert.deepEqual(decoded(r), script);
      assert.notEqual(r.headers.etag, plain.headers.etag);
      const again = await get(url, { 'accept-encoding': encoding, 'if-none-match': String(r.headers.etag) });
      assert.equal(again.status, 304);
    }
    // The plain ETag does not revalidate the Brotli copy.
    assert.equal((await get(url, { 'accept-encoding': 'br', 'if-none-match': String(plain.headers.etag) })).status, 200);
  });

  it('sends DICOM JSON metadata compressed to a client that accepts it, as is to one that does not', async () => {
    const url = `${base}/dicom-web/studies/1.2.826.0.1.3680043.10.1001.1/metadata`;
    const auth = { authorization: `Bearer ${atrium.tokens['CHU-NORD']!}`, accept: 'application/dicom+json' };
    const plain = await get(url, auth);
    assert.equal(plain.status, 200);
    assert.equal(plain.headers['content-encoding'], undefined);
    const json = JSON.parse(plain.body.toString()) as unknown[];
    assert.equal(json.length, 30);
    for (const encoding of ['br', 'gzip'] as const) {
      const r = await get(url, { ...auth, 'accept-encoding': encoding });
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-encoding'], encoding);
      assert.ok(r.body.length < plain.body.length / 3, `${encoding}: ${r.body.length} of ${plain.body.length} bytes`);
      assert.deepEqual(JSON.parse(decoded(r).toString()), json);
    }
    // Pixel data is not recompressed here.
    const frames = await get(`${base}/dicom-web/studies/1.2.826.0.1.3680043.10.1001.1/series/1.2.826.0.1.3680043.10.1001.2/pixeldata`,
      { authorization: auth.authorization, accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*', 'accept-encoding': 'br' });
    assert.equal(frames.status, 200);
    assert.equal(frames.headers['content-encoding'], undefined);
  });
  /** The parts of a multipart answer: each one's Content-Type, Content-Location and bytes. */
  async function parts(r: { headers: http.IncomingHttpHeaders; body: Buffer }): Promise<Array<{ type: string; location: string; bytes: Buffer }>> {
    const boundary = /boundary=("?)([^";]+)\1/.exec(String(r.headers['content-type']))?.[2];
    assert.ok(boundary, String(r.headers['content-type']));
    const found: Array<{ type: string; location: string; bytes: Buffer }> = [];
    for await (const part of readMultipart(Readable.from([r.body]), boundary)) {
      const chunks: Buffer[] = [];
      for await (const c of part.body) chunks.push(c as Buffer);
      found.push({ type: part.headers['content-type'] ?? '', location: part.headers['content-location'] ?? '', bytes: Buffer.concat(chunks) });
    }
    return found;
  }

  it('sends native frames in the lossless syntax asked for (the viewer\'s JPEG-LS), decoding to the stored samples exactly', async () => {
    const series = `${base}/dicom-web/studies/1.2.826.0.1.3680043.10.1001.1/series/1.2.826.0.1.3680043.10.1001.2`;
    const auth = { authorization: `Bearer ${atrium.tokens['CHU-NORD']!}` };
    const jls = '1.2.840.10008.1.2.4.80';
    // What the viewer sends: JPEG-LS lossless first, else the frames as stored.
    const viewerAccept = `multipart/related; type="image/jls"; transfer-syntax=${jls}, multipart/related; type="application/octet-stream"; transfer-syntax=*`;
    const stored = await parts(await get(`${series}/pixeldata`, { ...auth, accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' }));
    const answer = await get(`${series}/pixeldata`, { ...auth, accept: viewerAccept });
    assert.equal(answer.status, 200);
    assert.match(String(answer.headers['content-type']), /type="image\/jls"/);
    const encoded = await parts(answer);
    assert.equal(stored.length, 30);
    assert.equal(encoded.length, 30);
    const codecs = new CodecPool({ size: 1 });
    try {
      const px = { Rows: 4, Columns: 4, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, HighBit: 15, PixelRepresentation: 0, PhotometricInterpretation: 'MONOCHROME2', PlanarConfiguration: 0 };
      for (const part of encoded) {
        assert.equal(part.type, `image/jls; transfer-syntax=${jls}`);
        const original = stored.find((s) => s.location === part.location);
        assert.ok(original, part.location);
        assert.equal(original.type, 'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1');
        assert.notDeepEqual(part.bytes, original.bytes, 'a JPEG-LS bitstream, not the native bytes');
        assert.deepEqual((await codecs.decode(part.bytes, jls, px)).bytes, original.bytes, `${part.location}: the same samples`);
      }
      // One frame alone, as the viewer asks for the image it shows first; HTJ2K lossless too.
      const frameUrl = encoded[0]!.location;
      const [one] = await parts(await get(frameUrl, { ...auth, accept: viewerAccept }));
      assert.equal(one!.type, `image/jls; transfer-syntax=${jls}`);
      assert.deepEqual(one!.bytes, encoded[0]!.bytes);
      const htj2k = '1.2.840.10008.1.2.4.201';
      const [ht] = await parts(await get(frameUrl, { ...auth, accept: `multipart/related; type="image/jphc"; transfer-syntax=${htj2k}` }));
      assert.equal(ht!.type, `image/jphc; transfer-syntax=${htj2k}`);
      assert.deepEqual((await codecs.decode(ht!.bytes, htj2k, px)).bytes, stored.find((s) => s.location === frameUrl)!.bytes);
    } finally {
      await codecs.close();
    }
    // A CT's signed samples, 12 bits stored in 16, negative ones sign-extended: every bit comes back.
    const words = Buffer.alloc(8 * 8 * 2);
    for (let i = 0; i < 64; i++) words.writeInt16LE(i % 3 === 0 ? -1024 + i : i % 3 === 1 ? 2047 - i : -2048 + 7 * i, i * 2);
    const us = (tag: number, v: number) => ({ tag, vr: 'US' as const, value: Buffer.from([v & 0xff, v >> 8]) });
    const signedSeries = '1.2.826.0.1.3680043.10.1001.3';
    const { header } = syntheticHeader({ PatientID: 'CMP-1', StudyInstanceUID: '1.2.826.0.1.3680043.10.1001.1', SeriesInstanceUID: signedSeries, Rows: 8, Columns: 8,
      extra: [us(0x00280101, 12), us(0x00280102, 11), us(0x00280103, 1)] });
    assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [Buffer.concat([header, words])])).status, 200);
    const [signed] = await parts(await get(`${base}/dicom-web/studies/1.2.826.0.1.3680043.10.1001.1/series/${signedSeries}/pixeldata`, { ...auth, accept: viewerAccept }));
    assert.equal(signed!.type, `image/jls; transfer-syntax=${jls}`);
    const check = new CodecPool({ size: 1 });
    try {
      const decodedWords = await check.decode(signed!.bytes, jls, { Rows: 8, Columns: 8, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, HighBit: 15, PixelRepresentation: 0, PhotometricInterpretation: 'MONOCHROME2', PlanarConfiguration: 0 });
      assert.deepEqual(decodedWords.bytes, words);
    } finally {
      await check.close();
    }
    // A lossy syntax is not made from a native frame: the next range (as stored) answers.
    const [asked] = await parts(await get(encoded[0]!.location, { ...auth, accept: 'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50, multipart/related; type="application/octet-stream"; transfer-syntax=*' }));
    assert.equal(asked!.type, 'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1');
  });
});
