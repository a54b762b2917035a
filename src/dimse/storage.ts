/**
 * Storage service class, SCP side (PS3.4 Annex B): C-STORE. The dataset streams from
 * the association into the ingest pipeline behind a new meta header, so what is stored
 * is the object exactly as the modality encoded it; the response goes out only once the
 * blob is durable and the index committed.
 */
import { Readable } from 'node:stream';
import { part10Header } from '../dicom/part10-writer.ts';
import { statusOfIngestError } from '../archive/ingest-error.ts';
import type { DimseMessage } from './association.ts';
import { CommandField, Status, type Command } from './command.ts';
import { auditActor, type ServiceContext } from './server.ts';
import { recordIdentityConflicts } from '../access/identity-conflicts.ts';

export async function handleStore(ctx: ServiceContext, message: DimseMessage): Promise<void> {
  const rq = message.command;
  const pc = ctx.assoc.presentationContext(message.presentationContextId)!;
  const respond = (status: number, comment?: string) => {
    const rsp: Command = {
      CommandField: CommandField.CStoreRSP,
      MessageIDBeingRespondedTo: rq.MessageID,
      AffectedSOPClassUID: rq.AffectedSOPClassUID,
      AffectedSOPInstanceUID: rq.AffectedSOPInstanceUID,
      Status: status,
      ErrorComment: comment,
      hasDataset: false,
    };
    return ctx.assoc.send(message.presentationContextId, rsp);
  };
  const dataset = message.dataset;
  if (!dataset) return respond(Status.CannotUnderstand, 'C-STORE-RQ without a dataset');
  if (!ctx.peer.may.store) {
    dataset.abandon();
    await dataset.complete;
    return respond(Status.RefusedNotAuthorized, `${ctx.peer.aeTitle} may not store`);
  }
  if (!rq.AffectedSOPClassUID || !rq.AffectedSOPInstanceUID) {
    dataset.abandon();
    await dataset.complete;
    return respond(Status.CannotUnderstand, 'C-STORE-RQ without AffectedSOPClassUID or AffectedSOPInstanceUID');
  }
  const header = part10Header({
    MediaStorageSOPClassUID: rq.AffectedSOPClassUID,
    MediaStorageSOPInstanceUID: rq.AffectedSOPInstanceUID,
    TransferSyntaxUID: pc.transferSyntax,
    SourceApplicationEntityTitle: ctx.peer.aeTitle,
  });
  async function* object(): AsyncGenerator<Buffer> {
    yield header;
    yield* dataset!;
  }
  const result = await ctx.archive.ingestor.ingestInstance(Readable.from(object()), { site: ctx.peer.site, via: 'dimse' });
  // A refused object may have been refused before its last fragment: answer after it.
  await dataset.complete;
  if (result.ok) {
    const tally = ctx.server.stored.get(ctx.assoc) ?? { studies: new Set<string>(), count: 0 };
    tally.studies.add(result.instance.StudyInstanceUID);
    tally.count++;
    ctx.server.stored.set(ctx.assoc, tally);
    ctx.logger.debug({ sop: result.instance.SOPInstanceUID, status: result.instance.status }, 'C-STORE stored');
    return respond(Status.Success);
  }
  ctx.logger.info({ sop: rq.AffectedSOPInstanceUID, code: result.error.code }, 'C-STORE refused');
  // Identitovigilance learns what the sender is not told; the answer waits for the record.
  if (result.error.conflict) {
    await recordIdentityConflicts(ctx.server.audit, ctx.archive.index, ctx.archive.siteById, auditActor(ctx), [result.error.conflict])
      .catch((e: unknown) => ctx.logger.error({ err: e, sop: rq.AffectedSOPInstanceUID }, 'audit of a refused store failed'));
  }
  return respond(statusOfIngestError(result.error.code), result.error.message);
}
