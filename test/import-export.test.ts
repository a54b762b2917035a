import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { loadConfig } from '../src/config/config.ts';
import { openArchive, type Archive } from '../src/archive/archive.ts';
import { testDatabases } from './support/databases.ts';
import { startAtrium, testSites, type RunningAtrium } from './support/atrium.ts';
import { syntheticInstance, syntheticStream } from './support/synthetic.ts';
import { atriumCliArgs } from './support/cli.ts';

const execFileAsync = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');
const haveDcmtk = existsSync('/usr/bin/dcmmkdir') && existsSync('/usr/bin/dcmdump');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Run { code: number; stdout: string; stderr: string }

/** Runs a program, answering its exit code rather than throwing on a non-zero one. */
async function run(file: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileAsync(file, args, { ...options, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    if (typeof err.code !== 'number') throw e;
    return { code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** Every file under dir, "/"-separated relative paths, sorted. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const visit = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) visit(p);
      else out.push(path.relative(dir, p).split(path.sep).join('/'));
    }
  };
  visit(dir);
  return out.sort();
}

function write(file: string, bytes: Buffer | string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, bytes);
}

const dcmdumpRecords = (text: string, type: string) => text.split('\n').filter((l) => l.includes(`"Directory Record" ${type} `)).length;

interface ImportReport {
  files: number; stored: number; identical: number; replaced: number;
  rejected: Array<{ file: string; code: string; message: string }>;
  skipped: Array<{ file: string; reason: string }>;
  StudyInstanceUIDs: string[];
}

