import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import YAML from 'yaml';
import { ConfigError, loadConfig } from './config.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'atrium-tele-config-'));
const sites = [{ code: 'CHU-NORD', name: 'CHU Nord', finess: '590000001', issuerOfPatientID: 'CHUNORD' }];

function load(teleradiology: unknown) {
  const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, YAML.stringify({ sites, teleradiology }));
  return loadConfig({ file, env: {} });
}

describe('teleradiology configuration', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('has safe defaults: claims of 20 minutes, stroke deadline of 30 minutes, no ORU listener', () => {
    const c = load(undefined).teleradiology;
    assert.equal(c.claimMinutes, 20);
    assert.deepEqual(c.deadlineMinutes, { routine: 2880, urgent: 240, stroke: 30 });
    assert.deepEqual(c.sites, []);
    assert.equal(c.alerts, undefined, 'no alert channel unless configured');
  });

  it('reads the alert channel: https, or http on loopback only', () => {
    assert.deepEqual(load({ alerts: { webhookUrl: 'https://pager.ght.example.fr/atrium' } }).teleradiology.alerts, { webhookUrl: 'https://pager.ght.example.fr/atrium' });
    assert.deepEqual(load({ alerts: { webhookUrl: 'http://127.0.0.1:9000/page' } }).teleradiology.alerts, { webhookUrl: 'http://127.0.0.1:9000/page' });
    assert.throws(() => load({ alerts: { webhookUrl: 'http://pager.example.fr/page' } }), /must be an https URL/);
    assert.throws(() => load({ alerts: { webhookUrl: 'not a url' } }), /is not a URL/);
  });

  it('reads a site\'s ORU listener, defaulting MSH-5, MSH-6 and 8859/1', () => {
    const c = load({ claimMinutes: 5, deadlineMinutes: { stroke: 20 }, sites: [{ site: 'CHU-NORD', oru: { host: 'ris.chu-nord.fr', port: 2576 } }] }).teleradiology;
    assert.equal(c.claimMinutes, 5);
    assert.equal(c.deadlineMinutes.stroke, 20);
    assert.deepEqual(c.sites, [{ site: 'CHU-NORD', oru: { host: 'ris.chu-nord.fr', port: 2576, application: 'RIS', facility: 'CHU-NORD', characterSet: '8859/1' } }]);
  });

  it('refuses an unknown site, a bad port or character set, and an escalation later than the deadline', () => {
    assert.throws(() => load({ sites: [{ site: 'NOWHERE' }] }), (e) => e instanceof ConfigError && /NOWHERE is not a configured site/.test(e.message));
    assert.throws(() => load({ sites: [{ site: 'CHU-NORD', oru: { host: 'ris', port: 70000 } }] }), /oru.port must be a TCP port/);
    assert.throws(() => load({ sites: [{ site: 'CHU-NORD', oru: { host: 'ris', port: 2576, characterSet: 'UTF-16' } }] }), /characterSet must be/);
    assert.throws(() => load({ claimMinutes: 0 }), /claimMinutes must be a positive integer/);
    assert.throws(() => load({ escalateBeforeMinutes: { stroke: 30 } }), /escalateBeforeMinutes.stroke must be shorter than deadlineMinutes.stroke/);
  });
});
