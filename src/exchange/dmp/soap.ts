/**
 * SOAP 1.2 with WS-Addressing and WS-Security, packed as MTOM/XOP (multipart/related,
 * application/xop+xml root part, binary parts referenced by xop:Include cid: links), as
 * IHE ITI-41/43 and the DMP require. Writing and reading both; the reader is the one
 * multipart/related parser of the archive (src/dicomweb/multipart.ts).
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { multipartBoundary, readMultipart, writeMultipart } from '../../dicomweb/multipart.ts';
import { parseMediaType } from '../../dicomweb/media-type.ts';
import { all, children, esc, first, ns, parseXml } from './xml.ts';

export interface Envelope {
  action: string;
  to: string;
  /** A signed assertion (the VIHF), put in wsse:Security as is. */
  assertion?: string;
  body: string;
}

export function envelope(e: Envelope, messageId = `urn:uuid:${randomUUID()}`): string {
  return `<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="${ns.soap}" xmlns:wsa="${ns.wsa}">`
    + '<soap:Header>'
    + `<wsa:Action soap:mustUnderstand="true">${esc(e.action)}</wsa:Action>`
    + `<wsa:MessageID>${esc(messageId)}</wsa:MessageID>`
    + `<wsa:To soap:mustUnderstand="true">${esc(e.to)}</wsa:To>`
    + (e.assertion ? `<wsse:Security xmlns:wsse="${ns.wsse}" soap:mustUnderstand="true">${e.assertion.replace(/^<\?xml[^>]*\?>/, '')}</wsse:Security>` : '')
    + `</soap:Header><soap:Body>${e.body}</soap:Body></soap:Envelope>`;
}

export interface MtomMessage {
  contentType: string;
  body: Buffer;
}

/** An MTOM package: the SOAP envelope as its root part, each attachment after it by Content-ID. */
export async function mtom(soapXml: string, action: string, attachments: ReadonlyArray<{ contentId: string; contentType: string; content: Buffer }>): Promise<MtomMessage> {
  const boundary = multipartBoundary();
  const start = `<root.${randomUUID()}@atrium>`;
  async function* parts() {
    yield {
      contentType: `application/xop+xml; charset=UTF-8; type="application/soap+xml"; action="${action}"`,
      headers: { 'Content-ID': start, 'Content-Transfer-Encoding': 'binary' },
      body: Buffer.from(soapXml, 'utf8'),
    };
    for (const a of attachments) yield { contentType: a.contentType, headers: { 'Content-ID': `<${a.contentId}>`, 'Content-Transfer-Encoding': 'binary' }, body: a.content };
  }
  const chunks: Buffer[] = [];
  for await (const c of writeMultipart(parts(), boundary)) chunks.push(c);
  return {
    contentType: `multipart/related; type="application/xop+xml"; boundary="${boundary}"; start="${start}"; start-info="application/soap+xml"; action="${action}"`,
    body: Buffer.concat(chunks),
  };
}

export class SoapError extends Error {
  override readonly name = 'SoapError';
}

export interface ReadMessage {
  /** The SOAP envelope's text, xop:Include still in place. */
  xml: string;
  envelope: Document;
  /** Attachments by Content-ID (angle brackets removed). */
  attachments: Map<string, { contentType: string; content: Buffer }>;
  /** Whether it came as MTOM/XOP (multipart/related with an application/xop+xml root). */
  mtom: boolean;
}

/**
 * Reads a SOAP 1.2 message, plain (application/soap+xml) or MTOM. Throws SoapError when it
 * is neither, when the XOP root is missing or not first-named, or when the XML is not a
 * SOAP 1.2 envelope.
 */
