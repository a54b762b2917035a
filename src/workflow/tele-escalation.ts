import type { Logger } from 'pino';
import type { TeleRequests } from './tele-requests.ts';

/**
 * Looks for open requests nobody is reading whose deadline is near, every intervalMs, and
 * escalates them (TeleRequests.escalateNearDeadlines). Idempotent: an escalated request is
 * flagged once, so several nodes may run it.
 */
export class TeleEscalation {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(private readonly requests: TeleRequests, private readonly logger: Logger, private readonly intervalMs = 10_000) {}

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.requests.escalateNearDeadlines()
        .then((ids) => { if (ids.length > 0) this.logger.warn({ requests: ids }, 'teleradiology requests escalated: deadline near, nobody reading'); })
        .catch((e: unknown) => this.logger.error({ err: e }, 'escalation failed; it retries'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }
}
