/**
 * The text a PDF made by pdfkit shows, for tests: its content streams inflated, the strings of
 * each TJ (hex, WinAnsi for the standard fonts) joined, one line per TJ. Enough for pdfkit's own
 * output (no poppler here); not a general PDF reader.
 */
import { inflateSync } from 'node:zlib';

export function pdfText(pdf: Buffer): string {
  const lines: string[] = [];
  for (const m of pdf.toString('latin1').matchAll(/stream\r?\n([\s\S]*?)\r?\nendstream/g)) {
    let body: string;
    try {
      body = inflateSync(Buffer.from(m[1]!, 'latin1')).toString('latin1');
    } catch {
      continue;
    }
    for (const tj of body.matchAll(/\[((?:<[0-9a-fA-F]*>|[^\]])*)\]\s*TJ/g)) {
      lines.push([...tj[1]!.matchAll(/<([0-9a-fA-F]*)>/g)].map((h) => Buffer.from(h[1]!, 'hex').toString('latin1')).join(''));
    }
  }
  return lines.join('\n');
}
