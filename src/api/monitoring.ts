/**
 * Monitoring: /healthz (the process answers), /readyz (the index and the storage answer),
 * and /metrics in the Prometheus text format (prom-client). All three without credentials:
 * they carry no patient data (counts, ages, sizes; labels are ways in, consumer names,
 * destinations' AE titles); /metrics answers only monitoring.allowFrom (loopback by default).
 */
import { statfs, stat } from 'node:fs/promises';
import { BlockList, isIPv4 } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Archive } from '../archive/archive.ts';
import type { AtriumConfig } from '../config/config.ts';
import type { IngestSource } from '../archive/ingest.ts';
import { ForwardingQueue } from '../index/forwarding-queue.ts';
import { oldestPendingPublication, publicationCounts } from '../exchange/dmp/publications.ts';
import { dueStudyCounts, rejectionNoticeCounts } from '../archive/lifecycle.ts';
import { sendProblem } from '../dicomweb/problem.ts';

export const monitoringRoutes = ['/healthz', '/readyz', '/metrics'] as const;

/** Ingest counts and latencies per way in, counted where every way in passes: the archive's ingestor. */
interface IngestMetrics { objects: Counter<'via' | 'outcome'>; seconds: Histogram<'via'> }
const ingestMetrics = new WeakMap<Archive['ingestor'], IngestMetrics>();

function instrumentIngest(archive: Archive, registry: Registry): void {
  let m = ingestMetrics.get(archive.ingestor);
  if (!m) {
    m = {
      objects: new Counter({ name: 'atrium_ingest_objects_total', help: 'Objects offered to ingest, by way in and outcome', labelNames: ['via', 'outcome'], registers: [] }),
      seconds: new Histogram({ name: 'atrium_ingest_duration_seconds', help: 'Time to ingest one object, by way in', labelNames: ['via'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [] }),
    };
    ingestMetrics.set(archive.ingestor, m);
    const counted = m;
    const ingestor = archive.ingestor;
    // Wrapped once per archive, so that DIMSE, STOW-RS, imports and reports are all measured
    // without each adapter knowing about metrics.
    const ingest = ingestor.ingestInstance.bind(ingestor);
    ingestor.ingestInstance = async (body, source: IngestSource) => {
      const end = counted.seconds.startTimer({ via: source.via });
      try {
        const result = await ingest(body, source);
        counted.objects.inc({ via: source.via, outcome: result.ok ? 'stored' : 'refused' });
        return result;
      } catch (e) {
        counted.objects.inc({ via: source.via, outcome: 'failed' });
        throw e;
      } finally {
        end();
      }
    };
  }
  registry.registerMetric(m.objects);
  registry.registerMetric(m.seconds);
}

/** Seconds since an ISO time, 0 when there is none. */
const ageOf = (iso: string | null | undefined, now: number) => (iso ? Math.max(0, (now - Date.parse(iso)) / 1000) : 0);

function metricsRegistry(archive: Archive, config: AtriumConfig): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'atrium_' });
  instrumentIngest(archive, registry);
  const sql = archive.index.sql;
  const forwarding = new ForwardingQueue(sql);

  new Gauge({
    name: 'atrium_outbox_backlog_events', help: 'Events an outbox consumer has not applied yet', labelNames: ['consumer'], registers: [registry],
    async collect() {
      this.reset();
      for (const consumer of await archive.outbox.consumers()) this.set({ consumer }, await archive.outbox.backlog(consumer));
    },
  });
  new Gauge({
    name: 'atrium_outbox_oldest_pending_seconds', help: 'Age of the oldest event an outbox consumer has not applied (0: none)', labelNames: ['consumer'], registers: [registry],
    async collect() {
      this.reset();
      const now = Date.now();
      for (const consumer of await archive.outbox.consumers()) this.set({ consumer }, ageOf(await archive.outbox.oldestPendingAt(consumer), now));
    },
  });
  new Gauge({
    name: 'atrium_forward_queue_items', help: 'Forwarding queue items by destination and state', labelNames: ['destination', 'state'], registers: [registry],
    async collect() {
      this.reset();
      for (const r of await forwarding.countsByState()) this.set({ destination: r.destination, state: r.state }, r.count);
    },
  });
  new Gauge({
    name: 'atrium_forward_queue_oldest_pending_seconds', help: 'Age of the oldest item waiting to be forwarded, by destination', labelNames: ['destination'], registers: [registry],
    async collect() {
      this.reset();
      const now = Date.now();
      for (const r of await forwarding.oldestWaiting()) this.set({ destination: r.destination }, ageOf(r.at, now));
    },
  });
  new Gauge({
    name: 'atrium_dmp_publications', help: 'DMP publications by state (pending: the backlog)', labelNames: ['state'], registers: [registry],
    async collect() {
      this.reset();
      // The DMP module creates its table when it first runs: none yet is no backlog.
      const rows = await publicationCounts(sql).catch(() => []);
      for (const r of rows) this.set({ state: r.state }, r.count);
    },
  });
  new Gauge({
    name: 'atrium_dmp_oldest_pending_seconds', help: 'Age of the oldest DMP publication not sent yet (0: none)', registers: [registry],
    async collect() {
      const at = await oldestPendingPublication(sql).catch(() => undefined);
      this.set(ageOf(at, Date.now()));
    },
  });
  new Gauge({
    name: 'atrium_lifecycle_due_studies', help: 'Studies past their retention awaiting an administrator (held: stopped by a legal hold)', labelNames: ['held'], registers: [registry],
    async collect() {
      this.reset();
      // The lifecycle module creates its tables when it first runs.
      const rows = await dueStudyCounts(sql).catch(() => []);
      for (const r of rows) this.set({ held: r.held ? 'true' : 'false' }, r.count);
    },
  });
  new Gauge({
    name: 'atrium_lifecycle_rejection_notices', help: 'Rejection notes of deleted studies owed to peers, by state (failed: given up)', labelNames: ['state'], registers: [registry],
    async collect() {
      this.reset();
      const rows = await rejectionNoticeCounts(sql).catch(() => []);
      for (const r of rows) this.set({ state: r.state }, r.count);
    },
  });
  if (archive.tiering) {
    const tiering = archive.tiering;
    new Gauge({
      name: 'atrium_storage_objects', help: 'Stored objects by storage tier (hot, cold: storage.cold)', labelNames: ['tier'], registers: [registry],
      async collect() {
        const n = await tiering.counts();
        this.set({ tier: 'hot' }, n.hot);
        this.set({ tier: 'cold' }, n.cold);
      },
    });
  }
  // The volumes of the data folder and (filesystem storage) the blobs, each statfs'd at scrape time.
  const volumeGauge = (name: string, help: string, bytesOf: (s: { bavail: number | bigint; blocks: number | bigint; bsize: number | bigint }) => number) => new Gauge({
    name, help, labelNames: ['volume'], registers: [registry],
    async collect() {
      this.reset();
      const volumes: Array<[string, string]> = [['data', config.dataDir]];
      if (config.storage.kind === 'filesystem') volumes.push(['blobs', config.storage.root]);
      for (const [volume, dir] of volumes) {
        const s = await statfs(dir).catch(() => undefined);
        if (s) this.set({ volume }, bytesOf(s));
      }
    },
  });
  volumeGauge('atrium_storage_free_bytes', 'Free space where the blobs (filesystem storage) and the data folder live', (s) => Number(s.bavail) * Number(s.bsize));
  volumeGauge('atrium_storage_size_bytes', 'Size of the volume where the blobs (filesystem storage) and the data folder live', (s) => Number(s.blocks) * Number(s.bsize));
  new Gauge({
    name: 'atrium_index_size_bytes', help: 'Size of the index database (SQLite file and its WAL, or the PostgreSQL database)', registers: [registry],
    async collect() {
      if (config.index.engine === 'postgres') {
        const row = await sql.get<{ n: number | string }>('SELECT pg_database_size(current_database()) AS n');
        this.set(Number(row?.n ?? 0));
        return;
      }
      let bytes = 0;
      for (const file of [config.index.path, `${config.index.path}-wal`]) bytes += (await stat(file).catch(() => undefined))?.size ?? 0;
      this.set(bytes);
    },
  });
  return registry;
}

