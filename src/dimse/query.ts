/**
 * Query/Retrieve information models, FIND (PS3.4 C.4.1): C-FIND at the patient, study,
 * series and image levels of the patient-root and study-root models, with the matching
 * rules QIDO-RS uses (index/matching.ts). Matches are read from the index a page at a
 * time and sent as they come; C-CANCEL stops them between two matches.
 */
import { QueryError } from '../index/archive-index.ts';
import type { QueryLevel, SearchQuery } from '../index/records.ts';
import { matchableKeywords } from '../index/matching.ts';
import { studyJson, seriesJson, instanceJson } from '../dicomweb/qido.ts';
import type { DicomJsonDataset } from '../dicom/json.ts';
import type { DimseMessage } from './association.ts';
import { CommandField, Status } from './command.ts';
import { IdentifierError, readIdentifier, writeMatch, type Identifier, type QRLevel } from './identifier.ts';
import { informationModelOf } from './sop-classes.ts';
import { personMatches } from '../patients/person-query.ts';
import { auditActor, type ServiceContext } from './server.ts';
import { patientRefOf } from '../access/audit.ts';
import { scopeCondition } from '../access/policy.ts';

const PAGE = 500;
const MAX_IDENTIFIER_BYTES = 1024 * 1024;
const levelOf: Record<QRLevel, QueryLevel> = { PATIENT: 'patient', STUDY: 'study', SERIES: 'series', IMAGE: 'instance' };

/** The keys a C-FIND at `level` of `model` may carry (PS3.4 C.6.1.1 / C.6.2.1). */
export function checkLevel(model: 'patient' | 'study', level: QRLevel): string | undefined {
  if (model === 'study' && level === 'PATIENT') return 'the study root model has no PATIENT level';
  return undefined;
}

/** Search values by keyword, and whether some non-empty key cannot be matched (optional keys, C.2.2.1.3). */
export function searchKeys(id: Identifier, level: QueryLevel): { matches: Record<string, string>; unsupported: boolean } {
  const matchable = new Set(matchableKeywords(level));
  const matches: Record<string, string> = {};
  let unsupported = false;
  for (const [keyword, value] of Object.entries(id.keys)) {
    if (matchable.has(keyword)) matches[keyword] = value;
    else if (value !== '' && !/^\*+$/.test(value)) unsupported = true;
  }
  return { matches, unsupported };
}

/** Sends C-FIND-RSPs to a request: pending ones with a match, the final one with a status. */
export function findResponder(ctx: ServiceContext, message: DimseMessage): (status: number, dataset?: Buffer, comment?: string) => Promise<void> {
  const rq = message.command;
  return (status, dataset, comment) => ctx.assoc.send(message.presentationContextId, {
    CommandField: CommandField.CFindRSP,
    MessageIDBeingRespondedTo: rq.MessageID,
    AffectedSOPClassUID: rq.AffectedSOPClassUID,
    Status: status,
    ErrorComment: comment,
    hasDataset: dataset !== undefined,
  }, dataset);
}

