/**
 * XDS.b metadata (ebRIM 3.0, IHE ITI TF-3 4.2) as the DMP reads it (CI-SIS "Volet Partage
 * de documents de santé"): the DocumentEntries, the SubmissionSet, their associations, the
 * ITI-57 status update, the ITI-18 FindDocuments query and the ITI-43 request. Pure: text in,
 * text out; the client sends, the double checks.
 */
import type { INS } from '../../patients/ins.ts';
import { insValue } from '../../patients/ins.ts';
import type { Coded, DmpAuthor, DmpDocument } from './document.ts';
import { dtm, esc, ns } from './xml.ts';

/** Identifiers of ITI TF-3 Table 4.2.5-1 and the association and status types. */
export const xds = {
  documentEntryType: 'urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1',
  submissionSetNode: 'urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd',
  de: {
    author: 'urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d',
    classCode: 'urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a',
    confidentialityCode: 'urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f',
    eventCodeList: 'urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4',
    formatCode: 'urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d',
    healthcareFacilityTypeCode: 'urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1',
    practiceSettingCode: 'urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead',
    typeCode: 'urn:uuid:f0306f51-975f-434e-a61c-c59651d33983',
    patientId: 'urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427',
    uniqueId: 'urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab',
  },
  ss: {
    author: 'urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d',
    contentTypeCode: 'urn:uuid:aa543740-bdda-424e-8c96-df4873be8500',
    patientId: 'urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446',
    sourceId: 'urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832',
    uniqueId: 'urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8',
  },
  findDocuments: 'urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d',
  hasMember: 'urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember',
  rplc: 'urn:ihe:iti:2007:AssociationType:RPLC',
  signs: 'urn:ihe:iti:2007:AssociationType:signs',
  updateAvailabilityStatus: 'urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus',
  approved: 'urn:oasis:names:tc:ebxml-regrep:StatusType:Approved',
  deprecated: 'urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated',
  /** CI-SIS: the status a document published by mistake (or withdrawn) is given. */
  deleted: 'urn:asip:ci-sis:2010:StatusType:Deleted',
  referenceIdList: 'urn:ihe:iti:xds:2013:referenceIdList',
  accession: 'urn:ihe:iti:xds:2013:accession',
  studyInstanceUID: 'urn:ihe:iti:xds:2016:studyInstanceUID',
  order: 'urn:ihe:iti:xds:2013:order',
  success: 'urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success',
  failure: 'urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure',
  errorSeverity: 'urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error',
} as const;

/** OIDs of the ANS terminologies the codes below come from (CI-SIS JDV). */
const schemes = {
  classCode: '1.2.250.1.213.1.1.4.1',
  typeCodeKos: '1.2.250.1.213.1.1.4.12',
  loinc: '2.16.840.1.113883.6.1',
  iheFormat: '1.3.6.1.4.1.19376.1.2.3',
  dicomUid: '1.2.840.10008.2.6.1',
  dicomDcm: '1.2.840.10008.2.16.4',
  confidentiality: '2.16.840.1.113883.5.25',
} as const;

/** classCode, typeCode and formatCode of each kind of document. */
export const documentCodes = {
  'CR-IMG': {
    classCode: { code: '10', scheme: schemes.classCode, display: 'Compte rendu' },
    typeCode: { code: '18748-4', scheme: schemes.loinc, display: "CR d'imagerie médicale" },
    formatCode: { code: 'urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013', scheme: schemes.iheFormat, display: "CR d'imagerie médicale" },
    pdfFormatCode: { code: 'urn:ihe:iti:xds-sd:pdf:2008', scheme: schemes.iheFormat, display: 'Document à corps non structuré en Pdf/A-1' },
  },
  KOS: {
    classCode: { code: '31', scheme: schemes.classCode, display: 'Imagerie' },
    typeCode: { code: 'IMG-KOS', scheme: schemes.typeCodeKos, display: "Référence d'objets d'un examen d'imagerie" },
    formatCode: { code: '1.2.840.10008.5.1.4.1.1.88.59', scheme: schemes.dicomUid, display: 'Key Object Selection Document' },
  },
  /** The XAdES signature of the submission set (IHE DSG). */
  signature: {
    classCode: { code: 'urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1', scheme: 'URN', display: 'Digital Signature' },
    typeCode: { code: 'E1762', scheme: 'ASTM', display: 'Full Document' },
    formatCode: { code: 'http://www.w3.org/2000/09/xmldsig#', scheme: 'URN', display: 'Default Signature Style' },
  },
} as const;

