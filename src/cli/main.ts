import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { hostname } from 'node:os';
import { pino, type Logger } from 'pino';
import { loadConfig, ConfigError, type AtriumConfig } from '../config/config.ts';
import { ingestJournalDir, openArchive } from '../archive/archive.ts';
import { journaledKeys } from '../storage/ingest-journal.ts';
import { reindexArchive, verifyArchive } from '../archive/maintenance.ts';
import { buildHttpServer, closeHttpServer } from '../api/server.ts';
import { compileRouteSchemas } from '../api/lazy-schema-compilers.ts';
import { DimseServer } from '../dimse/server.ts';
import { sha256Hex } from '../api/auth.ts';
import { runExport, runImport } from './media.ts';
import { Hl7Server } from '../hl7/server.ts';
import { ForwardingQueue } from '../index/forwarding-queue.ts';
import { runSend } from './send.ts';
import { runAuditCommand } from './audit.ts';
import { AuditAnchoring, anchorKeyOf, type AnchorKey } from '../access/audit-anchor.ts';
import { startWorkers } from './workers.ts';
import { runLifecycleCommand } from './lifecycle.ts';
import { runUserCommand } from './users.ts';
import { UserError } from '../access/users.ts';
import { ensureFirstAdministrator } from './first-admin.ts';
import { dimseFirstStepHint, runPeerCommand } from './peers.ts';
import { runDemoCommand } from './demo.ts';
import { runBillingCommand } from './billing.ts';