for (const db of testDatabases()) {
  describe(`atrium import and export on ${db.name}`, () => {
    let work: string;
    let configFile: string;
    let cleanup: () => Promise<void>;
    const env = (): NodeJS.ProcessEnv => {
      const e: NodeJS.ProcessEnv = { ...process.env, ATRIUM_CONFIG: configFile, ATRIUM_DATA_DIR: path.join(work, 'data'), ATRIUM_LOG_LEVEL: 'warn' };
      delete e.DATABASE_URL; // the configuration file names the index
      return e;
    };
    const atrium = (...args: string[]) => run(process.execPath, [...atriumCliArgs(), ...args], { cwd: root, env: env() });
    /** The archive as the CLI left it, opened in this process to look at the index. */
    const withArchive = async <T>(f: (archive: Archive) => Promise<T>): Promise<T> => {
      const archive = await openArchive(loadConfig({ file: configFile, env: env() }), pino({ level: 'silent' }));
      try {
        return await f(archive);
      } finally {
        await archive.close();
      }
    };

    // Study A: two series of two images; study B: another patient.
    const a1 = syntheticInstance({ PatientID: 'IMP-1', PatientName: 'Lefèvre^François' });
    const sameA = { PatientID: 'IMP-1', PatientName: 'Lefèvre^François', StudyInstanceUID: a1.uids.study };
    const a2 = syntheticInstance({ ...sameA, SeriesInstanceUID: a1.uids.series });
    const a3 = syntheticInstance({ ...sameA, Modality: 'MR' });
    const a4 = syntheticInstance({ ...sameA, SeriesInstanceUID: a3.uids.series, Modality: 'MR' });
    const b1 = syntheticInstance({ PatientID: 'IMP-2', PatientName: 'Bénard^Zoé' });
    const studyA = [a1, a2, a3, a4];

    before(async () => {
      work = mkdtempSync(path.join(tmpdir(), 'atrium-media-'));
      const opened = await db.open();
      cleanup = opened.cleanup;
      const index = opened.config.engine === 'sqlite'
        ? `index: { engine: sqlite, path: ${JSON.stringify(opened.config.path)} }`
        : `index: { engine: postgres, url: ${JSON.stringify(opened.config.url)}, schema: ${opened.config.schema} }`;
      configFile = path.join(work, 'atrium.yaml');
      writeFileSync(configFile, [
        `dataDir: ${JSON.stringify(path.join(work, 'data'))}`,
        index,
        'sites:',
        ...testSites.map((s) => `  - { code: ${s.code}, name: ${s.name}, finess: "${s.finess}", issuerOfPatientID: ${s.issuerOfPatientID} }`),
      ].join('\n'));
    });
    after(async () => {
      rmSync(work, { recursive: true, force: true });
      await cleanup?.();
    });

    it('imports a folder tree for the chosen site, skipping what is not DICOM and reporting refused objects', async () => {
      const cd = path.join(work, 'cd');
      write(path.join(cd, 'README.TXT'), 'Examens de Mme Lefèvre\n');
      write(path.join(cd, 'AUTORUN.INF'), '[autorun]\nopen=VIEWER\\VIEWER.EXE\n');
      write(path.join(cd, 'VIEWER/VIEWER.EXE'), Buffer.concat([Buffer.from('MZ'), randomBytes(4096)]));
      write(path.join(cd, 'DATA/S1/IM1'), a1.file);
      write(path.join(cd, 'DATA/S1/IM2'), a2.file);
      write(path.join(cd, 'DATA/S2/im3.dcm'), a3.file);
      write(path.join(cd, 'DATA/S2/IM4'), a4.file);
      write(path.join(cd, 'OTHER/B1'), b1.file);
      write(path.join(cd, 'DATA/BROKEN'), a1.file.subarray(0, a1.file.length - 100));

      const r = await atrium('import', cd, '--site', 'CLIN-SUD');
      assert.equal(r.code, 1, 'a refused object makes the exit code non-zero');
      const report = JSON.parse(r.stdout) as ImportReport;
      assert.equal(report.files, 9);
      assert.deepEqual([report.stored, report.identical, report.replaced], [5, 0, 0]);
      assert.deepEqual(report.rejected.map((x) => [x.file, x.code]), [['DATA/BROKEN', 'truncated']]);
      assert.match(report.rejected[0]!.message, /truncated/);
      assert.deepEqual(report.skipped.map((x) => x.file), ['AUTORUN.INF', 'README.TXT', 'VIEWER/VIEWER.EXE']);
      assert.deepEqual(report.StudyInstanceUIDs, [a1.uids.study, b1.uids.study].sort());
      assert.match(r.stderr, /^import: 100% 9\/9 files/m, 'periodic progress lines when stderr is not a terminal');
      assert.match(r.stderr, /9 files into CLIN-SUD: 5 stored, 0 identical, 0 replaced, 1 rejected, 3 skipped/);

      await withArchive(async (archive) => {
        const studies = await archive.index.searchStudies({ level: 'study', matches: { PatientID: 'IMP-*' }, fuzzymatching: false, limit: 10, offset: 0 });
        assert.deepEqual(studies.map((s) => [s.patient.PatientID, s.patient.IssuerOfPatientID, s.NumberOfStudyRelatedSeries, s.NumberOfStudyRelatedInstances]).sort(),
          [['IMP-1', 'CLINSUD', 2, 4], ['IMP-2', 'CLINSUD', 1, 1]]);
        const stored = await archive.index.getStoredInstances({ StudyInstanceUID: a1.uids.study });
        assert.deepEqual(stored.map((i) => i.sha256).sort(), studyA.map((x) => sha(x.file)).sort(), 'stored byte for byte');
        assert.equal(stored.every((i) => i.siteId === archive.sites.get('CLIN-SUD')!.id), true);
      });

      const again = await atrium('import', cd, '--site', 'CLIN-SUD');
      const second = JSON.parse(again.stdout) as ImportReport;
      assert.deepEqual([second.stored, second.identical, second.rejected.length], [0, 5, 1], 'importing the same CD twice changes nothing');

      const unknown = await atrium('import', cd, '--site', 'NOWHERE');
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /NOWHERE is not a configured site/);
    });

    it('follows the records of a DICOMDIR made by DCMTK dcmmkdir, whatever case the media shows', { skip: !haveDcmtk }, async () => {
      const cd = path.join(work, 'dcmtk-cd');
      const c1 = syntheticInstance({ PatientID: 'IMP-3', PatientName: 'Durand^Lucie' });
      const c = [c1, ...[2, 3].map(() => syntheticInstance({ PatientID: 'IMP-3', PatientName: 'Durand^Lucie', StudyInstanceUID: c1.uids.study }))];
      const studyC = c1.uids.study;
      c.forEach((x, i) => write(path.join(cd, `IMAGES/IM00000${i + 1}`), x.file));
      const made = await run('dcmmkdir', ['+r', '+I', 'IMAGES'], { cwd: cd });
      assert.equal(made.code, 0, made.stderr);
      // Not referenced by the DICOMDIR: not imported, even though it is DICOM.
      const stray = syntheticInstance({ PatientID: 'IMP-STRAY' });
      write(path.join(cd, 'EXTRA/STRAY'), stray.file);
      // Mounted media often show lower-case names or ISO 9660 version suffixes.
      renameSync(path.join(cd, 'IMAGES/IM000002'), path.join(cd, 'IMAGES/im000002;1'));

      const r = await atrium('import', path.join(cd, 'DICOMDIR'));
      assert.equal(r.code, 0, r.stderr);
      const report = JSON.parse(r.stdout) as ImportReport;
      assert.deepEqual([report.files, report.stored, report.rejected.length, report.skipped.length], [3, 3, 0, 0]);
      assert.deepEqual(report.StudyInstanceUIDs, [studyC]);

      unlinkSync(path.join(cd, 'IMAGES/IM000003'));
      const missing = await atrium('import', path.join(cd, 'DICOMDIR'));
      assert.equal(missing.code, 1);
      const second = JSON.parse(missing.stdout) as ImportReport;
      assert.deepEqual(second.rejected.map((x) => [x.file, x.code]), [['IMAGES/IM000003', 'missing-file']]);

      await withArchive(async (archive) => {
        const [study] = await archive.index.searchStudies({ level: 'study', matches: { PatientID: 'IMP-3' }, fuzzymatching: false, limit: 10, offset: 0 });
        assert.equal(study?.patient.IssuerOfPatientID, 'CHUNORD', 'the first configured site by default');
        assert.equal(study?.NumberOfStudyRelatedInstances, 3);
        assert.equal((await archive.index.searchStudies({ level: 'study', matches: { PatientID: 'IMP-STRAY' }, fuzzymatching: false, limit: 10, offset: 0 })).length, 0);
      });
    });

    it('exports a study as a media file-set whose DICOMDIR DCMTK reads and whose files are the stored bytes', { skip: !haveDcmtk }, async () => {
      const out = path.join(work, 'export');
      const zip = path.join(work, 'export.zip');
      const r = await atrium('export', a1.uids.study, out, '--zip', zip);
      assert.equal(r.code, 0, r.stderr);
      const trace = await withArchive((archive) => archive.index.sql.get<{ actor: string; via: string; patients: string }>(
        `SELECT actor, via, patients FROM audit_events WHERE action = 'export' AND study_instance_uid = ?`, [a1.uids.study]));
      assert.match(trace?.actor ?? '', /^cli:/, 'the export is in the audit trail');
      assert.deepEqual(JSON.parse(trace!.patients), ['CLIN-SUD|CLINSUD|IMP-1']);

      const files = filesUnder(out);
      assert.equal(files.length, 5);
      assert.equal(files[files.length - 1], 'DICOMDIR');
      for (const f of files.slice(0, -1)) assert.match(f, /^DICOM(\/[A-Z0-9_]{1,8}){1,7}$/, `${f} is a legal STD-GEN-CD file ID`);
      assert.deepEqual(files.slice(0, -1).map((f) => sha(readFileSync(path.join(out, f)))).sort(), studyA.map((x) => sha(x.file)).sort(), 'each file is the stored object byte for byte');

      const dump = await run('dcmdump', [path.join(out, 'DICOMDIR')]);
      assert.equal(dump.code, 0, dump.stderr);
      assert.equal(dump.stderr, '');
      assert.match(dump.stdout, /MediaStorageDirectoryStorage/);
      assert.deepEqual(['PATIENT', 'STUDY', 'SERIES', 'IMAGE'].map((t) => dcmdumpRecords(dump.stdout, t)), [1, 1, 2, 4]);
      assert.match(dump.stdout, /PatientName\s*\n?/);
      for (const f of files) {
        const t = await run('dcmftest', [path.join(out, f)]);
        assert.match(t.stdout, /^yes:/, `${f} is a DICOM Part 10 file`);
      }

      // DCMTK loading our DICOMDIR to append to it resolves every offset, finds every file
      // already referenced, and finds the records' keys consistent with the files.
      const copy = path.join(work, 'export-copy');
      cpSync(out, copy, { recursive: true });
      const appended = await run('dcmmkdir', ['-v', '+I', '+A', '-nb', '+D', 'DICOMDIR', ...files.slice(0, -1)], { cwd: copy });
      assert.equal(appended.code, 0, appended.stderr);
      assert.doesNotMatch(appended.stderr, /Cannot resolve offset|inconsistent|^E:/m);
      assert.equal(appended.stderr.match(/directory record for this SOP instance already exists/g)?.length, 4, appended.stderr);
      // DCMTK making a DICOMDIR of its own from the exported files accepts their names (STD-GEN-CD).
      const fresh = await run('dcmmkdir', ['+r', '+I', '+D', path.join(work, 'DICOMDIR.dcmtk'), 'DICOM'], { cwd: out });
      assert.equal(fresh.code, 0, fresh.stderr);

      // The ZIP holds the same layout and bytes.
      const listed = await run('/usr/bin/python3', ['-m', 'zipfile', '-t', zip]);
      assert.equal(listed.code, 0, listed.stderr);
      const unzipped = path.join(work, 'unzipped');
      await extractZip(zip, unzipped);
      assert.deepEqual(filesUnder(unzipped), files);
      for (const f of files) assert.deepEqual(readFileSync(path.join(unzipped, f)), readFileSync(path.join(out, f)), f);

      const notEmpty = await atrium('export', a1.uids.study, out);
      assert.equal(notEmpty.code, 1);
      assert.match(notEmpty.stderr, /is not empty/);
      const unknown = await atrium('export', '1.2.3.4.5.6', path.join(work, 'nothing'));
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /study 1\.2\.3\.4\.5\.6 is not in the archive/);
    });

    it('refuses to export an object whose stored bytes no longer match their checksum, and writes no DICOMDIR', async () => {
      const [inst] = await withArchive((archive) => archive.index.getStoredInstances({ StudyInstanceUID: b1.uids.study }));
      const blob = path.join(work, 'data', 'blobs', inst!.blobKey);
      const bytes = readFileSync(blob);
      bytes[bytes.length - 1] ^= 0xff;
      writeFileSync(blob, bytes);
      const out = path.join(work, 'corrupt-export');
      const r = await atrium('export', b1.uids.study, out);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no longer matches its recorded size or SHA-256/);
      assert.equal(existsSync(path.join(out, 'DICOMDIR')), false);
    });

    it('exports every study of a patient under one PATIENT record', { skip: !haveDcmtk }, async () => {
      const out = path.join(work, 'patient-export');
      const r = await atrium('export', '--patient', 'IMP-1', out);
      assert.equal(r.code, 0, r.stderr);
      const dump = await run('dcmdump', [path.join(out, 'DICOMDIR')]);
      assert.deepEqual(['PATIENT', 'STUDY', 'SERIES', 'IMAGE'].map((t) => dcmdumpRecords(dump.stdout, t)), [1, 1, 2, 4]);
    });
  });
}

