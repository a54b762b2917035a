/**
 * Atrium's HL7 v2 listener: MLLP over TCP, loopback by default. Messages of one
 * connection are applied in the order they arrive, each acknowledged before the next.
 * A peer is unauthenticated until the MSH of its frame names a configured sender, so
 * until then it may hold only a few KiB, a bounded number of connections and time.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import type { Archive } from '../archive/archive.ts';
import type { Hl7Config, TeleradiologyConfig } from '../config/config.ts';
import { migratePatientRegistry } from '../patients/patient-registry.ts';
import { migrateLifecycle } from '../archive/lifecycle.ts';
import { frameMessage, MllpDecoder, MllpFrameRefused, MllpFrameTooLarge, MllpHeaderTooLarge } from './mllp.ts';
import { Hl7Receiver } from './receiver.ts';
import { migrateTeleradiologyVolet } from './teleradiology-volet.ts';

/** Bytes a frame may reach before its first segment (MSH) has arrived, and noise outside frames. */
const maxScreenedBytes = 8 * 1024;
/** How long a refused connection stays open for its AR to be read. */
const refusalLingerMs = 2000;

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
    /** Teleradiology's settings: with them, requests of the CI-SIS teleradiology volet are served. */
    readonly teleradiology?: TeleradiologyConfig,
    /** radiation.redundancyWindowDays: the windows of the redundant-exam alert on orders. */
    redundancyWindowDays?: Readonly<Record<string, number>>,
  ) {
    this.receiver = new Hl7Receiver(config, archive, logger, teleradiology, redundancyWindowDays);
  }

  /** The bound port (the configured one, or the one the system chose for port 0). */
  get port(): number {
    return (this.server?.address() as net.AddressInfo | null)?.port ?? this.config.port;
  }

  async listen(): Promise<void> {
    await migratePatientRegistry(this.archive.index.sql);
    // ADT admissions and visits are recorded as contacts for retention (src/archive/lifecycle.ts).
    await migrateLifecycle(this.archive.index.sql);
    if (this.teleradiology) await migrateTeleradiologyVolet(this.archive.index.sql);
    this.server = net.createServer({ noDelay: true }, (socket) => this.onConnection(socket));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.config.port, this.config.host, () => {
        this.server!.off('error', reject);
        // An accept failure (out of file descriptors) is logged; it must not end the process.
        this.server!.on('error', (e) => this.logger.error({ err: e }, 'HL7 listener error'));
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
    const log = this.logger.child({ remote: `${socket.remoteAddress}:${socket.remotePort}` });
    socket.on('error', (e) => log.debug({ err: e.message }, 'HL7 connection error'));
    if (this.sockets.size >= this.config.maxConnections) {
      log.warn({ limit: this.config.maxConnections }, 'HL7 connection closed: as many connections are open as hl7.maxConnections allows');
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    // Nothing past a small first segment is kept before MSH-3 and MSH-4 name a known sender.
    const decoder = new MllpDecoder(this.config.maxMessageBytes, {
      maxHeaderBytes: maxScreenedBytes,
      admit: (firstSegment) => this.receiver.admitsSender(firstSegment),
    });
    let queue: Promise<void> = Promise.resolve();
    /** Messages received on this connection and not answered yet: while any is, the peer waits on us. */
    let unanswered = 0;
    let closing = false;
    let frameTimer: NodeJS.Timeout | undefined;
    let timedFrame = 0;
    const stopFrameTimer = () => {
      clearTimeout(frameTimer);
      frameTimer = undefined;
    };
    const drop = (level: 'info' | 'warn' | 'error', fields: Record<string, unknown>, why: string) => {
      closing = true;
      stopFrameTimer();
      log[level](fields, why);
      socket.destroy();
    };

    socket.setTimeout(this.config.idleTimeoutMs);
    socket.on('timeout', () => {
      if (unanswered > 0 || closing) return;
      drop('info', { idleTimeoutMs: this.config.idleTimeoutMs }, 'HL7 connection idle, closed');
    });

    const receive = (chunk: Buffer) => {
      const enqueue = (payloads: Buffer[]) => {
        for (const payload of payloads) {
          unanswered += 1;
          queue = queue.then(() => this.handle(socket, payload, log)).finally(() => (unanswered -= 1));
        }
      };
      try {
        enqueue(decoder.push(chunk));
      } catch (e) {
        if (e instanceof MllpFrameRefused) {
          enqueue(e.completed);
          return refuse(e.firstSegment);
        }
        if (e instanceof MllpHeaderTooLarge) return drop('warn', { limit: e.limit }, 'HL7 connection closed: no complete first segment (MSH) within the bound, or as much noise between frames');
        if (e instanceof MllpFrameTooLarge) return drop('warn', { limit: e.limit }, 'HL7 message too large, connection closed');
        throw e;
      }
      // The deadline runs from a frame's start block, whatever trickles in after it.
      const frame = decoder.currentFrame;
      if (frame !== timedFrame) {
        stopFrameTimer();
        timedFrame = frame;
        if (frame !== 0) {
          frameTimer = setTimeout(() => drop('warn', { frameTimeoutMs: this.config.frameTimeoutMs, bytes: decoder.pendingBytes }, 'HL7 message not complete in time, connection closed'), this.config.frameTimeoutMs);
        }
      }
    };

    // An unknown sender: nothing more is kept; the AR follows the answers still owed, then the connection ends.
    const refuse = (firstSegment: Buffer) => {
      closing = true;
      stopFrameTimer();
      socket.pause();
      const ack = this.receiver.refuseSender(firstSegment);
      queue = queue.then(() => {
        if (socket.destroyed) return;
        if (!ack) {
          log.warn('HL7 connection closed: a frame does not start with a readable MSH segment');
          socket.destroy();
          return;
        }
        // Destroying with unread bytes would reset the connection and could lose the AR on its way:
        // what follows is read and dropped until the peer closes, for a bounded time.
        socket.end(frameMessage(ack), () => socket.resume());
        setTimeout(() => socket.destroy(), refusalLingerMs).unref();
      });
    };

    socket.on('data', (chunk: Buffer) => {
      if (closing) return;
      try {
        receive(chunk);
      } catch (e) {
        drop('error', { err: e }, 'HL7 connection failed, closed');
      }
    });
    socket.on('close', () => {
      stopFrameTimer();
      this.sockets.delete(socket);
      if (!closing && decoder.pendingBytes > 0) log.warn({ bytes: decoder.pendingBytes }, 'HL7 connection closed in the middle of a message (no end block), message dropped');
    });
  }

  private handle(socket: net.Socket, payload: Buffer, log: Logger): Promise<void> {
    const work = (async () => {
      try {
        const { acknowledgment } = await this.receiver.receive(payload);
        if (socket.writable) socket.write(frameMessage(acknowledgment));
      } catch (e) {
        log.error({ err: e }, 'HL7 message could not be acknowledged');
        socket.destroy();
      }
    })();
    this.inFlight.add(work);
    return work.finally(() => this.inFlight.delete(work));
  }
}
