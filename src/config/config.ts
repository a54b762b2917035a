import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import type { DuplicatePolicy, NewSite } from '../index/records.ts';
import type { MetaHeaderMismatchPolicy } from '../archive/ingest.ts';
import type { StorageConfig } from '../storage/open-store.ts';
import { isSupportedCharacterSet, type Hl7CharacterSet } from '../hl7/character-sets.ts';
import { parseMssante, type MssanteConfig } from './mssante-config.ts';
import { parseStorageTiering, type StorageTieringConfig } from './tiering-config.ts';
import { defaultLifecycleConfig, defaultMonitoringConfig, parseLifecycle, parseMonitoring, type LifecycleConfig, type MonitoringConfig } from './lifecycle-config.ts';
import { defaultBillingConfig, parseBilling, type BillingConfig } from './billing-config.ts';

/**
 * Atrium's configuration: one YAML file (atrium.example.yaml documents every key),
 * then environment variables for secrets and URLs. Every default is safe:
 * loopback only, embedded engines in the data folder.
 */
/** A storage.compression rule: objects of these sites and SOP classes (any when absent) kept in this lossless syntax. */
export interface StorageCompressionRule {
  transferSyntax: string;
  sites?: string[];
  sopClasses?: string[];
}

/** The lossless syntaxes a storage.compression rule may name: JPEG-LS, JPEG 2000 and HTJ2K lossless. */
/** A diagnostic reference level (NRD) of one exam type, added to or replacing the built-in ones (src/workflow/dose-records.ts). */
export interface RadiationReferenceLevel { modality: string; region: string; quantity: 'CTDIvol' | 'DLP' | 'DAP'; level: number; unit: string; label: string }

export interface RadiationConfig {
  /** Levels by modality and region; one naming the same modality, region and quantity as a built-in one replaces it. */
  referenceLevels: RadiationReferenceLevel[];
  /** Redundant-exam windows in days by modality (CT, MR, XR...), over the built-in defaults. */
  redundancyWindowDays: Record<string, number>;
}

export const storageCompressionSyntaxes: readonly string[] = ['1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.201'];

export interface AtriumConfig {
  dataDir: string;
  /** The file this configuration was read from (the administration API adds peers to it). */
  configFile?: string;
  http: {
    host: string;
    port: number;
    /** Largest accepted request body (STOW-RS), in bytes. */
    maxRequestBytes: number;
    /** Base URL written in RetrieveURL/BulkDataURI; derived from the request when absent. */
    publicBaseUrl?: string;
    /** Largest JSON body of the API routes, in bytes (413 beyond). */
    maxJsonBytes: number;
    /** A request's header block must arrive within this (slow-loris). */
    headersTimeoutMs: number;
    /** A buffered (JSON) body must arrive within this; streamed STOW-RS bodies are not bounded in time. */
    bodyTimeoutMs: number;
    /** The portal's built files (web/dist), served under /app/; absent: no portal. */
    portalDir?: string;
    /** HTTPS: when set, the listener speaks TLS only. */
    tls?: HttpTlsConfig;
    /**
     * Addresses (or CIDR ranges) of the reverse proxies / load balancers in front of Atrium,
     * whose X-Forwarded-For is believed: the client address then goes into the audit trail and
     * the attempt limits. Empty: the socket's address is the client's.
     */
    trustProxy: string[];
  };
  index: { engine: 'sqlite'; path: string } | { engine: 'postgres'; url: string; schema?: string };
  storage: StorageConfig;
  /**
   * storage.compression: rules that re-encode uncompressed objects to a lossless syntax after
   * ingest, in the background (src/archive/compression.ts). The first rule that matches an
   * object's site and SOP class applies; none by default.
   */
  storageCompression: StorageCompressionRule[];
  /** storage.cold and storage.tiering: the cold tier and the rules that move studies to it (docs/storage-tiers.md); none by default. */
  storageTiering?: StorageTieringConfig;
  /** radiation: dose reference levels and redundant-exam windows (docs/dose.md, docs/redundancy.md). */
  radiation: RadiationConfig;
  ingest: {
    /** A different object arriving with a stored SOPInstanceUID. */
    duplicatePolicy: DuplicatePolicy;
    /** Largest in-memory header (all values but bulk data) of one object, in bytes. */
    maxHeaderBytes: number;
    /** A meta header naming other SOP UIDs than its dataset: archive with a warning, or refuse. */
    metaHeaderMismatch: MetaHeaderMismatchPolicy;
  };
  /** DICOM network services (PS3.7/3.8): the SCP's listener and its limits. */
  dimse: DimseConfig;
  sites: NewSite[];
  /** Known DICOM peers (modalities, PACS, workstations): who may call, for which site, to do what. */
  peers: PeerConfig[];
  /** Machine clients of the HTTP API until OIDC lands: a token's SHA-256 and the site it sends for. */
  apiClients: Array<{ name: string; tokenSha256: string; site: string; territory: boolean }>;
  /** Forwarding of arriving objects to peers by rules, through a persistent queue. */
  routing: RoutingConfig;
  /** HL7 v2 over MLLP: ADT and orders from the sites' HIS and RIS. */
  hl7: Hl7Config;
  /** Where audit records go besides the trail in the index, and the anchors of its chain. */
  audit: { syslog?: AuditSyslogConfig; anchor: AuditAnchorConfig };
  /** Who may call the HTTP API and the portal: sessions, OpenID Connect, bearer JWTs, machine clients. */
  auth: AuthConfig;
  /** Teleradiology workflow (src/workflow/tele-*.ts): claims, deadlines, where signed reports go. */
  teleradiology: TeleradiologyConfig;
  /** Publication of reports and manifests in the DMP (src/exchange/dmp/): off without an endpoint. */
  dmp: DmpConfig;
  /** The CNAM's INSi teleservice (src/patients/insi.ts): off without an endpoint. */
  insi: InsiConfig;
  /** Retention rules and their daily evaluation (src/archive/lifecycle.ts). */
  lifecycle: LifecycleConfig;
  /** Who may scrape the Prometheus metrics (src/api/monitoring.ts). */
  monitoring: MonitoringConfig;
  /** Subscriptions and tariffs per site, for the monthly invoices (src/billing/, billing-config.ts). */
  billing: BillingConfig;
  log: { level: string };
}

export interface DmpCoded { code: string; scheme: string; display: string }

/**
 * The DMP (Dossier Médical Partagé): its web services, and per site the organisation
 * certificate that authenticates the site (TLS client) and signs its VIHF and submissions.
 * Certificates and keys are files; a key's passphrase comes from the environment only.
 */
export interface DmpConfig {
  /** Base URL of the DMP's web services (https); absent: nothing is published. */
  endpoint?: string;
  /** The authorities the DMP's server certificate is checked against (PEM file). */
  caFile?: string;
  timeoutMs: number;
  /** VIHF Issuer of the assertions Atrium signs. */
  vihfIssuer: string;
  /** OID of this installation as a document source (XDSSubmissionSet.sourceId); default: its UID root. */
  sourceId?: string;
  software: { name: string; version: string; approval: string };
  retry: { baseDelayMs: number; maxDelayMs: number; maxAttempts: number };
  pollMs: number;
  sites: DmpSiteConfig[];
}

export interface DmpSiteConfig {
  site: string;
  certFile: string;
  keyFile: string;
  /** Name of the environment variable holding the key's passphrase (never the passphrase itself). */
  keyPassphraseEnv?: string;
  /** Identifiant_Structure of the VIHF and authorInstitution: '1' then the FINESS unless given. */
  structureId?: string;
  /** healthcareFacilityTypeCode and the VIHF's Secteur_Activite (TRE_R02). */
  sector: DmpCoded;
  /** practiceSettingCode (TRE_A01). */
  practiceSetting: DmpCoded;
}

/**
 * INSi, the CNAM's identity teleservice: its endpoint (https, SOAP 1.2), and per site the
 * organisation certificate that authenticates the site (TLS client). Certificates and keys are
 * files; a key's passphrase comes from the environment only (keyPassphraseEnv names the variable).
 */
export interface InsiConfig {
  /** Off (no INSi call possible) unless set. */
  endpoint?: string;
  /** The authorities INSi's server certificate is checked against (PEM file). */
  caFile?: string;
  timeoutMs: number;
  /** The software as approved by the CNAM (ContexteLPS: name, version, IDAM approval number). */
  software: { name: string; version: string; approval: string };
  /** ContexteLPS Emetteur; default: the calling site's code. */
  emitter?: string;
  sites: InsiSiteConfig[];
}

export interface InsiSiteConfig {
  site: string;
  certFile: string;
  keyFile: string;
  /** Name of the environment variable holding the key's passphrase (never the passphrase itself). */
  keyPassphraseEnv?: string;
}

export interface TeleradiologyConfig {
  /** A claimed reading is released when its reader shows no activity (no draft saved) for this long. */
  claimMinutes: number;
  /** From the request, then from the images' arrival, to the deadline, by urgency. */
  deadlineMinutes: { routine: number; urgent: number; stroke: number };
  /**
   * A request nobody is reading this long before its deadline is escalated: flagged on the
   * worklists and given to the radiologist on call for its specialty.
   */
  escalateBeforeMinutes: { routine: number; urgent: number; stroke: number };
  /** The specialty whose on-call radiologist is given stroke requests at once. */
  strokeSpecialty: string;
  /** How often arriving images are matched to requests (the stroke clock starts there). */
  pollMs: number;
  /** Per requesting site, where its signed reports go: ORU^R01 over MLLP to its RIS. */
  sites: TeleradiologySite[];
  /** Sending of reports: wait for an ACK this long, retry with doubling delays up to maxAttempts. */
  delivery: { ackTimeoutMs: number; retryBaseMs: number; maxAttempts: number; pollMs: number };
  /**
   * The alert channel: a stroke request given to a radiologist, or any request escalated, is
   * POSTed as JSON (no patient identity) to this URL, e.g. the paging or SMS gateway of the
   * on-call service; retried like report deliveries. Off unless set.
   */
  alerts?: { webhookUrl: string };
  /** Signed reports to the requesting physician's (and the patient's) MSSanté mailbox: off unless set (mssante-config.ts). */
  mssante?: MssanteConfig;
  /** The sites' time zone (IANA name) for the times a report's PDF shows; default Europe/Paris. */
  timeZone?: string;
}

