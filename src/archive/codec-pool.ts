/**
 * A small pool of worker threads that run the image codecs (codec-worker.ts), so that
 * decoding and encoding frames never holds the main thread (which answers DIMSE, HTTP
 * and HL7 for everyone). One frame a worker at a time; a worker whose codec failed,
 * ran out of memory or took too long is ended and a fresh one takes its place, so one
 * bad frame cannot leave a codec in a broken state for the frames after it.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { PixelDataError, type ImagePixelModule } from './pixels.ts';

/** The Image Pixel module attributes a codec needs. */
export type CodecPixels = Pick<ImagePixelModule, 'Rows' | 'Columns' | 'SamplesPerPixel' | 'BitsAllocated' | 'BitsStored' | 'HighBit' | 'PixelRepresentation' | 'PhotometricInterpretation' | 'PlanarConfiguration'>;

export interface CodecJob {
  id: number;
  op: 'decode' | 'encode';
  transferSyntaxUID: string;
  frame: Uint8Array;
  px: CodecPixels;
}

export type CodecReply =
  | { id: number; ok: true; bytes: Uint8Array; PhotometricInterpretation?: string }
  | { id: number; ok: false; error: string; pixelData: boolean };

/** The codec's worker died, ran out of memory or took too long: the frame is not known to be bad. */
export class CodecFailureError extends Error {
  override readonly name = 'CodecFailureError';
}

export interface CodecPoolOptions {
  /** Worker threads (default: 2, or 1 on a single-core machine). */
  size?: number;
  /** V8 heap limit of a worker in MB (the codecs' own memory is WebAssembly memory, capped at 2 GB by the builds). */
  maxHeapMb?: number;
  /** A frame that takes longer than this ends its worker (default 60 s). */
  timeoutMs?: number;
  logger?: Logger;
}

interface Pending {
  job: CodecJob;
  resolve: (r: CodecReply & { ok: true }) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  busy?: Pending;
  timer?: NodeJS.Timeout;
}

/** The worker's module: the TypeScript source under tsx, the compiled file under dist/. */
const workerUrl = new URL(import.meta.url.endsWith('.ts') ? './codec-worker.ts' : './codec-worker.js', import.meta.url);

/**
 * Compiled code starts the worker's module as it is; the TypeScript sources (tests,
 * `npm run atrium`) go through tsx, whose loader a worker thread does not inherit.
 */
function workerEntry(): URL {
  if (!workerUrl.pathname.endsWith('.ts')) return workerUrl;
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `import { register } from ${JSON.stringify(tsx)}; register(); await import(${JSON.stringify(workerUrl.href)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}

export class CodecPool {
  private readonly size: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;
  /** Workers ended and replaced because of a failure (for tests and logs). */
  replaced = 0;

  constructor(private readonly options: CodecPoolOptions = {}) {
    this.size = Math.max(1, options.size ?? Math.min(2, availableParallelism()));
  }

  /** A compressed frame as native little-endian interleaved samples, and the photometric interpretation they are in. */
  async decode(frame: Uint8Array, transferSyntaxUID: string, px: CodecPixels): Promise<{ bytes: Buffer; PhotometricInterpretation: string }> {
    const r = await this.run('decode', frame, transferSyntaxUID, px);
    return { bytes: Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength), PhotometricInterpretation: r.PhotometricInterpretation ?? px.PhotometricInterpretation };
  }

  /** A native little-endian interleaved frame encoded in a lossless transfer syntax. */
  async encode(frame: Uint8Array, transferSyntaxUID: string, px: CodecPixels): Promise<Buffer> {
    const r = await this.run('encode', frame, transferSyntaxUID, px);
    return Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) p.reject(new CodecFailureError('the codec pool is closed'));
    await Promise.all(this.slots.splice(0).map((s) => {
      if (s.timer) clearTimeout(s.timer);
      s.busy?.reject(new CodecFailureError('the codec pool is closed'));
      return s.worker.terminate();
    }));
  }

  private run(op: CodecJob['op'], frame: Uint8Array, transferSyntaxUID: string, px: CodecPixels): Promise<CodecReply & { ok: true }> {
    if (this.closed) return Promise.reject(new CodecFailureError('the codec pool is closed'));
    // A copy the worker owns (transferred, not cloned): the caller's buffer may be a pooled or shared one.
    const own = new Uint8Array(frame);
    const job: CodecJob = {
      id: this.nextId++, op, transferSyntaxUID, frame: own,
      px: {
        Rows: px.Rows, Columns: px.Columns, SamplesPerPixel: px.SamplesPerPixel, BitsAllocated: px.BitsAllocated, BitsStored: px.BitsStored,
        HighBit: px.HighBit, PixelRepresentation: px.PixelRepresentation, PhotometricInterpretation: px.PhotometricInterpretation, PlanarConfiguration: px.PlanarConfiguration,
      },
    };
    return new Promise((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => !s.busy);
      if (!slot && this.slots.length < this.size) slot = this.spawn();
      if (!slot) return;
      const p = this.queue.shift()!;
      slot.busy = p;
      slot.timer = setTimeout(() => this.fail(slot!, new CodecFailureError(`the codec took more than ${this.timeoutMs / 1000} s on one frame`)), this.timeoutMs);
      slot.worker.postMessage(p.job, [p.job.frame.buffer as ArrayBuffer]);
    }
  }

  private get timeoutMs(): number {
    return this.options.timeoutMs ?? 60_000;
  }

  private spawn(): Slot {
    const worker = new Worker(workerEntry(), {
      execArgv: [],
      resourceLimits: { maxOldGenerationSizeMb: this.options.maxHeapMb ?? 512 },
    });
    // An idle pool does not keep the process alive.
    worker.unref();
    const slot: Slot = { worker };
    worker.on('message', (reply: CodecReply) => {
      const p = slot.busy;
      if (!p || p.job.id !== reply.id) return;
      if (slot.timer) clearTimeout(slot.timer);
      slot.busy = undefined;
      slot.timer = undefined;
      if (reply.ok) {
        p.resolve(reply);
        this.dispatch();
        return;
      }
      // A codec that threw may have left its WebAssembly memory in any state: a new worker takes over.
      this.replace(slot);
      p.reject(new PixelDataError(reply.error));
      this.dispatch();
    });
    worker.on('error', (e) => this.fail(slot, new CodecFailureError(`the codec worker failed: ${e.message}`)));
    worker.on('exit', (code) => {
      if (this.slots.includes(slot)) this.fail(slot, new CodecFailureError(`the codec worker stopped (exit code ${code})`));
    });
    this.slots.push(slot);
    return slot;
  }

  /** The slot's job fails, its worker is ended, and the queue goes on with a new one. */
  private fail(slot: Slot, error: Error): void {
    if (!this.slots.includes(slot)) return;
    if (slot.timer) clearTimeout(slot.timer);
    const p = slot.busy;
    slot.busy = undefined;
    this.replace(slot);
    this.options.logger?.warn({ err: error.message }, 'codec worker replaced');
    p?.reject(error);
    if (!this.closed) this.dispatch();
  }

  private replace(slot: Slot): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    this.replaced++;
    void slot.worker.terminate();
  }
}
