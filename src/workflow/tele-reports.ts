/**
 * Reports of teleradiology readings: a draft saved on the server as it is typed (a reader
 * whose connection drops loses nothing), signed by the assigned radiologist as preliminary
 * or final; a final report is never edited again, an addendum follows it (status amended).
 * Each signature and addendum puts a delivery to the requesting site in the same
 * transaction (ORU^R01 over MLLP when the site has a listener), sent by the delivery worker.
 */
import { migrateMssante, mssanteAnswers, mssanteDestinations, type MssanteAnswer } from '../exchange/mssante/channel.ts';
import type { Principal } from '../access/principal.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { ReportTemplates } from './report-templates.ts';
import { requireRadiologist, TeleError, type Origin, type RequestRow, type TeleRequests } from './tele-requests.ts';
import { markStudyDocumentsDue } from '../exchange/study-documents.ts';
import { appendEvent } from '../events/outbox.ts';

export const reportStatuses = ['draft', 'preliminary', 'final', 'amended'] as const;
export type ReportStatus = (typeof reportStatuses)[number];

export interface ReportContent {
  /** Exam-type template the report follows (its code). */
  template?: string;
  /** Structured fields of the template, by name. */
  fields?: Record<string, string>;
  findings?: string;
  conclusion?: string;
  /** The version the reader's copy was saved as: a save from a stale copy (another tab, another device) is refused (409). */
  baseVersion?: number;
}

export interface Delivery {
  id: number; channel: string; destination: string; resultStatus: ResultStatus; status: string; attempts: number;
  createdAt: string; lastError?: string; sentAt?: string;
  /** MSSanté: what the recipient's side answered (MDN processed or error with its code, or a bounce). */
  answer?: MssanteAnswer;
}

export interface Addendum { id: number; text: string; signedBy: string; signedAt: string }

export interface TeleReport {
  id: number;
  requestId: number;
  status: ReportStatus;
  template?: string;
  fields: Record<string, string>;
  findings: string;
  conclusion: string;
  author: string;
  /** Incremented by every save: the reader's client compares it to detect another tab's save. */
  version: number;
  createdAt: string;
  updatedAt: string;
  signedAt?: string;
  signedBy?: string;
  addenda: Addendum[];
}

interface ReportRow {
  id: number; request_id: number; status: ReportStatus; template: string | null; fields_json: string; findings: string; conclusion: string;
  author_user_id: number; author_login: string; version: number; created_at: string; updated_at: string; signed_at: string | null; signed_by: string | null;
}

const signedStatuses: readonly ReportStatus[] = ['final', 'amended'];

/** HL7 OBR-25 result status of what is sent: preliminary, final, corrected (an addendum). */
export type ResultStatus = 'P' | 'F' | 'C';

export class TeleReports {
  private readonly templates: ReportTemplates;

  constructor(private readonly requests: TeleRequests) {
    this.templates = new ReportTemplates(requests);
  }

  private get sql(): SqlDatabase {
    return this.requests.sql;
  }

  private async reportRow(tx: SqlDatabase, requestId: number): Promise<ReportRow | undefined> {
    return tx.get<ReportRow>(
      'SELECT t.*, u.login AS author_login FROM tele_reports t JOIN users u ON u.id = t.author_user_id WHERE t.request_id = ?', [requestId]);
  }

  private async reportOf(tx: SqlDatabase, r: ReportRow): Promise<TeleReport> {
    const addenda = await tx.all<{ id: number; text: string; signed_by: string; signed_at: string }>(
      'SELECT id, text, signed_by, signed_at FROM tele_report_addenda WHERE report_id = ? ORDER BY id', [r.id]);
    return {
      id: Number(r.id), requestId: Number(r.request_id), status: r.status, ...(r.template !== null ? { template: r.template } : {}),
      fields: JSON.parse(r.fields_json) as Record<string, string>, findings: r.findings, conclusion: r.conclusion, author: r.author_login,
      version: Number(r.version), createdAt: r.created_at, updatedAt: r.updated_at,
      ...(r.signed_at !== null ? { signedAt: r.signed_at, signedBy: r.signed_by! } : {}),
      addenda: addenda.map((a) => ({ id: Number(a.id), text: a.text, signedBy: a.signed_by, signedAt: a.signed_at })),
    };
  }

