/**
 * Protocol data units of the DICOM upper layer (PS3.8 §9.3): A-ASSOCIATE-RQ/AC/RJ,
 * P-DATA-TF, A-RELEASE-RQ/RP and A-ABORT, encoded and decoded. Pure: no I/O.
 */

export const PduType = {
  AssociateRQ: 0x01,
  AssociateAC: 0x02,
  AssociateRJ: 0x03,
  PDataTF: 0x04,
  ReleaseRQ: 0x05,
  ReleaseRP: 0x06,
  Abort: 0x07,
} as const;

const ItemType = {
  ApplicationContext: 0x10,
  PresentationContextRQ: 0x20,
  PresentationContextAC: 0x21,
  AbstractSyntax: 0x30,
  TransferSyntax: 0x40,
  UserInformation: 0x50,
  MaximumLength: 0x51,
  ImplementationClassUID: 0x52,
  AsynchronousOperationsWindow: 0x53,
  RoleSelection: 0x54,
  ImplementationVersionName: 0x55,
} as const;

/** The DICOM application context name (PS3.7 A.2.1). */
export const DICOM_APPLICATION_CONTEXT = '1.2.840.10008.3.1.1.1';

/** A-ASSOCIATE-AC presentation context results (PS3.8 §9.3.3.2). */
export const PresentationContextResult = {
  Acceptance: 0,
  UserRejection: 1,
  NoReason: 2,
  AbstractSyntaxNotSupported: 3,
  TransferSyntaxesNotSupported: 4,
} as const;

/** A-ASSOCIATE-RJ result, source and reason (PS3.8 §9.3.4). */
export const RejectResult = { Permanent: 1, Transient: 2 } as const;
export const RejectSource = { ServiceUser: 1, ServiceProviderACSE: 2, ServiceProviderPresentation: 3 } as const;
export const RejectReason = {
  NoReasonGiven: 1,
  ApplicationContextNotSupported: 2,
  CallingAETitleNotRecognized: 3,
  CalledAETitleNotRecognized: 7,
  /** source 2 (ACSE) */
  ProtocolVersionNotSupported: 2,
  /** source 3 (presentation) */
  TemporaryCongestion: 1,
  LocalLimitExceeded: 2,
} as const;

/** A-ABORT source and reason (PS3.8 §9.3.8). */
export const AbortSource = { ServiceUser: 0, ServiceProvider: 2 } as const;
export const AbortReason = {
  NotSpecified: 0,
  UnrecognizedPdu: 1,
  UnexpectedPdu: 2,
  UnrecognizedPduParameter: 4,
  UnexpectedPduParameter: 5,
  InvalidPduParameterValue: 6,
} as const;

export interface ProposedPresentationContext {
  id: number;
  abstractSyntax: string;
  transferSyntaxes: string[];
}

export interface AcceptedPresentationContext {
  id: number;
  result: number;
  /** Meaningful only when result is Acceptance. */
  transferSyntax: string;
}

export interface RoleSelection {
  sopClassUID: string;
  scuRole: boolean;
  scpRole: boolean;
}

export interface UserInformation {
  maxPduLength: number;
  implementationClassUID?: string;
  implementationVersionName?: string;
  /** Operations invoked / performed asynchronously (PS3.7 D.3.3.3); absent means 1/1. */
  asyncOperations?: { invoked: number; performed: number };
  roles: RoleSelection[];
}

export interface AssociateRQ {
  type: typeof PduType.AssociateRQ;
  calledAETitle: string;
  callingAETitle: string;
  applicationContext: string;
  presentationContexts: ProposedPresentationContext[];
  userInformation: UserInformation;
}

export interface AssociateAC {
  type: typeof PduType.AssociateAC;
  calledAETitle: string;
  callingAETitle: string;
  applicationContext: string;
  presentationContexts: AcceptedPresentationContext[];
  userInformation: UserInformation;
}

export interface AssociateRJ {
  type: typeof PduType.AssociateRJ;
  result: number;
  source: number;
  reason: number;
}

