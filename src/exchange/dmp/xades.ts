/**
 * The signature of a submission set (IHE DSG, XAdES-BES profile of XML-DSig as the CI-SIS
 * asks for it): an enveloping signature whose Manifest lists every document of the
 * submission by uniqueId with its SHA-256, and whose SignedProperties carry the signing time
 * and the signer's certificate digest. SignedInfo signs the Manifest and the
 * SignedProperties, canonicalized with exclusive C14N, RSA-SHA256. The signature is itself a
 * document of the submission, associated to the submission set ("signs").
 *
 * Signing and checking both go through xml-crypto (exclusive C14N by hand is where such
 * code goes wrong); the check also proves the certificate comes from a trusted authority
 * and reads the Manifest from what was signed, never from the raw text.
 */
import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import { all, esc, ns, parseXml } from './xml.ts';

// xml-crypto is loaded at the first signature made or checked, not with the server (about 50 ms of CPU at start).
const require = createRequire(import.meta.url);
let xmlCrypto: typeof import('xml-crypto') | undefined;
const signedXml = (): typeof import('xml-crypto').SignedXml => (xmlCrypto ??= require('xml-crypto') as typeof import('xml-crypto')).SignedXml;

const c14n = 'http://www.w3.org/2001/10/xml-exc-c14n#';
const sha256 = 'http://www.w3.org/2001/04/xmlenc#sha256';
const rsaSha256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';

export interface SignedDocumentRef {
  uniqueId: string;
  content: Buffer;
}

export interface Signer {
  key: KeyObject | string | Buffer;
  /** PEM certificate of the key (the site's organisation certificate). */
  certificate: string;
}

export const sha256Base64 = (b: Buffer | string) => createHash('sha256').update(b).digest('base64');

/** The XAdES signature document of a submission: text/xml, to be sent as one more document. */
export function signSubmission(documents: readonly SignedDocumentRef[], signer: Signer, signingTime: Date, signatureId: string): string {
  const cert = new X509Certificate(signer.certificate);
  const manifest = `<ds:Manifest xmlns:ds="${ns.ds}" Id="${signatureId}-manifest">`
    + documents.map((d) => `<ds:Reference URI="${esc(d.uniqueId)}"><ds:DigestMethod Algorithm="${sha256}"/><ds:DigestValue>${sha256Base64(d.content)}</ds:DigestValue></ds:Reference>`).join('')
    + '</ds:Manifest>';
  const qualifying = `<xades:QualifyingProperties xmlns:xades="${ns.xades}" xmlns:ds="${ns.ds}" Target="#${signatureId}">`
    + `<xades:SignedProperties Id="${signatureId}-props"><xades:SignedSignatureProperties>`
    + `<xades:SigningTime>${signingTime.toISOString()}</xades:SigningTime>`
    + `<xades:SigningCertificate><xades:Cert><xades:CertDigest><ds:DigestMethod Algorithm="${sha256}"/><ds:DigestValue>${sha256Base64(cert.raw)}</ds:DigestValue></xades:CertDigest>`
    + `<xades:IssuerSerial><ds:X509IssuerName>${esc(cert.issuer.replace(/\n/g, ','))}</ds:X509IssuerName><ds:X509SerialNumber>${BigInt(`0x${cert.serialNumber}`).toString(10)}</ds:X509SerialNumber></xades:IssuerSerial></xades:Cert></xades:SigningCertificate>`
    + '</xades:SignedSignatureProperties></xades:SignedProperties></xades:QualifyingProperties>';
  const sig = new (signedXml())({
    privateKey: signer.key as Buffer, publicCert: signer.certificate, canonicalizationAlgorithm: c14n, signatureAlgorithm: rsaSha256,
    objects: [{ content: manifest }, { content: qualifying }],
  });
  sig.addReference({ xpath: `//*[@Id='${signatureId}-manifest']`, transforms: [c14n], digestAlgorithm: sha256, type: 'http://www.w3.org/2000/09/xmldsig#Manifest' });
  sig.addReference({ xpath: `//*[@Id='${signatureId}-props']`, transforms: [c14n], digestAlgorithm: sha256, type: 'http://uri.etsi.org/01903#SignedProperties' });
  sig.computeSignature('<SubmissionSignature/>', { prefix: 'ds', attrs: { Id: signatureId } });
  return `<?xml version="1.0" encoding="UTF-8"?>${sig.getSignatureXml()}`;
}

export class SignatureError extends Error {
  override readonly name = 'SignatureError';
}

/**
 * Checks a submission's signature document: valid over its Manifest and SignedProperties,
 * made with a certificate that `trusted` issued (and that the SignedProperties name), and
 * answers the Manifest's references (uniqueId → SHA-256) as signed. Throws SignatureError.
 */
export function verifySubmissionSignature(xml: string, trusted: readonly X509Certificate[]): { references: Map<string, string>; certificate: X509Certificate; signingTime?: string } {
  let doc: Document;
  try {
    doc = parseXml(xml);
  } catch (e) {
    throw new SignatureError((e as Error).message);
  }
  const signature = all(doc, ns.ds, 'Signature')[0];
  const certText = all(doc, ns.ds, 'X509Certificate')[0]?.textContent?.replace(/\s+/g, '');
  if (!signature || !certText) throw new SignatureError('no ds:Signature with its X509Certificate');
  const certificate = new X509Certificate(Buffer.from(certText, 'base64'));
  if (!trusted.some((ca) => certificate.checkIssued(ca) && certificate.verify(ca.publicKey))) throw new SignatureError('the signing certificate is not issued by a trusted authority');
  const now = Date.now();
  if (Date.parse(certificate.validTo) < now || Date.parse(certificate.validFrom) > now) throw new SignatureError('the signing certificate is not valid now');
  const checker = new (signedXml())({ publicCert: certificate.toString() });
  checker.loadSignature(signature as unknown as Node);
  let valid = false;
  try {
    valid = checker.checkSignature(xml);
  } catch (e) {
    throw new SignatureError(`signature check failed: ${(e as Error).message}`);
  }
  if (!valid) throw new SignatureError('the signature value or a reference digest does not match');
  // What was signed, reparsed: a Manifest or a certificate digest outside the signed nodes counts for nothing.
  const signed = checker.getSignedReferences().map((s) => parseXml(s));
  const manifest = signed.find((d) => d.documentElement?.namespaceURI === ns.ds && d.documentElement.localName === 'Manifest');
  const props = signed.find((d) => d.documentElement?.namespaceURI === ns.xades && d.documentElement.localName === 'SignedProperties');
  if (!manifest || !props) throw new SignatureError('the signed references are not a Manifest and SignedProperties');
  const certDigest = all(props, ns.ds, 'DigestValue')[0]?.textContent;
  if (certDigest !== sha256Base64(certificate.raw)) throw new SignatureError('SigningCertificate does not name the signing certificate');
  const references = new Map<string, string>();
  for (const r of all(manifest, ns.ds, 'Reference')) references.set(r.getAttribute('URI') ?? '', all(r, ns.ds, 'DigestValue')[0]?.textContent ?? '');
  const signingTime = all(props, ns.xades, 'SigningTime')[0]?.textContent ?? undefined;
  return { references, certificate, ...(signingTime ? { signingTime } : {}) };
}
