import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { startAtriumWithProvider } from './support/provider-and-atrium.ts';
import type { TestIdentityProvider } from './support/oidc-provider.ts';
import { addUser } from '../src/cli/users.ts';
import { CookieJar, loginThroughProvider, request } from './support/browser-session.ts';
import { atriumCliArgs } from './support/cli.ts';

const audience = 'https://atrium.test/';
const otherAudience = 'https://other.test/';
const martin = { sub: 'psc-martin', SubjectNameID: '810001234567', given_name: 'Jeanne', family_name: 'Martin' };
const stranger = { sub: 'psc-stranger', SubjectNameID: '810009999999', given_name: 'Paul', family_name: 'Inconnu' };
const weak = { sub: 'psc-weak', SubjectNameID: '810005555555', given_name: 'Luc', family_name: 'Faible', acr: 'eidas0' };
const localPassword = 'correct horse battery staple';

async function loginFailures(atrium: RunningAtrium): Promise<Array<{ actor: string; reason: string; via: string }>> {
  return atrium.archive.index.sql.all<{ actor: string; reason: string; via: string }>(
    `SELECT actor, reason, via FROM audit_events WHERE action = 'login-failed' ORDER BY id`,
  );
}

async function lastLoginFailure(atrium: RunningAtrium) {
  return (await loginFailures(atrium)).at(-1);
}

