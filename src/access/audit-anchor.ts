/**
 * Anchors of the audit chain outside the database. The hash chain (audit.ts) shows a record
 * edited or removed in the middle; it cannot show a tail removed, or a chain rewritten from
 * the start with fresh hashes, by someone who can write the database. So the chain's head
 * (the last record's id and hash, and when) is signed (HMAC-SHA256) and appended, as one
 * JSON line, to a file the operator keeps elsewhere, and sent to the syslog collector when
 * one is configured: `atrium audit verify` then finds every anchored record with its
 * anchored hash, or says which is missing or different.
 *
 * Periodic, never per event: at start, every `audit.anchor.everySeconds` when the head
 * moved, and at shutdown. What was recorded after the last anchor is covered by the chain
 * only until the next one.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { appendFileSync, closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AuditAnchorConfig } from '../config/config.ts';
import type { SqlDatabase } from '../index/sql.ts';

/** One checkpoint: record `seq` of the trail had hash `hash` at time `at`. */
export interface AuditAnchor {
  v: 1;
  /** The id of the chain's last record (audit_events.id). */
  seq: number;
  hash: string;
  at: string;
  /** Which key signed it (the start of its SHA-256), so that a rotated key is told from a forgery. */
  keyId: string;
  /** HMAC-SHA256, hex, of [v, seq, hash, at]. */
  sig: string;
}

export interface AnchorKey {
  key: Buffer;
  id: string;
  /** The data folder's key file, when the key is not from the environment. */
  file?: string;
}

/** Where the key goes when ATRIUM_AUDIT_ANCHOR_KEY is unset (mode 0600, like the api-token). */
export const ANCHOR_KEY_FILE = 'audit-anchor.key';

function keyOf(secret: string, file?: string): AnchorKey {
  const key = Buffer.from(secret, 'utf8');
  return { key, id: createHash('sha256').update(key).digest('hex').slice(0, 16), ...(file ? { file } : {}) };
}

/**
 * The signing key: ATRIUM_AUDIT_ANCHOR_KEY, else the data folder's key file; `create` writes
 * one there when neither exists (serve, anchor). Undefined when there is none to verify with.
 */
