/**
 * Identities read from the images: every stored object's header (its stored DICOM JSON) is searched for an INS
 * (Other Patient IDs Sequence, src/patients/ins-dicom.ts) and what it says is recorded for
 * the object's patient record. An INS travels in DICOM only when the sending site's
 * identity is qualified (the RNIV sharing rule), so it is taken as qualified; one that
 * does not parse is flagged for review. Runs behind ingest, from the outbox, at its own
 * cursor: ingest never waits for it, and a crash neither loses nor repeats an event.
 */
import type { Logger } from 'pino';
import { OutboxConsumer } from './outbox-consumer.ts';
import type { Archive } from '../archive/archive.ts';
import { ArchiveIndex } from '../index/archive-index.ts';
import { readINSFromJson, type INSReading } from '../patients/ins-dicom.ts';
import { openReview, proposeDemographicLinks, recordIdentity } from '../patients/identities.ts';

export const IDENTITY_CONSUMER = 'identities';
const BATCH = 200;

export class IdentityFromImages extends OutboxConsumer {
  constructor(private readonly archive: Archive, logger: Logger, pollMs = 1000) {
    super(logger, BATCH, pollMs);
  }

  protected async runOnce(): Promise<number> {
    const index = this.archive.index;
    const events = await index.eventsAfterCursor(IDENTITY_CONSUMER, BATCH);
    if (events.length === 0) return 0;
    const readings: Array<{ patientId: number; reading: INSReading; sex?: string; birthDate?: string }> = [];
    for (const e of events) {
      if (e.type !== 'instance.stored' && e.type !== 'instance.replaced') continue;
      const { SOPInstanceUID, blobKey } = e.payload as { SOPInstanceUID: string; blobKey: string };
      // The stored DICOM JSON holds Other Patient IDs Sequence whole: no need to read the object.
      const row = await index.sql.get<{ id: number; sex: string | null; birth_date: string | null; metadata_json: string }>(
        `SELECT p.id, p.sex, p.birth_date, i.metadata_json FROM instances i JOIN series se ON se.id = i.series_id JOIN studies s ON s.id = se.study_id
          JOIN patients p ON p.id = s.patient_id WHERE i.sop_instance_uid = ? AND i.blob_key = ?`,
        [SOPInstanceUID, blobKey],
      );
      if (!row) continue; // replaced or deleted since: a later event covers it
      readings.push({
        patientId: Number(row.id),
        reading: readINSFromJson(JSON.parse(row.metadata_json) as Parameters<typeof readINSFromJson>[0]),
        sex: row.sex ?? undefined,
        birthDate: row.birth_date ?? undefined,
      });
    }
    const lastId = events[events.length - 1]!.id;
    let linked = 0;
    let flagged = 0;
    await index.sql.transaction(async (tx) => {
      const touched = new Set<number>();
      for (const r of readings) {
        touched.add(r.patientId);
        for (const problem of r.reading.problems) {
          if (await openReview(tx, 'ins-invalid', r.patientId, null, problem)) flagged++;
        }
        if (!r.reading.ins) continue;
        const outcome = await recordIdentity(tx, r.patientId, { ins: r.reading.ins, status: 'qualified', source: 'dicom', sex: r.sex, birthDate: r.birthDate });
        if (outcome.personId !== undefined) linked++;
        flagged += outcome.reviews.length;
      }
      for (const patientId of touched) flagged += await proposeDemographicLinks(tx, patientId);
      await ArchiveIndex.advanceCursor(tx, IDENTITY_CONSUMER, lastId);
    });
    if (linked + flagged > 0) this.logger.info({ events: events.length, linked, reviews: flagged }, 'identities read from images');
    return events.length;
  }
}
