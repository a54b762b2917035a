/**
 * Identities read from the images: every stored object's header (its stored DICOM JSON) is searched for an INS
 * (Other Patient IDs Sequence, src/patients/ins-dicom.ts) and what it says is recorded for
 * the object's patient record. An INS travels in DICOM only when the sending site's
 * identity is qualified (the RNIV sharing rule), so it is taken as qualified; one that
 * does not parse is flagged for review. Runs behind ingest, from the outbox, at its own
 * position: ingest never waits for it, and a crash neither loses nor repeats an event.
 */
import type { Logger } from 'pino';
import { OutboxConsumer } from '../events/consumer.ts';
import type { Archive } from '../archive/archive.ts';
import type { SqlDatabase } from '../index/sql.ts';
import type { OutboxEvent } from '../events/outbox.ts';
import { readINSFromJson, type INSReading } from '../patients/ins-dicom.ts';
import { openReview, proposeDemographicLinks, recordIdentity } from '../patients/identities.ts';

export const IDENTITY_CONSUMER = 'identities';
const BATCH = 200;

export class IdentityFromImages extends OutboxConsumer {
  private linked = 0;
  private flagged = 0;
  private read = 0;

  constructor(archive: Archive, logger: Logger, pollMs = 1000) {
    super(archive.outbox, IDENTITY_CONSUMER, logger, BATCH, pollMs);
  }

  protected async apply(tx: SqlDatabase, events: OutboxEvent[]): Promise<void> {
    const touched = new Set<number>();
    for (const e of events) {
      if (e.type !== 'instance.stored' && e.type !== 'instance.replaced') continue;
      const { SOPInstanceUID, blobKey } = e.payload as { SOPInstanceUID: string; blobKey: string };
      // The stored DICOM JSON holds Other Patient IDs Sequence whole: no need to read the object.
      const row = await tx.get<{ id: number; sex: string | null; birth_date: string | null; metadata_json: string }>(
        `SELECT p.id, p.sex, p.birth_date, i.metadata_json FROM instances i JOIN series se ON se.id = i.series_id JOIN studies s ON s.id = se.study_id
          JOIN patients p ON p.id = s.patient_id WHERE i.sop_instance_uid = ? AND i.blob_key = ?`,
        [SOPInstanceUID, blobKey],
      );
      if (!row) continue; // replaced or deleted since: a later event covers it
      const patientId = Number(row.id);
      const reading: INSReading = readINSFromJson(JSON.parse(row.metadata_json) as Parameters<typeof readINSFromJson>[0]);
      touched.add(patientId);
      for (const problem of reading.problems) {
        if (await openReview(tx, 'ins-invalid', patientId, null, problem)) this.flagged++;
      }
      if (!reading.ins) continue;
      const outcome = await recordIdentity(tx, patientId, { ins: reading.ins, status: 'qualified', source: 'dicom', sex: row.sex ?? undefined, birthDate: row.birth_date ?? undefined });
      if (outcome.personId !== undefined) this.linked++;
      this.flagged += outcome.reviews.length;
    }
    for (const patientId of touched) this.flagged += await proposeDemographicLinks(tx, patientId);
    this.read += events.length;
  }

  protected override afterBatch(): void {
    if (this.linked + this.flagged > 0) this.logger.info({ events: this.read, linked: this.linked, reviews: this.flagged }, 'identities read from images');
    this.linked = 0;
    this.flagged = 0;
    this.read = 0;
  }
}
