import type { BlobStore } from './blob-store.ts';
import { FilesystemBlobStore } from './filesystem-store.ts';
import { S3BlobStore, type S3StoreConfig } from './s3-store.ts';

export type StorageConfig = { kind: 'filesystem'; root: string } | ({ kind: 's3' } & S3StoreConfig);

/** Opens the configured store; fails at once when its folder cannot be created or its bucket is unreachable. */
export async function openBlobStore(config: StorageConfig): Promise<BlobStore> {
  switch (config.kind) {
    case 'filesystem':
      return FilesystemBlobStore.open(config.root);
    case 's3': {
      const { kind: _kind, ...s3 } = config;
      return S3BlobStore.open(s3);
    }
  }
}
