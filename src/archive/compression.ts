/**
 * Lossless compression at rest (storage.compression): uncompressed objects re-encoded to
 * JPEG-LS, JPEG 2000 or HTJ2K lossless after ingest, in the background (an outbox consumer:
 * never on the acknowledgement's path). The new file replaces the stored one only once
 * every frame decoded from it equals the original's samples; the original's syntax, size
 * and SHA-256 stay in the instance's layout, and the original syntax is sent on request
 * (re-encoded back, the same samples).
 */
import type { Logger } from 'pino';
import { Tags, isNativeTransferSyntax, type ParsedObject } from '../dicom/dataset.ts';
import type { StorageCompressionRule } from '../config/config.ts';
import { OutboxConsumer } from '../events/consumer.ts';
import type { OutboxEvent } from '../events/outbox.ts';
import type { SqlDatabase } from '../index/sql.ts';
import type { InstanceLayout, StoredInstance } from '../index/records.ts';
import type { Archive } from './archive.ts';
import { layoutOf, newBlobKey } from './ingest.ts';
import { originalRecordElements } from './original-record.ts';
import { nativeFrameRange, type ImagePixelModule } from './pixels.ts';
import { canTranscode, readHeader, transcodeInstance } from './transcode.ts';
import { buffer as readAll } from 'node:stream/consumers';

/** Events taken at a time (see runOnce). */
const BATCH = 20;

interface Candidate {
  SOPInstanceUID: string;
  blobKey: string;
  transferSyntax: string;
}

/** What compression at rest did since start (the benchmark reads it). */
export interface CompressionStats {
  compressed: number;
  skipped: number;
  failedVerification: number;
  bytesBefore: number;
  bytesAfter: number;
}

export class CompressionAtRest extends OutboxConsumer {
  private readonly pending: Candidate[] = [];
  private working: Promise<void> | undefined;
  readonly stats: CompressionStats = { compressed: 0, skipped: 0, failedVerification: 0, bytesBefore: 0, bytesAfter: 0 };

