import { Worker } from 'node:worker_threads';
import type { HashReply, HashRequest } from './hash-worker.ts';

/**
 * SHA-256 of a file being written, computed on another thread: after each write the main
 * thread names how many more bytes are on disk, and the hasher's thread reads them back from
 * the page cache and hashes them. The main thread then spends one small message per batch
 * instead of a pass over every byte; no byte is copied between threads (copying them costs the
 * main thread about as much as hashing them: bench/RESULTS.md, 7 Dec 2026).
 *
 * A failure of the thread (it died, a read failed) rejects the jobs under way; the caller then
 * hashes the file itself. The thread does not keep the process alive.
 */
export class FileHasher {
  #worker: Worker | undefined;
  #nextId = 1;
  /** Jobs started and not yet digested or aborted. */
  #jobs = 0;
  readonly #pending = new Map<number, { resolve: (sha256: string) => void; reject: (e: Error) => void }>();
  /** Jobs finished on the hasher's thread (for tests and the bench). */
  completed = 0;

  /** Starts a job on a file the caller is writing; add() each range once written, then digest(). */
  start(file: string): FileHashJob {
    const worker = this.#spawn();
    const id = this.#nextId++;
    this.#post(worker, { op: 'open', id, file });
    // While a job is under way the thread keeps the process alive (a CLI command may wait on nothing else).
    this.#jobs++;
    worker.ref();
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      if (--this.#jobs === 0) this.#worker?.unref();
    };
    return {
      add: (length: number) => this.#post(worker, { op: 'range', id, length }),
      digest: () => {
        const done = new Promise<string>((resolve, reject) => this.#pending.set(id, { resolve, reject }));
        if (this.#worker !== worker) this.#fail(id, new Error('the hasher thread ended'));
        else this.#post(worker, { op: 'end', id });
        return done.finally(end);
      },
      abort: () => {
        if (!ended && this.#worker === worker) this.#post(worker, { op: 'abort', id });
        end();
      },
    };
  }

  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    if (worker) await worker.terminate();
    for (const id of [...this.#pending.keys()]) this.#fail(id, new Error('the file hasher was closed'));
  }

  #post(worker: Worker, m: HashRequest): void {
    if (this.#worker === worker) worker.postMessage(m);
  }

  #fail(id: number, e: Error): void {
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    p?.reject(e);
  }

  #spawn(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(workerEntry(), { execArgv: [] });
    worker.unref();
    worker.on('message', (reply: HashReply) => {
      const p = this.#pending.get(reply.id);
      if (!p) return;
      this.#pending.delete(reply.id);
      if ('sha256' in reply) {
        this.completed++;
        p.resolve(reply.sha256);
      } else {
        p.reject(new Error(reply.error));
      }
    });
    const gone = (e: Error) => {
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      for (const id of [...this.#pending.keys()]) this.#fail(id, e);
    };
    worker.on('error', gone);
    worker.on('exit', (code) => gone(new Error(`the hasher thread exited (code ${code})`)));
    this.#worker = worker;
    return worker;
  }
}

export interface FileHashJob {
  /** The next `length` bytes of the file are written. */
  add(length: number): void;
  /** The SHA-256 of every byte added; rejects if the thread failed (hash the file otherwise then). */
  digest(): Promise<string>;
  /** The write failed: the job is dropped. */
  abort(): void;
}

/** The worker's module: the TypeScript source under tsx, the compiled file under dist/. */
const workerUrl = new URL(import.meta.url.endsWith('.ts') ? './hash-worker.ts' : './hash-worker.js', import.meta.url);

function workerEntry(): URL {
  if (!workerUrl.pathname.endsWith('.ts')) return workerUrl;
  // A worker thread does not inherit tsx's loader: register it first.
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `import { register } from ${JSON.stringify(tsx)}; register(); await import(${JSON.stringify(workerUrl.href)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}
