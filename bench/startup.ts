/**
 * `npm run bench:startup`: time from `node bin/atrium.mjs serve` (the compiled code, embedded
 * defaults: SQLite and the filesystem in a fresh data folder) to its first answer on
 * /health, and to the first answer after a restart on the same folder. Runs
 * BENCH_STARTUP_RUNS times (default 5) and prints each figure with the median.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const runs = Number(process.env.BENCH_STARTUP_RUNS ?? 5);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function timeToFirstAnswer(config: string, port: number): Promise<number> {
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [path.join(root, 'bin/atrium.mjs'), 'serve', '--config', config], { stdio: 'ignore' });
  try {
    for (;;) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/health`);
        if (res.status === 200) return Number(process.hrtime.bigint() - started) / 1e6;
      } catch {
        // not listening yet
      }
      if (child.exitCode !== null) throw new Error(`atrium exited with ${child.exitCode}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

const fresh: number[] = [];
const restart: number[] = [];
for (let i = 0; i < runs; i++) {
  const dir = mkdtempSync(path.join(tmpdir(), 'atrium-startup-'));
  const [http, dimse, hl7] = [await freePort(), await freePort(), await freePort()];
  const config = path.join(dir, 'atrium.yaml');
  writeFileSync(config, `dataDir: ${path.join(dir, 'data')}\nhttp: { port: ${http} }\ndimse: { port: ${dimse} }\nhl7: { port: ${hl7} }\nlog: { level: warn }\n`);
  fresh.push(await timeToFirstAnswer(config, http));
  restart.push(await timeToFirstAnswer(config, http));
  rmSync(dir, { recursive: true, force: true });
  console.log(`run ${i + 1}: fresh data folder ${fresh[i]!.toFixed(0)} ms, restart ${restart[i]!.toFixed(0)} ms`);
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const range = (a: number[]) => `${Math.min(...a).toFixed(0)}-${Math.max(...a).toFixed(0)}`;
console.log(`start to first answer: fresh median ${median(fresh).toFixed(0)} ms (${range(fresh)}), restart median ${median(restart).toFixed(0)} ms (${range(restart)})`);
