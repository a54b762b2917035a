/**
 * Who is calling, once authenticated: a person (professional or patient), a machine client,
 * a DICOM peer, or the holder of a share link. Every entry point (DICOMweb, DIMSE, the API,
 * exports) turns its caller into a Principal and asks the one access policy (policy.ts).
 */
import type { Site } from '../index/records.ts';

export const roles = [
  'territory-admin', 'site-admin', 'radiologist', 'technologist', 'referring-physician', 'patient',
  // Research (src/research/): who defines cohorts and exports them de-identified, and the
  // trusted third party who alone may read the pseudonym mapping. Neither sees exams.
  'researcher', 'trusted-third-party',
] as const;
export type Role = (typeof roles)[number];

export function isRole(value: string): value is Role {
  return (roles as readonly string[]).includes(value);
}

/** Roles of professionals, who see their sites' exams (roles other than patient). */
export const professionalRoles: readonly Role[] = ['territory-admin', 'site-admin', 'radiologist', 'technologist', 'referring-physician'];

export type AuthenticatedBy = 'session' | 'bearer-jwt' | 'api-key' | 'client-credentials' | 'mtls' | 'share-link' | 'dicom-association' | 'token-introspection';

export interface Principal {
  /**
   * remote-professional: a DRIMbox consumer's professional from outside the territory, known
   * only by the RPPS its Pro Santé Connect token carries; sees only what a manifest names
   * (src/access/drimbox.ts), no grant, no site, no capability.
   */
  kind: 'user' | 'client' | 'dicom-peer' | 'share-link' | 'remote-professional';
  /** Stable identifier: a user's login, a client id, an AE title, a share link's id. */
  id: string;
  /** For people and the audit trail: display name, client name, AE title. */
  name: string;
  roles: Role[];
  /** Sites the principal belongs to (a user's memberships, a client's or peer's site). */
  sites: Site[];
  /**
   * Machine clients and peers trusted for the whole territory (a regional PACS, the platform's
   * own integrations) rather than for their own site.
   */
  territory?: boolean;
  /** Index id of a user (users.id), for grants and sessions. */
  userId?: number;
  /** RPPS number of a professional (Pro Santé Connect), matched against a study's referring physician. */
  rpps?: string;
  /** A patient user's own patient record (index patients.id). */
  patientId?: number;
  /** A share link's id (share_links.id) when the caller opened one. */
  shareLinkId?: number;
  authenticatedBy: AuthenticatedBy;
}

/** How the audit trail names the actor. */
export function actorOf(p: Principal): { actor: string; actorKind: 'api-client' | 'dicom-peer' | 'user' | 'share-link'; site?: string } {
  const actorKind = p.kind === 'client' ? 'api-client' : p.kind === 'remote-professional' ? 'user' : p.kind;
  return { actor: p.id, actorKind, ...(p.sites[0] ? { site: p.sites[0].code } : {}) };
}

/** The site a principal acts for when it files objects or names a patient by a site's PatientID. */
export function homeSiteOf(p: Principal): Site | undefined {
  return p.sites.length === 1 ? p.sites[0] : p.kind === 'user' ? undefined : p.sites[0];
}
