/**
 * Orthanc from Debian as a DICOM peer, both ways: Orthanc C-STOREs to Atrium, C-FINDs it,
 * has Atrium C-MOVE a study to it, and asks Atrium for storage commitment.
 */
import { datasetBytes } from './support/part10.ts';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { dcmtk, freePort, haveDcmtk } from './support/dcmtk.ts';
import { haveOrthanc, startOrthancPeer, type RunningOrthanc } from './support/orthanc.ts';
import { syntheticInstance } from './support/synthetic.ts';

const CTImageStorage = '1.2.840.10008.5.1.4.1.1.2';

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('DIMSE with Orthanc as a peer', { skip: (!haveOrthanc || !haveDcmtk) && 'Orthanc or DCMTK is not installed (apt-get install orthanc dcmtk)' }, () => {
  let atrium: RunningAtrium;
  let orthanc: RunningOrthanc;
  const work = mkdtempSync(path.join(tmpdir(), 'atrium-orthanc-'));

  before(async () => {
    const orthancDicom = await freePort();
    const orthancHttp = await freePort();
    atrium = await startAtrium({
      dimse: true,
      configure: (c) => {
        c.peers = [
          // Orthanc plays a regional PACS, trusted for the territory: it finds and retrieves every site's exams.
          { aeTitle: 'ORTHANC', host: '127.0.0.1', port: orthancDicom, site: 'CLIN-SUD', territory: true, may: { store: true, query: true, retrieve: true } },
          { aeTitle: 'STORESCU', site: 'CHU-NORD', may: { store: true, query: true, retrieve: true } },
        ];
      },
    });
    orthanc = await startOrthancPeer(path.join(work, 'orthanc'), {
      httpPort: orthancHttp, dicomPort: orthancDicom, aeTitle: 'ORTHANC',
      modalities: { atrium: ['ATRIUM', '127.0.0.1', atrium.dimse!.port] },
    });
  });

  after(async () => {
    await orthanc?.stop();
    await atrium?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('receives what Orthanc C-STOREs, filed under the site of Orthanc\'s AE title, byte for byte', async () => {
    const objs = [1, 2, 3].map(() => syntheticInstance({ PatientID: 'ORTH-STORE', Rows: 32, Columns: 32 }));
    const ids: string[] = [];
    for (const o of objs) ids.push((await orthanc.rest<{ ID: string }>('POST', '/instances', o.file)).ID);
    const job = await orthanc.rest<{ FailedInstancesCount?: number; InstancesCount?: number }>('POST', '/modalities/atrium/store', { Resources: ids, Synchronous: true });
    assert.equal(job.FailedInstancesCount ?? 0, 0);
    for (const o of objs) {
      const inst = await atrium.archive.index.findInstanceBySOPInstanceUID(o.uids.sop);
      assert.ok(inst, 'stored in Atrium');
      assert.equal(inst.siteId, atrium.archive.sites.get('CLIN-SUD')!.id);
      const whole = await atrium.archive.store.readWhole(inst.blobKey);
      assert.ok(whole.subarray(inst.layout.datasetOffset).equals(datasetBytes(o.file)), 'dataset kept as Orthanc sent it');
    }
  });

  it('answers Orthanc\'s C-FIND at study and series level', async () => {
    const o = syntheticInstance({ PatientID: 'ORTH-FIND', PatientName: 'Martin^Paul', StudyDate: '20230405' });
    const dir = mkdtempSync(path.join(work, 'find-'));
    writeFileSync(path.join(dir, 'a.dcm'), o.file);
    assert.equal((await dcmtk('storescu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', String(atrium.dimse!.port), path.join(dir, 'a.dcm')])).code, 0);
    const q = await orthanc.rest<{ ID: string }>('POST', '/modalities/atrium/query', { Level: 'Study', Query: { PatientName: 'MARTIN*', StudyDate: '20230101-20231231', StudyInstanceUID: '' } });
    const answers = await orthanc.rest<Array<Record<string, { Value: string }>>>('GET', `/queries/${q.ID}/answers?expand&simplify`);
    assert.equal(answers.length, 1, JSON.stringify(answers));
    assert.equal((answers[0] as unknown as Record<string, string>).StudyInstanceUID, o.uids.study);
    const qs = await orthanc.rest<{ ID: string }>('POST', '/modalities/atrium/query', { Level: 'Series', Query: { StudyInstanceUID: o.uids.study, SeriesInstanceUID: '', Modality: '' } });
    const series = await orthanc.rest<Array<Record<string, string>>>('GET', `/queries/${qs.ID}/answers?expand&simplify`);
    assert.equal(series.length, 1);
    assert.equal(series[0]!.SeriesInstanceUID, o.uids.series);
  });

  it('C-MOVEs a study to Orthanc when Orthanc retrieves it', async () => {
    const study = syntheticInstance().uids.study;
    const objs = [1, 2, 3, 4].map(() => syntheticInstance({ PatientID: 'ORTH-MOVE', StudyInstanceUID: study, Rows: 64, Columns: 64 }));
    const dir = mkdtempSync(path.join(work, 'move-'));
    const files = objs.map((o, i) => {
      const p = path.join(dir, `${i}.dcm`);
      writeFileSync(p, o.file);
      return p;
    });
    assert.equal((await dcmtk('storescu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', String(atrium.dimse!.port), ...files])).code, 0);
    const q = await orthanc.rest<{ ID: string }>('POST', '/modalities/atrium/query', { Level: 'Study', Query: { StudyInstanceUID: study } });
    await orthanc.rest('POST', `/queries/${q.ID}/retrieve`, { TargetAet: 'ORTHANC', Synchronous: true });
    const found = await until('the study in Orthanc', async () => {
      const studies = await orthanc.rest<Array<{ ID: string; MainDicomTags: { StudyInstanceUID: string } }>>('GET', '/studies?expand');
      return studies.find((s) => s.MainDicomTags.StudyInstanceUID === study);
    });
    const instances = await orthanc.rest<Array<{ ID: string; MainDicomTags: { SOPInstanceUID: string } }>>('GET', `/studies/${found.ID}/instances`);
    assert.equal(instances.length, 4);
    for (const inst of instances) {
      const original = objs.find((o) => o.uids.sop === inst.MainDicomTags.SOPInstanceUID)!;
      const file = await orthanc.raw(`/instances/${inst.ID}/file`);
      assert.ok(datasetBytes(file).equals(datasetBytes(original.file)), 'Orthanc received the stored bytes');
    }
  });

  it('answers Orthanc\'s storage commitment request: success for held objects, failure for others', async () => {
    const o = syntheticInstance({ PatientID: 'ORTH-COMMIT', Rows: 16, Columns: 16 });
    const dir = mkdtempSync(path.join(work, 'commit-'));
    writeFileSync(path.join(dir, 'a.dcm'), o.file);
    assert.equal((await dcmtk('storescu', ['-aet', 'STORESCU', '-aec', 'ATRIUM', '127.0.0.1', String(atrium.dimse!.port), path.join(dir, 'a.dcm')])).code, 0);
    const held = await orthanc.rest<{ ID: string }>('POST', '/modalities/atrium/storage-commitment', { DicomInstances: [[CTImageStorage, o.uids.sop]] });
    const ok = await until('the commitment report', async () => {
      const r = await orthanc.rest<{ Status: string }>('GET', `/storage-commitment/${held.ID}`);
      return r.Status === 'Pending' ? undefined : r;
    });
    assert.equal(ok.Status, 'Success', JSON.stringify(ok));
    const missing = await orthanc.rest<{ ID: string }>('POST', '/modalities/atrium/storage-commitment', { DicomInstances: [[CTImageStorage, '1.2.3.4.5.404']] });
    const failed = await until('the commitment report', async () => {
      const r = await orthanc.rest<{ Status: string; Failures?: Array<{ FailureReason: number }> }>('GET', `/storage-commitment/${missing.ID}`);
      return r.Status === 'Pending' ? undefined : r;
    });
    assert.equal(failed.Status, 'Failure', JSON.stringify(failed));
    assert.equal(failed.Failures?.[0]?.FailureReason, 0x0112, 'no such object instance');
  });
});