export interface TeleradiologySite {
  site: string;
  /** The site's RIS listener; MSH-5/MSH-6 name it; MSH-18 (default 8859/1, what French RIS mostly read). */
  oru?: { host: string; port: number; application: string; facility: string; characterSet: Hl7CharacterSet };
}

/**
 * Export of the audit trail as DICOM audit messages (PS3.15 A.5) to a syslog collector
 * (an IHE ATNA audit record repository) over TLS (RFC 5425). Off unless configured.
 */
export interface AuditSyslogConfig {
  host: string;
  /** 6514, the port RFC 5425 assigns to syslog over TLS. */
  port: number;
  /** PEM CA certificate(s) the collector's certificate must be signed by (and name host). */
  caFile: string;
  /** Client certificate and key (PEM) when the collector requires mutual TLS. */
  certFile?: string;
  keyFile?: string;
  /** AuditSourceID of every message (default: this machine's host name). */
  auditSourceId: string;
  /** How often the trail is looked at for new records. */
  pollMs: number;
}

/**
 * Signed checkpoints of the audit chain's head, kept outside the database (access/audit-anchor.ts):
 * a removed tail or a rewritten chain no longer matches them.
 */
export interface AuditAnchorConfig {
  /** Append-only JSON lines file of the anchors; best on another machine or an append-only mount. */
  file: string;
  /** How often the head is anchored when it moved (also at start and at shutdown). */
  everySeconds: number;
  /** HMAC-SHA256 key, only from ATRIUM_AUDIT_ANCHOR_KEY; unset: a key generated into the data folder. */
  key?: string;
}

export interface HttpTlsConfig {
  /** PEM files, read at start. */
  certFile: string;
  keyFile: string;
  /** CA that signs client certificates (mutual TLS). */
  caFile?: string;
  /** Ask callers for a certificate; a caller without one is still served (browsers), as no client. */
  requestClientCertificate: boolean;
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** Machine clients known by their certificate (mutual TLS). */
  clients: HttpTlsClient[];
}

/** A machine client authenticated by its TLS certificate, signed by caFile and pinned by fingerprint. */
export interface HttpTlsClient {
  name: string;
  /** SHA-256 of the certificate's DER encoding, 64 lowercase hex digits. */
  certificateSha256: string;
  /** Site code the client acts for. */
  site: string;
  territory: boolean;
}

/**
 * Authentication of people and machines. OpenID Connect (Pro Santé Connect for professionals)
 * is off unless auth.oidc is configured; local accounts (passwords) always work.
 */
export interface AuthConfig {
  oidc?: OidcConfig;
  /** Bearer JWT access tokens on API calls; off unless configured. */
  accessTokens?: AccessTokenConfig;
  /** Machine clients known by the client_id of their OAuth2 client-credentials tokens. */
  clients: Array<{ clientId: string; site: string; territory: boolean }>;
  /** DRIMbox source: remote consumers' Pro Santé Connect tokens checked by introspection; off unless configured. */
  drimbox?: DrimboxSourceConfig;
  sessions: {
    /** A session unused this long ends (may be fractional, for tests). */
    idleMinutes: number;
    /** A session ends this long after login whatever its use. */
    absoluteHours: number;
    /** Mark the session cookie Secure even when the request reached us over plain HTTP (behind a TLS proxy). */
    secureCookie: boolean;
  };
  /** Login attempts (local passwords, OIDC callbacks) allowed per client address per minute. */
  loginAttemptsPerMinute: number;
}

export interface OidcConfig {
  /** The provider's issuer URL; its /.well-known/openid-configuration is read at first use. */
  issuer: string;
  clientId: string;
  /** Only from the environment (ATRIUM_OIDC_CLIENT_SECRET), never from the file. */
  clientSecret: string;
  tokenEndpointAuthMethod: 'client_secret_basic' | 'client_secret_post';
  /** Atrium's /auth/callback as registered at the provider. */
  redirectUri: string;
  /** Where the provider sends the browser back after a logout (registered there); default /app/ beside redirectUri. */
  postLogoutRedirectUri?: string;
  /** Pro Santé Connect: openid scope_all. */
  scopes: string[];
  /** Requested and then required in the ID token's acr (Pro Santé Connect: eidas1). */
  acrValues?: string;
  /** The claim holding the RPPS number (Pro Santé Connect: SubjectNameID, "8" + 11 digits). */
  rppsClaim: string;
}

/**
 * auth.drimbox: a remote DRIMbox consumer's Pro Santé Connect access token is checked by
 * token introspection (RFC 7662) at the provider, with Atrium's client credentials.
 */
export interface DrimboxSourceConfig {
  /** The provider's introspection endpoint. */
  introspectionEndpoint: string;
  clientId: string;
  /** Only from the environment (the variable auth.drimbox.clientSecretEnv names). */
  clientSecret: string;
  /** An answer is reused this long at most (never past the token's exp); a failure never is. */
  cacheSeconds: number;
  /** The claim of the introspection answer holding the RPPS ("8" + 11 digits, or the 11 digits). */
  rppsClaim: string;
}

export interface AccessTokenConfig {
  /** Issuer of the access tokens; the OIDC issuer when absent. */
  issuer: string;
  /** The aud every token must carry: Atrium's resource identifier. */
  audience: string;
  /** JWKS of the issuer; read from its discovery document when absent. */
  jwksUri?: string;
  /** Asymmetric algorithms accepted (none and HS* never are). */
  algorithms: string[];
  clockToleranceSeconds: number;
}

export const asymmetricAlgorithms = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

/** A system allowed to send HL7 messages, known by MSH-3 and MSH-4, and the site it speaks for. */
export interface Hl7Sender {
  /** MSH-3 Sending Application (its namespace ID, first component). */
  application: string;
  /** MSH-4 Sending Facility (its namespace ID, first component). */
  facility: string;
  site: string;
  /** Scheduled Station AE Title of this sender's orders when they name none (OBR-21, IPC-9). */
  stationAETitle?: string;
  /** Specialty (on-call rota) of the teleradiology requests this sender files over the CI-SIS volet; default general. */
  teleradiologySpecialty?: string;
}

export interface Hl7Config {
  /** false: no MLLP listener. */
  enabled: boolean;
  host: string;
  port: number;
  /** Only these senders are served; any other gets an AR acknowledgment. */
  senders: Hl7Sender[];
  /** Character set of messages whose MSH-18 is empty (French systems mostly send 8859/1). */
  defaultCharacterSet: '8859/1' | 'UNICODE UTF-8' | 'ASCII';
  /** Largest message accepted, in bytes; a larger frame closes the connection. */
  maxMessageBytes: number;
  /** Connections open at once; one more is closed as soon as it is accepted. */
  maxConnections: number;
  /** A connection that sends nothing for this long (and awaits no acknowledgment) is closed. */
  idleTimeoutMs: number;
  /** A frame must end within this long of its start block, however its bytes trickle in. */
  frameTimeoutMs: number;
}

/**
 * A forwarding rule: an arriving object that meets every condition given goes to each
 * destination. An absent condition matches anything; values within one condition are alternatives.
 */
export interface RoutingRule {
  name: string;
  /** Site codes the object was filed under. */
  sites?: string[];
  /** Modality of the object's series (CT, MR...). */
  modalities?: string[];
  SOPClassUIDs?: string[];
  /** AE titles that sent the object by C-STORE (SourceApplicationEntityTitle of its meta header). */
  callingAETitles?: string[];
  /** AE titles of configured peers with host and port. */
  destinations: string[];
}

export interface RoutingConfig {
  rules: RoutingRule[];
  retry: {
    /** Delay before the first retry; doubled at each failure up to maxDelayMs. */
    baseDelayMs: number;
    maxDelayMs: number;
    /** Attempts before a row is marked failed (it stays until requeued). */
    maxAttempts: number;
  };
  /** Associations opened at once to one peer (several associations pipeline the sending). */
  associationsPerPeer: number;
  /** How often the outbox and the queue are looked at when idle. */
  pollIntervalMs: number;
  /**
   * A sender renews its claim on the rows it is sending every quarter of this; rows whose claim
   * was not renewed for this long (their node died) are handed to another sender.
   */
  claimLeaseSeconds: number;
}

