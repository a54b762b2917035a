/**
 * The Forwarder: sends the forwarding queue's due rows to their peers as a storage SCU.
 * Per peer, up to `associationsPerPeer` associations run at once, each taking its own
 * batch of rows (the sending is pipelined over several associations: DCMTK and most peers
 * do not negotiate asynchronous operations, so one association carries one C-STORE at a
 * time). A peer that cannot be reached is held off with exponential back-off, and its rows
 * wait with theirs; other peers go on. Ingest never waits on any of it: it only writes
 * outbox events, which the Router turns into queue rows.
 */
import type { Logger } from 'pino';
import type { Archive } from '../archive/archive.ts';
import type { AtriumConfig, PeerConfig } from '../config/config.ts';
import { ForwardingQueue, retryDelayMs, type Claim, type ClaimedRow, type RetryPolicy } from '../index/forwarding-queue.ts';
import type { StoredInstance } from '../index/records.ts';
import { Association, AssociationAbortedError, AssociationRejectedError } from './association.ts';
import { contextFor, dimseClientTls, isStored, openStoreAssociation, retrievePlan, storeAll } from './scu.ts';
import { Router } from './routing.ts';

/** Rows one association takes from the queue at a time. */
const batchSize = 32;

interface PeerState {
  peer: PeerConfig;
  workers: number;
  /** No new association before this time (the last one could not be opened or was lost). */
  holdUntil: number;
  consecutiveFailures: number;
}

export class Forwarder {
  readonly queue: ForwardingQueue;
  private readonly clientTls: ReturnType<typeof dimseClientTls>;
  private readonly router: Router | undefined;
  private readonly peers = new Map<string, PeerState>();
  private readonly workers = new Set<Promise<void>>();
  private readonly associations = new Set<Association>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopping = false;
  private started = false;
  private lastReclaim = 0;
  /** Claims this node is sending, renewed every quarter of the lease so that no other node takes them over. */
  private readonly liveClaims = new Set<string>();
  private renewal: NodeJS.Timeout | undefined;

  constructor(
    private readonly archive: Archive,
    private readonly config: Pick<AtriumConfig, 'routing' | 'peers' | 'dimse'>,
    private readonly logger: Logger,
  ) {
    this.queue = new ForwardingQueue(archive.index.sql);
    this.clientTls = dimseClientTls(config.dimse);
    this.router = config.routing.rules.length > 0 ? new Router(archive, this.queue, config.routing.rules, logger) : undefined;
    this.followPeers(archive.peers.list());
  }

  /**
   * The peers to send to, as the peer directory knows them now (src/config/peer-directory.ts):
   * one added through the API on any node is served from the next tick; one removed gets no
   * new association (its rows wait in the queue), one changed is reached at its new address.
   */
  private followPeers(peers: readonly PeerConfig[]): void {
    const known = new Set<string>();
    for (const peer of peers) {
      if (!peer.host || !peer.port) continue;
      known.add(peer.aeTitle);
      const state = this.peers.get(peer.aeTitle);
      if (state) state.peer = peer;
      else this.peers.set(peer.aeTitle, { peer, workers: 0, holdUntil: 0, consecutiveFailures: 0 });
    }
    for (const [ae, state] of this.peers) if (!known.has(ae) && state.workers === 0) this.peers.delete(ae);
  }

  private get retry(): RetryPolicy {
    return this.config.routing.retry;
  }

  /** A claim not renewed for this long was left by a node that died: its rows go to another sender. */
  private get leaseMs(): number {
    return this.config.routing.claimLeaseSeconds * 1000;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.logger.info({
      rules: this.config.routing.rules.map((r) => r.name),
      associationsPerPeer: this.config.routing.associationsPerPeer,
      retry: this.retry,
    }, 'forwarding started');
    this.schedule(0);
    // On its own timer: a slow pass of the queue must not let the claims of live sends lapse.
    this.renewal = setInterval(() => {
      this.queue.renewClaims([...this.liveClaims]).catch((e: unknown) => this.logger.warn({ err: (e as Error).message }, 'forwarding: claims could not be renewed'));
    }, this.leaseMs / 4);
    this.renewal.unref();
  }

  /** Look at the outbox and the queue now rather than at the next poll (something was queued). */
  wake(): void {
    if (this.started && !this.stopping) this.schedule(0);
  }

