import { pipeline, Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type StorageClass,
  S3Client,
  paginateListObjectsV2,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import {
  abandonSource,
  assertValidBlobKey,
  BlobNotFoundError,
  BlobSizeError,
  type BlobRange,
  type BlobSource,
  type BlobStore,
  type StoredBlob,
} from './blob-store.ts';
import { HashingStream } from './hashing.ts';

export interface S3StoreConfig {
  /** e.g. http://127.0.0.1:9000 for MinIO or Ceph RGW; absent for AWS itself. */
  endpoint?: string;
  region: string;
  bucket: string;
  /** Prepended to every key; a "/" is added when it does not end with one. */
  prefix?: string;
  /** When absent, the SDK's default chain (environment, profile, instance role) applies. */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Multipart part size; S3 requires at least 5 MiB. Default 16 MiB. */
  partSizeBytes?: number;
  /** The storage class of every object written (a cold tier's STANDARD_IA...); the bucket's default when absent. */
  storageClass?: string;
}

const MiB = 1024 * 1024;
const defaultPartSize = 16 * MiB;
const minimumPartSize = 5 * MiB;
/** Parts uploaded in parallel: memory held by one put is about (queueSize + 1) parts. */
const queueSize = 4;
/** CopyObject refuses larger sources; beyond it the hash is not stored as metadata. */
const maximumCopySize = 5 * 1024 * MiB;
const contentType = 'application/octet-stream';

/**
 * Blobs in an S3-compatible bucket (AWS, MinIO, Ceph RGW). Objects are streamed:
 * one part is read ahead, and an object that fits in it is sent with one PutObject
 * carrying its SHA-256 as x-amz-meta-sha256; a larger one goes as a multipart
 * upload (aborted on any error), then gets its metadata by a server-side copy
 * onto itself, since the hash is known only at the end.
 */
export class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const;
  /** Exposed so tests and operators can add SDK middleware (metrics, tracing). */
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly partSize: number;
  /** The StorageClass parameter of every write, when configured. */
  private readonly classParam: { StorageClass?: StorageClass };

  constructor(config: S3StoreConfig) {
    this.classParam = config.storageClass ? { StorageClass: config.storageClass as StorageClass } : {};
    const partSize = config.partSizeBytes ?? defaultPartSize;
    if (!Number.isSafeInteger(partSize) || partSize < minimumPartSize) {
      throw new RangeError(`S3 part size must be an integer of at least ${minimumPartSize} bytes, not ${partSize}`);
    }
    this.partSize = partSize;
    this.bucket = config.bucket;
    const prefix = config.prefix ?? '';
    this.prefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    this.client = new S3Client({
      endpoint: config.endpoint,
      region: config.region,
      forcePathStyle: true,
      credentials:
        config.accessKeyId !== undefined && config.secretAccessKey !== undefined
          ? { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey }
          : undefined,
      // Many S3-compatible servers reject the SDK's default trailing CRC32 (aws-chunked bodies);
      // integrity is ours anyway: the SHA-256 computed here.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  /** Opens a store and checks that the bucket is reachable, so a wrong setting fails at start. */
  static async open(config: S3StoreConfig): Promise<S3BlobStore> {
    const store = new S3BlobStore(config);
    try {
      await store.client.send(new HeadBucketCommand({ Bucket: store.bucket }));
    } catch (e) {
      store.client.destroy();
      throw new Error(`S3 bucket ${config.bucket} is not reachable at ${config.endpoint ?? 'AWS'}: ${errorText(e)}`, { cause: e });
    }
    return store;
  }

  async put(key: string, source: BlobSource): Promise<StoredBlob> {
    try {
      assertValidBlobKey(key);
    } catch (e) {
      abandonSource(source);
      throw e;
    }
    const body = source instanceof Readable ? source : Readable.from(source, { objectMode: false });
    const Key = this.prefix + key;
    const hashing = new HashingStream();
    // pipeline, not pipe: an error or an abort of the body must fail the hashing stream too.
    pipeline(body, hashing, () => {});
    const chunks = hashing[Symbol.asyncIterator]();
    try {
      // Read ahead one part (plus a byte): if the object ends within it, its hash is known before sending.
      const head: Buffer[] = [];
      let headSize = 0;
      let ended = false;
      while (headSize <= this.partSize) {
        const next = await chunks.next();
        if (next.done) {
          ended = true;
          break;
        }
        const chunk = next.value as Buffer;
        head.push(chunk);
        headSize += chunk.length;
      }
      if (ended) {
        const sha256 = hashing.sha256;
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key,
            Body: Buffer.concat(head, headSize),
            ContentLength: headSize,
            ContentType: contentType,
            Metadata: { sha256 },
            ...this.classParam,
          }),
        );
        return { key, size: headSize, sha256 };
      }

      const rest = async function* (): AsyncGenerator<Buffer> {
        yield* head.splice(0);
        for (;;) {
          const next = await chunks.next();
          if (next.done) return;
          yield next.value as Buffer;
        }
      };
      // Upload aborts the multipart upload itself on any failure (leavePartsOnError is false).
      const upload = new Upload({
        client: this.client,
        queueSize,
        partSize: this.partSize,
        leavePartsOnError: false,
        params: { Bucket: this.bucket, Key, Body: Readable.from(rest(), { objectMode: false }), ContentType: contentType, ...this.classParam },
      });
      const uploaded = await upload.done();
      const blob: StoredBlob = { key, size: hashing.size, sha256: hashing.sha256 };
      if (blob.size <= maximumCopySize) {
        try {
          await this.client.send(
            new CopyObjectCommand({
              Bucket: this.bucket,
              Key,
              CopySource: `${encodeURIComponent(this.bucket)}/${Key.split('/').map(encodeURIComponent).join('/')}`,
              // Only if nobody replaced the object since: never label other bytes with this hash.
              CopySourceIfMatch: uploaded.ETag,
              MetadataDirective: 'REPLACE',
              Metadata: { sha256: blob.sha256 },
              ContentType: contentType,
              // A copy is written in the default class unless told again.
              ...this.classParam,
            }),
          );
        } catch (e) {
          // Replaced by a later put meanwhile: ours did complete, and the later one wins, as S3 has it.
          if (errorName(e) === 'PreconditionFailed' || httpStatus(e) === 412) return blob;
          // The caller is told the put failed, so it must not find these bytes under the key.
          await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key })).catch(() => {});
          throw e;
        }
      }
      return blob;
    } catch (e) {
      // When the source failed, that is the cause to report (a client that hung up is not a
      // storage failure), even if cleaning up then failed too.
      const sourceError = body.errored ?? hashing.errored;
      body.destroy();
      hashing.destroy();
      throw sourceError ?? e;
    }
  }

  async readWhole(key: string, size?: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.get(key)) chunks.push(chunk as Buffer);
    const whole = Buffer.concat(chunks);
    if (size !== undefined && whole.length !== size) throw new BlobSizeError(key, size, whole.length);
    return whole;
  }

  async get(key: string, range?: BlobRange): Promise<Readable> {
    assertValidBlobKey(key);
    if (range) assertValidRange(range);
    try {
      const response = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.prefix + key,
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
      );
      const body = response.Body;
      if (!(body instanceof Readable)) throw new Error(`S3 returned no readable body for ${key}`);
      if (range) {
        // Some S3-compatible servers (s3rver for "bytes=0-0") answer more than asked; never pass that on.
        const served = parseContentRange(response.ContentRange);
        const wanted = range.end - range.start + 1;
        if (served === undefined || served.start !== range.start) {
          body.destroy();
          throw new Error(`S3 answered range ${response.ContentRange ?? '(none)'} for bytes=${range.start}-${range.end} of ${key}`);
        }
        if (served.end - served.start + 1 > wanted) return truncate(body, wanted);
      }
      return body;
    } catch (e) {
      if (isNotFound(e)) throw new BlobNotFoundError(key);
      if (errorName(e) === 'InvalidRange' || httpStatus(e) === 416) {
        throw new RangeError(`range ${range?.start}-${range?.end} starts beyond the end of ${key}`);
      }
      throw e;
    }
  }

  async stat(key: string): Promise<{ size: number } | undefined> {
    assertValidBlobKey(key);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
      return { size: head.ContentLength ?? 0 };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  /** The SHA-256 stored with the object at put(), when there is one. */
  async storedSha256(key: string): Promise<string | undefined> {
    assertValidBlobKey(key);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
      return head.Metadata?.sha256;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async delete(key: string): Promise<void> {
    assertValidBlobKey(key);
    // S3 answers 204 whether or not the key existed.
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
  }

  async *list(prefix = ''): AsyncIterable<{ key: string; size: number }> {
    const pages = paginateListObjectsV2({ client: this.client }, { Bucket: this.bucket, Prefix: this.prefix + prefix });
    for await (const page of pages) {
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined) continue;
        yield { key: object.Key.slice(this.prefix.length), size: object.Size ?? 0 };
      }
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

function parseContentRange(header: string | undefined): { start: number; end: number } | undefined {
  const match = header === undefined ? null : /^bytes (\d+)-(\d+)\//.exec(header);
  return match ? { start: Number(match[1]), end: Number(match[2]) } : undefined;
}

/** The first `length` bytes of a stream; the rest is not read (the source is destroyed). */
function truncate(source: Readable, length: number): Readable {
  async function* firstBytes(): AsyncGenerator<Buffer> {
    let remaining = length;
    for await (const chunk of source) {
      const bytes = chunk as Buffer;
      if (bytes.length >= remaining) {
        yield bytes.subarray(0, remaining);
        return;
      }
      remaining -= bytes.length;
      yield bytes;
    }
  }
  // Leaving the for-await loop early destroys the source and releases its socket.
  return Readable.from(firstBytes(), { objectMode: false });
}

function assertValidRange(range: BlobRange): void {
  if (!Number.isSafeInteger(range.start) || !Number.isSafeInteger(range.end) || range.start < 0 || range.end < range.start) {
    throw new RangeError(`invalid byte range ${range.start}-${range.end}`);
  }
}

function errorName(e: unknown): string | undefined {
  return e instanceof Error ? e.name : undefined;
}

function httpStatus(e: unknown): number | undefined {
  if (typeof e !== 'object' || e === null || !('$metadata' in e)) return undefined;
  const metadata = (e as { $metadata?: { httpStatusCode?: number } }).$metadata;
  return metadata?.httpStatusCode;
}

function isNotFound(e: unknown): boolean {
  const name = errorName(e);
  return name === 'NoSuchKey' || name === 'NotFound' || (httpStatus(e) === 404 && name !== 'NoSuchBucket');
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
