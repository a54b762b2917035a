/**
 * A test MSSanté operator on loopback: an SMTP submission server (the smtp-server library of
 * the nodemailer project: STARTTLS required, client certificate required and checked against
 * the test CA) delivering each accepted message into its recipient's Maildir, and Debian's
 * dovecot, run as a child process with its own configuration, serving those Maildirs over
 * IMAP with TLS and client certificates. Why not postfix too: docs/mssante.md.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { ImapFlow } from 'imapflow';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { freePort } from './rsyslog.ts';

const DOVECOT = '/usr/sbin/dovecot';

/** dovecot is installed and we may start it (it drops to its own users: root only). */
export const haveDovecot = existsSync(DOVECOT) && existsSync('/usr/bin/openssl') && process.getuid?.() === 0;

export interface MailServerOptions {
  dir: string;
  /** PEM paths: the CA that signed client certificates, the server's certificate and key. */
  ca: string;
  cert: string;
  key: string;
  /** Mailbox logins (addresses) and their password. */
  users: string[];
  password: string;
}

export class TestMailServers {
  smtpPort = 0;
  imapPort = 0;
  /** RCPT TO answered 550 (a mailbox that does not exist). */
  readonly unknown = new Set<string>();
  /** Messages accepted, raw, with their envelope. */
  readonly received: Array<{ from: string; to: string[]; raw: Buffer; clientCertificate?: string }> = [];
  private smtp: SMTPServer | undefined;
  private dovecot: ChildProcess | undefined;
  private readonly mailRoot: string;
  private readonly dovecotUid: number;
  private readonly dovecotGid: number;

  constructor(private readonly o: MailServerOptions) {
    this.mailRoot = path.join(o.dir, 'mail');
    this.dovecotUid = Number(execFileSync('id', ['-u', 'dovenull']).toString().trim());
    this.dovecotGid = Number(execFileSync('id', ['-g', 'dovenull']).toString().trim());
  }

  async start(): Promise<void> {
    this.smtpPort = await freePort();
    this.imapPort = await freePort();
    await this.startSmtp();
    await this.startDovecot();
  }

  private maildir(user: string): string {
    const dir = path.join(this.mailRoot, user);
    for (const sub of ['', 'new', 'cur', 'tmp']) {
      const d = path.join(dir, sub);
      if (!existsSync(d)) {
        mkdirSync(d, { recursive: true });
        chownSync(d, this.dovecotUid, this.dovecotGid);
      }
    }
    return dir;
  }

  /** Puts a message in a mailbox as a local delivery agent would (Maildir new/). */
  deliver(user: string, raw: Buffer | string): void {
    const file = path.join(this.maildir(user), 'new', `${Date.now()}.${randomUUID()}.atrium-test`);
    writeFileSync(file, raw);
    chownSync(file, this.dovecotUid, this.dovecotGid);
  }

