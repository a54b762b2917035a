/**
 * Hardening (issue 4, part 6) through real sockets: secure headers on every answer, request
 * limits (body, URL, headers, slow clients), safe serving of the portal's files against path
 * traversal, HTTPS with TLS 1.2 at least, and machine clients known by their certificate.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stowBody } from './support/stow.ts';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes, X509Certificate } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { portalContentSecurityPolicy } from '../src/api/security-headers.ts';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  protocol?: string | null;
}

/** One request on its own connection; the path is sent exactly as given (no normalisation). */
function send(port: number, options: {
  path: string; method?: string; headers?: Record<string, string | number>; body?: Buffer | string;
  tls?: https.RequestOptions;
}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = (options.tls ? https : http).request({
      host: '127.0.0.1', port, path: options.path, method: options.method ?? 'GET',
      headers: options.headers, agent: false, ...options.tls,
    }, (res) => {
      const chunks: Buffer[] = [];
      const protocol = options.tls ? (res.socket as tls.TLSSocket).getProtocol() : undefined;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('latin1'), protocol }));
      res.on('error', reject);
    });
    request.on('error', reject);
    request.end(options.body);
  });
}

/** Writes bytes on a bare socket and collects what comes back until the server closes it. */
function rawExchange(port: number, write: (socket: net.Socket) => void, timeoutMs = 10_000): Promise<{ text: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server kept the connection open for ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('connect', () => write(socket));
    socket.on('data', (c) => chunks.push(c));
    // The server may cut the connection while we still write: what it answered is what counts.
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closedAfterMs: Date.now() - started });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function assertSecureHeaders(a: Answer, what: string): void {
  const h = a.headers;
  assert.equal(h['x-content-type-options'], 'nosniff', what);
  assert.equal(h['referrer-policy'], 'no-referrer', what);
  assert.equal(h['x-frame-options'], 'DENY', what);
  assert.match(String(h['content-security-policy']), /frame-ancestors 'none'/, what);
  assert.equal(h['cross-origin-opener-policy'], 'same-origin', what);
  assert.equal(h['cross-origin-resource-policy'], 'same-origin', what);
  assert.match(String(h['permissions-policy']), /camera=\(\)/, what);
  assert.equal(h['x-powered-by'], undefined, what);
  assert.equal(h.server, undefined, what);
}

/** A STOW-RS body by hand. */
const multipartBody = (file: Buffer) => stowBody([file], 'atrium-hardening');

