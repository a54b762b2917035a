import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Archive } from '../archive/archive.ts';
import { AccessRequests, examsElsewhere } from '../access/access-requests.ts';
import { AuditTrail, patientRefOf } from '../access/audit.ts';
import { linkedRecords } from '../access/linked-records.ts';
import { AccessPolicy, may, sitesActedFor } from '../access/policy.ts';
import { actorOf } from '../access/principal.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';
import { requireCapability, scopeOfRequest } from './access-scope.ts';

const uid = { type: 'string', pattern: '^[0-9.]{1,64}$' } as const;

/**
 * /api/access-requests: the viewer's "N exams elsewhere" (the same person's exams at sites the
 * caller may not open, counted, never named), the request for access to them with a reason
 * (recorded, audited as access-request), and the requests for the exams of the caller's
 * sites, for their administrators to read (they answer by sharing, /api/shares).
 */
export async function accessRequestRoutes(app: FastifyInstance, options: { archive: Archive }): Promise<void> {
  const { archive } = options;
  const policy = new AccessPolicy(archive.index.sql);
  const audit = new AuditTrail(archive.index.sql);
  const requests = new AccessRequests(archive.index.sql);
  const who = (request: FastifyRequest) => ({ ...actorOf(request.principal!), source: request.ip, via: 'api' as const });
  app.setErrorHandler(problemErrorHandler('access request'));

  /** The record of a study the caller sees, or a 404 (recorded) as for a study that does not exist. */
  const recordOfStudy = async (request: FastifyRequest, StudyInstanceUID: string) => {
    const study = await archive.index.studyPatient(StudyInstanceUID);
    const scope = await scopeOfRequest(policy, request);
    if (!study || !(await policy.seesAnyExamOf(scope, study.patientId))) {
      await audit.record({ action: 'access-request', outcome: 'refused', ...who(request), StudyInstanceUID });
      throw new HttpProblem(404, `study ${StudyInstanceUID} does not exist`);
    }
    return { patientId: study.patientId, scope };
  };

  app.get<{ Querystring: { StudyInstanceUID: string } }>('/elsewhere', {
    schema: { querystring: { type: 'object', required: ['StudyInstanceUID'], additionalProperties: false, properties: { StudyInstanceUID: uid } } },
  }, async (request, reply) => {
    const { patientId, scope } = await recordOfStudy(request, request.query.StudyInstanceUID);
    const hidden = await examsElsewhere(archive.index.sql, patientId, scope);
    reply.header('cache-control', 'no-store');
    // A number only: neither the sites nor the exams are named to who may not see them.
    return { exams: [...hidden.values()].reduce((a, b) => a + b, 0), mayRequest: may(request.principal!, 'emergency-access') };
  });

  // Those who may break the glass (radiologists, referring physicians) may also ask, with a reason.
  app.post<{ Body: { StudyInstanceUID: string; reason: string } }>('/', {
    preHandler: requireCapability('emergency-access', audit),
    schema: {
      body: {
        type: 'object', required: ['StudyInstanceUID', 'reason'], additionalProperties: false,
        properties: { StudyInstanceUID: uid, reason: { type: 'string', minLength: 10, maxLength: 1024 } },
      },
    },
  }, async (request, reply) => {
    const principal = request.principal!;
    if (principal.userId === undefined) throw new HttpProblem(403, 'access is asked for by a person');
    const { StudyInstanceUID, reason } = request.body;
    const { patientId, scope } = await recordOfStudy(request, StudyInstanceUID);
    const hidden = await examsElsewhere(archive.index.sql, patientId, scope);
    if (hidden.size === 0) throw new HttpProblem(409, 'this person has no exam elsewhere that you may not already open');
    const created = await requests.create({ principal, patientId, StudyInstanceUID, hidden, reason: reason.trim() });
    const record = await archive.index.patientRecord(patientId);
    await audit.record({
      action: 'access-request', outcome: 'success', ...who(request), reason: created.reason, StudyInstanceUID,
      ...(record ? { patients: [patientRefOf(archive.siteById, record)] } : {}),
      details: { accessRequest: created.id, exams: created.exams, sites: created.siteIds.map((id) => archive.siteById.get(id)?.code ?? '?') },
    });
    return reply.code(201).send({ request: { id: created.id, exams: created.exams, createdAt: created.createdAt } });
  });

  /** For the administrators of the sites holding the exams asked for: who asked, why, and which of their records. */
  app.get('/', { preHandler: requireCapability('read-audit', audit) }, async (request) => {
    const principal = request.principal!;
    const mine = sitesActedFor(principal);
    const found = await requests.forReviewer(principal);
    const answer = await Promise.all(found.map(async (r) => {
      const records = await Promise.all((await linkedRecords(archive.index.sql, [r.patientId], 'ins-or-territory')).map((id) => archive.index.patientRecord(id)));
      const here = records.flatMap((rec) => (rec && r.siteIds.includes(rec.siteId) && (mine === undefined || mine.includes(rec.siteId))
        ? [{ site: archive.siteById.get(rec.siteId)?.code ?? '?', PatientID: rec.patient.PatientID }] : []));
      return { id: r.id, requestedBy: r.requestedBy, requesterName: r.requesterName, reason: r.reason, exams: r.exams, createdAt: r.createdAt, records: here };
    }));
    await audit.record({ action: 'query', outcome: 'success', ...who(request), details: { accessRequests: answer.length } });
    return { requests: answer };
  });
}
