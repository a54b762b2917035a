/**
 * Query/Retrieve information models, MOVE and GET (PS3.4 C.4.2, C.4.3): the objects an
 * identifier names are sent as C-STORE sub-operations, to a known peer over a new
 * association (C-MOVE) or back on the caller's own association (C-GET), with a pending
 * response after each one and the failed instances listed at the end.
 */
import type { StoredInstance } from '../index/records.ts';
import type { DimseMessage, Association } from './association.ts';
import { AssociationAbortedError, AssociationRejectedError } from './association.ts';
import { CommandField, Status, type Command } from './command.ts';
import { FailedSOPInstanceUIDList, IdentifierError, readIdentifier, uidList, writeDataset, type Identifier } from './identifier.ts';
import { contextFor, isStored, openStoreAssociation, retrievePlan, storeAll } from './scu.ts';
import { informationModelOf } from './sop-classes.ts';
import { auditActor, type ServiceContext } from './server.ts';
import { patientRefOf, patientRefsOfStudies } from '../access/audit.ts';
import { reasonToSee } from '../access/policy.ts';

const MAX_IDENTIFIER_BYTES = 1024 * 1024;

/** The stored objects an identifier names, in study/series/instance order, without duplicates. */
export async function instancesOf(ctx: ServiceContext, id: Identifier): Promise<StoredInstance[]> {
  const index = ctx.archive.index;
  const out: StoredInstance[] = [];
  const seen = new Set<string>();
  const add = (list: StoredInstance[]) => {
    for (const i of list) if (!seen.has(i.SOPInstanceUID)) {
      seen.add(i.SOPInstanceUID);
      out.push(i);
    }
  };
  const studiesOfSeries = async (series: string) => (await index.searchSeries({ level: 'series', matches: { SeriesInstanceUID: series }, fuzzymatching: false, limit: 10, offset: 0 })).map((r) => r.study.StudyInstanceUID);
  switch (id.level) {
    case 'PATIENT': {
      const ids = uidList(id, 'PatientID');
      if (ids.length === 0) throw new IdentifierError('a PATIENT-level retrieve needs PatientID');
      for (const PatientID of ids) {
        const studies = await index.searchStudies({ level: 'study', matches: { PatientID }, fuzzymatching: false, limit: 100_000, offset: 0 });
        for (const s of studies) add(await index.getStoredInstances({ StudyInstanceUID: s.study.StudyInstanceUID }));
      }
      break;
    }
    case 'STUDY': {
      const studies = uidList(id, 'StudyInstanceUID');
      if (studies.length === 0) throw new IdentifierError('a STUDY-level retrieve needs StudyInstanceUID');
      for (const StudyInstanceUID of studies) add(await index.getStoredInstances({ StudyInstanceUID }));
      break;
    }
    case 'SERIES': {
      const series = uidList(id, 'SeriesInstanceUID');
      if (series.length === 0) throw new IdentifierError('a SERIES-level retrieve needs SeriesInstanceUID');
      const study = uidList(id, 'StudyInstanceUID')[0];
      for (const SeriesInstanceUID of series) {
        for (const StudyInstanceUID of study ? [study] : await studiesOfSeries(SeriesInstanceUID)) {
          add(await index.getStoredInstances({ StudyInstanceUID, SeriesInstanceUID }));
        }
      }
      break;
    }
    case 'IMAGE': {
      const sops = uidList(id, 'SOPInstanceUID');
      if (sops.length === 0) throw new IdentifierError('an IMAGE-level retrieve needs SOPInstanceUID');
      for (const sop of sops) {
        const found = await index.findInstanceBySOPInstanceUID(sop);
        if (found) add([found]);
      }
      break;
    }
  }
  return out;
}

/** The instances whose study the peer's scope lets it see (the access decision, once per study). */
async function visibleTo(ctx: ServiceContext, instances: StoredInstance[]): Promise<{ instances: StoredInstance[]; refusedStudies: string[]; refusedPatients: string[] }> {
  const seen = new Map<string, boolean>();
  const refusedPatients: string[] = [];
  for (const uid of new Set(instances.map((i) => i.StudyInstanceUID))) {
    const study = await ctx.archive.index.studyPatient(uid);
    const ok = study !== undefined && reasonToSee(ctx.peer.scope, study) !== undefined;
    seen.set(uid, ok);
    if (!ok && study) refusedPatients.push(patientRefOf(ctx.archive.siteById, study));
  }
  return {
    instances: instances.filter((i) => seen.get(i.StudyInstanceUID)),
    refusedStudies: [...seen].filter(([, ok]) => !ok).map(([uid]) => uid),
    refusedPatients,
  };
}

