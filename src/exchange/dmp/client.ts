/**
 * The DMP client: the calls of a document source and of a document consumer, over HTTPS
 * authenticated by the site's organisation certificate, each carrying a signed VIHF.
 * - TD0.2, the DMP's existence test: whether the patient has a DMP, closed or not, and
 *   whether they opposed its access by professionals;
 * - ITI-41 Provide and Register Document Set-b (MTOM/XOP), the submission signed (XAdES),
 *   replacing a previous entry with an RPLC association when asked;
 * - ITI-57 Update Document Set: an entry's status to Deleted (CI-SIS) when it is withdrawn;
 * - ITI-18 Registry Stored Query FindDocuments, by INS with filters;
 * - ITI-43 Retrieve Document Set.
 * A refusal comes back as DmpRefusal with the service's code (a SOAP fault's subcode or an
 * ebRS errorCode); a service that cannot be reached or answers too late as DmpUnavailable.
 */
import { randomUUID, X509Certificate, createHash } from 'node:crypto';
import https from 'node:https';
import type { INS } from '../../patients/ins.ts';
import { insValue } from '../../patients/ins.ts';
import type { Coded, DmpAuthor, DmpDocument } from './document.ts';
import {
  dmpPatientId, documentCodes, findDocumentsRequest, formatCodeOf, modalityScheme, provideAndRegisterRequest, referenceId,
  retrieveDocumentSetRequest, updateStatusRequest, xds, type EntryToSend, type Facility, type FindDocumentsQuery,
} from './metadata.ts';
import { bodyOf, envelope, faultOf, includedBytes, mtom, readSoap, type ReadMessage } from './soap.ts';
import { signedVihf, type AuthenticationMode } from './vihf.ts';
import { signSubmission, type Signer } from './xades.ts';
import { all, children, esc, first, ns, slotValues } from './xml.ts';

export const dmpActions = {
  provideAndRegister: 'urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b',
  registryStoredQuery: 'urn:ihe:iti:2007:RegistryStoredQuery',
  retrieveDocumentSet: 'urn:ihe:iti:2007:RetrieveDocumentSet',
  updateDocumentSet: 'urn:ihe:iti:2010:UpdateDocumentSet',
  existenceTest: 'urn:hl7-org:v3:PRPA_IN201307UV02',
} as const;

/** Where each transaction goes under dmp.endpoint. */
export const dmpPaths = { repository: '/repository', registry: '/registry', patients: '/patients' } as const;

/** The service said no: `code` is its error code, shown as is to whoever follows the publication. */
export class DmpRefusal extends Error {
  override readonly name = 'DmpRefusal';
  constructor(readonly code: string, message: string, readonly transient = false) {
    super(`${code}: ${message}`);
  }
}

/** The service could not be reached or did not answer in time: worth trying again later. */
export class DmpUnavailable extends Error {
  override readonly name = 'DmpUnavailable';
}

/** ebRS and SOAP codes that say "try again later", not "this is wrong". */
const transientCodes = new Set(['XDSRegistryBusy', 'XDSRepositoryBusy', 'XDSRegistryOutOfResources', 'XDSRepositoryOutOfResources', 'XDSRegistryNotAvailable']);

export interface DmpClientOptions {
  /** Base URL of the DMP's web services (https). */
  endpoint: string;
  /** PEM of the authorities the DMP's server certificate is checked against (the IGC-Santé chain). */
  ca: string;
  timeoutMs: number;
  software: { name: string; version: string; approval: string };
  /** VIHF Issuer. */
  vihfIssuer: string;
}

/** Who calls: the site's certificate (TLS and signatures) and the VIHF's subject. */
export interface DmpCaller {
  signer: Signer;
  structure: { id: string; name: string };
  sector: Coded;
  /** The professional: the author of the document for a machine publication, the logged-in one otherwise. */
  subject: { id: string; name: string; role: Coded };
  mode: AuthenticationMode;
}

export interface ExistenceResult {
  exists: boolean;
  closed: boolean;
  /** The patient opposed professionals' access to their DMP: nothing is sent. */
  opposition: boolean;
}

export interface PublicationRequest {
  document: DmpDocument;
  ins: INS;
  facility: Facility;
  /** OID of this Atrium installation as a document source. */
  sourceId: string;
  /** UIDs this submission takes (submission set and signature), made by the caller under its root. */
  submissionSetUniqueId: string;
  signatureUniqueId: string;
  /** The DMP entry (entryUUID) this document replaces. */
  replaces?: string;
}

export interface PublishedEntry {
  entryUUID: string;
  uniqueId: string;
  submissionSetUniqueId: string;
}

