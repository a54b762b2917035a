/**
 * One HL7 message in, one acknowledgment out: reads MSH (character set, delimiters,
 * version, sender, message type), applies the message in one index transaction, and
 * answers AA, AE or AR (original acknowledgment mode).
 */
import type { Logger } from 'pino';
import type { Hl7Config, Hl7Sender, TeleradiologyConfig } from '../config/config.ts';
import type { Archive } from '../archive/archive.ts';
import {
  buildAcknowledgment, encodeAcknowledgment, Hl7Error, Hl7ErrorCode,
  type AcknowledgedHeader, type AcknowledgmentCode,
} from './acknowledgment.ts';
import { declaredCharacterSet, decodeText, encodeText, isSupportedCharacterSet, type Hl7CharacterSet } from './character-sets.ts';
import { Hl7SyntaxError, findSegment, parseMessage, valueOf, type Hl7Message } from './message.ts';
import { AuditTrail, patientRef } from '../access/audit.ts';
import { applyOrderMessage } from './order-messages.ts';
import { applyPatientMessage, patientTriggers, type MessageContext } from './patient-messages.ts';
import { migrateRedundancy } from '../workflow/redundancy.ts';
import { applyDocumentMessage, documentTriggers } from './document-messages.ts';
import { StudyDocuments } from '../exchange/study-documents.ts';
import { isTeleradiologyVolet, TeleradiologyVoletReceiver } from './teleradiology-volet.ts';

/** Message types and trigger events served, by MSH-9.1. */
const supported: Record<string, readonly string[]> = {
  ADT: patientTriggers,
  ORM: ['O01'],
  OMI: ['O23'],
  ...documentTriggers,
};

/** MSH-12 versions accepted: 2.3 to 2.8 (the fields read here did not move across them). */
const versionPattern = /^2\.[3-8](\.\d+)?$/;

export interface ReceivedMessage {
  acknowledgment: Buffer;
  code: AcknowledgmentCode;
}

export class Hl7Receiver {
  constructor(
    private readonly config: Hl7Config,
    private readonly archive: Archive,
    private readonly logger: Logger,
    teleradiology?: TeleradiologyConfig,
    /** radiation.redundancyWindowDays: the windows of the redundant-exam alert on orders. */
    private readonly redundancyWindowDays?: Readonly<Record<string, number>>,
  ) {
    this.audit = new AuditTrail(archive.index.sql);
    this.documents = new StudyDocuments(archive, {}, logger);
    if (teleradiology) this.volet = new TeleradiologyVoletReceiver(archive, teleradiology);
  }

  private readonly audit: AuditTrail;
  /** Reports the sites' RIS send (ORU^R01, MDM^T02/T10 with a CR-IMG or a PDF): study documents for the DMP. */
  private readonly documents: StudyDocuments;
  /** Requests of the CI-SIS teleradiology volet (MSH-21), when teleradiology is served. */
  private readonly volet: TeleradiologyVoletReceiver | undefined;

  async receive(bytes: Buffer): Promise<ReceivedMessage> {
    const header = headerOf(bytes);
    let charset: Hl7CharacterSet = this.config.defaultCharacterSet;
    try {
      const declared = declaredCharacterSet(bytes);
      if (declared !== '') {
        if (!isSupportedCharacterSet(declared)) {
          throw new Hl7Error('AR', Hl7ErrorCode.tableValueNotFound, `MSH-18 character set ${JSON.stringify(declared)} is not supported (ASCII, 8859/1, 8859/15, UNICODE UTF-8)`, { segment: 'MSH', field: 18 });
        }
        charset = declared;
      }
      let message: Hl7Message;
      try {
        message = parseMessage(decodeText(bytes, charset));
      } catch (e) {
        if (!(e instanceof Hl7SyntaxError)) throw e;
        throw new Hl7Error('AR', bytes.subarray(0, 3).toString('latin1') === 'MSH' ? Hl7ErrorCode.dataTypeError : Hl7ErrorCode.segmentSequenceError, e.message, { segment: 'MSH', field: 2 });
      }
      const warnings = await this.apply(message, header);
      this.logger.info({ type: header.messageType, controlId: header.messageControlId, sender: header.sendingApplication, warnings: warnings.length }, 'hl7 message applied');
      return this.answer(header, 'AA', charset, undefined, warnings);
    } catch (e) {
      if (e instanceof Hl7Error) {
        this.logger.info({ type: header.messageType, controlId: header.messageControlId, sender: header.sendingApplication, ack: e.acknowledgment, code: e.code }, 'hl7 message refused');
        return this.answer(header, e.acknowledgment, charset, e);
      }
      this.logger.error({ err: e, type: header.messageType, controlId: header.messageControlId }, 'hl7 message failed');
      return this.answer(header, 'AR', charset, new Hl7Error('AR', Hl7ErrorCode.applicationInternalError, 'Atrium could not apply the message (internal error); send it again later'));
    }
  }

