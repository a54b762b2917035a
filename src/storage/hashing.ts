import { createHash, type Hash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Passes bytes through unchanged while computing their SHA-256 and count, so a
 * blob is hashed in the same pass that stores it (never buffered whole).
 */
export class HashingStream extends Transform {
  readonly #hash: Hash = createHash('sha256');
  #size = 0;
  #sha256: string | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.#size += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.#sha256 = this.#hash.digest('hex');
    callback();
  }

  /** Bytes seen so far. */
  get size(): number {
    return this.#size;
  }

  /** Lower-case hex SHA-256; only known once the input has ended. */
  get sha256(): string {
    if (this.#sha256 === undefined) throw new Error('SHA-256 requested before the stream ended');
    return this.#sha256;
  }
}

/** SHA-256 and size of everything a stream yields (the stream is consumed). */
export async function sha256Hex(stream: Readable): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  await pipeline(stream, async (source: AsyncIterable<Buffer | string>) => {
    for await (const chunk of source) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      hash.update(bytes);
      size += bytes.length;
    }
  });
  return { sha256: hash.digest('hex'), size };
}
