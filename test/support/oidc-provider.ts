import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import Provider, { errors } from 'oidc-provider';
import type { OidcConfig } from '../../src/config/config.ts';
import { CookieJar, request } from './browser-session.ts';

/** A professional known to the test identity provider, with Pro Santé Connect's claims. */
export interface TestAccount {
  sub: string;
  /** "8" + RPPS, as Pro Santé Connect sends it. */
  SubjectNameID: string;
  given_name: string;
  family_name: string;
  /** The acr of this account's logins (default eidas1, Pro Santé Connect's level for a card or the e-CPS app). */
  acr?: string;
  /** Lifetime of this account's access tokens (default one hour). */
  accessTokenSeconds?: number;
}

export interface TestIdentityProvider {
  issuer: string;
  /** Atrium's confidential client (authorization code flow, PKCE required). */
  atriumClient: { clientId: string; clientSecret: string };
  /** Machine clients (client credentials) whose JWT access tokens are for a resource. */
  machineClients: Record<string, string>;
  /** The provider's signing key, for tokens the tests shape themselves (expired, another iss…). */
  signingKey: { privateKey: CryptoKey; kid: string };
  /** A client-credentials access token from the token endpoint, for a resource indicator. */
  clientCredentialsToken(clientId: string, resource: string): Promise<string>;
  /** The introspection endpoint (RFC 7662), open to Atrium's client. */
  introspectionEndpoint: string;
  /**
   * A professional's access token as a DRIMbox consumer holds it: the code flow (PKCE) of the
   * consumer's own client, logged in as this account; opaque, checked by introspection.
   */
  consumerAccessToken(account: string): Promise<string>;
  /** The consumer revokes a token it holds (RFC 7009). */
  revokeConsumerToken(token: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * A real OpenID Connect provider (panva/oidc-provider) on a loopback port, playing Pro Santé
 * Connect: scope_all gives SubjectNameID; acr is eidas1 once logged in. Its login page is a
 * minimal form: POST /interaction/<uid>/login with login=<sub>.
 */
export async function startIdentityProvider(options: {
  redirectUri: string;
  /** Other Atrium instances logging in as the same client (a second territory's, in the DRIMbox end-to-end test). */
  moreRedirectUris?: string[];
  /** The audience of JWT access tokens issued for this resource indicator (Atrium's). */
  resources: Record<string, string>;
  accounts: TestAccount[];
}): Promise<TestIdentityProvider> {
  let handler: ((req: IncomingMessage, res: import('node:http').ServerResponse) => void) | undefined;
  const server: Server = createServer((req, res) => handler!(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomBytes(8).toString('hex');
  const jwk: JWK = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  const atriumClient = { clientId: 'atrium', clientSecret: randomBytes(24).toString('base64url') };
  const machineClients: Record<string, string> = { 'ris-nord': randomBytes(24).toString('base64url'), 'stranger': randomBytes(24).toString('base64url') };
  const accounts = new Map(options.accounts.map((a) => [a.sub, a]));
  // A remote DRIMbox consumer: another application the professionals log in to.
  const consumer = { clientId: 'drimbox-conso', clientSecret: randomBytes(24).toString('base64url'), redirectUri: 'http://127.0.0.1/drimbox/callback' };
  const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: atriumClient.clientId, client_secret: atriumClient.clientSecret,
        redirect_uris: [options.redirectUri, ...(options.moreRedirectUris ?? [])], grant_types: ['authorization_code'], response_types: ['code'],
        // Where Atrium asks to come back after a logout (its /app/ beside the callback).
        post_logout_redirect_uris: [new URL('/app/', options.redirectUri).toString()],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: consumer.clientId, client_secret: consumer.clientSecret, redirect_uris: [consumer.redirectUri],
        grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'client_secret_basic',
      },
      ...Object.entries(machineClients).map(([client_id, client_secret]) => ({
        client_id, client_secret, grant_types: ['client_credentials'], redirect_uris: [], response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
      })),
    ],
    jwks: { keys: [jwk] },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    scopes: ['openid', 'scope_all'],
    claims: { openid: ['sub'], scope_all: ['SubjectNameID', 'given_name', 'family_name'] },
    acrValues: ['eidas1', 'eidas2'],
    pkce: { required: () => true },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    // Atrium is a first-party client: the login itself is the consent.
    loadExistingGrant: async (ctx: { oidc: { client: { clientId: string }; session: { accountId?: string } } }) => {
      const accountId = ctx.oidc.session.accountId;
      if (!accountId) return undefined;
      const grant = new provider.Grant({ accountId, clientId: ctx.oidc.client.clientId });
      grant.addOIDCScope('openid scope_all');
      grant.addOIDCClaims(['SubjectNameID', 'given_name', 'family_name']);
      await grant.save();
      return grant;
    },
    findAccount: async (_ctx: unknown, sub: string) => {
      const account = accounts.get(sub);
      if (!account) return undefined;
      const { acr: _acr, ...claims } = account;
      return { accountId: sub, claims: async () => claims };
    },
    // Pro Santé Connect's access tokens carry the professional's national identifier: the introspection answer gives it.
    extraTokenClaims: async (_ctx: unknown, token: { accountId?: string }) => {
      const account = token.accountId !== undefined ? accounts.get(token.accountId) : undefined;
      return account ? { SubjectNameID: account.SubjectNameID } : undefined;
    },
    ttl: {
      AccessToken: (_ctx: unknown, token: { accountId?: string; resourceServer?: { accessTokenTTL?: number } }) =>
        (token.accountId !== undefined ? accounts.get(token.accountId)?.accessTokenSeconds : undefined) ?? token.resourceServer?.accessTokenTTL ?? 3600,
    },
    features: {
      devInteractions: { enabled: false },
      // Atrium, as a DRIMbox source, asks about the tokens consumers bring.
      introspection: { enabled: true, allowedPolicy: async (_ctx: unknown, client: { clientId: string }) => client.clientId === atriumClient.clientId },
      revocation: { enabled: true, allowedPolicy: async (_ctx: unknown, client: { clientId: string }, token: { clientId: string }) => token.clientId === client.clientId },
      clientCredentials: { enabled: true },
      userinfo: { enabled: true },
      // Pro Santé Connect ends its session on an RP-initiated logout that carries the
      // id_token_hint, without asking: the confirmation page submits itself.
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx: { body: unknown }, form: string) => {
          ctx.body = `<!DOCTYPE html><html><body>${form.replace('</form>', '<input type="hidden" name="logout" value="yes"></form>')}<script>document.forms[0].submit()</script></body></html>`;
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx: unknown, _client: unknown, oneOf?: string) => oneOf,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (_ctx: unknown, resource: string) => {
          const audience = options.resources[resource];
          if (!audience) throw new errors.InvalidTarget();
          return { scope: 'dicomweb', audience, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
        },
      },
    },
  });
  const oidc = provider.callback();

  handler = (req, res) => {
    const login = /^\/interaction\/([\w-]+)\/login$/.exec(req.url ?? '');
    if (req.method === 'POST' && login) {
      void finishLogin(req, res).catch((e: unknown) => {
        res.statusCode = 500;
        res.end(String(e));
      });
      return;
    }
    if (req.method === 'GET' && /^\/interaction\/[\w-]+$/.test(req.url ?? '')) {
      res.setHeader('content-type', 'text/html');
      res.end(`<form method="post" action="${req.url}/login"><input name="login"><button>Log in</button></form>`);
      return;
    }
    oidc(req, res);
  };

  async function finishLogin(req: IncomingMessage, res: import('node:http').ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
    const details = await provider.interactionDetails(req, res);
    const sub = form.get('login') ?? '';
    if (details.prompt.name !== 'login' || !accounts.has(sub)) {
      await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'unknown account' }, { mergeWithLastSubmission: false });
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: sub, acr: accounts.get(sub)!.acr ?? 'eidas1' } }, { mergeWithLastSubmission: false });
  }

  return {
    issuer, atriumClient, machineClients,
    signingKey: { privateKey, kid },
    async clientCredentialsToken(clientId, resource) {
      const response = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${clientId}:${machineClients[clientId]}`).toString('base64')}`,
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope: 'dicomweb' }),
      });
      const body = (await response.json()) as { access_token?: string; error?: string; error_description?: string };
      if (!response.ok || !body.access_token) throw new Error(`client credentials refused: ${body.error} ${body.error_description ?? ''}`);
      return body.access_token;
    },
    introspectionEndpoint: `${issuer}/token/introspection`,
    async consumerAccessToken(account) {
      const jar = new CookieJar();
      const verifier = randomBytes(32).toString('base64url');
      const authorize = new URL(`${issuer}/auth`);
      for (const [k, v] of Object.entries({
        client_id: consumer.clientId, response_type: 'code', scope: 'openid scope_all', redirect_uri: consumer.redirectUri, state: 's', nonce: 'n',
        code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
      })) authorize.searchParams.set(k, v);
      let url = authorize.toString();
      let code: string | null = null;
      for (let hops = 0; hops < 10 && code === null; hops++) {
        const response = /\/interaction\/[\w-]+$/.test(new URL(url).pathname)
          ? await request(jar, `${url}/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ login: account }) })
          : await request(jar, url);
        const location = response.headers.get('location');
        if (!location) throw new Error(`the provider stopped at ${url} with ${response.status}: ${await response.text()}`);
        url = new URL(location, url).toString();
        if (url.startsWith(consumer.redirectUri)) code = new URL(url).searchParams.get('code');
      }
      if (code === null) throw new Error('no authorization code');
      const response = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(consumer.clientId, consumer.clientSecret) },
        body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: consumer.redirectUri, code_verifier: verifier }),
      });
      const body = (await response.json()) as { access_token?: string; error?: string };
      if (!response.ok || !body.access_token) throw new Error(`code refused: ${body.error}`);
      return body.access_token;
    },
    async revokeConsumerToken(token) {
      const response = await fetch(`${issuer}/token/revocation`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(consumer.clientId, consumer.clientSecret) },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
      });
      if (!response.ok) throw new Error(`revocation answered ${response.status}`);
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** Atrium's auth.oidc for this provider, as Pro Santé Connect is configured (scope_all, eidas1, SubjectNameID). */
export function atriumOidcConfig(idp: TestIdentityProvider, atriumBase: string): OidcConfig {
  return {
    issuer: idp.issuer, clientId: idp.atriumClient.clientId, clientSecret: idp.atriumClient.clientSecret,
    tokenEndpointAuthMethod: 'client_secret_basic', redirectUri: `${atriumBase}/auth/callback`,
    scopes: ['openid', 'scope_all'], acrValues: 'eidas1', rppsClaim: 'SubjectNameID',
  };
}