export interface FoundDocument {
  entryUUID: string;
  uniqueId: string;
  status: string;
  mimeType: string;
  repositoryUniqueId?: string;
  classCode?: string;
  typeCode?: string;
  formatCode?: string;
  creationTime?: string;
  title?: string;
  referenceIds: string[];
}

export class DmpClient {
  private readonly trusted: string;

  constructor(private readonly options: DmpClientOptions) {
    this.trusted = options.ca;
  }

  /** TD0.2: does the patient have a DMP, and may it be fed. */
  async testExistence(caller: DmpCaller, ins: INS): Promise<ExistenceResult> {
    const body = `<hl7:PRPA_IN201307UV02 xmlns:hl7="${ns.hl7}" ITSVersion="XML_1.0"><hl7:id root="${randomUUID()}"/>`
      + `<hl7:controlActProcess classCode="CACT" moodCode="EVN"><hl7:queryByParameter><hl7:parameterList><hl7:patientIdentifier>`
      + `<hl7:value root="${esc(ins.oid)}" extension="${esc(insValue(ins))}"/><hl7:semanticsText>Patient.Id</hl7:semanticsText>`
      + '</hl7:patientIdentifier></hl7:parameterList></hl7:queryByParameter></hl7:controlActProcess></hl7:PRPA_IN201307UV02>';
    const answer = await this.call(dmpPaths.patients, dmpActions.existenceTest, caller, dmpPatientId(ins), body);
    const status = first(answer.envelope, ns.hl7, 'dmpStatus')?.getAttribute('code');
    // An answer that says nothing of the DMP is not taken for "no DMP".
    if (status === undefined || status === null) throw new DmpRefusal('TD0.2', 'the existence test answered without the DMP\'s status');
    const opposition = first(answer.envelope, ns.hl7, 'oppositionProfessionals')?.getAttribute('value') === 'true';
    return { exists: status === 'active' || status === 'closed', closed: status === 'closed', opposition };
  }

  /** ITI-41: the document, its signature, the submission set; RPLC when it replaces an entry. */
  async provideAndRegister(caller: DmpCaller, r: PublicationRequest, now = new Date()): Promise<PublishedEntry> {
    const doc = r.document;
    const patientId = dmpPatientId(r.ins);
    const codes = doc.kind === 'KOS' ? documentCodes.KOS : documentCodes['CR-IMG'];
    const referenceIds = [
      ...(doc.AccessionNumber && doc.order ? [referenceId(doc.AccessionNumber, doc.order.issuerOid, xds.accession)] : []),
      // A Study Instance UID is unique under DICOM's rules: its authority is DICOM's root.
      referenceId(doc.StudyInstanceUID, '1.2.840.10008', xds.studyInstanceUID),
      ...(doc.order ? [referenceId(doc.order.id, doc.order.issuerOid, xds.order)] : []),
    ];
    const entry: EntryToSend = {
      entryUUID: `urn:uuid:${randomUUID()}`, contentId: `doc.${randomUUID()}@atrium`, uniqueId: doc.uniqueId, mimeType: doc.mimeType,
      title: doc.title, creationTime: doc.creationTime, ...(doc.serviceStartTime ? { serviceStartTime: doc.serviceStartTime } : {}),
      classCode: codes.classCode, typeCode: codes.typeCode, formatCode: formatCodeOf(doc), confidentiality: doc.confidentiality ?? 'N',
      eventCodes: [...doc.modalities.map((m) => ({ code: m, scheme: modalityScheme, display: m })), ...doc.regions],
      referenceIds, author: doc.author, sourcePatientId: `${doc.patient.PatientID}^^^&${doc.patient.IssuerOfPatientID}&ISO^PI`,
      hash: createHash('sha1').update(doc.content).digest('hex'), size: doc.content.length,
    };
    const signatureXml = Buffer.from(signSubmission([{ uniqueId: doc.uniqueId, content: doc.content }], caller.signer, now, `sig-${randomUUID()}`), 'utf8');
    const sigCodes = documentCodes.signature;
    const signature: EntryToSend = {
      entryUUID: `urn:uuid:${randomUUID()}`, contentId: `sig.${randomUUID()}@atrium`, uniqueId: r.signatureUniqueId, mimeType: 'text/xml',
      title: 'Signature de la soumission', creationTime: now, classCode: sigCodes.classCode, typeCode: sigCodes.typeCode, formatCode: sigCodes.formatCode,
      confidentiality: 'N', eventCodes: [], referenceIds: [], author: doc.author, sourcePatientId: entry.sourcePatientId,
      hash: createHash('sha1').update(signatureXml).digest('hex'), size: signatureXml.length,
    };
    const submissionEntryUUID = `urn:uuid:${randomUUID()}`;
    const body = provideAndRegisterRequest({
      entryUUID: submissionEntryUUID, uniqueId: r.submissionSetUniqueId, sourceId: r.sourceId, submissionTime: now, contentType: codes.typeCode,
      patientId, facility: r.facility, author: doc.author, entries: [entry, signature], signatureEntryUUID: signature.entryUUID,
      ...(r.replaces ? { replaces: { entryUUID: entry.entryUUID, previousEntryUUID: r.replaces } } : {}),
    });
    const answer = await this.call(dmpPaths.repository, dmpActions.provideAndRegister, caller, patientId, body, [
      { contentId: entry.contentId, contentType: doc.mimeType, content: doc.content },
      { contentId: signature.contentId, contentType: 'text/xml', content: signatureXml },
    ]);
    registryErrors(answer);
    return { entryUUID: entry.entryUUID, uniqueId: doc.uniqueId, submissionSetUniqueId: r.submissionSetUniqueId };
  }

