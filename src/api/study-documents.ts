import type { FastifyInstance, FastifyRequest } from 'fastify';
import { siteReportDeliveries } from '../exchange/mssante/site-reports.ts';
import { AuditTrail, patientRefOf, type AuditEvent } from '../access/audit.ts';
import { AccessPolicy, may, reasonToSee } from '../access/policy.ts';
import { actorOf } from '../access/principal.ts';
import type { Archive } from '../archive/archive.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';
import type { StudyPatient } from '../index/archive-index.ts';
import { listStudyDocuments, loadStudyDocument, StudyDocuments, type StudyDocument } from '../exchange/study-documents.ts';
import { scopeOfRequest } from './access-scope.ts';

const params = {
  type: 'object', required: ['study'],
  properties: { study: { type: 'string', pattern: '^[0-9.]{1,64}$' }, document: { type: 'string', pattern: '^[0-9]{1,12}$' } },
} as const;

interface Params { study: string; document?: string }

/** A document as listed: what it is (type, LOINC or CI-SIS code, class), its version, its DMP publication status. */
function listed(d: StudyDocument, base: string) {
  return {
    id: d.id, type: d.kind, typeCode: { code: d.typeCode, system: d.typeCodeSystem }, classCode: d.classCode, mimeType: d.mimeType,
    uniqueId: d.uniqueId, version: d.version, current: d.current, ...(d.replacesId !== undefined ? { replaces: d.replacesId } : {}),
    publicationStatus: d.publicationStatus, ...(d.publishedAt !== undefined ? { publishedAt: d.publishedAt } : {}), createdAt: d.createdAt,
    href: `${base}/${d.id}`,
  };
}

/**
 * /api/studies/{StudyInstanceUID}/documents: the study's documents for the DMP (CR-IMG, KOS
 * manifest), each read as itself (the CDA as XML, the KOS as DICOM), and the manifest made on
 * demand. Every call is decided as a read of the study and recorded; another site's study is
 * answered as one that does not exist.
 */
export async function studyDocumentRoutes(app: FastifyInstance, options: { archive: Archive; publicBaseUrl?: string }): Promise<void> {
  const { archive } = options;
  const audit = new AuditTrail(archive.index.sql);
  const policy = new AccessPolicy(archive.index.sql);
  const documents = new StudyDocuments(archive, { ...(options.publicBaseUrl !== undefined ? { publicBaseUrl: options.publicBaseUrl } : {}) }, app.log);
  const studies = new WeakMap<FastifyRequest, StudyPatient>();
  const record = (request: FastifyRequest, action: AuditEvent['action'], outcome: AuditEvent['outcome'], study: StudyPatient, details: Record<string, unknown>) => audit.record({
    action, outcome, ...actorOf(request.principal!), source: request.ip, via: 'api', StudyInstanceUID: study.StudyInstanceUID,
    patients: [patientRefOf(archive.siteById, study)], details: { route: request.routeOptions.url, method: request.method, ...details },
  });
  const notInArchive = (uid: string) => new HttpProblem(404, `study ${uid} is not in the archive`);

  app.setErrorHandler(problemErrorHandler('study documents'));

  // Decided before anything is read or built: what the caller may not see is not there.
  app.addHook('preHandler', async (request: FastifyRequest) => {
    const { study: uid, document } = request.params as Params;
    const study = await archive.index.studyPatient(uid);
    if (!study) throw notInArchive(uid);
    const access = reasonToSee(await scopeOfRequest(policy, request), study);
    const action = request.method === 'POST' ? 'store' : document !== undefined ? 'download' : 'view';
    await record(request, action, access ? 'success' : 'refused', study, { ...(document !== undefined ? { document: Number(document) } : {}), ...(access ? { access } : {}) });
    if (!access) throw notInArchive(uid);
    studies.set(request, study);
  });

  app.get<{ Params: Params }>('/:study/documents', { schema: { params } }, async (request) => {
    const { study } = request.params;
    // Due documents (a report just signed, a study just changed) are built before they are listed.
    await documents.buildIfDue(study);
    const base = `${options.publicBaseUrl ?? ''}/api/studies/${study}/documents`;
    // A report received from the site's RIS also goes over MSSanté (src/exchange/mssante/site-reports.ts): where it went.
    const mssante = await siteReportDeliveries(archive.index.sql, study);
    return { StudyInstanceUID: study, documents: (await listStudyDocuments(archive.index.sql, study)).map((d) => listed(d, base)), ...(mssante.length > 0 ? { mssante } : {}) };
  });

  app.get<{ Params: Params }>('/:study/documents/:document', { schema: { params } }, async (request, reply) => {
    const { study, document } = request.params;
    await documents.buildIfDue(study);
    const found = await loadStudyDocument(archive.index.sql, Number(document));
    if (!found || found.document.StudyInstanceUID !== study) throw new HttpProblem(404, `study ${study} has no document ${document}`);
    const d = found.document;
    return reply.type(d.mimeType === 'text/xml' ? 'text/xml; charset=utf-8' : d.mimeType)
      .header('Content-Disposition', `attachment; filename="${d.kind}-${d.version}.${d.mimeType === 'text/xml' ? 'xml' : 'dcm'}"`)
      .send(found.content);
  });

  // The manifest on demand (a study without a report, a viewer about to share it).
  app.post<{ Params: Params }>('/:study/documents/manifest', { schema: { params } }, async (request, reply) => {
    const study = studies.get(request)!;
    if (!may(request.principal!, 'store')) throw new HttpProblem(403, 'this caller may not make documents');
    try {
      const made = await documents.buildManifest(study.StudyInstanceUID);
      return reply.code(201).send(listed(made, `${options.publicBaseUrl ?? ''}/api/studies/${study.StudyInstanceUID}/documents`));
    } catch (e) {
      await record(request, 'store', 'failure', study, { document: 'KOS', why: (e as Error).message });
      throw e;
    }
  });
}
