import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * For every response, set before any route runs (on the raw response, so that the routes
 * that write straight to the socket, WADO-RS multipart, carry them too); a route may still
 * set its own value of one of them. The baseline CSP forbids everything: an API answer opened
 * as a page can load nothing and be framed by nobody.
 */
const baseline: Readonly<Record<string, string>> = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), hid=(), bluetooth=(), fullscreen=(self)',
  // Patient data must not sit in shared or browser caches; the portal's assets say otherwise.
  'cache-control': 'no-store',
};

/**
 * The portal's pages: its own scripts, styles and workers only; images from data: and blob:
 * (rendered frames). 'wasm-unsafe-eval' lets the viewer compile its own image codecs
 * (WebAssembly served from 'self'); it allows no eval of JavaScript. Frames only from blob:
 * URLs the page made itself: a report's PDF shown by the browser's PDF viewer.
 */
export const portalContentSecurityPolicy = [
  "default-src 'self'", "img-src 'self' data: blob:", "script-src 'self' 'wasm-unsafe-eval'", "style-src 'self' 'unsafe-inline'",
  "connect-src 'self'", "worker-src 'self' blob:", "frame-src blob:", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** One year; no includeSubDomains: Atrium does not own its parent domain. */
const strictTransportSecurity = 'max-age=31536000';

/** Routes whose answers hold patient data: only no-store or private caching is allowed there. */
function holdsPatientData(url: string): boolean {
  return /^\/(dicom-web|api)(\/|\?|$)/.test(url);
}

/** Sets the headers every response carries; also for answers given outside the hooks (a malformed URL). */
export function applySecurityHeaders(reply: FastifyReply): void {
  const raw = reply.raw;
  for (const [name, value] of Object.entries(baseline)) raw.setHeader(name, value);
  if ((reply.request.raw.socket as TLSSocket | null)?.encrypted === true) raw.setHeader('strict-transport-security', strictTransportSecurity);
}

/**
 * Secure headers on every response of the app, registered on the root instance before any
 * other hook, so that a 401 of the authentication hook or a 404 carries them too.
 */
export function registerSecurityHeaders(app: FastifyInstance): void {
  app.addHook('onRequest', async (_request, reply) => {
    applySecurityHeaders(reply);
  });
  app.addHook('onSend', async (request, reply, payload) => {
    const type = String(reply.getHeader('content-type') ?? '');
    // A worker runs under the policy its own script came with: the viewer's decoding workers
    // (fetching and compiling their WebAssembly codecs) need the portal's, other scripts keep the baseline.
    const worker = /^(shared)?worker$/.test(String(request.headers['sec-fetch-dest'] ?? '')) && request.url.startsWith('/app/');
    if (/^text\/html\b/i.test(type) || (worker && /^text\/javascript\b/i.test(type))) {
      reply.header('content-security-policy', portalContentSecurityPolicy);
    }
    if (holdsPatientData(request.url) && !/\b(no-store|private)\b/i.test(String(reply.getHeader('cache-control') ?? ''))) {
      reply.header('cache-control', 'no-store');
    }
    // Nothing says what serves: no version to look up in a vulnerability list.
    for (const name of ['x-powered-by', 'server']) {
      reply.removeHeader(name);
      reply.raw.removeHeader(name);
    }
    return payload;
  });
}
