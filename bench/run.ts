/**
 * `npm run bench [-- --quick]`: the same synthetic corpus, the same client code, against
 * Atrium (the real CLI, embedded SQLite + filesystem) and Debian's Orthanc + DICOMweb
 * plugin, in one run; then QIDO-RS on a large Atrium index; then the DIMSE bench
 * (bench/dimse.ts: C-STORE, C-FIND, C-MOVE, C-GET against both, by DCMTK's tools).
 * Prints a table and writes bench/out/latest.md and bench/out/latest.json (and
 * bench/out/dimse-latest.md and .json for the DIMSE part alone).
 *
 * Environment: BENCH_QUICK=1 (as --quick), BENCH_SEED, BENCH_LARGE_OBJECT_MB,
 * BENCH_LARGE_STUDIES, BENCH_ORTHANC_RSS_CAP_MB, BENCH_SKIP_ORTHANC=1, BENCH_SKIP_DIMSE=1,
 * BENCH_TMPDIR; bench/dimse.ts lists its own.
 */
import { cpus, totalmem } from 'node:os';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAtrium, type RunningServer } from './atrium.ts';
import { fullPlan, generateCorpus, largeObjectStream, quickPlan, type Corpus, type CorpusKind } from './corpus.ts';
import { runDimseBench, writeDimseReport } from './dimse.ts';
import { renderDimseReport } from './dimse-report.ts';
import { buildLargeIndex, type LargeIndex } from './large-index.ts';
import { makeTempDir, MB, MiB, RssSampler, readProcessMemory, removeTempDir, resetPeakRss, withPeakRss } from './measure.ts';
import { orthancAvailable, startOrthanc, type RunningOrthanc } from './orthanc.ts';
import { median, retrieveSeries, runQido, seriesMetadata, stowFiles, stowStream, type QidoCase, type QidoResult, type RetrieveResult } from './workload.ts';
import { renderReport, type BenchResults, type IngestRow, type ServerResults } from './report.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
const seed = Number(process.env.BENCH_SEED ?? 20250612);
const plan = quick ? quickPlan : fullPlan;
const largeObjectBytes = Number(process.env.BENCH_LARGE_OBJECT_MB ?? (quick ? 512 : 2048)) * MiB;
const largeStudies = Number(process.env.BENCH_LARGE_STUDIES ?? (quick ? 20_000 : 100_000));
const orthancRssCap = Number(process.env.BENCH_ORTHANC_RSS_CAP_MB ?? 8192) * MiB;
const atriumRssCap = 4096 * MiB;
const retrieveRepetitions = quick ? 3 : 5;
const ingestRounds = Number(process.env.BENCH_INGEST_ROUNDS ?? (quick ? 1 : 3));
const qidoRepetitions = quick ? 100 : 200;
const withOrthanc = process.env.BENCH_SKIP_ORTHANC !== '1';

const startedAt = Date.now();
function log(line: string): void {
  process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
}

/** Requests of several instances each, as a modality or router would send them. */
const perRequest: Record<CorpusKind, number> = { ct: 10, mr: 10, radiograph: 1, small: 20 };
const kindLabel: Record<CorpusKind, string> = {
  ct: 'CT 512x512x16',
  mr: 'MR 256x256x16',
  radiograph: 'DX 3000x3000x16',
  small: 'small 64x64 (1/study)',
};
const kinds: CorpusKind[] = ['ct', 'mr', 'radiograph', 'small'];

type Start = (dataDir: string) => Promise<RunningServer>;

