/**
 * Dose on record: the radiation dose of each X-ray exam, read behind ingest (an outbox
 * consumer, never on the acknowledgement's path) from its Radiation Dose SR (TID 10011 for
 * CT, TID 10001 for projection X-ray) or, when the exam has none, from its images' headers
 * (CTDIvol (0018,9345), DAP (0018,115E)). A report with missing or inconsistent values is
 * kept as partial with what it said and why: a value is never made up.
 *
 * Per patient, a cumulative timeline with an effective-dose estimate (DLP x k per region);
 * per site and exam type, the distribution against the diagnostic reference levels (NRD).
 */
import type { Logger } from 'pino';
import { OutboxConsumer } from '../events/consumer.ts';
import type { Outbox, OutboxEvent } from '../events/outbox.ts';
import { applyMigrations, type Migration } from '../index/migrations.ts';
import type { SqlDatabase } from '../index/sql.ts';

export const doseMigrationsTable = 'dose_migrations';

export const doseMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'dose records: one row per Radiation Dose SR, one per image series read from headers',
    // source_uid: the RDSR's SOPInstanceUID, or the series' SeriesInstanceUID for header doses.
    sql: `
CREATE TABLE dose_records (
  id {id},
  source_uid {text} NOT NULL UNIQUE,
  source {text} NOT NULL,
  status {text} NOT NULL,
  study_instance_uid {text} NOT NULL,
  site_id BIGINT NOT NULL,
  modality {text},
  region {text},
  ctdivol_mgy DOUBLE PRECISION,
  dlp_mgycm DOUBLE PRECISION,
  dap_gym2 DOUBLE PRECISION,
  events_json {text} NOT NULL,
  problems_json {text} NOT NULL,
  recorded_at {text} NOT NULL
);
CREATE INDEX dose_records_study ON dose_records (study_instance_uid);
CREATE INDEX dose_records_site ON dose_records (site_id, modality, region);
`,
  },
];

export async function migrateDoseRecords(sql: SqlDatabase): Promise<void> {
  await applyMigrations(sql, doseMigrations, doseMigrationsTable);
}

/** X-Ray Radiation Dose SR Storage (PS3.4 B.5). */
export const RDSR_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.88.67';
const X_RAY_MODALITIES = new Set(['CT', 'DX', 'CR', 'RF', 'XA', 'MG', 'IO', 'PX', 'RG']);

/** One irradiation event as the report states it (CT acquisition or projection X-ray event). */
export interface IrradiationEvent { CTDIvol?: number; DLP?: number; DAP?: number; region?: string }

export interface DoseReading {
  status: 'complete' | 'partial';
  modality: 'CT' | 'XR';
  /** CT Dose Length Product Total (113813), mGy.cm, as stated. */
  DLP?: number;
  /** The largest Mean CTDIvol (113830) of the events, mGy. */
  CTDIvol?: number;
  /** Dose Area Product Total (113722), Gy.m2, as stated. */
  DAP?: number;
  region?: string;
  events: IrradiationEvent[];
  problems: string[];
}

type Json = Record<string, { vr?: string; Value?: unknown[] }>;

const codeOf = (item: Json, tag: string): { value?: string; meaning?: string } => {
  const c = item[tag]?.Value?.[0] as Json | undefined;
  return c ? { value: c['00080100']?.Value?.[0] as string | undefined, meaning: c['00080104']?.Value?.[0] as string | undefined } : {};
};
const conceptOf = (item: Json) => codeOf(item, '0040A043').value;
const childrenOf = (item: Json) => (item['0040A730']?.Value ?? []) as Json[];

/** The numeric value of a NUM item, or a reason it has none usable. */
function numberOf(item: Json): number | string {
  const mv = item['0040A300']?.Value?.[0] as Json | undefined;
  const raw = mv?.['0040A30A']?.Value?.[0];
  if (raw === undefined || raw === null || raw === '') return 'no value';
  const n = typeof raw === 'number' ? raw : Number(String(raw).trim());
  if (!Number.isFinite(n)) return `value ${JSON.stringify(raw)} is not a number`;
  if (n < 0) return `value ${n} is negative`;
  return n;
}

