import { actorOf } from '../access/principal.ts';
import { requireCapability } from './access-scope.ts';
import { sitesActedFor } from '../access/policy.ts';
import type { FastifyInstance } from 'fastify';
import { AuditTrail } from '../access/audit.ts';
import type { Archive } from '../archive/archive.ts';
import { problemErrorHandler } from '../dicomweb/problem.ts';
import { decideReview, openReviewsFor } from '../patients/identities.ts';

/**
 * /api/identity-reviews: what identitovigilance must decide (candidate links, conflicting
 * traits under one INS, INS conflicts, images naming another patient than their order),
 * and the decision. Behind the bearer token; the administrator role comes with OIDC.
 */
export async function identityRoutes(app: FastifyInstance, options: { archive: Archive }): Promise<void> {
  const { archive } = options;
  app.setErrorHandler(problemErrorHandler('identity review request'));

  app.addHook('preHandler', requireCapability('review-identities', new AuditTrail(archive.index.sql)));
  app.get('/', async (request) => {
    // A site administrator reviews what concerns their sites' patient records; another site's record is not named.
    return { reviews: await openReviewsFor(archive.index.sql, sitesActedFor(request.principal!)) };
  });

  app.post<{ Params: { id: string }; Body: { accept: boolean } }>('/:id', {
    schema: {
      params: { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9]{1,12}$' } }, required: ['id'] },
      body: { type: 'object', required: ['accept'], properties: { accept: { type: 'boolean' } }, additionalProperties: false },
    },
  }, async (request) => {
    const { personId } = await decideReview(archive.index.sql, Number(request.params.id), request.body.accept, sitesActedFor(request.principal!));
    await new AuditTrail(archive.index.sql).record({
      action: 'identity-review', outcome: 'success', ...actorOf(request.principal!),
      source: request.ip, via: 'api', details: { review: Number(request.params.id), accepted: request.body.accept, ...(personId === undefined ? {} : { personId }) },
    });
    return { id: Number(request.params.id), accepted: request.body.accept, ...(personId === undefined ? {} : { personId }) };
  });
}
