/**
 * Sends the IOCM rejection note of a deleted study (src/archive/lifecycle.ts) by C-STORE to
 * each peer the study had been forwarded to, so that the peer removes or hides the objects
 * too. The notes owed are rows of lifecycle_notices (written with the deletion); a peer that
 * does not answer is tried again with a growing delay, up to maxAttempts, then the notice is
 * left failed for an administrator (the deletion record still holds the note). Several nodes
 * may run it: each note is sent under a lease (src/index/leased-queue.ts).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Archive } from '../archive/archive.ts';
import type { AtriumConfig } from '../config/config.ts';
import { dueRejectionNotices, migrateLifecycle, rejectionNoticeNotSent, rejectionNoticeSent, takeRejectionNotice } from '../archive/lifecycle.ts';
import { describeFile, sendFiles } from './send-files.ts';
import { dimseClientTls } from './scu.ts';

export interface NoticeOutcome { destination: string; deletion: number; sent: boolean; error?: string }

export class RejectionNoteDelivery {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(
    private readonly archive: Archive,
    private readonly config: AtriumConfig,
    private readonly logger: Logger,
    private readonly options: { pollMs: number; maxAttempts: number; baseDelayMs: number } = { pollMs: 30_000, maxAttempts: 20, baseDelayMs: 60_000 },
  ) {}

  /** Sends every note due now; answers what became of each. */
  async deliverDue(now = new Date()): Promise<NoticeOutcome[]> {
    const sql = this.archive.index.sql;
    await migrateLifecycle(sql);
    const due = await dueRejectionNotices(sql, now);
    const outcomes: NoticeOutcome[] = [];
    for (const n of due) {
      // One association with an idle limit of two minutes per PDU: ten minutes outlast it.
      const lease = await takeRejectionNotice(sql, n, new Date(Date.now() + 10 * 60_000));
      if (lease === undefined) continue; // another node has it
      const error = await this.send(n.destination, n.rejectionNoteUid, Buffer.from(n.rejectionNote, 'base64'));
      const at = new Date().toISOString();
      const attempts = n.attempts + 1;
      if (error === undefined) {
        await rejectionNoticeSent(sql, n.id, lease, attempts, at);
      } else {
        const failed = attempts >= this.options.maxAttempts;
        const next = new Date(now.getTime() + this.options.baseDelayMs * 2 ** Math.min(attempts - 1, 10)).toISOString();
        await rejectionNoticeNotSent(sql, n.id, lease, { failed, attempts, nextAttemptAt: next, error, at });
        this.logger.warn({ destination: n.destination, deletion: n.deletionId, attempts, err: error }, failed ? 'rejection note not delivered: given up' : 'rejection note not delivered yet');
      }
      outcomes.push({ destination: n.destination, deletion: n.deletionId, sent: error === undefined, ...(error !== undefined ? { error } : {}) });
    }
    return outcomes;
  }

  /** One note to one peer; undefined when stored, else why not. */
  private async send(destination: string, uid: string, note: Buffer): Promise<string | undefined> {
    const peer = await this.archive.peers.find(destination);
    if (!peer?.host || !peer.port) return `${destination} is not a configured peer with an address`;
    const dir = await mkdtemp(path.join(tmpdir(), 'atrium-rejection-'));
    try {
      const file = path.join(dir, `${uid}.dcm`);
      await writeFile(file, note);
      const result = await sendFiles({
        host: peer.host, port: peer.port, calledAETitle: peer.aeTitle, callingAETitle: this.config.dimse.aeTitle,
        files: [await describeFile(file)], maxPduLength: this.config.dimse.maxPduLength, window: 1,
        ...(peer.tls ? { tls: dimseClientTls(this.config.dimse) } : {}),
      });
      return result.sent === 1 ? undefined : result.failed[0]?.error ?? 'not stored';
    } catch (e) {
      return `cannot reach ${destination}: ${(e as Error).message}`;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.deliverDue().catch((e: unknown) => this.logger.error({ err: e }, 'rejection notes not sent')).finally(() => { this.running = undefined; });
    }, this.options.pollMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
