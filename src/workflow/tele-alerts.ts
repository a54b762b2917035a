/**
 * The alert channel of teleradiology: each alert queued with a stroke assignment or an
 * escalation (TeleRequests.queueAlert, in the same transaction) is POSTed as JSON to
 * teleradiology.alerts.webhookUrl, the on-call service's paging or SMS gateway. A 2xx answer
 * marks it sent; anything else, or no answer within delivery.ackTimeoutMs, is retried with
 * doubling delays until delivery.maxAttempts, then marked failed. Several nodes may run it: an
 * alert is leased by a conditional update of its next attempt before it is sent.
 */
import type { Logger } from 'pino';
import type { SqlDatabase } from '../index/sql.ts';
import type { TeleradiologyConfig } from '../config/config.ts';
import { PollingLoop } from '../lib/polling-loop.ts';
import { LeasedQueue } from '../index/leased-queue.ts';

interface DueAlert { id: number; payload: string; attempts: number; next_attempt_at: string }

const MAX_DELAY_MS = 3_600_000;
/** tele_alerts' claim and lease (src/index/leased-queue.ts). */
const alertQueue = new LeasedQueue({ table: 'tele_alerts' });

export class TeleAlerts {
  private loop: PollingLoop | undefined;

  constructor(private readonly sql: SqlDatabase, private readonly config: TeleradiologyConfig, private readonly logger: Logger) {}

  start(): void {
    if (!this.config.alerts) return;
    this.loop = new PollingLoop(() => this.sendDue(), this.config.delivery.pollMs, (e) => this.logger.error({ err: e }, 'sending teleradiology alerts failed; it retries'));
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }

  /** Sends the alerts due now; answers how many were sent. */
  async sendDue(now = new Date()): Promise<number> {
    const alerts = this.config.alerts;
    if (!alerts) return 0;
    const due = await alertQueue.due<DueAlert>(this.sql, 'id, payload, attempts, next_attempt_at', now, { orderBy: 'id', limit: 100 });
    let sent = 0;
    for (const a of due) {
      // The lease: whoever moves the next attempt first sends it.
      const lease = await alertQueue.take(this.sql, a.id, { state: 'pending', next: a.next_attempt_at }, new Date(now.getTime() + this.config.delivery.ackTimeoutMs * 2));
      if (lease === undefined) continue;
      const attempts = Number(a.attempts) + 1;
      let failure: string | undefined;
      try {
        const r = await fetch(alerts.webhookUrl, {
          method: 'POST', headers: { 'content-type': 'application/json' }, body: a.payload,
          signal: AbortSignal.timeout(this.config.delivery.ackTimeoutMs),
        });
        await r.arrayBuffer();
        if (!r.ok) failure = `the alert channel answered ${r.status}`;
      } catch (e) {
        failure = `the alert channel did not answer: ${(e as Error).message}`;
      }
      const at = new Date().toISOString();
      // Written only while the lease is still this node's: an attempt that outlived it must not
      // undo what another node did with the alert since (sent it, say).
      if (failure === undefined) {
        await alertQueue.settle(this.sql, a.id, lease, `status = 'sent', attempts = ?, sent_at = ?, last_error = NULL`, [attempts, at]);
        sent++;
      } else if (attempts >= this.config.delivery.maxAttempts) {
        if (await alertQueue.settle(this.sql, a.id, lease, `status = 'failed', attempts = ?, last_error = ?`, [attempts, failure])) this.logger.error({ alert: Number(a.id), attempts }, `teleradiology alert given up: ${failure}`);
      } else {
        const delay = Math.min(MAX_DELAY_MS, this.config.delivery.retryBaseMs * 2 ** (attempts - 1));
        await alertQueue.settle(this.sql, a.id, lease, 'attempts = ?, last_error = ?, next_attempt_at = ?',
          [attempts, failure, new Date(Date.now() + delay).toISOString()]);
        this.logger.warn({ alert: Number(a.id), attempts }, `teleradiology alert not delivered, retried: ${failure}`);
      }
    }
    return sent;
  }
}