  /** Old files waiting out the grace period, by key. */
  private readonly doomed = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly archive: Archive,
    private readonly rules: readonly StorageCompressionRule[],
    logger: Logger,
    pollMs = 1000,
    /**
     * How long a replaced file stays: a retrieve that read the index just before the swap
     * still finds it (a node stopped meanwhile leaves it to `atrium verify --repair` as an orphan).
     */
    private readonly deleteAfterMs = 60_000,
  ) {
    super(archive.outbox, 'storage-compression', logger, BATCH, pollMs);
  }

  /**
   * Takes the next events only once the objects of the last batch are done: the outbox
   * position moves when a batch is taken, so a node that stops or dies leaves at most one
   * batch of objects uncompressed (as received), never a backlog held in memory.
   */
  override async runOnce(): Promise<number> {
    let total = 0;
    for (;;) {
      await this.working;
      const n = await this.outbox.consume(this.consumer, BATCH, (tx, events) => this.apply(tx, events));
      this.kick();
      total += n;
      if (n < BATCH) return total;
    }
  }

  /** The rule for an object of this site and SOP class, if any. */
  ruleFor(siteCode: string | undefined, SOPClassUID: string): StorageCompressionRule | undefined {
    return this.rules.find((r) => (!r.sites || (siteCode !== undefined && r.sites.includes(siteCode))) && (!r.sopClasses || r.sopClasses.includes(SOPClassUID)));
  }

  // Only noted in the transaction: the work (minutes of codec time for a large series) is done after it.
  protected async apply(_tx: SqlDatabase, events: OutboxEvent[]): Promise<void> {
    for (const e of events) {
      if (e.type !== 'instance.stored') continue;
      const p = e.payload as { siteId: number; SOPInstanceUID: string; SOPClassUID: string; blobKey: string };
      const rule = this.ruleFor(this.archive.siteById.get(p.siteId)?.code, p.SOPClassUID);
      if (rule && !this.pending.some((c) => c.SOPInstanceUID === p.SOPInstanceUID && c.blobKey === p.blobKey)) {
        this.pending.push({ SOPInstanceUID: p.SOPInstanceUID, blobKey: p.blobKey, transferSyntax: rule.transferSyntax });
      }
    }
  }

  protected override afterBatch(): void {
    this.kick();
  }

  /** Every committed event applied and every object it named compressed (tests and tools). */
  override async drain(): Promise<number> {
    const n = await super.drain();
    this.kick();
    await this.working;
    return n;
  }

  override async stop(): Promise<void> {
    await super.stop();
    // What is not begun stays as received (compression is an optimisation); the objects in hand finish.
    this.pending.length = 0;
    await this.working;
    // Replaced files go now: nothing will read them once this node stops serving.
    for (const [key, timer] of [...this.doomed]) {
      clearTimeout(timer);
      this.doomed.delete(key);
      await this.archive.store.delete(key).catch(() => {});
    }
  }

  private async deleteLater(key: string): Promise<void> {
    const remove = () => {
      this.doomed.delete(key);
      return this.archive.store.delete(key).catch((e: unknown) => this.logger.warn({ err: (e as Error).message }, 'storage compression: a replaced file was not deleted'));
    };
    if (this.deleteAfterMs <= 0) return void (await remove());
    const timer = setTimeout(() => void remove(), this.deleteAfterMs);
    timer.unref();
    this.doomed.set(key, timer);
  }

  private kick(): void {
    if (this.working) return;
    const lane = async () => {
      for (let c = this.pending.shift(); c; c = this.pending.shift()) {
        try {
          await this.compress(c);
        } catch (e) {
          this.stats.skipped++;
          this.logger.warn({ sop: c.SOPInstanceUID, err: (e as Error).message }, 'storage compression: object left as it is');
        }
      }
    };
    // Two objects at a time: one a codec worker, while the other's file is read or written.
    this.working = Promise.all([lane(), lane()]).then(() => {}).finally(() => {
      this.working = undefined;
    });
  }

  private async compress(c: Candidate): Promise<void> {
    const { index, store, retriever } = this.archive;
    const inst = await index.findInstanceBySOPInstanceUID(c.SOPInstanceUID);
    // Replaced or deleted since, already compressed, or nothing to compress: nothing to do.
    if (!inst || inst.blobKey !== c.blobKey || !isNativeTransferSyntax(inst.TransferSyntaxUID) || !inst.layout.pixelData) return void this.stats.skipped++;
    const px = retriever.pixelModuleOf(inst);
    if (!canTranscode(inst.TransferSyntaxUID, c.transferSyntax, px) || px.BitsAllocated === 1) return void this.stats.skipped++;
    const siteCode = this.archive.siteById.get(inst.siteId)?.code;
    if (!siteCode) return void this.stats.skipped++;

    const obj = await readHeader(store, inst);
    const original = inst.layout.original ?? { TransferSyntaxUID: inst.TransferSyntaxUID, size: inst.size, sha256: inst.sha256 };
    // The record of the original goes in the new file too: `atrium reindex` finds it there (original-record.ts).
    const blob = await store.put(newBlobKey(siteCode), await transcodeInstance({ store, codecs: retriever.codecs, inst, obj, px }, c.transferSyntax, { meta: originalRecordElements(original) }));
    let replaced = false;
    try {
      const compressed = await readHeader(store, { ...inst, blobKey: blob.key });
      if (!(await this.sameSamples(inst, obj, px, blob.key, compressed))) {
        this.stats.failedVerification++;
        this.logger.warn({ sop: inst.SOPInstanceUID, transferSyntax: c.transferSyntax }, 'storage compression: the decoded frames differ from the original; the original is kept');
        return;
      }
      const layout: InstanceLayout = { ...layoutOf(compressed), original };
      // Only if the object is still the one compressed (a replacement may have come in meanwhile).
      replaced = await index.replaceInstanceBlob(inst.SOPInstanceUID, inst.blobKey, { blobKey: blob.key, size: blob.size, sha256: blob.sha256, transferSyntaxUID: c.transferSyntax, layout });
    } finally {
      if (!replaced) await store.delete(blob.key).catch(() => {});
    }
    if (!replaced) return void this.stats.skipped++;
    await this.deleteLater(inst.blobKey);
    this.stats.compressed++;
    this.stats.bytesBefore += inst.size;
    this.stats.bytesAfter += blob.size;
    this.logger.info({ sop: inst.SOPInstanceUID, transferSyntax: c.transferSyntax, before: inst.size, after: blob.size, originalSha256: inst.sha256 }, 'object kept compressed');
  }

  /** Every frame of the compressed file, decoded, equals the original's native frame (interleaved). */
  private async sameSamples(inst: StoredInstance, original: ParsedObject, px: ImagePixelModule, key: string, compressed: ParsedObject): Promise<boolean> {
    const { store, retriever } = this.archive;
    const fragments = compressed.dataset.get(Tags.PixelData)?.fragments ?? [];
    const frames = Math.max(1, px.NumberOfFrames);
    if (fragments.length !== frames) return false;
    const pixel = original.dataset.get(Tags.PixelData)!;
    for (let i = 0; i < frames; i++) {
      const r = nativeFrameRange(px, i);
      const start = pixel.bulk!.offset + r.offset;
      const want = await readAll(await store.get(inst.blobKey, { start, end: start + r.length - 1 }));
      if (!original.littleEndian && px.BitsAllocated === 16) want.swap16();
      const f = fragments[i]!;
      const bitstream = await readAll(await store.get(key, { start: f.offset, end: f.offset + f.length - 1 }));
      const got = await retriever.codecs.decode(bitstream, compressed.transferSyntaxUID, { ...px, PlanarConfiguration: 0 });
      const expected = px.SamplesPerPixel === 3 && px.PlanarConfiguration === 1 ? interleaved(want, px) : want;
      if (!got.bytes.equals(expected)) return false;
    }
    return true;
  }
}

function interleaved(planar: Buffer, px: ImagePixelModule): Buffer {
  const pixels = px.Rows * px.Columns;
  const w = px.BitsAllocated / 8;
  const out = Buffer.allocUnsafe(planar.length);
  for (let s = 0; s < 3; s++) for (let i = 0; i < pixels; i++) planar.copy(out, (i * 3 + s) * w, (s * pixels + i) * w, (s * pixels + i + 1) * w);
  return out;
}

