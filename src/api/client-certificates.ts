import { createHash, timingSafeEqual } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import type { Principal } from '../access/principal.ts';
import type { HttpTlsClient } from '../config/config.ts';
import type { Site } from '../index/records.ts';

/**
 * The machine client whose TLS certificate the connection presented (mutual TLS), or
 * undefined. The certificate counts only when the handshake verified it against caFile
 * (socket.authorized) and its SHA-256 fingerprint is one a client is pinned to: a
 * certificate from the CA that no client names, or a self-signed copy of a client's
 * subject, is no one.
 */
export function principalFromClientCertificate(
  request: FastifyRequest,
  clients: readonly HttpTlsClient[],
  sites: ReadonlyMap<string, Site>,
): Principal | undefined {
  const socket = request.raw.socket as TLSSocket | null;
  if (!socket?.encrypted || socket.authorized !== true || clients.length === 0) return undefined;
  const der = socket.getPeerCertificate()?.raw;
  if (!der || der.length === 0) return undefined;
  const fingerprint = createHash('sha256').update(der).digest();
  const client = clients.find((c) => timingSafeEqual(Buffer.from(c.certificateSha256, 'hex'), fingerprint));
  if (!client) return undefined;
  const site = sites.get(client.site);
  if (!site) return undefined;
  return {
    kind: 'client', id: client.name, name: client.name, roles: [], sites: [site],
    territory: client.territory, authenticatedBy: 'mtls',
  };
}
