/**
 * A teleradiology report as a FHIR R4 DiagnosticReport (https://hl7.org/fhir/R4/diagnosticreport.html):
 * status from the report's (draft: partial; an addendum: appended), the radiology category
 * (v2 table 0074 RAD), the LOINC code of a diagnostic imaging report, the patient by the
 * requesting site's identifier, the study by its UID, the signer as results interpreter
 * (by RPPS when known), the conclusion, and the whole text as a presented form.
 */
import type { SignedReport } from './signed-report.ts';

/** The elements of FHIR R4 DiagnosticReport Atrium fills (names and cardinalities as published). */
export interface Identifier { system?: string; value: string }
export interface Reference { reference?: string; type?: string; identifier?: Identifier; display?: string }
export interface Coding { system: string; code: string; display?: string }
export interface CodeableConcept { coding?: Coding[]; text?: string }
export interface Attachment { contentType: string; language?: string; data: string; title?: string; creation?: string }

export interface DiagnosticReport {
  resourceType: 'DiagnosticReport';
  id: string;
  identifier: Identifier[];
  basedOn: Reference[];
  status: 'registered' | 'partial' | 'preliminary' | 'final' | 'amended' | 'corrected' | 'appended' | 'cancelled' | 'entered-in-error' | 'unknown';
  category: CodeableConcept[];
  code: CodeableConcept;
  subject: Reference;
  effectiveDateTime: string;
  issued?: string;
  performer: Reference[];
  resultsInterpreter: Reference[];
  imagingStudy?: Reference[];
  conclusion: string;
  presentedForm: Attachment[];
}

/** OID of the RPPS (répertoire partagé des professionnels de santé) identifiers. */
export const RPPS_SYSTEM = 'urn:oid:1.2.250.1.71.4.2.1';

const statusOf: Record<SignedReport['status'], DiagnosticReport['status']> = { draft: 'partial', preliminary: 'preliminary', final: 'final', amended: 'appended' };

/** The report as text, the way the PDF and the presented form show it. */
export function reportText(r: SignedReport): string {
  const parts = [
    `Indication : ${r.clinicalContext}`, `Question : ${r.clinicalQuestion}`, `Protocole : ${r.protocol}`,
    ...Object.entries(r.fields).filter(([, v]) => v.trim() !== '').map(([k, v]) => `${k} : ${v}`),
    ...(r.findings.trim() !== '' ? [`Résultats :\n${r.findings}`] : []),
    `Conclusion :\n${r.conclusion}`,
    ...r.addenda.map((a) => `Addendum du ${a.signedAt.toISOString()} (${a.signedBy}) :\n${a.text}`),
  ];
  return parts.join('\n\n');
}

export function diagnosticReportOf(r: SignedReport): DiagnosticReport {
  return {
    resourceType: 'DiagnosticReport',
    id: `tele-report-${r.reportId}`,
    identifier: [{ system: 'urn:atrium:teleradiology:report', value: String(r.reportId) }],
    basedOn: [{ type: 'ServiceRequest', identifier: { system: 'urn:atrium:teleradiology:request', value: String(r.requestId) } }],
    status: statusOf[r.status],
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: 'RAD', display: 'Radiology' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '18748-4', display: 'Diagnostic imaging study' }], text: r.protocol },
    subject: {
      type: 'Patient', identifier: { system: `urn:atrium:issuer:${r.patient.IssuerOfPatientID}`, value: r.patient.PatientID },
      ...(r.patient.PatientName !== undefined ? { display: r.patient.PatientName.replaceAll('^', ' ').trim() } : {}),
    },
    effectiveDateTime: r.observedAt.toISOString(),
    ...(r.signedAt ? { issued: r.signedAt.toISOString() } : {}),
    performer: [{ type: 'Organization', display: r.requestingSite.name, identifier: { system: 'urn:oid:1.2.250.1.71.4.2.2', value: r.requestingSite.finess } }],
    resultsInterpreter: [{
      type: 'Practitioner', display: r.signer.name,
      ...(r.signer.rpps !== undefined ? { identifier: { system: RPPS_SYSTEM, value: r.signer.rpps } } : {}),
    }],
    ...(r.StudyInstanceUID !== undefined ? { imagingStudy: [{ type: 'ImagingStudy', identifier: { system: 'urn:dicom:uid', value: `urn:oid:${r.StudyInstanceUID}` } }] } : {}),
    conclusion: r.conclusion,
    presentedForm: [{ contentType: 'text/plain; charset=utf-8', language: 'fr', title: `Compte rendu de télé-interprétation ${r.requestId}`, data: Buffer.from(reportText(r), 'utf8').toString('base64') }],
  };
}
