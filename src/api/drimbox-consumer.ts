/**
 * The DRIMbox consumer's routes (src/exchange/drimbox-consumer.ts), under /api/drimbox, for a
 * professional logged in to the portal (the DMP is consulted in their name; the source is
 * called with their Pro Santé Connect access token, which the session keeps on the server):
 *
 * - GET  /documents?site&PatientID[&modality&region&from&to&accession]: the patient's KOS and
 *   CR-IMG in the DMP (TD0.2, ITI-18), by the local record's qualified INS;
 * - GET  /report?site&PatientID&uniqueId&repositoryUniqueId: a CR-IMG's text (ITI-43);
 * - POST /open {site, PatientID, uniqueId, repositoryUniqueId}: a KOS retrieved (ITI-43) and its
 *   study opened to the viewer, which then reads /api/drimbox/dicom-web (the proxy);
 * - GET  /dicom-web/studies?StudyInstanceUID, /studies/{S}/series, /studies/{S}/series/{Se}/metadata,
 *   /studies/{S}/series/{Se}/instances/{I}/frames/{F} and …/bulk/{tag}: what the viewer reads, from the source;
 * - POST /studies/{S}/import: the study's objects stored in the patient's site archive.
 *
 * And the RIS's contextual call, POST /drimbox/context (a form: INS, traits, local PatientID and
 * issuer, the information/consent flag), answered with a redirect to the patient's page.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Archive } from '../archive/archive.ts';
import { AuditTrail, patientRef } from '../access/audit.ts';
import type { Authenticator } from '../access/login.ts';
import { AccessPolicy } from '../access/policy.ts';
import { actorOf } from '../access/principal.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';
import { DrimboxConsumer, type LocalPatient, type RemoteStudy } from '../exchange/drimbox-consumer.ts';
import { patientIdentityOf } from '../exchange/study-documents.ts';
import { INS_OIDS, INSError, parseINS, shareableINS } from '../patients/ins.ts';
import { scopeOfRequest } from './access-scope.ts';

const text = { type: 'string', minLength: 1, maxLength: 64 } as const;
const uid = { type: 'string', pattern: '^[0-9]+(\\.[0-9]+)*$', maxLength: 64 } as const;
const date = { type: 'string', pattern: '^[0-9]{8}$' } as const;

/** A DICOM JSON attribute's first value as text. */
const str = (ds: Record<string, { Value?: unknown[] }>, t: string) => {
  const v = ds[t]?.Value?.[0];
  return v === undefined || v === null ? undefined : String(v);
};
const tag = { Modality: '00080060', SeriesDescription: '0008103E', SeriesNumber: '00200011' } as const;

interface PatientQuery { site: string; PatientID: string; IssuerOfPatientID?: string }
interface DocumentRef { uniqueId: string; repositoryUniqueId: string }

export const contextPath = '/drimbox/context';

