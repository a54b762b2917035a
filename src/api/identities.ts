import { actorOf } from '../access/principal.ts';
import { requireCapability } from './access-scope.ts';
import { sitesActedFor } from '../access/policy.ts';
import type { FastifyInstance } from 'fastify';
import { AuditTrail } from '../access/audit.ts';
import type { Archive } from '../archive/archive.ts';
import { problemErrorHandler } from '../dicomweb/problem.ts';
import { decideReview, openReviews } from '../patients/identities.ts';

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
    // A site administrator reviews what concerns their sites' patient records.
    const siteIds = sitesActedFor(request.principal!);
    const reviews = await openReviews(archive.index.sql);
    // Patient records are named by site and PatientID, the way the sites know them.
    const ids = [...new Set(reviews.flatMap((r) => [r.patientId, ...(r.otherPatientId ? [r.otherPatientId] : [])]))];
    const records = new Map<number, { site: string; PatientID: string; IssuerOfPatientID: string }>();
    for (const id of ids) {
      const row = await archive.index.sql.get<{ code: string; patient_id: string; issuer: string }>(
        'SELECT s.code, p.patient_id, p.issuer FROM patients p JOIN sites s ON s.id = p.site_id WHERE p.id = ?', [id],
      );
      if (row) records.set(id, { site: row.code, PatientID: row.patient_id, IssuerOfPatientID: row.issuer });
    }
    const concerns = (id: number | undefined) => id !== undefined && siteIds!.some((s) => archive.siteById.get(s)?.code === records.get(id)?.site);
    const visible = siteIds === undefined ? reviews : reviews.filter((r) => concerns(r.patientId) || concerns(r.otherPatientId ?? undefined));
    return {
      reviews: visible.map((r) => ({
        id: r.id, kind: r.kind, details: r.details,
        record: records.get(r.patientId),
        ...(r.otherPatientId ? { otherRecord: records.get(r.otherPatientId) } : {}),
      })),
    };
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
