/**
 * How a caller becomes a Principal: a local password or a Pro Santé Connect login opens a
 * session; a session cookie or a bearer JWT names the caller of each request. Every login,
 * refusal and logout is recorded in the audit trail (never a password or a token).
 */
import type { Site } from '../index/records.ts';
import type { AuditEvent, AuditTrail } from './audit.ts';
import type { AccessTokenVerifier, OidcRelyingParty } from './oidc.ts';
import { actorOf, type Principal } from './principal.ts';
import type { Session, SessionStore } from './sessions.ts';
import type { SessionAccessTokens } from './session-tokens.ts';
import type { ShareLinks } from './share-links.ts';
import { AuthenticationError, type LoginFailure, type User, type UserDirectory } from './users.ts';

/** A machine client known by the client_id of its OAuth2 client-credentials tokens. */
export interface MachineClient {
  clientId: string;
  site: Site;
  territory: boolean;
}

export interface OpenedSession {
  cookieValue: string;
  session: Session;
  principal: Principal;
}

/** Where the request came from and through which door, for the audit trail. */
export interface Origin {
  source: string;
  via: 'portal' | 'api';
}

/**
 * A path on this server to go back to after login: a local absolute path only, so that a
 * crafted login link cannot send a freshly logged-in user to another site.
 */
export function localReturnPath(returnTo: string | undefined): string | undefined {
  if (returnTo === undefined || returnTo === '') return '/';
  // "//host" and "/\host" are protocol-relative in browsers; control characters hide either.
  if (!returnTo.startsWith('/') || returnTo.startsWith('//') || returnTo.includes('\\') || /[\x00-\x1f\x7f]/.test(returnTo)) return undefined;
  const base = 'http://atrium.invalid';
  const url = new URL(returnTo, base);
  if (url.origin !== base) return undefined;
  return url.pathname + url.search + url.hash;
}

/** The holder of an opened share link: sees what the link shares, nothing else. */
export function shareLinkPrincipal(shareLinkId: number): Principal {
  return { kind: 'share-link', id: `share-link:${shareLinkId}`, name: 'share link', roles: [], sites: [], shareLinkId, authenticatedBy: 'share-link' };
}

export class Authenticator {
  private readonly clients: ReadonlyMap<string, MachineClient>;

  constructor(private readonly deps: {
    users: UserDirectory;
    sessions: SessionStore;
    audit: AuditTrail;
    oidc?: OidcRelyingParty;
    accessTokens?: AccessTokenVerifier;
    clients: MachineClient[];
    shareLinks?: ShareLinks;
    /** The Pro Santé Connect access tokens of sessions, kept server-side (the DRIMbox consumer calls with them). */
    sessionTokens?: SessionAccessTokens;
  }) {
    this.clients = new Map(deps.clients.map((c) => [c.clientId, c]));
  }

  get oidcEnabled(): boolean {
    return this.deps.oidc !== undefined;
  }

  get accessTokensEnabled(): boolean {
    return this.deps.accessTokens !== undefined;
  }

  /** A local account's login (password): a new session, or an AuthenticationError recorded as login-failed. */
  async loginWithPassword(login: string, password: string, origin: Origin): Promise<OpenedSession> {
    const user = await this.refusalsAudited(origin, login, () => this.deps.users.authenticateLocal(login, password));
    return this.openSession(user, 'session', origin, { method: 'password' });
  }

  /** Where to send the browser to log in with the OpenID Connect provider, and the state to keep meanwhile. */
  async startOidcLogin(returnTo: string): Promise<{ url: string; loginState: string }> {
    if (!this.deps.oidc) throw new AuthenticationError('provider-error', 'OpenID Connect login is not configured');
    return this.deps.oidc.authorizationRequest(returnTo);
  }

  /** The provider sent the browser back: verify everything, find the provisioned user, open a session. */
  async finishOidcLogin(params: Record<string, string | undefined>, loginState: string | undefined, origin: Origin): Promise<OpenedSession & { returnTo: string }> {
    const oidc = this.deps.oidc;
    if (!oidc) throw new AuthenticationError('provider-error', 'OpenID Connect login is not configured');
    const { user, returnTo, acr, idToken, accessToken } = await this.refusalsAudited(origin, 'oidc', async () => {
      const { identity, returnTo, idToken, accessToken } = await oidc.completeAuthorization(params, loginState);
      const user = await this.deps.users.userOfOidcIdentity(identity);
      if (user.disabledAt !== undefined) throw new AuthenticationError('disabled', 'this account is disabled', user.login);
      return { user, returnTo, acr: identity.acr, idToken, accessToken };
    });
    const opened = await this.openSession(user, 'session', origin, { method: 'oidc', issuer: oidc.issuer.issuer, ...(acr ? { acr } : {}) }, idToken);
    await this.deps.sessionTokens?.keep(opened.cookieValue, accessToken.token, accessToken.expiresAt);
    return { ...opened, returnTo };
  }