export interface DimseConfig {
  /** false: no DIMSE listener at all. */
  enabled: boolean;
  host: string;
  port: number;
  /** Our AE title; a caller naming another called AE title is refused. */
  aeTitle: string;
  /** Associations served at once (counted once accepted); more are refused with "local limit exceeded". */
  maxAssociations: number;
  /**
   * Connections open without an accepted association yet (TLS handshake, A-ASSOCIATE-RQ on its
   * way); one more is closed as soon as it is accepted, so unknown callers cannot starve real peers.
   */
  maxPendingConnections: number;
  /** A connection must have sent its A-ASSOCIATE-RQ this long after opening (ARTIM, PS3.8 9.1.5), however its bytes trickle in. */
  associateTimeoutMs: number;
  /** The largest A-ASSOCIATE-RQ accepted, in bytes: what anyone may make Atrium hold before the calling AE title is checked. */
  maxAssociateRequestBytes: number;
  /** Largest PDU we accept (announced in A-ASSOCIATE-AC). */
  maxPduLength: number;
  /** Calling AE titles not in `peers` are refused (A-ASSOCIATE-RJ reason 3). */
  requireKnownCallers: boolean;
  /** With requireKnownCallers off, the site an unknown caller's objects are filed under. */
  defaultSite?: string;
  /** An association with no PDU for this long is aborted (PS3.8 ARTIM-like idle timer). */
  idleTimeoutMs: number;
  /** DICOM TLS (PS3.15 B.1): PEM files; when set, the listener speaks TLS only. */
  tls?: { certFile: string; keyFile: string; caFile?: string; requireClientCertificate: boolean };
}

