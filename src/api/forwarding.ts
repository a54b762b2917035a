import { homeSiteOf } from '../access/principal.ts';
import { AuditTrail } from '../access/audit.ts';
import { AccessPolicy, scopeCondition, sitesActedFor } from '../access/policy.ts';
import { requireCapability, scopeOfRequest } from './access-scope.ts';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Archive } from '../archive/archive.ts';
import { ForwardingQueue } from '../index/forwarding-queue.ts';
import { prefetchPriors } from '../dimse/routing.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';

export interface ForwardingRoutesOptions {
  /** Its peer directory (archive.peers) names the destinations: the configuration file's peers and the API's. */
  archive: Archive;
}

const destinationSchema = { type: 'string', minLength: 1, maxLength: 16 } as const;

/**
 * /api/forwarding: the forwarding queue's state per destination, requeueing failed rows,
 * and prefetching a patient's priors to a peer. Behind the same bearer token as DICOMweb.
 */
export async function forwardingRoutes(app: FastifyInstance, options: ForwardingRoutesOptions): Promise<void> {
  const { archive } = options;
  const queue = new ForwardingQueue(archive.index.sql);

  app.setErrorHandler(problemErrorHandler('forwarding request'));

  app.addHook('preHandler', requireCapability('forward', new AuditTrail(archive.index.sql)));
  const policy = new AccessPolicy(archive.index.sql);

  // A destination's queue is its peer's site's: an administrator sees and requeues their sites'
  // peers' only (the territory's, every one, and rows of peers no longer configured).
  // Callers read archive.peers.fresh() first: the list as the platform knows it now.
  const actsForDestination = (request: FastifyRequest, destination: string) => {
    const sites = sitesActedFor(request.principal!);
    const site = archive.peers.get(destination)?.site;
    return sites === undefined || (site !== undefined && sites.includes(archive.sites.get(site)?.id ?? -1));
  };

  app.get('/', async (request) => {
    await archive.peers.fresh();
    return { destinations: (await queue.status()).filter((d) => actsForDestination(request, d.destination)) };
  });

  app.post<{ Body: { destination?: string } | undefined }>('/retry-failed', {
    schema: { body: { type: ['object', 'null'], properties: { destination: destinationSchema }, additionalProperties: false } },
  }, async (request) => {
    const asked = request.body?.destination;
    if (sitesActedFor(request.principal!) === undefined) return { requeued: await queue.requeueFailed(asked) };
    // Another site's destination is requeued as one with no failed row: nothing.
    const destinations = (await archive.peers.fresh()).map((p) => p.aeTitle).filter((d) => (asked === undefined || d === asked) && actsForDestination(request, d));
    let requeued = 0;
    for (const d of destinations) requeued += await queue.requeueFailed(d);
    return { requeued };
  });

  app.post<{ Body: { PatientID: string; IssuerOfPatientID?: string; destination: string; maxStudies?: number } }>('/prefetch', {
    schema: {
      body: {
        type: 'object',
        required: ['PatientID', 'destination'],
        properties: {
          PatientID: { type: 'string', minLength: 1, maxLength: 64 },
          IssuerOfPatientID: { type: 'string', minLength: 1, maxLength: 64 },
          destination: destinationSchema,
          maxStudies: { type: 'integer', minimum: 1 },
        },
        additionalProperties: false,
      },
    },
  }, async (request, reply) => {
    const { PatientID, IssuerOfPatientID, destination, maxStudies } = request.body;
    // Images leave only for the caller's sites' peers: another site's peer is answered as one not configured.
    const peer = await archive.peers.find(destination);
    if (!peer || !actsForDestination(request, destination)) throw new HttpProblem(400, `destination ${destination} is not a configured peer`);
    // Without an issuer, the PatientID is one the caller's own site assigned.
    const home = homeSiteOf(request.principal!);
    if (!IssuerOfPatientID && !home) throw new HttpProblem(400, 'IssuerOfPatientID is required: the caller belongs to several sites');
    const issuer = IssuerOfPatientID ?? home!.issuerOfPatientID;
    const queued = await prefetchPriors(archive, queue, { PatientID, IssuerOfPatientID: issuer }, peer, {
      maxStudies, restriction: scopeCondition(await scopeOfRequest(policy, request)),
    });
    return reply.code(202).send({ destination, ...queued });
  });
}