async function ingestCorpus(server: RunningServer, corpus: Corpus, concurrency: number): Promise<{ rows: IngestRow[]; peakRss: number }> {
  const { result: rows, peakRss } = await withPeakRss(server.pid, async () => {
    const rows: IngestRow[] = [];
    let instances = 0, bytes = 0, ms = 0, failed = 0;
    for (const kind of kinds) {
      const files = corpus.files.filter((f) => f.kind === kind);
      if (files.length === 0) continue;
      const r = await stowFiles(server.target, files, perRequest[kind], concurrency);
      if (r.failed > 0) log(`  ${server.target.name} ${kind}: ${r.failed} failed: ${r.error}`);
      rows.push({ workload: kindLabel[kind], concurrency, instances: r.instances, bytes: r.bytes, ms: r.ms, failed: r.failed });
      instances += r.instances; bytes += r.bytes; ms += r.ms; failed += r.failed;
    }
    rows.push({ workload: 'whole corpus', concurrency, instances, bytes, ms, failed });
    return rows;
  });
  return { rows, peakRss };
}

function smallQidoCases(corpus: Corpus): QidoCase[] {
  const ids = [...new Set(corpus.studies.map((s) => s.PatientID))];
  const years = Array.from({ length: 11 }, (_, i) => 2015 + i);
  return [
    { name: 'PatientID exact', queries: ids.map((id) => `PatientID=${id}&limit=100`) },
    { name: 'PatientName prefix', queries: ['DUP*', 'LEF*', 'BEN*', 'MER*', 'GIR*', 'HEB*'].map((p) => `PatientName=${p}&limit=100`) },
    { name: 'PatientName fuzzy', queries: ['helene', 'francois', 'zoe', 'jerome', 'anais'].map((g) => `PatientName=${g}&fuzzymatching=true&limit=100`) },
    { name: 'StudyDate range (1 year)', queries: years.map((y) => `StudyDate=${y}0101-${y}1231&limit=100`) },
    { name: 'ModalitiesInStudy', queries: ['CT', 'MR', 'CR', 'US', 'MG', 'DX'].map((m) => `ModalitiesInStudy=${m}&limit=100`) },
  ];
}

function largeQidoCases(index: LargeIndex): QidoCase[] {
  const months: string[] = [];
  for (let y = 2015; y <= 2025; y++) for (let m = 1; m <= 12; m++) months.push(`${y}${String(m).padStart(2, '0')}`);
  // Shuffled deterministically, so that consecutive searches touch different pages.
  const shuffledMonths = months.map((m, i) => [m, (i * 7919) % months.length] as const).sort((a, b) => a[1] - b[1]).map(([m]) => m);
  return [
    { name: 'PatientID exact', queries: index.samplePatientIDs.map((id) => `PatientID=${id}&limit=100`) },
    { name: 'PatientName prefix', queries: index.familyPrefixes.map((p) => `PatientName=${p}*&limit=100`) },
    { name: 'PatientName one-letter prefix', queries: ['D', 'L', 'B', 'M', 'R', 'C', 'F', 'G', 'P', 'T', 'V', 'S'].map((p) => `PatientName=${p}*&limit=100`) },
    { name: 'PatientName fuzzy (given name)', queries: index.givenNames.map((g) => `PatientName=${encodeURIComponent(g)}&fuzzymatching=true&limit=100`) },
    { name: 'StudyDate range (1 month)', queries: shuffledMonths.map((m) => `StudyDate=${m}01-${m}28&limit=100`) },
    { name: 'ModalitiesInStudy', queries: ['CT', 'MR', 'US', 'CR', 'DX', 'MG', 'PT', 'NM', 'XA'].map((m) => `ModalitiesInStudy=${m}&limit=100`) },
    {
      name: 'PatientName prefix + StudyDate (1 year)',
      queries: index.familyPrefixes.map((p, i) => `PatientName=${p}*&StudyDate=${2015 + (i % 11)}0101-${2015 + (i % 11)}1231&limit=100`),
    },
  ];
}

interface Contender {
  name: string;
  start: Start;
  results: ServerResults;
  ingestByRound: IngestRow[][];
  running?: { server: RunningServer; dir: string };
}

