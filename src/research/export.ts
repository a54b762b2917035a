/**
 * A research project's cohort and its de-identified export: the studies its criteria select
 * at its sites, less the patients who object to research use (checked at each export, across
 * the person's linked records), each object de-identified (deidentify.ts) with the person's
 * pseudonym and date offset, written to a folder or a ZIP under the data folder, or sent to
 * the project's approved DICOMweb destination (STOW-RS), with a manifest (pseudonyms and new
 * UIDs only) and one audit record per patient.
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type { Archive } from '../archive/archive.ts';
import { AuditTrail, patientRef } from '../access/audit.ts';
import { AccessPolicy } from '../access/policy.ts';
import type { Principal } from '../access/principal.ts';
import { actorOf } from '../access/principal.ts';
import { writeZip, type ZipEntry } from '../archive/zip.ts';
import { studiesWithReportText } from '../workflow/tele-reports.ts';
import { deidentifyObject, DeidentifyError } from './deidentify.ts';
import { ResearchError, type ResearchProject, type ResearchStore } from './projects.ts';

export type ExportKind = 'zip' | 'folder' | 'dicomweb';

export interface CohortStudy { StudyInstanceUID: string; patientId: number; siteId: number }

/** The studies the project's criteria select, at its sites. */
export async function cohortOf(archive: Archive, project: ResearchProject): Promise<CohortStudy[]> {
  const c = project.criteria;
  const siteIds = c.sites ? c.sites.map((code) => archive.sites.get(code)?.id).filter((id): id is number => id !== undefined) : [project.siteId];
  const studies = new Map<string, CohortStudy>();
  for (const siteId of siteIds) {
    for (const modality of c.modalities ?? [undefined]) {
      const matches: Record<string, string> = {};
      if (modality) matches.Modality = modality;
      if (c.from || c.to) matches.StudyDate = `${c.from ?? ''}-${c.to ?? ''}`;
      const rows = await archive.index.searchSeries({
        level: 'series', matches, fuzzymatching: false, limit: 0, offset: 0, restriction: { sql: 's.site_id = ?', params: [siteId] },
      });
      for (const r of rows) {
        if (c.bodyParts && !c.bodyParts.includes((r.series.BodyPartExamined ?? '').toUpperCase())) continue;
        if (studies.has(r.study.StudyInstanceUID)) continue;
        const sp = await archive.index.studyPatient(r.study.StudyInstanceUID);
        if (sp) studies.set(r.study.StudyInstanceUID, { StudyInstanceUID: r.study.StudyInstanceUID, patientId: sp.patientId, siteId: sp.siteId });
      }
    }
  }
  let list = [...studies.values()];
  if (c.reportText) {
    const withText = await studiesWithReportText(archive.index.sql, list.map((s) => s.StudyInstanceUID), c.reportText);
    list = list.filter((s) => withText.has(s.StudyInstanceUID));
  }
  return list.sort((a, b) => a.patientId - b.patientId || a.StudyInstanceUID.localeCompare(b.StudyInstanceUID));
}

export interface ManifestPatient {
  pseudonym: string;
  studies: Array<{ StudyInstanceUID: string; instances: Array<{ SOPInstanceUID: string; SOPClassUID: string; SeriesInstanceUID: string; file?: string }> }>;
  /** Objects left out, by reason (no identifiers). */
  excluded: Array<{ reason: string; count: number }>;
}

export interface Manifest {
  export: number;
  project: number;
  kind: ExportKind;
  at: string;
  options: string[];
  patients: ManifestPatient[];
  /** Patients of the cohort left out because they object to research use (a count, no identity). */
  objectingPatientsExcluded: number;
  instances: number;
}

/** Where exports are written: `<dataDir>/research-exports/`. */
export function exportDir(dataDir: string): string {
  return path.join(dataDir, 'research-exports');
}

export function exportZipPath(dataDir: string, exportId: number): string {
  return path.join(exportDir(dataDir), `export-${exportId}.zip`);
}

interface Output { file: string; bytes: Buffer }

