import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { nowMs, outputTail, spawnTracked, stopProcess } from './measure.ts';

/**
 * The DICOM network clients of the DIMSE bench: Debian's DCMTK tools (storescu, findscu,
 * movescu, getscu, storescp, echoscu), the same command lines for every server.
 */

export interface DimseTarget {
  name: string;
  host: string;
  port: number;
  /** The called AE title. */
  aeTitle: string;
}

/** The calling AE titles of the bench; Atrium's configuration lists them all as peers. */
export const CallingAE = { store: 'STORESCU', find: 'FINDSCU', move: 'MOVESCU', get: 'GETSCU', destination: 'STORESCP' } as const;

/** Debian's DCMTK leaves Nagle's algorithm on unless told otherwise, which stalls every small PDU. */
const dcmtkEnv = { ...process.env, TCP_NODELAY: '1' };

export interface ToolRun {
  /** Spawn to exit, process start-up included. */
  ms: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/** Runs a DCMTK tool to its end and keeps all it printed (stdout and stderr interleaved). */
export function runTool(command: string, args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    const started = nowMs();
    const child = spawnTracked(command, args, { cwd: options.cwd, env: dcmtkEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout!.on('data', (c: Buffer) => chunks.push(c));
    child.stderr!.on('data', (c: Buffer) => chunks.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 600_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ ms: nowMs() - started, code, signal, output: Buffer.concat(chunks).toString('latin1') });
    });
  });
}

function failureOf(run: ToolRun, what: string): string | undefined {
  if (run.code === 0) return undefined;
  const errors = run.output.split('\n').filter((l) => l.startsWith('E:') || l.startsWith('F:')).slice(0, 3).join(' / ');
  return `${what} exited with ${run.signal ?? run.code}: ${errors || run.output.slice(-300).replace(/\s+/g, ' ')}`;
}

/** C-ECHO until the server answers: its DIMSE listener may open after its HTTP one. */
export async function waitForEcho(target: DimseTarget, timeoutMs = 15_000): Promise<boolean> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    const run = await runTool('echoscu', ['-aet', CallingAE.store, '-aec', target.aeTitle, '-to', '2', target.host, String(target.port)], { timeoutMs: 5000 });
    if (run.code === 0) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

export interface StoreRun {
  ms: number;
  /** Files storescu reported as not stored (error lines). */
  failed: number;
  error?: string;
}

/**
 * storescu on one association: every file under `folders` (recursively), explicit VR
 * little endian proposed first and only the contexts the files need, no halt on a failure.
 */
export async function storeFolders(target: DimseTarget, folders: string[], maxPduLength: number): Promise<StoreRun> {
  const run = await runTool('storescu', [
    '-xe', '-R', '-nh', '-pdu', String(maxPduLength), '--max-send-pdu', String(maxPduLength),
    '-aet', CallingAE.store, '-aec', target.aeTitle,
    '+sd', '+r', target.host, String(target.port), ...folders,
  ]);
  const failed = run.output.split('\n').filter((l) => /^E: .*(Store|store)/.test(l)).length;
  return { ms: run.ms, failed, error: failureOf(run, 'storescu') ?? (failed ? run.output.slice(0, 300) : undefined) };
}

/** `groups.length` storescu processes at once, one association each; wall time from the first start to the last exit. */
export async function storeInParallel(target: DimseTarget, groups: string[][], maxPduLength: number): Promise<StoreRun> {
  const started = nowMs();
  const runs = await Promise.all(groups.map((g) => storeFolders(target, g, maxPduLength)));
  return {
    ms: nowMs() - started,
    failed: runs.reduce((a, r) => a + r.failed, 0),
    error: runs.find((r) => r.error)?.error,
  };
}

export interface RetrieveRun {
  ms: number;
  completed: number;
  failed: number;
  error?: string;
}

function seriesKeys(StudyInstanceUID: string, SeriesInstanceUID: string): string[] {
  return ['-k', 'QueryRetrieveLevel=SERIES', '-k', `StudyInstanceUID=${StudyInstanceUID}`, '-k', `SeriesInstanceUID=${SeriesInstanceUID}`];
}

