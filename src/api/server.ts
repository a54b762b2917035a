import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Archive } from '../archive/archive.ts';
import type { AtriumConfig } from '../config/config.ts';
import { dicomwebRoutes } from '../dicomweb/routes.ts';
import { registerAuthentication, type ApiClient } from './auth.ts';
import { authRoutes } from './auth-routes.ts';
import { AttemptLimits } from '../access/attempt-limits.ts';
import { AuditTrail } from '../access/audit.ts';
import { Authenticator } from '../access/login.ts';
import { AccessTokenVerifier, OidcIssuer, OidcRelyingParty } from '../access/oidc.ts';
import { SessionStore } from '../access/sessions.ts';
import { UserDirectory } from '../access/users.ts';
import { identityRoutes } from './identities.ts';
import { SoapInsiClient } from '../patients/insi.ts';
import { correctionRoutes } from './corrections.ts';
import { forwardingRoutes } from './forwarding.ts';
import { shareLinkRoutes, sharingRoutes } from './sharing.ts';
import { accessRequestRoutes } from './access-requests.ts';
import { registerJsonCompression } from './compression.ts';
import { administrationRoutes } from './administration.ts';
import { principalFromClientCertificate } from './client-certificates.ts';
import { ShareLinks } from '../access/share-links.ts';
import { httpsServerOptions } from './https.ts';
import { fastifyLimitOptions, nodeServerLimits, registerRequestLimits } from './request-limits.ts';
import { registerSecurityHeaders } from './security-headers.ts';
import { portalRoutes } from './static-files.ts';
import { workitemRoutes } from '../dicomweb/workitems.ts';
import { teleradiologyRoutes } from './teleradiology.ts';
import { doseRoutes } from './dose.ts';
import { redundancyRoutes } from './redundancy.ts';
import { dmpRoutes } from './dmp.ts';
import { patientRoutes } from './patients.ts';
import { studyDocumentRoutes } from './study-documents.ts';
import { dicomwebDeleteRoutes, lifecycleRoutes } from './lifecycle.ts';
import { billingRoutes } from './billing.ts';
import { registerMonitoring } from './monitoring.ts';
import { iidRoutes } from './iid.ts';
import { researchRoutes } from './research.ts';
import { TokenIntrospector } from '../access/drimbox.ts';
import { attachPendingSchemas, lazySchemaController } from './lazy-schema-compilers.ts';
import { SessionAccessTokens } from '../access/session-tokens.ts';
import { drimboxConsumerRoutes, drimboxContextRoute } from './drimbox-consumer.ts';
import { DrimboxConsumer } from '../exchange/drimbox-consumer.ts';
import { httpStatusOf, sendProblem } from '../dicomweb/problem.ts';

/**
 * Stops accepting requests, lets those in flight finish for up to graceMs, then cuts every
 * connection left. Fastify's close waits for idle keep-alive connections to be closed, but
 * a connection a client opened and never used (undici opens one ahead after an aborted
 * request) is not idle to Node: without the cut, shutdown waited the 72 s keep-alive timeout.
 */
export async function closeHttpServer(app: FastifyInstance, graceMs: number): Promise<void> {
  const cut = setTimeout(() => app.server.closeAllConnections(), graceMs);
  try {
    await app.close();
  } finally {
    clearTimeout(cut);
  }
}

