import { createHash, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import {
  Tags, isKnownTransferSyntax, isNativeTransferSyntax, tagToHex,
  type ByteRange, type DicomDataset, type ParsedObject,
} from '../dicom/dataset.ts';
import { Part10Parser, DicomParseError } from '../dicom/part10-parser.ts';
import { numberValue, stringValue, valueContextOf, type ValueContext } from '../dicom/values.ts';
import { stringifyDicomJson, toDicomJson } from '../dicom/json.ts';
import { isValidUID } from '../dicom/uids.ts';
import type { BlobStore, StoredBlob } from '../storage/blob-store.ts';
import type { IngestJournal, JournalEntry } from '../storage/ingest-journal.ts';
import { IndexConflictError, type ArchiveIndex } from '../index/archive-index.ts';
import type { DuplicatePolicy, InstanceLayout, InstanceRecord, Site, StoreOutcome } from '../index/records.ts';
import { originalRecordOf } from './original-record.ts';
import { IngestError, type IngestErrorCode } from './ingest-error.ts';

/** Who sends the object, resolved by the protocol adapter before ingest. */
export interface IngestSource {
  site: Site;
  via: 'stow-rs' | 'dimse' | 'import' | 'reindex' | 'report';
  /** STOW-RS to /studies/{StudyInstanceUID}: every object must belong to it. */
  expectedStudyInstanceUID?: string;
}

export interface IngestedInstance {
  status: Exclude<StoreOutcome['status'], 'rejected' | 'kept-existing'>;
  SOPClassUID: string;
  SOPInstanceUID: string;
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  TransferSyntaxUID: string;
  size: number;
  warnings: string[];
}

export type IngestResult =
  | { ok: true; instance: IngestedInstance }
  | { ok: false; error: IngestError; SOPClassUID?: string; SOPInstanceUID?: string };

export interface IngestOptions {
  duplicatePolicy: DuplicatePolicy;
  maxHeaderBytes: number;
  /** A meta header naming other SOP UIDs than its dataset: archived with a warning, or refused. */
  metaHeaderMismatch: MetaHeaderMismatchPolicy;
}

export type MetaHeaderMismatchPolicy = 'warn' | 'reject';

/**
 * Objects up to this size are written once more into the ingest journal, whose shared flush
 * then stands for theirs; larger ones are flushed where they lie (the bytes dominate the cost).
 */
export const journalInlineMaxBytes = 1024 * 1024;

/** The one way in: every entry point (STOW-RS, C-STORE, import) ingests through here. */
export class Ingestor {
  constructor(
    private readonly index: ArchiveIndex,
    private readonly store: BlobStore,
    private readonly options: IngestOptions,
    private readonly logger: Logger,
    /** With a journal, an object is acknowledged once durable in it; the index commit need not wait for the disk. */
    private readonly journal?: IngestJournal,
  ) {}

  /**
   * Streams one Part 10 object to storage while parsing its header, validates it,
   * indexes it in one transaction, and only then answers. Refused objects leave no
   * blob and no index row. Errors of the source stream itself (a broken upload)
   * are thrown: the adapter answers them for the whole request.
   */
  async ingestInstance(body: Readable, source: IngestSource): Promise<IngestResult> {
    const parser = new Part10Parser({ maxHeaderBytes: this.options.maxHeaderBytes });
    let parseError: DicomParseError | undefined;
    // Each chunk is parsed on its way to storage: one pass, no copy, no extra stream.
    async function* tapped(): AsyncGenerator<Buffer> {
      for await (const chunk of body) {
        try {
          parser.write(chunk as Buffer);
        } catch (e) {
          if (e instanceof DicomParseError) parseError = e;
          throw e;
        }
        yield chunk as Buffer;
      }
    }
    const key = newBlobKey(source.site.code);
    let blob: StoredBlob;
    let inline: Buffer[] | undefined;
    try {
      if (this.journal && this.store.putDeferred) ({ blob, inline } = await this.store.putDeferred(key, tapped(), journalInlineMaxBytes));
      else blob = await this.store.put(key, tapped());
    } catch (e) {
      if (parseError) return { ok: false, error: ingestErrorOfParse(parseError) };
      throw e;
    }
    if (!this.journal) return this.indexBlob(() => parser.end(), blob, source, true);

    // The one flush this object waits for (shared with every object journaled meanwhile);
    // before the index commit, so that no row can ever be durable without its object.
    let entry: JournalEntry;
    try {
      entry = await this.journal.append({ type: 'object', key: blob.key, size: blob.size, sha256: blob.sha256, inline });
    } catch (e) {
      await this.discardBlob(blob.key);
      throw e;
    }
    try {
      return await this.indexBlob(() => parser.end(), blob, source, true, false);
    } finally {
      entry.settle();
    }
  }

  /**
   * Indexes an object already in storage (reindex after the index was lost):
   * same validation and duplicate policy as a new arrival, nothing deleted on refusal.
   */
  async reindexBlob(key: string, source: IngestSource): Promise<IngestResult> {
    const parser = new Part10Parser({ maxHeaderBytes: this.options.maxHeaderBytes });
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const chunk of await this.store.get(key)) {
        parser.write(chunk as Buffer);
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
    } catch (e) {
      if (e instanceof DicomParseError) return { ok: false, error: ingestErrorOfParse(e) };
      throw e;
    }
    return this.indexBlob(() => parser.end(), { key, size, sha256: hash.digest('hex') }, source, false);
  }

  private async indexBlob(parse: () => ParsedObject, blob: StoredBlob, source: IngestSource, ownsBlob: boolean, durable = true): Promise<IngestResult> {
    const discard = async () => {
      if (ownsBlob) await this.discardBlob(blob.key);
    };
    let parsed: ParsedObject | undefined;
    let record: InstanceRecord;
    let warnings: string[];
    try {
      parsed = parse();
      // An object already in storage was accepted once: reindexing never refuses it for its meta header.
      ({ record, warnings } = buildInstanceRecord(parsed, blob, source, ownsBlob ? this.options.metaHeaderMismatch : 'warn'));
    } catch (e) {
      await discard();
      const error = e instanceof DicomParseError ? ingestErrorOfParse(e) : e;
      if (error instanceof IngestError) return { ok: false, error, ...(parsed ? sopOf(parsed) : {}) };
      throw e;
    }

    let outcome: StoreOutcome;
    try {
      outcome = await this.index.storeInstance(record, this.options.duplicatePolicy, { durable });
    } catch (e) {
      if (e instanceof IndexConflictError) {
        // Rolled back for certain: the blob would be an orphan.
        await discard();
        return { ok: false, SOPClassUID: record.instance.SOPClassUID, SOPInstanceUID: record.instance.SOPInstanceUID, error: identityConflictError(e, record) };
      }
      // Any other failure may have come after the commit (the WAL sync, a lost connection
      // to PostgreSQL): the row may exist, so its blob stays. If the row does not exist,
      // `atrium verify` reports the blob as an orphan and --repair removes it.
      throw e;
    }
    const { SOPInstanceUID, SOPClassUID } = record.instance;
    switch (outcome.status) {
      case 'identical':
        if (outcome.existingBlobKey !== blob.key) await discard();
        break;
      case 'rejected':
        await discard();
        return {
          ok: false, SOPClassUID, SOPInstanceUID,
          error: new IngestError('duplicate-rejected', 'a different object with this SOPInstanceUID is already stored (duplicate policy: reject)'),
        };
      case 'kept-existing':
        return {
          ok: false, SOPClassUID, SOPInstanceUID,
          error: new IngestError('duplicate-kept', 'a different object with this SOPInstanceUID is already stored; the new one is kept in its history, not served (duplicate policy: keep)'),
        };
      case 'stored':
      case 'replaced':
        break;
    }
    this.logger.debug({ sop: SOPInstanceUID, status: outcome.status, site: source.site.code, via: source.via, size: blob.size }, 'instance indexed');
    return {
      ok: true,
      instance: {
        status: outcome.status,
        SOPClassUID,
        SOPInstanceUID,
        StudyInstanceUID: record.study.StudyInstanceUID,
        SeriesInstanceUID: record.series.SeriesInstanceUID,
        TransferSyntaxUID: record.instance.TransferSyntaxUID,
        size: blob.size,
        warnings,
      },
    };
  }

  private async discardBlob(key: string): Promise<void> {
    try {
      // Journaled first: recovery must not bring back an object refused or found a duplicate.
      if (this.journal?.has(key)) await this.journal.discard(key);
      await this.store.delete(key);
    } catch (e) {
      // Left for `atrium verify` to report as an orphan.
      this.logger.warn({ err: e, key }, 'could not delete an unneeded blob');
    }
  }
}

