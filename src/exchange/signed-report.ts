/**
 * A teleradiology report as the documents sent back to the requesting site say it (HL7
 * ORU^R01, FHIR DiagnosticReport, PDF, DICOM encapsulated PDF): read in one place from the
 * report, its request, the patient record and the study, so that every form says the same.
 */
import type { Archive } from '../archive/archive.ts';
import type { Site } from '../index/records.ts';
import type { SqlDatabase } from '../index/sql.ts';

export interface SignedReport {
  reportId: number;
  requestId: number;
  status: 'draft' | 'preliminary' | 'final' | 'amended';
  requestingSite: Site;
  patient: { PatientID: string; IssuerOfPatientID: string; PatientName?: string; PatientBirthDate?: string; PatientSex?: string };
  StudyInstanceUID?: string;
  AccessionNumber?: string;
  study?: { StudyDate?: string; StudyTime?: string; StudyID?: string; ReferringPhysicianName?: string; StudyDescription?: string };
  modality: string;
  bodyPart: string;
  protocol: string;
  urgency: string;
  clinicalContext: string;
  clinicalQuestion: string;
  requestingPhysician: { name: string; rpps?: string };
  /** When the images arrived (or the request was made, when they came first). */
  observedAt: Date;
  signedAt?: Date;
  signer: { login: string; name: string; rpps?: string };
  template?: string;
  /** The template's labels of its fields ("Score ASPECTS" for ASPECTS), when the report names a template. */
  fieldLabels?: Record<string, string>;
  fields: Record<string, string>;
  findings: string;
  conclusion: string;
  addenda: Array<{ text: string; signedBy: string; signedAt: Date }>;
}

interface Row {
  report_id: number; request_id: number; status: SignedReport['status']; requesting_site_id: number; study_instance_uid: string | null;
  accession_number: string | null; modality: string; body_part: string; protocol: string | null; proposed_protocol: string; urgency: string;
  clinical_context: string; clinical_question: string; requesting_physician: string; requesting_physician_rpps: string | null;
  images_arrived_at: string | null; created_at: string; template: string | null; fields_json: string; findings: string; conclusion: string;
  signed_at: string | null; template_fields_json: string | null; signer_login: string; signer_name: string; signer_rpps: string | null;
  issuer: string; patient_id: string; patient_name: string | null; birth_date: string | null; sex: string | null;
}

const some = <T>(v: T | null | undefined): v is T => v !== null && v !== undefined && v !== '';

/** The report by its id, or by its request's id; undefined when there is none. */
export async function loadSignedReport(archive: Archive, by: { reportId: number } | { requestId: number }, sql: SqlDatabase = archive.index.sql): Promise<SignedReport | undefined> {
  const row = await sql.get<Row>(
    `SELECT t.id AS report_id, r.id AS request_id, t.status, r.requesting_site_id, r.study_instance_uid, r.accession_number, r.modality, r.body_part,
            r.protocol, r.proposed_protocol, r.urgency, r.clinical_context, r.clinical_question, r.requesting_physician, r.requesting_physician_rpps,
            r.images_arrived_at, r.created_at, t.template, t.fields_json, t.findings, t.conclusion, t.signed_at, tp.fields_json AS template_fields_json,
            u.login AS signer_login, u.display_name AS signer_name, u.rpps AS signer_rpps, p.issuer, p.patient_id, p.patient_name, p.birth_date, p.sex
       FROM tele_reports t JOIN tele_requests r ON r.id = t.request_id JOIN users u ON u.id = t.author_user_id JOIN patients p ON p.id = r.patient_id
       LEFT JOIN tele_report_templates tp ON tp.code = t.template
      WHERE ${'reportId' in by ? 't.id' : 't.request_id'} = ?`, ['reportId' in by ? by.reportId : by.requestId]);
  if (!row) return undefined;
  const site = archive.siteById.get(Number(row.requesting_site_id));
  if (!site) return undefined;
  const addenda = await sql.all<{ text: string; signed_by: string; signed_at: string }>(
    'SELECT text, signed_by, signed_at FROM tele_report_addenda WHERE report_id = ? ORDER BY id', [row.report_id]);
  const study = row.study_instance_uid === null ? undefined : await sql.get<{ study_date: string | null; study_time: string | null; study_id: string | null; referring_physician_name: string | null; description: string | null }>(
    'SELECT study_date, study_time, study_id, referring_physician_name, description FROM studies WHERE study_instance_uid = ?', [row.study_instance_uid]);
  return {
    reportId: Number(row.report_id), requestId: Number(row.request_id), status: row.status, requestingSite: site,
    patient: {
      PatientID: row.patient_id, IssuerOfPatientID: row.issuer,
      ...(some(row.patient_name) ? { PatientName: row.patient_name } : {}),
      ...(some(row.birth_date) ? { PatientBirthDate: row.birth_date } : {}),
      ...(some(row.sex) ? { PatientSex: row.sex } : {}),
    },
    ...(row.study_instance_uid !== null ? { StudyInstanceUID: row.study_instance_uid } : {}),
    ...(some(row.accession_number) ? { AccessionNumber: row.accession_number } : {}),
    ...(study ? {
      study: {
        ...(some(study.study_date) ? { StudyDate: study.study_date } : {}), ...(some(study.study_time) ? { StudyTime: study.study_time } : {}),
        ...(some(study.study_id) ? { StudyID: study.study_id } : {}), ...(some(study.referring_physician_name) ? { ReferringPhysicianName: study.referring_physician_name } : {}),
        ...(some(study.description) ? { StudyDescription: study.description } : {}),
      },
    } : {}),
    modality: row.modality, bodyPart: row.body_part, protocol: row.protocol ?? row.proposed_protocol, urgency: row.urgency,
    clinicalContext: row.clinical_context, clinicalQuestion: row.clinical_question,
    requestingPhysician: { name: row.requesting_physician, ...(row.requesting_physician_rpps !== null ? { rpps: row.requesting_physician_rpps } : {}) },
    observedAt: new Date(row.images_arrived_at ?? row.created_at),
    ...(row.signed_at !== null ? { signedAt: new Date(row.signed_at) } : {}),
    signer: { login: row.signer_login, name: row.signer_name, ...(row.signer_rpps !== null ? { rpps: row.signer_rpps } : {}) },
    ...(row.template !== null ? { template: row.template } : {}),
    ...(row.template_fields_json !== null ? { fieldLabels: labelsOf(row.template_fields_json) } : {}),
    fields: JSON.parse(row.fields_json) as Record<string, string>, findings: row.findings, conclusion: row.conclusion,
    addenda: addenda.map((a) => ({ text: a.text, signedBy: a.signed_by, signedAt: new Date(a.signed_at) })),
  };
}

function labelsOf(fieldsJson: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const f of JSON.parse(fieldsJson) as Array<{ name: string; label?: string }>) if (f.label) labels[f.name] = f.label;
  return labels;
}
