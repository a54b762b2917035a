import { readFileSync } from 'node:fs';
import type { ServerOptions } from 'node:https';
import type { HttpTlsConfig } from '../config/config.ts';

/**
 * Forward-secret key exchanges with authenticated encryption only (ANSSI guide on TLS,
 * Mozilla "intermediate"): no CBC, no static RSA key exchange. TLS 1.3 suites first.
 */
export const httpsCiphers = [
  'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
].join(':');

/**
 * Options of Node's HTTPS server, the PEM files read now (at start: a missing or unreadable
 * file stops the start, not the first request). A client certificate is asked for, never
 * required: browsers connect without one, and the one presented only counts once verified
 * against caFile and pinned (client-certificates.ts).
 */
export function httpsServerOptions(tls: HttpTlsConfig): ServerOptions {
  return {
    cert: readFileSync(tls.certFile),
    key: readFileSync(tls.keyFile),
    ...(tls.caFile !== undefined ? { ca: readFileSync(tls.caFile) } : {}),
    requestCert: tls.requestClientCertificate,
    rejectUnauthorized: false,
    minVersion: tls.minVersion,
    ciphers: httpsCiphers,
    honorCipherOrder: true,
  };
}
