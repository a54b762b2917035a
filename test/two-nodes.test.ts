/**
 * Two Atrium nodes as a region runs them behind a load balancer: two real processes
 * (`atrium serve`), each with its own HTTP, DIMSE and HL7 ports and data folder, over one
 * PostgreSQL schema and one storage (a shared folder, then an S3 bucket), both running every
 * background worker. What one node takes in, the other serves; what the workers do
 * (forwarding, teleradiology arrival and assignment, alerts, report delivery) happens once,
 * even when a node is killed in the middle; sessions and login limits are the platform's,
 * not a node's.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { sha256Hex } from '../src/api/auth.ts';
import { Tags } from '../src/dicom/dataset.ts';
import { findSegment, valueOf } from '../src/hl7/message.ts';
import { CookieJar, loginLocal, request } from './support/browser-session.ts';
import { dcmtk, freePort, haveDcmtk, startStorescp } from './support/dcmtk.ts';
import { RisListener } from './support/ris-listener.ts';
import { datasetBytes } from './support/part10.ts';
import { startS3Server, type TestS3Server } from './support/s3-server.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) console.warn('\n*** DATABASE_URL is not set: the two-node test (test/two-nodes.test.ts) was SKIPPED: several nodes need PostgreSQL. ***\n');
if (!haveDcmtk) console.warn('\n*** DCMTK is not installed: the two-node test (test/two-nodes.test.ts) was SKIPPED. ***\n');

const root = path.resolve(import.meta.dirname, '..');
const cli = path.join(root, 'bin/atrium.mjs');
const password = 'un mot de passe assez long pour les tests';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for `check` to hold, looking every 100 ms; fails after `bound` (a hang, not a slow machine). */
async function waitFor(what: string, check: () => Promise<boolean> | boolean, detail?: () => Promise<string>, boundMs = 60_000): Promise<void> {
  const until = Date.now() + boundMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`still waiting for ${what}${detail ? `: ${await detail()}` : ''}`);
    await sleep(100);
  }
}

/** One node: `atrium serve` in its own process, killed without warning when a test says so. */
class Node {
  child?: ChildProcess;
  log = '';
  constructor(readonly name: string, readonly configFile: string, readonly base: string, readonly dimsePort: number, readonly env: Record<string, string> = {}) {}

  async start(): Promise<void> {
    const child = spawn(process.execPath, [cli, 'serve', '--config', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TCP_NODELAY: '1', ...this.env } });
    this.child = child;
    this.log += `--- ${this.name} started\n`;
    const from = this.log.length;
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        this.log += d.toString();
        if (this.log.includes('atrium is serving', from)) resolve();
      });
      child.stderr!.on('data', (d: Buffer) => { this.log += d.toString(); });
      child.once('exit', (code) => reject(new Error(`node ${this.name} exited with ${code}: ${this.log.slice(-3000)}`)));
    });
  }

  kill(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.running) return resolve();
      this.child!.once('exit', () => resolve());
      this.child!.kill('SIGKILL');
    });
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    await new Promise<void>((resolve) => {
      this.child!.once('exit', () => resolve());
      this.child!.kill('SIGTERM');
    });
  }
}

/**
 * A TCP relay between a node and the destination peer that can be told to hold what the node
 * sends after a number of bytes: the node is then caught in the middle of a batch, some objects
 * taken by the peer, the next one half sent. Answers always flow back.
 */
class HoldingRelay {
  readonly server: net.Server;
  port = 0;
  /** Bytes each new connection may send before it is held; undefined: never held. */
  private budget: number | undefined;
  private readonly held = new Set<() => void>();
  connections = 0;

