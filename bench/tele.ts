/**
 * `npm run bench:tele`: the teleradiology targets of issue 6, over the real interfaces.
 *
 * 1. Stroke clock: a stroke request waits for its CT; DCMTK's storescu sends the series to
 *    Atrium's DIMSE port; from storescu's exit (the last C-STORE answered) the on-call
 *    neuroradiologist's worklist is polled over HTTP every 20 ms until the request shows with
 *    its images. Target: under 2 s.
 * 2. Worklist queries with 10,000 open requests (filed over HTTP, through the domain): each
 *    filter the portal offers, sequentially, over HTTP. Target: under 100 ms.
 *
 * Atrium runs in this process as the tests start it, with the background matching of images
 * to requests as `atrium serve` runs it (teleradiology.pollMs, 500 ms by default), on the
 * embedded SQLite index, and on PostgreSQL too when DATABASE_URL is set. Environment: BENCH_TELE_REQUESTS (10000), BENCH_TELE_STROKES (10),
 * BENCH_TELE_SLICES (40), BENCH_TELE_QUERIES (100). Writes bench/out/tele-latest.md and .json.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAtrium, type RunningAtrium } from '../test/support/atrium.ts';
import { testDatabases } from '../test/support/databases.ts';
import { dcmtk } from '../test/support/dcmtk.ts';
import { CookieJar, request } from '../test/support/browser-session.ts';
import { syntheticInstance } from '../test/support/synthetic.ts';
import { addUser } from '../src/cli/users.ts';
import { Tags } from '../src/dicom/dataset.ts';
import { newUID } from '../src/dicom/uids.ts';
import { median, percentile } from './measure.ts';
import { pino } from 'pino';
import { TeleImagesArrival } from '../src/workflow/tele-images.ts';
import { TeleRequests } from '../src/workflow/tele-requests.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const openRequests = Number(process.env.BENCH_TELE_REQUESTS ?? 10_000);
const strokes = Number(process.env.BENCH_TELE_STROKES ?? 10);
const slices = Number(process.env.BENCH_TELE_SLICES ?? 40);
const repetitions = Number(process.env.BENCH_TELE_QUERIES ?? 100);
const password = 'un mot de passe assez long pour le banc';
const startedAt = Date.now();
const log = (line: string) => process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);

interface Stats { n: number; medianMs: number; p95Ms: number; maxMs: number }
const stats = (ms: number[]): Stats => ({ n: ms.length, medianMs: median(ms), p95Ms: percentile(ms, 95), maxMs: Math.max(...ms) });

interface EngineResult { engine: string; strokeSeries: Stats; strokeSingle: Stats; fillSeconds: number; open: number; queries: Array<{ name: string; results: number } & Stats> }

async function session(base: string, login: string): Promise<{ jar: CookieJar; csrf: string }> {
  const jar = new CookieJar();
  const r = await request(jar, `${base}/auth/local`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login, password }) });
  assert.equal(r.status, 200, await r.text());
  return { jar, csrf: ((await (await request(jar, `${base}/auth/me`)).json()) as { csrfToken: string }).csrfToken };
}

async function benchEngine(engine: ReturnType<typeof testDatabases>[number]): Promise<EngineResult> {
  const db = await engine.open();
  const work = mkdtempSync(path.join(tmpdir(), 'atrium-bench-tele-'));
  let atrium: RunningAtrium | undefined;
  let matching: TeleImagesArrival | undefined;
  try {
    atrium = await startAtrium({
      index: db.config, dimse: true,
      configure: (c) => {
        c.auth.sessions.secureCookie = false;
        c.auth.loginAttemptsPerMinute = 100_000;
        c.peers = [{ aeTitle: 'SUD-CT', site: 'CLIN-SUD', may: { store: true, query: false, retrieve: false } }];
      },
    });
    // Images meet their requests as `atrium serve` has them meet: its background matching, at its default poll interval.
    matching = new TeleImagesArrival(new TeleRequests(atrium.archive, atrium.config.teleradiology), pino({ level: 'silent' }), atrium.config.teleradiology.pollMs);
    matching.start();
    const base = atrium.dicomweb.replace(/\/dicom-web$/, '');
    const by = { actor: 'bench', via: 'cli' as const };
    await addUser(atrium.archive, { login: 'neuro', displayName: 'Dr Neuro', roles: ['radiologist'], sites: ['CHU-NORD'], password }, by);
    await addUser(atrium.archive, { login: 'admin', displayName: 'Admin', roles: ['territory-admin'], sites: [], password }, by);
    const neuro = await session(base, 'neuro');
    const admin = await session(base, 'admin');
    const post = async (s: { jar: CookieJar; csrf: string } | string, url: string, body: unknown) => {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (typeof s === 'string') headers.authorization = `Bearer ${s}`;
      else headers['x-csrf-token'] = s.csrf;
      const init = { method: 'POST', headers, body: JSON.stringify(body) };
      return typeof s === 'string' ? fetch(`${base}${url}`, init) : request(s.jar, `${base}${url}`, init);
    };
    const shift = await post(admin, '/api/teleradiology/oncall', { login: 'neuro', specialty: 'neuro', startsAt: new Date(Date.now() - 60_000).toISOString(), endsAt: new Date(Date.now() + 86_400_000).toISOString() });
    assert.equal(shift.status, 201);
    // Patients known at the clinic (their earlier exams), by C-STORE.
    const patients = Array.from({ length: 50 }, (_, i) => `BT-${i}`);
    const priors = patients.map((PatientID, i) => {
      const p = path.join(work, `prior-${i}.dcm`);
      writeFileSync(p, syntheticInstance({ PatientID, PatientName: `Banc^Patient${i}`, Modality: 'CR', Rows: 4, Columns: 4 }).file);
      return p;
    });
    const stored = await dcmtk('storescu', ['-aet', 'SUD-CT', '-aec', 'ATRIUM', '127.0.0.1', String(atrium.dimse!.port), ...priors]);
    assert.equal(stored.code, 0, stored.output);
    const sudToken = atrium.tokens['CLIN-SUD']!;
    const common = { clinicalContext: 'Contexte', clinicalQuestion: 'Question ?', requestingPhysician: { name: 'Dr Banc' }, proposedProtocol: 'Protocole standard' };

    // 1. The stroke clock: a series of many slices (matched as its first slices arrive), and a single image (matched only after it).
    let strokeNumber = 0;
    const strokeClock = async (sliceCount: number): Promise<number[]> => {
      log(`${engine.name}: stroke clock, ${strokes} requests, ${sliceCount} CT slice(s) of 512 x 512 each`);
      const strokeMs: number[] = [];
      for (let k = 0; k < strokes; k++) {
        const n = strokeNumber++;
        const AccessionNumber = `AVC-${n}`;
        const created = await post(sudToken, '/api/teleradiology/requests', {
          patient: { PatientID: patients[n % patients.length] }, AccessionNumber, urgency: 'stroke', modality: 'CT', bodyPart: 'HEAD', specialty: 'neuro', ...common,
        });
        assert.equal(created.status, 201, await created.clone().text());
        const { id } = (await created.json()) as { id: number };
        const StudyInstanceUID = newUID();
        const SeriesInstanceUID = newUID();
        const files = Array.from({ length: sliceCount }, (_, i) => {
          const p = path.join(work, `stroke-${n}-${i}.dcm`);
          writeFileSync(p, syntheticInstance({
            PatientID: patients[n % patients.length], Modality: 'CT', StudyInstanceUID, SeriesInstanceUID, Rows: 512, Columns: 512,
            extra: [{ tag: Tags.AccessionNumber, vr: 'SH', value: Buffer.from(AccessionNumber.length % 2 ? `${AccessionNumber} ` : AccessionNumber) }],
          }).file);
          return p;
        });
        const sent = await dcmtk('storescu', ['-aet', 'SUD-CT', '-aec', 'ATRIUM', '127.0.0.1', String(atrium!.dimse!.port), ...files]);
        assert.equal(sent.code, 0, sent.output);
        const last = performance.now();
        for (;;) {
          const list = (await (await request(neuro.jar, `${base}/api/teleradiology/worklist?mine=true&urgency=stroke`)).json()) as Array<{ id: number; imagesArrived: boolean }>;
          if (list.some((e) => e.id === id && e.imagesArrived)) break;
          if (performance.now() - last > 30_000) throw new Error(`stroke request ${id} not on the worklist with its images after 30 s`);
          await new Promise((r) => setTimeout(r, 20));
        }
        strokeMs.push(performance.now() - last);
        for (const f of files) rmSync(f);
      }
      log(`${engine.name}: stroke, ${sliceCount} slice(s): median ${median(strokeMs).toFixed(0)} ms, max ${Math.max(...strokeMs).toFixed(0)} ms`);
      return strokeMs;
    };
    const strokeSeries = stats(await strokeClock(slices));
    const strokeSingle = stats(await strokeClock(1));

    // 2. 10,000 open requests, filed over HTTP (8 at a time).
    log(`${engine.name}: filing ${openRequests} open requests`);
    const fillStart = performance.now();
    const modalities = [['CT', 'HEAD', 'neuro'], ['CT', 'CHEST', 'thorax'], ['MR', 'KNEE', 'msk'], ['MR', 'BRAIN', 'neuro'], ['CR', 'CHEST', 'thorax'], ['US', 'ABDOMEN', 'abdo']] as const;
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (;;) {
        const i = next++;
        if (i >= openRequests) return;
        const [modality, bodyPart, specialty] = modalities[i % modalities.length]!;
        // About 1 % stroke, 15 % urgent, the rest routine.
        const urgency = i % 100 === 0 ? 'stroke' : i % 7 === 0 ? 'urgent' : 'routine';
        const r = await post(sudToken, '/api/teleradiology/requests', {
          patient: { PatientID: patients[i % patients.length] }, AccessionNumber: `BT${i}`, urgency, modality, bodyPart, specialty: urgency === 'stroke' ? 'neuro' : specialty, ...common,
        });
        if (r.status !== 201) throw new Error(`request ${i}: ${r.status} ${await r.text()}`);
        await r.arrayBuffer();
      }
    }));
    const fillSeconds = (performance.now() - fillStart) / 1000;
    log(`${engine.name}: filed in ${fillSeconds.toFixed(0)} s`);

    const cases: Array<[string, string]> = [
      ['worklist, open, deadline order (limit 100)', '/api/teleradiology/worklist'],
      ['urgency=stroke', '/api/teleradiology/worklist?urgency=stroke'],
      ['mine=true (on-call neuroradiologist)', '/api/teleradiology/worklist?mine=true'],
      ['site + modality + bodyPart', '/api/teleradiology/worklist?site=CLIN-SUD&modality=CT&bodyPart=HEAD'],
      ['status=awaiting-protocol', '/api/teleradiology/worklist?status=awaiting-protocol'],
      ['limit=1000', '/api/teleradiology/worklist?limit=1000'],
      ['UPS-RS SearchForUPS (limit 100)', '/dicom-web/workitems'],
      ['UPS-RS ScheduledProcedureStepPriority=HIGH', '/dicom-web/workitems?ScheduledProcedureStepPriority=HIGH'],
    ];
    const queries: EngineResult['queries'] = [];
    for (const [name, url] of cases) {
      const ms: number[] = [];
      let results = 0;
      for (let i = 0; i < repetitions + 5; i++) {
        const t = performance.now();
        const r = await request(neuro.jar, `${base}${url}`);
        const body = r.status === 204 ? [] : (await r.json()) as unknown[];
        const elapsed = performance.now() - t;
        assert.ok(r.status === 200 || r.status === 204, `${name}: ${r.status}`);
        results = body.length;
        if (i >= 5) ms.push(elapsed); // the first five warm the caches
      }
      queries.push({ name, results, ...stats(ms) });
      log(`${engine.name}: ${name}: ${results} results, median ${median(ms).toFixed(1)} ms, p95 ${percentile(ms, 95).toFixed(1)} ms`);
    }
    return { engine: engine.name, strokeSeries, strokeSingle, fillSeconds, open: openRequests, queries };
  } finally {
    await matching?.stop();
    await atrium?.close();
    await db.cleanup();
    rmSync(work, { recursive: true, force: true });
  }
}

const results: EngineResult[] = [];
for (const engine of testDatabases()) results.push(await benchEngine(engine));

const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node.js ${process.version}`;
const f = (ms: number) => ms.toFixed(ms < 10 ? 1 : 0);
const lines = [
  `# Teleradiology bench, ${new Date().toISOString()}`, '', `Machine: ${machine}.`, '',
  '## Stroke request on the on-call neuroradiologist\'s worklist with its images, from the last C-STORE answered (target < 2 s)', '',
  '| index | exam | runs | median ms | p95 ms | max ms |', '|---|---|---|---|---|---|',
  ...results.flatMap((r) => [
    `| ${r.engine} | ${slices} CT slices 512 x 512 | ${r.strokeSeries.n} | ${f(r.strokeSeries.medianMs)} | ${f(r.strokeSeries.p95Ms)} | ${f(r.strokeSeries.maxMs)} |`,
    `| ${r.engine} | 1 CT slice (matched only after it) | ${r.strokeSingle.n} | ${f(r.strokeSingle.medianMs)} | ${f(r.strokeSingle.p95Ms)} | ${f(r.strokeSingle.maxMs)} |`,
  ]), '',
  ...results.flatMap((r) => [
    `## Worklist queries over HTTP with ${r.open.toLocaleString('en')} open requests, ${r.engine} (filed over HTTP in ${r.fillSeconds.toFixed(0)} s; target < 100 ms)`, '',
    '| query | results | runs | median ms | p95 ms | max ms |', '|---|---|---|---|---|---|',
    ...r.queries.map((q) => `| ${q.name} | ${q.results} | ${q.n} | ${f(q.medianMs)} | ${f(q.p95Ms)} | ${f(q.maxMs)} |`), '',
  ]),
];
mkdirSync(path.join(benchDir, 'out'), { recursive: true });
writeFileSync(path.join(benchDir, 'out', 'tele-latest.md'), lines.join('\n'));
writeFileSync(path.join(benchDir, 'out', 'tele-latest.json'), JSON.stringify({ machine, date: new Date().toISOString(), results }, null, 2));
process.stdout.write(lines.join('\n') + '\n');
