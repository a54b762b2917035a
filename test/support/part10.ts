/** Reading back Part 10 files in tests: what went on the wire, and what a sender cannot change. */
import { parsePart10 } from '../../src/dicom/part10-parser.ts';

/** The dataset bytes: what a C-STORE carries, after the meta header. */
export function datasetBytes(file: Buffer): Buffer {
  return file.subarray(parsePart10(file).datasetOffset);
}

/** The pixel data value bytes (native) or fragments (encapsulated, joined). */
export function pixelFragments(file: Buffer): Buffer {
  const obj = parsePart10(file);
  const px = obj.dataset.get(0x7fe00010)!;
  if (obj.deflated) return Buffer.alloc(0);
  const ranges = px.fragments ?? (px.bulk ? [px.bulk] : []);
  return Buffer.concat(ranges.map((r) => file.subarray(r.offset, r.offset + r.length)));
}

export function sopOf(file: Buffer): string {
  return parsePart10(file).dataset.get(0x00080018)!.value!.toString('latin1').replace(/[\0 ]+$/, '');
}
