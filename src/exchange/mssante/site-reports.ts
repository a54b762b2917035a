/**
 * Reports received from a site's RIS (HL7 ORU/MDM, src/hl7/document-messages.ts) over
 * MSSanté: each new CR-IMG that is not a teleradiology report's (document.final events, read
 * by an outbox consumer) queues, in the consumer's transaction, a delivery to the physician
 * the CDA names as requester (participant REF, by RPPS, looked up when sent) and to the
 * patient when the site allows it; a sender works through them like the report deliveries
 * (leased, retried with doubling delays, bounced or failed for good). The message is the
 * channel's (channel.ts): the study's current CR-IMG and KOS in IHE_XDM.ZIP, and the PDF when
 * the CR-IMG carries one (PDF body). Table mssante_site_deliveries (channel.ts migrations);
 * shown with the study's documents (GET /api/studies/{uid}/documents: mssante).
 */
import type { Logger } from 'pino';
import type { Archive } from '../../archive/archive.ts';
import type { MssanteConfig } from '../../config/mssante-config.ts';
import type { TeleradiologyConfig } from '../../config/config.ts';
import { OutboxConsumer } from '../../events/consumer.ts';
import type { OutboxEvent } from '../../events/outbox.ts';
import type { SqlDatabase } from '../../index/sql.ts';
import { PollingLoop } from '../../lib/polling-loop.ts';
import { LeasedQueue } from '../../index/leased-queue.ts';
import { AuditTrail } from '../../access/audit.ts';
import { all, first, ns, parseXml } from '../dmp/xml.ts';
import { listStudyDocuments, loadStudyDocument } from '../study-documents.ts';
import { DeliveryRefused, migrateMssante, mssanteAnswers, type MssanteAnswer, type MssanteChannel } from './channel.ts';

const RPPS_ROOT = '1.2.250.1.71.4.2.1';
const MAX_DELAY_MS = 3_600_000;
/** mssante_site_deliveries' claim and lease (src/index/leased-queue.ts). */
const siteDeliveries = new LeasedQueue({ table: 'mssante_site_deliveries' });

/** The requester's RPPS a CR-IMG names (participant typeCode REF, id under the RPPS root, "8" + RPPS), or undefined. */
export function requesterRppsOf(cda: string): string | undefined {
  const doc = parseXml(cda);
  for (const p of all(doc, ns.hl7, 'participant')) {
    if (p.getAttribute('typeCode') !== 'REF') continue;
    const id = all(p, ns.hl7, 'id').find((i) => i.getAttribute('root') === RPPS_ROOT);
    const ext = id?.getAttribute('extension') ?? '';
    const m = /^8?([0-9]{11})$/.exec(ext);
    if (m) return m[1];
  }
  return undefined;
}

/** The PDF a CR-IMG with a PDF body carries (XDS-SD nonXMLBody), or undefined. */
export function pdfOfCda(cda: string): Buffer | undefined {
  const text = first(parseXml(cda), ns.hl7, 'nonXMLBody');
  const t = text ? first(text, ns.hl7, 'text') : undefined;
  if (!t || t.getAttribute('mediaType') !== 'application/pdf') return undefined;
  return Buffer.from((t.textContent ?? '').replace(/\s+/g, ''), 'base64');
}

/** Queues the deliveries of the new CR-IMGs received from the sites' RIS. */
export class SiteReportsConsumer extends OutboxConsumer {
  constructor(private readonly archive: Archive, private readonly config: MssanteConfig, logger: Logger, pollMs: number) {
    super(archive.outbox, 'mssante-site-reports', logger, 100, pollMs);
  }

  override start(): void {
    migrateMssante(this.archive.index.sql).then(() => super.start(), (e: unknown) => this.logger.error({ err: e }, 'MSSanté tables could not be created'));
  }

  override async drain(): Promise<number> {
    await migrateMssante(this.archive.index.sql);
    return super.drain();
  }

  protected async apply(tx: SqlDatabase, events: OutboxEvent[]): Promise<void> {
    for (const e of events) {
      if (e.type !== 'document.final') continue;
      const { documentId, siteId } = e.payload as { documentId?: string; siteId?: number };
      if (!documentId || !/^[0-9]{1,15}$/.test(documentId)) continue;
      const loaded = await loadStudyDocument(tx, Number(documentId));
      // A teleradiology report's CR-IMG goes with the report's own deliveries (tele_deliveries).
      if (!loaded || loaded.document.kind !== 'CR-IMG' || loaded.document.reportId !== undefined) continue;
      const site = this.archive.siteById.get(Number(siteId));
      const mailbox = this.config.sites.find((s) => s.site === site?.code);
      if (!site || !mailbox) continue;
      const rpps = requesterRppsOf(loaded.content.toString('utf8'));
      const destinations = [...(rpps ? [`rpps:${rpps}`] : []), ...(mailbox.patients ? ['patient'] : [])];
      const at = new Date().toISOString();
      for (const destination of destinations) {
        await tx.run(
          `INSERT INTO mssante_site_deliveries (document_id, site_id, study_instance_uid, destination, status, attempts, next_attempt_at, created_at)
           VALUES (?, ?, ?, ?, 'pending', 0, ?, ?) ON CONFLICT (document_id, destination) DO NOTHING`,
          [Number(documentId), site.id, loaded.document.StudyInstanceUID, destination, at, at]);
      }
    }
  }
}

interface DueRow { id: number; site_id: number; study_instance_uid: string; destination: string; attempts: number; next_attempt_at: string }