  /** ITI-57: an entry's availability status to `to` (CI-SIS Deleted for a withdrawn document). */
  async updateStatus(caller: DmpCaller, u: { ins: INS; facility: Facility; author: DmpAuthor; sourceId: string; submissionSetUniqueId: string;
    entryUUID: string; contentType: Coded; from?: string; to?: string }, now = new Date()): Promise<void> {
    const patientId = dmpPatientId(u.ins);
    const body = updateStatusRequest({
      entryUUID: `urn:uuid:${randomUUID()}`, uniqueId: u.submissionSetUniqueId, sourceId: u.sourceId, patientId, facility: u.facility, author: u.author,
      submissionTime: now, contentType: u.contentType, documentEntryUUID: u.entryUUID, from: u.from ?? xds.approved, to: u.to ?? xds.deleted,
    });
    registryErrors(await this.call(dmpPaths.registry, dmpActions.updateDocumentSet, caller, patientId, body));
  }

  /** ITI-18 FindDocuments: the patient's entries matching the filters (LeafClass). */
  async findDocuments(caller: DmpCaller, ins: INS, filters: Omit<FindDocumentsQuery, 'patientId'> = {}): Promise<FoundDocument[]> {
    const patientId = dmpPatientId(ins);
    const answer = await this.call(dmpPaths.registry, dmpActions.registryStoredQuery, caller, patientId, findDocumentsRequest({ ...filters, patientId }));
    registryErrors(answer);
    return all(bodyOf(answer), ns.rim, 'ExtrinsicObject').map((e) => {
      const scheme = (s: string) => children(e, ns.rim, 'Classification').find((c) => c.getAttribute('classificationScheme') === s)?.getAttribute('nodeRepresentation') ?? undefined;
      const uniqueId = children(e, ns.rim, 'ExternalIdentifier').find((x) => x.getAttribute('identificationScheme') === xds.de.uniqueId)?.getAttribute('value') ?? '';
      const title = first(children(e, ns.rim, 'Name')[0] ?? e, ns.rim, 'LocalizedString')?.getAttribute('value') ?? undefined;
      const found: FoundDocument = {
        entryUUID: e.getAttribute('id') ?? '', uniqueId, status: e.getAttribute('status') ?? '', mimeType: e.getAttribute('mimeType') ?? '',
        referenceIds: slotValues(e, xds.referenceIdList),
      };
      const optional: Partial<FoundDocument> = {
        repositoryUniqueId: slotValues(e, 'repositoryUniqueId')[0], classCode: scheme(xds.de.classCode), typeCode: scheme(xds.de.typeCode),
        formatCode: scheme(xds.de.formatCode), creationTime: slotValues(e, 'creationTime')[0], title,
      };
      for (const [k, v] of Object.entries(optional)) if (v !== undefined) (found as unknown as Record<string, unknown>)[k] = v;
      return found;
    });
  }

  /** ITI-43: the documents' bytes (MTOM), as the repository holds them. */
  async retrieveDocuments(caller: DmpCaller, ins: INS, documents: ReadonlyArray<{ repositoryUniqueId: string; documentUniqueId: string }>): Promise<Array<{ uniqueId: string; mimeType: string; content: Buffer }>> {
    const answer = await this.call(dmpPaths.repository, dmpActions.retrieveDocumentSet, caller, dmpPatientId(ins), retrieveDocumentSetRequest(documents));
    registryErrors(answer);
    return all(bodyOf(answer), ns.xdsb, 'DocumentResponse').map((d) => {
      const content = includedBytes(answer, first(d, ns.xdsb, 'Document')!);
      if (!content) throw new DmpRefusal('XDSMissingDocument', 'a DocumentResponse without its bytes');
      return { uniqueId: first(d, ns.xdsb, 'DocumentUniqueId')?.textContent ?? '', mimeType: first(d, ns.xdsb, 'mimeType')?.textContent ?? '', content };
    });
  }

