/**
 * MLLP (HL7 v2 Minimal Lower Layer Protocol, release 2): each message travels as
 * <VT> message <FS><CR>, that is 0x0B ... 0x1C 0x0D.
 */

export const startBlock = 0x0b;
export const endBlock = 0x1c;
export const carriageReturn = 0x0d;

export function frameMessage(payload: Buffer): Buffer {
  return Buffer.concat([Buffer.of(startBlock), payload, Buffer.of(endBlock, carriageReturn)]);
}

export class MllpFrameTooLarge extends Error {
  constructor(limit: number) {
    super(`MLLP frame larger than ${limit} bytes`);
    this.name = 'MllpFrameTooLarge';
  }
}

/**
 * Cuts a byte stream into message payloads. Bytes outside a frame (line noise, a
 * keep-alive newline) are skipped; a frame that never ends is dropped with the connection.
 */
export class MllpDecoder {
  private chunks: Buffer[] = [];
  private size = 0;
  private inFrame = false;

  constructor(private readonly maxFrameBytes: number) {}

  /** The complete payloads this chunk finishes. Throws MllpFrameTooLarge past the limit. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let data = chunk;
    while (data.length > 0) {
      if (!this.inFrame) {
        const start = data.indexOf(startBlock);
        if (start < 0) return out;
        this.inFrame = true;
        data = data.subarray(start + 1);
        continue;
      }
      const end = this.findEnd(data);
      if (end === undefined) {
        this.append(data);
        return out;
      }
      // <CR> follows <FS> in this chunk, or, when split, is skipped as noise with the next one.
      this.append(data.subarray(0, end.fs));
      out.push(Buffer.concat(this.chunks, this.size));
      this.chunks = [];
      this.size = 0;
      this.inFrame = false;
      data = data.subarray(end.next);
    }
    return out;
  }

  /** Bytes of an unfinished frame (what a peer that closes mid-message leaves). */
  get pendingBytes(): number {
    return this.inFrame ? this.size : 0;
  }

  /** Where <FS><CR> (or <FS> at the chunk's end) is, and where the bytes after it start. */
  private findEnd(data: Buffer): { fs: number; next: number } | undefined {
    let from = 0;
    for (;;) {
      const fs = data.indexOf(endBlock, from);
      if (fs < 0) return undefined;
      if (fs + 1 === data.length) return { fs, next: fs + 1 };
      if (data[fs + 1] === carriageReturn) return { fs, next: fs + 2 };
      from = fs + 1;
    }
  }

  private append(part: Buffer): void {
    this.size += part.length;
    if (this.size > this.maxFrameBytes) throw new MllpFrameTooLarge(this.maxFrameBytes);
    this.chunks.push(part);
  }
}