const usage = `atrium <command> [options]

Commands:
  serve     start the archive (HTTP DICOMweb on 127.0.0.1:8042 by default)
  reindex   rebuild the index from the stored objects
  verify    check that every indexed object is stored intact and every stored object indexed
              --repair             remove rows of lost objects, delete orphan blobs past the grace period
              --no-checksums       compare sizes only (fast)
              --grace-seconds N    orphans younger than N seconds are left alone (default 3600)
  import <folder|DICOMDIR> [--site CODE]
            ingest every DICOM file of a folder, CD or DVD (or those a DICOMDIR references)
            for a site (default: the first configured); exit code 1 if any object was refused
  export <StudyInstanceUID> [<folder>] [--zip FILE]
  export --patient PatientID [<folder>] [--zip FILE]
            write the study (or every study of the patient) as a media file-set with a
            DICOMDIR into an empty folder, and/or as a ZIP file of the same layout
  send <file|folder>... --to AE [--window N]
            send DICOM files to a configured peer (C-STORE, each in its own transfer
            syntax, up to N outstanding when the peer allows; default 8); exit code 1 if
            any was refused
  audit verify [--anchors FILE]
            walk the audit trail's hash chain and check it against the signed anchors of
            its head (audit.anchor.file, or FILE); exit code 1 and why if a record was
            edited or removed, its end cut off, or the chain rewritten
  audit anchor
            anchor the trail's head now (serve does it at start, every
            audit.anchor.everySeconds and at shutdown)
  audit patient <PatientID> [--site CODE] [--issuer ISSUER]
            who accessed or changed this patient record's data ("who looked at my images?")
  user add <login> --name "Display Name" --role ROLE [--role ROLE] --site CODE [--site CODE]
           [--rpps 11 digits] [--patient SITE:PatientID] [--password-stdin]
            provision a user: a professional matched by RPPS at their first Pro Santé Connect
            login, or a local account whose password is read from stdin; roles: territory-admin,
            site-admin, radiologist, technologist, referring-physician, patient (with --patient,
            the record whose exams they see)
  user list the users, their roles and sites (never a password)
  lifecycle [--dry-run] [--now YYYY-MM-DD] [--site CODE]
            the studies past their retention and why (lifecycle.retention rules, legal
            holds); --dry-run changes nothing, otherwise the list for review is replaced;
            an administrator approves each deletion (POST /api/lifecycle/approvals)
  demo [--force]
            load a small demonstration territory (two sites, patients with test INS, CT
            series, priors at the other site, a teleradiology request, demo accounts);
            loading it again changes nothing; refused on a database holding other patient
            records unless --force
  peer add <AE> --site CODE [--host H --port P] [--store] [--query] [--retrieve]
            let a DICOM modality or workstation in: adds it to the configuration file (or,
            on embedded defaults, prints the YAML to put in one); none of --store, --query,
            --retrieve: store only (a modality); restart serve to take it into account
  billing invoice --site CODE --month YYYY-MM [--pdf FILE]
            the site's invoice for the month as CSV (one line per service and item: quantity,
            unit price, amount), and as PDF into FILE; billing usage --month YYYY-MM: every
            site's counts for the month (JSON)
  forwarding [--retry-failed] [--destination AE]
            the forwarding queue per destination peer (as GET /api/forwarding);
            --retry-failed first makes failed rows (of one destination) pending again

Options:
  --config FILE     configuration file (default: $ATRIUM_CONFIG, else embedded defaults)
  --data-dir DIR    data folder (default: $ATRIUM_DATA_DIR, else ./data)
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      'data-dir': { type: 'string' },
      repair: { type: 'boolean', default: false },
      'no-checksums': { type: 'boolean', default: false },
      'grace-seconds': { type: 'string', default: '3600' },
      site: { type: 'string', multiple: true },
      name: { type: 'string' },
      role: { type: 'string', multiple: true },
      rpps: { type: 'string' },
      'password-stdin': { type: 'boolean', default: false },
      patient: { type: 'string' },
      zip: { type: 'string' },
      'retry-failed': { type: 'boolean', default: false },
      destination: { type: 'string' },
      to: { type: 'string' },
      issuer: { type: 'string' },
      window: { type: 'string' },
      anchors: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      store: { type: 'boolean' },
      query: { type: 'boolean' },
      retrieve: { type: 'boolean' },
      force: { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      now: { type: 'string' },
      month: { type: 'string' },
      pdf: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const command = positionals[0];
  if (values.help || !command) {
    process.stdout.write(usage);
    return command || values.help ? 0 : 2;
  }
  const config = loadConfig({ file: values.config, dataDir: values['data-dir'] });
  mkdirSync(config.dataDir, { recursive: true });
  const logger = pino({ level: config.log.level, base: { service: 'atrium' } });
  switch (command) {
    case 'serve':
      return serve(config, logger);
    case 'reindex': {
      const archive = await openArchive(config, logger);
      try {
        const report = await reindexArchive(archive, (n) => {
          if (n % 1000 === 0) process.stderr.write(`\r${n} objects`);
        });
        process.stdout.write(JSON.stringify(report, null, 2) + '\n');
        return report.refused.length === 0 ? 0 : 1;
      } finally {
        await archive.close();
      }
    }
    case 'lifecycle': {
      const archive = await openArchive(config, logger);
      try {
        return await runLifecycleCommand(archive, config, { dryRun: values['dry-run'], ...(values.now !== undefined ? { now: values.now } : {}), ...(values.site ? { sites: values.site } : {}) });
      } finally {
        await archive.close();
      }
    }
    case 'verify': {
      const grace = Number(values['grace-seconds']);
      if (!Number.isFinite(grace) || grace < 0) throw new ConfigError('--grace-seconds must be a number of seconds');
      const archive = await openArchive(config, logger);
      try {
        const journaled = await journaledKeys(ingestJournalDir(config));
        const report = await verifyArchive(archive, { checksums: !values['no-checksums'], repair: values.repair, orphanGraceMs: grace * 1000, journaled });
        process.stdout.write(JSON.stringify(report, null, 2) + '\n');
        const unresolved = report.corrupt.length + (report.tiers?.misplaced.length ?? 0) - (report.repaired.tiersRecorded ?? 0)
          + (values.repair ? report.orphans.length - report.repaired.orphansDeleted : report.orphans.length + report.missing.length);
        return unresolved === 0 ? 0 : 1;
      } finally {
        await archive.close();
      }
    }
    case 'import':
    case 'export': {
      const archive = await openArchive(config, logger);
      try {
        return command === 'import'
          ? await runImport(archive, positionals[1], values.site?.[0], config.sites[0]!.code)
          : await runExport(archive, { positionals: positionals.slice(1), patient: values.patient, zip: values.zip });
      } finally {
        await archive.close();
      }
    }
    case 'audit':
      return runAuditCommand(config, positionals.slice(1), values, logger);
    case 'demo':
      return runDemoCommand(config, values.config ?? process.env.ATRIUM_CONFIG, values.force, logger);
    case 'peer':
      return runPeerCommand(config, values.config ?? process.env.ATRIUM_CONFIG, positionals.slice(1), values);
    case 'send':
      return runSend(config, positionals.slice(1), values.to, values.window);
    case 'forwarding': {
      const archive = await openArchive(config, logger);
      try {
        const queue = new ForwardingQueue(archive.index.sql);
        const requeued = values['retry-failed'] ? await queue.requeueFailed(values.destination) : undefined;
        const destinations = (await queue.status()).filter((d) => values.destination === undefined || d.destination === values.destination);
        process.stdout.write(JSON.stringify({ ...(requeued === undefined ? {} : { requeued }), destinations }, null, 2) + '\n');
        return 0;
      } finally {
        await archive.close();
      }
    }
    case 'billing': {
      const archive = await openArchive(config, logger);
      try {
        return await runBillingCommand(archive, config, logger, positionals.slice(1), { ...(values.site ? { site: values.site } : {}), ...(values.month !== undefined ? { month: values.month } : {}), ...(values.pdf !== undefined ? { pdf: values.pdf } : {}) });
      } finally {
        await archive.close();
      }
    }
    case 'user': {
      const archive = await openArchive(config, logger);
      try {
        return await runUserCommand(archive, positionals.slice(1), values);
      } finally {
        await archive.close();
      }
    }
    default:
      process.stderr.write(`unknown command ${command}\n\n${usage}`);
      return 2;
  }
}

/**
 * With no API client configured, serve writes one token to the data folder (mode 0600)
 * and says where: nothing is reachable without it, and it never appears in a log.
 */
function ensureLocalToken(config: AtriumConfig, logger: Logger): void {
  if (config.apiClients.length > 0) return;
  const file = path.join(config.dataDir, 'api-token');
  if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString('base64url') + '\n', { mode: 0o600 });
  const token = readFileSync(file, 'utf8').trim();
  // The operator's key of an embedded install: trusted for the territory, audited like any caller.
  config.apiClients.push({ name: 'local', tokenSha256: sha256Hex(token), site: config.sites[0]!.code, territory: true });
  logger.info({ tokenFile: file }, 'no apiClients configured: the bearer token for this node is in the token file');
}

/**
 * The key of the audit anchors: from ATRIUM_AUDIT_ANCHOR_KEY, else generated into the data
 * folder (mode 0600), with a warning: whoever can write the data folder can then sign anchors.
 */
function auditAnchorKey(config: AtriumConfig, logger: Logger): AnchorKey {
  const key = anchorKeyOf(config.audit.anchor, config.dataDir, { create: true })!;
  if (key.file) logger.warn({ keyFile: key.file }, 'ATRIUM_AUDIT_ANCHOR_KEY is not set: audit anchors are signed with the key in this file; move it to the environment (a secret store) and delete the file');
  return key;
}

async function serve(config: AtriumConfig, logger: Logger): Promise<number> {
  ensureLocalToken(config, logger);
  const anchorKey = auditAnchorKey(config, logger);
  logger.info({
    dataDir: config.dataDir,
    http: `${config.http.host}:${config.http.port}${config.http.tls ? ` (TLS ${config.http.tls.minVersion}+, ${config.http.tls.clients.length} certificate clients)` : ''}`,
    portal: config.http.portalDir ?? 'none',
    index: config.index.engine,
    storage: config.storage.kind,
    duplicatePolicy: config.ingest.duplicatePolicy,
    sites: config.sites.map((s) => s.code),
    dimse: config.dimse.enabled ? `${config.dimse.aeTitle}@${config.dimse.host}:${config.dimse.port}${config.dimse.tls ? ' (TLS)' : ''}` : 'off',
    peers: config.peers.map((p) => p.aeTitle),
    requireKnownCallers: config.dimse.requireKnownCallers,
    hl7: config.hl7.enabled ? `${config.hl7.host}:${config.hl7.port}` : 'off',
    hl7Senders: config.hl7.senders.map((s) => `${s.application}@${s.facility}:${s.site}`),
    auditAnchors: { file: config.audit.anchor.file, everySeconds: config.audit.anchor.everySeconds, keyId: anchorKey.id },
    auditSyslog: config.audit.syslog ? `${config.audit.syslog.host}:${config.audit.syslog.port} (TLS${config.audit.syslog.certFile ? ', client certificate' : ''})` : 'off',
    oidc: config.auth.oidc ? { issuer: config.auth.oidc.issuer, clientId: config.auth.oidc.clientId, scopes: config.auth.oidc.scopes.join(' '), acrValues: config.auth.oidc.acrValues } : 'off',
    accessTokens: config.auth.accessTokens ? { issuer: config.auth.accessTokens.issuer, audience: config.auth.accessTokens.audience } : 'off',
    oauthClients: config.auth.clients.map((c) => `${c.clientId}:${c.site}${c.territory ? ' (territory)' : ''}`),
    sessions: config.auth.sessions,
    loginAttemptsPerMinute: config.auth.loginAttemptsPerMinute,
  }, 'configuration');
  // Recovers the ingest journal before anything listens.
  const archive = await openArchive(config, logger, { journal: true });
  const app = await buildHttpServer(config, archive, logger);
  await app.listen({ host: config.http.host, port: config.http.port });
  const dimse = config.dimse.enabled ? new DimseServer(config.dimse, archive, logger.child({ component: 'dimse' })) : undefined;
  await dimse?.listen();
  const hl7 = config.hl7.enabled ? new Hl7Server(config.hl7, archive, logger.child({ component: 'hl7' }), config.teleradiology, config.radiation.redundancyWindowDays) : undefined;
  await hl7?.listen();
  const workers = await startWorkers(archive, config, logger, { anchorKey, auditHostname: hostname() });
  // After the workers' start: the anchor taken at start covers the trail as it was found.
  await ensureFirstAdministrator(archive, config.dataDir, logger, process.stderr.isTTY ? (t) => process.stderr.write(t) : undefined);
  const httpBase = `${config.http.tls ? 'https' : 'http'}://${config.http.host}:${(app.server.address() as { port: number }).port}`;
  logger.info({
    url: `${httpBase}/dicom-web`,
    ...(config.http.portalDir ? { portal: `${httpBase}/app/` } : {}),
    dimse: dimse ? `${config.dimse.aeTitle}@${config.dimse.host}:${dimse.port}` : 'off',
    hl7: hl7 ? `MLLP ${config.hl7.host}:${hl7.port}` : 'off',
  }, 'atrium is serving');
  const hint = dimseFirstStepHint(config, archive.peers.list().length);
  if (hint) logger.info(hint);
  // The route schemas not compiled by a request yet, a few at a time in the background: a
  // schema ajv refuses is reported now rather than at its route's first request (a 500).
  void compileRouteSchemas(app).then((failed) => {
    for (const f of failed) logger.error({ route: f.route, error: f.error }, 'a route schema does not compile: the route answers 500');
  });
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  logger.info('stopping');
  await Promise.all([closeHttpServer(app, 10_000), dimse?.close(10_000), hl7?.close(10_000)]);
  await workers.stop(10_000);
  await archive.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`atrium: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(e instanceof ConfigError || e instanceof UserError ? 2 : 1);
  },
);
