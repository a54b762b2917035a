import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Archive } from '../archive/archive.ts';
import { AuditTrail } from '../access/audit.ts';
import { AccessPolicy } from '../access/policy.ts';
import { actorOf } from '../access/principal.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';
import { RedundancyAlerts, RedundancyError } from '../workflow/redundancy.ts';
import { scopeOfRequest } from './access-scope.ts';

const short = { type: 'string', minLength: 1, maxLength: 64 } as const;

/**
 * /api/redundancy: the redundant-exam alerts of orders and teleradiology requests (the
 * caller's sites'; priors named only as the access policy allows), the requesting
 * professional's decision, and the activity (alerts, cancellations, dose avoided).
 */
export async function redundancyRoutes(app: FastifyInstance, options: { archive: Archive }): Promise<void> {
  const { archive } = options;
  const policy = new AccessPolicy(archive.index.sql);
  const audit = new AuditTrail(archive.index.sql);
  const alerts = new RedundancyAlerts(archive.index.sql, (id) => archive.siteById.get(id)?.code ?? '?');
  app.setErrorHandler(problemErrorHandler('redundancy request'));
  const translated = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof RedundancyError) throw new HttpProblem(e.status, e.message);
      throw e;
    }
  };

  app.get<{ Querystring: { site?: string; kind?: 'order' | 'tele-request'; undecided?: 'true' | 'false' } }>('/alerts', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { site: short, kind: { enum: ['order', 'tele-request'] }, undecided: { enum: ['true', 'false'] } } } },
  }, async (request) => {
    const q = request.query;
    const site = q.site !== undefined ? archive.sites.get(q.site) : undefined;
    if (q.site !== undefined && !site) throw new HttpProblem(400, `unknown site ${q.site}`);
    return alerts.list(request.principal!, await scopeOfRequest(policy, request), {
      ...(site ? { site: site.id } : {}), ...(q.kind ? { kind: q.kind } : {}), undecided: q.undecided === 'true',
    });
  });

  app.post<{ Params: { id: string }; Body: { decision: 'kept' | 'cancelled'; reason?: string } }>('/alerts/:id/decision', {
    schema: {
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9]{1,12}$' } } },
      body: { type: 'object', required: ['decision'], additionalProperties: false, properties: { decision: { enum: ['kept', 'cancelled'] }, reason: { type: 'string', maxLength: 2000 } } },
    },
  }, async (request: FastifyRequest<{ Params: { id: string }; Body: { decision: 'kept' | 'cancelled'; reason?: string } }>) => translated(async () => {
    const decided = await alerts.decide(request.principal!, Number(request.params.id), request.body, await scopeOfRequest(policy, request));
    await audit.record({ action: 'order', outcome: 'success', ...actorOf(request.principal!), source: request.ip, via: 'api', details: { redundancyAlert: decided.id, decision: decided.decision } });
    return decided;
  }));

  app.get<{ Querystring: { from: string; to: string } }>('/activity', {
    schema: { querystring: { type: 'object', required: ['from', 'to'], additionalProperties: false, properties: { from: short, to: short } } },
  }, async (request) => alerts.activity(request.principal!, request.query));
}
