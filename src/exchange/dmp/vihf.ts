/**
 * The VIHF (Vecteur d'Identification et d'Habilitation Formelle): the SAML 2.0 assertion a
 * DMP call carries in its WS-Security header (CI-SIS "Volet Transport Synchrone pour client
 * lourd", IHE XUA++). It says who acts (a professional, their role, their structure), how
 * they were authenticated (mode INDIRECTE: the structure vouches for a machine
 * publication; INDIRECTE_RENFORCEE: a professional logged in with Pro Santé Connect), which
 * patient the call concerns (the INS), and it is signed with the structure's certificate
 * (enveloped XML-DSig, exclusive C14N, RSA-SHA256).
 */
import { randomUUID, X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Coded } from './document.ts';
import type { Signer } from './xades.ts';
import { all, esc, first, ns, parseXml } from './xml.ts';

// xml-crypto is loaded at the first signature made or checked, not with the server (about 50 ms of CPU at start).
const require = createRequire(import.meta.url);
let xmlCrypto: typeof import('xml-crypto') | undefined;
const signedXml = (): typeof import('xml-crypto').SignedXml => (xmlCrypto ??= require('xml-crypto') as typeof import('xml-crypto')).SignedXml;

export type AuthenticationMode = 'INDIRECTE' | 'INDIRECTE_RENFORCEE';

export const vihfAttributes = {
  subjectId: 'urn:oasis:names:tc:xspa:1.0:subject:subject-id',
  role: 'urn:oasis:names:tc:xacml:2.0:subject:role',
  organization: 'urn:oasis:names:tc:xspa:1.0:subject:organization',
  organizationId: 'urn:oasis:names:tc:xspa:1.0:subject:organization-id',
  purposeOfUse: 'urn:oasis:names:tc:xspa:1.0:subject:purposeofuse',
  resourceId: 'urn:oasis:names:tc:xacml:2.0:resource:resource-id',
  structure: 'Identifiant_Structure',
  sector: 'Secteur_Activite',
  mode: 'Authentification_Mode',
  version: 'VIHF_Version',
  resourceUrn: 'Ressource_URN',
  software: 'LPS_Nom',
  softwareVersion: 'LPS_Version',
  approval: 'LPS_ID_HOMOLOGATION_DMP',
} as const;

/** What the DMP checks is there (the double refuses an assertion lacking one). */
export const requiredVihfAttributes: readonly string[] = [
  vihfAttributes.subjectId, vihfAttributes.role, vihfAttributes.structure, vihfAttributes.sector,
  vihfAttributes.mode, vihfAttributes.version, vihfAttributes.resourceUrn, vihfAttributes.software,
];

export interface VihfClaims {
  issuer: string;
  /** The professional's national identifier (RPPS, prefixed 8), or the structure's for a machine. */
  subjectNameId: string;
  subjectName: string;
  role: Coded;
  structure: { id: string; name: string };
  sector: Coded;
  mode: AuthenticationMode;
  /** The patient's INS as the DMP's patientId (absent for calls about no patient). */
  patientId?: string;
  software: { name: string; version: string; approval: string };
  /** How long the assertion holds (default 5 minutes). */
  validForMs?: number;
}

const attr = (name: string, value: string) =>
  `<saml2:Attribute Name="${esc(name)}"><saml2:AttributeValue>${esc(value)}</saml2:AttributeValue></saml2:Attribute>`;
const codedAttr = (name: string, c: Coded) =>
  `<saml2:Attribute Name="${esc(name)}"><saml2:AttributeValue><Role xmlns="${ns.hl7}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CE" code="${esc(c.code)}" codeSystem="${esc(c.scheme)}" displayName="${esc(c.display)}"/></saml2:AttributeValue></saml2:Attribute>`;