  /** The report of a request, for those who may see the request. */
  async reportFor(who: Principal, requestId: number, origin: Origin): Promise<TeleReport> {
    await this.requests.requestFor(who, requestId, origin);
    const row = await this.reportRow(this.sql, requestId);
    if (!row) throw new TeleError('not-found', `request ${requestId} has no report yet`);
    return this.reportOf(this.sql, row);
  }

  /**
   * Saves the draft as typed (the whole content each time; absent parts are kept). Only the
   * reader holding the reading saves, and each save renews the claim. A signed final report
   * is refused: an addendum follows it instead.
   */
  async saveDraft(who: Principal, requestId: number, content: ReportContent, origin: Origin, now = new Date()): Promise<TeleReport> {
    const userId = requireRadiologist(who);
    return this.sql.transaction(async (tx) => {
      const existing = await this.reportRow(tx, requestId);
      if (existing && signedStatuses.includes(existing.status)) throw new TeleError('conflict', `the report of request ${requestId} is signed: add an addendum instead`);
      if (content.baseVersion !== undefined && content.baseVersion !== Number(existing?.version ?? 0)) {
        throw new TeleError('conflict', `the draft was saved meanwhile (version ${Number(existing?.version ?? 0)}, not ${content.baseVersion}): reload it before going on`);
      }
      const request = await this.requests.holdReading(tx, who, requestId, now);
      await this.templates.checkDraft(tx, content.template ?? existing?.template ?? undefined, content.fields ?? (existing ? JSON.parse(existing.fields_json) as Record<string, string> : {}));
      const at = now.toISOString();
      if (!existing) {
        await tx.run(
          `INSERT INTO tele_reports (request_id, status, template, fields_json, findings, conclusion, author_user_id, version, created_at, updated_at)
           VALUES (?, 'draft', ?, ?, ?, ?, ?, 1, ?, ?)`,
          [requestId, content.template ?? null, JSON.stringify(content.fields ?? {}), content.findings ?? '', content.conclusion ?? '', userId, at, at],
        );
      } else {
        await tx.run(
          `UPDATE tele_reports SET template = ?, fields_json = ?, findings = ?, conclusion = ?, author_user_id = ?, version = version + 1, updated_at = ? WHERE id = ?`,
          [content.template ?? existing.template, JSON.stringify(content.fields ?? JSON.parse(existing.fields_json)), content.findings ?? existing.findings,
            content.conclusion ?? existing.conclusion, userId, at, existing.id],
        );
      }
      const saved = (await this.reportRow(tx, requestId))!;
      await this.requests.record(tx, who, origin, 'report-draft', request, { report: Number(saved.id), version: Number(saved.version), status: saved.status });
      return this.reportOf(tx, saved);
    });
  }

  /**
   * Signs the report as the authenticated, assigned radiologist: preliminary (may still be
   * completed, then signed final) or final (the request is reported and leaves the worklists).
   */
  async signReport(who: Principal, requestId: number, options: { preliminary?: boolean }, origin: Origin, now = new Date()): Promise<TeleReport> {
    const userId = requireRadiologist(who);
    // The MSSanté recipients are read in the signing transaction: their table exists before it opens.
    if (this.requests.config.mssante) await migrateMssante(this.sql);
    return this.requests.auditingRefusals(who, origin, 'report-sign', requestId, (tx) => this.signIn(tx, who, userId, requestId, options, origin, now));
  }

