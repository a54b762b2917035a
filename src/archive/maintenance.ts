import { createHash } from 'node:crypto';
import type { Archive } from './archive.ts';
import { siteCodeOfBlobKey } from './ingest.ts';
import { BlobNotFoundError, type BlobStore } from '../storage/blob-store.ts';

export interface ReindexReport {
  blobs: number;
  indexed: number;
  unchanged: number;
  refused: Array<{ key: string; reason: string }>;
}

/**
 * Rebuilds the index from the stored objects alone (the stored file is the truth).
 * Objects are replayed in arrival order, so the duplicate policy decides as it did.
 */
export async function reindexArchive(archive: Archive, onProgress?: (done: number) => void): Promise<ReindexReport> {
  const keys: string[] = [];
  for await (const { key } of archive.store.list('instances/')) keys.push(key);
  keys.sort(byArrival);
  const report: ReindexReport = { blobs: keys.length, indexed: 0, unchanged: 0, refused: [] };
  for (const key of keys) {
    const code = siteCodeOfBlobKey(key);
    const site = code === undefined ? undefined : archive.sites.get(code);
    if (!site) {
      report.refused.push({ key, reason: `no configured site for ${code ?? 'this key'}` });
      continue;
    }
    const result = await archive.ingestor.reindexBlob(key, { site, via: 'reindex' });
    if (result.ok) {
      if (result.instance.status === 'identical') report.unchanged++;
      else report.indexed++;
    } else if (result.error.code !== 'duplicate-kept') {
      report.refused.push({ key, reason: `${result.error.code}: ${result.error.message}` });
    } else {
      report.indexed++;
    }
    onProgress?.(report.indexed + report.unchanged + report.refused.length);
  }
  return report;
}

function byArrival(a: string, b: string): number {
  const name = (k: string) => k.slice(k.lastIndexOf('/') + 1);
  return name(a) < name(b) ? -1 : name(a) > name(b) ? 1 : 0;
}

export interface VerifyReport {
  checked: number;
  /** Index rows whose blob is gone. */
  missing: Array<{ key: string; source: 'instance' | 'history' }>;
  /** Blobs whose bytes no longer match their recorded size or SHA-256. */
  corrupt: Array<{ key: string; expected: string; actual: string }>;
  /** Blobs no index row refers to (an ingest that never finished). */
  orphans: Array<{ key: string; size: number }>;
  repaired: { orphansDeleted: number; rowsRemoved: number; temporaryFilesRemoved: number; tiersRecorded?: number };
  /**
   * With storage tiers (storage.cold): objects checked in each tier (the one the index names),
   * and those found whole only in the other tier (misplaced: served, but the index is wrong).
   * A copy an interrupted move or recall left in the other tier is counted in `unfinished`
   * (the mover removes it), never an error.
   */
  tiers?: { hot: number; cold: number; unfinished: number; misplaced: Array<{ key: string; indexed: 'hot' | 'cold'; found: 'hot' | 'cold' }> };
}

export interface VerifyOptions {
  /** Recompute every checksum (reads every byte) rather than comparing sizes. */
  checksums: boolean;
  repair: boolean;
  /** Orphans younger than this may belong to an ingest still under way: reported, never deleted. */
  orphanGraceMs: number;
  /** Keys the ingest journal still names: objects acknowledged that the next start will index; never deleted. */
  journaled?: ReadonlySet<string>;
}

/**
 * Checks that index and storage agree: every row's blob exists and is intact, every
 * blob is referenced. With repair, rows of missing instances are removed (they cannot
 * be served) and orphan blobs older than the grace period are deleted (they were never
 * acknowledged). Corrupt blobs are only reported: no copy exists to repair from.
 */
