/**
 * Basic Worklist Management, Modality Worklist Information Model FIND (PS3.4 K): C-FIND
 * on the scheduled procedures the sites' RIS sent (HL7 orders), so that a modality gets
 * its patients and accession numbers and its images arrive already attached to their order.
 */
import { Tags, TransferSyntax, type DicomDataset, type DicomElement, type Tag, type VR } from '../dicom/dataset.ts';
import { keywordOf, tagOfKeyword, vrOf } from '../dicom/dictionary.ts';
import { encodeDataset } from '../dicom/part10-writer.ts';
import { itemContext, stringValues, valueContextOf, type ValueContext } from '../dicom/values.ts';
import { QueryError } from '../index/matching.ts';
import { ScheduledProcedures, worklistMatchingKeywords, type ScheduledProcedure } from '../patients/scheduled-procedures.ts';
import type { DimseMessage } from './association.ts';
import { CommandField, Status } from './command.ts';
import { IdentifierError, readDataset } from './identifier.ts';
import { auditActor, type ServiceContext } from './server.ts';
import { patientRef } from '../access/audit.ts';
import { findResponder } from './query.ts';

const ScheduledProcedureStepSequence: Tag = 0x00400100;
const ScheduledProcedureStepStatus: Tag = 0x00400020;
const PAGE = 500;
const MAX_IDENTIFIER_BYTES = 1024 * 1024;
const matchable = new Set(worklistMatchingKeywords);

interface WorklistQuery {
  /** Top-level keys asked for, with their VR; the step sequence's keys apart. */
  top: Array<{ tag: Tag; vr: VR }>;
  /** Keys of the Scheduled Procedure Step Sequence item, when the sequence was asked for. */
  step?: Array<{ tag: Tag; vr: VR }>;
  matches: Record<string, string>;
  unsupported: boolean;
}

function keysOf(ds: DicomDataset, ctx: ValueContext, into: WorklistQuery, out: Array<{ tag: Tag; vr: VR }>): void {
  for (const el of ds.values()) {
    if (el.tag === Tags.SpecificCharacterSet || (el.tag >>> 16) <= 0x0002) continue;
    const vr = el.vr === 'UN' ? vrOf(el.tag) : el.vr;
    out.push({ tag: el.tag, vr });
    if (vr === 'SQ') continue;
    const keyword = keywordOf(el.tag);
    const value = stringValues({ ...el, vr }, ctx).join('\\');
    if (keyword && matchable.has(keyword)) into.matches[keyword] = value;
    else if (value !== '' && !/^\*+$/.test(value)) into.unsupported = true;
  }
}

/** The keys of a worklist identifier (PS3.4 K.6.1.2). */
export function readWorklistQuery(bytes: Buffer, transferSyntaxUID: string): WorklistQuery {
  const ds = readDataset(bytes, transferSyntaxUID);
  const ctx = valueContextOf(ds, true);
  const q: WorklistQuery = { top: [], matches: {}, unsupported: false };
  keysOf(ds, ctx, q, q.top);
  const sps = ds.get(ScheduledProcedureStepSequence);
  if (sps) {
    q.step = [];
    const item = sps.items?.[0];
    if ((sps.items?.length ?? 0) > 1) throw new IdentifierError('the Scheduled Procedure Step Sequence of a worklist query holds one item at most');
    if (item) keysOf(item, itemContext(item, ctx), q, q.step);
  }
  return q;
}

/** What Atrium knows of a scheduled procedure, by attribute keyword, as text. */
function valuesOf(p: ScheduledProcedure): Record<string, string | undefined> {
  return {
    ...p,
    ScheduledProcedureStepStatus: p.status,
    RequestedProcedureDescription: p.RequestedProcedureDescription,
  } as unknown as Record<string, string | undefined>;
}

function encodeValue(value: string | undefined, vr: VR, utf8: boolean): Buffer {
  if (value === undefined) return Buffer.alloc(0);
  return Buffer.from(value, vr === 'UI' || vr === 'AE' || vr === 'CS' || vr === 'DA' || vr === 'TM' || !utf8 ? 'latin1' : 'utf8');
}

