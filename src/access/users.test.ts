import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testDatabases } from '../../test/support/databases.ts';
import { openArchiveIndex, type ArchiveIndex } from '../index/archive-index.ts';
import type { Site } from '../index/records.ts';
import { SessionStore } from './sessions.ts';
import { AuthenticationError, hashPassword, lockoutMs, UserDirectory, UserError, verifyPasswordHash } from './users.ts';
import { rppsOfClaim } from './oidc.ts';
import { localReturnPath } from './login.ts';

const password = 'a long enough password';

describe('password hashes', () => {
  it('are scrypt with their parameters and a random salt, and verify only the same password', async () => {
    const a = await hashPassword(password);
    const b = await hashPassword(password);
    assert.match(a, /^scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}$/);
    assert.notEqual(a, b);
    assert.equal(await verifyPasswordHash(password, a), true);
    assert.equal(await verifyPasswordHash(password + ' ', a), false);
    assert.equal(await verifyPasswordHash(password, a.replace(/.{4}$/, 'AAA=')), false);
    assert.equal(await verifyPasswordHash(password, 'md5$abc'), false);
  });
});

describe('claims and return paths', () => {
  it('reads the RPPS out of Pro Santé Connect\'s SubjectNameID', () => {
    assert.equal(rppsOfClaim('810001234567'), '10001234567');
    assert.equal(rppsOfClaim('10001234567'), '10001234567');
    assert.equal(rppsOfClaim('310001234567'), undefined);
    assert.equal(rppsOfClaim(810001234567), undefined);
  });

  it('keeps local paths only after login', () => {
    assert.equal(localReturnPath(undefined), '/');
    assert.equal(localReturnPath('/studies?x=1#top'), '/studies?x=1#top');
    for (const bad of ['https://evil.example', '//evil.example', '/\\evil.example', 'evil', '/\tx', '\\\\evil']) assert.equal(localReturnPath(bad), undefined, bad);
  });
});

