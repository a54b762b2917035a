/**
 * storage.cold and storage.tiering: the cold tier and the rules that move studies to it
 * (src/archive/tiering.ts). Parsed here, called from config.ts.
 */
import path from 'node:path';
import { ConfigError, mapping, onlyKeys } from './config.ts';
import type { StorageConfig } from '../storage/open-store.ts';

export interface StorageTieringConfig {
  /** Where cold objects go: an S3 bucket (perhaps with a cheaper storage class) or a second folder. */
  cold: StorageConfig;
  /** A study nobody read (nor changed) for this many days moves to the cold tier. */
  moveAfterDaysWithoutRead: number;
  /** And only once it is at least this old (study date, else arrival), when given. */
  minAgeDays?: number;
  /** What a read of a cold study does: recall it to the hot tier (in the background), or only serve it from cold. */
  onRead: 'recall' | 'serve';
  /** How often the mover looks for studies to move (minutes). */
  everyMinutes: number;
}

/**
 * Storage classes read at once like STANDARD. Archive classes (GLACIER, DEEP_ARCHIVE) need a
 * restore request and hours before a GET answers: retrieval would not be transparent, so
 * they are refused.
 */
export const coldStorageClasses: readonly string[] = ['STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR', 'REDUCED_REDUNDANCY'];


function text(d: Record<string, unknown>, key: string, where: string): string | undefined {
  const v = d[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${where}.${key} must be a non-empty string`);
  return v;
}

function days(d: Record<string, unknown>, key: string, where: string, min: number): number | undefined {
  const v = d[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > 36_500) throw new ConfigError(`${where}.${key} must be a whole number between ${min} and 36500`);
  return v;
}

/**
 * Refuses a cold tier that is the hot one, or inside it, or holding it (one folder within the
 * other, or the same bucket with one prefix starting the other): a key would then be both
 * tiers' (a move would remove the only copy), or one tier's objects would be listed by the
 * other as its own (orphans `verify --repair` deletes). The same bucket with two separate
 * prefixes is fine (a cold storage class in the hot bucket).
 */
export function checkTiersApart(hot: StorageConfig, cold: StorageConfig): void {
  const nested = (a: string, b: string) => a === b || a.startsWith(b) || b.startsWith(a);
  if (hot.kind === 'filesystem' && cold.kind === 'filesystem') {
    const [h, c] = [path.resolve(hot.root) + path.sep, path.resolve(cold.root) + path.sep];
    if (nested(h, c)) throw new ConfigError(`storage.cold.root (${cold.root}) must be apart from the hot tier's folder (${hot.root}): neither within the other`);
  }
  if (hot.kind === 's3' && cold.kind === 's3' && hot.bucket === cold.bucket && (hot.endpoint ?? '') === (cold.endpoint ?? '')) {
    const prefix = (p: string | undefined) => (p === undefined || p === '' || p.endsWith('/') ? p ?? '' : `${p}/`);
    if (nested(prefix(hot.prefix), prefix(cold.prefix))) {
      throw new ConfigError(`storage.cold in the hot bucket ${hot.bucket} needs its own prefix, apart from the hot one (e.g. storage.prefix: hot/, storage.cold.prefix: cold/)`);
    }
  }
}

/**
 * The tiering of `storage` (undefined without storage.cold). The cold S3 bucket takes the
 * same credentials as the hot one (the environment's, never the file's).
 */
export function parseStorageTiering(storage: Record<string, unknown>, dataDir: string, env: Readonly<Record<string, string | undefined>>): StorageTieringConfig | undefined {
  if (storage.cold === undefined || storage.cold === null) {
    if (storage.tiering !== undefined && storage.tiering !== null) throw new ConfigError('storage.tiering needs storage.cold (where cold objects go)');
    return undefined;
  }
  const c = mapping(storage.cold, 'storage.cold');
  const kind = text(c, 'kind', 'storage.cold') ?? 'filesystem';
  let cold: StorageConfig;
  if (kind === 's3') {
    onlyKeys(c, ['kind', 'bucket', 'endpoint', 'region', 'prefix', 'storageClass', 'partSizeBytes'], 'storage.cold');
    const bucket = text(c, 'bucket', 'storage.cold');
    if (!bucket) throw new ConfigError('storage.cold.kind is s3 but no bucket is named (storage.cold.bucket)');
    const storageClass = text(c, 'storageClass', 'storage.cold');
    if (storageClass !== undefined && !coldStorageClasses.includes(storageClass)) {
      throw new ConfigError(`storage.cold.storageClass must be one read at once (${coldStorageClasses.join(', ')}), not ${storageClass}: archive classes need a restore before any read`);
    }
    const partSizeBytes = c.partSizeBytes;
    if (partSizeBytes !== undefined && (typeof partSizeBytes !== 'number' || !Number.isSafeInteger(partSizeBytes))) throw new ConfigError('storage.cold.partSizeBytes must be a whole number');
    cold = {
      kind: 's3', bucket,
      endpoint: text(c, 'endpoint', 'storage.cold'),
      region: text(c, 'region', 'storage.cold') ?? 'us-east-1',
      prefix: text(c, 'prefix', 'storage.cold'),
      storageClass,
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      partSizeBytes: partSizeBytes as number | undefined,
    };
  } else if (kind === 'filesystem') {
    onlyKeys(c, ['kind', 'root'], 'storage.cold');
    const root = text(c, 'root', 'storage.cold');
    if (!root) throw new ConfigError('storage.cold.kind is filesystem but no root is named (storage.cold.root)');
    cold = { kind: 'filesystem', root: path.resolve(dataDir, root) };
  } else {
    throw new ConfigError(`storage.cold.kind must be filesystem or s3, not ${kind}`);
  }
  const t = mapping(storage.tiering, 'storage.tiering');
  onlyKeys(t, ['moveAfterDaysWithoutRead', 'minAgeDays', 'onRead', 'everyMinutes'], 'storage.tiering');
  const onRead = text(t, 'onRead', 'storage.tiering') ?? 'recall';
  if (onRead !== 'recall' && onRead !== 'serve') throw new ConfigError(`storage.tiering.onRead must be recall or serve, not ${onRead}`);
  const minAgeDays = days(t, 'minAgeDays', 'storage.tiering', 0);
  const everyMinutes = t.everyMinutes ?? 60;
  if (typeof everyMinutes !== 'number' || !Number.isSafeInteger(everyMinutes) || everyMinutes < 1 || everyMinutes > 7 * 24 * 60) {
    throw new ConfigError('storage.tiering.everyMinutes must be a whole number between 1 and 10080');
  }
  return {
    cold,
    moveAfterDaysWithoutRead: days(t, 'moveAfterDaysWithoutRead', 'storage.tiering', 1) ?? 180,
    ...(minAgeDays !== undefined ? { minAgeDays } : {}),
    onRead,
    everyMinutes,
  };
}
