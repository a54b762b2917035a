/**
 * Sending Part 10 files to a peer as a storage SCU (`atrium send`): what storescu does,
 * with several C-STOREs outstanding when the peer grants an asynchronous operations
 * window. Each file's dataset goes as it is in the file, after its meta header.
 */
import { open, readFile } from 'node:fs/promises';
import type tls from 'node:tls';
import { Tags } from '../dicom/dataset.ts';
import { Association } from './association.ts';
import { CommandField, Priority, Status } from './command.ts';
import type { ProposedPresentationContext } from './pdu.ts';
import { isStored, STORE_WINDOW } from './scu.ts';

export interface FileToSend {
  path: string;
  SOPClassUID: string;
  SOPInstanceUID: string;
  TransferSyntaxUID: string;
  /** Where the dataset starts: after the preamble and the meta header. */
  datasetOffset: number;
}

export class NotPart10Error extends Error {
  override readonly name = 'NotPart10Error';
}

const HEAD_BYTES = 64 * 1024;

/** Reads a file's meta header (PS3.10 7.1): enough to negotiate and to send it. */
export async function describeFile(path: string): Promise<FileToSend> {
  const handle = await open(path, 'r');
  let head: Buffer;
  try {
    const buf = Buffer.alloc(HEAD_BYTES);
    const { bytesRead } = await handle.read(buf, 0, HEAD_BYTES, 0);
    head = buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  if (head.length < 144 || head.toString('latin1', 128, 132) !== 'DICM') throw new NotPart10Error(`${path} is not a DICOM Part 10 file`);
  const values = new Map<number, string>();
  let at = 132;
  // Meta elements are explicit VR little endian; read while the group is 0002.
  while (at + 8 <= head.length && head.readUInt16LE(at) === 0x0002) {
    const tag = ((head.readUInt16LE(at) << 16) | head.readUInt16LE(at + 2)) >>> 0;
    const vr = head.toString('latin1', at + 4, at + 6);
    const long = vr === 'OB' || vr === 'UN' || vr === 'SQ' || vr === 'UT';
    const length = long ? head.readUInt32LE(at + 8) : head.readUInt16LE(at + 6);
    const start = at + (long ? 12 : 8);
    if (start + length > head.length) throw new NotPart10Error(`${path}: meta header runs past its first ${HEAD_BYTES} bytes`);
    values.set(tag, head.toString('latin1', start, start + length).replace(/[\0 ]+$/, ''));
    at = start + length;
  }
  const SOPClassUID = values.get(Tags.MediaStorageSOPClassUID);
  const SOPInstanceUID = values.get(Tags.MediaStorageSOPInstanceUID);
  const TransferSyntaxUID = values.get(Tags.TransferSyntaxUID);
  if (!SOPClassUID || !SOPInstanceUID || !TransferSyntaxUID) throw new NotPart10Error(`${path}: meta header lacks the SOP class, instance or transfer syntax`);
  return { path, SOPClassUID, SOPInstanceUID, TransferSyntaxUID, datasetOffset: at };
}

export interface SendResult {
  sent: number;
  failed: Array<{ path: string; status?: number; error: string }>;
  /** The window the peer granted (1: one C-STORE at a time). */
  window: number;
}

/**
 * Sends the files on one association, proposing one context per SOP class and transfer
 * syntax found (each file travels in its own syntax, as storescu -R does).
 */
export async function sendFiles(options: {
  host: string;
  port: number;
  calledAETitle: string;
  callingAETitle: string;
  files: readonly FileToSend[];
  maxPduLength?: number;
  tls?: tls.ConnectionOptions;
  /** C-STOREs to ask to keep outstanding (default 8; 1 behaves as storescu). */
  window?: number;
  onProgress?: (done: number) => void;
}): Promise<SendResult> {
  const contexts: ProposedPresentationContext[] = [];
  const pcOf = new Map<string, number>();
  for (const f of options.files) {
    const key = `${f.SOPClassUID}|${f.TransferSyntaxUID}`;
    if (pcOf.has(key)) continue;
    const id = 1 + 2 * contexts.length;
    if (id > 255) throw new Error('more than 128 SOP class and transfer syntax pairs: send them in several runs');
    contexts.push({ id, abstractSyntax: f.SOPClassUID, transferSyntaxes: [f.TransferSyntaxUID] });
    pcOf.set(key, id);
  }
  const assoc = await Association.connect({
    host: options.host, port: options.port, tls: options.tls,
    callingAETitle: options.callingAETitle, calledAETitle: options.calledAETitle,
    presentationContexts: contexts, maxPduLength: options.maxPduLength ?? 256 * 1024, idleTimeoutMs: 120_000,
    asyncOperations: options.window ?? STORE_WINDOW,
  });
  const result: SendResult = { sent: 0, failed: [], window: assoc.maxOutstanding };
  const inFlight = new Set<Promise<void>>();
  let done = 0;
  let next = 0;
  try {
    for (; next < options.files.length; next++) {
      const f = options.files[next]!;
      while (inFlight.size >= assoc.maxOutstanding) await Promise.race(inFlight);
      if (!assoc.established) break;
      const pcId = pcOf.get(`${f.SOPClassUID}|${f.TransferSyntaxUID}`)!;
      if (!assoc.presentationContext(pcId)) {
        result.failed.push({ path: f.path, error: `${options.calledAETitle} accepted no context for ${f.SOPClassUID} in ${f.TransferSyntaxUID}` });
        continue;
      }
      const file = await readFile(f.path);
      const p: Promise<void> = assoc.request(pcId, {
        CommandField: CommandField.CStoreRQ, AffectedSOPClassUID: f.SOPClassUID, AffectedSOPInstanceUID: f.SOPInstanceUID, Priority: Priority.Medium,
      }, file.subarray(f.datasetOffset)).then((rsp) => {
        const status = rsp.command.Status ?? Status.ProcessingFailure;
        if (isStored(status)) result.sent++;
        else result.failed.push({ path: f.path, status, error: rsp.command.ErrorComment ?? `status 0x${status.toString(16)}` });
      }, (e: unknown) => {
        result.failed.push({ path: f.path, error: (e as Error).message });
      }).finally(() => {
        inFlight.delete(p);
        options.onProgress?.(++done);
      });
      inFlight.add(p);
    }
    await Promise.all(inFlight);
    for (const f of options.files.slice(next)) result.failed.push({ path: f.path, error: 'not sent: the association was lost' });
  } finally {
    await assoc.release().catch(() => {});
  }
  return result;
}