/** Every item of the tree under `items`, depth first. */
function* walk(items: Json[]): Generator<Json> {
  for (const i of items) {
    yield i;
    yield* walk(childrenOf(i));
  }
}

/** The first NUM with this concept under the items; a value the report gives but that is unusable is a problem. */
function numIn(items: Json[], concept: string, what: string, problems: string[]): number | undefined {
  for (const i of walk(items)) {
    if (conceptOf(i) !== concept) continue;
    const v = numberOf(i);
    if (typeof v === 'number') return v;
    problems.push(`${what}: ${v}`);
    return undefined;
  }
  return undefined;
}

/** Reads a Radiation Dose SR (its DICOM JSON): TID 10011 (CT) or TID 10001 (projection X-ray). */
export function readDoseReport(json: Json): DoseReading {
  const problems: string[] = [];
  const root = childrenOf(json);
  const all = [...walk(root)];
  const ctEvents = all.filter((i) => conceptOf(i) === '113819');
  const xrEvents = all.filter((i) => conceptOf(i) === '113706');
  const modality: 'CT' | 'XR' = ctEvents.length > 0 || all.some((i) => conceptOf(i) === '113811') ? 'CT' : 'XR';
  const events: IrradiationEvent[] = [];
  let region: string | undefined;
  if (modality === 'CT') {
    ctEvents.forEach((e, n) => {
      const kids = childrenOf(e);
      const CTDIvol = numIn(kids, '113830', `CT acquisition ${n + 1} Mean CTDIvol`, problems);
      const DLP = numIn(kids, '113838', `CT acquisition ${n + 1} DLP`, problems);
      if (DLP === undefined && !problems.some((p) => p.startsWith(`CT acquisition ${n + 1} DLP`))) problems.push(`CT acquisition ${n + 1}: DLP missing`);
      const target = [...walk(kids)].find((i) => conceptOf(i) === '123014');
      const r = target ? regionOf(codeOf(target, '0040A168').meaning ?? codeOf(target, '0040A168').value) : undefined;
      region ??= r;
      events.push({ ...(CTDIvol !== undefined ? { CTDIvol } : {}), ...(DLP !== undefined ? { DLP } : {}), ...(r ? { region: r } : {}) });
    });
    const accumulated = all.filter((i) => conceptOf(i) === '113811');
    const DLP = numIn(accumulated, '113813', 'CT Dose Length Product Total', problems);
    if (DLP === undefined && !problems.some((p) => p.startsWith('CT Dose Length Product Total'))) problems.push('CT Dose Length Product Total missing');
    const eventSum = events.reduce((s, e) => s + (e.DLP ?? 0), 0);
    if (DLP !== undefined && events.length > 0 && events.every((e) => e.DLP !== undefined) && Math.abs(eventSum - DLP) > Math.max(1, DLP * 0.05)) {
      problems.push(`CT Dose Length Product Total ${DLP} differs from the sum of its acquisitions' DLP ${Math.round(eventSum * 100) / 100}`);
    }
    if (events.length === 0) problems.push('no CT acquisition');
    const ctdis = events.map((e) => e.CTDIvol).filter((v): v is number => v !== undefined);
    return {
      status: problems.length === 0 ? 'complete' : 'partial', modality,
      ...(DLP !== undefined ? { DLP } : {}), ...(ctdis.length > 0 ? { CTDIvol: Math.max(...ctdis) } : {}),
      ...(region ? { region } : {}), events, problems,
    };
  }
  xrEvents.forEach((e, n) => {
    const DAP = numIn(childrenOf(e), '113725', `irradiation event ${n + 1} Dose Area Product`, problems);
    if (DAP === undefined && !problems.some((p) => p.startsWith(`irradiation event ${n + 1}`))) problems.push(`irradiation event ${n + 1}: Dose Area Product missing`);
    events.push(DAP !== undefined ? { DAP } : {});
  });
  const DAP = numIn(all.filter((i) => conceptOf(i) === '113702' || conceptOf(i) === '113705'), '113722', 'Dose Area Product Total', problems);
  if (DAP === undefined && !problems.some((p) => p.startsWith('Dose Area Product Total'))) problems.push('Dose Area Product Total missing');
  if (events.length === 0 && DAP === undefined) problems.push('no irradiation event');
  return { status: problems.length === 0 ? 'complete' : 'partial', modality, ...(DAP !== undefined ? { DAP } : {}), events, problems };
}

