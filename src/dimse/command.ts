/**
 * DIMSE command sets (PS3.7 §9.3, §10.3, E.1): group 0000, always implicit VR little
 * endian, with the command group length first. Pure: no I/O.
 */

export const CommandField = {
  CStoreRQ: 0x0001,
  CStoreRSP: 0x8001,
  CGetRQ: 0x0010,
  CGetRSP: 0x8010,
  CFindRQ: 0x0020,
  CFindRSP: 0x8020,
  CMoveRQ: 0x0021,
  CMoveRSP: 0x8021,
  CEchoRQ: 0x0030,
  CEchoRSP: 0x8030,
  NEventReportRQ: 0x0100,
  NEventReportRSP: 0x8100,
  NActionRQ: 0x0130,
  NActionRSP: 0x8130,
  CCancelRQ: 0x0fff,
} as const;

/** CommandDataSetType (0000,0800): this value means no dataset follows; any other means one does. */
export const NO_DATASET = 0x0101;
const DATASET_PRESENT = 0x0000;

export const Priority = { Medium: 0x0000, High: 0x0001, Low: 0x0002 } as const;

/**
 * DIMSE statuses Atrium sends or reads (PS3.7 Annex C, PS3.4 B.2.3, C.4.1.1.4, C.4.2.1.5,
 * C.4.3.1.4, J.3.2.1.4). Named so that code and tests say which one they mean.
 */
export const Status = {
  Success: 0x0000,
  Pending: 0xff00,
  PendingWarning: 0xff01, // optional keys not supported
  Cancel: 0xfe00,
  // general
  RefusedNotAuthorized: 0x0124,
  NoSuchSOPClass: 0x0118,
  NoSuchSOPInstance: 0x0112,
  NoSuchActionType: 0x0123,
  ProcessingFailure: 0x0110,
  DuplicateSOPInstance: 0x0111,
  UnrecognizedOperation: 0x0211,
  MistypedArgument: 0x0212,
  // storage
  OutOfResources: 0xa700,
  DataSetDoesNotMatchSOPClass: 0xa900,
  CannotUnderstand: 0xc000,
  // query/retrieve
  OutOfResourcesMatches: 0xa701,
  OutOfResourcesSubOperations: 0xa702,
  MoveDestinationUnknown: 0xa801,
  IdentifierDoesNotMatchSOPClass: 0xa900,
  UnableToProcess: 0xc001,
  SubOperationsCompleteWithFailures: 0xb000,
} as const;

export function isPending(status: number): boolean {
  return status === Status.Pending || status === Status.PendingWarning;
}

/** The command elements Atrium reads and writes, by keyword (PS3.7 E.1). */
export interface Command {
  CommandField: number;
  MessageID?: number;
  MessageIDBeingRespondedTo?: number;
  AffectedSOPClassUID?: string;
  RequestedSOPClassUID?: string;
  AffectedSOPInstanceUID?: string;
  RequestedSOPInstanceUID?: string;
  MoveDestination?: string;
  Priority?: number;
  /** Whether a dataset follows (CommandDataSetType). */
  hasDataset: boolean;
  Status?: number;
  OffendingElement?: number[];
  ErrorComment?: string;
  ErrorID?: number;
  EventTypeID?: number;
  ActionTypeID?: number;
  NumberOfRemainingSuboperations?: number;
  NumberOfCompletedSuboperations?: number;
  NumberOfFailedSuboperations?: number;
  NumberOfWarningSuboperations?: number;
  MoveOriginatorApplicationEntityTitle?: string;
  MoveOriginatorMessageID?: number;
}

type Kind = 'UI' | 'US' | 'AE' | 'LO' | 'AT' | 'UL';

const elements: Array<[number, keyof Command, Kind]> = [
  [0x0002, 'AffectedSOPClassUID', 'UI'],
  [0x0003, 'RequestedSOPClassUID', 'UI'],
  [0x0100, 'CommandField', 'US'],
  [0x0110, 'MessageID', 'US'],
  [0x0120, 'MessageIDBeingRespondedTo', 'US'],
  [0x0600, 'MoveDestination', 'AE'],
  [0x0700, 'Priority', 'US'],
  // 0x0800 CommandDataSetType: from hasDataset
  [0x0900, 'Status', 'US'],
  [0x0901, 'OffendingElement', 'AT'],
  [0x0902, 'ErrorComment', 'LO'],
  [0x0903, 'ErrorID', 'US'],
  [0x1000, 'AffectedSOPInstanceUID', 'UI'],
  [0x1001, 'RequestedSOPInstanceUID', 'UI'],
  [0x1002, 'EventTypeID', 'US'],
  [0x1008, 'ActionTypeID', 'US'],
  [0x1020, 'NumberOfRemainingSuboperations', 'US'],
  [0x1021, 'NumberOfCompletedSuboperations', 'US'],
  [0x1022, 'NumberOfFailedSuboperations', 'US'],
  [0x1023, 'NumberOfWarningSuboperations', 'US'],
  [0x1030, 'MoveOriginatorApplicationEntityTitle', 'AE'],
  [0x1031, 'MoveOriginatorMessageID', 'US'],
];
const byElement = new Map(elements.map(([el, key, kind]) => [el, { key, kind }]));

