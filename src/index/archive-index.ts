import { appendEvent } from '../events/outbox.ts';
import { foldPersonName } from '../dicom/person-name.ts';
import { buildConditions, splitPatientMatches, type Conditions } from './matching.ts';
import { applyMigrations, indexMigrations, writePatientNameWords } from './migrations.ts';
import type {
  DuplicatePolicy,
  InstanceAttributes,
  InstanceLayout,
  InstanceRecord,
  InstanceRow,
  NewSite,
  PatientAttributes,
  SearchQuery,
  SeriesAttributes,
  SeriesRow,
  Site,
  StoredInstance,
  StoreOutcome,
  StudyAttributes,
  StudyRow,
  PatientRow,
  SqlRestriction,
} from './records.ts';
import { openSqlDatabase, RetryableConflict, type DatabaseConfig, type SqlDatabase } from './sql.ts';

export { QueryError } from './matching.ts';

/** A study's current patient record and what an access decision needs to know of the study. */
export interface StudyPatient {
  StudyInstanceUID: string;
  siteId: number;
  /** Index id of the patient record (patients.id). */
  patientId: number;
  patient: PatientAttributes;
  ReferringPhysicianID?: string;
}
export type { DatabaseConfig } from './sql.ts';

export type IndexConfig = DatabaseConfig;

/**
 * What the index already holds under the UID an object conflicts with: the site and
 * patient record of the study it is filed under. For the audit trail (identitovigilance),
 * never for the sender: another site's holdings are not the sender's to know.
 */
export interface ConflictHolder {
  siteId: number;
  StudyInstanceUID: string;
  /** Index id of the study's patient record (patients.id). */
  patientId: number;
}

/**
 * An identity conflict as the audit trail records it (identitovigilance): what was sent,
 * by which site, and what the index holds under the conflicting UID. Never sent back.
 */
export interface IdentityConflict {
  reason: IndexConflictError['reason'];
  /** The sender's site and what its object says. */
  sent: { siteId: number; SOPInstanceUID: string; StudyInstanceUID: string; PatientID: string; IssuerOfPatientID: string };
  holder: ConflictHolder;
}

/**
 * An object contradicts what the index holds about its study, series or instance: its
 * study belongs to another patient, its series to another study, or its SOPInstanceUID to
 * another site's study or (for a replacement) another patient's. Storing it would file
 * images under the wrong patient or take an object away from its site, so ingest must
 * refuse it. `message` names UIDs and says why: it is for the holder's own site only.
 */
export class IndexConflictError extends Error {
  constructor(
    readonly reason: 'study-of-another-patient' | 'series-of-another-study' | 'instance-of-another-site' | 'instance-of-another-patient',
    message: string,
    readonly holder: ConflictHolder,
  ) {
    super(message);
    this.name = 'IndexConflictError';
  }
}

export async function openArchiveIndex(config: IndexConfig): Promise<ArchiveIndex> {
  const sql = await openSqlDatabase(config);
  try {
    await applyMigrations(sql, indexMigrations);
  } catch (error) {
    await sql.close();
    throw error;
  }
  return new ArchiveIndex(sql);
}

// Rows as the SQL below returns them.
interface SiteRow {
  id: number;
  code: string;
  name: string;
  finess: string;
  issuer_of_patient_id: string;
}

interface JoinedRow {
  p_patient_id: string;
  p_issuer: string;
  p_patient_name: string | null;
  p_birth_date: string | null;
  p_sex: string | null;
  s_id: number;
  s_site_id: number;
  s_uid: string;
  s_date: string | null;
  s_time: string | null;
  s_accession: string | null;
  s_study_id: string | null;
  s_description: string | null;
  s_referring: string | null;
  s_institution: string | null;
  s_modalities: string;
  s_sop_classes: string;
  s_series_count: number;
  s_instance_count: number;
  se_uid: string;
  se_modality: string | null;
  se_number: number | null;
  se_description: string | null;
  se_body_part: string | null;
  se_date: string | null;
  se_time: string | null;
  se_pps_date: string | null;
  se_pps_time: string | null;
  se_instance_count: number;
  i_id: number;
  i_uid: string;
  i_sop_class: string;
  i_number: number | null;
  i_transfer_syntax: string;
  i_frames: number | null;
  i_rows: number | null;
  i_columns: number | null;
  i_content_date: string | null;
  i_content_time: string | null;
  i_blob_key: string;
  i_size: number;
  i_sha256: string;
  i_layout: string;
  i_metadata: string;
}

const patientColumns = `p.patient_id AS p_patient_id, p.issuer AS p_issuer, p.patient_name AS p_patient_name,
  p.birth_date AS p_birth_date, p.sex AS p_sex`;
const studyColumns = `s.id AS s_id, s.site_id AS s_site_id, s.study_instance_uid AS s_uid, s.study_date AS s_date,
  s.study_time AS s_time, s.accession_number AS s_accession, s.study_id AS s_study_id,
  s.description AS s_description, s.referring_physician_name AS s_referring, s.institution_name AS s_institution,
  s.modalities_in_study AS s_modalities, s.sop_classes_in_study AS s_sop_classes,
  s.number_of_series AS s_series_count, s.number_of_instances AS s_instance_count`;
const seriesColumns = `se.series_instance_uid AS se_uid, se.modality AS se_modality, se.series_number AS se_number,
  se.description AS se_description, se.body_part AS se_body_part, se.series_date AS se_date,
  se.series_time AS se_time, se.pps_start_date AS se_pps_date, se.pps_start_time AS se_pps_time,
  se.number_of_instances AS se_instance_count`;
const instanceColumns = `i.id AS i_id, i.sop_instance_uid AS i_uid, i.sop_class_uid AS i_sop_class,
  i.instance_number AS i_number, i.transfer_syntax_uid AS i_transfer_syntax, i.number_of_frames AS i_frames,
  i.pixel_rows AS i_rows, i.pixel_columns AS i_columns, i.content_date AS i_content_date,
  i.content_time AS i_content_time`;
const storedColumns = `i.blob_key AS i_blob_key, i.size AS i_size, i.sha256 AS i_sha256,
  i.layout_json AS i_layout, i.metadata_json AS i_metadata`;

const studyOrder = 's.study_date DESC NULLS LAST, s.study_time DESC NULLS LAST, s.id';

/** studyOrder on fetched rows (dates and times are ASCII: code unit order is byte order). */
function byStudyOrder(a: JoinedRow, b: JoinedRow): number {
  const desc = (x: string | null, y: string | null) => (x === y ? 0 : x === null ? 1 : y === null ? -1 : x < y ? 1 : -1);
  return desc(a.s_date, b.s_date) || desc(a.s_time, b.s_time) || Number(a.s_id) - Number(b.s_id);
}
const seriesOrder = 'se.series_number NULLS LAST, se.id';
const instanceOrder = 'i.instance_number NULLS LAST, i.id';

/** Drops absent values, so records carry only the attributes the object had. */
function present<T>(values: Record<string, unknown>): T {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) {
    if (value !== null && value !== undefined) out[key] = value;
  }
  return out as T;
}

