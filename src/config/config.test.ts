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

  it('leaves a destination not in the file to the start, which looks for it among the peers added in the portal (forwarding.test.ts)', () => {
    const c = load({ peers, routing: { rules: [{ name: 'x', destinations: ['ADDED-IN-PORTAL'] }] } });
    assert.deepEqual(c.routing.rules[0]!.destinations, ['ADDED-IN-PORTAL']);
  });

  it('refuses file peers without an address as destinations, unknown sites and conditions, bad retry settings', () => {
    const bad: Array<[unknown, RegExp]> = [
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

describe('audit export configuration', () => {
  it('exports nothing unless audit.syslog is configured', () => {
    assert.equal(load({}).audit.syslog, undefined);
  });

  it('reads the collector, with port 6514, a one-second poll and this host as AuditSourceID by default', () => {
    const ca = path.join(dir, 'ca.pem');
    writeFileSync(ca, 'not read here');
    const c = load({ audit: { syslog: { host: 'arr.example.org', caFile: ca } } });
    assert.equal(c.audit.syslog?.port, 6514);
    assert.equal(c.audit.syslog?.pollMs, 1000);
    assert.equal(c.audit.syslog?.host, 'arr.example.org');
    assert.ok(c.audit.syslog?.auditSourceId);
    const mutual = load({ audit: { syslog: { host: 'h', port: 7514, caFile: ca, certFile: ca, keyFile: ca, auditSourceId: 'ATRIUM-1', pollMs: 50 } } });
    assert.deepEqual(mutual.audit.syslog, { host: 'h', port: 7514, caFile: ca, certFile: ca, keyFile: ca, auditSourceId: 'ATRIUM-1', pollMs: 50 });
  });

  it('refuses a collector without a CA to verify it by, missing files, a lone client key and unknown keys', () => {
    const ca = path.join(dir, 'ca2.pem');
    writeFileSync(ca, '');
    const bad: Array<[unknown, RegExp]> = [
      [{ host: 'h' }, /audit\.syslog\.caFile is required/],
      [{ caFile: ca }, /audit\.syslog\.host is required/],
      [{ host: 'h', caFile: path.join(dir, 'nope.pem') }, /caFile: file not found/],
      [{ host: 'h', caFile: ca, keyFile: ca }, /certFile and keyFile go together/],
      [{ host: 'h', caFile: ca, port: 70000 }, /port must be between/],
      [{ host: 'h', caFile: ca, pollMs: 1 }, /pollMs must be at least 10/],
      [{ host: 'h', caFile: ca, verify: false }, /verify is not a key/],
    ];
    for (const [syslog, message] of bad) assert.throws(() => load({ audit: { syslog } }), (e: unknown) => e instanceof ConfigError && message.test(e.message), message.source);
  });
});

describe('audit anchor configuration', () => {
  const loadWith = (doc: unknown, env: Record<string, string>) => {
    const file = path.join(dir, `a${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, YAML.stringify(doc));
    return loadConfig({ file, env, dataDir: path.join(dir, 'data') });
  };

  it('anchors every minute to a file in the data folder by default, with the key only from the environment', () => {
    const c = loadWith({}, {});
    assert.deepEqual(c.audit.anchor, { file: path.join(dir, 'data', 'audit-anchors.jsonl'), everySeconds: 60 });
    const key = 'k'.repeat(44);
    const set = loadWith({ audit: { anchor: { file: '/mnt/worm/anchors.jsonl', everySeconds: 10 } } }, { ATRIUM_AUDIT_ANCHOR_KEY: key });
    assert.deepEqual(set.audit.anchor, { file: '/mnt/worm/anchors.jsonl', everySeconds: 10, key });
  });

  it('refuses a key in the file, a short key, an interval out of range and unknown keys', () => {
    const bad: Array<[unknown, Record<string, string>, RegExp]> = [
      [{ key: 'x'.repeat(44) }, {}, /must not be in the file: set ATRIUM_AUDIT_ANCHOR_KEY/],
      [{}, { ATRIUM_AUDIT_ANCHOR_KEY: 'short' }, /at least 32 characters/],
      [{ everySeconds: 0 }, {}, /everySeconds must be/],
      [{ everySeconds: 1.5 }, {}, /everySeconds must be/],
      [{ path: 'x' }, {}, /audit\.anchor\.path is not a key/],
    ];
    for (const [anchor, env, message] of bad) assert.throws(() => loadWith({ audit: { anchor } }, env), (e: unknown) => e instanceof ConfigError && message.test(e.message), message.source);
  });
});

describe('HTTP hardening configuration', () => {
  const pem = (name: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
    return file;
  };
  const fingerprint = 'AB:'.repeat(31) + 'AB';

  it('believes no proxy by default, and only addresses or ranges when told', () => {
    assert.deepEqual(load({}).http.trustProxy, []);
    assert.deepEqual(load({ http: { trustProxy: ['10.0.0.0/8', '::1'] } }).http.trustProxy, ['10.0.0.0/8', '::1']);
    assert.throws(() => load({ http: { trustProxy: true } }), /http\.trustProxy must list addresses/);
  });

  it('has safe limits and no TLS by default', () => {
    const c = load({});
    assert.equal(c.http.maxJsonBytes, 1024 * 1024);
    assert.equal(c.http.headersTimeoutMs, 20_000);
    assert.equal(c.http.bodyTimeoutMs, 30_000);
    assert.equal(c.http.tls, undefined);
  });

  it('reads http.tls: TLS 1.2 at least, client certificates asked for once clients are listed, fingerprints as openssl prints them', () => {
    const tls = { certFile: pem('s.crt'), keyFile: pem('s.key'), caFile: pem('ca.crt') };
    assert.deepEqual(load({ http: { tls } }).http.tls, { ...tls, requestClientCertificate: false, minVersion: 'TLSv1.2', clients: [] });
    const c = load({ http: { maxJsonBytes: 65536, tls: { ...tls, minVersion: 'TLSv1.3', clients: [{ name: 'ris', certificateSha256: fingerprint, site: 'LOCAL' }] } } });
    assert.equal(c.http.maxJsonBytes, 65536);
    assert.equal(c.http.tls?.minVersion, 'TLSv1.3');
    assert.equal(c.http.tls?.requestClientCertificate, true);
    assert.deepEqual(c.http.tls?.clients, [{ name: 'ris', certificateSha256: 'ab'.repeat(32), site: 'LOCAL', territory: false }]);
  });

  it('refuses TLS below 1.2, missing files, clients without a CA, bad fingerprints, unknown sites, a portal without index.html', () => {
    const tls = { certFile: pem('s.crt'), keyFile: pem('s.key') };
    const bad: Array<[unknown, RegExp]> = [
      [{ tls: { ...tls, minVersion: 'TLSv1.1' } }, /minVersion must be TLSv1.2 or TLSv1.3/],
      [{ tls: { ...tls, keyFile: path.join(dir, 'nope.key') } }, /keyFile: .*nope\.key not found/],
      [{ tls: { keyFile: tls.keyFile } }, /http\.tls\.certFile is required/],
      [{ tls: { ...tls, requestClientCertificate: true } }, /needs http\.tls\.caFile/],
      [{ tls: { ...tls, clients: [{ name: 'ris', certificateSha256: fingerprint, site: 'LOCAL' }] } }, /needs http\.tls\.caFile/],
      [{ tls: { ...tls, caFile: pem('ca.crt'), requestClientCertificate: false, clients: [{ name: 'ris', certificateSha256: fingerprint, site: 'LOCAL' }] } }, /need requestClientCertificate/],
      [{ tls: { ...tls, caFile: pem('ca.crt'), clients: [{ name: 'ris', certificateSha256: 'abcd', site: 'LOCAL' }] } }, /certificateSha256 must be/],
      [{ tls: { ...tls, caFile: pem('ca.crt'), clients: [{ name: 'ris', certificateSha256: fingerprint, site: 'NOWHERE' }] } }, /NOWHERE is not a configured site/],
      [{ maxJsonBytes: 10 }, /maxJsonBytes must be at least 1024/],
      [{ headersTimeoutMs: 5 }, /headersTimeoutMs/],
      [{ portalDir: dir }, /holds no index\.html/],
    ];
    for (const [http, message] of bad) assert.throws(() => load({ http }), (e: unknown) => e instanceof ConfigError && message.test(e.message), message.source);
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

describe('DIMSE listener limits before the AE title is checked', () => {
  it('caps connections not associated yet, their A-ASSOCIATE-RQ deadline and size by default', () => {
    const c = load({});
    assert.equal(c.dimse.maxPendingConnections, 32);
    assert.equal(c.dimse.associateTimeoutMs, 10_000);
    assert.equal(c.dimse.maxAssociateRequestBytes, 64 * 1024);
    const set = load({ dimse: { maxPendingConnections: 8, associateTimeoutMs: 5000, maxAssociateRequestBytes: 131072 } });
    assert.deepEqual([set.dimse.maxPendingConnections, set.dimse.associateTimeoutMs, set.dimse.maxAssociateRequestBytes], [8, 5000, 131072]);
  });

  it('refuses no pending connection at all, a deadline out of range and a request limit out of range', () => {
    assert.throws(() => load({ dimse: { maxPendingConnections: 0 } }), ConfigError);
    assert.throws(() => load({ dimse: { maxAssociations: 0 } }), ConfigError);
    assert.throws(() => load({ dimse: { associateTimeoutMs: 10 } }), ConfigError);
    assert.throws(() => load({ dimse: { associateTimeoutMs: 3_600_000 } }), ConfigError);
    assert.throws(() => load({ dimse: { maxAssociateRequestBytes: 100 } }), ConfigError);
    assert.throws(() => load({ dimse: { maxAssociateRequestBytes: 1024 ** 3 } }), ConfigError);
  });
});

describe('DMP configuration', () => {
  const cert = path.join(dir, 'site.crt');
  const key = path.join(dir, 'site.key');
  const ca = path.join(dir, 'igc.crt');
  for (const f of [cert, key, ca]) writeFileSync(f, 'placeholder');

  it('publishes nothing by default, and reads the endpoint and each site\'s certificate files', () => {
    assert.equal(load({}).dmp.endpoint, undefined);
    const c = load({ dmp: { endpoint: 'https://dmp.example.fr/services', caFile: ca, sites: [{ site: 'LOCAL', certFile: cert, keyFile: key, keyPassphraseEnv: 'DMP_KEY_PASS' }] } });
    assert.equal(c.dmp.endpoint, 'https://dmp.example.fr/services');
    assert.deepEqual(c.dmp.sites.map((s) => [s.site, s.certFile, s.keyFile, s.keyPassphraseEnv, s.sector.code]), [['LOCAL', cert, key, 'DMP_KEY_PASS', 'SA01']]);
  });

  it('refuses plain HTTP, a missing CA, a key or passphrase in the file, missing files and unknown sites', () => {
    const site = { site: 'LOCAL', certFile: cert, keyFile: key };
    assert.throws(() => load({ dmp: { endpoint: 'http://dmp.example.fr', caFile: ca } }), /https/);
    assert.throws(() => load({ dmp: { endpoint: 'https://dmp.example.fr' } }), /dmp.caFile is required/);
    assert.throws(() => load({ dmp: { sites: [{ ...site, keyPassphrase: 'secret' }] } }), /never goes in the file/);
    assert.throws(() => load({ dmp: { sites: [{ ...site, certFile: path.join(dir, 'absent.crt') }] } }), /file not found/);
    assert.throws(() => load({ dmp: { sites: [{ ...site, site: 'NOWHERE' }] } }), /not a configured site/);
    assert.throws(() => load({ dmp: { sites: [{ ...site, keyPassphraseEnv: 'not a name' }] } }), /environment variable/);
    assert.throws(() => load({ dmp: { sourceId: 'not-an-oid' } }), /OID/);
  });
});

describe('INSi configuration', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'atrium-insi-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const [cert, key, ca] = ['site.crt', 'site.key', 'ca.pem'].map((f) => path.join(dir, f)) as [string, string, string];
  for (const f of [cert, key, ca]) writeFileSync(f, 'placeholder');

  it('calls nothing by default, and reads the endpoint and each site\'s certificate files', () => {
    assert.equal(load({}).insi.endpoint, undefined);
    const c = load({ insi: { endpoint: 'https://insi.example.fr/services', caFile: ca, software: { approval: 'IDAM-1' }, sites: [{ site: 'LOCAL', certFile: cert, keyFile: key, keyPassphraseEnv: 'INSI_KEY_PASS' }] } });
    assert.deepEqual([c.insi.endpoint, c.insi.caFile, c.insi.software.approval, c.insi.software.name], ['https://insi.example.fr/services', ca, 'IDAM-1', 'Atrium']);
    assert.deepEqual(c.insi.sites, [{ site: 'LOCAL', certFile: cert, keyFile: key, keyPassphraseEnv: 'INSI_KEY_PASS' }]);
  });

  it('refuses plain HTTP, a missing CA, a key or passphrase in the file, missing files, unknown sites and keys', () => {
    const site = { site: 'LOCAL', certFile: cert, keyFile: key };
    assert.throws(() => load({ insi: { endpoint: 'http://insi.example.fr', caFile: ca } }), /https/);
    assert.throws(() => load({ insi: { endpoint: 'https://insi.example.fr' } }), /insi.caFile is required/);
    assert.throws(() => load({ insi: { sites: [{ ...site, keyPassphrase: 'secret' }] } }), /never goes in the file/);
    assert.throws(() => load({ insi: { sites: [{ ...site, keyFile: path.join(dir, 'absent.key') }] } }), /file not found/);
    assert.throws(() => load({ insi: { sites: [{ ...site, site: 'NOWHERE' }] } }), /not a configured site/);
    assert.throws(() => load({ insi: { sites: [site, site] } }), /twice/);
    assert.throws(() => load({ insi: { sites: [{ ...site, keyPassphraseEnv: 'not a name' }] } }), /environment variable/);
    assert.throws(() => load({ insi: { password: 'x' } }), /not a key of insi/);
  });
});

describe('storage compression configuration', () => {
  it('compresses nothing by default, and reads rules of lossless syntaxes for sites and SOP classes', () => {
    assert.deepEqual(load({}).storageCompression, []);
    const c = load({ storage: { compression: [{ transferSyntax: '1.2.840.10008.1.2.4.80', sites: ['LOCAL'], sopClasses: ['1.2.840.10008.5.1.4.1.1.2'] }, { transferSyntax: '1.2.840.10008.1.2.4.201' }] } });
    assert.deepEqual(c.storageCompression, [
      { transferSyntax: '1.2.840.10008.1.2.4.80', sites: ['LOCAL'], sopClasses: ['1.2.840.10008.5.1.4.1.1.2'] },
      { transferSyntax: '1.2.840.10008.1.2.4.201' },
    ]);
  });

  it('refuses a lossy or unknown syntax, an unknown site and a rule that is not a mapping', () => {
    const bad: Array<[unknown, RegExp]> = [
      [[{ transferSyntax: '1.2.840.10008.1.2.4.50' }], /transferSyntax must be one of the lossless syntaxes/],
      [[{ transferSyntax: '1.2.840.10008.1.2.4.80', sites: ['ELSEWHERE'] }], /ELSEWHERE, which is not a configured site/],
      [[{ transferSyntax: '1.2.840.10008.1.2.4.80', sopClasses: 'CT' }], /sopClasses must be a list of strings/],
      [['1.2.840.10008.1.2.4.80'], /must be a mapping/],
      [{ transferSyntax: '1.2.840.10008.1.2.4.80' }, /must be a list of rules/],
    ];
    for (const [compression, message] of bad) assert.throws(() => load({ storage: { compression } }), (e: unknown) => e instanceof ConfigError && message.test(e.message), message.source);
  });
});