export interface PeerConfig {
  aeTitle: string;
  /** Where C-MOVE and routing send to; a peer without them only calls us. */
  host?: string;
  port?: number;
  /** Connect to this peer over TLS (PS3.15 B.1). */
  tls?: boolean;
  /** The site whose objects this peer sends, and whose exams it may query and retrieve. */
  site: string;
  /** Trusted for the whole territory (a regional PACS): queries and retrieves see every site's exams. */
  territory?: boolean;
  may: { store: boolean; query: boolean; retrieve: boolean };
  /** How long an association to this peer may wait for its answer (default 120 s): an AI node that never answers. */
  timeoutSeconds?: number;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** A section of the configuration file: a mapping, or empty when absent (the sections of their own modules). */
export function mapping(v: unknown, where: string): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${where} must be a mapping`);
  return v as Record<string, unknown>;
}

/** Refuses a key the section does not know, naming the ones it does. */
export function onlyKeys(d: Record<string, unknown>, known: readonly string[], where: string): void {
  const extra = Object.keys(d).find((k) => !known.includes(k));
  if (extra) throw new ConfigError(`${where}.${extra} is not a key of ${where} (${known.join(', ')})`);
}

const duplicatePolicies: readonly DuplicatePolicy[] = ['keep', 'replace', 'reject'];

/** The repository's built portal, served by default when it was built. */
const builtPortal = fileURLToPath(new URL('../../web/dist', import.meta.url));

export function defaultConfig(dataDir: string): AtriumConfig {
  return {
    dataDir,
    http: {
      host: '127.0.0.1', port: 8042, maxRequestBytes: 8 * 1024 ** 3, maxJsonBytes: 1024 * 1024, trustProxy: [],
      headersTimeoutMs: 20_000, bodyTimeoutMs: 30_000,
      ...(existsSync(path.join(builtPortal, 'index.html')) ? { portalDir: builtPortal } : {}),
    },
    index: { engine: 'sqlite', path: path.join(dataDir, 'index.sqlite') },
    storage: { kind: 'filesystem', root: path.join(dataDir, 'blobs') },
    storageCompression: [],
    radiation: { referenceLevels: [], redundancyWindowDays: {} },
    ingest: { duplicatePolicy: 'replace', maxHeaderBytes: 64 * 1024 ** 2, metaHeaderMismatch: 'warn' },
    dimse: {
      enabled: true, host: '127.0.0.1', port: 11112, aeTitle: 'ATRIUM', maxAssociations: 32,
      maxPduLength: 256 * 1024, requireKnownCallers: true, idleTimeoutMs: 120_000,
      maxPendingConnections: 32, associateTimeoutMs: 10_000, maxAssociateRequestBytes: 64 * 1024,
    },
    sites: [{ code: 'LOCAL', name: 'Local site', finess: '000000000', issuerOfPatientID: 'LOCAL' }],
    peers: [],
    apiClients: [],
    routing: {
      rules: [],
      retry: { baseDelayMs: 5_000, maxDelayMs: 600_000, maxAttempts: 50 },
      associationsPerPeer: 2,
      pollIntervalMs: 1_000,
      claimLeaseSeconds: 120,
    },
    hl7: { enabled: true, host: '127.0.0.1', port: 2575, senders: [], defaultCharacterSet: '8859/1', maxMessageBytes: 16 * 1024 ** 2,
      maxConnections: 64, idleTimeoutMs: 60_000, frameTimeoutMs: 30_000 },
    audit: { anchor: { file: path.join(dataDir, 'audit-anchors.jsonl'), everySeconds: 60 } },
    auth: {
      clients: [],
      // Secure by default: browsers keep Secure cookies on http://localhost too.
      sessions: { idleMinutes: 30, absoluteHours: 12, secureCookie: true },
      loginAttemptsPerMinute: 10,
    },
    teleradiology: {
      claimMinutes: 20,
      deadlineMinutes: { routine: 2880, urgent: 240, stroke: 30 },
      escalateBeforeMinutes: { routine: 240, urgent: 60, stroke: 10 },
      strokeSpecialty: 'neuro',
      pollMs: 500,
      sites: [],
      delivery: { ackTimeoutMs: 10_000, retryBaseMs: 5_000, maxAttempts: 20, pollMs: 1_000 },
    },
    dmp: {
      timeoutMs: 30_000, vihfIssuer: 'urn:atrium', software: { name: 'Atrium', version: '0.1.0', approval: '' },
      retry: { baseDelayMs: 30_000, maxDelayMs: 3_600_000, maxAttempts: 48 }, pollMs: 1_000, sites: [],
    },
    insi: { timeoutMs: 15_000, software: { name: 'Atrium', version: '0.1.0', approval: '' }, sites: [] },
    lifecycle: defaultLifecycleConfig(),
    monitoring: defaultMonitoringConfig(),
    billing: defaultBillingConfig(),
    log: { level: 'info' },
  };
}

type Env = Record<string, string | undefined>;

/**
 * Reads the file (if any) over the defaults, then the environment:
 * ATRIUM_DATA_DIR, ATRIUM_HTTP_HOST, ATRIUM_HTTP_PORT, ATRIUM_PUBLIC_BASE_URL, DATABASE_URL,
 * ATRIUM_S3_ENDPOINT / ATRIUM_S3_BUCKET / ATRIUM_S3_REGION / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
 * ATRIUM_DUPLICATE_POLICY, ATRIUM_DIMSE_HOST, ATRIUM_DIMSE_PORT, ATRIUM_DIMSE_AE_TITLE, ATRIUM_HL7_HOST,
 * ATRIUM_HL7_PORT, ATRIUM_LOG_LEVEL, ATRIUM_OIDC_CLIENT_SECRET, ATRIUM_AUDIT_ANCHOR_KEY.
 */
export function loadConfig(options: { file?: string; env?: Env; dataDir?: string } = {}): AtriumConfig {
  const env = options.env ?? process.env;
  const file = options.file ?? env.ATRIUM_CONFIG;
  let raw: Record<string, unknown> = {};
  if (file !== undefined) {
    if (!existsSync(file)) throw new ConfigError(`configuration file not found: ${file}`);
    const parsed: unknown = YAML.parse(readFileSync(file, 'utf8'));
    if (parsed !== null && parsed !== undefined) {
      if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`${file}: expected a mapping at the top level`);
      raw = parsed as Record<string, unknown>;
    }
  }
  const dataDir = path.resolve(options.dataDir ?? env.ATRIUM_DATA_DIR ?? str(raw, 'dataDir') ?? './data');
  const config = defaultConfig(dataDir);
  if (file !== undefined) config.configFile = path.resolve(file);

  const http = obj(raw, 'http');
  config.http.host = env.ATRIUM_HTTP_HOST ?? str(http, 'host') ?? config.http.host;
  config.http.port = int(env.ATRIUM_HTTP_PORT, 'ATRIUM_HTTP_PORT') ?? num(http, 'port') ?? config.http.port;
  config.http.maxRequestBytes = num(http, 'maxRequestBytes') ?? config.http.maxRequestBytes;
  config.http.publicBaseUrl = env.ATRIUM_PUBLIC_BASE_URL ?? str(http, 'publicBaseUrl');
  if (http.trustProxy !== undefined) {
    const list = typeof http.trustProxy === 'string' ? [http.trustProxy] : http.trustProxy;
    if (!Array.isArray(list) || !list.every((a) => typeof a === 'string' && /^[0-9a-fA-F.:/]+$/.test(a))) {
      throw new ConfigError('http.trustProxy must list addresses or CIDR ranges of the proxies in front of Atrium');
    }
    config.http.trustProxy = list as string[];
  }

  const index = obj(raw, 'index');
  const databaseUrl = env.DATABASE_URL ?? str(index, 'url');
  const engine = str(index, 'engine') ?? (databaseUrl ? 'postgres' : 'sqlite');
  if (engine === 'postgres') {
    if (!databaseUrl) throw new ConfigError('index.engine is postgres but neither DATABASE_URL nor index.url is set');
    config.index = { engine: 'postgres', url: databaseUrl, schema: str(index, 'schema') };
  } else if (engine === 'sqlite') {
    config.index = { engine: 'sqlite', path: path.resolve(dataDir, str(index, 'path') ?? 'index.sqlite') };
  } else {
    throw new ConfigError(`index.engine must be sqlite or postgres, not ${engine}`);
  }

  const storage = obj(raw, 'storage');
  const storageKind = env.ATRIUM_S3_BUCKET ? 's3' : str(storage, 'kind') ?? 'filesystem';
  if (storageKind === 's3') {
    const bucket = env.ATRIUM_S3_BUCKET ?? str(storage, 'bucket');
    if (!bucket) throw new ConfigError('storage.kind is s3 but no bucket is named (storage.bucket or ATRIUM_S3_BUCKET)');
    config.storage = {
      kind: 's3',
      bucket,
      endpoint: env.ATRIUM_S3_ENDPOINT ?? str(storage, 'endpoint'),
      region: env.ATRIUM_S3_REGION ?? str(storage, 'region') ?? 'us-east-1',
      prefix: str(storage, 'prefix'),
      // Secrets only from the environment, never from the file.
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      partSizeBytes: num(storage, 'partSizeBytes'),
    };
  } else if (storageKind === 'filesystem') {
    config.storage = { kind: 'filesystem', root: path.resolve(dataDir, str(storage, 'root') ?? 'blobs') };
  } else {
    throw new ConfigError(`storage.kind must be filesystem or s3, not ${storageKind}`);
  }

  const ingest = obj(raw, 'ingest');
  const policy = env.ATRIUM_DUPLICATE_POLICY ?? str(ingest, 'duplicatePolicy') ?? config.ingest.duplicatePolicy;
  if (!duplicatePolicies.includes(policy as DuplicatePolicy)) {
    throw new ConfigError(`ingest.duplicatePolicy must be one of ${duplicatePolicies.join(', ')}, not ${policy}`);
  }
  config.ingest.duplicatePolicy = policy as DuplicatePolicy;
  config.ingest.maxHeaderBytes = num(ingest, 'maxHeaderBytes') ?? config.ingest.maxHeaderBytes;
  const mismatch = str(ingest, 'metaHeaderMismatch') ?? config.ingest.metaHeaderMismatch;
  if (mismatch !== 'warn' && mismatch !== 'reject') {
    throw new ConfigError(`ingest.metaHeaderMismatch must be warn or reject, not ${mismatch}`);
  }
  config.ingest.metaHeaderMismatch = mismatch;

  if (raw.sites !== undefined) config.sites = parseSites(raw.sites);
  // After the sites: a rule names some.
  config.storageCompression = storageCompressionOf(obj(raw, 'storage').compression, config.sites.map((s) => s.code));
  config.storageTiering = parseStorageTiering(obj(raw, 'storage'), dataDir, env);
  if (raw.radiation !== undefined) config.radiation = radiationOf(obj(raw, 'radiation'));
  parseHttpHardening(http, config);
  parseDimse(obj(raw, 'dimse'), env, config);
  if (raw.peers !== undefined) config.peers = parsePeers(raw.peers, config.sites);
  if (raw.apiClients !== undefined) config.apiClients = parseApiClients(raw.apiClients, config.sites);
  parseRouting(obj(raw, 'routing'), config);
  parseHl7(obj(raw, 'hl7'), env, config);
  parseAudit(obj(raw, 'audit'), config);
  parseAuditAnchor(obj(obj(raw, 'audit'), 'anchor'), env, dataDir, config);
  parseAuth(obj(raw, 'auth'), env, config);
  parseTeleradiology(obj(raw, 'teleradiology'), config);
  parseDmp(obj(raw, 'dmp'), config);
  parseInsi(obj(raw, 'insi'), config);
  config.lifecycle = parseLifecycle(raw.lifecycle, config.sites.map((site) => site.code));
  config.monitoring = parseMonitoring(raw.monitoring);
  config.billing = parseBilling(raw.billing, config.sites.map((site) => site.code));

  config.log.level = env.ATRIUM_LOG_LEVEL ?? str(obj(raw, 'log'), 'level') ?? config.log.level;
  return config;
}

function parseSites(value: unknown): AtriumConfig['sites'] {
  if (!Array.isArray(value) || value.length === 0) throw new ConfigError('sites must be a non-empty list');
  const codes = new Set<string>();
  return value.map((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry === null) throw new ConfigError(`sites[${i}] must be a mapping`);
    const e = entry as Record<string, unknown>;
    const code = required(e, 'code', `sites[${i}]`);
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(code)) throw new ConfigError(`sites[${i}].code must be 1-32 letters, digits, - or _`);
    if (codes.has(code)) throw new ConfigError(`sites[${i}].code ${code} is used twice`);
    codes.add(code);
    const finess = required(e, 'finess', `sites[${i}]`);
    if (!/^[0-9A-B]{9}$/.test(finess)) throw new ConfigError(`sites[${i}].finess must be a 9-character FINESS number`);
    return {
      code,
      name: required(e, 'name', `sites[${i}]`),
      finess,
      issuerOfPatientID: required(e, 'issuerOfPatientID', `sites[${i}]`),
    };
  });
}

/** AE titles: 1-16 characters of the default repertoire, no backslash or control, not all spaces (PS3.5 6.2). */
export function isValidAETitle(ae: string): boolean {
  return /^[\x20-\x5b\x5d-\x7e]{1,16}$/.test(ae) && ae.trim() !== '';
}

function parseDimse(d: Record<string, unknown>, env: Env, config: AtriumConfig): void {
  const c = config.dimse;
  if (d.enabled !== undefined) {
    if (typeof d.enabled !== 'boolean') throw new ConfigError('dimse.enabled must be true or false');
    c.enabled = d.enabled;
  }
  c.host = env.ATRIUM_DIMSE_HOST ?? str(d, 'host') ?? c.host;
  c.port = int(env.ATRIUM_DIMSE_PORT, 'ATRIUM_DIMSE_PORT') ?? num(d, 'port') ?? c.port;
  c.aeTitle = env.ATRIUM_DIMSE_AE_TITLE ?? str(d, 'aeTitle') ?? c.aeTitle;
  if (!isValidAETitle(c.aeTitle)) throw new ConfigError(`dimse.aeTitle ${JSON.stringify(c.aeTitle)} is not a valid AE title (1-16 characters)`);
  c.maxAssociations = num(d, 'maxAssociations') ?? c.maxAssociations;
  c.maxPduLength = num(d, 'maxPduLength') ?? c.maxPduLength;
  if (c.maxPduLength < 4096 || c.maxPduLength > 64 * 1024 * 1024) throw new ConfigError('dimse.maxPduLength must be between 4096 and 67108864');
  c.idleTimeoutMs = num(d, 'idleTimeoutMs') ?? c.idleTimeoutMs;
  if (c.maxAssociations < 1) throw new ConfigError('dimse.maxAssociations must be at least 1');
  c.maxPendingConnections = num(d, 'maxPendingConnections') ?? c.maxPendingConnections;
  if (c.maxPendingConnections < 1) throw new ConfigError('dimse.maxPendingConnections must be at least 1');
  c.associateTimeoutMs = num(d, 'associateTimeoutMs') ?? c.associateTimeoutMs;
  if (c.associateTimeoutMs < 100 || c.associateTimeoutMs > 600_000) throw new ConfigError('dimse.associateTimeoutMs must be between 100 and 600000');
  c.maxAssociateRequestBytes = num(d, 'maxAssociateRequestBytes') ?? c.maxAssociateRequestBytes;
  if (c.maxAssociateRequestBytes < 4096 || c.maxAssociateRequestBytes > 16 * 1024 * 1024) {
    throw new ConfigError('dimse.maxAssociateRequestBytes must be between 4096 and 16777216');
  }
  if (d.requireKnownCallers !== undefined) {
    if (typeof d.requireKnownCallers !== 'boolean') throw new ConfigError('dimse.requireKnownCallers must be true or false');
    c.requireKnownCallers = d.requireKnownCallers;
  }
  c.defaultSite = str(d, 'defaultSite') ?? c.defaultSite;
  if (c.defaultSite !== undefined && !config.sites.some((s) => s.code === c.defaultSite)) {
    throw new ConfigError(`dimse.defaultSite ${c.defaultSite} is not a configured site`);
  }
  const tls = obj(d, 'tls');
  if (Object.keys(tls).length > 0) {
    c.tls = {
      certFile: required(tls, 'certFile', 'dimse.tls'),
      keyFile: required(tls, 'keyFile', 'dimse.tls'),
      caFile: str(tls, 'caFile'),
      requireClientCertificate: tls.requireClientCertificate === true,
    };
  }
}

function parseHttpHardening(h: Record<string, unknown>, config: AtriumConfig): void {
  const c = config.http;
  c.maxJsonBytes = num(h, 'maxJsonBytes') ?? c.maxJsonBytes;
  if (c.maxJsonBytes < 1024) throw new ConfigError('http.maxJsonBytes must be at least 1024');
  c.headersTimeoutMs = num(h, 'headersTimeoutMs') ?? c.headersTimeoutMs;
  c.bodyTimeoutMs = num(h, 'bodyTimeoutMs') ?? c.bodyTimeoutMs;
  if (c.headersTimeoutMs < 100 || c.bodyTimeoutMs < 100) throw new ConfigError('http.headersTimeoutMs and http.bodyTimeoutMs must be at least 100');
  const portalDir = str(h, 'portalDir');
  if (portalDir !== undefined) {
    c.portalDir = path.resolve(portalDir);
    if (!existsSync(path.join(c.portalDir, 'index.html'))) throw new ConfigError(`http.portalDir ${c.portalDir} holds no index.html`);
  }
  const tls = obj(h, 'tls');
  if (Object.keys(tls).length === 0) return;
  const file = (key: string, optional = false): string | undefined => {
    const f = optional ? str(tls, key) : required(tls, key, 'http.tls');
    if (f !== undefined && !existsSync(f)) throw new ConfigError(`http.tls.${key}: ${f} not found`);
    return f;
  };
  const minVersion = str(tls, 'minVersion') ?? 'TLSv1.2';
  if (minVersion !== 'TLSv1.2' && minVersion !== 'TLSv1.3') throw new ConfigError(`http.tls.minVersion must be TLSv1.2 or TLSv1.3, not ${minVersion}`);
  const clients = parseHttpTlsClients(tls.clients, config.sites);
  const ask = tls.requestClientCertificate ?? clients.length > 0;
  if (typeof ask !== 'boolean') throw new ConfigError('http.tls.requestClientCertificate must be true or false');
  const caFile = file('caFile', true);
  if (ask && caFile === undefined) throw new ConfigError('http.tls.requestClientCertificate needs http.tls.caFile (the CA that signs client certificates)');
  if (clients.length > 0 && !ask) throw new ConfigError('http.tls.clients need requestClientCertificate: true');
  c.tls = { certFile: file('certFile')!, keyFile: file('keyFile')!, ...(caFile !== undefined ? { caFile } : {}), requestClientCertificate: ask, minVersion, clients };
}

function parseHttpTlsClients(value: unknown, sites: AtriumConfig['sites']): HttpTlsClient[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new ConfigError('http.tls.clients must be a list');
  const names = new Set<string>();
  return value.map((entry: unknown, i) => {
    const where = `http.tls.clients[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(`${where} must be a mapping`);
    const e = entry as Record<string, unknown>;
    const name = required(e, 'name', where);
    if (names.has(name)) throw new ConfigError(`${where}.name ${name} is used twice`);
    names.add(name);
    // As openssl prints it (AB:CD:...) or plain hex.
    const certificateSha256 = required(e, 'certificateSha256', where).replace(/:/g, '').toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(certificateSha256)) throw new ConfigError(`${where}.certificateSha256 must be the certificate's SHA-256 fingerprint (64 hex digits)`);
    const site = required(e, 'site', where);
    if (!sites.some((s) => s.code === site)) throw new ConfigError(`${where}.site ${site} is not a configured site`);
    const territory = e.territory ?? false;
    if (typeof territory !== 'boolean') throw new ConfigError(`${where}.territory must be true or false`);
    return { name, certificateSha256, site, territory };
  });
}

