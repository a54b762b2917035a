/**
 * Research projects: the one module that owns the research tables (projects, their
 * pseudonymized subjects and replaced UIDs, exports, and the registry of patients who
 * refused research use). Migrations in their own list (`research_migrations`), both engines.
 *
 * A project belongs to a site; it names its cohort criteria, its Annex E options and, when it
 * sends to a DICOMweb destination, that destination; an administrator of its site who did not
 * create it approves it before any export. Everything that ties a pseudonym to a person
 * (identity, original UIDs) is sealed with the research key (keys.ts): only the trusted third
 * party's route opens it.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { applyMigrations, type Migration } from '../index/migrations.ts';
import type { SqlDatabase } from '../index/sql.ts';
import type { ResearchKeys } from './keys.ts';
import { projectOptions, type PixelMask, type ProjectOption } from './deidentify.ts';

const migrations: Migration[] = [
  {
    version: 1,
    name: 'research projects, subjects, replaced UIDs, exports, objections (src/research/projects.ts)',
    sql: `
CREATE TABLE research_projects (
  id {id},
  site_id BIGINT NOT NULL,
  name TEXT NOT NULL,
  options_json TEXT NOT NULL,
  criteria_json TEXT NOT NULL,
  dicomweb_url TEXT,
  dicomweb_token_sealed TEXT,
  status {text} NOT NULL,
  created_by {text} NOT NULL,
  created_at TEXT NOT NULL,
  approved_by {text},
  approved_at TEXT
);
CREATE INDEX research_projects_site ON research_projects (site_id, id);
CREATE TABLE research_subjects (
  project_id BIGINT NOT NULL,
  person_digest {text} NOT NULL,
  pseudonym {text} NOT NULL,
  date_offset_days INTEGER NOT NULL,
  identity_sealed TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (project_id, person_digest),
  UNIQUE (project_id, pseudonym)
);
CREATE TABLE research_uids (
  project_id BIGINT NOT NULL,
  new_uid {text} NOT NULL,
  original_sealed TEXT NOT NULL,
  PRIMARY KEY (project_id, new_uid)
);
CREATE TABLE research_exports (
  id {id},
  project_id BIGINT NOT NULL,
  kind {text} NOT NULL,
  status {text} NOT NULL,
  manifest_json TEXT,
  error TEXT,
  created_by {text} NOT NULL,
  created_at TEXT NOT NULL,
  finished_at TEXT
);
CREATE INDEX research_exports_project ON research_exports (project_id, id);
CREATE TABLE research_objections (
  id {id},
  patient_id BIGINT NOT NULL,
  site_id BIGINT NOT NULL,
  reason TEXT,
  recorded_by {text} NOT NULL,
  recorded_at TEXT NOT NULL,
  withdrawn_at TEXT
);
CREATE INDEX research_objections_patient ON research_objections (patient_id, withdrawn_at);
`,
  },
  {
    version: 2,
    name: 'research projects: pixel masks (Clean Pixel Data)',
    sql: 'ALTER TABLE research_projects ADD COLUMN pixel_masks_json TEXT;',
  },
  {
    version: 3,
    name: 'research exports: the node running one and its lease (interrupted exports found again)',
    sql: `
ALTER TABLE research_exports ADD COLUMN run_by TEXT;
ALTER TABLE research_exports ADD COLUMN lease_until TEXT;
`,
  },
];

const migrated = new WeakMap<SqlDatabase, Promise<number[]>>();

export async function migrateResearch(sql: SqlDatabase): Promise<void> {
  let done = migrated.get(sql);
  if (!done) {
    done = applyMigrations(sql, migrations, 'research_migrations');
    migrated.set(sql, done);
    done.catch(() => migrated.delete(sql));
  }
  await done;
}

export class ResearchError extends Error {
  override readonly name = 'ResearchError';
  constructor(readonly code: 'bad-request' | 'not-found' | 'conflict' | 'forbidden' | 'destination', message: string) {
    super(message);
  }
}

export interface CohortCriteria {
  /** Modalities of a series (any). */
  modalities?: string[];
  /** Body Part Examined of a series (any). */
  bodyParts?: string[];
  /** Study dates, YYYYMMDD, inclusive. */
  from?: string;
  to?: string;
  /** Site codes the cohort draws from (default: the project's site). */
  sites?: string[];
  /** Text the study's signed teleradiology report holds (findings or conclusion). */
  reportText?: string;
}

