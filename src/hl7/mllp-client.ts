/**
 * The sending side of MLLP: one message on a fresh connection, the acknowledgment read back
 * and checked (original mode: MSA-1 AA, or CA in enhanced mode, and MSA-2 naming the
 * message). Anything else (AE, AR, no answer in time, a refused or dropped connection) is
 * an MllpSendError, which the caller retries.
 */
import net from 'node:net';
import { findSegment, parseMessage, valueOf } from './message.ts';
import { frameMessage, MllpDecoder } from './mllp.ts';

export class MllpSendError extends Error {
  constructor(message: string, readonly acknowledgmentCode?: string) {
    super(message);
    this.name = 'MllpSendError';
  }
}

export interface MllpDestination { host: string; port: number }

/** Sends one message (its encoded bytes) and answers the acknowledgment's text once it says accepted. */
export async function sendOverMllp(to: MllpDestination, payload: Buffer, controlId: string, timeoutMs: number): Promise<string> {
  const ack = await exchange(to, payload, timeoutMs);
  const text = ack.toString('latin1');
  let code: string;
  let answered: string;
  let why = '';
  try {
    const message = parseMessage(text);
    const msa = findSegment(message, 'MSA');
    code = valueOf(msa, 1);
    answered = valueOf(msa, 2);
    why = valueOf(findSegment(message, 'ERR'), 8) || valueOf(msa, 3);
  } catch (e) {
    throw new MllpSendError(`the answer is not an HL7 acknowledgment: ${(e as Error).message}`);
  }
  if (code !== 'AA' && code !== 'CA') throw new MllpSendError(`refused with ${code || 'no MSA-1'}${why ? `: ${why}` : ''}`, code);
  if (answered !== controlId) throw new MllpSendError(`acknowledged message ${answered}, not ${controlId}`, code);
  return text;
}

function exchange(to: MllpDestination, payload: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const decoder = new MllpDecoder(1024 * 1024);
    let settled = false;
    const socket = net.connect({ host: to.host, port: to.port, noDelay: true });
    const finish = (error: Error | undefined, ack?: Buffer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(ack!);
    };
    const timer = setTimeout(() => finish(new MllpSendError(`no acknowledgment from ${to.host}:${to.port} within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => socket.write(frameMessage(payload)));
    socket.on('data', (chunk: Buffer) => {
      try {
        const [first] = decoder.push(chunk);
        if (first) finish(undefined, first);
      } catch (e) {
        finish(new MllpSendError((e as Error).message));
      }
    });
    socket.on('error', (e) => finish(new MllpSendError(`${to.host}:${to.port}: ${e.message}`)));
    socket.on('close', () => finish(new MllpSendError(`${to.host}:${to.port} closed the connection before acknowledging`)));
  });
}