  async startSmtp(): Promise<void> {
    const options: SMTPServerOptions = {
      secure: false, key: readFileSync(this.o.key), cert: readFileSync(this.o.cert), ca: readFileSync(this.o.ca),
      requestCert: true, rejectUnauthorized: true, authOptional: true, disabledCommands: ['AUTH'], hideSTARTTLS: false, logger: false,
      onMailFrom: (_address, session, cb) => {
        // Submission only over TLS with a client certificate the CA signed.
        if (!session.secure) return cb(Object.assign(new Error('STARTTLS first'), { responseCode: 530 }));
        cb();
      },
      onRcptTo: (address, _session, cb) => {
        if (this.unknown.has(address.address)) return cb(Object.assign(new Error(`5.1.1 <${address.address}>: mailbox unknown`), { responseCode: 550 }));
        cb();
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const raw = Buffer.concat(chunks);
          const to = session.envelope.rcptTo.map((r) => r.address);
          this.received.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to, raw });
          for (const user of to) if (this.o.users.includes(user)) this.deliver(user, raw);
          cb();
        });
      },
    };
    this.smtp = new SMTPServer(options);
    this.smtp.on('error', () => undefined); // a refused handshake is the client's problem, not the server's
    await new Promise<void>((resolve, reject) => {
      this.smtp!.once('error', reject);
      this.smtp!.listen(this.smtpPort, '127.0.0.1', () => resolve());
    });
  }

  /** Stops accepting connections (the operator's server is down). */
  async stopSmtp(): Promise<void> {
    const s = this.smtp;
    this.smtp = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private async startDovecot(): Promise<void> {
    const d = this.o.dir;
    for (const sub of ['run', 'state']) mkdirSync(path.join(d, sub), { recursive: true });
    // dovecot's auth process (its own user) reads the passwd file: a mkdtemp folder is 0700.
    for (const dir of [d, path.dirname(d)]) chmodSync(dir, 0o711);
    mkdirSync(this.mailRoot, { recursive: true });
    chownSync(this.mailRoot, this.dovecotUid, this.dovecotGid);
    for (const u of this.o.users) this.maildir(u);
    writeFileSync(path.join(d, 'passwd'), this.o.users.map((u) => `${u}:{PLAIN}${this.o.password}\n`).join(''));
    const conf = `
base_dir = ${d}/run
state_dir = ${d}/state
log_path = ${d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <${this.o.cert}
ssl_key = <${this.o.key}
ssl_ca = <${this.o.ca}
ssl_verify_client_cert = yes
ssl_require_crl = no
auth_ssl_require_client_cert = yes
auth_mechanisms = plain
mail_location = maildir:${this.mailRoot}/%u
first_valid_uid = ${this.dovecotUid}
last_valid_uid = ${this.dovecotUid}
passdb {
  driver = passwd-file
  args = ${d}/passwd
}
userdb {
  driver = static
  args = uid=dovenull gid=dovenull home=${this.mailRoot}/%u
}
service imap-login {
  chroot =
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = ${this.imapPort}
    ssl = yes
  }
}
service anvil {
  chroot =
}
`;
    writeFileSync(path.join(d, 'dovecot.conf'), conf);
    // -F: in the foreground, a child of the test; ended with it.
    this.dovecot = spawn(DOVECOT, ['-F', '-c', path.join(d, 'dovecot.conf')], { stdio: 'ignore' });
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        // Listening is enough: a login needs a client certificate, which the tests hold.
        await new Promise<void>((resolve, reject) => {
          const socket = net.connect(this.imapPort, '127.0.0.1', () => { socket.destroy(); resolve(); });
          socket.once('error', reject);
        });
        return;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`dovecot did not start: ${(e as Error).message}\n${existsSync(path.join(d, 'dovecot.log')) ? readFileSync(path.join(d, 'dovecot.log'), 'utf8') : ''}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** An IMAP session on a mailbox, with a client certificate (paths). */
  async imap(user: string, client: { cert: string; key: string }): Promise<ImapFlow> {
    const c = new ImapFlow({
      host: '127.0.0.1', port: this.imapPort, secure: true, logger: false, auth: { user, pass: this.o.password },
      tls: { ca: readFileSync(this.o.ca), cert: readFileSync(client.cert), key: readFileSync(client.key), rejectUnauthorized: true },
    });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  }

  /** Every message in a mailbox, raw. */
  async messages(user: string, client: { cert: string; key: string }): Promise<Buffer[]> {
    const c = await this.imap(user, client);
    const out: Buffer[] = [];
    try {
      const lock = await c.getMailboxLock('INBOX');
      try {
        const exists = c.mailbox ? c.mailbox.exists : 0;
        if (exists > 0) for await (const m of c.fetch('1:*', { source: true })) if (m.source) out.push(m.source);
      } finally {
        lock.release();
      }
    } finally {
      await c.logout();
    }
    return out;
  }

  async stop(): Promise<void> {
    await this.stopSmtp();
    const p = this.dovecot;
    if (p && p.exitCode === null) {
      await new Promise<void>((resolve) => {
        p.once('exit', () => resolve());
        p.kill('SIGTERM');
      });
    }
  }
}