function json(body: unknown): RequestInit {
  return { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

// The full flows run on PostgreSQL when DATABASE_URL names one, else on SQLite.
const engine = testDatabases().at(-1)!;

describe(`authentication (${engine.name})`, () => {
  let idp: TestIdentityProvider;
  let atrium: RunningAtrium;
  let base: string;
  let cleanup: () => Promise<void>;

  before(async () => {
    ({ atrium, idp, base, close: cleanup } = await startAtriumWithProvider({
      engine,
      resources: { [audience]: audience, [otherAudience]: otherAudience },
      accounts: [martin, stranger, weak],
      configure: (c, provider) => {
        c.auth.accessTokens = { issuer: provider.issuer, audience, algorithms: ['RS256'], clockToleranceSeconds: 5 };
        c.auth.clients = [{ clientId: 'ris-nord', site: 'CHU-NORD', territory: false }];
      },
    }));
    await addUser(atrium.archive, { login: 'jmartin', displayName: 'Dr Jeanne Martin', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10001234567' }, { actor: 'test', via: 'cli' });
    await addUser(atrium.archive, { login: 'lfaible', displayName: 'Dr Luc Faible', roles: ['referring-physician'], sites: ['CLIN-SUD'], rpps: '10005555555' }, { actor: 'test', via: 'cli' });
    await addUser(atrium.archive, { login: 'manip.sud', displayName: 'Manipulateur Sud', roles: ['technologist'], sites: ['CLIN-SUD'], password: localPassword }, { actor: 'test', via: 'cli' });
    await addUser(atrium.archive, { login: 'manip.nord', displayName: 'Manipulateur Nord', roles: ['technologist'], sites: ['CHU-NORD'], password: localPassword }, { actor: 'test', via: 'cli' });
  });

  after(async () => {
    await cleanup?.();
  });

  describe('Pro Santé Connect login (authorization code flow)', () => {
    it('binds the provisioned professional by RPPS, opens a session and returns to the asked page', async () => {
      const jar = new CookieJar();
      const response = await loginThroughProvider(base, jar, martin.sub, '/dicom-web/studies?PatientID=1');
      assert.equal(response.status, 302, await response.clone().text());
      assert.equal(response.headers.get('location'), '/dicom-web/studies?PatientID=1');
      const setCookie = response.headers.getSetCookie().find((c) => c.startsWith('atrium_session='))!;
      assert.match(setCookie, /HttpOnly/);
      assert.match(setCookie, /SameSite=Lax/);
      assert.match(setCookie, /Path=\//);
      assert.equal(jar.get(base, 'atrium_login'), undefined, 'the login state serves once');

      const me = await request(jar, `${base}/auth/me`);
      assert.equal(me.status, 200);
      const body = (await me.json()) as Record<string, unknown>;
      assert.equal(body.kind, 'user');
      assert.equal(body.id, 'jmartin');
      assert.equal(body.rpps, '10001234567');
      assert.deepEqual(body.sites, ['CHU-NORD']);
      assert.equal(body.authenticatedBy, 'session');
      assert.equal(typeof body.csrfToken, 'string');

      const bound = await atrium.archive.index.sql.get<{ subject: string }>('SELECT subject FROM users WHERE login = ?', ['jmartin']);
      assert.equal(bound?.subject, `${idp.issuer}|${martin.sub}`);
      const login = await atrium.archive.index.sql.get<{ actor: string; via: string; details: string }>(
        `SELECT actor, via, details FROM audit_events WHERE action = 'login' ORDER BY id DESC LIMIT 1`,
      );
      assert.equal(login?.actor, 'jmartin');
      assert.equal(login?.via, 'portal');
      assert.equal(JSON.parse(login!.details).acr, 'eidas1');

      // The session carries the caller to the archive, as a user.
      assert.equal((await request(jar, `${base}/dicom-web/studies`)).status, 200);
    });

    it('asks for the CSRF token on a state-changing request of the session, and logout ends the session', async () => {
      const jar = new CookieJar();
      assert.equal((await loginThroughProvider(base, jar, martin.sub)).status, 302);
      const { csrfToken } = (await (await request(jar, `${base}/auth/me`)).json()) as { csrfToken: string };

      const forged = await request(jar, `${base}/auth/logout`, { method: 'POST' });
      assert.equal(forged.status, 403);
      assert.equal(forged.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      const wrong = await request(jar, `${base}/auth/logout`, { method: 'POST', headers: { 'x-csrf-token': csrfToken.slice(1) + 'A' } });
      assert.equal(wrong.status, 403);
      assert.equal((await request(jar, `${base}/auth/me`)).status, 200, 'refused requests do not end the session');

      const cookie = jar.get(base, 'atrium_session')!;
      const logout = await request(jar, `${base}/auth/logout`, { method: 'POST', headers: { 'x-csrf-token': csrfToken } });
      // A session of the provider's: the answer says where to end the provider's session too.
      assert.equal(logout.status, 200);
      const { endSessionUrl } = (await logout.json()) as { endSessionUrl: string };
      const end = new URL(endSessionUrl);
      const discovery = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as { end_session_endpoint: string };
      assert.equal(`${end.origin}${end.pathname}`, discovery.end_session_endpoint);
      assert.equal(end.searchParams.get('client_id'), idp.atriumClient.clientId);
      assert.equal(end.searchParams.get('post_logout_redirect_uri'), `${base}/app/`);
      const hint = JSON.parse(Buffer.from(end.searchParams.get('id_token_hint')!.split('.')[1]!, 'base64url').toString()) as { sub: string; aud: string; iss: string };
      assert.deepEqual([hint.sub, hint.aud, hint.iss], [martin.sub, idp.atriumClient.clientId, idp.issuer], 'the ID token of this login');
      // Kept no longer than needed: the ended session holds no ID token.
      const held = await atrium.archive.index.sql.get<{ n: number | string }>('SELECT COUNT(*) AS n FROM sessions WHERE id_token IS NOT NULL AND revoked_at IS NOT NULL');
      assert.equal(Number(held!.n), 0);
      assert.equal(jar.get(base, 'atrium_session'), undefined, 'the cookie is cleared');
      // The server ended it too: the old cookie, replayed, opens nothing.
      const replay = await fetch(`${base}/auth/me`, { headers: { cookie: `atrium_session=${cookie}` } });
      assert.equal(replay.status, 401);
      const audit = await atrium.archive.index.sql.get<{ actor: string }>(`SELECT actor FROM audit_events WHERE action = 'logout' ORDER BY id DESC LIMIT 1`);
      assert.equal(audit?.actor, 'jmartin');
      assert.equal((await lastLoginFailure(atrium))?.reason, 'expired-session');
    });

    it('refuses with 403 a provider identity that is no user of this platform, and never creates one', async () => {
      const jar = new CookieJar();
      const response = await loginThroughProvider(base, jar, stranger.sub);
      assert.equal(response.status, 403);
      assert.match(((await response.json()) as { detail: string }).detail, /not a user of this platform/);
      assert.equal(jar.get(base, 'atrium_session'), undefined);
      const users = await atrium.archive.index.sql.all('SELECT id FROM users WHERE rpps = ? OR subject LIKE ?', ['10009999999', `%${stranger.sub}`]);
      assert.equal(users.length, 0);
      assert.deepEqual(await lastLoginFailure(atrium), { actor: '10009999999', reason: 'not-a-user', via: 'portal' });
    });

    it('refuses with 403 a login below the required level of assurance (acr), without binding the identity', async () => {
      const jar = new CookieJar();
      const response = await loginThroughProvider(base, jar, weak.sub);
      assert.equal(response.status, 403);
      assert.match(((await response.json()) as { detail: string }).detail, /acr eidas0, eidas1 required/);
      assert.equal(jar.get(base, 'atrium_session'), undefined);
      assert.equal((await atrium.archive.index.sql.get<{ subject: string | null }>('SELECT subject FROM users WHERE login = ?', ['lfaible']))?.subject, null);
      assert.equal((await lastLoginFailure(atrium))?.reason, 'wrong-acr');
    });

    it('refuses a callback whose state is not the one this browser started with', async () => {
      const jar = new CookieJar();
      await request(jar, `${base}/auth/login?returnTo=/`);
      const response = await request(jar, `${base}/auth/callback?code=abc&state=forged`);
      assert.equal(response.status, 400);
      assert.equal((await lastLoginFailure(atrium))?.reason, 'bad-state');
      const noCookie = await fetch(`${base}/auth/callback?code=abc&state=forged`, { redirect: 'manual' });
      assert.equal(noCookie.status, 400);
    });

    for (const returnTo of ['https://evil.example/', '//evil.example/x', '/\\evil.example', 'javascript:alert(1)', '/ok\r\nLocation: https://evil.example']) {
      it(`refuses an open redirect after login: returnTo=${JSON.stringify(returnTo)}`, async () => {
        const response = await fetch(`${base}/auth/login?returnTo=${encodeURIComponent(returnTo)}`, { redirect: 'manual' });
        assert.equal(response.status, 400);
        assert.equal(response.headers.get('location'), null);
      });
    }
  });

  describe('bearer JWT access tokens', () => {
    const sign = (payload: JWTPayload, key = idp.signingKey.privateKey, kid = idp.signingKey.kid) =>
      new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' }).sign(key);
    const now = () => Math.floor(Date.now() / 1000);
    const get = (token: string, route = '/auth/me') => fetch(`${base}${route}`, { headers: { authorization: `Bearer ${token}` } });

    it('lets a configured machine client in with its client-credentials token, as that client of its site', async () => {
      const token = await idp.clientCredentialsToken('ris-nord', audience);
      const studies = await get(token, '/dicom-web/studies');
      assert.equal(studies.status, 200, await studies.clone().text());
      const query = await atrium.archive.index.sql.get<{ actor: string; actor_kind: string; site: string }>(
        `SELECT actor, actor_kind, site FROM audit_events WHERE action = 'query' ORDER BY id DESC LIMIT 1`,
      );
      assert.deepEqual(query, { actor: 'ris-nord', actor_kind: 'api-client', site: 'CHU-NORD' });
      const me = (await (await get(token)).json()) as Record<string, unknown>;
      assert.equal(me.kind, 'client');
      assert.equal(me.authenticatedBy, 'client-credentials');
      assert.deepEqual(me.sites, ['CHU-NORD']);
      assert.equal(me.territory, undefined);
      // A bearer call needs no CSRF token: a cross-site form cannot add the header.
      assert.equal((await fetch(`${base}/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })).status, 400);
    });

    it('refuses with 403 a client-credentials token of a client this platform does not know', async () => {
      const token = await idp.clientCredentialsToken('stranger', audience);
      assert.equal((await get(token, '/dicom-web/studies')).status, 403);
      assert.deepEqual(await lastLoginFailure(atrium), { actor: 'stranger', reason: 'not-a-user', via: 'api' });
    });

    it('refuses with 401 a token issued for another audience', async () => {
      const token = await idp.clientCredentialsToken('ris-nord', otherAudience);
      const response = await get(token, '/dicom-web/studies');
      assert.equal(response.status, 401);
      assert.match(response.headers.get('www-authenticate') ?? '', /invalid_token/);
      assert.equal((await lastLoginFailure(atrium))?.reason, 'wrong-audience');
    });

    it('refuses with 401 an expired token', async () => {
      const token = await sign({ iss: idp.issuer, aud: audience, sub: 'ris-nord', client_id: 'ris-nord', iat: now() - 3600, exp: now() - 60 });
      assert.equal((await get(token)).status, 401);
      assert.equal((await lastLoginFailure(atrium))?.reason, 'expired-token');
    });

    it('refuses with 401 a token of another issuer, even signed with a key Atrium trusts', async () => {
      const token = await sign({ iss: 'https://issuer.example', aud: audience, sub: 'ris-nord', client_id: 'ris-nord', exp: now() + 300 });
      assert.equal((await get(token)).status, 401);
      assert.equal((await lastLoginFailure(atrium))?.reason, 'wrong-issuer');
    });

    it('refuses with 401 a token signed by another key under the provider key id', async () => {
      const { privateKey } = await generateKeyPair('RS256');
      const token = await sign({ iss: idp.issuer, aud: audience, sub: 'ris-nord', client_id: 'ris-nord', exp: now() + 300 }, privateKey);
      assert.equal((await get(token)).status, 401);
      assert.equal((await lastLoginFailure(atrium))?.reason, 'bad-token');
    });

    it('refuses with 401 an unsigned token (alg none) and an HMAC one', async () => {
      const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const payload = { iss: idp.issuer, aud: audience, sub: 'ris-nord', client_id: 'ris-nord', exp: now() + 300 };
      const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`;
      const before = (await loginFailures(atrium)).length;
      assert.equal((await get(unsigned)).status, 401);
      const hmac = await new SignJWT(payload).setProtectedHeader({ alg: 'HS256', kid: idp.signingKey.kid }).sign(new TextEncoder().encode('a public key is no secret'));
      assert.equal((await get(hmac)).status, 401);
      const failures = await loginFailures(atrium);
      assert.equal(failures.length, before + 2);
      assert.ok(failures.slice(-2).every((f) => f.reason === 'bad-token'));
    });

    it('lets a user in with their access token once their identity is bound', async () => {
      // Bound by the Pro Santé Connect login above.
      const token = await sign({ iss: idp.issuer, aud: audience, sub: martin.sub, client_id: 'atrium', exp: now() + 300 });
      const me = (await (await get(token)).json()) as Record<string, unknown>;
      assert.equal(me.kind, 'user');
      assert.equal(me.id, 'jmartin');
      assert.equal(me.authenticatedBy, 'bearer-jwt');
      const unbound = await sign({ iss: idp.issuer, aud: audience, sub: 'psc-nobody', client_id: 'atrium', exp: now() + 300 });
      assert.equal((await get(unbound)).status, 403);
    });
  });

  describe('local accounts', () => {
    it('opens a session with the right password', async () => {
      const jar = new CookieJar();
      const response = await request(jar, `${base}/auth/local`, json({ login: 'manip.sud', password: localPassword }));
      assert.equal(response.status, 200);
      const body = (await response.json()) as Record<string, unknown>;
      assert.equal(body.id, 'manip.sud');
      assert.deepEqual(body.sites, ['CLIN-SUD']);
      assert.ok(jar.get(base, 'atrium_session'));
      const me = (await (await request(jar, `${base}/auth/me`)).json()) as Record<string, unknown>;
      assert.equal(me.csrfToken, body.csrfToken);
      const stored = await atrium.archive.index.sql.get<{ password_hash: string }>('SELECT password_hash FROM users WHERE login = ?', ['manip.sud']);
      assert.match(stored!.password_hash, /^scrypt\$32768\$8\$1\$/);
      assert.ok(!stored!.password_hash.includes(localPassword));
    });

    it('refuses a wrong password and an unknown login alike with 401, and records which it was', async () => {
      const wrong = await fetch(`${base}/auth/local`, json({ login: 'manip.sud', password: 'not the password' }));
      assert.equal(wrong.status, 401);
      assert.deepEqual(await lastLoginFailure(atrium), { actor: 'manip.sud', reason: 'bad-password', via: 'portal' });
      const unknown = await fetch(`${base}/auth/local`, json({ login: 'nobody', password: 'not the password' }));
      assert.equal(unknown.status, 401);
      assert.equal(((await unknown.json()) as { detail: string }).detail, ((await wrong.json()) as { detail: string }).detail);
      assert.deepEqual(await lastLoginFailure(atrium), { actor: 'nobody', reason: 'unknown-user', via: 'portal' });
      const audit = await atrium.archive.index.sql.all<{ details: string | null }>(`SELECT details FROM audit_events WHERE action IN ('login', 'login-failed')`);
      assert.ok(audit.every((a) => !(a.details ?? '').includes('not the password')), 'no password in the audit trail');
    });

    it('locks the account after 5 wrong passwords: even the right one is then refused with 423', async () => {
      for (let i = 1; i <= 5; i++) {
        const r = await fetch(`${base}/auth/local`, json({ login: 'manip.nord', password: `wrong ${i}` }));
        assert.equal(r.status, 401);
        if (i === 5) assert.match(((await r.json()) as { detail: string }).detail, /locked until/);
      }
      const right = await fetch(`${base}/auth/local`, json({ login: 'manip.nord', password: localPassword }));
      assert.equal(right.status, 423);
      assert.match(((await right.json()) as { detail: string }).detail, /locked after 5 failed logins until/);
      assert.equal(right.headers.getSetCookie().length, 0);
      assert.deepEqual(await lastLoginFailure(atrium), { actor: 'manip.nord', reason: 'locked', via: 'portal' });
      const row = await atrium.archive.index.sql.get<{ locked_until: string }>('SELECT locked_until FROM users WHERE login = ?', ['manip.nord']);
      const minutes = (Date.parse(row!.locked_until) - Date.now()) / 60_000;
      assert.ok(minutes > 14 && minutes <= 15, `locked for ${minutes} minutes`);
    });
  });
});

describe('sessions and login attempts (sqlite)', () => {
  let atrium: RunningAtrium;
  let base: string;

  before(async () => {
    atrium = await startAtrium({
      configure: (c) => {
        c.auth.sessions.idleMinutes = 1 / 60;
        c.auth.loginAttemptsPerMinute = 4;
      },
    });
    base = atrium.dicomweb.replace('/dicom-web', '');
    await addUser(atrium.archive, { login: 'secretaire', displayName: 'Secrétariat', roles: ['referring-physician'], sites: ['CHU-NORD'], password: localPassword }, { actor: 'test', via: 'cli' });
  });

  after(() => atrium?.close());

  it('ends a session left idle longer than the idle timeout', async () => {
    const jar = new CookieJar();
    assert.equal((await request(jar, `${base}/auth/local`, json({ login: 'secretaire', password: localPassword }))).status, 200);
    assert.equal((await request(jar, `${base}/auth/me`)).status, 200);
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    const expired = await request(jar, `${base}/auth/me`);
    assert.equal(expired.status, 401);
    assert.match(((await expired.json()) as { detail: string }).detail, /session has ended/);
    assert.equal((await lastLoginFailure(atrium))?.reason, 'expired-session');
  });

  it('answers 404 to an OIDC login when no provider is configured', async () => {
    assert.equal((await fetch(`${base}/auth/login`, { redirect: 'manual' })).status, 404);
  });

  it('limits login attempts per address: 429 with Retry-After, recorded once', async () => {
    // One attempt was spent by the idle-timeout test above.
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await fetch(`${base}/auth/local`, json({ login: 'secretaire', password: `guess ${i}` }))).status);
    assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
    const limited = await fetch(`${base}/auth/local`, json({ login: 'secretaire', password: localPassword }));
    assert.equal(limited.status, 429);
    const retryAfter = Number(limited.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    const rateLimited = (await loginFailures(atrium)).filter((f) => f.reason === 'rate-limited');
    assert.equal(rateLimited.length, 1);
  });
});

describe('atrium user (CLI)', () => {
  it('adds a professional and a local account, lists them without secrets, and records user-admin', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'atrium-cli-'));
    try {
      const run = (args: string[], stdin?: string) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        const child = execFile(process.execPath, [...atriumCliArgs(), ...args, '--data-dir', dataDir], { env: { ...process.env, DATABASE_URL: '' } }, (e, stdout, stderr) => {
          resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, stdout, stderr });
        });
        child.stdin!.end(stdin ?? '');
      });
      const added = await run(['user', 'add', 'dr.lefevre', '--name', 'Dr Anne Lefèvre', '--role', 'radiologist', '--site', 'LOCAL', '--rpps', '10007654321']);
      assert.equal(added.code, 0, added.stderr);
      const local = await run(['user', 'add', 'accueil', '--name', 'Accueil', '--role', 'technologist', '--site', 'LOCAL', '--password-stdin'], `${localPassword}\n`);
      assert.equal(local.code, 0, local.stderr);
      const refused = await run(['user', 'add', 'x', '--name', 'X', '--role', 'wizard', '--site', 'LOCAL']);
      assert.equal(refused.code, 2);
      const nobody = await run(['user', 'add', 'p', '--name', 'P', '--role', 'patient', '--patient', 'LOCAL:NOBODY', '--password-stdin'], `${localPassword}\n`);
      assert.equal(nobody.code, 2);
      assert.match(nobody.stderr, /patient NOBODY of LOCAL is not in the archive/);
      const listed = await run(['user', 'list']);
      assert.equal(listed.code, 0, listed.stderr);
      const { users } = JSON.parse(listed.stdout) as { users: Array<Record<string, unknown>> };
      assert.deepEqual(users.map((u) => [u.login, u.rpps, u.localPassword, u.sites]), [
        ['accueil', undefined, true, ['LOCAL']],
        ['dr.lefevre', '10007654321', false, ['LOCAL']],
      ]);
      assert.ok(!listed.stdout.includes('scrypt'));
      const audit = await run(['audit', 'verify']);
      assert.equal(JSON.parse(audit.stdout).records, 2);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
