import type { VR } from './dataset.ts';

/**
 * Decoding of text values by Specific Character Set (0008,0005), PS3.5 §6.1 and Annex H-K.
 * Single-byte and UTF-8/GB18030 repertoires decode in one call; ISO 2022 code extensions
 * are followed escape sequence by escape sequence, with the reset to the initial
 * character sets at value, component and line delimiters (PS3.5 6.1.2.5.3).
 */
export interface CharacterSetDecoder {
  decode(bytes: Buffer, vr: VR): string;
  /** Defined Terms Atrium did not recognise (decoded as Latin-1): worth a warning. */
  readonly unknownTerms: readonly string[];
}

/** The VRs whose values are in the specific character set; all others are plain ASCII. */
const textVRs: ReadonlySet<VR> = new Set<VR>(['SH', 'LO', 'ST', 'LT', 'UC', 'UT', 'PN']);

type Codec =
  | { kind: 'latin1' }
  | { kind: 'decoder'; decoder: TextDecoder }
  /** ISO 2022 multi-byte G0 (JIS X 0208 / 0212): 7-bit byte pairs. */
  | { kind: 'jis0208' }
  | { kind: 'jis0212' };

const decoders = new Map<string, TextDecoder>();
function textDecoder(label: string): TextDecoder {
  let d = decoders.get(label);
  if (!d) {
    d = new TextDecoder(label, { fatal: false });
    decoders.set(label, d);
  }
  return d;
}

const latin1: Codec = { kind: 'latin1' };
const dec = (label: string): Codec => ({ kind: 'decoder', decoder: textDecoder(label) });

/** Single-byte repertoires (G1 of ISO 2022) by the final byte of their ESC 02/13 F designation. */
const g1ByEscape: Record<string, () => Codec> = {
  A: () => latin1, // ISO_IR 100
  B: () => dec('iso-8859-2'), // ISO_IR 101
  C: () => dec('iso-8859-3'), // ISO_IR 109
  D: () => dec('iso-8859-4'), // ISO_IR 110
  L: () => dec('iso-8859-5'), // ISO_IR 144
  G: () => dec('iso-8859-6'), // ISO_IR 127
  F: () => dec('iso-8859-7'), // ISO_IR 126
  H: () => dec('iso-8859-8'), // ISO_IR 138
  M: () => dec('iso-8859-9'), // ISO_IR 148
  T: () => dec('windows-874'), // ISO_IR 166 (TIS 620)
  b: () => dec('iso-8859-15'), // ISO_IR 203
};

interface Repertoire {
  /** Decoder for the whole value when no code extension is used. */
  whole: Codec;
  /** Initial G0 and G1 under ISO 2022. */
  g0: Codec;
  g1: Codec;
}

/**
 * Writers in the field spell the Defined Terms loosely ("ISO-IR 100", "ISO_IR100", "utf-8");
 * they are read as meant. Runs once per distinct (0008,0005), the decoder being cached.
 */
function canonicalTerm(term: string): string {
  const t = term.trim().toUpperCase().replace(/^ISO[ _-]?(2022[ _-]?)?IR[ _-]?/, 'ISO_IR ');
  if (t === 'UTF-8' || t === 'UTF8') return 'ISO_IR 192';
  return t;
}

function repertoireOf(term: string): Repertoire | undefined {
  switch (canonicalTerm(term)) {
    case '':
    case 'ISO_IR 6':
      return { whole: latin1, g0: latin1, g1: latin1 };
    case 'ISO_IR 100': return single(latin1);
    case 'ISO_IR 101': return single(dec('iso-8859-2'));
    case 'ISO_IR 109': return single(dec('iso-8859-3'));
    case 'ISO_IR 110': return single(dec('iso-8859-4'));
    case 'ISO_IR 144': return single(dec('iso-8859-5'));
    case 'ISO_IR 127': return single(dec('iso-8859-6'));
    case 'ISO_IR 126': return single(dec('iso-8859-7'));
    case 'ISO_IR 138': return single(dec('iso-8859-8'));
    case 'ISO_IR 148': return single(dec('iso-8859-9'));
    case 'ISO_IR 203': return single(dec('iso-8859-15'));
    case 'ISO_IR 166': return single(dec('windows-874'));
    // JIS X 0201: romaji in G0, half-width katakana in G1; Shift_JIS decodes both ranges so.
    case 'ISO_IR 13': return { whole: dec('shift_jis'), g0: latin1, g1: dec('shift_jis') };
    case 'ISO_IR 87': return { whole: { kind: 'jis0208' }, g0: { kind: 'jis0208' }, g1: latin1 };
    case 'ISO_IR 159': return { whole: { kind: 'jis0212' }, g0: { kind: 'jis0212' }, g1: latin1 };
    case 'ISO_IR 149': return { whole: dec('euc-kr'), g0: latin1, g1: dec('euc-kr') };
    case 'ISO_IR 58': return { whole: dec('gbk'), g0: latin1, g1: dec('gbk') };
    case 'ISO_IR 192': return { whole: dec('utf-8'), g0: dec('utf-8'), g1: dec('utf-8') };
    case 'GB18030': return { whole: dec('gb18030'), g0: dec('gb18030'), g1: dec('gb18030') };
    case 'GBK': return { whole: dec('gbk'), g0: dec('gbk'), g1: dec('gbk') };
    default: return undefined;
  }
}

function single(codec: Codec): Repertoire {
  return { whole: codec, g0: latin1, g1: codec };
}

