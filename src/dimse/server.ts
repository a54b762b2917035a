/**
 * Atrium's DIMSE listener (the SCP): accepts associations from known peers, negotiates
 * presentation contexts, and hands each request to its service. Requests of one
 * association run one at a time (C-STOREs excepted, within the granted asynchronous
 * operations window); associations run side by side up to dimse.maxAssociations.
 *
 * Before the calling AE title is checked, anyone may connect: such connections are capped
 * apart (dimse.maxPendingConnections), each must send its A-ASSOCIATE-RQ within a fixed
 * deadline (dimse.associateTimeoutMs) and may make Atrium hold at most
 * dimse.maxAssociateRequestBytes. An error in one connection aborts that association only.
 */
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Archive } from '../archive/archive.ts';
import type { DimseConfig, PeerConfig } from '../config/config.ts';
import type { PeerDirectory } from '../config/peer-directory.ts';
import type { Site } from '../index/records.ts';
import { ATRIUM_IMPLEMENTATION_CLASS_UID, ATRIUM_IMPLEMENTATION_VERSION_NAME } from '../dicom/part10-writer.ts';
import { Association, type DimseMessage } from './association.ts';
import { CommandField, Status, type Command } from './command.ts';
import {
  AbortReason, AbortSource, DICOM_APPLICATION_CONTEXT, PduEncodingError, PresentationContextResult, RejectReason, RejectResult, RejectSource,
  encodeAssociateAC, encodeAssociateRJ,
  type AcceptedPresentationContext, type AssociateRQ, type RoleSelection,
} from './pdu.ts';
import { SOPClass, chooseTransferSyntax, serviceOf } from './sop-classes.ts';
import { handleWorklistFind } from './worklist.ts';
import { handleEcho } from './verification.ts';
import { handleStore } from './storage.ts';
import { handleFind } from './query.ts';
import { handleRetrieve } from './retrieve.ts';
import { handleStorageCommitment } from './storage-commitment.ts';
import { dimseClientTls } from './scu.ts';
import { AuditTrail, patientRefsOfStudies } from '../access/audit.ts';
import type { Principal } from '../access/principal.ts';
import { peerScope, type AccessScope } from '../access/policy.ts';

/** The calling peer as Atrium knows it: configured, or admitted as unknown when the config allows. */
export interface CallingPeer {
  aeTitle: string;
  config?: PeerConfig;
  site: Site;
  may: PeerConfig['may'];
  /** Who the peer is to the access policy; its scope is fixed for the association. */
  principal: Principal;
  scope: AccessScope;
}

/** What a service needs to answer a request. */
export interface ServiceContext {
  assoc: Association;
  peer: CallingPeer;
  archive: Archive;
  server: DimseServer;
  logger: Logger;
  /** Set when the peer sent C-CANCEL-RQ for the request being served. */
  cancelled: () => boolean;
}

/** The audit record's who/where for a request from this peer. */
export function auditActor(ctx: ServiceContext) {
  return { actor: ctx.peer.aeTitle, actorKind: 'dicom-peer' as const, site: ctx.peer.site.code, source: ctx.assoc.remoteAddress, via: 'dimse' as const };
}

/** How often a long association's stores get their audit record (see DimseServer.stored). */
export const AUDIT_STORES_EVERY_MS = 2000;

/** Acknowledged stores of one association waiting for their audit record. */
interface UnrecordedStores {
  actor: string;
  site: string | undefined;
  source: string;
  studies: Set<string>;
  count: number;
}

/** The largest asynchronous operations window Atrium grants a peer. */
const MAX_ASYNC_OPERATIONS = 16;

/** How often connections closed for want of a pending slot are logged (a flood logs one line per period). */
const REFUSED_LOG_EVERY_MS = 10_000;

/** A connection without an accepted association yet: it holds a pending slot until accepted or closed. */
interface PendingConnection {
  /** The transport socket (under TLS, the one beneath the TLS socket). */
  raw: net.Socket;
  /** Set once the TLS handshake (if any) is done. */
  assoc?: Association;
  /** The fixed A-ASSOCIATE-RQ deadline, counted from the connection's opening. */
  timer: NodeJS.Timeout;
  settled: boolean;
}

