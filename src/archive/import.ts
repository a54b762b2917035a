/**
 * Import of a CD, DVD or folder: every DICOM Part 10 file found (by walking the folder, or
 * by following a DICOMDIR's records) goes through the one ingest pipeline, filed under the
 * chosen site. Files that are not DICOM (autorun.inf, a viewer's executable, README.TXT)
 * are skipped; objects the archive refuses are reported with their reason.
 */
import { open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Site } from '../index/records.ts';
import type { Archive } from './archive.ts';
import { filesOfDicomdir } from './dicomdir.ts';
import type { IngestErrorCode } from './ingest-error.ts';

export type ImportRejectCode = IngestErrorCode | 'unreadable' | 'missing-file';

export interface ImportReport {
  /** The folder or DICOMDIR imported; file names below are relative to its folder. */
  source: string;
  site: string;
  files: number;
  stored: number;
  identical: number;
  replaced: number;
  rejected: Array<{ file: string; code: ImportRejectCode; message: string; SOPInstanceUID?: string }>;
  skipped: Array<{ file: string; reason: string }>;
  warnings: Array<{ file: string; SOPInstanceUID: string; warnings: string[] }>;
  /** Studies that received at least one object. */
  StudyInstanceUIDs: string[];
}

export interface ImportProgress {
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface ImportOptions {
  site: Site;
  /** Files ingested at once (default 4). */
  concurrency?: number;
  onProgress?: (progress: ImportProgress) => void;
}

interface Candidate {
  /** Relative to the import's root folder, "/"-separated. */
  file: string;
  /** Absolute path, or undefined when a DICOMDIR names a file that is not there. */
  absolute?: string;
  size: number;
}

const PREFIX_OFFSET = 128;

/** Imports a folder (walked recursively) or a DICOMDIR (its referenced files). */
export async function importMedia(archive: Archive, source: string, options: ImportOptions): Promise<ImportReport> {
  const info = await stat(source);
  const root = info.isDirectory() ? source : path.dirname(source);
  const candidates = info.isDirectory()
    ? await walk(root)
    : isDicomdirName(path.basename(source)) ? await referencedBy(source, root)
      : [{ file: path.basename(source), absolute: source, size: info.size }];
  const report: ImportReport = {
    source, site: options.site.code, files: candidates.length,
    stored: 0, identical: 0, replaced: 0, rejected: [], skipped: [], warnings: [], StudyInstanceUIDs: [],
  };
  const studies = new Set<string>();
  const progress: ImportProgress = { filesDone: 0, filesTotal: candidates.length, bytesDone: 0, bytesTotal: candidates.reduce((n, c) => n + c.size, 0) };
  options.onProgress?.({ ...progress });

  const importOne = async (c: Candidate) => {
    if (c.absolute === undefined) {
      report.rejected.push({ file: c.file, code: 'missing-file', message: 'the DICOMDIR references this file but it is not on the media' });
      return;
    }
    if (isDicomdirName(path.basename(c.file))) {
      report.skipped.push({ file: c.file, reason: 'a DICOMDIR (the directory of the media), not an object' });
      return;
    }
    const handle = await open(c.absolute, 'r').catch((e: NodeJS.ErrnoException) => e);
    if (!('fd' in handle)) {
      report.rejected.push({ file: c.file, code: 'unreadable', message: handle.message });
      return;
    }
    let sourceError: Error | undefined;
    try {
      const prefix = Buffer.alloc(4);
      const { bytesRead } = await handle.read(prefix, 0, 4, PREFIX_OFFSET);
      if (bytesRead < 4 || prefix.toString('latin1') !== 'DICM') {
        report.skipped.push({ file: c.file, reason: 'not a DICOM Part 10 file (no DICM prefix after the preamble)' });
        return;
      }
      const body = handle.createReadStream({ start: 0, autoClose: false });
      body.on('error', (e) => (sourceError = e));
      let result;
      try {
        result = await archive.ingestor.ingestInstance(body, { site: options.site, via: 'import' });
      } catch (e) {
        // A read error of the media fails this file; any other (storage, index) stops the import.
        if (!sourceError) throw e;
        report.rejected.push({ file: c.file, code: 'unreadable', message: sourceError.message });
        return;
      } finally {
        body.destroy();
      }
      if (result.ok) {
        const i = result.instance;
        report[i.status]++;
        studies.add(i.StudyInstanceUID);
        if (i.warnings.length > 0) report.warnings.push({ file: c.file, SOPInstanceUID: i.SOPInstanceUID, warnings: i.warnings });
      } else {
        report.rejected.push({
          file: c.file, code: result.error.code, message: result.error.message,
          ...(result.SOPInstanceUID ? { SOPInstanceUID: result.SOPInstanceUID } : {}),
        });
      }
    } finally {
      await handle.close();
    }
  };

  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < candidates.length) {
      const c = candidates[next++]!;
      try {
        await importOne(c);
      } catch (e) {
        failed = true; // the others finish the file they are on, then stop
        throw e;
      }
      progress.filesDone++;
      progress.bytesDone += c.size;
      options.onProgress?.({ ...progress });
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.max(1, Math.min(options.concurrency ?? 4, candidates.length)) }, worker));
  const failure = settled.find((s) => s.status === 'rejected');
  if (failure) throw failure.reason;
  const byFile = (a: { file: string }, b: { file: string }) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0);
  report.rejected.sort(byFile);
  report.skipped.sort(byFile);
  report.warnings.sort(byFile);
  report.StudyInstanceUIDs = [...studies].sort();
  return report;
}

/** ISO 9660 media may show "DICOMDIR;1" or lower-case names. */
function isDicomdirName(name: string): boolean {
  return mediaName(name) === 'DICOMDIR';
}

function mediaName(name: string): string {
  return name.replace(/;\d+$/, '').replace(/\.$/, '').toUpperCase();
}

/** Every regular file under root, in name order; symbolic links to folders are not followed (no loops). */
async function walk(root: string): Promise<Candidate[]> {
  const out: Candidate[] = [];
  const visit = async (dir: string) => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const absolute = path.join(dir, e.name);
      if (e.isDirectory()) {
        await visit(absolute);
        continue;
      }
      const s = await stat(absolute).catch(() => undefined);
      if (!s?.isFile()) continue;
      out.push({ file: path.relative(root, absolute).split(path.sep).join('/'), absolute, size: s.size });
    }
  };
  await visit(root);
  return out;
}

/** The files a DICOMDIR references, found whatever case or version suffix the media shows. */
async function referencedBy(dicomdir: string, root: string): Promise<Candidate[]> {
  const refs = filesOfDicomdir(await readFile(dicomdir));
  const listings = new Map<string, Promise<string[]>>();
  const list = (dir: string) => {
    let l = listings.get(dir);
    if (!l) listings.set(dir, (l = readdir(dir).catch(() => [])));
    return l;
  };
  const seen = new Set<string>();
  const out: Candidate[] = [];
  for (const ref of refs) {
    let current: string | undefined = root;
    for (const component of ref.id) {
      const names: string[] = await list(current);
      const exact = names.find((n) => n === component);
      const found = exact ?? names.find((n) => mediaName(n) === component.toUpperCase());
      current = found === undefined ? undefined : path.join(current, found);
      if (current === undefined) break;
    }
    const file = ref.id.join('/');
    const key = current ?? file;
    if (seen.has(key)) continue;
    seen.add(key);
    const s = current === undefined ? undefined : await stat(current).catch(() => undefined);
    out.push(s?.isFile() ? { file: path.relative(root, current!).split(path.sep).join('/'), absolute: current, size: s.size } : { file, size: 0 });
  }
  return out;
}