  /**
   * Ends the session the cookie opens. For a session opened by OpenID Connect, the answer
   * is where to send the browser so that the provider's session ends too (a shared
   * workstation: the next person must log in, not be let in as the last one).
   */
  async logout(cookieValue: string, principal: Principal, origin: Origin): Promise<{ endSessionUrl?: string }> {
    const idToken = await this.deps.sessions.idTokenOf(cookieValue);
    await this.deps.sessions.revokeSession(cookieValue);
    await this.deps.sessionTokens?.forget(cookieValue);
    await this.deps.audit.record({ action: 'logout', outcome: 'success', ...actorOf(principal), source: origin.source, via: origin.via });
    if (!idToken || !this.deps.oidc) return {};
    // The provider being unreachable does not keep the logout from Atrium from happening.
    const endSessionUrl = await this.deps.oidc.endSessionUrl(idToken).catch(() => undefined);
    return endSessionUrl ? { endSessionUrl } : {};
  }

  /** The Pro Santé Connect access token of the session the cookie opens, while it lasts (never sent to the browser). */
  async accessTokenOfSession(cookieValue: string): Promise<string | undefined> {
    return this.deps.sessionTokens?.tokenOf(cookieValue);
  }

  /** A session for whoever opened a share link (its PIN checked by ShareLinks.open). */
  async openShareLinkSession(shareLinkId: number, source?: string): Promise<OpenedSession> {
    const opened = await this.deps.sessions.createSession({ shareLinkId }, source);
    return { ...opened, principal: shareLinkPrincipal(shareLinkId) };
  }

  /** Ends a session without a record (a new login replaces it). */
  async endSession(cookieValue: string): Promise<void> {
    await this.deps.sessions.revokeSession(cookieValue);
  }

  /** The caller a session cookie names; refused (and recorded) when the session is over or its user disabled. */
  async principalOfSession(cookieValue: string, origin: Origin): Promise<{ principal: Principal; session: Session }> {
    return this.refusalsAudited(origin, 'session', async () => {
      const session = await this.deps.sessions.sessionOf(cookieValue);
      if (!session) throw new AuthenticationError('expired-session', 'the session has ended (idle too long, past its lifetime, or logged out): log in again');
      if (session.shareLinkId !== undefined) {
        // A session opened on a share link lives no longer than the link: revoked or expired, it ends.
        if (!this.deps.shareLinks || !(await this.deps.shareLinks.isLive(session.shareLinkId))) {
          throw new AuthenticationError('expired-session', 'this share link was revoked or has expired');
        }
        return { principal: shareLinkPrincipal(session.shareLinkId), session };
      }
      if (session.userId === undefined) throw new AuthenticationError('expired-session', 'this session does not belong to a user');
      const user = await this.deps.users.findById(session.userId);
      if (!user || user.disabledAt !== undefined) throw new AuthenticationError('disabled', 'this account is disabled', user?.login);
      return { principal: this.deps.users.principalOf(user, 'session'), session };
    });
  }

  /**
   * The caller a bearer JWT names: a configured machine client (client-credentials token, no
   * user), or the user bound to the token's subject.
   */
  async principalOfAccessToken(token: string, origin: Origin): Promise<Principal> {
    const verifier = this.deps.accessTokens;
    if (!verifier) throw new AuthenticationError('bad-token', 'bearer JWTs are not accepted here');
    return this.refusalsAudited(origin, 'bearer-jwt', async () => {
      const t = await verifier.verifyAccessToken(token);
      const client = t.clientId !== undefined ? this.clients.get(t.clientId) : undefined;
      if (client && (t.sub === undefined || t.sub === client.clientId)) {
        return {
          kind: 'client', id: client.clientId, name: client.clientId, roles: [], sites: [client.site],
          territory: client.territory, authenticatedBy: 'client-credentials',
        } satisfies Principal;
      }
      if (t.sub === undefined || t.sub === t.clientId) {
        throw new AuthenticationError('not-a-user', `client ${t.clientId ?? '(unnamed)'} is not a client of this platform`, t.clientId);
      }
      const user = await this.deps.users.findBySubject(`${t.issuer}|${t.sub}`);
      if (!user) throw new AuthenticationError('not-a-user', 'the access token names no user of this platform', t.sub);
      if (user.disabledAt !== undefined) throw new AuthenticationError('disabled', 'this account is disabled', user.login);
      return this.deps.users.principalOf(user, 'bearer-jwt');
    });
  }

  /** Records a refusal that happened before any domain call (too many attempts). */
  async recordRefusal(reason: LoginFailure, attempted: string, origin: Origin): Promise<void> {
    await this.deps.audit.record(this.refusalEvent(new AuthenticationError(reason, reason, attempted), attempted, origin));
  }

  private async openSession(user: User, by: 'session', origin: Origin, details: Record<string, unknown>, idToken?: string): Promise<OpenedSession> {
    const { cookieValue, session } = await this.deps.sessions.createSession({ userId: user.id }, origin.source, new Date(), idToken);
    const principal = this.deps.users.principalOf(user, by);
    await this.deps.audit.record({ action: 'login', outcome: 'success', ...actorOf(principal), source: origin.source, via: origin.via, details });
    return { cookieValue, session, principal };
  }

  private async refusalsAudited<T>(origin: Origin, attempted: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof AuthenticationError) await this.deps.audit.record(this.refusalEvent(e, attempted, origin));
      throw e;
    }
  }

  private refusalEvent(e: AuthenticationError, attempted: string, origin: Origin): AuditEvent {
    return {
      action: 'login-failed', outcome: 'refused',
      // The login that was tried (it may name no user: that is worth knowing too).
      actor: e.attempted ?? attempted, actorKind: 'user',
      source: origin.source, via: origin.via, reason: e.reason,
    };
  }
}
