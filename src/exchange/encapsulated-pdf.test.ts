import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePart10 } from '../dicom/part10-parser.ts';
import { EncapsulatedPDFStorage, encapsulatedPdfOf, uidOfName } from './encapsulated-pdf.ts';
import type { SignedReport } from './signed-report.ts';

const report: SignedReport = {
  reportId: 7, requestId: 9, status: 'final', requestingSite: { id: 1, code: 'CLIN-SUD', name: 'Clinique du Sud', finess: '590000002', issuerOfPatientID: 'CLINSUD' },
  patient: { PatientID: 'P1', IssuerOfPatientID: 'CLINSUD', PatientName: 'Dupont^Hélène', PatientSex: 'F' },
  StudyInstanceUID: '1.2.3.4', AccessionNumber: 'A1', study: { StudyDate: '20261123', StudyID: '12' },
  modality: 'CT', bodyPart: 'HEAD', protocol: 'p', urgency: 'stroke', clinicalContext: 'c', clinicalQuestion: 'q', requestingPhysician: { name: 'Dr' },
  observedAt: new Date('2026-11-23T10:00:00Z'), signedAt: new Date('2026-11-23T10:20:30Z'), signer: { login: 'neuro', name: 'Dr Neuro' },
  fields: {}, findings: '', conclusion: 'c', addenda: [],
};

const text = (ds: ReturnType<typeof parsePart10>['dataset'], tag: number) => ds.get(tag)?.value?.toString('utf8').replace(/[\0 ]+$/, '');

describe('encapsulated PDF', () => {
  it('is an Encapsulated PDF Storage object of the study, in UTF-8, with the PDF and its exact length', () => {
    const pdf = Buffer.from('%PDF-1.3 odd'); // odd length: padded in the object, not in its declared length
    const { file, SOPInstanceUID } = encapsulatedPdfOf(report, pdf);
    const parsed = parsePart10(file, { bulkThreshold: 1 << 20 });
    const ds = parsed.dataset;
    assert.equal(text(ds, 0x00080016), EncapsulatedPDFStorage);
    assert.equal(text(ds, 0x00080018), SOPInstanceUID);
    assert.equal(text(ds, 0x00080005), 'ISO_IR 192');
    assert.equal(text(ds, 0x0020000d), '1.2.3.4');
    assert.equal(text(ds, 0x00100010), 'Dupont^Hélène');
    assert.equal(text(ds, 0x00100021), 'CLINSUD');
    assert.equal(text(ds, 0x00080060), 'DOC');
    assert.equal(text(ds, 0x00420012), 'application/pdf');
    assert.equal(text(ds, 0x00080023), '20261123');
    assert.equal(text(ds, 0x00080033), '102030');
    assert.equal(ds.get(0x00420015)!.value!.readUInt32LE(0), pdf.length);
    assert.deepEqual(ds.get(0x00420011)!.value!.subarray(0, pdf.length), pdf);
    assert.equal(parsed.transferSyntaxUID, '1.2.840.10008.1.2.1');
  });

  it('derives its UIDs from what it is: the same report version, the same object; an addendum, a new one in the same series', () => {
    const a = encapsulatedPdfOf(report, Buffer.from('%PDF-'));
    const b = encapsulatedPdfOf(report, Buffer.from('%PDF-'));
    const amended = encapsulatedPdfOf({ ...report, status: 'amended', addenda: [{ text: 't', signedBy: 'neuro', signedAt: new Date() }] }, Buffer.from('%PDF-'));
    assert.equal(a.SOPInstanceUID, b.SOPInstanceUID);
    assert.notEqual(a.SOPInstanceUID, amended.SOPInstanceUID);
    assert.equal(a.SeriesInstanceUID, amended.SeriesInstanceUID);
    for (const uid of [a.SOPInstanceUID, a.SeriesInstanceUID, uidOfName('x')]) assert.match(uid, /^2\.25\.(0|[1-9][0-9]*)$/), assert.ok(uid.length <= 64);
  });
});