export async function readSoap(contentType: string | undefined, body: Buffer): Promise<ReadMessage> {
  if (!contentType) throw new SoapError('no Content-Type');
  let media;
  try {
    media = parseMediaType(contentType);
  } catch (e) {
    throw new SoapError(`unreadable Content-Type: ${(e as Error).message}`);
  }
  const type = media.type;
  let xml: string;
  const attachments = new Map<string, { contentType: string; content: Buffer }>();
  let isMtom = false;
  if (type === 'application/soap+xml') {
    xml = body.toString('utf8');
  } else if (type === 'multipart/related') {
    const boundary = media.params.boundary;
    if (!boundary) throw new SoapError('multipart/related without a boundary');
    if ((media.params.type ?? '').toLowerCase() !== 'application/xop+xml') throw new SoapError('multipart/related whose type is not application/xop+xml (MTOM/XOP)');
    const start = media.params.start?.replace(/^<|>$/g, '');
    let root: string | undefined;
    let index = 0;
    try {
      for await (const part of readMultipart(Readable.from([body]), boundary)) {
        const chunks: Buffer[] = [];
        for await (const c of part.body) chunks.push(c as Buffer);
        const id = (part.headers['content-id'] ?? '').trim().replace(/^<|>$/g, '');
        const partType = part.contentType ?? 'application/octet-stream';
        const isRoot = start ? id === start : index === 0;
        if (isRoot) {
          if (!/^application\/xop\+xml/i.test(partType)) throw new SoapError('the root part of an MTOM message is not application/xop+xml');
          root = Buffer.concat(chunks).toString('utf8');
        } else {
          attachments.set(id, { contentType: partType, content: Buffer.concat(chunks) });
        }
        index++;
      }
    } catch (e) {
      if (e instanceof SoapError) throw e;
      throw new SoapError(`unreadable MTOM package: ${(e as Error).message}`);
    }
    if (root === undefined) throw new SoapError('the MTOM package has no root part');
    xml = root;
    isMtom = true;
  } else {
    throw new SoapError(`${type} is not a SOAP 1.2 message`);
  }
  let doc: Document;
  try {
    doc = parseXml(xml);
  } catch (e) {
    throw new SoapError((e as Error).message);
  }
  const root = doc.documentElement!;
  if (root.namespaceURI !== ns.soap || root.localName !== 'Envelope') throw new SoapError('the root element is not a SOAP 1.2 Envelope');
  if (!first(doc, ns.soap, 'Body')) throw new SoapError('the envelope has no Body');
  return { xml, envelope: doc, attachments, mtom: isMtom };
}

export function bodyOf(message: ReadMessage): Element {
  return children(message.envelope.documentElement!, ns.soap, 'Body')[0]!;
}

/** The bytes of an element holding an xop:Include (or inline base64). */
export function includedBytes(message: ReadMessage, element: Element): Buffer | undefined {
  const include = first(element, ns.xop, 'Include');
  if (!include) {
    const t = element.textContent?.trim();
    return t ? Buffer.from(t, 'base64') : undefined;
  }
  const href = include.getAttribute('href') ?? '';
  const id = decodeURIComponent(href.replace(/^cid:/, ''));
  return message.attachments.get(id)?.content;
}

export interface Fault {
  code: string;
  subcode?: string;
  reason: string;
}

export function faultOf(message: ReadMessage): Fault | undefined {
  const fault = first(message.envelope, ns.soap, 'Fault');
  if (!fault) return undefined;
  const values = all(fault, ns.soap, 'Value').map((v) => v.textContent?.trim() ?? '');
  return { code: values[0] ?? 'soap:Receiver', ...(values[1] ? { subcode: values[1] } : {}), reason: first(fault, ns.soap, 'Text')?.textContent ?? '' };
}

/** A SOAP 1.2 fault envelope; `subcode` is the service's error code (a QName). */
export function faultEnvelope(code: 'soap:Sender' | 'soap:Receiver', subcode: string, reason: string, subcodeNs?: { prefix: string; uri: string }): string {
  const decl = subcodeNs ? ` xmlns:${subcodeNs.prefix}="${subcodeNs.uri}"` : '';
  return `<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="${ns.soap}"${decl}><soap:Body><soap:Fault>`
    + `<soap:Code><soap:Value>${code}</soap:Value><soap:Subcode><soap:Value>${esc(subcode)}</soap:Value></soap:Subcode></soap:Code>`
    + `<soap:Reason><soap:Text xml:lang="fr">${esc(reason)}</soap:Text></soap:Reason></soap:Fault></soap:Body></soap:Envelope>`;
}
