/**
 * The DIMSE benchmark: Atrium's DICOM network services against Debian's Orthanc, driven by
 * Debian's DCMTK tools, measured back to back in one run. Run by `npm run bench` after the
 * DICOMweb part, or alone with `node --import tsx bench/dimse.ts` (`npm run bench:dimse`).
 * Writes bench/out/dimse-latest.md and bench/out/dimse-latest.json.
 *
 *  (a) C-STORE ingest of CT series (storescu, one association, then five at once);
 *  (b) study-level C-FIND on a large Atrium index (and on the corpus, both servers);
 *  (c) C-MOVE of one series to a storescp, and C-GET of it with getscu.
 *
 * Environment: BENCH_QUICK=1 (smaller corpus, fewer rounds), BENCH_SEED, BENCH_SKIP_ATRIUM=1,
 * BENCH_SKIP_ORTHANC=1, BENCH_DIMSE_ROUNDS, BENCH_LARGE_STUDIES, BENCH_TMPDIR, BENCH_COMMIT (the
 * commit to name when the tree is an export without .git).
 * (BENCH_SKIP_DIMSE=1 makes `npm run bench` leave this part out.)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAtrium, type BenchPeer, type RunningServer } from './atrium.ts';
import { generateCtCorpus, type CtCorpus } from './corpus.ts';
import {
  CallingAE, findStudies, findStudiesOnOneAssociation, getSeries, moveSeries, startStoreSCP, storeFolders, storeInParallel, waitForEcho,
  type DimseTarget, type FindQuery, type FindRun, type RetrieveRun, type StoreRun,
} from './dcmtk.ts';
import { middle, renderDimseReport, type DimseResults, type DimseServerResults, type FindRow, type RetrieveRow, type StoreRow } from './dimse-report.ts';
import { buildLargeIndex, type LargeIndex } from './large-index.ts';
import { freePort, httpRequest, makeTempDir, MB, nowMs, percentile, removeTempDir, withPeakRss } from './measure.ts';
import { describeFile, sendFiles } from '../src/dimse/send-files.ts';
import { orthancAvailable, startOrthanc, type RunningOrthanc } from './orthanc.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(benchDir, '..');

/** Orthanc and DCMTK accept at most 131072 (MaximumPduLength, -pdu); Atrium is given the same. */
const maxPduLength = 131072;

export interface DimseBenchOptions {
  quick: boolean;
  seed: number;
  log: (line: string) => void;
  /** Reuse the large index the DICOMweb bench built (same plan). */
  largeStudies?: number;
}

interface Contender {
  name: string;
  /** `indexPath`: an index built beforehand (the large one), Atrium only. */
  start: (dir: string, indexPath?: string) => Promise<RunningServer>;
  target: DimseTarget;
  results: DimseServerResults;
  running?: { server: RunningServer; dir: string };
}

/** A C-STORE sender; storescu today, Atrium's own pipelining SCU beside it once it has one. */
interface StoreClient {
  name: string;
  /** `groups`: one list of folders per association. */
  send(target: DimseTarget, groups: string[][]): Promise<StoreRun>;
}

const storescu: StoreClient = {
  name: 'storescu',
  send: (target, groups) => (groups.length === 1 ? storeFolders(target, groups[0]!, maxPduLength) : storeInParallel(target, groups, maxPduLength)),
};

