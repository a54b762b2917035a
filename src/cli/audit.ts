/**
 * `atrium audit verify | anchor | patient`: the audit trail from the command line.
 */
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

/** The chain, then the chain against every anchor of the file: exit 1 and why on any mismatch. */
async function verify(config: AtriumConfig, trail: AuditTrail, anchorsFile: string | undefined): Promise<number> {
  const file = anchorsFile !== undefined ? path.resolve(anchorsFile) : config.audit.anchor.file;
  const fail = (report: object, why: string): number => {
    process.stdout.write(JSON.stringify({ ok: false, ...report, anchorFile: file }, null, 2) + '\n');
    process.stderr.write(`${why}\n`);
    return 1;
  };
  const key = anchorKeyOf(config.audit.anchor, config.dataDir, { create: false });
  if (!key) {
    return fail({ why: 'no anchor key' }, `audit trail not verified: no anchor key (set ATRIUM_AUDIT_ANCHOR_KEY, or keep ${path.join(config.dataDir, ANCHOR_KEY_FILE)})`);
  }
  const read = readAnchorFile(file, key);
  if (!read.ok) return fail({ why: read.why }, `audit anchors refused: ${read.why}`);
  const r = await trail.verify(read.anchors);
  const report = { ...r, anchorFile: file };
  if (!r.ok) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    process.stderr.write(`audit trail broken at record ${r.brokenAt}: ${r.why}\n`);
    return 1;
  }
  // A trail with records and no anchor at all: its end cannot be vouched for (the file may have been removed).
  if (r.records > 0 && read.anchors.length === 0) {
    return fail({ records: r.records, why: 'no anchor' }, `audit trail not verified against anchors: ${file} holds none (was it removed? \`atrium serve\` writes one at start)`);
  }
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  if (r.lastAnchorVerified) process.stderr.write(`audit trail intact: ${r.records} records, ${r.anchorsVerified} anchors, the last of record ${r.lastAnchorVerified.seq} at ${r.lastAnchorVerified.at}\n`);
  return 0;
}