function splitMulti(value: string): string[] {
  return value.split('\\').filter((v) => v !== '');
}

function toPatient(r: JoinedRow): PatientAttributes {
  return present<PatientAttributes>({
    PatientID: r.p_patient_id,
    IssuerOfPatientID: r.p_issuer,
    PatientName: r.p_patient_name,
    PatientBirthDate: r.p_birth_date,
    PatientSex: r.p_sex,
  });
}

function toStudy(r: JoinedRow): StudyAttributes {
  return present<StudyAttributes>({
    StudyInstanceUID: r.s_uid,
    StudyDate: r.s_date,
    StudyTime: r.s_time,
    AccessionNumber: r.s_accession,
    StudyID: r.s_study_id,
    StudyDescription: r.s_description,
    ReferringPhysicianName: r.s_referring,
    InstitutionName: r.s_institution,
  });
}

function toSeries(r: JoinedRow): SeriesAttributes {
  return present<SeriesAttributes>({
    SeriesInstanceUID: r.se_uid,
    Modality: r.se_modality,
    SeriesNumber: r.se_number,
    SeriesDescription: r.se_description,
    BodyPartExamined: r.se_body_part,
    SeriesDate: r.se_date,
    SeriesTime: r.se_time,
    PerformedProcedureStepStartDate: r.se_pps_date,
    PerformedProcedureStepStartTime: r.se_pps_time,
  });
}

function toInstance(r: JoinedRow): InstanceAttributes {
  return present<InstanceAttributes>({
    SOPInstanceUID: r.i_uid,
    SOPClassUID: r.i_sop_class,
    InstanceNumber: r.i_number,
    TransferSyntaxUID: r.i_transfer_syntax,
    NumberOfFrames: r.i_frames,
    Rows: r.i_rows,
    Columns: r.i_columns,
    ContentDate: r.i_content_date,
    ContentTime: r.i_content_time,
  });
}

function toStoredInstance(r: JoinedRow): StoredInstance {
  return present<StoredInstance>({
    instanceId: r.i_id,
    siteId: r.s_site_id,
    StudyInstanceUID: r.s_uid,
    SeriesInstanceUID: r.se_uid,
    SOPInstanceUID: r.i_uid,
    SOPClassUID: r.i_sop_class,
    TransferSyntaxUID: r.i_transfer_syntax,
    InstanceNumber: r.i_number,
    NumberOfFrames: r.i_frames,
    blobKey: r.i_blob_key,
    size: Number(r.i_size),
    sha256: r.i_sha256,
    layout: JSON.parse(r.i_layout) as InstanceLayout,
    metadataJson: r.i_metadata,
  });
}

function toSite(r: SiteRow): Site {
  return { id: r.id, code: r.code, name: r.name, finess: r.finess, issuerOfPatientID: r.issuer_of_patient_id };
}

/** Empty strings are absent values; numbers that are not finite are absent too. */
function text(value: string | undefined): string | null {
  return value === undefined || value === '' ? null : value;
}

function integer(value: number | undefined): number | null {
  return value === undefined || !Number.isFinite(value) ? null : Math.trunc(value);
}

function folded(value: string | undefined): string | null {
  const t = text(value);
  return t === null ? null : foldPersonName(t);
}

function placeholders(n: number): string {
  return Array.from({ length: n }, () => '?').join(', ');
}

interface LockedStudy {
  id: number;
  created: boolean;
  modalities: string;
  sopClasses: string;
}

interface LockedSeries {
  id: number;
  created: boolean;
}

interface ExistingInstance {
  id: number;
  sha256: string;
  blob_key: string;
  size: number;
  series_id: number;
  study_id: number;
  study_site_id: number;
  study_patient_id: number;
  study_moved_from_patient_id: number | null;
  study_instance_uid: string;
}

/** Most objects committed together by one SQLite group commit. */
const maxGroup = 128;

export class ArchiveIndex {
  constructor(readonly sql: SqlDatabase) {}

  close(): Promise<void> {
    return this.sql.close();
  }

  /** PostgreSQL locks the rows it reads for an update; SQLite has one writer anyway. */
  private forUpdate(db: SqlDatabase): string {
    return db.engine === 'postgres' ? ' FOR UPDATE' : '';
  }

  // ---- sites ----

  async createSite(site: NewSite): Promise<Site> {
    const row = await this.sql.get<{ id: number }>(
      'INSERT INTO sites (code, name, finess, issuer_of_patient_id) VALUES (?, ?, ?, ?) RETURNING id',
      [site.code, site.name, site.finess, site.issuerOfPatientID],
    );
    return { id: row!.id, ...site };
  }

  async getSiteByCode(code: string): Promise<Site | undefined> {
    const row = await this.sql.get<SiteRow>('SELECT * FROM sites WHERE code = ?', [code]);
    return row && toSite(row);
  }

  async getSite(id: number): Promise<Site | undefined> {
    const row = await this.sql.get<SiteRow>('SELECT * FROM sites WHERE id = ?', [id]);
    return row && toSite(row);
  }

  async listSites(): Promise<Site[]> {
    return (await this.sql.all<SiteRow>('SELECT * FROM sites ORDER BY code')).map(toSite);
  }

  // ---- storing ----

  /**
   * Indexes one stored object in one transaction, with its outbox event.
   * Throws IndexConflictError when the object's study belongs to another patient or
   * its series to another study.
   * With `durable: false` (the object is in the ingest journal, which recovery replays) the
   * commit need not be on disk when this resolves.
   */
  storeInstance(record: InstanceRecord, policy: DuplicatePolicy, options?: { durable?: boolean }): Promise<StoreOutcome> {
    const durable = options?.durable !== false;
    if (this.sql.engine === 'sqlite') return this.storeInGroup(record, policy, durable);
    return this.sql.transaction((tx) => this.storeIn(tx, record, policy), { durable });
  }

  /** Whether an index row (current instance or history) refers to this blob key. */
  async isBlobKeyReferenced(blobKey: string): Promise<boolean> {
    if (await this.sql.get('SELECT 1 AS found FROM instances WHERE blob_key = ?', [blobKey])) return true;
    return (await this.sql.get('SELECT 1 AS found FROM instance_history WHERE blob_key = ?', [blobKey])) !== undefined;
  }

  /**
   * Group commit for SQLite: one connection, one writer, and a COMMIT with synchronous=FULL
   * is an fsync that blocks the process. Objects that arrive while a commit runs wait for
   * the next one and share it, each inside its own savepoint, so that one refused object
   * (IndexConflictError) rolls back alone. No caller is answered before its commit.
   * PostgreSQL needs none of this: its transactions commit side by side.
   */
  private storeInGroup(record: InstanceRecord, policy: DuplicatePolicy, durable: boolean): Promise<StoreOutcome> {
    return new Promise((resolve, reject) => {
      this.group.push({ record, policy, durable, resolve, reject });
      if (!this.groupRunning) void this.commitGroups();
    });
  }

