/**
 * Sends signed reports back to their requesting site: each pending delivery (written in the
 * transaction that signed the report or added its addendum, so none is lost) is built when
 * it is sent: an ORU^R01 sent over MLLP to the site's configured listener and marked sent on
 * an accepting ACK, or a DICOM encapsulated PDF stored into the study through ingest. A refusal, a timeout or an unreachable listener is retried with
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
import { loadSignedReport, type SignedReport } from './signed-report.ts';
import { renderReportPdf } from './report-pdf.ts';
import { encapsulatedPdfOf } from './encapsulated-pdf.ts';
import { Readable } from 'node:stream';
import { PollingLoop } from '../lib/polling-loop.ts';
import { LeasedQueue } from '../index/leased-queue.ts';
import { TeleradiologyVoletAnswers } from './teleradiology-volet-answers.ts';
import { DeliveryRefused, MssanteChannel } from './mssante/channel.ts';

interface DueRow { id: number; report_id: number; channel: string; destination: string; result_status: ResultStatus; attempts: number; next_attempt_at: string }

const MAX_DELAY_MS = 3_600_000;
/** tele_deliveries' claim and lease (src/index/leased-queue.ts). */
const deliveries = new LeasedQueue({ table: 'tele_deliveries' });

/** What no retry mends (no listener configured, no study): the delivery is failed at once. */
class PermanentFailure extends Error {}

export class ReportDelivery {
  private readonly audit: AuditTrail;
  private loop: PollingLoop | undefined;
  private answersLoop: PollingLoop | undefined;
  /** Reports to MSSanté mailboxes (teleradiology.mssante), and their MDNs read back. */
  readonly mssante: MssanteChannel | undefined;

  /** Answers owed to RIS that filed requests over the CI-SIS teleradiology volet: sent in the same passes. */
  private readonly voletAnswers: TeleradiologyVoletAnswers;

  constructor(private readonly archive: Archive, private readonly config: TeleradiologyConfig, private readonly logger: Logger, private readonly sendingFacility = 'ATRIUM', mssanteOptions: { publicBaseUrl?: string } = {}) {
    this.audit = new AuditTrail(archive.index.sql);
    this.voletAnswers = new TeleradiologyVoletAnswers(archive, config, logger, sendingFacility);
    this.mssante = config.mssante ? new MssanteChannel(archive, config.mssante, logger, { ...mssanteOptions, ...(config.timeZone ? { timeZone: config.timeZone } : {}) }) : undefined;
  }

  start(): void {
    this.loop = new PollingLoop(() => this.deliverDue(), this.config.delivery.pollMs, (e) => this.logger.error({ err: e }, 'report delivery failed; it retries'));
    this.loop.start();
    if (this.mssante && this.config.mssante) {
      const channel = this.mssante;
      this.answersLoop = new PollingLoop(async () => { await channel.readAnswers(); }, this.config.mssante.pollMs, (e) => this.logger.warn({ err: e }, 'reading the MSSanté answers failed; it retries'));
      this.answersLoop.start();
    }
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
    await this.answersLoop?.stop();
  }

  /** One pass: every delivery due now is attempted once (and the volet's answers owed). Answers how many were sent. */
  async deliverDue(now = new Date()): Promise<number> {
    const sql = this.archive.index.sql;
    const due = await deliveries.due<DueRow>(sql, 'id, report_id, channel, destination, result_status, attempts, next_attempt_at', now, { orderBy: 'next_attempt_at, id', limit: 50 });
    let sent = await this.voletAnswers.deliverDue(now);
    for (const d of due) {
      // A mail submission may take the SMTP timeouts (connection, greeting, data) in turn: its lease outlasts them.
      const holdMs = d.channel === 'mssante' && this.config.mssante ? Math.max(this.config.delivery.ackTimeoutMs * 2, this.config.mssante.timeoutMs * 4) : this.config.delivery.ackTimeoutMs * 2;
      const lease = await deliveries.take(sql, d.id, { state: 'pending', next: d.next_attempt_at }, new Date(Date.now() + holdMs));
      if (lease === undefined) continue; // another node has it
      if (await this.attempt(d, lease)) sent++;
    }
    return sent;
  }

