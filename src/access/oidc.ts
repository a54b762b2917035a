/**
 * Atrium as an OpenID Connect relying party (Pro Santé Connect for French professionals) and
 * as an OAuth2 resource server accepting JWT access tokens. The provider is found by
 * discovery; every token is checked with jose against the issuer's published keys.
 */
import { createHash, hkdfSync, randomBytes } from 'node:crypto';
import type { JWTPayload, JWTVerifyGetKey } from 'jose';
import type { AccessTokenConfig, OidcConfig } from '../config/config.ts';
import { AuthenticationError } from './users.ts';

// jose is loaded at the first token to check or sign, not with the server: OpenID Connect is
// off in the default configuration, and loading jose costs about 90 ms of CPU at start.
let joseModule: typeof import('jose') | undefined;
async function jose(): Promise<typeof import('jose')> {
  return (joseModule ??= await import('jose'));
}

/** The parts of a provider's discovery document Atrium uses (OpenID Connect Discovery 1.0). */
export interface ProviderMetadata {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
  userinfo_endpoint?: string;
  end_session_endpoint?: string;
}

const fetchTimeoutMs = 10_000;

/**
 * An issuer, discovered at first use rather than at start (a provider down at start must not
 * keep Atrium down), and again after a failure.
 */
export class OidcIssuer {
  private metadataPromise?: Promise<ProviderMetadata>;
  private remoteKeys?: JWTVerifyGetKey;

  constructor(readonly issuer: string, private readonly jwksUri?: string) {}

  metadata(): Promise<ProviderMetadata> {
    this.metadataPromise ??= this.discover().catch((e: unknown) => {
      this.metadataPromise = undefined;
      throw e;
    });
    return this.metadataPromise;
  }

  /** The issuer's signing keys, fetched on demand and refetched when a token names an unknown kid. */
  readonly keys: JWTVerifyGetKey = async (header, token) => {
    if (!this.remoteKeys) {
      const uri = this.jwksUri ?? (await this.metadata()).jwks_uri;
      this.remoteKeys = (await jose()).createRemoteJWKSet(new URL(uri), { timeoutDuration: fetchTimeoutMs });
    }
    return this.remoteKeys(header, token);
  };