/**
 * instances/<site>/<yyyy>/<mm>/<dd>/<time>-<random>.dcm: the site is kept with the
 * object so `atrium reindex` can rebuild everything from storage alone, and names
 * sort by arrival so a replay applies the duplicate policy in the original order.
 * No patient identifier ever appears in a key.
 */
export function newBlobKey(siteCode: string, now = new Date()): string {
  const d = now.toISOString();
  const time = now.getTime().toString(36).padStart(10, '0');
  return `instances/${siteCode}/${d.slice(0, 4)}/${d.slice(5, 7)}/${d.slice(8, 10)}/${time}-${randomUUID()}.dcm`;
}

/** The site code a blob key was written for, or undefined for keys of another form. */
export function siteCodeOfBlobKey(key: string): string | undefined {
  return /^instances\/([A-Za-z0-9_-]+)\/\d{4}\/\d{2}\/\d{2}\/[^/]+\.dcm$/.exec(key)?.[1];
}

const conflictingUID: Record<IndexConflictError['reason'], string> = {
  'study-of-another-patient': 'Study Instance UID',
  'series-of-another-study': 'Series Instance UID',
  'instance-of-another-site': 'SOP Instance UID',
  'instance-of-another-patient': 'SOP Instance UID',
};

/**
 * The refusal of an object that contradicts the index. When what it contradicts belongs to
 * another site, the sender learns only that the UID cannot be accepted from its site, the
 * same words whatever the other site holds (no study, no patient, not even that a site
 * does); its own site's conflicts are explained. The facts go with the error for the audit trail.
 */
