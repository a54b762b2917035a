import { PassThrough } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AtriumConfig } from '../config/config.ts';
import { sendProblem } from '../dicomweb/problem.ts';
import { applySecurityHeaders } from './security-headers.ts';

/** Longest request target (path and query) answered; beyond, 414. */
export const maxUrlBytes = 8 * 1024;
/** Largest header block, request line included (Node answers 431 beyond). */
export const maxHeaderBytes = 16 * 1024;
/**
 * A connection that neither sends nor receives for this long is cut (a stalled upload, a
 * client gone). Large downloads and uploads keep moving bytes, so this never cuts them.
 */
export const idleTimeoutMs = 120_000;
/** Longer than the usual load balancer's 60 s idle timeout, so that the balancer always closes first. */
export const keepAliveTimeoutMs = 72_000;

type HttpConfig = AtriumConfig['http'];

/**
 * Options of the Fastify instance. Why no requestTimeout: Node's requestTimeout bounds the
 * whole request, body included, for every route at once; a STOW-RS upload of a large study
 * over a hospital's link legitimately takes many minutes. Instead, slow-loris is bounded by
 * (1) headersTimeout: the header block of every request within headersTimeoutMs; (2) the
 * body deadline of registerRequestLimits: a buffered (JSON, form) body within bodyTimeoutMs;
 * (3) the idle timeout: a streamed body that stops moving is cut after idleTimeoutMs.
 */
export function fastifyLimitOptions(http: HttpConfig) {
  return {
    bodyLimit: http.maxJsonBytes,
    // Path parameters as long as the URL allows (a WADO-RS frame list names hundreds of frames).
    routerOptions: { maxParamLength: maxUrlBytes },
    requestTimeout: 0,
    connectionTimeout: idleTimeoutMs,
    keepAliveTimeout: keepAliveTimeoutMs,
    // A malformed URL is answered before any hook: the secure headers are set here.
    frameworkErrors: (error: Error, _request: FastifyRequest, reply: FastifyReply) => {
      applySecurityHeaders(reply);
      return sendProblem(reply, 400, (error as Error & { code?: string }).code === 'FST_ERR_BAD_URL' ? 'malformed URL' : 'bad request');
    },
  };
}

/** Options of Node's HTTP(S) server (http.createServer, https.createServer). */
export function nodeServerLimits(http: HttpConfig) {
  return {
    maxHeaderSize: maxHeaderBytes,
    headersTimeout: http.headersTimeoutMs,
    // Node looks for expired header timeouts on this interval (30 s by default, which would
    // let a slow-loris hold a connection well past headersTimeout).
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(http.headersTimeoutMs / 4))),
  };
}

/** Whether a parsed JSON value holds a NUL character in any string, key or value. */
function holdsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\0');
  if (Array.isArray(value)) return value.some(holdsNul);
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).some(([k, v]) => k.includes('\0') || holdsNul(v));
  }
  return false;
}

/** A request body Fastify reads whole before the handler runs; multipart/related (STOW-RS) is streamed by its route. */
function isBufferedBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  if ((length === undefined || length === '0') && request.headers['transfer-encoding'] === undefined) return false;
  return !/^\s*multipart\/related\b/i.test(request.headers['content-type'] ?? '');
}

/**
 * Registered on the root instance before authentication: an over-long URL gets 414 before
 * anything else looks at it, and a buffered body that does not arrive within bodyTimeoutMs
 * gets 408 and the connection closed.
 */
export function registerRequestLimits(app: FastifyInstance, http: HttpConfig): void {
  app.addHook('onRequest', async (request, reply) => {
    const url = request.raw.url ?? '';
    if (url.length > maxUrlBytes) {
      reply.header('connection', 'close');
      return sendProblem(reply, 414, `the request target is longer than ${maxUrlBytes} bytes`);
    }
    // No identifier, name or UID holds a NUL, and PostgreSQL cannot compare a text with one (a 500).
    if (/%00|\0/i.test(url)) return sendProblem(reply, 400, 'the request target holds a NUL character');
  });
  // JSON bodies: Fastify's own parser (prototype poisoning refused), then no NUL in any string, for the same reason.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    parseJson(request, body as string, (error: Error | null, value?: unknown) => {
      if (error) return done(error, undefined);
      if (holdsNul(value)) return done(Object.assign(new Error('the JSON body holds a NUL character'), { statusCode: 400 }), undefined);
      done(null, value);
    });
  });
  app.addHook('preParsing', async (request, reply, payload) => {
    if (!isBufferedBody(request)) return payload;
    const body = new PassThrough();
    const timer = setTimeout(() => {
      // The rest of the body is left unread: the connection cannot serve another request.
      payload.unpipe(body);
      reply.header('connection', 'close');
      body.destroy(Object.assign(new Error(`the request body did not arrive within ${http.bodyTimeoutMs} ms`), { statusCode: 408 }));
    }, http.bodyTimeoutMs);
    const done = () => clearTimeout(timer);
    payload.once('end', done);
    reply.raw.once('close', done);
    payload.once('error', (e) => {
      done();
      body.destroy(e);
    });
    return payload.pipe(body);
  });
}