export interface ResearchProject {
  id: number;
  siteId: number;
  name: string;
  options: ProjectOption[];
  criteria: CohortCriteria;
  dicomwebUrl?: string;
  /** Clean Pixel Data: rectangles to blank in burned-in images, by modality and size. */
  pixelMasks?: PixelMask[];
  status: 'draft' | 'approved';
  createdBy: string;
  createdAt: string;
  approvedBy?: string;
  approvedAt?: string;
}

interface ProjectRow {
  id: number; site_id: number; name: string; options_json: string; criteria_json: string; dicomweb_url: string | null; dicomweb_token_sealed?: string | null; pixel_masks_json?: string | null;
  status: 'draft' | 'approved'; created_by: string; created_at: string; approved_by: string | null; approved_at: string | null;
}

const toProject = (r: ProjectRow): ResearchProject => ({
  id: Number(r.id), siteId: Number(r.site_id), name: r.name, options: JSON.parse(r.options_json) as ProjectOption[],
  criteria: JSON.parse(r.criteria_json) as CohortCriteria, ...(r.dicomweb_url ? { dicomwebUrl: r.dicomweb_url } : {}),
  ...(r.pixel_masks_json ? { pixelMasks: JSON.parse(r.pixel_masks_json) as PixelMask[] } : {}),
  status: r.status, createdBy: r.created_by, createdAt: r.created_at,
  ...(r.approved_by ? { approvedBy: r.approved_by } : {}), ...(r.approved_at ? { approvedAt: r.approved_at } : {}),
});

const dateRe = /^\d{8}$/;
const codeRe = /^[A-Za-z0-9 _.-]{1,16}$/;