function identityConflictError(e: IndexConflictError, record: InstanceRecord): IngestError {
  const message = e.holder.siteId === record.siteId ? e.message : `this ${conflictingUID[e.reason]} cannot be accepted from this site`;
  return new IngestError('identity-conflict', message, {
    reason: e.reason,
    sent: {
      siteId: record.siteId, SOPInstanceUID: record.instance.SOPInstanceUID, StudyInstanceUID: record.study.StudyInstanceUID,
      PatientID: record.patient.PatientID, IssuerOfPatientID: record.patient.IssuerOfPatientID,
    },
    holder: e.holder,
  });
}

function ingestErrorOfParse(e: DicomParseError): IngestError {
  const code: IngestErrorCode = e.code === 'no-preamble' || e.code === 'no-meta' || e.code === 'bad-meta'
    ? 'not-dicom'
    : e.code === 'truncated' ? 'truncated'
      : e.code === 'header-too-large' ? 'header-too-large'
        : 'malformed';
  return new IngestError(code, e.message);
}

const metaCtx: ValueContext = valueContextOf(new Map(), true);

/** The refused object's identity, for the failure report (dataset first, then meta header). */
function sopOf(parsed: ParsedObject): { SOPClassUID?: string; SOPInstanceUID?: string } {
  const ctx = valueContextOf(parsed.dataset, parsed.littleEndian);
  return {
    SOPClassUID: stringValue(parsed.dataset, Tags.SOPClassUID, ctx) ?? stringValue(parsed.meta, Tags.MediaStorageSOPClassUID, metaCtx),
    SOPInstanceUID: stringValue(parsed.dataset, Tags.SOPInstanceUID, ctx) ?? stringValue(parsed.meta, Tags.MediaStorageSOPInstanceUID, metaCtx),
  };
}

/**
 * Validates a parsed object and turns it into what the index stores.
 * Throws IngestError with the reason an object cannot be archived.
 */
