/**
 * `atrium audit verify | anchor | patient`: the audit trail from the command line.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, type AtriumConfig } from '../config/config.ts';
import { openArchiveIndex } from '../index/archive-index.ts';
import { AuditTrail, patientRef } from '../access/audit.ts';
import { ANCHOR_KEY_FILE, AuditAnchoring, anchorKeyOf, readAnchorFile } from '../access/audit-anchor.ts';

const USAGE = 'atrium audit verify [--anchors FILE] | atrium audit anchor | atrium audit patient <PatientID> [--site CODE] [--issuer ISSUER]';

export async function runAuditCommand(
  config: AtriumConfig,
  positionals: string[],
  values: { site?: string[]; issuer?: string; anchors?: string },
  logger: Logger,
): Promise<number> {
  const sub = positionals[0];
  if (sub !== 'verify' && sub !== 'anchor' && !(sub === 'patient' && positionals[1])) throw new ConfigError(USAGE);
  const index = await openArchiveIndex(config.index);
  try {
    if (sub === 'verify') return await verify(config, new AuditTrail(index.sql), values.anchors);
    if (sub === 'anchor') {
      // An anchor now (from cron while Atrium is stopped, or before a backup); serve anchors by itself.
      const key = anchorKeyOf(config.audit.anchor, config.dataDir, { create: true })!;
      if (key.file) logger.warn({ keyFile: key.file }, 'ATRIUM_AUDIT_ANCHOR_KEY is not set: the anchor is signed with the key in this file; move it to the environment (a secret store)');
      const anchoring = new AuditAnchoring(index.sql, config.audit.anchor, key, logger);
      await anchoring.stop();
      process.stdout.write(JSON.stringify({ file: config.audit.anchor.file, keyId: key.id }, null, 2) + '\n');
      return 0;
    }
    const siteCode = values.site?.[0] ?? config.sites[0]!.code;
    const site = config.sites.find((s) => s.code === siteCode);
    if (!site) throw new ConfigError(`--site ${siteCode} is not a configured site`);
    const events = await new AuditTrail(index.sql).forPatient(patientRef(site.code, values.issuer ?? site.issuerOfPatientID, positionals[1]!));
    process.stdout.write(JSON.stringify({ events }, null, 2) + '\n');
    return 0;
  } finally {
    await index.close();
  }
}

/**
 * The chain, and the chain against every anchor of the file: exit 1 and why on any mismatch.
 * Without a key or with a refused anchor file the chain alone is walked (its report says
 * how far it holds), and the answer is still a failure.
 */
async function verify(config: AtriumConfig, trail: AuditTrail, anchorsFile: string | undefined): Promise<number> {
  const file = anchorsFile !== undefined ? path.resolve(anchorsFile) : config.audit.anchor.file;
  const key = anchorKeyOf(config.audit.anchor, config.dataDir, { create: false });
  const read = key ? readAnchorFile(file, key) : undefined;
  const anchors = read?.ok ? read.anchors : undefined;
  const r = await trail.verify(anchors);
  let why: string | undefined;
  if (!r.ok) why = `audit trail broken at record ${r.brokenAt}: ${r.why}`;
  else if (!key && (r.records > 0 || existsSync(file))) why = `audit trail not verified against anchors: no anchor key (set ATRIUM_AUDIT_ANCHOR_KEY, or keep ${path.join(config.dataDir, ANCHOR_KEY_FILE)})`;
  else if (read && !read.ok) why = `audit anchors refused: ${read.why}`;
  // A trail with records and no anchor at all: its end cannot be vouched for (the file may have been removed).
  else if (r.records > 0 && anchors?.length === 0) why = `audit trail not verified against anchors: ${file} holds none (was it removed? \`atrium serve\` writes one at start)`;
  process.stdout.write(JSON.stringify({ ...r, ok: why === undefined, ...(why !== undefined && r.ok ? { why } : {}), anchorFile: file }, null, 2) + '\n');
  if (why !== undefined) {
    process.stderr.write(`${why}\n`);
    return 1;
  }
  if (r.lastAnchorVerified) process.stderr.write(`audit trail intact: ${r.records} records, ${r.anchorsVerified} anchors, the last of record ${r.lastAnchorVerified.seq} at ${r.lastAnchorVerified.at}\n`);
  return 0;
}
