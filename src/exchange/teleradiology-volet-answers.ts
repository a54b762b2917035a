/**
 * Flux 3 of the CI-SIS teleradiology volet: Atrium's answer to a request a RIS filed over
 * HL7 (hl7/teleradiology-volet.ts), as ORU^R01 over MLLP to the site's RIS listener
 * (teleradiology.sites[].oru): ORC-1 OK with the validated (or changed) protocol in an OBX
 * PROTOCOLE_IMAGERIE, or OC with the reason in ORC-16 when the radiologist returned the
 * request. What is owed is read from the request's state (its protocol decided, or it
 * returned), so nothing is lost between the decision and the send: an answer is pending
 * until an accepting ACK, retried with doubling delays until delivery.maxAttempts, and
 * every attempt is in the audit trail. A cancelled request is answered nothing.
 */
import type { Logger } from 'pino';
import { AuditTrail, patientRef } from '../access/audit.ts';
import type { Archive } from '../archive/archive.ts';
import type { TeleradiologyConfig } from '../config/config.ts';
import { hl7Timestamp } from '../hl7/acknowledgment.ts';
import { encodeText } from '../hl7/character-sets.ts';
import { encodeMessage, parseMessage, segment, standardDelimiters, type Hl7Message, type Segment } from '../hl7/message.ts';
import { sendOverMllp } from '../hl7/mllp-client.ts';
import { migrateTeleradiologyVolet, teleradiologyVolet } from '../hl7/teleradiology-volet.ts';
import { LeasedQueue } from '../index/leased-queue.ts';

const MAX_DELAY_MS = 3_600_000;
/** The answers' claim and lease on tlr_volet_orders (src/index/leased-queue.ts). */
const answers = new LeasedQueue({ table: 'tlr_volet_orders', key: 'request_id', state: 'answer_status', next: 'answer_next_at' });

export interface VoletAnswer {
  controlId: string;
  sending: { application: string; facility: string };
  /** The RIS that filed the request (its MSH-3 and MSH-4). */
  receiving: { application: string; facility: string };
  /**
   * The PID the RIS sent, as it sent it: the answer names the patient as the site does. Its INS
   * goes back to the site it came from, so the sharing rule (ins.ts) is not at stake here.
   */
  pid: Segment;
  placerOrderNumber: string;
  /** OBR-4 as the request gave it. */
  procedure: string[];
  decision: { code: 'OK'; protocol: string } | { code: 'OC'; reason: string };
  /** The radiologist who decided (ORC-12, OBR-16 of the volet's example): id and name. */
  radiologist?: { id: string; family: string; given?: string };
}

/** The ORU^R01 of flux 3, built to the volet's constraints (MSH-12 2.5.1, MSH-17 FRA, MSH-18 UNICODE UTF-8, MSH-21). */
export function buildVoletAnswer(a: VoletAnswer, at = new Date()): Hl7Message {
  const v = teleradiologyVolet;
  const xcn = a.radiologist ? [a.radiologist.id, a.radiologist.family, a.radiologist.given ?? ''] : undefined;
  const orc: Array<string | string[] | undefined> = new Array(21).fill(undefined);
  orc[0] = a.decision.code;
  orc[1] = a.placerOrderNumber;
  orc[11] = xcn;
  if (a.decision.code === 'OC') orc[15] = ['', a.decision.reason];
  orc[16] = [...v.organisationType];
  const obr: Array<string | string[] | undefined> = new Array(16).fill(undefined);
  obr[1] = a.placerOrderNumber;
  obr[3] = a.procedure;
  obr[15] = xcn;
  const segments: Segment[] = [
    segment('MSH', '|', '^~\\&', a.sending.application, a.sending.facility, a.receiving.application, a.receiving.facility, hl7Timestamp(at), undefined,
      ['ORU', 'R01', 'ORU_R01'], a.controlId, 'P', v.hl7Version, undefined, undefined, undefined, undefined, 'FRA', 'UNICODE UTF-8', undefined, undefined, [v.version, v.profile]),
    a.pid,
    segment('ORC', ...orc),
    segment('OBR', ...obr),
  ];
  if (a.decision.code === 'OK') {
    segments.push(segment('OBX', '1', 'FT', [v.codes.protocol, 'Protocole d\'imagerie médicale', v.observationSystem], undefined, a.decision.protocol,
      undefined, undefined, undefined, undefined, undefined, 'F'));
  }
  return { delimiters: standardDelimiters, segments };
}

interface DueRow {
  request_id: number; requesting_site_id: number; patient_id: number; placer_order_number: string; sender_application: string; sender_facility: string;
  pid_segment: string; procedure_code: string; answer_attempts: number; answer_next_at: string | null; answer_status: string | null;
  status: string; protocol_decision: string | null; protocol: string | null; protocol_by: string | null; returned_reason: string | null; study_instance_uid: string | null;
}

class PermanentFailure extends Error {}

export class TeleradiologyVoletAnswers {
  private readonly audit: AuditTrail;
  private migrated: Promise<void> | undefined;

  constructor(private readonly archive: Archive, private readonly config: TeleradiologyConfig, private readonly logger: Logger, private readonly sendingFacility = 'ATRIUM') {
    this.audit = new AuditTrail(archive.index.sql);
  }

