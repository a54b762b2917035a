/**
 * A short run for profiling the main thread during C-STORE ingest, outside `npm run bench`:
 * a CT corpus sent by storescu (CONC associations at once) to a fresh Atrium (the compiled CLI),
 * with the server's CPU time per object beside the wall time.
 *
 *   CONC=4 BENCH_ATRIUM_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" node --import tsx bench/profile-dimse.ts
 *   CONC=4 BENCH_ATRIUM_ROOT=/tmp/older-build node --import tsx bench/profile-dimse.ts   (another built tree)
 *   node --import tsx bench/cpuprofile-summary.ts /tmp/prof/*.cpuprofile --objects 300
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAtrium } from './atrium.ts';
import { generateCtCorpus } from './corpus.ts';
import { CallingAE, storeFolders, storeInParallel, waitForEcho } from './dcmtk.ts';
import { freePort, makeTempDir, removeTempDir } from './measure.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));

/** User and system CPU in ms of a process, or of one of its threads (the main thread's id is the process's). */
function cpuOf(pid: number, tid?: number): { user: number; system: number } {
  const fields = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { user: Number(fields[11]) * 10, system: Number(fields[12]) * 10 };
}

const concurrency = Number(process.env.CONC ?? 4);
const plan = { series: Number(process.env.SERIES ?? 2), slicesPerSeries: Number(process.env.SLICES ?? 100), folders: 8 };
const corpus = generateCtCorpus(path.join(benchDir, 'corpus', 'dimse-profile'), 20250612, plan, console.log);
const dir = makeTempDir('bench-profile-dimse-');
const port = await freePort();
const server = await startAtrium(dir, { dimse: { port, aeTitle: 'ATRIUM', maxPduLength: 131072 }, peers: [{ aeTitle: CallingAE.store }] });
try {
  const target = { name: 'Atrium', host: '127.0.0.1', port, aeTitle: 'ATRIUM' };
  if (!await waitForEcho(target)) throw new Error('no C-ECHO answer');
  const groups: string[][] = Array.from({ length: concurrency }, () => []);
  corpus.folders.forEach((f, i) => groups[i % concurrency]!.push(f));
  const before = cpuOf(server.pid);
  const mainBefore = cpuOf(server.pid, server.pid);
  const r = concurrency === 1 ? await storeFolders(target, groups[0]!, 131072) : await storeInParallel(target, groups, 131072);
  const after = cpuOf(server.pid);
  const mainAfter = cpuOf(server.pid, server.pid);
  const cpu = after.user - before.user + after.system - before.system;
  // CPU time, unlike the profile's samples, does not grow when the machine is loaded.
  const mainCpu = mainAfter.user - mainBefore.user + mainAfter.system - mainBefore.system;
  console.log(`C-STORE ${corpus.instances} CT instances (${(corpus.bytes / 2 ** 20).toFixed(0)} MB), ${concurrency} associations: ` +
    `${(corpus.instances / (r.ms / 1000)).toFixed(1)} inst/s, ${r.failed} failed${r.error ? ` (${r.error})` : ''}; wall ${r.ms.toFixed(0)} ms, ` +
    `server user ${after.user - before.user} ms + system ${after.system - before.system} ms = ${(cpu * 1000 / corpus.instances).toFixed(0)} µs CPU an object, ` +
    `of which the main thread ${(mainCpu * 1000 / corpus.instances).toFixed(0)} µs`);
} finally {
  await server.stop();
  removeTempDir(dir);
}
