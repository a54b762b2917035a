/**
 * Forwarding bench: N CT slices sent to a DCMTK storescp (--fork, --ignore: it accepts
 * associations side by side and writes nothing), by
 *  - storescu, one association, from the corpus files;
 *  - Atrium's Forwarder with 1 and with 4 associations, from Atrium's store and queue
 *    (the slices ingested beforehand; each round queues them all and times until every
 *    row is done: claims, storage reads, C-STOREs and the done marks).
 * Same corpus as the DIMSE bench (bench/corpus/dimse-*). Alone:
 *   node --import tsx bench/forwarding.ts [--quick]
 * Environment: BENCH_QUICK=1, BENCH_SEED, BENCH_FORWARD_ROUNDS (default 3), BENCH_TMPDIR.
 * Writes bench/out/forwarding-latest.json and prints a markdown table.
 */
import { createReadStream, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { defaultConfig } from '../src/config/config.ts';
import { openArchive } from '../src/archive/archive.ts';
import { Forwarder } from '../src/dimse/forwarder.ts';
import { ForwardingQueue } from '../src/index/forwarding-queue.ts';
import { generateCtCorpus } from './corpus.ts';
import { storeFolders, waitForEcho, type DimseTarget } from './dcmtk.ts';
import { freePort, makeTempDir, MB, median, nowMs, outputTail, removeTempDir, spawnTracked, stopProcess } from './measure.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const maxPduLength = 131072;

interface Row {
  sender: string;
  associations: number;
  roundsMs: number[];
  failed: number;
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
  const seed = Number(process.env.BENCH_SEED ?? 20250612);
  const rounds = Number(process.env.BENCH_FORWARD_ROUNDS ?? 3);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const plan = quick ? { series: 3, slicesPerSeries: 100, folders: 5 } : { series: 4, slicesPerSeries: 500, folders: 5 };
  const corpus = generateCtCorpus(path.join(benchDir, 'corpus', quick ? 'dimse-quick' : 'dimse-full'), seed, plan, log);

  const port = await freePort();
  const scp = spawnTracked('storescp', ['-aet', 'STORESCP', '-pdu', String(maxPduLength), '--fork', '--ignore', String(port)], {
    env: { ...process.env, TCP_NODELAY: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail = outputTail(scp);
  const target: DimseTarget = { name: 'storescp', host: '127.0.0.1', port, aeTitle: 'STORESCP' };
  if (!await waitForEcho(target, 10_000)) throw new Error(`storescp did not start: ${tail()}`);

  const dataDir = makeTempDir('bench-forward-');
  const rows: Row[] = [];
  try {
    // storescu, one association, the whole corpus.
    const storescu: Row = { sender: 'storescu', associations: 1, roundsMs: [], failed: 0 };
    for (let i = 0; i < rounds; i++) {
      const run = await storeFolders(target, corpus.folders, maxPduLength);
      if (run.error) throw new Error(run.error);
      storescu.roundsMs.push(run.ms);
      storescu.failed = Math.max(storescu.failed, run.failed);
      log(`storescu: ${(corpus.bytes / MB / (run.ms / 1000)).toFixed(0)} MB/s`);
    }
    rows.push(storescu);

    // Atrium: ingest the corpus once, then forward it.
    const config = defaultConfig(dataDir);
    config.log.level = 'warn';
    config.peers = [{ aeTitle: 'STORESCP', host: '127.0.0.1', port, site: 'LOCAL', may: { store: false, query: false, retrieve: false } }];
    config.dimse.maxPduLength = maxPduLength;
    config.routing.pollIntervalMs = 20;
    const logger = pino({ level: 'warn' });
    const archive = await openArchive(config, logger);
    try {
      const site = archive.sites.get('LOCAL')!;
      const files = corpus.folders.flatMap((f) => readdirSync(f).map((n) => path.join(f, n)));
      log(`ingesting ${files.length} slices into Atrium`);
      for (let i = 0; i < files.length; i += 8) {
        await Promise.all(files.slice(i, i + 8).map(async (f) => {
          const r = await archive.ingestor.ingestInstance(createReadStream(f), { site, via: 'import' });
          if (!r.ok) throw new Error(`${f}: ${r.error.message}`);
        }));
      }
      const queue = new ForwardingQueue(archive.index.sql);
      const items = [];
      for (const s of corpus.series) {
        for (const inst of await archive.index.getStoredInstances({ StudyInstanceUID: s.StudyInstanceUID })) {
          items.push({ SOPInstanceUID: inst.SOPInstanceUID, StudyInstanceUID: s.StudyInstanceUID, destination: 'STORESCP', reason: 'bench' });
        }
      }
      for (const associations of [1, 4]) {
        const row: Row = { sender: 'Atrium Forwarder', associations, roundsMs: [], failed: 0 };
        for (let i = 0; i < rounds; i++) {
          const forwarder = new Forwarder(archive, { ...config, routing: { ...config.routing, associationsPerPeer: associations } }, logger);
          const started = nowMs();
          await queue.enqueue(items);
          forwarder.start();
          for (;;) {
            const s = (await queue.status()).find((d) => d.destination === 'STORESCP');
            if (s && s.pending + s.inProgress === 0) {
              row.failed = Math.max(row.failed, s.failed);
              break;
            }
            await new Promise((r) => setTimeout(r, 10));
          }
          const ms = nowMs() - started;
          await forwarder.stop();
          row.roundsMs.push(ms);
          log(`Atrium Forwarder, ${associations} association(s): ${(corpus.bytes / MB / (ms / 1000)).toFixed(0)} MB/s${row.failed ? `, ${row.failed} failed` : ''}`);
        }
        rows.push(row);
      }
    } finally {
      await archive.close();
    }
  } finally {
    await stopProcess(scp, 2000);
    removeTempDir(dataDir);
  }

  const out = { date: new Date().toISOString(), quick, instances: corpus.instances, bytes: corpus.bytes, cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version, rows };
  mkdirSync(path.join(benchDir, 'out'), { recursive: true });
  writeFileSync(path.join(benchDir, 'out', 'forwarding-latest.json'), JSON.stringify(out, null, 2));
  const base = median(rows[0]!.roundsMs);
  const lines = [
    `${corpus.instances} CT slices 512x512 (${(corpus.bytes / MB).toFixed(0)} MB) to storescp --fork --ignore on loopback, ${rounds} rounds, median:`,
    '',
    '| sender | associations | median s | instances/s | MB/s | vs storescu | rounds (s) | failed |',
    '|---|---:|---:|---:|---:|---:|---|---:|',
    ...rows.map((r) => {
      const ms = median(r.roundsMs);
      return `| ${r.sender} | ${r.associations} | ${(ms / 1000).toFixed(2)} | ${(corpus.instances / (ms / 1000)).toFixed(0)} | ${(corpus.bytes / MB / (ms / 1000)).toFixed(0)} | ${(base / ms).toFixed(2)}x | ${r.roundsMs.map((x) => (x / 1000).toFixed(2)).join(', ')} | ${r.failed} |`;
    }),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

main().then(() => process.exit(0), (e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