  /** One pass: every answer owed and due is attempted once. Answers how many were accepted. */
  async deliverDue(now = new Date()): Promise<number> {
    const sql = this.archive.index.sql;
    // Tried again at the next pass if it failed (the database briefly away at start).
    this.migrated ??= migrateTeleradiologyVolet(sql).catch((e: unknown) => {
      this.migrated = undefined;
      throw e;
    });
    await this.migrated;
    const due = await sql.all<DueRow>(
      `SELECT o.request_id, r.requesting_site_id, r.patient_id, o.placer_order_number, o.sender_application, o.sender_facility, o.pid_segment, o.procedure_code,
              o.answer_attempts, o.answer_next_at, o.answer_status, r.status, r.protocol_decision, r.protocol, r.protocol_by, r.returned_reason, r.study_instance_uid
         FROM tlr_volet_orders o JOIN tele_requests r ON r.id = o.request_id
        WHERE o.cancelled_at IS NULL AND (r.protocol_decision IS NOT NULL OR r.status = 'returned')
          AND (o.answer_status IS NULL OR (o.answer_status = 'pending' AND o.answer_next_at <= ?))
        ORDER BY o.request_id LIMIT 50`, [now.toISOString()]);
    let sent = 0;
    for (const d of due) {
      // Taken by a conditional update: another node that took it first makes this one skip it.
      const lease = await answers.take(sql, d.request_id, { state: d.answer_status, next: d.answer_next_at }, new Date(Date.now() + this.config.delivery.ackTimeoutMs * 2));
      if (lease === undefined) continue;
      if (await this.attempt(d, lease)) sent++;
    }
    return sent;
  }

  private async attempt(d: DueRow, lease: string): Promise<boolean> {
    const sql = this.archive.index.sql;
    const attempts = Number(d.answer_attempts) + 1;
    const site = this.archive.siteById.get(Number(d.requesting_site_id));
    const patient = await sql.get<{ issuer: string; patient_id: string }>('SELECT issuer, patient_id FROM patients WHERE id = ?', [d.patient_id]);
    const event = {
      actor: 'atrium', actorKind: 'system' as const, via: 'hl7' as const,
      patients: site && patient ? [patientRef(site.code, patient.issuer, patient.patient_id)] : [],
      ...(d.study_instance_uid ? { StudyInstanceUID: d.study_instance_uid } : {}),
    };
    // The answer follows the protocol decision; a request returned before any decision is refused (OC).
    const decision = d.protocol_decision !== null
      ? { code: 'OK' as const, protocol: d.protocol ?? '' }
      : { code: 'OC' as const, reason: d.returned_reason ?? 'demande refusée' };
    const base = { request: Number(d.request_id), channel: 'hl7-tlr-answer', answer: decision.code, attempt: attempts };
    const controlId = `ATRTLR${d.request_id}`;
    try {
      const oru = this.config.sites.find((s) => s.site === site?.code)?.oru;
      if (!oru) throw new PermanentFailure('the requesting site has no RIS listener configured (teleradiology.sites[].oru)');
      const radiologist = decision.code === 'OK' && d.protocol_by !== null ? await this.radiologistOf(d.protocol_by) : undefined;
      const message = buildVoletAnswer({
        controlId,
        sending: { application: 'ATRIUM', facility: this.sendingFacility },
        receiving: { application: d.sender_application, facility: d.sender_facility },
        pid: parseMessage(`MSH|^~\\&|\r${d.pid_segment}\r`).segments[1]!,
        placerOrderNumber: d.placer_order_number,
        procedure: JSON.parse(d.procedure_code) as string[],
        decision,
        ...(radiologist ? { radiologist } : {}),
      });
      const payload = encodeText(encodeMessage(message), 'UNICODE UTF-8');
      await sendOverMllp({ host: oru.host, port: oru.port }, payload, controlId, this.config.delivery.ackTimeoutMs);
      await answers.settle(sql, d.request_id, lease, `answer_status = 'sent', answer_code = ?, answer_attempts = ?, answer_sent_at = ?, answer_last_error = NULL, answer_payload = ?`,
        [decision.code, attempts, new Date().toISOString(), payload.toString('utf8')]);
      await this.audit.record({ action: 'report-send', outcome: 'success', ...event, details: { ...base, to: `${oru.host}:${oru.port}` } });
      return true;
    } catch (e) {
      const why = (e as Error).message;
      const failed = e instanceof PermanentFailure || attempts >= this.config.delivery.maxAttempts;
      const delay = Math.min(this.config.delivery.retryBaseMs * 2 ** (attempts - 1), MAX_DELAY_MS);
      await answers.settle(sql, d.request_id, lease, 'answer_status = ?, answer_attempts = ?, answer_last_error = ?, answer_next_at = ?',
        [failed ? 'failed' : 'pending', attempts, why, new Date(Date.now() + delay).toISOString()]);
      await this.audit.record({ action: 'report-send', outcome: 'failure', ...event, details: { ...base, why, gaveUp: failed } });
      this.logger.warn({ request: Number(d.request_id), attempt: attempts, err: why }, failed ? 'teleradiology volet answer failed for good' : 'teleradiology volet answer failed; it will be retried');
      return false;
    }
  }

  /** ORC-12 of the answer: the RPPS as an IDNPS ("8" + RPPS) when the user has one, else the login. */
  private async radiologistOf(login: string): Promise<VoletAnswer['radiologist']> {
    const u = await this.archive.index.sql.get<{ display_name: string; rpps: string | null }>('SELECT display_name, rpps FROM users WHERE login = ?', [login]);
    if (!u) return { id: login, family: login };
    return { id: u.rpps ? `8${u.rpps}` : login, family: u.display_name };
  }
}