/** The last value of a "<label> : n" line DCMTK prints (final sub-operation counts). */
function lastCount(output: string, label: string): number {
  const all = [...output.matchAll(new RegExp(`${label}\\s*:\\s*(\\d+|none)`, 'g'))];
  const last = all.at(-1)?.[1];
  return last === undefined || last === 'none' ? 0 : Number(last);
}

/** C-MOVE of one series (Study Root) to `destination`; -d only to read the final sub-operation counts. */
export async function moveSeries(target: DimseTarget, StudyInstanceUID: string, SeriesInstanceUID: string, destination: string, maxPduLength: number): Promise<RetrieveRun> {
  const run = await runTool('movescu', [
    '-d', '-S', '-pdu', String(maxPduLength), '-aet', CallingAE.move, '-aec', target.aeTitle, '-aem', destination,
    ...seriesKeys(StudyInstanceUID, SeriesInstanceUID), target.host, String(target.port),
  ]);
  return {
    ms: run.ms,
    completed: lastCount(run.output, 'Completed Suboperations'),
    failed: lastCount(run.output, 'Failed Suboperations'),
    error: failureOf(run, 'movescu'),
  };
}

/** C-GET of one series (Study Root) by getscu, which receives the objects on the same association and drops them (--ignore). */
export async function getSeries(target: DimseTarget, StudyInstanceUID: string, SeriesInstanceUID: string, maxPduLength: number): Promise<RetrieveRun> {
  const run = await runTool('getscu', [
    '-v', '-S', '--ignore', '-pdu', String(maxPduLength), '-aet', CallingAE.get, '-aec', target.aeTitle,
    ...seriesKeys(StudyInstanceUID, SeriesInstanceUID), target.host, String(target.port),
  ]);
  return {
    ms: run.ms,
    completed: lastCount(run.output, 'Number of Completed Suboperations'),
    failed: lastCount(run.output, 'Number of Failed Suboperations'),
    error: failureOf(run, 'getscu'),
  };
}

/** Matching keys of a study-level C-FIND (keyword=value; an empty value asks for the attribute). */
export type FindQuery = Record<string, string>;

/** What a study-level answer carries, asked for in every query. */
const studyReturnKeys = ['StudyInstanceUID', 'PatientName', 'PatientID', 'StudyDate', 'StudyTime', 'AccessionNumber', 'ModalitiesInStudy', 'NumberOfStudyRelatedInstances'];

function findKeys(query: FindQuery): string[] {
  const keys: Record<string, string> = { QueryRetrieveLevel: 'STUDY', ...Object.fromEntries(studyReturnKeys.map((k) => [k, ''])), ...query };
  return Object.entries(keys).flatMap(([k, v]) => ['-k', v === '' ? k : `${k}=${v}`]);
}

export interface FindRun {
  ms: number;
  results: number;
  error?: string;
}

/** One findscu process for one query: start-up, association, the query, release. */
export async function findStudies(target: DimseTarget, query: FindQuery): Promise<FindRun> {
  const run = await runTool('findscu', ['-S', '-aet', CallingAE.find, '-aec', target.aeTitle, ...findKeys(query), target.host, String(target.port)]);
  return { ms: run.ms, results: (run.output.match(/^I: Find Response: \d+/gm) ?? []).length, error: failureOf(run, 'findscu') };
}

/**
 * Many queries on one association: one findscu given one query file per query (written
 * by dump2dcm), its log lines timestamped to the microsecond; each query's latency is
 * from "Sending Find Request" to its final response, as a client holding the association sees it.
 */