export interface Pdv {
  presentationContextId: number;
  command: boolean;
  last: boolean;
  data: Buffer;
}

export interface PDataTF {
  type: typeof PduType.PDataTF;
  pdvs: Pdv[];
}

export interface ReleaseRQ { type: typeof PduType.ReleaseRQ }
export interface ReleaseRP { type: typeof PduType.ReleaseRP }
export interface Abort { type: typeof PduType.Abort; source: number; reason: number }

export type Pdu = AssociateRQ | AssociateAC | AssociateRJ | PDataTF | ReleaseRQ | ReleaseRP | Abort;

/** A PDU that breaks PS3.8: answered with A-ABORT carrying `reason`. */
export class PduError extends Error {
  override readonly name = 'PduError';
  constructor(message: string, readonly reason: number = AbortReason.InvalidPduParameterValue) {
    super(message);
  }
}

/** A PDU announced longer than the reader accepts: refused from its header, before its bytes are held. */
export class PduTooLongError extends PduError {
  constructor(readonly pduType: number, readonly length: number, readonly limit: number) {
    super(`PDU of ${length} bytes exceeds the ${limit} accepted`, AbortReason.InvalidPduParameterValue);
  }
}

/**
 * A PDU that cannot be written: a field longer than its length field can say (PS3.8 9.3).
 * Thrown instead of the RangeError of a Buffer write, so that callers can refuse or abort.
 */
export class PduEncodingError extends Error {
  override readonly name = 'PduEncodingError';
}

// ---- encoding -------------------------------------------------------------

function aeField(ae: string): Buffer {
  const b = Buffer.alloc(16, 0x20);
  b.write(ae.slice(0, 16), 0, 'latin1');
  return b;
}

function item(type: number, value: Buffer): Buffer {
  if (value.length > 0xffff) throw new PduEncodingError(`item 0x${type.toString(16)} of ${value.length} bytes exceeds the 65535 its length field can say`);
  const h = Buffer.alloc(4);
  h[0] = type;
  h.writeUInt16BE(value.length, 2);
  return Buffer.concat([h, value]);
}

function uidItem(type: number, uid: string): Buffer {
  return item(type, Buffer.from(uid, 'latin1'));
}