export async function handleFind(ctx: ServiceContext, message: DimseMessage): Promise<void> {
  const pc = ctx.assoc.presentationContext(message.presentationContextId)!;
  const respond = findResponder(ctx, message);
  if (!message.dataset) return respond(Status.IdentifierDoesNotMatchSOPClass, undefined, 'C-FIND-RQ without an identifier');
  const model = informationModelOf(pc.abstractSyntax);
  if (!model) return respond(Status.UnableToProcess, undefined, `${pc.abstractSyntax} is not a query model Atrium serves`);
  let id: Identifier;
  try {
    id = readIdentifier(await message.dataset.collect(MAX_IDENTIFIER_BYTES), pc.transferSyntax);
  } catch (e) {
    return respond(Status.IdentifierDoesNotMatchSOPClass, undefined, (e as Error).message);
  }
  const levelProblem = checkLevel(model, id.level);
  if (levelProblem) return respond(Status.IdentifierDoesNotMatchSOPClass, undefined, levelProblem);
  const level = levelOf[id.level];
  const keys = searchKeys(id, level);
  const matches = personMatches(keys.matches);
  const unsupported = keys.unsupported;
  const pending = unsupported ? Status.PendingWarning : Status.Pending;
  const index = ctx.archive.index;
  // The peer sees its site's exams (or the territory's): nothing else is matched, counted or paged over.
  const base = { level, matches, fuzzymatching: false, limit: PAGE, restriction: scopeCondition(ctx.peer.scope) };
  const refs = (rows: Array<{ siteId: number; patient: { IssuerOfPatientID: string; PatientID: string } }>) =>
    rows.map((r) => patientRefOf(ctx.archive.siteById, r));
  const page = async (offset: number): Promise<{ json: DicomJsonDataset[]; patients: string[] }> => {
    const q: SearchQuery = { ...base, offset };
    switch (level) {
      case 'patient': {
        const rows = await index.searchPatients(q);
        return { json: rows.map((r) => patientJson(r.patient, r)), patients: refs(rows) };
      }
      case 'study': {
        const rows = await index.searchStudies(q);
        return { json: rows.map((r) => studyJson(r, '')), patients: refs(rows) };
      }
      case 'series': {
        const rows = await index.searchSeries(q);
        return { json: rows.map((r) => seriesJson(r, '')), patients: refs(rows) };
      }
      case 'instance': {
        const rows = await index.searchInstances(q);
        return { json: rows.map((r) => instanceJson(r, '')), patients: refs(rows) };
      }
    }
  };
  let sent = 0;
  try {
    for (let offset = 0; ; offset += PAGE) {
      const { json: rows, patients } = await page(offset);
      // Recorded before the matches leave: no access without its trace.
      if (rows.length > 0 || offset === 0) {
        await ctx.server.audit.record({ action: 'query', outcome: 'success', ...auditActor(ctx), patients, details: { SOPClassUID: pc.abstractSyntax, level: id.level, matches, results: rows.length, offset } });
      }
      for (const json of rows) {
        if (ctx.cancelled()) {
          ctx.logger.info({ level: id.level, sent }, 'C-FIND cancelled');
          return respond(Status.Cancel);
        }
        await respond(pending, writeMatch(id, id.level, json, ctx.server.aeTitle, pc.transferSyntax));
        sent++;
        // Let a C-CANCEL-RQ in: writes that do not block never give the socket a turn.
        if (sent % 8 === 0) await new Promise((r) => setImmediate(r));
      }
      if (rows.length < PAGE) break;
    }
  } catch (e) {
    if (e instanceof QueryError) return respond(Status.IdentifierDoesNotMatchSOPClass, undefined, e.message);
    ctx.logger.error({ err: e }, 'C-FIND failed');
    return respond(Status.OutOfResources, undefined, 'the index could not answer');
  }
  ctx.logger.debug({ level: id.level, matches: sent }, 'C-FIND answered');
  return respond(Status.Success);
}

function patientJson(p: { PatientID: string; IssuerOfPatientID: string; PatientName?: string; PatientBirthDate?: string; PatientSex?: string }, counts: { NumberOfPatientRelatedStudies: number; NumberOfPatientRelatedSeries: number; NumberOfPatientRelatedInstances: number }): DicomJsonDataset {
  const out: DicomJsonDataset = {
    '00100020': { vr: 'LO', Value: [p.PatientID] },
    '00100021': { vr: 'LO', Value: [p.IssuerOfPatientID] },
    '00201200': { vr: 'IS', Value: [counts.NumberOfPatientRelatedStudies] },
    '00201202': { vr: 'IS', Value: [counts.NumberOfPatientRelatedSeries] },
    '00201204': { vr: 'IS', Value: [counts.NumberOfPatientRelatedInstances] },
  };
  if (p.PatientName !== undefined) out['00100010'] = { vr: 'PN', Value: [{ Alphabetic: p.PatientName }] };
  if (p.PatientBirthDate !== undefined) out['00100030'] = { vr: 'DA', Value: [p.PatientBirthDate] };
  if (p.PatientSex !== undefined) out['00100040'] = { vr: 'CS', Value: [p.PatientSex] };
  return out;
}
