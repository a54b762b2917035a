import { actorOf } from '../access/principal.ts';
import { requireCapability } from './access-scope.ts';
import { sitesActedFor } from '../access/policy.ts';
import type { FastifyInstance } from 'fastify';
import { AuditTrail } from '../access/audit.ts';
import type { Archive } from '../archive/archive.ts';
import { HttpProblem, problemErrorHandler, sendProblem } from '../dicomweb/problem.ts';
import { decideReview, openReviewsFor } from '../patients/identities.ts';
import {
  checkReviewAgainstInsi, InsiMalformedAnswer, InsiTraitsMissing, InsiUnavailable, migrateInsi, proofsOfIdentity,
  type InsiClient, type ProofOfIdentity,
} from '../patients/insi.ts';

/**
 * /api/identity-reviews: what identitovigilance must decide (candidate links, conflicting
 * traits under one INS, INS conflicts, images naming another patient than their order, several
 * identities at INSi), the decision, and the check of a review's record against INSi. Behind
 * the bearer token; the administrator role comes with OIDC. Every decision and every INSi call
 * is in the audit trail.
 */
export async function identityRoutes(app: FastifyInstance, options: { archive: Archive; insi?: InsiClient }): Promise<void> {
  const { archive } = options;
  await migrateInsi(archive.index.sql);
  app.setErrorHandler(problemErrorHandler('identity review request'));

  const audit = new AuditTrail(archive.index.sql);
  app.addHook('preHandler', requireCapability('review-identities', audit));
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
    await audit.record({
      action: 'identity-review', outcome: 'success', ...actorOf(request.principal!),
      source: request.ip, via: 'api', details: { review: Number(request.params.id), accepted: request.body.accept, ...(personId === undefined ? {} : { personId }) },
    });
    return { id: Number(request.params.id), accepted: request.body.accept, ...(personId === undefined ? {} : { personId }) };
  });

  // The review's record checked against INSi: qualified only with a proof of identity recorded.
  app.post<{ Params: { id: string }; Body: { proofOfIdentity?: ProofOfIdentity } }>('/:id/insi', {
    schema: {
      params: { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9]{1,12}$' } }, required: ['id'] },
      body: { type: 'object', properties: { proofOfIdentity: { type: 'string', enum: [...proofsOfIdentity] } }, additionalProperties: false },
    },
  }, async (request, reply) => {
    const review = Number(request.params.id);
    const proof = request.body?.proofOfIdentity;
    const who = request.principal!;
    const event = { action: 'identity-review' as const, ...actorOf(who), source: request.ip, via: 'api' as const };
    try {
      const check = await checkReviewAgainstInsi(archive.index.sql, options.insi, review, proof, who.id, sitesActedFor(who));
      await audit.record({ ...event, outcome: 'success', details: { review, insi: check.outcome, mode: check.mode, status: check.status, ...(proof ? { proofOfIdentity: proof } : {}), ...(check.reviews.length > 0 ? { opened: check.reviews } : {}) } });
      return { id: review, ...check };
    } catch (e) {
      if (e instanceof InsiMalformedAnswer || e instanceof InsiUnavailable) {
        await audit.record({ ...event, outcome: 'failure', details: { review, insi: e instanceof InsiMalformedAnswer ? 'malformed' : 'unavailable', why: e.message } });
        // Sent here rather than thrown: the plugin's handler hides the detail of a 503, and the team must read why INSi failed.
        return sendProblem(reply, e instanceof InsiMalformedAnswer ? 502 : 503, `${e.message}: nothing was changed`);
      }
      if (e instanceof InsiTraitsMissing) throw new HttpProblem(422, e.message);
      throw e;
    }
  });
}
