/**
 * What the DRIMbox consumer accepts of a KOS manifest retrieved from the DMP before it sends
 * anyone's token anywhere: the patient asked for, the entry's own UID, and Retrieve URLs that
 * are https (http on the loopback only) and name the series' own WADO-RS path.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Site } from '../index/records.ts';
import { INS_OIDS, insKeyOf, parseINS } from '../patients/ins.ts';
import { remoteStudyOf, type LocalPatient } from './drimbox-consumer.ts';
import { kosManifestOf, type ManifestInput } from './kos-manifest.ts';

const insOf = (m: string) => parseINS(m + insKeyOf(m), INS_OIDS.NIR_TEST);
const ins = insOf('2800175123456');
const site: Site = { id: 1, code: 'CHU-NORD', name: 'CHU Nord', finess: '590000001', issuerOfPatientID: 'CHUNORD' } as Site;
const patient: LocalPatient = { site, recordId: 1, PatientID: 'NORD-1', IssuerOfPatientID: 'CHUNORD', ins };
const study = '1.2.826.0.1.3680043.8.498.1';
const series = '1.2.826.0.1.3680043.8.498.2';

function manifest(o: Partial<ManifestInput> = {}): Buffer {
  return kosManifestOf({
    SOPInstanceUID: '1.2.826.0.1.3680043.8.498.9', SeriesInstanceUID: '1.2.826.0.1.3680043.8.498.8', version: 1, createdAt: new Date('2026-12-06T08:00:00Z'), ins,
    patient: { PatientID: 'SUD-1', IssuerOfPatientID: 'CLINSUD', PatientName: 'MARTIN^Louise' },
    study: { StudyInstanceUID: study, StudyDate: '20261206', AccessionNumber: 'A-1' },
    accessionIssuer: { LocalNamespaceEntityID: 'CLIN-SUD', UniversalEntityID: '1.2.3' },
    series: [{ SeriesInstanceUID: series, instances: [{ SOPClassUID: '1.2.840.10008.5.1.4.1.1.2', SOPInstanceUID: '1.2.826.0.1.3680043.8.498.3', image: true }] }],
    dicomwebBaseUrl: 'https://source.example.fr/dicom-web', description: 'Manifeste', ...o,
  });
}

describe('a KOS manifest opened by the DRIMbox consumer', () => {
  it('gives the study, its series with their Retrieve URL and instances, and the study attributes', () => {
    const remote = remoteStudyOf(manifest(), patient, '1.2.826.0.1.3680043.8.498.9');
    assert.equal(remote.StudyInstanceUID, study);
    assert.deepEqual([...remote.series.keys()], [series]);
    assert.equal(remote.series.get(series)!.url, `https://source.example.fr/dicom-web/studies/${study}/series/${series}`);
    assert.deepEqual([...remote.series.get(series)!.instances], ['1.2.826.0.1.3680043.8.498.3']);
    assert.equal(remote.study.AccessionNumber, 'A-1');
    // A source on the loopback (one machine) may be plain http.
    assert.ok(remoteStudyOf(manifest({ dicomwebBaseUrl: 'http://127.0.0.1:8042/dicom-web' }), patient, '1.2.826.0.1.3680043.8.498.9'));
  });

  it('refuses a manifest of another patient, of another entry, and Retrieve URLs in clear off the loopback or not the series\' own', () => {
    assert.throws(() => remoteStudyOf(manifest({ ins: insOf('1670275123456') }), patient, '1.2.826.0.1.3680043.8.498.9'), /another patient/);
    assert.throws(() => remoteStudyOf(manifest(), patient, '1.2.3.4'), /uniqueId/);
    assert.throws(() => remoteStudyOf(manifest({ dicomwebBaseUrl: 'http://source.example.fr/dicom-web' }), patient, '1.2.826.0.1.3680043.8.498.9'), /not https/);
    assert.throws(() => remoteStudyOf(manifest({ dicomwebBaseUrl: undefined }), patient, '1.2.826.0.1.3680043.8.498.9'), /no Retrieve URL/);
    assert.throws(() => remoteStudyOf(manifest({ dicomwebBaseUrl: 'https://source.example.fr/dicom-web?x=' }), patient, '1.2.826.0.1.3680043.8.498.9'), /series' WADO-RS URL|more than a path/);
    assert.throws(() => remoteStudyOf(Buffer.from('not DICOM'), patient, '1.2.826.0.1.3680043.8.498.9'));
  });
});
