/**
 * Storage Commitment Push Model, SCP side (PS3.4 Annex J): the peer asks whether Atrium
 * holds objects; Atrium answers N-ACTION at once, then N-EVENT-REPORT on the same
 * association, committing only to objects whose index row and blob are both there, since
 * an object is indexed only once its blob is durable.
 */
import { Tags, type DicomDataset, type Tag } from '../dicom/dataset.ts';
import { encodeDataset } from '../dicom/part10-writer.ts';
import { stringValue, valueContextOf } from '../dicom/values.ts';
import { TransferSyntax } from '../dicom/dataset.ts';
import { Association, AssociationAbortedError, type DimseMessage } from './association.ts';
import { CommandField, Status, type Command } from './command.ts';
import { readDataset } from './identifier.ts';
import { SOPClass, StorageCommitmentPushModelInstance } from './sop-classes.ts';
import type { ServiceContext } from './server.ts';
import { reasonToSee } from '../access/policy.ts';

const TransactionUID: Tag = 0x00081195;
/** FailureReason values (PS3.4 J.3.2.1.3.1). */
export const CommitmentFailureReason = {
  ProcessingFailure: 0x0110,
  NoSuchObjectInstance: 0x0112,
  ClassInstanceConflict: 0x0119,
} as const;
const EventType = { AllCommitted: 1, SomeFailed: 2 } as const;

interface Reference {
  SOPClassUID: string;
  SOPInstanceUID: string;
  failure?: number;
}

export async function handleStorageCommitment(ctx: ServiceContext, message: DimseMessage): Promise<void> {
  const rq = message.command;
  const pc = ctx.assoc.presentationContext(message.presentationContextId)!;
  const respond = (status: number, comment?: string) => ctx.assoc.send(message.presentationContextId, {
    CommandField: CommandField.NActionRSP,
    MessageIDBeingRespondedTo: rq.MessageID,
    AffectedSOPClassUID: rq.RequestedSOPClassUID,
    AffectedSOPInstanceUID: rq.RequestedSOPInstanceUID,
    ActionTypeID: rq.ActionTypeID,
    Status: status,
    ErrorComment: comment,
    hasDataset: false,
  });
  if (pc.abstractSyntax !== SOPClass.StorageCommitmentPushModel || rq.RequestedSOPClassUID !== SOPClass.StorageCommitmentPushModel) {
    message.dataset?.abandon();
    return respond(Status.NoSuchSOPClass, 'N-ACTION is served for Storage Commitment Push Model only');
  }
  if (rq.RequestedSOPInstanceUID !== StorageCommitmentPushModelInstance) {
    message.dataset?.abandon();
    return respond(Status.NoSuchSOPInstance, `the Storage Commitment SOP instance is ${StorageCommitmentPushModelInstance}`);
  }
  if (rq.ActionTypeID !== 1) {
    message.dataset?.abandon();
    return respond(Status.NoSuchActionType, 'the only action type is 1 (request storage commitment)');
  }
  if (!message.dataset) return respond(Status.MistypedArgument, 'N-ACTION without its dataset');
  let transactionUID: string | undefined;
  const refs: Reference[] = [];
  try {
    const ds = readDataset(await message.dataset.collect(16 * 1024 * 1024), pc.transferSyntax);
    const c = valueContextOf(ds, true);
    transactionUID = stringValue(ds, TransactionUID, c);
    for (const item of ds.get(Tags.ReferencedSOPSequence)?.items ?? []) {
      const SOPClassUID = stringValue(item, Tags.ReferencedSOPClassUID, c);
      const SOPInstanceUID = stringValue(item, Tags.ReferencedSOPInstanceUID, c);
      if (!SOPClassUID || !SOPInstanceUID) throw new Error('a ReferencedSOPSequence item lacks ReferencedSOPClassUID or ReferencedSOPInstanceUID');
      refs.push({ SOPClassUID, SOPInstanceUID });
    }
  } catch (e) {
    return respond(Status.MistypedArgument, (e as Error).message);
  }
  if (!transactionUID) return respond(Status.MistypedArgument, 'TransactionUID (0008,1195) is missing');
  if (refs.length === 0) return respond(Status.MistypedArgument, 'ReferencedSOPSequence (0008,1199) is empty');

  await respond(Status.Success);

  // An object of a study the peer may not see is, to it, not there: the answer tells nothing of it.
  const visible = new Map<string, boolean>();
  const mayAnswerFor = async (StudyInstanceUID: string) => {
    let ok = visible.get(StudyInstanceUID);
    if (ok === undefined) {
      const study = await ctx.archive.index.studyPatient(StudyInstanceUID);
      ok = study !== undefined && reasonToSee(ctx.peer.scope, study) !== undefined;
      visible.set(StudyInstanceUID, ok);
    }
    return ok;
  };
  for (const ref of refs) {
    try {
      const found = await ctx.archive.index.findInstanceBySOPInstanceUID(ref.SOPInstanceUID);
      if (!found || !(await mayAnswerFor(found.StudyInstanceUID))) ref.failure = CommitmentFailureReason.NoSuchObjectInstance;
      else if (found.SOPClassUID !== ref.SOPClassUID) ref.failure = CommitmentFailureReason.ClassInstanceConflict;
      else if ((await ctx.archive.store.stat(found.blobKey))?.size !== found.size) ref.failure = CommitmentFailureReason.ProcessingFailure;
    } catch {
      ref.failure = CommitmentFailureReason.ProcessingFailure;
    }
  }
  const committed = refs.filter((r) => r.failure === undefined);
  const failed = refs.filter((r) => r.failure !== undefined);
  const explicit = pc.transferSyntax !== TransferSyntax.ImplicitVRLittleEndian;
  const report: DicomDataset = new Map();
  const text = (s: string) => Buffer.from(s, 'latin1');
  const item = (r: Reference): DicomDataset => {
    const it: DicomDataset = new Map();
    it.set(Tags.ReferencedSOPClassUID, { tag: Tags.ReferencedSOPClassUID, vr: 'UI', value: text(r.SOPClassUID) });
    it.set(Tags.ReferencedSOPInstanceUID, { tag: Tags.ReferencedSOPInstanceUID, vr: 'UI', value: text(r.SOPInstanceUID) });
    if (r.failure !== undefined) {
      const v = Buffer.alloc(2);
      v.writeUInt16LE(r.failure, 0);
      it.set(Tags.FailureReason, { tag: Tags.FailureReason, vr: 'US', value: v });
    }
    return it;
  };
  report.set(TransactionUID, { tag: TransactionUID, vr: 'UI', value: text(transactionUID) });
  if (committed.length > 0) report.set(Tags.ReferencedSOPSequence, { tag: Tags.ReferencedSOPSequence, vr: 'SQ', items: committed.map(item) });
  if (failed.length > 0) report.set(Tags.FailedSOPSequence, { tag: Tags.FailedSOPSequence, vr: 'SQ', items: failed.map(item) });
  ctx.logger.info({ transactionUID, committed: committed.length, failed: failed.length }, 'storage commitment');
  const report_ = encodeDataset(report, true, explicit);
  const command = {
    CommandField: CommandField.NEventReportRQ,
    AffectedSOPClassUID: SOPClass.StorageCommitmentPushModel,
    AffectedSOPInstanceUID: StorageCommitmentPushModelInstance,
    EventTypeID: failed.length === 0 ? EventType.AllCommitted : EventType.SomeFailed,
  };
  let status: number | undefined;
  if (ctx.assoc.established) {
    try {
      status = (await ctx.assoc.request(message.presentationContextId, command, report_)).command.Status;
    } catch (e) {
      if (!(e instanceof AssociationAbortedError)) throw e;
    }
  }
  if (status === undefined) {
    // The requester released its association first: the report goes on a new one, where
    // Atrium takes the SCP role of the commitment class (PS3.4 J.3.3, PS3.7 D.3.3.4).
    status = await reportOnNewAssociation(ctx, command, report_, explicit);
  }
  if (status !== Status.Success) ctx.logger.warn({ transactionUID, status }, 'the peer did not accept the storage commitment report');
}

