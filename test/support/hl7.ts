/**
 * A small MLLP client for tests: frames a message, sends it over TCP and reads the
 * acknowledgment back, parsed.
 */
import net from 'node:net';
import { findSegment, parseMessage, valueOf, type Hl7Message } from '../../src/hl7/message.ts';
import { frameMessage, MllpDecoder } from '../../src/hl7/mllp.ts';

export interface Acknowledgment {
  message: Hl7Message;
  text: string;
  /** MSA-1 */
  code: string;
  /** MSA-2 */
  controlId: string;
  /** ERR-3.1 and ERR-8, when present. */
  errorCode?: string;
  errorMessage?: string;
  /** ERR-2 segment id and field. */
  errorLocation?: string;
}

export class MllpClient {
  private readonly decoder = new MllpDecoder(16 * 1024 * 1024);
  private readonly waiting: Array<(payload: Buffer) => void> = [];
  private readonly received: Buffer[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const payload of this.decoder.push(chunk)) {
        const w = this.waiting.shift();
        if (w) w(payload);
        else this.received.push(payload);
      }
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<MllpClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host, noDelay: true }, () => {
        socket.off('error', reject);
        resolve(new MllpClient(socket));
      });
      socket.once('error', reject);
    });
  }

  /** Sends one message (segments joined by CR) and waits for its acknowledgment. */
  async send(message: string | Buffer, timeoutMs = 10_000): Promise<Acknowledgment> {
    const bytes = typeof message === 'string' ? Buffer.from(message, 'latin1') : message;
    const answer = this.next(timeoutMs);
    this.socket.write(frameMessage(bytes));
    return readAcknowledgment(await answer);
  }

  writeRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  next(timeoutMs = 10_000): Promise<Buffer> {
    const ready = this.received.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no acknowledgment within the time limit')), timeoutMs);
      this.waiting.push((payload) => {
        clearTimeout(timer);
        resolve(payload);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.once('close', () => resolve());
      this.socket.end();
    });
  }
}

export function readAcknowledgment(payload: Buffer): Acknowledgment {
  const text = payload.toString('latin1');
  const message = parseMessage(text);
  const msa = findSegment(message, 'MSA');
  const err = findSegment(message, 'ERR');
  return {
    message, text,
    code: valueOf(msa, 1),
    controlId: valueOf(msa, 2),
    ...(err ? { errorCode: valueOf(err, 3, 1), errorMessage: valueOf(err, 8), errorLocation: `${valueOf(err, 2, 1)}-${valueOf(err, 2, 3)}` } : {}),
  };
}

/** Sends one message on a fresh connection. */
export async function sendHl7(port: number, message: string | Buffer): Promise<Acknowledgment> {
  const client = await MllpClient.connect(port);
  try {
    return await client.send(message);
  } finally {
    await client.close();
  }
}
