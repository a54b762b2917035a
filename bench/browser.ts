/**
 * `npm run bench:browser`: the portal's targets (issue 5) in Debian's headless Chromium.
 *
 * 1. A 500-slice CT (512x512, 16-bit, the DIMSE bench's generator) is stored in Atrium (the
 *    real CLI, embedded engines, the built portal under /app/); a local radiologist logs in;
 *    the viewer is opened by a full navigation, and the viewer's own marks on its first
 *    viewport (`data-first-image-ms`, `data-series-loaded-ms`: performance.now() since the
 *    navigation began) give the time to the first image shown and to the whole series loaded.
 *    The first opening is cold (no cached bundle); the others reuse the browser's HTTP cache
 *    for the portal's scripts, never its image cache (each opening is a new page).
 * 2. Patient search through the portal API (`GET /api/patients?name=`) on a copy of the
 *    large index (bench/large-index.ts, 100,000 studies by default), with the session cookie
 *    of a logged-in user: p50 and p95.
 *
 * Targets: first image < 1 s, series < 5 s, search < 200 ms. Prints a markdown table and
 * writes bench/out/browser-latest.md and .json.
 *
 * Environment: BENCH_QUICK=1 (100 slices, 20,000 studies), BENCH_SLICES, BENCH_LARGE_STUDIES,
 * BENCH_VIEWER_RUNS (default 5), BENCH_SEED, BENCH_TMPDIR, CHROMIUM (default /usr/bin/chromium),
 * BENCH_LINE_MBIT (the browser's line, e.g. 20: Chromium's network emulation, 20 ms latency),
 * BENCH_SKIP_SEARCH=1 (the viewer only).
 */
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Page } from 'playwright-core';
import { startAtrium, type RunningServer } from './atrium.ts';
import { generateCtCorpus, type CorpusFile } from './corpus.ts';
import { buildLargeIndex, type LargeIndex } from './large-index.ts';
import { makeTempDir, median, nowMs, percentile, removeTempDir } from './measure.ts';
import { stowFiles } from './workload.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(benchDir, '..');
const portalDir = path.join(repoRoot, 'web', 'dist');
const quick = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
const seed = Number(process.env.BENCH_SEED ?? 20250612);
const slices = Number(process.env.BENCH_SLICES ?? (quick ? 100 : 500));
const largeStudies = Number(process.env.BENCH_LARGE_STUDIES ?? (quick ? 20_000 : 100_000));
const viewerRuns = Number(process.env.BENCH_VIEWER_RUNS ?? 5);
/** A slower line than the loopback, in Mbit/s (undefined: as fast as the machine goes). */
const lineMbit = process.env.BENCH_LINE_MBIT ? Number(process.env.BENCH_LINE_MBIT) : undefined;
const skipSearch = process.env.BENCH_SKIP_SEARCH === '1';
const searchRepetitions = quick ? 100 : 200;
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const login = 'bench.radiologue';
const password = 'un mot de passe de banc assez long';
export const targets = { firstImageMs: 1000, seriesMs: 5000, searchMs: 200 };

const startedAt = Date.now();
function log(line: string): void {
  process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
}

export interface BrowserBenchResults {
  date: string;
  machine: { cpus: number; cpuModel: string; memory: string; node: string; chromium: string; loadAverage: number[] };
  /** The browser's line in Mbit/s, when limited (BENCH_LINE_MBIT). */
  lineMbit?: number;
  viewer: { slices: number; bytes: number; runs: Array<{ firstImageMs: number; seriesLoadedMs: number; steps: Record<string, number | undefined> }>; firstImageMs: number; seriesLoadedMs: number; coldFirstImageMs: number; coldSeriesLoadedMs: number };
  search: { studies: number; patients: number; queries: number; p50: number; p95: number; medianResults: number };
}