  private readonly group: Array<{ record: InstanceRecord; policy: DuplicatePolicy; durable: boolean; resolve: (o: StoreOutcome) => void; reject: (e: unknown) => void }> = [];
  private groupRunning = false;

  private async commitGroups(): Promise<void> {
    this.groupRunning = true;
    try {
      while (this.group.length > 0) {
        // Let the objects whose storage finished in this turn of the event loop join.
        await new Promise((r) => setImmediate(r));
        const batch = this.group.splice(0, maxGroup);
        let outcomes: Array<{ ok: true; outcome: StoreOutcome } | { ok: false; error: unknown }>;
        try {
          outcomes = await this.sql.transaction(async (tx) => {
            const out: typeof outcomes = [];
            for (const item of batch) {
              await tx.exec('SAVEPOINT store_instance');
              try {
                out.push({ ok: true, outcome: await this.storeIn(tx, item.record, item.policy) });
                await tx.exec('RELEASE store_instance');
              } catch (error) {
                await tx.exec('ROLLBACK TO store_instance');
                await tx.exec('RELEASE store_instance');
                out.push({ ok: false, error });
              }
            }
            return out;
          }, { durable: batch.some((item) => item.durable) });
        } catch (error) {
          for (const item of batch) item.reject(error);
          continue;
        }
        batch.forEach((item, i) => {
          const o = outcomes[i]!;
          if (o.ok) item.resolve(o.outcome);
          else item.reject(o.error);
        });
      }
    } finally {
      this.groupRunning = false;
    }
  }

  private async storeIn(tx: SqlDatabase, record: InstanceRecord, policy: DuplicatePolicy): Promise<StoreOutcome> {
    const now = new Date().toISOString();
    const uid = record.instance.SOPInstanceUID;
    const existing = await tx.get<ExistingInstance>(
      `SELECT i.id, i.sha256, i.blob_key, i.size, i.series_id, se.study_id, st.site_id AS study_site_id,
              st.patient_id AS study_patient_id, st.moved_from_patient_id AS study_moved_from_patient_id,
              st.study_instance_uid
         FROM instances i JOIN series se ON se.id = i.series_id JOIN studies st ON st.id = se.study_id
        WHERE i.sop_instance_uid = ?`,
      [uid],
    );
    if (existing) {
      if (existing.sha256 === record.blob.sha256) {
        return { status: 'identical', instanceId: existing.id, existingBlobKey: existing.blob_key };
      }
      if (policy === 'reject') return { status: 'rejected', instanceId: existing.id };
      const holder = {
        siteId: Number(existing.study_site_id), StudyInstanceUID: existing.study_instance_uid, patientId: Number(existing.study_patient_id),
      };
      // A site never takes another site's object away, nor slips its own object into that object's history.
      if (holder.siteId !== record.siteId) {
        throw new IndexConflictError('instance-of-another-site', `SOP instance ${uid} is held by another site`, holder);
      }
      if (policy === 'keep') {
        await this.addHistory(tx, uid, record.blob, 'duplicate-kept', now);
        await this.addEvent(tx, 'instance.duplicate-kept', this.eventPayload(record, existing.id), now);
        return { status: 'kept-existing', instanceId: existing.id };
      }
      return this.replaceInstance(tx, record, existing, now);
    }

    const patientId = await this.upsertPatient(tx, record, now);
    const study = await this.lockOrCreateStudy(tx, record, patientId, now);
    const series = await this.lockOrCreateSeries(tx, record, study.id, now);
    const inserted = await tx.get<{ id: number }>(
      `INSERT INTO instances (sop_instance_uid, series_id, ${instanceValueColumns}, created_at, updated_at)
       VALUES (?, ?, ${placeholders(instanceValueColumnCount)}, ?, ?)
       ON CONFLICT (sop_instance_uid) DO NOTHING RETURNING id`,
      [uid, series.id, ...instanceValues(record), now, now],
    );
    // Another transaction indexed the same SOPInstanceUID since we looked: start again to apply the policy.
    if (!inserted) throw new RetryableConflict('SOPInstanceUID indexed concurrently');
    await this.fillSeries(tx, record, series.id, 1, now);
    await this.fillStudy(tx, record, study, series.created ? 1 : 0, 1, now);
    await this.addEvent(tx, 'instance.stored', this.eventPayload(record, inserted.id), now);
    return { status: 'stored', instanceId: inserted.id };
  }

  private async replaceInstance(
    tx: SqlDatabase,
    record: InstanceRecord,
    existing: ExistingInstance,
    now: string,
  ): Promise<StoreOutcome> {
    const patientId = await this.upsertPatient(tx, record, now);
    // A replacement corrects an object; it never moves it to another patient (that is a
    // correction, with its reason and audit record). A study moved to the right patient still
    // takes replacements sent under the patient it came from.
    if (Number(existing.study_patient_id) !== patientId && Number(existing.study_moved_from_patient_id) !== patientId) {
      throw new IndexConflictError(
        'instance-of-another-patient',
        `SOP instance ${record.instance.SOPInstanceUID} is indexed under another patient of this site: a replacement cannot move it to another patient`,
        { siteId: Number(existing.study_site_id), StudyInstanceUID: existing.study_instance_uid, patientId: Number(existing.study_patient_id) },
      );
    }
    const study = await this.lockOrCreateStudy(tx, record, patientId, now);
    const series = await this.lockOrCreateSeries(tx, record, study.id, now);
    if (existing.study_id !== study.id) {
      await tx.get(`SELECT id FROM studies WHERE id = ?${this.forUpdate(tx)}`, [existing.study_id]);
    }
    await this.addHistory(
      tx,
      record.instance.SOPInstanceUID,
      { key: existing.blob_key, size: Number(existing.size), sha256: existing.sha256 },
      'replaced',
      now,
    );
    await tx.run(
      `UPDATE instances SET series_id = ?, ${instanceValueColumns
        .split(', ')
        .map((c) => `${c} = ?`)
        .join(', ')}, updated_at = ? WHERE id = ?`,
      [series.id, ...instanceValues(record), now, existing.id],
    );
    await this.fillSeries(tx, record, series.id, 0, now);
    await this.fillStudy(tx, record, study, 0, 0, now);
    // Counts, modalities and SOP classes may all have moved: count them again under the study locks.
    await this.refreshSeries(tx, series.id, now);
    if (existing.series_id !== series.id) await this.refreshSeries(tx, existing.series_id, now);
    await this.refreshStudy(tx, study.id, now);
    if (existing.study_id !== study.id) await this.refreshStudy(tx, existing.study_id, now);
    await this.addEvent(
      tx,
      'instance.replaced',
      { ...this.eventPayload(record, existing.id), previousBlobKey: existing.blob_key, previousSize: Number(existing.size) },
      now,
    );
    return { status: 'replaced', instanceId: existing.id, previousBlobKey: existing.blob_key };
  }

