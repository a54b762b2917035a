import { constants, createReadStream } from 'node:fs';
import { open, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { sendProblem } from '../dicomweb/problem.ts';

/** Where the portal is served: its built files under /app/, its client-side routes too. */
export const portalPrefix = '/app/';

/** Where a share link points (<base>/share#<token>): the portal's share page, the token left in the fragment. */
export const shareLinkPath = '/share';

/** Routes of the portal's shell (HTML, scripts, styles): no patient data, needed before any login. */
export function isPortalRoute(url: string): boolean {
  return url === '/' || url === '/app' || url === shareLinkPath || url.startsWith(portalPrefix);
}

const contentTypes: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.map': 'application/json',
  '.webmanifest': 'application/manifest+json', '.txt': 'text/plain; charset=utf-8', '.svg': 'image/svg+xml',
  '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.webp': 'image/webp',
  '.avif': 'image/avif', '.ico': 'image/x-icon', '.woff': 'font/woff', '.woff2': 'font/woff2', '.ttf': 'font/ttf',
  '.wasm': 'application/wasm',
};

/** Vite's hashed build output (assets/index-B3xZ9q1f.js): its name changes with its content. */
const hashedAsset = /^assets\/(?:[^/]+\/)*[^/]+-[A-Za-z0-9_-]{8,}\.[a-z0-9]+$/;

export class PortalPathError extends Error {
  constructor(readonly status: 400 | 404, message: string) {
    super(message);
    this.name = 'PortalPathError';
  }
}

/**
 * The relative path inside the portal's root that a request target names, or a PortalPathError.
 * Decoded exactly once; refused whole (never cleaned up into something else): NUL and control
 * characters, backslashes, '%' left after decoding (double encoding), '.' and '..' segments,
 * absolute paths and drive letters. Hidden files (.env, .git) are not found.
 */
export function portalRelativePath(encoded: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(encoded);
  } catch {
    throw new PortalPathError(400, 'malformed percent-encoding');
  }
  if (/[\x00-\x1f\x7f\\%]/.test(decoded)) throw new PortalPathError(400, 'the path holds a forbidden character');
  if (decoded.startsWith('/') || /^[A-Za-z]:/.test(decoded)) throw new PortalPathError(400, 'absolute paths are refused');
  const segments = decoded.split('/');
  if (segments.some((s) => s === '.' || s === '..')) throw new PortalPathError(400, 'dot segments are refused');
  if (segments.some((s, i) => s === '' && i < segments.length - 1)) throw new PortalPathError(400, 'empty path segments are refused');
  if (segments.some((s) => s.startsWith('.'))) throw new PortalPathError(404, 'not found');
  return segments.filter((s) => s !== '').join('/');
}

interface OpenedFile {
  fd: FileHandle;
  size: number;
  mtimeMs: number;
  relative: string;
}

/**
 * Opens `relative` under `root` (a realpath) if it is a regular file whose real path, every
 * symlink followed, is still inside root. 'missing' when nothing is there (a client-side
 * route, maybe); 'refused' when something is there but out of bounds: a link leading out of
 * the root, a folder, a device. The file is opened by its real path with O_NOFOLLOW, so a
 * link swapped in after the check is not followed either.
 */
async function openInside(root: string, relative: string): Promise<OpenedFile | 'missing' | 'refused'> {
  const candidate = path.join(root, relative);
  if (!candidate.startsWith(root + path.sep)) return 'refused';
  let real: string;
  try {
    real = await realpath(candidate);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : 'refused';
  }
  if (!real.startsWith(root + path.sep)) return 'refused';
  let fd: FileHandle;
  try {
    fd = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return 'refused';
  }
  const stat = await fd.stat().catch(() => undefined);
  if (!stat?.isFile()) {
    await fd.close();
    return 'refused';
  }
  return { fd, size: stat.size, mtimeMs: stat.mtimeMs, relative: path.relative(root, real).split(path.sep).join('/') };
}

/** Text-like files worth compressing (scripts, styles, pages, JSON, SVG, WebAssembly). */
const compressible = new Set(['.html', '.js', '.mjs', '.css', '.json', '.map', '.svg', '.wasm', '.txt', '.webmanifest']);