/** The CLI's `user add`, with the password on stdin, against the running server's configuration. */
async function addLocalRadiologist(dataDir: string): Promise<void> {
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin/atrium.mjs'), 'user', 'add', login, '--name', 'Dr Banc', '--role', 'radiologist', '--site', 'BENCH', '--password-stdin', '--config', path.join(dataDir, 'atrium.bench.yaml')], { cwd: repoRoot, stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdin.end(`${password}\n`);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`atrium user add: exit ${code}: ${stderr}`);
}

/** The session cookie of a local login, as the portal's login page gets it. */
async function sessionCookie(base: string): Promise<string> {
  const r = await fetch(`${base}/auth/local`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login, password }) });
  if (r.status !== 200) throw new Error(`local login: ${r.status} ${await r.text()}`);
  const cookie = r.headers.getSetCookie().map((c) => c.split(';')[0]!).find((c) => c.startsWith('atrium_session='));
  if (!cookie) throw new Error('local login: no session cookie');
  return cookie;
}

function baseOf(server: RunningServer): string {
  return server.target.dicomweb.replace(/\/dicom-web$/, '');
}

type ViewerRun = BrowserBenchResults['viewer']['runs'][number];

async function openViewer(page: Page, base: string, StudyInstanceUID: string): Promise<ViewerRun> {
  await page.goto(`${base}/app/viewer?StudyInstanceUID=${StudyInstanceUID}`);
  const viewport = page.getByTestId('viewport-0');
  await page.waitForFunction(() => document.querySelector('[data-testid=viewport-0]')?.getAttribute('data-first-image-ms') != null, undefined, { timeout: 60_000 });
  const firstImageMs = Number(await viewport.getAttribute('data-first-image-ms'));
  await page.waitForFunction(() => document.querySelector('[data-testid=viewport-0]')?.getAttribute('data-series-loaded-ms') != null, undefined, { timeout: 300_000, polling: 100 });
  const seriesLoadedMs = Number(await viewport.getAttribute('data-series-loaded-ms'));
  // Where the time goes: when each step's request ended, in ms since the navigation.
  // A string, not a function: tsx would wrap named arrows in a helper the page does not have.
  const steps = await page.evaluate<Record<string, number | undefined>>(`(() => {
    const entries = performance.getEntriesByType('resource');
    const end = (re) => entries.find((e) => re.test(e.name))?.responseEnd;
    const frames = entries.filter((e) => /\\/frames\\//.test(e.name));
    const stream = entries.find((e) => /\\/pixeldata$/.test(e.name));
    return {
      scripts: Math.max(0, ...entries.filter((e) => /\\/assets\\/.*\\.js$/.test(e.name)).map((e) => e.responseEnd)),
      me: end(/\\/auth\\/me$/), study: end(/\\/dicom-web\\/studies\\?/), series: end(/\\/series$/), metadata: end(/\\/metadata$/),
      firstFrameStart: frames[0]?.startTime, firstFrame: frames[0]?.responseEnd, frames: frames.length,
      frameMs: frames.length ? frames.reduce((a, e) => a + (e.responseEnd - e.startTime), 0) / frames.length : undefined,
      seriesStreamStart: stream?.startTime, seriesStreamFirstByte: stream?.responseStart, seriesStreamEnd: stream?.responseEnd,
    };
  })()`);
  return { firstImageMs, seriesLoadedMs, steps };
}

