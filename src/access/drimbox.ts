/**
 * Atrium as a DRIMbox source (issue 16 §3): a professional from outside the territory, whose
 * DRIMbox consumer found the study's KOS manifest in the DMP, retrieves the images it names.
 *
 * - Who: the request's `Authorization: Bearer` is a Pro Santé Connect access token, checked by
 *   token introspection (RFC 7662) at the provider with Atrium's client credentials. An
 *   active answer is reused for auth.drimbox.cacheSeconds at most, never past the token's exp;
 *   a failure of the provider is never covered by an older answer (503). The caller is a
 *   `remote-professional` principal known only by the RPPS the answer carries.
 * - What: the `KOS-SOPInstanceUID` header must name the study's current KOS manifest
 *   (study-documents.ts), not withdrawn from the DMP. Only GET and HEAD of a series the
 *   manifest lists, and of an instance it lists in that series (their metadata, frames,
 *   rendered and bulk data likewise), are answered. Everything else (QIDO, the study level,
 *   another study, another series) is answered as if absent, and recorded.
 *
 * A manifest is rebuilt when its study changes, and the older one is no longer current: a
 * consumer holding it is refused until it reads the new one in the DMP, so that a series is
 * never served with objects its manifest does not list.
 */
import { createHash } from 'node:crypto';
import type { DrimboxSourceConfig } from '../config/config.ts';
import type { ArchiveIndex, StudyPatient } from '../index/archive-index.ts';
import type { Site } from '../index/records.ts';
import { parsePart10 } from '../dicom/part10-parser.ts';
import { HttpProblem } from '../dicomweb/problem.ts';
import { listStudyDocuments, loadStudyDocument } from '../exchange/study-documents.ts';
import { AuditTrail, patientRefOf } from './audit.ts';
import { rppsOfClaim } from './oidc.ts';
import { actorOf, type Principal } from './principal.ts';
import { AuthenticationError } from './users.ts';

/** The HTTP header naming the manifest (as the national DRIMbox consumer sends it). */
export const kosHeader = 'kos-sopinstanceuid';

const introspectionTimeoutMs = 5_000;
/** Cached answers kept at most: beyond, the oldest go (a flood of tokens cannot grow memory). */
const cacheLimit = 10_000;

/** A remote professional known by their RPPS only. */
export function remoteProfessional(rpps: string): Principal {
  return { kind: 'remote-professional', id: `rpps:${rpps}`, name: `RPPS ${rpps}`, roles: [], sites: [], rpps, authenticatedBy: 'token-introspection' };
}

/** Pro Santé Connect access tokens checked at the provider's introspection endpoint. */
export class TokenIntrospector {
  private readonly cache = new Map<string, { principal: Principal; until: number }>();

  constructor(
    private readonly config: DrimboxSourceConfig,
    private readonly audit: AuditTrail,
    private readonly now: () => number = Date.now,
  ) {}

  /** The caller the token names; an AuthenticationError (401, 403) recorded, or an HttpProblem 503 when the provider does not answer. */
  async principalOf(token: string, source: string): Promise<Principal> {
    const key = createHash('sha256').update(token).digest('hex');
    const cached = this.cache.get(key);
    if (cached && cached.until > this.now()) return cached.principal;
    if (cached) this.cache.delete(key);
    const answer = await this.introspect(token);
    try {
      const exp = typeof answer.exp === 'number' ? answer.exp * 1000 : undefined;
      if (answer.active !== true || (exp !== undefined && exp <= this.now())) {
        throw new AuthenticationError('expired-token', 'the access token is not active (expired or revoked)');
      }
      const rpps = rppsOfClaim(answer[this.config.rppsClaim]);
      if (rpps === undefined) throw new AuthenticationError('not-a-user', `the access token names no RPPS (${this.config.rppsClaim})`);
      const principal = remoteProfessional(rpps);
      const until = Math.min(this.now() + this.config.cacheSeconds * 1000, exp ?? Number.POSITIVE_INFINITY);
      if (until > this.now()) {
        if (this.cache.size >= cacheLimit) this.cache.delete(this.cache.keys().next().value!);
        this.cache.set(key, { principal, until });
      }
      return principal;
    } catch (e) {
      if (e instanceof AuthenticationError) {
        await this.audit.record({ action: 'login-failed', outcome: 'refused', actor: 'drimbox-consumer', actorKind: 'user', source, via: 'dicomweb', reason: e.reason });
      }
      throw e;
    }
  }

