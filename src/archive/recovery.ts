import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { ArchiveIndex } from '../index/archive-index.ts';
import type { Site } from '../index/records.ts';
import { BlobNotFoundError, BlobSizeError, type BlobStore } from '../storage/blob-store.ts';
import type { IngestJournal, JournaledObject } from '../storage/ingest-journal.ts';
import { siteCodeOfBlobKey, type Ingestor } from './ingest.ts';

export interface JournalRecoveryReport {
  segments: number;
  records: number;
  /** Objects the journal still named (not discarded since). */
  objects: number;
  /** Small objects whose file did not survive intact, written again from the journal. */
  restored: number;
  /** Objects the index lacked, indexed now. */
  reindexed: number;
  alreadyIndexed: number;
  discarded: number;
  /** Large objects (flushed where they lie) found missing: deleted since, by hand or by a repair. */
  missing: number;
  /** Objects indexing refused again (kept in storage; `atrium verify` reports them as orphans). */
  refused: number;
  tornSegments: number;
  ms: number;
}

/**
 * Replays the ingest journal left by the previous run: every object it names is made whole
 * in storage and indexed if the index lacks it. Runs at start, before anything listens, so
 * an acknowledged object is found by the first request. Bounded by the journal (the objects
 * of the last moments), never a walk of the store; logged with its counts.
 */
export async function recoverIngestJournal(
  journal: IngestJournal,
  parts: { index: ArchiveIndex; store: BlobStore; ingestor: Ingestor; sites: ReadonlyMap<string, Site> },
  logger: Logger,
): Promise<JournalRecoveryReport> {
  const started = Date.now();
  const pending = await journal.pending();
  const report: JournalRecoveryReport = {
    segments: pending.segments.length, records: pending.records, objects: pending.objects.length,
    restored: 0, reindexed: 0, alreadyIndexed: 0, discarded: pending.discarded, missing: 0, refused: 0,
    tornSegments: pending.tornSegments, ms: 0,
  };
  if (pending.segments.length === 0) return report;
  const { index, store, ingestor, sites } = parts;
  for (const object of pending.objects) {
    if (object.inline) {
      if (!(await storedIntact(store, object))) {
        const bytes = await journal.readInline(object);
        // The record's checksum guards the journal; this guards what was put in it.
        if (sha256(bytes) !== object.sha256) {
          report.refused++;
          logger.error({ key: object.key }, 'a journaled object does not match its own SHA-256: not restored');
          continue;
        }
        await store.put(object.key, Readable.from([bytes]));
        report.restored++;
      }
    } else if (!(await store.stat(object.key))) {
      report.missing++;
      continue;
    }
    if (await index.isBlobKeyReferenced(object.key)) {
      report.alreadyIndexed++;
      continue;
    }
    const code = siteCodeOfBlobKey(object.key);
    const site = code === undefined ? undefined : sites.get(code);
    const result = site ? await ingestor.reindexBlob(object.key, { site, via: 'reindex' }) : undefined;
    if (result?.ok || result?.error.code === 'duplicate-kept') {
      report.reindexed++;
    } else {
      report.refused++;
      logger.warn({ key: object.key, reason: result ? result.error.code : `no configured site ${code ?? ''}` }, 'a journaled object could not be indexed again');
    }
  }
  // Everything replayed is made durable before the segments go.
  await store.syncAll?.(pending.objects.map((o) => o.key));
  await index.sql.flush();
  await journal.dropSegments(pending.segments);
  report.ms = Date.now() - started;
  logger.info(report, 'ingest journal recovered');
  return report;
}

async function storedIntact(store: BlobStore, object: JournaledObject): Promise<boolean> {
  try {
    return sha256(await store.readWhole(object.key, object.size)) === object.sha256;
  } catch (e) {
    if (e instanceof BlobNotFoundError || e instanceof BlobSizeError) return false;
    throw e;
  }
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}