async function benchViewer(version: string): Promise<BrowserBenchResults['viewer']> {
  const corpus = generateCtCorpus(path.join(benchDir, 'corpus', `browser-${slices}`), seed, { series: 1, slicesPerSeries: slices, folders: 1 }, log);
  const ct = corpus.series[0]!;
  const files: CorpusFile[] = readdirSync(corpus.folders[0]!).sort().map((f) => {
    const p = path.join(corpus.folders[0]!, f);
    return { path: p, size: statSync(p).size, kind: 'ct', StudyInstanceUID: ct.StudyInstanceUID, SeriesInstanceUID: ct.SeriesInstanceUID, SOPInstanceUID: '' };
  });
  const dir = makeTempDir('bench-browser-');
  const server = await startAtrium(dir, { portalDir });
  const profile = mkdtempSync(path.join(tmpdir(), 'bench-chromium-'));
  try {
    const stored = await stowFiles(server.target, files, 10, 4);
    if (stored.failed > 0 || stored.instances !== slices) throw new Error(`STOW-RS: ${stored.instances} stored, ${stored.failed} failed: ${stored.error}`);
    log(`viewer: ${slices} slices stored (${(corpus.bytes / 1e6).toFixed(0)} MB); Chromium ${version}`);
    await addLocalRadiologist(dir);
    const base = baseOf(server);
    const context = await chromium.launchPersistentContext(profile, { executablePath: chromiumPath, headless: true, args: chromiumArgs, viewport: { width: 1280, height: 800 }, locale: 'fr-FR' });
    try {
      const [name, value] = (await sessionCookie(base)).split('=') as [string, string];
      await context.addCookies([{ name, value, url: base }]);
      const runs: BrowserBenchResults['viewer']['runs'] = [];
      for (let i = 0; i < viewerRuns; i++) {
        const page = await context.newPage();
        if (lineMbit) {
          const cdp = await context.newCDPSession(page);
          await cdp.send('Network.enable');
          await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: (lineMbit * 1e6) / 8, uploadThroughput: (lineMbit * 1e6) / 8 });
        }
        const errors: string[] = [];
        page.on('pageerror', (e) => errors.push(String(e)));
        runs.push(await openViewer(page, base, ct.StudyInstanceUID));
        await page.close();
        if (errors.length > 0) log(`  page errors: ${errors.join(' | ')}`);
        const run = runs.at(-1)!;
        log(`  run ${i + 1}: first image ${run.firstImageMs} ms, series ${run.seriesLoadedMs} ms; ${Object.entries(run.steps).map(([k, v]) => `${k} ${v?.toFixed(0)}`).join(', ')}`);
      }
      const warm = runs.length > 1 ? runs.slice(1) : runs;
      return {
        slices, bytes: corpus.bytes, runs,
        firstImageMs: median(warm.map((r) => r.firstImageMs)), seriesLoadedMs: median(warm.map((r) => r.seriesLoadedMs)),
        coldFirstImageMs: runs[0]!.firstImageMs, coldSeriesLoadedMs: runs[0]!.seriesLoadedMs,
      };
    } finally {
      await context.close();
    }
  } finally {
    await server.stop();
    removeTempDir(dir);
    rmSync(profile, { recursive: true, force: true });
  }
}

function searchQueries(index: LargeIndex): string[] {
  // Word prefixes of family names (the portal matches any name component by prefix), and given names.
  return [...index.familyPrefixes.map((p) => p.toLowerCase()), ...index.givenNames];
}

async function benchSearch(): Promise<BrowserBenchResults['search']> {
  const plan = { studies: largeStudies, instancesPerStudy: 10, patients: Math.round(largeStudies * 0.4) };
  const index = await buildLargeIndex(path.join(benchDir, 'out'), plan, log);
  const dir = makeTempDir('bench-browser-search-');
  // A copy: the search is audited and the user is added, so the shared large index stays as built.
  const copy = path.join(dir, 'large-index.sqlite');
  copyFileSync(index.path, copy);
  const server = await startAtrium(dir, { indexPath: copy, portalDir });
  try {
    await addLocalRadiologist(dir);
    const base = baseOf(server);
    const cookie = await sessionCookie(base);
    const queries = searchQueries(index);
    const times: number[] = [];
    const results: number[] = [];
    // One round to warm the page cache, not counted.
    for (const q of queries) await fetch(`${base}/api/patients?name=${encodeURIComponent(q)}`, { headers: { cookie } }).then((r) => r.arrayBuffer());
    for (let i = 0; i < searchRepetitions; i++) {
      const q = queries[i % queries.length]!;
      const started = nowMs();
      const r = await fetch(`${base}/api/patients?name=${encodeURIComponent(q)}`, { headers: { cookie, accept: 'application/json' } });
      const body = (await r.json()) as { patients?: unknown[] };
      times.push(nowMs() - started);
      if (r.status !== 200) throw new Error(`search ${q}: ${r.status} ${JSON.stringify(body)}`);
      results.push(body.patients?.length ?? 0);
    }
    const p50 = percentile(times, 50);
    const p95 = percentile(times, 95);
    log(`search: p50 ${p50.toFixed(1)} ms, p95 ${p95.toFixed(1)} ms (${median(results)} patients a query)`);
    return { studies: plan.studies, patients: plan.patients, queries: times.length, p50, p95, medianResults: median(results) };
  } finally {
    await server.stop();
    removeTempDir(dir);
  }
}

