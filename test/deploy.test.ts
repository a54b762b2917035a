/**
 * The deployment files of deploy/: the systemd unit passes systemd's own verification, and
 * the example nginx configuration, run as written (only its addresses, ports and
 * certificate paths changed), terminates TLS in front of Atrium: STOW-RS and QIDO-RS go
 * through it, Atrium builds its URLs from the forwarded protocol and host, and the address
 * written into the audit trail is the client's own, whatever X-Forwarded-For it sent.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { freePort } from './support/dcmtk.ts';
import { stowBody } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';

const root = path.resolve(import.meta.dirname, '..');
const nginxBinary = '/usr/sbin/nginx';
const haveNginx = existsSync(nginxBinary) && existsSync('/usr/bin/openssl');
const haveSystemd = existsSync('/usr/bin/systemd-analyze');
if (!haveNginx) console.warn('\n*** nginx or openssl is not installed: the reverse proxy test is SKIPPED (.ci/run installs them). ***\n');

describe('the systemd unit', { skip: !haveSystemd && 'systemd-analyze is not installed' }, () => {
  it('passes systemd-analyze verify, and a unit with a misspelt key does not', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'atrium-unit-'));
    try {
      const unit = readFileSync(path.join(root, 'deploy/atrium.service'), 'utf8');
      assert.match(unit, /^ExecStart=\/usr\/bin\/node \/opt\/atrium\/bin\/atrium\.mjs serve$/m, 'the unit runs the compiled CLI');
      writeFileSync(path.join(dir, 'atrium.service'), unit);
      execFileSync('systemd-analyze', ['verify', '--man=no', path.join(dir, 'atrium.service')], { stdio: 'pipe' });
      writeFileSync(path.join(dir, 'broken.service'), unit.replace('ExecStart=', 'ExecStrat='));
      assert.throws(() => execFileSync('systemd-analyze', ['verify', '--man=no', path.join(dir, 'broken.service')], { stdio: 'pipe' }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: Buffer }

describe('the example reverse proxy (nginx) in front of Atrium', { skip: !haveNginx && 'nginx or openssl is not installed' }, () => {
  let atrium: RunningAtrium;
  let nginx: ChildProcess;
  let dir: string;
  let tlsPort: number;
  let plainPort: number;
  let ca: Buffer;

  const request = (method: string, urlPath: string, headers: Record<string, string> = {}, body?: Buffer): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = https.request({
        host: '127.0.0.1', port: tlsPort, path: urlPath, method, headers: { host: 'pacs.example.org', ...headers }, ca, servername: 'pacs.example.org', agent: false,
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
      req.end(body);
    });

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'atrium-nginx-'));
    execFileSync('/usr/bin/openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=pacs.example.org', '-addext', 'subjectAltName=DNS:pacs.example.org',
      '-keyout', path.join(dir, 'privkey.pem'), '-out', path.join(dir, 'fullchain.pem')], { stdio: 'pipe' });
    ca = readFileSync(path.join(dir, 'fullchain.pem'));
    atrium = await startAtrium({ configure: (c) => { c.http.trustProxy = ['127.0.0.1']; } });
    const atriumPort = (atrium.app.server.address() as net.AddressInfo).port;
    tlsPort = await freePort();
    plainPort = await freePort();
    // The example file as written; only what a site changes anyway is changed.
    const site = readFileSync(path.join(root, 'deploy/nginx-atrium.conf'), 'utf8')
      .replace('server 127.0.0.1:8042;', `server 127.0.0.1:${atriumPort};`)
      .replace('listen 443 ssl http2;', `listen 127.0.0.1:${tlsPort} ssl http2;`)
      .replace('listen 80;', `listen 127.0.0.1:${plainPort};`)
      .replaceAll('/etc/ssl/atrium/', `${dir}/`);
    assert.match(site, new RegExp(`server 127\\.0\\.0\\.1:${atriumPort};`));
    writeFileSync(path.join(dir, 'site.conf'), site);
    writeFileSync(path.join(dir, 'nginx.conf'), [
      `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log warn;`, 'worker_processes 1;', 'events { worker_connections 64; }',
      'http {', `  access_log off;`, `  client_body_temp_path ${dir}/body;`, `  proxy_temp_path ${dir}/proxy;`,
      `  fastcgi_temp_path ${dir}/fastcgi;`, `  uwsgi_temp_path ${dir}/uwsgi;`, `  scgi_temp_path ${dir}/scgi;`,
      `  include ${dir}/site.conf;`, '}', '',
    ].join('\n'));
    // nginx drops to an unprivileged user for its workers when started as root: let it read the files.
    execFileSync('chmod', ['-R', 'a+rX', dir]);
    nginx = spawn(nginxBinary, ['-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;' + (process.getuid?.() === 0 ? ' user root;' : '')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    nginx.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
    for (let i = 0; ; i++) {
      const up = await new Promise<boolean>((resolve) => {
        const s = net.connect(tlsPort, '127.0.0.1', () => { s.destroy(); resolve(true); });
        s.on('error', () => resolve(false));
      });
      if (up) break;
      if (i > 200 || nginx.exitCode !== null) throw new Error(`nginx did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  after(async () => {
    if (nginx && nginx.exitCode === null) {
      nginx.kill('SIGQUIT');
      await new Promise((r) => nginx.once('exit', r));
    }
    await atrium?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('terminates TLS and adds HSTS; plain HTTP only redirects to HTTPS', async () => {
    const health = await request('GET', '/health');
    assert.equal(health.status, 200);
    assert.match(String(health.headers['strict-transport-security']), /max-age=31536000/);
    const plain = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: plainPort, path: '/dicom-web/studies', headers: { host: 'pacs.example.org' } }, resolve).on('error', reject);
    });
    plain.resume();
    assert.equal(plain.statusCode, 301);
    assert.equal(plain.headers.location, 'https://pacs.example.org/dicom-web/studies');
  });

  it('passes a STOW-RS body through, and Atrium names its URLs by the forwarded https and host', async () => {
    const { file, uids } = syntheticInstance({ PatientID: 'PROXY-1' });
    const { body, contentType } = stowBody([file]);
    const token = atrium.tokens['CHU-NORD']!;
    const stored = await request('POST', '/dicom-web/studies', { authorization: `Bearer ${token}`, 'content-type': contentType }, body);
    assert.equal(stored.status, 200, stored.body.toString());
    const found = await request('GET', `/dicom-web/studies?StudyInstanceUID=${uids.study}`, { authorization: `Bearer ${token}` });
    assert.equal(found.status, 200);
    const [study] = JSON.parse(found.body.toString()) as Array<Record<string, { Value?: string[] }>>;
    assert.equal(study!['00081190']!.Value![0], `https://pacs.example.org/dicom-web/studies/${uids.study}`);
  });

  it('writes the client\'s own address into the audit trail, not the X-Forwarded-For it made up', async () => {
    const token = atrium.tokens['CHU-NORD']!;
    const answer = await request('GET', '/dicom-web/studies?PatientID=SPOOF-CHECK', { authorization: `Bearer ${token}`, 'x-forwarded-for': '203.0.113.9' });
    assert.equal(answer.status, 200);
    const rows = await atrium.archive.index.sql.all<{ source: string; details: string }>(
      "SELECT source, details FROM audit_events WHERE action = 'query' ORDER BY id DESC LIMIT 5");
    const row = rows.find((r) => r.details.includes('SPOOF-CHECK'));
    assert.ok(row, 'the query was audited');
    assert.equal(row.source, '127.0.0.1');
  });
});