  /**
   * One attempt under the lease `lease` (the next_attempt_at this node wrote). Its outcome is
   * written only while the lease is still this node's: an attempt that outlived its lease (a
   * slow listener, a clock behind) must not make pending again what another node has sent since.
   */
  private async attempt(d: DueRow, lease: string): Promise<boolean> {
    const sql = this.archive.index.sql;
    const attempts = Number(d.attempts) + 1;
    const built = await this.reportFor(Number(d.report_id), d.result_status, `ATRORU${d.id}`);
    const event = {
      actor: 'atrium', actorKind: 'system' as const, via: d.channel === 'hl7-oru' ? 'hl7' as const : 'api' as const, patients: built ? [built.patientRef] : [],
      ...(built?.signed.StudyInstanceUID ? { StudyInstanceUID: built.signed.StudyInstanceUID } : {}),
    };
    const base = { delivery: Number(d.id), channel: d.channel, attempt: attempts, resultStatus: d.result_status };
    let outcome: { to: string; payload?: string; details?: Record<string, unknown> };
    try {
      if (!built) throw new PermanentFailure('the report is gone or unsigned');
      outcome = d.channel === 'hl7-oru' ? await this.sendOru(built)
        : d.channel === 'dicom-pdf' ? await this.storeInStudy(built.signed)
          : d.channel === 'mssante' ? await this.sendMssante(d, built.signed)
            : (() => { throw new PermanentFailure(`unknown channel ${d.channel}`); })();
    } catch (e) {
      const why = (e as Error).message;
      const failed = e instanceof PermanentFailure || e instanceof DeliveryRefused || attempts >= this.config.delivery.maxAttempts;
      const delay = Math.min(this.config.delivery.retryBaseMs * 2 ** (attempts - 1), MAX_DELAY_MS);
      // A recipient the MSSanté server refused for good is shown as bounced, not merely failed.
      const status = e instanceof DeliveryRefused ? e.status : failed ? 'failed' : 'pending';
      await deliveries.settle(sql, d.id, lease, 'status = ?, attempts = ?, last_error = ?, next_attempt_at = ?',
        [status, attempts, why, new Date(Date.now() + delay).toISOString()]);
      await this.audit.record({ action: 'report-send', outcome: 'failure', ...event, details: { ...base, why, gaveUp: failed } });
      this.logger.warn({ delivery: Number(d.id), channel: d.channel, attempt: attempts, err: why }, failed ? 'report delivery failed for good' : 'report delivery failed; it will be retried');
      return false;
    }
    await deliveries.settle(sql, d.id, lease, `status = 'sent', attempts = ?, sent_at = ?, last_error = NULL, payload = ?`,
      [attempts, new Date().toISOString(), outcome.payload ?? null]);
    await this.audit.record({ action: 'report-send', outcome: 'success', ...event, details: { ...base, to: outcome.to, ...outcome.details } });
    return true;
  }

  /** ORU^R01 over MLLP to the requesting site's RIS; the message as sent is kept. */
  private async sendOru(built: { report: OruReport; destination?: { host: string; port: number } }): Promise<{ to: string; payload: string }> {
    if (!built.destination) throw new PermanentFailure('the requesting site has no ORU listener configured any more');
    const { host, port } = built.destination;
    const payload = encodeOru(built.report);
    await sendOverMllp({ host, port }, payload, built.report.controlId, this.config.delivery.ackTimeoutMs);
    return { to: `${host}:${port}`, payload: payload.toString('latin1') };
  }

  /** The report to an MSSanté mailbox (mssante/channel.ts): the XDM archive and the PDF. */
  private async sendMssante(d: DueRow, signed: SignedReport): Promise<{ to: string; details: Record<string, unknown> }> {
    if (!this.mssante) throw new PermanentFailure('MSSanté is not configured any more');
    return this.mssante.send({ id: Number(d.id), destination: d.destination }, signed);
  }

  /** The report's PDF as a DICOM encapsulated PDF in its study, through the archive's one way in. */
  private async storeInStudy(signed: SignedReport): Promise<{ to: string; details: Record<string, unknown> }> {
    if (!signed.StudyInstanceUID) throw new PermanentFailure('the request has no study to store the report in');
    const pdf = await renderReportPdf(signed, { ...(this.config.timeZone ? { timeZone: this.config.timeZone } : {}) });
    const object = encapsulatedPdfOf(signed, pdf);
    const result = await this.archive.ingestor.ingestInstance(Readable.from([object.file]), { site: signed.requestingSite, via: 'report', expectedStudyInstanceUID: signed.StudyInstanceUID });
    if (!result.ok) throw new Error(`the archive refused the report's object: ${result.error.message}`);
    return { to: 'archive', details: { SOPInstanceUID: object.SOPInstanceUID, SeriesInstanceUID: object.SeriesInstanceUID } };
  }

  /** What the message says, read now from the report, its request and its patient record. */
  private async reportFor(reportId: number, resultStatus: ResultStatus, controlId: string): Promise<{ signed: SignedReport; report: OruReport; patientRef: string; destination?: { host: string; port: number } } | undefined> {
    const signed = await loadSignedReport(this.archive, { reportId });
    if (!signed || !signed.signedAt) return undefined;
    const site = signed.requestingSite;
    const oru = this.config.sites.find((s) => s.site === site.code)?.oru;
    const report: OruReport = {
      controlId,
      sending: { application: 'ATRIUM', facility: this.sendingFacility },
      receiving: { application: oru?.application ?? '', facility: oru?.facility ?? site.code },
      characterSet: oru?.characterSet ?? '8859/1',
      patient: signed.patient,
      placerOrderNumber: `TELE-${signed.requestId}`,
      ...(signed.AccessionNumber !== undefined ? { AccessionNumber: signed.AccessionNumber } : {}),
      ...(signed.StudyInstanceUID !== undefined ? { StudyInstanceUID: signed.StudyInstanceUID } : {}),
      procedure: { code: signed.modality, text: signed.protocol },
      orderingProvider: signed.requestingPhysician,
      observedAt: signed.observedAt,
      resultStatus,
      signedAt: signed.signedAt,
      interpreter: { id: signed.signer.login, name: signed.signer.name },
      fields: signed.fields,
      findings: signed.findings,
      conclusion: signed.conclusion,
      addenda: signed.addenda,
    };
    return {
      signed, report, patientRef: patientRef(site.code, signed.patient.IssuerOfPatientID, signed.patient.PatientID),
      ...(oru ? { destination: { host: oru.host, port: oru.port } } : {}),
    };
  }
}
