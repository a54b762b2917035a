import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AuditTrail } from '../access/audit.ts';
import { actorOf, homeSiteOf } from '../access/principal.ts';
import { sitesActedFor } from '../access/policy.ts';
import { requireCapability } from './access-scope.ts';
import type { Archive } from '../archive/archive.ts';
import { deleteStudy, LifecycleError, listDeletions, listDueStudies, listHolds, placeHold, releaseHold, type Actor } from '../archive/lifecycle.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';

const uid = { type: 'string', pattern: '^[0-9.]{1,64}$' } as const;
const reason = { type: 'string', minLength: 3, maxLength: 1024 } as const;

/** The caller as the lifecycle functions want them: audit identity and the sites they act for. */
function actorOfRequest(request: FastifyRequest, via: 'api' | 'dicomweb'): Actor {
  const p = request.principal!;
  const siteIds = sitesActedFor(p);
  return { audit: { ...actorOf(p), source: request.ip, via }, ...(siteIds !== undefined ? { siteIds } : {}) };
}

/** A lifecycle refusal on the wire: absent (or another site's) 404, held or not due 409. */
function asProblem(e: unknown): unknown {
  if (e instanceof LifecycleError) return new HttpProblem(e.code === 'not-found' ? 404 : 409, e.message);
  return e;
}

/**
 * /api/lifecycle: the studies past their retention (listed by the daily evaluation), the
 * approval that withdraws one, the deletion records, the legal holds. Administrators of the
 * study's site (the territory's: every site), as for corrections.
 */
export async function lifecycleRoutes(app: FastifyInstance, options: { archive: Archive }): Promise<void> {
  const { archive } = options;
  const audit = new AuditTrail(archive.index.sql);
  app.setErrorHandler(problemErrorHandler('lifecycle'));
  app.addHook('preHandler', requireCapability('correct', audit));

  app.get('/due', async (request) => ({ due: await listDueStudies(archive, sitesActedFor(request.principal!)) }));
  app.get('/deletions', async (request) => ({ deletions: await listDeletions(archive, sitesActedFor(request.principal!)) }));
  app.get('/holds', async (request) => ({ holds: await listHolds(archive, sitesActedFor(request.principal!)) }));

  app.post<{ Body: { StudyInstanceUID: string; reason?: string } }>('/approvals', {
    schema: { body: { type: 'object', required: ['StudyInstanceUID'], additionalProperties: false, properties: { StudyInstanceUID: uid, reason } } },
  }, async (request, reply) => {
    try {
      const record = await deleteStudy(archive, actorOfRequest(request, 'api'), { StudyInstanceUID: request.body.StudyInstanceUID, basis: 'retention', ...(request.body.reason ? { reason: request.body.reason } : {}) });
      return reply.code(201).send({ deletion: record });
    } catch (e) {
      throw asProblem(e);
    }
  });

  app.post<{ Body: { StudyInstanceUID?: string; PatientID?: string; IssuerOfPatientID?: string; site?: string; reason: string } }>('/holds', {
    schema: {
      body: {
        type: 'object', required: ['reason'], additionalProperties: false,
        properties: { StudyInstanceUID: uid, PatientID: { type: 'string', minLength: 1, maxLength: 64 }, IssuerOfPatientID: { type: 'string', minLength: 1, maxLength: 64 }, site: { type: 'string', maxLength: 32 }, reason },
      },
    },
  }, async (request, reply) => {
    const b = request.body;
    const by = actorOfRequest(request, 'api');
    try {
      if (b.StudyInstanceUID !== undefined) return reply.code(201).send({ hold: await placeHold(archive, by, { StudyInstanceUID: b.StudyInstanceUID }, b.reason) });
      if (b.PatientID === undefined) throw new HttpProblem(400, 'a legal hold names a study (StudyInstanceUID) or a patient record (PatientID)');
      const site = b.site !== undefined ? archive.sites.get(b.site) : homeSiteOf(request.principal!);
      if (!site) throw new HttpProblem(400, b.site !== undefined ? 'no such site' : 'the caller belongs to several sites: name the patient record\'s site');
      return reply.code(201).send({ hold: await placeHold(archive, by, { siteId: site.id, IssuerOfPatientID: b.IssuerOfPatientID ?? site.issuerOfPatientID, PatientID: b.PatientID }, b.reason) });
    } catch (e) {
      throw asProblem(e);
    }
  });

  app.delete<{ Params: { id: string } }>('/holds/:id', {
    schema: { params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9]{1,12}$' } } } },
  }, async (request) => {
    try {
      await releaseHold(archive, actorOfRequest(request, 'api'), Number(request.params.id));
      return { id: Number(request.params.id), released: true };
    } catch (e) {
      throw asProblem(e);
    }
  });
}

/**
 * DELETE /dicom-web/studies/{study} (as dcm4chee-arc offers it): an administrator withdraws a
 * study through the same path as a retention approval (rejection note, deletion record, audit),
 * whatever its retention; refused under a legal hold.
 */
export async function dicomwebDeleteRoutes(app: FastifyInstance, options: { archive: Archive }): Promise<void> {
  const { archive } = options;
  app.setErrorHandler(problemErrorHandler('study deletion'));
  app.addHook('preHandler', requireCapability('correct', new AuditTrail(archive.index.sql), 'dicomweb'));
  app.delete<{ Params: { study: string } }>('/studies/:study', async (request, reply) => {
    try {
      await deleteStudy(archive, actorOfRequest(request, 'dicomweb'), { StudyInstanceUID: request.params.study, basis: 'administrator' });
    } catch (e) {
      throw asProblem(e);
    }
    return reply.code(204).send();
  });
}