/** Addresses allowed to scrape, as a BlockList (an IPv4 peer also seen as ::ffff:a.b.c.d). */
function allowList(blocks: readonly string[]): (ip: string) => boolean {
  const list = new BlockList();
  for (const b of blocks) {
    const [address, bits] = b.split('/') as [string, string | undefined];
    const family = isIPv4(address) ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(bits), family);
  }
  return (ip) => {
    const v4 = ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
    return list.check(v4, isIPv4(v4) ? 'ipv4' : 'ipv6');
  };
}

/** Registers the three routes on the root (they are declared public in auth.ts). */
export function registerMonitoring(app: FastifyInstance, archive: Archive, config: AtriumConfig): void {
  const registry = metricsRegistry(archive, config);
  const allowed = allowList(config.monitoring.allowFrom);
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (request, reply) => {
    const checks: Record<string, 'ok' | 'unreachable'> = {};
    checks.index = await archive.index.sql.get('SELECT 1 AS one').then(() => 'ok' as const, () => 'unreachable' as const);
    // A key that never exists: stat answers undefined when the store is reachable, throws when not.
    checks.storage = await archive.store.stat('readyz/probe').then(() => 'ok' as const, () => 'unreachable' as const);
    const ready = Object.values(checks).every((c) => c === 'ok');
    if (!ready) request.log.warn({ checks }, 'not ready');
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not-ready', checks });
  });
  app.get('/metrics', async (request, reply) => {
    if (!allowed(request.ip)) return sendProblem(reply, 403, 'metrics are answered only to the monitoring addresses (monitoring.allowFrom)');
    return reply.type(registry.contentType).send(await registry.metrics());
  });
}
