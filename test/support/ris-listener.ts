/** A requesting site's RIS, standing in for it in tests: a real TCP listener speaking MLLP. */
import net from 'node:net';
import { findSegment, parseMessage, valueOf, type Hl7Message } from '../../src/hl7/message.ts';
import { frameMessage, MllpDecoder } from '../../src/hl7/mllp.ts';

export /** A RIS's MLLP listener: records what it receives and answers each message with the next code (AA when none is queued). */
class RisListener {
  readonly received: Hl7Message[] = [];
  readonly answers: string[] = [];
  /** When set, the answer to the n-th message received (from 1) waits for what it returns: a RIS slow to acknowledge. */
  beforeAnswer?: (n: number) => Promise<void>;
  private readonly server = net.createServer((socket) => {
    const decoder = new MllpDecoder(1024 * 1024);
    socket.on('data', (chunk: Buffer) => {
      for (const payload of decoder.push(chunk)) {
        const message = parseMessage(payload.toString('utf8'));
        this.received.push(message);
        const code = this.answers.shift() ?? 'AA';
        const controlId = valueOf(findSegment(message, 'MSH'), 10);
        const ack = `MSH|^~\\&|RIS|CLIN-SUD|ATRIUM|ATRIUM|20261123120000||ACK^R01^ACK|ACK${this.received.length}|P|2.5\rMSA|${code}|${controlId}|${code === 'AA' ? '' : 'base RIS en maintenance'}\r`;
        const answer = () => socket.write(frameMessage(Buffer.from(ack, 'latin1')));
        if (this.beforeAnswer) void this.beforeAnswer(this.received.length).then(answer);
        else answer();
      }
    });
    socket.on('error', () => {});
  });

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as net.AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
