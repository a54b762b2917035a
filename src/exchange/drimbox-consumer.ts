/**
 * Atrium as a DRIMbox consumer (issue 16 §4): a professional of this territory, logged in with
 * Pro Santé Connect, finds a patient's images made in another territory through the DMP and
 * sees them, without Atrium keeping them unless asked to import them.
 *
 * - TD0.2 first (the patient has a DMP, did not oppose professionals' access), then ITI-18
 *   FindDocuments by the patient's qualified INS (filters: modality and region as event codes,
 *   creation dates; the accession number among the entries' reference ids), as the professional
 *   (VIHF subject: their RPPS, mode INDIRECTE_RENFORCEE), over the site's certificate.
 * - ITI-43 retrieves a KOS manifest (or a CR-IMG report, shown as text). A manifest is checked
 *   to name the patient by the INS asked for; its series, their instances and their Retrieve
 *   URLs are kept in the index for the professional, for an hour (src/exchange/drimbox-opened.ts):
 *   what the proxy may fetch, on whichever node of the region the viewer's request lands.
 * - The proxy fetches WADO-RS from the source DRIMbox (the manifest's Retrieve URL) with the
 *   professional's Pro Santé Connect access token (kept server-side by the session) and
 *   `KOS-SOPInstanceUID`, only for a series the manifest lists, and passes the answer through
 *   without storing it.
 * - Import: the manifest's series are fetched and each object is stored through the archive's
 *   own ingest at the patient's local record (patient module of the local PatientID, the INS
 *   in Other Patient IDs).
 * Every DMP call, every fetch and every import is in the audit trail, refusals and failures
 * included. A source that does not answer is told as such (502, "try again").
 */
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import type { Archive } from '../archive/archive.ts';
import type { DmpConfig } from '../config/config.ts';
import type { DicomDataset, DicomElement } from '../dicom/dataset.ts';
import { parsePart10 } from '../dicom/part10-parser.ts';
import { HttpProblem } from '../dicomweb/problem.ts';
import { parseMediaType } from '../dicomweb/media-type.ts';
import { readMultipart } from '../dicomweb/multipart.ts';
import { coercePatientModule } from '../archive/coercion.ts';
import { AuditTrail, patientRef, type AuditEvent } from '../access/audit.ts';
import { actorOf, type Principal } from '../access/principal.ts';
import type { Site } from '../index/records.ts';
import { insValue, type INS } from '../patients/ins.ts';
import { insOtherPatientIDsItem } from '../patients/ins-dicom.ts';
import { anatomicRegionOf } from './cda-cr-img.ts';
import { DmpClient, DmpRefusal, DmpUnavailable, type DmpCaller, type FoundDocument } from './dmp/client.ts';
import { documentCodes, modalityScheme, xds } from './dmp/metadata.ts';
import type { Coded } from './dmp/document.ts';
import { loadSiteCredentials } from './dmp/publications.ts';
import { parseXml } from './dmp/xml.ts';
import { OpenedManifests } from './drimbox-opened.ts';

/** The local patient record the professional works on, and its qualified INS. */
export interface LocalPatient {
  site: Site;
  recordId: number;
  PatientID: string;
  IssuerOfPatientID: string;
  PatientName?: string;
  PatientBirthDate?: string;
  PatientSex?: string;
  ins: INS;
}

export interface DmpSearchFilters {
  modality?: string;
  /** A body part (HEAD, CHEST…) or a SNOMED CT code. */
  region?: string;
  /** YYYYMMDD, inclusive. */
  from?: string;
  to?: string;
  accession?: string;
}

export interface ConsumerDocument {
  kind: 'KOS' | 'CR-IMG';
  uniqueId: string;
  repositoryUniqueId: string;
  title?: string;
  creationTime?: string;
  StudyInstanceUID?: string;
  AccessionNumber?: string;
}

export interface DmpSearchResult {
  dmp: 'active' | 'closed' | 'none';
  documents: ConsumerDocument[];
}

/** A manifest retrieved from the DMP: what the proxy may fetch, and from where. */
export interface RemoteStudy {
  kos: string;
  StudyInstanceUID: string;
  patient: LocalPatient;
  /** Series UID -> its Retrieve URL and the instances the manifest lists. */
  series: Map<string, { url: string; instances: Set<string> }>;
  study: { StudyDate?: string; StudyTime?: string; AccessionNumber?: string; StudyDescription?: string; PatientName?: string; PatientBirthDate?: string; PatientSex?: string };
  openedAt: number;
}