export const modalityScheme = schemes.dicomDcm;

export function formatCodeOf(doc: Pick<DmpDocument, 'kind' | 'mimeType'>): Coded {
  if (doc.kind === 'KOS') return documentCodes.KOS.formatCode;
  return doc.mimeType === 'application/pdf' ? documentCodes['CR-IMG'].pdfFormatCode : documentCodes['CR-IMG'].formatCode;
}

/** The patient's INS as the DMP's patientId: `INS^^^&OID&ISO^NH` (CX, national health number). */
export function dmpPatientId(ins: INS): string {
  return `${insValue(ins)}^^^&${ins.oid}&ISO^NH`;
}

/** The organisation publishing: its FINESS and the codes of its activity. */
export interface Facility {
  name: string;
  finess: string;
  /** healthcareFacilityTypeCode (TRE_R02 SecteurActivite). */
  facilityType: Coded;
  /** practiceSettingCode (TRE_A01 cadre d'exercice). */
  practiceSetting: Coded;
}

export interface EntryToSend {
  entryUUID: string;
  /** Content-ID of its MIME part (without angle brackets). */
  contentId: string;
  uniqueId: string;
  mimeType: string;
  title: string;
  creationTime: Date;
  serviceStartTime?: Date;
  classCode: Coded;
  typeCode: Coded;
  formatCode: Coded;
  confidentiality: 'N' | 'R' | 'V';
  eventCodes: readonly Coded[];
  referenceIds: readonly string[];
  author: DmpAuthor;
  /** The site's own patient identifier (sourcePatientId). */
  sourcePatientId: string;
  hash: string;
  size: number;
  /** XDM (ITI-32): the document's file name in its submission set folder (the URI slot). */
  uri?: string;
}

export interface SubmissionToSend {
  entryUUID: string;
  uniqueId: string;
  /** OID of the publishing system (sourceId). */
  sourceId: string;
  submissionTime: Date;
  contentType: Coded;
  patientId: string;
  facility: Facility;
  author: DmpAuthor;
  entries: readonly EntryToSend[];
  /** entryUUID of the signature document among `entries`: it signs the submission set. */
  signatureEntryUUID: string;
  /** The entry this submission replaces: its new document (entryUUID) and the previous DMP entry. */
  replaces?: { entryUUID: string; previousEntryUUID: string };
  /** XDM over mail: the recipients (XON/XCN with their mail address), the intendedRecipient slot. */
  intendedRecipients?: readonly string[];
}

/** CX with an ISO assigning authority, as referenceIdList wants it. */
export function referenceId(value: string, authorityOid: string, type: string): string {
  return `${value}^^^&${authorityOid}&ISO^${type}`;
}

const slot = (name: string, values: readonly string[]) =>
  `<rim:Slot name="${esc(name)}"><rim:ValueList>${values.map((v) => `<rim:Value>${esc(v)}</rim:Value>`).join('')}</rim:ValueList></rim:Slot>`;
const localized = (tag: 'Name' | 'Description', value: string) => `<rim:${tag}><rim:LocalizedString value="${esc(value)}"/></rim:${tag}>`;

let idCounter = 0;
const nextId = (prefix: string) => `${prefix}${++idCounter}`;