/** A signed VIHF assertion, ready to go in a wsse:Security header. */
export function signedVihf(claims: VihfClaims, signer: Signer, now = new Date()): string {
  const id = `_${randomUUID()}`;
  const until = new Date(now.getTime() + (claims.validForMs ?? 300_000));
  const assertion = `<saml2:Assertion xmlns:saml2="${ns.saml}" ID="${id}" IssueInstant="${now.toISOString()}" Version="2.0">`
    + `<saml2:Issuer>${esc(claims.issuer)}</saml2:Issuer>`
    + `<saml2:Subject><saml2:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">${esc(claims.subjectNameId)}</saml2:NameID>`
    + '<saml2:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:sender-vouches"/></saml2:Subject>'
    + `<saml2:Conditions NotBefore="${now.toISOString()}" NotOnOrAfter="${until.toISOString()}"/>`
    + `<saml2:AuthnStatement AuthnInstant="${now.toISOString()}"><saml2:AuthnContext><saml2:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient</saml2:AuthnContextClassRef></saml2:AuthnContext></saml2:AuthnStatement>`
    + '<saml2:AttributeStatement>'
    + attr(vihfAttributes.version, '3.0')
    + attr(vihfAttributes.subjectId, claims.subjectName)
    + codedAttr(vihfAttributes.role, claims.role)
    + attr(vihfAttributes.structure, claims.structure.id)
    + attr(vihfAttributes.organization, claims.structure.name)
    + attr(vihfAttributes.organizationId, claims.structure.id)
    + attr(vihfAttributes.sector, `${claims.sector.code}^${claims.sector.scheme}`)
    + attr(vihfAttributes.purposeOfUse, 'NORMAL')
    + attr(vihfAttributes.mode, claims.mode)
    + attr(vihfAttributes.resourceUrn, 'urn:dmp')
    + (claims.patientId ? attr(vihfAttributes.resourceId, claims.patientId) : '')
    + attr(vihfAttributes.software, claims.software.name)
    + attr(vihfAttributes.softwareVersion, claims.software.version)
    + attr(vihfAttributes.approval, claims.software.approval)
    + '</saml2:AttributeStatement></saml2:Assertion>';
  const sig = new (signedXml())({
    privateKey: signer.key as Buffer, publicCert: signer.certificate,
    canonicalizationAlgorithm: 'http://www.w3.org/2001/10/xml-exc-c14n#', signatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
  });
  sig.addReference({
    xpath: `//*[local-name(.)='Assertion']`, digestAlgorithm: 'http://www.w3.org/2001/04/xmlenc#sha256',
    transforms: ['http://www.w3.org/2000/09/xmldsig#enveloped-signature', 'http://www.w3.org/2001/10/xml-exc-c14n#'],
  });
  // SAML's schema puts the signature right after the Issuer.
  sig.computeSignature(assertion, { prefix: 'ds', location: { reference: `//*[local-name(.)='Issuer']`, action: 'after' } });
  return sig.getSignedXml();
}

export class VihfError extends Error {
  override readonly name = 'VihfError';
}

export interface VerifiedVihf {
  issuer: string;
  subjectNameId: string;
  attributes: Map<string, string>;
  /** The role's code (an hl7 CE in the attribute value). */
  roleCode?: string;
  certificate: X509Certificate;
}

/**
 * Checks an assertion (as found in a wsse:Security header): signed over itself by a
 * certificate `trusted` issued, within its validity, with every required attribute. The
 * attributes are read from what was signed. Throws VihfError.
 */
export function verifyVihf(assertionXml: string, trusted: readonly X509Certificate[], now = new Date()): VerifiedVihf {
  const doc = parseXml(assertionXml);
  const signature = first(doc, ns.ds, 'Signature');
  const certText = first(doc, ns.ds, 'X509Certificate')?.textContent?.replace(/\s+/g, '');
  if (!signature || !certText) throw new VihfError('the VIHF assertion is not signed');
  const certificate = new X509Certificate(Buffer.from(certText, 'base64'));
  if (!trusted.some((ca) => certificate.checkIssued(ca) && certificate.verify(ca.publicKey))) throw new VihfError('the VIHF signing certificate is not issued by a trusted authority');
  const checker = new (signedXml())({ publicCert: certificate.toString() });
  checker.loadSignature(signature as unknown as Node);
  let valid = false;
  try {
    valid = checker.checkSignature(assertionXml);
  } catch (e) {
    throw new VihfError(`VIHF signature check failed: ${(e as Error).message}`);
  }
  if (!valid) throw new VihfError('the VIHF signature does not match');
  const signed = checker.getSignedReferences().map((s) => parseXml(s)).find((d) => d.documentElement?.localName === 'Assertion' && d.documentElement.namespaceURI === ns.saml);
  if (!signed) throw new VihfError('the signature does not cover the assertion');
  const root = signed.documentElement!;
  const conditions = first(signed, ns.saml, 'Conditions');
  const notBefore = Date.parse(conditions?.getAttribute('NotBefore') ?? '');
  const notAfter = Date.parse(conditions?.getAttribute('NotOnOrAfter') ?? '');
  // A minute of clock skew either way.
  if (!(notBefore - 60_000 <= now.getTime() && now.getTime() < notAfter + 60_000)) throw new VihfError('the VIHF assertion is not valid now');
  const attributes = new Map<string, string>();
  let roleCode: string | undefined;
  for (const a of all(root, ns.saml, 'Attribute')) {
    const name = a.getAttribute('Name') ?? '';
    const value = first(a, ns.saml, 'AttributeValue');
    const coded = value && Array.from(value.childNodes).find((c) => c.nodeType === 1) as Element | undefined;
    if (name === vihfAttributes.role) roleCode = coded?.getAttribute('code') ?? undefined;
    attributes.set(name, coded ? coded.getAttribute('code') ?? '' : value?.textContent ?? '');
  }
  const missing = requiredVihfAttributes.filter((n) => !(attributes.get(n) ?? '').trim());
  if (missing.length > 0) throw new VihfError(`the VIHF assertion lacks ${missing.join(', ')}`);
  const mode = attributes.get(vihfAttributes.mode);
  if (mode !== 'INDIRECTE' && mode !== 'INDIRECTE_RENFORCEE') throw new VihfError(`authentication mode ${mode} is not one this service accepts`);
  return {
    issuer: first(root, ns.saml, 'Issuer')?.textContent ?? '',
    subjectNameId: first(root, ns.saml, 'NameID')?.textContent ?? '',
    attributes, ...(roleCode ? { roleCode } : {}), certificate,
  };
}