  private async upsertPatient(tx: SqlDatabase, record: InstanceRecord, now: string): Promise<number> {
    const p = record.patient;
    const key = [record.siteId, p.IssuerOfPatientID, p.PatientID];
    const select = 'SELECT id, patient_name, birth_date, sex, merged_into FROM patients WHERE site_id = ? AND issuer = ? AND patient_id = ?';
    type Row = { id: number; patient_name: string | null; birth_date: string | null; sex: string | null; merged_into: number | null };
    let row = await tx.get<Row>(select, key);
    if (row?.merged_into != null) {
      // A record merged into another (A40): objects still sent under the old identifier join
      // the surviving record, and leave its demographics alone.
      let target = Number(row.merged_into);
      for (let hops = 0; hops < 16; hops++) {
        const next = await tx.get<{ merged_into: number | null }>('SELECT merged_into FROM patients WHERE id = ?', [target]);
        if (next?.merged_into == null) break;
        target = Number(next.merged_into);
      }
      return target;
    }
    if (!row) {
      const inserted = await tx.get<{ id: number }>(
        `INSERT INTO patients (site_id, issuer, patient_id, patient_name, patient_name_folded, birth_date, sex, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (site_id, issuer, patient_id) DO NOTHING RETURNING id`,
        [...key, text(p.PatientName), folded(p.PatientName), text(p.PatientBirthDate), text(p.PatientSex), now],
      );
      if (inserted) {
        await writePatientNameWords(tx, inserted.id, text(p.PatientName));
        return inserted.id;
      }
      row = await tx.get<Row>(select, key);
      if (!row) throw new RetryableConflict('patient row vanished');
    }
    // Demographics follow the latest object that carries them; only a change takes a row lock.
    const name = text(p.PatientName) ?? row.patient_name;
    const birthDate = text(p.PatientBirthDate) ?? row.birth_date;
    const sex = text(p.PatientSex) ?? row.sex;
    if (name !== row.patient_name || birthDate !== row.birth_date || sex !== row.sex) {
      await tx.run(
        'UPDATE patients SET patient_name = ?, patient_name_folded = ?, birth_date = ?, sex = ?, updated_at = ? WHERE id = ?',
        [name, name === null ? null : foldPersonName(name), birthDate, sex, now, row.id],
      );
      if (name !== row.patient_name) await writePatientNameWords(tx, row.id, name);
    }
    return row.id;
  }

  private async lockOrCreateStudy(
    tx: SqlDatabase,
    record: InstanceRecord,
    patientId: number,
    now: string,
  ): Promise<LockedStudy> {
    const s = record.study;
    type Row = { id: number; patient_id: number; site_id: number; modalities_in_study: string; sop_classes_in_study: string; moved_from_patient_id: number | null };
    for (let attempt = 0; attempt < 3; attempt++) {
      const row = await tx.get<Row>(
        `SELECT id, patient_id, site_id, modalities_in_study, sop_classes_in_study, moved_from_patient_id FROM studies
          WHERE study_instance_uid = ?${this.forUpdate(tx)}`,
        [s.StudyInstanceUID],
      );
      if (row) {
        // A study moved to the right patient keeps what still arrives under the wrong one.
        if (row.patient_id !== patientId && Number(row.moved_from_patient_id) !== patientId) {
          throw new IndexConflictError(
            'study-of-another-patient',
            `study ${s.StudyInstanceUID} is indexed under another patient`,
            { siteId: Number(row.site_id), StudyInstanceUID: s.StudyInstanceUID, patientId: Number(row.patient_id) },
          );
        }
        return { id: row.id, created: false, modalities: row.modalities_in_study, sopClasses: row.sop_classes_in_study };
      }
      // A concurrent first instance of the same study may win: then we read its row.
      const inserted = await tx.get<{ id: number }>(
        `INSERT INTO studies (study_instance_uid, patient_id, site_id, study_date, study_time, accession_number,
           study_id, description, referring_physician_name, referring_physician_name_folded, referring_physician_id, institution_name,
           created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (study_instance_uid) DO NOTHING RETURNING id`,
        [
          s.StudyInstanceUID,
          patientId,
          record.siteId,
          text(s.StudyDate),
          text(s.StudyTime),
          text(s.AccessionNumber),
          text(s.StudyID),
          text(s.StudyDescription),
          text(s.ReferringPhysicianName),
          folded(s.ReferringPhysicianName),
          text(s.ReferringPhysicianID),
          text(s.InstitutionName),
          now,
          now,
        ],
      );
      if (inserted) return { id: inserted.id, created: true, modalities: '\\', sopClasses: '\\' };
    }
    throw new RetryableConflict('study row created and removed concurrently');
  }

  private async lockOrCreateSeries(
    tx: SqlDatabase,
    record: InstanceRecord,
    studyId: number,
    now: string,
  ): Promise<LockedSeries> {
    const se = record.series;
    for (let attempt = 0; attempt < 3; attempt++) {
      const row = await tx.get<{ id: number; study_id: number }>(
        `SELECT id, study_id FROM series WHERE series_instance_uid = ?${this.forUpdate(tx)}`,
        [se.SeriesInstanceUID],
      );
      if (row) {
        if (row.study_id !== studyId) {
          const holder = await tx.get<{ site_id: number; patient_id: number; study_instance_uid: string }>(
            'SELECT site_id, patient_id, study_instance_uid FROM studies WHERE id = ?', [row.study_id],
          );
          throw new IndexConflictError(
            'series-of-another-study',
            `series ${se.SeriesInstanceUID} is indexed under another study`,
            { siteId: Number(holder?.site_id), StudyInstanceUID: holder?.study_instance_uid ?? '', patientId: Number(holder?.patient_id) },
          );
        }
        return { id: row.id, created: false };
      }
      const inserted = await tx.get<{ id: number }>(
        `INSERT INTO series (series_instance_uid, study_id, modality, series_number, description, body_part,
           series_date, series_time, pps_start_date, pps_start_time, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (series_instance_uid) DO NOTHING RETURNING id`,
        [
          se.SeriesInstanceUID,
          studyId,
          text(se.Modality),
          integer(se.SeriesNumber),
          text(se.SeriesDescription),
          text(se.BodyPartExamined),
          text(se.SeriesDate),
          text(se.SeriesTime),
          text(se.PerformedProcedureStepStartDate),
          text(se.PerformedProcedureStepStartTime),
          now,
          now,
        ],
      );
      if (inserted) return { id: inserted.id, created: true };
    }
    throw new RetryableConflict('series row created and removed concurrently');
  }

  /** The first object to give a series attribute defines it; later ones only fill gaps. */
  private async fillSeries(tx: SqlDatabase, record: InstanceRecord, seriesId: number, added: number, now: string) {
    const se = record.series;
    await tx.run(
      `UPDATE series SET number_of_instances = number_of_instances + ?,
         modality = COALESCE(modality, ?), series_number = COALESCE(series_number, ?),
         description = COALESCE(description, ?), body_part = COALESCE(body_part, ?),
         series_date = COALESCE(series_date, ?), series_time = COALESCE(series_time, ?),
         pps_start_date = COALESCE(pps_start_date, ?), pps_start_time = COALESCE(pps_start_time, ?),
         updated_at = ?
       WHERE id = ?`,
      [
        added,
        text(se.Modality),
        integer(se.SeriesNumber),
        text(se.SeriesDescription),
        text(se.BodyPartExamined),
        text(se.SeriesDate),
        text(se.SeriesTime),
        text(se.PerformedProcedureStepStartDate),
        text(se.PerformedProcedureStepStartTime),
        now,
        seriesId,
      ],
    );
  }