async function reportOnNewAssociation(ctx: ServiceContext, command: Omit<Command, 'hasDataset' | 'MessageID'>, report: Buffer, explicit: boolean): Promise<number | undefined> {
  const peer = ctx.peer.config;
  if (!peer?.host || !peer.port) {
    ctx.logger.warn({ peer: ctx.peer.aeTitle }, 'storage commitment report undelivered: the requester left and has no address');
    return undefined;
  }
  const ts = explicit ? TransferSyntax.ExplicitVRLittleEndian : TransferSyntax.ImplicitVRLittleEndian;
  let assoc: Association;
  try {
    assoc = await Association.connect({
      host: peer.host, port: peer.port, tls: peer.tls ? ctx.server.clientTls : undefined, callingAETitle: ctx.server.aeTitle, calledAETitle: peer.aeTitle,
      presentationContexts: [{ id: 1, abstractSyntax: SOPClass.StorageCommitmentPushModel, transferSyntaxes: [ts, TransferSyntax.ImplicitVRLittleEndian] }],
      roles: [{ sopClassUID: SOPClass.StorageCommitmentPushModel, scuRole: false, scpRole: true }],
      maxPduLength: ctx.server.config.maxPduLength, idleTimeoutMs: 60_000,
    });
  } catch (e) {
    ctx.logger.warn({ peer: peer.aeTitle, err: (e as Error).message }, 'storage commitment report undelivered: cannot reach the requester');
    return undefined;
  }
  try {
    const pc = assoc.contextsFor(SOPClass.StorageCommitmentPushModel)[0];
    if (!pc) return undefined;
    const body = pc.transferSyntax === ts ? report : encodeDataset(readDataset(report, ts), true, pc.transferSyntax !== TransferSyntax.ImplicitVRLittleEndian);
    return (await assoc.request(pc.id, command, body)).command.Status;
  } finally {
    await assoc.release().catch(() => {});
  }
}
