import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import YAML from 'yaml';
import { loadConfig } from './config.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'atrium-mss-config-'));
const sites = [{ code: 'CHU-NORD', name: 'CHU Nord', finess: '590000001', issuerOfPatientID: 'CHUNORD' }];
const cert = path.join(dir, 'site.crt');
const key = path.join(dir, 'site.key');
writeFileSync(cert, 'certificate');
writeFileSync(key, 'key');
const site = { site: 'CHU-NORD', address: 'imagerie@chu-nord.mssante.fr', certFile: cert, keyFile: key };
const minimal = { smtp: { host: 'smtp.mss.example.fr' }, imap: { host: 'imap.mss.example.fr' }, sites: [site] };

function load(mssante: unknown) {
  const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, YAML.stringify({ sites, teleradiology: { mssante } }));
  return loadConfig({ file, env: {} }).teleradiology.mssante;
}

describe('MSSanté configuration (teleradiology.mssante)', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('is off unless set, and defaults the ports (587 submission, 993 IMAP) and no patient mailbox', () => {
    assert.equal(load(undefined), undefined);
    const c = load(minimal)!;
    assert.deepEqual([c.smtp.port, c.imap.port, c.sites[0]!.patients, c.timeoutMs, c.pollMs], [587, 993, false, 30_000, 60_000]);
  });

  it('refuses a mailbox that is not an address, a site that is not configured, a missing certificate file, a password in the file', () => {
    assert.throws(() => load({ ...minimal, sites: [{ ...site, address: 'imagerie' }] }), /address must be a mail address/);
    assert.throws(() => load({ ...minimal, sites: [{ ...site, site: 'AILLEURS' }] }), /not a configured site/);
    assert.throws(() => load({ ...minimal, sites: [{ ...site, certFile: path.join(dir, 'absent.crt') }] }), /file not found/);
    assert.throws(() => load({ ...minimal, sites: [{ ...site, imapPassword: 'secret' }] }), /never goes in the file/);
    assert.throws(() => load({ ...minimal, sites: [{ ...site, keyPassphraseEnv: 'not a name' }] }), /must name an environment variable/);
    assert.throws(() => load({ ...minimal, smtp: { host: 'x', port: 70000 } }), /port must be a TCP port/);
    assert.throws(() => load({ ...minimal, sites: [] }), /at least one site/);
    assert.throws(() => load({ ...minimal, sites: [site, site] }), /twice/);
    assert.throws(() => load({ ...minimal, smtp: undefined }), /smtp\.host is required/);
    assert.throws(() => load({ ...minimal, directoryFile: path.join(dir, 'absent.json') }), /file not found/);
    assert.throws(() => load({ ...minimal, relay: 'x' }), /not a key of teleradiology\.mssante/);
  });

  it('reads the Annuaire Santé FHIR API: https (http on loopback only), its key named by an environment variable', () => {
    assert.deepEqual(load({ ...minimal, annuaire: { baseUrl: 'https://gateway.api.esante.gouv.fr/fhir/v2/', apiKeyEnv: 'ESANTE_KEY' } })!.annuaire,
      { baseUrl: 'https://gateway.api.esante.gouv.fr/fhir/v2', apiKeyEnv: 'ESANTE_KEY' });
    assert.throws(() => load({ ...minimal, annuaire: { baseUrl: 'http://annuaire.example.fr/fhir' } }), /must be an https URL/);
    assert.throws(() => load({ ...minimal, annuaire: { baseUrl: 'https://a.example.fr', apiKeyEnv: 'la clef' } }), /must name an environment variable/);
  });
});
