/**
 * Export of the audit trail to a syslog collector (an IHE ATNA audit record repository):
 * every stored audit event, in the trail's order, as a DICOM audit message (audit-message.ts)
 * in an RFC 5424 message, framed by octet counting over TLS (RFC 5425).
 *
 * It polls audit_events after its position (src/events/outbox.ts positions, consumer 'audit-syslog'), so the
 * request path never waits on it: a request only appends to the trail, as before. A batch
 * is written, and the cursor moves only once the socket took the bytes (the write
 * callback). Delivery is therefore at least once: Atrium stopping between the write and the
 * cursor update sends that batch again. Syslog over TLS has no acknowledgment, so a batch
 * the socket took while the collector was going down, but that it never stored, is not
 * resent; the trail in the index stays complete and verifiable whatever the collector holds.
 *
 * The collector's certificate is always verified against the configured CA (and must name
 * the configured host); TLS 1.2 at least; a client certificate when configured (mutual TLS).
 * While the collector is unreachable or refused, the exporter retries with back-off and the
 * trail keeps growing; on return, it sends everything recorded meanwhile, in order.
 *
 * It also carries the anchors of the trail (audit-anchor.ts) to the collector, MSGID
 * ATRIUM-AUDIT-ANCHOR: a copy of the chain's signed checkpoints out of reach of whoever can
 * write Atrium's database and data folder. Anchors not yet sent wait in memory (the anchor
 * file keeps them all).
 */