function pdu(type: number, body: Buffer): Buffer {
  if (body.length > 0xffffffff) throw new PduEncodingError(`PDU of ${body.length} bytes exceeds what its length field can say`);
  const h = Buffer.alloc(6);
  h[0] = type;
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function userInformationItem(ui: UserInformation): Buffer {
  const subs: Buffer[] = [];
  const max = Buffer.alloc(4);
  max.writeUInt32BE(ui.maxPduLength >>> 0, 0);
  subs.push(item(ItemType.MaximumLength, max));
  if (ui.implementationClassUID) subs.push(uidItem(ItemType.ImplementationClassUID, ui.implementationClassUID));
  if (ui.asyncOperations) {
    const { invoked, performed } = ui.asyncOperations;
    if (!isUint16(invoked) || !isUint16(performed)) throw new PduEncodingError(`asynchronous operations window ${invoked}/${performed} does not fit 16 bits`);
    const w = Buffer.alloc(4);
    w.writeUInt16BE(ui.asyncOperations.invoked, 0);
    w.writeUInt16BE(ui.asyncOperations.performed, 2);
    subs.push(item(ItemType.AsynchronousOperationsWindow, w));
  }
  for (const role of ui.roles) {
    const uid = Buffer.from(role.sopClassUID, 'latin1');
    if (uid.length > 0xffff - 4) throw new PduEncodingError(`role selection UID of ${uid.length} bytes does not fit its item`);
    const v = Buffer.alloc(2 + uid.length + 2);
    v.writeUInt16BE(uid.length, 0);
    uid.copy(v, 2);
    v[2 + uid.length] = role.scuRole ? 1 : 0;
    v[3 + uid.length] = role.scpRole ? 1 : 0;
    subs.push(item(ItemType.RoleSelection, v));
  }
  if (ui.implementationVersionName) subs.push(item(ItemType.ImplementationVersionName, Buffer.from(ui.implementationVersionName.slice(0, 16), 'latin1')));
  return item(ItemType.UserInformation, Buffer.concat(subs));
}

function isUint16(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff;
}

/** Presentation context IDs are odd integers 1-255 (PS3.8 9.3.2.2); Buffer.from would silently wrap others. */
function contextId(id: number): number {
  if (!Number.isInteger(id) || id < 1 || id > 255) throw new PduEncodingError(`presentation context ID ${id} is not 1-255`);
  return id;
}

function associateHeader(calledAETitle: string, callingAETitle: string): Buffer {
  const h = Buffer.alloc(68);
  h.writeUInt16BE(1, 0); // protocol version
  aeField(calledAETitle).copy(h, 4);
  aeField(callingAETitle).copy(h, 20);
  return h;
}

export function encodeAssociateRQ(rq: Omit<AssociateRQ, 'type'>): Buffer {
  const parts = [associateHeader(rq.calledAETitle, rq.callingAETitle), uidItem(ItemType.ApplicationContext, rq.applicationContext)];
  for (const pc of rq.presentationContexts) {
    const head = Buffer.from([contextId(pc.id), 0, 0, 0]);
    parts.push(item(ItemType.PresentationContextRQ, Buffer.concat([
      head,
      uidItem(ItemType.AbstractSyntax, pc.abstractSyntax),
      ...pc.transferSyntaxes.map((ts) => uidItem(ItemType.TransferSyntax, ts)),
    ])));
  }
  parts.push(userInformationItem(rq.userInformation));
  return pdu(PduType.AssociateRQ, Buffer.concat(parts));
}

export function encodeAssociateAC(ac: Omit<AssociateAC, 'type'>): Buffer {
  const parts = [associateHeader(ac.calledAETitle, ac.callingAETitle), uidItem(ItemType.ApplicationContext, ac.applicationContext)];
  for (const pc of ac.presentationContexts) {
    // A rejected context still carries one transfer syntax sub-item, whose value is not significant.
    parts.push(item(ItemType.PresentationContextAC, Buffer.concat([
      Buffer.from([contextId(pc.id), 0, pc.result & 0xff, 0]),
      uidItem(ItemType.TransferSyntax, pc.result === PresentationContextResult.Acceptance ? pc.transferSyntax : ''),
    ])));
  }
  parts.push(userInformationItem(ac.userInformation));
  return pdu(PduType.AssociateAC, Buffer.concat(parts));
}

export function encodeAssociateRJ(result: number, source: number, reason: number): Buffer {
  return pdu(PduType.AssociateRJ, Buffer.from([0, result, source, reason]));
}

export function encodeReleaseRQ(): Buffer {
  return pdu(PduType.ReleaseRQ, Buffer.alloc(4));
}

export function encodeReleaseRP(): Buffer {
  return pdu(PduType.ReleaseRP, Buffer.alloc(4));
}

export function encodeAbort(source: number, reason: number): Buffer {
  return pdu(PduType.Abort, Buffer.from([0, 0, source, reason]));
}

/** The 12 bytes before a PDV's data when the PDU carries exactly one PDV: PDU header, item length, context, control. */
export function pDataHeader(presentationContextId: number, command: boolean, last: boolean, dataLength: number): Buffer {
  if (dataLength + 6 > 0xffffffff) throw new PduEncodingError(`PDV of ${dataLength} bytes does not fit one P-DATA-TF`);
  const h = Buffer.allocUnsafe(12);
  h[0] = PduType.PDataTF;
  h[1] = 0;
  h.writeUInt32BE(dataLength + 6, 2);
  h.writeUInt32BE(dataLength + 2, 6);
  h[10] = presentationContextId;
  h[11] = (command ? 1 : 0) | (last ? 2 : 0);
  return h;
}

// ---- decoding -------------------------------------------------------------

function readAE(b: Buffer, at: number): string {
  return b.toString('latin1', at, at + 16).trim();
}

function uidOf(v: Buffer): string {
  return v.toString('latin1').replace(/[\0 ]+$/, '');
}

interface RawItem {
  type: number;
  value: Buffer;
}

function* items(body: Buffer, from: number, what: string): Generator<RawItem> {
  let at = from;
  while (at < body.length) {
    if (at + 4 > body.length) throw new PduError(`${what}: an item header runs past the end of the PDU`);
    const type = body[at]!;
    const len = body.readUInt16BE(at + 2);
    if (at + 4 + len > body.length) throw new PduError(`${what}: item 0x${type.toString(16)} runs past the end of its PDU`);
    yield { type, value: body.subarray(at + 4, at + 4 + len) };
    at += 4 + len;
  }
}

function decodeUserInformation(v: Buffer): UserInformation {
  const ui: UserInformation = { maxPduLength: 0, roles: [] };
  for (const sub of items(v, 0, 'user information')) {
    switch (sub.type) {
      case ItemType.MaximumLength:
        if (sub.value.length !== 4) throw new PduError('maximum length sub-item must hold 4 bytes');
        ui.maxPduLength = sub.value.readUInt32BE(0);
        break;
      case ItemType.ImplementationClassUID:
        ui.implementationClassUID = uidOf(sub.value);
        break;
      case ItemType.ImplementationVersionName:
        ui.implementationVersionName = sub.value.toString('latin1').trim();
        break;
      case ItemType.AsynchronousOperationsWindow:
        if (sub.value.length !== 4) throw new PduError('asynchronous operations window sub-item must hold 4 bytes');
        ui.asyncOperations = { invoked: sub.value.readUInt16BE(0), performed: sub.value.readUInt16BE(2) };
        break;
      case ItemType.RoleSelection: {
        if (sub.value.length < 4) throw new PduError('role selection sub-item is too short');
        const n = sub.value.readUInt16BE(0);
        if (2 + n + 2 > sub.value.length) throw new PduError('role selection sub-item: UID length runs past the item');
        ui.roles.push({ sopClassUID: uidOf(sub.value.subarray(2, 2 + n)), scuRole: sub.value[2 + n] === 1, scpRole: sub.value[3 + n] === 1 });
        break;
      }
      default:
        // Extended negotiation, user identity...: not negotiated, so left unanswered (PS3.7 D.3.3).
        break;
    }
  }
  return ui;
}

function decodeAssociate(type: number, body: Buffer): AssociateRQ | AssociateAC {
  if (body.length < 68) throw new PduError('A-ASSOCIATE PDU shorter than its fixed fields');
  const version = body.readUInt16BE(0);
  if ((version & 1) === 0) throw new PduError(`protocol version ${version} not supported`, AbortReason.InvalidPduParameterValue);
  const calledAETitle = readAE(body, 4);
  const callingAETitle = readAE(body, 20);
  let applicationContext = '';
  let userInformation: UserInformation | undefined;
  const proposed: ProposedPresentationContext[] = [];
  const accepted: AcceptedPresentationContext[] = [];
  // Each context is answered once, by its ID: a repeated ID has no meaning (PS3.8 9.3.2.2).
  const ids = new Set<number>();
  const newId = (id: number) => {
    if (ids.has(id)) throw new PduError(`presentation context ID ${id} given twice`, AbortReason.InvalidPduParameterValue);
    ids.add(id);
    return id;
  };
  for (const it of items(body, 68, 'A-ASSOCIATE')) {
    switch (it.type) {
      case ItemType.ApplicationContext:
        applicationContext = uidOf(it.value);
        break;
      case ItemType.PresentationContextRQ: {
        if (type !== PduType.AssociateRQ) throw new PduError('request presentation context in an A-ASSOCIATE-AC', AbortReason.UnexpectedPduParameter);
        if (it.value.length < 4) throw new PduError('presentation context item is too short');
        const pc: ProposedPresentationContext = { id: newId(it.value[0]!), abstractSyntax: '', transferSyntaxes: [] };
        for (const sub of items(it.value, 4, 'presentation context')) {
          if (sub.type === ItemType.AbstractSyntax) pc.abstractSyntax = uidOf(sub.value);
          else if (sub.type === ItemType.TransferSyntax) pc.transferSyntaxes.push(uidOf(sub.value));
        }
        proposed.push(pc);
        break;
      }
      case ItemType.PresentationContextAC: {
        if (type !== PduType.AssociateAC) throw new PduError('accepted presentation context in an A-ASSOCIATE-RQ', AbortReason.UnexpectedPduParameter);
        if (it.value.length < 4) throw new PduError('presentation context item is too short');
        let transferSyntax = '';
        for (const sub of items(it.value, 4, 'presentation context')) {
          if (sub.type === ItemType.TransferSyntax) transferSyntax = uidOf(sub.value);
        }
        accepted.push({ id: newId(it.value[0]!), result: it.value[2]!, transferSyntax });
        break;
      }
      case ItemType.UserInformation:
        userInformation = decodeUserInformation(it.value);
        break;
      default:
        throw new PduError(`unknown item type 0x${it.type.toString(16)} in A-ASSOCIATE`, AbortReason.UnrecognizedPduParameter);
    }
  }
  if (!userInformation) throw new PduError('A-ASSOCIATE without user information item');
  if (type === PduType.AssociateRQ) {
    return { type: PduType.AssociateRQ, calledAETitle, callingAETitle, applicationContext, presentationContexts: proposed, userInformation };
  }
  return { type: PduType.AssociateAC, calledAETitle, callingAETitle, applicationContext, presentationContexts: accepted, userInformation };
}

function decodePData(body: Buffer): PDataTF {
  const pdvs: Pdv[] = [];
  let at = 0;
  while (at < body.length) {
    if (at + 6 > body.length) throw new PduError('P-DATA-TF: a PDV header runs past the end of the PDU');
    const len = body.readUInt32BE(at);
    if (len < 2 || at + 4 + len > body.length) throw new PduError(`P-DATA-TF: PDV length ${len} does not fit its PDU`);
    const control = body[at + 5]!;
    pdvs.push({ presentationContextId: body[at + 4]!, command: (control & 1) === 1, last: (control & 2) === 2, data: body.subarray(at + 6, at + 4 + len) });
    at += 4 + len;
  }
  if (pdvs.length === 0) throw new PduError('P-DATA-TF without a PDV');
  return { type: PduType.PDataTF, pdvs };
}

/** Decodes one whole PDU (header included). */
export function decodePdu(buf: Buffer): Pdu {
  const type = buf[0]!;
  const body = buf.subarray(6);
  switch (type) {
    case PduType.AssociateRQ:
    case PduType.AssociateAC:
      return decodeAssociate(type, body);
    case PduType.AssociateRJ:
      if (body.length < 4) throw new PduError('A-ASSOCIATE-RJ is too short');
      return { type: PduType.AssociateRJ, result: body[1]!, source: body[2]!, reason: body[3]! };
    case PduType.PDataTF:
      return decodePData(body);
    case PduType.ReleaseRQ:
      return { type: PduType.ReleaseRQ };
    case PduType.ReleaseRP:
      return { type: PduType.ReleaseRP };
    case PduType.Abort:
      if (body.length < 4) throw new PduError('A-ABORT is too short');
      return { type: PduType.Abort, source: body[2]!, reason: body[3]! };
    default:
      throw new PduError(`unrecognized PDU type 0x${type.toString(16)}`, AbortReason.UnrecognizedPdu);
  }
}

/** What the reader hands on: a whole PDU other than P-DATA, or a piece of one PDV's value. */
export type PduPiece =
  | { kind: 'pdu'; raw: Buffer }
  | {
    kind: 'pdv';
    presentationContextId: number;
    command: boolean;
    /** The PDV's "last fragment of the message" bit, given with its final piece. */
    last: boolean;
    /** This piece ends its PDV. */
    end: boolean;
    data: Buffer;
  };

/**
 * Cuts a byte stream into PDUs. P-DATA-TF values are handed on as views of the received
 * chunks, piece by piece as they arrive, never joined: a 1 MB C-STORE costs no copy
 * here, whatever the PDU size. Other PDUs (small) are handed on whole.
 */
export class PduReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Inside a P-DATA-TF: bytes of it not read yet. */
  private pduLeft = 0;
  /** Inside a PDV: bytes of its value not read yet, and its header. */
  private pdvLeft = 0;
  private pdv: { presentationContextId: number; command: boolean; last: boolean } | undefined;

  /**
   * The longest PDU accepted; a longer one is refused from its header. Not read-only: an
   * acceptor holds an A-ASSOCIATE-RQ to a small limit until the association is accepted.
   */
  constructor(public maxPduBytes: number) {}

  push(chunk: Buffer): PduPiece[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const out: PduPiece[] = [];
    for (;;) {
      if (this.pdvLeft > 0) {
        if (this.buffered === 0) break;
        const first = this.chunks[0]!;
        const n = Math.min(first.length, this.pdvLeft);
        const data = n === first.length ? first : first.subarray(0, n);
        this.consume(n);
        this.pdvLeft -= n;
        this.pduLeft -= n;
        const end = this.pdvLeft === 0;
        out.push({ kind: 'pdv', ...this.pdv!, last: end && this.pdv!.last, end, data });
        continue;
      }
      if (this.pduLeft > 0) {
        // The next PDV header of the P-DATA-TF being read.
        if (this.pduLeft < 6) throw new PduError('P-DATA-TF: a PDV header runs past the end of the PDU');
        if (this.buffered < 6) break;
        const h = this.take(6);
        const itemLength = h.readUInt32BE(0);
        if (itemLength < 2 || itemLength > this.pduLeft - 4) throw new PduError(`P-DATA-TF: PDV length ${itemLength} does not fit its PDU`);
        const control = h[5]!;
        this.pdv = { presentationContextId: h[4]!, command: (control & 1) === 1, last: (control & 2) === 2 };
        this.pduLeft -= 6;
        this.pdvLeft = itemLength - 2;
        if (this.pdvLeft === 0) out.push({ kind: 'pdv', ...this.pdv, end: true, data: Buffer.alloc(0) });
        continue;
      }
      if (this.buffered < 6) break;
      const head = this.peek(6);
      const type = head[0]!;
      const length = head.readUInt32BE(2);
      if (type < PduType.AssociateRQ || type > PduType.Abort) throw new PduError(`unrecognized PDU type 0x${type.toString(16)}`, AbortReason.UnrecognizedPdu);
      if (length > this.maxPduBytes) throw new PduTooLongError(type, length, this.maxPduBytes);
      if (type === PduType.PDataTF) {
        if (length < 6) throw new PduError('P-DATA-TF without a PDV');
        this.consume(6);
        this.pduLeft = length;
        continue;
      }
      if (this.buffered < 6 + length) break;
      out.push({ kind: 'pdu', raw: this.take(6 + length) });
    }
    return out;
  }

  /** The next n bytes (n <= buffered), consumed; a view when they lie in one chunk. */
  private take(n: number): Buffer {
    const out = this.peek(n);
    this.consume(n);
    return out;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (const c of this.chunks) {
      const k = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, k);
      filled += k;
      if (filled === n) break;
    }
    return out;
  }

  private consume(n: number): void {
    this.buffered -= n;
    while (n > 0) {
      const first = this.chunks[0]!;
      if (first.length <= n) {
        n -= first.length;
        this.chunks.shift();
      } else {
        this.chunks[0] = first.subarray(n);
        n = 0;
      }
    }
  }
}
