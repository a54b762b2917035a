import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Site } from '../index/records.ts';
import { sendProblem } from '../dicomweb/problem.ts';

/** Who is calling: until OIDC and client credentials land, a machine client holding a bearer token. */
export interface Caller {
  name: string;
  site: Site;
}

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller;
  }
}

export interface ApiClient {
  name: string;
  tokenSha256: string;
  site: Site;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Every route but /health requires a bearer token known to the configuration.
 * Tokens are compared by their SHA-256 in constant time; the tokens themselves are never stored.
 */
export function registerBearerAuth(app: FastifyInstance, clients: ApiClient[]): void {
  const known = clients.map((c) => ({ ...c, digest: Buffer.from(c.tokenSha256, 'hex') }));
  app.decorateRequest('caller', undefined);
  app.addHook('onRequest', async (request, reply) => {
    if (request.url === '/health') return;
    const caller = callerOf(request, known);
    if (!caller) {
      reply.header('WWW-Authenticate', 'Bearer realm="atrium"');
      return sendProblem(reply, 401, 'a valid bearer token is required');
    }
    request.caller = caller;
  });
}

function callerOf(request: FastifyRequest, known: Array<ApiClient & { digest: Buffer }>): Caller | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const m = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header);
  if (!m) return undefined;
  const digest = createHash('sha256').update(m[1]!).digest();
  const client = known.find((c) => c.digest.length === digest.length && timingSafeEqual(c.digest, digest));
  return client ? { name: client.name, site: client.site } : undefined;
}
