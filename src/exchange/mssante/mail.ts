/**
 * MSSanté transport: SMTP submission (STARTTLS required, the site's application mailbox
 * authenticated by its certificate as TLS client) with nodemailer, the mailbox's answers read
 * over IMAP (implicit TLS, same certificate) with imapflow, and those answers understood:
 * MDNs (RFC 8098, message/disposition-notification) and delivery status notifications
 * (RFC 3464, message/delivery-status: a bounce), parsed with mailparser. No hand-written
 * mail protocol here.
 */
import { readFileSync } from 'node:fs';
import type { MssanteConfig, MssanteSiteConfig } from '../../config/mssante-config.ts';

/** TLS material of one site's application mailbox. */
export interface MailboxCredentials {
  address: string;
  cert: Buffer;
  key: Buffer;
  passphrase?: string;
  ca?: Buffer;
  imapUser: string;
  imapPassword?: string;
}

export function mailboxCredentials(config: MssanteConfig, site: MssanteSiteConfig, env: Record<string, string | undefined> = process.env): MailboxCredentials {
  const passphrase = site.keyPassphraseEnv ? env[site.keyPassphraseEnv] : undefined;
  const imapPassword = site.imapPasswordEnv ? env[site.imapPasswordEnv] : undefined;
  return {
    address: site.address, cert: readFileSync(site.certFile), key: readFileSync(site.keyFile), ...(passphrase !== undefined ? { passphrase } : {}),
    ...(config.caFile ? { ca: readFileSync(config.caFile) } : {}), imapUser: site.imapUser ?? site.address, ...(imapPassword !== undefined ? { imapPassword } : {}),
  };
}

function tlsOf(c: MailboxCredentials, host: string): Record<string, unknown> {
  // An IP literal is no server name (RFC 6066): the certificate is still checked against it.
  const ip = /^[0-9.]+$|:/.test(host);
  return { cert: c.cert, key: c.key, ...(c.passphrase !== undefined ? { passphrase: c.passphrase } : {}), ...(c.ca ? { ca: c.ca } : {}), rejectUnauthorized: true, minVersion: 'TLSv1.2', ...(ip ? {} : { servername: host }) };
}

export interface OutgoingMessage {
  from: string;
  to: string;
  subject: string;
  text: string;
  messageId: string;
  headers: Record<string, string | string[]>;
  attachments: Array<{ filename: string; content: Buffer; contentType: string }>;
}

/** What the operator's server answered: accepted, or refused (permanent: 5xx) or not now. */
export class SubmissionRefused extends Error {
  constructor(message: string, readonly permanent: boolean, readonly responseCode?: number) {
    super(message);
  }
}

/** Submits one message; throws SubmissionRefused when the server refuses the recipient or the message. */
export async function submit(config: MssanteConfig, c: MailboxCredentials, m: OutgoingMessage): Promise<{ response: string }> {
  // The mail libraries are loaded at their first use, not at start (imapflow, mailparser and nodemailer: about 0.8 s of CPU).
  const { default: nodemailer } = await import('nodemailer');
  const transport = nodemailer.createTransport({
    host: config.smtp.host, port: config.smtp.port, secure: false, requireTLS: true, tls: tlsOf(c, config.smtp.host),
    connectionTimeout: config.timeoutMs, greetingTimeout: config.timeoutMs, socketTimeout: config.timeoutMs,
    name: c.address.split('@')[1] ?? 'atrium',
  });
  try {
    const info = await transport.sendMail({
      from: m.from, to: m.to, subject: m.subject, text: m.text, messageId: m.messageId, headers: m.headers, attachments: m.attachments,
      envelope: { from: m.from, to: [m.to] },
    });
    if (info.rejected.length > 0) throw new SubmissionRefused(`${m.to} refused: ${info.response}`, true);
    return { response: info.response };
  } catch (e) {
    if (e instanceof SubmissionRefused) throw e;
    const err = e as Error & { responseCode?: number; response?: string; code?: string };
    if (typeof err.responseCode === 'number') {
      throw new SubmissionRefused(`${err.response ?? err.message}`, err.responseCode >= 500, err.responseCode);
    }
    throw new SubmissionRefused(`${err.code ? `${err.code}: ` : ''}${err.message}`, false);
  } finally {
    transport.close();
  }
}

export type MailAnswer =
  | { kind: 'mdn'; originalMessageId: string; disposition: string; error?: { code: string; label: string } }
  | { kind: 'dsn'; originalMessageId?: string; recipient?: string; action: string; status?: string; diagnostic?: string };