/** The source DRIMbox did not answer (down, too slow): worth trying again (code `source-unavailable`). */
export class SourceUnavailable extends HttpProblem {
  constructor(message: string) {
    super(502, message, 'source-unavailable');
  }
}

const medecin: Coded = { code: '10', scheme: '1.2.250.1.213.1.1.5.5', display: 'Médecin' };
const openedForMs = 3_600_000;
const sourceTimeoutMs = 30_000;

const text = (d: DicomDataset, tag: number) => d.get(tag)?.value?.toString('utf8').replace(/[\0 ]+$/, '') || undefined;

export class DrimboxConsumer {
  private client: DmpClient | undefined;
  private readonly credentials = new Map<string, ReturnType<typeof loadSiteCredentials>>();
  private readonly opened: OpenedManifests;
  private readonly audit: AuditTrail;

  constructor(private readonly archive: Archive, private readonly config: DmpConfig, private readonly env: Record<string, string | undefined> = process.env) {
    this.audit = new AuditTrail(archive.index.sql);
    this.opened = new OpenedManifests(archive.index.sql, archive.sites);
  }

  /** The DMP client and the site's certificate, read at first use (the HTTP server starts without them, as the publisher's worker does). */
  private credentialsOf(site: Site): { client: DmpClient; credentials: ReturnType<typeof loadSiteCredentials> } {
    const c = this.config;
    const siteConfig = c.sites.find((s) => s.site === site.code);
    if (!c.endpoint || !c.caFile || !siteConfig) throw new HttpProblem(503, `the DMP is not configured for site ${site.code} (dmp.endpoint, dmp.sites)`);
    try {
      this.client ??= new DmpClient({ endpoint: c.endpoint, ca: readFileSync(c.caFile, 'utf8'), timeoutMs: c.timeoutMs, software: c.software, vihfIssuer: c.vihfIssuer });
      let credentials = this.credentials.get(site.code);
      if (!credentials) this.credentials.set(site.code, (credentials = loadSiteCredentials(siteConfig, this.env)));
      return { client: this.client, credentials };
    } catch (e) {
      throw new HttpProblem(503, `the DMP's certificates of site ${site.code} cannot be read: ${(e as Error).message}`);
    }
  }

  /** The professional, calling the DMP for their site: the site's certificate, their RPPS, a strong authentication. */
  private callerFor(principal: Principal, site: Site): { client: DmpClient; caller: DmpCaller } {
    const { client, credentials } = this.credentialsOf(site);
    if (!principal.rpps) throw new HttpProblem(403, 'the DMP is consulted by a professional known by their RPPS (log in with Pro Santé Connect)');
    return {
      client,
      caller: {
        signer: credentials.signer, structure: { id: credentials.config.structureId ?? `1${site.finess}`, name: site.name }, sector: credentials.config.sector,
        subject: { id: principal.rpps, name: principal.name, role: medecin }, mode: 'INDIRECTE_RENFORCEE',
      },
    };
  }

  private who(principal: Principal, source: string) {
    return { ...actorOf(principal), source, via: 'api' as const };
  }

  private refOf(p: LocalPatient): string {
    return patientRef(p.site.code, p.IssuerOfPatientID, p.PatientID);
  }

