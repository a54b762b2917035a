/**
 * MLLP (HL7 v2 Minimal Lower Layer Protocol, release 2): each message travels as
 * <VT> message <FS><CR>, that is 0x0B ... 0x1C 0x0D.
 */

export const startBlock = 0x0b;
export const endBlock = 0x1c;
export const carriageReturn = 0x0d;
const lineFeed = 0x0a;

export function frameMessage(payload: Buffer): Buffer {
  return Buffer.concat([Buffer.of(startBlock), payload, Buffer.of(endBlock, carriageReturn)]);
}

export class MllpFrameTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`MLLP frame larger than ${limit} bytes`);
    this.name = 'MllpFrameTooLarge';
  }
}

/** A frame whose first segment did not end within the screening bound (no MSH could be read), or as much noise outside frames. */
export class MllpHeaderTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`MLLP frame without a segment terminator in its first ${limit} bytes`);
    this.name = 'MllpHeaderTooLarge';
  }
}

/** A frame its first segment (MSH) was refused on; the bytes after it were not kept. */
export class MllpFrameRefused extends Error {
  /** `completed`: the payloads of the same chunk before the refused frame, still to be answered. */
  constructor(readonly firstSegment: Buffer, readonly completed: Buffer[]) {
    super('MLLP frame refused on its first segment');
    this.name = 'MllpFrameRefused';
  }
}

/**
 * Decides on a frame from its first segment (up to and including its CR or LF, or the
 * whole payload when it has none), before the rest is kept: only an admitted frame may
 * grow past `maxHeaderBytes`.
 */
export interface MllpScreen {
  maxHeaderBytes: number;
  admit(firstSegment: Buffer): boolean;
}

/**
 * Cuts a byte stream into message payloads. Bytes outside a frame (line noise, a
 * keep-alive newline) are skipped; a frame that never ends is dropped with the connection.
 */
export class MllpDecoder {
  private chunks: Buffer[] = [];
  private size = 0;
  private inFrame = false;
  /** Whether the current frame's first segment has passed the screen (always, without one). */
  private admitted = false;
  private started = 0;
  /** Bytes skipped outside frames since the last start block. */
  private noise = 0;

  constructor(private readonly maxFrameBytes: number, private readonly screen?: MllpScreen) {}

  /**
   * The complete payloads this chunk finishes. Throws MllpFrameTooLarge past the limit,
   * MllpHeaderTooLarge and MllpFrameRefused when screening; the decoder is unusable after.
   */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let data = chunk;
    while (data.length > 0) {
      if (!this.inFrame) {
        const start = data.indexOf(startBlock);
        this.skip(start < 0 ? data.length : start);
        if (start < 0) return out;
        this.inFrame = true;
        this.noise = 0;
        this.admitted = this.screen === undefined;
        this.started += 1;
        data = data.subarray(start + 1);
        continue;
      }
      const end = this.findEnd(data);
      const body = end === undefined ? data : data.subarray(0, end.fs);
      if (!this.admitted) {
        const eol = firstLineEnd(body);
        if (eol >= 0) {
          this.append(body.subarray(0, eol + 1));
          this.check(out);
          this.append(body.subarray(eol + 1));
        } else {
          this.append(body);
          if (end !== undefined) this.check(out);
        }
      } else {
        this.append(body);
      }
      if (end === undefined) return out;
      // <CR> follows <FS> in this chunk, or, when split, is skipped as noise with the next one.
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

  /** The number of the frame being received (each start block counts one), or 0 between frames. */
  get currentFrame(): number {
    return this.inFrame ? this.started : 0;
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

  /** Noise between frames is not kept, yet a screened peer may not send it without end. */
  private skip(bytes: number): void {
    this.noise += bytes;
    if (this.screen && this.noise > this.screen.maxHeaderBytes) throw new MllpHeaderTooLarge(this.screen.maxHeaderBytes);
  }

  /** Runs the screen on the first segment, kept whole so far. */
  private check(completed: Buffer[]): void {
    const first = Buffer.concat(this.chunks, this.size);
    if (!this.screen!.admit(first)) {
      this.chunks = [];
      this.size = 0;
      throw new MllpFrameRefused(first, completed);
    }
    this.admitted = true;
  }

  private append(part: Buffer): void {
    if (part.length === 0) return;
    this.size += part.length;
    if (!this.admitted && this.size > this.screen!.maxHeaderBytes) throw new MllpHeaderTooLarge(this.screen!.maxHeaderBytes);
    if (this.size > this.maxFrameBytes) throw new MllpFrameTooLarge(this.maxFrameBytes);
    this.chunks.push(part);
  }
}

/** Index of the first CR or LF (segment terminators that parseMessage accepts), or -1. */
function firstLineEnd(data: Buffer): number {
  const cr = data.indexOf(carriageReturn), lf = data.indexOf(lineFeed);
  return cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
}