/** Checks a project's definition as a client sent it. */
export function checkedDefinition(body: unknown): { name: string; options: ProjectOption[]; criteria: CohortCriteria; dicomwebUrl?: string; dicomwebToken?: string; pixelMasks?: PixelMask[] } {
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof b.name !== 'string' || b.name.trim() === '' || b.name.length > 200) throw new ResearchError('bad-request', 'name: 1 to 200 characters');
  const options = b.options ?? [];
  if (!Array.isArray(options) || options.some((o) => !projectOptions.includes(o as ProjectOption))) {
    throw new ResearchError('bad-request', `options: a list of ${projectOptions.join(', ')}`);
  }
  const c = (b.criteria ?? {}) as Record<string, unknown>;
  const list = (k: string) => {
    const v = c[k];
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.length === 0 || v.length > 50 || v.some((x) => typeof x !== 'string' || !codeRe.test(x))) throw new ResearchError('bad-request', `criteria.${k}: a list of codes`);
    return v as string[];
  };
  const criteria: CohortCriteria = {};
  const modalities = list('modalities'); if (modalities) criteria.modalities = modalities.map((m) => m.toUpperCase());
  const bodyParts = list('bodyParts'); if (bodyParts) criteria.bodyParts = bodyParts.map((m) => m.toUpperCase());
  const sites = list('sites'); if (sites) criteria.sites = sites;
  for (const k of ['from', 'to'] as const) {
    const v = c[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' || !dateRe.test(v)) throw new ResearchError('bad-request', `criteria.${k}: a date YYYYMMDD`);
    criteria[k] = v;
  }
  if (c.reportText !== undefined) {
    if (typeof c.reportText !== 'string' || c.reportText.trim().length < 2 || c.reportText.length > 200) throw new ResearchError('bad-request', 'criteria.reportText: 2 to 200 characters');
    criteria.reportText = c.reportText.trim();
  }
  let dicomwebUrl: string | undefined;
  if (b.dicomwebUrl !== undefined) {
    let u: URL;
    try {
      u = new URL(String(b.dicomwebUrl));
    } catch {
      throw new ResearchError('bad-request', 'dicomwebUrl: an http(s) URL');
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new ResearchError('bad-request', 'dicomwebUrl: an http(s) URL');
    dicomwebUrl = u.toString().replace(/\/$/, '');
  }
  if (b.dicomwebToken !== undefined && (typeof b.dicomwebToken !== 'string' || b.dicomwebToken.length === 0 || b.dicomwebToken.length > 4096 || !dicomwebUrl)) {
    throw new ResearchError('bad-request', 'dicomwebToken: the bearer token of the DICOMweb destination (with dicomwebUrl)');
  }
  let pixelMasks: PixelMask[] | undefined;
  if (b.pixelMasks !== undefined) {
    const bad = () => new ResearchError('bad-request', 'pixelMasks: a list of {modality?, rows?, columns?, rectangles: [[x, y, width, height], ...]}');
    if (!Array.isArray(b.pixelMasks) || b.pixelMasks.length > 100) throw bad();
    pixelMasks = b.pixelMasks.map((m: unknown) => {
      const o = (m ?? {}) as Record<string, unknown>;
      const size = (v: unknown) => v === undefined || (Number.isInteger(v) && (v as number) > 0 && (v as number) <= 65535);
      if (typeof o !== 'object' || (o.modality !== undefined && (typeof o.modality !== 'string' || !codeRe.test(o.modality))) || !size(o.rows) || !size(o.columns)) throw bad();
      const rects = o.rectangles;
      if (!Array.isArray(rects) || rects.length === 0 || rects.length > 50
        || rects.some((r) => !Array.isArray(r) || r.length !== 4 || r.some((n) => !Number.isInteger(n) || n < 0 || n > 65535))) throw bad();
      return {
        ...(o.modality !== undefined ? { modality: (o.modality as string).toUpperCase() } : {}),
        ...(o.rows !== undefined ? { rows: o.rows as number } : {}), ...(o.columns !== undefined ? { columns: o.columns as number } : {}),
        rectangles: rects as Array<[number, number, number, number]>,
      };
    });
  }
  return {
    name: b.name.trim(), options: options as ProjectOption[], criteria, ...(dicomwebUrl ? { dicomwebUrl } : {}), ...(pixelMasks ? { pixelMasks } : {}),
    ...(typeof b.dicomwebToken === 'string' ? { dicomwebToken: b.dicomwebToken } : {}),
  };
}

export interface Subject { pseudonym: string; dateOffsetDays: number; personDigest: string }

/** A patient record as the sealed identity keeps it (for the trusted third party only). */
export interface SealedIdentity { records: Array<{ site: string; IssuerOfPatientID: string; PatientID: string; PatientName?: string }> }

export interface ExportRow {
  id: number; projectId: number; kind: string; status: 'running' | 'done' | 'failed' | 'interrupted'; manifest?: unknown; error?: string;
  createdBy: string; createdAt: string; finishedAt?: string;
}

export class ResearchStore {
  constructor(readonly sql: SqlDatabase, private readonly keys: ResearchKeys) {}

  async createProject(siteId: number, def: ReturnType<typeof checkedDefinition>, by: string, now = new Date()): Promise<ResearchProject> {
    const row = await this.sql.get<ProjectRow>(
      `INSERT INTO research_projects (site_id, name, options_json, criteria_json, dicomweb_url, pixel_masks_json, status, created_by, created_at)
       VALUES (?, ?, ?, ?, ?, ?, 'draft', ?, ?) RETURNING *`,
      [siteId, def.name, JSON.stringify(def.options), JSON.stringify(def.criteria), def.dicomwebUrl ?? null, def.pixelMasks ? JSON.stringify(def.pixelMasks) : null, by, now.toISOString()]);
    const project = toProject(row!);
    if (def.dicomwebToken !== undefined) {
      // The destination's token, sealed: never answered, only sent to the destination.
      await this.sql.run('UPDATE research_projects SET dicomweb_token_sealed = ? WHERE id = ?', [this.keys.seal(def.dicomwebToken, `research-dicomweb-token:${project.id}`), project.id]);
    }
    return project;
  }

  /** The bearer token to send to the project's DICOMweb destination, if it has one. */
  async dicomwebToken(projectId: number): Promise<string | undefined> {
    const row = await this.sql.get<{ dicomweb_token_sealed: string | null }>('SELECT dicomweb_token_sealed FROM research_projects WHERE id = ?', [projectId]);
    return row?.dicomweb_token_sealed ? this.keys.open<string>(row.dicomweb_token_sealed, `research-dicomweb-token:${projectId}`) : undefined;
  }

  async project(id: number): Promise<ResearchProject | undefined> {
    if (!Number.isSafeInteger(id) || id <= 0) return undefined;
    const row = await this.sql.get<ProjectRow>('SELECT * FROM research_projects WHERE id = ?', [id]);
    return row ? toProject(row) : undefined;
  }

  /** Projects of these sites (undefined: every site). */
  async projects(siteIds: number[] | undefined): Promise<ResearchProject[]> {
    if (siteIds !== undefined && siteIds.length === 0) return [];
    const rows = siteIds === undefined
      ? await this.sql.all<ProjectRow>('SELECT * FROM research_projects ORDER BY id')
      : await this.sql.all<ProjectRow>(`SELECT * FROM research_projects WHERE site_id IN (${siteIds.map(() => '?').join(', ')}) ORDER BY id`, siteIds);
    return rows.map(toProject);
  }

  /** Approves a draft; the approver is never its author. */
  async approve(id: number, by: string, now = new Date()): Promise<ResearchProject> {
    const p = await this.project(id);
    if (!p) throw new ResearchError('not-found', 'no such project');
    if (p.createdBy === by) throw new ResearchError('forbidden', 'a project is approved by someone other than its author');
    if (p.status === 'approved') return p;
    await this.sql.run(`UPDATE research_projects SET status = 'approved', approved_by = ?, approved_at = ? WHERE id = ? AND status = 'draft'`, [by, now.toISOString(), id]);
    return (await this.project(id))!;
  }

  /** The person's pseudonym and date offset in the project, made on first sight (one per person per project). */
  async subject(projectId: number, personKey: string, identity: SealedIdentity, now = new Date()): Promise<Subject> {
    const personDigest = this.keys.digest(`person:${projectId}`, personKey).toString('hex');
    for (let attempt = 0; attempt < 5; attempt++) {
      const found = await this.sql.get<{ pseudonym: string; date_offset_days: number }>(
        'SELECT pseudonym, date_offset_days FROM research_subjects WHERE project_id = ? AND person_digest = ?', [projectId, personDigest]);
      if (found) return { pseudonym: found.pseudonym, dateOffsetDays: Number(found.date_offset_days), personDigest };
      const pseudonym = `RP${projectId}-${randomBytes(5).toString('hex').toUpperCase()}`;
      // Dates move back by 30 days to 2 years, the same for all of the person's objects.
      const dateOffsetDays = -randomInt(30, 731);
      await this.sql.run(
        `INSERT INTO research_subjects (project_id, person_digest, pseudonym, date_offset_days, identity_sealed, created_at)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
        [projectId, personDigest, pseudonym, dateOffsetDays, this.keys.seal(identity, `research-subject:${projectId}:${pseudonym}`), now.toISOString()]);
    }
    throw new ResearchError('conflict', 'could not make a pseudonym');
  }

  /** The project's replacement of a UID: derived with the key (the same every time), its original sealed for the trusted third party. */
  uidMapper(projectId: number): { uid: (original: string) => string; flush: () => Promise<void> } {
    const made = new Map<string, string>();
    const pending: Array<[string, string]> = [];
    return {
      uid: (original: string) => {
        let u = made.get(original);
        if (u === undefined) {
          const n = BigInt(`0x${this.keys.digest(`uid:${projectId}`, original).subarray(0, 16).toString('hex')}`);
          u = `2.25.${n === 0n ? 1n : n}`;
          made.set(original, u);
          pending.push([u, original]);
        }
        return u;
      },
      flush: async () => {
        for (const [u, original] of pending.splice(0)) {
          await this.sql.run('INSERT INTO research_uids (project_id, new_uid, original_sealed) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
            [projectId, u, this.keys.seal(original, `research-uid:${projectId}:${u}`)]);
        }
      },
    };
  }

  /** The trusted third party's way back: who a pseudonym is, and what a replaced UID was. */
  async reidentify(projectId: number, what: { pseudonym?: string; uid?: string }): Promise<{ identity?: SealedIdentity; originalUID?: string } | undefined> {
    if (what.pseudonym !== undefined) {
      const row = await this.sql.get<{ identity_sealed: string }>('SELECT identity_sealed FROM research_subjects WHERE project_id = ? AND pseudonym = ?', [projectId, what.pseudonym]);
      return row ? { identity: this.keys.open<SealedIdentity>(row.identity_sealed, `research-subject:${projectId}:${what.pseudonym}`) } : undefined;
    }
    if (what.uid !== undefined) {
      const row = await this.sql.get<{ original_sealed: string }>('SELECT original_sealed FROM research_uids WHERE project_id = ? AND new_uid = ?', [projectId, what.uid]);
      return row ? { originalUID: this.keys.open<string>(row.original_sealed, `research-uid:${projectId}:${what.uid}`) } : undefined;
    }
    return undefined;
  }

  /** Records an export running on `run.node`, under a lease until `run.leaseUntil` (renewed while it runs; without: read as interrupted). */
  async startExport(projectId: number, kind: string, by: string, run?: { node: string; leaseUntil: Date }, now = new Date()): Promise<number> {
    const row = await this.sql.get<{ id: number }>(
      `INSERT INTO research_exports (project_id, kind, status, created_by, created_at, run_by, lease_until) VALUES (?, ?, 'running', ?, ?, ?, ?) RETURNING id`,
      [projectId, kind, by, now.toISOString(), run?.node ?? null, run?.leaseUntil.toISOString() ?? null]);
    return Number(row!.id);
  }

  /** Extends the lease of an export this node runs; false when it is no longer this node's running export. */
  async renewExport(id: number, node: string, leaseUntil: Date): Promise<boolean> {
    const r = await this.sql.run(`UPDATE research_exports SET lease_until = ? WHERE id = ? AND run_by = ? AND status = 'running'`, [leaseUntil.toISOString(), id, node]);
    return r.changes === 1;
  }

  /**
   * Its outcome, written while the export is this node's run (running, or marked interrupted
   * after a stall past its lease): a run another node restarted meanwhile writes nothing.
   */
  async finishExport(id: number, node: string, outcome: { manifest: unknown } | { error: string }, now = new Date()): Promise<void> {
    const ours = `id = ? AND run_by = ? AND status IN ('running', 'interrupted')`;
    if ('manifest' in outcome) {
      await this.sql.run(`UPDATE research_exports SET status = 'done', manifest_json = ?, error = NULL, finished_at = ?, lease_until = NULL WHERE ${ours}`,
        [JSON.stringify(outcome.manifest), now.toISOString(), id, node]);
    } else {
      await this.sql.run(`UPDATE research_exports SET status = 'failed', error = ?, finished_at = ?, lease_until = NULL WHERE ${ours}`, [outcome.error, now.toISOString(), id, node]);
    }
  }

  /**
   * Marks interrupted the running exports whose run died: this node's whose lease was taken
   * before `restartedAt` (this process's start: its lease ends before restartedAt + the lease
   * length), and any node's whose lease ran out (or that has none: started before leases). Of
   * one export or one project's. Returns the ids marked.
   */
  async markInterrupted(node: string, ownLeasesEndBefore: Date, of: { id: number } | { projectId: number }, now = new Date()): Promise<number[]> {
    const dead = `status = 'running' AND ${'id' in of ? 'id = ?' : 'project_id = ?'} AND (lease_until IS NULL OR lease_until < ? OR (run_by = ? AND lease_until < ?))`;
    const params = ['id' in of ? of.id : of.projectId, now.toISOString(), node, ownLeasesEndBefore.toISOString()];
    const rows = await this.sql.all<{ id: number }>(`SELECT id FROM research_exports WHERE ${dead}`, params);
    if (rows.length === 0) return [];
    await this.sql.run(
      `UPDATE research_exports SET status = 'interrupted', error = ?, finished_at = ?, lease_until = NULL WHERE ${dead}`,
      ['interrupted: the node running it stopped (a crash or a restart) before it finished; restart it', now.toISOString(), ...params]);
    return rows.map((r) => Number(r.id));
  }

  /** Takes an interrupted or failed export again, on this node: running, its earlier outcome cleared. False if it is neither. */
  async restartExport(id: number, node: string, leaseUntil: Date): Promise<boolean> {
    const r = await this.sql.run(
      `UPDATE research_exports SET status = 'running', error = NULL, manifest_json = NULL, finished_at = NULL, run_by = ?, lease_until = ?
        WHERE id = ? AND status IN ('interrupted', 'failed')`, [node, leaseUntil.toISOString(), id]);
    return r.changes === 1;
  }

  async exportRow(id: number): Promise<ExportRow | undefined> {
    if (!Number.isSafeInteger(id) || id <= 0) return undefined;
    const r = await this.sql.get<{ id: number; project_id: number; kind: string; status: ExportRow['status']; manifest_json: string | null; error: string | null; created_by: string; created_at: string; finished_at: string | null }>(
      'SELECT * FROM research_exports WHERE id = ?', [id]);
    if (!r) return undefined;
    return {
      id: Number(r.id), projectId: Number(r.project_id), kind: r.kind, status: r.status,
      ...(r.manifest_json ? { manifest: JSON.parse(r.manifest_json) as unknown } : {}), ...(r.error ? { error: r.error } : {}),
      createdBy: r.created_by, createdAt: r.created_at, ...(r.finished_at ? { finishedAt: r.finished_at } : {}),
    };
  }

  async exportsOf(projectId: number): Promise<ExportRow[]> {
    const rows = await this.sql.all<{ id: number }>('SELECT id FROM research_exports WHERE project_id = ? ORDER BY id', [projectId]);
    return (await Promise.all(rows.map((r) => this.exportRow(Number(r.id))))).filter((r): r is ExportRow => r !== undefined);
  }

  // The objection registry: patients who refused the use of their data for research.

  async recordObjection(patientId: number, siteId: number, reason: string | undefined, by: string, now = new Date()): Promise<{ id: number; recordedAt: string }> {
    const open = await this.sql.get<{ id: number; recorded_at: string }>('SELECT id, recorded_at FROM research_objections WHERE patient_id = ? AND withdrawn_at IS NULL', [patientId]);
    if (open) return { id: Number(open.id), recordedAt: open.recorded_at };
    const row = await this.sql.get<{ id: number }>(
      'INSERT INTO research_objections (patient_id, site_id, reason, recorded_by, recorded_at) VALUES (?, ?, ?, ?, ?) RETURNING id',
      [patientId, siteId, reason ?? null, by, now.toISOString()]);
    return { id: Number(row!.id), recordedAt: now.toISOString() };
  }

  async withdrawObjection(patientId: number, now = new Date()): Promise<boolean> {
    const r = await this.sql.run('UPDATE research_objections SET withdrawn_at = ? WHERE patient_id = ? AND withdrawn_at IS NULL', [now.toISOString(), patientId]);
    return r.changes > 0;
  }

  /** The earliest standing objection among these patient records (the records of one person), if any. */
  async objectionOf(patientIds: readonly number[]): Promise<string | undefined> {
    if (patientIds.length === 0) return undefined;
    const row = await this.sql.get<{ at: string | null }>(
      `SELECT MIN(recorded_at) AS at FROM research_objections WHERE withdrawn_at IS NULL AND patient_id IN (${patientIds.map(() => '?').join(', ')})`, [...patientIds]);
    return row?.at ?? undefined;
  }

  async objectionsOfSites(siteIds: number[] | undefined): Promise<Array<{ id: number; patientId: number; siteId: number; recordedAt: string; recordedBy: string }>> {
    if (siteIds !== undefined && siteIds.length === 0) return [];
    const rows = await this.sql.all<{ id: number; patient_id: number; site_id: number; recorded_at: string; recorded_by: string }>(
      `SELECT id, patient_id, site_id, recorded_at, recorded_by FROM research_objections WHERE withdrawn_at IS NULL${siteIds === undefined ? '' : ` AND site_id IN (${siteIds.map(() => '?').join(', ')})`} ORDER BY id`,
      siteIds ?? []);
    return rows.map((r) => ({ id: Number(r.id), patientId: Number(r.patient_id), siteId: Number(r.site_id), recordedAt: r.recorded_at, recordedBy: r.recorded_by }));
  }
}
