import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { startAtrium } from './support/atrium.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { CompressionAtRest } from '../src/archive/compression.ts';
import { Tags, TransferSyntax } from '../src/dicom/dataset.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';

const run = promisify(execFile);
const cli = path.resolve(import.meta.dirname, '../bin/atrium.mjs');

describe('atrium reindex', () => {
  it('rebuilds a lost index from the stored objects alone, sites and duplicate history included', async () => {
    const atrium = await startAtrium();
    const dataDir = atrium.config.dataDir;
    const site = (code: string) => atrium.archive.sites.get(code)!;
    const a = syntheticInstance({ PatientID: 'R-1', PatientName: 'Lefèvre^François' });
    const b = syntheticInstance({ PatientID: 'R-1', PatientName: 'Bénard^Zoé' });
    const a2 = syntheticInstance({ PatientID: 'R-1', PatientName: 'Lefèvre^François', StudyInstanceUID: a.uids.study, SeriesInstanceUID: a.uids.series, SOPInstanceUID: a.uids.sop, Rows: 8, Columns: 8 });
    const { Readable } = await import('node:stream');
    for (const [file, code] of [[a.file, 'CHU-NORD'], [b.file, 'CLIN-SUD'], [a2.file, 'CHU-NORD']] as const) {
      const r = await atrium.archive.ingestor.ingestInstance(Readable.from([file]), { site: site(code), via: 'import' });
      assert.ok(r.ok);
    }
    const before = await atrium.archive.index.searchStudies({ level: 'study', matches: { PatientID: 'R-1' }, fuzzymatching: false, limit: 10, offset: 0 });
    assert.equal(before.length, 2);
    const [current] = await atrium.archive.index.getStoredInstances({ StudyInstanceUID: a.uids.study });
    await atrium.app.close();
    await atrium.archive.close();

    rmSync(path.join(dataDir, 'index.sqlite'), { force: true });
    rmSync(path.join(dataDir, 'index.sqlite-wal'), { force: true });
    rmSync(path.join(dataDir, 'index.sqlite-shm'), { force: true });
    const config = path.join(dataDir, 'atrium.yaml');
    writeFileSync(config, [
      `dataDir: ${dataDir}`,
      'index: { engine: sqlite }',
      'sites:',
      ...atrium.config.sites.map((s) => `  - { code: ${s.code}, name: ${s.name}, finess: "${s.finess}", issuerOfPatientID: ${s.issuerOfPatientID} }`),
    ].join('\n'));
    const { stdout } = await run(process.execPath, [cli, 'reindex', '--config', config]);
    const report = JSON.parse(stdout) as { blobs: number; indexed: number; refused: unknown[] };
    assert.equal(report.blobs, 3);
    assert.deepEqual(report.refused, []);

    const again = await startAtrium({ configure: (c) => { c.dataDir = dataDir; c.index = { engine: 'sqlite', path: path.join(dataDir, 'index.sqlite') }; c.storage = { kind: 'filesystem', root: path.join(dataDir, 'blobs') }; } });
    try {
      const after = await again.archive.index.searchStudies({ level: 'study', matches: { PatientID: 'R-1' }, fuzzymatching: false, limit: 10, offset: 0 });
      assert.deepEqual(after.map((s) => `${s.patient.IssuerOfPatientID} ${s.patient.PatientName}`).sort(), ['CHUNORD Lefèvre^François', 'CLINSUD Bénard^Zoé']);
      const [restored] = await again.archive.index.getStoredInstances({ StudyInstanceUID: a.uids.study });
      assert.equal(restored!.sha256, current!.sha256, 'the replacing object is current again');
      assert.equal(restored!.blobKey, current!.blobKey);
    } finally {
      await again.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
  it('keeps the record of the original of an object compressed at rest (layout.original), read back from the compressed file', async () => {
    const atrium = await startAtrium({
      configure: (c) => (c.storageCompression = [{ transferSyntax: TransferSyntax.JPEGLSLossless, sites: ['CHU-NORD'], sopClasses: ['1.2.840.10008.5.1.4.1.1.2'] }]),
    });
    const dataDir = atrium.config.dataDir;
    const ct = syntheticInstance({ PatientID: 'R-2', Rows: 32, Columns: 24 });
    const plain = syntheticInstance({ PatientID: 'R-3', Rows: 8, Columns: 8 });
    const { Readable } = await import('node:stream');
    for (const [file, code] of [[ct.file, 'CHU-NORD'], [plain.file, 'CLIN-SUD']] as const) {
      assert.ok((await atrium.archive.ingestor.ingestInstance(Readable.from([file]), { site: atrium.archive.sites.get(code)!, via: 'import' })).ok);
    }
    const compression = new CompressionAtRest(atrium.archive, atrium.config.storageCompression, pino({ level: 'silent' }), 100, 0);
    await compression.drain();
    await compression.stop();
    const compressed = (await atrium.archive.index.findInstanceBySOPInstanceUID(ct.uids.sop))!;
    assert.equal(compressed.TransferSyntaxUID, TransferSyntax.JPEGLSLossless);
    const { createHash } = await import('node:crypto');
    assert.deepEqual(compressed.layout.original, { TransferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian, size: ct.file.length, sha256: createHash('sha256').update(ct.file).digest('hex') });
    // The record is Atrium's note on its stored file: an object re-encoded on the way out does not carry it.
    const sent = parsePart10(Buffer.concat(await (await atrium.archive.retriever.openInstance(compressed, TransferSyntax.ExplicitVRLittleEndian)).toArray()));
    assert.equal(sent.meta.get(Tags.PrivateInformationCreatorUID), undefined);
    assert.equal(sent.meta.get(Tags.PrivateInformation), undefined);
    await atrium.app.close();
    await atrium.archive.close();

    for (const f of ['index.sqlite', 'index.sqlite-wal', 'index.sqlite-shm']) rmSync(path.join(dataDir, f), { force: true });
    const config = path.join(dataDir, 'atrium.yaml');
    writeFileSync(config, [
      `dataDir: ${dataDir}`,
      'index: { engine: sqlite }',
      'sites:',
      ...atrium.config.sites.map((s) => `  - { code: ${s.code}, name: ${s.name}, finess: "${s.finess}", issuerOfPatientID: ${s.issuerOfPatientID} }`),
    ].join('\n'));
    const { stdout } = await run(process.execPath, [cli, 'reindex', '--config', config]);
    const report = JSON.parse(stdout) as { blobs: number; refused: unknown[] };
    assert.deepEqual([report.blobs, report.refused], [2, []]);

    const again = await startAtrium({ configure: (c) => { c.dataDir = dataDir; c.index = { engine: 'sqlite', path: path.join(dataDir, 'index.sqlite') }; c.storage = { kind: 'filesystem', root: path.join(dataDir, 'blobs') }; } });
    try {
      const restored = (await again.archive.index.findInstanceBySOPInstanceUID(ct.uids.sop))!;
      assert.equal(restored.TransferSyntaxUID, TransferSyntax.JPEGLSLossless);
      assert.deepEqual(restored.layout.original, compressed.layout.original, 'the original\'s syntax, size and SHA-256 survive the reindex');
      const untouched = (await again.archive.index.findInstanceBySOPInstanceUID(plain.uids.sop))!;
      assert.equal(untouched.layout.original, undefined, 'an object kept as received has no original');
    } finally {
      await again.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