  constructor(private readonly target: number) {
    this.server = net.createServer((client) => {
      this.connections++;
      const upstream = net.connect(this.target, '127.0.0.1');
      let left = this.budget ?? Infinity;
      const queued: Buffer[] = [];
      let holding = false;
      const release = () => {
        holding = false;
        left = Infinity;
        for (const b of queued.splice(0)) upstream.write(b);
        this.held.delete(release);
      };
      client.on('data', (chunk: Buffer) => {
        if (holding) return void queued.push(chunk);
        if (chunk.length <= left) {
          left -= chunk.length;
          upstream.write(chunk);
          return;
        }
        upstream.write(chunk.subarray(0, left));
        queued.push(chunk.subarray(left));
        left = 0;
        holding = true;
        this.held.add(release);
      });
      upstream.on('data', (chunk: Buffer) => client.write(chunk));
      // The node died (or hung up): the peer sees the association cut, the half-sent object lost.
      client.on('close', () => { this.held.delete(release); upstream.destroy(); });
      upstream.on('close', () => client.destroy());
      client.on('error', () => {});
      upstream.on('error', () => {});
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  holdAfter(bytes: number): void {
    this.budget = bytes;
  }

  get holding(): number {
    return this.held.size;
  }

  releaseAll(): void {
    this.budget = undefined;
    for (const release of [...this.held]) release();
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// The shared storage: a folder both nodes write to (a shared filesystem), or one S3 bucket (s3rver).
for (const storage of ['filesystem', 's3'] as const) describe(`two nodes over one PostgreSQL and one ${storage === 's3' ? 'S3 bucket' : 'storage folder'}`, { skip: (!databaseUrl || !haveDcmtk) && 'needs DATABASE_URL and DCMTK' }, () => {
  const work = mkdtempSync(path.join(tmpdir(), 'atrium-two-nodes-'));
  let s3: TestS3Server | undefined;
  /** The S3 credentials, from the environment as in production. */
  const s3Env = (): Record<string, string> => (s3 ? { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey } : {});
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const tokens = { 'CHU-NORD': randomBytes(24).toString('base64url'), 'CLIN-SUD': randomBytes(24).toString('base64url') };
  const destDir = path.join(work, 'dest');
  const ris = new RisListener();
  const pager: Array<Record<string, unknown>> = [];
  const gateway = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      pager.push(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(204).end();
    });
  });
  let storescp: Awaited<ReturnType<typeof startStorescp>>;
  const relays: Record<'A' | 'B', HoldingRelay> = {} as Record<'A' | 'B', HoldingRelay>;
  const nodes: Record<'A' | 'B', Node> = {} as Record<'A' | 'B', Node>;
  let db: pg.Client;
  /** Every object stored, by SOPInstanceUID, with its bytes as sent. */
  const stored = new Map<string, Buffer>();

  const query = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await db.query<T>(sql, params)).rows;
  const dicomweb = (n: Node) => `${n.base}/dicom-web`;
  /** What storescp wrote, in order (a second write of one object shows as a repeat). */
  const received = () => [...storescp.output().matchAll(/storing DICOM file: \S+\/[A-Z]+\.([0-9.]+)/g)].map((m) => m[1]!);

  async function configure(name: 'A' | 'B'): Promise<Node> {
    const dataDir = path.join(work, `node-${name}`);
    mkdirSync(dataDir, { recursive: true });
    const [httpPort, dimsePort, hl7Port] = [await freePort(), await freePort(), await freePort()];
    const configFile = path.join(dataDir, 'atrium.yaml');
    writeFileSync(configFile, [
      `dataDir: ${dataDir}`,
      `http: { host: 127.0.0.1, port: ${httpPort}, trustProxy: [127.0.0.1] }`,
      `index: { engine: postgres, url: "${databaseUrl}", schema: ${schema} }`,
      s3 ? `storage: { kind: s3, bucket: ${s3.bucket}, endpoint: "${s3.endpoint}", region: us-east-1 }` : `storage: { kind: filesystem, root: ${path.join(work, 'blobs')} }`,
      `dimse: { host: 127.0.0.1, port: ${dimsePort}, aeTitle: ATRIUM }`,
      `hl7: { host: 127.0.0.1, port: ${hl7Port} }`,
      'sites:',
      '  - { code: CHU-NORD, name: CHU Nord, finess: "590000001", issuerOfPatientID: CHUNORD }',
      '  - { code: CLIN-SUD, name: Clinique du Sud, finess: "590000002", issuerOfPatientID: CLINSUD }',
      'apiClients:',
      ...Object.entries(tokens).map(([site, t]) => `  - { name: client-${site}, tokenSha256: ${sha256Hex(t)}, site: ${site}, territory: true }`),
      'peers:',
      '  - { aeTitle: MODALITY, site: CHU-NORD, may: { store: true, query: false, retrieve: false } }',
      '  - { aeTitle: MODALITY-SUD, site: CLIN-SUD, may: { store: true, query: false, retrieve: false } }',
      // Each node reaches the destination through its own relay, which the forwarding test holds.
      `  - { aeTitle: DEST, host: 127.0.0.1, port: ${relays[name].port}, site: CHU-NORD, may: { store: false, query: false, retrieve: false } }`,
      'routing:',
      '  rules: [{ name: everything, destinations: [DEST] }]',
      '  retry: { baseDelayMs: 200, maxDelayMs: 1000, maxAttempts: 1000 }',
      '  associationsPerPeer: 1',
      '  pollIntervalMs: 200',
      '  claimLeaseSeconds: 5',
      'teleradiology:',
      '  pollMs: 200',
      `  sites: [{ site: CLIN-SUD, oru: { host: 127.0.0.1, port: ${risPort}, application: RIS, facility: CLIN-SUD } }]`,
      '  delivery: { ackTimeoutMs: 2000, retryBaseMs: 200, maxAttempts: 20, pollMs: 100 }',
      `  alerts: { webhookUrl: "http://127.0.0.1:${(gateway.address() as net.AddressInfo).port}/page" }`,
      'auth: { loginAttemptsPerMinute: 10, sessions: { secureCookie: false } }',
      // Each node anchors the one chain into its own file (the default, in its data folder), often here.
      'audit: { anchor: { everySeconds: 1 } }',
      'log: { level: info }',
    ].join('\n'));
    return new Node(name, configFile, `http://127.0.0.1:${httpPort}`, dimsePort, s3Env());
  }
  let risPort = 0;

  function atriumCli(args: string[], stdin?: string, node = nodes.A): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = execFile(process.execPath, [cli, ...args, '--config', node.configFile], { env: { ...process.env, ...s3Env() } }, (e, stdout, stderr) => (e ? reject(new Error(`${e.message}: ${stdout} ${stderr}`)) : resolve(stdout)));
      child.stdin!.end(stdin ?? '');
    });
  }

  async function storescu(node: Node, files: Buffer[], callingAE: string): Promise<void> {
    const dir = mkdtempSync(path.join(work, 'send-'));
    const paths = files.map((f, i) => {
      const p = path.join(dir, `${i}.dcm`);
      writeFileSync(p, f);
      return p;
    });
    const r = await dcmtk('storescu', ['-aet', callingAE, '-aec', 'ATRIUM', '127.0.0.1', String(node.dimsePort), ...paths]);
    assert.equal(r.code, 0, r.output);
  }

  before(async () => {
    mkdirSync(destDir);
    // One process per association: a node held mid-batch must not keep the other waiting.
    storescp = await startStorescp('DEST', destDir, ['--fork']);
    relays.A = new HoldingRelay(storescp.port);
    relays.B = new HoldingRelay(storescp.port);
    await relays.A.listen();
    await relays.B.listen();
    risPort = await ris.listen();
    if (storage === 's3') s3 = await startS3Server();
    await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
    nodes.A = await configure('A');
    nodes.B = await configure('B');
    // Both at once on an empty schema, as a region's nodes come up after a deployment.
    await Promise.all([nodes.A.start(), nodes.B.start()]);
    db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    await db.query(`SET search_path TO ${schema}`);
    // Accounts are the platform's: made once with the CLI, they log in on any node.
    for (const [login, name, role, site] of [
      ['manip.sud', 'Manipulateur Sud', 'technologist', 'CLIN-SUD'], ['neuro', 'Dr Neuro', 'radiologist', 'CHU-NORD'],
      ['admin', 'Admin', 'territory-admin', undefined], ['rad.b', 'Dr B', 'radiologist', 'CHU-NORD'],
    ] as const) {
      await atriumCli(['user', 'add', login, '--name', name, '--role', role, ...(site ? ['--site', site] : []), '--password-stdin'], password);
    }
  });

  after(async () => {
    await Promise.all([nodes.A?.stop(), nodes.B?.stop()]);
    // The nodes' logs, to read after a failure.
    if (process.env.ATRIUM_TEST_LOG) for (const n of [nodes.A, nodes.B]) if (n) writeFileSync(path.join(tmpdir(), `atrium-two-nodes-${n.name}.log`), n.log);
    await db?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
    await db?.end();
    await storescp?.stop();
    await Promise.all([relays.A?.close(), relays.B?.close(), ris.close().catch(() => {}), new Promise((r) => gateway.close(r))]);
    await s3?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('finds and serves through either node what the other took in (STOW-RS on A, C-STORE on B)', async () => {
    const first = syntheticInstance({ PatientID: 'TWO-1', PatientName: 'Deux^Noeuds', Rows: 8, Columns: 8 });
    const study = first.uids.study;
    const byStow = [first, ...Array.from({ length: 2 }, () => syntheticInstance({ PatientID: 'TWO-1', PatientName: 'Deux^Noeuds', StudyInstanceUID: study, Rows: 8, Columns: 8 }))];
    const byDimse = Array.from({ length: 3 }, () => syntheticInstance({ PatientID: 'TWO-1', PatientName: 'Deux^Noeuds', StudyInstanceUID: study, Rows: 8, Columns: 8 }));
    const r = await stowFiles(dicomweb(nodes.A), tokens['CHU-NORD'], byStow.map((i) => i.file));
    assert.equal(r.status, 200, await r.text());
    await storescu(nodes.B, byDimse.map((i) => i.file), 'MODALITY');
    for (const i of [...byStow, ...byDimse]) stored.set(i.uids.sop, i.file);
    for (const node of [nodes.A, nodes.B]) {
      const found = await fetch(`${dicomweb(node)}/studies/${study}/instances`, { headers: { authorization: `Bearer ${tokens['CHU-NORD']}` } });
      assert.equal(found.status, 200);
      const uids = ((await found.json()) as Array<Record<string, { Value: string[] }>>).map((i) => i['00080018']!.Value[0]).sort();
      assert.deepEqual(uids, [...byStow, ...byDimse].map((i) => i.uids.sop).sort(), `QIDO-RS on node ${node.name}`);
      for (const i of [...byStow, ...byDimse]) {
        const got = await fetch(`${dicomweb(node)}/studies/${study}/series/${i.uids.series}/instances/${i.uids.sop}`, {
          headers: { authorization: `Bearer ${tokens['CHU-NORD']}`, accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
        });
        assert.equal(got.status, 200);
        const body = Buffer.from(await got.arrayBuffer());
        assert.ok(body.includes(datasetBytes(i.file)), `node ${node.name} serves ${i.uids.sop} byte for byte`);
      }
    }
  });

  it('accepts on node B the session opened on node A, and ends it everywhere at logout', async () => {
    const { jar, csrf } = await loginLocal(nodes.A.base, 'rad.b', password);
    const cookie = jar.header(nodes.A.base);
    const onB = await fetch(`${nodes.B.base}/auth/me`, { headers: { cookie } });
    assert.equal(onB.status, 200);
    assert.equal(((await onB.json()) as { id: string }).id, 'rad.b');
    const out = await fetch(`${nodes.B.base}/auth/logout`, { method: 'POST', headers: { cookie, 'x-csrf-token': csrf } });
    assert.equal(out.status, 204, await out.text());
    assert.equal((await fetch(`${nodes.A.base}/auth/me`, { headers: { cookie } })).status, 401);
  });

  it('lets in on node B at once a DICOM peer an administrator added on node A, after B restarts too, and removed through B refuses it on A', async () => {
    const echo = (node: Node) => dcmtk('echoscu', ['-aet', 'CT-NEUF', '-aec', 'ATRIUM', '127.0.0.1', String(node.dimsePort)]);
    // Not a peer yet (unknown callers are refused by default).
    const before = await echo(nodes.B);
    assert.notEqual(before.code, 0, 'an unknown AE title is refused');
    assert.match(before.output, /[Rr]ejected|[Rr]efused|not recognized/i);
    const { jar, csrf } = await loginLocal(nodes.A.base, 'admin', password);
    const call = (node: Node, method: string, url: string, body?: unknown) => request(jar, `${node.base}${url}`, {
      // The session is the platform's: node B takes node A's cookie.
      method, headers: { cookie: jar.header(nodes.A.base), 'x-csrf-token': csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const added = await call(nodes.A, 'POST', '/api/admin/peers', { aeTitle: 'CT-NEUF', site: 'CHU-NORD', store: true });
    assert.equal(added.status, 201, await added.clone().text());
    assert.equal(((await added.json()) as { restartNeeded: boolean }).restartNeeded, false);
    // Node B, which never saw the request, lets it in now and keeps what it sends under its site.
    const now = await echo(nodes.B);
    assert.equal(now.code, 0, now.output);
    const image = syntheticInstance({ PatientID: 'PEER-NEUF', Rows: 8, Columns: 8 });
    await storescu(nodes.B, [image.file], 'CT-NEUF');
    stored.set(image.uids.sop, image.file);
    const rows = await query<{ code: string }>('SELECT s.code FROM instances i JOIN series se ON se.id = i.series_id JOIN studies st ON st.id = se.study_id JOIN sites s ON s.id = st.site_id WHERE i.sop_instance_uid = $1', [image.uids.sop]);
    assert.deepEqual(rows.map((r) => r.code), ['CHU-NORD']);
    // Both nodes list it, as added through the API.
    for (const node of [nodes.A, nodes.B]) {
      const listed = (await (await call(node, 'GET', '/api/admin/peers')).json()) as { peers: Array<{ aeTitle: string; origin: string }> };
      assert.deepEqual(listed.peers.filter((p) => p.aeTitle === 'CT-NEUF').map((p) => p.origin), ['api'], `node ${node.name}`);
      assert.equal(listed.peers.find((p) => p.aeTitle === 'MODALITY')?.origin, 'file');
    }
    // A second addition of the same AE title, on the other node: refused.
    assert.equal((await call(nodes.B, 'POST', '/api/admin/peers', { aeTitle: 'CT-NEUF', site: 'CHU-NORD' })).status, 409);
    // A peer of the configuration file is removed there, not through the API.
    assert.equal((await call(nodes.B, 'DELETE', '/api/admin/peers/MODALITY')).status, 409);
    await nodes.B.stop();
    await nodes.B.start();
    const afterRestart = await echo(nodes.B);
    assert.equal(afterRestart.code, 0, afterRestart.output);
    // Removed through B: node A refuses it once its copy of the list is renewed (a couple of seconds).
    const removed = await call(nodes.B, 'DELETE', '/api/admin/peers/CT-NEUF');
    assert.equal(removed.status, 200, await removed.clone().text());
    await waitFor('node A refusing the removed peer', async () => (await echo(nodes.A)).code !== 0, undefined, 20_000);
    assert.notEqual((await echo(nodes.B)).code, 0);
    const audited = await query<{ details: string }>(`SELECT details FROM audit_events WHERE action = 'user-admin' AND actor = 'admin' ORDER BY id`);
    const operations = audited.map((r) => JSON.parse(r.details) as { operation: string; peer: { aeTitle: string } }).filter((d) => d.operation.startsWith('peer-'));
    assert.deepEqual(operations.map((d) => `${d.operation} ${d.peer.aeTitle}`), ['peer-add CT-NEUF', 'peer-remove CT-NEUF']);
  });

  it('limits login attempts from one address across both nodes together', async () => {
    // A guesser going through logins (each account would lock itself after a few wrong passwords).
    let guess = 0;
    const attempt = (node: Node) => fetch(`${node.base}/auth/local`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': '203.0.113.7' },
      body: JSON.stringify({ login: `guess.${++guess}`, password: 'not the password' }),
    });
    // loginAttemptsPerMinute is 10: five attempts on each node, then nothing more on either.
    for (let i = 0; i < 10; i++) assert.equal((await attempt(i % 2 === 0 ? nodes.A : nodes.B)).status, 401, `attempt ${i + 1}`);
    const minuteBefore = Math.floor(Date.now() / 60_000);
    const refusedA = await attempt(nodes.A);
    assert.equal(refusedA.status, 429);
    assert.ok(Number(refusedA.headers.get('retry-after')) >= 1);
    assert.equal((await attempt(nodes.B)).status, 429);
    const recorded = await query<{ n: string }>(`SELECT COUNT(*) AS n FROM audit_events WHERE action = 'login-failed' AND reason = 'rate-limited'`);
    // Refusals are recorded once per minute window (two if these two fell on either side of a minute).
    if (Math.floor(Date.now() / 60_000) === minuteBefore) assert.equal(Number(recorded[0]!.n), 1, 'one audit record for the refusals, whichever node refused');
  });

  it('runs a stroke request once across both nodes: created on A, images on B, assigned and paged once, its report sent once though B was killed mid-way', async () => {
    const prior = syntheticInstance({ PatientID: 'AVC-1', PatientName: 'Sud^Hélène', Rows: 8, Columns: 8 });
    assert.equal((await stowFiles(dicomweb(nodes.A), tokens['CLIN-SUD'], [prior.file])).status, 200);
    stored.set(prior.uids.sop, prior.file);
    const sessions: Record<string, { jar: CookieJar; csrf: string }> = {};
    for (const who of ['manip.sud', 'neuro', 'admin']) sessions[who] = await loginLocal(nodes.A.base, who, password);
    // The session goes with the user to whichever node the load balancer picks.
    const call = async (node: Node, who: string, url: string, body?: unknown, method = 'POST') => {
      const r = await fetch(`${node.base}/api/teleradiology${url}`, {
        method, headers: { cookie: sessions[who]!.jar.header(nodes.A.base), 'x-csrf-token': sessions[who]!.csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await r.text();
      assert.ok(r.status < 300, `${method} ${url} on ${node.name}: ${r.status} ${text}`);
      return (text ? JSON.parse(text) : {}) as Record<string, unknown>;
    };
    const now = Date.now();
    await call(nodes.B, 'admin', '/oncall', { login: 'neuro', specialty: 'neuro', startsAt: new Date(now - 60_000).toISOString(), endsAt: new Date(now + 3_600_000).toISOString() });
    // The images are still to come when the request is made: it names them by accession number.
    const accession = { tag: Tags.AccessionNumber, vr: 'SH' as const, value: Buffer.from('AVC-0042') };
    const first = syntheticInstance({ PatientID: 'AVC-1', PatientName: 'Sud^Hélène', Modality: 'CT', Rows: 8, Columns: 8, extra: [accession] });
    const study = first.uids.study;
    const images = [first, ...Array.from({ length: 3 }, () => syntheticInstance({
      PatientID: 'AVC-1', PatientName: 'Sud^Hélène', Modality: 'CT', Rows: 8, Columns: 8, StudyInstanceUID: study, extra: [accession],
    }))];
    const created = await call(nodes.A, 'manip.sud', '/requests', {
      patient: { PatientID: 'AVC-1' }, AccessionNumber: 'AVC-0042', urgency: 'stroke', modality: 'CT', bodyPart: 'HEAD', specialty: 'neuro',
      clinicalContext: 'Aphasie brutale', clinicalQuestion: 'Occlusion proximale ?', requestingPhysician: { name: 'Dr Urgences' }, proposedProtocol: 'Scanner + angioscanner',
    });
    const id = created.id as number;
    await storescu(nodes.B, images.map((i) => i.file), 'MODALITY-SUD');
    for (const i of images) stored.set(i.uids.sop, i.file);
    // Both nodes read the outbox; the arrival is applied once, and the on-call neuroradiologist is given the request once.
    await waitFor('the request assigned to the on-call radiologist', async () => {
      const r = await call(nodes.A, 'neuro', `/requests/${id}`, undefined, 'GET');
      return r.imagesArrivedAt !== undefined && r.assignedTo !== undefined;
    });
    await waitFor('the on-call radiologist paged', async () => (await query<{ status: string }>('SELECT status FROM tele_alerts')).some((a) => a.status === 'sent'));
    const assignments = await query<{ n: string }>(`SELECT COUNT(*) AS n FROM audit_events WHERE action = 'tele-assign'`);
    assert.equal(Number(assignments[0]!.n), 1, 'assigned once');

    // Node B, which took the images in, dies; the work goes on on A, and B comes back. (Not
    // while it sends the images on: an object the peer took a moment before the kill, not yet
    // marked, would go again: the forwarding test below kills a node in the middle of a batch.)
    await waitFor('the images forwarded', async () => Number((await query<{ n: string }>(`SELECT COUNT(*) AS n FROM forward_queue WHERE state <> 'done'`))[0]!.n) === 0);
    await nodes.B.kill();
    await call(nodes.A, 'neuro', `/requests/${id}/protocol`, { decision: 'validated' });
    await call(nodes.A, 'neuro', `/requests/${id}/claim`);
    await nodes.B.start();
    await call(nodes.B, 'neuro', `/requests/${id}/report`, { fields: {}, findings: 'Occlusion M1 gauche.', conclusion: 'Thrombectomie à discuter' }, 'PUT');
    await call(nodes.A, 'neuro', `/requests/${id}/report/sign`, {});
    await waitFor('the report delivered', async () => {
      const rows = await query<{ status: string }>(`SELECT status FROM tele_deliveries WHERE channel = 'hl7-oru'`);
      return rows.length === 1 && rows[0]!.status === 'sent';
    });
    // The signed PDF goes to the archive by its own delivery, which may come after the ORU.
    await waitFor('the report stored as an encapsulated PDF', async () => {
      const rows = await query<{ status: string }>(`SELECT status FROM tele_deliveries WHERE channel = 'dicom-pdf'`);
      return rows.length === 1 && rows[0]!.status === 'sent';
    });
    // Both nodes keep polling: a few more rounds would show a second send.
    await sleep(1_000);
    assert.equal(ris.received.length, 1, 'one ORU^R01');
    assert.equal(valueOf(findSegment(ris.received[0]!, 'OBR'), 2), `TELE-${id}`);
    assert.equal(pager.length, 1, 'paged once');
    assert.equal(pager[0]!.kind, 'stroke-assigned');
    const pdf = await query<{ status: string }>(`SELECT status FROM tele_deliveries WHERE channel = 'dicom-pdf'`);
    assert.deepEqual(pdf.map((r) => r.status), ['sent']);
  });

  it('forwards every object exactly once, though node A is killed in the middle of a batch and its claim is taken over by B', async () => {
    // Everything so far has gone to the destination; now both nodes are caught mid-batch.
    await waitFor('earlier objects forwarded', async () => {
      const rows = await query<{ n: string }>(`SELECT COUNT(*) AS n FROM forward_queue WHERE state <> 'done'`);
      return Number(rows[0]!.n) === 0;
    });
    const objects = Array.from({ length: 40 }, () => syntheticInstance({ PatientID: 'FWD-1', Rows: 64, Columns: 64 }));
    const oneObject = objects[0]!.file.length;
    // The association's request and about one and a half objects, then held.
    relays.A.holdAfter(4096 + Math.round(oneObject * 1.5));
    relays.B.holdAfter(4096 + Math.round(oneObject * 1.5));
    const r = await stowFiles(dicomweb(nodes.A), tokens['CHU-NORD'], objects.map((o) => o.file));
    assert.equal(r.status, 200, await r.text());
    for (const o of objects) stored.set(o.uids.sop, o.file);
    await waitFor('both nodes held in the middle of a batch', () => relays.A.holding === 1 && relays.B.holding === 1,
      async () => `relays holding A ${relays.A.holding}, B ${relays.B.holding}; queue ${JSON.stringify(await query('SELECT state, COUNT(*) AS n FROM forward_queue GROUP BY state'))}`);
    // What the destination took is marked done before A dies (what is in flight cannot be).
    await waitFor('the objects the destination took marked done', async () => {
      const rows = await query<{ n: string }>(`SELECT COUNT(*) AS n FROM forward_queue WHERE state = 'done'`);
      return Number(rows[0]!.n) === new Set(received()).size;
    });
    await nodes.A.kill();
    relays.B.releaseAll();
    await waitFor('every object forwarded', async () => {
      const rows = await query<{ n: string }>(`SELECT COUNT(*) AS n FROM forward_queue WHERE state <> 'done'`);
      return Number(rows[0]!.n) === 0;
    });
    const all = await query<{ sop_instance_uid: string }>('SELECT sop_instance_uid FROM instances');
    const got = received();
    assert.equal(new Set(got).size, all.length, 'every archived object reached the destination');
    assert.deepEqual(got.filter((sop, i) => got.indexOf(sop) !== i), [], 'no object reached it twice');
    assert.ok([...stored.keys()].every((sop) => got.includes(sop)));
  });

  it('keeps one audit chain that each node\'s own anchors verify', async () => {
    // Both nodes appended to one chain; each anchored its head into its own file with its own key.
    for (const node of [nodes.A, nodes.B]) {
      const out = await atriumCli(['audit', 'verify'], undefined, node);
      const r = JSON.parse(out) as { ok: boolean; anchorsVerified: number };
      assert.equal(r.ok, true, `node ${node.name}: ${out}`);
      assert.ok(r.anchorsVerified >= 1, `node ${node.name} anchored the chain`);
    }
  });
});