/**
 * The body region of a free text (BodyPartExamined, a procedure, a code meaning) as one of
 * a few regions the k-factors, the reference levels and the redundancy windows are given for.
 */
export function regionOf(text: string | null | undefined): string | undefined {
  if (!text) return undefined;
  const t = text.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toUpperCase();
  if (/HEAD|BRAIN|SKULL|CRANE|ENCEPHAL|CEREBR|TETE/.test(t)) return 'HEAD';
  if (/NECK|COU\b|CERVICAL/.test(t)) return 'NECK';
  if (/THORAX.*ABDO|TAP\b|CHEST.*ABD|TRUNK/.test(t)) return 'CHEST-ABDOMEN-PELVIS';
  if (/CHEST|THORAX|LUNG|POUMON/.test(t)) return 'CHEST';
  if (/ABDO|PELVI|BASSIN/.test(t)) return 'ABDOMEN-PELVIS';
  if (/SPINE|RACHIS|LOMB|LSPINE/.test(t)) return 'SPINE';
  if (/KNEE|GENOU/.test(t)) return 'KNEE';
  if (/HIP|HANCHE/.test(t)) return 'HIP';
  return t.trim().split(/\s+/)[0];
}

/**
 * Adult CT k-factors, mSv per mGy.cm (AAPM Report 96, 2008, table 3, after the European
 * Guidelines on Quality Criteria for CT, EUR 16262, and Shrimpton et al. 2005): E ≈ DLP x k.
 */
export const ctKFactors: Readonly<Record<string, number>> = {
  HEAD: 0.0021, NECK: 0.0059, CHEST: 0.014, 'ABDOMEN-PELVIS': 0.015, 'CHEST-ABDOMEN-PELVIS': 0.015, SPINE: 0.015,
};
export const effectiveDoseMethod = 'CT: E = DLP x k, adult k-factors by region (mSv/(mGy.cm)) of AAPM Report 96 (2008), table 3 (EUR 16262; Shrimpton 2005); '
  + 'projection X-ray and regions without a k-factor: not estimated.';

/** A diagnostic reference level: one exam type (modality and region), in the quantity the NRD is set in. */
export interface ReferenceLevel { modality: string; region: string; quantity: 'CTDIvol' | 'DLP' | 'DAP'; level: number; unit: string; label: string }

/**
 * Default NRD (arrêté of 23 May 2019 homologating ASN decision 2019-DC-0667, annex 2, table
 * 2.1: adult radiography, per single projection, PDS in mGy.cm2). The CT levels (annex 3) are
 * configured by the site (radiation.referenceLevels), not shipped unchecked.
 */
export const defaultReferenceLevels: readonly ReferenceLevel[] = [
  { modality: 'XR', region: 'CHEST', quantity: 'DAP', level: 200, unit: 'mGy.cm2', label: 'Thorax de face (postéro-antérieur)' },
  { modality: 'XR', region: 'ABDOMEN-PELVIS', quantity: 'DAP', level: 3400, unit: 'mGy.cm2', label: 'Abdomen sans préparation' },
  { modality: 'XR', region: 'HIP', quantity: 'DAP', level: 1350, unit: 'mGy.cm2', label: 'Hanche' },
];

/** The built-in levels with the configured ones over them (same modality, region and quantity: replaced). */
export function mergeReferenceLevels(builtIn: readonly ReferenceLevel[], configured: readonly ReferenceLevel[]): ReferenceLevel[] {
  const key = (l: ReferenceLevel) => `${l.modality}|${l.region}|${l.quantity}`;
  const mine = new Set(configured.map(key));
  return [...builtIn.filter((l) => !mine.has(key(l))), ...configured];
}

