import type { FastifyInstance } from 'fastify';
import { AuditTrail } from '../access/audit.ts';
import { sitesActedFor } from '../access/policy.ts';
import type { Archive } from '../archive/archive.ts';
import { problemErrorHandler } from '../dicomweb/problem.ts';
import { listPublications } from '../exchange/dmp/publications.ts';
import { requireCapability } from './access-scope.ts';

/**
 * /api/dmp/publications: where each document's DMP publication stands (queued, published,
 * refused with the DMP's code, not sent for want of a qualified INS, opposed...), for the
 * caller's sites only; by study with ?StudyInstanceUID=, by site with ?site=. Site
 * administrators, as for forwarding.
 */
export async function dmpRoutes(app: FastifyInstance, options: { archive: Archive }): Promise<void> {
  const { archive } = options;
  app.setErrorHandler(problemErrorHandler('DMP publication request'));
  app.addHook('preHandler', requireCapability('forward', new AuditTrail(archive.index.sql)));

  app.get<{ Querystring: { StudyInstanceUID?: string; site?: string; limit?: number } }>('/publications', {
    schema: {
      querystring: {
        type: 'object',
        properties: {
          StudyInstanceUID: { type: 'string', pattern: '^[0-9.]{1,64}$' }, site: { type: 'string', minLength: 1, maxLength: 32 },
          limit: { type: 'integer', minimum: 1, maximum: 1000 },
        },
        additionalProperties: false,
      },
    },
  }, async (request) => {
    // One site asked: among the caller's; another site's is answered as one with no publication.
    const mine = sitesActedFor(request.principal!);
    const asked = request.query.site === undefined ? undefined : archive.sites.get(request.query.site)?.id ?? -1;
    const sites = asked === undefined ? mine : mine === undefined || mine.includes(asked) ? [asked] : [];
    return { publications: await listPublications(archive.index.sql, (id) => archive.siteById.get(id)?.code, {
      sites,
      ...(request.query.StudyInstanceUID !== undefined ? { StudyInstanceUID: request.query.StudyInstanceUID } : {}),
      ...(request.query.limit !== undefined ? { limit: request.query.limit } : {}),
    }) };
  });
}
