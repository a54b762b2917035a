/**
 * UPS-RS, read side (PS3.18 §11: SearchForUPS, RetrieveUPS): the teleradiology worklist as
 * Unified Procedure Step workitems (PS3.4 Annex CC), for reading workstations that speak
 * DICOM rather than Atrium's API. Each request the caller may see is one workitem:
 *
 *   awaiting-protocol, open  -> SCHEDULED (IN PROGRESS while a radiologist holds the claim)
 *   reported                 -> COMPLETED;  returned -> CANCELED
 *   stroke -> HIGH, urgent -> MEDIUM, routine -> LOW (Scheduled Procedure Step Priority)
 *   specialty                -> Worklist Label (the rota the reading goes to)
 *
 * The study is referenced in the Input Information Sequence with its WADO-RS address (its
 * series and instances listed by RetrieveUPS; a search names the study only). A search
 * answers no patient identity, as the worklist does; RetrieveUPS, which is audited as a read
 * of the request, does. The workitem UID is derived from the request's id.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Archive } from '../archive/archive.ts';
import type { TeleradiologyConfig } from '../config/config.ts';
import { stringifyDicomJson, type DicomJsonDataset, type DicomJsonElement } from '../dicom/json.ts';
import {
  openStatuses, TeleError, TeleRequests, type RequestStatus, type TeleRequest, type Urgency, type WorklistEntry,
} from '../workflow/tele-requests.ts';
import { HttpProblem, problemErrorHandler } from './problem.ts';

/** PS3.4 CC.3.1: UPS Push SOP Class, the class a workitem's SOP Class UID names. */
export const UPSPushSOPClassUID = '1.2.840.10008.5.1.4.34.6.1';

export const procedureStepStates = ['SCHEDULED', 'IN PROGRESS', 'COMPLETED', 'CANCELED'] as const;
export type ProcedureStepState = (typeof procedureStepStates)[number];
export const priorities = ['HIGH', 'MEDIUM', 'LOW'] as const;
export type Priority = (typeof priorities)[number];

const priorityOf: Record<Urgency, Priority> = { stroke: 'HIGH', urgent: 'MEDIUM', routine: 'LOW' };
const urgencyOf: Record<Priority, Urgency> = { HIGH: 'stroke', MEDIUM: 'urgent', LOW: 'routine' };

/**
 * A teleradiology request's workitem UID: the installation's UID root (ArchiveIndex
 * installationUidRoot, unique to this archive), then the request id as the last component.
 */
export function workitemUID(root: string, requestId: number): string {
  return `${root}.${requestId}`;
}

/** The request a workitem UID names, or undefined when it is not one of ours. */
export function requestIdOfWorkitem(root: string, uid: string): number | undefined {
  if (!uid.startsWith(`${root}.`)) return undefined;
  const rest = uid.slice(root.length + 1);
  return /^[1-9][0-9]{0,11}$/.test(rest) ? Number(rest) : undefined;
}

function stateOf(status: RequestStatus, claimedBy: string | undefined): ProcedureStepState {
  if (status === 'reported') return 'COMPLETED';
  if (status === 'returned') return 'CANCELED';
  return claimedBy !== undefined ? 'IN PROGRESS' : 'SCHEDULED';
}

/** An ISO 8601 instant (2026-11-23T01:02:03.456Z) as a DICOM DT in UTC (20261123010203.456+0000). */
export function dicomDateTime(iso: string): string {
  return `${iso.replace(/[-:T]/g, '').replace(/Z$/, '')}+0000`;
}

const cs = (v: string): DicomJsonElement => ({ vr: 'CS', Value: [v] });
const lo = (v: string): DicomJsonElement => ({ vr: 'LO', Value: [v] });
const ui = (v: string): DicomJsonElement => ({ vr: 'UI', Value: [v] });
const empty = (vr: DicomJsonElement['vr']): DicomJsonElement => ({ vr });

type WorkitemSource = Pick<WorklistEntry, 'id' | 'urgency' | 'status' | 'modality' | 'bodyPart' | 'specialty' | 'deadlineAt' | 'claimedBy' | 'assignedTo' | 'StudyInstanceUID' | 'AccessionNumber' | 'createdAt' | 'imagesArrived'>
  & { proposedProtocol?: string; patient?: { PatientID?: string; IssuerOfPatientID?: string; PatientName?: string; PatientBirthDate?: string; PatientSex?: string } };

export interface InputInstance { SeriesInstanceUID: string; SOPInstanceUID: string; SOPClassUID: string }

/**
 * The Input Information Sequence: with the study's instances, one item per series listing
 * them (PS3.4 Table CC.2.5-3, Referenced Instances and Access); without them (a search), one
 * item naming the study and where to retrieve it.
 */