async function stow(url: string, token: string | undefined, objects: Output[]): Promise<void> {
  if (objects.length === 0) return;
  const boundary = `atrium-research-${Date.now().toString(36)}`;
  const parts: Buffer[] = [];
  for (const o of objects) parts.push(Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), o.bytes, Buffer.from('\r\n'));
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  const r = await fetch(`${url}/studies`, {
    method: 'POST',
    headers: {
      'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`, accept: 'application/dicom+json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: Buffer.concat(parts),
    signal: AbortSignal.timeout(120_000),
  }).catch((e: unknown) => {
    throw new ResearchError('destination', `the DICOMweb destination did not answer: ${(e as Error).message}`);
  });
  await r.arrayBuffer();
  // 202: stored with warnings (PS3.18 10.5.3); anything else is a failure of the export.
  if (r.status !== 200 && r.status !== 202) throw new ResearchError('destination', `the DICOMweb destination answered ${r.status}`);
}

/** How long an export's lease lasts; its node renews it every quarter of that while it runs. */
const leaseMs = 2 * 60_000;
const leaseUntil = () => new Date(Date.now() + leaseMs);

/** The node an export runs on: this host and its data folder (the same after a restart). */
export function exportNode(dataDir: string): string {
  return `${hostname()}:${path.resolve(dataDir)}`;
}

/** This process's start: a lease of this node's taken before it belongs to a run that died with an earlier process. */
const processStartedAt = Date.now();

/**
 * Marks interrupted the running exports (one, or a project's) whose node died or restarted
 * since it started them, and removes their partial output in this node's data folder.
 * Called before an export is read: what the researcher sees is never a dead run "running".
 */
export async function findInterrupted(store: ResearchStore, dataDir: string, of: { id: number } | { projectId: number }): Promise<void> {
  const node = exportNode(dataDir);
  const ids = await store.markInterrupted(node, new Date(processStartedAt + leaseMs), of);
  for (const id of ids) await removePartialOutput(dataDir, id);
}

/** What an unfinished run of the export left here: staging folder, partial ZIP, folder. */
async function removePartialOutput(dataDir: string, id: number): Promise<void> {
  for (const p of [path.join(exportDir(dataDir), `export-${id}.staging`), `${exportZipPath(dataDir, id)}.partial`, exportZipPath(dataDir, id), path.join(exportDir(dataDir), `export-${id}`)]) {
    await rm(p, { recursive: true, force: true });
  }
}

/**
 * Runs export `id` in the background under its lease (renewed while it runs); its row says
 * when it is done or failed. A node that stops meanwhile leaves it running in its row until it
 * is read: then it shows as interrupted (findInterrupted), to be restarted (restartExport).
 */
function runInBackground(
  archive: Archive, store: ResearchStore, project: ResearchProject, kind: ExportKind, who: Principal, dataDir: string, id: number,
): Promise<Manifest> {
  const node = exportNode(dataDir);
  const renewal = setInterval(() => {
    store.renewExport(id, node, leaseUntil()).catch(() => {});
  }, leaseMs / 4);
  renewal.unref();
  return (async () => {
    try {
      const manifest = await runExport(archive, store, project, kind, who, dataDir, id);
      await store.finishExport(id, node, { manifest });
      return manifest;
    } catch (e) {
      await store.finishExport(id, node, { error: (e as Error).message });
      throw e;
    } finally {
      clearInterval(renewal);
    }
  })();
}

/**
 * Starts an export of an approved project: checked and recorded (status running) before this
 * answers, then run in the background (`done`). Audit: one record per patient exported
 * (outcome success) and one per patient left out for an objection (outcome refused).
 */
export async function startExport(
  archive: Archive, store: ResearchStore, project: ResearchProject, kind: ExportKind, who: Principal, dataDir: string,
): Promise<{ id: number; done: Promise<Manifest> }> {
  if (project.status !== 'approved') throw new ResearchError('conflict', 'the project is not approved');
  if (kind === 'dicomweb' && !project.dicomwebUrl) throw new ResearchError('bad-request', 'the project names no DICOMweb destination');
  const id = await store.startExport(project.id, kind, who.id, { node: exportNode(dataDir), leaseUntil: leaseUntil() });
  return { id, done: runInBackground(archive, store, project, kind, who, dataDir, id) };
}

