/**
 * One DICOM association (PS3.8 §7, §9) over a TCP or TLS socket, in either role: the
 * acceptor (Atrium's SCP) or the requestor (Atrium's SCU, for C-MOVE and forwarding).
 * It cuts the byte stream into PDUs, reassembles DIMSE messages (PS3.7 §9.3), hands
 * requests to a handler with their dataset as a stream, and matches responses to the
 * requests this side sent.
 */
import net from 'node:net';
import tls from 'node:tls';
import { EventEmitter } from 'node:events';
import { CommandError, CommandField, decodeCommand, encodeCommand, isPending, type Command } from './command.ts';
import { DatasetStream } from './dataset-stream.ts';
import {
  AbortReason, AbortSource, DICOM_APPLICATION_CONTEXT, PduError, PduReader, PduTooLongError, PduType, PresentationContextResult,
  RejectReason, RejectResult, RejectSource,
  decodePdu, encodeAbort, encodeAssociateRJ, encodeAssociateRQ, encodeReleaseRP, encodeReleaseRQ, pDataHeader,
  type AssociateAC, type AssociateRQ, type ProposedPresentationContext, type RoleSelection, type UserInformation,
} from './pdu.ts';
import { ATRIUM_IMPLEMENTATION_CLASS_UID, ATRIUM_IMPLEMENTATION_VERSION_NAME } from '../dicom/part10-writer.ts';

export interface PresentationContext {
  id: number;
  abstractSyntax: string;
  transferSyntax: string;
}

/** A DIMSE message received: its command and, when one follows, its dataset as it arrives. */
export interface DimseMessage {
  presentationContextId: number;
  command: Command;
  dataset?: DatasetStream;
}

export interface Response {
  command: Command;
  dataset?: Buffer;
}

/** The association ended abnormally (A-ABORT, a dropped connection, a protocol error). */
export class AssociationAbortedError extends Error {
  override readonly name = 'AssociationAbortedError';
}

/** The peer refused the association (A-ASSOCIATE-RJ). */
export class AssociationRejectedError extends Error {
  override readonly name = 'AssociationRejectedError';
  constructor(readonly result: number, readonly source: number, readonly reason: number) {
    super(`association rejected (result ${result}, source ${source}, reason ${reason})`);
  }
}

/** Our own P-DATA PDUs never exceed this, whatever the peer accepts (0 = unlimited). */
const MAX_SENT_PDU = 256 * 1024;
/**
 * Nor fall below this, whatever the peer announces: a PDU must hold a PDV header and some data,
 * and a peer announcing 1 byte would have us cut a message into endless pieces. DCMTK's floor.
 */
const MIN_SENT_PDU = 4096;
/** Requestor: the peer's A-ASSOCIATE-AC (or RJ) must have come this long after the request, however its bytes trickle in. */
const DEFAULT_ASSOCIATE_TIMEOUT_MS = 30_000;
const MAX_RESPONSE_DATASET = 16 * 1024 * 1024;
const MAX_COMMAND_BYTES = 64 * 1024;
/** PDUs other than P-DATA-TF (streamed, never held whole) are held up to this, or the accepted PDU size if larger. */
const MAX_HELD_PDU = 1024 * 1024;
/** What an acceptor holds of an A-ASSOCIATE-RQ when its owner does not say (see DimseConfig.maxAssociateRequestBytes). */
const DEFAULT_MAX_ASSOCIATE_RQ = 64 * 1024;

type State = 'awaiting-rq' | 'awaiting-ac' | 'established' | 'releasing' | 'closed';

export interface AssociationEvents {
  /** An incoming request (the handler must read its dataset, or abandon it). */
  request: [DimseMessage];
  /** C-CANCEL-RQ for the request with this message ID. */
  cancel: [number];
  /** A-ASSOCIATE-RQ received (acceptor only). */
  associate: [AssociateRQ];
  released: [];
  aborted: [Error];
  closed: [];
  /** An unexpected error after the association had already ended (a bug: nothing is left to abort). */
  fault: [unknown];
}

