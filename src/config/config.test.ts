import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import YAML from 'yaml';
import { ConfigError, loadConfig } from './config.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'atrium-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function load(doc: unknown) {
  const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, YAML.stringify(doc));
  return loadConfig({ file, env: {} });
}

const peers = [
  { aeTitle: 'CT1', site: 'LOCAL' },
  { aeTitle: 'TELERAD', host: '10.0.0.5', port: 104, site: 'LOCAL' },
];

describe('routing configuration', () => {
  it('has no rules by default, and safe retry settings', () => {
    const c = load({});
    assert.deepEqual(c.routing.rules, []);
    assert.deepEqual(c.routing.retry, { baseDelayMs: 5000, maxDelayMs: 600000, maxAttempts: 50 });
    assert.equal(c.routing.associationsPerPeer, 2);
  });

  it('reads rules, a single value standing for a list', () => {
    const c = load({ peers, routing: { rules: [{ name: 'ct', sites: 'LOCAL', modalities: ['ct'], destinations: ['TELERAD'] }], associationsPerPeer: 4 } });
    assert.deepEqual(c.routing.rules, [{ name: 'ct', sites: ['LOCAL'], modalities: ['CT'], SOPClassUIDs: undefined, callingAETitles: undefined, destinations: ['TELERAD'] }]);
    assert.equal(c.routing.associationsPerPeer, 4);
  });

  it('refuses destinations that are not peers with an address, unknown sites and conditions, bad retry settings', () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ rules: [{ name: 'x', destinations: ['NOPE'] }] }, /NOPE is not a configured peer/],
      [{ rules: [{ name: 'x', destinations: ['CT1'] }] }, /CT1 has no host and port/],
      [{ rules: [{ name: 'x', destinations: [] }] }, /destinations must be a non-empty list/],
      [{ rules: [{ name: 'x', sites: ['ELSEWHERE'], destinations: ['TELERAD'] }] }, /ELSEWHERE is not a configured site/],
      [{ rules: [{ name: 'x', modality: 'CT', destinations: ['TELERAD'] }] }, /modality is not a rule condition/],
      [{ rules: [{ name: 'x', destinations: ['TELERAD'] }, { name: 'x', destinations: ['TELERAD'] }] }, /used twice/],
      [{ retry: { baseDelayMs: 1000, maxDelayMs: 10 } }, /maxDelayMs must be at least baseDelayMs/],
      [{ associationsPerPeer: 0 }, /associationsPerPeer/],
    ];
    for (const [routing, message] of bad) assert.throws(() => load({ peers, routing }), (e: unknown) => e instanceof ConfigError && message.test(e.message), message.source);
  });
});

describe('HL7 configuration', () => {
  it('listens on loopback 2575 by default and serves no sender until one is listed', () => {
    const c = load({});
    assert.deepEqual({ enabled: c.hl7.enabled, host: c.hl7.host, port: c.hl7.port, senders: c.hl7.senders }, { enabled: true, host: '127.0.0.1', port: 2575, senders: [] });
    assert.equal(c.hl7.defaultCharacterSet, '8859/1');
  });

  it('maps each sending application and facility to a configured site', () => {
    const c = load({ hl7: { port: 2600, senders: [{ application: 'RIS', facility: 'CHU', site: 'LOCAL', stationAETitle: 'CT1' }] } });
    assert.deepEqual(c.hl7.senders, [{ application: 'RIS', facility: 'CHU', site: 'LOCAL', stationAETitle: 'CT1' }]);
    assert.equal(c.hl7.port, 2600);
    assert.throws(() => load({ hl7: { senders: [{ application: 'RIS', facility: 'CHU', site: 'NOWHERE' }] } }), ConfigError);
    assert.throws(() => load({ hl7: { senders: [{ application: 'RIS', site: 'LOCAL' }] } }), /facility is required/);
    assert.throws(() => load({ hl7: { defaultCharacterSet: 'EBCDIC' } }), /defaultCharacterSet/);
  });
});

describe('auth configuration', () => {
  const oidc = { issuer: 'https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet', clientId: 'atrium-territoire', redirectUri: 'https://atrium.example.fr/auth/callback' };
  const loadWith = (doc: unknown, env: Record<string, string> = {}) => {
    const file = path.join(dir, `a${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, YAML.stringify(doc));
    return loadConfig({ file, env });
  };

  it('has OIDC and bearer JWTs off, and safe session settings, by default', () => {
    const c = load({});
    assert.equal(c.auth.oidc, undefined);
    assert.equal(c.auth.accessTokens, undefined);
    assert.deepEqual(c.auth.sessions, { idleMinutes: 30, absoluteHours: 12, secureCookie: true });
    assert.equal(c.auth.loginAttemptsPerMinute, 10);
  });

  it('reads Pro Santé Connect settings, the secret only from the environment', () => {
    const c = loadWith({ auth: { oidc: { ...oidc, scopes: 'openid scope_all', acrValues: 'eidas1' }, accessTokens: { audience: 'https://atrium.example.fr' } } }, { ATRIUM_OIDC_CLIENT_SECRET: 's3cret' });
    assert.equal(c.auth.oidc?.clientSecret, 's3cret');
    assert.deepEqual(c.auth.oidc?.scopes, ['openid', 'scope_all']);
    assert.equal(c.auth.oidc?.rppsClaim, 'SubjectNameID');
    assert.equal(c.auth.oidc?.tokenEndpointAuthMethod, 'client_secret_basic');
    assert.equal(c.auth.accessTokens?.issuer, oidc.issuer);
    assert.deepEqual(c.auth.accessTokens?.algorithms, ['RS256', 'PS256', 'ES256']);
    const listed = loadWith({ auth: { oidc: { ...oidc, scopes: ['openid', 'scope_all'] } } }, { ATRIUM_OIDC_CLIENT_SECRET: 's3cret' });
    assert.deepEqual(listed.auth.oidc?.scopes, ['openid', 'scope_all']);
  });

  it('refuses a client secret in the file, a missing secret, plain-HTTP providers, HS256 and unknown client sites', () => {
    assert.throws(() => loadWith({ auth: { oidc: { ...oidc, clientSecret: 'x' } } }, { ATRIUM_OIDC_CLIENT_SECRET: 'x' }), /must not be in the file/);
    assert.throws(() => loadWith({ auth: { oidc } }), /ATRIUM_OIDC_CLIENT_SECRET is not set/);
    assert.throws(() => loadWith({ auth: { oidc: { ...oidc, issuer: 'http://idp.example.fr' } } }, { ATRIUM_OIDC_CLIENT_SECRET: 'x' }), /https/);
    assert.throws(() => loadWith({ auth: { accessTokens: { issuer: 'https://idp.example.fr', audience: 'a', algorithms: ['HS256'] } } }), ConfigError);
    assert.throws(() => loadWith({ auth: { accessTokens: { issuer: 'https://idp.example.fr', audience: 'a' }, clients: [{ clientId: 'ris', site: 'NOWHERE' }] } }), /not a configured site/);
    assert.throws(() => loadWith({ auth: { clients: [{ clientId: 'ris', site: 'LOCAL' }] } }), /need auth.accessTokens/);
  });
});
