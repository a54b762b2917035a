import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import YAML from 'yaml';
import { ConfigError, loadConfig } from './config.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'atrium-billing-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function load(doc: unknown) {
  const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, YAML.stringify(doc));
  return loadConfig({ file, env: {} });
}

const sites = [{ code: 'CHU', name: 'CHU', finess: '590000001', issuerOfPatientID: 'CHU' }, { code: 'CAB', name: 'Cabinet', finess: '590000002', issuerOfPatientID: 'CAB' }];

describe('billing configuration', () => {
  it('defaults to no subscription, euros, the Paris calendar; the example file parses', () => {
    assert.deepEqual(load({}).billing, { currency: 'EUR', issuer: 'Atrium', timeZone: 'Europe/Paris', sites: [] });
    const example = loadConfig({ file: path.resolve(import.meta.dirname, '../../atrium.example.yaml'), env: {} });
    assert.deepEqual(example.billing.sites, []);
  });

  it('reads subscriptions and tariffs in whole cents', () => {
    const c = load({ sites, billing: { issuer: 'GHT', sites: { CHU: {
      services: { archive: '2026-01', teleradiology: '2026-03' },
      tariffs: { archive: { setupFee: 1500, perExam: 0.8, storagePerGBMonth: 0.02 }, teleradiology: { setupFee: 0, perExam: 25, perSecondReading: 15.5 } },
    } } } });
    assert.deepEqual(c.billing.sites, [{
      site: 'CHU', services: { archive: '2026-01', teleradiology: '2026-03' },
      tariffs: { archive: { setupFeeCents: 150000, perExamCents: 80, storagePerGBMonthCents: 2 }, teleradiology: { setupFeeCents: 0, perExamCents: 2500, perSecondReadingCents: 1550 } },
    }]);
  });

  it('refuses a subscribed service without its tariff, naming the key to add', () => {
    assert.throws(() => load({ sites, billing: { sites: { CAB: { services: { archive: '2026-01', sharing: '2026-02' }, tariffs: { archive: { setupFee: 0, perExam: 1 } } } } } }),
      (e: Error) => e instanceof ConfigError && e.message === 'billing.sites.CAB: sharing is subscribed without a tariff: add billing.sites.CAB.tariffs.sharing (setupFee, perExam)');
  });

  it('refuses unknown sites, services and keys, bad months, amounts finer than a cent, a wrong time zone', () => {
    const tariff = { setupFee: 0, perExam: 1 };
    for (const [billing, message] of [
      [{ sites: { NOWHERE: {} } }, /NOWHERE is not a site/],
      [{ sites: { CHU: { services: { radiotherapy: '2026-01' } } } }, /radiotherapy is not a service/],
      [{ sites: { CHU: { services: { archive: '2026-1' }, tariffs: { archive: tariff } } } }, /as 'YYYY-MM'/],
      [{ sites: { CHU: { services: { archive: '2026-01' }, tariffs: { archive: { setupFee: 0, perExam: 0.805 } } } } }, /at most two decimals/],
      [{ sites: { CHU: { services: { archive: '2026-01' }, tariffs: { archive: { setupFee: 0 } } } } }, /needs setupFee and perExam/],
      [{ sites: { CHU: { services: { sharing: '2026-01' }, tariffs: { sharing: { ...tariff, storagePerGBMonth: 1 } } } } }, /storagePerGBMonth is not a key/],
      [{ timeZone: 'Europe/Nowhere' }, /not an IANA time zone/],
      [{ currency: 'euro' }, /ISO 4217/],
    ] as const) {
      assert.throws(() => load({ sites, billing }), (e: Error) => e instanceof ConfigError && message.test(e.message), JSON.stringify(billing));
    }
  });
});