  /** One SOAP call: VIHF in WS-Security, MTOM when there are attachments (always for ITI-41/43). */
  private async call(path: string, action: string, caller: DmpCaller, patientId: string | undefined, body: string,
    attachments: ReadonlyArray<{ contentId: string; contentType: string; content: Buffer }> = []): Promise<ReadMessage> {
    const to = `${this.options.endpoint.replace(/\/$/, '')}${path}`;
    const assertion = signedVihf({
      issuer: this.options.vihfIssuer, subjectNameId: caller.subject.id, subjectName: caller.subject.name, role: caller.subject.role,
      structure: caller.structure, sector: caller.sector, mode: caller.mode, software: this.options.software,
      ...(patientId ? { patientId } : {}),
    }, caller.signer);
    const soap = envelope({ action, to, assertion, body });
    const useMtom = attachments.length > 0 || action === dmpActions.provideAndRegister || action === dmpActions.retrieveDocumentSet;
    const message = useMtom ? await mtom(soap, action, attachments) : { contentType: `application/soap+xml; charset=UTF-8; action="${action}"`, body: Buffer.from(soap, 'utf8') };
    const response = await this.post(to, message.contentType, message.body, caller.signer);
    let read: ReadMessage;
    try {
      read = await readSoap(response.contentType, response.body);
    } catch (e) {
      if (response.status >= 500) throw new DmpUnavailable(`the DMP answered HTTP ${response.status}`);
      throw new DmpRefusal(`HTTP${response.status}`, `the DMP's answer is not SOAP: ${(e as Error).message}`);
    }
    const fault = faultOf(read);
    if (fault) {
      const code = (fault.subcode ?? fault.code).replace(/^[\w-]+:/, '');
      throw new DmpRefusal(code, fault.reason, fault.code.endsWith('Receiver') || transientCodes.has(code));
    }
    return read;
  }

  private post(url: string, contentType: string, body: Buffer, signer: Signer): Promise<{ status: number; contentType?: string; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const u = new URL(url);
      if (u.protocol !== 'https:') {
        reject(new DmpRefusal('configuration', 'dmp.endpoint must be https: the DMP authenticates the site by its certificate'));
        return;
      }
      const req = https.request(u, {
        method: 'POST', ca: this.trusted, cert: signer.certificate, key: signer.key as Buffer, timeout: this.options.timeoutMs,
        headers: { 'content-type': contentType, 'content-length': body.length },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ...(res.headers['content-type'] ? { contentType: res.headers['content-type'] } : {}), body: Buffer.concat(chunks) }));
        res.on('error', (e) => reject(new DmpUnavailable(`the DMP's answer broke off: ${e.message}`)));
      });
      const deadline = setTimeout(() => req.destroy(new DmpUnavailable(`the DMP did not answer within ${this.options.timeoutMs} ms`)), this.options.timeoutMs);
      req.on('timeout', () => req.destroy(new DmpUnavailable(`the DMP did not answer within ${this.options.timeoutMs} ms`)));
      req.on('error', (e) => reject(e instanceof DmpUnavailable || e instanceof DmpRefusal ? e : new DmpUnavailable(`the DMP cannot be reached: ${e.message}`)));
      req.on('close', () => clearTimeout(deadline));
      req.end(body);
    });
  }
}

/** ebRS: a Failure status or any Error-severity RegistryError is a refusal with its code. */
function registryErrors(message: ReadMessage): void {
  const body = bodyOf(message);
  const response = Array.from(body.childNodes).find((c): c is Element => c.nodeType === 1);
  const status = response?.getAttribute('status') ?? first(body, ns.rs, 'RegistryResponse')?.getAttribute('status') ?? '';
  const errors = all(body, ns.rs, 'RegistryError').filter((e) => (e.getAttribute('severity') ?? xds.errorSeverity).endsWith('Error'));
  if (errors.length === 0 && !status.endsWith('Failure')) return;
  const e = errors[0];
  const code = e?.getAttribute('errorCode') ?? 'XDSRegistryError';
  throw new DmpRefusal(code, e?.getAttribute('codeContext') ?? 'the registry answered Failure', transientCodes.has(code));
}

/** The certificate's subject, for logs: which site's certificate was used. */
export function certificateSubject(pem: string): string {
  return new X509Certificate(pem).subject.replace(/\n/g, ', ');
}