export class Association extends EventEmitter<AssociationEvents> {
  private state: State;
  private readonly reader: PduReader;
  private contexts = new Map<number, PresentationContext>();
  private peerMaxPdu = MAX_SENT_PDU;
  private nextMessageId = 1;
  private command: Buffer[] = [];
  private commandPc = 0;
  private sending: Promise<void> = Promise.resolve();
  /**
   * Requests this side may have outstanding on the peer at once (the asynchronous operations
   * window, PS3.7 D.3.3.3, as negotiated; 1 when not). 0 would mean no limit: never granted.
   */
  maxOutstanding = 1;
  private commandBytes = 0;
  private incoming: { message: DimseMessage; stream: DatasetStream; isResponse: boolean } | undefined;
  private readonly pending = new Map<number, {
    onPending?: (r: Response) => void;
    resolve: (r: Response) => void;
    reject: (e: Error) => void;
  }>();
  private idleTimer: NodeJS.Timeout | undefined;
  private releasedCleanly = false;
  private releaseWaiter: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private acWaiter: { resolve: (ac: AssociateAC) => void; reject: (e: Error) => void } | undefined;
  /** Who called and whom they called, once the A-ASSOCIATE-RQ is in. */
  callingAETitle = '';
  calledAETitle = '';
  peerUserInformation: UserInformation | undefined;
  /** SOP classes for which the peer accepts that we act as the SCP (C-GET sub-operations). */
  readonly roles: RoleSelection[] = [];

  constructor(
    readonly socket: net.Socket,
    role: 'acceptor' | 'requestor',
    private readonly options: {
      maxPduLength: number;
      idleTimeoutMs: number;
      /** Acceptor: the largest A-ASSOCIATE-RQ held before the calling AE title is known. */
      maxAssociateRequestBytes?: number;
    },
  ) {
    super();
    this.state = role === 'acceptor' ? 'awaiting-rq' : 'awaiting-ac';
    // Until the calling AE title is checked, an unknown caller gets a small buffer only.
    this.reader = new PduReader(role === 'acceptor' ? options.maxAssociateRequestBytes ?? DEFAULT_MAX_ASSOCIATE_RQ : this.heldPduLimit());
    socket.setNoDelay(true);
    // Whatever goes wrong in one connection ends that association, never the process.
    socket.on('data', (chunk: Buffer) => this.safely(() => this.onData(chunk)));
    socket.on('error', (e) => this.safely(() => this.fail(new AssociationAbortedError(`connection error: ${e.message}`))));
    socket.on('close', () => this.safely(() => {
      if (!this.releasedCleanly) this.fail(new AssociationAbortedError('the peer closed the connection without releasing the association'));
      this.clearIdle();
      this.emit('closed');
    }));
    this.touch();
  }

  /** An association's own A-ASSOCIATE-AC or RQ with many contexts may exceed a small P-DATA limit. */
  private heldPduLimit(): number {
    return Math.max(this.options.maxPduLength, MAX_HELD_PDU);
  }

  /** Runs a socket event's work; an error in it aborts this association (A-ABORT), and goes no further. */
  private safely(work: () => void): void {
    try {
      work();
    } catch (e) {
      try {
        if (this.state !== 'closed') this.abort(AbortSource.ServiceProvider, AbortReason.NotSpecified, `internal error: ${(e as Error)?.message ?? String(e)}`, e);
        else {
          this.socket.destroy();
          this.emit('fault', e);
        }
      } catch {
        // A listener failed while reporting the failure: the connection is dropped, nothing else can be done.
        this.socket.destroy();
      }
    }
  }

  get established(): boolean {
    return this.state === 'established';
  }

