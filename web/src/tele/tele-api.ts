/** The portal's side of /api/teleradiology (src/api/teleradiology.ts): types as the API answers them. */
import { ApiError, getJson, sendJson } from '../api.ts';

const base = '/api/teleradiology';

export const urgencies = ['routine', 'urgent', 'stroke'] as const;
export type Urgency = (typeof urgencies)[number];
export const requestStatuses = ['awaiting-protocol', 'open', 'reported', 'returned'] as const;
export type RequestStatus = (typeof requestStatuses)[number];

export interface WorklistEntry {
  id: number; requestingSite: string; urgency: Urgency; status: RequestStatus; modality: string; bodyPart: string; specialty: string;
  deadlineAt: string; escalated: boolean; imagesArrived: boolean; protocolDecided: boolean; assignedTo?: string; claimedBy?: string; claimExpiresAt?: string;
}

export interface TeleRequest {
  id: number; requestingSite: string; StudyInstanceUID?: string; AccessionNumber?: string; urgency: Urgency; modality: string; bodyPart: string;
  specialty: string; clinicalContext: string; clinicalQuestion: string; requestingPhysician: { name: string; rpps?: string }; proposedProtocol: string;
  protocol?: { decision: 'validated' | 'changed'; protocol: string; reason?: string; by: string; at: string };
  status: RequestStatus; returnedReason?: string; assignedTo?: string; claimedBy?: string; claimExpiresAt?: string; imagesArrivedAt?: string;
  deadlineAt: string; escalatedAt?: string; reportedAt?: string; createdBy: string; createdAt: string;
  patient?: { PatientID?: string; PatientName?: string; PatientBirthDate?: string; PatientSex?: string };
}

export interface NewTeleRequest {
  site?: string; patient: { PatientID: string }; StudyInstanceUID?: string; AccessionNumber?: string; urgency: string; modality: string; bodyPart: string;
  specialty: string; clinicalContext: string; clinicalQuestion: string; requestingPhysician: { name: string; rpps?: string }; proposedProtocol: string;
}

export interface TeleReport {
  id: number; requestId: number; status: 'draft' | 'preliminary' | 'final' | 'amended'; template?: string; fields: Record<string, string>;
  findings: string; conclusion: string; author: string; version: number; updatedAt: string; signedAt?: string; signedBy?: string;
  addenda: Array<{ id: number; text: string; signedBy: string; signedAt: string }>;
}

export interface ReportTemplate { code: string; name: string; modality?: string; bodyPart?: string; fields: Array<{ name: string; label: string; required: boolean }>; findings: string }

export interface SecondReading {
  id: number; requestId: number; specialty: string; question: string; askedBy: string; expert: string; status: 'requested' | 'answered';
  findings?: string; conclusion?: string; agreement?: 'agree' | 'partial' | 'disagree'; createdAt: string; answeredAt?: string;
}

export interface ActivityRow {
  period: string; act: 'primary-reading' | 'second-reading'; specialty: string; requestingSite: string; readingSite: string; urgency: Urgency;
  count: number; medianMinutes: number; p90Minutes?: number;
}

export interface WorklistQuery { site?: string; modality?: string; bodyPart?: string; urgency?: string; status?: string; mine?: boolean }

function queryOf(q: Record<string, string | boolean | undefined>): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '' && v !== false) params.set(k, String(v));
  return params.toString();
}

export const worklist = (q: WorklistQuery) => getJson<WorklistEntry[]>(`${base}/worklist?${queryOf({ ...q })}`);
export const teleRequest = (id: number) => getJson<TeleRequest>(`${base}/requests/${id}`);
export const createRequest = (r: NewTeleRequest) => sendJson<TeleRequest>('POST', `${base}/requests`, r);
export const decideProtocol = (id: number, d: { decision: 'validated' | 'changed'; protocol?: string; reason?: string }) => sendJson<TeleRequest>('POST', `${base}/requests/${id}/protocol`, d);
export const returnRequest = (id: number, reason: string) => sendJson<TeleRequest>('POST', `${base}/requests/${id}/return`, { reason });
export const claim = (id: number) => sendJson<TeleRequest>('POST', `${base}/requests/${id}/claim`);
export const release = (id: number) => sendJson<TeleRequest>('DELETE', `${base}/requests/${id}/claim`);
export const templates = (modality: string, bodyPart: string) => getJson<ReportTemplate[]>(`${base}/templates?${queryOf({ modality, bodyPart })}`);

/** The request's report, or undefined while none was saved (404). */
export async function report(id: number): Promise<TeleReport | undefined> {
  try {
    return await getJson<TeleReport>(`${base}/requests/${id}/report`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return undefined;
    throw e;
  }
}
export const saveDraft = (id: number, content: { template?: string; fields?: Record<string, string>; findings?: string; conclusion?: string; baseVersion?: number }) =>
  sendJson<TeleReport>('PUT', `${base}/requests/${id}/report`, content);
export const signReport = (id: number, preliminary: boolean) => sendJson<TeleReport>('POST', `${base}/requests/${id}/report/sign`, { preliminary });
export const addAddendum = (id: number, text: string) => sendJson<unknown>('POST', `${base}/requests/${id}/report/addenda`, { text });
export const askSecondReading = (id: number, r: { specialty: string; question: string; expert?: string }) => sendJson<SecondReading>('POST', `${base}/requests/${id}/second-readings`, r);
export const secondReadingsAsked = () => getJson<SecondReading[]>(`${base}/second-readings`);
export const answerSecondReading = (id: number, a: { findings?: string; conclusion: string; agreement: string }) => sendJson<SecondReading>('POST', `${base}/second-readings/${id}/answer`, a);
export const activity = (from: string, to: string, by: 'month' | 'year') => getJson<ActivityRow[]>(`${base}/activity?${queryOf({ from, to, by })}`);
export const activityCsvUrl = (from: string, to: string, by: 'month' | 'year') => `${base}/activity.csv?${queryOf({ from, to, by })}`;
export const activityPdfUrl = (year: number) => `${base}/activity.pdf?year=${year}`;
export const reportPdfUrl = (id: number) => `${base}/requests/${id}/report/pdf`;
