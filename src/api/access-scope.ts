import type { FastifyRequest } from 'fastify';
import { AccessPolicy, may, type AccessScope, type Capability } from '../access/policy.ts';
import { actorOf } from '../access/principal.ts';
import type { AuditEvent, AuditTrail } from '../access/audit.ts';
import { HttpProblem } from '../dicomweb/problem.ts';

const scopes = new WeakMap<FastifyRequest, Promise<AccessScope>>();

/** The caller's access scope, read once per request whatever the number of decisions it needs. */
export function scopeOfRequest(policy: AccessPolicy, request: FastifyRequest): Promise<AccessScope> {
  let scope = scopes.get(request);
  if (!scope) {
    scope = policy.scopeOf(request.principal!);
    scopes.set(request, scope);
  }
  return scope;
}

/**
 * A preHandler refusing callers without the capability (403), with the attempt recorded.
 * Declared on a plugin, it guards all of its routes.
 */
export function requireCapability(capability: Capability, audit: AuditTrail, via: AuditEvent['via'] = 'api') {
  return async (request: FastifyRequest): Promise<void> => {
    const principal = request.principal!;
    if (may(principal, capability)) return;
    await audit.record({ action: actionOf[capability], outcome: 'refused', ...actorOf(principal), source: request.ip, via, details: { capability, url: request.url.split('?')[0] } });
    throw new HttpProblem(403, `this caller may not ${capability.replaceAll('-', ' ')}`);
  };
}

const actionOf: Record<Capability, AuditEvent['action']> = {
  store: 'store', correct: 'correction', 'review-identities': 'identity-review', forward: 'export', share: 'share',
  'emergency-access': 'emergency-access', 'read-audit': 'query', 'administer-users': 'user-admin',
  research: 'research-project', 'approve-research': 'research-project', 'record-objection': 'research-objection', reidentify: 'reidentify',
};
