/**
 * Storage SCU (PS3.4 Annex B, SCU side): sends stored objects to a peer, for C-MOVE,
 * C-GET (on the caller's own association) and forwarding. Objects go as stored when the
 * peer accepts their transfer syntax, else re-encoded to explicit or implicit little endian
 * (compressed ones decoded frame by frame in the codec workers).
 */
import type { Readable } from 'node:stream';
import type tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { TransferSyntax, isNativeTransferSyntax } from '../dicom/dataset.ts';
import { canDecode } from '../archive/pixels.ts';
import type { Retriever } from '../archive/retrieve.ts';
import type { StoredInstance } from '../index/records.ts';
import type { DimseConfig, PeerConfig } from '../config/config.ts';
import { Association, AssociationAbortedError, type PresentationContext } from './association.ts';
import { CommandField, Priority, Status } from './command.ts';
import type { ProposedPresentationContext, RoleSelection } from './pdu.ts';

const uncompressed = [TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian];

/** TLS options for Atrium's own associations to peers (C-MOVE, forwarding, commitment reports). */
export function dimseClientTls(config: DimseConfig): tls.ConnectionOptions | undefined {
  if (!config.tls) return undefined;
  return {
    cert: readFileSync(config.tls.certFile),
    key: readFileSync(config.tls.keyFile),
    ca: config.tls.caFile ? readFileSync(config.tls.caFile) : undefined,
    minVersion: 'TLSv1.2',
    // DICOM peers are named by AE title and address; their certificate is checked against the CA, not a host name.
    checkServerIdentity: () => undefined,
  };
}

/** Presentation contexts for sending these objects: their own syntax, plus uncompressed for uncompressed ones. */
export function storageContexts(instances: readonly Pick<StoredInstance, 'SOPClassUID' | 'TransferSyntaxUID'>[]): ProposedPresentationContext[] {
  const out: ProposedPresentationContext[] = [];
  const seen = new Set<string>();
  let id = 1;
  const add = (abstractSyntax: string, transferSyntaxes: string[]) => {
    const key = `${abstractSyntax}|${transferSyntaxes.join(',')}`;
    if (seen.has(key) || id > 255) return;
    seen.add(key);
    out.push({ id, abstractSyntax, transferSyntaxes });
    id += 2;
  };
  for (const inst of instances) {
    if (isNativeTransferSyntax(inst.TransferSyntaxUID)) {
      add(inst.SOPClassUID, [...new Set([inst.TransferSyntaxUID, ...uncompressed])]);
    } else {
      // Its own syntax in a context of its own, so that a peer that takes it gets it as stored,
      // and uncompressed in another for a peer that takes nothing else (decoded on the way out).
      add(inst.SOPClassUID, [inst.TransferSyntaxUID]);
      if (canDecode(inst.TransferSyntaxUID)) add(inst.SOPClassUID, uncompressed);
    }
  }
  return out;
}

/** The accepted context to send an object on, and the syntax it goes in; undefined when none fits. */
export function contextFor(contexts: readonly PresentationContext[], inst: Pick<StoredInstance, 'SOPClassUID' | 'TransferSyntaxUID'>): PresentationContext | undefined {
  const forClass = contexts.filter((pc) => pc.abstractSyntax === inst.SOPClassUID);
  return forClass.find((pc) => pc.transferSyntax === inst.TransferSyntaxUID)
    ?? (canDecode(inst.TransferSyntaxUID) ? forClass.find((pc) => uncompressed.includes(pc.transferSyntax as typeof uncompressed[number])) : undefined);
}

/** The dataset part of a Part 10 object: whatever follows its meta header. */
async function* datasetOf(body: Buffer | Readable, datasetOffset: number | undefined): AsyncGenerator<Buffer> {
  if (Buffer.isBuffer(body)) {
    yield body.subarray(datasetOffset ?? metaEnd(body));
    return;
  }
  let skip = datasetOffset;
  let head: Buffer = Buffer.alloc(0);
  for await (const c of body as AsyncIterable<Buffer>) {
    let chunk = c;
    if (skip === undefined) {
      head = Buffer.concat([head, chunk]);
      if (head.length < 144) continue;
      skip = metaEnd(head);
      chunk = head;
    }
    if (skip > 0) {
      const n = Math.min(skip, chunk.length);
      skip -= n;
      chunk = chunk.subarray(n);
    }
    if (chunk.length > 0) yield chunk;
  }
}

/** Where the dataset starts, from the meta header's group length (Atrium's writer always writes it). */
function metaEnd(part10: Buffer): number {
  return 132 + 12 + part10.readUInt32LE(140);
}

export interface SubOperationResult {
  sop: string;
  status: number;
  error?: string;
}

/**
 * Sends one object on `assoc` as a C-STORE sub-operation and waits for the peer's answer.
 * Throws AssociationAbortedError when the association is lost.
 */
