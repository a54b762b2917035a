import type { Logger } from 'pino';
import type { TeleRequests } from './tele-requests.ts';
import { PollingLoop } from '../lib/polling-loop.ts';

/**
 * Looks for open requests nobody is reading whose deadline is near, every intervalMs, and
 * escalates them (TeleRequests.escalateNearDeadlines). Idempotent: an escalated request is
 * flagged once, so several nodes may run it.
 */
export class TeleEscalation {
  private loop: PollingLoop | undefined;

  constructor(private readonly requests: TeleRequests, private readonly logger: Logger, private readonly intervalMs = 10_000) {}

  start(): void {
    this.loop = new PollingLoop(async () => {
      const ids = await this.requests.escalateNearDeadlines();
      if (ids.length > 0) this.logger.warn({ requests: ids }, 'teleradiology requests escalated: deadline near, nobody reading');
    }, this.intervalMs, (e) => this.logger.error({ err: e }, 'escalation failed; it retries'));
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }
}
