/**
 * Images meet their teleradiology request: an object arriving in the study a request names,
 * or with its site's accession number, starts the request's clock (the deadline runs from the
 * images' arrival) and opens the study to the assigned reader (assignment grant). A stroke
 * request still unassigned goes to the on-call radiologist. Runs behind ingest, from the
 * outbox, at its own cursor, like the other consumers.
 */
import type { Logger } from 'pino';
import { StudiesStoredConsumer } from '../events/consumer.ts';
import type { SqlDatabase } from '../index/sql.ts';
import type { RequestRow, TeleRequests } from './tele-requests.ts';

export const TELE_CONSUMER = 'teleradiology';
const BATCH = 500;

export class TeleImagesArrival extends StudiesStoredConsumer {
  private matched = 0;

  constructor(private readonly requests: TeleRequests, logger: Logger, pollMs = 500) {
    super(requests.archive.outbox, TELE_CONSUMER, logger, BATCH, pollMs);
  }

  protected async onStudyStored(tx: SqlDatabase, { StudyInstanceUID, siteId }: { StudyInstanceUID: string; siteId: number }): Promise<void> {
    const now = new Date();
    const study = await tx.get<{ accession_number: string | null; patient_id: number }>(
      'SELECT accession_number, patient_id FROM studies WHERE study_instance_uid = ?', [StudyInstanceUID]);
    if (!study) return;
    // Requests waiting for these images: by study, or by accession number at the site (same patient only).
    const byAccession = study.accession_number !== null && study.accession_number !== '';
    const waiting = await tx.all<RequestRow>(
      `SELECT r.* FROM tele_requests r WHERE r.images_arrived_at IS NULL AND r.status IN ('awaiting-protocol', 'open')
         AND (r.study_instance_uid = ?${byAccession ? ' OR (r.study_instance_uid IS NULL AND r.requesting_site_id = ? AND r.accession_number = ?)' : ''})`,
      [StudyInstanceUID, ...(byAccession ? [siteId, study.accession_number] : [])],
    );
    for (const r of waiting) {
      if (Number(r.patient_id) !== Number(study.patient_id)) {
        this.logger.warn({ request: Number(r.id) }, 'images with the request\'s accession number belong to another patient record: not attached');
        continue;
      }
      const minutes = this.requests.config.deadlineMinutes[r.urgency];
      const deadline = new Date(now.getTime() + minutes * 60_000).toISOString();
      await tx.run('UPDATE tele_requests SET study_instance_uid = ?, images_arrived_at = ?, deadline_at = ?, updated_at = ? WHERE id = ?',
        [StudyInstanceUID, now.toISOString(), deadline, now.toISOString(), r.id]);
      let row = await this.requests.row(tx, Number(r.id));
      await this.requests.record(tx, 'system', { via: 'api' }, 'tele-request', row, { imagesArrived: true, deadline });
      if (row.assigned_user_id !== null) {
        // The reader was named before the study existed: the grant opens it now.
        await this.requests.assignReading(tx, { ...row, assignment_grant_id: null }, Number(row.assigned_user_id), 'atrium', now);
      } else if (row.urgency === 'stroke') {
        const oncall = await this.requests.onCallFor(tx, this.requests.config.strokeSpecialty, now);
        if (oncall !== undefined) {
          await this.requests.assignReading(tx, row, oncall, 'atrium', now);
          row = await this.requests.row(tx, Number(r.id));
          await this.requests.record(tx, 'system', { via: 'api' }, 'tele-assign', row, { to: row.assigned_login, why: 'on call' });
        }
      }
      this.matched++;
    }
  }

  protected override afterBatch(): void {
    if (this.matched > 0) this.logger.info({ matched: this.matched }, 'images arrived for teleradiology requests');
    this.matched = 0;
  }
}