export function buildInstanceRecord(
  parsed: ParsedObject,
  blob: StoredBlob,
  source: IngestSource,
  metaHeaderMismatch: MetaHeaderMismatchPolicy,
): { record: InstanceRecord; warnings: string[] } {
  const warnings: string[] = [];
  const { meta, dataset } = parsed;
  const ctx = valueContextOf(dataset, parsed.littleEndian);
  const s = (t: number) => stringValue(dataset, t, ctx);
  const n = (t: number) => numberValue(dataset, t, ctx);

  const ts = parsed.transferSyntaxUID;
  if (!isKnownTransferSyntax(ts)) {
    throw new IngestError('unknown-transfer-syntax', `transfer syntax ${ts} is not one Atrium knows`);
  }
  const metaSOPClassUID = stringValue(meta, Tags.MediaStorageSOPClassUID, metaCtx);
  const metaSOPInstanceUID = stringValue(meta, Tags.MediaStorageSOPInstanceUID, metaCtx);
  const required = {
    SOPClassUID: s(Tags.SOPClassUID),
    SOPInstanceUID: s(Tags.SOPInstanceUID),
    StudyInstanceUID: s(Tags.StudyInstanceUID),
    SeriesInstanceUID: s(Tags.SeriesInstanceUID),
  };
  for (const [keyword, value] of Object.entries(required)) {
    if (value === undefined) throw new IngestError('missing-attribute', `${keyword} is missing or empty`);
    if (!isValidUID(value)) throw new IngestError('invalid-uid', `${keyword} is not a valid UID: ${JSON.stringify(value)}`);
  }
  const { SOPClassUID, SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID } = required as Record<keyof typeof required, string>;
  if (metaSOPInstanceUID === undefined || metaSOPClassUID === undefined) {
    throw new IngestError('not-dicom', 'the file meta information lacks MediaStorageSOPClassUID or MediaStorageSOPInstanceUID');
  }
  // Real objects often carry a meta header that disagrees with their dataset (half of
  // pydicom's implicit VR test files do). The meta header is packaging written by the
  // sender's software, absent on DIMSE; the dataset is the content. By default the bytes
  // are kept as received, the dataset's UIDs are what the index and every query use, and
  // the discrepancy is reported as a warning; a stricter operator can refuse them.
  const mismatches: string[] = [];
  if (metaSOPInstanceUID !== SOPInstanceUID) mismatches.push(`MediaStorageSOPInstanceUID ${metaSOPInstanceUID} differs from SOPInstanceUID ${SOPInstanceUID}`);
  if (metaSOPClassUID !== SOPClassUID) mismatches.push(`MediaStorageSOPClassUID ${metaSOPClassUID} differs from SOPClassUID ${SOPClassUID}`);
  if (mismatches.length > 0) {
    if (metaHeaderMismatch === 'reject') throw new IngestError('uid-mismatch', mismatches.join('; '));
    warnings.push(`${mismatches.join('; ')}: the dataset's UIDs are used`);
  }
  if (source.expectedStudyInstanceUID !== undefined && source.expectedStudyInstanceUID !== StudyInstanceUID) {
    throw new IngestError('study-mismatch', `the object belongs to study ${StudyInstanceUID}, not to ${source.expectedStudyInstanceUID}`);
  }

  const layout = layoutOf(parsed);
  // A file compression at rest wrote: the original it replaced, as recorded in the file (never taken from what a sender wrote).
  if (source.via === 'reindex') {
    const original = originalRecordOf(meta, ts);
    if (original) layout.original = original;
  }
  checkPixelDataSize(parsed, layout, ctx, warnings);

  let PatientID = s(Tags.PatientID);
  if (PatientID === undefined) {
    warnings.push('PatientID is empty');
    PatientID = '';
  }
  const metadata = toDicomJson(dataset, ctx, {
    bulkDataURI: (tagPath: string) => `atrium:bulk/${tagPath}`,
  });
  const record: InstanceRecord = {
    siteId: source.site.id,
    patient: {
      PatientID,
      IssuerOfPatientID: s(Tags.IssuerOfPatientID) ?? source.site.issuerOfPatientID,
      PatientName: s(Tags.PatientName),
      PatientBirthDate: s(Tags.PatientBirthDate),
      PatientSex: s(Tags.PatientSex),
    },
    study: {
      StudyInstanceUID,
      StudyDate: s(Tags.StudyDate),
      StudyTime: s(Tags.StudyTime),
      AccessionNumber: s(Tags.AccessionNumber),
      StudyID: s(Tags.StudyID),
      StudyDescription: s(Tags.StudyDescription),
      ReferringPhysicianName: s(Tags.ReferringPhysicianName),
      ReferringPhysicianID: referringPhysicianID(dataset, ctx),
      InstitutionName: s(Tags.InstitutionName),
    },
    series: {
      SeriesInstanceUID,
      Modality: s(Tags.Modality),
      SeriesNumber: n(Tags.SeriesNumber),
      SeriesDescription: s(Tags.SeriesDescription),
      BodyPartExamined: s(Tags.BodyPartExamined),
      SeriesDate: s(Tags.SeriesDate),
      SeriesTime: s(Tags.SeriesTime),
      PerformedProcedureStepStartDate: s(Tags.PerformedProcedureStepStartDate),
      PerformedProcedureStepStartTime: s(Tags.PerformedProcedureStepStartTime),
    },
    instance: {
      SOPInstanceUID,
      SOPClassUID,
      InstanceNumber: n(Tags.InstanceNumber),
      TransferSyntaxUID: ts,
      NumberOfFrames: n(Tags.NumberOfFrames),
      Rows: n(Tags.Rows),
      Columns: n(Tags.Columns),
      ContentDate: s(Tags.ContentDate),
      ContentTime: s(Tags.ContentTime),
    },
    blob,
    layout,
    metadataJson: stringifyDicomJson(metadata),
  };
  return { record, warnings };
}