function verdict(value: number, target: number): string {
  return value < target ? `met (< ${target} ms)` : `**missed** (target < ${target} ms)`;
}

export function renderBrowserReport(r: BrowserBenchResults): string {
  const v = r.viewer;
  return [
    `### Portal and viewer (${r.date.slice(0, 10)})`,
    '',
    `${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memory}, Node ${r.machine.node}, ${r.machine.chromium} headless (--disable-gpu); load average before the run ${r.machine.loadAverage.join(', ')}.`,
    '',
    '| measure | value | target |',
    '|---|---|---|',
    `| first image of a ${v.slices}-slice CT (512x512x16, ${(v.bytes / 1e6).toFixed(0)} MB), median of ${Math.max(1, v.runs.length - 1)} warm openings | ${v.firstImageMs.toFixed(0)} ms | ${verdict(v.firstImageMs, targets.firstImageMs)} |`,
    `| whole series loaded, same openings | ${v.seriesLoadedMs.toFixed(0)} ms | ${verdict(v.seriesLoadedMs, targets.seriesMs)} |`,
    `| first opening (cold: portal scripts not cached) | first image ${v.coldFirstImageMs.toFixed(0)} ms, series ${v.coldSeriesLoadedMs.toFixed(0)} ms | |`,
    ...(r.lineMbit ? [`| line | ${r.lineMbit} Mbit/s, 20 ms latency (Chromium's network emulation) | |`] : []),
    r.search.queries === 0 ? '| patient search | not run (BENCH_SKIP_SEARCH) | |' : `| patient search \`/api/patients?name=\` on ${r.search.studies.toLocaleString('en')} studies (${r.search.patients.toLocaleString('en')} patients), ${r.search.queries} queries | p50 ${r.search.p50.toFixed(1)} ms, p95 ${r.search.p95.toFixed(1)} ms (${r.search.medianResults} patients a query) | ${verdict(r.search.p95, targets.searchMs)} |`,
    '',
    `Each opening: ${v.runs.map((x) => `${x.firstImageMs}/${x.seriesLoadedMs}`).join(', ')} ms (first image/series).`,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  if (!existsSync(chromiumPath)) throw new Error(`no Chromium at ${chromiumPath} (apt-get install chromium, or CHROMIUM=...)`);
  if (!existsSync(path.join(portalDir, 'index.html'))) {
    log('building the portal (npm run build:web)');
    execFileSync('npm', ['run', 'build:web'], { cwd: repoRoot, stdio: 'inherit' });
  }
  const version = execFileSync(chromiumPath, ['--version'], { encoding: 'utf8' }).trim();
  // The 1, 5 and 15-minute load before the run: other work on a shared machine slows every figure.
  const loadAverage = loadavg().map((l) => Number(l.toFixed(2)));
  const viewer = await benchViewer(version);
  const search = skipSearch ? { studies: 0, patients: 0, queries: 0, p50: 0, p95: 0, medianResults: 0 } : await benchSearch();
  const results: BrowserBenchResults = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`, node: process.version, chromium: version, loadAverage },
    viewer, search, ...(lineMbit ? { lineMbit } : {}),
  };
  const md = renderBrowserReport(results);
  const outDir = path.join(benchDir, 'out');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'browser-latest.md'), md);
  writeFileSync(path.join(outDir, 'browser-latest.json'), JSON.stringify(results, null, 2));
  process.stdout.write(md + '\n');
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench:browser: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  },
);
