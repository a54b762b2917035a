/**
 * A stored audit event as a DICOM Audit Message (PS3.15 A.5: the schema of RFC 3881 as
 * DICOM extended it), the form IHE ATNA audit record repositories read. One Atrium action
 * maps to one DICOM event (EventID, EventActionCode, EventTypeCode where the standard has
 * one); the actor is the requesting ActiveParticipant, Atrium the other one; every patient
 * record and study the event touched is a ParticipantObjectIdentification.
 *
 * What the stored event does not hold is left out rather than invented: patient names
 * (never in the trail), the SOP classes and instance lists of a study (A.5.3 marks them
 * user-optional or only known to the transfer), the original C-FIND dataset (a query is
 * kept as its matching keys, sent as JSON, see queryObjectOf).
 */
import { isIP } from 'node:net';
import type { AuditAction, AuditOutcome, StoredAuditEvent } from './audit.ts';

/** A coded value (PS3.15 A.5.1 CodedValueType): code, coding scheme, meaning. */
export interface CodedValue {
  code: string;
  scheme: 'DCM' | 'RFC-3881';
  meaning: string;
}

const dcm = (code: string, meaning: string): CodedValue => ({ code, scheme: 'DCM', meaning });

/** Event IDs (CID 400) and event type codes (CID 401, 403) Atrium uses. */
export const AuditEventID = {
  DICOMInstancesAccessed: dcm('110103', 'DICOM Instances Accessed'),
  DICOMInstancesTransferred: dcm('110104', 'DICOM Instances Transferred'),
  Export: dcm('110106', 'Export'),
  Import: dcm('110107', 'Import'),
  OrderRecord: dcm('110109', 'Order Record'),
  PatientRecord: dcm('110110', 'Patient Record'),
  ProcedureRecord: dcm('110111', 'Procedure Record'),
  Query: dcm('110112', 'Query'),
  SecurityAlert: dcm('110113', 'Security Alert'),
  UserAuthentication: dcm('110114', 'User Authentication'),
} as const;

export const AuditEventTypeCode = {
  Login: dcm('110122', 'Login'),
  Logout: dcm('110123', 'Logout'),
  EmergencyOverrideStarted: dcm('110127', 'Emergency Override Started'),
  ObjectSecurityAttributesChanged: dcm('110135', 'Object Security Attributes Changed'),
  UserSecurityAttributesChanged: dcm('110137', 'User Security Attributes Changed'),
} as const;

/** Active participant roles (CID 402). */
export const AuditRoleIDCode = {
  Application: dcm('110150', 'Application'),
  DestinationRoleID: dcm('110152', 'Destination Role ID'),
  SourceRoleID: dcm('110153', 'Source Role ID'),
} as const;

/** Participant object ID types: RFC 3881's own (A.5.1.2.4) and DICOM's (CID 404). */
export const ParticipantObjectIDTypeCode = {
  PatientNumber: { code: '2', scheme: 'RFC-3881', meaning: 'Patient Number' } as CodedValue,
  UserIdentifier: { code: '11', scheme: 'RFC-3881', meaning: 'User Identifier' } as CodedValue,
  URI: { code: '12', scheme: 'RFC-3881', meaning: 'URI' } as CodedValue,
  StudyInstanceUID: dcm('110180', 'Study Instance UID'),
  SOPClassUID: dcm('110181', 'SOP Class UID'),
} as const;

export type EventActionCode = 'C' | 'R' | 'U' | 'D' | 'E';

/** What the event is in DICOM's terms. */
export interface AuditEventKind {
  EventID: CodedValue;
  EventActionCode: EventActionCode;
  EventTypeCode?: CodedValue;
}

/**
 * The DICOM event of each Atrium action. Stores and retrieves are transfers (A.5.3.7); a
 * WADO-RS view is an access (A.5.3.2); changes of patient records (merges, identity
 * decisions) are Patient Record events (A.5.3.9); what changes who may see what (shares,
 * user administration) and break-the-glass are Security Alerts (A.5.3.11) with their
 * event type.
 */