function parsePeers(value: unknown, sites: AtriumConfig['sites']): PeerConfig[] {
  if (!Array.isArray(value)) throw new ConfigError('peers must be a list');
  const seen = new Set<string>();
  return value.map((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry === null) throw new ConfigError(`peers[${i}] must be a mapping`);
    const e = entry as Record<string, unknown>;
    const aeTitle = required(e, 'aeTitle', `peers[${i}]`);
    if (!isValidAETitle(aeTitle)) throw new ConfigError(`peers[${i}].aeTitle ${JSON.stringify(aeTitle)} is not a valid AE title`);
    if (seen.has(aeTitle.trim())) throw new ConfigError(`peers[${i}].aeTitle ${aeTitle} is listed twice`);
    seen.add(aeTitle.trim());
    const site = required(e, 'site', `peers[${i}]`);
    if (!sites.some((s) => s.code === site)) throw new ConfigError(`peers[${i}].site ${site} is not a configured site`);
    const host = str(e, 'host');
    const port = num(e, 'port');
    if ((host === undefined) !== (port === undefined)) throw new ConfigError(`peers[${i}]: host and port go together`);
    const may = obj(e, 'may');
    const flag = (k: string, dflt: boolean) => {
      const v = may[k];
      if (v === undefined) return dflt;
      if (typeof v !== 'boolean') throw new ConfigError(`peers[${i}].may.${k} must be true or false`);
      return v;
    };
    return {
      aeTitle: aeTitle.trim(), host, port, site,
      tls: e.tls === true,
      ...(e.territory === true ? { territory: true } : {}),
      may: { store: flag('store', true), query: flag('query', true), retrieve: flag('retrieve', true) },
      ...(peerTimeout(e, i) !== undefined ? { timeoutSeconds: peerTimeout(e, i) } : {}),
    };
  });
}

function peerTimeout(e: Record<string, unknown>, i: number): number | undefined {
  const t = e.timeoutSeconds;
  if (t === undefined) return undefined;
  if (typeof t !== 'number' || !Number.isFinite(t) || t < 1 || t > 3600) throw new ConfigError(`peers[${i}].timeoutSeconds must be a number of seconds from 1 to 3600`);
  return t;
}

function parseApiClients(value: unknown, sites: AtriumConfig['sites']): AtriumConfig['apiClients'] {
  if (!Array.isArray(value)) throw new ConfigError('apiClients must be a list');
  return value.map((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry === null) throw new ConfigError(`apiClients[${i}] must be a mapping`);
    const e = entry as Record<string, unknown>;
    const tokenSha256 = required(e, 'tokenSha256', `apiClients[${i}]`).toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(tokenSha256)) throw new ConfigError(`apiClients[${i}].tokenSha256 must be a hex SHA-256 (never the token itself)`);
    const site = required(e, 'site', `apiClients[${i}]`);
    if (!sites.some((s) => s.code === site)) throw new ConfigError(`apiClients[${i}].site ${site} is not a configured site`);
    const territory = e.territory ?? false;
    if (typeof territory !== 'boolean') throw new ConfigError(`apiClients[${i}].territory must be true or false`);
    return { name: required(e, 'name', `apiClients[${i}]`), tokenSha256, site, territory };
  });
}

