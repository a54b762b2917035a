import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Site } from '../index/records.ts';
import type { Principal } from '../access/principal.ts';
import type { Session } from '../access/sessions.ts';
import type { Authenticator } from '../access/login.ts';
import { looksLikeJwt } from '../access/oidc.ts';
import { AuthenticationError } from '../access/users.ts';
import { HttpProblem, httpStatusOf, sendProblem } from '../dicomweb/problem.ts';
import { kosHeader, type TokenIntrospector } from '../access/drimbox.ts';
import { isPortalRoute } from './static-files.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling; set by the authentication hook on every route but the public ones. */
    principal?: Principal;
    /** The portal session the caller came with, when authenticated by its cookie. */
    session?: Session;
    /** That session's cookie value (to end it at logout). */
    sessionCookie?: string;
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

/** The portal's session cookie. */
export const sessionCookieName = 'atrium_session';

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

const publicRoutes = new Set(['/health', '/healthz', '/readyz', '/metrics', '/auth/methods', '/auth/login', '/auth/callback', '/auth/local', '/share/open',
  // Sends a browser without a session to log in first, then checks the session itself (iid.ts).
  '/IHEInvokeImageDisplay',
  // The RIS's contextual call (a cross-site form, so no session cookie): a redirect to the patient's page, nothing read (drimbox-consumer.ts).
  '/drimbox/context']);

/** Routes reachable without authentication (they carry no patient data; the login routes make sessions). */
export function isPublicRoute(url: string): boolean {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  // The portal's own files carry no patient data: the login page must load without a session.
  return publicRoutes.has(path) || isPortalRoute(path);
}