/** Sends the queued deliveries of site reports through the MSSanté channel. */
export class SiteReportSender {
  private loop: PollingLoop | undefined;
  private readonly audit: AuditTrail;

  constructor(private readonly archive: Archive, private readonly channel: MssanteChannel, private readonly config: TeleradiologyConfig, private readonly logger: Logger) {
    this.audit = new AuditTrail(archive.index.sql);
  }

  start(): void {
    this.loop = new PollingLoop(() => this.deliverDue(), this.config.delivery.pollMs, (e) => this.logger.error({ err: e }, 'site report delivery failed; it retries'));
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }

  /** One pass: every delivery due now is attempted once; answers how many were sent. */
  async deliverDue(now = new Date()): Promise<number> {
    const sql = this.archive.index.sql;
    await migrateMssante(sql);
    const due = await siteDeliveries.due<DueRow>(sql, 'id, site_id, study_instance_uid, destination, attempts, next_attempt_at', now, { orderBy: 'next_attempt_at, id', limit: 50 });
    let sent = 0;
    for (const d of due) {
      const holdMs = Math.max(this.config.delivery.ackTimeoutMs * 2, (this.config.mssante?.timeoutMs ?? 30_000) * 4);
      const lease = await siteDeliveries.take(sql, d.id, { state: 'pending', next: d.next_attempt_at }, new Date(Date.now() + holdMs));
      if (lease === undefined) continue; // another node has it
      if (await this.attempt(d, lease)) sent++;
    }
    return sent;
  }

  private async attempt(d: DueRow, lease: string): Promise<boolean> {
    const sql = this.archive.index.sql;
    const attempts = Number(d.attempts) + 1;
    const site = this.archive.siteById.get(Number(d.site_id));
    const base = { siteDelivery: Number(d.id), channel: 'mssante', attempt: attempts };
    const event = { actor: 'atrium', actorKind: 'system' as const, via: 'api' as const, patients: [], StudyInstanceUID: d.study_instance_uid };
    try {
      if (!site) throw new DeliveryRefused('the site is gone', 'failed');
      const outcome = await this.channel.sendStudyReport({
        key: -Number(d.id), destination: d.destination, siteCode: site.code, StudyInstanceUID: d.study_instance_uid,
        pdf: async () => {
          const cr = (await listStudyDocuments(sql, d.study_instance_uid)).find((x) => x.current && x.kind === 'CR-IMG');
          const loaded = cr ? await loadStudyDocument(sql, cr.id) : undefined;
          return loaded ? pdfOfCda(loaded.content.toString('utf8')) : undefined;
        },
      });
      await siteDeliveries.settle(sql, d.id, lease, `status = 'sent', attempts = ?, sent_at = ?, last_error = NULL, destination = ?`,
        [attempts, new Date().toISOString(), outcome.to]);
      await this.audit.record({ action: 'report-send', outcome: 'success', ...event, details: { ...base, to: outcome.to, ...outcome.details } });
      return true;
    } catch (e) {
      const why = (e as Error).message;
      const status = e instanceof DeliveryRefused ? e.status : attempts >= this.config.delivery.maxAttempts ? 'failed' : 'pending';
      const delay = Math.min(this.config.delivery.retryBaseMs * 2 ** (attempts - 1), MAX_DELAY_MS);
      await siteDeliveries.settle(sql, d.id, lease, 'status = ?, attempts = ?, last_error = ?, next_attempt_at = ?',
        [status, attempts, why, new Date(Date.now() + delay).toISOString()]);
      await this.audit.record({ action: 'report-send', outcome: 'failure', ...event, details: { ...base, why, gaveUp: status !== 'pending' } });
      this.logger.warn({ siteDelivery: Number(d.id), attempt: attempts, err: why }, status === 'pending' ? 'site report delivery failed; it will be retried' : 'site report delivery failed for good');
      return false;
    }
  }
}

export interface SiteReportDelivery {
  id: number; documentId: number; channel: 'mssante'; destination: string; status: string; attempts: number;
  createdAt: string; lastError?: string; sentAt?: string; answer?: MssanteAnswer;
}

/** The MSSanté deliveries of a study's reports received from its site's RIS, oldest first. */
export async function siteReportDeliveries(sql: SqlDatabase, StudyInstanceUID: string): Promise<SiteReportDelivery[]> {
  type Row = { id: number; document_id: number; destination: string; status: string; attempts: number; last_error: string | null; created_at: string; sent_at: string | null };
  let rows: Row[];
  try {
    rows = await sql.all<Row>(
      'SELECT id, document_id, destination, status, attempts, last_error, created_at, sent_at FROM mssante_site_deliveries WHERE study_instance_uid = ? ORDER BY id', [StudyInstanceUID]);
  } catch (e) {
    // An installation that never sent over MSSanté has not the table: a listing does not create it.
    if (/mssante_site_deliveries/.test((e as Error).message)) return [];
    throw e;
  }
  const answers = await mssanteAnswers(sql, rows.map((r) => -Number(r.id)));
  return rows.map((r) => ({
    id: Number(r.id), documentId: Number(r.document_id), channel: 'mssante' as const, destination: r.destination, status: r.status, attempts: Number(r.attempts), createdAt: r.created_at,
    ...(r.last_error !== null ? { lastError: r.last_error } : {}), ...(r.sent_at !== null ? { sentAt: r.sent_at } : {}),
    ...(answers.has(-Number(r.id)) ? { answer: answers.get(-Number(r.id))! } : {}),
  }));
}