  private async fillStudy(
    tx: SqlDatabase,
    record: InstanceRecord,
    study: LockedStudy,
    addedSeries: number,
    addedInstances: number,
    now: string,
  ) {
    const s = record.study;
    const modality = text(record.series.Modality);
    const modalities =
      modality && !study.modalities.includes(`\\${modality}\\`) ? `${study.modalities}${modality}\\` : study.modalities;
    const sopClass = record.instance.SOPClassUID;
    const sopClasses = study.sopClasses.includes(`\\${sopClass}\\`) ? study.sopClasses : `${study.sopClasses}${sopClass}\\`;
    await tx.run(
      `UPDATE studies SET number_of_series = number_of_series + ?, number_of_instances = number_of_instances + ?,
         modalities_in_study = ?, sop_classes_in_study = ?,
         study_date = COALESCE(study_date, ?), study_time = COALESCE(study_time, ?),
         accession_number = COALESCE(accession_number, ?), study_id = COALESCE(study_id, ?),
         description = COALESCE(description, ?),
         referring_physician_name_folded = CASE WHEN referring_physician_name IS NULL THEN ? ELSE referring_physician_name_folded END,
         referring_physician_name = COALESCE(referring_physician_name, ?),
         referring_physician_id = COALESCE(referring_physician_id, ?),
         institution_name = COALESCE(institution_name, ?), updated_at = ?
       WHERE id = ?`,
      [
        addedSeries,
        addedInstances,
        modalities,
        sopClasses,
        text(s.StudyDate),
        text(s.StudyTime),
        text(s.AccessionNumber),
        text(s.StudyID),
        text(s.StudyDescription),
        folded(s.ReferringPhysicianName),
        text(s.ReferringPhysicianName),
        text(s.ReferringPhysicianID),
        text(s.InstitutionName),
        now,
        study.id,
      ],
    );
  }

  /** Recounts a series; removes it when empty. */
  private async refreshSeries(tx: SqlDatabase, seriesId: number, now: string): Promise<void> {
    const row = await tx.get<{ n: number }>('SELECT COUNT(*) AS n FROM instances WHERE series_id = ?', [seriesId]);
    const n = Number(row?.n ?? 0);
    if (n === 0) {
      await tx.run('DELETE FROM series WHERE id = ?', [seriesId]);
    } else {
      await tx.run('UPDATE series SET number_of_instances = ?, updated_at = ? WHERE id = ?', [n, now, seriesId]);
    }
  }

  /** Recounts a study (its row must be locked by the caller); removes it when empty. */
  private async refreshStudy(tx: SqlDatabase, studyId: number, now: string): Promise<void> {
    const counts = await tx.get<{ series: number; instances: number }>(
      'SELECT COUNT(*) AS series, COALESCE(SUM(number_of_instances), 0) AS instances FROM series WHERE study_id = ?',
      [studyId],
    );
    const instances = Number(counts?.instances ?? 0);
    if (instances === 0) {
      await tx.run('DELETE FROM series WHERE study_id = ?', [studyId]);
      await tx.run('DELETE FROM studies WHERE id = ?', [studyId]);
      return;
    }
    const modalities = await tx.all<{ modality: string }>(
      'SELECT modality, MIN(id) AS first FROM series WHERE study_id = ? AND modality IS NOT NULL GROUP BY modality ORDER BY first',
      [studyId],
    );
    const sopClasses = await tx.all<{ sop_class_uid: string }>(
      `SELECT i.sop_class_uid, MIN(i.id) AS first FROM instances i JOIN series se ON se.id = i.series_id
        WHERE se.study_id = ? GROUP BY i.sop_class_uid ORDER BY first`,
      [studyId],
    );
    await tx.run(
      `UPDATE studies SET number_of_series = ?, number_of_instances = ?, modalities_in_study = ?,
         sop_classes_in_study = ?, updated_at = ? WHERE id = ?`,
      [
        Number(counts?.series ?? 0),
        instances,
        `\\${modalities.map((m) => `${m.modality}\\`).join('')}`,
        `\\${sopClasses.map((c) => `${c.sop_class_uid}\\`).join('')}`,
        now,
        studyId,
      ],
    );
  }

  private async addHistory(
    tx: SqlDatabase,
    sopInstanceUID: string,
    blob: { key: string; size: number; sha256: string },
    reason: 'replaced' | 'duplicate-kept' | 'deleted',
    now: string,
  ): Promise<void> {
    await tx.run(
      'INSERT INTO instance_history (sop_instance_uid, blob_key, size, sha256, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      [sopInstanceUID, blob.key, blob.size, blob.sha256, reason, now],
    );
  }

  /** Events carry identifiers only, never patient names. */
  private eventPayload(record: InstanceRecord, instanceId: number): Record<string, unknown> {
    return {
      instanceId,
      siteId: record.siteId,
      StudyInstanceUID: record.study.StudyInstanceUID,
      SeriesInstanceUID: record.series.SeriesInstanceUID,
      SOPInstanceUID: record.instance.SOPInstanceUID,
      SOPClassUID: record.instance.SOPClassUID,
      blobKey: record.blob.key,
      // Bytes as stored, for metering (src/billing/metering.ts).
      size: record.blob.size,
    };
  }

  private async addEvent(tx: SqlDatabase, type: string, payload: unknown, now: string): Promise<void> {
    await appendEvent(tx, type, payload, now);
  }

  /**
   * Removes an instance from the index (its blob is gone), keeping the counts right and
   * removing a series or study left empty. False when it was not indexed.
   */
  deleteInstanceIndex(sopInstanceUID: string): Promise<boolean> {
    return this.sql.transaction((tx) => this.deleteInstanceIndexIn(tx, sopInstanceUID));
  }

  /** deleteInstanceIndex inside the caller's transaction (a correction that records itself alongside). */
  async deleteInstanceIndexIn(tx: SqlDatabase, sopInstanceUID: string): Promise<boolean> {
    const now = new Date().toISOString();
    const row = await tx.get<{ id: number; series_id: number; study_id: number; site_id: number; series_uid: string; study_uid: string; size: number | string }>(
      `SELECT i.id, i.series_id, se.study_id, s.site_id, se.series_instance_uid AS series_uid, i.size,
              s.study_instance_uid AS study_uid
         FROM instances i JOIN series se ON se.id = i.series_id JOIN studies s ON s.id = se.study_id
        WHERE i.sop_instance_uid = ?`,
      [sopInstanceUID],
    );
    if (!row) return false;
    await tx.get(`SELECT id FROM studies WHERE id = ?${this.forUpdate(tx)}`, [row.study_id]);
    await tx.run('DELETE FROM instances WHERE id = ?', [row.id]);
    await this.refreshSeries(tx, row.series_id, now);
    await this.refreshStudy(tx, row.study_id, now);
    await this.addEvent(
      tx,
      'instance.deleted',
      {
        instanceId: row.id,
        siteId: row.site_id,
        StudyInstanceUID: row.study_uid,
        SeriesInstanceUID: row.series_uid,
        SOPInstanceUID: sopInstanceUID,
        size: Number(row.size),
      },
      now,
    );
    return true;
  }

