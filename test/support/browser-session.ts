/**
 * A browser's side of HTTP, by hand: cookies kept per host, redirects not followed, and the
 * Pro Santé Connect login through the test identity provider (test/support/oidc-provider.ts).
 */
import assert from 'node:assert/strict';

/** Cookies by host:port, carried by hand as a browser would (names and values only). */
export class CookieJar {
  private readonly jar = new Map<string, Map<string, string>>();

  store(url: string, response: Response): void {
    const host = new URL(url).host;
    const cookies = this.jar.get(host) ?? new Map<string, string>();
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const expired = attributes.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '';
      if (expired) cookies.delete(name);
      else cookies.set(name, value);
    }
    this.jar.set(host, cookies);
  }

  header(url: string): string {
    return [...(this.jar.get(new URL(url).host) ?? new Map<string, string>())].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  get(url: string, name: string): string | undefined {
    return this.jar.get(new URL(url).host)?.get(name);
  }
}

/** One request without following redirects, cookies sent and kept. */
export async function request(jar: CookieJar, url: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const cookie = jar.header(url);
  if (cookie) headers.set('cookie', cookie);
  const response = await fetch(url, { ...init, headers, redirect: 'manual' });
  jar.store(url, response);
  return response;
}

/**
 * The browser's side of a Pro Santé Connect login: Atrium's /auth/login, the provider's
 * authorization endpoint, its login form, back to Atrium's callback. Returns Atrium's last answer.
 */
export async function loginThroughProvider(base: string, jar: CookieJar, account: string, returnTo = '/dicom-web/studies'): Promise<Response> {
  let response = await request(jar, `${base}/auth/login?returnTo=${encodeURIComponent(returnTo)}`);
  assert.equal(response.status, 302, await response.clone().text());
  let url = new URL(response.headers.get('location')!, base).toString();
  const authorization = new URL(url);
  assert.equal(authorization.searchParams.get('code_challenge_method'), 'S256');
  assert.ok(authorization.searchParams.get('code_challenge'));
  assert.ok(authorization.searchParams.get('nonce'));
  assert.equal(authorization.searchParams.get('scope'), 'openid scope_all');
  assert.equal(authorization.searchParams.get('acr_values'), 'eidas1');
  for (let hops = 0; hops < 10; hops++) {
    if (url.startsWith(`${base}/auth/callback`)) return request(jar, url);
    const interaction = /\/interaction\/[\w-]+$/.exec(new URL(url).pathname);
    response = interaction
      ? await request(jar, `${url}/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ login: account }) })
      : await request(jar, url);
    const location = response.headers.get('location');
    assert.ok(location, `the provider stopped at ${url} with ${response.status}: ${await response.text()}`);
    url = new URL(location, url).toString();
  }
  throw new Error('too many redirects');
}


/** A local account's session, as the portal opens it: POST /auth/local, then the CSRF token from /auth/me. */
export async function loginLocal(base: string, login: string, password: string): Promise<{ jar: CookieJar; csrf: string }> {
  const jar = new CookieJar();
  const r = await request(jar, `${base}/auth/local`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login, password }) });
  assert.equal(r.status, 200, await r.clone().text());
  const me = await request(jar, `${base}/auth/me`);
  assert.equal(me.status, 200);
  return { jar, csrf: ((await me.json()) as { csrfToken: string }).csrfToken };
}

/**
 * A portal session's JSON calls, as the portal makes them: `call(method, path, body?)` against
 * `base` with the session's cookie and CSRF token (a body is sent as JSON).
 */
export function sessionCaller(base: string, session: { jar: CookieJar; csrf: string }) {
  return (method: string, url: string, body?: unknown): Promise<Response> => request(session.jar, `${base}${url}`, {
    method, headers: { 'x-csrf-token': session.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}
