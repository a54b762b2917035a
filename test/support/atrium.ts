import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import type { FastifyInstance } from 'fastify';
import { defaultConfig, type AtriumConfig } from '../../src/config/config.ts';
import { openArchive, type Archive } from '../../src/archive/archive.ts';
import { buildHttpServer, closeHttpServer } from '../../src/api/server.ts';
import { sha256Hex } from '../../src/api/auth.ts';
import { DimseServer } from '../../src/dimse/server.ts';
import { Hl7Server } from '../../src/hl7/server.ts';
import { startWorkers } from '../../src/cli/workers.ts';
import type { Forwarder } from '../../src/dimse/forwarder.ts';
import type { IdentityFromImages } from '../../src/workflow/identities-from-images.ts';
import type { TeleImagesArrival } from '../../src/workflow/tele-images.ts';
import type { ReportDelivery } from '../../src/exchange/report-delivery.ts';
import type { AuditSyslogExporter } from '../../src/access/audit-syslog.ts';

export interface RunningAtrium {
  config: AtriumConfig;
  archive: Archive;
  app: FastifyInstance;
  /** Base URL of DICOMweb, e.g. http://127.0.0.1:PORT/dicom-web */
  dicomweb: string;
  /** Bearer tokens by site code. */
  tokens: Record<string, string>;
  /** The DIMSE listener, when started (options.dimse). */
  dimse?: DimseServer;
  /** The forwarding queue's sender and router, when started (options.forwarding). */
  forwarder?: Forwarder;
  /** Reads INS from stored images; started with options.identities, else call identities.drain(). */
  identities: IdentityFromImages;
  /** The HL7 MLLP listener, when started (options.hl7). */
  hl7?: Hl7Server;
  /** Sends signed reports to their requesting sites, as `atrium serve` does; started with options.teleradiology. */
  reportDelivery?: ReportDelivery;
  /** Matches arriving images to teleradiology requests; started with options.teleradiology, else call teleImages.drain(). */
  teleImages: TeleImagesArrival;
  /** The audit export to a syslog collector, started when `configure` set config.audit.syslog. */
  auditSyslog?: AuditSyslogExporter;
  close(): Promise<void>;
}

export const testSites = [
  { code: 'CHU-NORD', name: 'CHU Nord', finess: '590000001', issuerOfPatientID: 'CHUNORD' },
  { code: 'CLIN-SUD', name: 'Clinique du Sud', finess: '590000002', issuerOfPatientID: 'CLINSUD' },
];

/**
 * Starts Atrium in this process on a free loopback port, with its own data folder,
 * two sites and a token for each. `index` picks the engine (see test/support/databases.ts).
 */
export async function startAtrium(options: {
  index?: AtriumConfig['index'];
  storage?: AtriumConfig['storage'];
  configure?: (config: AtriumConfig) => void;
  /** Also read identities (INS) from stored images in the background (tests may call drain instead). */
  identities?: boolean;
  /** Also start the DIMSE SCP on a free loopback port (AE title ATRIUM). */
  dimse?: boolean;
  /** Also start the Forwarder (routing rules and the forwarding queue). */
  forwarding?: boolean;
  /** Also start the HL7 v2 MLLP listener on a free loopback port (senders from `configure`). */
  hl7?: boolean;
  /** Also match arriving images to teleradiology requests in the background. */
  teleradiology?: boolean;
  /** Reuse this data folder (a restart); it is then left in place on close. */
  dataDir?: string;
  /** Called with the app before it listens (to add a route a test probes). */
  beforeListen?: (app: FastifyInstance) => void | Promise<void>;
} = {}): Promise<RunningAtrium> {
  const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), 'atrium-test-'));
  const config = defaultConfig(dataDir);
  config.http.port = 0;
  if (options.index) config.index = options.index;
  if (options.storage) config.storage = options.storage;
  config.sites = testSites.map((s) => ({ ...s }));
  const tokens: Record<string, string> = {};
  config.apiClients = testSites.map((s) => {
    tokens[s.code] = randomBytes(24).toString('base64url');
    return { name: `client-${s.code}`, tokenSha256: sha256Hex(tokens[s.code]!), site: s.code, territory: true };
  });
  config.log.level = process.env.ATRIUM_TEST_LOG ?? 'silent';
  config.dimse.port = 0;
  config.dimse.idleTimeoutMs = 30_000;
  // Served over plain HTTP on loopback, where a Secure cookie never comes back; tests log in often.
  config.auth.sessions.secureCookie = false;
  config.auth.loginAttemptsPerMinute = 1000;
  config.hl7.port = 0;
  options.configure?.(config);
  const logger = pino({ level: config.log.level });
  // As `atrium serve` opens it: ingest through the journal, recovered at start.
  const archive = await openArchive(config, logger, { journal: true });
  const app = await buildHttpServer(config, archive, logger);
  await options.beforeListen?.(app);
  // Port 0 (a free one) unless `configure` chose one (a redirect URI registered beforehand).
  await app.listen({ host: '127.0.0.1', port: config.http.port });
  const port = (app.server.address() as { port: number }).port;
  let dimse: DimseServer | undefined;
  if (options.dimse) {
    dimse = new DimseServer(config.dimse, archive, logger.child({ component: 'dimse' }));
    await dimse.listen();
  }
  // The same workers as `atrium serve` (src/cli/workers.ts), started as the test asks.
  const workers = await startWorkers(archive, config, logger, {
    auditHostname: 'atrium-test',
    pollMs: 100,
    start: [
      ...(options.identities ? ['identities' as const] : []),
      ...(options.teleradiology ? ['teleradiology' as const, 'reportDelivery' as const] : []),
      ...(options.forwarding ? ['forwarding' as const] : []),
      ...(config.audit.syslog ? ['auditExport' as const] : []),
    ],
  }).catch(async (e: unknown) => {
    // Refused at start (a routing rule naming no peer): what was opened is closed, as the CLI's exit does.
    await dimse?.close();
    await app.close();
    await archive.close();
    throw e;
  });
  const { identities, teleImages } = workers;
  const forwarder = options.forwarding ? workers.forwarder : undefined;
  const reportDelivery = options.teleradiology ? workers.reportDelivery : undefined;
  const auditSyslog = config.audit.syslog ? workers.auditExport : undefined;
  let hl7: Hl7Server | undefined;
  if (options.hl7) {
    hl7 = new Hl7Server(config.hl7, archive, logger.child({ component: 'hl7' }), config.teleradiology);
    await hl7.listen();
  }
  return {
    config, archive, app, tokens, dimse, forwarder, hl7, identities, teleImages, reportDelivery, auditSyslog,
    dicomweb: `${config.http.tls ? 'https' : 'http'}://127.0.0.1:${port}/dicom-web`,
    async close() {
      await hl7?.close(500);
      await dimse?.close(500);
      await closeHttpServer(app, 500);
      await workers.stop(500);
      await archive.close();
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