export async function findStudiesOnOneAssociation(target: DimseTarget, queries: FindQuery[], workDir: string): Promise<{ runs: FindRun[]; error?: string }> {
  const files: string[] = [];
  for (const [i, query] of queries.entries()) {
    const keys: Record<string, string> = { QueryRetrieveLevel: 'STUDY', ...Object.fromEntries(studyReturnKeys.map((k) => [k, ''])), ...query };
    const dump = path.join(workDir, `q${i}.txt`);
    writeFileSync(dump, Object.entries(keys).map(([k, v]) => `(${dumpTag[k] ?? k}) ${dumpVR[k] ?? 'LO'} [${v}]`).join('\n') + '\n');
    const file = path.join(workDir, `q${i}.dcm`);
    const made = await runTool('dump2dcm', ['-F', '+te', dump, file]);
    if (made.code !== 0) return { runs: [], error: `dump2dcm: ${made.output.slice(0, 300)}` };
    files.push(file);
  }
  const logConfig = path.join(workDir, 'findscu-log.cfg');
  writeFileSync(logConfig, [
    'log4cplus.rootLogger = INFO, console',
    'log4cplus.appender.console = log4cplus::ConsoleAppender',
    'log4cplus.appender.console.layout = log4cplus::PatternLayout',
    'log4cplus.appender.console.layout.ConversionPattern = %d{%s.%Q} %m%n',
    '',
  ].join('\n'));
  const run = await runTool('findscu', ['-S', '-lc', logConfig, '-aet', CallingAE.find, '-aec', target.aeTitle, target.host, String(target.port), ...files]);
  const runs: FindRun[] = [];
  let sentAt = NaN;
  let results = 0;
  for (const line of run.output.split('\n')) {
    // %d{%s.%Q}: epoch seconds, then milliseconds with their microseconds ("1795428192.054.672").
    const m = /^(\d+)\.(\d{3})\.(\d{3}) (.*)$/.exec(line);
    if (!m) continue;
    const at = Number(m[1]) * 1000 + Number(m[2]) + Number(m[3]) / 1000;
    const text = m[4]!;
    if (text.startsWith('Sending Find Request')) {
      sentAt = at;
      results = 0;
    } else if (/^Find Response: \d+ \(Pending\)/.test(text)) results++;
    else if (text.startsWith('Received Final Find Response')) runs.push({ ms: at - sentAt, results });
  }
  const error = failureOf(run, 'findscu') ?? (runs.length !== queries.length ? `findscu answered ${runs.length} of ${queries.length} queries: ${run.output.slice(-300)}` : undefined);
  return { runs, error };
}

/** Tags and VRs of the keys the bench queries with, for dump2dcm. */
const dumpTag: Record<string, string> = {
  QueryRetrieveLevel: '0008,0052', StudyInstanceUID: '0020,000d', PatientName: '0010,0010', PatientID: '0010,0020',
  StudyDate: '0008,0020', StudyTime: '0008,0030', AccessionNumber: '0008,0050', ModalitiesInStudy: '0008,0061',
  NumberOfStudyRelatedInstances: '0020,1208', SpecificCharacterSet: '0008,0005',
};
const dumpVR: Record<string, string> = {
  QueryRetrieveLevel: 'CS', StudyInstanceUID: 'UI', PatientName: 'PN', PatientID: 'LO', StudyDate: 'DA', StudyTime: 'TM',
  AccessionNumber: 'SH', ModalitiesInStudy: 'CS', NumberOfStudyRelatedInstances: 'IS', SpecificCharacterSet: 'CS',
};

export interface StoreSCP {
  aeTitle: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
  outputTail(): string;
}

/**
 * The C-MOVE destination: DCMTK's storescp, one association at a time, receiving every
 * object and writing none (--ignore), so that a retrieve measures the server, not our disk.
 */
export async function startStoreSCP(port: number, maxPduLength: number): Promise<StoreSCP> {
  const child = spawnTracked('storescp', ['-aet', CallingAE.destination, '-pdu', String(maxPduLength), '--ignore', String(port)], {
    env: dcmtkEnv, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail = outputTail(child);
  const target: DimseTarget = { name: 'storescp', host: '127.0.0.1', port, aeTitle: CallingAE.destination };
  if (!await waitForEcho(target, 10_000)) {
    await stopProcess(child);
    throw new Error(`storescp did not answer C-ECHO on port ${port}: ${tail()}`);
  }
  return { aeTitle: CallingAE.destination, port, child, outputTail: tail, stop: () => stopProcess(child, 2000) };
}
