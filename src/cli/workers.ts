/**
 * The background workers of a node, built and started in one place for `atrium serve` and
 * the test harness alike: forwarding, the outbox consumers (identities, orders,
 * teleradiology arrival, DMP publication, study documents), teleradiology escalation and alerts, report delivery, the audit
 * export and anchoring, the purge of ended sessions, and lossless compression at rest. Every worker is built (a test may
 * drain one it did not start); those selected are started.
 */
import { CompressionAtRest } from '../archive/compression.ts';
import type { Logger } from 'pino';
import type { Archive } from '../archive/archive.ts';
import type { AtriumConfig } from '../config/config.ts';
import { Forwarder } from '../dimse/forwarder.ts';
import { checkRoutingDestinations } from '../dimse/routing.ts';
import { IdentityFromImages } from '../workflow/identities-from-images.ts';
import { OrderMatching } from '../workflow/order-matching.ts';
import { TeleImagesArrival } from '../workflow/tele-images.ts';
import { TeleRequests } from '../workflow/tele-requests.ts';
import { TeleEscalation } from '../workflow/tele-escalation.ts';
import { TeleAlerts } from '../workflow/tele-alerts.ts';
import { ReportDelivery } from '../exchange/report-delivery.ts';
import { SiteReportSender, SiteReportsConsumer } from '../exchange/mssante/site-reports.ts';
import { AuditAnchoring, type AnchorKey } from '../access/audit-anchor.ts';
import { AuditSyslogExporter, auditSourceOf } from '../access/audit-syslog.ts';
import { SessionStore } from '../access/sessions.ts';
import { DmpPublicationQueue, DmpPublisher } from '../exchange/dmp/publications.ts';
import type { DmpDocumentSource } from '../exchange/dmp/document.ts';
import { StudyDocumentSource, StudyDocuments, StudyDocumentsConsumer } from '../exchange/study-documents.ts';
import { RetentionEvaluation } from '../archive/lifecycle.ts';
import { RejectionNoteDelivery } from '../dimse/rejection-notes.ts';
import { DoseRecording, migrateDoseRecords } from '../workflow/dose-records.ts';
import { MeteringConsumer } from '../billing/metering.ts';
import type { StorageTiering } from '../archive/tiering.ts';

export type WorkerName =
  | 'forwarding' | 'identities' | 'orders' | 'teleradiology' | 'reportDelivery' | 'auditExport' | 'auditAnchoring' | 'sessionPurge' | 'dmp' | 'studyDocuments' | 'lifecycle' | 'compression' | 'dose' | 'tiering' | 'metering';

export const allWorkers: readonly WorkerName[] = ['forwarding', 'identities', 'orders', 'teleradiology', 'reportDelivery', 'auditExport', 'auditAnchoring', 'sessionPurge', 'dmp', 'studyDocuments', 'lifecycle', 'compression', 'dose', 'tiering', 'metering'];

export interface Workers {
  forwarder: Forwarder;
  identities: IdentityFromImages;
  orders: OrderMatching;
  teleImages: TeleImagesArrival;
  reportDelivery: ReportDelivery;
  /** Built when config.audit.syslog is set. */
  auditExport?: AuditSyslogExporter;
  /** Built when an anchor key is given. */
  auditAnchoring?: AuditAnchoring;
  /** Built when dmp.endpoint is configured and a document source is given: the queue (outbox consumer) and its sender. */
  dmp?: { queue: DmpPublicationQueue; publisher: DmpPublisher };
  /** The CR-IMG and manifests of studies whose report is final, made again when the study changes. */
  studyDocuments: { builder: StudyDocuments; changes: StudyDocumentsConsumer };
  /** The daily retention evaluation (src/archive/lifecycle.ts), and the rejection notes of deleted studies to the peers that had them. */
  lifecycle: RetentionEvaluation;
  rejectionNotes: RejectionNoteDelivery;
  /** Lossless compression at rest of new uncompressed objects (storage.compression; started when a rule is configured). */
  compression: CompressionAtRest;
  /** Radiation doses read from Radiation Dose SRs and image headers (src/workflow/dose-records.ts). */
  dose: DoseRecording;
  /** Billable events counted per site and month (src/billing/metering.ts). */
  metering: MeteringConsumer;
  /** The storage tiers' mover (src/archive/tiering.ts; runTiering(now) runs it at once), when storage.cold is configured. */
  tiering?: StorageTiering;
  /** Stops what was started, waiting up to graceMs for work in flight; the audit export last. */
  stop(graceMs?: number): Promise<void>;
}