export function auditEventKindOf(action: AuditAction, details?: Record<string, unknown>): AuditEventKind {
  switch (action) {
    case 'query': return { EventID: AuditEventID.Query, EventActionCode: 'E' };
    case 'view': return { EventID: AuditEventID.DICOMInstancesAccessed, EventActionCode: 'R' };
    case 'share-open': return { EventID: AuditEventID.DICOMInstancesAccessed, EventActionCode: 'R' };
    case 'download': return { EventID: AuditEventID.DICOMInstancesTransferred, EventActionCode: 'R' };
    case 'store': return { EventID: AuditEventID.DICOMInstancesTransferred, EventActionCode: 'C' };
    case 'export': return { EventID: AuditEventID.Export, EventActionCode: 'R' };
    case 'correction':
      // A rejected object is gone from every answer; a moved study (or an undo) is updated.
      return { EventID: AuditEventID.DICOMInstancesAccessed, EventActionCode: details?.kind === 'instance-reject' ? 'D' : 'U' };
    case 'merge':
    case 'identity-change':
    case 'identity-review':
      return { EventID: AuditEventID.PatientRecord, EventActionCode: 'U' };
    case 'order': return { EventID: AuditEventID.OrderRecord, EventActionCode: orderActionCode(details) };
    case 'share':
    case 'share-revoke':
      return { EventID: AuditEventID.SecurityAlert, EventActionCode: 'E', EventTypeCode: AuditEventTypeCode.ObjectSecurityAttributesChanged };
    case 'emergency-access':
      return { EventID: AuditEventID.SecurityAlert, EventActionCode: 'E', EventTypeCode: AuditEventTypeCode.EmergencyOverrideStarted };
    // A request for access to exams elsewhere changes no right by itself: a security alert to be read.
    case 'access-request':
      return { EventID: AuditEventID.SecurityAlert, EventActionCode: 'E', EventTypeCode: AuditEventTypeCode.ObjectSecurityAttributesChanged };
    case 'user-admin':
      return { EventID: AuditEventID.SecurityAlert, EventActionCode: 'E', EventTypeCode: AuditEventTypeCode.UserSecurityAttributesChanged };
    case 'login':
    case 'login-failed':
      return { EventID: AuditEventID.UserAuthentication, EventActionCode: 'E', EventTypeCode: AuditEventTypeCode.Login };
    case 'logout': return { EventID: AuditEventID.UserAuthentication, EventActionCode: 'E', EventTypeCode: AuditEventTypeCode.Logout };
    // Teleradiology: the request is an order; its reading and report a procedure record; an assignment opens a study to a reader.
    case 'tele-request': return { EventID: AuditEventID.OrderRecord, EventActionCode: details?.urgency !== undefined ? 'C' : 'U' };
    case 'tele-protocol':
    case 'tele-claim':
      return { EventID: AuditEventID.OrderRecord, EventActionCode: 'U' };
    case 'tele-template': return { EventID: AuditEventID.ProcedureRecord, EventActionCode: 'U' };
    case 'tele-assign':
    case 'tele-rota':
      return { EventID: AuditEventID.SecurityAlert, EventActionCode: 'E', EventTypeCode: AuditEventTypeCode.ObjectSecurityAttributesChanged };
    case 'report-draft': return { EventID: AuditEventID.ProcedureRecord, EventActionCode: details?.version === 1 ? 'C' : 'U' };
    case 'report-sign':
    case 'report-addendum':
      return { EventID: AuditEventID.ProcedureRecord, EventActionCode: 'U' };
    case 'report-send': return { EventID: AuditEventID.Export, EventActionCode: 'R' };
    case 'second-reading': return { EventID: AuditEventID.ProcedureRecord, EventActionCode: details?.answered === true ? 'U' : 'C' };
    // A study withdrawn at the end of its retention (or by an administrator); a legal hold placed or lifted.
    case 'deletion': return { EventID: AuditEventID.DICOMInstancesAccessed, EventActionCode: 'D' };
    case 'legal-hold': return { EventID: AuditEventID.PatientRecord, EventActionCode: 'U' };
    // Research: a project defined or approved, an objection recorded; reading the pseudonym mapping is an access.
    case 'research-project': return { EventID: AuditEventID.ProcedureRecord, EventActionCode: 'U' };
    case 'research-objection': return { EventID: AuditEventID.PatientRecord, EventActionCode: 'U' };
    case 'reidentify': return { EventID: AuditEventID.PatientRecord, EventActionCode: 'R' };
  }
}

/** An order's change, from the HL7 order control code when the event kept it (NW, XO, CA...). */
function orderActionCode(details?: Record<string, unknown>): EventActionCode {
  const control = typeof details?.orderControl === 'string' ? details.orderControl.toUpperCase() : undefined;
  if (control === 'NW' || control === 'SN') return 'C';
  if (control === 'CA' || control === 'DC' || control === 'OC') return 'D';
  return 'U';
}

