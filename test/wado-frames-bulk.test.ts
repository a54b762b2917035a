/**
 * WADO-RS frames and bulk data: a frame list comes back in the order asked, byte for byte,
 * streamed a frame at a time (the server's memory does not grow with the list); a bulk data
 * path that names nothing is a problem document, never an empty 200.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { AtriumProcess, stowStreamed, singleSiteProcessConfig } from './support/atrium-process.ts';
import { pixelFragments } from './support/part10.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance, syntheticStream } from './support/synthetic.ts';
import { boundaryOf, readMultipartStream } from '../web/src/viewer/multipart-stream.ts';

describe('WADO-RS frames and bulk data', () => {
  let atrium: RunningAtrium;
  let token: string;
  const rows = 8, columns = 8, frameBytes = rows * columns * 2;
  const multi = syntheticInstance({ PatientID: 'FRAMES-1', Rows: rows, Columns: columns, NumberOfFrames: 12 });
  const instanceUrl = () => `${atrium.dicomweb}/studies/${multi.uids.study}/series/${multi.uids.series}/instances/${multi.uids.sop}`;
  const get = (url: string, accept?: string) => fetch(url, { headers: { authorization: `Bearer ${token}`, ...(accept ? { accept } : {}) } });

  before(async () => {
    atrium = await startAtrium();
    token = atrium.tokens['CHU-NORD']!;
    const stored = await stowFiles(atrium.dicomweb, token, [multi.file]);
    assert.equal(stored.status, 200, await stored.text());
  });
  after(() => atrium?.close());

  it('answers a frame list with each frame in the order asked, byte-identical to the stored pixel data', async () => {
    const pixels = pixelFragments(multi.file);
    const asked = [7, 1, 12, 7, 3];
    const r = await get(`${instanceUrl()}/frames/${asked.join(',')}`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type')!, /^multipart\/related; type="application\/octet-stream"/);
    const got: Buffer[] = [];
    for await (const part of readMultipartStream(r.body!, boundaryOf(r.headers.get('content-type'))!)) got.push(Buffer.from(part.body));
    assert.equal(got.length, asked.length);
    for (const [i, f] of asked.entries()) {
      assert.ok(got[i]!.equals(pixels.subarray((f - 1) * frameBytes, f * frameBytes)), `part ${i + 1} is frame ${f}`);
    }
  });

  it('answers 404 with a problem document, before any frame, when one frame of the list does not exist', async () => {
    const r = await get(`${instanceUrl()}/frames/1,2,13`);
    assert.equal(r.status, 404);
    assert.equal(r.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    assert.match(((await r.json()) as { detail: string }).detail, /frame 13 does not exist/);
  });

  it('answers bulk data by tag path, in upper or lower case hex', async () => {
    const pixels = pixelFragments(multi.file);
    for (const tag of ['7FE00010', '7fe00010']) {
      const r = await get(`${instanceUrl()}/bulk/${tag}`, 'application/octet-stream');
      assert.equal(r.status, 200);
      assert.ok(Buffer.from(await r.arrayBuffer()).equals(pixels));
    }
  });

  for (const [what, tagPath, status] of [
    ['a name of Object.prototype', 'toString', 400],
    ['another name of Object.prototype', 'constructor', 400],
    ['a malformed sequence path', '00081115.x.00081150', 400],
    ['a tag the instance does not have', '00091234', 404],
    ['a tag that is not bulk data', '00100020', 404],
    ['an item the instance does not have', '00081115.0.7FE00010', 404],
  ] as const) {
    it(`answers ${status} with a problem document, never an empty 200, for bulk data at ${what}`, async () => {
      for (const accept of [undefined, 'application/octet-stream']) {
        const r = await get(`${instanceUrl()}/bulk/${tagPath}`, accept);
        assert.equal(r.status, status, `${tagPath} (${accept ?? 'no Accept'})`);
        assert.equal(r.headers.get('content-type'), 'application/problem+json; charset=utf-8');
        assert.ok(((await r.json()) as { detail: string }).detail.length > 0);
      }
    });
  }
});

describe('WADO-RS frame lists and the server\'s memory', () => {
  // Always embedded (SQLite), HTTP alone.
  const { dataDir, configFile, token } = singleSiteProcessConfig('atrium-frames-', 'viewer');
  const atrium = new AtriumProcess(configFile);

  before(() => atrium.start());
  after(async () => {
    await atrium.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('streams 20 concurrent lists of 30 frames of a 200 MB object without the server holding the lists in memory', async () => {
    const frameBytes = 1024 * 1024 * 2;
    const big = syntheticStream({ Rows: 1024, Columns: 1024, NumberOfFrames: 100 });
    const stored = await stowStreamed(atrium.url, token, [big.stream]);
    assert.equal(stored.status, 200, stored.body);
    const before = atrium.peakRssBytes();
    const { study, series, sop } = big.uids;
    // Within the 100 characters a path parameter may take.
    const list = Array.from({ length: 30 }, (_, i) => 60 - 2 * i);
    // Each viewer takes the first frame, then stops reading until all twenty have theirs: a slow
    // client. A server holding whole lists has read them all by then; a streaming one waits.
    const readers = await Promise.all(Array.from({ length: 20 }, async () => {
      const r = await fetch(`${atrium.url}/studies/${study}/series/${series}/instances/${sop}/frames/${list.join(',')}`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, 200, r.status === 200 ? '' : await r.text());
      const parts = readMultipartStream(r.body!, boundaryOf(r.headers.get('content-type'))!);
      const first = await parts.next();
      assert.equal(first.done, false);
      return parts;
    }));
    const whileSlow = atrium.peakRssBytes() - before;
    const counts = await Promise.all(readers.map(async (parts) => {
      let n = 1;
      for await (const part of parts) {
        assert.equal(part.body.byteLength, frameBytes);
        n++;
      }
      return n;
    }));
    assert.deepEqual(counts, counts.map(() => list.length));
    // Held whole, the lists take 20 x 30 x 2 MB = 1.2 GB (measured: 1.7 GB of growth); streamed, a few frames each.
    const growth = atrium.peakRssBytes() - before;
    assert.ok(whileSlow < 600 * 1024 * 1024, `peak RSS grew by ${Math.round(whileSlow / 1048576)} MB while the clients waited`);
    assert.ok(growth < 600 * 1024 * 1024, `peak RSS grew by ${Math.round(growth / 1048576)} MB`);
  });
});