  get remoteAddress(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`;
  }

  presentationContext(id: number): PresentationContext | undefined {
    return this.contexts.get(id);
  }

  /** Every accepted presentation context, in id order. */
  acceptedContexts(): PresentationContext[] {
    return [...this.contexts.values()].sort((a, b) => a.id - b.id);
  }

  /** Accepted contexts for an abstract syntax, in proposal order. */
  contextsFor(abstractSyntax: string): PresentationContext[] {
    return [...this.contexts.values()].filter((pc) => pc.abstractSyntax === abstractSyntax);
  }

  // ---- establishment ----

  /** Acceptor: answers the A-ASSOCIATE-RQ with these accepted contexts. */
  accept(ac: Omit<AssociateAC, 'type'>, encoded: Buffer): void {
    for (const pc of ac.presentationContexts) {
      if (pc.result !== PresentationContextResult.Acceptance) continue;
      const proposed = this.proposed.get(pc.id);
      if (proposed) this.contexts.set(pc.id, { id: pc.id, abstractSyntax: proposed.abstractSyntax, transferSyntax: pc.transferSyntax });
    }
    for (const r of ac.userInformation.roles) this.roles.push(r);
    this.state = 'established';
    this.reader.maxPduBytes = this.heldPduLimit();
    this.socket.write(encoded);
  }

  /** Acceptor: refuses the association (A-ASSOCIATE-RJ) and closes. */
  reject(encoded: Buffer): void {
    this.state = 'closed';
    this.releasedCleanly = true;
    this.socket.end(encoded);
    // A peer that never closes its side does not keep the connection.
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private proposed = new Map<number, ProposedPresentationContext>();

  /** Requestor: opens an association and waits for the peer's answer. */
  static async connect(options: {
    host: string;
    port: number;
    tls?: tls.ConnectionOptions;
    callingAETitle: string;
    calledAETitle: string;
    presentationContexts: ProposedPresentationContext[];
    roles?: RoleSelection[];
    maxPduLength: number;
    idleTimeoutMs: number;
    connectTimeoutMs?: number;
    /** How long the peer has to answer the A-ASSOCIATE-RQ, once connected (default 30 s). */
    associateTimeoutMs?: number;
    /** Ask to have this many requests outstanding at once (asynchronous operations window). */
    asyncOperations?: number;
  }): Promise<Association> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s: net.Socket = options.tls
        ? tls.connect({ ...options.tls, host: options.host, port: options.port }, () => resolve(s))
        : net.connect({ host: options.host, port: options.port, noDelay: true }, () => resolve(s));
      s.once('error', reject);
      s.setTimeout(options.connectTimeoutMs ?? 10_000, () => {
        s.destroy();
        reject(new AssociationAbortedError(`could not reach ${options.host}:${options.port} in time`));
      });
    });
    socket.setTimeout(0);
    socket.removeAllListeners('error');
    const assoc = new Association(socket, 'requestor', options);
    assoc.callingAETitle = options.callingAETitle;
    assoc.calledAETitle = options.calledAETitle;
    for (const pc of options.presentationContexts) assoc.proposed.set(pc.id, pc);
    const timeoutMs = options.associateTimeoutMs ?? DEFAULT_ASSOCIATE_TIMEOUT_MS;
    const answerDeadline = setTimeout(() => assoc.abort(AbortSource.ServiceUser, AbortReason.NotSpecified, `no answer to the A-ASSOCIATE-RQ within ${timeoutMs} ms`), timeoutMs);
    answerDeadline.unref();
    try {
      assoc.establish(await new Promise<AssociateAC>((resolve, reject) => {
        assoc.acWaiter = { resolve, reject };
        socket.write(encodeAssociateRQ({
          calledAETitle: options.calledAETitle,
          callingAETitle: options.callingAETitle,
          applicationContext: DICOM_APPLICATION_CONTEXT,
          presentationContexts: options.presentationContexts,
          userInformation: {
            maxPduLength: options.maxPduLength,
            implementationClassUID: ATRIUM_IMPLEMENTATION_CLASS_UID,
            implementationVersionName: ATRIUM_IMPLEMENTATION_VERSION_NAME,
            roles: options.roles ?? [],
            asyncOperations: options.asyncOperations && options.asyncOperations > 1 ? { invoked: options.asyncOperations, performed: 1 } : undefined,
          },
        }));
      }), options);
    } catch (e) {
      // Refused, or an answer we cannot take: the connection does not outlive the attempt.
      assoc.abort(AbortSource.ServiceUser, AbortReason.NotSpecified, (e as Error).message);
      throw e;
    } finally {
      clearTimeout(answerDeadline);
    }
    return assoc;
  }

  /** Requestor: takes the peer's A-ASSOCIATE-AC as the terms of the association. */
  private establish(ac: AssociateAC, asked: { roles?: RoleSelection[]; asyncOperations?: number }): void {
    for (const pc of ac.presentationContexts) {
      const proposed = this.proposed.get(pc.id);
      if (pc.result === PresentationContextResult.Acceptance && proposed) {
        this.contexts.set(pc.id, { id: pc.id, abstractSyntax: proposed.abstractSyntax, transferSyntax: pc.transferSyntax });
      }
    }
    // Only answers to roles we asked for count, once each: a peer's answer may hold any number of items.
    const roles = new Set((asked.roles ?? []).map((r) => r.sopClassUID));
    for (const r of ac.userInformation.roles) {
      if (roles.delete(r.sopClassUID)) this.roles.push(r);
    }
    this.setPeerMaxPdu(ac.userInformation.maxPduLength);
    // A peer that does not answer the window item grants none (PS3.7 D.3.3.3.1).
    const granted = ac.userInformation.asyncOperations?.invoked ?? 1;
    this.maxOutstanding = Math.max(1, Math.min(granted === 0 ? asked.asyncOperations ?? 1 : granted, asked.asyncOperations ?? 1));
    this.state = 'established';
  }

  setPeerMaxPdu(n: number): void {
    this.peerMaxPdu = n === 0 ? MAX_SENT_PDU : Math.max(MIN_SENT_PDU, Math.min(n, MAX_SENT_PDU));
  }

  rememberProposal(rq: AssociateRQ): void {
    for (const pc of rq.presentationContexts) this.proposed.set(pc.id, pc);
    this.callingAETitle = rq.callingAETitle;
    this.calledAETitle = rq.calledAETitle;
    this.peerUserInformation = rq.userInformation;
    this.setPeerMaxPdu(rq.userInformation.maxPduLength);
  }

  // ---- receiving ----

  /**
   * The idle timer: an association with nothing received or sent for idleTimeoutMs, and no
   * request being served, is aborted. The time to send the A-ASSOCIATE-RQ (ARTIM, PS3.8
   * 9.1.5) is a fixed deadline the listener keeps (DimseServer), not reset by any byte.
   */
  private touch(): void {
    this.lastActivity = Date.now();
    if (this.idleTimer || this.options.idleTimeoutMs <= 0) return;
    const limit = () => this.options.idleTimeoutMs;
    const check = () => {
      this.idleTimer = undefined;
      if (this.state === 'closed') return;
      const quiet = Date.now() - this.lastActivity;
      if (quiet >= limit() && this.busy === 0) {
        this.abort(AbortSource.ServiceProvider, AbortReason.NotSpecified, 'idle timeout');
        return;
      }
      this.idleTimer = setTimeout(check, Math.max(limit() - quiet, 1000));
      this.idleTimer.unref();
    };
    this.idleTimer = setTimeout(check, limit());
    this.idleTimer.unref();
  }

  /** Requests being served on this association: it is not idle while any is. */
  busy = 0;
  private lastActivity = Date.now();

  private clearIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.touch();
    try {
      for (const piece of this.reader.push(chunk)) {
        if ((this.state as State) === 'closed') return;
        if (piece.kind === 'pdu') this.onPdu(piece.raw);
        else this.onPdv(piece.presentationContextId, piece.command, piece.last, piece.end, piece.data);
      }
    } catch (e) {
      if (e instanceof PduTooLongError && e.pduType === PduType.AssociateRQ && this.state === 'awaiting-rq') {
        // Refused from its header, before its bytes are held: it could be from anyone.
        this.refuse(encodeAssociateRJ(RejectResult.Permanent, RejectSource.ServiceProviderPresentation, RejectReason.LocalLimitExceeded),
          `A-ASSOCIATE-RQ of ${e.length} bytes exceeds the ${e.limit} accepted before the calling AE title is checked`);
        return;
      }
      if (e instanceof PduError || e instanceof CommandError) {
        this.abort(AbortSource.ServiceProvider, e instanceof PduError ? e.reason : AbortReason.InvalidPduParameterValue, e.message);
        return;
      }
      throw e;
    }
  }

  /** Acceptor: A-ASSOCIATE-RJ for a request it will not read, reported as an abort. */
  private refuse(encoded: Buffer, why: string): void {
    this.reject(encoded);
    this.fail(new AssociationAbortedError(why), false);
  }

  private onPdu(raw: Buffer): void {
    const pdu = decodePdu(raw);
    switch (pdu.type) {
      case PduType.AssociateRQ:
        if (this.state !== 'awaiting-rq') throw new PduError('unexpected A-ASSOCIATE-RQ', AbortReason.UnexpectedPdu);
        this.rememberProposal(pdu);
        this.emit('associate', pdu);
        return;
      case PduType.AssociateAC:
        if (this.state !== 'awaiting-ac' || !this.acWaiter) throw new PduError('unexpected A-ASSOCIATE-AC', AbortReason.UnexpectedPdu);
        this.acWaiter.resolve(pdu);
        this.acWaiter = undefined;
        return;
      case PduType.AssociateRJ: {
        const e = new AssociationRejectedError(pdu.result, pdu.source, pdu.reason);
        this.state = 'closed';
        this.socket.destroy();
        if (this.acWaiter) this.acWaiter.reject(e);
        this.acWaiter = undefined;
        return;
      }
      case PduType.ReleaseRQ:
        if (this.state !== 'established' && this.state !== 'releasing') throw new PduError('unexpected A-RELEASE-RQ', AbortReason.UnexpectedPdu);
        this.state = 'closed';
        this.releasedCleanly = true;
        this.failOutstanding(new AssociationAbortedError('the peer released the association'));
        this.socket.end(encodeReleaseRP());
        this.emit('released');
        return;
      case PduType.ReleaseRP:
        if (this.state !== 'releasing') throw new PduError('unexpected A-RELEASE-RP', AbortReason.UnexpectedPdu);
        this.state = 'closed';
        this.releasedCleanly = true;
        this.socket.end();
        this.releaseWaiter?.resolve();
        this.emit('released');
        return;
      case PduType.Abort:
        this.state = 'closed';
        this.socket.destroy();
        this.fail(new AssociationAbortedError(`the peer aborted the association (source ${pdu.source}, reason ${pdu.reason})`));
        return;
    }
  }

  /** A piece of a PDV: `end` closes the PDV, `last` (with end) closes the command or dataset. */
  private onPdv(pcId: number, isCommand: boolean, last: boolean, end: boolean, data: Buffer): void {
    if (this.state !== 'established' && this.state !== 'releasing') throw new PduError('P-DATA-TF before the association was established', AbortReason.UnexpectedPdu);
    if (!this.contexts.has(pcId)) throw new PduError(`PDV on presentation context ${pcId}, which was not accepted`, AbortReason.InvalidPduParameterValue);
    if (isCommand) {
      if (this.incoming) throw new PduError('a command fragment arrived before the previous dataset ended', AbortReason.UnexpectedPduParameter);
      if (this.command.length > 0 && pcId !== this.commandPc) throw new PduError('command fragments on two presentation contexts', AbortReason.UnexpectedPduParameter);
      this.commandPc = pcId;
      this.command.push(data);
      this.commandBytes += data.length;
      if (this.commandBytes > MAX_COMMAND_BYTES) throw new PduError('command set larger than any DIMSE command', AbortReason.InvalidPduParameterValue);
      if (last) {
        this.commandBytes = 0;
        const raw = Buffer.concat(this.command);
        this.command = [];
        this.onCommand(pcId, decodeCommand(raw));
      }
      return;
    }
    const incoming = this.incoming;
    if (!incoming) throw new PduError('a dataset fragment arrived without a command announcing it', AbortReason.UnexpectedPduParameter);
    if (pcId !== incoming.stream.presentationContextId) throw new PduError('dataset fragment on another presentation context than its command', AbortReason.UnexpectedPduParameter);
    if (last) this.incoming = undefined;
    incoming.stream.push(data, last);
  }

  private onCommand(pcId: number, command: Command): void {
    const isResponse = (command.CommandField & 0x8000) !== 0;
    if (command.CommandField === CommandField.CCancelRQ) {
      if (command.MessageIDBeingRespondedTo !== undefined) this.emit('cancel', command.MessageIDBeingRespondedTo);
      return;
    }
    const stream = command.hasDataset ? new DatasetStream(pcId, { pause: () => this.socket.pause(), resume: () => this.socket.resume() }) : undefined;
    const message: DimseMessage = { presentationContextId: pcId, command, dataset: stream };
    if (stream) this.incoming = { message, stream, isResponse };
    if (isResponse) {
      this.onResponse(message);
      return;
    }
    this.emit('request', message);
  }

  private onResponse(message: DimseMessage): void {
    const id = message.command.MessageIDBeingRespondedTo;
    const waiter = id === undefined ? undefined : this.pending.get(id);
    if (!waiter) {
      message.dataset?.abandon();
      return; // a late answer to a request we gave up on
    }
    const deliver = (dataset?: Buffer) => {
      const r: Response = { command: message.command, dataset };
      if (message.command.Status !== undefined && isPending(message.command.Status)) {
        waiter.onPending?.(r);
      } else {
        this.pending.delete(id!);
        waiter.resolve(r);
      }
    };
    if (!message.dataset) {
      deliver();
      return;
    }
    message.dataset.collect(MAX_RESPONSE_DATASET).then(deliver, (e: Error) => {
      this.pending.delete(id!);
      waiter.reject(e);
    });
  }

  // ---- sending ----

  /** Message IDs for requests this side sends. */
  newMessageId(): number {
    const id = this.nextMessageId;
    this.nextMessageId = this.nextMessageId >= 0xffff ? 1 : this.nextMessageId + 1;
    return id;
  }

  private async write(parts: Buffer[]): Promise<void> {
    if (this.state === 'closed') throw new AssociationAbortedError('the association is closed');
    this.lastActivity = Date.now();
    this.socket.cork();
    let ok = true;
    for (const p of parts) ok = this.socket.write(p);
    this.socket.uncork();
    if (!ok) await this.drained();
  }

  private drained(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onDrain = () => {
        this.socket.off('close', onClose);
        resolve();
      };
      const onClose = () => {
        this.socket.off('drain', onDrain);
        reject(new AssociationAbortedError('the connection closed while sending'));
      };
      this.socket.once('drain', onDrain);
      this.socket.once('close', onClose);
    });
  }

  /** Cuts one buffer into P-DATA PDUs of one PDV each, as large as the peer accepts. */
  private fragments(pcId: number, isCommand: boolean, data: Buffer, lastOfMessage: boolean): Buffer[] {
    const room = this.peerMaxPdu - 6;
    const out: Buffer[] = [];
    if (data.length === 0) {
      if (lastOfMessage) out.push(pDataHeader(pcId, isCommand, true, 0));
      return out;
    }
    for (let at = 0; at < data.length; at += room) {
      const piece = data.subarray(at, Math.min(at + room, data.length));
      out.push(pDataHeader(pcId, isCommand, lastOfMessage && at + room >= data.length, piece.length), piece);
    }
    return out;
  }

  /**
   * Sends one message. The dataset may be a buffer or a stream of buffers (a stored
   * object read from storage); each chunk is cut into PDUs as it comes.
   */
  async send(pcId: number, command: Command, dataset?: Buffer | AsyncIterable<Buffer>): Promise<void> {
    // Messages go out whole, one after the other, even when several are outstanding.
    const previous = this.sending;
    let done!: () => void;
    this.sending = new Promise<void>((resolve) => (done = resolve));
    await previous;
    try {
      await this.sendNow(pcId, command, dataset);
    } finally {
      done();
    }
  }

  private async sendNow(pcId: number, command: Command, dataset?: Buffer | AsyncIterable<Buffer>): Promise<void> {
    await this.write(this.fragments(pcId, true, encodeCommand({ ...command, hasDataset: dataset !== undefined }), true));
    if (dataset === undefined) return;
    if (Buffer.isBuffer(dataset)) {
      await this.write(this.fragments(pcId, false, dataset, true));
      return;
    }
    // Hold one chunk back so the last PDV can carry the "last fragment" bit.
    let held: Buffer | undefined;
    for await (const chunk of dataset) {
      if (held) await this.write(this.fragments(pcId, false, held, false));
      held = chunk;
    }
    await this.write(this.fragments(pcId, false, held ?? Buffer.alloc(0), true));
  }

  /** Sends a request and waits for its final response; pending responses go to onPending. */
  async request(pcId: number, command: Omit<Command, 'hasDataset' | 'MessageID'>, dataset?: Buffer | AsyncIterable<Buffer>, onPending?: (r: Response) => void): Promise<Response> {
    const MessageID = this.newMessageId();
    const answered = new Promise<Response>((resolve, reject) => {
      this.pending.set(MessageID, { resolve, reject, onPending });
    });
    answered.catch(() => {}); // if sending fails, that error is the one thrown
    try {
      await this.send(pcId, { ...command, MessageID, hasDataset: dataset !== undefined }, dataset);
    } catch (e) {
      this.pending.delete(MessageID);
      throw e;
    }
    return answered;
  }

  /** Asks the peer to cancel a request in progress (C-CANCEL-RQ). */
  async cancel(pcId: number, messageId: number): Promise<void> {
    await this.send(pcId, { CommandField: CommandField.CCancelRQ, MessageIDBeingRespondedTo: messageId, hasDataset: false });
  }

  /** Requestor: A-RELEASE-RQ, then wait for the peer's A-RELEASE-RP. */
  async release(timeoutMs = 10_000): Promise<void> {
    if (this.state !== 'established') return;
    this.state = 'releasing';
    await new Promise<void>((resolve, reject) => {
      this.releaseWaiter = { resolve, reject };
      const t = setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, timeoutMs);
      t.unref();
      this.socket.write(encodeReleaseRQ());
    });
  }

  /**
   * A-ABORT and close: for protocol errors, shutdown, or a peer gone quiet. `cause`: the
   * unexpected error behind it, if any (carried by the 'aborted' event's error).
   */
  abort(source: number = AbortSource.ServiceUser, reason: number = AbortReason.NotSpecified, why = 'aborted', cause?: unknown): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.socket.end(encodeAbort(source, reason));
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.fail(new AssociationAbortedError(why, cause === undefined ? undefined : { cause }), false);
  }

  private failOutstanding(e: Error): void {
    this.incoming?.stream.fail(e);
    this.incoming = undefined;
    for (const w of this.pending.values()) w.reject(e);
    this.pending.clear();
  }

  private aborted = false;

  private fail(e: Error, destroy = true): void {
    if (this.aborted) return;
    this.aborted = true;
    this.state = 'closed';
    this.failOutstanding(e);
    this.acWaiter?.reject(e);
    this.acWaiter = undefined;
    this.releaseWaiter?.resolve();
    this.releaseWaiter = undefined;
    if (destroy && !this.socket.destroyed) this.socket.destroy();
    this.emit('aborted', e);
  }
}