/**
 * EventOutcomeIndicator (A.5.2): 0 success; 4 minor failure (a refusal, a failed login
 * that may be retried: Atrium itself worked); 8 serious failure (the action did not complete).
 */
export function eventOutcomeIndicatorOf(action: AuditAction, outcome: AuditOutcome): '0' | '4' | '8' {
  if (outcome === 'success') return '0';
  if (outcome === 'refused' || action === 'login-failed') return '4';
  return '8';
}

/** Who Atrium is in the messages it sends. */
export interface AuditSourceContext {
  /** AuditSourceIdentification/@AuditSourceID, and Atrium's ActiveParticipant UserID. */
  auditSourceId: string;
  /** AuditEnterpriseSiteID when the event names no site. */
  enterpriseSiteId?: string;
  /** Atrium's AE title (AlternativeUserID of its participant in DIMSE events). */
  aeTitle: string;
  /** Atrium's host name (NetworkAccessPointID of its participant). */
  hostname: string;
}

// ---- a small XML writer -------------------------------------------------------

type Attributes = Record<string, string | undefined>;
interface XmlElement {
  name: string;
  attributes: Attributes;
  children: Array<XmlElement | string>;
}

const el = (name: string, attributes: Attributes = {}, children: Array<XmlElement | string> = []): XmlElement => ({ name, attributes, children });

/** Characters XML 1.0 cannot carry at all are dropped; markup and line breaks are escaped. */
export function escapeXml(text: string, inAttribute: boolean): string {
  const clean = text.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '');
  const escaped = clean.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  // Line breaks are escaped too, so that a message is one line in a collector's file.
  const breaks = escaped.replace(/\r/g, '&#13;').replace(/\n/g, '&#10;').replace(/\t/g, '&#9;');
  return inAttribute ? breaks.replace(/"/g, '&quot;') : breaks;
}

function writeXml(e: XmlElement): string {
  let out = `<${e.name}`;
  for (const [k, v] of Object.entries(e.attributes)) if (v !== undefined) out += ` ${k}="${escapeXml(v, true)}"`;
  if (e.children.length === 0) return out + '/>';
  out += '>';
  for (const c of e.children) out += typeof c === 'string' ? escapeXml(c, false) : writeXml(c);
  return out + `</${e.name}>`;
}

const coded = (name: string, c: CodedValue): XmlElement => el(name, { 'csd-code': c.code, codeSystemName: c.scheme, originalText: c.meaning });
const base64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
const detail = (type: string, value: string): XmlElement => el('ParticipantObjectDetail', { type, value: base64(value) });

// ---- participants ------------------------------------------------------------------

/** NetworkAccessPointID and its type (1 machine name, 2 IP address) from "host", "ip" or "host:port". */
export function networkAccessPointOf(source: string | undefined): { NetworkAccessPointID: string; NetworkAccessPointTypeCode: '1' | '2' } | undefined {
  if (!source) return undefined;
  let host = source.trim();
  if (isIP(host) === 0) {
    const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(host);
    const hostPort = /^([^:]+):\d+$/.exec(host);
    if (bracketed) host = bracketed[1]!;
    else if (hostPort) host = hostPort[1]!;
  }
  if (host.startsWith('::ffff:') && isIP(host.slice(7)) === 4) host = host.slice(7);
  if (host === '') return undefined;
  return { NetworkAccessPointID: host, NetworkAccessPointTypeCode: isIP(host) !== 0 ? '2' : '1' };
}

function requestorOf(e: StoredAuditEvent, role: CodedValue | undefined): XmlElement {
  return el('ActiveParticipant', {
    UserID: e.actor,
    // DICOM application entities are also named by their AE titles (A.5.2.1).
    AlternativeUserID: e.actorKind === 'dicom-peer' ? `AETITLES=${e.actor}` : undefined,
    UserIsRequestor: 'true',
    ...networkAccessPointOf(e.source),
  }, role ? [coded('RoleIDCode', role)] : []);
}

function atriumOf(e: StoredAuditEvent, source: AuditSourceContext, role: CodedValue): XmlElement {
  return el('ActiveParticipant', {
    UserID: source.auditSourceId,
    AlternativeUserID: e.via === 'dimse' ? `AETITLES=${source.aeTitle}` : undefined,
    UserIsRequestor: 'false',
    NetworkAccessPointID: source.hostname,
    NetworkAccessPointTypeCode: isIP(source.hostname) !== 0 ? '2' : '1',
  }, [coded('RoleIDCode', role)]);
}

