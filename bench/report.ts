import type { CorpusPlan } from './corpus.ts';
import type { DimseResults } from './dimse-report.ts';
import { fmt, MB, MiB } from './measure.ts';
import type { QidoResult } from './workload.ts';

/** What a run measured, and its rendering as markdown (bench/out/latest.md). */

export interface IngestRow {
  workload: string;
  concurrency: number;
  instances: number;
  bytes: number;
  /** Median over the rounds. */
  ms: number;
  failed: number;
  rounds?: number;
}

export interface ServerResults {
  name: string;
  version?: string;
  idleRss?: number;
  ingest: IngestRow[];
  /** Peak RSS during the ingest of the whole corpus, by concurrency. */
  ingestPeakRss: Record<number, number>;
  retrieve?: { repetitions: number; MBps: number; ttfbMs: number; totalMs: number; bytes: number; parts: number; peakRss: number };
  metadata?: { firstMs: number; medianMs: number; instances: number; bytes: number };
  qidoSmall: QidoResult[];
  largeObject?: { bytes: number; ms: number; outcome: string; peakRss: number };
}

export interface BenchResults {
  date: string;
  quick: boolean;
  seed: number;
  machine: { cpus: number; cpuModel: string; memory: string; node: string };
  corpus: {
    plan: CorpusPlan;
    instances: number;
    bytes: number;
    studies: number;
    ct: { StudyInstanceUID: string; SeriesInstanceUID: string; instances: number; bytes: number };
  };
  largeObjectBytes: number;
  servers: ServerResults[];
  largeIndex?: { studies: number; instances: number; series: number; patients: number; buildSeconds: number; reused: boolean; qido: QidoResult[] };
  /** The DIMSE part (bench/dimse.ts), unless BENCH_SKIP_DIMSE=1. */
  dimse?: DimseResults;
  durationSeconds?: number;
}

const perSecond = (n: number, ms: number) => n / (ms / 1000);
const mbps = (bytes: number, ms: number) => bytes / MB / (ms / 1000);
const mib = (bytes: number | undefined) => (bytes === undefined || !Number.isFinite(bytes) ? 'n/a' : `${(bytes / MiB).toFixed(0)} MiB`);

function ratio(a: number | undefined, b: number | undefined, digits = 2): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return 'n/a';
  return `${(a / b).toFixed(digits)}x`;
}

function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export interface TargetCheck {
  target: string;
  measured: string;
  met: boolean | undefined;
}

export function checkTargets(r: BenchResults): TargetCheck[] {
  const atrium = r.servers.find((s) => s.name === 'Atrium');
  const orthanc = r.servers.find((s) => s.name === 'Orthanc');
  const checks: TargetCheck[] = [];
  for (const c of [1, 4]) {
    const a = atrium?.ingest.find((i) => i.workload === 'whole corpus' && i.concurrency === c);
    const o = orthanc?.ingest.find((i) => i.workload === 'whole corpus' && i.concurrency === c);
    const ra = a && o ? mbps(a.bytes, a.ms) / mbps(o.bytes, o.ms) : undefined;
    checks.push({ target: `STOW-RS ingest >= 1.5x Orthanc (whole corpus, ${c} concurrent, MB/s)`, measured: ra === undefined ? 'n/a' : `${ra.toFixed(2)}x`, met: ra === undefined ? undefined : ra >= 1.5 });
  }
  const large = r.largeIndex;
  if (large) {
    const worst = Math.max(...large.qido.map((q) => q.p95));
    const full = large.studies >= 100_000;
    checks.push({
      target: `QIDO-RS study search p95 < 50 ms on ${large.studies.toLocaleString('en')} studies / ${large.instances.toLocaleString('en')} instances (worst query)`,
      measured: `${fmt(worst)} ms${full ? '' : ' (quick run: smaller index than the target)'}`,
      met: worst < 50,
    });
  }
  const rw = atrium?.retrieve && orthanc?.retrieve ? atrium.retrieve.MBps / orthanc.retrieve.MBps : undefined;
  checks.push({ target: 'WADO-RS whole-series retrieve >= 1.5x Orthanc (MB/s)', measured: rw === undefined ? 'n/a' : `${rw.toFixed(2)}x`, met: rw === undefined ? undefined : rw >= 1.5 });
  if (atrium?.metadata) {
    checks.push({
      target: `metadata of a ${atrium.metadata.instances}-instance series < 200 ms`,
      measured: `${fmt(atrium.metadata.firstMs)} ms first, ${fmt(atrium.metadata.medianMs)} ms median`,
      met: Math.max(atrium.metadata.firstMs, atrium.metadata.medianMs) < 200,
    });
  }
  if (atrium?.largeObject) {
    checks.push({
      target: `ingest of a ${(r.largeObjectBytes / 2 ** 30).toFixed(1)} GiB object under 300 MB resident`,
      measured: `${mib(atrium.largeObject.peakRss)} peak (${atrium.largeObject.outcome})`,
      met: atrium.largeObject.outcome === 'stored' && atrium.largeObject.peakRss < 300 * MB,
    });
  }
  return checks;
}