/** Every file under a folder, sorted (as storescu +sd +r scans). */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))
    .flatMap((e) => (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

/**
 * (d) Atrium's own storage SCU (`atrium send`, src/dimse/send-files.ts), in this process:
 * reading the files' meta headers is timed too, as storescu's scan is. It asks for 8
 * outstanding C-STOREs; Orthanc grants none, Atrium grants it.
 */
const atriumSend: StoreClient = {
  name: 'atrium send (window 8)',
  async send(target, groups) {
    const started = nowMs();
    const results = await Promise.all(groups.map(async (folders) => {
      const files = await Promise.all(folders.flatMap(filesUnder).map((f) => describeFile(f)));
      return sendFiles({ host: target.host, port: target.port, calledAETitle: target.aeTitle, callingAETitle: CallingAE.store, files, maxPduLength, window: 8 });
    }));
    const failed = results.reduce((a, r) => a + r.failed.length, 0);
    return { ms: nowMs() - started, failed, error: failed ? results.flatMap((r) => r.failed)[0]!.error : undefined };
  },
};

const storeClients: StoreClient[] = [storescu, atriumSend];

/** User and system CPU of a process, in ms (clock ticks are 10 ms on Linux). */
function cpuMsOf(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

/** Instances a server holds, by QIDO-RS (both servers answer NumberOfStudyRelatedInstances). */
async function countInstances(server: RunningServer): Promise<number> {
  const res = await httpRequest(server.target, `${server.target.dicomweb}/studies?includefield=00201208&limit=1000`, { collect: true, headers: { accept: 'application/dicom+json' } });
  if (res.status === 204) return 0;
  if (res.status !== 200) return NaN;
  const studies = JSON.parse(res.body!.toString('utf8')) as Array<Record<string, { Value?: unknown[] }>>;
  return studies.reduce((a, s) => a + Number(s['00201208']?.Value?.[0] ?? 0), 0);
}

/** The commit measured: the repository's HEAD, or BENCH_COMMIT for a tree exported with `git archive`. */
function gitCommit(): string {
  if (process.env.BENCH_COMMIT) return process.env.BENCH_COMMIT;
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    return dirty ? `${head} (plus uncommitted changes in src/)` : head;
  } catch {
    return 'unknown';
  }
}

function dcmtkVersion(): string {
  try {
    const text = execFileSync('storescu', ['--version'], { encoding: 'utf8' });
    return `DCMTK ${/v(\d+\.\d+\.\d+)/.exec(text)?.[1] ?? 'unknown'}`;
  } catch {
    return 'DCMTK unknown';
  }
}

function findRow(name: string, example: string, mode: FindRow['mode'], runs: FindRun[], error?: string): FindRow {
  const ok = runs.filter((r) => !r.error);
  const ms = ok.map((r) => r.ms);
  return {
    name, example, mode, n: runs.length,
    p50: percentile(ms, 50), p95: percentile(ms, 95), max: ms.length ? Math.max(...ms) : NaN,
    medianResults: percentile(ok.map((r) => r.results), 50),
    errors: runs.length - ok.length + (error ? 1 : 0),
    error: error ?? runs.find((r) => r.error)?.error,
  };
}

interface FindCase {
  name: string;
  queries: FindQuery[];
  /** Fewer repetitions than the other cases (answers of thousands of studies take a second each). */
  n?: number;
}

const exampleOf = (q: FindQuery) => Object.entries(q).map(([k, v]) => `${k}=${v}`).join('&');

/** Each case: `n` queries, one findscu each; then the same `n` queries on one association. */
async function runFindCases(target: DimseTarget, cases: FindCase[], n: number, workDir: string, log: (line: string) => void): Promise<FindRow[]> {
  const rows: FindRow[] = [];
  for (const c of cases) {
    const queries = Array.from({ length: Math.min(n, c.n ?? n) }, (_, i) => c.queries[i % c.queries.length]!);
    const spawned: FindRun[] = [];
    for (const q of queries) spawned.push(await findStudies(target, q));
    rows.push(findRow(c.name, exampleOf(queries[0]!), 'process', spawned));
    const dir = path.join(workDir, `find-${rows.length}`);
    mkdirSync(dir, { recursive: true });
    const one = await findStudiesOnOneAssociation(target, queries, dir);
    rows.push(findRow(c.name, exampleOf(queries[0]!), 'association', one.runs, one.error));
    const [p, a] = rows.slice(-2) as [FindRow, FindRow];
    log(`  ${target.name} ${c.name}: p95 ${p.p95.toFixed(1)} ms per findscu, ${a.p95.toFixed(1)} ms on one association (${a.medianResults} results)${p.error ?? a.error ? `; ${p.error ?? a.error}` : ''}`);
  }
  return rows;
}

function smallFindCases(corpus: CtCorpus): FindCase[] {
  return [
    { name: 'PatientID exact', queries: corpus.series.map((s) => ({ PatientID: s.PatientID })) },
    { name: 'StudyInstanceUID', queries: corpus.series.map((s) => ({ StudyInstanceUID: s.StudyInstanceUID })) },
    { name: 'StudyDate + ModalitiesInStudy', queries: [{ StudyDate: '20250101-20251231', ModalitiesInStudy: 'CT' }] },
  ];
}

function largeFindCases(index: LargeIndex): FindCase[] {
  const day = (n: number) => {
    const d = new Date(Date.UTC(2015, 0, 1) + n * 86_400_000);
    return d.toISOString().slice(0, 10).replace(/-/g, '');
  };
  // Spread over the eleven years, deterministically, so that consecutive queries touch different pages.
  const days = Array.from({ length: 200 }, (_, i) => (i * 7919) % 4018);
  return [
    { name: 'PatientID exact', queries: index.samplePatientIDs.map((id) => ({ PatientID: id })) },
    { name: 'AccessionNumber exact', queries: days.map((d) => ({ AccessionNumber: `A${String(1 + ((d * 7919) % index.plan.studies)).padStart(9, '0')}` })) },
    { name: 'StudyDate one day', queries: days.map((d) => ({ StudyDate: day(d) })) },
    { name: 'StudyDate one month + ModalitiesInStudy', queries: days.map((d, i) => ({ StudyDate: `${day(d).slice(0, 6)}01-${day(d).slice(0, 6)}28`, ModalitiesInStudy: ['CT', 'MR', 'US'][i % 3]! })) },
    { name: 'PatientName prefix + StudyDate (1 year)', queries: index.familyPrefixes.map((p, i) => ({ PatientName: `${p}*`, StudyDate: `${2015 + (i % 11)}0101-${2015 + (i % 11)}1231` })) },
    { name: 'PatientName prefix (whole answer)', queries: index.familyPrefixes.map((p) => ({ PatientName: `${p}*` })), n: 15 },
  ];
}

function retrieveRow(runs: RetrieveRun[], instances: number, bytes: number, peakRss?: number): RetrieveRow {
  return {
    instances, bytes, runsMs: runs.filter((r) => !r.error && r.completed === instances).map((r) => r.ms),
    completed: Math.min(...runs.map((r) => r.completed)),
    failed: Math.max(...runs.map((r) => r.failed)),
    error: runs.find((r) => r.error)?.error ?? (runs.some((r) => r.completed !== instances) ? `completed ${runs.map((r) => r.completed).join(', ')} of ${instances}` : undefined),
    peakRss,
  };
}

/** The peers Atrium must know: every calling AE title of the bench, and the C-MOVE destination. */
function atriumPeers(destinationPort: number): BenchPeer[] {
  return [
    { aeTitle: CallingAE.store }, { aeTitle: CallingAE.find }, { aeTitle: CallingAE.move }, { aeTitle: CallingAE.get },
    { aeTitle: CallingAE.destination, host: '127.0.0.1', port: destinationPort },
  ];
}

/** Starts a server and checks that its DIMSE listener answers C-ECHO; stops it and throws otherwise. */
async function startAnswering(c: Contender, dir: string, indexPath?: string): Promise<RunningServer> {
  const server = await c.start(dir, indexPath);
  if (!await waitForEcho(c.target)) {
    const tail = server.stderrTail();
    await server.stop();
    throw new Error(`${c.name}: no C-ECHO answer on ${c.target.host}:${c.target.port} (${c.target.aeTitle}). ${tail.slice(-600)}`);
  }
  return server;
}

export async function runDimseBench(options: DimseBenchOptions): Promise<DimseResults> {
  const { quick, seed, log } = options;
  const startedAt = Date.now();
  const rounds = Number(process.env.BENCH_DIMSE_ROUNDS ?? (quick ? 1 : 3));
  const retrieveRepetitions = quick ? 2 : 5;
  const findPerCase = quick ? 30 : 100;
  const plan = quick ? { series: 3, slicesPerSeries: 100, folders: 5 } : { series: 4, slicesPerSeries: 500, folders: 5 };
  const corpus = generateCtCorpus(path.join(benchDir, 'corpus', quick ? 'dimse-quick' : 'dimse-full'), seed, plan, log);
  const results: DimseResults = {
    date: new Date().toISOString(), quick, seed, commit: gitCommit(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`, node: process.version, loadAverage: loadavg() },
    dcmtk: dcmtkVersion(), maxPduLength,
    corpus: { instances: corpus.instances, bytes: corpus.bytes, series: plan.series, slicesPerSeries: plan.slicesPerSeries },
    servers: [], notes: [],
  };
  // Others' work on this machine weighs on the figures: keep the highest one-minute load seen.
  const loadSampler = setInterval(() => {
    results.machine.loadAverageMax = Math.max(results.machine.loadAverageMax ?? 0, loadavg()[0]!);
  }, 5000);
  loadSampler.unref();
  const workDir = makeTempDir('bench-dimse-');
  const storescp = await startStoreSCP(await freePort(), maxPduLength);
  const peers = atriumPeers(storescp.port);

  const contenders: Contender[] = [];
  if (process.env.BENCH_SKIP_ATRIUM !== '1') {
    const port = await freePort();
    contenders.push({
      name: 'Atrium',
      target: { name: 'Atrium', host: '127.0.0.1', port, aeTitle: 'ATRIUM' },
      start: (dir, indexPath) => startAtrium(dir, { indexPath, dimse: { port, aeTitle: 'ATRIUM', maxPduLength }, peers }),
      results: { name: 'Atrium', store: [], findSmall: [], notes: [] },
    });
  } else results.notes.push('Atrium skipped (BENCH_SKIP_ATRIUM=1): no ratios.');
  if (process.env.BENCH_SKIP_ORTHANC !== '1' && orthancAvailable()) {
    const port = await freePort();
    contenders.push({
      name: 'Orthanc',
      target: { name: 'Orthanc', host: '127.0.0.1', port, aeTitle: 'ORTHANC' },
      start: (dir) => startOrthanc(dir, {
        dicom: { port, aeTitle: 'ORTHANC', maxPduLength, modalities: [{ aeTitle: CallingAE.destination, host: '127.0.0.1', port: storescp.port }] },
      }),
      results: { name: 'Orthanc', store: [], findSmall: [], notes: [] },
    });
  } else results.notes.push('Orthanc skipped (BENCH_SKIP_ORTHANC=1 or not installed): no ratios.');

  const groupsFor = (associations: number): string[][] => (associations === 1
    ? [corpus.folders]
    : corpus.folders.map((f) => [f]));

  try {
    // (a) C-STORE: every round on empty servers, the servers in turn; the last round's servers stay up for the reads.
    const plans: Array<{ client: StoreClient; associations: number; last: boolean }> = [];
    for (const client of storeClients) {
      for (const associations of [1, 5]) {
        for (let i = 0; i < rounds; i++) plans.push({ client, associations, last: false });
      }
    }
    plans.at(-1)!.last = true;
    const live = new Set(contenders);
    const byKey = new Map<string, { runs: Array<StoreRun & { stored: number; cpuMs: number }>; peakRss: number }>();
    for (const { client, associations, last } of plans) {
      for (const c of contenders) {
        if (!live.has(c)) continue;
        const dir = makeTempDir(`bench-dimse-${c.name.toLowerCase()}-`);
        let server: RunningServer;
        try {
          server = await startAnswering(c, dir);
        } catch (e) {
          removeTempDir(dir);
          c.results.notes.push(`not measured: ${(e as Error).message}`);
          log(`  ${(e as Error).message}`);
          live.delete(c);
          continue;
        }
        let keep = false;
        try {
          if ('dicomWebVersion' in server) c.results.version = (server as RunningOrthanc).version;
          log(`${c.name}: C-STORE of ${corpus.instances} instances by ${client.name}, ${associations} association(s)`);
          const cpuBefore = cpuMsOf(server.pid);
          const { result: run, peakRss } = await withPeakRss(server.pid, () => client.send(c.target, groupsFor(associations)));
          const cpuMs = cpuMsOf(server.pid) - cpuBefore;
          const stored = await countInstances(server);
          const key = `${c.name}|${client.name}|${associations}`;
          const entry = byKey.get(key) ?? { runs: [], peakRss: 0 };
          entry.runs.push({ ...run, stored, cpuMs });
          entry.peakRss = Math.max(entry.peakRss, peakRss);
          byKey.set(key, entry);
          log(`  ${(corpus.instances / (run.ms / 1000)).toFixed(1)} instances/s, ${(corpus.bytes / MB / (run.ms / 1000)).toFixed(1)} MB/s; ` +
            `${stored} stored, ${run.failed} failed; server CPU ${(cpuMs / 1000).toFixed(1)} s${run.error ? `; ${run.error}` : ''}`);
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
    for (const c of contenders) {
      for (const client of storeClients) {
        for (const associations of [1, 5]) {
          const entry = byKey.get(`${c.name}|${client.name}|${associations}`);
          if (!entry) continue;
          const roundsMs = entry.runs.map((r) => r.ms);
          const med = middle(roundsMs);
          const closest = entry.runs.reduce((a, r) => (Math.abs(r.ms - med) < Math.abs(a.ms - med) ? r : a));
          c.results.store.push({
            associations, client: client.name, instances: corpus.instances, bytes: corpus.bytes, roundsMs,
            stored: Math.min(...entry.runs.map((r) => r.stored)), failed: Math.max(...entry.runs.map((r) => r.failed)),
            error: entry.runs.find((r) => r.error)?.error ?? (entry.runs.some((r) => r.stored !== corpus.instances) ? `stored ${entry.runs.map((r) => r.stored).join(', ')} of ${corpus.instances}` : undefined),
            peakRss: entry.peakRss, serverCpuMs: closest.cpuMs,
          } satisfies StoreRow);
        }
      }
    }

    // (c) C-MOVE and C-GET of the first series, the servers alternating.
    const up = contenders.filter((c) => c.running);
    const series = corpus.series[0]!;
    if (up.length) log(`C-MOVE and C-GET of one series (${series.instances} instances), ${retrieveRepetitions} times each, alternating`);
    const moves = new Map<Contender, RetrieveRun[]>(up.map((c) => [c, []]));
    const gets = new Map<Contender, RetrieveRun[]>(up.map((c) => [c, []]));
    const movePeak = new Map<Contender, number>();
    const getPeak = new Map<Contender, number>();
    for (let i = 0; i < retrieveRepetitions; i++) {
      for (const c of up) {
        const { result, peakRss } = await withPeakRss(c.running!.server.pid, () => moveSeries(c.target, series.StudyInstanceUID, series.SeriesInstanceUID, CallingAE.destination, maxPduLength));
        moves.get(c)!.push(result);
        movePeak.set(c, Math.max(movePeak.get(c) ?? 0, peakRss));
      }
      for (const c of up) {
        const { result, peakRss } = await withPeakRss(c.running!.server.pid, () => getSeries(c.target, series.StudyInstanceUID, series.SeriesInstanceUID, maxPduLength));
        gets.get(c)!.push(result);
        getPeak.set(c, Math.max(getPeak.get(c) ?? 0, peakRss));
      }
    }
    for (const c of up) {
      c.results.move = retrieveRow(moves.get(c)!, series.instances, series.bytes, movePeak.get(c));
      c.results.get = retrieveRow(gets.get(c)!, series.instances, series.bytes, getPeak.get(c));
      for (const [what, row] of [['C-MOVE', c.results.move], ['C-GET', c.results.get]] as const) {
        log(`  ${c.name} ${what}: ${row.runsMs.map((ms) => (series.bytes / MB / (ms / 1000)).toFixed(0)).join(', ')} MB/s; ${row.completed} completed${row.error ? `; ${row.error}` : ''}`);
      }
    }

    // C-FIND on the corpus: a handful of studies, so mostly the cost of the protocol on each server.
    if (up.length) log(`C-FIND on the corpus (${plan.series} studies), ${findPerCase} queries a case`);
    for (const fc of smallFindCases(corpus)) {
      for (const c of up) c.results.findSmall.push(...await runFindCases(c.target, [fc], Math.min(findPerCase, 50), workDir, log));
    }
  } finally {
    for (const c of contenders) {
      if (!c.running) continue;
      await c.running.server.stop();
      removeTempDir(c.running.dir);
    }
  }
  results.servers = contenders.map((c) => c.results);

  // (b) C-FIND on a large Atrium index (Orthanc cannot be filled to this size in the time of a bench).
  const atrium = contenders.find((c) => c.name === 'Atrium');
  if (atrium && atrium.results.store.length > 0) {
    const studies = options.largeStudies ?? Number(process.env.BENCH_LARGE_STUDIES ?? (quick ? 20_000 : 100_000));
    const largePlan = { studies, instancesPerStudy: 10, patients: Math.round(studies * 0.4) };
    log(`C-FIND on a large Atrium index: ${studies} studies`);
    const index = await buildLargeIndex(path.join(benchDir, 'out'), largePlan, log);
    const dir = makeTempDir('bench-dimse-atrium-large-');
    try {
      const server = await startAnswering(atrium, dir, index.path);
      try {
        const rows = await runFindCases(atrium.target, largeFindCases(index), findPerCase, workDir, log);
        results.findLarge = {
          server: 'Atrium', studies, series: index.series, instances: index.instances, patients: largePlan.patients, rows,
          notes: index.reused ? [] : [`index built in ${index.buildSeconds.toFixed(1)} s`],
        };
      } finally {
        await server.stop();
      }
    } catch (e) {
      results.notes.push(`C-FIND on the large index not measured: ${(e as Error).message}`);
    } finally {
      removeTempDir(dir);
    }
  }

  await storescp.stop();
  removeTempDir(workDir);
  clearInterval(loadSampler);
  results.durationSeconds = (Date.now() - startedAt) / 1000;
  return results;
}

/** Writes bench/out/dimse-latest.{md,json} and returns the markdown. */
export function writeDimseReport(results: DimseResults): string {
  const md = renderDimseReport(results);
  const outDir = path.join(benchDir, 'out');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'dimse-latest.md'), md);
  writeFileSync(path.join(outDir, 'dimse-latest.json'), JSON.stringify(results, null, 2));
  return md;
}

// Alone: `node --import tsx bench/dimse.ts [--quick]`, or `--render FILE.json` for the markdown of a previous run.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const startedAt = Date.now();
  const log = (line: string) => process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
  const renderAt = process.argv.indexOf('--render');
  const run = async () => {
    if (renderAt !== -1) {
      const file = process.argv[renderAt + 1] ?? path.join(benchDir, 'out', 'dimse-latest.json');
      process.stdout.write(renderDimseReport(JSON.parse(readFileSync(file, 'utf8')) as DimseResults) + '\n');
      return;
    }
    const quick = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
    const results = await runDimseBench({ quick, seed: Number(process.env.BENCH_SEED ?? 20250612), log });
    process.stdout.write(writeDimseReport(results) + '\n');
    log(`done in ${results.durationSeconds?.toFixed(0)} s; written to bench/out/dimse-latest.md and dimse-latest.json`);
  };
  run().then(() => process.exit(0), (e: unknown) => {
    process.stderr.write(`bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  });
}

