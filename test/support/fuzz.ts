/**
 * What the fuzz tests share: a deterministic PRNG and their size. CI runs a fixed seed and a
 * bounded count; a longer run locally: ATRIUM_FUZZ_SEED=<integer> ATRIUM_FUZZ_RUNS=<factor>
 * (e.g. 20 sends twenty times as many cases, each test's time limit growing with it).
 */

/** A deterministic PRNG (mulberry32): the same seed gives the same bytes every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Fuzz {
  seed: number;
  /** How many cases to run where CI runs `base`. */
  count: (base: number) => number;
  /** A test's time limit where CI's is `baseMs`. */
  timeout: (baseMs: number) => number;
  random: () => number;
  /** An integer in [0, n). */
  int: (n: number) => number;
  pick: <T>(items: readonly T[]) => T;
}

function envInteger(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, not ${JSON.stringify(raw)}`);
  return n;
}

/** A fuzz of its own seed (ATRIUM_FUZZ_SEED, when set, is mixed in so each test still differs). */
export function fuzz(defaultSeed: number): Fuzz {
  const seed = (defaultSeed ^ envInteger('ATRIUM_FUZZ_SEED', 0)) >>> 0;
  const factor = Math.max(1, envInteger('ATRIUM_FUZZ_RUNS', 1));
  const random = prng(seed);
  const int = (n: number) => Math.floor(random() * n);
  return {
    seed,
    count: (base) => base * factor,
    timeout: (baseMs) => baseMs * factor,
    random,
    int,
    pick: (items) => items[int(items.length)]!,
  };
}

/** Values that make lengths, counts and tags interesting: zero, odd, the undefined length, the largest. */
const interesting32 = [0, 1, 2, 3, 7, 0xff, 0x100, 0x7fff, 0x8000, 0xfffe, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const interestingTags = [0xfffee000, 0xfffee00d, 0xfffee0dd, 0x7fe00010, 0x00020010, 0x00280008, 0x00280010, 0x00280100];

/**
 * A DICOM object (or any bytes) with one to four random mutations: bytes flipped, a 16- or
 * 32-bit field set to an interesting value (lengths, item and delimiter tags), a VR changed,
 * a slice removed, repeated or inserted, random bytes, a cut.
 */
export function mutateBytes(f: Fuzz, original: Buffer): Buffer {
  let b = Buffer.from(original);
  const mutations = 1 + f.int(4);
  for (let m = 0; m < mutations && b.length > 0; m++) {
    // Mostly in the first few kilobytes, where the meta header and the elements are, not the pixels.
    const at = f.random() < 0.75 ? f.int(Math.min(b.length, 256 + f.int(4096))) : f.int(b.length);
    switch (f.int(9)) {
      case 0: // a few bytes flipped
        for (let i = 0; i < 1 + f.int(8); i++) b[f.int(b.length)] = f.int(256);
        break;
      case 1: // a 32-bit value (a length) set to an interesting value, little or big endian
        if (at + 4 <= b.length) {
          const v = f.pick(interesting32);
          if (f.random() < 0.8) b.writeUInt32LE(v, at); else b.writeUInt32BE(v, at);
        }
        break;
      case 2: // a 16-bit value (a short length, a US)
        if (at + 2 <= b.length) b.writeUInt16LE(f.pick(interesting32) & 0xffff, at);
        break;
      case 3: // a tag set to an item, delimiter, pixel data or meta tag
        if (at + 4 <= b.length) {
          const t = f.pick(interestingTags);
          b.writeUInt16LE(t >>> 16, at);
          b.writeUInt16LE(t & 0xffff, at + 2);
        }
        break;
      case 4: // a VR changed (to another VR, or to two random letters)
        if (at + 2 <= b.length) b.write(f.random() < 0.7 ? f.pick(['SQ', 'OB', 'OW', 'UN', 'UT', 'US', 'SS', 'UL', 'FD', 'AT', 'PN', 'ZZ']) : String.fromCharCode(65 + f.int(26), 65 + f.int(26)), at, 'latin1');
        break;
      case 5: // a slice removed
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + f.int(64)))]);
        break;
      case 6: { // a slice repeated
        const slice = b.subarray(at, Math.min(b.length, at + 1 + f.int(256)));
        b = Buffer.concat([b.subarray(0, at), ...Array.from({ length: 1 + f.int(f.random() < 0.1 ? 200 : 3) }, () => slice), b.subarray(at)]);
        break;
      }
      case 7: { // random bytes inserted
        const junk = Buffer.alloc(1 + f.int(64));
        for (let i = 0; i < junk.length; i++) junk[i] = f.int(256);
        b = Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]);
        break;
      }
      default: // cut
        b = b.subarray(0, at);
    }
  }
  return b;
}