function classification(scheme: string, object: string, c: Coded): string {
  return `<rim:Classification id="${nextId('cl')}" classificationScheme="${scheme}" classifiedObject="${esc(object)}" nodeRepresentation="${esc(c.code)}">`
    + slot('codingScheme', [c.scheme]) + localized('Name', c.display) + '</rim:Classification>';
}

/** XCN of a person (id^family^given^^^^^^&OID&ISO) with the RPPS OID for a professional. */
function xcn(a: DmpAuthor): string {
  return `${a.id}^${a.family}^${a.given ?? ''}^^^^^^&1.2.250.1.71.4.2.1&ISO`;
}

/** XON of an organisation by its FINESS. */
function xon(f: Facility): string {
  return `${f.name}^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1${f.finess}`;
}

function authorClassification(scheme: string, object: string, a: DmpAuthor, f: Facility): string {
  return `<rim:Classification id="${nextId('au')}" classificationScheme="${scheme}" classifiedObject="${esc(object)}" nodeRepresentation="">`
    + slot('authorPerson', [xcn(a)]) + slot('authorInstitution', [xon(f)])
    + (a.role ? slot('authorRole', [`${a.role.code}^${a.role.display}^${a.role.scheme}`]) : '')
    + (a.specialty ? slot('authorSpecialty', [`${a.specialty.code}^${a.specialty.display}^${a.specialty.scheme}`]) : '')
    + '</rim:Classification>';
}

function externalIdentifier(scheme: string, object: string, value: string, name: string): string {
  return `<rim:ExternalIdentifier id="${nextId('ei')}" identificationScheme="${scheme}" registryObject="${esc(object)}" value="${esc(value)}">${localized('Name', name)}</rim:ExternalIdentifier>`;
}

function documentEntry(e: EntryToSend, s: SubmissionToSend): string {
  const id = e.entryUUID;
  return `<rim:ExtrinsicObject id="${esc(id)}" mimeType="${esc(e.mimeType)}" objectType="${xds.documentEntryType}" status="${xds.approved}">`
    + slot('creationTime', [dtm(e.creationTime)])
    + slot('languageCode', ['fr-FR'])
    + (e.serviceStartTime ? slot('serviceStartTime', [dtm(e.serviceStartTime)]) : '')
    + slot('sourcePatientId', [e.sourcePatientId])
    + slot('hash', [e.hash])
    + slot('size', [String(e.size)])
    + (e.referenceIds.length > 0 ? slot(xds.referenceIdList, e.referenceIds) : '')
    + (e.uri !== undefined ? slot('URI', [e.uri]) : '')
    + localized('Name', e.title)
    + authorClassification(xds.de.author, id, e.author, s.facility)
    + classification(xds.de.classCode, id, e.classCode)
    + classification(xds.de.confidentialityCode, id, { code: e.confidentiality, scheme: schemes.confidentiality, display: e.confidentiality === 'N' ? 'Normal' : e.confidentiality === 'R' ? 'Restricted' : 'Very restricted' })
    + e.eventCodes.map((c) => classification(xds.de.eventCodeList, id, c)).join('')
    + classification(xds.de.formatCode, id, e.formatCode)
    + classification(xds.de.healthcareFacilityTypeCode, id, s.facility.facilityType)
    + classification(xds.de.practiceSettingCode, id, s.facility.practiceSetting)
    + classification(xds.de.typeCode, id, e.typeCode)
    + externalIdentifier(xds.de.patientId, id, s.patientId, 'XDSDocumentEntry.patientId')
    + externalIdentifier(xds.de.uniqueId, id, e.uniqueId, 'XDSDocumentEntry.uniqueId')
    + '</rim:ExtrinsicObject>';
}

function association(type: string, source: string, target: string, slots = ''): string {
  return `<rim:Association id="${nextId('as')}" associationType="${type}" sourceObject="${esc(source)}" targetObject="${esc(target)}">${slots}</rim:Association>`;
}

