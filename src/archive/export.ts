/**
 * Export of studies as a media file-set (PS3.10, PS3.11 general-purpose profiles): every
 * stored object byte for byte under an 8-character, upper-case file ID, plus a DICOMDIR.
 * Written to a folder (to burn or copy) or streamed as a ZIP with the same layout.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { DicomJsonDataset } from '../dicom/json.ts';
import { newUID } from '../dicom/uids.ts';
import type { StoredInstance } from '../index/records.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import type { Archive } from './archive.ts';
import { encodeDicomdir, recordKeysOf, recordTypeOfSOPClass, type DirectoryRecord, type DirectoryRecordType } from './dicomdir.ts';
import { writeZip, type ZipEntry } from './zip.ts';
import { readAhead } from '../lib/read-ahead.ts';

export class MediaExportError extends Error {
  constructor(readonly code: 'corrupt' | 'folder-not-empty', message: string) {
    super(message);
    this.name = 'MediaExportError';
  }
}

export interface MediaFile {
  /** File ID components, e.g. ["DICOM", "PA000001", "ST000001", "SE000001", "IM000001"]. */
  id: string[];
  inst: StoredInstance;
}

/** What an export writes, decided before a byte is: answers "not found" while an HTTP status can still say so. */
export interface MediaExportPlan {
  StudyInstanceUIDs: string[];
  files: MediaFile[];
  dicomdir: Buffer;
  /** Type 1 DICOMDIR keys the objects lacked: invented (as DCMTK's dcmmkdir +I does) or left empty. */
  notes: string[];
}

export interface MediaExportReport {
  StudyInstanceUIDs: string[];
  files: number;
  bytes: number;
  notes: string[];
}

/** Objects up to this size are read whole, so that their ZIP entry carries its CRC up front. */
const wholeReadLimit = 16 * 1024 * 1024;
/** Objects read (or opened) ahead of the one being written. */
const readAheadCount = 4;
const fileSetID = 'ATRIUM';

const hex = (group: number, element: number) => (((group << 16) | element) >>> 0).toString(16).toUpperCase().padStart(8, '0');
const firstValue = (json: DicomJsonDataset, group: number, element: number): string | undefined => {
  const v = json[hex(group, element)]?.Value?.[0];
  return typeof v === 'string' || typeof v === 'number' ? String(v) : undefined;
};
const name8 = (prefix: string, n: number) => prefix + String(n).padStart(8 - prefix.length, '0');

/**
 * Plans the export of studies: which object goes to which file ID, and the DICOMDIR
 * (PATIENT / STUDY / SERIES / instance records). Throws RetrieveError 'not-found' for a
 * study the archive does not hold.
 */
export async function planMediaExport(archive: Archive, StudyInstanceUIDs: string[], now = new Date()): Promise<MediaExportPlan> {
  const notes: string[] = [];
  const files: MediaFile[] = [];
  const patients = new Map<string, DirectoryRecord>();
  const today = now.toISOString().slice(0, 10).replaceAll('-', '');
  const note = (what: string, result: { missing: string[]; invented: string[] }, fallbacks: Record<string, string>) => {
    for (const k of result.invented) notes.push(`${what}: ${k} missing in the objects, ${JSON.stringify(fallbacks[k])} written`);
    for (const k of result.missing) notes.push(`${what}: ${k} missing in the objects, written empty`);
  };

  for (const [studyIndex, StudyInstanceUID] of StudyInstanceUIDs.entries()) {
    const instances = await archive.retriever.findInstances({ StudyInstanceUID });
    const first = JSON.parse(instances[0]!.metadataJson) as DicomJsonDataset;
    const PatientID = firstValue(first, 0x0010, 0x0020) ?? '';
    const patientKey = `${PatientID}\u0000${firstValue(first, 0x0010, 0x0021) ?? ''}\u0000${PatientID === '' ? StudyInstanceUID : ''}`;
    let patient = patients.get(patientKey);
    if (!patient) {
      const fallbacks = { PatientID: `ATRIUM${String(patients.size + 1).padStart(6, '0')}` };
      const keys = recordKeysOf('PATIENT', first, fallbacks);
      note(`patient of study ${StudyInstanceUID}`, keys, fallbacks);
      patient = { type: 'PATIENT', keys: keys.keys, children: [] };
      patients.set(patientKey, patient);
    }
    const patientDir = name8('PA', [...patients.values()].indexOf(patient) + 1);
    const studyFallbacks = {
      StudyDate: firstValue(first, 0x0008, 0x0021) ?? firstValue(first, 0x0008, 0x0022) ?? firstValue(first, 0x0008, 0x0023) ?? today,
      StudyTime: firstValue(first, 0x0008, 0x0031) ?? firstValue(first, 0x0008, 0x0032) ?? firstValue(first, 0x0008, 0x0033) ?? '000000',
      StudyID: name8('ST', studyIndex + 1),
      StudyInstanceUID,
    };
    const studyKeys = recordKeysOf('STUDY', first, studyFallbacks);
    note(`study ${StudyInstanceUID}`, studyKeys, studyFallbacks);
    const study: DirectoryRecord = { type: 'STUDY', keys: studyKeys.keys, children: [] };
    patient.children.push(study);
    const studyDir = name8('ST', patient.children.length);

    const seriesByUID = new Map<string, { record: DirectoryRecord; dir: string }>();
    for (const inst of instances) {
      const json = JSON.parse(inst.metadataJson) as DicomJsonDataset;
      let series = seriesByUID.get(inst.SeriesInstanceUID);
      if (!series) {
        const fallbacks = { Modality: 'OT', SeriesNumber: String(seriesByUID.size + 1), SeriesInstanceUID: inst.SeriesInstanceUID };
        const keys = recordKeysOf('SERIES', json, fallbacks);
        note(`series ${inst.SeriesInstanceUID}`, keys, fallbacks);
        series = { record: { type: 'SERIES', keys: keys.keys, children: [] }, dir: name8('SE', seriesByUID.size + 1) };
        study.children.push(series.record);
        seriesByUID.set(inst.SeriesInstanceUID, series);
      }
      const type: DirectoryRecordType = recordTypeOfSOPClass(inst.SOPClassUID);
      const fallbacks = { InstanceNumber: String(series.record.children.length + 1) };
      const keys = recordKeysOf(type, json, fallbacks);
      note(`instance ${inst.SOPInstanceUID}`, keys, fallbacks);
      const id = ['DICOM', patientDir, studyDir, series.dir, name8('IM', series.record.children.length + 1)];
      series.record.children.push({
        type, keys: keys.keys, children: [],
        file: { id, SOPClassUID: inst.SOPClassUID, SOPInstanceUID: inst.SOPInstanceUID, TransferSyntaxUID: inst.TransferSyntaxUID },
      });
      files.push({ id, inst });
    }
  }
  const dicomdir = encodeDicomdir({ roots: [...patients.values()], SOPInstanceUID: newUID(), fileSetID });
  return { StudyInstanceUIDs, files, dicomdir, notes };
}