export async function storeInstance(
  assoc: Association,
  retriever: Retriever,
  opened: { inst: StoredInstance; body: Buffer | Readable; transferSyntaxUID: string },
  pc: PresentationContext,
  moveOriginator?: { aeTitle: string; messageId: number },
): Promise<SubOperationResult> {
  const { inst } = opened;
  const asStored = pc.transferSyntax === inst.TransferSyntaxUID;
  // Opened in the context's transfer syntax (retrievePlan) it goes as it is; opened otherwise, it is opened again.
  const ready = opened.transferSyntaxUID === pc.transferSyntax || (asStored && opened.transferSyntaxUID === '*');
  const body = ready ? opened.body : await retriever.openInstance(inst, pc.transferSyntax);
  if (!ready && !Buffer.isBuffer(opened.body)) opened.body.destroy();
  const rsp = await assoc.request(pc.id, {
    CommandField: CommandField.CStoreRQ,
    AffectedSOPClassUID: inst.SOPClassUID,
    AffectedSOPInstanceUID: inst.SOPInstanceUID,
    Priority: Priority.Medium,
    MoveOriginatorApplicationEntityTitle: moveOriginator?.aeTitle,
    MoveOriginatorMessageID: moveOriginator?.messageId,
  }, datasetOf(body, asStored ? inst.layout.datasetOffset : undefined));
  const status = rsp.command.Status ?? Status.ProcessingFailure;
  return { sop: inst.SOPInstanceUID, status, error: rsp.command.ErrorComment };
}

/** A C-STORE status that counts as a stored object: success or a warning (PS3.4 B.2.3). */
export function isStored(status: number): boolean {
  return status === Status.Success || (status & 0xf000) === 0xb000;
}

/** C-STOREs Atrium asks to have outstanding at once on a peer that grants a window. */
export const STORE_WINDOW = 8;

export interface OpenedInstance {
  inst: StoredInstance;
  body: Buffer | Readable;
  transferSyntaxUID: string;
  release?: () => void;
  /** Why the object could not be opened in the syntax its context needs (a frame that does not decode): a failed sub-operation. */
  failed?: string;
}

/**
 * Sends objects as C-STORE sub-operations, keeping up to assoc.maxOutstanding of them
 * outstanding (one after the other when the peer granted no window). Each result goes to
 * onResult as it comes. Stops taking objects when shouldStop says so; throws the first
 * failure of the association (AssociationAbortedError) once those in flight have settled.
 */
export async function storeAll(
  assoc: Association,
  retriever: Retriever,
  opened: AsyncIterable<OpenedInstance>,
  pcFor: (inst: StoredInstance) => PresentationContext,
  onResult: (inst: StoredInstance, result: SubOperationResult) => void | Promise<void>,
  options: { moveOriginator?: { aeTitle: string; messageId: number }; shouldStop?: () => boolean } = {},
): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  const window = Math.max(1, assoc.maxOutstanding);
  const iterator = opened[Symbol.asyncIterator]();
  try {
    for (;;) {
      while (inFlight.size >= window && failure === undefined) await Promise.race(inFlight);
      if (failure !== undefined || options.shouldStop?.()) break;
      const next = await iterator.next();
      if (next.done) break;
      const item = next.value;
      if (item.failed !== undefined) {
        await onResult(item.inst, { sop: item.inst.SOPInstanceUID, status: Status.UnableToProcess, error: item.failed });
        continue;
      }
      const p: Promise<void> = storeInstance(assoc, retriever, item, pcFor(item.inst), options.moveOriginator)
        .then((r) => onResult(item.inst, r))
        .catch((e: unknown) => {
          failure ??= e;
        })
        .finally(() => {
          item.release?.();
          inFlight.delete(p);
        });
      inFlight.add(p);
    }
  } finally {
    await Promise.all(inFlight);
    await iterator.return?.(undefined);
  }
  if (failure !== undefined) throw failure;
}

/**
 * What a retrieve opens for each object: the transfer syntax of the presentation context it
 * will go on, so that an object to re-encode is read once, not read as stored and then again.
 */
export function retrievePlan<T extends { inst: StoredInstance }>(items: readonly T[], pcFor: (inst: StoredInstance) => PresentationContext): Array<T & { transferSyntaxUID: string }> {
  return items.map((item) => ({ ...item, transferSyntaxUID: pcFor(item.inst).transferSyntax }));
}

/** Opens an association to a peer for storing these objects. */
export async function openStoreAssociation(options: {
  peer: PeerConfig;
  callingAETitle: string;
  instances: readonly StoredInstance[];
  maxPduLength: number;
  tls?: tls.ConnectionOptions;
}): Promise<Association> {
  const { peer } = options;
  if (!peer.host || !peer.port) throw new AssociationAbortedError(`peer ${peer.aeTitle} has no host and port to send to`);
  if (peer.tls && !options.tls) throw new AssociationAbortedError(`peer ${peer.aeTitle} wants TLS but dimse.tls is not configured`);
  return Association.connect({
    host: peer.host,
    port: peer.port,
    tls: peer.tls ? options.tls : undefined,
    callingAETitle: options.callingAETitle,
    calledAETitle: peer.aeTitle,
    presentationContexts: storageContexts(options.instances),
    maxPduLength: options.maxPduLength,
    idleTimeoutMs: (peer.timeoutSeconds ?? 120) * 1000,
    asyncOperations: STORE_WINDOW,
  });
}

export type { RoleSelection };
