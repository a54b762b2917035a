/**
 * The report for humans: one PDF with the requesting site, the patient, the exam, the
 * question, the report and its addenda, and who signed when. Also what the DICOM
 * encapsulated PDF stored in the study carries.
 */
import type { SignedReport } from './signed-report.ts';

const statusLabel: Record<SignedReport['status'], string> = {
  draft: 'BROUILLON (non signé)', preliminary: 'Compte rendu préliminaire', final: 'Compte rendu définitif', amended: 'Compte rendu définitif, complété par addendum',
};

/** The urgency as the requesting sites say it. */
const urgencyLabel: Record<string, string> = { routine: 'programmée', urgent: 'urgente', stroke: 'alerte AVC' };

/** The time zone of the sites when none is configured (teleradiology.timeZone). */
export const defaultReportTimeZone = 'Europe/Paris';

/** "07/12/2026 à 02:10 (heure de Paris)": a moment as the site's clocks show it. */
export function siteDateTime(at: Date, timeZone: string): string {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('fr-FR', {
    timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  }).formatToParts(at).map((p) => [p.type, p.value]));
  const city = timeZone.split('/').at(-1)!.replaceAll('_', ' ');
  return `${parts.day}/${parts.month}/${parts.year} à ${parts.hour}:${parts.minute} (heure de ${city})`;
}

/** dd/mm/yyyy of a DICOM date (YYYYMMDD), or the date as given. */
function frenchDate(da: string): string {
  return /^\d{8}$/.test(da) ? `${da.slice(6, 8)}/${da.slice(4, 6)}/${da.slice(0, 4)}` : da;
}

export async function renderReportPdf(r: SignedReport, options: { timeZone?: string } = {}): Promise<Buffer> {
  // Loaded when a PDF is made, not at start (pdfkit and its fonts cost about 0.4 s of CPU to load).
  const { default: PDFDocument } = await import('pdfkit');
  const timeZone = options.timeZone ?? defaultReportTimeZone;
  // Fixed dates make the same report the same bytes (a retried store sends identical content).
  const doc = new PDFDocument({ size: 'A4', margin: 56, info: { Title: `Compte rendu de télé-interprétation ${r.requestId}`, Author: r.signer.name, Creator: 'Atrium', CreationDate: r.signedAt ?? r.observedAt } });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (c: Buffer) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  const name = r.patient.PatientName?.split('=')[0]!.split('^').filter((p) => p !== '').join(' ') ?? '';
  doc.font('Helvetica-Bold').fontSize(15).text('Compte rendu de télé-interprétation');
  doc.font('Helvetica').fontSize(10).fillColor('#444').text(`${statusLabel[r.status]} · demande n° ${r.requestId} · ${r.requestingSite.name} (FINESS ${r.requestingSite.finess})`);
  doc.moveDown().fillColor('black');
  const line = (label: string, value: string | undefined) => {
    if (value === undefined || value === '') return;
    doc.font('Helvetica-Bold').text(`${label} : `, { continued: true }).font('Helvetica').text(value);
  };
  line('Patient', `${name} · ${r.patient.PatientID} (${r.patient.IssuerOfPatientID})`);
  line('Né(e) le', r.patient.PatientBirthDate !== undefined ? frenchDate(r.patient.PatientBirthDate) : undefined);
  line('Examen', `${r.modality} ${r.bodyPart} · ${r.protocol}`);
  line('Date de l\'examen', r.study?.StudyDate !== undefined ? frenchDate(r.study.StudyDate) : undefined);
  line('N° d\'accession', r.AccessionNumber);
  line('Demandeur', r.requestingPhysician.name + (r.requestingPhysician.rpps ? ` (RPPS ${r.requestingPhysician.rpps})` : ''));
  line('Urgence', urgencyLabel[r.urgency] ?? r.urgency);
  doc.moveDown();
  const section = (title: string, body: string) => {
    if (body.trim() === '') return;
    doc.font('Helvetica-Bold').fontSize(11).text(title).font('Helvetica').fontSize(10).text(body).moveDown(0.7);
  };
  section('Indication', r.clinicalContext);
  section('Question posée', r.clinicalQuestion);
  const fields = Object.entries(r.fields).filter(([, v]) => v.trim() !== '');
  if (fields.length > 0) section('Éléments structurés', fields.map(([k, v]) => `${r.fieldLabels?.[k] ?? k} : ${v}`).join('\n'));
  section('Résultats', r.findings);
  section('Conclusion', r.conclusion);
  for (const a of r.addenda) section(`Addendum du ${siteDateTime(a.signedAt, timeZone)} (${a.signedBy})`, a.text);
  doc.moveDown().fontSize(9).fillColor('#444')
    .text(r.signedAt ? `Signé électroniquement par ${r.signer.name}${r.signer.rpps ? ` (RPPS ${r.signer.rpps})` : ''} le ${siteDateTime(r.signedAt, timeZone)}.` : 'Non signé.');
  doc.end();
  return done;
}