  private async introspect(token: string): Promise<Record<string, unknown>> {
    // RFC 6749 §2.3.1: both parts form-urlencoded before base64.
    const id = encodeURIComponent(this.config.clientId).replace(/%20/g, '+');
    const secret = encodeURIComponent(this.config.clientSecret).replace(/%20/g, '+');
    let response: Response;
    try {
      response = await fetch(this.config.introspectionEndpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}` },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
        signal: AbortSignal.timeout(introspectionTimeoutMs),
      });
    } catch {
      throw new HttpProblem(503, 'the identity provider cannot check the access token now (introspection unreachable)');
    }
    const body = (await response.json().catch(() => undefined)) as unknown;
    if (!response.ok || typeof body !== 'object' || body === null) {
      throw new HttpProblem(503, `the identity provider cannot check the access token now (introspection answered ${response.status})`);
    }
    return body as Record<string, unknown>;
  }
}

/** The series of the study a manifest lists, each with its instances; undefined when it is not the study's current manifest. */
export async function manifestContents(index: ArchiveIndex, StudyInstanceUID: string, kosUID: string): Promise<Map<string, Set<string>> | undefined> {
  const documents = await listStudyDocuments(index.sql, StudyInstanceUID);
  const kos = documents.find((d) => d.kind === 'KOS' && d.current && d.uniqueId === kosUID);
  // Withdrawn or unpublished from the DMP: no consumer should hold it any more.
  if (!kos || kos.publicationStatus === 'withdrawn' || kos.publicationStatus === 'unpublished') return undefined;
  const loaded = await loadStudyDocument(index.sql, kos.id);
  if (!loaded) return undefined;
  const ds = parsePart10(loaded.content).dataset;
  const text = (d: typeof ds, tag: number) => d.get(tag)?.value?.toString('latin1').replace(/[\0 ]+$/, '');
  const series = new Map<string, Set<string>>();
  // Current Requested Procedure Evidence › Referenced Series › Referenced SOP.
  for (const study of ds.get(0x0040a375)?.items ?? []) {
    if (text(study, 0x0020000d) !== StudyInstanceUID) continue;
    for (const s of study.get(0x00081115)?.items ?? []) {
      const uid = text(s, 0x0020000e);
      if (uid === undefined) continue;
      const instances = series.get(uid) ?? new Set<string>();
      for (const i of s.get(0x00081199)?.items ?? []) {
        const sop = text(i, 0x00081155);
        if (sop !== undefined) instances.add(sop);
      }
      series.set(uid, instances);
    }
  }
  return series;
}

/** What the decision needs of a DICOMweb request. */
export interface ConsumerRead {
  principal: Principal;
  method: string;
  /** The route's pattern (…/studies/:study/series/:series/metadata). */
  route: string;
  params: { study?: string; series?: string; instance?: string; frames?: string };
  /** The KOS-SOPInstanceUID header. */
  kos: string | string[] | undefined;
  source: string;
}

/**
 * May the remote consumer read this? The study when yes; undefined when not (recorded),
 * which the caller answers as if the study, series or instance were absent.
 */
export async function decideConsumerRead(index: ArchiveIndex, siteById: ReadonlyMap<number, Site>, audit: AuditTrail, r: ConsumerRead): Promise<StudyPatient | undefined> {
  const { study, series, instance } = r.params;
  const kos = typeof r.kos === 'string' ? r.kos.trim() : undefined;
  const row = study !== undefined ? await index.studyPatient(study) : undefined;
  let why: string | undefined;
  if (r.method !== 'GET' && r.method !== 'HEAD') why = 'not a read';
  else if (study === undefined || series === undefined || /\/instances$/.test(r.route)) why = 'not a series or an instance the manifest names (searches and the study level are not served)';
  else if (!kos) why = 'no KOS-SOPInstanceUID';
  else if (!row) why = 'no such study';
  else {
    const manifest = await manifestContents(index, study, kos);
    if (!manifest) why = 'not a current manifest of this study';
    else if (!manifest.has(series)) why = 'series not in the manifest';
    else if (instance !== undefined && !manifest.get(series)!.has(instance)) why = 'instance not in the manifest';
  }
  const download = /\/series\/:series(\/instances\/:instance)?$/.test(r.route);
  await audit.record({
    action: download ? 'download' : 'view', outcome: why === undefined ? 'success' : 'refused', ...actorOf(r.principal), source: r.source, via: 'dicomweb',
    ...(study !== undefined ? { StudyInstanceUID: study } : {}),
    ...(row ? { patients: [patientRefOf(siteById, row)] } : {}),
    details: {
      route: r.route, method: r.method, ...r.params, rpps: r.principal.rpps, kos: kos ?? null,
      ...(why === undefined ? { access: 'drimbox-manifest' } : { why }),
    },
  });
  return why === undefined ? row : undefined;
}
