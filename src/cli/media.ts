/** `atrium import` and `atrium export`: media in and out, with progress on stderr. */
import type { Archive } from '../archive/archive.ts';
import { ConfigError } from '../config/config.ts';
import { importMedia, type ImportProgress } from '../archive/import.ts';
import { exportToFolder, exportToZipFile, planMediaExport, type MediaExportReport } from '../archive/export.ts';
import { AuditTrail, patientRefsOfStudies } from '../access/audit.ts';
import { cliAdministrator } from './users.ts';

/** Imports a folder or DICOMDIR; the exit code is 1 when any object was refused. */
export async function runImport(archive: Archive, source: string | undefined, siteCode: string | undefined, defaultSite: string): Promise<number> {
  if (!source) throw new ConfigError('atrium import needs a folder or a DICOMDIR');
  const code = siteCode ?? defaultSite;
  const site = archive.sites.get(code);
  if (!site) throw new ConfigError(`--site ${code} is not a configured site (${[...archive.sites.keys()].join(', ')})`);
  const progress = progressReporter(process.stderr);
  const report = await importMedia(archive, source, { site, onProgress: progress.update });
  progress.done();
  const operator = cliAdministrator();
  await new AuditTrail(archive.index.sql).record({
    action: 'store', outcome: report.rejected.length === 0 ? 'success' : 'failure', actor: operator.actor, actorKind: 'system', via: 'cli', site: site.code,
    details: { source, stored: report.stored, identical: report.identical, replaced: report.replaced, rejected: report.rejected.length },
  });
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  process.stderr.write(`${report.files} files into ${site.code}: ${report.stored} stored, ${report.identical} identical, ${report.replaced} replaced, `
    + `${report.rejected.length} rejected, ${report.skipped.length} skipped\n`);
  for (const r of report.rejected) process.stderr.write(`  rejected ${r.file}: ${r.code}: ${r.message}\n`);
  return report.rejected.length === 0 ? 0 : 1;
}

/** Exports one study (or a patient's studies) to a folder, a ZIP file, or both. */
export async function runExport(archive: Archive, args: { positionals: string[]; patient?: string; zip?: string }): Promise<number> {
  let StudyInstanceUIDs: string[];
  let folder: string | undefined;
  if (args.patient !== undefined) {
    folder = args.positionals[0];
    const rows = await archive.index.searchStudies({ level: 'study', matches: { PatientID: args.patient }, fuzzymatching: false, limit: 10000, offset: 0 });
    StudyInstanceUIDs = rows.map((r) => r.study.StudyInstanceUID);
    if (StudyInstanceUIDs.length === 0) throw new ConfigError(`no study of patient ${args.patient} is in the archive`);
  } else {
    const [study, target] = args.positionals;
    if (!study) throw new ConfigError('atrium export needs a StudyInstanceUID (or --patient PatientID)');
    StudyInstanceUIDs = [study];
    folder = target;
  }
  if (folder === undefined && args.zip === undefined) throw new ConfigError('atrium export needs a folder, --zip FILE, or both');
  const plan = await planMediaExport(archive, StudyInstanceUIDs);
  // The operator's export leaves its trace before the first byte goes out, like any other.
  const operator = cliAdministrator();
  await new AuditTrail(archive.index.sql).record({
    action: 'export', outcome: 'success', actor: operator.actor, actorKind: 'system', via: 'cli',
    patients: await patientRefsOfStudies(archive.index, archive.siteById, StudyInstanceUIDs),
    ...(StudyInstanceUIDs.length === 1 ? { StudyInstanceUID: StudyInstanceUIDs[0] } : {}),
    details: { studies: StudyInstanceUIDs, ...(folder !== undefined ? { folder } : {}), ...(args.zip !== undefined ? { zip: args.zip } : {}) },
  });
  const reports: Array<MediaExportReport & { to: string }> = [];
  if (folder !== undefined) reports.push({ to: folder, ...(await exportToFolder(archive, plan, folder)) });
  if (args.zip !== undefined) reports.push({ to: args.zip, ...(await exportToZipFile(archive, plan, args.zip)) });
  process.stdout.write(JSON.stringify(reports, null, 2) + '\n');
  return 0;
}

/** A bar redrawn in place on a terminal; a line every few seconds otherwise (logs, pipes). */
function progressReporter(out: NodeJS.WriteStream): { update: (p: ImportProgress) => void; done: () => void } {
  const tty = out.isTTY === true;
  const interval = tty ? 100 : 5000;
  let last = 0;
  let latest: ImportProgress | undefined;
  const draw = (p: ImportProgress) => {
    const fraction = p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : p.filesTotal > 0 ? p.filesDone / p.filesTotal : 1;
    const mb = (n: number) => (n / 1e6).toFixed(1);
    const text = `${p.filesDone}/${p.filesTotal} files, ${mb(p.bytesDone)}/${mb(p.bytesTotal)} MB`;
    if (!tty) {
      out.write(`import: ${Math.floor(fraction * 100)}% ${text}\n`);
      return;
    }
    const width = 30;
    const filled = Math.round(fraction * width);
    out.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}% ${text}\x1b[K`);
  };
  return {
    update(p) {
      latest = p;
      const now = Date.now();
      if (now - last < interval && p.filesDone < p.filesTotal) return;
      last = now;
      draw(p);
    },
    done() {
      if (tty && latest) out.write('\n');
    },
  };
}
