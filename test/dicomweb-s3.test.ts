import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { buffer as readAll } from 'node:stream/consumers';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { startS3Server, type TestS3Server } from './support/s3-server.ts';
import { syntheticInstance, syntheticStream } from './support/synthetic.ts';
import { dicomwebClient, retrieveInstanceAsStored, toArrayBuffer } from './support/dicomweb-client.ts';
import { verifyArchive } from '../src/archive/maintenance.ts';

const sha = (b: Buffer | ArrayBuffer) => createHash('sha256').update(Buffer.from(b as ArrayBuffer)).digest('hex');

describe('the archive on S3-compatible storage (s3rver)', () => {
  let s3: TestS3Server;
  let atrium: RunningAtrium;

  before(async () => {
    s3 = await startS3Server();
    atrium = await startAtrium({
      storage: { kind: 's3', endpoint: s3.endpoint, bucket: s3.bucket, region: 'us-east-1', accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, partSizeBytes: 5 * 1024 * 1024 },
    });
  });
  after(async () => {
    await atrium?.close();
    await s3?.close();
  });

  it('stores through STOW-RS into the bucket and serves back the same bytes, frames included', async () => {
    const client = dicomwebClient(atrium.dicomweb, atrium.tokens['CHU-NORD']!);
    const small = syntheticInstance({ PatientID: 'S3-1', Rows: 32, Columns: 32, NumberOfFrames: 3 });
    await client.storeInstances({ datasets: [toArrayBuffer(small.file)] });
    const got = await retrieveInstanceAsStored(atrium.dicomweb, atrium.tokens['CHU-NORD']!, small.uids);
    assert.equal(sha(got), sha(small.file));
    const [frame2] = await client.retrieveInstanceFrames({ studyInstanceUID: small.uids.study, seriesInstanceUID: small.uids.series, sopInstanceUID: small.uids.sop, frameNumbers: [2] });
    const pixelStart = small.file.length - 3 * 32 * 32 * 2;
    assert.equal(sha(frame2!), sha(small.file.subarray(pixelStart + 2048, pixelStart + 4096)));
  });

  it('streams a 40 MB object through multipart upload and verifies its checksum', async () => {
    const big = syntheticStream({ Rows: 512, Columns: 512, NumberOfFrames: 80 });
    const result = await atrium.archive.ingestor.ingestInstance(big.stream, { site: atrium.archive.sites.get('CHU-NORD')!, via: 'import' });
    assert.ok(result.ok, result.ok ? '' : result.error.message);
    const [stored] = await atrium.archive.index.getStoredInstances({ StudyInstanceUID: big.uids.study });
    assert.equal(stored!.size, big.size);
    const bytes = await readAll(await atrium.archive.store.get(stored!.blobKey));
    assert.equal(sha(bytes), stored!.sha256);
    const report = await verifyArchive(atrium.archive, { checksums: true, repair: false, orphanGraceMs: 0 });
    assert.deepEqual([report.missing, report.corrupt, report.orphans], [[], [], []]);
    assert.equal(report.checked, 2);
  });
});
