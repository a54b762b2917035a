/**
 * A short run for profiling, outside `npm run bench`: the CT series of the corpus sent to
 * a fresh Atrium (the real CLI) over STOW-RS, optionally retrieved back, with the CPU time
 * of server and client beside the wall time.
 *
 *   CONC=4 WADO=3 BENCH_ATRIUM_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" \
 *     TCP_NODELAY=1 node --import tsx bench/profile-ingest.ts
 *   ORTHANC=1 CONC=4 WADO=3 TCP_NODELAY=1 node --import tsx bench/profile-ingest.ts
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startAtrium } from './atrium.ts';
import { startOrthanc } from './orthanc.ts';
import { fullPlan, generateCorpus } from './corpus.ts';
import { makeTempDir, removeTempDir } from './measure.ts';
import { retrieveSeries, stowFiles } from './workload.ts';

/** User and system CPU of a process, in ms (from /proc; clock ticks are 10 ms on Linux). */
function cpuOf(pid: number): { user: number; system: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { user: Number(fields[11]) * 10, system: Number(fields[12]) * 10 };
}

const corpus = generateCorpus(path.join(import.meta.dirname, 'corpus', 'full'), 20250612, fullPlan);
const dir = makeTempDir('bench-profile-');
// ORTHANC=1 measures Debian's Orthanc the same way, for comparison.
const server = process.env.ORTHANC === '1' ? await startOrthanc(dir) : await startAtrium(dir);
try {
  const concurrency = Number(process.env.CONC ?? 1);
  const files = corpus.files.filter((f) => f.kind === (process.env.KIND ?? 'ct'));
  const before = cpuOf(server.pid);
  const clientBefore = process.cpuUsage();
  const r = await stowFiles(server.target, files, 10, concurrency);
  const after = cpuOf(server.pid);
  const client = process.cpuUsage(clientBefore);
  console.log(`STOW-RS ${r.instances} CT instances, ${concurrency} concurrent: ${(r.instances / (r.ms / 1000)).toFixed(1)} inst/s, ${r.failed} failed; ` +
    `wall ${r.ms.toFixed(0)} ms, server user ${after.user - before.user} ms + system ${after.system - before.system} ms, client ${((client.user + client.system) / 1000).toFixed(0)} ms`);
  // WADO=n: n whole-series retrieves of the CT series.
  for (let i = 0; i < Number(process.env.WADO ?? 0); i++) {
    const cpuBefore = cpuOf(server.pid);
    const clientCpu = process.cpuUsage();
    const w = await retrieveSeries(server.target, corpus.ct.StudyInstanceUID, corpus.ct.SeriesInstanceUID, 'multipart/related; type="application/dicom"; transfer-syntax=*');
    const cpuAfter = cpuOf(server.pid);
    const c = process.cpuUsage(clientCpu);
    console.log(`WADO-RS series: ${w.MBps.toFixed(1)} MB/s, TTFB ${w.ttfbMs.toFixed(1)} ms; server user ${cpuAfter.user - cpuBefore.user} ms + system ${cpuAfter.system - cpuBefore.system} ms, client ${((c.user + c.system) / 1000).toFixed(0)} ms`);
  }
} finally {
  await server.stop();
  removeTempDir(dir);
}
