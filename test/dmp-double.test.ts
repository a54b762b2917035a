/**
 * The DMP test double refuses what the DMP refuses: each test sends a valid ITI-41 through
 * the client, changed on its way in one respect, and expects the refusal and its code. (That
 * the double accepts the unchanged message is test/dmp.test.ts's matter.)
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { makeCertificates } from './support/rsyslog.ts';
import { DmpDouble } from './support/dmp-double.ts';
import { DmpClient, DmpRefusal, type DmpCaller, type PublicationRequest } from '../src/exchange/dmp/client.ts';
import type { DmpDocument } from '../src/exchange/dmp/document.ts';
import { INS_OIDS, insKeyOf, parseINS } from '../src/patients/ins.ts';

const pki = mkdtempSync(path.join(tmpdir(), 'atrium-dmp-double-'));
makeCertificates(pki, 'igc', [{ name: 'server', usage: 'server' }, { name: 'site', usage: 'client' }]);
const file = (name: string) => readFileSync(path.join(pki, name), 'utf8');
const matricule = '2840763220240';
const ins = parseINS(matricule + insKeyOf(matricule), INS_OIDS.NIR_TEST);
const badKey = String((Number(ins.key) % 97) + 1).padStart(2, '0');

const caller: DmpCaller = {
  signer: { certificate: file('site.crt'), key: file('site.key') }, structure: { id: '1590000001', name: 'CHU Nord' },
  sector: { code: 'SA01', scheme: '1.2.250.1.71.4.2.4', display: 'Etablissement public de santé' },
  subject: { id: '810000000001', name: 'Anne RADIOLOGUE', role: { code: '10', scheme: '1.2.250.1.213.1.1.5.5', display: 'Médecin' } }, mode: 'INDIRECTE',
};

function request(kind: 'CR-IMG' | 'KOS', over: Partial<PublicationRequest> = {}): PublicationRequest {
  const id = randomUUID();
  const n = BigInt(`0x${id.replaceAll('-', '')}`).toString(10);
  const document: DmpDocument = {
    id, kind, uniqueId: `2.25.${n}`, mimeType: kind === 'KOS' ? 'application/dicom' : 'text/xml',
    content: Buffer.from(kind === 'KOS' ? 'DICM-manifest' : '<ClinicalDocument xmlns="urn:hl7-org:v3"/>'), title: 'Compte rendu', creationTime: new Date(),
    siteId: 1, patient: { PatientID: 'P1', IssuerOfPatientID: 'CHUNORD' }, StudyInstanceUID: '1.2.3.4', AccessionNumber: 'A1', order: { id: 'O1', issuerOid: '1.2.250.1.999.2' },
    modalities: ['CT'], regions: [], author: { id: '810000000001', family: 'RADIOLOGUE' },
  };
  return {
    document, ins, sourceId: '1.2.250.1.999', submissionSetUniqueId: `2.25.${n}.1`, signatureUniqueId: `2.25.${n}.2`,
    facility: { name: 'CHU Nord', finess: '590000001', facilityType: caller.sector, practiceSetting: { code: 'ETABLISSEMENT', scheme: '1.2.250.1.213.1.1.4.9', display: 'Etablissement' } },
    ...over,
  };
}

describe('the DMP test double', () => {
  let dmp: DmpDouble;

  before(async () => {
    dmp = new DmpDouble({ cert: file('server.crt'), key: file('server.key'), ca: file('igc.crt') });
    await dmp.start();
    dmp.patients.set(ins.matricule + ins.key, { dmp: 'active' });
  });

  after(async () => {
    await dmp.stop();
    rmSync(pki, { recursive: true, force: true });
  });

  /** A client whose message is changed by `mutate` (on its bytes as latin1) just before it is sent. */
  const mutating = (mutate: (body: string) => string, contentType?: (t: string) => string) => {
    const client = new DmpClient({ endpoint: dmp.endpoint, ca: file('igc.crt'), timeoutMs: 10_000, software: { name: 'Atrium', version: 'test', approval: 'T' }, vihfIssuer: 'urn:test' });
    type Post = (u: string, t: string, b: Buffer, s: DmpCaller['signer']) => Promise<unknown>;
    const post = (client as unknown as { post: Post }).post.bind(client);
    (client as unknown as { post: Post }).post = (u, t, b, s) => post(u, contentType ? contentType(t) : t, Buffer.from(mutate(b.toString('latin1')), 'latin1'), s);
    return client;
  };
  const refusedWith = (code: string, pattern?: RegExp) => (e: unknown) => {
    assert.ok(e instanceof DmpRefusal, String(e));
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
  const submit = (mutate: (body: string) => string, kind: 'CR-IMG' | 'KOS' = 'CR-IMG', over: Partial<PublicationRequest> = {}) =>
    mutating((b) => (b.includes('ProvideAndRegisterDocumentSetRequest') ? mutate(b) : b)).provideAndRegister(caller, request(kind, over));

  it('takes an unchanged submission', async () => {
    const published = await submit((b) => b);
    assert.ok(dmp.entries.some((e) => e.entryUUID === published.entryUUID));
  });

  it('refuses a patientId whose INS key is wrong', async () => {
    await assert.rejects(submit((b) => b.replaceAll(`value="${ins.matricule}${ins.key}^^^`, `value="${ins.matricule}${badKey}^^^`)), refusedWith('XDSRegistryMetadataError', /key/));
  });

  it('refuses a DocumentEntry without a required slot, a KOS with another formatCode, a KOS without its study in referenceIdList', async () => {
    await assert.rejects(submit((b) => b.replace(/<rim:Slot name="languageCode">.*?<\/rim:Slot>/, '')), refusedWith('XDSRegistryMetadataError', /languageCode/));
    await assert.rejects(submit((b) => b.replace('nodeRepresentation="1.2.840.10008.5.1.4.1.1.88.59"', 'nodeRepresentation="1.2.840.10008.5.1.4.1.1.88.11"'), 'KOS'), refusedWith('XDSRegistryMetadataError', /KOS/));
    await assert.rejects(submit((b) => b.replace(/<rim:Value>1\.2\.3\.4\^\^\^[^<]*<\/rim:Value>/, ''), 'KOS'), refusedWith('XDSRegistryMetadataError', /referenceIdList/));
  });

  it('refuses a document whose bytes are not those its hash and its signature describe', async () => {
    await assert.rejects(submit((b) => b.replace('<ClinicalDocument xmlns="urn:hl7-org:v3"/>', '<ClinicalDocument xmlns="urn:hl7-org:v4"/>')), refusedWith('XDSNonIdenticalHash'));
  });

  it('refuses a submission without its signature association, and one whose Manifest was changed', async () => {
    await assert.rejects(submit((b) => b.replace(/associationType="urn:ihe:iti:2007:AssociationType:signs"/, 'associationType="urn:ihe:iti:2007:AssociationType:XFRM"')), refusedWith('XDSRegistryMetadataError', /sign/));
    // hash and size are optional in ITI-41: without them, only the signature can tell.
    const withoutHashes = (b: string) => b.replace(/<rim:Slot name="(hash|size)">.*?<\/rim:Slot>/g, '');
    await assert.rejects(submit((b) => withoutHashes(b).replace(/(<ds:Manifest[^>]*><ds:Reference URI=")/, '$1x')), refusedWith('XDSRegistryMetadataError', /signature/));
    await assert.rejects(submit((b) => withoutHashes(b).replace('<ClinicalDocument xmlns="urn:hl7-org:v3"/>', '<ClinicalDocument xmlns="urn:hl7-org:v4"/>')), refusedWith('XDSRegistryMetadataError', /Manifest does not sign/));
  });

  it('refuses RPLC to an entry it does not hold, and ITI-41 sent without MTOM', async () => {
    await assert.rejects(submit((b) => b, 'CR-IMG', { replaces: `urn:uuid:${randomUUID()}` }), refusedWith('UnresolvedReferenceException'));
    const plain = mutating((b) => {
      const start = b.indexOf('<?xml');
      const end = b.indexOf('</soap:Envelope>') + '</soap:Envelope>'.length;
      return b.slice(start, end);
    }, () => 'application/soap+xml; charset=UTF-8');
    await assert.rejects(plain.provideAndRegister(caller, request('CR-IMG')), refusedWith('Sender', /MTOM/));
  });

  it('refuses a VIHF changed after signing, and a patient without an open DMP', async () => {
    await assert.rejects(mutating((b) => b.replace('>INDIRECTE<', '>INDIRECTE_RENFORCEE<')).findDocuments(caller, ins), refusedWith('FailedCheck'));
    const other = parseINS('1550599123007' + insKeyOf('1550599123007'), INS_OIDS.NIR_TEST);
    await assert.rejects(submit((b) => b, 'CR-IMG', { ins: other }), refusedWith('XDSUnknownPatientId'));
  });
});