/**
 * Measures every server in turn at each step, back to back: ingest round by round, then
 * retrieves and metadata alternating between the servers. The machine's speed drifts
 * (other tenants, page cache, writeback) by more than the differences measured here;
 * alternating makes a drift weigh on every server alike instead of on whichever ran last.
 */
async function benchServers(servers: Array<{ name: string; start: Start }>, corpus: Corpus): Promise<ServerResults[]> {
  const contenders: Contender[] = servers.map(({ name, start }) => ({
    name, start, results: { name, ingest: [], ingestPeakRss: {}, qidoSmall: [] }, ingestByRound: [],
  }));
  // Each ingest round starts from an empty server; the last round's servers go on to the read tests.
  const rounds: Array<{ concurrency: number; last: boolean }> = [];
  for (const concurrency of [1, 4]) {
    for (let i = 0; i < ingestRounds; i++) rounds.push({ concurrency, last: concurrency === 4 && i === ingestRounds - 1 });
  }
  try {
    for (const { concurrency, last } of rounds) {
      for (const c of contenders) {
        const dir = makeTempDir(`bench-${c.name.toLowerCase()}-`);
        const server = await c.start(dir);
        let keep = false;
        try {
          if ('version' in server) c.results.version = `${(server as RunningOrthanc).version} (DICOMweb plugin ${(server as RunningOrthanc).dicomWebVersion})`;
          c.results.idleRss = readProcessMemory(server.pid)?.rss;
          log(`${c.name}: STOW-RS ingest, ${concurrency} concurrent request(s)`);
          const ingest = await ingestCorpus(server, corpus, concurrency);
          c.ingestByRound.push(ingest.rows);
          c.results.ingestPeakRss[concurrency] = Math.max(c.results.ingestPeakRss[concurrency] ?? 0, ingest.peakRss);
          const total = ingest.rows.at(-1)!;
          log(`  ${(total.instances / (total.ms / 1000)).toFixed(1)} instances/s, ${(total.bytes / MB / (total.ms / 1000)).toFixed(1)} MB/s, peak RSS ${(ingest.peakRss / MiB).toFixed(0)} MiB`);
          keep = last;
        } finally {
          if (keep) c.running = { server, dir };
          else {
            await server.stop();
            removeTempDir(dir);
          }
        }
      }
    }
    for (const c of contenders) c.results.ingest = medianIngestRows(c.ingestByRound);

    const retrieves = new Map<Contender, RetrieveResult[]>(contenders.map((c) => [c, []]));
    const retrievePeak = new Map<Contender, number>();
    log(`WADO-RS series retrieve (${corpus.ct.instances} instances), ${retrieveRepetitions} times each, alternating`);
    for (let i = 0; i < retrieveRepetitions; i++) {
      for (const c of contenders) {
        const accept = c.name === 'Atrium'
          ? 'multipart/related; type="application/dicom"; transfer-syntax=*'
          : 'multipart/related; type="application/dicom"';
        const { server } = c.running!;
        const { result, peakRss } = await withPeakRss(server.pid, () => retrieveSeries(server.target, corpus.ct.StudyInstanceUID, corpus.ct.SeriesInstanceUID, accept));
        retrieves.get(c)!.push(result);
        retrievePeak.set(c, Math.max(retrievePeak.get(c) ?? 0, peakRss));
      }
    }
    for (const c of contenders) {
      const rs = retrieves.get(c)!;
      c.results.retrieve = {
        repetitions: rs.length,
        MBps: median(rs.map((r) => r.MBps)),
        ttfbMs: median(rs.map((r) => r.ttfbMs)),
        totalMs: median(rs.map((r) => r.totalMs)),
        bytes: rs[0]!.bytes,
        parts: rs[0]!.parts,
        peakRss: retrievePeak.get(c)!,
      };
      log(`  ${c.name}: ${c.results.retrieve.MBps.toFixed(1)} MB/s (each: ${rs.map((r) => r.MBps.toFixed(0)).join(', ')}), TTFB ${c.results.retrieve.ttfbMs.toFixed(1)} ms, ${c.results.retrieve.parts} parts`);
    }

    log('series metadata, alternating');
    const metas = new Map<Contender, Array<{ ms: number; instances: number; bytes: number }>>(contenders.map((c) => [c, []]));
    for (let i = 0; i < 6; i++) {
      for (const c of contenders) metas.get(c)!.push(await seriesMetadata(c.running!.server.target, corpus.ct.StudyInstanceUID, corpus.ct.SeriesInstanceUID));
    }
    for (const c of contenders) {
      const m = metas.get(c)!;
      c.results.metadata = { firstMs: m[0]!.ms, medianMs: median(m.slice(1).map((x) => x.ms)), instances: m[0]!.instances, bytes: m[0]!.bytes };
      log(`  ${c.name}: first ${m[0]!.ms.toFixed(1)} ms, then median ${c.results.metadata.medianMs.toFixed(1)} ms (${m[0]!.instances} instances)`);
    }

    log(`QIDO-RS on the corpus index (${corpus.studies.length} studies), case by case on each server`);
    for (const qc of smallQidoCases(corpus)) {
      for (const c of contenders) c.results.qidoSmall.push(await runQido(c.running!.server.target, qc, qidoRepetitions));
    }

    for (const c of contenders) {
      const cap = c.name === 'Atrium' ? atriumRssCap : orthancRssCap;
      log(`${c.name}: STOW-RS of one ${(largeObjectBytes / MiB).toFixed(0)} MiB object (RSS cap ${(cap / MiB).toFixed(0)} MiB)`);
      c.results.largeObject = await stowLarge(c.running!.server, c.name, cap);
      log(`  ${c.results.largeObject.outcome}, peak RSS ${(c.results.largeObject.peakRss / MiB).toFixed(0)} MiB`);
    }
  } finally {
    for (const c of contenders) {
      if (!c.running) continue;
      await c.running.server.stop();
      removeTempDir(c.running.dir);
    }
  }
  return contenders.map((c) => c.results);
}