  /**
   * Whether a frame's first segment names a configured sender in MSH-3 and MSH-4 (their
   * first components as received): only then is the rest of the frame read. The full
   * check of `receive` still applies to the whole message.
   */
  admitsSender(firstSegment: Buffer): boolean {
    const msh = readableMsh(firstSegment);
    if (msh === undefined) return false;
    const f = msh.split(msh.charAt(3));
    const component = f[1]?.charAt(0) || '^';
    const first = (n: number) => (f[n - 1] ?? '').split(component)[0] ?? '';
    return this.findSender(first(3), first(4)) !== undefined;
  }

  /** The AR answering a frame refused on its first segment, or undefined when that is no readable MSH. */
  refuseSender(firstSegment: Buffer): Buffer | undefined {
    if (readableMsh(firstSegment) === undefined) return undefined;
    const header = headerOf(firstSegment);
    const declared = declaredCharacterSet(firstSegment);
    const charset = isSupportedCharacterSet(declared) ? declared : this.config.defaultCharacterSet;
    this.logger.info({ type: header.messageType, controlId: header.messageControlId, sender: `${header.sendingApplication}@${header.sendingFacility}` }, 'hl7 message refused: unknown sender');
    return this.answer(header, 'AR', charset, new Hl7Error('AR', Hl7ErrorCode.unknownKeyIdentifier,
      `sending application ${JSON.stringify(header.sendingApplication)} of facility ${JSON.stringify(header.sendingFacility)} (MSH-3, MSH-4) is not a configured HL7 sender (hl7.senders)`, { segment: 'MSH', field: 3 })).acknowledgment;
  }

  private answer(header: AcknowledgedHeader, code: AcknowledgmentCode, charset: Hl7CharacterSet, error?: Hl7Error, warnings: readonly string[] = []): ReceivedMessage {
    // MSH-18 of the answer names the set it is written in (empty for the default, as received).
    const ack = buildAcknowledgment({ ...header, characterSet: header.characterSet === charset ? charset : '' }, code, error, warnings);
    return { acknowledgment: encodeText(encodeAcknowledgment(ack), charset), code };
  }

  private findSender(application: string, facility: string): Hl7Sender | undefined {
    return this.config.senders.find((s) => s.application === application && s.facility === facility);
  }

