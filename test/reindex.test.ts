import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startAtrium } from './support/atrium.ts';
import { syntheticInstance } from './support/synthetic.ts';

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
});
