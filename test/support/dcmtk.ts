import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';

export const haveDcmtk = existsSync('/usr/bin/storescu') && existsSync('/usr/bin/storescp');

export interface ToolResult {
  code: number | null;
  output: string;
}

/**
 * Runs a DCMTK command-line tool. TCP_NODELAY=1: Debian's DCMTK leaves Nagle's algorithm
 * on otherwise, which stalls each message ~40 ms on loopback.
 */
export function dcmtk(tool: string, args: string[], timeoutMs = 60_000): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(`/usr/bin/${tool}`, args, { env: { ...process.env, TCP_NODELAY: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (output += d.toString('latin1')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** The files `storescu -v` got a success answer for: it names each file before sending it and reports each answer after. */
export function storescuAcknowledged(output: string): string[] {
  const acknowledged: string[] = [];
  let current: string | undefined;
  for (const line of output.split('\n')) {
    const sending = /Sending file: (.+\.dcm)/.exec(line);
    if (sending) current = sending[1];
    if (/Received Store Response \(Success\)/.test(line) && current) acknowledged.push(current);
  }
  return acknowledged;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** Starts a DCMTK storescp writing what it receives to `dir` (on `listenPort`, or a free port); resolves once it listens. */
export async function startStorescp(aeTitle: string, dir: string, extraArgs: string[] = [], listenPort?: number): Promise<{ port: number; child: ChildProcess; output: () => string; stop: () => Promise<void> }> {
  const port = listenPort ?? await freePort();
  const child = spawn('/usr/bin/storescp', ['-aet', aeTitle, '--output-directory', dir, '-v', ...extraArgs, String(port)], {
    env: { ...process.env, TCP_NODELAY: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString('latin1')));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString('latin1')));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`storescp did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port, child, output: () => out,
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('close', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}