const field = (block: string, name: string): string | undefined => {
  const m = new RegExp(`^${name}:[ \\t]*(.*(?:\\r?\\n[ \\t].*)*)`, 'im').exec(block);
  return m ? m[1]!.replace(/\r?\n[ \t]+/g, ' ').trim() : undefined;
};

/** An MDN or a DSN about one of our messages; undefined for any other message. */
export async function parseAnswer(raw: Buffer): Promise<MailAnswer | undefined> {
  const { simpleParser } = await import('mailparser');
  const parsed = await simpleParser(raw, { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true });
  const part = (type: string) => parsed.attachments.find((a) => a.contentType.toLowerCase() === type)?.content.toString('utf8');
  const headersPart = part('text/rfc822-headers') ?? part('message/rfc822');
  const mdn = part('message/disposition-notification');
  if (mdn !== undefined) {
    const originalMessageId = field(mdn, 'Original-Message-ID') ?? (headersPart ? field(headersPart, 'Message-ID') : undefined);
    const disposition = field(mdn, 'Disposition');
    if (!originalMessageId || !disposition) return undefined;
    // "action-mode/sending-mode; type[/modifier]": processed, displayed, deleted..., error as modifier.
    const type = (disposition.split(';')[1] ?? '').trim().toLowerCase();
    const why = field(mdn, 'Error') ?? field(mdn, 'Failure');
    const failed = type.includes('/error') || type.startsWith('deleted') || type.startsWith('failed') || why !== undefined;
    if (!failed) return { kind: 'mdn', originalMessageId, disposition: type };
    const m = /^([A-Za-z0-9._-]+)\s*[:\-–]?\s*(.*)$/.exec(why ?? '');
    return { kind: 'mdn', originalMessageId, disposition: type, error: m && m[2] ? { code: m[1]!, label: m[2] } : { code: 'error', label: why ?? type } };
  }
  // mailparser inlines a message/delivery-status part into the text: the report type says it is there.
  const contentType = parsed.headers.get('content-type') as { value?: string; params?: Record<string, string> } | undefined;
  const isDsn = contentType?.value === 'multipart/report' && contentType.params?.['report-type']?.toLowerCase() === 'delivery-status';
  const dsn = part('message/delivery-status') ?? (isDsn ? parsed.text : undefined);
  if (dsn !== undefined) {
    // The per-recipient block follows the per-message one, after a blank line.
    const action = field(dsn, 'Action')?.toLowerCase() ?? 'failed';
    const recipient = field(dsn, 'Final-Recipient')?.replace(/^rfc822;\s*/i, '');
    const status = field(dsn, 'Status');
    const diagnostic = field(dsn, 'Diagnostic-Code');
    const originalMessageId = headersPart ? field(headersPart, 'Message-ID') : undefined;
    return { kind: 'dsn', action, ...(originalMessageId ? { originalMessageId } : {}), ...(recipient ? { recipient } : {}), ...(status ? { status } : {}), ...(diagnostic ? { diagnostic } : {}) };
  }
  return undefined;
}

/**
 * Reads the unseen messages of the mailbox's INBOX, hands each to `handle`, and flags it seen
 * once handled (an answer not yet recorded, because the handler threw, is read again next time).
 */
export async function readAnswers(config: MssanteConfig, c: MailboxCredentials, handle: (raw: Buffer) => Promise<void>): Promise<number> {
  const { ImapFlow } = await import('imapflow');
  const client = new ImapFlow({
    host: config.imap.host, port: config.imap.port, secure: true, tls: tlsOf(c, config.imap.host) as object,
    auth: { user: c.imapUser, pass: c.imapPassword ?? '' }, logger: false, connectionTimeout: config.timeoutMs, socketTimeout: config.timeoutMs * 10,
  });
  // imapflow reports a dropped connection as an event; without a listener it would be thrown at the process.
  client.on('error', () => undefined);
  await client.connect();
  let handled = 0;
  try {
    const lock = await client.getMailboxLock('INBOX');
    try {
      const unseen = await client.search({ seen: false }, { uid: true });
      for (const uid of unseen || []) {
        const message = await client.fetchOne(String(uid), { source: true }, { uid: true });
        if (!message || !message.source) continue;
        await handle(message.source);
        await client.messageFlagsAdd(String(uid), ['\\Seen'], { uid: true });
        handled++;
      }
    } finally {
      lock.release();
    }
  } finally {
    await client.logout().catch(() => client.close());
  }
  return handled;
}
