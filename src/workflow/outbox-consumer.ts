import type { Logger } from 'pino';
import { PollingLoop } from '../lib/polling-loop.ts';
import { ArchiveIndex } from '../index/archive-index.ts';
import type { SqlDatabase } from '../index/sql.ts';

/**
 * A consumer of the outbox at its own cursor (ArchiveIndex.eventsAfterCursor): it polls,
 * reads what is new in batches, and applies each batch in one transaction that also moves
 * its cursor. Subclasses say what a batch does (runOnce answers how many events it read).
 */
export abstract class OutboxConsumer {
  private loop: PollingLoop | undefined;

  constructor(protected readonly logger: Logger, protected readonly batchSize: number, private readonly pollMs: number) {}

  protected abstract runOnce(): Promise<number>;

  start(): void {
    this.loop = new PollingLoop(() => this.drain(), this.pollMs, (e) => this.logger.error({ err: e }, 'outbox consumer failed; it retries'));
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }

  /** Reads events until none is left; answers how many were read. */
  async drain(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.runOnce();
      total += n;
      if (n < this.batchSize) return total;
    }
  }
}

/**
 * A consumer of the studies that received objects: each batch of events names each study
 * once (a series of 500 slices is one call), in the transaction that moves the cursor.
 */
export abstract class StudiesStoredConsumer extends OutboxConsumer {
  constructor(private readonly index: ArchiveIndex, private readonly consumer: string, logger: Logger, batch: number, pollMs: number) {
    super(logger, batch, pollMs);
  }

  /** What the arrival of objects in a study does, inside the batch's transaction. */
  protected abstract onStudyStored(tx: SqlDatabase, study: { StudyInstanceUID: string; siteId: number }): Promise<void>;

  /** After a committed batch (a log line of what it did). */
  protected afterBatch(): void {}

  protected async runOnce(): Promise<number> {
    const events = await this.index.eventsAfterCursor(this.consumer, this.batchSize);
    if (events.length === 0) return 0;
    await this.index.sql.transaction(async (tx) => {
      const seen = new Set<string>();
      for (const e of events) {
        if (e.type !== 'instance.stored') continue;
        const { StudyInstanceUID, siteId } = e.payload as { StudyInstanceUID: string; siteId: number };
        if (seen.has(StudyInstanceUID)) continue;
        seen.add(StudyInstanceUID);
        await this.onStudyStored(tx, { StudyInstanceUID, siteId });
      }
      await ArchiveIndex.advanceCursor(tx, this.consumer, events[events.length - 1]!.id);
    });
    this.afterBatch();
    return events.length;
  }
}