export async function handleRetrieve(ctx: ServiceContext, message: DimseMessage): Promise<void> {
  const rq = message.command;
  const isMove = rq.CommandField === CommandField.CMoveRQ;
  const pc = ctx.assoc.presentationContext(message.presentationContextId)!;
  const counts = { remaining: 0, completed: 0, failed: 0, warning: 0 };
  const failedUIDs: string[] = [];
  const respond = (status: number, comment?: string, dataset?: Buffer) => {
    const final = status !== Status.Pending;
    const rsp: Command = {
      CommandField: isMove ? CommandField.CMoveRSP : CommandField.CGetRSP,
      MessageIDBeingRespondedTo: rq.MessageID,
      AffectedSOPClassUID: rq.AffectedSOPClassUID,
      Status: status,
      ErrorComment: comment,
      // Remaining is absent from the final response; the others are given once sub-operations started.
      NumberOfRemainingSuboperations: final ? undefined : counts.remaining,
      NumberOfCompletedSuboperations: counts.completed,
      NumberOfFailedSuboperations: counts.failed,
      NumberOfWarningSuboperations: counts.warning,
      hasDataset: dataset !== undefined,
    };
    return ctx.assoc.send(message.presentationContextId, rsp, dataset);
  };
  const refuse = (status: number, comment: string) => ctx.assoc.send(message.presentationContextId, {
    CommandField: isMove ? CommandField.CMoveRSP : CommandField.CGetRSP,
    MessageIDBeingRespondedTo: rq.MessageID,
    AffectedSOPClassUID: rq.AffectedSOPClassUID,
    Status: status,
    ErrorComment: comment,
    hasDataset: false,
  });

  if (!message.dataset) return refuse(Status.IdentifierDoesNotMatchSOPClass, 'retrieve request without an identifier');
  const model = informationModelOf(pc.abstractSyntax);
  let id: Identifier;
  try {
    id = readIdentifier(await message.dataset.collect(MAX_IDENTIFIER_BYTES), pc.transferSyntax);
    if (model === 'study' && id.level === 'PATIENT') throw new IdentifierError('the study root model has no PATIENT level');
  } catch (e) {
    return refuse(Status.IdentifierDoesNotMatchSOPClass, (e as Error).message);
  }

  let instances: StoredInstance[];
  try {
    instances = await instancesOf(ctx, id);
  } catch (e) {
    if (e instanceof IdentifierError) return refuse(Status.IdentifierDoesNotMatchSOPClass, e.message);
    ctx.logger.error({ err: e }, 'retrieve: index lookup failed');
    return refuse(Status.OutOfResourcesMatches, 'the index could not answer');
  }

  // What the peer may not see is left out as if it were not stored; the attempt is recorded.
  const visible = await visibleTo(ctx, instances);
  if (visible.refusedStudies.length > 0) {
    await ctx.server.audit.record({
      action: 'download', outcome: 'refused', ...auditActor(ctx), patients: visible.refusedPatients,
      details: { operation: isMove ? 'C-MOVE' : 'C-GET', studies: visible.refusedStudies },
    });
  }
  instances = visible.instances;

  ctx.logger.debug({ level: id.level, instances: instances.length, destination: rq.MoveDestination }, isMove ? 'C-MOVE' : 'C-GET');
  // Recorded before anything is sent (and only for a retrieve that will send): no access without its trace.
  const recordAccess = async () => {
    const studies = [...new Set(instances.map((i) => i.StudyInstanceUID))];
    const patients = await patientRefsOfStudies(ctx.archive.index, ctx.archive.siteById, studies);
    if (instances.length > 0) {
      await ctx.server.audit.record({
        action: 'download', outcome: 'success', ...auditActor(ctx), patients, ...(studies.length === 1 ? { StudyInstanceUID: studies[0] } : {}),
        details: { operation: isMove ? 'C-MOVE' : 'C-GET', destination: isMove ? rq.MoveDestination : ctx.peer.aeTitle, studies, instances: instances.length },
      });
    }
  };
  // Where the sub-operations go.
  let target: Association;
  let ownAssociation = false;
  if (isMove) {
    const destination = rq.MoveDestination ?? '';
    const peer = await ctx.server.peers.find(destination);
    if (!peer || !peer.host || !peer.port) {
      return refuse(Status.MoveDestinationUnknown, `move destination ${JSON.stringify(destination)} is not a known peer with an address`);
    }
    if (instances.length === 0) return respond(Status.Success);
    await recordAccess();
    try {
      target = await openStoreAssociation({ peer, callingAETitle: ctx.server.aeTitle, instances, maxPduLength: ctx.server.config.maxPduLength, tls: ctx.server.clientTls });
      ownAssociation = true;
      ctx.logger.debug({ destination, contexts: target.acceptedContexts().length }, 'C-MOVE destination association open');
    } catch (e) {
      const why = e instanceof AssociationRejectedError ? `${destination} refused the association` : `cannot reach ${destination}: ${(e as Error).message}`;
      ctx.logger.warn({ destination, err: (e as Error).message }, 'C-MOVE destination unreachable');
      counts.failed = instances.length;
      failedUIDs.push(...instances.map((i) => i.SOPInstanceUID));
      return respond(Status.OutOfResourcesSubOperations, why, failedList());
    }
  } else {
    target = ctx.assoc;
    await recordAccess();
  }

  function failedList(): Buffer | undefined {
    if (failedUIDs.length === 0) return undefined;
    return writeDataset([{ tag: FailedSOPInstanceUIDList, vr: 'UI', values: failedUIDs }], pc.transferSyntax);
  }

  counts.remaining = instances.length;
  const contexts = instances.map(() => undefined as ReturnType<typeof contextFor>);
  const sendable = instances.filter((inst, i) => {
    const pcFor = contextFor(isMove ? target.acceptedContexts() : roleContexts(ctx.assoc), inst);
    contexts[i] = pcFor;
    if (!pcFor) {
      counts.remaining--;
      counts.failed++;
      failedUIDs.push(inst.SOPInstanceUID);
    }
    return pcFor !== undefined;
  });
  const pcOf = new Map(instances.map((inst, i) => [inst.SOPInstanceUID, contexts[i]]));
  let cancelled = false;
  let lost: Error | undefined;
  const done = new Set<string>();
  const plan = retrievePlan(sendable.map((inst) => ({ inst })), (inst) => pcOf.get(inst.SOPInstanceUID)!);
  try {
    await storeAll(target, ctx.archive.retriever, ctx.archive.retriever.openInstances(plan, true), (inst) => pcOf.get(inst.SOPInstanceUID)!, async (inst, r) => {
      counts.remaining--;
      done.add(r.sop);
      if (r.status === Status.Success) counts.completed++;
      else if (isStored(r.status)) counts.warning++;
      else {
        counts.failed++;
        failedUIDs.push(r.sop);
        ctx.logger.info({ sop: r.sop, status: r.status.toString(16), error: r.error }, 'C-STORE sub-operation refused');
      }
      if (counts.remaining > 0) await respond(Status.Pending);
    }, {
      moveOriginator: isMove ? { aeTitle: ctx.peer.aeTitle, messageId: rq.MessageID ?? 0 } : undefined,
      shouldStop: () => (cancelled ||= ctx.cancelled()),
    });
  } catch (e) {
    if (!(e instanceof AssociationAbortedError)) throw e;
    lost = e;
  }
  if (ownAssociation && !lost) await target.release().catch(() => {});
  if (lost) {
    // The destination went away: what was not sent failed. On C-GET, the caller itself is gone.
    if (!isMove) return;
    ctx.logger.warn({ destination: rq.MoveDestination, err: lost.message }, 'C-MOVE destination lost');
    const notSent = sendable.filter((i) => !done.has(i.SOPInstanceUID));
    counts.failed += notSent.length;
    failedUIDs.push(...notSent.map((i) => i.SOPInstanceUID));
    counts.remaining = 0;
  }
  if (cancelled) return respond(Status.Cancel, undefined, failedList());
  if (counts.failed === 0 && counts.warning === 0) return respond(Status.Success);
  if (counts.completed === 0 && counts.warning === 0) return respond(Status.OutOfResourcesSubOperations, lost ? `the destination was lost: ${lost.message}` : 'no sub-operation succeeded', failedList());
  return respond(Status.SubOperationsCompleteWithFailures, lost ? `the destination was lost: ${lost.message}` : undefined, failedList());
}

/** C-GET: storage contexts of the caller's association for which it accepted that we act as SCP. */
function roleContexts(assoc: Association) {
  const scp = new Set(assoc.roles.filter((r) => r.scpRole).map((r) => r.sopClassUID));
  return assoc.acceptedContexts().filter((pc) => scp.has(pc.abstractSyntax));
}