/** One match: the keys asked for, the step sequence with one item, in the best character set. */
export function writeWorklistItem(q: WorklistQuery, p: ScheduledProcedure, transferSyntaxUID: string): Buffer {
  const values = valuesOf(p);
  const all = Object.values(values).filter((v): v is string => typeof v === 'string').join('');
  const charset = /[^\u0000-\u00ff]/.test(all) ? 'ISO_IR 192' : /[^\u0000-\u007f]/.test(all) ? 'ISO_IR 100' : undefined;
  const fill = (keys: Array<{ tag: Tag; vr: VR }>): DicomDataset => {
    const ds: DicomDataset = new Map();
    for (const { tag, vr } of keys) {
      if (vr === 'SQ') {
        ds.set(tag, { tag, vr: 'SQ', items: [] });
        continue;
      }
      const keyword = keywordOf(tag);
      ds.set(tag, { tag, vr, value: encodeValue(keyword ? values[keyword] : undefined, vr, charset === 'ISO_IR 192') } satisfies DicomElement);
    }
    return ds;
  };
  const ds = fill(q.top);
  if (q.step) {
    // An empty item asks for every step attribute Atrium keeps.
    const keys = q.step.length > 0 ? q.step : defaultStepKeys();
    const item = fill(keys);
    if (!item.has(ScheduledProcedureStepStatus) && q.step.length === 0) item.set(ScheduledProcedureStepStatus, { tag: ScheduledProcedureStepStatus, vr: 'CS', value: Buffer.from(p.status, 'latin1') });
    ds.set(ScheduledProcedureStepSequence, { tag: ScheduledProcedureStepSequence, vr: 'SQ', items: [item] });
  }
  if (charset) ds.set(Tags.SpecificCharacterSet, { tag: Tags.SpecificCharacterSet, vr: 'CS', value: Buffer.from(charset, 'latin1') });
  return encodeDataset(ds, true, transferSyntaxUID !== TransferSyntax.ImplicitVRLittleEndian);
}

// At the first worklist query rather than at module load (the dictionary loads at its first use).
let stepKeys: Array<{ tag: Tag; vr: VR }> | undefined;
const defaultStepKeys = (): Array<{ tag: Tag; vr: VR }> => (stepKeys ??= [
  'ScheduledStationAETitle', 'ScheduledProcedureStepStartDate', 'ScheduledProcedureStepStartTime', 'Modality',
  'ScheduledPerformingPhysicianName', 'ScheduledProcedureStepDescription', 'ScheduledStationName', 'ScheduledProcedureStepID',
].map((k) => {
  const tag = tagOfKeyword(k)!;
  return { tag, vr: vrOf(tag) };
}));

export async function handleWorklistFind(ctx: ServiceContext, message: DimseMessage): Promise<void> {
  const pc = ctx.assoc.presentationContext(message.presentationContextId)!;
  const respond = findResponder(ctx, message);
  if (!message.dataset) return respond(Status.IdentifierDoesNotMatchSOPClass, undefined, 'worklist C-FIND-RQ without an identifier');
  let q: WorklistQuery;
  try {
    q = readWorklistQuery(await message.dataset.collect(MAX_IDENTIFIER_BYTES), pc.transferSyntax);
  } catch (e) {
    return respond(Status.IdentifierDoesNotMatchSOPClass, undefined, (e as Error).message);
  }
  const pending = q.unsupported ? Status.PendingWarning : Status.Pending;
  const procedures = new ScheduledProcedures(ctx.archive.index.sql);
  let sent = 0;
  try {
    for (let offset = 0; ; offset += PAGE) {
      // A modality sees the orders of its own site.
      const rows = await procedures.searchWorklist(q.matches, { siteIds: [ctx.peer.site.id], limit: PAGE, offset });
      if (rows.length > 0 || offset === 0) {
        await ctx.server.audit.record({
          action: 'query', outcome: 'success', ...auditActor(ctx),
          patients: rows.map((p) => patientRef(ctx.peer.site.code, p.IssuerOfPatientID, p.PatientID)),
          details: { model: 'worklist', SOPClassUID: pc.abstractSyntax, matches: q.matches, results: rows.length, offset },
        });
      }
      for (const p of rows) {
        if (ctx.cancelled()) return respond(Status.Cancel);
        await respond(pending, writeWorklistItem(q, p, pc.transferSyntax));
        if (++sent % 8 === 0) await new Promise((r) => setImmediate(r));
      }
      if (rows.length < PAGE) break;
    }
  } catch (e) {
    if (e instanceof QueryError) return respond(Status.IdentifierDoesNotMatchSOPClass, undefined, e.message);
    ctx.logger.error({ err: e }, 'worklist C-FIND failed');
    return respond(Status.OutOfResources, undefined, 'the worklist could not be read');
  }
  ctx.logger.debug({ matches: sent }, 'worklist C-FIND answered');
  return respond(Status.Success);
}