/** The ActiveParticipants of an event: who asked, Atrium, and a C-MOVE's destination. */
function participantsOf(e: StoredAuditEvent, kind: AuditEventKind, source: AuditSourceContext): XmlElement[] {
  const { SourceRoleID, DestinationRoleID, Application } = AuditRoleIDCode;
  if (kind.EventID === AuditEventID.Query) return [requestorOf(e, SourceRoleID), atriumOf(e, source, DestinationRoleID)];
  if (e.action === 'store') return [requestorOf(e, SourceRoleID), atriumOf(e, source, DestinationRoleID)];
  if (e.action === 'download') {
    // Atrium sends; the receiver is the requestor unless a C-MOVE named another AE title.
    const destination = typeof e.details?.destination === 'string' ? e.details.destination : e.actor;
    if (destination === e.actor) return [atriumOf(e, source, SourceRoleID), requestorOf(e, DestinationRoleID)];
    return [
      atriumOf(e, source, SourceRoleID),
      requestorOf(e, undefined),
      el('ActiveParticipant', { UserID: destination, AlternativeUserID: `AETITLES=${destination}`, UserIsRequestor: 'false' }, [coded('RoleIDCode', DestinationRoleID)]),
    ];
  }
  return [requestorOf(e, undefined), atriumOf(e, source, Application)];
}

// ---- participant objects ------------------------------------------------------------

/** HL7 v2 escapes of the CX delimiters (|^~\&) inside a component. */
function hl7Escape(text: string): string {
  return text.replace(/\\/g, '\\E\\').replace(/\|/g, '\\F\\').replace(/\^/g, '\\S\\').replace(/~/g, '\\R\\').replace(/&/g, '\\T\\');
}

const OID = /^[0-2](\.(0|[1-9][0-9]*))+$/;

/**
 * A patient record's ParticipantObjectID: the PatientID with its issuer in HL7 CX form, as
 * IHE ATNA writes it: `PatientID^^^&OID&ISO` when the issuer is an OID, else
 * `PatientID^^^ISSUER` (the issuer as the assigning authority's namespace ID).
 */
export function patientCX(IssuerOfPatientID: string, PatientID: string): string {
  if (IssuerOfPatientID === '') return hl7Escape(PatientID);
  const authority = OID.test(IssuerOfPatientID) ? `&${IssuerOfPatientID}&ISO` : hl7Escape(IssuerOfPatientID);
  return `${hl7Escape(PatientID)}^^^${authority}`;
}

/** "<site code>|<issuer>|<PatientID>" (audit.ts patientRef); the PatientID may itself hold '|'. */
function parsePatientRef(ref: string): { site: string; issuer: string; PatientID: string } | undefined {
  const first = ref.indexOf('|');
  const second = first < 0 ? -1 : ref.indexOf('|', first + 1);
  if (second < 0) return undefined;
  return { site: ref.slice(0, first), issuer: ref.slice(first + 1, second), PatientID: ref.slice(second + 1) };
}

function patientObjectOf(ref: string, extra: XmlElement[]): XmlElement | undefined {
  const p = parsePatientRef(ref);
  if (!p) return undefined;
  return el('ParticipantObjectIdentification', {
    ParticipantObjectID: patientCX(p.issuer, p.PatientID), ParticipantObjectTypeCode: '1', ParticipantObjectTypeCodeRole: '1',
  }, [coded('ParticipantObjectIDTypeCode', ParticipantObjectIDTypeCode.PatientNumber), ...extra]);
}

function studyObjectOf(StudyInstanceUID: string, extra: XmlElement[]): XmlElement {
  return el('ParticipantObjectIdentification', {
    ParticipantObjectID: StudyInstanceUID, ParticipantObjectTypeCode: '2', ParticipantObjectTypeCodeRole: '3',
  }, [coded('ParticipantObjectIDTypeCode', ParticipantObjectIDTypeCode.StudyInstanceUID), ...extra]);
}

/** The studies an event names: its StudyInstanceUID and the UIDs its details list (a STOW-RS, a C-MOVE). */
function studiesOf(e: StoredAuditEvent): string[] {
  const listed = Array.isArray(e.details?.studies) ? e.details.studies.filter((s): s is string => typeof s === 'string') : [];
  return [...new Set([...(e.StudyInstanceUID ? [e.StudyInstanceUID] : []), ...listed])];
}