function parseRouting(r: Record<string, unknown>, config: AtriumConfig): void {
  const c = config.routing;
  const retry = obj(r, 'retry');
  c.retry.baseDelayMs = num(retry, 'baseDelayMs') ?? c.retry.baseDelayMs;
  c.retry.maxDelayMs = num(retry, 'maxDelayMs') ?? c.retry.maxDelayMs;
  c.retry.maxAttempts = num(retry, 'maxAttempts') ?? c.retry.maxAttempts;
  if (c.retry.baseDelayMs < 1) throw new ConfigError('routing.retry.baseDelayMs must be at least 1');
  if (c.retry.maxDelayMs < c.retry.baseDelayMs) throw new ConfigError('routing.retry.maxDelayMs must be at least baseDelayMs');
  if (c.retry.maxAttempts < 1) throw new ConfigError('routing.retry.maxAttempts must be at least 1');
  c.associationsPerPeer = num(r, 'associationsPerPeer') ?? c.associationsPerPeer;
  if (c.associationsPerPeer < 1 || c.associationsPerPeer > 64) throw new ConfigError('routing.associationsPerPeer must be between 1 and 64');
  c.pollIntervalMs = num(r, 'pollIntervalMs') ?? c.pollIntervalMs;
  if (c.pollIntervalMs < 10) throw new ConfigError('routing.pollIntervalMs must be at least 10');
  c.claimLeaseSeconds = num(r, 'claimLeaseSeconds') ?? c.claimLeaseSeconds;
  if (!(c.claimLeaseSeconds >= 1)) throw new ConfigError('routing.claimLeaseSeconds must be at least 1');
  if (r.rules === undefined || r.rules === null) return;
  if (!Array.isArray(r.rules)) throw new ConfigError('routing.rules must be a list');
  const names = new Set<string>();
  c.rules = r.rules.map((entry: unknown, i) => {
    const where = `routing.rules[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(`${where} must be a mapping`);
    const e = entry as Record<string, unknown>;
    const name = required(e, 'name', where);
    if (names.has(name)) throw new ConfigError(`${where}.name ${name} is used twice`);
    names.add(name);
    const list = (key: string): string[] | undefined => {
      const v = e[key];
      if (v === undefined || v === null) return undefined;
      const values = typeof v === 'string' ? [v] : v;
      if (!Array.isArray(values) || values.length === 0 || values.some((x) => typeof x !== 'string' || x.trim() === '')) {
        throw new ConfigError(`${where}.${key} must be a non-empty list of strings`);
      }
      return values.map((x: string) => x.trim());
    };
    const sites = list('sites');
    for (const s of sites ?? []) if (!config.sites.some((site) => site.code === s)) throw new ConfigError(`${where}.sites: ${s} is not a configured site`);
    const destinations = list('destinations');
    if (!destinations) throw new ConfigError(`${where}.destinations is required`);
    // A destination not in this file may be a peer added in the portal (kept in the index):
    // checked at start, once the index is open (checkRoutingDestinations).
    for (const d of destinations) {
      const peer = config.peers.find((p) => p.aeTitle === d);
      if (peer && (!peer.host || !peer.port)) throw new ConfigError(`${where}.destinations: peer ${d} has no host and port to send to`);
    }
    const known = new Set(['name', 'sites', 'modalities', 'SOPClassUIDs', 'callingAETitles', 'destinations']);
    const unknown = Object.keys(e).find((k) => !known.has(k));
    if (unknown) throw new ConfigError(`${where}.${unknown} is not a rule condition (sites, modalities, SOPClassUIDs, callingAETitles)`);
    return {
      name, sites,
      modalities: list('modalities')?.map((m) => m.toUpperCase()),
      SOPClassUIDs: list('SOPClassUIDs'),
      callingAETitles: list('callingAETitles'),
      destinations,
    };
  });
}

function parseHl7(h: Record<string, unknown>, env: Env, config: AtriumConfig): void {
  const c = config.hl7;
  if (h.enabled !== undefined) {
    if (typeof h.enabled !== 'boolean') throw new ConfigError('hl7.enabled must be true or false');
    c.enabled = h.enabled;
  }
  c.host = env.ATRIUM_HL7_HOST ?? str(h, 'host') ?? c.host;
  c.port = int(env.ATRIUM_HL7_PORT, 'ATRIUM_HL7_PORT') ?? num(h, 'port') ?? c.port;
  c.maxMessageBytes = num(h, 'maxMessageBytes') ?? c.maxMessageBytes;
  if (c.maxMessageBytes < 1024) throw new ConfigError('hl7.maxMessageBytes must be at least 1024');
  c.maxConnections = num(h, 'maxConnections') ?? c.maxConnections;
  if (!Number.isInteger(c.maxConnections) || c.maxConnections < 1) throw new ConfigError('hl7.maxConnections must be a positive integer');
  for (const k of ['idleTimeoutMs', 'frameTimeoutMs'] as const) {
    c[k] = num(h, k) ?? c[k];
    if (!Number.isInteger(c[k]) || c[k] < 100) throw new ConfigError(`hl7.${k} must be an integer of at least 100`);
  }
  const charset = str(h, 'defaultCharacterSet') ?? c.defaultCharacterSet;
  if (charset !== '8859/1' && charset !== 'UNICODE UTF-8' && charset !== 'ASCII') {
    throw new ConfigError(`hl7.defaultCharacterSet must be 8859/1, UNICODE UTF-8 or ASCII, not ${charset}`);
  }
  c.defaultCharacterSet = charset;
  if (h.senders === undefined || h.senders === null) return;
  if (!Array.isArray(h.senders)) throw new ConfigError('hl7.senders must be a list');
  const seen = new Set<string>();
  c.senders = h.senders.map((entry: unknown, i) => {
    const where = `hl7.senders[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(`${where} must be a mapping`);
    const e = entry as Record<string, unknown>;
    const application = required(e, 'application', where);
    const facility = required(e, 'facility', where);
    const key = `${application}|${facility}`;
    if (seen.has(key)) throw new ConfigError(`${where}: application ${application} of facility ${facility} is listed twice`);
    seen.add(key);
    const site = required(e, 'site', where);
    if (!config.sites.some((s) => s.code === site)) throw new ConfigError(`${where}.site ${site} is not a configured site`);
    const stationAETitle = str(e, 'stationAETitle');
    if (stationAETitle !== undefined && !isValidAETitle(stationAETitle)) throw new ConfigError(`${where}.stationAETitle is not a valid AE title`);
    const teleradiologySpecialty = str(e, 'teleradiologySpecialty');
    if (teleradiologySpecialty !== undefined && !/^[a-z0-9-]{1,32}$/.test(teleradiologySpecialty)) throw new ConfigError(`${where}.teleradiologySpecialty must be a specialty code (lower-case letters, digits, -)`);
    return { application, facility, site, ...(stationAETitle !== undefined ? { stationAETitle } : {}), ...(teleradiologySpecialty !== undefined ? { teleradiologySpecialty } : {}) };
  });
}

function parseTeleradiology(t: Record<string, unknown>, config: AtriumConfig): void {
  const c = config.teleradiology;
  const positive = (value: number | undefined, where: string, dflt: number) => {
    if (value === undefined) return dflt;
    if (!Number.isInteger(value) || value < 1) throw new ConfigError(`teleradiology.${where} must be a positive integer`);
    return value;
  };
  c.claimMinutes = positive(num(t, 'claimMinutes'), 'claimMinutes', c.claimMinutes);
  const d = obj(t, 'deadlineMinutes');
  for (const k of ['routine', 'urgent', 'stroke'] as const) c.deadlineMinutes[k] = positive(num(d, k), `deadlineMinutes.${k}`, c.deadlineMinutes[k]);
  const e = obj(t, 'escalateBeforeMinutes');
  for (const k of ['routine', 'urgent', 'stroke'] as const) {
    c.escalateBeforeMinutes[k] = positive(num(e, k), `escalateBeforeMinutes.${k}`, c.escalateBeforeMinutes[k]);
    if (c.escalateBeforeMinutes[k] >= c.deadlineMinutes[k]) throw new ConfigError(`teleradiology.escalateBeforeMinutes.${k} must be shorter than deadlineMinutes.${k}`);
  }
  c.strokeSpecialty = str(t, 'strokeSpecialty') ?? c.strokeSpecialty;
  const timeZone = str(t, 'timeZone');
  if (timeZone !== undefined) {
    try { new Intl.DateTimeFormat('fr-FR', { timeZone }); } catch { throw new ConfigError(`teleradiology.timeZone: ${timeZone} is not an IANA time zone (e.g. Europe/Paris)`); }
    c.timeZone = timeZone;
  }
  c.pollMs = positive(num(t, 'pollMs'), 'pollMs', c.pollMs);
  const delivery = obj(t, 'delivery');
  for (const k of ['ackTimeoutMs', 'retryBaseMs', 'maxAttempts', 'pollMs'] as const) c.delivery[k] = positive(num(delivery, k), `delivery.${k}`, c.delivery[k]);
  const webhookUrl = str(obj(t, 'alerts'), 'webhookUrl');
  if (webhookUrl !== undefined) {
    let url: URL;
    try {
      url = new URL(webhookUrl);
    } catch {
      throw new ConfigError('teleradiology.alerts.webhookUrl is not a URL');
    }
    const loopback = url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]';
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) throw new ConfigError('teleradiology.alerts.webhookUrl must be an https URL (http on loopback only)');
    c.alerts = { webhookUrl };
  }
  const mssante = parseMssante(t.mssante, config.sites.map((s) => s.code));
  if (mssante) c.mssante = mssante;
  if (t.sites === undefined) return;
  if (!Array.isArray(t.sites)) throw new ConfigError('teleradiology.sites must be a list');
  c.sites = t.sites.map((entry: unknown, i) => {
    const where = `teleradiology.sites[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(`${where} must be a mapping`);
    const e = entry as Record<string, unknown>;
    const site = required(e, 'site', where);
    if (!config.sites.some((s) => s.code === site)) throw new ConfigError(`${where}.site ${site} is not a configured site`);
    if (e.oru === undefined) return { site };
    const o = obj(e, 'oru');
    const port = num(o, 'port');
    if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`${where}.oru.port must be a TCP port`);
    const characterSet = str(o, 'characterSet') ?? '8859/1';
    if (!isSupportedCharacterSet(characterSet)) throw new ConfigError(`${where}.oru.characterSet must be ASCII, 8859/1, 8859/15 or UNICODE UTF-8`);
    return { site, oru: { host: required(o, 'host', `${where}.oru`), port, application: str(o, 'application') ?? 'RIS', facility: str(o, 'facility') ?? site, characterSet } };
  });
}

const dmpSectorDefault: DmpCoded = { code: 'SA01', scheme: '1.2.250.1.71.4.2.4', display: 'Etablissement public de santé' };
const dmpPracticeDefault: DmpCoded = { code: 'ETABLISSEMENT', scheme: '1.2.250.1.213.1.1.4.9', display: 'Etablissement de santé' };

function parseDmpCoded(raw: Record<string, unknown>, key: string, where: string, fallback: DmpCoded): DmpCoded {
  if (raw[key] === undefined) return fallback;
  const c = obj(raw, key);
  return { code: required(c, 'code', `${where}.${key}`), scheme: required(c, 'scheme', `${where}.${key}`), display: required(c, 'display', `${where}.${key}`) };
}

/** A section's keys must be among those it knows: a misspelt key is an error, not a silent default. */
function refuseUnknownKeys(section: Record<string, unknown>, known: ReadonlySet<string>, where: string): void {
  const unknown = Object.keys(section).find((k) => !known.has(k));
  if (unknown) throw new ConfigError(`${where}.${unknown} is not a key of ${where} (${[...known].join(', ')})`);
}

/** A file the configuration names, which must exist. */
function existingFile(value: string, key: string): string {
  if (!existsSync(value)) throw new ConfigError(`${key}: file not found: ${value}`);
  return value;
}

/** A national service reached over HTTPS with the site's certificate: its https endpoint and the CA that signs it, or undefined when no endpoint is set. */
function httpsServiceOf(d: Record<string, unknown>, where: string): { endpoint: string; caFile: string } | undefined {
  const endpoint = str(d, 'endpoint');
  if (endpoint === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new ConfigError(`${where}.endpoint is not a URL`);
  }
  if (url.protocol !== 'https:') throw new ConfigError(`${where}.endpoint must be an https URL`);
  return { endpoint, caFile: existingFile(required(d, 'caFile', where), `${where}.caFile`) };
}

function parseDmp(d: Record<string, unknown>, config: AtriumConfig): void {
  const c = config.dmp;
  const where = 'dmp';
  const known = new Set(['endpoint', 'caFile', 'timeoutMs', 'vihfIssuer', 'sourceId', 'software', 'retry', 'pollMs', 'sites']);
  refuseUnknownKeys(d, known, where);
  const file = existingFile;
  // The service authenticates the site by its certificate: there is no plain-HTTP mode.
  const service = httpsServiceOf(d, where);
  if (service) {
    c.endpoint = service.endpoint;
    c.caFile = service.caFile;
  }
  c.timeoutMs = num(d, 'timeoutMs') ?? c.timeoutMs;
  if (c.timeoutMs < 100 || c.timeoutMs > 600_000) throw new ConfigError(`${where}.timeoutMs must be between 100 and 600000`);
  c.vihfIssuer = str(d, 'vihfIssuer') ?? c.vihfIssuer;
  const sourceId = str(d, 'sourceId');
  if (sourceId !== undefined) {
    if (!/^[0-2](\.(0|[1-9][0-9]*))+$/.test(sourceId) || sourceId.length > 64) throw new ConfigError(`${where}.sourceId must be an OID`);
    c.sourceId = sourceId;
  }
  const software = obj(d, 'software');
  c.software = { name: str(software, 'name') ?? c.software.name, version: str(software, 'version') ?? c.software.version, approval: str(software, 'approval') ?? c.software.approval };
  const retry = obj(d, 'retry');
  c.retry = { baseDelayMs: num(retry, 'baseDelayMs') ?? c.retry.baseDelayMs, maxDelayMs: num(retry, 'maxDelayMs') ?? c.retry.maxDelayMs, maxAttempts: num(retry, 'maxAttempts') ?? c.retry.maxAttempts };
  if (c.retry.baseDelayMs < 10 || c.retry.maxDelayMs < c.retry.baseDelayMs) throw new ConfigError(`${where}.retry: baseDelayMs at least 10, maxDelayMs at least baseDelayMs`);
  if (c.retry.maxAttempts < 1) throw new ConfigError(`${where}.retry.maxAttempts must be at least 1`);
  c.pollMs = num(d, 'pollMs') ?? c.pollMs;
  if (c.pollMs < 10) throw new ConfigError(`${where}.pollMs must be at least 10`);
  if (d.sites === undefined) return;
  if (!Array.isArray(d.sites)) throw new ConfigError(`${where}.sites must be a list`);
  const siteKeys = new Set(['site', 'certFile', 'keyFile', 'keyPassphraseEnv', 'structureId', 'sector', 'practiceSetting']);
  c.sites = d.sites.map((entry: unknown, i) => {
    const at = `${where}.sites[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(`${at} must be a mapping`);
    const e = entry as Record<string, unknown>;
    if (e.keyPassphrase !== undefined || e.key !== undefined) throw new ConfigError(`${at}: a key or its passphrase never goes in the file: keyFile, and keyPassphraseEnv names the environment variable holding the passphrase`);
    refuseUnknownKeys(e, siteKeys, at);
    const site = required(e, 'site', at);
    if (!config.sites.some((s) => s.code === site)) throw new ConfigError(`${at}.site ${site} is not a configured site`);
    const keyPassphraseEnv = str(e, 'keyPassphraseEnv');
    if (keyPassphraseEnv !== undefined && !/^[A-Z_][A-Z0-9_]*$/.test(keyPassphraseEnv)) throw new ConfigError(`${at}.keyPassphraseEnv must name an environment variable`);
    const structureId = str(e, 'structureId');
    return {
      site, certFile: file(required(e, 'certFile', at), `${at}.certFile`)!, keyFile: file(required(e, 'keyFile', at), `${at}.keyFile`)!,
      ...(keyPassphraseEnv !== undefined ? { keyPassphraseEnv } : {}), ...(structureId !== undefined ? { structureId } : {}),
      sector: parseDmpCoded(e, 'sector', at, dmpSectorDefault), practiceSetting: parseDmpCoded(e, 'practiceSetting', at, dmpPracticeDefault),
    };
  });
  const seen = new Set<string>();
  for (const s of c.sites) {
    if (seen.has(s.site)) throw new ConfigError(`${where}.sites names ${s.site} twice`);
    seen.add(s.site);
  }
}

