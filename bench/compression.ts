/**
 * Lossless compression at rest on a CT corpus (issue 15 §3): for JPEG-LS, JPEG 2000 and
 * HTJ2K lossless, the space saved and the CPU each slice costs to encode and decode in the
 * codec workers; then STOW-RS ingest of the same series with no compression rule and with
 * a JPEG-LS rule compressing in the background, to see what it does to the ingest rate.
 *
 *   node --import tsx bench/compression.ts [--slices N]
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { generateCtCorpus } from './corpus.ts';
import { CodecPool } from '../src/archive/codec-pool.ts';
import { CompressionAtRest } from '../src/archive/compression.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';
import { Tags } from '../src/dicom/dataset.ts';
import { startAtrium } from '../test/support/atrium.ts';
import { stowFiles } from '../test/support/stow.ts';

const slices = Number(process.argv[process.argv.indexOf('--slices') + 1] ?? 0) || 200;
const benchDir = path.dirname(new URL(import.meta.url).pathname);
const corpus = generateCtCorpus(path.join(benchDir, 'corpus', `compression-${slices}`), 20250612, { series: 1, slicesPerSeries: slices, folders: 1 }, console.log);
const files = readdirSync(corpus.folders[0]!).sort().map((f) => readFileSync(path.join(corpus.folders[0]!, f)));
const frames = files.map((f) => {
  const pd = parsePart10(f).dataset.get(Tags.PixelData)!.bulk!;
  return f.subarray(pd.offset, pd.offset + pd.length);
});
const px = { Rows: 512, Columns: 512, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, HighBit: 11, PixelRepresentation: 0, PhotometricInterpretation: 'MONOCHROME2' };
const fileBytes = files.reduce((n, f) => n + f.length, 0);
const pixelBytes = frames.reduce((n, f) => n + f.length, 0);
console.log(`${files.length} CT slices 512x512, ${(fileBytes / 1e6).toFixed(1)} MB (pixel data ${(pixelBytes / 1e6).toFixed(1)} MB); ${process.version}`);

const cpuMs = (from: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
};

const pool = new CodecPool({ size: 2 });
// Load each codec once before measuring.
for (const ts of ['1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.201']) await pool.decode(await pool.encode(frames[0]!, ts, px), ts, px);
console.log('\n| syntax | pixel data after | ratio | encode CPU ms/slice | encode wall (2 workers) s | decode CPU ms/slice |');
console.log('|---|---|---|---|---|---|');
for (const [name, ts] of [['JPEG-LS lossless', '1.2.840.10008.1.2.4.80'], ['JPEG 2000 lossless', '1.2.840.10008.1.2.4.90'], ['HTJ2K lossless', '1.2.840.10008.1.2.4.201']] as const) {
  let cpu = process.cpuUsage();
  let t = performance.now();
  const encoded = await Promise.all(frames.map((f) => pool.encode(f, ts, px)));
  const encodeCpu = cpuMs(cpu), encodeWall = (performance.now() - t) / 1000;
  cpu = process.cpuUsage();
  t = performance.now();
  const decoded = await Promise.all(encoded.map((e) => pool.decode(e, ts, px)));
  const decodeCpu = cpuMs(cpu);
  if (!decoded.every((d, i) => d.bytes.equals(frames[i]!))) throw new Error(`${name}: not lossless`);
  const out = encoded.reduce((n, e) => n + e.length, 0);
  console.log(`| ${name} | ${(out / 1e6).toFixed(1)} MB | ${(pixelBytes / out).toFixed(2)}x | ${(encodeCpu / frames.length).toFixed(1)} | ${encodeWall.toFixed(1)} | ${(decodeCpu / frames.length).toFixed(1)} |`);
}
// One real CT slice (pydicom's CT_small.dcm, 128x128, signed 16-bit), where Debian ships it.
const real = '/usr/lib/python3/dist-packages/pydicom/data/test_files/CT_small.dcm';
try {
  const f = readFileSync(real);
  const pd = parsePart10(f).dataset.get(Tags.PixelData)!.bulk!;
  const frame = f.subarray(pd.offset, pd.offset + pd.length);
  const realPx = { ...px, Rows: 128, Columns: 128, BitsStored: 16, HighBit: 15, PixelRepresentation: 1 };
  const ratios = [];
  for (const ts of ['1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.201']) ratios.push((frame.length / (await pool.encode(frame, ts, realPx)).length).toFixed(2) + 'x');
  console.log(`\nCT_small.dcm (a real CT slice, 128x128): JPEG-LS ${ratios[0]}, JPEG 2000 ${ratios[1]}, HTJ2K ${ratios[2]}`);
} catch {
  console.log('\n(pydicom test files absent: no real CT slice)');
}
await pool.close();

// Ingest: the same series over STOW-RS (10 objects a request), without and with a JPEG-LS rule at work in the background.
console.log('\n| storage.compression | STOW-RS ingest MB/s | stored bytes after the background work | compression done after ingest (s) | CPU s (whole process) |');
console.log('|---|---|---|---|---|');
for (const withRule of [false, true]) {
  const atrium = await startAtrium({
    configure: (c) => {
      c.storageCompression = withRule ? [{ transferSyntax: '1.2.840.10008.1.2.4.80' }] : [];
    },
  });
  const compression = new CompressionAtRest(atrium.archive, atrium.config.storageCompression, pino({ level: 'silent' }), 100, 0);
  if (withRule) compression.start();
  const cpu = process.cpuUsage();
  const t = performance.now();
  for (let i = 0; i < files.length; i += 10) {
    const res = await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, files.slice(i, i + 10));
    if (res.status >= 300) throw new Error(`STOW-RS ${res.status}`);
    await res.arrayBuffer();
  }
  const ingest = (performance.now() - t) / 1000;
  await compression.drain();
  const done = (performance.now() - t) / 1000;
  let stored = 0;
  for await (const b of atrium.archive.store.list('instances/')) stored += b.size;
  console.log(`| ${withRule ? 'JPEG-LS lossless, CT' : 'none'} | ${(fileBytes / 1e6 / ingest).toFixed(1)} | ${(stored / 1e6).toFixed(1)} MB (${(fileBytes / stored).toFixed(2)}x) | ${withRule ? (done - ingest).toFixed(1) : '-'} | ${(cpuMs(cpu) / 1000).toFixed(1)} |`);
  await compression.stop();
  await atrium.close();
}