export async function verifyArchive(archive: Archive, options: VerifyOptions): Promise<VerifyReport> {
  const report: VerifyReport = { checked: 0, missing: [], corrupt: [], orphans: [], repaired: { orphansDeleted: 0, rowsRemoved: 0, temporaryFilesRemoved: 0 } };
  const referenced = new Set<string>();
  const missingInstances: string[] = [];
  const tiering = archive.tiering;
  if (tiering) report.tiers = { hot: 0, cold: 0, unfinished: 0, misplaced: [] };
  for await (const ref of archive.index.listReferencedBlobKeys()) {
    referenced.add(ref.key);
    report.checked++;
    // With tiers, each object is checked in the tier the index names (an object without a row is hot).
    let store: BlobStore = archive.store;
    let stat: { size: number } | undefined;
    if (tiering && report.tiers) {
      let row = await tiering.tierOf(ref.key);
      store = row.tier === 'cold' ? tiering.store.cold : tiering.store.hot;
      stat = await store.stat(ref.key);
      if (!stat) {
        // A move or recall running meanwhile may have changed the tier since the row was read: read it again.
        const again = await tiering.tierOf(ref.key);
        if (again.tier !== row.tier) {
          row = again;
          store = row.tier === 'cold' ? tiering.store.cold : tiering.store.hot;
          stat = await store.stat(ref.key);
        }
      }
      if (row.otherCopy) report.tiers.unfinished++;
      report.tiers[row.tier]++;
      if (!stat) {
        const other = row.tier === 'cold' ? tiering.store.hot : tiering.store.cold;
        if (await other.stat(ref.key)) {
          report.tiers.misplaced.push({ key: ref.key, indexed: row.tier, found: row.tier === 'cold' ? 'hot' : 'cold' });
          continue;
        }
      }
    } else {
      stat = await store.stat(ref.key);
    }
    if (!stat) {
      report.missing.push({ key: ref.key, source: ref.source });
      if (ref.source === 'instance') missingInstances.push(ref.key);
      continue;
    }
    if (!options.checksums) {
      if (stat.size !== ref.size) report.corrupt.push({ key: ref.key, expected: `${ref.size} bytes`, actual: `${stat.size} bytes` });
      continue;
    }
    try {
      const hash = createHash('sha256');
      for await (const chunk of await store.get(ref.key)) hash.update(chunk as Buffer);
      const actual = hash.digest('hex');
      if (actual !== ref.sha256) report.corrupt.push({ key: ref.key, expected: ref.sha256, actual });
    } catch (e) {
      if (!(e instanceof BlobNotFoundError)) throw e;
      // With tiers, a move that removed the copy being read leaves the other, whole: not missing.
      if (tiering && (await archive.store.stat(ref.key))) continue;
      report.missing.push({ key: ref.key, source: ref.source });
    }
  }
  const now = Date.now();
  for await (const { key, size } of archive.store.list()) {
    if (!referenced.has(key)) report.orphans.push({ key, size });
  }
  if (options.repair) {
    // Objects whole in the tier the index did not name (an index rebuilt by reindex): their tier recorded.
    for (const m of report.tiers?.misplaced ?? []) {
      if (await archive.tiering!.recordFound(m.key, m.found)) report.repaired.tiersRecorded = (report.repaired.tiersRecorded ?? 0) + 1;
    }
    for (const key of missingInstances) {
      // Never remove the row of an object found in either tier since (a move or recall under way).
      if (tiering && (await archive.store.stat(key))) continue;
      report.repaired.rowsRemoved += await archive.index.deleteInstanceIndexByBlobKey(key);
    }
    for (const orphan of report.orphans) {
      const arrived = arrivalTimeOfKey(orphan.key);
      if (arrived !== undefined && now - arrived < options.orphanGraceMs) continue;
      if (options.journaled?.has(orphan.key)) continue;
      await archive.store.delete(orphan.key);
      report.repaired.orphansDeleted++;
    }
    const store = archive.store as { cleanTemporary?: (olderThanMs: number) => Promise<number> };
    if (store.cleanTemporary) report.repaired.temporaryFilesRemoved = await store.cleanTemporary(options.orphanGraceMs);
  }
  return report;
}

/** Arrival time encoded in keys written by newBlobKey, if the key is of that form. */
function arrivalTimeOfKey(key: string): number | undefined {
  const m = /\/([0-9a-z]{10})-[0-9a-f-]{36}\.dcm$/.exec(key);
  return m ? parseInt(m[1]!, 36) : undefined;
}
