import type { Logger } from 'pino';
import { PollingLoop } from '../lib/polling-loop.ts';
import type { Outbox, OutboxEvent } from './outbox.ts';
import type { SqlDatabase } from '../index/sql.ts';

/**
 * A background consumer of the outbox (src/events/outbox.ts) at its own position: it polls,
 * and applies each batch of new events in one transaction that also moves its position, so
 * that an event is applied once in effect, with one node or several. Subclasses say what a
 * batch does; it must change nothing outside the transaction it is given (a PostgreSQL
 * transaction may be run again after a conflict).
 */
export abstract class OutboxConsumer {
  private loop: PollingLoop | undefined;

  constructor(
    protected readonly outbox: Outbox,
    /** The consumer's name: its position in outbox_cursors. */
    readonly consumer: string,
    protected readonly logger: Logger,
    protected readonly batchSize: number,
    private readonly pollMs: number,
  ) {}

  /** What a batch of events does, inside the transaction that moves the position. */
  protected abstract apply(tx: SqlDatabase, events: OutboxEvent[]): Promise<void>;

  /** After a committed batch (a log line of what it did). */
  protected afterBatch(): void {}

  start(): void {
    this.loop = new PollingLoop(() => this.runOnce(), this.pollMs, (e) => this.logger.error({ err: e }, 'outbox consumer failed; it retries'));
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }

  /** Applies what is new, batch after batch; answers how many events were read. */
  async runOnce(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.outbox.consume(this.consumer, this.batchSize, (tx, events) => this.apply(tx, events));
      if (n > 0) this.afterBatch();
      total += n;
      if (n < this.batchSize) return total;
    }
  }

  /** Applies every committed event (waiting for those a running transaction holds back); for tests and tools. */
  async drain(): Promise<number> {
    const n = await this.outbox.drain(this.consumer, this.batchSize, (tx, events) => this.apply(tx, events));
    if (n > 0) this.afterBatch();
    return n;
  }
}

/**
 * A consumer of the studies that received objects: each batch of events names each study
 * once (a series of 500 slices is one call), in the transaction that moves the position.
 */
export abstract class StudiesStoredConsumer extends OutboxConsumer {
  /** What the arrival of objects in a study does, inside the batch's transaction. */
  protected abstract onStudyStored(tx: SqlDatabase, study: { StudyInstanceUID: string; siteId: number }): Promise<void>;

  protected async apply(tx: SqlDatabase, events: OutboxEvent[]): Promise<void> {
    const seen = new Set<string>();
    for (const e of events) {
      if (e.type !== 'instance.stored') continue;
      const { StudyInstanceUID, siteId } = e.payload as { StudyInstanceUID: string; siteId: number };
      if (seen.has(StudyInstanceUID)) continue;
      seen.add(StudyInstanceUID);
      await this.onStudyStored(tx, { StudyInstanceUID, siteId });
    }
  }
}