/** Where bulk values and pixel data lie in the stored object, by tag path. */
/** The first identifier of the referring physician (its code value: an RPPS number in France). */
function referringPhysicianID(dataset: DicomDataset, ctx: ValueContext): string | undefined {
  for (const person of dataset.get(Tags.ReferringPhysicianIdentificationSequence)?.items ?? []) {
    for (const code of person.get(Tags.PersonIdentificationCodeSequence)?.items ?? []) {
      const value = stringValue(code, Tags.CodeValue, ctx);
      if (value) return value;
    }
  }
  return undefined;
}

/** Where the parts of a parsed object lie in its file (the index keeps it; compression at rest records its new file's). */
export function layoutOf(parsed: ParsedObject): InstanceLayout {
  const layout: InstanceLayout = {
    datasetOffset: parsed.datasetOffset,
    littleEndian: parsed.littleEndian,
    explicitVR: parsed.explicitVR,
    bulk: {},
  };
  const walk = (ds: DicomDataset, prefix: string) => {
    for (const el of ds.values()) {
      const path = prefix + tagToHex(el.tag);
      if (el.items) {
        el.items.forEach((item, i) => walk(item, `${path}.${i}.`));
        continue;
      }
      const range = el.bulk ?? spanOf(el.fragments);
      if (range) layout.bulk[path] = range;
      if (el.tag === Tags.PixelData && prefix === '' && range) {
        layout.pixelData = { range, fragments: el.fragments, basicOffsetTable: el.basicOffsetTable };
      }
    }
  };
  walk(parsed.dataset, '');
  return layout;
}

function spanOf(fragments: ByteRange[] | undefined): ByteRange | undefined {
  if (!fragments || fragments.length === 0) return undefined;
  const first = fragments[0]!;
  const last = fragments[fragments.length - 1]!;
  return { offset: first.offset, length: last.offset + last.length - first.offset };
}

function checkPixelDataSize(parsed: ParsedObject, layout: InstanceLayout, ctx: ValueContext, warnings: string[]): void {
  const el = parsed.dataset.get(Tags.PixelData);
  if (!el || !isNativeTransferSyntax(parsed.transferSyntaxUID)) return;
  const n = (t: number) => numberValue(parsed.dataset, t, ctx);
  const rows = n(Tags.Rows), columns = n(Tags.Columns), bits = n(Tags.BitsAllocated);
  if (rows === undefined || columns === undefined || bits === undefined) {
    throw new IngestError('missing-attribute', 'PixelData is present but Rows, Columns or BitsAllocated is missing');
  }
  const declaredSamples = n(Tags.SamplesPerPixel) ?? 1;
  // 4:2:2 subsampling (PS3.3 C.7.6.3.1.2): two pixels share one Cb and one Cr, 2 samples a pixel in all.
  const photometric = stringValue(parsed.dataset, Tags.PhotometricInterpretation, ctx);
  const samples = declaredSamples === 3 && (photometric === 'YBR_FULL_422' || photometric === 'YBR_PARTIAL_422') ? 2 : declaredSamples;
  const frames = n(Tags.NumberOfFrames) ?? 1;
  const expected = Math.ceil((rows * columns * samples * frames * bits) / 8);
  const actual = layout.pixelData?.range.length ?? el.value?.length ?? 0;
  if (actual < expected) {
    throw new IngestError('inconsistent-size', `PixelData holds ${actual} bytes where ${rows}x${columns}x${samples}x${frames} at ${bits} bits need ${expected}`);
  }
  if (actual > expected + 1) warnings.push(`PixelData holds ${actual - expected} bytes more than its description`);
}

