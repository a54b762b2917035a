/**
 * The signatures DMP calls carry, as the DMP (and its test double) check them: the XAdES
 * signature of a submission and the VIHF assertion; and the SOAP/MTOM envelope reader.
 * Certificates from openssl, as a site's organisation certificate and another authority's.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { makeCertificates } from './support/rsyslog.ts';
import { envelope, mtom, readSoap, SoapError, includedBytes, bodyOf } from '../src/exchange/dmp/soap.ts';
import { signedVihf, verifyVihf, VihfError, vihfAttributes } from '../src/exchange/dmp/vihf.ts';
import { sha256Base64, signSubmission, SignatureError, verifySubmissionSignature } from '../src/exchange/dmp/xades.ts';
import { first, ns } from '../src/exchange/dmp/xml.ts';

const pki = mkdtempSync(path.join(tmpdir(), 'atrium-dmp-sig-'));
makeCertificates(pki, 'ca', [{ name: 'site', usage: 'client' }]);
makeCertificates(path.join(pki, 'other'), 'other-ca', [{ name: 'stranger', usage: 'client' }]);
after(() => rmSync(pki, { recursive: true, force: true }));
const read = (p: string) => readFileSync(path.join(pki, p), 'utf8');
const site = { certificate: read('site.crt'), key: read('site.key') };
const stranger = { certificate: read('other/stranger.crt'), key: read('other/stranger.key') };
const trusted = [new X509Certificate(read('ca.crt'))];

describe('the XAdES signature of a submission', () => {
  const documents = [{ uniqueId: '1.2.250.1.999.1.1', content: Buffer.from('<ClinicalDocument/>') }, { uniqueId: '1.2.250.1.999.1.2', content: Buffer.from('DICM') }];

  it('lists every document with its SHA-256, signed with the site\'s certificate at its signing time', () => {
    const xml = signSubmission(documents, site, new Date('2026-12-06T10:00:00Z'), 'sig-1');
    const checked = verifySubmissionSignature(xml, trusted);
    assert.deepEqual([...checked.references], documents.map((d) => [d.uniqueId, sha256Base64(d.content)]));
    assert.equal(checked.signingTime, '2026-12-06T10:00:00.000Z');
    assert.equal(checked.certificate.fingerprint256, new X509Certificate(site.certificate).fingerprint256);
  });

  it('is refused when a digest of its Manifest was changed, or when another authority issued its certificate', () => {
    const xml = signSubmission(documents, site, new Date(), 'sig-2');
    const other = sha256Base64('another document');
    const tampered = xml.replace(sha256Base64(documents[0]!.content), other);
    assert.notEqual(tampered, xml);
    assert.throws(() => verifySubmissionSignature(tampered, trusted), SignatureError);
    assert.throws(() => verifySubmissionSignature(signSubmission(documents, stranger, new Date(), 'sig-3'), trusted), /not issued by a trusted authority/);
    assert.throws(() => verifySubmissionSignature('<not-a-signature/>', trusted), SignatureError);
  });
});

describe('the VIHF assertion', () => {
  const claims = {
    issuer: 'urn:atrium:test', subjectNameId: '810000000001', subjectName: 'Anne RADIOLOGUE',
    role: { code: '10', scheme: '1.2.250.1.213.1.1.5.5', display: 'Médecin' }, structure: { id: '1590000001', name: 'CHU Nord' },
    sector: { code: 'SA01', scheme: '1.2.250.1.71.4.2.4', display: 'Etablissement public de santé' }, mode: 'INDIRECTE' as const,
    patientId: '284076322024035^^^&1.2.250.1.213.1.4.10&ISO^NH', software: { name: 'Atrium', version: 'test', approval: 'TEST' },
  };

  it('says who acts, for which structure and patient, in which mode, signed and valid for minutes', () => {
    const now = new Date();
    const v = verifyVihf(signedVihf(claims, site, now), trusted, now);
    assert.equal(v.subjectNameId, '810000000001');
    assert.equal(v.roleCode, '10');
    assert.equal(v.attributes.get(vihfAttributes.mode), 'INDIRECTE');
    assert.equal(v.attributes.get(vihfAttributes.structure), '1590000001');
    assert.equal(v.attributes.get(vihfAttributes.resourceId), claims.patientId);
    assert.throws(() => verifyVihf(signedVihf(claims, site, now), trusted, new Date(now.getTime() + 3_600_000)), /not valid now/);
  });

  it('is refused when an attribute was changed after signing, or signed by a certificate of another authority', () => {
    const xml = signedVihf(claims, site);
    const altered = xml.replace('>INDIRECTE<', '>INDIRECTE_RENFORCEE<');
    assert.notEqual(altered, xml);
    assert.throws(() => verifyVihf(altered, trusted), VihfError);
    assert.throws(() => verifyVihf(signedVihf(claims, stranger), trusted), /trusted authority/);
    assert.throws(() => verifyVihf(signedVihf({ ...claims, mode: 'DIRECTE' as never }, site), trusted), /authentication mode/);
  });
});

describe('SOAP 1.2 and MTOM/XOP', () => {
  it('reads back an MTOM package: the envelope as root part, each document by its Content-ID', async () => {
    const soap = envelope({ action: 'urn:test', to: 'https://dmp.example.fr', body: `<d xmlns="urn:d"><xop:Include xmlns:xop="${ns.xop}" href="cid:doc1@atrium"/></d>` });
    const bytes = Buffer.from([0, 1, 2, 13, 10, 45, 45, 255]);
    const packed = await mtom(soap, 'urn:test', [{ contentId: 'doc1@atrium', contentType: 'application/dicom', content: bytes }]);
    const message = await readSoap(packed.contentType, packed.body);
    assert.equal(message.mtom, true);
    assert.equal(first(message.envelope, ns.wsa, 'Action')?.textContent, 'urn:test');
    assert.deepEqual(includedBytes(message, first(bodyOf(message), 'urn:d', 'd')!), bytes);
  });

  it('refuses a multipart body that is not XOP, a SOAP 1.1 envelope and XML that is not well-formed', async () => {
    await assert.rejects(readSoap('multipart/related; type="text/xml"; boundary=b', Buffer.from('--b\r\n\r\nx\r\n--b--\r\n')), /xop/);
    await assert.rejects(readSoap('application/soap+xml', Buffer.from('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>')), SoapError);
    await assert.rejects(readSoap('application/soap+xml', Buffer.from('<unclosed')), SoapError);
  });
});
