/**
 * MSH-18 character sets (HL7 table 0211) Atrium reads and writes. French RIS and HIS
 * mostly send 8859/1, often without saying so, hence a configurable default.
 */

export type Hl7CharacterSet = 'ASCII' | '8859/1' | '8859/15' | 'UNICODE UTF-8';

const supported: readonly Hl7CharacterSet[] = ['ASCII', '8859/1', '8859/15', 'UNICODE UTF-8'];

export function isSupportedCharacterSet(value: string): value is Hl7CharacterSet {
  return (supported as readonly string[]).includes(value);
}

/**
 * MSH-18 of raw bytes, read before decoding: the MSH segment is ASCII whatever follows.
 * '' when absent. Only the first repetition counts (others are alternate sets for escapes).
 */
export function declaredCharacterSet(bytes: Buffer): string {
  const head = bytes.subarray(0, Math.min(bytes.length, 4096)).toString('latin1');
  const msh = head.split(/\r|\n/, 1)[0] ?? '';
  const sep = msh.charAt(3);
  if (sep === '') return '';
  const fields = msh.split(sep);
  // fields[0] is "MSH" and fields[1] MSH-2, so MSH-n is fields[n - 1].
  // An MSH-2 too short to name a repetition separator (refused later) must not fail here.
  const repetition = fields[1]?.charAt(1) || '~';
  return ((fields[17] ?? '').split(repetition)[0] ?? '').trim();
}

export function decodeText(bytes: Buffer, charset: Hl7CharacterSet): string {
  switch (charset) {
    case 'UNICODE UTF-8':
      return new TextDecoder('utf-8').decode(bytes);
    case '8859/15':
      return new TextDecoder('iso-8859-15').decode(bytes);
    default:
      // ASCII is read as Latin-1: a stray accented byte is kept rather than lost.
      return bytes.toString('latin1');
  }
}

export function encodeText(text: string, charset: Hl7CharacterSet): Buffer {
  if (charset === 'UNICODE UTF-8') return Buffer.from(text, 'utf8');
  // Characters outside Latin-1 become '?' rather than a wrong byte.
  return Buffer.from(text.replace(/[^\x00-\xff]/g, '?'), 'latin1');
}