/** Users, sessions, and the identity providers the configuration names (none: local accounts only). */
export function authenticatorOf(config: AtriumConfig, archive: Archive): Authenticator {
  const { auth } = config;
  const sql = archive.index.sql;
  // One discovery and one key set per issuer, shared by the login and the access tokens when they agree.
  const issuers = new Map<string, OidcIssuer>();
  const issuerOf = (url: string, jwksUri?: string) => {
    const key = `${url} ${jwksUri ?? ''}`;
    let issuer = issuers.get(key);
    if (!issuer) issuers.set(key, (issuer = new OidcIssuer(url, jwksUri)));
    return issuer;
  };
  return new Authenticator({
    users: new UserDirectory(sql, archive.sites, archive.siteById),
    sessions: new SessionStore(sql, { idleMs: auth.sessions.idleMinutes * 60_000, absoluteMs: auth.sessions.absoluteHours * 3_600_000 }),
    audit: new AuditTrail(sql),
    ...(auth.oidc ? { oidc: new OidcRelyingParty(auth.oidc, issuerOf(auth.oidc.issuer)) } : {}),
    ...(auth.accessTokens ? { accessTokens: new AccessTokenVerifier(auth.accessTokens, issuerOf(auth.accessTokens.issuer, auth.accessTokens.jwksUri)) } : {}),
    clients: auth.clients.map((c) => {
      const site = archive.sites.get(c.site);
      if (!site) throw new Error(`auth client ${c.clientId}: unknown site ${c.site}`);
      return { clientId: c.clientId, site, territory: c.territory };
    }),
    shareLinks: new ShareLinks(sql),
    ...(auth.oidc ? { sessionTokens: new SessionAccessTokens(sql, auth.oidc.clientSecret) } : {}),
  });
}

/** A route as registered: its method (HEAD routes included, which Fastify adds to GET ones) and URL pattern. */
export interface RegisteredRoute { method: string; url: string }

const routesOfApp = new WeakMap<FastifyInstance, RegisteredRoute[]>();

/**
 * Every route of a server buildHttpServer made, each method apart: what the route-driven
 * access tests walk, so that a route added later is tested without anyone listing it.
 */
export function registeredRoutes(app: FastifyInstance): readonly RegisteredRoute[] {
  return routesOfApp.get(app) ?? [];
}

