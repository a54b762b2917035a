import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { CorpusFile } from './corpus.ts';
import { delimiterCounter, httpRequest, median, nowMs, percentile, type HttpTarget } from './measure.ts';

/** The DICOMweb calls the benchmark makes, identical for every server. */

const stowContentType = (boundary: string) => `multipart/related; type="application/dicom"; boundary=${boundary}`;

function partHead(boundary: string): Buffer {
  return Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, 'latin1');
}

/** A STOW-RS body streamed from files on disk, with its exact length (no chunked encoding). */
function multipartFromFiles(files: CorpusFile[]): { boundary: string; length: number; body: Readable } {
  const boundary = `bench-${randomBytes(12).toString('hex')}`;
  const head = partHead(boundary);
  const crlf = Buffer.from('\r\n');
  const end = Buffer.from(`--${boundary}--\r\n`, 'latin1');
  const length = files.reduce((a, f) => a + head.length + f.size + crlf.length, 0) + end.length;
  async function* generate(): AsyncGenerator<Buffer> {
    for (const f of files) {
      yield head;
      yield await readFile(f.path);
      yield crlf;
    }
    yield end;
  }
  return { boundary, length, body: Readable.from(generate(), { objectMode: false }) };
}

export interface StowResult {
  instances: number;
  bytes: number;
  ms: number;
  failed: number;
  /** First failure, for the report. */
  error?: string;
}

/** Counts the items of ReferencedSOPSequence / FailedSOPSequence in a STOW-RS answer. */
function stowCounts(body: Buffer | undefined): { stored: number; failed: number } {
  if (!body || body.length === 0) return { stored: 0, failed: 0 };
  try {
    const json = JSON.parse(body.toString('utf8')) as Record<string, { Value?: unknown[] }>;
    return { stored: json['00081199']?.Value?.length ?? 0, failed: json['00081198']?.Value?.length ?? 0 };
  } catch {
    return { stored: 0, failed: 0 };
  }
}

/** STOW-RS of `files`, `perRequest` instances a request, `concurrency` requests at once. */
export async function stowFiles(target: HttpTarget, files: CorpusFile[], perRequest: number, concurrency: number): Promise<StowResult> {
  const batches: CorpusFile[][] = [];
  for (let i = 0; i < files.length; i += perRequest) batches.push(files.slice(i, i + perRequest));
  let next = 0;
  let stored = 0;
  let failed = 0;
  let error: string | undefined;
  const started = nowMs();
  const worker = async () => {
    while (next < batches.length) {
      const batch = batches[next++]!;
      const { boundary, length, body } = multipartFromFiles(batch);
      const res = await httpRequest(target, `${target.dicomweb}/studies`, {
        method: 'POST',
        headers: { 'content-type': stowContentType(boundary), 'content-length': length, accept: 'application/dicom+json' },
        body,
        collect: true,
        timeoutMs: 600_000,
      });
      const counts = stowCounts(res.body);
      if (res.status !== 200 || counts.stored !== batch.length) {
        failed += batch.length - counts.stored;
        error ??= `HTTP ${res.status}: ${res.body?.toString('utf8').slice(0, 300)}`;
      }
      stored += counts.stored;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, batches.length) }, worker));
  const ms = nowMs() - started;
  return { instances: stored, bytes: files.reduce((a, f) => a + f.size, 0), ms, failed, error };
}

/** STOW-RS of one generated object, streamed (the client never holds it). */
export async function stowStream(
  target: HttpTarget,
  object: { stream: () => Readable; size: number },
  signal?: AbortSignal,
): Promise<{ status: number; ms: number; stored: number; body: string }> {
  const boundary = `bench-${randomBytes(12).toString('hex')}`;
  const head = partHead(boundary);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1');
  async function* generate(): AsyncGenerator<Buffer> {
    yield head;
    for await (const chunk of object.stream()) yield chunk as Buffer;
    yield tail;
  }
  const started = nowMs();
  const res = await httpRequest(target, `${target.dicomweb}/studies`, {
    method: 'POST',
    headers: { 'content-type': stowContentType(boundary), 'content-length': head.length + object.size + tail.length, accept: 'application/dicom+json' },
    body: Readable.from(generate(), { objectMode: false }),
    collect: true,
    timeoutMs: 1_800_000,
    signal,
  });
  return { status: res.status, ms: nowMs() - started, stored: stowCounts(res.body).stored, body: res.body?.toString('utf8').slice(0, 300) ?? '' };
}