  /** TD0.2 then ITI-18: the patient's KOS manifests and imaging reports in the DMP. */
  async search(principal: Principal, source: string, patient: LocalPatient, filters: DmpSearchFilters): Promise<DmpSearchResult> {
    const { client, caller } = this.callerFor(principal, patient.site);
    const audited = { action: 'query' as const, ...this.who(principal, source), patients: [this.refOf(patient)] };
    const details = { dmp: 'ITI-18', filters: { ...filters } };
    try {
      const existence = await client.testExistence(caller, patient.ins);
      if (existence.opposition) {
        await this.audit.record({ ...audited, outcome: 'refused', details: { ...details, why: 'the patient opposed professionals\' access to their DMP' } });
        throw new HttpProblem(403, 'the patient opposed professionals\' access to their DMP');
      }
      if (!existence.exists) {
        await this.audit.record({ ...audited, outcome: 'success', details: { ...details, dmp: 'TD0.2', found: 0, why: 'no DMP' } });
        return { dmp: 'none', documents: [] };
      }
      const eventCodes: Coded[] = [];
      if (filters.modality) eventCodes.push({ code: filters.modality.toUpperCase(), scheme: modalityScheme, display: filters.modality.toUpperCase() });
      if (filters.region) {
        const region = anatomicRegionOf(filters.region) ?? { code: filters.region, scheme: '2.16.840.1.113883.6.96', display: filters.region };
        eventCodes.push(region);
      }
      const found = await client.findDocuments(caller, patient.ins, {
        statuses: [xds.approved],
        classCodes: [documentCodes.KOS.classCode, documentCodes['CR-IMG'].classCode],
        ...(eventCodes.length ? { eventCodes } : {}),
        ...(filters.from ? { creationTimeFrom: dateOf(filters.from) } : {}),
        ...(filters.to ? { creationTimeTo: new Date(dateOf(filters.to).getTime() + 86_400_000) } : {}),
      });
      const documents = found.map(consumerDocumentOf).filter((d): d is ConsumerDocument => d !== undefined)
        .filter((d) => !filters.accession || d.AccessionNumber === filters.accession);
      await this.audit.record({ ...audited, outcome: 'success', details: { ...details, found: documents.length } });
      return { dmp: existence.closed ? 'closed' : 'active', documents };
    } catch (e) {
      if (e instanceof HttpProblem) throw e;
      throw await this.dmpFailure(e, audited, details);
    }
  }

  /** ITI-43 of a KOS manifest: remembered for the professional, its study opened to the proxy. */
  async open(principal: Principal, source: string, patient: LocalPatient, doc: { uniqueId: string; repositoryUniqueId: string }): Promise<RemoteStudy> {
    const audited = { action: 'view' as const, ...this.who(principal, source), patients: [this.refOf(patient)] };
    const details = { dmp: 'ITI-43', uniqueId: doc.uniqueId };
    const content = await this.retrieve(principal, patient, doc, audited, details);
    let remote: RemoteStudy;
    try {
      remote = remoteStudyOf(content, patient, doc.uniqueId);
    } catch (e) {
      await this.audit.record({ ...audited, outcome: 'failure', details: { ...details, why: (e as Error).message } });
      throw new HttpProblem(502, `the DMP's document is not a manifest Atrium can open: ${(e as Error).message}`);
    }
    await this.audit.record({ ...audited, outcome: 'success', StudyInstanceUID: remote.StudyInstanceUID, details: { ...details, kos: remote.kos, series: remote.series.size } });
    await this.opened.keep(principal.id, remote, new Date(remote.openedAt + openedForMs));
    return remote;
  }

  /** ITI-43 of a CR-IMG: its narrative as text (the CDA's section titles and texts). */
  async report(principal: Principal, source: string, patient: LocalPatient, doc: { uniqueId: string; repositoryUniqueId: string }): Promise<{ title?: string; text: string }> {
    const audited = { action: 'view' as const, ...this.who(principal, source), patients: [this.refOf(patient)] };
    const details = { dmp: 'ITI-43', uniqueId: doc.uniqueId };
    const content = await this.retrieve(principal, patient, doc, audited, details);
    try {
      const report = narrativeOf(content);
      await this.audit.record({ ...audited, outcome: 'success', details });
      return report;
    } catch (e) {
      await this.audit.record({ ...audited, outcome: 'failure', details: { ...details, why: (e as Error).message } });
      throw new HttpProblem(502, `the DMP's document is not a report Atrium can read: ${(e as Error).message}`);
    }
  }

  private async retrieve(principal: Principal, patient: LocalPatient, doc: { uniqueId: string; repositoryUniqueId: string }, audited: Omit<AuditEvent, 'outcome'>, details: Record<string, unknown>): Promise<Buffer> {
    const { client, caller } = this.callerFor(principal, patient.site);
    try {
      const [found] = await client.retrieveDocuments(caller, patient.ins, [{ repositoryUniqueId: doc.repositoryUniqueId, documentUniqueId: doc.uniqueId }]);
      if (!found) throw new DmpRefusal('XDSMissingDocument', 'the DMP answered without the document');
      return found.content;
    } catch (e) {
      throw await this.dmpFailure(e, audited, details);
    }
  }