describe('HTTP hardening', () => {
  let atrium: RunningAtrium;
  let port: number;
  const work = mkdtempSync(path.join(tmpdir(), 'atrium-hardening-'));
  const portal = path.join(work, 'portal');
  const secret = `TOP-SECRET-${randomBytes(8).toString('hex')}`;
  const auth = () => ({ Authorization: `Bearer ${atrium.tokens['CHU-NORD']}` });

  before(async () => {
    mkdirSync(path.join(portal, 'assets'), { recursive: true });
    writeFileSync(path.join(portal, 'index.html'), '<!doctype html><title>Atrium</title><script type="module" src="/app/assets/index-B3xZ9q1f.js"></script>');
    writeFileSync(path.join(portal, 'assets', 'index-B3xZ9q1f.js'), 'console.log("atrium");');
    writeFileSync(path.join(portal, 'logo.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
    writeFileSync(path.join(portal, '.env'), secret);
    // Beside the root: a secret file, and a folder whose name starts like the root's.
    writeFileSync(path.join(work, 'secret.txt'), secret);
    mkdirSync(path.join(work, 'portal-private'));
    writeFileSync(path.join(work, 'portal-private', 'data.txt'), secret);
    symlinkSync(path.join(work, 'secret.txt'), path.join(portal, 'link-out.txt'));
    symlinkSync(path.join(work, 'portal-private'), path.join(portal, 'private'));
    symlinkSync('/etc', path.join(portal, 'etc'));
    symlinkSync(path.join(portal, 'assets', 'index-B3xZ9q1f.js'), path.join(portal, 'linked.js'));
    atrium = await startAtrium({
      configure: (config) => {
        config.http.portalDir = portal;
        config.http.headersTimeoutMs = 500;
        config.http.bodyTimeoutMs = 500;
      },
    });
    port = (atrium.app.server.address() as net.AddressInfo).port;
  });

  after(async () => {
    await atrium?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('sends the secure headers on /health, an authenticated QIDO-RS, a 401 and a 404', async () => {
    const health = await send(port, { path: '/health' });
    assert.equal(health.status, 200);
    assertSecureHeaders(health, '/health');
    assert.equal(health.headers['strict-transport-security'], undefined, 'no HSTS over plain HTTP');

    const qido = await send(port, { path: '/dicom-web/studies', headers: { ...auth(), Accept: 'application/dicom+json' } });
    assert.ok(qido.status === 200 || qido.status === 204, `QIDO-RS answered ${qido.status}`);
    assertSecureHeaders(qido, 'QIDO-RS');
    assert.equal(qido.headers['cache-control'], 'no-store');
    assert.match(String(qido.headers['content-security-policy']), /default-src 'none'/);

    const unauthenticated = await send(port, { path: '/dicom-web/studies' });
    assert.equal(unauthenticated.status, 401);
    assertSecureHeaders(unauthenticated, '401');
    assert.equal(unauthenticated.headers['cache-control'], 'no-store');

    const missing = await send(port, { path: '/api/no-such-thing', headers: auth() });
    assert.equal(missing.status, 404);
    assert.equal(missing.headers['content-type'], 'application/problem+json; charset=utf-8');
    assertSecureHeaders(missing, '404');
    assert.equal(missing.headers['cache-control'], 'no-store');

    const badUrl = await send(port, { path: '/dicom-web/studies/%' , headers: auth() });
    assert.equal(badUrl.status, 400);
    assertSecureHeaders(badUrl, 'malformed URL');
  });

  it('serves the portal: index.html for /app/ and client-side routes, hashed assets cached for a year, the portal CSP on HTML', async () => {
    const root = await send(port, { path: '/', headers: auth() });
    assert.equal(root.status, 302);
    assert.equal(root.headers.location, '/app/');

    const index = await send(port, { path: '/app/', headers: auth() });
    assert.equal(index.status, 200);
    assert.equal(index.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(index.body, /<title>Atrium<\/title>/);
    assert.equal(index.headers['content-security-policy'], portalContentSecurityPolicy);
    assert.equal(index.headers['cache-control'], 'no-cache');
    assertSecureHeaders(index, 'index.html');

    const route = await send(port, { path: '/app/studies/1.2.3/viewer?x=1', headers: auth() });
    assert.equal(route.status, 200);
    assert.equal(route.body, index.body, 'a client-side route gets index.html');

    const asset = await send(port, { path: '/app/assets/index-B3xZ9q1f.js', headers: auth() });
    assert.equal(asset.status, 200);
    assert.equal(asset.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal(asset.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.equal(asset.body, 'console.log("atrium");');
    assert.match(String(asset.headers['content-security-policy']), /default-src 'none'/, 'the strict baseline, not the page policy');
    const worker = await send(port, { path: '/app/assets/index-B3xZ9q1f.js', headers: { ...auth(), 'Sec-Fetch-Dest': 'worker' } });
    assert.equal(worker.headers['content-security-policy'], portalContentSecurityPolicy, 'a worker runs under its script\'s policy: the portal\'s');

    const head = await send(port, { path: '/app/assets/index-B3xZ9q1f.js', method: 'HEAD', headers: auth() });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String('console.log("atrium");'.length));
    assert.equal(head.body, '');

    const svg = await send(port, { path: '/app/logo.svg', headers: auth() });
    assert.equal(svg.headers['content-type'], 'image/svg+xml');
    assert.equal(svg.headers['cache-control'], 'no-cache', 'not hashed: revalidated');
    const revalidated = await send(port, { path: '/app/logo.svg', headers: { ...auth(), 'If-None-Match': String(svg.headers.etag) } });
    assert.equal(revalidated.status, 304);

    const inside = await send(port, { path: '/app/linked.js', headers: auth() });
    assert.equal(inside.status, 200, 'a symlink that stays inside the root is followed');

    const missingAsset = await send(port, { path: '/app/assets/nothing-here.js', headers: auth() });
    assert.equal(missingAsset.status, 404, 'a missing file with an extension is not index.html');
  });

  it('refuses path traversal on the portal route: 400 or 404, never a file outside the root', async () => {
    const attempts = [
      '/app/..%2f..%2fsecret.txt', '/app/..%2fsecret.txt', '/app/%2e%2e/secret.txt', '/app/%2e%2e%2fsecret.txt',
      '/app/%252e%252e%252fsecret.txt', '/app/%252e%252e/secret.txt', '/app/..%5csecret.txt', '/app/..\\secret.txt',
      '/app/assets/..\\..\\..\\secret.txt', '/app/../secret.txt', '/app/assets/../../secret.txt', '/app/./index.html',
      '/app/index.html%00.js', '/app/secret.txt%00', '/app/%00', '/app/link-out.txt', '/app/private/data.txt',
      '/app/etc/passwd', '/app/etc/hostname', '/app//etc/passwd', '/app/%2fetc%2fpasswd', '/app/C:%5cWindows%5cwin.ini',
      '/app/.env', '/app/%2eenv', `/app/${'a'.repeat(4_000)}.js`, `/app/${'../'.repeat(1_000)}etc/passwd`,
      '/app/%c0%ae%c0%ae/secret.txt', '/app/%uff0e%uff0e/secret.txt',
    ];
    const passwd = existsSync('/etc/passwd') ? readFileSync('/etc/passwd', 'latin1').split('\n')[0]! : 'root:x:0:0';
    for (const attempt of attempts) {
      const a = await send(port, { path: attempt, headers: auth() });
      assert.ok(a.status === 400 || a.status === 404, `${attempt.slice(0, 60)} answered ${a.status}`);
      assert.ok(!a.body.includes(secret), `${attempt.slice(0, 60)} leaked the secret`);
      assert.ok(!a.body.includes(passwd), `${attempt.slice(0, 60)} leaked /etc/passwd`);
      assertSecureHeaders(a, attempt.slice(0, 60));
    }
  });

  it('refuses path traversal on DICOMweb routes', async () => {
    const attempts = [
      '/..%2f..%2fetc%2fpasswd', '/dicom-web/..%2f..%2fetc%2fpasswd', '/dicom-web/studies/..%2f..%2fetc%2fpasswd',
      '/dicom-web/studies/%2e%2e%2f%2e%2e%2fetc%2fpasswd/metadata', '/dicom-web/studies/%2e%2e/%2e%2e/etc/passwd',
      '/dicom-web/studies/%252e%252e%252fetc%252fpasswd/series', '/dicom-web/studies/..%5c..%5cetc%5cpasswd/metadata',
      '/dicom-web/studies/1.2.3%00/metadata', '/dicom-web/studies/1.2.3/series/..%2f..%2f..%2fsecret.txt/instances',
      `/dicom-web/studies/${'1.'.repeat(3_000)}1/metadata`,
    ];
    for (const attempt of attempts) {
      const a = await send(port, { path: attempt, headers: { ...auth(), Accept: 'application/dicom+json' } });
      assert.ok(a.status === 400 || a.status === 404, `${attempt.slice(0, 60)} answered ${a.status}`);
      assert.ok(!a.body.includes(secret) && !a.body.includes('root:x:0'), `${attempt.slice(0, 60)} leaked a file`);
      assertSecureHeaders(a, attempt.slice(0, 60));
    }
  });

  it('answers 413 problem+json to a 2 MiB JSON body, declared or chunked', async () => {
    const big = JSON.stringify({ StudyInstanceUID: '1.2.3', PatientID: 'X', reason: 'x'.repeat(2 * 1024 * 1024) });
    const declared = await send(port, {
      path: '/api/corrections/study-move', method: 'POST', body: big,
      headers: { ...auth(), 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(big) },
    });
    assert.equal(declared.status, 413);
    assert.equal(declared.headers['content-type'], 'application/problem+json; charset=utf-8');
    assert.equal(JSON.parse(declared.body).status, 413);
    assertSecureHeaders(declared, '413');
    const chunked = await send(port, {
      path: '/api/corrections/study-move', method: 'POST', body: big,
      headers: { ...auth(), 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' },
    });
    assert.equal(chunked.status, 413);
    // Just under the limit goes through to the route (which refuses the study: it does not exist).
    const small = JSON.stringify({ StudyInstanceUID: '1.2.3', PatientID: 'X', reason: 'a reason' });
    const routed = await send(port, {
      path: '/api/corrections/study-move', method: 'POST', body: small,
      headers: { ...auth(), 'Content-Type': 'application/json' },
    });
    assert.notEqual(routed.status, 413);
  });

  it('answers 414 to a 9 KiB URL, before authentication', async () => {
    const long = `/dicom-web/studies?PatientName=${'A'.repeat(9 * 1024)}`;
    const a = await send(port, { path: long });
    assert.equal(a.status, 414);
    assert.equal(a.headers['content-type'], 'application/problem+json; charset=utf-8');
    assertSecureHeaders(a, '414');
    const justUnder = await send(port, { path: `/dicom-web/studies?PatientName=${'A'.repeat(7 * 1024)}`, headers: auth() });
    assert.notEqual(justUnder.status, 414);
  });

  it('answers 431 to a header block over 16 KiB', async () => {
    const { text } = await rawExchange(port, (s) => s.write(`GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: ${'p'.repeat(20 * 1024)}\r\n\r\n`));
    assert.match(text, /^HTTP\/1\.1 431 /);
    const fits = await send(port, { path: '/health', headers: { 'X-Padding': 'p'.repeat(10 * 1024) } });
    assert.equal(fits.status, 200);
  });

  it('closes a connection whose headers trickle in slower than headersTimeout (slow-loris)', async () => {
    const { text } = await rawExchange(port, (s) => {
      s.write('GET /health HTTP/1.1\r\nHost: x\r\n');
      const drip = setInterval(() => s.writable ? s.write('X-Slow: 1\r\n') : clearInterval(drip), 100);
      s.on('close', () => clearInterval(drip));
    }, 5_000);
    assert.match(text, /^HTTP\/1\.1 408 /, 'Node answers 408 Request Timeout');
  });

  it('answers 408 and closes the connection when a JSON body stalls past bodyTimeout', async () => {
    const { text } = await rawExchange(port, (s) => s.write(
      `POST /api/corrections/study-move HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${atrium.tokens['CHU-NORD']}\r\n`
      + 'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"StudyInstanceUID":',
    ), 5_000);
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.match(text, /application\/problem\+json/);
    assert.match(text, /x-content-type-options: nosniff/i);
  });

  it('still takes a STOW-RS upload that lasts longer than bodyTimeout, and WADO-RS answers carry the headers', async () => {
    const obj = syntheticInstance({ PatientID: 'HARD-1', Rows: 64, Columns: 64 });
    const { body, contentType } = multipartBody(obj.file);
    const answer = await new Promise<Answer>((resolve, reject) => {
      const request = http.request({
        host: '127.0.0.1', port, path: '/dicom-web/studies', method: 'POST', agent: false,
        headers: { ...auth(), 'Content-Type': contentType, Accept: 'application/dicom+json', 'Content-Length': body.length },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      });
      request.on('error', reject);
      void (async () => {
        // Four pieces 400 ms apart: 1.2 s in all, more than twice the 500 ms body deadline.
        const piece = Math.ceil(body.length / 4);
        for (let i = 0; i < 4; i++) {
          if (i > 0) await sleep(400);
          request.write(body.subarray(i * piece, (i + 1) * piece));
        }
        request.end();
      })();
    });
    assert.equal(answer.status, 200, answer.body);
    assert.equal(answer.headers['cache-control'], 'no-store');
    // WADO-RS instances are written straight to the socket: the headers must be there all the same.
    const wado = await send(port, {
      path: `/dicom-web/studies/${obj.uids.study}`,
      headers: { ...auth(), Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
    });
    assert.equal(wado.status, 200);
    assertSecureHeaders(wado, 'WADO-RS');
    assert.equal(wado.headers['cache-control'], 'no-store');
  });
});

const haveOpenssl = existsSync('/usr/bin/openssl');

/** A CA, a server certificate for 127.0.0.1/localhost, and client certificates: <name>.key / <name>.crt in `dir`. */
function makeCertificates(dir: string): void {
  const ossl = (args: string[]) => execFileSync('/usr/bin/openssl', args, { cwd: dir, stdio: 'pipe' });
  ossl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=Atrium test CA']);
  writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  for (const name of ['server', 'ris', 'stranger']) {
    ossl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    ossl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2',
      ...(name === 'server' ? ['-extfile', 'server.ext'] : [])]);
  }
  // Same subject as the pinned client, but signed by no one we trust.
  ossl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'impostor.key', '-out', 'impostor.crt', '-days', '2', '-subj', '/CN=ris']);
}

describe('HTTPS and mutual TLS', { skip: !haveOpenssl && 'openssl is not installed' }, () => {
  let atrium: RunningAtrium;
  let port: number;
  const certs = mkdtempSync(path.join(tmpdir(), 'atrium-https-'));
  const c = (f: string) => path.join(certs, f);
  const fingerprint = (f: string) => new X509Certificate(readFileSync(c(f))).fingerprint256;
  const ca = () => readFileSync(c('ca.crt'));
  const clientCert = (name: string) => ({ cert: readFileSync(c(`${name}.crt`)), key: readFileSync(c(`${name}.key`)) });

  before(async () => {
    makeCertificates(certs);
    atrium = await startAtrium({
      configure: (config) => {
        config.http.tls = {
          certFile: c('server.crt'), keyFile: c('server.key'), caFile: c('ca.crt'), requestClientCertificate: true, minVersion: 'TLSv1.2',
          clients: [
            { name: 'ris-chu-nord', certificateSha256: fingerprint('ris.crt').replace(/:/g, '').toLowerCase(), site: 'CHU-NORD', territory: false },
            // Pinned, but self-signed: the pin alone must not be enough.
            { name: 'impostor', certificateSha256: fingerprint('impostor.crt').replace(/:/g, '').toLowerCase(), site: 'CLIN-SUD', territory: true },
          ],
        };
      },
    });
    port = (atrium.app.server.address() as net.AddressInfo).port;
  });

  after(async () => {
    await atrium?.close();
    rmSync(certs, { recursive: true, force: true });
  });

  it('serves HTTPS to a client that verifies the server against the CA, with HSTS and TLS 1.2 or later', async () => {
    const a = await send(port, { path: '/health', tls: { ca: ca(), servername: 'localhost' } });
    assert.equal(a.status, 200);
    assert.equal(a.headers['strict-transport-security'], 'max-age=31536000');
    assertSecureHeaders(a, 'HTTPS /health');
    assert.ok(a.protocol === 'TLSv1.3' || a.protocol === 'TLSv1.2', String(a.protocol));
    const tls12 = await send(port, { path: '/health', tls: { ca: ca(), servername: 'localhost', maxVersion: 'TLSv1.2' } });
    assert.equal(tls12.protocol, 'TLSv1.2');
    // And the DICOMweb base URL the tests use says https.
    assert.match(atrium.dicomweb, /^https:/);
  });

  it('refuses a client that speaks TLS 1.1 at most, and a TLS 1.2 client offering only CBC suites', async () => {
    const handshake = (options: tls.ConnectionOptions) => new Promise<string>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ca: ca(), servername: 'localhost', ...options }, () => {
        socket.destroy();
        resolve('connected');
      });
      socket.on('error', (e: Error & { code?: string }) => resolve(e.code ?? e.message));
    });
    // SECLEVEL=0: this OpenSSL would not even offer TLS 1.1 otherwise; the refusal must come from the server.
    const old = await handshake({ minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    assert.match(old, /ALERT_PROTOCOL_VERSION/);
    const cbc = await handshake({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA:AES128-SHA' });
    assert.match(cbc, /ALERT_HANDSHAKE_FAILURE|NO_SHARED_CIPHER/);
    assert.equal(await handshake({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }), 'connected', 'the same client with TLS 1.2 gets in');
  });

  it('gives no HTTP answer to plain HTTP on the HTTPS port', async () => {
    await assert.rejects(send(port, { path: '/health' }));
    const { text } = await rawExchange(port, (s) => s.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'), 5_000);
    assert.doesNotMatch(text, /HTTP\/1\.1/);
  });

  it('knows a machine client by a CA-signed certificate it is pinned to, and no one else', async () => {
    const query = (cert?: { cert: Buffer; key: Buffer }) => send(port, { path: '/dicom-web/studies', tls: { ca: ca(), servername: 'localhost', ...cert } });
    const ris = await query(clientCert('ris'));
    assert.equal(ris.status, 200, ris.body);
    const last = await atrium.archive.index.sql.get<{ actor: string; actor_kind: string; site: string }>('SELECT actor, actor_kind, site FROM audit_events ORDER BY id DESC LIMIT 1');
    assert.deepEqual({ ...last }, { actor: 'ris-chu-nord', actor_kind: 'api-client', site: 'CHU-NORD' });
    assert.equal((await query(clientCert('stranger'))).status, 401, 'signed by the CA but pinned by no client');
    assert.equal((await query(clientCert('impostor'))).status, 401, 'pinned but self-signed');
    assert.equal((await query()).status, 401, 'no certificate');
  });
});

describe('client addresses behind a proxy', () => {
  const lastSource = async (a: RunningAtrium) => (await a.archive.index.sql.get<{ source: string }>('SELECT source FROM audit_events ORDER BY id DESC LIMIT 1'))?.source;
  const query = (a: RunningAtrium) => fetch(`${a.dicomweb}/studies`, { headers: { authorization: `Bearer ${a.tokens['CHU-NORD']}`, 'x-forwarded-for': '203.0.113.7' } });

  it('believes X-Forwarded-For from a configured proxy only', async () => {
    const direct = await startAtrium();
    const proxied = await startAtrium({ configure: (c) => { c.http.trustProxy = ['127.0.0.1']; } });
    try {
      assert.equal((await query(direct)).status, 200);
      assert.equal(await lastSource(direct), '127.0.0.1', 'a header anyone can send is not believed');
      assert.equal((await query(proxied)).status, 200);
      assert.equal(await lastSource(proxied), '203.0.113.7');
    } finally {
      await direct.close();
      await proxied.close();
    }
  });
});
