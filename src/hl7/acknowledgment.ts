/**
 * Original-mode acknowledgments (HL7 v2.5 2.9.2): MSA-1 AA when the message was applied,
 * AE when Atrium understood it but its content is wrong, AR when it refuses it (message
 * type, sender, version, encoding, or a failure of its own); an ERR segment says why.
 */
import { segment, standardDelimiters, encodeMessage, type Hl7Message } from './message.ts';

export type AcknowledgmentCode = 'AA' | 'AE' | 'AR';

/** HL7 table 0357, message error condition codes. */
export const Hl7ErrorCode = {
  segmentSequenceError: '100',
  requiredFieldMissing: '101',
  dataTypeError: '102',
  tableValueNotFound: '103',
  unsupportedMessageType: '200',
  unsupportedEventCode: '201',
  unsupportedProcessingId: '202',
  unsupportedVersionId: '203',
  unknownKeyIdentifier: '204',
  duplicateKeyIdentifier: '205',
  applicationRecordLocked: '206',
  applicationInternalError: '207',
} as const;

export type Hl7ErrorCode = (typeof Hl7ErrorCode)[keyof typeof Hl7ErrorCode];

const errorCodeText: Record<Hl7ErrorCode, string> = {
  '100': 'Segment sequence error',
  '101': 'Required field missing',
  '102': 'Data type error',
  '103': 'Table value not found',
  '200': 'Unsupported message type',
  '201': 'Unsupported event code',
  '202': 'Unsupported processing id',
  '203': 'Unsupported version id',
  '204': 'Unknown key identifier',
  '205': 'Duplicate key identifier',
  '206': 'Application record locked',
  '207': 'Application internal error',
};

/** Where an error is (ERR-2, an ERL): segment id, its sequence, field, repetition, component. */
export interface ErrorLocation {
  segment: string;
  field?: number;
  repetition?: number;
  component?: number;
}

/** A message Atrium answers with AE or AR; thrown inside the message's transaction, which is rolled back. */
export class Hl7Error extends Error {
  constructor(
    readonly acknowledgment: 'AE' | 'AR',
    readonly code: Hl7ErrorCode,
    message: string,
    readonly location?: ErrorLocation,
  ) {
    super(message);
    this.name = 'Hl7Error';
  }
}

/** What the ACK echoes of the message it answers (what could be read of its MSH). */
export interface AcknowledgedHeader {
  sendingApplication: string;
  sendingFacility: string;
  receivingApplication: string;
  receivingFacility: string;
  messageControlId: string;
  triggerEvent: string;
  processingId: string;
  version: string;
  characterSet: string;
}

export function hl7Timestamp(date = new Date()): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${date.getUTCFullYear()}${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}${p(date.getUTCHours())}${p(date.getUTCMinutes())}${p(date.getUTCSeconds())}+0000`;
}

let controlCounter = 0;

/**
 * ACK^<trigger>^ACK with MSA (and ERR when refused), sent back to the sending application and
 * facility. An accepted message's warnings (a possibly redundant exam) are ERR segments of
 * severity W (ERR-4), code 0 "Message accepted" (table 0357), the text in ERR-8.
 */
export function buildAcknowledgment(header: AcknowledgedHeader, code: AcknowledgmentCode, error?: Hl7Error, warnings: readonly string[] = []): Hl7Message {
  controlCounter = (controlCounter + 1) % 1_000_000;
  const controlId = `ATR${Date.now().toString(36).toUpperCase()}${String(controlCounter).padStart(6, '0')}`;
  const segments = [
    segment('MSH', '|', '^~\\&', header.receivingApplication || 'ATRIUM', header.receivingFacility || 'ATRIUM',
      header.sendingApplication, header.sendingFacility, hl7Timestamp(), undefined,
      ['ACK', header.triggerEvent, 'ACK'], controlId, header.processingId || 'P', header.version || '2.5',
      undefined, undefined, undefined, undefined, header.characterSet || undefined),
    segment('MSA', code, header.messageControlId),
  ];
  if (error) {
    const l = error.location;
    segments.push(segment('ERR', undefined,
      l ? [l.segment, '1', l.field === undefined ? '' : String(l.field), l.repetition === undefined ? '' : String(l.repetition), l.component === undefined ? '' : String(l.component)] : undefined,
      [error.code, errorCodeText[error.code], 'HL70357'], 'E', undefined, undefined, undefined, error.message));
  }
  for (const w of warnings) segments.push(segment('ERR', undefined, undefined, ['0', 'Message accepted', 'HL70357'], 'W', undefined, undefined, undefined, w));
  return { delimiters: standardDelimiters, segments };
}

export function encodeAcknowledgment(ack: Hl7Message): string {
  return encodeMessage(ack);
}
