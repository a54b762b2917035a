import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AuditTrail } from '../access/audit.ts';
import { actorOf, homeSiteOf } from '../access/principal.ts';
import { AccessPolicy, reasonToSee, sitesActedFor } from '../access/policy.ts';
import { requireCapability, scopeOfRequest } from './access-scope.ts';
import type { Archive } from '../archive/archive.ts';
import { CorrectionError, listCorrections, moveStudy, rejectInstance, undoCorrection } from '../archive/corrections.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';

const uid = { type: 'string', pattern: '^[0-9.]{1,64}$' } as const;
const reason = { type: 'string', minLength: 3, maxLength: 1024 } as const;

/**
 * /api/corrections: move a study to the right patient, reject an object, list what was
 * corrected, undo. Who asked is the calling client (an administrator once OIDC roles land).
 */
export async function correctionRoutes(app: FastifyInstance, options: { archive: Archive }): Promise<void> {
  const { archive } = options;
  const audit = new AuditTrail(archive.index.sql);
  const trace = (request: FastifyRequest, details: Record<string, unknown>, extra: { reason?: string; StudyInstanceUID?: string } = {}) => audit.record({
    action: 'correction', outcome: 'success', ...actorOf(request.principal!), source: request.ip, via: 'api', ...extra, details,
  });
  app.setErrorHandler(problemErrorHandler('correction'));

  app.addHook('preHandler', requireCapability('correct', audit));
  const policy = new AccessPolicy(archive.index.sql);
  // An administrator corrects what their scope lets them see (a site administrator: their sites' exams).
  const mustSee = async (request: FastifyRequest, StudyInstanceUID: string | undefined) => {
    const study = StudyInstanceUID === undefined ? undefined : await archive.index.studyPatient(StudyInstanceUID);
    if (study && reasonToSee(await scopeOfRequest(policy, request), study)) return;
    throw new CorrectionError('not-found', StudyInstanceUID === undefined ? 'the object is not in the archive' : `study ${StudyInstanceUID} is not in the archive`);
  };

  // An administrator lists and undoes their sites' corrections (the territory's: all of them).
  app.get('/', async (request) => ({ corrections: await listCorrections(archive.index.sql, sitesActedFor(request.principal!)) }));

  app.post<{ Body: { StudyInstanceUID: string; PatientID: string; IssuerOfPatientID?: string; reason: string } }>('/study-move', {
    schema: {
      body: {
        type: 'object', required: ['StudyInstanceUID', 'PatientID', 'reason'], additionalProperties: false,
        properties: { StudyInstanceUID: uid, PatientID: { type: 'string', minLength: 1, maxLength: 64 }, IssuerOfPatientID: { type: 'string', minLength: 1, maxLength: 64 }, reason },
      },
    },
  }, async (request, reply) => {
    const site = homeSiteOf(request.principal!);
    if (!site) throw new HttpProblem(400, 'the caller belongs to several sites: the study cannot be filed under one');
    const b = request.body;
    await mustSee(request, b.StudyInstanceUID);
    const { id } = await moveStudy(archive.index.sql, {
      StudyInstanceUID: b.StudyInstanceUID,
      to: { siteId: site.id, IssuerOfPatientID: b.IssuerOfPatientID ?? site.issuerOfPatientID, PatientID: b.PatientID },
      reason: b.reason, requestedBy: request.principal!.id,
    });
    await trace(request, { correction: id, kind: 'study-move', to: b.PatientID }, { reason: b.reason, StudyInstanceUID: b.StudyInstanceUID });
    return reply.code(201).send({ id });
  });

  app.post<{ Body: { SOPInstanceUID: string; reason: string } }>('/reject', {
    schema: { body: { type: 'object', required: ['SOPInstanceUID', 'reason'], additionalProperties: false, properties: { SOPInstanceUID: uid, reason } } },
  }, async (request, reply) => {
    await mustSee(request, (await archive.index.findInstanceBySOPInstanceUID(request.body.SOPInstanceUID))?.StudyInstanceUID);
    const { id } = await rejectInstance(archive, { ...request.body, requestedBy: request.principal!.id });
    await trace(request, { correction: id, kind: 'instance-reject', SOPInstanceUID: request.body.SOPInstanceUID }, { reason: request.body.reason });
    return reply.code(201).send({ id });
  });

  app.post<{ Params: { id: string } }>('/:id/undo', {
    schema: { params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9]{1,12}$' } } } },
  }, async (request) => {
    await undoCorrection(archive, Number(request.params.id), request.principal!.id, sitesActedFor(request.principal!));
    await trace(request, { correction: Number(request.params.id), kind: 'undo' });
    return { id: Number(request.params.id), undone: true };
  });
}