  private async dmpFailure(e: unknown, audited: Omit<AuditEvent, 'outcome'>, details: Record<string, unknown>): Promise<HttpProblem> {
    if (e instanceof DmpUnavailable) {
      await this.audit.record({ ...audited, outcome: 'failure', details: { ...details, code: 'unavailable', why: e.message } });
      return new HttpProblem(503, `the DMP does not answer now (${e.message}): try again`);
    }
    if (e instanceof DmpRefusal) {
      await this.audit.record({ ...audited, outcome: 'failure', details: { ...details, code: e.code, why: e.message } });
      return new HttpProblem(502, `the DMP refused or answered what Atrium cannot read: ${e.message}`);
    }
    // A registry answer that is not what ITI-18/43 describe (malformed XML, missing parts).
    await this.audit.record({ ...audited, outcome: 'failure', details: { ...details, code: 'malformed', why: (e as Error).message } });
    return new HttpProblem(502, `the DMP's answer cannot be read: ${(e as Error).message}`);
  }

  /** The manifest the professional opened for this study (on any node), while it lasts. */
  openedStudy(principal: Principal, StudyInstanceUID: string): Promise<RemoteStudy | undefined> {
    return this.opened.find(principal.id, StudyInstanceUID);
  }

  /**
   * One WADO-RS request to the source, for a series the manifest lists (and an instance it
   * lists in it): `path` follows the series' Retrieve URL ('' , '/metadata', '/pixeldata',
   * '/instances/{i}/frames/{f}'). Recorded; the answer is the source's, not kept.
   */
  async fetchFromSource(principal: Principal, source: string, token: string | undefined, remote: RemoteStudy, r: { series: string; instance?: string; path: string; accept?: string }): Promise<Response> {
    const s = remote.series.get(r.series);
    const audited = {
      action: r.path === '' ? 'download' as const : 'view' as const, ...this.who(principal, source), StudyInstanceUID: remote.StudyInstanceUID,
      patients: [this.refOf(remote.patient)],
    };
    const details = { drimbox: 'consumer', kos: remote.kos, series: r.series, ...(r.instance ? { instance: r.instance } : {}), path: r.path || '/' };
    if (!s || (r.instance !== undefined && !s.instances.has(r.instance))) {
      await this.audit.record({ ...audited, outcome: 'refused', details: { ...details, why: s ? 'instance not in the manifest' : 'series not in the manifest' } });
      throw new HttpProblem(404, s ? 'this instance is not in the manifest' : 'this series is not in the manifest');
    }
    if (!token) {
      await this.audit.record({ ...audited, outcome: 'refused', details: { ...details, why: 'no Pro Santé Connect access token in the session' } });
      throw new HttpProblem(401, 'the source DRIMbox needs your Pro Santé Connect login: log in with Pro Santé Connect (again)');
    }
    const url = `${s.url}${r.path}`;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), sourceTimeoutMs);
    let response: Response;
    try {
      response = await fetch(url, {
        headers: { authorization: `Bearer ${token}`, 'KOS-SOPInstanceUID': remote.kos, ...(r.accept ? { accept: r.accept } : {}) },
        signal: controller.signal, redirect: 'error',
      });
    } catch (e) {
      clearTimeout(timer);
      await this.audit.record({ ...audited, outcome: 'failure', details: { ...details, source: new URL(url).origin, why: `unreachable: ${(e as Error).message}` } });
      throw new SourceUnavailable(`the source DRIMbox (${new URL(url).host}) does not answer now: try again later`);
    }
    clearTimeout(timer);
    const outcome = response.ok ? 'success' : response.status === 401 || response.status === 403 || response.status === 404 ? 'refused' : 'failure';
    await this.audit.record({ ...audited, outcome, details: { ...details, source: new URL(url).origin, status: response.status } });
    if (response.ok) return response;
    await response.body?.cancel().catch(() => {});
    if (response.status === 401) throw new HttpProblem(401, 'the source DRIMbox refused your Pro Santé Connect token (expired or revoked): log in with Pro Santé Connect again');
    if (response.status === 404 || response.status === 403) throw new HttpProblem(404, 'the source DRIMbox does not serve this (the manifest may have been replaced: search the DMP again)');
    throw new SourceUnavailable(`the source DRIMbox answered ${response.status}: try again later`);
  }

  /**
   * Stores the manifest's objects in the archive of the patient's site, filed under the local
   * record (its patient module), the INS in Other Patient IDs. Objects the manifest does not
   * list are not kept.
   */
  async importStudy(principal: Principal, source: string, token: string | undefined, remote: RemoteStudy): Promise<{ stored: number; failed: number }> {
    const local = await this.archive.index.patientRecord(remote.patient.recordId);
    if (!local) throw new HttpProblem(404, 'no such patient');
    const extra: DicomElement = { tag: 0x00101002, vr: 'SQ', items: [insOtherPatientIDsItem(remote.patient.ins)] };
    let stored = 0;
    let failed = 0;
    const why: string[] = [];
    for (const [series, s] of remote.series) {
      const response = await this.fetchFromSource(principal, source, token, remote, { series, path: '', accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' });
      let boundary: string | undefined;
      try {
        boundary = parseMediaType(response.headers.get('content-type') ?? '').params.boundary;
      } catch {
        boundary = undefined;
      }
      if (!boundary || !response.body) throw new SourceUnavailable('the source DRIMbox answered without a multipart body: try again later');
      try {
        for await (const part of readMultipart(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), boundary)) {
          const chunks: Buffer[] = [];
          for await (const c of part.body) chunks.push(c as Buffer);
          const object = Buffer.concat(chunks);
          let sop: string | undefined;
          try {
            sop = text(parsePart10(object, { bulkThreshold: 1024 }).dataset, 0x00080018);
          } catch {
            sop = undefined;
          }
          if (!sop || !s.instances.has(sop)) {
            failed++;
            why.push(`${sop ?? 'an unreadable object'}: not in the manifest`);
            continue;
          }
          const coerced = coercePatientModule(object, local.patient, [extra]);
          if (!coerced) {
            failed++;
            why.push(`${sop}: its patient module cannot be rewritten`);
            continue;
          }
          const result = await this.archive.ingestor.ingestInstance(Readable.from([coerced]), { site: remote.patient.site, via: 'import' });
          if (result.ok) stored++;
          else {
            failed++;
            why.push(`${sop}: ${result.error.message}`);
          }
        }
      } catch (e) {
        // The answer broke off or is not the multipart it says: what came is stored, the rest is said.
        if (e instanceof HttpProblem) throw e;
        await this.audit.record({
          action: 'store', outcome: 'failure', ...this.who(principal, source), StudyInstanceUID: remote.StudyInstanceUID,
          patients: [this.refOf(remote.patient)], details: { from: 'drimbox', kos: remote.kos, stored, failed, series, why: (e as Error).message },
        });
        throw new SourceUnavailable(`the source DRIMbox's answer broke off (${stored} object(s) stored): try again later`);
      }
    }
    await this.audit.record({
      action: 'store', outcome: failed === 0 ? 'success' : 'failure', ...this.who(principal, source), StudyInstanceUID: remote.StudyInstanceUID,
      patients: [this.refOf(remote.patient)], details: { from: 'drimbox', kos: remote.kos, stored, failed, ...(why.length ? { why: why.slice(0, 10) } : {}) },
    });
    return { stored, failed };
  }
}

