import type { Logger } from 'pino';
import type { AtriumConfig } from '../config/config.ts';
import { openArchiveIndex, type ArchiveIndex } from '../index/archive-index.ts';
import type { NewSite, Site } from '../index/records.ts';
import { openBlobStore } from '../storage/open-store.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import { Ingestor } from './ingest.ts';
import { Retriever } from './retrieve.ts';
import { Outbox } from '../events/outbox.ts';

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

export async function openArchive(config: AtriumConfig, logger: Logger): Promise<Archive> {
  const index = await openArchiveIndex(config.index);
  let store: BlobStore;
  try {
    store = await openBlobStore(config.storage);
  } catch (e) {
    await index.close();
    throw e;
  }
  const sites = new Map<string, Site>();
  for (const wanted of config.sites) {
    const site = (await index.getSiteByCode(wanted.code)) ?? (await createSiteOnce(index, wanted));
    sites.set(site.code, site);
  }
  const ingestor = new Ingestor(index, store, config.ingest, logger.child({ component: 'ingest' }));
  const retriever = new Retriever(index, store, logger.child({ component: 'retrieve' }));
  return {
    index, store, ingestor, retriever, sites, outbox: new Outbox(index.sql),
    siteById: new Map([...sites.values()].map((s) => [s.id, s])),
    async close() {
      await Promise.allSettled([index.close(), store.close()]);
    },
  };
}
