/**
 * The Part 10 reader against mutated objects (fixed seed, bounded count): whatever the bytes
 * and however they are split into chunks, it answers a dataset or throws its own
 * DicomParseError — never a RangeError or TypeError from a read past a buffer, never a loop
 * without end. ATRIUM_FUZZ_RUNS and ATRIUM_FUZZ_SEED make a longer run (test/support/fuzz.ts).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import { DicomParseError, Part10Parser, parsePart10 } from './part10-parser.ts';
import { TransferSyntax } from './dataset.ts';
import { buildPart10 } from './part10-writer.ts';
import { fuzz, mutateBytes, type Fuzz } from '../../test/support/fuzz.ts';
import { havePydicomFiles, readTestFile } from '../../test/support/pydicom-files.ts';
import { syntheticInstance } from '../../test/support/synthetic.ts';

/** Real objects of many shapes: implicit, big endian, deflated, encapsulated, sequences, UN, private. */
const pydicomSeeds = ['CT_small.dcm', 'MR_small_implicit.dcm', 'ExplVR_BigEnd.dcm', 'image_dfl.dcm', 'JPEG2000.dcm', 'SC_rgb_rle_2frame.dcm',
  'rtplan.dcm', 'rtstruct.dcm', 'nested_priv_SQ.dcm', 'priv_SQ.dcm', 'UN_sequence.dcm', 'reportsi.dcm'];

function seedObjects(): Array<{ name: string; file: Buffer }> {
  const synthetic = syntheticInstance({ Rows: 8, Columns: 8, NumberOfFrames: 2 }).file;
  // A deflated object made here, so that the inflate path is fuzzed without pydicom's files too.
  const parsed = parsePart10(synthetic);
  const deflated = buildPart10(
    { MediaStorageSOPClassUID: '1.2.840.10008.5.1.4.1.1.2', MediaStorageSOPInstanceUID: '1.2.3.4', TransferSyntaxUID: TransferSyntax.DeflatedExplicitVRLittleEndian },
    deflateRawSync(synthetic.subarray(parsed.datasetOffset)),
  );
  return [
    { name: 'synthetic', file: synthetic },
    { name: 'synthetic-deflated', file: deflated },
    ...(havePydicomFiles ? pydicomSeeds.map((name) => ({ name, file: readTestFile(name) })) : []),
  ];
}

/** Parses in chunks of random sizes (the reader must not depend on how bytes arrive). */
function parseChunked(file: Buffer, chunk: () => number, opts: ConstructorParameters<typeof Part10Parser>[0]): void {
  const parser = new Part10Parser(opts);
  for (let i = 0; i < file.length;) {
    const n = Math.max(1, chunk());
    parser.write(file.subarray(i, i + n));
    i += n;
  }
  parser.end();
}

/** The fuzz itself: a failure is thrown with the case that made it. */
function fuzzReader(f: Fuzz): { parsed: number; refused: number } {
  const seeds = seedObjects();
  const outcomes = { parsed: 0, refused: 0 };
  for (let n = 0; n < f.count(3000); n++) {
    const seed = f.pick(seeds);
    const mutated = mutateBytes(f, seed.file);
    // A small header cap now and then, so that the cap's paths are walked too.
    const opts = f.random() < 0.2 ? { maxHeaderBytes: 1 + f.int(4096), bulkThreshold: f.int(2048) } : {};
    for (const how of ['whole', 'chunked'] as const) {
      try {
        if (how === 'whole') parsePart10(mutated, opts);
        else parseChunked(mutated, () => 1 + f.int(f.random() < 0.5 ? 16 : 4096), opts);
        outcomes.parsed++;
      } catch (e) {
        if (!(e instanceof DicomParseError)) {
          throw new Error(`case ${n} (${seed.name}, ${how}, seed ${f.seed}): ${(e as Error).name}: ${(e as Error).message}\n${mutated.toString('base64')}`);
        }
        outcomes.refused++;
      }
    }
  }
  return outcomes;
}

const f = fuzz(0x0da7a_10);
if (process.env.ATRIUM_PART10_FUZZ_CHILD === '1') {
  // The child the test below starts: a reader stuck in a loop cannot stop the test runner's clock.
  process.stdout.write(JSON.stringify(fuzzReader(f)));
} else {
  describe('Part 10 reader fuzz', () => {
    it(`throws only DicomParseError on ${f.count(3000)} mutated objects, whole or in random chunks, and never hangs (seed ${f.seed})`, { timeout: f.timeout(60_000) }, () => {
      // In its own process, killed at the deadline: a synchronous endless loop would block this one's timers.
      const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
        env: { ...process.env, ATRIUM_PART10_FUZZ_CHILD: '1' }, encoding: 'utf8', timeout: f.timeout(30_000), maxBuffer: 64 * 1024 * 1024,
      });
      assert.notEqual(child.signal, 'SIGTERM', `the reader did not finish within ${f.timeout(30_000) / 1000} s: a loop without end?`);
      assert.equal(child.status, 0, child.stderr);
      const outcomes = JSON.parse(child.stdout) as { parsed: number; refused: number };
      // Both outcomes happen: the mutations neither all break nor all spare the objects.
      assert.ok(outcomes.parsed > 0 && outcomes.refused > 0, JSON.stringify(outcomes));
    });
  });
}