for (const engine of testDatabases()) {
  describe(`users and sessions (${engine.name})`, () => {
    let index: ArchiveIndex;
    let cleanup: () => Promise<void>;
    let users: UserDirectory;
    let site: Site;

    before(async () => {
      const opened = await engine.open();
      cleanup = opened.cleanup;
      index = await openArchiveIndex(opened.config);
      site = await index.createSite({ code: 'CHU-NORD', name: 'CHU Nord', finess: '590000001', issuerOfPatientID: 'CHUNORD' });
      users = new UserDirectory(index.sql, new Map([[site.code, site]]), new Map([[site.id, site]]));
    });
    after(async () => {
      await index?.close();
      await cleanup?.();
    });

    it('creates a user and makes a principal of them with their sites', async () => {
      const u = await users.createUser({ login: 'dr.a', displayName: 'Dr A', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10000000001' });
      const p = users.principalOf(u, 'session');
      assert.deepEqual({ kind: p.kind, id: p.id, roles: p.roles, sites: p.sites.map((s) => s.code), rpps: p.rpps, userId: p.userId }, {
        kind: 'user', id: 'dr.a', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10000000001', userId: u.id,
      });
      assert.equal((await users.findByRpps('10000000001'))?.login, 'dr.a');
      await assert.rejects(users.createUser({ login: 'dr.a', displayName: 'x', roles: ['radiologist'], sites: ['CHU-NORD'] }), UserError);
      await assert.rejects(users.createUser({ login: 'dr.b', displayName: 'x', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10000000001' }), /already belongs/);
      await assert.rejects(users.createUser({ login: 'dr.c', displayName: 'x', roles: ['radiologist'], sites: ['NOWHERE'] }), /not a configured site/);
      await assert.rejects(users.createUser({ login: 'pat', displayName: 'x', roles: ['patient'], sites: [] }), /patient record/);
      await assert.rejects(users.createUser({ login: 'dr.d', displayName: 'x', roles: ['radiologist'], sites: ['CHU-NORD'], password: 'short' }), /12 characters/);
    });

    it('binds an OIDC identity to the professional with its RPPS, once', async () => {
      await users.createUser({ login: 'dr.e', displayName: 'Dr E', roles: ['radiologist'], sites: ['CHU-NORD'], rpps: '10000000002' });
      const bound = await users.userOfOidcIdentity({ subject: 'https://psc|abc', rpps: '10000000002' });
      assert.equal(bound.login, 'dr.e');
      assert.equal((await users.userOfOidcIdentity({ subject: 'https://psc|abc' })).login, 'dr.e', 'then found by subject alone');
      await assert.rejects(users.userOfOidcIdentity({ subject: 'https://psc|other', rpps: '10000000002' }), (e: unknown) => e instanceof AuthenticationError && e.reason === 'not-a-user');
      await assert.rejects(users.userOfOidcIdentity({ subject: 'https://psc|nobody', rpps: '19999999999' }), /not a user of this platform/);
    });

    it('locks after 5 failures for 15 minutes, then counts afresh; refuses disabled accounts', async () => {
      await users.createUser({ login: 'local.f', displayName: 'F', roles: ['technologist'], sites: ['CHU-NORD'], password });
      const t0 = new Date();
      const reasonOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: AuthenticationError) => e.reason);
      for (let i = 0; i < 5; i++) assert.equal(await reasonOf(users.authenticateLocal('local.f', 'wrong', t0)), 'bad-password');
      assert.equal(await reasonOf(users.authenticateLocal('local.f', password, t0)), 'locked');
      const later = new Date(t0.getTime() + lockoutMs + 1000);
      assert.equal(await reasonOf(users.authenticateLocal('local.f', 'wrong', later)), 'bad-password');
      assert.equal((await users.findByLogin('local.f'))?.failedLogins, 1, 'an expired lock starts a new count');
      assert.equal(await reasonOf(users.authenticateLocal('local.f', password, later)), 'ok');
      assert.equal((await users.findByLogin('local.f'))?.failedLogins, 0);
      await users.updateUser('local.f', { disabled: true });
      assert.equal(await reasonOf(users.authenticateLocal('local.f', password, later)), 'disabled');
      assert.equal(await reasonOf(users.authenticateLocal('dr.a', password)), 'no-password');
      assert.equal(await reasonOf(users.authenticateLocal('nobody', password)), 'unknown-user');
    });

    it('ends sessions when idle, past their lifetime, or revoked; keeps one per share link too', async () => {
      const sessions = new SessionStore(index.sql, { idleMs: 60_000 * 30, absoluteMs: 3_600_000 * 12 });
      const user = (await users.findByLogin('dr.a'))!;
      const t0 = new Date();
      const { cookieValue, session } = await sessions.createSession({ userId: user.id }, '127.0.0.1', t0);
      assert.match(cookieValue, /^[A-Za-z0-9_-]{43}$/);
      assert.notEqual(session.idSha256, cookieValue);
      const stored = await index.sql.get<{ n: number | string }>('SELECT COUNT(*) AS n FROM sessions WHERE id_sha256 = ?', [cookieValue]);
      assert.equal(Number(stored!.n), 0, 'the cookie value itself is not stored');
      const at = (minutes: number) => new Date(t0.getTime() + minutes * 60_000);
      assert.equal((await sessions.sessionOf(cookieValue, at(29)))?.userId, user.id);
      // Used at 29 minutes: alive until 29 + 30.
      assert.ok(await sessions.sessionOf(cookieValue, at(58)));
      assert.equal(await sessions.sessionOf(cookieValue, at(58 + 31)), undefined, 'idle for 31 minutes');
      const second = await sessions.createSession({ userId: user.id }, undefined, t0);
      for (let m = 25; m < 12 * 60; m += 25) assert.ok(await sessions.sessionOf(second.cookieValue, at(m)), `alive at ${m} min`);
      assert.equal(await sessions.sessionOf(second.cookieValue, at(12 * 60 + 1)), undefined, 'past 12 hours, however used');
      const third = await sessions.createSession({ userId: user.id }, undefined, new Date());
      assert.equal(await sessions.revokeSession(third.cookieValue), true);
      assert.equal(await sessions.sessionOf(third.cookieValue), undefined);
      assert.equal(await sessions.sessionOf('not-a-session'), undefined);

      const link = await index.sql.get<{ id: number | string }>(
        `INSERT INTO share_links (token_sha256, created_by, created_at, expires_at) VALUES (?, ?, ?, ?) RETURNING id`,
        ['f'.repeat(64), 'dr.a', t0.toISOString(), at(60).toISOString()],
      );
      const shared = await sessions.createSession({ shareLinkId: Number(link!.id) });
      const opened = await sessions.sessionOf(shared.cookieValue);
      assert.equal(opened?.shareLinkId, Number(link!.id));
      assert.equal(opened?.userId, undefined);
    });
  });
}