function inputInformation(study: string | undefined, instances: readonly InputInstance[] | undefined, baseUrl: string): DicomJsonDataset[] {
  if (study === undefined) return [];
  const retrieval = (url: string): DicomJsonElement => ({ vr: 'SQ', Value: [{ '00081190': { vr: 'UR', Value: [url] } }] });
  if (instances === undefined) {
    return [{ '00081199': { vr: 'SQ', Value: [] }, '0020000D': ui(study), '0040E020': cs('DICOM'), '0040E021': retrieval(`${baseUrl}/studies/${study}`) }];
  }
  const bySeries = new Map<string, InputInstance[]>();
  for (const i of instances) bySeries.set(i.SeriesInstanceUID, [...(bySeries.get(i.SeriesInstanceUID) ?? []), i]);
  return [...bySeries].map(([series, list]) => ({
    '00081199': { vr: 'SQ', Value: list.map((i) => ({ '00081150': ui(i.SOPClassUID), '00081155': ui(i.SOPInstanceUID) })) },
    '0020000D': ui(study),
    '0020000E': ui(series),
    '0040E020': cs('DICOM'),
    '0040E021': retrieval(`${baseUrl}/studies/${study}/series/${series}`),
  }));
}

/** A request as a UPS workitem in the DICOM JSON model (PS3.18 F.2). */
export function workitemJson(r: WorkitemSource, baseUrl: string, root: string, instances?: readonly InputInstance[]): DicomJsonDataset {
  const study = r.StudyInstanceUID;
  const json: DicomJsonDataset = {
    '00080016': ui(UPSPushSOPClassUID),
    '00080018': ui(workitemUID(root, r.id)),
    '00080050': r.AccessionNumber !== undefined ? { vr: 'SH', Value: [r.AccessionNumber] } : empty('SH'),
    '00100010': r.patient?.PatientName ? { vr: 'PN', Value: [{ Alphabetic: r.patient.PatientName }] } : empty('PN'),
    '00100020': r.patient?.PatientID ? lo(r.patient.PatientID) : empty('LO'),
    '00100021': r.patient?.IssuerOfPatientID ? lo(r.patient.IssuerOfPatientID) : empty('LO'),
    '00100030': r.patient?.PatientBirthDate ? { vr: 'DA', Value: [r.patient.PatientBirthDate] } : empty('DA'),
    '00100040': r.patient?.PatientSex ? cs(r.patient.PatientSex) : empty('CS'),
    '00384062': empty('LO'),
    '00404005': { vr: 'DT', Value: [dicomDateTime(r.createdAt)] },
    '00404011': { vr: 'DT', Value: [dicomDateTime(r.deadlineAt)] },
    // Input Information: the study, with where to retrieve it.
    '00404021': { vr: 'SQ', Value: inputInformation(study, instances, baseUrl) },
    '00404034': {
      vr: 'SQ',
      Value: r.assignedTo !== undefined ? [{ '00404037': { vr: 'PN', Value: [{ Alphabetic: r.assignedTo }] } }] : [],
    },
    '00404041': cs(r.imagesArrived ? 'READY' : 'INCOMPLETE'),
    '0040A370': {
      vr: 'SQ',
      Value: [{
        '00080050': r.AccessionNumber !== undefined ? { vr: 'SH', Value: [r.AccessionNumber] } : empty('SH'),
        '0020000D': study !== undefined ? ui(study) : empty('UI'),
        '00401001': { vr: 'SH', Value: [`TELE-${r.id}`] },
        '00321060': r.proposedProtocol !== undefined ? lo(r.proposedProtocol.slice(0, 64)) : empty('LO'),
      }],
    },
    '00741000': cs(stateOf(r.status, r.claimedBy)),
    '00741200': cs(priorityOf[r.urgency]),
    '00741202': lo(r.specialty),
    '00741204': lo(`${r.modality} ${r.bodyPart}`.slice(0, 64)),
  };
  // DICOM JSON lists attributes in tag order.
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** What SearchForUPS matches on: by keyword or by tag, single values (PS3.18 §8.3.4). */
const matchKeys: Record<string, 'state' | 'priority' | 'label' | 'study' | 'accession'> = {
  ProcedureStepState: 'state', '00741000': 'state',
  ScheduledProcedureStepPriority: 'priority', '00741200': 'priority',
  WorklistLabel: 'label', '00741202': 'label',
  StudyInstanceUID: 'study', '0020000D': 'study',
  AccessionNumber: 'accession', '00080050': 'accession',
};


export async function workitemRoutes(app: FastifyInstance, options: { archive: Archive; config: TeleradiologyConfig; publicBaseUrl?: string }): Promise<void> {
  const requests = new TeleRequests(options.archive, options.config);
  const root = await options.archive.index.installationUidRoot();
  const baseUrl = (request: FastifyRequest) => `${options.publicBaseUrl ?? `${request.protocol}://${request.host}`}/dicom-web`;

  app.setErrorHandler(problemErrorHandler('UPS-RS request'));

  // SearchForUPS (PS3.18 §11.9).
  app.get('/', async (request, reply) => {
    const query = request.query as Record<string, string | string[]>;
    const match: Partial<Record<'state' | 'priority' | 'label' | 'study' | 'accession', string>> = {};
    let limit = 100;
    let offset = 0;
    for (const [key, raw] of Object.entries(query)) {
      const value = Array.isArray(raw) ? raw.join(',') : raw;
      if (key === 'limit' || key === 'offset') {
        if (!/^[0-9]{1,6}$/.test(value)) throw new HttpProblem(400, `${key} must be a non-negative integer`);
        if (key === 'limit') limit = Math.min(Math.max(Number(value), 1), 1000);
        else offset = Number(value);
      } else if (key === 'includefield' || key === 'fuzzymatching') {
        // Every attribute of a workitem is returned; fuzzy matching does not apply to these coded values.
      } else if (matchKeys[key] !== undefined) {
        match[matchKeys[key]] = value;
      } else {
        throw new HttpProblem(400, `${key} is not a matching key of this worklist (ProcedureStepState, ScheduledProcedureStepPriority, WorklistLabel, StudyInstanceUID, AccessionNumber)`);
      }
    }
    if (match.state !== undefined && !(procedureStepStates as readonly string[]).includes(match.state)) throw new HttpProblem(400, `ProcedureStepState must be one of ${procedureStepStates.join(', ')}`);
    if (match.priority !== undefined && !(priorities as readonly string[]).includes(match.priority)) throw new HttpProblem(400, `ScheduledProcedureStepPriority must be one of ${priorities.join(', ')}`);
    const statuses: RequestStatus[] = match.state === 'COMPLETED' ? ['reported'] : match.state === 'CANCELED' ? ['returned'] : [...openStatuses];
    const entries = await requests.worklist(request.principal!, {
      status: statuses, limit: Math.min(offset + limit, 1000),
      ...(match.priority !== undefined ? { urgency: urgencyOf[match.priority as Priority] } : {}),
      ...(match.label !== undefined ? { specialty: match.label } : {}),
    });
    const found = entries
      .filter((e) => match.state === undefined || stateOf(e.status, e.claimedBy) === match.state)
      .filter((e) => match.study === undefined || e.StudyInstanceUID === match.study)
      .filter((e) => match.accession === undefined || e.AccessionNumber === match.accession)
      .slice(offset, offset + limit);
    if (found.length === 0) return reply.code(204).send();
    const base = baseUrl(request);
    return reply.type('application/dicom+json').send(`[${found.map((e) => stringifyDicomJson(workitemJson(e, base, root))).join(',')}]`);
  });

  // RetrieveUPS (PS3.18 §11.5): the workitem whole, as its request's readers see it.
  app.get<{ Params: { uid: string } }>('/:uid', {
    schema: { params: { type: 'object', required: ['uid'], properties: { uid: { type: 'string', maxLength: 64 } } } },
  }, async (request, reply) => {
    const id = requestIdOfWorkitem(root, request.params.uid);
    if (id === undefined) throw new HttpProblem(404, `no workitem ${request.params.uid}`);
    let q: TeleRequest;
    try {
      q = await requests.requestFor(request.principal!, id, { source: request.ip, via: 'dicomweb' });
    } catch (e) {
      // A workitem the caller may not see is answered as absent, like a study (no probing by UID).
      if (e instanceof TeleError && (e.code === 'forbidden' || e.code === 'not-found')) throw new HttpProblem(404, `no workitem ${request.params.uid}`);
      throw e;
    }
    const record = await options.archive.index.patientRecord(q.patientId);
    const p = record?.patient as { PatientID?: string; IssuerOfPatientID?: string; PatientName?: string; PatientBirthDate?: string; PatientSex?: string } | undefined;
    const instances = q.StudyInstanceUID !== undefined ? await options.archive.index.getStoredInstances({ StudyInstanceUID: q.StudyInstanceUID }) : undefined;
    const json = workitemJson({
      ...q, imagesArrived: q.imagesArrivedAt !== undefined, ...(p ? { patient: p } : {}),
    }, baseUrl(request), root, instances);
    return reply.type('application/dicom+json').send(`[${stringifyDicomJson(json)}]`);
  });
}