function dateOf(yyyymmdd: string): Date {
  if (!/^[0-9]{8}$/.test(yyyymmdd)) throw new HttpProblem(400, 'dates are YYYYMMDD');
  return new Date(`${yyyymmdd.slice(0, 4)}-${yyyymmdd.slice(4, 6)}-${yyyymmdd.slice(6, 8)}T00:00:00Z`);
}

/** An ITI-18 entry as the portal lists it; undefined for what is neither a KOS nor a CR-IMG. */
function consumerDocumentOf(f: FoundDocument): ConsumerDocument | undefined {
  const kind = f.classCode === documentCodes.KOS.classCode.code && f.typeCode === documentCodes.KOS.typeCode.code ? 'KOS'
    : f.classCode === documentCodes['CR-IMG'].classCode.code && f.typeCode === documentCodes['CR-IMG'].typeCode.code ? 'CR-IMG' : undefined;
  if (!kind || !f.uniqueId || !f.repositoryUniqueId) return undefined;
  // referenceIdList: "value^^^&authority&ISO^type" (CXi).
  const ref = (type: string) => f.referenceIds.find((r) => r.endsWith(`^${type}`))?.split('^')[0];
  const study = ref(xds.studyInstanceUID);
  const accession = ref(xds.accession);
  return {
    kind, uniqueId: f.uniqueId, repositoryUniqueId: f.repositoryUniqueId,
    ...(f.title ? { title: f.title } : {}), ...(f.creationTime ? { creationTime: f.creationTime } : {}),
    ...(study && /^[0-9.]{1,64}$/.test(study) ? { StudyInstanceUID: study } : {}), ...(accession ? { AccessionNumber: accession } : {}),
  };
}