function submissionSet(s: SubmissionToSend): string {
  const id = s.entryUUID;
  return `<rim:RegistryPackage id="${esc(id)}">`
    + slot('submissionTime', [dtm(s.submissionTime)])
    + (s.intendedRecipients && s.intendedRecipients.length > 0 ? slot('intendedRecipient', s.intendedRecipients) : '')
    + localized('Name', 'Publication Atrium')
    + authorClassification(xds.ss.author, id, s.author, s.facility)
    + classification(xds.ss.contentTypeCode, id, s.contentType)
    + externalIdentifier(xds.ss.uniqueId, id, s.uniqueId, 'XDSSubmissionSet.uniqueId')
    + externalIdentifier(xds.ss.sourceId, id, s.sourceId, 'XDSSubmissionSet.sourceId')
    + externalIdentifier(xds.ss.patientId, id, s.patientId, 'XDSSubmissionSet.patientId')
    + '</rim:RegistryPackage>'
    + `<rim:Classification id="${nextId('cl')}" classifiedObject="${esc(id)}" classificationNode="${xds.submissionSetNode}"/>`;
}

/** The body of ITI-41: metadata, then one xdsb:Document a document, its bytes by XOP reference. */
export function provideAndRegisterRequest(s: SubmissionToSend): string {
  const members = s.entries.map((e) => association(xds.hasMember, s.entryUUID, e.entryUUID, slot('SubmissionSetStatus', ['Original']))).join('');
  const signs = association(xds.signs, s.signatureEntryUUID, s.entryUUID);
  const rplc = s.replaces ? association(xds.rplc, s.replaces.entryUUID, s.replaces.previousEntryUUID) : '';
  return `<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="${ns.xdsb}" xmlns:lcm="${ns.lcm}" xmlns:rim="${ns.rim}" xmlns:xop="${ns.xop}">`
    + '<lcm:SubmitObjectsRequest><rim:RegistryObjectList>'
    + submissionSet(s) + s.entries.map((e) => documentEntry(e, s)).join('') + members + signs + rplc
    + '</rim:RegistryObjectList></lcm:SubmitObjectsRequest>'
    + s.entries.map((e) => `<xdsb:Document id="${esc(e.entryUUID)}"><xop:Include href="cid:${esc(e.contentId)}"/></xdsb:Document>`).join('')
    + '</xdsb:ProvideAndRegisterDocumentSetRequest>';
}

/**
 * The bare SubmitObjectsRequest of an XDM media (ITI-32, METADATA.XML): the submission set, its
 * documents (each with its URI) and their HasMember associations; no signature, no XOP.
 */
export function xdmSubmitObjectsRequest(s: Omit<SubmissionToSend, 'signatureEntryUUID' | 'replaces'>): string {
  const members = s.entries.map((e) => association(xds.hasMember, s.entryUUID, e.entryUUID, slot('SubmissionSetStatus', ['Original']))).join('');
  return `<?xml version="1.0" encoding="UTF-8"?><lcm:SubmitObjectsRequest xmlns:lcm="${ns.lcm}" xmlns:rim="${ns.rim}"><rim:RegistryObjectList>`
    + submissionSet({ ...s, signatureEntryUUID: '' }) + s.entries.map((e) => documentEntry(e, { ...s, signatureEntryUUID: '' })).join('') + members
    + '</rim:RegistryObjectList></lcm:SubmitObjectsRequest>';
}

/** ITI-57: a submission set that changes one entry's availability status (CI-SIS: to Deleted). */
export function updateStatusRequest(u: { entryUUID: string; uniqueId: string; sourceId: string; patientId: string; facility: Facility; author: DmpAuthor;
  submissionTime: Date; contentType: Coded; documentEntryUUID: string; from: string; to: string }): string {
  const s: SubmissionToSend = { ...u, entries: [], signatureEntryUUID: '' };
  return `<lcm:SubmitObjectsRequest xmlns:lcm="${ns.lcm}" xmlns:rim="${ns.rim}"><rim:RegistryObjectList>`
    + submissionSet(s)
    + association(xds.updateAvailabilityStatus, u.entryUUID, u.documentEntryUUID, slot('OriginalStatus', [u.from]) + slot('NewStatus', [u.to]))
    + '</rim:RegistryObjectList></lcm:SubmitObjectsRequest>';
}