export async function drimboxConsumerRoutes(app: FastifyInstance, options: { archive: Archive; authenticator: Authenticator; consumer: DrimboxConsumer }): Promise<void> {
  const { archive, authenticator, consumer } = options;
  const audit = new AuditTrail(archive.index.sql);
  const policy = new AccessPolicy(archive.index.sql);
  app.setErrorHandler(problemErrorHandler('DRIMbox consumer request'));

  /** A professional logged in to the portal; machine clients and share links do not consult the DMP. */
  const professional = (request: FastifyRequest) => {
    const p = request.principal!;
    if (p.kind !== 'user' || p.roles.length === 0 || p.roles.every((r) => r === 'patient')) {
      throw new HttpProblem(403, 'the DMP is consulted by a professional logged in to the portal');
    }
    return p;
  };
  const tokenOf = async (request: FastifyRequest) => request.sessionCookie ? authenticator.accessTokenOfSession(request.sessionCookie) : undefined;

  /** The local record named, if the caller may see it, with its qualified INS. */
  const localPatient = async (request: FastifyRequest, q: PatientQuery): Promise<LocalPatient> => {
    const site = archive.sites.get(q.site);
    if (!site) throw new HttpProblem(400, `unknown site ${q.site}`);
    const IssuerOfPatientID = q.IssuerOfPatientID ?? site.issuerOfPatientID;
    const recordId = await archive.index.patientRecordId(site.id, IssuerOfPatientID, q.PatientID);
    const scope = await scopeOfRequest(policy, request);
    if (recordId === undefined || !(await policy.seesAnyExamOf(scope, recordId))) {
      await audit.record({ action: 'query', outcome: 'refused', ...actorOf(request.principal!), source: request.ip, via: 'api', details: { drimbox: 'consumer', query: { site: q.site, PatientID: q.PatientID } } });
      throw new HttpProblem(404, 'no such patient');
    }
    const record = (await archive.index.patientRecord(recordId))!;
    const identity = await patientIdentityOf(archive.index.sql, recordId);
    const ins = identity ? shareableINS(identity) : undefined;
    if (!ins) throw new HttpProblem(409, 'the patient\'s identity is not qualified: the DMP is searched by a qualified INS only');
    return {
      site, recordId, PatientID: record.patient.PatientID, IssuerOfPatientID: record.patient.IssuerOfPatientID, ins,
      ...(record.patient.PatientName ? { PatientName: record.patient.PatientName } : {}),
      ...(record.patient.PatientBirthDate ? { PatientBirthDate: record.patient.PatientBirthDate } : {}),
      ...(record.patient.PatientSex ? { PatientSex: record.patient.PatientSex } : {}),
    };
  };

  /** The study the caller opened from the DMP; 404 (recorded) otherwise. */
  const opened = async (request: FastifyRequest, study: string): Promise<RemoteStudy> => {
    const principal = professional(request);
    const remote = await consumer.openedStudy(principal, study);
    if (!remote) {
      await audit.record({ action: 'view', outcome: 'refused', ...actorOf(principal), source: request.ip, via: 'api', StudyInstanceUID: study, details: { drimbox: 'consumer', why: 'no manifest opened for this study' } });
      throw new HttpProblem(404, 'this study was not opened from the DMP (or it was an hour ago): open it from the patient\'s page again');
    }
    return remote;
  };

  const patientQuery = { site: text, PatientID: text, IssuerOfPatientID: text };

  app.get<{ Querystring: PatientQuery & { modality?: string; region?: string; from?: string; to?: string; accession?: string } }>('/documents', {
    schema: {
      querystring: {
        type: 'object', additionalProperties: false, required: ['site', 'PatientID'],
        properties: { ...patientQuery, modality: { type: 'string', pattern: '^[A-Z]{2,4}$' }, region: { type: 'string', pattern: '^[A-Za-z0-9_]{1,32}$' }, from: date, to: date, accession: { type: 'string', minLength: 1, maxLength: 16 } },
      },
    },
  }, async (request, reply) => {
    const principal = professional(request);
    const { modality, region, from, to, accession, ...q } = request.query;
    const patient = await localPatient(request, q);
    const found = await consumer.search(principal, request.ip, patient, {
      ...(modality ? { modality } : {}), ...(region ? { region } : {}), ...(from ? { from } : {}), ...(to ? { to } : {}), ...(accession ? { accession } : {}),
    });
    reply.header('cache-control', 'no-store');
    return found;
  });

  const documentRef = { uniqueId: uid, repositoryUniqueId: uid };

  app.get<{ Querystring: PatientQuery & DocumentRef }>('/report', {
    schema: { querystring: { type: 'object', additionalProperties: false, required: ['site', 'PatientID', 'uniqueId', 'repositoryUniqueId'], properties: { ...patientQuery, ...documentRef } } },
  }, async (request, reply) => {
    const principal = professional(request);
    const { uniqueId, repositoryUniqueId, ...q } = request.query;
    const patient = await localPatient(request, q);
    reply.header('cache-control', 'no-store');
    return consumer.report(principal, request.ip, patient, { uniqueId, repositoryUniqueId });
  });

  app.post<{ Body: PatientQuery & DocumentRef }>('/open', {
    schema: { body: { type: 'object', additionalProperties: false, required: ['site', 'PatientID', 'uniqueId', 'repositoryUniqueId'], properties: { ...patientQuery, ...documentRef } } },
  }, async (request) => {
    const principal = professional(request);
    const { uniqueId, repositoryUniqueId, ...q } = request.body;
    const patient = await localPatient(request, q);
    const remote = await consumer.open(principal, request.ip, patient, { uniqueId, repositoryUniqueId });
    // The source is asked once now, so that a source down or a token it refuses is said here, with a retry, not as an empty viewer.
    const [series] = remote.series.keys();
    const probe = await consumer.fetchFromSource(principal, request.ip, await tokenOf(request), remote, { series: series!, path: '/metadata', accept: 'application/dicom+json' });
    await probe.body?.cancel().catch(() => {});
    return { StudyInstanceUID: remote.StudyInstanceUID, kos: remote.kos, series: remote.series.size, sources: [...new Set([...remote.series.values()].map((s) => new URL(s.url).host))] };
  });

  app.post<{ Params: { study: string } }>('/studies/:study/import', { schema: { params: { type: 'object', properties: { study: uid } } } }, async (request, reply) => {
    const principal = professional(request);
    const remote = await opened(request, request.params.study);
    // Into the archive of a site the professional works at (the patient's record is there).
    if (!principal.sites.some((s) => s.id === remote.patient.site.id) || !principal.roles.some((r) => r !== 'patient' && r !== 'referring-physician')) {
      await audit.record({ action: 'store', outcome: 'refused', ...actorOf(principal), source: request.ip, via: 'api', StudyInstanceUID: remote.StudyInstanceUID, patients: [patientRef(remote.patient.site.code, remote.patient.IssuerOfPatientID, remote.patient.PatientID)], details: { from: 'drimbox', why: 'not a member of the patient\'s site who may store' } });
      throw new HttpProblem(403, `only a professional of ${remote.patient.site.code} who may store imports into its archive`);
    }
    const result = await consumer.importStudy(principal, request.ip, await tokenOf(request), remote);
    return reply.code(result.failed === 0 ? 200 : 207).send({ StudyInstanceUID: remote.StudyInstanceUID, ...result });
  });

  // What the viewer reads (web/src/viewer/data-source.ts), answered from the manifest and the source.
  app.get<{ Querystring: { StudyInstanceUID?: string } }>('/dicom-web/studies', {
    schema: { querystring: { type: 'object', required: ['StudyInstanceUID'], properties: { StudyInstanceUID: uid } } },
  }, async (request, reply) => {
    professional(request);
    const remote = await opened(request, request.query.StudyInstanceUID!);
    const s = remote.study;
    const v = (vr: string, value: unknown) => ({ vr, Value: [value] });
    reply.header('content-type', 'application/dicom+json').header('cache-control', 'no-store');
    return [{
      '0020000D': v('UI', remote.StudyInstanceUID),
      ...(s.StudyDate ? { '00080020': v('DA', s.StudyDate) } : {}),
      ...(s.AccessionNumber ? { '00080050': v('SH', s.AccessionNumber) } : {}),
      '00100010': v('PN', { Alphabetic: remote.patient.PatientName ?? s.PatientName ?? '' }),
      '00100020': v('LO', remote.patient.PatientID),
      '00201206': v('IS', remote.series.size),
    }];
  });

  app.get<{ Params: { study: string } }>('/dicom-web/studies/:study/series', async (request, reply) => {
    const principal = professional(request);
    const remote = await opened(request, request.params.study);
    const token = await tokenOf(request);
    const list = [];
    for (const [series, s] of remote.series) {
      const r = await consumer.fetchFromSource(principal, request.ip, token, remote, { series, path: '/metadata', accept: 'application/dicom+json' });
      const instances = (await r.json().catch(() => [])) as Array<Record<string, { Value?: unknown[] }>>;
      const first = instances[0] ?? {};
      list.push({
        '0020000D': { vr: 'UI', Value: [remote.StudyInstanceUID] }, '0020000E': { vr: 'UI', Value: [series] },
        '00080060': { vr: 'CS', Value: [str(first, tag.Modality) ?? ''] }, '0008103E': { vr: 'LO', Value: [str(first, tag.SeriesDescription) ?? ''] },
        '00200011': { vr: 'IS', Value: [Number(str(first, tag.SeriesNumber) ?? 0)] }, '00201209': { vr: 'IS', Value: [s.instances.size] },
      });
    }
    reply.header('content-type', 'application/dicom+json').header('cache-control', 'no-store');
    return list;
  });

  const pass = async (reply: FastifyReply, response: Response) => {
    for (const h of ['content-type', 'content-length']) {
      const value = response.headers.get(h);
      if (value) reply.header(h, value);
    }
    reply.header('cache-control', 'no-store');
    return reply.send(response.body ? Readable.fromWeb(response.body as import('node:stream/web').ReadableStream) : '');
  };

  app.get<{ Params: { study: string; series: string } }>('/dicom-web/studies/:study/series/:series/metadata', async (request, reply) => {
    const principal = professional(request);
    const remote = await opened(request, request.params.study);
    return pass(reply, await consumer.fetchFromSource(principal, request.ip, await tokenOf(request), remote, { series: request.params.series, path: '/metadata', accept: 'application/dicom+json' }));
  });

  app.get<{ Params: { study: string; series: string; instance: string; frames: string } }>('/dicom-web/studies/:study/series/:series/instances/:instance/frames/:frames', async (request, reply) => {
    const principal = professional(request);
    const remote = await opened(request, request.params.study);
    const { series, instance, frames } = request.params;
    if (!/^[0-9]{1,6}(,[0-9]{1,6}){0,99}$/.test(frames)) throw new HttpProblem(400, 'frames are numbers separated by commas');
    const accept = typeof request.headers.accept === 'string' ? request.headers.accept : 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
    return pass(reply, await consumer.fetchFromSource(principal, request.ip, await tokenOf(request), remote, { series, instance, path: `/instances/${instance}/frames/${frames}`, accept }));
  });

  // An encapsulated document's bytes (a report PDF in the study), for the viewer's document panel.
  app.get<{ Params: { study: string; series: string; instance: string; tagPath: string } }>('/dicom-web/studies/:study/series/:series/instances/:instance/bulk/:tagPath', async (request, reply) => {
    const principal = professional(request);
    const remote = await opened(request, request.params.study);
    const { series, instance, tagPath } = request.params;
    if (!/^[0-9A-Fa-f]{8}$/.test(tagPath)) throw new HttpProblem(400, 'the bulk data of one top-level attribute (its tag, 8 hex digits)');
    return pass(reply, await consumer.fetchFromSource(principal, request.ip, await tokenOf(request), remote, { series, instance, path: `/instances/${instance}/bulk/${tagPath}`, accept: 'application/octet-stream' }));
  });
}

