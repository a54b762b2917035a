/**
 * Images meet their order: an object arriving with the accession number of one of its
 * site's scheduled procedures is the order being performed. The order leaves the worklist
 * (status STARTED), and an object that names another patient than its order is flagged for
 * review rather than attached silently. Runs behind ingest, from the outbox, at its own cursor.
 */
import type { Logger } from 'pino';
import { OutboxConsumer } from './outbox-consumer.ts';
import type { Archive } from '../archive/archive.ts';
import { ArchiveIndex } from '../index/archive-index.ts';
import { openReview } from '../patients/identities.ts';

export const ORDER_CONSUMER = 'orders';
const BATCH = 500;

export class OrderMatching extends OutboxConsumer {
  constructor(private readonly archive: Archive, logger: Logger, pollMs = 1000) {
    super(logger, BATCH, pollMs);
  }

  protected async runOnce(): Promise<number> {
    const index = this.archive.index;
    const events = await index.eventsAfterCursor(ORDER_CONSUMER, BATCH);
    if (events.length === 0) return 0;
    let started = 0;
    let flagged = 0;
    await index.sql.transaction(async (tx) => {
      const seen = new Set<string>();
      for (const e of events) {
        if (e.type !== 'instance.stored') continue;
        const { StudyInstanceUID, siteId } = e.payload as { StudyInstanceUID: string; siteId: number };
        if (seen.has(StudyInstanceUID)) continue;
        seen.add(StudyInstanceUID);
        const study = await tx.get<{ accession_number: string | null; patient_row: number; patient_id: string; issuer: string }>(
          `SELECT s.accession_number, p.id AS patient_row, p.patient_id, p.issuer FROM studies s JOIN patients p ON p.id = s.patient_id
            WHERE s.study_instance_uid = ?`, [StudyInstanceUID],
        );
        if (!study?.accession_number) continue;
        const order = await tx.get<{ id: number; patient_id: string; issuer: string; status: string }>(
          'SELECT id, patient_id, issuer, status FROM scheduled_procedures WHERE site_id = ? AND accession_number = ?',
          [siteId, study.accession_number],
        );
        if (!order) continue;
        if (order.patient_id !== study.patient_id || order.issuer !== study.issuer) {
          if (await openReview(tx, 'order-mismatch', Number(study.patient_row), null,
            `study ${StudyInstanceUID} carries accession number ${study.accession_number}, ordered for another patient record of the site`)) flagged++;
          continue;
        }
        if (order.status === 'SCHEDULED' || order.status === 'ARRIVED' || order.status === 'READY') {
          await tx.run(`UPDATE scheduled_procedures SET status = 'STARTED', updated_at = ? WHERE id = ?`, [new Date().toISOString(), order.id]);
          started++;
        }
      }
      await ArchiveIndex.advanceCursor(tx, ORDER_CONSUMER, events[events.length - 1]!.id);
    });
    if (started + flagged > 0) this.logger.info({ started, flagged }, 'images matched to their orders');
    return events.length;
  }
}