  /** Applies the message; answers what its acknowledgment warns of. */
  private async apply(message: Hl7Message, header: AcknowledgedHeader & { messageType: string }): Promise<string[]> {
    const msh = message.segments[0]!;
    if (valueOf(msh, 10) === '') throw new Hl7Error('AR', Hl7ErrorCode.requiredFieldMissing, 'MSH-10 (message control ID) is required', { segment: 'MSH', field: 10 });
    const version = valueOf(msh, 12);
    if (!versionPattern.test(version)) {
      throw new Hl7Error('AR', Hl7ErrorCode.unsupportedVersionId, `MSH-12 version ${JSON.stringify(version)} is not supported (2.3 to 2.8; Atrium speaks 2.5)`, { segment: 'MSH', field: 12 });
    }
    const processing = valueOf(msh, 11);
    if (!['P', 'T', 'D'].includes(processing)) {
      throw new Hl7Error('AR', Hl7ErrorCode.unsupportedProcessingId, `MSH-11 processing ID ${JSON.stringify(processing)} is not P, T or D`, { segment: 'MSH', field: 11 });
    }
    const application = valueOf(msh, 3), facility = valueOf(msh, 4);
    const sender = this.findSender(application, facility);
    if (!sender) {
      throw new Hl7Error('AR', Hl7ErrorCode.unknownKeyIdentifier, `sending application ${JSON.stringify(application)} of facility ${JSON.stringify(facility)} (MSH-3, MSH-4) is not a configured HL7 sender (hl7.senders)`, { segment: 'MSH', field: 3 });
    }
    const site = this.archive.sites.get(sender.site);
    if (!site) throw new Error(`HL7 sender's site ${sender.site} is not open`);
    const type = valueOf(msh, 9, 1), trigger = valueOf(msh, 9, 2);
    const triggers = Object.hasOwn(supported, type) ? supported[type] : undefined;
    if (!triggers) {
      throw new Hl7Error('AR', Hl7ErrorCode.unsupportedMessageType, `message type ${JSON.stringify(type)} is not supported (ADT, ORM, OMI, ORU, MDM)`, { segment: 'MSH', field: 9, component: 1 });
    }
    if (!triggers.includes(trigger)) {
      throw new Hl7Error('AR', Hl7ErrorCode.unsupportedEventCode, `${type}^${trigger} is not supported (${type} ${triggers.join(', ')})`, { segment: 'MSH', field: 9, component: 2 });
    }
    const ctx: MessageContext = {
      site,
      messageControlId: valueOf(msh, 10),
      ...(sender.stationAETitle ? { stationAETitle: sender.stationAETitle } : {}),
      warnings: [],
      ...(this.redundancyWindowDays ? { redundancyWindowDays: this.redundancyWindowDays } : {}),
    };
    if (isTeleradiologyVolet(msh)) {
      if (!this.volet) throw new Hl7Error('AR', Hl7ErrorCode.unsupportedMessageType, 'this Atrium does not serve the CI-SIS teleradiology volet (MSH-21)', { segment: 'MSH', field: 21 });
      // The volet runs the teleradiology workflow's own transactions; its steps are audited there.
      await this.volet.apply(message, { site, sender, messageControlId: ctx.messageControlId });
      return [];
    }
    if (Object.hasOwn(documentTriggers, type)) {
      // The documents module runs its own transactions (the report, then its study's manifest).
      const done = await applyDocumentMessage(this.archive, this.documents, message, ctx);
      await this.audit.record({
        action: 'store', outcome: 'success', actor: `${application}@${facility}`, actorKind: 'hl7-sender', site: site.code, via: 'hl7',
        StudyInstanceUID: done.StudyInstanceUID, patients: [patientRef(site.code, done.IssuerOfPatientID, done.PatientID)],
        details: { message: `${type}^${trigger}`, controlId: ctx.messageControlId, document: done.document.id, kind: done.document.kind, version: done.document.version },
      });
      return [];
    }
    // An order may raise a redundant-exam alert, recorded in the message's transaction.
    if (type !== 'ADT') await migrateRedundancy(this.archive.index.sql);
    await this.archive.index.sql.transaction(async (tx) => {
      ctx.warnings = [];
      if (type === 'ADT') await applyPatientMessage(tx, message, trigger, ctx);
      else await applyOrderMessage(tx, message, ctx);
      // In the message's transaction: the change and its trace land together or not at all.
      const pid = findSegment(message, 'PID');
      const patientID = pid ? valueOf(pid, 3, 1) : '';
      await this.audit.record({
        action: type !== 'ADT' ? 'order' : trigger === 'A40' ? 'merge' : 'identity-change',
        outcome: 'success', actor: `${application}@${facility}`, actorKind: 'hl7-sender', site: site.code, via: 'hl7',
        patients: patientID ? [patientRef(site.code, site.issuerOfPatientID, patientID)] : [],
        details: { message: `${type}^${trigger}`, controlId: ctx.messageControlId },
      }, tx);
    });
    return ctx.warnings ?? [];
  }
}

/** The text of a first segment that is an MSH with a usable field separator, without its terminator. */
function readableMsh(firstSegment: Buffer): string | undefined {
  const line = firstSegment.toString('latin1').split(/\r|\n/, 1)[0] ?? '';
  return /^MSH[^A-Za-z0-9 ]/.test(line) ? line : undefined;
}

/** What can be read of MSH before anything is validated, for the acknowledgment to echo. */
function headerOf(bytes: Buffer): AcknowledgedHeader & { messageType: string } {
  const msh = bytes.subarray(0, Math.min(bytes.length, 4096)).toString('latin1').split(/\r|\n/, 1)[0] ?? '';
  const sep = msh.startsWith('MSH') && msh.length > 3 ? msh.charAt(3) : '|';
  const f = msh.split(sep);
  const component = f[1]?.charAt(0) || '^';
  // f[n - 1] is MSH-n (MSH-1 is the separator itself).
  const field = (n: number) => f[n - 1] ?? '';
  const first = (n: number) => field(n).split(component)[0] ?? '';
  const clean = (v: string) => v.replace(/[^\x20-\x7e]/g, '').slice(0, 199);
  return {
    sendingApplication: clean(first(3)),
    sendingFacility: clean(first(4)),
    receivingApplication: clean(first(5)),
    receivingFacility: clean(first(6)),
    messageControlId: clean(field(10)),
    triggerEvent: clean(field(9).split(component)[1] ?? ''),
    messageType: clean(field(9).split(component).slice(0, 2).join('^')),
    processingId: clean(first(11)),
    version: clean(first(12)),
    characterSet: clean(field(18).split(f[1]?.charAt(1) || '~')[0] ?? ''),
  };
}