  /** Removes from the index every current instance stored under a blob key; returns how many. */
  async deleteInstanceIndexByBlobKey(blobKey: string): Promise<number> {
    const rows = await this.sql.all<{ sop_instance_uid: string }>(
      'SELECT sop_instance_uid FROM instances WHERE blob_key = ?',
      [blobKey],
    );
    let removed = 0;
    for (const row of rows) if (await this.deleteInstanceIndex(row.sop_instance_uid)) removed++;
    return removed;
  }

  /**
   * Points an instance at another stored copy of it (the same object kept compressed by
   * src/archive/compression.ts): blob, size, SHA-256, transfer syntax and layout. Only if the
   * instance still names `expectedBlobKey` (a replacement that came in meanwhile wins); true
   * when the row was changed.
   */
  async replaceInstanceBlob(SOPInstanceUID: string, expectedBlobKey: string, copy: { blobKey: string; size: number; sha256: string; transferSyntaxUID: string; layout: InstanceLayout }): Promise<boolean> {
    const { changes } = await this.sql.run(
      'UPDATE instances SET blob_key = ?, size = ?, sha256 = ?, transfer_syntax_uid = ?, layout_json = ?, updated_at = ? WHERE sop_instance_uid = ? AND blob_key = ?',
      [copy.blobKey, copy.size, copy.sha256, copy.transferSyntaxUID, JSON.stringify(copy.layout), new Date().toISOString(), SOPInstanceUID, expectedBlobKey],
    );
    return changes === 1;
  }

  // ---- searching ----

  private siteCondition(q: SearchQuery, c: Conditions): void {
    if (q.restriction === undefined) return;
    c.where.push(q.restriction.sql);
    c.params.push(...q.restriction.params);
  }

  private page(q: SearchQuery, c: Conditions): string {
    let sql = '';
    if (q.limit > 0) {
      sql += ' LIMIT ?';
      c.params.push(Math.trunc(q.limit));
    } else if (q.offset > 0) {
      // OFFSET needs a LIMIT on SQLite; -1 there and NULL on PostgreSQL mean "no limit".
      sql += this.sql.engine === 'sqlite' ? ' LIMIT -1' : ' LIMIT NULL';
    }
    if (q.offset > 0) {
      sql += ' OFFSET ?';
      c.params.push(Math.trunc(q.offset));
    }
    return sql;
  }

  private where(c: Conditions): string {
    return c.where.length ? ` WHERE ${c.where.join(' AND ')}` : '';
  }

  /** This archive's own UID root (migration 13), under which it makes up UIDs. */
  async installationUidRoot(): Promise<string> {
    const row = await this.sql.get<{ uid_root: string }>('SELECT uid_root FROM installation WHERE id = 1');
    if (!row) throw new Error('the index has no installation UID root (migration 13)');
    return row.uid_root;
  }

  /** Index id of the patient record a site's PatientID (with its issuer) names. */
  async patientRecordId(siteId: number, IssuerOfPatientID: string, PatientID: string): Promise<number | undefined> {
    const row = await this.sql.get<{ id: number }>('SELECT id FROM patients WHERE site_id = ? AND issuer = ? AND patient_id = ?', [siteId, IssuerOfPatientID, PatientID]);
    return row && Number(row.id);
  }

  /** A patient record by its index id: its site and identifiers (`db`: the caller's transaction). */
  async patientRecord(id: number, db: SqlDatabase = this.sql): Promise<{ siteId: number; patient: PatientAttributes } | undefined> {
    const row = await db.get<JoinedRow & { p_site_id: number }>(`SELECT ${patientColumns}, p.site_id AS p_site_id FROM patients p WHERE p.id = ?`, [id]);
    return row && { siteId: Number(row.p_site_id), patient: toPatient(row) };
  }

  /**
   * The patient record a study is filed under now, its site, and what the access decision
   * needs (one row, no other study columns). `db`: the caller's transaction.
   */
  async studyPatient(StudyInstanceUID: string, db: SqlDatabase = this.sql): Promise<StudyPatient | undefined> {
    const row = await db.get<JoinedRow & { s_site_id: number; s_patient_id: number; s_referring_id: string | null }>(
      `SELECT ${patientColumns}, s.site_id AS s_site_id, s.patient_id AS s_patient_id, s.referring_physician_id AS s_referring_id
         FROM studies s JOIN patients p ON p.id = s.patient_id WHERE s.study_instance_uid = ?`,
      [StudyInstanceUID],
    );
    return row && {
      StudyInstanceUID, siteId: Number(row.s_site_id), patientId: Number(row.s_patient_id), patient: toPatient(row),
      ...(row.s_referring_id !== null ? { ReferringPhysicianID: row.s_referring_id } : {}),
    };
  }

  /** The Study Instance UIDs of a site's studies with this accession number, at most `limit`. */
  async studiesByAccession(siteId: number, AccessionNumber: string, limit: number): Promise<string[]> {
    const rows = await this.sql.all<{ study_instance_uid: string }>(
      'SELECT study_instance_uid FROM studies WHERE accession_number = ? AND site_id = ? LIMIT ?', [AccessionNumber, siteId, limit]);
    return rows.map((r) => r.study_instance_uid);
  }

  /**
   * The studies filed under these patient records, with their date and site; `condition`: a
   * further SQL condition on the studies row aliased `s` (the access scope, src/access/policy.ts).
   */
  async studiesOfPatients(patientIds: readonly number[], condition?: { sql: string; params: readonly unknown[] }): Promise<Array<{ StudyInstanceUID: string; StudyDate?: string; siteId: number }>> {
    if (patientIds.length === 0) return [];
    const rows = await this.sql.all<{ study_instance_uid: string; study_date: string | null; site_id: number | string }>(
      `SELECT s.study_instance_uid, s.study_date, s.site_id FROM studies s WHERE s.patient_id IN (${patientIds.map(() => '?').join(', ')})${condition ? ` AND ${condition.sql}` : ''}`,
      [...patientIds, ...(condition?.params ?? [])]);
    return rows.map((r) => ({ StudyInstanceUID: r.study_instance_uid, ...(r.study_date !== null ? { StudyDate: r.study_date } : {}), siteId: Number(r.site_id) }));
  }

