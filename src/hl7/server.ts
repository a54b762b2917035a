/**
 * Atrium's HL7 v2 listener: MLLP over TCP, loopback by default. Messages of one
 * connection are applied in the order they arrive, each acknowledged before the next.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import type { Archive } from '../archive/archive.ts';
import type { Hl7Config } from '../config/config.ts';
import { migratePatientRegistry } from '../patients/patient-registry.ts';
import { frameMessage, MllpDecoder, MllpFrameTooLarge } from './mllp.ts';
import { Hl7Receiver } from './receiver.ts';

export class Hl7Server {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  /** Messages being applied; close waits for them. */
  private readonly inFlight = new Set<Promise<void>>();
  private readonly receiver: Hl7Receiver;

  constructor(
    readonly config: Hl7Config,
    readonly archive: Archive,
    readonly logger: Logger,
  ) {
    this.receiver = new Hl7Receiver(config, archive, logger);
  }

  /** The bound port (the configured one, or the one the system chose for port 0). */
  get port(): number {
    return (this.server?.address() as net.AddressInfo | null)?.port ?? this.config.port;
  }

  async listen(): Promise<void> {
    await migratePatientRegistry(this.archive.index.sql);
    this.server = net.createServer({ noDelay: true }, (socket) => this.onConnection(socket));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.config.port, this.config.host, () => {
        this.server!.off('error', reject);
        resolve();
      });
    });
    this.logger.info({ host: this.config.host, port: this.port, senders: this.config.senders.map((s) => `${s.application}@${s.facility}`) }, 'HL7 MLLP listener ready');
  }

  /** Stops accepting, lets messages being applied finish for `graceMs`, then closes connections. */
  async close(graceMs = 5000): Promise<void> {
    const closed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    const deadline = Date.now() + graceMs;
    while (this.inFlight.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private onConnection(socket: net.Socket): void {
    this.sockets.add(socket);
    const log = this.logger.child({ remote: `${socket.remoteAddress}:${socket.remotePort}` });
    const decoder = new MllpDecoder(this.config.maxMessageBytes);
    let queue: Promise<void> = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      let payloads: Buffer[];
      try {
        payloads = decoder.push(chunk);
      } catch (e) {
        if (!(e instanceof MllpFrameTooLarge)) throw e;
        log.warn({ limit: this.config.maxMessageBytes }, 'HL7 message too large, connection closed');
        socket.destroy();
        return;
      }
      for (const payload of payloads) {
        queue = queue.then(() => this.handle(socket, payload, log));
      }
    });
    socket.on('error', (e) => log.debug({ err: e.message }, 'HL7 connection error'));
    socket.on('close', () => {
      this.sockets.delete(socket);
      if (decoder.pendingBytes > 0) log.warn({ bytes: decoder.pendingBytes }, 'HL7 connection closed in the middle of a message (no end block), message dropped');
    });
  }

  private handle(socket: net.Socket, payload: Buffer, log: Logger): Promise<void> {
    const work = (async () => {
      try {
        const { acknowledgment } = await this.receiver.receive(payload);
        if (!socket.destroyed) socket.write(frameMessage(acknowledgment));
      } catch (e) {
        log.error({ err: e }, 'HL7 message could not be acknowledged');
        socket.destroy();
      }
    })();
    this.inFlight.add(work);
    return work.finally(() => this.inFlight.delete(work));
  }
}