/** The encoding a request accepts that the portal uses: Brotli, then gzip (`q=0` refuses one). */
export function acceptedEncoding(header: string | string[] | undefined): 'br' | 'gzip' | undefined {
  const value = Array.isArray(header) ? header.join(',') : header ?? '';
  const accepted = new Map<string, number>();
  for (const part of value.split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';');
    if (!name) continue;
    const q = params.map((x) => /^\s*q=([0-9.]+)\s*$/.exec(x)?.[1]).find((x) => x !== undefined);
    accepted.set(name, q === undefined ? 1 : Number(q));
  }
  const ok = (name: string) => (accepted.get(name) ?? (accepted.has('*') ? accepted.get('*')! : 0)) > 0;
  return ok('br') ? 'br' : ok('gzip') ? 'gzip' : undefined;
}

/**
 * Compressed copies of the portal's files, by encoding, path and version (size and mtime):
 * made once (the viewer's 4 MB script compresses to about a quarter), kept within a budget.
 */
const compressedFiles = new Map<string, Buffer>();
let compressedBytes = 0;
const compressedBudget = 64 * 1024 * 1024;

async function compressedCopy(file: OpenedFile, encoding: 'br' | 'gzip', version: string): Promise<Buffer> {
  const key = `${encoding}:${file.relative}:${version}`;
  const cached = compressedFiles.get(key);
  if (cached) return cached;
  const bytes = await file.fd.readFile();
  const packed = encoding === 'br'
    ? await brotli(bytes, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 6, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length } })
    : await gzip(bytes, { level: 6 });
  if (compressedBytes + packed.length <= compressedBudget) {
    compressedFiles.set(key, packed);
    compressedBytes += packed.length;
  }
  return packed;
}

const brotli = promisify(zlib.brotliCompress);
const gzip = promisify(zlib.gzip);

async function sendFile(request: FastifyRequest, reply: FastifyReply, file: OpenedFile): Promise<FastifyReply> {
  const version = `${file.size.toString(16)}-${Math.floor(file.mtimeMs).toString(16)}`;
  const encoding = compressible.has(path.extname(file.relative).toLowerCase()) && file.size >= 1024 ? acceptedEncoding(request.headers['accept-encoding']) : undefined;
  // Each encoding is its own representation: its own validator.
  const etag = `W/"${version}${encoding ? `-${encoding}` : ''}"`;
  reply
    .type(contentTypes[path.extname(file.relative).toLowerCase()] ?? 'application/octet-stream')
    .header('cache-control', hashedAsset.test(file.relative) ? 'public, max-age=31536000, immutable' : 'no-cache')
    .header('etag', etag);
  if (compressible.has(path.extname(file.relative).toLowerCase())) reply.header('vary', 'accept-encoding');
  if (request.headers['if-none-match'] === etag) {
    void file.fd.close();
    return reply.code(304).send();
  }
  if (encoding) {
    try {
      const packed = await compressedCopy(file, encoding, version);
      reply.header('content-encoding', encoding).header('content-length', packed.length);
      return reply.send(packed);
    } finally {
      void file.fd.close();
    }
  }
  reply.header('content-length', file.size);
  return reply.send(createReadStream('', { fd: file.fd, autoClose: true }));
}

/**
 * The portal's built files (web/dist) under /app/, GET / sending there. A path naming no file
 * and no extension is a client-side route: it gets index.html. Everything but the files under
 * root is out of reach: see portalRelativePath and openInside.
 */
export async function portalRoutes(app: FastifyInstance, options: { root: string }): Promise<void> {
  const root = await realpath(options.root);
  app.get('/', async (_request, reply) => reply.redirect(portalPrefix, 302));
  app.get('/app', async (_request, reply) => reply.redirect(portalPrefix, 302));
  // Browsers keep the fragment (the link's token) across a redirect that names none.
  app.get(shareLinkPath, async (_request, reply) => reply.redirect(`${portalPrefix}share`, 302));
  app.get('/app/*', async (request, reply) => {
    // The raw target, not the router's decoded parameter: decoded once, here.
    const target = (request.raw.url ?? '').split('?')[0]!.slice(portalPrefix.length);
    let relative: string;
    try {
      relative = portalRelativePath(target);
    } catch (e) {
      if (e instanceof PortalPathError) return sendProblem(reply, e.status, e.message);
      throw e;
    }
    const file = relative === '' ? 'missing' : await openInside(root, relative);
    if (typeof file === 'object') return sendFile(request, reply, file);
    // Only what is not there at all, without an extension, is a client-side route.
    if (file === 'refused' || (relative.split('/').pop() ?? '').includes('.')) return sendProblem(reply, 404, 'not found');
    const index = await openInside(root, 'index.html');
    if (typeof index !== 'object') return sendProblem(reply, 404, 'the portal has no index.html');
    return sendFile(request, reply, index);
  });
}
