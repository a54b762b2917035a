/**
 * A test double of the DMP's web services, on loopback, HTTPS with client certificates
 * required (the site's organisation certificate). It checks what the real service checks,
 * from its published specification (IHE ITI TF-2/3, CI-SIS), and answers with the codes the
 * standards list:
 * - SOAP 1.2, WS-Addressing Action, MTOM/XOP for ITI-41 and ITI-43;
 * - the VIHF in WS-Security: signed by a certificate of the trusted authority, the same
 *   certificate as the TLS client's, with the required attributes, its patient the request's;
 * - ITI-41: the ebRIM metadata (required slots, classifications, external identifiers;
 *   classCode, typeCode, formatCode and mimeType of a CR-IMG, a KOS and the signature; the
 *   patientId `INS^^^&OID&ISO^NH` with a valid INS key; KOS referenceIdList and
 *   eventCodeList), every document present and matching its hash and size, the XAdES
 *   signature of the submission (valid, trusted, its Manifest digests those of the
 *   documents), RPLC naming an existing approved entry of the same patient;
 * - ITI-57: the entry exists and had the original status; the new status one of XDS's or
 *   CI-SIS's Deleted;
 * - ITI-18 FindDocuments and ITI-43 Retrieve answered from what was published;
 * - TD0.2: the patient's DMP (active, closed or absent) and opposition, as the test set them.
 * Security faults are SOAP faults with WS-Security's codes; metadata errors are ebRS
 * RegistryErrors with IHE's codes.
 */