/** A source's Retrieve URL: https, or http on the loopback only (a token is never sent in clear over a network). */
function checkedRetrieveUrl(url: string, study: string, series: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`Retrieve URL ${url} is not a URL`);
  }
  const loopback = u.hostname === '127.0.0.1' || u.hostname === '[::1]' || u.hostname === 'localhost';
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback)) throw new Error(`Retrieve URL ${url} is not https`);
  if (u.search || u.hash || u.username || u.password) throw new Error(`Retrieve URL ${url} carries more than a path`);
  if (!u.pathname.endsWith(`/studies/${study}/series/${series}`)) throw new Error(`Retrieve URL ${url} is not the series' WADO-RS URL`);
  return u.toString().replace(/\/$/, '');
}

/** The study a KOS manifest names: its series with Retrieve URLs and instances; the patient must be the one asked for. */
export function remoteStudyOf(content: Buffer, patient: LocalPatient, uniqueId: string): RemoteStudy {
  const ds = parsePart10(content).dataset;
  if (text(ds, 0x00080016) !== '1.2.840.10008.5.1.4.1.1.88.59') throw new Error('not a Key Object Selection document');
  const kos = text(ds, 0x00080018);
  if (!kos) throw new Error('no SOP Instance UID');
  if (kos !== uniqueId) throw new Error('its SOP Instance UID is not the DMP entry\'s uniqueId');
  if (text(ds, 0x00100020) !== insValue(patient.ins)) throw new Error('it names another patient than the INS asked for');
  const evidence = ds.get(0x0040a375)?.items ?? [];
  if (evidence.length !== 1) throw new Error('it names no study, or several');
  const study = text(evidence[0]!, 0x0020000d);
  if (!study || !/^[0-9.]{1,64}$/.test(study)) throw new Error('its study has no valid UID');
  const series = new Map<string, { url: string; instances: Set<string> }>();
  for (const s of evidence[0]!.get(0x00081115)?.items ?? []) {
    const uid = text(s, 0x0020000e);
    const url = text(s, 0x00081190);
    if (!uid || !/^[0-9.]{1,64}$/.test(uid)) throw new Error('a series without a valid UID');
    if (!url) throw new Error(`series ${uid} has no Retrieve URL`);
    const instances = new Set<string>();
    for (const i of s.get(0x00081199)?.items ?? []) {
      const sop = text(i, 0x00081155);
      if (sop) instances.add(sop);
    }
    series.set(uid, { url: checkedRetrieveUrl(url, study, uid), instances });
  }
  if (series.size === 0) throw new Error('it lists no series');
  const pick = (tag: number) => text(ds, tag);
  const studyAttributes: RemoteStudy['study'] = {};
  for (const [k, tag] of [['StudyDate', 0x00080020], ['StudyTime', 0x00080030], ['AccessionNumber', 0x00080050], ['StudyDescription', 0x00081030],
    ['PatientName', 0x00100010], ['PatientBirthDate', 0x00100030], ['PatientSex', 0x00100040]] as const) {
    const v = pick(tag);
    if (v) studyAttributes[k] = v;
  }
  return { kos, StudyInstanceUID: study, patient, series, study: studyAttributes, openedAt: Date.now() };
}

/** A CDA's title and its sections' titles and texts, as plain text. */
function narrativeOf(content: Buffer): { title?: string; text: string } {
  const doc = parseXml(content.toString('utf8'));
  const root = doc.documentElement;
  if (!root || root.localName !== 'ClinicalDocument') throw new Error('not a CDA document');
  const direct = (e: Element, name: string) => Array.from(e.childNodes).filter((c): c is Element => c.nodeType === 1 && (c as Element).localName === name);
  const title = direct(root, 'title')[0]?.textContent?.trim();
  const lines: string[] = [];
  const sections = Array.from(root.getElementsByTagNameNS('*', 'section'));
  for (const s of sections) {
    const t = direct(s, 'title')[0]?.textContent?.trim();
    const body = direct(s, 'text')[0]?.textContent?.replace(/\s+/g, ' ').trim();
    if (t) lines.push(t);
    if (body) lines.push(body);
  }
  const nonXml = direct(root, 'component').flatMap((c) => direct(c, 'nonXMLBody'));
  if (lines.length === 0 && nonXml.length > 0) lines.push('(PDF)');
  return { ...(title ? { title } : {}), text: lines.join('\n') };
}