/** A live TCP connection to one listener is known by its remote end, the same for a socket and the TLS socket over it. */
function connectionKey(socket: net.Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}`;
}

export class DimseServer {
  private server: net.Server | undefined;
  /** Accepted associations (A-ASSOCIATE-AC sent): what dimse.maxAssociations counts. */
  private readonly associations = new Set<Association>();
  /** Connections not associated yet, by connectionKey: what dimse.maxPendingConnections counts. */
  private readonly pending = new Map<string, PendingConnection>();
  private refused = { count: 0, loggedAt: 0 };
  /** The known peers (the configuration file's and the API's), shared with the rest of the archive. */
  readonly peers: PeerDirectory;
  /** What Atrium presents and trusts when it calls a peer marked tls: the listener's certificate and CA. */
  readonly clientTls: tls.ConnectionOptions | undefined;
  readonly audit: AuditTrail;
  private readonly pendingAudits = new Set<Promise<unknown>>();
  /**
   * Objects stored by each association since its last audit record: recorded every
   * AUDIT_STORES_EVERY_MS while it lasts and when it ends, so that a crash leaves at most that
   * long of stores without their record (one record per object would cost a flush each).
   */
  readonly stored = new WeakMap<Association, { studies: Set<string>; count: number }>();
  /** Stores whose audit record could not be written yet, retried every AUDIT_STORES_EVERY_MS. */
  private readonly unrecordedStores: UnrecordedStores[] = [];
  private storesAuditTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly config: DimseConfig,
    readonly archive: Archive,
    readonly logger: Logger,
  ) {
    this.peers = archive.peers;
    this.clientTls = dimseClientTls(config);
    this.audit = new AuditTrail(archive.index.sql);
  }

  get aeTitle(): string {
    return this.config.aeTitle;
  }

  /** The bound port (the configured one, or the one the system chose for port 0). */
  get port(): number {
    return (this.server?.address() as net.AddressInfo | null)?.port ?? this.config.port;
  }

  get activeAssociations(): number {
    return this.associations.size;
  }

  /** Connections open without an accepted association yet. */
  get pendingConnections(): number {
    return this.pending.size;
  }

  /** The A-ASSOCIATE-RQ deadline; a shorter idle timeout shortens it too. */
  private associateDeadlineMs(): number {
    const { associateTimeoutMs, idleTimeoutMs } = this.config;
    return idleTimeoutMs > 0 ? Math.min(associateTimeoutMs, idleTimeoutMs) : associateTimeoutMs;
  }

  async listen(): Promise<void> {
    this.storesAuditTimer = setInterval(() => {
      for (const stores of this.unrecordedStores.splice(0)) this.trackAudit(this.recordStores(stores), this.logger);
      for (const assoc of this.associations) this.trackAudit(this.auditStored(assoc), this.logger);
    }, AUDIT_STORES_EVERY_MS);
    this.storesAuditTimer.unref();
    const onSocket = (socket: net.Socket) => this.onConnection(socket);
    const { tls: tlsConfig } = this.config;
    this.server = tlsConfig
      ? tls.createServer({
        cert: readFileSync(tlsConfig.certFile),
        key: readFileSync(tlsConfig.keyFile),
        ca: tlsConfig.caFile ? readFileSync(tlsConfig.caFile) : undefined,
        requestCert: tlsConfig.requireClientCertificate,
        rejectUnauthorized: tlsConfig.requireClientCertificate,
        minVersion: 'TLSv1.2',
        handshakeTimeout: this.associateDeadlineMs(),
      }, onSocket)
      : net.createServer({ noDelay: true }, onSocket);
    // First of the 'connection' listeners: a connection beyond the cap is closed before any TLS work.
    this.server.prependListener('connection', (raw: net.Socket) => this.onTransport(raw));
    if (tlsConfig) this.server.on('tlsClientError', (e) => this.logger.warn({ err: e.message }, 'DIMSE TLS handshake failed'));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.config.port, this.config.host, () => {
        this.server!.off('error', reject);
        resolve();
      });
    });
    // An accept error (out of file descriptors...) is logged; it must not end the process.
    this.server.on('error', (e) => this.logger.error({ err: e }, 'DIMSE listener error'));
    this.logger.info({ host: this.config.host, port: this.port, aeTitle: this.config.aeTitle, tls: Boolean(tlsConfig) }, 'DIMSE listener ready');
  }

  /** Stops accepting, lets associations finish for `graceMs`, then aborts the rest. */
  async close(graceMs = 5000): Promise<void> {
    const closed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    // Connections not associated yet have nothing to finish.
    for (const p of this.pending.values()) this.dropPending(p, 'the listener is closing');
    const deadline = Date.now() + graceMs;
    while (this.associations.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const a of this.associations) a.abort();
    await closed;
    clearInterval(this.storesAuditTimer);
    // What the last associations stored is recorded before the index closes.
    await Promise.allSettled([...this.pendingAudits]);
    for (const stores of this.unrecordedStores.splice(0)) {
      await this.recordStores(stores).catch((e: unknown) => this.logger.error(
        { err: e, actor: stores.actor, stored: stores.count, studies: [...stores.studies] }, 'stores left without their audit record at shutdown'));
    }
  }

  /** A transport connection opens: it takes a pending slot, or is closed at once when none is left. */
  private onTransport(raw: net.Socket): void {
    // Errors of this socket reach the association (TCP) or 'tlsClientError' (TLS); never unhandled.
    raw.on('error', () => {});
    if (this.pending.size >= this.config.maxPendingConnections || raw.remoteAddress === undefined) {
      raw.destroy();
      this.refused.count++;
      const now = Date.now();
      if (now - this.refused.loggedAt >= REFUSED_LOG_EVERY_MS) {
        this.logger.warn({ closed: this.refused.count, pending: this.pending.size, maxPendingConnections: this.config.maxPendingConnections },
          'DIMSE connections closed at once: too many not associated yet');
        this.refused = { count: 0, loggedAt: now };
      }
      return;
    }
    const key = connectionKey(raw);
    const deadline = this.associateDeadlineMs();
    const p: PendingConnection = {
      raw,
      settled: false,
      // Fixed from the opening (PS3.8 9.1.5 ARTIM): bytes trickling in do not push it back.
      timer: setTimeout(() => this.dropPending(p, `no A-ASSOCIATE-RQ within ${deadline} ms of connecting`), deadline),
    };
    p.timer.unref();
    this.pending.set(key, p);
    raw.once('close', () => this.settlePending(key, p));
  }

  /** The connection leaves the pending count: associated, or closed. */
  private settlePending(key: string, p: PendingConnection): void {
    if (p.settled) return;
    p.settled = true;
    clearTimeout(p.timer);
    if (this.pending.get(key) === p) this.pending.delete(key);
  }

  private dropPending(p: PendingConnection, why: string): void {
    if (p.settled) return;
    if (p.assoc) p.assoc.abort(AbortSource.ServiceProvider, AbortReason.NotSpecified, why);
    else {
      this.logger.info({ remote: `${p.raw.remoteAddress ?? '?'}:${p.raw.remotePort ?? '?'}`, why }, 'DIMSE connection dropped');
      p.raw.destroy();
    }
  }

  /** The connection is ready for DIMSE (after the TLS handshake, if any). */
  private onConnection(socket: net.Socket): void {
    if (socket.destroyed) return;
    const key = connectionKey(socket);
    const p = this.pending.get(key);
    if (!p || p.settled) {
      // Its slot expired during the TLS handshake.
      socket.destroy();
      return;
    }
    const assoc = new Association(socket, 'acceptor', {
      maxPduLength: this.config.maxPduLength, idleTimeoutMs: this.config.idleTimeoutMs, maxAssociateRequestBytes: this.config.maxAssociateRequestBytes,
    });
    p.assoc = assoc;
    const log = this.logger.child({ remote: assoc.remoteAddress });
    // Listeners run inside the association's socket events: one that throws aborts its association (Association.safely).
    assoc.on('closed', () => {
      this.settlePending(key, p);
      this.associations.delete(assoc);
      this.trackAudit(this.auditStored(assoc), log);
    });
    assoc.on('aborted', (e) => {
      const calling = assoc.callingAETitle || undefined;
      if (e.cause !== undefined) log.error({ calling, err: e.cause }, 'association aborted by an internal error');
      else log.info({ calling, reason: e.message }, 'association aborted');
    });
    assoc.on('fault', (e) => log.error({ err: e }, 'internal error after the association ended'));
    let closed = false;
    assoc.once('closed', () => { closed = true; });
    assoc.once('associate', (rq) => {
      const answer = () => this.negotiate(assoc, rq, log, () => this.settlePending(key, p));
      // A calling AE title this node does not know yet (or an old copy of the list): the peers
      // table is read first, so that a peer added on another node a moment ago is let in.
      if (!this.peers.needsLookup(rq.callingAETitle)) return answer();
      this.peers.find(rq.callingAETitle).then(() => {
        if (closed) return;
        try {
          answer();
        } catch (e) {
          log.error({ err: e }, 'association negotiation failed');
          assoc.abort(AbortSource.ServiceProvider, AbortReason.NotSpecified, `internal error: ${(e as Error).message}`);
        }
      }, (e: unknown) => {
        log.error({ err: e, calling: rq.callingAETitle }, 'the peers could not be read: association refused');
        if (!closed) assoc.reject(encodeAssociateRJ(RejectResult.Transient, RejectSource.ServiceProviderPresentation, RejectReason.TemporaryCongestion));
      });
    });
  }

  private trackAudit(audit: Promise<void>, log: Logger): void {
    const p = audit.catch((e: unknown) => log.error({ err: e }, 'audit of stored objects failed'));
    this.pendingAudits.add(p);
    void p.finally(() => this.pendingAudits.delete(p));
  }

  /** One audit record for what an association stored since its last one; the next stores start a new tally. */
  private async auditStored(assoc: Association): Promise<void> {
    const tally = this.stored.get(assoc);
    if (!tally || tally.count === 0) return;
    this.stored.delete(assoc);
    await this.recordStores({ actor: assoc.callingAETitle, site: this.resolvePeer(assoc.callingAETitle)?.site.code, source: assoc.remoteAddress, ...tally });
  }

  /**
   * Writes the audit record of stores already acknowledged. When it cannot be written (the
   * index refuses a write), the stores are kept and tried again at the next tick, association
   * ended or not: an object stored is never left without its record while the process lives.
   */
  private async recordStores(stores: UnrecordedStores): Promise<void> {
    try {
      const patients = await patientRefsOfStudies(this.archive.index, this.archive.siteById, stores.studies);
      await this.audit.record({
        action: 'store', outcome: 'success', actor: stores.actor, actorKind: 'dicom-peer', site: stores.site,
        source: stores.source, via: 'dimse', patients, details: { stored: stores.count, studies: [...stores.studies] },
      });
    } catch (e) {
      this.unrecordedStores.push(stores);
      throw e;
    }
  }

  /** Who the calling AE title is; undefined when it must be refused. */
  resolvePeer(aeTitle: string): CallingPeer | undefined {
    const config = this.peers.get(aeTitle);
    const peerOf = (site: Site, territory: boolean) => {
      const principal: Principal = { kind: 'dicom-peer', id: aeTitle, name: aeTitle, roles: [], sites: [site], territory, authenticatedBy: 'dicom-association' };
      return { principal, scope: peerScope(principal) };
    };
    if (config) {
      const site = this.archive.sites.get(config.site);
      return site && { aeTitle, config, site, may: config.may, ...peerOf(site, config.territory === true) };
    }
    if (this.config.requireKnownCallers) return undefined;
    const code = this.config.defaultSite ?? this.archive.sites.keys().next().value;
    const site = code === undefined ? undefined : this.archive.sites.get(code);
    // An AE title nobody configured may bring images (an open modality network), never take them.
    return site && { aeTitle, site, may: { store: true, query: false, retrieve: false }, ...peerOf(site, false) };
  }

  /** Answers an A-ASSOCIATE-RQ; `onAccepted` when the association is accepted (it then counts against maxAssociations). */
  private negotiate(assoc: Association, rq: AssociateRQ, log: Logger, onAccepted: () => void): void {
    const refuse = (result: number, source: number, reason: number, why: string) => {
      log.warn({ calling: rq.callingAETitle, called: rq.calledAETitle, why }, 'association refused');
      assoc.reject(encodeAssociateRJ(result, source, reason));
    };
    if (rq.applicationContext !== DICOM_APPLICATION_CONTEXT) {
      return refuse(RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.ApplicationContextNotSupported, `application context ${rq.applicationContext}`);
    }
    if (rq.calledAETitle !== this.config.aeTitle) {
      return refuse(RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CalledAETitleNotRecognized, `called AE title is not ${this.config.aeTitle}`);
    }
    const peer = this.resolvePeer(rq.callingAETitle);
    if (!peer) {
      return refuse(RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CallingAETitleNotRecognized, 'calling AE title is not a known peer');
    }
    if (this.associations.size >= this.config.maxAssociations) {
      return refuse(RejectResult.Transient, RejectSource.ServiceProviderPresentation, RejectReason.LocalLimitExceeded, `${this.config.maxAssociations} associations already open`);
    }

    // A role is answered only for a proposed abstract syntax, once (PS3.7 D.3.3.4): the answer
    // stays as small as the proposal, however many role items the request carries.
    const proposedSyntaxes = new Set(rq.presentationContexts.map((pc) => pc.abstractSyntax));
    const wantsScpRole = new Map<string, RoleSelection>();
    for (const r of rq.userInformation.roles) {
      if (proposedSyntaxes.has(r.sopClassUID) && !wantsScpRole.has(r.sopClassUID)) wantsScpRole.set(r.sopClassUID, r);
    }
    const roles: RoleSelection[] = [];
    const accepted: AcceptedPresentationContext[] = rq.presentationContexts.map((pc) => {
      const service = serviceOf(pc.abstractSyntax);
      const no = (result: number) => ({ id: pc.id, result, transferSyntax: '' });
      if (!service) return no(PresentationContextResult.AbstractSyntaxNotSupported);
      const allowed = service === 'verification'
        || ((service === 'find' || service === 'worklist') && peer.may.query)
        || ((service === 'move' || service === 'get') && peer.may.retrieve)
        || (service === 'commitment' && peer.may.store)
        || (service === 'storage' && (peer.may.store || (peer.may.retrieve && wantsScpRole.get(pc.abstractSyntax)?.scpRole === true)));
      if (!allowed) return no(PresentationContextResult.UserRejection);
      const ts = chooseTransferSyntax(service, pc.transferSyntaxes);
      if (!ts) return no(PresentationContextResult.TransferSyntaxesNotSupported);
      return { id: pc.id, result: PresentationContextResult.Acceptance, transferSyntax: ts };
    });
    // C-GET: the peer asks that we act as SCP of storage classes (we send, it stores).
    for (const r of wantsScpRole.values()) {
      if (serviceOf(r.sopClassUID) !== 'storage') continue;
      roles.push({ sopClassUID: r.sopClassUID, scuRole: r.scuRole, scpRole: r.scpRole && peer.may.retrieve });
    }
    // C-STOREs a peer may have outstanding at once: received while earlier ones are made durable.
    const proposedWindow = rq.userInformation.asyncOperations;
    const window = proposedWindow ? Math.min(proposedWindow.invoked === 0 ? MAX_ASYNC_OPERATIONS : proposedWindow.invoked, MAX_ASYNC_OPERATIONS) : 1;
    const ac = {
      calledAETitle: rq.calledAETitle,
      callingAETitle: rq.callingAETitle,
      applicationContext: DICOM_APPLICATION_CONTEXT,
      presentationContexts: accepted,
      userInformation: {
        maxPduLength: this.config.maxPduLength,
        implementationClassUID: ATRIUM_IMPLEMENTATION_CLASS_UID,
        implementationVersionName: ATRIUM_IMPLEMENTATION_VERSION_NAME,
        roles,
        asyncOperations: proposedWindow ? { invoked: window, performed: 1 } : undefined,
      },
    };
    let encoded: Buffer;
    try {
      encoded = encodeAssociateAC(ac);
    } catch (e) {
      if (!(e instanceof PduEncodingError)) throw e;
      return refuse(RejectResult.Permanent, RejectSource.ServiceProviderPresentation, RejectReason.LocalLimitExceeded, `the A-ASSOCIATE-AC cannot be encoded: ${e.message}`);
    }
    assoc.accept(ac, encoded);
    this.associations.add(assoc);
    onAccepted();
    const acceptedCount = accepted.filter((pc) => pc.result === PresentationContextResult.Acceptance).length;
    const assocLog = log.child({ calling: peer.aeTitle, site: peer.site.code });
    assocLog.info({ contexts: acceptedCount, proposed: accepted.length, window }, 'association accepted');
    this.serve(assoc, peer, assocLog, window);
  }

  /**
   * Runs an association's requests: C-STOREs as they come (several at once when an
   * asynchronous operations window was granted: each is received while the ones before it
   * are made durable), every other request one after the other.
   */
  private serve(assoc: Association, peer: CallingPeer, log: Logger, window: number): void {
    let storing = 0;
    let queue: Promise<void> = Promise.resolve();
    let current: { messageId: number; cancelled: boolean } | undefined;
    assoc.on('cancel', (messageId) => {
      if (current && current.messageId === messageId) current.cancelled = true;
    });
    const run = async (message: DimseMessage, state: { cancelled: boolean }) => {
      const ctx: ServiceContext = { assoc, peer, archive: this.archive, server: this, logger: log, cancelled: () => state.cancelled };
      assoc.busy++;
      try {
        await this.dispatch(ctx, message);
      } catch (e) {
        message.dataset?.abandon();
        if (assoc.established) {
          log.error({ err: e }, 'DIMSE request failed');
          await this.respondFailure(ctx, message, Status.ProcessingFailure, (e as Error).message).catch(() => {});
        }
      } finally {
        assoc.busy--;
      }
    };
    // Whatever escapes a service ends its association, never the process.
    const failed = (e: unknown) => {
      try {
        assoc.abort(AbortSource.ServiceProvider, AbortReason.NotSpecified, `internal error: ${(e as Error)?.message ?? String(e)}`, e);
      } catch {
        assoc.socket.destroy();
      }
    };
    assoc.on('request', (message) => {
      if (message.command.CommandField === CommandField.CStoreRQ) {
        if (++storing > window) {
          log.warn({ window }, 'the peer exceeded its asynchronous operations window');
          assoc.abort(AbortSource.ServiceProvider, AbortReason.UnexpectedPdu, 'asynchronous operations window exceeded');
          return;
        }
        run(message, { cancelled: false }).catch(failed).finally(() => storing--);
        return;
      }
      queue = queue.then(async () => {
        const state = { messageId: message.command.MessageID ?? 0, cancelled: false };
        current = state;
        try {
          await run(message, state);
        } finally {
          current = undefined;
        }
      }).catch(failed);
    });
  }

  private async dispatch(ctx: ServiceContext, message: DimseMessage): Promise<void> {
    switch (message.command.CommandField) {
      case CommandField.CEchoRQ:
        return handleEcho(ctx, message);
      case CommandField.CStoreRQ:
        return handleStore(ctx, message);
      case CommandField.CFindRQ:
        return ctx.assoc.presentationContext(message.presentationContextId)?.abstractSyntax === SOPClass.ModalityWorklistFind
          ? handleWorklistFind(ctx, message)
          : handleFind(ctx, message);
      case CommandField.CMoveRQ:
      case CommandField.CGetRQ:
        return handleRetrieve(ctx, message);
      case CommandField.NActionRQ:
        return handleStorageCommitment(ctx, message);
      default:
        message.dataset?.abandon();
        await message.dataset?.complete.catch(() => {});
        return this.respondFailure(ctx, message, Status.UnrecognizedOperation, `command field 0x${message.command.CommandField.toString(16)} is not served`);
    }
  }

  /** A response carrying only a status (and a comment for failures). */
  async respondFailure(ctx: ServiceContext, message: DimseMessage, status: number, comment?: string): Promise<void> {
    const rq = message.command;
    const rsp: Command = {
      CommandField: rq.CommandField | 0x8000,
      MessageIDBeingRespondedTo: rq.MessageID,
      AffectedSOPClassUID: rq.AffectedSOPClassUID ?? rq.RequestedSOPClassUID,
      AffectedSOPInstanceUID: rq.AffectedSOPInstanceUID,
      Status: status,
      ErrorComment: comment,
      hasDataset: false,
    };
    await ctx.assoc.send(message.presentationContextId, rsp);
  }
}