/** The HTTP face of Atrium: each protocol adapter is a plugin with its own prefix. */
export async function buildHttpServer(config: AtriumConfig, archive: Archive, logger: Logger): Promise<FastifyInstance> {
  const { tls } = config.http;
  // Route schemas compile at their route's first request (lazy-schema-compilers.ts).
  const schemas = lazySchemaController();
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps the instance's default generic type.
    loggerInstance: logger as FastifyBaseLogger,
    // Requests are not logged one by one (the audit trail records what matters, without patient data in logs).
    logController: new LogController({ disableRequestLogging: true }),
    // bodyLimit bounds the JSON bodies; STOW-RS bodies are streamed. Timeouts: see request-limits.ts.
    ...fastifyLimitOptions(config.http),
    // Route schemas are not checked against JSON Schema's meta-schema (compiling it costs about 70 ms
    // of CPU at every start); ajv's strict mode still refuses an unknown keyword when a route compiles.
    ajv: { customOptions: { validateSchema: false } },
    schemaController: schemas.options,
    // Only the configured proxies' X-Forwarded-For is believed (request.ip: the audit trail, the limits).
    ...(config.http.trustProxy.length > 0 ? { trustProxy: config.http.trustProxy } : {}),
    // Node's HTTP server sets TCP_NODELAY on every socket (noDelay defaults to true).
    http: nodeServerLimits(config.http),
    // Fastify types an HTTPS instance apart; to the routes and closeHttpServer it is the same
    // (https.Server has every method of http.Server used here): the cast keeps one type.
    ...(tls ? { https: { ...httpsServerOptions(tls), ...nodeServerLimits(config.http) } as unknown as null } : {}),
  });
  attachPendingSchemas(app, schemas.pending);
  const routes: RegisteredRoute[] = [];
  routesOfApp.set(app, routes);
  // Before any route, so that every plugin's routes are seen.
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
  });
  // First, so that every answer (a 401, a 404, a 414) carries them.
  registerSecurityHeaders(app);
  registerRequestLimits(app, config.http);
  registerJsonCompression(app);
  app.setNotFoundHandler((_request, reply) => sendProblem(reply, 404, 'no such resource'));
  // Answers of the root's own routes and hooks (plugins keep their handlers): problem+json too.
  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
    const known = httpStatusOf(error);
    const status = known !== 500 ? known : typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    return sendProblem(reply, status, status >= 500 ? 'internal error' : error.message);
  });
  const clients: ApiClient[] = config.apiClients.map((c) => {
    const site = archive.sites.get(c.site);
    if (!site) throw new Error(`api client ${c.name}: unknown site ${c.site}`);
    return { name: c.name, tokenSha256: c.tokenSha256, site, territory: c.territory };
  });
  const authenticator = authenticatorOf(config, archive);
  const certificateClients = tls?.clients ?? [];
  registerAuthentication(app, clients, authenticator, {
    secureCookie: config.auth.sessions.secureCookie,
    ...(certificateClients.length > 0 ? { certificatePrincipal: (request) => principalFromClientCertificate(request, certificateClients, archive.sites) } : {}),
    ...(config.auth.drimbox ? { drimbox: new TokenIntrospector(config.auth.drimbox, new AuditTrail(archive.index.sql)) } : {}),
  });
  await app.register(iidRoutes, { archive, authenticator });
  await app.register(drimboxContextRoute, { archive });
  app.get('/health', async () => ({ status: 'ok' }));
  registerMonitoring(app, archive, config);
  // Counted in the index on PostgreSQL: every node behind the load balancer sees the same attempts.
  const attemptLimits = await AttemptLimits.open(archive.index.sql);
  await app.register(authRoutes, {
    prefix: '/auth',
    authenticator,
    secureCookie: config.auth.sessions.secureCookie,
    sessionMaxAgeSeconds: config.auth.sessions.absoluteHours * 3600,
    loginLimiter: attemptLimits.limiter('login', config.auth.loginAttemptsPerMinute),
  });
  await app.register(dicomwebRoutes, {
    prefix: '/dicom-web',
    archive,
    maxRequestBytes: config.http.maxRequestBytes,
    publicBaseUrl: config.http.publicBaseUrl,
  });
  await app.register(workitemRoutes, { prefix: '/dicom-web/workitems', archive, config: config.teleradiology, publicBaseUrl: config.http.publicBaseUrl });
  await app.register(forwardingRoutes, { prefix: '/api/forwarding', archive });
  await app.register(identityRoutes, { prefix: '/api/identity-reviews', archive, ...(config.insi.endpoint ? { insi: new SoapInsiClient(config.insi) } : {}) });
  await app.register(correctionRoutes, { prefix: '/api/corrections', archive });
  await app.register(patientRoutes, { prefix: '/api/patients', archive, redundancyWindowDays: config.radiation.redundancyWindowDays });
  await app.register(sharingRoutes, { prefix: '/api', archive, publicBaseUrl: config.http.publicBaseUrl });
  await app.register(accessRequestRoutes, { prefix: '/api/access-requests', archive });
  await app.register(administrationRoutes, { prefix: '/api/admin', archive, config });
  await app.register(teleradiologyRoutes, { prefix: '/api/teleradiology', archive, config: config.teleradiology, redundancyWindowDays: config.radiation.redundancyWindowDays });
  await app.register(redundancyRoutes, { prefix: '/api/redundancy', archive });
  await app.register(doseRoutes, { prefix: '/api/dose', archive, referenceLevels: config.radiation.referenceLevels });
  await app.register(studyDocumentRoutes, { prefix: '/api/studies', archive, publicBaseUrl: config.http.publicBaseUrl });
  await app.register(dmpRoutes, { prefix: '/api/dmp', archive });
  await app.register(drimboxConsumerRoutes, { prefix: '/api/drimbox', archive, authenticator, consumer: new DrimboxConsumer(archive, config.dmp) });
  await app.register(lifecycleRoutes, { prefix: '/api/lifecycle', archive });
  await app.register(researchRoutes, { prefix: '/api/research', archive, dataDir: config.dataDir });
  await app.register(billingRoutes, { prefix: '/api/billing', archive, billing: config.billing });
  await app.register(dicomwebDeleteRoutes, { prefix: '/dicom-web', archive });
  await app.register(shareLinkRoutes, {
    prefix: '/share', archive, authenticator, secureCookie: config.auth.sessions.secureCookie,
    limiter: attemptLimits.limiter('share-open', config.auth.loginAttemptsPerMinute),
  });
  if (config.http.portalDir) await app.register(portalRoutes, { root: config.http.portalDir });
  return app;
}