function parseInsi(d: Record<string, unknown>, config: AtriumConfig): void {
  const c = config.insi;
  const where = 'insi';
  const known = new Set(['endpoint', 'caFile', 'timeoutMs', 'software', 'emitter', 'sites']);
  refuseUnknownKeys(d, known, where);
  const file = existingFile;
  // The service authenticates the site by its certificate: there is no plain-HTTP mode.
  const service = httpsServiceOf(d, where);
  if (service) {
    c.endpoint = service.endpoint;
    c.caFile = service.caFile;
  }
  c.timeoutMs = num(d, 'timeoutMs') ?? c.timeoutMs;
  if (c.timeoutMs < 100 || c.timeoutMs > 120_000) throw new ConfigError(`${where}.timeoutMs must be between 100 and 120000`);
  const software = obj(d, 'software');
  c.software = { name: str(software, 'name') ?? c.software.name, version: str(software, 'version') ?? c.software.version, approval: str(software, 'approval') ?? c.software.approval };
  const emitter = str(d, 'emitter');
  if (emitter !== undefined) c.emitter = emitter;
  if (d.sites === undefined) return;
  if (!Array.isArray(d.sites)) throw new ConfigError(`${where}.sites must be a list`);
  const siteKeys = new Set(['site', 'certFile', 'keyFile', 'keyPassphraseEnv']);
  const seen = new Set<string>();
  c.sites = d.sites.map((entry: unknown, i) => {
    const at = `${where}.sites[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(`${at} must be a mapping`);
    const e = entry as Record<string, unknown>;
    if (e.keyPassphrase !== undefined || e.key !== undefined) throw new ConfigError(`${at}: a key or its passphrase never goes in the file: keyFile, and keyPassphraseEnv names the environment variable holding the passphrase`);
    refuseUnknownKeys(e, siteKeys, at);
    const site = required(e, 'site', at);
    if (!config.sites.some((s) => s.code === site)) throw new ConfigError(`${at}.site ${site} is not a configured site`);
    if (seen.has(site)) throw new ConfigError(`${where}.sites names ${site} twice`);
    seen.add(site);
    const keyPassphraseEnv = str(e, 'keyPassphraseEnv');
    if (keyPassphraseEnv !== undefined && !/^[A-Z_][A-Z0-9_]*$/.test(keyPassphraseEnv)) throw new ConfigError(`${at}.keyPassphraseEnv must name an environment variable`);
    return { site, certFile: file(required(e, 'certFile', at), `${at}.certFile`), keyFile: file(required(e, 'keyFile', at), `${at}.keyFile`), ...(keyPassphraseEnv !== undefined ? { keyPassphraseEnv } : {}) };
  });
}

function parseAudit(a: Record<string, unknown>, config: AtriumConfig): void {
  const s = obj(a, 'syslog');
  if (Object.keys(s).length === 0) return;
  const where = 'audit.syslog';
  const known = new Set(['host', 'port', 'caFile', 'certFile', 'keyFile', 'auditSourceId', 'pollMs']);
  refuseUnknownKeys(s, known, where);
  const port = num(s, 'port') ?? 6514;
  if (port < 1 || port > 65535) throw new ConfigError(`${where}.port must be between 1 and 65535`);
  const file = (key: string, value: string | undefined): string | undefined => {
    if (value !== undefined && !existsSync(value)) throw new ConfigError(`${where}.${key}: file not found: ${value}`);
    return value;
  };
  // The collector is always verified: there is no way to turn certificate checks off.
  const caFile = file('caFile', required(s, 'caFile', where))!;
  const certFile = file('certFile', str(s, 'certFile'));
  const keyFile = file('keyFile', str(s, 'keyFile'));
  if ((certFile === undefined) !== (keyFile === undefined)) throw new ConfigError(`${where}: certFile and keyFile go together`);
  const pollMs = num(s, 'pollMs') ?? 1000;
  if (pollMs < 10) throw new ConfigError(`${where}.pollMs must be at least 10`);
  const auditSourceId = str(s, 'auditSourceId') ?? hostname();
  if (auditSourceId.trim() === '') throw new ConfigError(`${where}.auditSourceId must not be empty`);
  config.audit.syslog = {
    host: required(s, 'host', where), port, caFile,
    ...(certFile !== undefined ? { certFile, keyFile } : {}),
    auditSourceId, pollMs,
  };
}

function parseAuditAnchor(a: Record<string, unknown>, env: Env, dataDir: string, config: AtriumConfig): void {
  const where = 'audit.anchor';
  if (a.key !== undefined) throw new ConfigError(`${where}.key must not be in the file: set ATRIUM_AUDIT_ANCHOR_KEY`);
  const known = new Set(['file', 'everySeconds']);
  refuseUnknownKeys(a, known, where);
  const file = str(a, 'file');
  if (file !== undefined) config.audit.anchor.file = path.resolve(dataDir, file);
  const every = num(a, 'everySeconds') ?? config.audit.anchor.everySeconds;
  if (!Number.isInteger(every) || every < 1 || every > 86_400) throw new ConfigError(`${where}.everySeconds must be a whole number of seconds from 1 to 86400`);
  config.audit.anchor.everySeconds = every;
  const key = env.ATRIUM_AUDIT_ANCHOR_KEY;
  if (key !== undefined && key !== '') {
    // 32 characters at least: a generated key (openssl rand -base64 32) has 44.
    if (key.length < 32) throw new ConfigError('ATRIUM_AUDIT_ANCHOR_KEY must be at least 32 characters (openssl rand -base64 32)');
    config.audit.anchor.key = key;
  }
}

function parseAuth(a: Record<string, unknown>, env: Env, config: AtriumConfig): void {
  const c = config.auth;
  const o = obj(a, 'oidc');
  if (Object.keys(o).length > 0) {
    const issuer = httpsUrl(required(o, 'issuer', 'auth.oidc'), 'auth.oidc.issuer');
    const clientSecret = env.ATRIUM_OIDC_CLIENT_SECRET;
    if (o.clientSecret !== undefined) throw new ConfigError('auth.oidc.clientSecret must not be in the file: set ATRIUM_OIDC_CLIENT_SECRET');
    if (!clientSecret) throw new ConfigError('auth.oidc is configured but ATRIUM_OIDC_CLIENT_SECRET is not set');
    const method = str(o, 'tokenEndpointAuthMethod') ?? 'client_secret_basic';
    if (method !== 'client_secret_basic' && method !== 'client_secret_post') {
      throw new ConfigError('auth.oidc.tokenEndpointAuthMethod must be client_secret_basic or client_secret_post');
    }
    const rawScopes = o.scopes ?? 'openid';
    if (typeof rawScopes !== 'string' && !(Array.isArray(rawScopes) && rawScopes.every((x) => typeof x === 'string'))) {
      throw new ConfigError('auth.oidc.scopes must be a string ("openid scope_all") or a list of strings');
    }
    const scopes = (typeof rawScopes === 'string' ? rawScopes.split(/\s+/) : rawScopes as string[]).filter((x) => x !== '');
    if (!scopes.includes('openid')) throw new ConfigError('auth.oidc.scopes must include openid');
    c.oidc = {
      issuer, clientId: required(o, 'clientId', 'auth.oidc'), clientSecret, tokenEndpointAuthMethod: method,
      redirectUri: httpsUrl(required(o, 'redirectUri', 'auth.oidc'), 'auth.oidc.redirectUri'),
      ...(str(o, 'postLogoutRedirectUri') !== undefined ? { postLogoutRedirectUri: httpsUrl(str(o, 'postLogoutRedirectUri')!, 'auth.oidc.postLogoutRedirectUri') } : {}),
      scopes, acrValues: str(o, 'acrValues'), rppsClaim: str(o, 'rppsClaim') ?? 'SubjectNameID',
    };
  }
  const t = obj(a, 'accessTokens');
  if (Object.keys(t).length > 0) {
    const issuer = str(t, 'issuer') ?? c.oidc?.issuer;
    if (!issuer) throw new ConfigError('auth.accessTokens.issuer is required when auth.oidc is not configured');
    const algorithms = t.algorithms === undefined ? ['RS256', 'PS256', 'ES256'] : t.algorithms;
    if (!Array.isArray(algorithms) || algorithms.length === 0
      || algorithms.some((x) => !(asymmetricAlgorithms as readonly unknown[]).includes(x))) {
      throw new ConfigError(`auth.accessTokens.algorithms must be a non-empty list of ${asymmetricAlgorithms.join(', ')}`);
    }
    const jwksUri = str(t, 'jwksUri');
    c.accessTokens = {
      issuer: httpsUrl(issuer, 'auth.accessTokens.issuer'),
      audience: required(t, 'audience', 'auth.accessTokens'),
      ...(jwksUri !== undefined ? { jwksUri: httpsUrl(jwksUri, 'auth.accessTokens.jwksUri') } : {}),
      algorithms: algorithms as string[],
      clockToleranceSeconds: num(t, 'clockToleranceSeconds') ?? 30,
    };
    if (c.accessTokens.clockToleranceSeconds > 300) throw new ConfigError('auth.accessTokens.clockToleranceSeconds must be at most 300');
  }
  if (a.clients !== undefined && a.clients !== null) {
    if (!Array.isArray(a.clients)) throw new ConfigError('auth.clients must be a list');
    const seen = new Set<string>();
    c.clients = a.clients.map((entry: unknown, i) => {
      const where = `auth.clients[${i}]`;
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(`${where} must be a mapping`);
      const e = entry as Record<string, unknown>;
      const clientId = required(e, 'clientId', where);
      if (seen.has(clientId)) throw new ConfigError(`${where}.clientId ${clientId} is listed twice`);
      seen.add(clientId);
      const site = required(e, 'site', where);
      if (!config.sites.some((s) => s.code === site)) throw new ConfigError(`${where}.site ${site} is not a configured site`);
      const territory = e.territory ?? false;
      if (typeof territory !== 'boolean') throw new ConfigError(`${where}.territory must be true or false`);
      return { clientId, site, territory };
    });
    if (c.clients.length > 0 && !c.accessTokens) throw new ConfigError('auth.clients need auth.accessTokens (their tokens are bearer JWTs)');
  }
  const d = obj(a, 'drimbox');
  if (Object.keys(d).length > 0) {
    if (d.clientSecret !== undefined) throw new ConfigError('auth.drimbox.clientSecret must not be in the file: clientSecretEnv names the environment variable holding it');
    const secretEnv = str(d, 'clientSecretEnv') ?? 'ATRIUM_DRIMBOX_CLIENT_SECRET';
    const clientSecret = env[secretEnv];
    if (!clientSecret) throw new ConfigError(`auth.drimbox is configured but ${secretEnv} is not set`);
    const cacheSeconds = num(d, 'cacheSeconds') ?? 30;
    // Short: a token the provider revoked must stop opening images soon.
    if (cacheSeconds < 0 || cacheSeconds > 300) throw new ConfigError('auth.drimbox.cacheSeconds must be between 0 and 300');
    c.drimbox = {
      introspectionEndpoint: httpsUrl(required(d, 'introspectionEndpoint', 'auth.drimbox'), 'auth.drimbox.introspectionEndpoint'),
      clientId: required(d, 'clientId', 'auth.drimbox'), clientSecret, cacheSeconds, rppsClaim: str(d, 'rppsClaim') ?? 'SubjectNameID',
    };
  }
  const s = obj(a, 'sessions');
  c.sessions.idleMinutes = num(s, 'idleMinutes') ?? c.sessions.idleMinutes;
  c.sessions.absoluteHours = num(s, 'absoluteHours') ?? c.sessions.absoluteHours;
  if (c.sessions.idleMinutes < 1) throw new ConfigError('auth.sessions.idleMinutes must be at least 1');
  if (c.sessions.absoluteHours < 1) throw new ConfigError('auth.sessions.absoluteHours must be at least 1');
  if (s.secureCookie !== undefined) {
    if (typeof s.secureCookie !== 'boolean') throw new ConfigError('auth.sessions.secureCookie must be true or false');
    c.sessions.secureCookie = s.secureCookie;
  }
  c.loginAttemptsPerMinute = num(a, 'loginAttemptsPerMinute') ?? c.loginAttemptsPerMinute;
  if (c.loginAttemptsPerMinute < 1) throw new ConfigError('auth.loginAttemptsPerMinute must be at least 1');
}

/** Identity-provider URLs must be HTTPS; plain HTTP only on the loopback (development, tests). */
function httpsUrl(value: string, where: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`${where} is not a URL`);
  }
  const loopback = url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]';
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) throw new ConfigError(`${where} must be an https URL`);
  return value;
}

function obj(raw: Record<string, unknown>, key: string): Record<string, unknown> {
  const v = raw[key];
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${key} must be a mapping`);
  return v as Record<string, unknown>;
}

function str(raw: Record<string, unknown>, key: string): string | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new ConfigError(`${key} must be a string`);
  return v;
}