/** ITI-18 FindDocuments filters (all optional but the patient). */
export interface FindDocumentsQuery {
  patientId: string;
  statuses?: readonly string[];
  classCodes?: readonly Coded[];
  typeCodes?: readonly Coded[];
  formatCodes?: readonly Coded[];
  eventCodes?: readonly Coded[];
  creationTimeFrom?: Date;
  creationTimeTo?: Date;
}

const quoted = (v: string) => `'${v.replace(/'/g, "''")}'`;
const codeList = (codes: readonly Coded[]) => `(${codes.map((c) => quoted(`${c.code}^^${c.scheme}`)).join(',')})`;

export function findDocumentsRequest(q: FindDocumentsQuery): string {
  const slots = [
    slot('$XDSDocumentEntryPatientId', [quoted(q.patientId)]),
    slot('$XDSDocumentEntryStatus', [`(${(q.statuses ?? [xds.approved]).map(quoted).join(',')})`]),
    ...(q.classCodes?.length ? [slot('$XDSDocumentEntryClassCode', [codeList(q.classCodes)])] : []),
    ...(q.typeCodes?.length ? [slot('$XDSDocumentEntryTypeCode', [codeList(q.typeCodes)])] : []),
    ...(q.formatCodes?.length ? [slot('$XDSDocumentEntryFormatCode', [codeList(q.formatCodes)])] : []),
    ...(q.eventCodes?.length ? [slot('$XDSDocumentEntryEventCodeList', [codeList(q.eventCodes)])] : []),
    ...(q.creationTimeFrom ? [slot('$XDSDocumentEntryCreationTimeFrom', [dtm(q.creationTimeFrom)])] : []),
    ...(q.creationTimeTo ? [slot('$XDSDocumentEntryCreationTimeTo', [dtm(q.creationTimeTo)])] : []),
  ];
  return `<query:AdhocQueryRequest xmlns:query="${ns.query}" xmlns:rim="${ns.rim}">`
    + '<query:ResponseOption returnComposedObjects="true" returnType="LeafClass"/>'
    + `<rim:AdhocQuery id="${xds.findDocuments}">${slots.join('')}</rim:AdhocQuery></query:AdhocQueryRequest>`;
}

export function retrieveDocumentSetRequest(documents: ReadonlyArray<{ repositoryUniqueId: string; documentUniqueId: string }>): string {
  return `<xdsb:RetrieveDocumentSetRequest xmlns:xdsb="${ns.xdsb}">`
    + documents.map((d) => `<xdsb:DocumentRequest><xdsb:RepositoryUniqueId>${esc(d.repositoryUniqueId)}</xdsb:RepositoryUniqueId><xdsb:DocumentUniqueId>${esc(d.documentUniqueId)}</xdsb:DocumentUniqueId></xdsb:DocumentRequest>`).join('')
    + '</xdsb:RetrieveDocumentSetRequest>';
}

/** A registry error as ebRS reports it: its code, where, what. */
export interface RegistryError {
  errorCode: string;
  codeContext: string;
  location?: string;
}

export function registryResponse(errors: readonly RegistryError[], tag = 'rs:RegistryResponse', extra = ''): string {
  const status = errors.length === 0 ? xds.success : xds.failure;
  const list = errors.length === 0 ? '' : `<rs:RegistryErrorList>${errors.map((e) =>
    `<rs:RegistryError errorCode="${esc(e.errorCode)}" codeContext="${esc(e.codeContext)}" severity="${xds.errorSeverity}"${e.location ? ` location="${esc(e.location)}"` : ''}/>`).join('')}</rs:RegistryErrorList>`;
  return `<${tag} xmlns:rs="${ns.rs}" xmlns:rim="${ns.rim}" status="${status}">${list}${extra}</${tag}>`;
}