interface RecordRow {
  source_uid: string; source: 'rdsr' | 'header'; status: 'complete' | 'partial'; study_instance_uid: string; site_id: number; modality: string | null;
  region: string | null; ctdivol_mgy: number | null; dlp_mgycm: number | null; dap_gym2: number | null; events_json: string; problems_json: string;
}

/** The dose of one exam: its RDSR's when it has one, else what its images' headers say. */
export interface ExamDose {
  StudyInstanceUID: string; siteId: number; modality: string; region?: string; source: 'rdsr' | 'header'; status: 'complete' | 'partial';
  CTDIvol?: number; DLP?: number; DAP?: number; problems: string[]; events: IrradiationEvent[];
}

function examDoses(rows: RecordRow[]): ExamDose[] {
  const byStudy = new Map<string, RecordRow[]>();
  for (const r of rows) byStudy.set(r.study_instance_uid, [...(byStudy.get(r.study_instance_uid) ?? []), r]);
  const out: ExamDose[] = [];
  for (const [uid, rs] of byStudy) {
    const rdsr = rs.filter((r) => r.source === 'rdsr');
    const used = rdsr.length > 0 ? rdsr : rs;
    const sum = (f: (r: RecordRow) => number | null) => {
      const v = used.map(f).filter((x): x is number => x !== null);
      return v.length > 0 ? v.reduce((a, b) => a + Number(b), 0) : undefined;
    };
    const ctdis = used.map((r) => r.ctdivol_mgy).filter((x): x is number => x !== null).map(Number);
    const DLP = sum((r) => r.dlp_mgycm);
    const DAP = sum((r) => r.dap_gym2);
    const region = used.find((r) => r.region !== null)?.region ?? undefined;
    out.push({
      StudyInstanceUID: uid, siteId: Number(used[0]!.site_id), modality: used[0]!.modality ?? 'OT', ...(region ? { region } : {}),
      source: rdsr.length > 0 ? 'rdsr' : 'header', status: used.some((r) => r.status === 'partial') ? 'partial' : 'complete',
      ...(ctdis.length > 0 ? { CTDIvol: Math.max(...ctdis) } : {}), ...(DLP !== undefined ? { DLP } : {}), ...(DAP !== undefined ? { DAP } : {}),
      problems: used.flatMap((r) => JSON.parse(r.problems_json) as string[]),
      events: used.flatMap((r) => JSON.parse(r.events_json) as IrradiationEvent[]),
    });
  }
  return out;
}

/** The recorded doses of these studies, one per exam. */
export async function dosesOfStudies(sql: SqlDatabase, StudyInstanceUIDs: readonly string[]): Promise<ExamDose[]> {
  if (StudyInstanceUIDs.length === 0) return [];
  await migrateDoseRecords(sql);
  const rows = await sql.all<RecordRow>(`SELECT * FROM dose_records WHERE study_instance_uid IN (${StudyInstanceUIDs.map(() => '?').join(', ')}) ORDER BY id`, [...StudyInstanceUIDs]);
  return examDoses(rows);
}

/** Effective dose estimate of an exam, mSv, or undefined when the method gives none. */
export function effectiveDoseOf(d: Pick<ExamDose, 'modality' | 'region' | 'DLP'>): { mSv: number; k: number } | undefined {
  if (d.modality !== 'CT' || d.DLP === undefined || d.region === undefined) return undefined;
  const k = ctKFactors[d.region];
  return k === undefined ? undefined : { mSv: Math.round(d.DLP * k * 100) / 100, k };
}

/** What the NRD is compared with for an exam (DAP in mGy.cm2 as the NRD states it). */
function quantityOf(d: ExamDose, quantity: ReferenceLevel['quantity']): number | undefined {
  if (quantity === 'DAP') return d.DAP === undefined ? undefined : Math.round(d.DAP * 1e7 * 100) / 100; // Gy.m2 -> mGy.cm2
  return quantity === 'DLP' ? d.DLP : d.CTDIvol;
}