function num(raw: Record<string, unknown>, key: string): number | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ConfigError(`${key} must be a whole number`);
  return v;
}

function int(v: string | undefined, name: string): number | undefined {
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new ConfigError(`${name} must be a whole number`);
  return Number(v);
}

function required(raw: Record<string, unknown>, key: string, where: string): string {
  const v = raw[key];
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${where}.${key} is required`);
  return v;
}

function storageCompressionOf(value: unknown, siteCodes: string[]): StorageCompressionRule[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new ConfigError('storage.compression must be a list of rules');
  return value.map((rule: unknown, i) => {
    const where = `storage.compression[${i}]`;
    if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) throw new ConfigError(`${where} must be a mapping`);
    const r = rule as Record<string, unknown>;
    const transferSyntax = r.transferSyntax;
    if (typeof transferSyntax !== 'string' || !storageCompressionSyntaxes.includes(transferSyntax)) {
      throw new ConfigError(`${where}.transferSyntax must be one of the lossless syntaxes ${storageCompressionSyntaxes.join(', ')}`);
    }
    const list = (key: string): string[] | undefined => {
      const v = r[key];
      if (v === undefined) return undefined;
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x !== '')) throw new ConfigError(`${where}.${key} must be a list of strings`);
      return v as string[];
    };
    const sites = list('sites');
    const unknown = sites?.find((c) => !siteCodes.includes(c));
    if (unknown) throw new ConfigError(`${where}.sites names ${unknown}, which is not a configured site`);
    const sopClasses = list('sopClasses');
    return { transferSyntax, ...(sites ? { sites } : {}), ...(sopClasses ? { sopClasses } : {}) };
  });
}

function radiationOf(r: Record<string, unknown>): RadiationConfig {
  const levels = r.referenceLevels ?? [];
  if (!Array.isArray(levels)) throw new ConfigError('radiation.referenceLevels must be a list');
  const referenceLevels = levels.map((l: unknown, i): RadiationReferenceLevel => {
    const where = `radiation.referenceLevels[${i}]`;
    if (typeof l !== 'object' || l === null || Array.isArray(l)) throw new ConfigError(`${where} must be a mapping`);
    const m = l as Record<string, unknown>;
    const str = (k: string) => {
      if (typeof m[k] !== 'string' || m[k] === '') throw new ConfigError(`${where}.${k} is required`);
      return m[k] as string;
    };
    const quantity = str('quantity');
    if (!['CTDIvol', 'DLP', 'DAP'].includes(quantity)) throw new ConfigError(`${where}.quantity must be CTDIvol, DLP or DAP`);
    if (typeof m.level !== 'number' || !(m.level > 0)) throw new ConfigError(`${where}.level must be a positive number`);
    const unit = quantity === 'DAP' ? 'mGy.cm2' : quantity === 'DLP' ? 'mGy.cm' : 'mGy';
    return { modality: str('modality').toUpperCase(), region: str('region').toUpperCase(), quantity: quantity as RadiationReferenceLevel['quantity'], level: m.level, unit, label: typeof m.label === 'string' ? m.label : `${str('modality')} ${str('region')}` };
  });
  const windows = r.redundancyWindowDays ?? {};
  if (typeof windows !== 'object' || windows === null || Array.isArray(windows)) throw new ConfigError('radiation.redundancyWindowDays must be a mapping of modality to days');
  const redundancyWindowDays: Record<string, number> = {};
  for (const [k, v] of Object.entries(windows)) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 3650) throw new ConfigError(`radiation.redundancyWindowDays.${k} must be a whole number of days (0 turns the alert off)`);
    redundancyWindowDays[k.toUpperCase()] = v;
  }
  return { referenceLevels, redundancyWindowDays };
}
