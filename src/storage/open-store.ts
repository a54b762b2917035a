import type { BlobStore } from './blob-store.ts';
import { FilesystemBlobStore } from './filesystem-store.ts';
import type { S3StoreConfig } from './s3-store.ts';

export type StorageConfig = { kind: 'filesystem'; root: string } | ({ kind: 's3' } & S3StoreConfig);

/** Opens the configured store; fails at once when its folder cannot be created or its bucket is unreachable. */
export async function openBlobStore(config: StorageConfig): Promise<BlobStore> {
  switch (config.kind) {
    case 'filesystem':
      return FilesystemBlobStore.open(config.root);
    case 's3': {
      const { kind: _kind, ...s3 } = config;
      // Loaded only when configured: the AWS SDK costs about 0.5 s of CPU to load, and the embedded default needs none of it.
      const { S3BlobStore } = await import('./s3-store.ts');
      return S3BlobStore.open(s3);
    }
  }
}