  private async discover(): Promise<ProviderMetadata> {
    const url = `${this.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const response = await fetch(url, { signal: AbortSignal.timeout(fetchTimeoutMs), headers: { accept: 'application/json' } });
    if (!response.ok) throw new Error(`OpenID Connect discovery at ${url} answered ${response.status}`);
    const m = (await response.json()) as Partial<ProviderMetadata>;
    // OpenID Connect Discovery 1.0 §4.3: the document must name exactly the issuer it was fetched for.
    if (m.issuer !== this.issuer) throw new Error(`OpenID Connect discovery at ${url} names issuer ${String(m.issuer)}, not ${this.issuer}`);
    for (const k of ['authorization_endpoint', 'token_endpoint', 'jwks_uri'] as const) {
      if (typeof m[k] !== 'string') throw new Error(`OpenID Connect discovery at ${url} has no ${k}`);
    }
    return m as ProviderMetadata;
  }
}

/** Why jose refused a token, in the words of the audit trail. */
function refusalOf(e: unknown, what: string): AuthenticationError {
  // jose is loaded once a token was checked: an error thrown before that is not one of its own.
  const errors = joseModule?.errors;
  if (!errors) return new AuthenticationError('provider-error', `${what} could not be verified: the identity provider is unreachable`);
  if (e instanceof errors.JWTExpired) return new AuthenticationError('expired-token', `${what} has expired`);
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.claim === 'aud') return new AuthenticationError('wrong-audience', `${what} is not meant for this service (aud)`);
    if (e.claim === 'iss') return new AuthenticationError('wrong-issuer', `${what} comes from an unknown issuer (iss)`);
    return new AuthenticationError('bad-token', `${what} is not valid (${e.claim})`);
  }
  if (e instanceof errors.JOSEError) return new AuthenticationError('bad-token', `${what} could not be verified`);
  return new AuthenticationError('provider-error', `${what} could not be verified: the identity provider is unreachable`);
}

/** Who the provider says logged in. */
export interface OidcIdentity {
  /** "<issuer>|<sub>": users.subject. */
  subject: string;
  /** RPPS (11 digits) from the configured claim, when the provider gave one. */
  rpps?: string;
  name?: string;
  acr?: string;
}

/** What travels, encrypted, in the short-lived login cookie between /auth/login and /auth/callback. */
interface LoginState {
  state: string;
  nonce: string;
  codeVerifier: string;
  returnTo: string;
}

export const loginStateMaxAgeSeconds = 600;

/** "8" + 11 digits (Pro Santé Connect's SubjectNameID) or the 11 digits alone. */
export function rppsOfClaim(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^8?(\d{11})$/.exec(value.trim());
  return m ? m[1] : undefined;
}

const idTokenAlgorithms = ['RS256', 'PS256', 'ES256', 'RS384', 'RS512', 'PS384', 'PS512', 'ES384', 'ES512', 'EdDSA'];

export class OidcRelyingParty {
  private readonly stateKey: Uint8Array;

  constructor(private readonly config: OidcConfig, readonly issuer: OidcIssuer) {
    // Any Atrium node may receive the callback: the state key is derived from a secret they all share.
    this.stateKey = new Uint8Array(hkdfSync('sha256', config.clientSecret, 'atrium', 'oidc login state', 32));
  }

  /** The provider's authorization URL (code flow, PKCE S256) and the sealed state to keep in a cookie. */
  async authorizationRequest(returnTo: string): Promise<{ url: string; loginState: string }> {
    const m = await this.issuer.metadata().catch((e: unknown) => {
      throw new AuthenticationError('provider-error', `the identity provider is unreachable (${e instanceof Error ? e.message : String(e)})`);
    });
    const s: LoginState = {
      state: randomBytes(24).toString('base64url'),
      nonce: randomBytes(24).toString('base64url'),
      codeVerifier: randomBytes(32).toString('base64url'),
      returnTo,
    };
    const url = new URL(m.authorization_endpoint);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', this.config.clientId);
    url.searchParams.set('redirect_uri', this.config.redirectUri);
    url.searchParams.set('scope', this.config.scopes.join(' '));
    url.searchParams.set('state', s.state);
    url.searchParams.set('nonce', s.nonce);
    url.searchParams.set('code_challenge', createHash('sha256').update(s.codeVerifier).digest('base64url'));
    url.searchParams.set('code_challenge_method', 'S256');
    if (this.config.acrValues) url.searchParams.set('acr_values', this.config.acrValues);
    const { EncryptJWT } = await jose();
    const loginState = await new EncryptJWT({ ...s })
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM' })
      .setIssuedAt()
      .setExpirationTime(`${loginStateMaxAgeSeconds}s`)
      .encrypt(this.stateKey);
    return { url: url.toString(), loginState };
  }

  /**
   * Ends the code flow: checks the state against the login cookie, exchanges the code (with
   * the PKCE verifier), verifies the ID token (signature, iss, aud, exp, nonce, acr) and reads
   * the userinfo claims.
   */
  async completeAuthorization(params: Record<string, string | undefined>, loginState: string | undefined): Promise<{
    identity: OidcIdentity; returnTo: string; idToken: string;
    /** The access token, kept on the server only (session-tokens.ts), for calls made on the user's behalf; and when it ends. */
    accessToken: { token: string; expiresAt: Date };
  }> {
    if (!loginState) throw new AuthenticationError('bad-state', 'no login in progress in this browser (or it took more than 10 minutes)');
    let s: LoginState;
    try {
      s = (await (await jose()).jwtDecrypt(loginState, this.stateKey, { maxTokenAge: `${loginStateMaxAgeSeconds}s` })).payload as unknown as LoginState;
    } catch {
      throw new AuthenticationError('bad-state', 'the login in progress has expired or was tampered with');
    }
    if (typeof params.state !== 'string' || params.state !== s.state) throw new AuthenticationError('bad-state', 'the state returned by the identity provider does not match this login');
    if (params.error) throw new AuthenticationError('provider-error', `the identity provider refused the login: ${params.error}${params.error_description ? ` (${params.error_description})` : ''}`);
    if (!params.code) throw new AuthenticationError('provider-error', 'the identity provider returned no authorization code');
    // RFC 9207: when the provider names itself, it must be the one we sent the browser to.
    if (params.iss !== undefined && params.iss !== this.issuer.issuer) throw new AuthenticationError('wrong-issuer', 'the authorization response comes from another issuer');

    const m = await this.issuer.metadata();
    const tokens = await this.exchangeCode(m, params.code, s.codeVerifier);
    let claims: JWTPayload;
    try {
      claims = (await (await jose()).jwtVerify(tokens.id_token, this.issuer.keys, {
        issuer: this.issuer.issuer, audience: this.config.clientId, algorithms: idTokenAlgorithms, requiredClaims: ['exp', 'iat', 'sub'], clockTolerance: 30,
      })).payload;
    } catch (e) {
      throw refusalOf(e, 'the ID token');
    }
    if (claims.nonce !== s.nonce) throw new AuthenticationError('bad-token', 'the ID token does not carry this login\'s nonce');
    if (Array.isArray(claims.aud) && claims.aud.length > 1 && claims.azp !== this.config.clientId) {
      throw new AuthenticationError('wrong-audience', 'the ID token was issued to another client (azp)');
    }
    if (this.config.acrValues && !this.config.acrValues.split(' ').includes(String(claims.acr))) {
      throw new AuthenticationError('wrong-acr', `the login did not reach the required level (acr ${String(claims.acr)}, ${this.config.acrValues} required)`);
    }
    const userinfo = m.userinfo_endpoint ? await this.userinfo(m.userinfo_endpoint, tokens.access_token, claims.sub!) : {};
    const all: Record<string, unknown> = { ...claims, ...userinfo };
    const rpps = rppsOfClaim(all[this.config.rppsClaim]);
    const name = [all.given_name, all.family_name].filter((x) => typeof x === 'string').join(' ') || (typeof all.name === 'string' ? all.name : undefined);
    return {
      identity: {
        subject: `${this.issuer.issuer}|${claims.sub!}`,
        ...(rpps !== undefined ? { rpps } : {}),
        ...(name ? { name } : {}),
        ...(typeof claims.acr === 'string' ? { acr: claims.acr } : {}),
      },
      returnTo: s.returnTo,
      idToken: tokens.id_token,
      // RFC 6749 §5.1: expires_in is recommended; without it, the ID token's end stands for it.
      accessToken: { token: tokens.access_token, expiresAt: new Date(tokens.expires_in !== undefined ? Date.now() + tokens.expires_in * 1000 : (claims.exp ?? 0) * 1000) },
    };
  }

  /**
   * Where to send the browser so that the provider ends its own session too (OpenID Connect
   * RP-Initiated Logout 1.0), then back to the portal; undefined when the provider has no
   * end_session_endpoint.
   */
  async endSessionUrl(idToken: string): Promise<string | undefined> {
    const m = await this.issuer.metadata();
    if (!m.end_session_endpoint) return undefined;
    const url = new URL(m.end_session_endpoint);
    url.searchParams.set('id_token_hint', idToken);
    url.searchParams.set('client_id', this.config.clientId);
    url.searchParams.set('post_logout_redirect_uri', this.config.postLogoutRedirectUri ?? new URL('/app/', this.config.redirectUri).toString());
    return url.toString();
  }

  private async exchangeCode(m: ProviderMetadata, code: string, codeVerifier: string): Promise<{ id_token: string; access_token: string; expires_in?: number }> {
    const body = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: this.config.redirectUri, code_verifier: codeVerifier });
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (this.config.tokenEndpointAuthMethod === 'client_secret_basic') {
      // RFC 6749 §2.3.1: both parts form-urlencoded before base64.
      const id = encodeURIComponent(this.config.clientId).replace(/%20/g, '+');
      const secret = encodeURIComponent(this.config.clientSecret).replace(/%20/g, '+');
      headers.authorization = `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
    } else {
      body.set('client_id', this.config.clientId);
      body.set('client_secret', this.config.clientSecret);
    }
    let response: Response;
    try {
      response = await fetch(m.token_endpoint, { method: 'POST', headers, body, signal: AbortSignal.timeout(fetchTimeoutMs) });
    } catch (e) {
      throw new AuthenticationError('provider-error', `the token endpoint is unreachable (${e instanceof Error ? e.message : String(e)})`);
    }
    const answer = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    if (!response.ok) throw new AuthenticationError('provider-error', `the token endpoint refused the code: ${String(answer.error ?? response.status)}`);
    if (typeof answer.id_token !== 'string' || typeof answer.access_token !== 'string') {
      throw new AuthenticationError('provider-error', 'the token endpoint returned no ID token');
    }
    const expiresIn = typeof answer.expires_in === 'number' && answer.expires_in > 0 ? answer.expires_in : undefined;
    return { id_token: answer.id_token, access_token: answer.access_token, ...(expiresIn !== undefined ? { expires_in: expiresIn } : {}) };
  }

  /** Userinfo as JSON or as a signed JWT (application/jwt); its sub must be the ID token's. */
  private async userinfo(endpoint: string, accessToken: string, sub: string): Promise<Record<string, unknown>> {
    let response: Response;
    try {
      response = await fetch(endpoint, { headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json, application/jwt' }, signal: AbortSignal.timeout(fetchTimeoutMs) });
    } catch (e) {
      throw new AuthenticationError('provider-error', `the userinfo endpoint is unreachable (${e instanceof Error ? e.message : String(e)})`);
    }
    if (!response.ok) throw new AuthenticationError('provider-error', `the userinfo endpoint answered ${response.status}`);
    let info: Record<string, unknown>;
    if ((response.headers.get('content-type') ?? '').startsWith('application/jwt')) {
      try {
        info = (await (await jose()).jwtVerify(await response.text(), this.issuer.keys, { issuer: this.issuer.issuer, audience: this.config.clientId, algorithms: idTokenAlgorithms })).payload;
      } catch (e) {
        throw refusalOf(e, 'the userinfo response');
      }
    } else {
      info = (await response.json()) as Record<string, unknown>;
    }
    // OpenID Connect Core §5.3.2: claims of another subject must not be used.
    if (info.sub !== sub) throw new AuthenticationError('bad-token', 'the userinfo response is about another subject');
    return info;
  }
}

/** A verified access token: who it was issued to, and for whom. */
export interface VerifiedAccessToken {
  issuer: string;
  /** client_id (RFC 9068) or azp: the OAuth2 client that obtained the token. */
  clientId?: string;
  /** The end user, absent or equal to the client for client-credentials tokens. */
  sub?: string;
  claims: JWTPayload;
}

/** Bearer JWT access tokens on API calls (RFC 9068 profile, or any JWT with iss, aud, exp). */
export class AccessTokenVerifier {
  constructor(private readonly config: AccessTokenConfig, private readonly issuer: OidcIssuer) {}

  async verifyAccessToken(token: string): Promise<VerifiedAccessToken> {
    let claims: JWTPayload;
    try {
      // The algorithms are an allow-list of asymmetric ones: "none" and HS* (a public key used as an HMAC secret) never pass.
      claims = (await (await jose()).jwtVerify(token, this.issuer.keys, {
        issuer: this.config.issuer, audience: this.config.audience, algorithms: this.config.algorithms,
        clockTolerance: this.config.clockToleranceSeconds, requiredClaims: ['exp'],
      })).payload;
    } catch (e) {
      throw refusalOf(e, 'the access token');
    }
    const clientId = typeof claims.client_id === 'string' ? claims.client_id : typeof claims.azp === 'string' ? claims.azp : undefined;
    return {
      issuer: this.config.issuer, claims,
      ...(clientId !== undefined ? { clientId } : {}),
      ...(typeof claims.sub === 'string' ? { sub: claims.sub } : {}),
    };
  }
}

/** A JWS compact serialization (three base64url parts), as opposed to an opaque API key. */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/.test(token);
}
