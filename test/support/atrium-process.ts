import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { sha256Hex } from '../../src/api/auth.ts';
import http from 'node:http';
import path from 'node:path';
import { atriumCliArgs } from './cli.ts';


/**
 * A data folder and a configuration for `atrium serve` as a process: one site (CHU-NORD),
 * SQLite, HTTP on a free port, and one API client whose token is returned. DIMSE and HL7 are
 * off: their default ports would collide with another test's process.
 */
export function singleSiteProcessConfig(prefix: string, clientName: string): { dataDir: string; configFile: string; token: string } {
  const dataDir = mkdtempSync(path.join(tmpdir(), prefix));
  const token = randomBytes(24).toString('base64url');
  const configFile = path.join(dataDir, 'atrium.yaml');
  writeFileSync(configFile, [
    `dataDir: ${dataDir}`,
    'http: { host: 127.0.0.1, port: 0 }',
    'dimse: { enabled: false }',
    'hl7: { enabled: false }',
    'index: { engine: sqlite }',
    'sites:',
    '  - { code: CHU-NORD, name: CHU Nord, finess: "590000001", issuerOfPatientID: CHUNORD }',
    'apiClients:',
    `  - { name: ${clientName}, tokenSha256: ${sha256Hex(token)}, site: CHU-NORD }`,
    'log: { level: info }', // the process says where it serves at info
  ].join('\n'));
  return { dataDir, configFile, token };
}

/** Atrium as its users run it: the CLI in its own process, killed without warning. */
export class AtriumProcess {
  child?: ChildProcess;
  url = '';
  /** What the process of the last start() wrote to stdout (its JSON log lines). */
  stdout = '';
  /** What the process of the last start() wrote to stderr. */
  stderr = '';
  /** The 'atrium is serving' log line of the last start (url, portal, dimse, hl7). */
  serving: Record<string, string> = {};
  /** `env`: the server's environment (default: this process's). */
  constructor(readonly configFile: string, readonly env: NodeJS.ProcessEnv = process.env) {}

  async start(): Promise<void> {
    const child = spawn(process.execPath, [...atriumCliArgs(), 'serve', '--config', this.configFile], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.stdout = '';
    this.stderr = '';
    // Only this child's output: a stopped one's last lines must not be read as the next one's.
    child.stderr!.on('data', (d) => { if (this.child === child) this.stderr += d; });
    child.stdout!.on('data', (d: Buffer) => { if (this.child === child) this.stdout += d.toString(); });
    this.url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        for (const line of out.split('\n')) {
          if (line.includes('atrium is serving')) {
            this.serving = JSON.parse(line) as Record<string, string>;
            resolve(this.serving.url!);
          }
        }
      });
      child.once('exit', (code) => reject(new Error(`atrium exited with ${code}: ${this.stderr}`)));
    });
  }

  /** The JSON log lines of the last start. */
  logLines(): Array<Record<string, unknown>> {
    return this.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  kill(): Promise<void> {
    return new Promise((resolve) => {
      this.child!.once('exit', () => resolve());
      this.child!.kill('SIGKILL');
    });
  }

  async stop(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      await new Promise<void>((resolve) => {
        this.child!.once('exit', () => resolve());
        this.child!.kill('SIGTERM');
      });
    }
  }

  /** Peak resident memory of the server process so far (Linux). */
  peakRssBytes(): number {
    const status = readFileSync(`/proc/${this.child!.pid}/status`, 'utf8');
    return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
  }
}

const boundary = 'crash-test-boundary';
const contentType = `multipart/related; type="application/dicom"; boundary=${boundary}`;

/** STOW-RS over one HTTP request whose parts are written as they come (a large object never held whole). */
export function stowStreamed(url: string, token: string, parts: Array<AsyncIterable<Buffer> | Buffer>, onSent?: (bytes: number) => void): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/studies`, { method: 'POST', headers: { 'Content-Type': contentType, Authorization: `Bearer ${token}` } }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    (async () => {
      let sent = 0;
      for (const part of parts) {
        req.write(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`);
        const chunks = Buffer.isBuffer(part) ? [part] : part;
        for await (const chunk of chunks) {
          sent += chunk.length;
          onSent?.(sent);
          if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
          if (req.destroyed) return;
        }
        req.write('\r\n');
      }
      req.end(`--${boundary}--\r\n`);
    })().catch(reject);
  });
}
