/**
 * The few XML pieces the DMP messages share: namespaces, escaping, reading with a DOM.
 * Messages are written as text (their shape is fixed, nothing is user markup) and read with
 * @xmldom/xmldom, namespace-aware, since every element is matched by namespace and name.
 */
import { createRequire } from 'node:module';
import type { DOMParser } from '@xmldom/xmldom';

// @xmldom/xmldom is loaded at the first DMP message read, not with the server.
const require = createRequire(import.meta.url);
let xmldomModule: typeof import('@xmldom/xmldom') | undefined;
const xmldom = (): typeof import('@xmldom/xmldom') => (xmldomModule ??= require('@xmldom/xmldom') as typeof import('@xmldom/xmldom'));

export const ns = {
  soap: 'http://www.w3.org/2003/05/soap-envelope',
  wsa: 'http://www.w3.org/2005/08/addressing',
  wsse: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd',
  wsu: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd',
  xdsb: 'urn:ihe:iti:xds-b:2007',
  lcm: 'urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0',
  rim: 'urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0',
  rs: 'urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0',
  query: 'urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0',
  xop: 'http://www.w3.org/2004/08/xop/include',
  saml: 'urn:oasis:names:tc:SAML:2.0:assertion',
  ds: 'http://www.w3.org/2000/09/xmldsig#',
  xades: 'http://uri.etsi.org/01903/v1.3.2#',
  hl7: 'urn:hl7-org:v3',
} as const;

/** Text or attribute value with the five XML specials escaped. */
export function esc(value: string | number): string {
  return String(value).replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

export class XmlError extends Error {
  override readonly name = 'XmlError';
}

/** A parsed document; throws XmlError on text that is not well-formed XML. */
export function parseXml(text: string): Document {
  const errors: string[] = [];
  let doc: ReturnType<DOMParser['parseFromString']> | undefined;
  try {
    doc = new (xmldom().DOMParser)({
      errorHandler: (level: string, message: unknown) => { if (level !== 'warning') errors.push(String(message)); },
    }).parseFromString(text, 'text/xml');
  } catch (e) {
    // xmldom 0.8 throws on a fatal error after reporting it.
    errors.push((e as Error).message);
  }
  if (!doc) throw new XmlError(`not well-formed XML: ${errors[0] ?? 'unreadable'}`);
  if (errors.length > 0 || !doc.documentElement) throw new XmlError(`not well-formed XML: ${errors[0] ?? 'no root element'}`);
  return doc as unknown as Document;
}

/** Descendants of `node` with this namespace and local name, in document order. */
export function all(node: Document | Element, namespace: string, local: string): Element[] {
  return Array.from(node.getElementsByTagNameNS(namespace, local));
}

export function first(node: Document | Element, namespace: string, local: string): Element | undefined {
  return all(node, namespace, local)[0];
}

/** Child elements of `node` (not deeper) with this namespace and local name. */
export function children(node: Element, namespace: string, local: string): Element[] {
  return Array.from(node.childNodes).filter((c): c is Element => c.nodeType === 1 && (c as Element).namespaceURI === namespace && (c as Element).localName === local);
}

export function text(node: Element | undefined): string | undefined {
  return node?.textContent ?? undefined;
}

/** ebRIM: the values of the Slot named `name` directly under `node`. */
export function slotValues(node: Element, name: string): string[] {
  const slot = children(node, ns.rim, 'Slot').find((s) => s.getAttribute('name') === name);
  if (!slot) return [];
  return all(slot, ns.rim, 'Value').map((v) => v.textContent ?? '');
}

/** HL7 DTM (YYYYMMDDhhmmss, UTC) as XDS writes times. */
export function dtm(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
}
