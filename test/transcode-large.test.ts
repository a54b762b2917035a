/**
 * A large compressed multi-frame object re-encoded on the way out by the compiled server
 * (bin/atrium.mjs, its codec workers loaded from dist/): decoded frame by frame, never held
 * whole. Needs `npm run build:server` first, as `npm test` does.
 */
import assert from 'node:assert/strict';
import { createReadStream, createWriteStream, rmSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AtriumProcess, stowStreamed, singleSiteProcessConfig } from './support/atrium-process.ts';
import { haveDcmtk } from './support/dcmtk.ts';
import { syntheticStream } from './support/synthetic.ts';
import { TransferSyntax } from '../src/dicom/dataset.ts';

describe('a large compressed object sent uncompressed by the compiled server', { skip: !haveDcmtk && 'DCMTK is not installed' }, () => {
  // Always embedded (SQLite), HTTP alone.
  const { dataDir, configFile, token } = singleSiteProcessConfig('atrium-transcode-', 'viewer');
  const atrium = new AtriumProcess(configFile);

  before(() => atrium.start());
  after(async () => {
    await atrium.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('sends a 400 MB JPEG-LS multi-frame object in explicit VR little endian, frame by frame, its server growing by far less than the object', async () => {
    const frames = 200, frameBytes = 1024 * 1024 * 2;
    const big = syntheticStream({ Rows: 1024, Columns: 1024, NumberOfFrames: frames });
    const native = path.join(dataDir, 'native.dcm');
    const jls = path.join(dataDir, 'jls.dcm');
    await pipeline(big.stream, createWriteStream(native));
    execFileSync('dcmcjpls', [native, jls], { stdio: 'pipe' });
    const stored = await stowStreamed(atrium.url, token, [createReadStream(jls)]);
    assert.equal(stored.status, 200, stored.body);
    const beforeRss = atrium.peakRssBytes();
    const { study, series, sop } = big.uids;
    const res = await fetch(`${atrium.url}/studies/${study}/series/${series}/instances/${sop}`, {
      headers: { authorization: `Bearer ${token}`, accept: `multipart/related; type="application/dicom"; transfer-syntax=${TransferSyntax.ExplicitVRLittleEndian}` },
    });
    assert.equal(res.status, 200, res.status === 200 ? '' : await res.text());
    // Read as it comes, a little slowly, never kept: the server cannot run far ahead of its socket.
    let received = 0;
    for await (const chunk of res.body!) {
      received += (chunk as Uint8Array).byteLength;
      if (received % (16 * 1024 * 1024) < 65536) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(received > frames * frameBytes, `${received} bytes received`);
    const grew = atrium.peakRssBytes() - beforeRss;
    // Starting the codec workers (two V8 isolates and their WebAssembly memory) takes about 100 MB; holding the object, 400 more.
    assert.ok(grew < 200 * 1024 * 1024, `the server grew by ${Math.round(grew / 1048576)} MB for a ${Math.round((frames * frameBytes) / 1048576)} MB answer`);
  });
});