/**
 * The RIS's contextual call: a form posted by the professional's browser from the RIS (so
 * without Atrium's session cookie, which is SameSite). Nothing is read or written here: the
 * INS is checked for its form and key, the consent flag must be set, the issuer must be a
 * site's; the browser is sent (303) to the patient's page, which checks the session and
 * searches the DMP by the local record's qualified INS.
 */
export async function drimboxContextRoute(app: FastifyInstance, options: { archive: Archive }): Promise<void> {
  const { archive } = options;
  app.setErrorHandler(problemErrorHandler('DRIMbox context'));
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16_384 }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  app.post<{ Body: Record<string, string | undefined> }>(contextPath, async (request, reply) => {
    const b = request.body ?? {};
    const field = (name: string) => typeof b[name] === 'string' && b[name]!.trim() !== '' ? b[name]!.trim() : undefined;
    const PatientID = field('PatientID');
    const issuer = field('IssuerOfPatientID');
    const insText = field('ins');
    if (!PatientID || PatientID.length > 64 || !issuer || !insText) throw new HttpProblem(400, 'the context names the patient: ins, PatientID and IssuerOfPatientID');
    try {
      parseINS(insText, field('insOid') ?? INS_OIDS.NIR);
    } catch (e) {
      if (e instanceof INSError) throw new HttpProblem(400, `the INS is not valid: ${e.message}`);
      throw e;
    }
    // The patient was informed and did not object (CSP L.1111-15): without it, no DMP access.
    if (!['true', '1', 'yes', 'oui'].includes((field('consent') ?? '').toLowerCase())) throw new HttpProblem(403, 'the patient\'s information and consent flag is not set: the DMP is not consulted');
    const site = [...archive.sites.values()].find((s) => s.issuerOfPatientID === issuer || s.code === issuer);
    if (!site) throw new HttpProblem(400, `no site of this platform issues patient identifiers as ${issuer}`);
    return reply.redirect(`/app/patients?${new URLSearchParams({ site: site.code, PatientID, dmp: '1' })}`, 303);
  });
}
