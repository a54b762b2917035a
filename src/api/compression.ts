/**
 * Compressed JSON answers: the DICOM JSON of QIDO-RS and WADO-RS metadata (a 500-slice CT's
 * metadata is several megabytes of repetitive text) and the portal's API JSON go out in
 * Brotli or gzip when the client accepts it. Pixel data, DICOM files and the portal's own files
 * (src/api/static-files.ts) are not touched here. Answers holding a session secret (/auth/*)
 * are left uncompressed (no compression oracle on the CSRF token).
 */
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { acceptedEncoding } from './static-files.ts';

/** Below this, compressing costs more than it saves. */
const minimumBytes = 1024;

const jsonType = /^application\/(?:[a-z.+-]+\+)?json\b/i;

function packer(encoding: 'br' | 'gzip'): zlib.BrotliCompress | zlib.Gzip {
  return encoding === 'br'
    ? zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 4, [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT } })
    : zlib.createGzip({ level: 5 });
}

export function registerJsonCompression(app: FastifyInstance): void {
  app.addHook('onSend', async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    if (reply.hasHeader('content-encoding') || request.method === 'HEAD' || reply.statusCode === 204 || reply.statusCode === 304) return payload;
    if ((request.raw.url ?? '').startsWith('/auth/')) return payload;
    const type = String(reply.getHeader('content-type') ?? '');
    if (!jsonType.test(type)) return payload;
    const encoding = acceptedEncoding(request.headers['accept-encoding']);
    if (!encoding) return payload;
    reply.header('vary', 'accept-encoding');
    if (typeof payload === 'string' || Buffer.isBuffer(payload)) {
      const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
      if (bytes.length < minimumBytes) return payload;
      const packed = await new Promise<Buffer>((resolve, reject) => {
        if (encoding === 'br') zlib.brotliCompress(bytes, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 4, [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT } }, (e, r) => (e ? reject(e) : resolve(r)));
        else zlib.gzip(bytes, { level: 5 }, (e, r) => (e ? reject(e) : resolve(r)));
      });
      reply.header('content-encoding', encoding).header('content-length', packed.length);
      return packed;
    }
    if (payload instanceof Readable) {
      reply.removeHeader('content-length');
      reply.header('content-encoding', encoding);
      const out = packer(encoding);
      payload.on('error', (e) => out.destroy(e));
      return payload.pipe(out);
    }
    return payload;
  });
}