export interface WorkerOptions {
  /** Which workers to start (default: all). */
  start?: readonly WorkerName[];
  /** The key of the audit trail's anchors (src/access/audit-anchor.ts); no anchoring without it. */
  anchorKey?: AnchorKey;
  /** The host name in audit messages (default: the machine's). */
  auditHostname: string;
  /** How often the outbox consumers poll (default: each worker's own). */
  pollMs?: number;
  /** Where DMP publication reads the documents it sends (default: the study documents, src/exchange/study-documents.ts). */
  dmpDocuments?: DmpDocumentSource;
}

export async function startWorkers(archive: Archive, config: AtriumConfig, logger: Logger, options: WorkerOptions): Promise<Workers> {
  const selected = new Set(options.start ?? allWorkers);
  // A rule may send to a peer added in the portal: known only now that the index is open.
  if (selected.has('forwarding')) await checkRoutingDestinations(config.routing.rules, archive.peers);
  const child = (component: string) => logger.child({ component });
  const forwarder = new Forwarder(archive, config, child('forwarding'));
  const identities = new IdentityFromImages(archive, child('identities'), options.pollMs);
  const orders = new OrderMatching(archive, child('orders'), options.pollMs);
  // Teleradiology: images meeting their request start its clock and open the study to its reader.
  const teleRequests = new TeleRequests(archive, config.teleradiology);
  const teleImages = new TeleImagesArrival(teleRequests, child('teleradiology'), options.pollMs ?? config.teleradiology.pollMs);
  const escalation = new TeleEscalation(teleRequests, child('teleradiology'));
  // Stroke assignments and escalations to the on-call service's alert channel (off unless configured).
  const teleAlerts = new TeleAlerts(archive.index.sql, config.teleradiology, child('teleradiology-alerts'));
  // Signed reports back to their requesting sites (ORU^R01 over MLLP), from the deliveries their signature queued.
  // MSSanté (teleradiology.mssante): the study documents it builds when still due name this Atrium as the worker's do.
  const reportDelivery = new ReportDelivery(archive, config.teleradiology, child('report-delivery'), config.dimse.aeTitle,
    config.http.publicBaseUrl !== undefined ? { publicBaseUrl: config.http.publicBaseUrl } : {});
  // Reports received from the sites' RIS, to MSSanté too (teleradiology.mssante): queued from document.final, sent like the others.
  const siteReports = reportDelivery.mssante && config.teleradiology.mssante
    ? { queue: new SiteReportsConsumer(archive, config.teleradiology.mssante, child('mssante'), options.pollMs ?? 1000), sender: new SiteReportSender(archive, reportDelivery.mssante, config.teleradiology, child('mssante')) }
    : undefined;
  // The audit trail as DICOM audit messages to a syslog collector: polls the trail, never in the request path.
  const auditExport = config.audit.syslog
    ? new AuditSyslogExporter(archive.index.sql, config.audit.syslog, auditSourceOf(config.audit.syslog, config.dimse.aeTitle, options.auditHostname), child('audit-syslog'))
    : undefined;
  // Signed checkpoints of the trail's head, outside the database (and to the collector): a cut-off end shows.
  const auditAnchoring = options.anchorKey
    ? new AuditAnchoring(archive.index.sql, config.audit.anchor, options.anchorKey, child('audit-anchor'), (line) => auditExport?.sendAnchor(line))
    : undefined;
  // Ended sessions are kept a day (they explain the audit trail's session events), then purged.
  const sessions = new SessionStore(archive.index.sql, { idleMs: config.auth.sessions.idleMinutes * 60_000, absoluteMs: config.auth.sessions.absoluteHours * 3_600_000 });
  // Reports and manifests to the DMP: queued from the outbox, sent with the site's certificate (off unless configured).
  const dmpDocuments = options.dmpDocuments ?? new StudyDocumentSource(archive.index.sql);
  const dmp = config.dmp.endpoint
    ? { queue: new DmpPublicationQueue(archive.index, child('dmp'), options.pollMs), publisher: new DmpPublisher(archive, config.dmp, dmpDocuments, child('dmp')) }
    : undefined;
  // Study documents (CR-IMG, KOS manifest): built when a report is final, again when the study changes.
  const studyDocuments = {
    builder: new StudyDocuments(archive, { ...(config.http.publicBaseUrl !== undefined ? { publicBaseUrl: config.http.publicBaseUrl } : {}), pollMs: options.pollMs ?? 1000 }, child('study-documents')),
    changes: new StudyDocumentsConsumer(archive.outbox, 'study-documents', child('study-documents'), 200, options.pollMs ?? 1000),
  };
  const lifecycle = new RetentionEvaluation(archive, config.lifecycle.retention, config.lifecycle.evaluateEveryHours * 3_600_000, child('lifecycle'));
  const rejectionNotes = new RejectionNoteDelivery(archive, config, child('lifecycle'));
  const compression = new CompressionAtRest(archive, config.storageCompression, child('compression'), options.pollMs);
  await migrateDoseRecords(archive.index.sql);
  const dose = new DoseRecording(archive.index.sql, archive.outbox, child('dose'), options.pollMs);
  const metering = new MeteringConsumer(archive, config.billing.timeZone, child('metering'), options.pollMs);
  let purge: NodeJS.Timeout | undefined;

  const stops: Array<(graceMs: number) => Promise<unknown>> = [];
  if (selected.has('forwarding')) {
    forwarder.start();
    stops.push((g) => forwarder.stop(g));
  }
  if (selected.has('identities')) {
    identities.start();
    stops.push(() => identities.stop());
  }
  if (selected.has('orders')) {
    orders.start();
    stops.push(() => orders.stop());
  }
  if (selected.has('teleradiology')) {
    teleImages.start();
    escalation.start();
    teleAlerts.start();
    stops.push(() => teleImages.stop(), () => escalation.stop(), () => teleAlerts.stop());
  }
  if (selected.has('reportDelivery')) {
    reportDelivery.start();
    stops.push(() => reportDelivery.stop());
    if (siteReports) {
      siteReports.queue.start();
      siteReports.sender.start();
      stops.push(() => siteReports.queue.stop(), () => siteReports.sender.stop());
    }
  }
  if (selected.has('dmp') && dmp) {
    dmp.queue.start();
    dmp.publisher.start();
    stops.push(() => dmp.queue.stop(), () => dmp.publisher.stop());
  }
  if (selected.has('studyDocuments')) {
    studyDocuments.changes.start();
    studyDocuments.builder.start();
    stops.push(() => studyDocuments.changes.stop(), () => studyDocuments.builder.stop());
  }
  if (selected.has('lifecycle')) {
    lifecycle.start();
    rejectionNotes.start();
    stops.push(() => lifecycle.stop(), () => rejectionNotes.stop());
  }
  if (selected.has('compression') && config.storageCompression.length > 0) {
    compression.start();
    stops.push(() => compression.stop());
  }
  const tiering = archive.tiering;
  if (selected.has('tiering') && tiering) {
    tiering.start(options.pollMs);
    stops.push(() => tiering.stop());
  }
  if (selected.has('dose')) {
    dose.start();
    stops.push(() => dose.stop());
  }
  if (selected.has('metering')) {
    metering.start();
    stops.push(() => metering.stop());
  }
  if (selected.has('sessionPurge')) {
    purge = setInterval(() => {
      sessions.purgeEndedSessions().catch((e: unknown) => logger.warn({ err: (e as Error).message }, 'purging ended sessions failed'));
    }, 3_600_000);
    purge.unref();
  }
  const exporting = selected.has('auditExport') ? auditExport : undefined;
  exporting?.start();
  const anchoring = selected.has('auditAnchoring') ? auditAnchoring : undefined;
  await anchoring?.start();

  return {
    forwarder, identities, orders, teleImages, reportDelivery, auditExport, auditAnchoring, studyDocuments, lifecycle, rejectionNotes, compression, dose, metering, ...(dmp ? { dmp } : {}), ...(tiering ? { tiering } : {}),
    async stop(graceMs = 10_000) {
      if (purge) clearInterval(purge);
      await Promise.all(stops.map((stop) => stop(graceMs)));
      // Last, so that what the closing services recorded is anchored and still goes out.
      await anchoring?.stop();
      await exporting?.stop(graceMs);
    },
  };
}
