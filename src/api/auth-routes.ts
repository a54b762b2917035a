import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { localReturnPath, type Authenticator, type OpenedSession } from '../access/login.ts';
import { loginStateMaxAgeSeconds } from '../access/oidc.ts';
import type { Principal } from '../access/principal.ts';
import { HttpProblem, problemErrorHandler } from '../dicomweb/problem.ts';
import { cookieHeader, cookieOf, secureCookieFor, sessionCookieName } from './auth.ts';
import type { AttemptLimiter } from '../access/attempt-limits.ts';

export interface AuthRoutesOptions {
  authenticator: Authenticator;
  /** Secure cookies even over plain HTTP (Atrium behind a TLS proxy). */
  secureCookie: boolean;
  /** Lifetime of the session cookie: the session's absolute lifetime. */
  sessionMaxAgeSeconds: number;
  /** Login attempts per client address (shared by the nodes on PostgreSQL: access/attempt-limits.ts). */
  loginLimiter: AttemptLimiter;
}

/** The cookie that carries the sealed OIDC state between /auth/login and /auth/callback. */
const loginCookieName = 'atrium_login';

/** What the portal learns of its caller. */
function summaryOf(p: Principal, csrfToken?: string) {
  return {
    kind: p.kind, id: p.id, name: p.name, roles: p.roles, sites: p.sites.map((s) => s.code),
    ...(p.territory ? { territory: true } : {}),
    ...(p.rpps !== undefined ? { rpps: p.rpps } : {}),
    authenticatedBy: p.authenticatedBy,
    ...(csrfToken !== undefined ? { csrfToken } : {}),
  };
}

/**
 * Login and logout of the portal: OpenID Connect (Pro Santé Connect) and local accounts open a
 * server-side session held by an HttpOnly cookie. Registered under /auth.
 */
export const authRoutes: FastifyPluginAsync<AuthRoutesOptions> = async (app, opts) => {
  const { authenticator } = opts;
  const limiter = opts.loginLimiter;

  app.setErrorHandler(problemErrorHandler('authentication request'));

  const secure = (request: FastifyRequest) => secureCookieFor(request, opts.secureCookie);

  /** Too many attempts from one address: 429, recorded once per window. */
  async function limitAttempts(request: FastifyRequest, reply: FastifyReply, attempted: string): Promise<void> {
    const r = await limiter.hit(request.ip);
    if (r.allowed) return;
    if (r.firstRefusal) await authenticator.recordRefusal('rate-limited', attempted, { source: request.ip, via: 'portal' });
    reply.header('Retry-After', String(r.retryAfterSeconds));
    throw new HttpProblem(429, `too many login attempts from this address: try again in ${r.retryAfterSeconds} s`);
  }

  /** A new session replaces the one the browser came with (no session fixation). */
  async function setSession(request: FastifyRequest, reply: FastifyReply, opened: OpenedSession): Promise<void> {
    const previous = cookieOf(request.headers.cookie, sessionCookieName);
    if (previous !== undefined) await authenticator.endSession(previous);
    reply.header('Set-Cookie', cookieHeader(sessionCookieName, opened.cookieValue, { secure: secure(request), path: '/', maxAgeSeconds: opts.sessionMaxAgeSeconds }));
    reply.header('Cache-Control', 'no-store');
  }

  // Public: the login page offers only the methods this platform has (no Pro Santé Connect button without OIDC).
  app.get('/methods', async (_request, reply) => {
    reply.header('Cache-Control', 'no-store');
    return { proSanteConnect: authenticator.oidcEnabled, local: true };
  });

  app.get<{ Querystring: { returnTo?: string } }>('/login', {
    schema: { querystring: { type: 'object', properties: { returnTo: { type: 'string', maxLength: 2048 } } } },
  }, async (request, reply) => {
    if (!authenticator.oidcEnabled) throw new HttpProblem(404, 'OpenID Connect login is not configured on this platform');
    const returnTo = localReturnPath(request.query.returnTo);
    if (returnTo === undefined) throw new HttpProblem(400, 'returnTo must be a path on this server (such as /studies), not another site');
    const { url, loginState } = await authenticator.startOidcLogin(returnTo);
    return reply
      .header('Set-Cookie', cookieHeader(loginCookieName, loginState, { secure: secure(request), path: '/auth', maxAgeSeconds: loginStateMaxAgeSeconds }))
      .header('Cache-Control', 'no-store')
      .redirect(url, 302);
  });

  app.get<{ Querystring: Record<string, string | undefined> }>('/callback', async (request, reply) => {
    if (!authenticator.oidcEnabled) throw new HttpProblem(404, 'OpenID Connect login is not configured on this platform');
    await limitAttempts(request, reply, 'oidc');
    // The login state serves once, whatever the outcome.
    reply.header('Set-Cookie', cookieHeader(loginCookieName, '', { secure: secure(request), path: '/auth', maxAgeSeconds: 0 }));
    const opened = await authenticator.finishOidcLogin(request.query, cookieOf(request.headers.cookie, loginCookieName), { source: request.ip, via: 'portal' });
    await setSession(request, reply, opened);
    return reply.redirect(opened.returnTo, 302);
  });

  app.post<{ Body: { login: string; password: string } }>('/local', {
    schema: {
      body: {
        type: 'object', required: ['login', 'password'], additionalProperties: false,
        properties: { login: { type: 'string', minLength: 1, maxLength: 64 }, password: { type: 'string', minLength: 1, maxLength: 1024 } },
      },
    },
  }, async (request, reply) => {
    await limitAttempts(request, reply, request.body.login);
    const opened = await authenticator.loginWithPassword(request.body.login, request.body.password, { source: request.ip, via: 'portal' });
    await setSession(request, reply, opened);
    return summaryOf(opened.principal, opened.session.csrfToken);
  });

  app.post('/logout', async (request, reply) => {
    if (request.sessionCookie === undefined) throw new HttpProblem(400, 'only a portal session logs out; bearer tokens expire or are revoked at their issuer');
    const { endSessionUrl } = await authenticator.logout(request.sessionCookie, request.principal!, { source: request.ip, via: 'portal' });
    reply.header('Set-Cookie', cookieHeader(sessionCookieName, '', { secure: secure(request), path: '/', maxAgeSeconds: 0 })).header('Cache-Control', 'no-store');
    // A provider's session to end as well: the portal sends the browser there.
    if (endSessionUrl) return reply.code(200).send({ endSessionUrl });
    return reply.code(204).send();
  });

  app.get('/me', async (request, reply) => {
    reply.header('Cache-Control', 'no-store');
    return summaryOf(request.principal!, request.session?.csrfToken);
  });
};
