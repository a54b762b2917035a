// dicomweb-client is written for browsers: give it Node's XMLHttpRequest from xhr2.
import XHR from 'xhr2';
import dicomweb from 'dicomweb-client';

(globalThis as { XMLHttpRequest?: unknown }).XMLHttpRequest ??= XHR;

// The package ships no types for its UMD build in a form NodeNext resolves; keep the surface we use typed here.
export interface DicomwebClient {
  storeInstances(o: { datasets: ArrayBuffer[]; studyInstanceUID?: string }): Promise<unknown>;
  searchForStudies(o?: { queryParams?: Record<string, string | number | boolean> }): Promise<Array<Record<string, { vr: string; Value?: unknown[] }>>>;
  searchForSeries(o?: { studyInstanceUID?: string; queryParams?: Record<string, string | number | boolean> }): Promise<Array<Record<string, { vr: string; Value?: unknown[] }>>>;
  searchForInstances(o?: { studyInstanceUID?: string; seriesInstanceUID?: string; queryParams?: Record<string, string | number | boolean> }): Promise<Array<Record<string, { vr: string; Value?: unknown[] }>>>;
  retrieveStudyMetadata(o: { studyInstanceUID: string }): Promise<Array<Record<string, { vr: string; Value?: unknown[]; BulkDataURI?: string }>>>;
  retrieveSeriesMetadata(o: { studyInstanceUID: string; seriesInstanceUID: string }): Promise<Array<Record<string, { vr: string; Value?: unknown[] }>>>;
  retrieveInstance(o: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string; mediaTypes?: Array<{ mediaType: string; transferSyntaxUID?: string }> }): Promise<ArrayBuffer>;
  retrieveSeries(o: { studyInstanceUID: string; seriesInstanceUID: string; mediaTypes?: Array<{ mediaType: string; transferSyntaxUID?: string }> }): Promise<ArrayBuffer[]>;
  retrieveStudy(o: { studyInstanceUID: string }): Promise<ArrayBuffer[]>;
  retrieveInstanceFrames(o: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string; frameNumbers: number[]; mediaTypes?: Array<{ mediaType: string; transferSyntaxUID?: string }> }): Promise<ArrayBuffer[]>;
  retrieveInstanceRendered(o: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string; mediaTypes?: Array<{ mediaType: string }>; queryParams?: Record<string, string> }): Promise<ArrayBuffer[]>;
  retrieveBulkData(o: { BulkDataURI: string }): Promise<ArrayBuffer[]>;
}

export function dicomwebClient(url: string, token: string): DicomwebClient {
  const api = (dicomweb as unknown as { api: { DICOMwebClient: new (o: object) => DicomwebClient } }).api;
  return new api.DICOMwebClient({ url, headers: { Authorization: `Bearer ${token}` } });
}

export function toArrayBuffer(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

/**
 * Retrieves one instance as stored (transfer-syntax=*), or in another transfer syntax. dicomweb-client 0.11 cannot ask for
 * it: its retrieveInstance refuses any mediaTypes ('Media type application/ is not supported')
 * and its list of transfer syntaxes has no '*'. The multipart body is split here, independently
 * of Atrium's own multipart code.
 */
export async function retrieveInstanceAsStored(base: string, token: string, uids: { study: string; series: string; sop: string }, transferSyntax = '*'): Promise<Buffer> {
  const res = await fetch(`${base}/studies/${uids.study}/series/${uids.series}/instances/${uids.sop}`, {
    headers: { Authorization: `Bearer ${token}`, Accept: `multipart/related; type="application/dicom"; transfer-syntax=${transferSyntax}` },
  });
  if (res.status !== 200) throw new Error(`retrieve answered ${res.status}: ${await res.text()}`);
  const parts = splitMultipart(Buffer.from(await res.arrayBuffer()), res.headers.get('content-type') ?? '');
  if (parts.length !== 1) throw new Error(`expected one part, got ${parts.length}`);
  return parts[0]!;
}

export function splitMultipart(body: Buffer, contentType: string): Buffer[] {
  const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
  if (!boundary) throw new Error(`no boundary in ${contentType}`);
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const parts: Buffer[] = [];
  // The first delimiter may open the body without a preceding CRLF.
  let pos = body.indexOf(`--${boundary}`);
  while (pos >= 0) {
    const lineEnd = body.indexOf('\r\n', pos);
    if (body.subarray(pos, pos + boundary.length + 4).toString() === `--${boundary}--`) break;
    const headersEnd = body.indexOf('\r\n\r\n', lineEnd);
    const next = body.indexOf(delimiter, headersEnd + 4);
    if (headersEnd < 0 || next < 0) throw new Error('truncated multipart body');
    parts.push(body.subarray(headersEnd + 4, next));
    pos = next + 2;
  }
  return parts;
}