/**
 * Runs an interrupted or failed export again from the start, under the same id, on this node:
 * what an earlier run left in this node's data folder is removed first; the cohort and the
 * objections are read again; a DICOMweb destination receives the same UIDs again.
 */
export async function restartExport(
  archive: Archive, store: ResearchStore, project: ResearchProject, exportId: number, kind: ExportKind, who: Principal, dataDir: string,
): Promise<{ id: number; done: Promise<Manifest> }> {
  if (project.status !== 'approved') throw new ResearchError('conflict', 'the project is not approved');
  await findInterrupted(store, dataDir, { id: exportId });
  if (!(await store.restartExport(exportId, exportNode(dataDir), leaseUntil()))) {
    throw new ResearchError('conflict', 'only an interrupted or failed export is restarted');
  }
  await removePartialOutput(dataDir, exportId);
  return { id: exportId, done: runInBackground(archive, store, project, kind, who, dataDir, exportId) };
}

async function runExport(
  archive: Archive, store: ResearchStore, project: ResearchProject, kind: ExportKind, who: Principal, dataDir: string, id: number,
): Promise<Manifest> {
  const audit = new AuditTrail(archive.index.sql);
  const policy = new AccessPolicy(archive.index.sql);
  const manifest: Manifest = {
    export: id, project: project.id, kind, at: new Date().toISOString(), options: project.options, patients: [], objectingPatientsExcluded: 0, instances: 0,
  };
  // Objects are written as they are made (a folder; a ZIP's staging folder, zipped at the end):
  // memory holds one object at a time, and one patient's objects for a DICOMweb destination.
  const folder = kind === 'folder' ? path.join(exportDir(dataDir), `export-${id}`)
    : kind === 'zip' ? path.join(exportDir(dataDir), `export-${id}.staging`) : undefined;
  const files: string[] = [];
  const cohort = await cohortOf(archive, project);
  const byPatient = new Map<number, CohortStudy[]>();
  for (const s of cohort) byPatient.set(s.patientId, [...(byPatient.get(s.patientId) ?? []), s]);
  const persons = new Map<string, { records: number[]; studies: CohortStudy[] }>();
  for (const [patientId, studies] of byPatient) {
    const records = (await policy.samePerson([patientId])).sort((a, b) => a - b);
    const key = String(records[0]);
    const p = persons.get(key) ?? { records, studies: [] };
    p.studies.push(...studies);
    persons.set(key, p);
  }
  if (folder) await mkdir(folder, { recursive: true, mode: 0o700 });
  let patientIndex = 0;
  for (const [personKey, person] of persons) {
    const attributes = (await Promise.all(person.records.map(async (r) => archive.index.patientRecord(r)))).filter((a) => a !== undefined);
    const refs = attributes.map((a) => patientRef(archive.siteById.get(a.siteId)?.code ?? '?', a.patient.IssuerOfPatientID, a.patient.PatientID));
    const base = { ...actorOf(who), via: 'api' as const, patients: refs };
    if (await store.objectionOf(person.records)) {
      manifest.objectingPatientsExcluded++;
      await audit.record({ ...base, action: 'export', outcome: 'refused', reason: 'the patient objects to research use', details: { researchProject: project.id, researchExport: id } });
      continue;
    }
    const identity = {
      records: attributes.map((a) => ({
        site: archive.siteById.get(a.siteId)?.code ?? '?', IssuerOfPatientID: a.patient.IssuerOfPatientID, PatientID: a.patient.PatientID,
        ...(a.patient.PatientName ? { PatientName: a.patient.PatientName } : {}),
      })),
    };
    const subject = await store.subject(project.id, personKey, identity);
    const identifying = identity.records.flatMap((r) => [r.PatientID, ...(r.PatientName ?? '').split(/[\^= ]+/)]);
    const mapper = store.uidMapper(project.id);
    const entry: ManifestPatient = { pseudonym: subject.pseudonym, studies: [], excluded: [] };
    const excluded = new Map<string, number>();
    const toSend: Output[] = [];
    let written = 0;
    patientIndex++;
    for (const [studyIndex, study] of person.studies.entries()) {
      const instances = await archive.retriever.findInstances({ StudyInstanceUID: study.StudyInstanceUID });
      const studyEntry: ManifestPatient['studies'][number] = { StudyInstanceUID: mapper.uid(study.StudyInstanceUID), instances: [] };
      for await (const opened of archive.retriever.openInstances(instances.map((inst) => ({ inst, transferSyntaxUID: '*' })))) {
        let bytes: Buffer;
        if (Buffer.isBuffer(opened.body)) {
          bytes = Buffer.from(opened.body);
          opened.release?.();
        } else {
          const chunks: Buffer[] = [];
          for await (const c of opened.body) chunks.push(c as Buffer);
          bytes = Buffer.concat(chunks);
        }
        try {
          const out = await deidentifyObject(bytes, {
            options: new Set(project.options), pseudonym: subject.pseudonym, dateOffsetDays: subject.dateOffsetDays, uid: mapper.uid, identifying,
            ...(project.pixelMasks ? { pixelMasks: project.pixelMasks } : {}),
          });
          const file = `${subject.pseudonym}/S${String(studyIndex + 1).padStart(3, '0')}/${String(studyEntry.instances.length + 1).padStart(5, '0')}.dcm`;
          studyEntry.instances.push({ SOPInstanceUID: out.SOPInstanceUID, SOPClassUID: out.SOPClassUID, SeriesInstanceUID: out.SeriesInstanceUID, ...(kind !== 'dicomweb' ? { file } : {}) });
          if (folder) {
            await mkdir(path.dirname(path.join(folder, file)), { recursive: true, mode: 0o700 });
            await writeFile(path.join(folder, file), out.bytes, { mode: 0o600 });
            files.push(file);
          } else {
            toSend.push({ file, bytes: out.bytes });
          }
          written++;
        } catch (e) {
          if (!(e instanceof DeidentifyError)) throw e;
          excluded.set(e.code, (excluded.get(e.code) ?? 0) + 1);
        }
      }
      entry.studies.push(studyEntry);
    }
    await mapper.flush();
    entry.excluded = [...excluded].map(([reason, count]) => ({ reason, count }));
    if (kind === 'dicomweb') await stow(project.dicomwebUrl!, await store.dicomwebToken(project.id), toSend);
    manifest.instances += written;
    manifest.patients.push(entry);
    await audit.record({
      ...base, action: 'export', outcome: 'success', reason: `research project ${project.id}`,
      details: { researchProject: project.id, researchExport: id, kind, instances: written, excluded: entry.excluded, patient: patientIndex },
    });
  }
  const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 2));
  if (kind === 'folder') await writeFile(path.join(folder!, 'manifest.json'), manifestBytes, { mode: 0o600 });
  if (kind === 'zip') {
    const staging = folder!;
    const entries = async function* (): AsyncGenerator<ZipEntry> {
      for (const f of files) {
        const data = await readFile(path.join(staging, f));
        yield { name: f, size: data.length, data };
      }
      yield { name: 'manifest.json', size: manifestBytes.length, data: manifestBytes };
    };
    const partial = `${exportZipPath(dataDir, id)}.partial`;
    await pipeline(Readable.from(writeZip(entries())), createWriteStream(partial, { mode: 0o600 }));
    await rename(partial, exportZipPath(dataDir, id));
    await rm(staging, { recursive: true, force: true });
  }
  return manifest;
}

/**
 * An export's manifest as it reads now: each patient marked when they have objected since
 * (their data already left; the next export leaves them out).
 */
export async function manifestNow(archive: Archive, store: ResearchStore, projectId: number, manifest: Manifest): Promise<Manifest & { patients: Array<ManifestPatient & { objectedSince?: string }> }> {
  const patients = [];
  for (const p of manifest.patients) {
    const identity = await store.reidentify(projectId, { pseudonym: p.pseudonym });
    const ids: number[] = [];
    for (const r of identity?.identity?.records ?? []) {
      const site = archive.sites.get(r.site);
      const id = site ? await archive.index.patientRecordId(site.id, r.IssuerOfPatientID, r.PatientID) : undefined;
      if (id !== undefined) ids.push(id);
    }
    const since = await store.objectionOf(ids);
    patients.push(since && since > manifest.at ? { ...p, objectedSince: since } : p);
  }
  return { ...manifest, patients };
}
