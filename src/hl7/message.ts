/**
 * HL7 v2 messages (HL7 v2.5 chapter 2): segments split on CR, fields on MSH-1, and
 * repetitions, components, subcomponents and escapes on the characters MSH-2 names.
 * Values are held unescaped; positions are numbered as the standard numbers them
 * (PID-3.4.2 is field 3, component 4, subcomponent 2), so MSH-1 is the field separator.
 */

export interface Delimiters {
  field: string;
  component: string;
  repetition: string;
  escape: string;
  subcomponent: string;
}

export const standardDelimiters: Delimiters = { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&' };

/** A field: its repetitions, each a list of components, each a list of subcomponents. */
export type Field = string[][][];

export interface Segment {
  id: string;
  /** fields[n] is field n (fields[0] unused); MSH-1 and MSH-2 hold the delimiters as text. */
  fields: Field[];
}

export interface Hl7Message {
  delimiters: Delimiters;
  segments: Segment[];
}

/** Why a message could not be read as HL7 at all (no MSH, bad delimiters). */
export class Hl7SyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Hl7SyntaxError';
  }
}

/**
 * MSH-1 and MSH-2 of a message's text: the field separator and four distinct encoding
 * characters (a fifth, the truncation character of v2.7, is accepted and ignored).
 */
export function readDelimiters(text: string): Delimiters {
  if (!text.startsWith('MSH')) throw new Hl7SyntaxError('the message does not start with an MSH segment');
  const field = text.charAt(3);
  const end = text.indexOf(field, 4);
  const encoding = end < 0 ? '' : text.slice(4, end);
  const chars = [field, ...encoding];
  const plain = /^[A-Za-z0-9\r\n ]$/;
  if (field === '' || (encoding.length !== 4 && encoding.length !== 5) || new Set(chars).size !== chars.length || chars.some((c) => plain.test(c))) {
    throw new Hl7SyntaxError(`MSH-2 encoding characters ${JSON.stringify(encoding)} are not four distinct separators (expected ^~\\&)`);
  }
  return { field, component: encoding[0]!, repetition: encoding[1]!, escape: encoding[2]!, subcomponent: encoding[3]! };
}

/** Parses a message's text (already decoded from its character set). Segments may end in CR, LF or CRLF. */
export function parseMessage(text: string): Hl7Message {
  const delimiters = readDelimiters(text);
  const segments: Segment[] = [];
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line.trim() === '') continue;
    segments.push(parseSegment(line, delimiters));
  }
  return { delimiters, segments };
}

function parseSegment(line: string, d: Delimiters): Segment {
  const parts = line.split(d.field);
  const id = parts[0]!;
  if (!/^[A-Z][A-Z0-9]{2}$/.test(id)) throw new Hl7SyntaxError(`${JSON.stringify(id.slice(0, 10))} is not a segment name`);
  const fields: Field[] = [[]];
  if (id === 'MSH') {
    fields.push([[[d.field]]], [[[parts[1] ?? '']]]);
    for (const p of parts.slice(2)) fields.push(parseField(p, d));
  } else {
    for (const p of parts.slice(1)) fields.push(parseField(p, d));
  }
  return { id, fields };
}

function parseField(raw: string, d: Delimiters): Field {
  return raw.split(d.repetition).map((rep) => rep.split(d.component).map((comp) => comp.split(d.subcomponent).map((sub) => unescape(sub, d))));
}

/** Replaces \F\ \S\ \T\ \R\ \E\ (and \Xhh..\ hex, \.br\ line break); other escapes are kept as received. */
export function unescape(value: string, d: Delimiters): string {
  const e = d.escape;
  if (!value.includes(e)) return value;
  let out = '';
  let i = 0;
  while (i < value.length) {
    const c = value[i]!;
    const close = c === e ? value.indexOf(e, i + 1) : -1;
    if (close < 0) {
      out += c;
      i += 1;
      continue;
    }
    const seq = value.slice(i + 1, close);
    const replaced = seq === 'F' ? d.field
      : seq === 'S' ? d.component
      : seq === 'T' ? d.subcomponent
      : seq === 'R' ? d.repetition
      : seq === 'E' ? d.escape
      : seq === '.br' ? '\n'
      : /^X(?:[0-9A-Fa-f]{2})+$/.test(seq) ? Buffer.from(seq.slice(1), 'hex').toString('latin1')
      : undefined;
    if (replaced === undefined) {
      out += c;
      i += 1;
    } else {
      out += replaced;
      i = close + 1;
    }
  }
  return out;
}

export function escape(value: string, d: Delimiters): string {
  let out = '';
  for (const c of value) {
    out += c === d.escape ? `${d.escape}E${d.escape}`
      : c === d.field ? `${d.escape}F${d.escape}`
      : c === d.component ? `${d.escape}S${d.escape}`
      : c === d.subcomponent ? `${d.escape}T${d.escape}`
      : c === d.repetition ? `${d.escape}R${d.escape}`
      : c === '\r' || c === '\n' ? `${d.escape}.br${d.escape}`
      : c;
  }
  return out;
}

/** Writes a message back to text, segments ended by CR (the inverse of parseMessage). */
export function encodeMessage(message: Hl7Message): string {
  const d = message.delimiters;
  return message.segments.map((s) => encodeSegment(s, d)).join('\r') + '\r';
}

export function encodeSegment(segment: Segment, d: Delimiters): string {
  const fields = segment.fields.slice(1).map((field, i) => {
    if (segment.id === 'MSH' && i === 0) return null;
    if (segment.id === 'MSH' && i === 1) return `${d.component}${d.repetition}${d.escape}${d.subcomponent}`;
    return field.map((rep) => rep.map((comp) => comp.map((sub) => escape(sub, d)).join(d.subcomponent)).join(d.component)).join(d.repetition);
  }).filter((f): f is string => f !== null);
  return [segment.id, ...fields].join(d.field);
}

/** A segment from plain values: each field a string, or its components. */
export function segment(id: string, ...fields: Array<string | string[] | undefined>): Segment {
  return { id, fields: [[], ...fields.map((f): Field => [(f === undefined ? [''] : typeof f === 'string' ? [f] : f).map((c) => [c])])] };
}

/** The first segment with this id, or undefined. */
export function findSegment(message: Hl7Message, id: string): Segment | undefined {
  return message.segments.find((s) => s.id === id);
}

/**
 * One value: field, then component and subcomponent (1-based), of repetition `rep`
 * (0-based). Empty and absent are both ''.
 */
export function valueOf(seg: Segment | undefined, field: number, component = 1, subcomponent = 1, rep = 0): string {
  return seg?.fields[field]?.[rep]?.[component - 1]?.[subcomponent - 1] ?? '';
}

/** The repetitions of a field (an absent or empty field has none). */
export function repetitionsOf(seg: Segment | undefined, field: number): string[][][] {
  const f = seg?.fields[field];
  if (!f) return [];
  return f.filter((rep) => rep.some((comp) => comp.some((sub) => sub !== '')));
}

/** Component of a repetition (as repetitionsOf gives them), 1-based. */
export function componentOf(rep: string[][] | undefined, component: number, subcomponent = 1): string {
  return rep?.[component - 1]?.[subcomponent - 1] ?? '';
}
