/**
 * Monitoring (issue 18 §4): /healthz and /readyz without credentials; /metrics in the
 * Prometheus text format, every name prefixed atrium_, answered only to monitoring.allowFrom
 * (a client seen through the trusted proxy from elsewhere is refused), and scraped by a real
 * Prometheus (Debian's package) when it is installed.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { freePort } from './support/dcmtk.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { evaluateRetention } from '../src/archive/lifecycle.ts';

const prometheusBinary = '/usr/bin/prometheus';

/** Metric samples of the text format (name, labels, value); comments and blank lines skipped. */
function samplesOf(text: string): Array<{ name: string; labels: Record<string, string>; value: number }> {
  return text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((line) => {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    return { name: m[1]!, labels, value: Number(m[3]) };
  });
}

for (const db of testDatabases()) {
  describe(`monitoring (${db.name})`, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    let base: string;
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-monitoring-'));
    const object = syntheticInstance({ PatientID: 'MON-1', PatientName: 'Secret^Patient', Rows: 4, Columns: 4 });

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      // Behind a reverse proxy on loopback: the proxy says which client it forwards.
      atrium = await startAtrium({ index: opened.config, configure: (c) => (c.http.trustProxy = ['127.0.0.1']) });
      base = atrium.dicomweb.replace(/\/dicom-web$/, '');
      const r = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [object.file]);
      assert.equal(r.status, 200, await r.text());
      const at = new Date(Date.now() - 60_000).toISOString();
      // A forward waiting for its destination, and an outbox consumer that has read nothing yet.
      await atrium.archive.index.sql.run(
        `INSERT INTO forward_queue (sop_instance_uid, study_instance_uid, destination, reason, state, attempts, next_attempt_at, created_at, updated_at)
         VALUES (?, ?, 'PACSNORD', 'rule', 'pending', 0, ?, ?, ?)`, [object.uids.sop, object.uids.study, at, at, at]);
      await atrium.archive.index.sql.run(`INSERT INTO outbox_cursors (consumer, last_id, last_txid, updated_at) VALUES ('probe', 0, 0, ?)`, [at]);
    });
    after(async () => {
      await atrium?.close();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    it('answers /healthz and /readyz without credentials', async () => {
      const health = await fetch(`${base}/healthz`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: 'ok' });
      const ready = await fetch(`${base}/readyz`);
      assert.equal(ready.status, 200);
      assert.deepEqual(await ready.json(), { status: 'ready', checks: { index: 'ok', storage: 'ok' } });
    });

    it('answers /metrics 403 to an address outside monitoring.allowFrom', async () => {
      const r = await fetch(`${base}/metrics`, { headers: { 'x-forwarded-for': '203.0.113.9' } });
      assert.equal(r.status, 403);
      assert.doesNotMatch(await r.text(), /atrium_/);
    });

    it('answers /metrics to loopback in the Prometheus text format: atrium_ names, ingest per way in, queues, retention, storage, index, no patient data', async () => {
      // Far in the future, the study is past its retention.
      await evaluateRetention(atrium.archive, { rules: atrium.config.lifecycle.retention, now: new Date('2100-01-01T00:00:00Z') });
      const r = await fetch(`${base}/metrics`);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const text = await r.text();
      const samples = samplesOf(text);
      for (const s of samples) assert.match(s.name, /^atrium_/);
      const one = (name: string, labels: Record<string, string> = {}) => samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      assert.equal(one('atrium_ingest_objects_total', { via: 'stow-rs', outcome: 'stored' })?.value, 1);
      assert.equal(one('atrium_ingest_duration_seconds_count', { via: 'stow-rs' })?.value, 1);
      assert.equal(one('atrium_forward_queue_items', { destination: 'PACSNORD', state: 'pending' })?.value, 1);
      assert.ok(one('atrium_forward_queue_oldest_pending_seconds', { destination: 'PACSNORD' })!.value >= 59);
      assert.ok(one('atrium_outbox_backlog_events', { consumer: 'probe' })!.value >= 1);
      assert.ok(one('atrium_outbox_oldest_pending_seconds', { consumer: 'probe' })!.value >= 0);
      assert.ok(one('atrium_storage_free_bytes', { volume: 'blobs' })!.value > 0);
      assert.ok(one('atrium_index_size_bytes')!.value > 0);
      assert.ok(one('atrium_dmp_oldest_pending_seconds') !== undefined);
      assert.equal(one('atrium_lifecycle_due_studies', { held: 'false' })?.value, 1);
      for (const secret of ['MON-1', 'Secret', object.uids.study]) assert.ok(!text.includes(secret), `no ${secret} in the metrics`);
    });

    it('is scraped by a real Prometheus', { skip: !existsSync(prometheusBinary) && 'Debian\'s prometheus package is not installed' }, async () => {
      const port = await freePort();
      const target = new URL(base).host;
      writeFileSync(path.join(work, 'prometheus.yml'), [
        'global:', '  scrape_interval: 1s', 'scrape_configs:', '  - job_name: atrium', '    static_configs:', `      - targets: ['${target}']`, '',
      ].join('\n'));
      const prometheus: ChildProcess = spawn(prometheusBinary, [
        `--config.file=${path.join(work, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(work, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`,
      ], { stdio: ['ignore', 'ignore', 'pipe'] });
      let log = '';
      prometheus.stderr!.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
      try {
        const query = async (q: string) => {
          const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`).catch(() => undefined);
          if (!r?.ok) return [];
          return ((await r.json()) as { data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } }).data.result;
        };
        // Bounded: Prometheus starts, then scrapes every second.
        let ingested: Awaited<ReturnType<typeof query>> = [];
        for (let i = 0; i < 120 && ingested.length === 0; i++) {
          await sleep(250);
          ingested = await query('atrium_ingest_objects_total{via="stow-rs"}');
        }
        assert.equal(ingested.length, 1, `Prometheus never scraped Atrium: ${log}`);
        assert.equal(ingested[0]!.value[1], '1');
        assert.equal((await query('up{job="atrium"}'))[0]?.value[1], '1');
        assert.equal((await query('atrium_forward_queue_items{destination="PACSNORD",state="pending"}'))[0]?.value[1], '1');
        // The dashboard of deploy/ asks Prometheus only what it understands, and finds these series.
        const dashboard = JSON.parse(readFileSync(path.join(import.meta.dirname, '../deploy/grafana-atrium.json'), 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
        for (const panel of dashboard.panels) {
          for (const { expr } of panel.targets) {
            const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expr.replaceAll('$instance', '.*'))}`);
            assert.equal(r.status, 200, `${panel.title}: ${expr}: ${await r.clone().text()}`);
          }
        }
        assert.ok((await query('max by (instance, volume) (1 - atrium_storage_free_bytes / atrium_storage_size_bytes)')).length > 0);
      } finally {
        prometheus.kill('SIGTERM');
        await new Promise((resolve) => prometheus.once('exit', resolve));
      }
    });
  });
}