  private async signIn(tx: SqlDatabase, who: Principal, userId: number, requestId: number, options: { preliminary?: boolean }, origin: Origin, now: Date): Promise<TeleReport> {
    {
      const request = await this.requests.row(tx, requestId);
      if (Number(request.assigned_user_id) !== userId) {
        throw new TeleError('forbidden', `request ${requestId} is not assigned to this radiologist: only its reader signs`);
      }
      const report = await this.reportRow(tx, requestId);
      if (!report) throw new TeleError('conflict', `request ${requestId} has no report to sign: save a draft first`);
      if (signedStatuses.includes(report.status)) throw new TeleError('conflict', `the report of request ${requestId} is already signed: add an addendum instead`);
      if (request.status === 'awaiting-protocol') throw new TeleError('conflict', `the protocol of request ${requestId} is not decided yet`);
      if (report.conclusion.trim() === '') throw new TeleError('incomplete', 'a report is signed with its conclusion', ['conclusion']);
      await this.templates.checkSignable(tx, report.template ?? undefined, JSON.parse(report.fields_json) as Record<string, string>);
      const at = now.toISOString();
      const status: ReportStatus = options.preliminary ? 'preliminary' : 'final';
      // The reading site, for activity reporting: the site the radiologist reads for (their first).
      await tx.run('UPDATE tele_reports SET status = ?, signed_at = ?, signed_by = ?, reading_site_id = ?, updated_at = ? WHERE id = ?',
        [status, at, who.id, who.sites[0]?.id ?? null, at, report.id]);
      if (status === 'final') {
        await tx.run(`UPDATE tele_requests SET status = 'reported', reported_at = ?, claimed_by = NULL, claim_expires_at = NULL, updated_at = ? WHERE id = ?`, [at, at, requestId]);
        // A teleradiology act, for metering (src/billing/metering.ts): billed to the requesting site.
        await appendEvent(tx, 'tele.reported', { requestId, siteId: Number(request.requesting_site_id), readingSiteId: who.sites[0]?.id ?? null, StudyInstanceUID: request.study_instance_uid }, at);
      }
      await this.requests.record(tx, who, origin, 'report-sign', request, { report: Number(report.id), status });
      await this.queueDeliveries(tx, request, Number(report.id), status === 'final' ? 'F' : 'P', now);
      return this.reportOf(tx, (await this.reportRow(tx, requestId))!);
    }
  }

  /** An addendum to a signed report, signed by the request's reader: the report itself is never changed. */
  async addAddendum(who: Principal, requestId: number, addendum: string, origin: Origin, now = new Date()): Promise<TeleReport> {
    const userId = requireRadiologist(who);
    if (addendum.trim() === '') throw new TeleError('invalid', 'an addendum has text');
    if (this.requests.config.mssante) await migrateMssante(this.sql);
    return this.requests.auditingRefusals(who, origin, 'report-addendum', requestId, async (tx) => {
      const request = await this.requests.row(tx, requestId);
      if (Number(request.assigned_user_id) !== userId) {
        throw new TeleError('forbidden', `request ${requestId} is not assigned to this radiologist: only its reader adds to its report`);
      }
      const report = await this.reportRow(tx, requestId);
      if (!report || !signedStatuses.includes(report.status)) throw new TeleError('conflict', `the report of request ${requestId} is not signed final: edit the draft instead`);
      const at = now.toISOString();
      const added = await tx.get<{ id: number }>(
        'INSERT INTO tele_report_addenda (report_id, text, author_user_id, signed_by, signed_at) VALUES (?, ?, ?, ?, ?) RETURNING id',
        [report.id, addendum.trim(), userId, who.id, at]);
      await tx.run(`UPDATE tele_reports SET status = 'amended', updated_at = ? WHERE id = ?`, [at, report.id]);
      await this.requests.record(tx, who, origin, 'report-addendum', request, { report: Number(report.id), addendum: Number(added!.id) });
      await this.queueDeliveries(tx, request, Number(report.id), 'C', now);
      return this.reportOf(tx, (await this.reportRow(tx, requestId))!);
    });
  }

