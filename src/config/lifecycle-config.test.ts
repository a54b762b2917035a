import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import YAML from 'yaml';
import { ConfigError, loadConfig } from './config.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'atrium-lifecycle-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function load(doc: unknown) {
  const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, YAML.stringify(doc));
  return loadConfig({ file, env: {} });
}

const sites = [{ code: 'CHU', name: 'CHU', finess: '590000001', issuerOfPatientID: 'CHU' }, { code: 'CAB', name: 'Cabinet', finess: '590000002', issuerOfPatientID: 'CAB' }];

describe('lifecycle and monitoring configuration', () => {
  it('defaults to the French hospital rule (CSP R1112-7: 20 years, a minor until 28), evaluated daily, and metrics for loopback only', () => {
    const c = load({});
    assert.deepEqual(c.lifecycle, { retention: [{ name: 'CSP R1112-7', yearsAfterLastContact: 20, keepMinorsUntilAge: 28 }], evaluateEveryHours: 24 });
    assert.deepEqual(c.monitoring.allowFrom, ['127.0.0.1/8', '::1/128']);
  });

  it('reads rules per site and modality in order', () => {
    const c = load({ sites, lifecycle: { retention: [
      { name: 'mammographies', modalities: ['MG'], yearsAfterLastContact: 30 },
      { name: 'cabinet', sites: ['CAB'], yearsAfterLastContact: 10 },
      { name: 'CSP R1112-7', yearsAfterLastContact: 20, keepMinorsUntilAge: 28 },
    ] }, monitoring: { allowFrom: ['10.1.2.0/24', '192.0.2.7', 'fd00::/8'] } });
    assert.deepEqual(c.lifecycle.retention.map((r) => r.name), ['mammographies', 'cabinet', 'CSP R1112-7']);
    assert.deepEqual(c.monitoring.allowFrom, ['10.1.2.0/24', '192.0.2.7', 'fd00::/8']);
  });

  it('refuses a rule naming an unknown site, without years, with an unknown key, and an address that is not one', () => {
    assert.throws(() => load({ sites, lifecycle: { retention: [{ name: 'x', sites: ['NOPE'], yearsAfterLastContact: 10 }] } }), ConfigError);
    assert.throws(() => load({ lifecycle: { retention: [{ name: 'x' }] } }), /yearsAfterLastContact/);
    assert.throws(() => load({ lifecycle: { retention: [{ name: 'x', yearsAfterLastContact: 10, years: 3 }] } }), /years is not a key/);
    assert.throws(() => load({ lifecycle: { retention: [] } }), ConfigError);
    assert.throws(() => load({ lifecycle: { retention: [{ name: 'x', yearsAfterLastContact: 10, keepMinorsUntilAge: 12 }] } }), /keepMinorsUntilAge/);
    assert.throws(() => load({ monitoring: { allowFrom: ['everyone'] } }), /monitoring.allowFrom/);
    assert.throws(() => load({ monitoring: { allowFrom: ['10.0.0.0/33'] } }), /monitoring.allowFrom/);
  });
});