export interface ReferenceRow {
  modality: string; region: string; label: string; quantity: string; unit: string; level: number;
  count: number; median?: number; p75?: number; above: Array<{ StudyInstanceUID: string; value: number; status: string }>;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;

/** Per exam type of the site: the distribution of the NRD's quantity, and the exams above the level. */
export async function siteReferenceTable(sql: SqlDatabase, siteId: number, levels: readonly ReferenceLevel[], range: { from?: string; to?: string } = {}): Promise<ReferenceRow[]> {
  await migrateDoseRecords(sql);
  // The study as the index has it now: a deleted exam is gone, a study moved to another site counts there.
  const where = ['s.site_id = ?'];
  const params: unknown[] = [siteId];
  if (range.from) { where.push('d.recorded_at >= ?'); params.push(range.from); }
  if (range.to) { where.push('d.recorded_at < ?'); params.push(range.to); }
  const exams = examDoses(await sql.all<RecordRow>(
    `SELECT d.*, s.site_id AS site_id FROM dose_records d JOIN studies s ON s.study_instance_uid = d.study_instance_uid WHERE ${where.join(' AND ')} ORDER BY d.id`, params));
  return levels.map((l) => {
    const values = exams
      .filter((e) => (l.modality === 'XR' ? e.modality !== 'CT' : e.modality === l.modality) && e.region === l.region)
      .map((e) => ({ e, v: quantityOf(e, l.quantity) }))
      .filter((x): x is { e: ExamDose; v: number } => x.v !== undefined);
    const sorted = values.map((x) => x.v).sort((a, b) => a - b);
    return {
      modality: l.modality, region: l.region, label: l.label, quantity: l.quantity, unit: l.unit, level: l.level, count: sorted.length,
      ...(sorted.length > 0 ? { median: percentile(sorted, 0.5), p75: percentile(sorted, 0.75) } : {}),
      above: values.filter((x) => x.v > l.level).map((x) => ({ StudyInstanceUID: x.e.StudyInstanceUID, value: x.v, status: x.e.status })),
    };
  });
}

const csvCell = (v: unknown) => {
  const s = v === undefined ? '' : String(v);
  return /[",\n;]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

/** The site's table as CSV: one line per exam type, then one per exam above its level. */
export function referenceTableCsv(rows: ReferenceRow[]): string {
  const lines = [['exam', 'modality', 'region', 'quantity', 'unit', 'NRD', 'exams', 'median', 'p75', 'StudyInstanceUID above NRD', 'value', 'record'].join(',')];
  for (const r of rows) {
    lines.push([r.label, r.modality, r.region, r.quantity, r.unit, r.level, r.count, r.median, r.p75, '', '', ''].map(csvCell).join(','));
    for (const a of r.above) lines.push([r.label, r.modality, r.region, r.quantity, r.unit, r.level, '', '', '', a.StudyInstanceUID, a.value, a.status].map(csvCell).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

/**
 * The outbox consumer that records doses: an RDSR is read whole; an X-ray image adds its
 * header's indices to its series' row. Works from the index's DICOM JSON of the object, in
 * the batch's transaction.
 */
export class DoseRecording extends OutboxConsumer {
  private recorded = 0;

  constructor(private readonly sql: SqlDatabase, outbox: Outbox, logger: Logger, pollMs = 1000) {
    super(outbox, 'dose-records', logger, 200, pollMs);
  }

  protected async apply(tx: SqlDatabase, events: OutboxEvent[]): Promise<void> {
    for (const e of events) {
      const p = e.payload as { siteId: number; StudyInstanceUID: string; SeriesInstanceUID: string; SOPInstanceUID: string; SOPClassUID: string };
      // A corrected report (the same SOPInstanceUID sent again) is read again; a replaced image is not added twice.
      if (e.type !== 'instance.stored' && !(e.type === 'instance.replaced' && p.SOPClassUID === RDSR_SOP_CLASS)) continue;
      const row = await tx.get<{ metadata_json: string; modality: string | null; body_part: string | null }>(
        `SELECT i.metadata_json, se.modality, se.body_part FROM instances i JOIN series se ON se.id = i.series_id WHERE i.sop_instance_uid = ?`, [p.SOPInstanceUID]);
      if (!row) continue;
      const now = new Date().toISOString();
      if (p.SOPClassUID === RDSR_SOP_CLASS) {
        const r = readDoseReport(JSON.parse(row.metadata_json) as Json);
        await tx.run('DELETE FROM dose_records WHERE source_uid = ?', [p.SOPInstanceUID]);
        await tx.run(
          `INSERT INTO dose_records (source_uid, source, status, study_instance_uid, site_id, modality, region, ctdivol_mgy, dlp_mgycm, dap_gym2, events_json, problems_json, recorded_at)
           VALUES (?, 'rdsr', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          [p.SOPInstanceUID, r.status, p.StudyInstanceUID, p.siteId, r.modality, r.region ?? regionOf(row.body_part) ?? null, r.CTDIvol ?? null, r.DLP ?? null, r.DAP ?? null,
            JSON.stringify(r.events), JSON.stringify(r.problems), now],
        );
        this.recorded++;
        continue;
      }
      if (!row.modality || !X_RAY_MODALITIES.has(row.modality)) continue;
      const json = JSON.parse(row.metadata_json) as Json;
      const ctdi = Number(json['00189345']?.Value?.[0]);
      const dapDGycm2 = Number(json['0018115E']?.Value?.[0]);
      const CTDIvol = Number.isFinite(ctdi) && ctdi > 0 ? ctdi : null;
      // (0018,115E) is in dGy.cm2; kept in Gy.m2 as the RDSR's 113722.
      const DAP = Number.isFinite(dapDGycm2) && dapDGycm2 > 0 ? dapDGycm2 * 1e-5 : null;
      if (CTDIvol === null && DAP === null) continue;
      const existing = await tx.get<{ id: number; ctdivol_mgy: number | null; dap_gym2: number | null }>('SELECT id, ctdivol_mgy, dap_gym2 FROM dose_records WHERE source_uid = ?', [p.SeriesInstanceUID]);
      if (existing) {
        const c = existing.ctdivol_mgy === null ? CTDIvol : CTDIvol === null ? Number(existing.ctdivol_mgy) : Math.max(Number(existing.ctdivol_mgy), CTDIvol);
        const d = existing.dap_gym2 === null ? DAP : DAP === null ? Number(existing.dap_gym2) : Number(existing.dap_gym2) + DAP;
        await tx.run('UPDATE dose_records SET ctdivol_mgy = ?, dap_gym2 = ?, recorded_at = ? WHERE id = ?', [c, d, now, existing.id]);
      } else {
        // Headers carry no DLP: the record is partial for what an RDSR would have said.
        const modality = row.modality === 'CT' ? 'CT' : 'XR';
        await tx.run(
          `INSERT INTO dose_records (source_uid, source, status, study_instance_uid, site_id, modality, region, ctdivol_mgy, dlp_mgycm, dap_gym2, events_json, problems_json, recorded_at)
           VALUES (?, 'header', ?, ?, ?, ?, ?, ?, NULL, ?, '[]', ?, ?)`,
          [p.SeriesInstanceUID, modality === 'CT' ? 'partial' : 'complete', p.StudyInstanceUID, p.siteId, modality, regionOf(row.body_part) ?? null, CTDIvol, DAP,
            JSON.stringify(modality === 'CT' ? ['no Radiation Dose SR: CTDIvol from the image headers, no DLP'] : []), now],
        );
      }
      this.recorded++;
    }
  }

  /** Its table in place first (startWorkers awaits the same before starting it). */
  override async drain(): Promise<number> {
    await migrateDoseRecords(this.sql);
    return super.drain();
  }

  protected override afterBatch(): void {
    if (this.recorded > 0) this.logger.info({ recorded: this.recorded }, 'doses recorded');
    this.recorded = 0;
  }
}