export class CommandError extends Error {
  override readonly name = 'CommandError';
}

function element(el: number, value: Buffer): Buffer {
  const h = Buffer.allocUnsafe(8);
  h.writeUInt16LE(0x0000, 0);
  h.writeUInt16LE(el, 2);
  h.writeUInt32LE(value.length, 4);
  return Buffer.concat([h, value]);
}

function text(s: string, pad: number): Buffer {
  const b = Buffer.from(s, 'latin1');
  return b.length % 2 === 0 ? b : Buffer.concat([b, Buffer.from([pad])]);
}

function us(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16LE(n & 0xffff, 0);
  return b;
}

export function encodeCommand(cmd: Command): Buffer {
  const parts: Buffer[] = [];
  const fields = new Map<number, Buffer>();
  for (const [el, key, kind] of elements) {
    const v = cmd[key];
    if (v === undefined) continue;
    switch (kind) {
      case 'UI':
        fields.set(el, text(v as string, 0x00));
        break;
      case 'AE':
        fields.set(el, Buffer.from((v as string).padEnd(16, ' ').slice(0, 16), 'latin1'));
        break;
      case 'LO':
        fields.set(el, text((v as string).slice(0, 64), 0x20));
        break;
      case 'US':
        fields.set(el, us(v as number));
        break;
      case 'AT': {
        const tags = v as number[];
        const b = Buffer.allocUnsafe(4 * tags.length);
        tags.forEach((t, i) => {
          b.writeUInt16LE(t >>> 16, 4 * i);
          b.writeUInt16LE(t & 0xffff, 4 * i + 2);
        });
        fields.set(el, b);
        break;
      }
      case 'UL':
        break;
    }
  }
  fields.set(0x0800, us(cmd.hasDataset ? DATASET_PRESENT : NO_DATASET));
  for (const el of [...fields.keys()].sort((a, b) => a - b)) parts.push(element(el, fields.get(el)!));
  const body = Buffer.concat(parts);
  const groupLength = Buffer.allocUnsafe(4);
  groupLength.writeUInt32LE(body.length, 0);
  return Buffer.concat([element(0x0000, groupLength), body]);
}

export function decodeCommand(buf: Buffer): Command {
  const cmd: Partial<Command> & { hasDataset: boolean } = { hasDataset: false };
  let at = 0;
  let sawField = false;
  while (at < buf.length) {
    if (at + 8 > buf.length) throw new CommandError('command set ends inside an element header');
    const group = buf.readUInt16LE(at);
    const el = buf.readUInt16LE(at + 2);
    const len = buf.readUInt32LE(at + 4);
    at += 8;
    if (group !== 0x0000) throw new CommandError(`command set holds an element of group ${group.toString(16).padStart(4, '0')}`);
    if (len > buf.length - at) throw new CommandError(`command element (0000,${el.toString(16).padStart(4, '0')}) runs past the command set`);
    const v = buf.subarray(at, at + len);
    at += len;
    if (el === 0x0800) {
      if (len !== 2) throw new CommandError('CommandDataSetType must be 2 bytes');
      cmd.hasDataset = v.readUInt16LE(0) !== NO_DATASET;
      continue;
    }
    const known = byElement.get(el);
    if (!known) continue; // group length and retired elements
    const target = cmd as Record<string, unknown>;
    switch (known.kind) {
      case 'UI':
        target[known.key] = v.toString('latin1').replace(/[\0 ]+$/, '');
        break;
      case 'AE':
      case 'LO':
        target[known.key] = v.toString('latin1').trim();
        break;
      case 'US':
        if (len !== 2) throw new CommandError(`command element (0000,${el.toString(16).padStart(4, '0')}) must be 2 bytes`);
        target[known.key] = v.readUInt16LE(0);
        if (el === 0x0100) sawField = true;
        break;
      case 'AT': {
        const tags: number[] = [];
        for (let i = 0; i + 4 <= len; i += 4) tags.push(((v.readUInt16LE(i) << 16) | v.readUInt16LE(i + 2)) >>> 0);
        target[known.key] = tags;
        break;
      }
      case 'UL':
        break;
    }
  }
  if (!sawField) throw new CommandError('command set has no CommandField (0000,0100)');
  return cmd as Command;
}