/** Methods that change state: a cookie alone (which the browser sends on its own) is not enough for them. */
const unsafeMethods = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** One cookie of a Cookie header (RFC 6265 §5.4: "name=value" pairs separated by "; "). */
export function cookieOf(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** A Set-Cookie value: HttpOnly, SameSite=Lax, Secure when asked; maxAgeSeconds 0 clears the cookie. */
export function cookieHeader(name: string, value: string, o: { secure: boolean; path: string; maxAgeSeconds: number }): string {
  return `${name}=${value}; Path=${o.path}; Max-Age=${Math.max(0, Math.floor(o.maxAgeSeconds))}; HttpOnly; SameSite=Lax${o.secure ? '; Secure' : ''}`;
}

/** Secure cookies when the request came over HTTPS, or always when the configuration says so (behind a TLS proxy). */
export function secureCookieFor(request: FastifyRequest, configured: boolean): boolean {
  return configured || request.protocol === 'https';
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Every route but the public ones requires a known caller: a bearer token (an API key, whose
 * SHA-256 is compared in constant time, or a JWT access token), else the portal's session
 * cookie. A bearer token wins over a cookie: a forged cross-site request cannot add one, so
 * only cookie-authenticated requests need the CSRF token on unsafe methods.
 */
export function registerAuthentication(
  app: FastifyInstance, clients: ApiClient[], authenticator?: Authenticator,
  options: {
    secureCookie: boolean; certificatePrincipal?: (request: FastifyRequest) => Principal | undefined;
    /** DRIMbox consumers' Pro Santé Connect tokens (auth.drimbox). */
    drimbox?: TokenIntrospector;
  } = { secureCookie: true },
): void {
  const known = clients.map((c) => ({ ...c, digest: Buffer.from(c.tokenSha256, 'hex') }));
  app.decorateRequest('principal', undefined);
  app.decorateRequest('session', undefined);
  app.decorateRequest('sessionCookie', undefined);
  app.addHook('onRequest', async (request, reply) => {
    if (isPublicRoute(request.url)) return;
    const header = request.headers.authorization;
    if (header !== undefined) {
      const token = bearerTokenOf(header);
      const byKey = token !== undefined ? apiKeyPrincipal(token, known) : undefined;
      if (byKey) {
        request.principal = byKey;
        return;
      }
      // A DRIMbox consumer names a manifest: its Pro Santé Connect token (opaque or a JWT for
      // another audience) is checked at the provider, before Atrium's own JWTs would refuse it.
      if (token !== undefined && options.drimbox && request.headers[kosHeader] !== undefined && isConsumerRead(request)) {
        try {
          request.principal = await options.drimbox.principalOf(token, request.ip);
          return;
        } catch (e) {
          if (!(e instanceof AuthenticationError) && !(e instanceof HttpProblem)) throw e;
          if (e instanceof AuthenticationError) reply.header('WWW-Authenticate', 'Bearer realm="atrium", error="invalid_token"');
          return sendProblem(reply, httpStatusOf(e), e.message);
        }
      }
      if (token !== undefined && authenticator?.accessTokensEnabled && looksLikeJwt(token)) {
        try {
          request.principal = await authenticator.principalOfAccessToken(token, { source: request.ip, via: 'api' });
          return;
        } catch (e) {
          if (!(e instanceof AuthenticationError)) throw e;
          // RFC 6750 §3.1: the client learns the token is refused, not why in detail.
          reply.header('WWW-Authenticate', 'Bearer realm="atrium", error="invalid_token"');
          return sendProblem(reply, httpStatusOf(e), e.message);
        }
      }
      return refuse(reply, 'a valid bearer token is required');
    }
    // A machine client known by its TLS certificate (mutual TLS), verified against the CA and pinned.
    const byCertificate = options.certificatePrincipal?.(request);
    if (byCertificate) {
      request.principal = byCertificate;
      return;
    }
    const cookie = cookieOf(request.headers.cookie, sessionCookieName);
    if (cookie === undefined || !authenticator) return refuse(reply, 'a valid bearer token or a session is required');
    let opened: { principal: Principal; session: Session };
    try {
      opened = await authenticator.principalOfSession(cookie, { source: request.ip, via: 'portal' });
    } catch (e) {
      if (!(e instanceof AuthenticationError)) throw e;
      reply.header('Set-Cookie', cookieHeader(sessionCookieName, '', { secure: secureCookieFor(request, options.secureCookie), path: '/', maxAgeSeconds: 0 }));
      return sendProblem(reply, httpStatusOf(e), e.message);
    }
    if (unsafeMethods.has(request.method)) {
      const csrf = request.headers['x-csrf-token'];
      if (typeof csrf !== 'string' || !sameSecret(csrf, opened.session.csrfToken)) {
        return sendProblem(reply, 403, 'this request needs the X-CSRF-Token header of the session (GET /auth/me gives it)');
      }
    }
    request.principal = opened.principal;
    request.session = opened.session;
    request.sessionCookie = cookie;
  });
}

/** The only door of a DRIMbox consumer: reads of DICOMweb studies (src/access/drimbox.ts decides which). */
function isConsumerRead(request: FastifyRequest): boolean {
  return (request.method === 'GET' || request.method === 'HEAD') && /^\/dicom-web\/(studies|series|instances)([/?]|$)/.test(request.url);
}

function refuse(reply: FastifyReply, detail: string): FastifyReply {
  reply.header('WWW-Authenticate', 'Bearer realm="atrium"');
  return sendProblem(reply, 401, detail);
}

function bearerTokenOf(header: string): string | undefined {
  const m = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header);
  return m ? m[1] : undefined;
}

function apiKeyPrincipal(token: string, known: Array<ApiClient & { digest: Buffer }>): Principal | undefined {
  const digest = createHash('sha256').update(token).digest();
  const client = known.find((c) => c.digest.length === digest.length && timingSafeEqual(c.digest, digest));
  if (!client) return undefined;
  return {
    kind: 'client', id: client.name, name: client.name, roles: [], sites: [client.site],
    territory: client.territory, authenticatedBy: 'api-key',
  };
}
