/**
 * Images meet their order: an object arriving with the accession number of one of its
 * site's scheduled procedures is the order being performed. The order leaves the worklist
 * (status STARTED), and an object that names another patient than its order is flagged for
 * review rather than attached silently. Runs behind ingest, from the outbox, at its own cursor.
 */
import type { Logger } from 'pino';
import { StudiesStoredConsumer } from '../events/consumer.ts';
import type { Archive } from '../archive/archive.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { openReview } from '../patients/identities.ts';

export const ORDER_CONSUMER = 'orders';
const BATCH = 500;

export class OrderMatching extends StudiesStoredConsumer {
  private started = 0;
  private flagged = 0;

  constructor(archive: Archive, logger: Logger, pollMs = 1000) {
    super(archive.outbox, ORDER_CONSUMER, logger, BATCH, pollMs);
  }

  protected async onStudyStored(tx: SqlDatabase, { StudyInstanceUID, siteId }: { StudyInstanceUID: string; siteId: number }): Promise<void> {
    const study = await tx.get<{ accession_number: string | null; patient_row: number; patient_id: string; issuer: string }>(
      `SELECT s.accession_number, p.id AS patient_row, p.patient_id, p.issuer FROM studies s JOIN patients p ON p.id = s.patient_id
        WHERE s.study_instance_uid = ?`, [StudyInstanceUID],
    );
    if (!study?.accession_number) return;
    const order = await tx.get<{ id: number; patient_id: string; issuer: string; status: string }>(
      'SELECT id, patient_id, issuer, status FROM scheduled_procedures WHERE site_id = ? AND accession_number = ?',
      [siteId, study.accession_number],
    );
    if (!order) return;
    if (order.patient_id !== study.patient_id || order.issuer !== study.issuer) {
      if (await openReview(tx, 'order-mismatch', Number(study.patient_row), null,
        `study ${StudyInstanceUID} carries accession number ${study.accession_number}, ordered for another patient record of the site`)) this.flagged++;
      return;
    }
    if (order.status === 'SCHEDULED' || order.status === 'ARRIVED' || order.status === 'READY') {
      await tx.run(`UPDATE scheduled_procedures SET status = 'STARTED', updated_at = ? WHERE id = ?`, [new Date().toISOString(), order.id]);
      this.started++;
    }
  }

  protected override afterBatch(): void {
    if (this.started + this.flagged > 0) this.logger.info({ started: this.started, flagged: this.flagged }, 'images matched to their orders');
    this.started = 0;
    this.flagged = 0;
  }
}
