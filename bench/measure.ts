import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

/** Timing, memory and HTTP helpers shared by both servers, so that they are measured by the same code. */

export function median(values: number[]): number {
  return percentile(values, 50);
}

/** Nearest-rank percentile (no interpolation): the value a client actually saw. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export const MB = 1_000_000;
export const MiB = 1024 * 1024;

// ---- processes -------------------------------------------------------------

export interface ProcessMemory {
  /** Resident set size now, in bytes. */
  rss: number;
  /** Peak resident set size since start or since the last resetPeakRss, in bytes. */
  hwm: number;
}

export function readProcessMemory(pid: number): ProcessMemory | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

/**
 * Resets the kernel's peak RSS (VmHWM) of a process we started, so that each phase
 * reports its own peak (Linux >= 4.0: writing 5 to clear_refs). Returns false when
 * the kernel refuses; the sampler below still gives a (coarser) peak then.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Samples VmRSS every `everyMs` and keeps the highest: a cross-check of VmHWM, and a guard. */
export class RssSampler {
  peak = 0;
  private timer: NodeJS.Timeout;
  constructor(readonly pid: number, everyMs = 50, onSample?: (rss: number) => void) {
    this.timer = setInterval(() => {
      const m = readProcessMemory(pid);
      if (!m) return;
      if (m.rss > this.peak) this.peak = m.rss;
      onSample?.(m.rss);
    }, everyMs);
    this.timer.unref();
  }
  stop(): number {
    clearInterval(this.timer);
    const m = readProcessMemory(this.pid);
    if (m && m.rss > this.peak) this.peak = m.rss;
    return this.peak;
  }
}

/** Measures one phase's peak RSS of a server: VmHWM after a reset, or the sampler's peak if the reset is refused. */
export async function withPeakRss<T>(pid: number, fn: () => Promise<T>): Promise<{ result: T; peakRss: number }> {
  const reset = resetPeakRss(pid);
  const sampler = new RssSampler(pid);
  try {
    const result = await fn();
    const sampled = sampler.stop();
    const hwm = readProcessMemory(pid)?.hwm ?? NaN;
    return { result, peakRss: reset ? Math.max(hwm, sampled) : sampled };
  } finally {
    sampler.stop();
  }
}

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let cleanupInstalled = false;

/** A temporary folder removed when the benchmark exits (also on error or Ctrl-C). */
export function makeTempDir(prefix: string): string {
  installCleanup();
  const dir = mkdtempSync(path.join(process.env.BENCH_TMPDIR ?? tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

function killAll(signal: NodeJS.Signals): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    }
  }
}

/** Every server the benchmark starts is killed when it exits, however it exits. */
function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.on('exit', () => {
    killAll('SIGKILL');
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping servers\n`);
      killAll('SIGKILL');
      process.exit(130);
    });
  }
}

export function spawnTracked(command: string, args: string[], options: SpawnOptions): ChildProcess {
  installCleanup();
  const child = spawn(command, args, options);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL if the process is still there after `graceMs`. */
export async function stopProcess(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

export async function waitFor(what: string, probe: () => Promise<boolean>, child: ChildProcess, timeoutMs = 60_000): Promise<void> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (code ${child.exitCode}, signal ${child.signalCode}) before answering`);
    }
    try {
      if (await probe()) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not answer within ${timeoutMs} ms`);
}

// ---- HTTP ------------------------------------------------------------------

export interface HttpTarget {
  name: string;
  /** e.g. http://127.0.0.1:8042/dicom-web (no trailing slash) */
  dicomweb: string;
  headers: Record<string, string>;
  agent: http.Agent;
}

export function keepAliveAgent(): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets: 16 });
}

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Request sent to response headers received. */
  headersMs: number;
  /** Request sent to first body byte received. */
  ttfbMs: number;
  totalMs: number;
  bytes: number;
  body?: Buffer;
}

export interface HttpRequest {
  method?: string;
  headers?: Record<string, string | number>;
  body?: Buffer | Readable;
  /** Keep the response body (small answers); otherwise it is only counted. */
  collect?: boolean;
  /** Called when the response headers arrive, before any body chunk. */
  onHeaders?: (headers: http.IncomingHttpHeaders) => void;
  /** Called with every chunk of the response body (e.g. to count multipart parts). */
  onData?: (chunk: Buffer) => void;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export function httpRequest(target: HttpTarget, url: string, req: HttpRequest = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const started = nowMs();
    const r = http.request(url, {
      method: req.method ?? 'GET',
      agent: target.agent,
      headers: { ...target.headers, ...req.headers },
      signal: req.signal,
    }, (res) => {
      const headersMs = nowMs() - started;
      req.onHeaders?.(res.headers);
      let ttfbMs = NaN;
      let bytes = 0;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => {
        if (bytes === 0) ttfbMs = nowMs() - started;
        bytes += chunk.length;
        if (req.collect) chunks.push(chunk);
        req.onData?.(chunk);
      });
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          headersMs,
          ttfbMs: Number.isNaN(ttfbMs) ? headersMs : ttfbMs,
          totalMs: nowMs() - started,
          bytes,
          body: req.collect ? Buffer.concat(chunks) : undefined,
        });
      });
      res.on('error', reject);
    });
    r.on('error', reject);
    if (req.timeoutMs) r.setTimeout(req.timeoutMs, () => r.destroy(new Error(`${url}: no answer within ${req.timeoutMs} ms`)));
    if (req.body === undefined) r.end();
    else if (Buffer.isBuffer(req.body)) r.end(req.body);
    else {
      req.body.on('error', (e) => r.destroy(e));
      req.body.pipe(r);
    }
  });
}

/** Counts occurrences of a delimiter in a stream, across chunk boundaries. */
export function delimiterCounter(delimiter: string): { onData: (chunk: Buffer) => void; count: () => number } {
  const needle = Buffer.from(delimiter, 'latin1');
  let carry = Buffer.alloc(0);
  let n = 0;
  return {
    onData(chunk) {
      const buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
      let at = buf.indexOf(needle);
      while (at !== -1) {
        n++;
        at = buf.indexOf(needle, at + needle.length);
      }
      carry = Buffer.from(buf.subarray(Math.max(0, buf.length - needle.length + 1)));
    },
    count: () => n,
  };
}

// ---- formatting --------------------------------------------------------------

export function fmt(value: number | undefined, digits = 1): string {
  if (value === undefined || !Number.isFinite(value)) return 'n/a';
  return value.toFixed(digits);
}

export function fmtMB(bytes: number | undefined): string {
  return bytes === undefined || !Number.isFinite(bytes) ? 'n/a' : `${(bytes / MiB).toFixed(0)} MiB`;
}

/** The last 4,000 characters a child wrote on stdout and stderr, for the report when it fails. */
export function outputTail(child: ChildProcess): () => string {
  let text = '';
  const keep = (chunk: Buffer) => {
    text = (text + chunk.toString('utf8')).slice(-4000);
  };
  child.stderr?.on('data', keep);
  child.stdout?.on('data', keep);
  return () => text;
}