const ESC = 0x1b;
const cache = new Map<string, CharacterSetDecoder>();

export function characterSetDecoder(specificCharacterSet: readonly string[]): CharacterSetDecoder {
  const key = specificCharacterSet.join('\\');
  let d = cache.get(key);
  if (!d) {
    d = buildDecoder(specificCharacterSet);
    cache.set(key, d);
  }
  return d;
}

function buildDecoder(terms: readonly string[]): CharacterSetDecoder {
  const unknownTerms: string[] = [];
  const first = repertoireOf(terms[0] ?? '') ?? (unknownTerms.push(terms[0]!), repertoireOf('')!);
  for (const t of terms.slice(1)) if (!repertoireOf(t)) unknownTerms.push(t);
  // Escapes are honoured whenever more than one term is given, even if the writer forgot the "ISO 2022" spelling.
  const extended = terms.length > 1 || terms.some((t) => t.trim().toUpperCase().startsWith('ISO 2022'));
  return {
    unknownTerms,
    decode(bytes: Buffer, vr: VR): string {
      if (!textVRs.has(vr)) return bytes.toString('latin1');
      if (!extended || !bytes.includes(ESC)) return decodeWith(first.whole, bytes);
      return decodeIso2022(bytes, first, vr);
    },
  };
}

function decodeWith(codec: Codec, bytes: Buffer): string {
  switch (codec.kind) {
    case 'latin1':
      return bytes.toString('latin1');
    case 'decoder':
      return codec.decoder.decode(bytes);
    case 'jis0208':
      // ISO-2022-JP decodes JIS X 0208 once designated.
      return textDecoder('iso-2022-jp').decode(Buffer.concat([Buffer.from([ESC, 0x24, 0x42]), bytes]));
    case 'jis0212': {
      // EUC-JP carries JIS X 0212 as 0x8F followed by the pair with the high bit set.
      const euc = Buffer.alloc((bytes.length / 2) * 3);
      for (let i = 0, j = 0; i + 1 < bytes.length; i += 2, j += 3) {
        euc[j] = 0x8f;
        euc[j + 1] = bytes[i]! | 0x80;
        euc[j + 2] = bytes[i + 1]! | 0x80;
      }
      return textDecoder('euc-jp').decode(euc);
    }
  }
}

/**
 * Bytes at which the initial character sets are active again (PS3.5 6.1.2.5.3): line and
 * tab controls always, the value delimiter where the VR is multi-valued, the component
 * (^) and component group (=) delimiters in a PN.
 */
function isDelimiter(b: number, multiValued: boolean, personName: boolean): boolean {
  return b === 0x0d || b === 0x0a || b === 0x0c || b === 0x09
    || (multiValued && b === 0x5c)
    || (personName && (b === 0x5e || b === 0x3d));
}

function decodeIso2022(bytes: Buffer, initial: Repertoire, vr: VR): string {
  const personName = vr === 'PN';
  const multiValued = vr !== 'LT' && vr !== 'ST' && vr !== 'UT';
  let g0 = initial.g0;
  let g1 = initial.g1;
  let out = '';
  let start = 0;
  const flush = (end: number) => {
    if (end <= start) return;
    const run = bytes.subarray(start, end);
    out += decodeRun(run, g0, g1);
  };
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    if (b === ESC) {
      flush(i);
      const consumed = applyEscape(bytes, i, (c) => { g0 = c; }, (c) => { g1 = c; });
      i += consumed;
      start = i;
      continue;
    }
    if (isDelimiter(b, multiValued, personName) && g0.kind !== 'jis0208' && g0.kind !== 'jis0212') {
      flush(i);
      out += String.fromCharCode(b);
      g0 = initial.g0;
      g1 = initial.g1;
      i++;
      start = i;
      continue;
    }
    i++;
  }
  flush(bytes.length);
  return out;
}

/** A run under one designation: 7-bit bytes by G0, 8-bit bytes by G1. */
function decodeRun(run: Buffer, g0: Codec, g1: Codec): string {
  if (g0.kind === 'jis0208' || g0.kind === 'jis0212') return decodeWith(g0, run);
  // G1 decoders (ISO 8859-x, EUC-KR, GBK, Shift_JIS katakana) decode ASCII as ASCII too.
  if (run.some((b) => b >= 0x80)) return decodeWith(g1, run);
  return decodeWith(g0, run);
}

/** Applies the escape sequence at i; returns its length (1 when not understood: the ESC is dropped). */
function applyEscape(bytes: Buffer, i: number, setG0: (c: Codec) => void, setG1: (c: Codec) => void): number {
  const s = bytes.subarray(i + 1, i + 4).toString('latin1');
  if (s.startsWith('(B')) { setG0(latin1); return 3; }
  if (s.startsWith('(J')) { setG0(latin1); return 3; }
  if (s.startsWith(')I')) { setG1(dec('shift_jis')); return 3; }
  if (s.startsWith('$B') || s.startsWith('$@')) { setG0({ kind: 'jis0208' }); return 3; }
  if (s.startsWith('$(D')) { setG0({ kind: 'jis0212' }); return 4; }
  if (s.startsWith('$)C')) { setG1(dec('euc-kr')); return 4; }
  if (s.startsWith('$)A')) { setG1(dec('gbk')); return 4; }
  if (s[0] === '-' && s[1] !== undefined && g1ByEscape[s[1]]) { setG1(g1ByEscape[s[1]]!()); return 3; }
  return 1;
}
