/** The portal's side of Atrium's HTTP API: same origin, session cookie, CSRF token on changes. */

// The portal API's answers, one definition with the server's (type-only, erased from the build).
import type { PatientPage, PatientRecordSummary, TimelineStudy } from '../../src/api/portal-types.ts';

export interface Me {
  kind: string;
  id: string;
  name: string;
  roles: string[];
  sites: string[];
  territory?: boolean;
  csrfToken?: string;
}

export class ApiError extends Error {
  /**
   * `missing`: the fields a 422 problem names (the portal says them in the user's language, web/src/errors.ts);
   * `code`: the problem's stable reason (e.g. `username-taken`), when the server gives one.
   */
  constructor(readonly status: number, message: string, readonly missing?: string[], readonly code?: string) {
    super(message);
    this.name = 'ApiError';
  }
}

let csrfToken: string | undefined;

/** Fired when the API answers 401: the session ended (expired, logged out elsewhere, link revoked). */
export const sessionEndedEvent = 'atrium:session-ended';

async function problemOf(r: Response): Promise<ApiError> {
  if (r.status === 401) window.dispatchEvent(new Event(sessionEndedEvent));
  let detail = r.statusText;
  let missing: string[] | undefined;
  let code: string | undefined;
  try {
    const body = (await r.json()) as { detail?: string; title?: string; missing?: unknown; code?: unknown };
    detail = body.detail ?? body.title ?? detail;
    if (Array.isArray(body.missing)) missing = body.missing.filter((m): m is string => typeof m === 'string');
    if (typeof body.code === 'string') code = body.code;
  } catch {
    // not a problem document
  }
  return new ApiError(r.status, detail, missing, code);
}

export async function getJson<T>(url: string, accept = 'application/json'): Promise<T> {
  const r = await fetch(url, { headers: { accept }, credentials: 'same-origin' });
  if (!r.ok) throw await problemOf(r);
  return (await r.json()) as T;
}

export async function postJson<T>(url: string, body: unknown): Promise<{ status: number; body: T | undefined }> {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  if (csrfToken) headers['x-csrf-token'] = csrfToken;
  const r = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body), credentials: 'same-origin' });
  const text = await r.text();
  return { status: r.status, body: text ? (JSON.parse(text) as T) : undefined };
}

/** A change (POST, PUT, DELETE) answered with JSON; a refusal throws its problem document's detail. */
export async function sendJson<T>(method: 'POST' | 'PUT' | 'DELETE', url: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (csrfToken) headers['x-csrf-token'] = csrfToken;
  const r = await fetch(url, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  if (!r.ok) throw await problemOf(r);
  const text = await r.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** The session's CSRF token as a header, for a change made with fetch (STOW-RS of a key object selection). */
export function csrfHeaders(): Record<string, string> {
  return csrfToken ? { 'x-csrf-token': csrfToken } : {};
}

/** Who is logged in, or undefined (401). */
export async function whoAmI(): Promise<Me | undefined> {
  const r = await fetch('/auth/me', { credentials: 'same-origin', headers: { accept: 'application/json' } });
  if (r.status === 401) return undefined;
  if (!r.ok) throw await problemOf(r);
  const me = (await r.json()) as Me;
  csrfToken = me.csrfToken;
  return me;
}

export async function loginLocal(login: string, password: string): Promise<Me> {
  const r = await postJson<Me & { detail?: string }>('/auth/local', { login, password });
  if (r.status !== 200 || !r.body) throw new ApiError(r.status, r.body?.detail ?? 'login refused');
  csrfToken = r.body.csrfToken;
  return r.body;
}

/** Ends the session; where to send the browser when the identity provider's session must end too. */
export async function logout(): Promise<{ endSessionUrl?: string }> {
  const r = await postJson<{ endSessionUrl?: string }>('/auth/logout', {});
  csrfToken = undefined;
  return r.body ?? {};
}

/** The login methods this platform offers (public: asked before any session). */
export interface LoginMethods {
  proSanteConnect: boolean;
  local: boolean;
}

export async function loginMethods(): Promise<LoginMethods> {
  return getJson<LoginMethods>('/auth/methods');
}

/** Pro Santé Connect: a full-page redirect through /auth/login, back to the page asked for. */
export function proSanteConnectUrl(returnTo: string): string {
  return `/auth/login?returnTo=${encodeURIComponent(returnTo)}`;
}

// ---- the portal API (src/api/patients.ts) ----

export type PatientRecord = PatientRecordSummary;
export type { PatientPage, TimelineStudy };

export interface PatientSearch {
  name?: string;
  birthDate?: string;
  ins?: string;
  PatientID?: string;
  site?: string;
}

export async function searchPatients(q: PatientSearch, offset = 0): Promise<PatientPage> {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (typeof v === 'string' && v.trim() !== '') params.set(k, v.trim());
  if (offset > 0) params.set('offset', String(offset));
  return getJson<PatientPage>(`/api/patients?${params}`);
}

/** The person's recent exams at other sites (the redundant-exam banner): those the caller may not open only counted. */
export interface RecentElsewhere {
  priors: Array<{ StudyInstanceUID: string; site: string; StudyDate: string; modality: string; bodyPart: string }>;
  elsewhere?: number;
}

export async function patientTimeline(site: string, PatientID: string): Promise<{ patient: PatientRecord; studies: TimelineStudy[]; recentElsewhere?: RecentElsewhere }> {
  return getJson(`/api/patients/timeline?${new URLSearchParams({ site, PatientID })}`);
}

/** The person's dose on record (GET /api/dose/patients): the exams the caller may see, the effective-dose method stated. */
export interface DoseTimeline {
  method: string;
  cumulativeEffectiveDose_mSv: number;
  exams: Array<{
    StudyInstanceUID: string; StudyDate?: string; site?: string; modality: string; region?: string; status: 'complete' | 'partial';
    CTDIvol_mGy?: number; DLP_mGycm?: number; DAP_Gym2?: number; effectiveDose_mSv?: number; cumulativeEffectiveDose_mSv: number;
  }>;
}

export async function doseTimeline(site: string, PatientID: string): Promise<DoseTimeline> {
  return getJson(`/api/dose/patients?${new URLSearchParams({ site, PatientID })}`);
}

export function studyArchiveUrl(StudyInstanceUID: string): string {
  return `/dicom-web/studies/${encodeURIComponent(StudyInstanceUID)}/archive`;
}

export function thumbnailUrl(StudyInstanceUID: string): string {
  return `/dicom-web/studies/${encodeURIComponent(StudyInstanceUID)}/thumbnail?viewport=128,128`;
}
