import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderReportPdf } from './report-pdf.ts';
import type { SignedReport } from './signed-report.ts';

const report: SignedReport = {
  reportId: 1, requestId: 2, status: 'final', requestingSite: { id: 1, code: 'CLIN-SUD', name: 'Clinique du Sud', finess: '590000002', issuerOfPatientID: 'CLINSUD' },
  patient: { PatientID: 'P1', IssuerOfPatientID: 'CLINSUD', PatientName: 'Dupont^Hélène', PatientBirthDate: '19700101' },
  modality: 'CT', bodyPart: 'HEAD', protocol: 'Scanner cérébral', urgency: 'stroke', clinicalContext: 'Hémiplégie', clinicalQuestion: 'Thrombolyse ?',
  requestingPhysician: { name: 'Dr Urgences' }, observedAt: new Date('2026-11-23T10:00:00Z'), signedAt: new Date('2026-11-23T10:20:00Z'),
  signer: { login: 'neuro', name: 'Dr Neuro', rpps: '10001111111' }, fields: { ASPECTS: '9' }, findings: 'Pas d\'hémorragie.', conclusion: 'Ischémie sylvienne gauche débutante.',
  addenda: [],
};

describe('report PDF', () => {
  it('renders a PDF, the same bytes for the same report (a retried store sends the same object)', async () => {
    const a = await renderReportPdf(report);
    await new Promise((r) => setTimeout(r, 1100));
    const b = await renderReportPdf(report);
    assert.equal(a.subarray(0, 5).toString('latin1'), '%PDF-');
    assert.ok(a.equals(b));
  });
});