export interface RetrieveResult {
  bytes: number;
  parts: number;
  ttfbMs: number;
  totalMs: number;
  MBps: number;
}

/** WADO-RS retrieve of a whole series; the body is counted (bytes and parts), never kept. */
export async function retrieveSeries(target: HttpTarget, study: string, series: string, accept: string): Promise<RetrieveResult> {
  let counter: ReturnType<typeof delimiterCounter> | undefined;
  const res = await httpRequest(target, `${target.dicomweb}/studies/${study}/series/${series}`, {
    headers: { accept },
    timeoutMs: 600_000,
    onHeaders: (headers) => {
      const boundary = /boundary="?([^";]+)"?/i.exec(String(headers['content-type'] ?? ''))?.[1];
      if (boundary) counter = delimiterCounter(`\r\n--${boundary}`);
    },
    onData: (chunk) => counter?.onData(chunk),
  });
  if (res.status !== 200) throw new Error(`${target.name} retrieve: HTTP ${res.status}`);
  // Each part is closed by CRLF--boundary (the last by CRLF--boundary--); a leading delimiter has no CRLF before it.
  const parts = counter?.count() ?? 0;
  return { bytes: res.bytes, parts, ttfbMs: res.ttfbMs, totalMs: res.totalMs, MBps: res.bytes / 1e6 / (res.totalMs / 1000) };
}

/** WADO-RS series metadata: time to the whole JSON, and how many instances it describes. */
export async function seriesMetadata(target: HttpTarget, study: string, series: string): Promise<{ ms: number; instances: number; bytes: number }> {
  const res = await httpRequest(target, `${target.dicomweb}/studies/${study}/series/${series}/metadata`, {
    headers: { accept: 'application/dicom+json' },
    collect: true,
    timeoutMs: 120_000,
  });
  if (res.status !== 200) throw new Error(`${target.name} metadata: HTTP ${res.status}`);
  const json = JSON.parse(res.body!.toString('utf8')) as unknown[];
  return { ms: res.totalMs, instances: json.length, bytes: res.bytes };
}

export interface QidoCase {
  name: string;
  /** Query strings to cycle through (values vary so that no cache answers them all). */
  queries: string[];
}

export interface QidoResult {
  name: string;
  p50: number;
  p95: number;
  max: number;
  n: number;
  /** Median number of studies a query returned. */
  medianResults: number;
  errors: number;
  example: string;
}

/** QIDO-RS study searches, one at a time (latency, not throughput), after a short warm-up. */
export async function runQido(target: HttpTarget, c: QidoCase, repetitions: number): Promise<QidoResult> {
  const times: number[] = [];
  const counts: number[] = [];
  let errors = 0;
  const once = async (q: string) => {
    const res = await httpRequest(target, `${target.dicomweb}/studies?${q}`, {
      headers: { accept: 'application/dicom+json' },
      collect: true,
      timeoutMs: 60_000,
    });
    if (res.status !== 200 && res.status !== 204) {
      errors++;
      return { ms: res.totalMs, count: 0 };
    }
    const text = res.body!.toString('utf8');
    return { ms: res.totalMs, count: text.trim() === '' ? 0 : (JSON.parse(text) as unknown[]).length };
  };
  for (let i = 0; i < Math.min(10, c.queries.length); i++) await once(c.queries[i]!);
  for (let i = 0; i < repetitions; i++) {
    const r = await once(c.queries[i % c.queries.length]!);
    times.push(r.ms);
    counts.push(r.count);
  }
  return {
    name: c.name, n: times.length, errors,
    p50: percentile(times, 50), p95: percentile(times, 95), max: Math.max(...times),
    medianResults: median(counts), example: c.queries[0]!,
  };
}

export { median, percentile };