const qidoPath: Record<string, string> = { patient: '/patients', study: '/studies', series: '/series', instance: '/instances' };

/**
 * The query of a Query event (A.5.3.10): by DIMSE, the C-FIND SOP class (110181); by
 * DICOMweb, the QIDO-RS resource (URI, the "non-DICOM query" the standard allows). The
 * trail keeps a query as its matching keys, not the request's dataset or URL: those are
 * sent as JSON (ParticipantObjectDetail QueryEncoding says so).
 */
function queryObjectOf(e: StoredAuditEvent): XmlElement | undefined {
  const d = e.details;
  if (!d || d.matches === undefined) return undefined;
  const SOPClassUID = typeof d.SOPClassUID === 'string' ? d.SOPClassUID : undefined;
  const level = typeof d.level === 'string' ? d.level : undefined;
  const id = SOPClassUID
    ? { ParticipantObjectID: SOPClassUID, type: ParticipantObjectIDTypeCode.SOPClassUID }
    : { ParticipantObjectID: level && qidoPath[level] ? qidoPath[level]! : e.via, type: ParticipantObjectIDTypeCode.URI };
  const query = JSON.stringify({ ...(level ? { level } : {}), ...(d.model ? { model: d.model } : {}), matches: d.matches });
  return el('ParticipantObjectIdentification', {
    ParticipantObjectID: id.ParticipantObjectID, ParticipantObjectTypeCode: '2', ParticipantObjectTypeCodeRole: '3',
  }, [
    coded('ParticipantObjectIDTypeCode', id.type),
    el('ParticipantObjectQuery', {}, [base64(query)]),
    detail('QueryEncoding', 'application/json'),
  ]);
}

/** A user whose account a user-admin event changed, when the event names one. */
function userObjectOf(e: StoredAuditEvent): XmlElement | undefined {
  const login = typeof e.details?.login === 'string' ? e.details.login : typeof e.details?.user === 'string' ? e.details.user : undefined;
  if (!login) return undefined;
  return el('ParticipantObjectIdentification', {
    ParticipantObjectID: login, ParticipantObjectTypeCode: '2', ParticipantObjectTypeCodeRole: '11',
  }, [coded('ParticipantObjectIDTypeCode', ParticipantObjectIDTypeCode.UserIdentifier)]);
}

function participantObjectsOf(e: StoredAuditEvent, kind: AuditEventKind): XmlElement[] {
  const objects: XmlElement[] = [];
  if (kind.EventID === AuditEventID.Query) {
    const query = queryObjectOf(e);
    if (query) objects.push(query);
  }
  if (e.action === 'user-admin') {
    const user = userObjectOf(e);
    if (user) objects.push(user);
  }
  // Why, when the actor said (a correction, break-the-glass): with what it concerns.
  const why = e.reason ? [detail('Reason', e.reason)] : [];
  for (const uid of studiesOf(e)) objects.push(studyObjectOf(uid, why));
  for (const ref of e.patients ?? []) {
    const patient = patientObjectOf(ref, why);
    if (patient) objects.push(patient);
  }
  return objects;
}

/** The DICOM Audit Message of a stored event, as one line of XML (no declaration, UTF-8 text). */
export function auditMessageOf(e: StoredAuditEvent, source: AuditSourceContext): string {
  const kind = auditEventKindOf(e.action, e.details);
  const identification = el('EventIdentification', {
    EventActionCode: kind.EventActionCode,
    EventDateTime: e.at,
    EventOutcomeIndicator: eventOutcomeIndicatorOf(e.action, e.outcome),
  }, [
    coded('EventID', kind.EventID),
    ...(kind.EventTypeCode ? [coded('EventTypeCode', kind.EventTypeCode)] : []),
    ...(e.outcome !== 'success' ? [el('EventOutcomeDescription', {}, [e.outcome === 'refused' ? 'refused' : 'failed'])] : []),
  ]);
  const auditSource = el('AuditSourceIdentification', {
    AuditEnterpriseSiteID: e.site ?? source.enterpriseSiteId,
    AuditSourceID: source.auditSourceId,
  }, [el('AuditSourceTypeCode', { 'csd-code': '4' })]); // 4: application server process
  return writeXml(el('AuditMessage', {}, [
    identification,
    ...participantsOf(e, kind, source),
    auditSource,
    ...participantObjectsOf(e, kind),
  ]));
}