  /**
   * Patients having at least one study that the search's site scope allows. The page of
   * records is chosen first (each record's scope checked by EXISTS on the studies_patient
   * index entries), and only its records' studies are read and counted: a broad name
   * prefix (thousands of records) no longer reads every matching record's study rows.
   */
  async searchPatients(q: SearchQuery): Promise<PatientRow[]> {
    const c = buildConditions(this.sql.engine, 'patient', q.matches, q.fuzzymatching);
    const walk = await this.walkPatientsInOrder(q, c);
    const scope = q.restriction === undefined ? '' : ` AND ${q.restriction.sql}`;
    const scopeParams = q.restriction?.params ?? [];
    c.where.push(`EXISTS (SELECT 1 FROM studies s WHERE s.patient_id = p.id${scope})`);
    c.params.push(...scopeParams);
    // CROSS JOIN: SQLite reads the page first (it chose to walk every patient in PatientID order for the GROUP BY).
    const page = `SELECT p.id FROM patients p${walk ? ' INDEXED BY patients_patient_id' : ''}${this.where(c)} ORDER BY p.patient_id, p.id${this.page(q, c)}`;
    c.params.push(...scopeParams);
    const sql = `SELECT ${patientColumns}, p.site_id AS p_site_id, COUNT(s.id) AS n_studies, SUM(s.number_of_series) AS n_series, SUM(s.number_of_instances) AS n_instances
      FROM (${page}) page CROSS JOIN patients p JOIN studies s ON s.patient_id = p.id WHERE p.id = page.id${scope}
      GROUP BY p.id, p.site_id, p.patient_id, p.issuer, p.patient_name, p.birth_date, p.sex
      ORDER BY p.patient_id, p.id`;
    const rows = await this.sql.all<JoinedRow & { p_site_id: number; n_studies: number; n_series: number; n_instances: number }>(sql, c.params);
    return rows.map((r) => ({
      patient: toPatient(r),
      siteId: Number(r.p_site_id),
      NumberOfPatientRelatedStudies: Number(r.n_studies),
      NumberOfPatientRelatedSeries: Number(r.n_series),
      NumberOfPatientRelatedInstances: Number(r.n_instances),
    }));
  }

  /**
   * Whether a page of patient records is cheaper found by walking them in PatientID order
   * (patients_patient_id) than from the matches: when the conditions match so many records
   * (a name prefix that is also a common given name: "ben", 21,000 of 400,000 records) that
   * the page comes long before the end of the walk. SQLite only, which has no statistics to
   * know; the matches are counted up to the break-even point, about sqrt(page * records / 16)
   * (a step of the walk costs about a sixteenth of reading a match, measured on
   * bench/large-index.ts's 1,000,000-study index).
   */
  private async walkPatientsInOrder(q: SearchQuery, c: Conditions): Promise<boolean> {
    if (this.sql.engine !== 'sqlite' || c.where.length === 0 || q.limit <= 0) return false;
    const records = Number((await this.sql.get<{ n: number | null }>('SELECT MAX(id) AS n FROM patients'))?.n ?? 0);
    const enough = Math.ceil(Math.sqrt(((q.limit + q.offset) * records) / 16));
    const found = await this.sql.get<{ n: number }>(
      `SELECT COUNT(*) AS n FROM (SELECT 1 FROM patients p${this.where(c)} LIMIT ?) AS m`, [...c.params, enough]);
    return Number(found?.n ?? 0) >= enough;
  }

  /**
   * On PostgreSQL, the ids of the patient records a study search's patient conditions (with a name) match,
   * when they are few enough that reading their studies (studies_patient) beats walking every
   * study in date order and probing its record until a page is found; undefined otherwise
   * (no patient name, SQLite, or too many records). A name prefix matching 0.75% of a
   * 1,000,000-study index made the planner walk studies_date and probe ~25,000 records for a
   * page of 100 (1.7 s under load; 150 ms quiet). The records are counted up to the break-even point, about
   * sqrt(page * records): the walk reads about page * records / matches studies, this about
   * as many studies as records matched. Both ways give the same answer (name-search-paging
   * exercises both: its small pages fall past the break-even point).
   */
  private async fewMatchingPatients(q: SearchQuery): Promise<number[] | undefined> {
    if (this.sql.engine !== 'postgres') return undefined;
    const { patient } = splitPatientMatches(q.matches);
    // Only a name can match thousands of records; an id or a birth date alone leads the plan already (and the timeline asks per record).
    if (!Object.keys(patient).some((k) => k === 'PatientName' || k.toUpperCase() === '00100010')) return undefined;
    const c = buildConditions(this.sql.engine, 'patient', patient, q.fuzzymatching);
    if (c.where.length === 0) return undefined;
    // One statement: the break-even from the records' count, the matches counted on index
    // entries up to it (a name prefix: patients_name_folded, no row read), and their ids read
    // only when they are fewer (the ARRAY's subquery runs only in that branch).
    const where = this.where(c);
    const row = await this.sql.get<{ ids: Array<number | string> | null }>(
      `WITH e AS (SELECT CEIL(SQRT(?::float8 * COALESCE(MAX(id), 0)))::bigint AS enough FROM patients)
       SELECT CASE WHEN (SELECT COUNT(*) FROM (SELECT 1 FROM patients p${where} LIMIT (SELECT enough + 1 FROM e)) m) > (SELECT enough FROM e) THEN NULL
         ELSE ARRAY(SELECT p.id FROM patients p${where}) END AS ids`,
      [q.limit + q.offset, ...c.params, ...c.params]);
    return row?.ids ? row.ids.map(Number) : undefined;
  }

  /**
   * Studies in date order (newest first). With a page, the page's ids are found first, on
   * index entries only where the indexes carry what the search and the scope name
   * (studies_date, studies_patient: date, time, id, site, patient), and only the page's rows
   * are read: a broad patient name prefix sorts thousands of narrow entries, not rows.
   */
  async searchStudies(q: SearchQuery): Promise<StudyRow[]> {
    const records = q.limit > 0 ? await this.fewMatchingPatients(q) : undefined;
    const c = buildConditions(this.sql.engine, 'study', records ? splitPatientMatches(q.matches).rest : q.matches, q.fuzzymatching);
    if (records) {
      c.where.push('s.patient_id = ANY(?)');
      c.params.push(records);
    }
    this.siteCondition(q, c);
    const where = this.where(c);
    let rows: JoinedRow[];
    if (q.limit > 0) {
      // Patients joined in the page's query only when a condition names them.
      const patients = /\bp\./.test(where) ? ' JOIN patients p ON p.id = s.patient_id' : '';
      // The matching records' studies read first (studies_patient): OFFSET 0 keeps PostgreSQL from walking studies_date for the ORDER BY and testing each study against the list.
      const from = records ? `(SELECT s.id, s.study_date, s.study_time FROM studies s${patients}${where} OFFSET 0) s` : `studies s${patients}${where}`;
      const page = `SELECT s.id FROM ${from} ORDER BY ${studyOrder}${this.page(q, c)}`;
      // The page (at most `limit` rows) read first (CROSS JOIN fixes SQLite's join order) and put in order here: no sort in the plan.
      rows = (await this.sql.all<JoinedRow>(`SELECT ${patientColumns}, ${studyColumns}
        FROM (${page}) page CROSS JOIN studies s CROSS JOIN patients p WHERE s.id = page.id AND p.id = s.patient_id`, c.params)).sort(byStudyOrder);
    } else {
      rows = await this.sql.all<JoinedRow>(`SELECT ${patientColumns}, ${studyColumns}
        FROM studies s JOIN patients p ON p.id = s.patient_id${where}
        ORDER BY ${studyOrder}${this.page(q, c)}`, c.params);
    }
    return rows.map((r) => ({
      study: toStudy(r),
      patient: toPatient(r),
      siteId: r.s_site_id,
      ModalitiesInStudy: splitMulti(r.s_modalities),
      SOPClassesInStudy: splitMulti(r.s_sop_classes),
      NumberOfStudyRelatedSeries: Number(r.s_series_count),
      NumberOfStudyRelatedInstances: Number(r.s_instance_count),
    }));
  }

