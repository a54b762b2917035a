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

interface DueAlert { id: number; payload: string; attempts: number; next_attempt_at: string }

const MAX_DELAY_MS = 3_600_000;

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
    const due = await this.sql.all<DueAlert>(
      `SELECT id, payload, attempts, next_attempt_at FROM tele_alerts WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT 100`,
      [now.toISOString()],
    );
    let sent = 0;
    for (const a of due) {
      // The lease: whoever moves the next attempt first sends it.
      const lease = new Date(now.getTime() + this.config.delivery.ackTimeoutMs * 2).toISOString();
      const leased = await this.sql.run(`UPDATE tele_alerts SET next_attempt_at = ? WHERE id = ? AND status = 'pending' AND next_attempt_at = ?`, [lease, a.id, a.next_attempt_at]);
      if (leased.changes !== 1) continue;
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
      const ours = `id = ? AND status = 'pending' AND next_attempt_at = ?`;
      if (failure === undefined) {
        await this.sql.run(`UPDATE tele_alerts SET status = 'sent', attempts = ?, sent_at = ?, last_error = NULL WHERE ${ours}`, [attempts, at, a.id, lease]);
        sent++;
      } else if (attempts >= this.config.delivery.maxAttempts) {
        const r = await this.sql.run(`UPDATE tele_alerts SET status = 'failed', attempts = ?, last_error = ? WHERE ${ours}`, [attempts, failure, a.id, lease]);
        if (r.changes === 1) this.logger.error({ alert: Number(a.id), attempts }, `teleradiology alert given up: ${failure}`);
      } else {
        const delay = Math.min(MAX_DELAY_MS, this.config.delivery.retryBaseMs * 2 ** (attempts - 1));
        await this.sql.run(`UPDATE tele_alerts SET attempts = ?, last_error = ?, next_attempt_at = ? WHERE ${ours}`,
          [attempts, failure, new Date(Date.now() + delay).toISOString(), a.id, lease]);
        this.logger.warn({ alert: Number(a.id), attempts }, `teleradiology alert not delivered, retried: ${failure}`);
      }
    }
    return sent;
  }
}
