/**
 * `npm run bench:multipart`: the multipart codec alone (writeMultipart + readMultipart), the
 * hot path of every STOW-RS body and WADO-RS answer. 512 MiB of delimiter-like bytes cut at
 * odd offsets, so that every delimiter straddles two chunks; prints MB/s of each run and
 * the median. BENCH_MULTIPART_MIB and BENCH_MULTIPART_RUNS change the size and the count.
 */
import { Readable } from 'node:stream';
import { multipartBoundary, readMultipart, writeMultipart, type MultipartSource } from '../src/dicomweb/multipart.ts';

const mib = Number(process.env.BENCH_MULTIPART_MIB ?? 512);
const runs = Number(process.env.BENCH_MULTIPART_RUNS ?? 5);
const chunkSize = 64 * 1024;

const pattern = Buffer.alloc(chunkSize);
for (let i = 0, x = 11; i < chunkSize; i++) {
  x = (x * 1103515245 + 12345) & 0x7fffffff;
  const r = x >> 16;
  pattern[i] = r % 7 === 0 ? 0x0d : r % 11 === 0 ? 0x0a : r % 13 === 0 ? 0x2d : r & 0xff;
}

async function oneRun(): Promise<number> {
  const size = mib * 1024 * 1024;
  const boundary = multipartBoundary();
  async function* body(): AsyncGenerator<Buffer> {
    for (let sent = 0; sent < size; sent += chunkSize) yield pattern;
  }
  async function* parts(): AsyncGenerator<MultipartSource> {
    yield { contentType: 'application/dicom', body: body() };
  }
  async function* socket(): AsyncGenerator<Buffer> {
    for await (const piece of writeMultipart(parts(), boundary)) {
      const cut = piece.length > 1000 ? 777 : 5;
      yield piece.subarray(0, cut);
      if (piece.length > cut) yield piece.subarray(cut);
    }
  }
  const started = process.hrtime.bigint();
  let received = 0;
  for await (const part of readMultipart(Readable.from(socket()), boundary)) {
    for await (const chunk of part.body) received += (chunk as Buffer).length;
  }
  if (received !== size) throw new Error(`received ${received} bytes of ${size}`);
  return size / 1e6 / (Number(process.hrtime.bigint() - started) / 1e9);
}

const rates: number[] = [];
for (let i = 0; i < runs; i++) {
  rates.push(await oneRun());
  console.log(`run ${i + 1}: ${rates[i]!.toFixed(0)} MB/s`);
}
const sorted = [...rates].sort((a, b) => a - b);
console.log(`multipart ${mib} MiB x ${runs}: median ${sorted[Math.floor(runs / 2)]!.toFixed(0)} MB/s, min ${sorted[0]!.toFixed(0)}, max ${sorted[runs - 1]!.toFixed(0)}`);
