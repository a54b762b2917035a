/**
 * A real syslog collector for the tests: Debian's rsyslogd with its GnuTLS network stream
 * driver, run as a child process (never the system daemon) with its own configuration, PID
 * file and work folder, listening on a free loopback port with TLS only (RFC 5425) and
 * writing each received message, raw, one a line, to a file.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const RSYSLOGD = '/usr/sbin/rsyslogd';

/** rsyslogd and its gtls driver (package rsyslog-gnutls) are installed. */
export const haveRsyslogTls = existsSync(RSYSLOGD) && existsSync('/usr/bin/openssl') && (() => {
  try {
    return readdirSync('/usr/lib').some((d) => existsSync(path.join('/usr/lib', d, 'rsyslog', 'lmnsd_gtls.so')));
  } catch {
    return false;
  }
})();

/**
 * In `dir`, a CA (<ca>.crt/.key) and certificates it signed, <name>.crt/.key: a server one
 * naming 127.0.0.1 and localhost, a client one for mutual TLS.
 */
export function makeCertificates(dir: string, ca: string, certs: Array<{ name: string; usage: 'server' | 'client' }>): void {
  mkdirSync(dir, { recursive: true });
  const ossl = (args: string[]) => execFileSync('/usr/bin/openssl', args, { cwd: dir, stdio: 'pipe' });
  ossl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '2', '-subj', `/CN=${ca}`]);
  for (const { name, usage } of certs) {
    writeFileSync(path.join(dir, `${name}.ext`), usage === 'server'
      ? 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n'
      : 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
    ossl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    ossl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`]);
  }
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface Collector {
  port: number;
  /** The file each received message is written to, one a line. */
  output: string;
  /** What rsyslogd said on stderr (its own errors, e.g. a refused handshake). */
  log(): string;
  /** The messages received so far (raw RFC 5424 messages, without framing). */
  messages(): Buffer[];
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * An rsyslogd listening on 127.0.0.1:port over TLS with the given server certificate.
 * `clientCA` set: clients must present a certificate signed by it (AuthMode x509/certvalid);
 * otherwise AuthMode anon (the client verifies the server, not the reverse).
 */
export function rsyslogCollector(o: { dir: string; port: number; ca: string; cert: string; key: string; requireClientCertificate: boolean }): Collector {
  mkdirSync(path.join(o.dir, 'work'), { recursive: true });
  const output = path.join(o.dir, 'received.log');
  const conf = path.join(o.dir, 'rsyslog.conf');
  const pidFile = path.join(o.dir, 'rsyslogd.pid');
  const q = (s: string) => JSON.stringify(s);
  writeFileSync(conf, `
global(
  workDirectory=${q(path.join(o.dir, 'work'))}
  maxMessageSize="1m"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile=${q(o.ca)}
  defaultNetstreamDriverCertFile=${q(o.cert)}
  defaultNetstreamDriverKeyFile=${q(o.key)}
)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode=${q(o.requireClientCertificate ? 'x509/certvalid' : 'anon')})
template(name="atriumRaw" type="string" string="%rawmsg%\\n")
ruleset(name="atrium") {
  action(type="omfile" file=${q(output)} template="atriumRaw")
}
input(type="imtcp" address="127.0.0.1" port="${o.port}" ruleset="atrium")
`);
  let child: ChildProcess | undefined;
  let stderr = '';
  const collector: Collector = {
    port: o.port,
    output,
    log: () => stderr,
    messages: () => {
      if (!existsSync(output)) return [];
      const bytes = readFileSync(output);
      const lines: Buffer[] = [];
      for (let start = 0; start < bytes.length;) {
        const end = bytes.indexOf(0x0a, start);
        if (end < 0) break; // a line still being written
        lines.push(bytes.subarray(start, end));
        start = end + 1;
      }
      return lines;
    },
    async start() {
      child = spawn(RSYSLOGD, ['-n', '-f', conf, '-i', pidFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (d: Buffer) => { stderr += d.toString(); });
      child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
      const exited = new Promise<never>((_, reject) => child!.once('exit', (code) => reject(new Error(`rsyslogd exited (${code}): ${stderr}`))));
      exited.catch(() => {});
      // Listening once a TCP connection is accepted.
      const deadline = Date.now() + 15_000;
      for (;;) {
        const ok = await new Promise<boolean>((resolve) => {
          const s = net.connect(o.port, '127.0.0.1');
          s.once('connect', () => { s.destroy(); resolve(true); });
          s.once('error', () => resolve(false));
        });
        if (ok) return;
        if (Date.now() > deadline) throw new Error(`rsyslogd did not listen on ${o.port}: ${stderr}`);
        await Promise.race([new Promise((r) => setTimeout(r, 100)), exited]);
      }
    },
    async stop() {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null) return;
      const exited = new Promise((resolve) => c.once('exit', resolve));
      c.kill('SIGTERM');
      await exited;
    },
  };
  return collector;
}
