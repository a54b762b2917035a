import path from 'node:path';
import type { Logger } from 'pino';
import type { AtriumConfig } from '../config/config.ts';
import { openArchiveIndex, type ArchiveIndex } from '../index/archive-index.ts';
import type { NewSite, Site } from '../index/records.ts';
import { openBlobStore } from '../storage/open-store.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { Ingestor } from './ingest.ts';
import { IngestJournal } from '../storage/ingest-journal.ts';
import { recoverIngestJournal } from './recovery.ts';
import { Retriever } from './retrieve.ts';
import { Outbox } from '../events/outbox.ts';
import { TieredBlobStore } from '../storage/tiered-store.ts';
import { migrateTiering, StorageTiering } from './tiering.ts';
import { checkTiersApart } from '../config/tiering-config.ts';
import { PeerDirectory } from '../config/peer-directory.ts';

/** The archive's engines and domain services, opened once and handed to every adapter. */
export interface Archive {
  readonly index: ArchiveIndex;
  readonly store: BlobStore;
  readonly ingestor: Ingestor;
  readonly retriever: Retriever;
  /** The events that ingest and the workflows announce, for their consumers. */
  readonly outbox: Outbox;
  /** Sites by code, as configured (and mirrored in the index). */
  readonly sites: ReadonlyMap<string, Site>;
  /** The same sites by their index id. */
  readonly siteById: ReadonlyMap<number, Site>;
  /** The hot and cold tiers and their mover (src/archive/tiering.ts), when storage.cold is configured. */
  readonly tiering?: StorageTiering;
  /** The DICOM peers: the configuration file's and those added through the API (src/config/peer-directory.ts). */
  readonly peers: PeerDirectory;
  close(): Promise<void>;
}

/** Creates a configured site, or takes the one another node starting at the same moment created. */
async function createSiteOnce(index: ArchiveIndex, wanted: NewSite): Promise<Site> {
  try {
    return await index.createSite(wanted);
  } catch (e) {
    const created = await index.getSiteByCode(wanted.code);
    if (created) return created;
    throw e;
  }
}

/** Where the ingest journal lives: on local disk, beside the index, whatever the storage. */
export function ingestJournalDir(config: AtriumConfig): string {
  return path.join(config.dataDir, 'ingest-journal');
}

/**
 * Opens the archive. With `journal` (the one process that ingests: `atrium serve`), objects
 * are acknowledged through the ingest journal, and what the previous run left in it is
 * recovered here, before the caller can listen. Commands run beside a server leave it off.
 */
export async function openArchive(config: AtriumConfig, logger: Logger, options: { journal?: boolean } = {}): Promise<Archive> {
  const index = await openArchiveIndex(config.index);
  let store: BlobStore;
  let tiering: StorageTiering | undefined;
  try {
    if (config.storageTiering) checkTiersApart(config.storage, config.storageTiering.cold);
    store = await openBlobStore(config.storage);
    if (config.storageTiering) {
      // Reads try the hot tier, then the cold one: every way out serves a moved object as before.
      const hot = store;
      const cold = await openBlobStore(config.storageTiering.cold).catch(async (e: unknown) => {
        await hot.close();
        throw e;
      });
      const tiered = new TieredBlobStore(hot, cold);
      store = tiered;
      await migrateTiering(index.sql).catch(async (e: unknown) => {
        await tiered.close();
        throw e;
      });
      tiering = new StorageTiering(index, tiered, config.storageTiering, logger.child({ component: 'storage-tiers' }));
    }
  } catch (e) {
    await index.close();
    throw e;
  }
  let journal: IngestJournal | undefined;
  try {
    const sites = new Map<string, Site>();
    for (const wanted of config.sites) {
      const site = (await index.getSiteByCode(wanted.code)) ?? (await createSiteOnce(index, wanted));
      sites.set(site.code, site);
    }
    const ingestLogger = logger.child({ component: 'ingest' });
    if (options.journal) {
      journal = await IngestJournal.open(ingestJournalDir(config), {
        // A segment goes once its objects' files and index rows are durable by these two flushes.
        checkpoint: async (keys) => {
          await store.syncAll?.(keys);
          await index.sql.flush();
        },
        onCheckpointError: (e) => ingestLogger.warn({ err: e }, 'ingest journal checkpoint failed: its segment is kept and replayed at the next start'),
      });
    }
    const ingestor = new Ingestor(index, store, config.ingest, ingestLogger, journal);
    if (journal) await recoverIngestJournal(journal, { index, store, ingestor, sites }, ingestLogger);
    const retriever = new Retriever(index, store, logger.child({ component: 'retrieve' }));
    const opened = journal;
    const peers = await PeerDirectory.open(index.sql, config.peers);
    return {
      index, store, ingestor, retriever, sites, peers, outbox: new Outbox(index.sql), ...(tiering ? { tiering } : {}),
      siteById: new Map([...sites.values()].map((s) => [s.id, s])),
      async close() {
        // The journal's last checkpoint needs both the store and the index.
        await opened?.close().catch((e: unknown) => ingestLogger.warn({ err: e }, 'ingest journal not closed cleanly'));
        await Promise.allSettled([index.close(), store.close(), retriever.codecs.close()]);
      },
    };
  } catch (e) {
    await journal?.close().catch(() => {});
    await Promise.allSettled([index.close(), store.close()]);
    throw e;
  }
}