/** The stored bytes of an object, streamed, checked against the size and SHA-256 the index recorded. */
async function* verifiedBytes(store: BlobStore, inst: StoredInstance): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of await store.get(inst.blobKey)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
    yield chunk as Buffer;
  }
  checkIntegrity(inst, size, hash.digest('hex'));
}

async function wholeVerifiedBytes(store: BlobStore, inst: StoredInstance): Promise<Buffer> {
  const bytes = await store.readWhole(inst.blobKey, inst.size);
  checkIntegrity(inst, bytes.length, createHash('sha256').update(bytes).digest('hex'));
  return bytes;
}

function checkIntegrity(inst: StoredInstance, size: number, sha256: string): void {
  if (size !== inst.size || sha256 !== inst.sha256) {
    throw new MediaExportError('corrupt', `instance ${inst.SOPInstanceUID}: the stored object no longer matches its recorded size or SHA-256 (run atrium verify)`);
  }
}

/** The ZIP of a planned export: DICOMDIR first, then every object under its file ID. */
export async function* zipOfMediaExport(archive: Archive, plan: MediaExportPlan): AsyncGenerator<Buffer> {
  yield* writeZip(zipEntries(archive.store, plan));
}

async function* zipEntries(store: BlobStore, plan: MediaExportPlan): AsyncGenerator<ZipEntry> {
  yield { name: 'DICOMDIR', size: plan.dicomdir.length, data: plan.dicomdir };
  // Small objects are read whole a few ahead, so storage reads overlap the writing of earlier ones.
  const open = (f: MediaFile): Promise<ZipEntry> => {
    const name = f.id.join('/');
    if (f.inst.size <= wholeReadLimit) return wholeVerifiedBytes(store, f.inst).then((data) => ({ name, size: f.inst.size, data }));
    return Promise.resolve({ name, size: f.inst.size, data: verifiedBytes(store, f.inst) });
  };
  for await (const [, entry] of readAhead(plan.files, open, readAheadCount)) yield entry;
}

/**
 * Writes a planned export to a folder that is absent or empty: the objects (each checked
 * against its recorded SHA-256), then the DICOMDIR last, so that a folder with a DICOMDIR
 * is a complete file-set.
 */
export async function exportToFolder(archive: Archive, plan: MediaExportPlan, folder: string, concurrency = 4): Promise<MediaExportReport> {
  await mkdir(folder, { recursive: true });
  if ((await readdir(folder)).length > 0) throw new MediaExportError('folder-not-empty', `${folder} is not empty: an export writes a whole file-set into an empty folder`);
  let next = 0;
  let bytes = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < plan.files.length) {
      const f = plan.files[next++]!;
      const target = path.join(folder, ...f.id);
      try {
        await mkdir(path.dirname(target), { recursive: true });
        await pipeline(verifiedBytes(archive.store, f.inst), createWriteStream(target, { flags: 'wx' }));
      } catch (e) {
        failed = true; // no DICOMDIR is written: the folder is visibly incomplete
        throw e;
      }
      bytes += f.inst.size;
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.min(concurrency, plan.files.length) }, worker));
  const failure = settled.find((s) => s.status === 'rejected');
  if (failure) throw failure.reason;
  await writeFile(path.join(folder, 'DICOMDIR'), plan.dicomdir, { flag: 'wx' });
  return { StudyInstanceUIDs: plan.StudyInstanceUIDs, files: plan.files.length, bytes: bytes + plan.dicomdir.length, notes: plan.notes };
}

/** Writes the ZIP of a planned export to a file. */
export async function exportToZipFile(archive: Archive, plan: MediaExportPlan, file: string): Promise<MediaExportReport> {
  let bytes = 0;
  async function* counted() {
    for await (const chunk of zipOfMediaExport(archive, plan)) {
      bytes += chunk.length;
      yield chunk;
    }
  }
  await pipeline(counted, createWriteStream(file, { flags: 'wx' }));
  return { StudyInstanceUIDs: plan.StudyInstanceUIDs, files: plan.files.length, bytes, notes: plan.notes };
}
