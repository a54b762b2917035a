import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Site } from '../index/records.ts';
import type { Principal } from '../access/principal.ts';
import { sendProblem } from '../dicomweb/problem.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling; set by the authentication hook on every route but the public ones. */
    principal?: Principal;
  }
}

/** A machine client holding a static API key (embedded installs, the platform's own integrations). */
export interface ApiClient {
  name: string;
  tokenSha256: string;
  site: Site;
  /** Trusted for the whole territory rather than its own site. */
  territory: boolean;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Routes reachable without authentication (they carry no patient data). */
export function isPublicRoute(url: string): boolean {
  return url === '/health';
}

/**
 * Every route but the public ones requires a known caller. API keys are compared by their
 * SHA-256 in constant time; the keys themselves are never stored.
 */
export function registerAuthentication(app: FastifyInstance, clients: ApiClient[]): void {
  const known = clients.map((c) => ({ ...c, digest: Buffer.from(c.tokenSha256, 'hex') }));
  app.decorateRequest('principal', undefined);
  app.addHook('onRequest', async (request, reply) => {
    if (isPublicRoute(request.url)) return;
    const principal = apiKeyPrincipal(request, known);
    if (!principal) {
      reply.header('WWW-Authenticate', 'Bearer realm="atrium"');
      return sendProblem(reply, 401, 'a valid bearer token is required');
    }
    request.principal = principal;
  });
}

function apiKeyPrincipal(request: FastifyRequest, known: Array<ApiClient & { digest: Buffer }>): Principal | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const m = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header);
  if (!m) return undefined;
  const digest = createHash('sha256').update(m[1]!).digest();
  const client = known.find((c) => c.digest.length === digest.length && timingSafeEqual(c.digest, digest));
  if (!client) return undefined;
  return {
    kind: 'client', id: client.name, name: client.name, roles: [], sites: [client.site],
    territory: client.territory, authenticatedBy: 'api-key',
  };
}
