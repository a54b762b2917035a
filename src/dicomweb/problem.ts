import type { FastifyReply, FastifyRequest } from 'fastify';
import { CorrectionError } from '../archive/corrections.ts';
import { GrantError } from '../access/grants.ts';
import { ShareLinkError } from '../access/share-links.ts';
import { ReviewForTerritoryError, ReviewNotFoundError, ReviewNotOpenError } from '../patients/identities.ts';
import { PrefetchError } from '../dimse/routing.ts';
import { TeleError, type TeleErrorCode } from '../workflow/tele-requests.ts';
import { RetrieveError } from '../archive/retrieve.ts';
import { QueryError } from '../index/archive-index.ts';
import { AuthenticationError, type LoginFailure } from '../access/users.ts';
import { MediaTypeError } from './media-type.ts';
import { MultipartError } from './multipart.ts';
import { QidoRequestError } from './qido.ts';
import { DocumentError } from '../exchange/study-documents.ts';

/**
 * An HTTP error with its status, answered as application/problem+json (RFC 9457). `code`: a
 * stable machine-readable reason (an extension member, e.g. `username-taken`) where a client
 * must tell cases apart; `detail` stays the English message.
 */
export class HttpProblem extends Error {
  constructor(readonly status: number, message: string, readonly code?: string) {
    super(message);
    this.name = 'HttpProblem';
  }
}

const titles: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 406: 'Not Acceptable',
  408: 'Request Timeout', 409: 'Conflict', 413: 'Content Too Large', 422: 'Unprocessable Content', 414: 'URI Too Long', 415: 'Unsupported Media Type',
  423: 'Locked', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large', 500: 'Internal Server Error', 502: 'Bad Gateway',
  503: 'Service Unavailable',
};

/** Unknown or unproven callers get 401; known callers who may not enter get 403. */
const loginFailureStatus: Record<LoginFailure, number> = {
  'unknown-user': 401, 'bad-password': 401, 'no-password': 401, 'bad-token': 401, 'expired-token': 401,
  'wrong-audience': 401, 'wrong-issuer': 401, 'expired-session': 401, 'bad-state': 400,
  locked: 423, disabled: 403, 'not-a-user': 403, 'wrong-acr': 403, 'provider-error': 502, 'rate-limited': 429,
};

/** The one place where a domain error becomes an HTTP status. */
export function httpStatusOf(e: unknown): number {
  if (e instanceof HttpProblem) return e.status;
  if (e instanceof TeleError) return teleStatus[e.code];
  if (e instanceof CorrectionError) return e.code === 'not-found' ? 404 : 409;
  if (e instanceof GrantError || e instanceof ShareLinkError) return e.code === 'not-found' ? 404 : 400;
  if (e instanceof ReviewNotOpenError) return 409;
  if (e instanceof ReviewNotFoundError) return 404;
  if (e instanceof ReviewForTerritoryError) return 403;
  if (e instanceof PrefetchError) return 400;
  if (e instanceof AuthenticationError) return loginFailureStatus[e.reason];
  // A stored frame that does not decode: the request was fine, the object cannot be made into what it asks.
  if (e instanceof RetrieveError) return e.code === 'not-found' ? 404 : e.code === 'not-acceptable' ? 406 : e.code === 'bad-pixel-data' ? 422 : 400;
  if (e instanceof QidoRequestError || e instanceof QueryError || e instanceof MultipartError) return 400;
  if (e instanceof MediaTypeError) return e.header === 'accept' ? 400 : 415;
  // A document refused for its patient (no qualified INS) or its report (no RPPS): the study is fine, the document cannot be made.
  if (e instanceof DocumentError) return e.code === 'no-study' ? 404 : 409;
  if (e instanceof RangeError) return 400;
  return 500;
}

const teleStatus: Record<TeleErrorCode, number> = { incomplete: 422, invalid: 400, 'not-found': 404, forbidden: 403, conflict: 409 };

/**
 * The error handler of the API's plugins: Fastify's own client errors keep their status, a
 * schema failure is 400, a domain error becomes its status (httpStatusOf); anything else is a logged
 * 500 whose detail says nothing of the inside. An incomplete teleradiology request lists
 * every missing field (a problem+json extension member).
 */
export function problemErrorHandler(what: string) {
  return (error: Error & { statusCode?: number; validation?: unknown }, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    // Fastify's own client errors (413 body too large, 415, schema failures) carry their status;
    // some are RangeErrors, which httpStatusOf would call 400.
    const status = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode
      : error.validation ? 400 : httpStatusOf(error);
    if (status >= 500) request.log.error({ err: error }, `${what} failed`);
    if (error instanceof TeleError && error.code === 'incomplete') {
      return reply.code(422).type('application/problem+json')
        .send({ type: 'about:blank', title: titles[422], status: 422, detail: error.message, missing: error.missing ?? [] });
    }
    return sendProblem(reply, status, status >= 500 && status !== 502 ? 'internal error' : error.message, error instanceof HttpProblem && (status < 500 || status === 502) ? error.code : undefined);
  };
}

export function sendProblem(reply: FastifyReply, status: number, detail: string, code?: string): FastifyReply {
  return reply
    .code(status)
    .type('application/problem+json')
    .send({ type: 'about:blank', title: titles[status] ?? 'Error', status, detail, ...(code !== undefined ? { code } : {}) });
}