export function anchorKeyOf(anchor: AuditAnchorConfig, dataDir: string, options: { create: boolean }): AnchorKey | undefined {
  if (anchor.key !== undefined) return keyOf(anchor.key);
  const file = path.join(dataDir, ANCHOR_KEY_FILE);
  if (!existsSync(file)) {
    if (!options.create) return undefined;
    mkdirSync(dataDir, { recursive: true });
    try {
      writeFileSync(file, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
    } catch (e) {
      // Another process made it first: use theirs.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  return keyOf(readFileSync(file, 'utf8').trim(), file);
}

function signatureOf(key: AnchorKey, a: Pick<AuditAnchor, 'v' | 'seq' | 'hash' | 'at'>): string {
  return createHmac('sha256', key.key).update(JSON.stringify([a.v, a.seq, a.hash, a.at])).digest('hex');
}

export function signAnchor(key: AnchorKey, head: { seq: number; hash: string }, at: string = new Date().toISOString()): AuditAnchor {
  const unsigned = { v: 1 as const, seq: head.seq, hash: head.hash, at };
  return { ...unsigned, keyId: key.id, sig: signatureOf(key, unsigned) };
}

export function anchorSignatureHolds(key: AnchorKey, a: AuditAnchor): boolean {
  const want = Buffer.from(signatureOf(key, a), 'hex');
  const got = Buffer.from(a.sig, 'hex');
  return got.length === want.length && timingSafeEqual(got, want);
}

/** A line of an anchor file, or why it is not one. */
export function parseAnchorLine(line: string): AuditAnchor | string {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return 'not JSON';
  }
  const a = v as Partial<AuditAnchor> | null;
  if (typeof a !== 'object' || a === null || a.v !== 1 || !Number.isSafeInteger(a.seq) || (a.seq ?? 0) < 1
    || typeof a.hash !== 'string' || !/^[0-9a-f]{64}$/.test(a.hash) || typeof a.at !== 'string'
    || typeof a.keyId !== 'string' || typeof a.sig !== 'string' || !/^[0-9a-f]{64}$/.test(a.sig)) {
    return 'not an anchor (v, seq, hash, at, keyId, sig)';
  }
  return { v: 1, seq: a.seq!, hash: a.hash, at: a.at, keyId: a.keyId, sig: a.sig };
}

export type AnchorFileReading =
  | { ok: true; anchors: AuditAnchor[] }
  | { ok: false; why: string };

/**
 * Every anchor of a file, each signature checked: one line that is not a valid anchor
 * signed by this key fails the whole file (a forged line is tampering too).
 */
export function readAnchorFile(file: string, key: AnchorKey): AnchorFileReading {
  if (!existsSync(file)) return { ok: true, anchors: [] };
  const anchors: AuditAnchor[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const a = parseAnchorLine(line);
    if (typeof a === 'string') return { ok: false, why: `anchor file ${file}, line ${i + 1}: ${a}` };
    if (!anchorSignatureHolds(key, a)) {
      const other = a.keyId !== key.id ? ` (it names key ${a.keyId}, the key at hand is ${key.id})` : '';
      return { ok: false, why: `anchor file ${file}, line ${i + 1}: its signature does not hold: forged, or signed with another key${other}` };
    }
    anchors.push(a);
  }
  return { ok: true, anchors };
}

/** The chain's head: its last record's id and hash; undefined while the trail is empty. */
export async function auditHead(sql: SqlDatabase): Promise<{ seq: number; hash: string } | undefined> {
  const row = await sql.get<{ id: number; hash: string }>('SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1');
  return row ? { seq: Number(row.id), hash: row.hash } : undefined;
}

/** The file's last line, read from its end (the file grows for years). */
function lastLineOf(file: string): string | undefined {
  if (!existsSync(file)) return undefined;
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, 4096);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    const lines = buf.toString('utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '');
    return lines.at(-1);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes anchors while Atrium serves: at start, at each interval when the head moved, at stop.
 * `onAnchor` gets each line written (the syslog exporter sends it on).
 */
export class AuditAnchoring {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private last: { seq: number; hash: string } | undefined;

  constructor(
    private readonly sql: SqlDatabase,
    private readonly config: AuditAnchorConfig,
    private readonly key: AnchorKey,
    private readonly logger: Logger,
    private readonly onAnchor?: (line: string) => void,
  ) {}

  async start(): Promise<void> {
    await this.checkLastAnchor();
    await this.anchorNow();
    this.timer = setInterval(() => void this.anchorNow(), this.config.everySeconds * 1000);
    this.timer.unref();
  }

  /** The last anchor, once more, then no more. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.anchorNow();
  }

  /** Anchors the head if it moved since the last anchor; one at a time. */
  anchorNow(): Promise<void> {
    this.running = this.running.then(() => this.writeAnchor()).catch((e: unknown) => {
      this.logger.error({ err: (e as Error).message, file: this.config.file }, 'anchoring the audit trail failed');
    });
    return this.running;
  }

  private async writeAnchor(): Promise<void> {
    const head = await auditHead(this.sql);
    if (!head || (this.last?.seq === head.seq && this.last.hash === head.hash)) return;
    const line = JSON.stringify(signAnchor(this.key, head));
    mkdirSync(path.dirname(this.config.file), { recursive: true });
    appendFileSync(this.config.file, line + '\n');
    this.last = head;
    this.onAnchor?.(line);
    this.logger.debug({ seq: head.seq }, 'audit trail anchored');
  }

  /** Says at start, loudly, when the trail no longer holds the last anchor written (the full check is `atrium audit verify`). */
  private async checkLastAnchor(): Promise<void> {
    const line = lastLineOf(this.config.file);
    if (line === undefined) return;
    const a = parseAnchorLine(line);
    if (typeof a === 'string' || !anchorSignatureHolds(this.key, a)) {
      this.logger.error({ file: this.config.file }, 'the last audit anchor is not one this key signed; run atrium audit verify');
      return;
    }
    const row = await this.sql.get<{ hash: string }>('SELECT hash FROM audit_events WHERE id = ?', [a.seq]);
    if (row?.hash !== a.hash) {
      this.logger.error({ file: this.config.file, seq: a.seq, anchoredAt: a.at }, 'the audit trail no longer holds its last anchored record: records were removed or rewritten; run atrium audit verify');
      return;
    }
    this.last = { seq: a.seq, hash: a.hash };
  }
}
