/**
 * Flushes per acknowledged object: the real CLI (`node bin/atrium.mjs serve`, compiled code)
 * under `strace -f -y -e trace=fsync,fdatasync,syncfs`, once with no object and once with
 * `count` objects sent by `parallel` storescu processes at once; the difference, divided by
 * the objects, is what each object cost (start and stop cancel out; the journal's checkpoint
 * at stop is counted with the objects). Each flush is classed by the file it flushed, so the
 * flushes an acknowledgement waits for are told from those of the background workers
 * (outbox consumers commit their own progress to the index).
 *
 *   npm run build:server && node --import tsx bench/flushes.ts [count] [parallel] [atrium root]
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { syntheticInstance } from '../test/support/synthetic.ts';
import { dcmtk, freePort } from '../test/support/dcmtk.ts';

const count = Number(process.argv[2] ?? 400);
const parallel = Number(process.argv[3] ?? 4);
const atriumRoot = path.resolve(process.argv[4] ?? path.join(import.meta.dirname, '..'));

type Counts = Record<string, number>;

/** What a flushed path is, from strace -y's <path>. */
function kindOf(call: string, file: string): string {
  if (call === 'syncfs') return 'syncfs (journal checkpoint)';
  if (file.includes('/ingest-journal/')) return 'ingest journal';
  if (file.endsWith('ingest-journal')) return 'ingest journal folder';
  if (file.endsWith('.sqlite-wal')) return 'index WAL';
  if (file.endsWith('.sqlite')) return 'index database';
  if (file.includes('/blobs/') && /\.dcm$|\/\.tmp\/[^/]+$/.test(file)) return 'object file';
  if (file.includes('/blobs')) return 'object folder';
  return 'other';
}

async function run(objects: number): Promise<Counts> {
  const work = mkdtempSync(path.join(tmpdir(), 'atrium-flushes-'));
  try {
    const files = path.join(work, 'files');
    mkdirSync(files);
    const batches: string[][] = Array.from({ length: parallel }, () => []);
    for (let i = 0; i < objects; i++) {
      const file = path.join(files, `${i}.dcm`);
      writeFileSync(file, syntheticInstance({ PatientID: `FLUSH-${i % 7}`, Rows: 64, Columns: 64 }).file);
      batches[i % parallel]!.push(file);
    }
    const port = await freePort();
    const config = path.join(work, 'atrium.yaml');
    writeFileSync(config, [
      `dataDir: ${path.join(work, 'data')}`,
      'http: { host: 127.0.0.1, port: 0 }',
      'index: { engine: sqlite }',
      'sites:',
      '  - { code: CHU-NORD, name: CHU Nord, finess: "590000001", issuerOfPatientID: CHUNORD }',
      `dimse: { enabled: true, host: 127.0.0.1, port: ${port}, aeTitle: ATRIUM, requireKnownCallers: false }`,
      'log: { level: info }',
    ].join('\n'));
    const traceFile = path.join(work, 'strace.txt');
    const tracer = spawn('strace', ['-f', '-y', '-e', 'trace=fsync,fdatasync,syncfs', '-o', traceFile,
      process.execPath, path.join(atriumRoot, 'bin/atrium.mjs'), 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      tracer.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('atrium is serving')) resolve();
      });
      tracer.once('exit', (code) => reject(new Error(`atrium exited with ${code}`)));
    });
    const results = await Promise.all(batches.filter((b) => b.length > 0).map((b) => dcmtk('storescu', ['-aec', 'ATRIUM', '127.0.0.1', String(port), ...b], 300_000)));
    for (const r of results) if (r.code !== 0) throw new Error(`storescu failed: ${r.output}`);
    const node = execFileSync('pgrep', ['-P', String(tracer.pid)]).toString().trim().split('\n')[0]!;
    const exited = new Promise<void>((resolve) => tracer.once('exit', () => resolve()));
    process.kill(Number(node), 'SIGTERM');
    await exited;
    const counts: Counts = {};
    for (const line of readFileSync(traceFile, 'utf8').split('\n')) {
      // e.g. `1234 fdatasync(23</tmp/…/ingest-journal/000000000001.log>) = 0` (unfinished/resumed pairs counted once)
      const m = /(fsync|fdatasync|syncfs)\(\d+<([^>]*)>/.exec(line);
      if (!m) continue;
      const kind = kindOf(m[1]!, m[2]!);
      counts[kind] = (counts[kind] ?? 0) + 1;
    }
    return counts;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const base = await run(0);
const loaded = await run(count);
const perObject: Record<string, number> = {};
for (const kind of new Set([...Object.keys(base), ...Object.keys(loaded)])) {
  perObject[kind] = Number((((loaded[kind] ?? 0) - (base[kind] ?? 0)) / count).toFixed(3));
}
const total = Object.values(perObject).reduce((a, b) => a + b, 0);
process.stdout.write(JSON.stringify({ count, parallel, atriumRoot, base, loaded, perObject, total: Number(total.toFixed(3)) }, null, 2) + '\n');