import { createHash, randomUUID, X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { INSError, parseINS } from '../../src/patients/ins.ts';
import { dmpActions, dmpPaths } from '../../src/exchange/dmp/client.ts';
import { documentCodes, registryResponse, xds, type RegistryError } from '../../src/exchange/dmp/metadata.ts';
import { bodyOf, faultEnvelope, includedBytes, mtom, readSoap, SoapError, type ReadMessage } from '../../src/exchange/dmp/soap.ts';
import { verifyVihf, vihfAttributes, VihfError, type VerifiedVihf } from '../../src/exchange/dmp/vihf.ts';
import { sha256Base64, SignatureError, verifySubmissionSignature } from '../../src/exchange/dmp/xades.ts';
import { all, children, esc, first, ns, slotValues } from '../../src/exchange/dmp/xml.ts';

export interface DmpEntry {
  entryUUID: string;
  uniqueId: string;
  patientId: string;
  status: string;
  mimeType: string;
  content: Buffer;
  classCode: string;
  typeCode: string;
  formatCode: string;
  creationTime: string;
  title: string;
  referenceIds: string[];
  eventCodes: string[];
}

export interface DmpRequestLog {
  path: string;
  action: string;
  /** What the double answered: 'ok', or the fault's or first RegistryError's code. */
  outcome: string;
  mode?: string;
  /** The VIHF's subject (professional) id. */
  subject?: string;
}

export const repositoryUniqueId = '1.2.250.1.213.1.1.9.99';

const wsseNs = { prefix: 'wsse', uri: ns.wsse };
const insPatientId = /^((?:[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6})[0-9]{2})\^\^\^&([0-9.]+)&ISO\^NH$/;

class Fault extends Error {
  constructor(readonly code: 'soap:Sender' | 'soap:Receiver', readonly subcode: string, reason: string) {
    super(reason);
  }
}

export class DmpDouble {
  readonly entries: DmpEntry[] = [];
  readonly requests: DmpRequestLog[] = [];
  /** The patients' DMPs by INS (15 characters); a patient not listed has none. */
  readonly patients = new Map<string, { dmp: 'active' | 'closed'; opposition?: boolean }>();
  /** The next calls (to `path` only, when given) answered with this fault (count them down), before any check. */
  failNext: { path?: string; count: number; fault: { code: 'soap:Sender' | 'soap:Receiver'; subcode: string; reason: string } } | undefined;
  /** The next call to `path` answered with these bytes as they are, before any check (a malformed answer). */
  rawNext: { path: string; status: number; contentType: string; body: string } | undefined;
  /** Hold every answer this long (a DMP slower than the client's timeout). */
  delayMs = 0;
  private server: https.Server | undefined;
  private readonly trusted: X509Certificate[];
  port = 0;

  constructor(private readonly tls: { cert: string; key: string; ca: string }) {
    this.trusted = [new X509Certificate(tls.ca)];
  }

  get endpoint(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = https.createServer({ cert: this.tls.cert, key: this.tls.key, ca: this.tls.ca, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const peer = (req.socket as TLSSocket).getPeerX509Certificate();
        this.handle(req.url ?? '/', req.headers['content-type'], Buffer.concat(chunks), peer).then(async (answer) => {
          if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
          if (res.destroyed) return;
          res.writeHead(answer.status, { 'content-type': answer.contentType });
          res.end(answer.body);
        }, (e: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(String(e));
        });
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  private async handle(path: string, contentType: string | undefined, body: Buffer, peer: X509Certificate | undefined): Promise<{ status: number; contentType: string; body: Buffer | string }> {
    const log: DmpRequestLog = { path, action: '', outcome: 'ok' };
    this.requests.push(log);
    const fault = (f: Fault) => {
      log.outcome = f.subcode;
      return { status: f.code === 'soap:Sender' ? 400 : 500, contentType: 'application/soap+xml; charset=UTF-8', body: faultEnvelope(f.code, f.subcode, f.message, f.subcode.startsWith('wsse:') ? wsseNs : undefined) };
    };
    if (this.rawNext && this.rawNext.path === path) {
      const raw = this.rawNext;
      this.rawNext = undefined;
      log.outcome = 'raw';
      return { status: raw.status, contentType: raw.contentType, body: raw.body };
    }
    try {
      if (this.failNext && this.failNext.count > 0 && (this.failNext.path === undefined || this.failNext.path === path)) {
        this.failNext.count--;
        throw new Fault(this.failNext.fault.code, this.failNext.fault.subcode, this.failNext.fault.reason);
      }
      let message: ReadMessage;
      try {
        message = await readSoap(contentType, body);
      } catch (e) {
        throw new Fault('soap:Sender', 'soap:MustUnderstand', e instanceof SoapError ? e.message : String(e));
      }
      const action = first(message.envelope, ns.wsa, 'Action')?.textContent?.trim() ?? '';
      log.action = action;
      const vihf = this.checkVihf(message, peer);
      log.mode = vihf.attributes.get(vihfAttributes.mode);
      log.subject = vihf.subjectNameId;
      const route = `${path} ${action}`;
      let answer: { xml: string; attachments?: Array<{ contentId: string; contentType: string; content: Buffer }> };
      if (route === `${dmpPaths.patients} ${dmpActions.existenceTest}`) answer = { xml: this.existenceTest(message, vihf) };
      else if (route === `${dmpPaths.repository} ${dmpActions.provideAndRegister}`) answer = { xml: this.provideAndRegister(message, vihf) };
      else if (route === `${dmpPaths.registry} ${dmpActions.updateDocumentSet}`) answer = { xml: this.updateDocumentSet(message, vihf) };
      else if (route === `${dmpPaths.registry} ${dmpActions.registryStoredQuery}`) answer = { xml: this.findDocuments(message, vihf) };
      else if (route === `${dmpPaths.repository} ${dmpActions.retrieveDocumentSet}`) answer = this.retrieve(message, vihf);
      else throw new Fault('soap:Sender', 'wsa:ActionNotSupported', `${action} is not served at ${path}`);
      const errorCode = /errorCode="([^"]+)"/.exec(answer.xml)?.[1];
      if (errorCode) log.outcome = errorCode;
      const envelope = `<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="${ns.soap}" xmlns:wsa="${ns.wsa}"><soap:Header><wsa:Action>${esc(action)}Response</wsa:Action></soap:Header><soap:Body>${answer.xml}</soap:Body></soap:Envelope>`;
      if (answer.attachments) {
        const packed = await mtom(envelope, `${action}Response`, answer.attachments);
        return { status: 200, contentType: packed.contentType, body: packed.body };
      }
      return { status: 200, contentType: 'application/soap+xml; charset=UTF-8', body: envelope };
    } catch (e) {
      if (e instanceof Fault) return fault(e);
      return fault(new Fault('soap:Receiver', 'InternalError', (e as Error).stack ?? String(e)));
    }
  }

  /** The VIHF: signed by the TLS client's own certificate (issued by the trusted authority), complete, valid now. */
  private checkVihf(message: ReadMessage, peer: X509Certificate | undefined): VerifiedVihf {
    const security = first(message.envelope, ns.wsse, 'Security');
    const assertion = security && first(security, ns.saml, 'Assertion');
    if (!assertion) throw new Fault('soap:Sender', 'wsse:InvalidSecurity', 'no VIHF assertion in wsse:Security');
    // The assertion's own text, as signed: cut from the message (serializing it again could change its bytes).
    const start = message.xml.indexOf('<saml2:Assertion');
    const end = message.xml.indexOf('</saml2:Assertion>');
    if (start < 0 || end < 0) throw new Fault('soap:Sender', 'wsse:InvalidSecurityToken', 'the assertion is not written as saml2:Assertion');
    const text = message.xml.slice(start, end + '</saml2:Assertion>'.length);
    let vihf: VerifiedVihf;
    try {
      vihf = verifyVihf(text, this.trusted);
    } catch (e) {
      if (e instanceof VihfError) throw new Fault('soap:Sender', /signature|signed|certificate/.test(e.message) ? 'wsse:FailedCheck' : 'wsse:InvalidSecurityToken', e.message);
      throw new Fault('soap:Sender', 'wsse:InvalidSecurityToken', (e as Error).message);
    }
    if (!peer || peer.fingerprint256 !== vihf.certificate.fingerprint256) throw new Fault('soap:Sender', 'wsse:FailedAuthentication', 'the VIHF is not signed with the TLS client\'s certificate');
    return vihf;
  }

  /** The patientId, checked: CX with the NH type, an INS authority's OID, a valid key. */
  private patientOf(patientId: string, vihf: VerifiedVihf): { ins: string; patientId: string } {
    const m = insPatientId.exec(patientId);
    if (!m) throw new RegistryFailure('XDSRegistryMetadataError', `patientId ${patientId} is not INS^^^&OID&ISO^NH`);
    try {
      parseINS(m[1]!, m[2]!);
    } catch (e) {
      throw new RegistryFailure('XDSRegistryMetadataError', `patientId: ${e instanceof INSError ? e.message : String(e)}`);
    }
    if (vihf.attributes.get(vihfAttributes.resourceId) !== patientId) throw new Fault('soap:Sender', 'wsse:InvalidSecurityToken', 'the VIHF names another patient than the request');
    return { ins: m[1]!, patientId };
  }

  private existenceTest(message: ReadMessage, vihf: VerifiedVihf): string {
    const value = first(bodyOf(message), ns.hl7, 'value');
    const patientId = `${value?.getAttribute('extension') ?? ''}^^^&${value?.getAttribute('root') ?? ''}&ISO^NH`;
    try {
      const { ins } = this.patientOf(patientId, vihf);
      const p = this.patients.get(ins);
      return `<hl7:PRPA_IN201306UV02 xmlns:hl7="${ns.hl7}"><hl7:acknowledgement><hl7:typeCode code="AA"/></hl7:acknowledgement>`
        + `<hl7:dmpStatus code="${p?.dmp ?? 'absent'}"/><hl7:oppositionProfessionals value="${p?.opposition === true}"/></hl7:PRPA_IN201306UV02>`;
    } catch (e) {
      if (e instanceof RegistryFailure) throw new Fault('soap:Sender', 'hl7:AE', e.message);
      throw e;
    }
  }

  private provideAndRegister(message: ReadMessage, vihf: VerifiedVihf): string {
    if (!message.mtom) throw new Fault('soap:Sender', 'soap:Sender', 'ITI-41 is MTOM/XOP only');
    try {
      const request = first(bodyOf(message), ns.xdsb, 'ProvideAndRegisterDocumentSetRequest');
      if (!request) throw new RegistryFailure('XDSRegistryMetadataError', 'no ProvideAndRegisterDocumentSetRequest');
      const list = first(request, ns.rim, 'RegistryObjectList');
      if (!list) throw new RegistryFailure('XDSRegistryMetadataError', 'no RegistryObjectList');
      const packages = children(list, ns.rim, 'RegistryPackage');
      if (packages.length !== 1) throw new RegistryFailure('XDSRegistryMetadataError', 'one submission set (RegistryPackage) a submission');
      const ss = packages[0]!;
      const ssId = ss.getAttribute('id') ?? '';
      if (!children(list, ns.rim, 'Classification').some((c) => c.getAttribute('classifiedObject') === ssId && c.getAttribute('classificationNode') === xds.submissionSetNode)) {
        throw new RegistryFailure('XDSRegistryMetadataError', 'the RegistryPackage is not classified as a submission set');
      }
      if (slotValues(ss, 'submissionTime').length !== 1) throw new RegistryFailure('XDSRegistryMetadataError', 'submissionTime is required');
      for (const scheme of [xds.ss.uniqueId, xds.ss.sourceId, xds.ss.patientId]) externalId(ss, scheme, 'submission set');
      classified(ss, xds.ss.contentTypeCode, 'submission set contentTypeCode');
      authorOf(ss, xds.ss.author, 'submission set');
      const { patientId } = this.patientOf(externalId(ss, xds.ss.patientId, 'submission set'), vihf);
      const ins = insPatientId.exec(patientId)![1]!;
      const dmp = this.patients.get(ins);
      if (!dmp || dmp.dmp !== 'active') throw new RegistryFailure('XDSUnknownPatientId', 'the patient has no open DMP');

      const documents = new Map(children(request, ns.xdsb, 'Document').map((d) => [d.getAttribute('id') ?? '', d]));
      const entries: DmpEntry[] = [];
      let signature: { entryUUID: string; content: Buffer } | undefined;
      for (const eo of children(list, ns.rim, 'ExtrinsicObject')) {
        const id = eo.getAttribute('id') ?? '';
        if (eo.getAttribute('objectType') !== xds.documentEntryType) throw new RegistryFailure('XDSRegistryMetadataError', `${id}: objectType is not a stable DocumentEntry`);
        for (const name of ['creationTime', 'languageCode', 'sourcePatientId']) if (slotValues(eo, name).length !== 1) throw new RegistryFailure('XDSRegistryMetadataError', `${id}: slot ${name} is required`);
        if (!/^[0-9]{8,14}$/.test(slotValues(eo, 'creationTime')[0]!)) throw new RegistryFailure('XDSRegistryMetadataError', `${id}: creationTime is not a DTM`);
        const classCode = classified(eo, xds.de.classCode, 'classCode');
        const typeCode = classified(eo, xds.de.typeCode, 'typeCode');
        const formatCode = classified(eo, xds.de.formatCode, 'formatCode');
        for (const [scheme, what] of [[xds.de.confidentialityCode, 'confidentialityCode'], [xds.de.healthcareFacilityTypeCode, 'healthcareFacilityTypeCode'], [xds.de.practiceSettingCode, 'practiceSettingCode']] as const) classified(eo, scheme, what);
        authorOf(eo, xds.de.author, id);
        const uniqueId = externalId(eo, xds.de.uniqueId, id);
        if (externalId(eo, xds.de.patientId, id) !== patientId) throw new RegistryFailure('XDSPatientIdDoesNotMatch', `${id}: its patientId is not the submission set's`);
        const mimeType = eo.getAttribute('mimeType') ?? '';
        const kind = kindOf(classCode, typeCode, formatCode, mimeType, id);
        const eventCodes = children(eo, ns.rim, 'Classification').filter((c) => c.getAttribute('classificationScheme') === xds.de.eventCodeList).map((c) => c.getAttribute('nodeRepresentation') ?? '');
        const referenceIds = slotValues(eo, xds.referenceIdList);
        if (kind === 'KOS') {
          const study = referenceIds.find((r) => r.endsWith(`^${xds.studyInstanceUID}`));
          if (!study || !/^[0-9.]+\^\^\^&[0-9.]+&ISO\^/.test(study)) throw new RegistryFailure('XDSRegistryMetadataError', `${id}: a KOS names its study in referenceIdList (UID^^^&authority&ISO^${xds.studyInstanceUID})`);
          if (eventCodes.length === 0) throw new RegistryFailure('XDSRegistryMetadataError', `${id}: a KOS has its modality in eventCodeList`);
        }
        for (const r of referenceIds) if (!/^[^^]+\^\^\^&[0-9.]+&ISO\^urn:ihe:iti:xds:20[0-9]{2}:[A-Za-z]+$/.test(r)) throw new RegistryFailure('XDSRegistryMetadataError', `${id}: referenceIdList value ${r} is not a CXi with an ISO authority`);
        const part = documents.get(id);
        if (!part) throw new RegistryFailure('XDSMissingDocument', `${id}: no Document for this DocumentEntry`);
        documents.delete(id);
        const content = includedBytes(message, part);
        if (!content) throw new RegistryFailure('XDSMissingDocument', `${id}: its xop:Include names no part of the package`);
        const hash = slotValues(eo, 'hash')[0];
        if (hash !== undefined && hash.toLowerCase() !== createHash('sha1').update(content).digest('hex')) throw new RegistryFailure('XDSNonIdenticalHash', `${id}: hash does not match the document`);
        const size = slotValues(eo, 'size')[0];
        if (size !== undefined && Number(size) !== content.length) throw new RegistryFailure('XDSNonIdenticalSize', `${id}: size does not match the document`);
        if (this.entries.some((e) => e.uniqueId === uniqueId) || entries.some((e) => e.uniqueId === uniqueId)) throw new RegistryFailure('XDSDuplicateUniqueIdInRegistry', `${uniqueId} is already registered`);
        const entry: DmpEntry = {
          entryUUID: id.startsWith('urn:uuid:') ? id : `urn:uuid:${randomUUID()}`, uniqueId, patientId, status: xds.approved, mimeType, content, classCode, typeCode, formatCode,
          creationTime: slotValues(eo, 'creationTime')[0]!, title: first(eo, ns.rim, 'LocalizedString')?.getAttribute('value') ?? '', referenceIds, eventCodes,
        };
        if (kind === 'signature') signature = { entryUUID: id, content };
        entries.push(entry);
      }
      if (documents.size > 0) throw new RegistryFailure('XDSMissingDocumentMetadata', `Document ${[...documents.keys()][0]} has no DocumentEntry`);
      const associations = children(list, ns.rim, 'Association');
      for (const e of entries) {
        if (!associations.some((a) => a.getAttribute('associationType') === xds.hasMember && a.getAttribute('sourceObject') === ssId && a.getAttribute('targetObject') === e.entryUUID)) {
          throw new RegistryFailure('XDSRegistryMetadataError', `${e.entryUUID} is not a member of the submission set`);
        }
      }
      // The submission is signed: one signature document, associated to the submission set, over every other document.
      if (!signature) throw new RegistryFailure('XDSRegistryMetadataError', 'the submission set is not signed (no signature document)');
      if (!associations.some((a) => a.getAttribute('associationType') === xds.signs && a.getAttribute('sourceObject') === signature!.entryUUID && a.getAttribute('targetObject') === ssId)) {
        throw new RegistryFailure('XDSRegistryMetadataError', 'the signature document does not sign the submission set');
      }
      let signed: ReturnType<typeof verifySubmissionSignature>;
      try {
        signed = verifySubmissionSignature(signature.content.toString('utf8'), this.trusted);
      } catch (e) {
        throw new RegistryFailure('XDSRegistryMetadataError', `signature: ${e instanceof SignatureError ? e.message : String(e)}`);
      }
      for (const e of entries) {
        if (e.entryUUID === signature.entryUUID) continue;
        if (signed.references.get(e.uniqueId) !== sha256Base64(e.content)) throw new RegistryFailure('XDSRegistryMetadataError', `signature: the Manifest does not sign document ${e.uniqueId} as sent`);
      }
      // RPLC: the replaced entry exists, is approved, is the same patient's; it becomes deprecated.
      const replaced: DmpEntry[] = [];
      for (const a of associations.filter((x) => x.getAttribute('associationType') === xds.rplc)) {
        const target = this.entries.find((e) => e.entryUUID === a.getAttribute('targetObject'));
        if (!target) throw new RegistryFailure('UnresolvedReferenceException', `RPLC names ${a.getAttribute('targetObject')}, which is not in the registry`);
        if (target.patientId !== patientId) throw new RegistryFailure('XDSPatientIdDoesNotMatch', 'RPLC replaces another patient\'s document');
        if (target.status !== xds.approved) throw new RegistryFailure('XDSRegistryMetadataError', 'RPLC replaces an entry that is not approved');
        if (!entries.some((e) => e.entryUUID === a.getAttribute('sourceObject'))) throw new RegistryFailure('XDSRegistryMetadataError', 'RPLC from a document not in the submission');
        replaced.push(target);
      }
      for (const t of replaced) t.status = xds.deprecated;
      this.entries.push(...entries);
      return registryResponse([]);
    } catch (e) {
      if (e instanceof RegistryFailure) return registryResponse([{ errorCode: e.code, codeContext: e.message }]);
      throw e;
    }
  }

  private updateDocumentSet(message: ReadMessage, vihf: VerifiedVihf): string {
    try {
      const list = first(bodyOf(message), ns.rim, 'RegistryObjectList');
      const ss = list && children(list, ns.rim, 'RegistryPackage')[0];
      if (!list || !ss) throw new RegistryFailure('XDSRegistryMetadataError', 'no submission set');
      const { patientId } = this.patientOf(externalId(ss, xds.ss.patientId, 'submission set'), vihf);
      const updates = children(list, ns.rim, 'Association').filter((a) => a.getAttribute('associationType') === xds.updateAvailabilityStatus);
      if (updates.length === 0) throw new RegistryFailure('XDSMetadataUpdateError', 'no UpdateAvailabilityStatus association');
      for (const a of updates) {
        const target = this.entries.find((e) => e.entryUUID === a.getAttribute('targetObject'));
        if (!target) throw new RegistryFailure('UnresolvedReferenceException', `${a.getAttribute('targetObject')} is not in the registry`);
        if (target.patientId !== patientId) throw new RegistryFailure('XDSPatientIdDoesNotMatch', 'the entry is another patient\'s');
        const from = slotValues(a, 'OriginalStatus')[0];
        const to = slotValues(a, 'NewStatus')[0] ?? '';
        if (from !== target.status) throw new RegistryFailure('XDSMetadataUpdateError', `the entry's status is ${target.status}, not ${from}`);
        if (![xds.approved, xds.deprecated, xds.deleted].includes(to as never)) throw new RegistryFailure('XDSMetadataUpdateError', `${to} is not a status this registry knows`);
        target.status = to;
      }
      return registryResponse([]);
    } catch (e) {
      if (e instanceof RegistryFailure) return registryResponse([{ errorCode: e.code, codeContext: e.message }]);
      throw e;
    }
  }

  private findDocuments(message: ReadMessage, vihf: VerifiedVihf): string {
    const tag = 'query:AdhocQueryResponse';
    const withQueryNs = (xml: string) => xml.replace(`<${tag} `, `<${tag} xmlns:query="${ns.query}" `);
    try {
      const query = first(bodyOf(message), ns.rim, 'AdhocQuery');
      if (!query || query.getAttribute('id') !== xds.findDocuments) throw new RegistryFailure('XDSUnknownStoredQuery', 'only FindDocuments is served');
      const values = (name: string) => slotValues(query, name).flatMap(listValues);
      const patient = values('$XDSDocumentEntryPatientId')[0];
      if (!patient) throw new RegistryFailure('XDSStoredQueryParamNumber', '$XDSDocumentEntryPatientId is required');
      const { patientId } = this.patientOf(patient, vihf);
      const statuses = values('$XDSDocumentEntryStatus');
      if (statuses.length === 0) throw new RegistryFailure('XDSStoredQueryParamNumber', '$XDSDocumentEntryStatus is required');
      const codes = (name: string) => values(name).map((v) => v.split('^')[0]!);
      const [classCodes, typeCodes, formatCodes, eventCodes] = ['$XDSDocumentEntryClassCode', '$XDSDocumentEntryTypeCode', '$XDSDocumentEntryFormatCode', '$XDSDocumentEntryEventCodeList'].map(codes) as [string[], string[], string[], string[]];
      const from = slotValues(query, '$XDSDocumentEntryCreationTimeFrom')[0];
      const to = slotValues(query, '$XDSDocumentEntryCreationTimeTo')[0];
      const found = this.entries.filter((e) => e.patientId === patientId && statuses.includes(e.status)
        && (classCodes.length === 0 || classCodes.includes(e.classCode)) && (typeCodes.length === 0 || typeCodes.includes(e.typeCode))
        && (formatCodes.length === 0 || formatCodes.includes(e.formatCode)) && (eventCodes.length === 0 || eventCodes.some((c) => e.eventCodes.includes(c)))
        && (from === undefined || e.creationTime >= from) && (to === undefined || e.creationTime < to));
      const objects = found.map((e) => `<rim:ExtrinsicObject id="${esc(e.entryUUID)}" mimeType="${esc(e.mimeType)}" objectType="${xds.documentEntryType}" status="${esc(e.status)}">`
        + `<rim:Slot name="creationTime"><rim:ValueList><rim:Value>${e.creationTime}</rim:Value></rim:ValueList></rim:Slot>`
        + `<rim:Slot name="repositoryUniqueId"><rim:ValueList><rim:Value>${repositoryUniqueId}</rim:Value></rim:ValueList></rim:Slot>`
        + (e.referenceIds.length ? `<rim:Slot name="${xds.referenceIdList}"><rim:ValueList>${e.referenceIds.map((r) => `<rim:Value>${esc(r)}</rim:Value>`).join('')}</rim:ValueList></rim:Slot>` : '')
        + `<rim:Name><rim:LocalizedString value="${esc(e.title)}"/></rim:Name>`
        + [[xds.de.classCode, e.classCode], [xds.de.typeCode, e.typeCode], [xds.de.formatCode, e.formatCode]].map(([s, c]) =>
          `<rim:Classification classificationScheme="${s}" classifiedObject="${esc(e.entryUUID)}" nodeRepresentation="${esc(c!)}"/>`).join('')
        + `<rim:ExternalIdentifier identificationScheme="${xds.de.patientId}" registryObject="${esc(e.entryUUID)}" value="${esc(e.patientId)}"/>`
        + `<rim:ExternalIdentifier identificationScheme="${xds.de.uniqueId}" registryObject="${esc(e.entryUUID)}" value="${esc(e.uniqueId)}"/>`
        + '</rim:ExtrinsicObject>').join('');
      return withQueryNs(registryResponse([], tag, `<rim:RegistryObjectList>${objects}</rim:RegistryObjectList>`));
    } catch (e) {
      if (e instanceof RegistryFailure) return withQueryNs(registryResponse([{ errorCode: e.code, codeContext: e.message }], tag));
      throw e;
    }
  }

  private retrieve(message: ReadMessage, vihf: VerifiedVihf): { xml: string; attachments: Array<{ contentId: string; contentType: string; content: Buffer }> } {
    if (!message.mtom) throw new Fault('soap:Sender', 'soap:Sender', 'ITI-43 is MTOM/XOP only');
    const patient = vihf.attributes.get(vihfAttributes.resourceId);
    const errors: RegistryError[] = [];
    const attachments: Array<{ contentId: string; contentType: string; content: Buffer }> = [];
    let responses = '';
    for (const r of all(bodyOf(message), ns.xdsb, 'DocumentRequest')) {
      const repository = first(r, ns.xdsb, 'RepositoryUniqueId')?.textContent ?? '';
      const uniqueId = first(r, ns.xdsb, 'DocumentUniqueId')?.textContent ?? '';
      const entry = this.entries.find((e) => e.uniqueId === uniqueId && e.patientId === patient);
      if (repository !== repositoryUniqueId) errors.push({ errorCode: 'XDSUnknownRepositoryId', codeContext: `repository ${repository} is not this one`, location: uniqueId });
      else if (!entry) errors.push({ errorCode: 'XDSDocumentUniqueIdError', codeContext: `no document ${uniqueId} for this patient`, location: uniqueId });
      else {
        const contentId = `${randomUUID()}@dmp-double`;
        attachments.push({ contentId, contentType: entry.mimeType, content: entry.content });
        responses += `<xdsb:DocumentResponse><xdsb:RepositoryUniqueId>${repositoryUniqueId}</xdsb:RepositoryUniqueId><xdsb:DocumentUniqueId>${esc(uniqueId)}</xdsb:DocumentUniqueId>`
          + `<xdsb:mimeType>${esc(entry.mimeType)}</xdsb:mimeType><xdsb:Document><xop:Include xmlns:xop="${ns.xop}" href="cid:${contentId}"/></xdsb:Document></xdsb:DocumentResponse>`;
      }
    }
    const status = errors.length === 0 ? xds.success : attachments.length > 0 ? 'urn:ihe:iti:2007:ResponseStatusType:PartialSuccess' : xds.failure;
    const registry = registryResponse(errors).replace(/status="[^"]+"/, `status="${status}"`);
    return { xml: `<xdsb:RetrieveDocumentSetResponse xmlns:xdsb="${ns.xdsb}">${registry}${responses}</xdsb:RetrieveDocumentSetResponse>`, attachments };
  }
}

class RegistryFailure extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

function externalId(node: Element, scheme: string, what: string): string {
  const found = children(node, ns.rim, 'ExternalIdentifier').filter((x) => x.getAttribute('identificationScheme') === scheme);
  if (found.length !== 1 || !found[0]!.getAttribute('value')) throw new RegistryFailure('XDSRegistryMetadataError', `${what}: one ExternalIdentifier ${scheme} is required`);
  return found[0]!.getAttribute('value')!;
}

/** The code of the one classification of `scheme`, which also names its coding scheme. */
function classified(node: Element, scheme: string, what: string): string {
  const found = children(node, ns.rim, 'Classification').filter((c) => c.getAttribute('classificationScheme') === scheme);
  if (found.length !== 1) throw new RegistryFailure('XDSRegistryMetadataError', `${node.getAttribute('id')}: one ${what} is required`);
  const c = found[0]!;
  if (!c.getAttribute('nodeRepresentation') || slotValues(c, 'codingScheme').length !== 1) throw new RegistryFailure('XDSRegistryMetadataError', `${node.getAttribute('id')}: ${what} without its code or codingScheme`);
  return c.getAttribute('nodeRepresentation')!;
}

function authorOf(node: Element, scheme: string, what: string): void {
  const author = children(node, ns.rim, 'Classification').find((c) => c.getAttribute('classificationScheme') === scheme);
  if (!author || slotValues(author, 'authorInstitution').length === 0 || slotValues(author, 'authorPerson').length === 0) {
    throw new RegistryFailure('XDSRegistryMetadataError', `${what}: an author with authorPerson and authorInstitution is required`);
  }
}

/** Which document the codes say this is; codes that fit no kind are a metadata error. */
function kindOf(classCode: string, typeCode: string, formatCode: string, mimeType: string, id: string): 'CR-IMG' | 'KOS' | 'signature' {
  const cr = documentCodes['CR-IMG'];
  const kos = documentCodes.KOS;
  const sig = documentCodes.signature;
  if (classCode === cr.classCode.code && typeCode === cr.typeCode.code) {
    if (formatCode === cr.formatCode.code && mimeType === 'text/xml') return 'CR-IMG';
    if (formatCode === cr.pdfFormatCode.code && mimeType === 'application/pdf') return 'CR-IMG';
    throw new RegistryFailure('XDSRegistryMetadataError', `${id}: a CR-IMG's formatCode ${formatCode} does not fit its mimeType ${mimeType}`);
  }
  if (classCode === kos.classCode.code && typeCode === kos.typeCode.code) {
    if (formatCode !== kos.formatCode.code || mimeType !== 'application/dicom') throw new RegistryFailure('XDSRegistryMetadataError', `${id}: a KOS is ${kos.formatCode.code}, application/dicom`);
    return 'KOS';
  }
  if (classCode === sig.classCode.code && typeCode === sig.typeCode.code && formatCode === sig.formatCode.code && mimeType === 'text/xml') return 'signature';
  throw new RegistryFailure('XDSRegistryMetadataError', `${id}: classCode ${classCode} / typeCode ${typeCode} is no document this DMP takes from an imaging source`);
}

/** A stored query's value: ('a','b') or 'a' or a bare value. */
function listValues(v: string): string[] {
  const t = v.trim();
  const inner = t.startsWith('(') && t.endsWith(')') ? t.slice(1, -1) : t;
  return inner.split(/,(?=(?:[^']*'[^']*')*[^']*$)/).map((s) => s.trim().replace(/^'|'$/g, '').replace(/''/g, "'")).filter((s) => s !== '');
}