import tls from 'node:tls';
import { isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { AuditSyslogConfig } from '../config/config.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { advancePosition, ensurePosition, lockPosition, readPosition } from '../events/outbox.ts';
import { AuditTrail, type StoredAuditEvent } from './audit.ts';
import { auditMessageOf, auditEventKindOf, AuditEventID, type AuditSourceContext } from './audit-message.ts';

export const AUDIT_SYSLOG_CONSUMER = 'audit-syslog';
const BATCH = 100;
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 30_000;
/** A collector that stops reading for this long is given up on (and retried). */
const WRITE_TIMEOUT_MS = 30_000;

/** RFC 5424 facility 10: security/authorization messages (IHE ITI-20). */
const FACILITY_AUTHPRIV = 10;
/** Severities: notice for the normal record, warning for failures, refusals and security alerts (IHE ITI-20). */
const Severity = { Warning: 4, Notice: 5 } as const;
/** MSGID of DICOM/RFC 3881 audit messages (IHE ITI-20). */
export const ATNA_MSGID = 'IHE+RFC-3881';
/** MSGID of the audit chain's anchors: one JSON line each, as in the anchor file. */
export const ANCHOR_MSGID = 'ATRIUM-AUDIT-ANCHOR';
/** Anchors waiting for a collector that is down: past this, the oldest go (the file has them). */
const MAX_PENDING_ANCHORS = 1000;
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** RFC 5424 PRINTUSASCII, 1 to 255 characters, for HOSTNAME. */
function syslogHostname(name: string): string {
  const printable = name.replace(/[^\x21-\x7e]/g, '').slice(0, 255);
  return printable === '' ? '-' : printable;
}

export function syslogSeverityOf(e: StoredAuditEvent): number {
  if (e.outcome !== 'success') return Severity.Warning;
  return auditEventKindOf(e.action, e.details).EventID === AuditEventID.SecurityAlert ? Severity.Warning : Severity.Notice;
}

/**
 * One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME atrium PROCID IHE+RFC-3881 - BOM XML`.
 * TIMESTAMP is when the event was recorded; the XML is UTF-8, announced by the BOM (RFC 5424 6.4).
 */
export function syslogMessageOf(e: StoredAuditEvent, source: AuditSourceContext, procId: number = process.pid): Buffer {
  const pri = FACILITY_AUTHPRIV * 8 + syslogSeverityOf(e);
  const header = `<${pri}>1 ${e.at} ${syslogHostname(source.hostname)} atrium ${procId} ${ATNA_MSGID} - `;
  return Buffer.concat([Buffer.from(header, 'ascii'), BOM, Buffer.from(auditMessageOf(e, source), 'utf8')]);
}

/** An anchor line (audit-anchor.ts) as an RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME atrium PROCID ATRIUM-AUDIT-ANCHOR - JSON`. */
export function syslogAnchorMessageOf(line: string, at: string, source: AuditSourceContext, procId: number = process.pid): Buffer {
  const pri = FACILITY_AUTHPRIV * 8 + Severity.Notice;
  return Buffer.from(`<${pri}>1 ${at} ${syslogHostname(source.hostname)} atrium ${procId} ${ANCHOR_MSGID} - ${line}`, 'utf8');
}

/** RFC 5425 4.3 octet-counting: `MSG-LEN SP SYSLOG-MSG`. */
export function octetCountedFrame(message: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${message.length} `, 'ascii'), message]);
}

export interface AuditSyslogStatus {
  connected: boolean;
  /** Id of the last audit event the collector was sent (the cursor), once read. */
  exportedThrough?: number;
  /** Why the last attempt failed, until one succeeds. */
  lastError?: string;
}

export class AuditSyslogExporter {
  private readonly tlsOptions: tls.ConnectionOptions;
  private socket: tls.TLSSocket | undefined;
  private connecting: Promise<tls.TLSSocket> | undefined;
  private dialing: tls.TLSSocket | undefined;
  private cursor: number | undefined;
  private failures = 0;
  private lastError: string | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private anchors: Buffer[] = [];

  constructor(
    private readonly sql: SqlDatabase,
    private readonly config: AuditSyslogConfig,
    private readonly source: AuditSourceContext,
    private readonly logger: Logger,
  ) {
    // Read once at start: a missing file is a configuration error, not a retry.
    this.tlsOptions = {
      host: config.host,
      port: config.port,
      ca: readFileSync(config.caFile),
      ...(config.certFile && config.keyFile ? { cert: readFileSync(config.certFile), key: readFileSync(config.keyFile) } : {}),
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
      // SNI carries a host name, never an address (RFC 6066 3).
      ...(isIP(config.host) === 0 ? { servername: config.host } : {}),
    };
  }

  start(): void {
    if (this.loop) return;
    this.stopped = false;
    this.loop = this.run();
  }

  /** Queues an anchor line for the collector; sent after the next batch, or alone. */
  sendAnchor(line: string, at: string = new Date().toISOString()): void {
    this.anchors.push(octetCountedFrame(syslogAnchorMessageOf(line, at, this.source)));
    if (this.anchors.length > MAX_PENDING_ANCHORS) this.anchors.shift();
    this.wake?.();
  }

  /** Lets a batch being written finish for up to graceMs, then closes the connection (pending anchors go first). */
  async stop(graceMs = 2000): Promise<void> {
    this.stopped = true;
    this.wake?.();
    let timer: NodeJS.Timeout | undefined;
    const deadline = Date.now() + graceMs;
    await Promise.race([this.loop, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    if (this.anchors.length > 0 && Date.now() < deadline) {
      // The anchor written at shutdown: one more try within the grace left.
      await Promise.race([this.sendAnchors(), new Promise((r) => (timer = setTimeout(r, deadline - Date.now())))])
        .catch((e: unknown) => this.logger.warn({ err: reasonOf(e) }, 'the last audit anchor could not be sent to the syslog collector'));
      clearTimeout(timer);
    }
    this.dialing?.destroy();
    this.dropSocket();
    await this.loop;
    this.loop = undefined;
  }

  status(): AuditSyslogStatus {
    return {
      connected: this.socket !== undefined,
      ...(this.cursor !== undefined ? { exportedThrough: this.cursor } : {}),
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
    };
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let sent: number;
      try {
        sent = await this.exportBatch();
        await this.sendAnchors();
      } catch (e) {
        this.failures++;
        this.lastError = reasonOf(e);
        this.dropSocket();
        const delay = Math.min(RETRY_BASE_MS * 2 ** (this.failures - 1), RETRY_MAX_MS);
        // Loud at first, then once every ten attempts: a collector down for hours fills no disk.
        if (this.failures === 1 || this.failures % 10 === 0) {
          this.logger.warn({ collector: `${this.config.host}:${this.config.port}`, failures: this.failures, retryInMs: delay, err: this.lastError }, 'audit export to the syslog collector failed; it retries');
        }
        await this.sleep(delay);
        continue;
      }
      if (this.failures > 0) this.logger.info({ collector: `${this.config.host}:${this.config.port}`, afterFailures: this.failures }, 'audit export to the syslog collector resumed');
      this.failures = 0;
      this.lastError = undefined;
      if (sent < BATCH) await this.sleep(this.config.pollMs);
    }
  }

  /** Sends the next batch after the cursor; answers how many events were sent. */
  private async exportBatch(): Promise<number> {
    if (this.sql.engine === 'sqlite') return this.sendAfter(this.sql, await this.readCursor(this.sql));
    // Connected before the transaction, so that a slow collector never holds a database connection.
    const after = await this.readCursor(this.sql);
    this.cursor = after;
    if (!(await this.sql.get('SELECT id FROM audit_events WHERE id > ? LIMIT 1', [after]))) return 0;
    await this.connect();
    // Several nodes share one PostgreSQL: the cursor row, locked while its batch is sent, lets
    // one node export at a time (the others skip their turn). If PostgreSQL runs the
    // transaction again (a conflict), the batch is sent again: at least once, as after a crash.
    await ensurePosition(this.sql, AUDIT_SYSLOG_CONSUMER);
    return this.sql.transaction(async (tx) => {
      const position = await lockPosition(tx, AUDIT_SYSLOG_CONSUMER);
      if (!position) return 0;
      return this.sendAfter(tx, position.id);
    });
  }

  /** Sends the anchors waiting, over the same connection; they stay queued if it fails. */
  private async sendAnchors(): Promise<void> {
    if (this.anchors.length === 0) return;
    const batch = this.anchors.slice();
    const socket = await this.connect();
    await writeAll(socket, Buffer.concat(batch));
    this.anchors.splice(0, Math.min(batch.length, this.anchors.length));
  }

  private async readCursor(sql: SqlDatabase): Promise<number> {
    return (await readPosition(sql, AUDIT_SYSLOG_CONSUMER)).id;
  }

  private async sendAfter(sql: SqlDatabase, after: number): Promise<number> {
    this.cursor = after;
    // SQLite: the trail is read outside any transaction, so the socket never holds its writer.
    // Ids are in commit order (appends to the trail are serialized, audit.ts), so no record
    // can commit later behind the cursor.
    const events = await new AuditTrail(sql).eventsAfter(after, BATCH);
    if (events.length === 0) return 0;
    const socket = await this.connect();
    const frames = Buffer.concat(events.map((e) => octetCountedFrame(syslogMessageOf(e, this.source))));
    await writeAll(socket, frames);
    const last = events[events.length - 1]!.id;
    await advancePosition(sql, AUDIT_SYSLOG_CONSUMER, { txid: 0, id: last });
    this.cursor = last;
    this.logger.debug({ events: events.length, through: last }, 'audit events sent to the syslog collector');
    return events.length;
  }

  /** The open connection, or a new one once the collector's certificate is verified. */
  private connect(): Promise<tls.TLSSocket> {
    const open = this.socket;
    if (open && !open.destroyed && open.writable) return Promise.resolve(open);
    this.connecting ??= new Promise<tls.TLSSocket>((resolve, reject) => {
      const socket = tls.connect(this.tlsOptions);
      this.dialing = socket;
      const timer = setTimeout(() => socket.destroy(new Error(`no TLS connection to ${this.config.host}:${this.config.port} within ${WRITE_TIMEOUT_MS} ms`)), WRITE_TIMEOUT_MS);
      const fail = (e: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(e);
      };
      socket.once('error', fail);
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        // rejectUnauthorized already refused an unverified peer; this says so if that ever changes.
        if (!socket.authorized) return fail(new Error(`collector certificate refused: ${String(socket.authorizationError)}`));
        // An idle connection's error or close only drops it: the next batch reconnects.
        socket.on('error', (e) => this.logger.debug({ err: e.message }, 'syslog connection error'));
        socket.on('close', () => {
          if (this.socket === socket) this.socket = undefined;
        });
        socket.on('end', () => socket.destroy());
        socket.resume(); // a collector sends nothing back; never let it fill a buffer
        this.socket = socket;
        this.logger.info({ collector: `${this.config.host}:${this.config.port}`, protocol: socket.getProtocol() }, 'connected to the syslog collector');
        resolve(socket);
      });
    }).finally(() => {
      this.connecting = undefined;
      this.dialing = undefined;
    });
    return this.connecting;
  }

  private dropSocket(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}

/** Resolves once the socket took every byte (its write callback), or fails with the connection. */
function writeAll(socket: tls.TLSSocket, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => socket.destroy(new Error(`the collector took nothing for ${WRITE_TIMEOUT_MS} ms`)), WRITE_TIMEOUT_MS);
    const onClose = () => finish(new Error('the collector closed the connection'));
    const finish = (e?: Error | null) => {
      clearTimeout(timer);
      socket.off('close', onClose);
      if (e) reject(e);
      else resolve();
    };
    socket.once('close', onClose);
    socket.write(bytes, finish);
  });
}

/** Why an attempt failed, in a line (a refused certificate says so). */
function reasonOf(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const code = (e as NodeJS.ErrnoException).code;
  if (code && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(code)) return `collector certificate refused (${code}): ${e.message}`;
  return code ? `${code}: ${e.message}` : e.message;
}

/** Who Atrium is in its audit messages, from the configuration. */
export function auditSourceOf(config: AuditSyslogConfig, aeTitle: string, hostname: string): AuditSourceContext {
  return { auditSourceId: config.auditSourceId, aeTitle, hostname };
}
