/**
 * Sends signed reports back to their requesting site: each pending delivery (written in the
 * transaction that signed the report or added its addendum, so none is lost) is built as
 * ORU^R01 when it is sent, sent over MLLP to the site's configured listener, and marked sent
 * on an accepting ACK. A refusal, a timeout or an unreachable listener is retried with
 * doubling delays, with the same control ID (the receiver may spot a duplicate), until
 * delivery.maxAttempts; then it is marked failed. Every attempt is in the audit trail.
 * Several nodes may run it: a delivery is leased by a conditional update before it is sent.
 */
import type { Logger } from 'pino';
import { AuditTrail, patientRef } from '../access/audit.ts';
import type { Archive } from '../archive/archive.ts';
import type { TeleradiologyConfig } from '../config/config.ts';
import { sendOverMllp } from '../hl7/mllp-client.ts';
import { encodeOru, type OruReport, type ResultStatus } from './oru.ts';

interface DueRow { id: number; report_id: number; result_status: ResultStatus; attempts: number; next_attempt_at: string }

const MAX_DELAY_MS = 3_600_000;

export class ReportDelivery {
  private readonly audit: AuditTrail;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(private readonly archive: Archive, private readonly config: TeleradiologyConfig, private readonly logger: Logger, private readonly sendingFacility = 'ATRIUM') {
    this.audit = new AuditTrail(archive.index.sql);
  }

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.deliverDue()
        .catch((e: unknown) => this.logger.error({ err: e }, 'report delivery failed; it retries'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.config.delivery.pollMs);
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** One pass: every delivery due now is attempted once. Answers how many were sent. */
  async deliverDue(now = new Date()): Promise<number> {
    const sql = this.archive.index.sql;
    const due = await sql.all<DueRow>(
      `SELECT id, report_id, result_status, attempts, next_attempt_at FROM tele_deliveries
        WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT 50`, [now.toISOString()]);
    let sent = 0;
    for (const d of due) {
      const lease = new Date(Date.now() + this.config.delivery.ackTimeoutMs * 2).toISOString();
      const taken = await sql.run(`UPDATE tele_deliveries SET next_attempt_at = ? WHERE id = ? AND status = 'pending' AND next_attempt_at = ?`, [lease, d.id, d.next_attempt_at]);
      if (taken.changes !== 1) continue; // another node has it
      if (await this.attempt(d)) sent++;
    }
    return sent;
  }

  private async attempt(d: DueRow): Promise<boolean> {
    const sql = this.archive.index.sql;
    const attempts = Number(d.attempts) + 1;
    const controlId = `ATRORU${d.id}`;
    const built = await this.reportFor(Number(d.report_id), d.result_status, controlId);
    const at = new Date().toISOString();
    const event = {
      actor: 'atrium', actorKind: 'system' as const, via: 'hl7' as const, patients: built ? [built.patientRef] : [],
      ...(built?.report.StudyInstanceUID ? { StudyInstanceUID: built.report.StudyInstanceUID } : {}),
    };
    if (!built || !built.destination) {
      const why = built ? 'the requesting site has no ORU listener configured any more' : 'the report is gone';
      await sql.run(`UPDATE tele_deliveries SET status = 'failed', attempts = ?, last_error = ? WHERE id = ?`, [attempts, why, d.id]);
      await this.audit.record({ action: 'report-send', outcome: 'failure', ...event, details: { delivery: Number(d.id), why } });
      return false;
    }
    const { host, port } = built.destination;
    const payload = encodeOru(built.report);
    try {
      await sendOverMllp({ host, port }, payload, controlId, this.config.delivery.ackTimeoutMs);
    } catch (e) {
      const why = (e as Error).message;
      const failed = attempts >= this.config.delivery.maxAttempts;
      const delay = Math.min(this.config.delivery.retryBaseMs * 2 ** (attempts - 1), MAX_DELAY_MS);
      await sql.run(`UPDATE tele_deliveries SET status = ?, attempts = ?, last_error = ?, next_attempt_at = ?, payload = ? WHERE id = ?`,
        [failed ? 'failed' : 'pending', attempts, why, new Date(Date.now() + delay).toISOString(), payload.toString('latin1'), d.id]);
      await this.audit.record({ action: 'report-send', outcome: 'failure', ...event, details: { delivery: Number(d.id), to: `${host}:${port}`, attempt: attempts, why, gaveUp: failed } });
      this.logger.warn({ delivery: Number(d.id), attempt: attempts, err: why }, failed ? 'report delivery failed for good' : 'report delivery failed; it will be retried');
      return false;
    }
    await sql.run(`UPDATE tele_deliveries SET status = 'sent', attempts = ?, sent_at = ?, last_error = NULL, payload = ? WHERE id = ?`,
      [attempts, at, payload.toString('latin1'), d.id]);
    await this.audit.record({ action: 'report-send', outcome: 'success', ...event, details: { delivery: Number(d.id), to: `${host}:${port}`, attempt: attempts, resultStatus: d.result_status } });
    return true;
  }

  /** What the message says, read now from the report, its request and its patient record. */
  private async reportFor(reportId: number, resultStatus: ResultStatus, controlId: string): Promise<{ report: OruReport; patientRef: string; destination?: { host: string; port: number } } | undefined> {
    const sql = this.archive.index.sql;
    const row = await sql.get<{
      request_id: number; requesting_site_id: number; study_instance_uid: string | null; accession_number: string | null; modality: string;
      protocol: string | null; proposed_protocol: string; requesting_physician: string; requesting_physician_rpps: string | null;
      images_arrived_at: string | null; created_at: string; fields_json: string; findings: string; conclusion: string; signed_at: string | null;
      signer_login: string; signer_name: string; issuer: string; patient_id: string; patient_name: string | null; birth_date: string | null; sex: string | null;
    }>(
      `SELECT r.id AS request_id, r.requesting_site_id, r.study_instance_uid, r.accession_number, r.modality, r.protocol, r.proposed_protocol,
              r.requesting_physician, r.requesting_physician_rpps, r.images_arrived_at, r.created_at, t.fields_json, t.findings, t.conclusion,
              t.signed_at, u.login AS signer_login, u.display_name AS signer_name, p.issuer, p.patient_id, p.patient_name, p.birth_date, p.sex
         FROM tele_reports t JOIN tele_requests r ON r.id = t.request_id JOIN users u ON u.id = t.author_user_id JOIN patients p ON p.id = r.patient_id
        WHERE t.id = ?`, [reportId]);
    if (!row || row.signed_at === null) return undefined;
    const addenda = await sql.all<{ text: string; signed_by: string; signed_at: string }>(
      'SELECT text, signed_by, signed_at FROM tele_report_addenda WHERE report_id = ? ORDER BY id', [reportId]);
    const site = this.archive.siteById.get(Number(row.requesting_site_id));
    const oru = this.config.sites.find((s) => s.site === site?.code)?.oru;
    const report: OruReport = {
      controlId,
      sending: { application: 'ATRIUM', facility: this.sendingFacility },
      receiving: { application: oru?.application ?? '', facility: oru?.facility ?? site?.code ?? '' },
      characterSet: oru?.characterSet ?? '8859/1',
      patient: {
        PatientID: row.patient_id, IssuerOfPatientID: row.issuer,
        ...(row.patient_name !== null ? { PatientName: row.patient_name } : {}),
        ...(row.birth_date !== null ? { PatientBirthDate: row.birth_date } : {}),
        ...(row.sex !== null ? { PatientSex: row.sex } : {}),
      },
      placerOrderNumber: `TELE-${row.request_id}`,
      ...(row.accession_number !== null ? { AccessionNumber: row.accession_number } : {}),
      ...(row.study_instance_uid !== null ? { StudyInstanceUID: row.study_instance_uid } : {}),
      procedure: { code: row.modality, text: row.protocol ?? row.proposed_protocol },
      orderingProvider: { name: row.requesting_physician, ...(row.requesting_physician_rpps !== null ? { rpps: row.requesting_physician_rpps } : {}) },
      observedAt: new Date(row.images_arrived_at ?? row.created_at),
      resultStatus,
      signedAt: new Date(row.signed_at),
      interpreter: { id: row.signer_login, name: row.signer_name },
      fields: JSON.parse(row.fields_json) as Record<string, string>,
      findings: row.findings,
      conclusion: row.conclusion,
      addenda: addenda.map((a) => ({ text: a.text, signedBy: a.signed_by, signedAt: new Date(a.signed_at) })),
    };
    return {
      report, patientRef: patientRef(site?.code ?? '?', row.issuer, row.patient_id),
      ...(oru ? { destination: { host: oru.host, port: oru.port } } : {}),
    };
  }
}