  async searchSeries(q: SearchQuery, StudyInstanceUID?: string): Promise<SeriesRow[]> {
    const c = buildConditions(this.sql.engine, 'series', q.matches, q.fuzzymatching);
    if (StudyInstanceUID !== undefined) {
      c.where.push('s.study_instance_uid = ?');
      c.params.push(StudyInstanceUID);
    }
    this.siteCondition(q, c);
    const where = this.where(c);
    const sql = `SELECT ${patientColumns}, ${studyColumns}, ${seriesColumns}
      FROM series se JOIN studies s ON s.id = se.study_id JOIN patients p ON p.id = s.patient_id${where}
      ORDER BY ${seriesOrder}${this.page(q, c)}`;
    const rows = await this.sql.all<JoinedRow>(sql, c.params);
    return rows.map((r) => ({
      study: toStudy(r),
      patient: toPatient(r),
      series: toSeries(r),
      siteId: r.s_site_id,
      NumberOfSeriesRelatedInstances: Number(r.se_instance_count),
    }));
  }

  async searchInstances(q: SearchQuery, StudyInstanceUID?: string, SeriesInstanceUID?: string): Promise<InstanceRow[]> {
    const c = buildConditions(this.sql.engine, 'instance', q.matches, q.fuzzymatching);
    if (StudyInstanceUID !== undefined) {
      c.where.push('s.study_instance_uid = ?');
      c.params.push(StudyInstanceUID);
    }
    if (SeriesInstanceUID !== undefined) {
      c.where.push('se.series_instance_uid = ?');
      c.params.push(SeriesInstanceUID);
    }
    this.siteCondition(q, c);
    const where = this.where(c);
    const sql = `SELECT ${patientColumns}, ${studyColumns}, ${seriesColumns}, ${instanceColumns}
      FROM instances i JOIN series se ON se.id = i.series_id JOIN studies s ON s.id = se.study_id
      JOIN patients p ON p.id = s.patient_id${where}
      ORDER BY ${instanceOrder}${this.page(q, c)}`;
    const rows = await this.sql.all<JoinedRow>(sql, c.params);
    return rows.map((r) => ({
      study: toStudy(r),
      patient: toPatient(r),
      series: toSeries(r),
      instance: toInstance(r),
      siteId: r.s_site_id,
    }));
  }

  // ---- retrieval ----

  async getStoredInstances(where: {
    StudyInstanceUID: string;
    SeriesInstanceUID?: string;
    SOPInstanceUID?: string;
    restriction?: SqlRestriction;
  }): Promise<StoredInstance[]> {
    const c: Conditions = { where: ['s.study_instance_uid = ?'], params: [where.StudyInstanceUID] };
    if (where.SeriesInstanceUID !== undefined) {
      c.where.push('se.series_instance_uid = ?');
      c.params.push(where.SeriesInstanceUID);
    }
    if (where.SOPInstanceUID !== undefined) {
      c.where.push('i.sop_instance_uid = ?');
      c.params.push(where.SOPInstanceUID);
    }
    if (where.restriction !== undefined) {
      c.where.push(where.restriction.sql);
      c.params.push(...where.restriction.params);
    }
    const rows = await this.sql.all<JoinedRow>(
      `SELECT s.site_id AS s_site_id, s.study_instance_uid AS s_uid, se.series_instance_uid AS se_uid,
              ${instanceColumns}, ${storedColumns}
         FROM instances i JOIN series se ON se.id = i.series_id JOIN studies s ON s.id = se.study_id
        ${this.where(c)}
        ORDER BY se.series_number NULLS LAST, se.id, ${instanceOrder}`,
      c.params,
    );
    return rows.map(toStoredInstance);
  }

  async findInstanceBySOPInstanceUID(sopInstanceUID: string): Promise<StoredInstance | undefined> {
    const row = await this.sql.get<JoinedRow>(
      `SELECT s.site_id AS s_site_id, s.study_instance_uid AS s_uid, se.series_instance_uid AS se_uid,
              ${instanceColumns}, ${storedColumns}
         FROM instances i JOIN series se ON se.id = i.series_id JOIN studies s ON s.id = se.study_id
        WHERE i.sop_instance_uid = ?`,
      [sopInstanceUID],
    );
    return row && toStoredInstance(row);
  }

  /** Every blob the index still refers to (current objects and kept history), for integrity checks. */
  async *listReferencedBlobKeys(): AsyncIterable<{
    key: string;
    sha256: string;
    size: number;
    source: 'instance' | 'history';
  }> {
    for (const [table, source] of [
      ['instances', 'instance'],
      ['instance_history', 'history'],
    ] as const) {
      let after = 0;
      for (;;) {
        const rows = await this.sql.all<{ id: number; blob_key: string; sha256: string; size: number }>(
          `SELECT id, blob_key, sha256, size FROM ${table} WHERE id > ? ORDER BY id LIMIT 1000`,
          [after],
        );
        for (const r of rows) yield { key: r.blob_key, sha256: r.sha256, size: Number(r.size), source };
        if (rows.length < 1000) break;
        after = rows[rows.length - 1]!.id;
      }
    }
  }

  async countInstances(): Promise<number> {
    const row = await this.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM instances');
    return Number(row?.n ?? 0);
  }
}

const instanceValueColumns =
  'sop_class_uid, instance_number, transfer_syntax_uid, number_of_frames, pixel_rows, pixel_columns, ' +
  'content_date, content_time, blob_key, size, sha256, layout_json, metadata_json';
const instanceValueColumnCount = instanceValueColumns.split(', ').length;

function instanceValues(record: InstanceRecord): unknown[] {
  const i = record.instance;
  return [
    i.SOPClassUID,
    integer(i.InstanceNumber),
    i.TransferSyntaxUID,
    integer(i.NumberOfFrames),
    integer(i.Rows),
    integer(i.Columns),
    text(i.ContentDate),
    text(i.ContentTime),
    record.blob.key,
    record.blob.size,
    record.blob.sha256,
    JSON.stringify(record.layout),
    record.metadataJson,
  ];
}
