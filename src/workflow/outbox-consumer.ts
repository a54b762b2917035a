import type { Logger } from 'pino';

/**
 * A consumer of the outbox at its own cursor (ArchiveIndex.eventsAfterCursor): it polls,
 * reads what is new in batches, and applies each batch in one transaction that also moves
 * its cursor. Subclasses say what a batch does (runOnce answers how many events it read).
 */
export abstract class OutboxConsumer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(protected readonly logger: Logger, private readonly batch: number, private readonly pollMs: number) {}

  protected abstract runOnce(): Promise<number>;

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.drain()
        .catch((e: unknown) => this.logger.error({ err: e }, 'outbox consumer failed; it retries'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.pollMs);
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** Reads events until none is left; answers how many were read. */
  async drain(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.runOnce();
      total += n;
      if (n < this.batch) return total;
    }
  }
}
