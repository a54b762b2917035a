/**
 * The dataset of one DIMSE message as its P-DATA fragments arrive (PS3.7 §9.3, PS3.8 E.2):
 * an async iterable for the service reading it, with back-pressure on the association's
 * socket, so a 2 GB C-STORE flows to storage without being held in memory.
 */

const HIGH_WATER = 4 * 1024 * 1024;

export class DatasetStream implements AsyncIterable<Buffer> {
  private queue: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private failure: Error | undefined;
  private abandoned = false;
  private wake: (() => void) | undefined;
  private paused = false;
  private completed!: () => void;
  private failed!: (e: Error) => void;
  /** Settles when the last fragment has arrived (or the association failed first). */
  readonly complete: Promise<void>;
  /** Bytes received so far. */
  received = 0;

  constructor(
    readonly presentationContextId: number,
    private readonly flow: { pause(): void; resume(): void },
  ) {
    this.complete = new Promise<void>((resolve, reject) => {
      this.completed = resolve;
      this.failed = reject;
    });
    this.complete.catch(() => {}); // observed by whoever awaits it
  }

  /** A fragment from the association. */
  push(data: Buffer, last: boolean): void {
    this.received += data.length;
    if (!this.abandoned && data.length > 0) {
      this.queue.push(data);
      this.queued += data.length;
      if (this.queued >= HIGH_WATER && !this.paused) {
        this.paused = true;
        this.flow.pause();
      }
    }
    if (last) {
      this.ended = true;
      this.completed();
    }
    this.signal();
  }

  /** The association ended before the last fragment. */
  fail(e: Error): void {
    if (this.ended) return;
    this.failure = e;
    this.ended = true;
    this.failed(e);
    this.signal();
  }

  /** The reader has stopped: later fragments are dropped until the last one. */
  abandon(): void {
    this.abandoned = true;
    this.queue = [];
    this.queued = 0;
    this.resumeFlow();
  }

  /** The whole dataset in memory, for small ones (identifiers, N-ACTION arguments). */
  async collect(maxBytes: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const b of this) {
      n += b.length;
      if (n > maxBytes) {
        this.abandon();
        throw new Error(`dataset larger than ${maxBytes} bytes`);
      }
      parts.push(b);
    }
    return Buffer.concat(parts, n);
  }

  private signal(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private resumeFlow(): void {
    if (this.paused) {
      this.paused = false;
      this.flow.resume();
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    try {
      for (;;) {
        if (this.failure) throw this.failure;
        // Fragments are handed on as they came, never joined: the store batches its writes itself.
        if (this.queue.length > 0) {
          const out = this.queue.shift()!;
          this.queued -= out.length;
          if (this.queued < HIGH_WATER / 2) this.resumeFlow();
          yield out;
          continue;
        }
        if (this.ended) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } finally {
      if (!this.ended || this.queued > 0) this.abandon();
    }
  }
}