  /**
   * Stops taking rows; associations finish the object in flight, give back the rows they
   * had not tried, and release. After graceMs, what is still open is aborted.
   */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.ticking;
    const all = Promise.allSettled([...this.workers]);
    const cut = setTimeout(() => {
      for (const a of this.associations) a.abort();
    }, graceMs);
    try {
      await all;
    } finally {
      clearTimeout(cut);
      // After the senders: their claims stay renewed while they finish.
      if (this.renewal) clearInterval(this.renewal);
    }
  }

  private schedule(ms: number): void {
    if (this.stopping) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.ticking) {
        // A tick is running: look again right after it.
        void this.ticking.then(() => this.schedule(0));
        return;
      }
      this.ticking = this.tick().finally(() => {
        this.ticking = undefined;
        this.schedule(this.config.routing.pollIntervalMs);
      });
    }, ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    try {
      if (this.router) {
        // What arrived since the last tick, batch after batch.
        if (!this.stopping) await this.router.runOnce();
      }
      if (Date.now() - this.lastReclaim > this.leaseMs / 4) {
        // On SQLite this process is the only sender: at start, whatever is in progress was left by a crash.
        const olderThan = this.lastReclaim === 0 && this.archive.index.sql.engine === 'sqlite' ? 0 : this.leaseMs;
        this.lastReclaim = Date.now();
        const n = await this.queue.reclaimStale(olderThan);
        if (n > 0) this.logger.warn({ rows: n }, 'forwarding: rows claimed by a sender that never reported were requeued');
      }
      this.followPeers(await this.archive.peers.fresh());
      for (const state of this.peers.values()) {
        if (this.stopping) return;
        if (state.workers >= this.config.routing.associationsPerPeer || Date.now() < state.holdUntil) continue;
        if (!(await this.queue.hasDue(state.peer.aeTitle))) continue;
        // A held peer gets one association to try; a healthy one as many as allowed.
        const n = state.consecutiveFailures > 0 ? Math.min(1, this.config.routing.associationsPerPeer - state.workers) : this.config.routing.associationsPerPeer - state.workers;
        for (let i = 0; i < n; i++) this.spawn(state);
      }
    } catch (e) {
      this.logger.error({ err: e }, 'forwarding: the queue could not be read');
    }
  }

  private spawn(state: PeerState): void {
    state.workers++;
    const w: Promise<void> = this.work(state)
      .catch((e: unknown) => this.logger.error({ err: e, destination: state.peer.aeTitle }, 'forwarding: sender failed'))
      .finally(() => {
        state.workers--;
        this.workers.delete(w);
        // Its peer may have more rows due, or it failed and the queue moved on.
        this.wake();
      });
    this.workers.add(w);
  }

  /** One association's life: batches of rows until none is due, the peer fails, or Atrium stops. */
  private async work(state: PeerState): Promise<void> {
    const { peer } = state;
    let assoc: Association | undefined;
    try {
      while (!this.stopping && Date.now() >= state.holdUntil) {
        const claim = await this.queue.claimDue(peer.aeTitle, batchSize);
        if (claim.rows.length === 0) break;
        this.liveClaims.add(claim.claimId);
        try {
          const found = await this.lookUp(claim);
          if (found.length === 0) continue;
          if (assoc && found.some(({ inst }) => !contextFor(assoc!.acceptedContexts(), inst))) {
            // Objects of a class or syntax this association did not negotiate: a new one for them.
            await this.close(assoc);
            assoc = undefined;
          }
          if (!assoc) {
            try {
              assoc = await openStoreAssociation({
                peer, callingAETitle: this.config.dimse.aeTitle, instances: found.map((f) => f.inst), maxPduLength: this.config.dimse.maxPduLength,
                tls: this.clientTls,
              });
              this.associations.add(assoc);
            } catch (e) {
              const why = e instanceof AssociationRejectedError ? `${peer.aeTitle} refused the association: ${e.message}` : `cannot reach ${peer.aeTitle}: ${(e as Error).message}`;
              await this.queue.markAttemptFailed(claim.claimId, found.map(({ row }) => ({ row, error: why })), this.retry);
              this.peerFailed(state, why);
              return;
            }
          }
          const { lost, peerFault } = await this.sendBatch(assoc, claim, found);
          if (lost) {
            this.associations.delete(assoc);
            assoc = undefined;
            if (peerFault) this.peerFailed(state, lost);
            return;
          }
        } finally {
          this.liveClaims.delete(claim.claimId);
        }
      }
    } finally {
      if (assoc) await this.close(assoc);
    }
  }

  /** The stored instances of claimed rows; rows of objects gone from the archive fail at once. */
  private async lookUp(claim: Claim): Promise<Array<{ row: ClaimedRow; inst: StoredInstance }>> {
    const found: Array<{ row: ClaimedRow; inst: StoredInstance }> = [];
    const gone: ClaimedRow[] = [];
    for (const row of claim.rows) {
      const inst = await this.archive.index.findInstanceBySOPInstanceUID(row.SOPInstanceUID);
      if (inst) found.push({ row, inst });
      else gone.push(row);
    }
    await this.queue.markAttemptFailed(claim.claimId, gone.map((row) => ({ row, error: 'the object is no longer in the archive' })), { ...this.retry, maxAttempts: 1 });
    return found;
  }

  /**
   * Sends a batch on one association, the next objects read ahead from storage. Returns
   * why the association was lost, if it was (and whether the peer is to blame); the rows it
   * did not settle are retried later.
   */
  private async sendBatch(assoc: Association, claim: Claim, batch: Array<{ row: ClaimedRow; inst: StoredInstance }>): Promise<{ lost?: string; peerFault: boolean }> {
    const rowOf = new Map(batch.map((b) => [b.inst.SOPInstanceUID, b.row]));
    const done: number[] = [];
    const failed: Array<{ row: ClaimedRow; error: string }> = [];
    const settled = new Set<number>();
    const contexts = assoc.acceptedContexts();
    const sendable = batch.filter(({ row, inst }) => {
      if (contextFor(contexts, inst)) return true;
      failed.push({ row, error: `${assoc.calledAETitle} accepted no presentation context for ${inst.SOPClassUID} in ${inst.TransferSyntaxUID}` });
      settled.add(row.id);
      return false;
    });
    let lost: string | undefined;
    let peerFault = true;
    // Each object taken by the peer is marked done as soon as its response is in, not at the
    // end of the batch: a node that dies mid-batch leaves only the objects in flight to send
    // again, not every one the peer already took (they would reach it twice).
    const toMark: number[] = [];
    let marking: Promise<void> = Promise.resolve();
    const markSoon = () => {
      marking = marking.then(async () => {
        const ids = toMark.splice(0);
        if (ids.length === 0) return;
        try {
          await this.queue.markDone(claim.claimId, ids);
        } catch (e) {
          toMark.unshift(...ids); // tried again after the batch
          this.logger.warn({ destination: claim.destination, err: (e as Error).message }, 'forwarding: sent objects could not be marked done yet');
        }
      });
    };
    const opened = this.archive.retriever.openInstances(retrievePlan(sendable.map(({ inst }) => ({ inst })), (inst) => contextFor(contexts, inst)!), true);
    try {
      // Several C-STOREs outstanding when the peer grants an asynchronous operations window.
      await storeAll(assoc, this.archive.retriever, opened, (inst) => contextFor(contexts, inst)!, (inst, r) => {
        const row = rowOf.get(inst.SOPInstanceUID)!;
        settled.add(row.id);
        if (isStored(r.status)) {
          done.push(row.id);
          toMark.push(row.id);
          markSoon();
        } else failed.push({ row, error: `C-STORE status 0x${r.status.toString(16).padStart(4, '0')}${r.error ? `: ${r.error}` : ''}` });
      }, { shouldStop: () => this.stopping });
    } catch (e) {
      if (e instanceof AssociationAbortedError) lost = `the association with ${claim.destination} was lost: ${e.message}`;
      else {
        // A stored object could not be read, perhaps half-way through its C-STORE: this
        // association cannot go on, but the peer is not at fault.
        this.logger.warn({ destination: claim.destination, err: (e as Error).message }, 'forwarding: a stored object could not be read');
        assoc.abort();
        lost = `could not read a stored object: ${(e as Error).message}`;
        peerFault = false;
      }
    }
    const unsettled = sendable.filter(({ row }) => !settled.has(row.id)).map(({ row }) => row);
    if (lost) failed.push(...unsettled.map((row) => ({ row, error: lost! })));
    await marking;
    await this.queue.markDone(claim.claimId, toMark);
    await this.queue.markAttemptFailed(claim.claimId, failed, this.retry);
    if (!lost) await this.queue.release(claim.claimId, unsettled.map((r) => r.id));
    const state = this.peers.get(claim.destination);
    if (state && done.length > 0) state.consecutiveFailures = 0;
    if (done.length > 0 || failed.length > 0) {
      this.logger.debug({ destination: claim.destination, sent: done.length, failed: failed.length }, 'forwarding: batch sent');
    }
    if (failed.length > 0 && !lost) this.logger.info({ destination: claim.destination, failed: failed.length, error: failed[0]!.error }, 'forwarding: the peer refused objects');
    return { lost, peerFault: lost !== undefined && peerFault };
  }

  private peerFailed(state: PeerState, why: string): void {
    state.consecutiveFailures++;
    const delay = retryDelayMs(this.retry, state.consecutiveFailures);
    state.holdUntil = Date.now() + delay;
    this.logger.warn({ destination: state.peer.aeTitle, failures: state.consecutiveFailures, retryInMs: delay, why }, 'forwarding: peer unavailable');
  }

  private async close(assoc: Association): Promise<void> {
    this.associations.delete(assoc);
    await assoc.release().catch(() => {});
  }
}
