import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { freePort, httpRequest, keepAliveAgent, outputTail, spawnTracked, stopProcess, waitFor, type HttpTarget } from './measure.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const benchSite = { code: 'BENCH', name: 'Bench site', finess: '000000000', issuerOfPatientID: 'BENCH' };

export interface RunningServer {
  target: HttpTarget;
  pid: number;
  child: ChildProcess;
  stop(): Promise<void>;
  /** What the server wrote on stderr, for the report when it fails. */
  stderrTail(): string;
}

/** A DICOM peer of the bench: a calling AE title, or a C-MOVE destination with its address. */
export interface BenchPeer {
  aeTitle: string;
  host?: string;
  port?: number;
}

export interface AtriumOptions {
  indexPath?: string;
  /** A PostgreSQL index instead of the SQLite file (bench/large-index.ts). */
  postgres?: { url: string; schema: string };
  /** Atrium's DIMSE listener; without it, it listens on a free port and knows no peer. */
  dimse?: { port: number; aeTitle: string; maxPduLength: number };
  /** Every calling AE title the bench uses, and the C-MOVE destination (all of site BENCH). */
  peers?: BenchPeer[];
  /** The built portal (web/dist), served under /app/ (bench/browser.ts). */
  portalDir?: string;
  /** Session cookies over plain http (a local login on the loopback, as the portal's). */
  httpSessions?: boolean;
}

/**
 * Starts the real CLI (`node bin/atrium.mjs serve`) as a child process, so that its
 * memory is its own and is read from /proc, with the embedded engines in `dataDir`.
 */
export async function startAtrium(dataDir: string, options: AtriumOptions = {}): Promise<RunningServer> {
  const port = await freePort();
  // Never the default 11112, which another Atrium or PACS on the machine may hold.
  const dimse = options.dimse ?? { port: await freePort(), aeTitle: 'ATRIUM', maxPduLength: 131072 };
  const token = randomBytes(24).toString('base64url');
  const configFile = path.join(dataDir, 'atrium.bench.yaml');
  writeFileSync(configFile, [
    `dataDir: ${JSON.stringify(dataDir)}`,
    'http:',
    '  host: 127.0.0.1',
    `  port: ${port}`,
    ...(options.portalDir ? [`  portalDir: ${JSON.stringify(options.portalDir)}`] : []),
    'index:',
    ...(options.postgres
      ? ['  engine: postgres', `  url: ${JSON.stringify(options.postgres.url)}`, `  schema: ${options.postgres.schema}`]
      : ['  engine: sqlite', `  path: ${JSON.stringify(options.indexPath ?? path.join(dataDir, 'index.sqlite'))}`]),
    'storage:',
    '  kind: filesystem',
    'sites:',
    `  - code: ${benchSite.code}`,
    `    name: ${benchSite.name}`,
    `    finess: '${benchSite.finess}'`,
    `    issuerOfPatientID: ${benchSite.issuerOfPatientID}`,
    'dimse:',
    '  host: 127.0.0.1',
    `  port: ${dimse.port}`,
    `  aeTitle: ${dimse.aeTitle}`,
    `  maxPduLength: ${dimse.maxPduLength}`,
    ...(options.peers?.length ? ['peers:', ...options.peers.flatMap((p) => [
      `  - aeTitle: ${p.aeTitle}`,
      ...(p.host !== undefined ? [`    host: ${p.host}`, `    port: ${p.port}`] : []),
      `    site: ${benchSite.code}`,
      '    may: { store: true, query: true, retrieve: true }',
    ])] : []),
    // Not measured here; off, so that no fixed port (2575) can clash with another Atrium.
    'hl7:',
    '  enabled: false',
    'apiClients:',
    '  - name: bench',
    `    tokenSha256: ${createHash('sha256').update(token).digest('hex')}`,
    `    site: ${benchSite.code}`,
    // The portal over plain http on the loopback: its session cookie cannot be Secure.
    ...(options.portalDir || options.httpSessions ? ['auth:', '  sessions:', '    secureCookie: false'] : []),
    'log:',
    '  level: warn',
    '',
  ].join('\n'));
  // The configuration file alone decides: no engine or URL leaks in from the caller's environment.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ATRIUM_') && !k.startsWith('AWS_') && k !== 'DATABASE_URL'));
  // BENCH_ATRIUM_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the server; Node refuses these in NODE_OPTIONS.
  const nodeArgs = (process.env.BENCH_ATRIUM_NODE_ARGS ?? '').split(/\s+/).filter((a) => a !== '');
  // BENCH_ATRIUM_ROOT: another built tree (a version to compare with), this one's by default.
  const child = spawnTracked(process.execPath, [...nodeArgs, path.join(process.env.BENCH_ATRIUM_ROOT ?? repoRoot, 'bin/atrium.mjs'), 'serve', '--config', configFile], {
    cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderrTail = outputTail(child);
  const target: HttpTarget = {
    name: 'Atrium',
    dicomweb: `http://127.0.0.1:${port}/dicom-web`,
    headers: { authorization: `Bearer ${token}` },
    agent: keepAliveAgent(),
  };
  try {
    await waitFor('Atrium', async () => (await httpRequest(target, `${target.dicomweb}/studies?limit=1`, { timeoutMs: 2000 })).status === 200, child, 120_000);
  } catch (e) {
    await stopProcess(child);
    throw new Error(`${(e as Error).message}\n${stderrTail()}`);
  }
  return {
    target, pid: child.pid!, child, stderrTail,
    async stop() {
      target.agent.destroy();
      await stopProcess(child);
    },
  };
}