/** unzip when installed, else Python's zipfile. */
async function extractZip(zip: string, into: string): Promise<void> {
  const r = existsSync('/usr/bin/unzip')
    ? await run('/usr/bin/unzip', ['-q', zip, '-d', into])
    : await run('/usr/bin/python3', ['-m', 'zipfile', '-e', zip, into]);
  assert.equal(r.code, 0, r.stderr);
}

for (const db of testDatabases()) {
  describe(`GET /dicom-web/studies/{study}/archive on ${db.name}`, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    let work: string;
    const small = syntheticInstance({ PatientID: 'ZIP-1' });
    const sameStudy = { PatientID: 'ZIP-1', StudyInstanceUID: small.uids.study };
    const other = syntheticInstance({ ...sameStudy, SeriesInstanceUID: small.uids.series });

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      atrium = await startAtrium({ index: opened.config });
      work = mkdtempSync(path.join(tmpdir(), 'atrium-zip-'));
      const site = atrium.archive.sites.get('CHU-NORD')!;
      for (const f of [small.file, other.file]) {
        const r = await atrium.archive.ingestor.ingestInstance(Readable.from([f]), { site, via: 'import' });
        assert.ok(r.ok);
      }
      // Larger than what is read whole (16 MiB): streamed into the ZIP with a data descriptor.
      const large = syntheticStream({ ...sameStudy, Rows: 2048, Columns: 2048, NumberOfFrames: 5 });
      const r = await atrium.archive.ingestor.ingestInstance(large.stream, { site, via: 'import' });
      assert.ok(r.ok);
    });
    after(async () => {
      await atrium?.close();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    const get = (p: string, token: string | null = atrium.tokens['CLIN-SUD']!) =>
      fetch(atrium.dicomweb + p, { headers: token ? { authorization: `Bearer ${token}` } : {} });

    it('answers a ZIP of the study with its DICOMDIR, streamed, each object as stored', async () => {
      const response = await get(`/studies/${small.uids.study}/archive`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('content-type'), 'application/zip');
      assert.match(response.headers.get('content-disposition') ?? '', /attachment; filename="[0-9.]+\.zip"/);
      const zip = path.join(work, 'study.zip');
      await pipeline(Readable.fromWeb(response.body! as import('node:stream/web').ReadableStream<Uint8Array>), createWriteStream(zip));
      const tested = await run('/usr/bin/python3', ['-m', 'zipfile', '-t', zip]);
      assert.equal(tested.code, 0, tested.stderr);
      const out = path.join(work, 'unzipped');
      await extractZip(zip, out);
      const files = filesUnder(out);
      assert.equal(files.length, 4);
      assert.ok(files.includes('DICOMDIR'));
      const stored = await atrium.archive.index.getStoredInstances({ StudyInstanceUID: small.uids.study });
      assert.deepEqual(files.filter((f) => f !== 'DICOMDIR').map((f) => sha(readFileSync(path.join(out, f)))).sort(), stored.map((i) => i.sha256).sort());
      assert.ok(files.some((f) => statSync(path.join(out, f)).size > 16 * 1024 * 1024));
      if (haveDcmtk) {
        const dump = await run('dcmdump', [path.join(out, 'DICOMDIR')]);
        assert.equal(dump.code, 0, dump.stderr);
        assert.equal(dcmdumpRecords(dump.stdout, 'IMAGE'), 3);
      }
    });

    it('answers 404 with a reason for a study it does not hold', async () => {
      const response = await get('/studies/1.2.3.999/archive');
      assert.equal(response.status, 404);
      assert.equal(response.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      const problem = (await response.json()) as { detail: string };
      assert.match(problem.detail, /study 1\.2\.3\.999 is not in the archive/);
    });

    it('answers 401 without a bearer token', async () => {
      const response = await get(`/studies/${small.uids.study}/archive`, null);
      assert.equal(response.status, 401);
      await response.body?.cancel();
    });
  });
}