  /** Where the report went back to the requesting site, and how it went (for its sender and readers). */
  async deliveriesFor(who: Principal, requestId: number, origin: Origin): Promise<Delivery[]> {
    await this.requests.requestFor(who, requestId, origin);
    const rows = await this.sql.all<{ id: number; channel: string; destination: string; result_status: ResultStatus; status: string; attempts: number; last_error: string | null; created_at: string; sent_at: string | null }>(
      `SELECT d.id, d.channel, d.destination, d.result_status, d.status, d.attempts, d.last_error, d.created_at, d.sent_at
         FROM tele_deliveries d JOIN tele_reports t ON t.id = d.report_id WHERE t.request_id = ? ORDER BY d.id`, [requestId]);
    const answers = await mssanteAnswers(this.sql, rows.filter((r) => r.channel === 'mssante').map((r) => Number(r.id)));
    return rows.map((r) => ({
      id: Number(r.id), channel: r.channel, destination: r.destination, resultStatus: r.result_status, status: r.status, attempts: Number(r.attempts),
      createdAt: r.created_at, ...(r.last_error !== null ? { lastError: r.last_error } : {}), ...(r.sent_at !== null ? { sentAt: r.sent_at } : {}),
      ...(answers.has(Number(r.id)) ? { answer: answers.get(Number(r.id))! } : {}),
    }));
  }

  /** Where the report goes: into the study (encapsulated PDF), and to the requesting site's RIS when it has a listener (teleradiology.sites[].oru). */
  private async queueDeliveries(tx: SqlDatabase, request: RequestRow, reportId: number, resultStatus: ResultStatus, now: Date): Promise<void> {
    // The signed report (final, or with its addendum) as an encapsulated PDF in the study.
    if (resultStatus !== 'P' && request.study_instance_uid !== null) {
      await tx.run(
        `INSERT INTO tele_deliveries (report_id, channel, destination, result_status, status, attempts, next_attempt_at, created_at)
         VALUES (?, 'dicom-pdf', 'archive', ?, 'pending', 0, ?, ?)`,
        [reportId, resultStatus, now.toISOString(), now.toISOString()]);
      // The study's documents for the DMP (CR-IMG, manifest) are built from the final report.
      await markStudyDocumentsDue(tx, request.study_instance_uid, resultStatus === 'F' ? 'report-final' : 'report-amended', now);
    }
    const site = this.requests.archive.siteById.get(Number(request.requesting_site_id));
    // MSSanté: the requesting physician's mailbox (and the patient's, if the site allows), for a final or amended report.
    if (resultStatus !== 'P') {
      for (const destination of await mssanteDestinations(tx, this.requests.config.mssante, site?.code, { id: Number(request.id), rpps: request.requesting_physician_rpps })) {
        await tx.run(
          `INSERT INTO tele_deliveries (report_id, channel, destination, result_status, status, attempts, next_attempt_at, created_at)
           VALUES (?, 'mssante', ?, ?, 'pending', 0, ?, ?)`,
          [reportId, destination, resultStatus, now.toISOString(), now.toISOString()]);
      }
    }
    const oru = this.requests.config.sites.find((s) => s.site === site?.code)?.oru;
    if (!oru) return;
    await tx.run(
      `INSERT INTO tele_deliveries (report_id, channel, destination, result_status, status, attempts, next_attempt_at, created_at)
       VALUES (?, 'hl7-oru', ?, ?, 'pending', 0, ?, ?)`,
      [reportId, `${oru.host}:${oru.port}`, resultStatus, now.toISOString(), now.toISOString()]);
  }
}

/**
 * Of these studies, those whose signed report (findings or conclusion) contains the text,
 * ignoring case and accents: a research cohort's "report findings" criterion (src/research/).
 */
export async function studiesWithReportText(sql: SqlDatabase, StudyInstanceUIDs: readonly string[], text: string): Promise<Set<string>> {
  const fold = (s: string) => s.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
  const needle = fold(text);
  const found = new Set<string>();
  for (let i = 0; i < StudyInstanceUIDs.length; i += 500) {
    const batch = StudyInstanceUIDs.slice(i, i + 500);
    const rows = await sql.all<{ study_instance_uid: string; findings: string; conclusion: string }>(
      `SELECT q.study_instance_uid, r.findings, r.conclusion FROM tele_requests q JOIN tele_reports r ON r.request_id = q.id
        WHERE r.status IN ('preliminary', 'final', 'amended') AND q.study_instance_uid IN (${batch.map(() => '?').join(', ')})`,
      batch);
    for (const r of rows) if (fold(`${r.findings}\n${r.conclusion}`).includes(needle)) found.add(r.study_instance_uid);
  }
  return found;
}