export function renderReport(r: BenchResults): string {
  const atrium = r.servers.find((s) => s.name === 'Atrium');
  const orthanc = r.servers.find((s) => s.name === 'Orthanc');
  const out: string[] = [];
  out.push(`# Atrium benchmark${r.quick ? ' (quick)' : ''}`, '');
  out.push(`${r.date}; ${r.machine.cpus} x ${r.machine.cpuModel}, ${r.machine.memory}; Node ${r.machine.node}; ` +
    `Orthanc ${orthanc?.version ?? 'not run'}; seed ${r.seed}; run took ${fmt(r.durationSeconds, 0)} s.`, '');
  const p = r.corpus.plan;
  out.push(`Corpus: ${r.corpus.instances} instances, ${fmt(r.corpus.bytes / MB)} MB, ${r.corpus.studies} studies: ` +
    `CT ${p.ctSlices} slices 512x512 16-bit (one series), MR ${p.mrSeries}x${p.mrImagesPerSeries} 256x256, ` +
    `${p.radiographs} DX 3000x3000 16-bit, ${p.smallStudies} one-instance 64x64 studies; explicit VR little endian; ` +
    'French accented names in ISO_IR 100 and ISO_IR 192.', '');

  out.push('## STOW-RS ingest', '');
  const ingestRows: string[][] = [];
  for (const row of atrium?.ingest ?? []) {
    const o = orthanc?.ingest.find((x) => x.workload === row.workload && x.concurrency === row.concurrency);
    ingestRows.push([
      row.workload, String(row.concurrency), String(row.instances),
      fmt(perSecond(row.instances, row.ms)), fmt(mbps(row.bytes, row.ms)),
      o ? fmt(perSecond(o.instances, o.ms)) : 'n/a', o ? fmt(mbps(o.bytes, o.ms)) : 'n/a',
      o ? ratio(mbps(row.bytes, row.ms), mbps(o.bytes, o.ms)) : 'n/a',
    ]);
  }
  out.push(table(['workload', 'concurrent requests', 'instances', 'Atrium inst/s', 'Atrium MB/s', 'Orthanc inst/s', 'Orthanc MB/s', 'Atrium/Orthanc'], ingestRows), '');
  const failures = r.servers.flatMap((s) => s.ingest.filter((i) => i.failed > 0).map((i) => `${s.name} ${i.workload} (${i.concurrency}): ${i.failed} failed`));
  if (failures.length) out.push(`Failures: ${failures.join('; ')}`, '');
  out.push(table(['peak RSS during ingest', 'idle', '1 concurrent', '4 concurrent'], r.servers.map((s) => [
    s.name, mib(s.idleRss), mib(s.ingestPeakRss[1]), mib(s.ingestPeakRss[4]),
  ])), '');

  out.push('## WADO-RS', '');
  const ar = atrium?.retrieve, or = orthanc?.retrieve;
  const am = atrium?.metadata, om = orthanc?.metadata;
  out.push(table(['', 'Atrium', 'Orthanc', 'Atrium advantage (>1: Atrium better)'], [
    [`series retrieve, ${ar?.parts ?? '?'} instances, MB/s (median of ${ar?.repetitions ?? '?'})`, fmt(ar?.MBps), fmt(or?.MBps), ratio(ar?.MBps, or?.MBps)],
    ['series retrieve, time to first byte (ms)', fmt(ar?.ttfbMs), fmt(or?.ttfbMs), ratio(or?.ttfbMs, ar?.ttfbMs)],
    ['series retrieve, whole answer (ms)', fmt(ar?.totalMs, 0), fmt(or?.totalMs, 0), ratio(or?.totalMs, ar?.totalMs)],
    ['bytes of the answer', ar ? fmt(ar.bytes / MB) + ' MB' : 'n/a', or ? fmt(or.bytes / MB) + ' MB' : 'n/a', ''],
    ['peak RSS during retrieves', mib(ar?.peakRss), mib(or?.peakRss), ''],
    [`series metadata (${am?.instances ?? '?'} instances), first call (ms)`, fmt(am?.firstMs), fmt(om?.firstMs), ratio(om?.firstMs, am?.firstMs)],
    ['series metadata, median of the next 5 (ms)', fmt(am?.medianMs), fmt(om?.medianMs), ratio(om?.medianMs, am?.medianMs)],
  ]), '');

  out.push(`## QIDO-RS on the corpus index (${r.corpus.studies} studies, both servers, limit=100, sequential)`, '');
  out.push(table(['query', 'Atrium p50 / p95 (ms)', 'Orthanc p50 / p95 (ms)', 'Orthanc p95 / Atrium p95', 'results (median) Atrium / Orthanc'],
    (atrium?.qidoSmall ?? []).map((q) => {
      const o = orthanc?.qidoSmall.find((x) => x.name === q.name);
      return [
        `${q.name} (e.g. \`${q.example}\`)`,
        `${fmt(q.p50)} / ${fmt(q.p95)}`,
        o ? `${fmt(o.p50)} / ${fmt(o.p95)}` : 'n/a',
        o ? ratio(o.p95, q.p95) : 'n/a',
        `${q.medianResults} / ${o ? o.medianResults : 'n/a'}${q.errors || o?.errors ? ` (errors ${q.errors}/${o?.errors ?? 0})` : ''}`,
      ];
    })), '');
  const differing = (atrium?.qidoSmall ?? []).filter((q) => {
    const o = orthanc?.qidoSmall.find((x) => x.name === q.name);
    return o !== undefined && o.medianResults !== q.medianResults;
  });
  if (differing.length > 0) {
    out.push(`Where the result counts differ (${differing.map((q) => q.name).join(', ')}), the servers do not match the same way ` +
      '(Atrium matches person names without case or accents and, with fuzzymatching, by any name component; ' +
      'Orthanc ignores fuzzymatching), so the latencies compare different work.', '');
  }

  if (r.largeIndex) {
    const li = r.largeIndex;
    out.push(`## QIDO-RS on a large Atrium index (${li.studies.toLocaleString('en')} studies, ${li.series.toLocaleString('en')} series, ` +
      `${li.instances.toLocaleString('en')} instances, ${li.patients.toLocaleString('en')} patients; SQLite)`, '');
    out.push(`Index filled directly in SQLite through Atrium's schema (${li.reused ? 'reused from bench/out' : `built in ${fmt(li.buildSeconds)} s`}); ` +
      'searches over HTTP, one at a time, values varied across repetitions.', '');
    out.push(table(['query', 'p50 (ms)', 'p95 (ms)', 'max (ms)', 'results (median)', 'n'], li.qido.map((q) => [
      `${q.name} (e.g. \`${q.example}\`)`, fmt(q.p50), fmt(q.p95), fmt(q.max), String(q.medianResults), `${q.n}${q.errors ? ` (${q.errors} errors)` : ''}`,
    ])), '');
  }

  out.push(`## One large object (${fmt(r.largeObjectBytes / MB, 0)} MB multi-frame, streamed by the client)`, '');
  out.push(table(['', 'outcome', 'time (s)', 'MB/s', 'peak RSS'], r.servers.filter((s) => s.largeObject).map((s) => {
    const l = s.largeObject!;
    return [s.name, l.outcome, fmt(l.ms / 1000), l.outcome === 'stored' ? fmt(mbps(l.bytes, l.ms)) : 'n/a', mib(l.peakRss)];
  })), '');

  out.push('## Targets', '');
  out.push(table(['target', 'measured', 'met'], checkTargets(r).map((c) => [c.target, c.measured, c.met === undefined ? 'not measured' : c.met ? 'yes' : '**no**'])), '');
  return out.join('\n');
}
