/**
 * `npm run bench:render`: renderFrame alone (windowing and JPEG encoding of a 512x512 16-bit
 * CT slice, as WADO-RS rendered and thumbnails do), in this process. Prints each run's
 * median over 7 renders and the spread. BENCH_RENDER_RUNS sets the count (default 5).
 */
import type { DecodedFrame, ImagePixelModule } from '../src/archive/pixels.ts';
import { renderFrame } from '../src/archive/render.ts';

const runs = Number(process.env.BENCH_RENDER_RUNS ?? 5);
const rows = 512, columns = 512;
const samples = new Int32Array(rows * columns);
for (let i = 0; i < samples.length; i++) samples[i] = Math.round(900 * Math.sin(i / 4000) * Math.cos((i % 512) / 50)) + ((i * 7919) % 31) - 1024;
const frame: DecodedFrame = { kind: 'gray', rows, columns, samples, raw: Int16Array.from(samples) };
const px: ImagePixelModule = {
  Rows: rows, Columns: columns, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, HighBit: 15, PixelRepresentation: 1,
  PhotometricInterpretation: 'MONOCHROME2', NumberOfFrames: 1, littleEndian: true, RescaleIntercept: -1024, WindowCenter: 40, WindowWidth: 400,
};
await renderFrame(frame, px, { format: 'image/jpeg' }); // warm-up
const medians: number[] = [];
for (let run = 0; run < runs; run++) {
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    await renderFrame(frame, px, { format: 'image/jpeg' });
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  medians.push(times[3]!);
  console.log(`run ${run + 1}: median ${times[3]!.toFixed(1)} ms (${times[0]!.toFixed(1)}-${times[6]!.toFixed(1)})`);
}
medians.sort((a, b) => a - b);
console.log(`renderFrame 512x512 CT to JPEG: median of medians ${medians[Math.floor(runs / 2)]!.toFixed(1)} ms, range ${medians[0]!.toFixed(1)}-${medians[runs - 1]!.toFixed(1)} ms`);