/** Per workload and concurrency, the median time over the rounds (the bytes and instances are the same in each). */
function medianIngestRows(byRound: IngestRow[][]): IngestRow[] {
  const groups = new Map<string, IngestRow[]>();
  for (const row of byRound.flat()) {
    const key = `${row.workload}|${row.concurrency}`;
    groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  return [...groups.values()].map((rows) => ({
    ...rows[0]!,
    ms: median(rows.map((r) => r.ms)),
    failed: Math.max(...rows.map((r) => r.failed)),
    rounds: rows.length,
  }));
}

async function stowLarge(server: RunningServer, name: string, cap: number): Promise<NonNullable<ServerResults['largeObject']>> {
  const object = largeObjectStream(seed, largeObjectBytes, name);
  const controller = new AbortController();
  let capped = false;
  const reset = resetPeakRss(server.pid);
  const sampler = new RssSampler(server.pid, 50, (rss) => {
    if (rss > cap && !capped) {
      capped = true;
      controller.abort();
    }
  });
  let outcome: string;
  let ms = NaN;
  try {
    const r = await stowStream(server.target, object, controller.signal);
    ms = r.ms;
    outcome = r.status === 200 && r.stored === 1 ? 'stored' : `HTTP ${r.status}: ${r.body.replace(/\s+/g, ' ').slice(0, 160)}`;
  } catch (e) {
    outcome = capped ? `aborted: RSS passed the ${(cap / MiB).toFixed(0)} MiB cap` : `failed: ${(e as Error).message.slice(0, 160)}`;
  }
  const sampled = sampler.stop();
  const hwm = readProcessMemory(server.pid)?.hwm ?? NaN;
  if (server.child.exitCode !== null || server.child.signalCode !== null) outcome += ` (server exited: ${server.child.signalCode ?? server.child.exitCode})`;
  return { bytes: object.size, ms, outcome, peakRss: reset && Number.isFinite(hwm) ? Math.max(hwm, sampled) : sampled };
}

async function benchLargeIndex(): Promise<NonNullable<BenchResults['largeIndex']>> {
  const plan = { studies: largeStudies, instancesPerStudy: 10, patients: Math.round(largeStudies * 0.4) };
  log(`large index: ${plan.studies} studies, ${plan.studies * plan.instancesPerStudy} instances`);
  const index = await buildLargeIndex(path.join(benchDir, 'out'), plan, log);
  const dir = makeTempDir('bench-atrium-large-');
  const server = await startAtrium(dir, { indexPath: index.path });
  const qido: QidoResult[] = [];
  try {
    for (const c of largeQidoCases(index)) {
      qido.push(await runQido(server.target, c, qidoRepetitions));
      const r = qido.at(-1)!;
      log(`  ${r.name}: p50 ${r.p50.toFixed(1)} ms, p95 ${r.p95.toFixed(1)} ms (${r.medianResults} results)`);
    }
  } finally {
    await server.stop();
    removeTempDir(dir);
  }
  return { studies: plan.studies, instances: index.instances, series: index.series, patients: plan.patients, buildSeconds: index.buildSeconds, reused: index.reused, qido };
}

async function main(): Promise<void> {
  const corpusDir = path.join(benchDir, 'corpus', quick ? 'quick' : 'full');
  log(`corpus (${quick ? 'quick' : 'full'}, seed ${seed}) in ${corpusDir}`);
  const corpus = generateCorpus(corpusDir, seed, plan, log);
  const results: BenchResults = {
    date: new Date().toISOString(),
    quick, seed,
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
      node: process.version,
    },
    corpus: {
      plan,
      instances: corpus.files.length,
      bytes: corpus.files.reduce((a, f) => a + f.size, 0),
      studies: corpus.studies.length,
      ct: corpus.ct,
    },
    largeObjectBytes,
    servers: [],
  };
  const servers: Array<{ name: string; start: Start }> = [{ name: 'Atrium', start: (dir) => startAtrium(dir) }];
  if (withOrthanc && orthancAvailable()) servers.push({ name: 'Orthanc', start: (dir) => startOrthanc(dir) });
  else log('Orthanc skipped (BENCH_SKIP_ORTHANC=1 or not installed): no ratios');
  results.servers.push(...await benchServers(servers, corpus));
  results.largeIndex = await benchLargeIndex();
  if (process.env.BENCH_SKIP_DIMSE !== '1') {
    results.dimse = await runDimseBench({ quick, seed, log, largeStudies });
    writeDimseReport(results.dimse);
  } else log('DIMSE bench skipped (BENCH_SKIP_DIMSE=1)');
  results.durationSeconds = (Date.now() - startedAt) / 1000;

  const md = renderAll(results);
  const outDir = path.join(benchDir, 'out');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'latest.md'), md);
  writeFileSync(path.join(outDir, 'latest.json'), JSON.stringify(results, null, 2));
  process.stdout.write(md + '\n');
  log(`done in ${results.durationSeconds.toFixed(0)} s; written to bench/out/latest.md and latest.json`);
}

function renderAll(results: BenchResults): string {
  return results.dimse ? `${renderReport(results)}\n${renderDimseReport(results.dimse)}` : renderReport(results);
}

/** `--render FILE.json`: the markdown of a previous run, without running anything. */
const renderAt = process.argv.indexOf('--render');
const run = renderAt === -1
  ? main
  : async () => {
    const file = process.argv[renderAt + 1] ?? path.join(benchDir, 'out', 'latest.json');
    process.stdout.write(renderAll(JSON.parse(readFileSync(file, 'utf8')) as BenchResults) + '\n');
  };

run().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  },
);
