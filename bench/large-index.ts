/**
 * A region's index (issue 14): N studies / 10N instances, synthetic, index only, on SQLite and
 * on PostgreSQL; the portal's searches through the real server (QIDO-RS and /api/patients)
 * and C-STORE ingest (storescu) into that index against an empty one, alternated.
 *
 *   npm run bench:index -- --studies 100000 --engines sqlite,postgres --runs 3
 *
 * The rows are filled straight into the schema made by Atrium's own migrations (ingesting a
 * million objects over DIMSE would take days here; search speed depends only on the rows):
 * the same columns ingest writes (folded names, name words, "\"-delimited modalities, counts),
 * SQLite by prepared statements in big transactions, PostgreSQL by batches of unnest() for
 * patients and studies and INSERT ... SELECT generate_series for series and instances, with the
 * secondary indexes and constraints made after the load (buildLargeIndexPostgres).
 * Environment: DATABASE_URL (PostgreSQL), BENCH_INDEX_DIR (default /tmp/atrium-large-index),
 * BENCH_INDEX_KEEP=1 keeps the generated indexes. Results: bench/out/large-index-latest.{md,json}.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import { foldPersonName } from '../src/dicom/person-name.ts';
import { openArchiveIndex, type ArchiveIndex } from '../src/index/archive-index.ts';
import { personNameWords } from '../src/index/migrations.ts';
import { parseQidoQuery } from '../src/dicomweb/qido.ts';
import { personMatches } from '../src/patients/person-query.ts';
import { scopeCondition, type AccessScope } from '../src/access/policy.ts';
import { findPatientRecords } from '../src/patients/timeline.ts';
import { benchSite, startAtrium, type RunningServer } from './atrium.ts';
import { frenchGivenNames, generateCtCorpus, prng, SOPClass } from './corpus.ts';
import { CallingAE, storeFolders, waitForEcho } from './dcmtk.ts';
import { freePort, makeTempDir, median, nowMs, percentile, removeTempDir } from './measure.ts';

export interface LargeIndexPlan {
  studies: number;
  instancesPerStudy: number;
  patients: number;
  /** Sites holding the patients (default 1: all BENCH); with more, BENCH holds 40%, the others share the rest. */
  sites?: number;
}

export interface LargeIndex {
  path: string;
  plan: LargeIndexPlan;
  instances: number;
  series: number;
  /** Values that exist in the index (at site BENCH), for the searches. */
  samplePatientIDs: string[];
  familyPrefixes: string[];
  givenNames: string[];
  /** Family name (as stored, accents included) and birth date of BENCH patients. */
  nameAndBirthDate: Array<{ family: string; birthDate: string }>;
  /** Accession numbers of BENCH studies. */
  accessionNumbers: string[];
  buildSeconds: number;
  reused: boolean;
}

/** Bump when the generated rows change. */
const largeIndexVersion = 2;

const syllablesA = ['Du', 'Le', 'Bé', 'Ma', 'Ro', 'Ché', 'Fon', 'Gi', 'Mer', 'Pé', 'Tho', 'Vil', 'Bou', 'Cha', 'Dé', 'Lam', 'Gau', 'Fau', 'Ré', 'Sé'];
const syllablesB = ['pré', 'fèvre', 'nard', 'rond', 'cier', 'tre', 'ger', 'taine', 'lier', 'raud', 'rault', 'val', 'ra', 'bert', 'yer', 'ël', 'mont', 'pont', 'puis', 'zac'];
const syllablesC = ['', '', '', 'au', 'et', 'in', 'on', 'ier', 'ard', 'ot'];

/** About 4,000 distinct French-looking family names, accents included. */
function familyName(n: number): string {
  const a = syllablesA[n % syllablesA.length]!;
  const b = syllablesB[Math.floor(n / syllablesA.length) % syllablesB.length]!;
  const c = syllablesC[Math.floor(n / (syllablesA.length * syllablesB.length)) % syllablesC.length]!;
  return a + b + c;
}

const modalityMix: Array<[string, number, string]> = [
  ['CR', 0.33, SOPClass.CR], ['DX', 0.15, SOPClass.DX], ['US', 0.15, SOPClass.US], ['CT', 0.15, SOPClass.CT],
  ['MR', 0.12, SOPClass.MR], ['MG', 0.06, SOPClass.MG], ['PT', 0.03, '1.2.840.10008.5.1.4.1.1.128'], ['NM', 0.01, '1.2.840.10008.5.1.4.1.1.20'],
];

function pickModality(r: number): [string, string] {
  let acc = 0;
  for (const [m, p, c] of modalityMix) {
    acc += p;
    if (r < acc) return [m, c];
  }
  return [modalityMix[0]![0], modalityMix[0]![2]];
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

function dateOfDay(day: number): string {
  const d = new Date(Date.UTC(2015, 0, 1) + day * 86_400_000);
  return `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1, 2)}${pad(d.getUTCDate(), 2)}`;
}

/** A number in [0, 1) that depends only on (n, salt): a patient's attributes are known without generating. */
function hash01(n: number, salt: number): number {
  let h = (Math.imul(n + 1, 0x9e3779b1) ^ Math.imul(salt + 7, 0x85ebca77)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

export const extraSites = [
  { code: 'SITE2', name: 'Centre hospitalier de Bénac', finess: '000000002', issuerOfPatientID: 'SITE2' },
  { code: 'SITE3', name: 'Clinique Sainte-Anaïs', finess: '000000003', issuerOfPatientID: 'SITE3' },
  { code: 'SITE4', name: 'Cabinet d’imagerie du Lac', finess: '000000004', issuerOfPatientID: 'SITE4' },
];

/** 0 for BENCH; with several sites, p % 5 in {0, 1} is BENCH (40%), the rest is dealt to the others. */
function siteOfPatient(p: number, sites: number): number {
  if (sites <= 1) return 0;
  const k = p % 5;
  return k < 2 ? 0 : 1 + ((k - 2) % (sites - 1));
}

interface PatientGen { p: number; site: number; PatientID: string; family: string; given: string; name: string; birthDate: string; sex: string }

function patientOf(p: number, sites: number): PatientGen {
  const family = familyName(Math.floor(hash01(p, 1) * 4000));
  const given = frenchGivenNames[Math.floor(hash01(p, 2) * frenchGivenNames.length)]!;
  return {
    p, site: siteOfPatient(p, sites), PatientID: `LP${pad(p, 7)}`, family, given, name: `${family}^${given}`,
    birthDate: dateOfDay(-Math.floor(hash01(p, 3) * 30000)), sex: hash01(p, 4) < 0.5 ? 'F' : 'M',
  };
}

interface StudyGen {
  id: number; uid: string; patientRow: number; site: number; date: string; time: string; accession: string; studyId: string;
  description: string; modality: string; second: string; modalities: string; sopClass: string;
}

const uidRoot = '2.25.1789';
const referring = 'Lévêque^Étienne';
const layoutJson = JSON.stringify({ datasetOffset: 132, littleEndian: true, explicitVR: true, pixelData: { range: { offset: 1200, length: 524288 } }, bulk: {} });
const fakeSha = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** Studies in id order; every patient has at least one, the rest are spread at random (several studies a patient). */
function* studiesOf(plan: LargeIndexPlan): Generator<StudyGen> {
  const random = prng(1789);
  const sites = plan.sites ?? 1;
  for (let s = 0; s < plan.studies; s++) {
    const id = s + 1;
    const [modality, sopClass] = pickModality(random());
    const date = dateOfDay(Math.floor(random() * 4018));
    const time = `${pad(7 + Math.floor(random() * 12), 2)}${pad(Math.floor(random() * 60), 2)}${pad(Math.floor(random() * 60), 2)}`;
    // A few studies mix modalities (a CT with a PT, an MG with a US), as ModalitiesInStudy has to find them.
    const second = modality === 'PT' ? 'CT' : modality === 'MG' && random() < 0.5 ? 'US' : modality;
    const p = s < plan.patients ? s : Math.floor(random() * plan.patients);
    yield {
      id, uid: `${uidRoot}.${id}`, patientRow: p + 1, site: siteOfPatient(p, sites), date, time, accession: `A${pad(id, 9)}`,
      studyId: String(id % 100000), description: `Examen ${modality}`, modality, second,
      modalities: second === modality ? `\\${modality}\\` : `\\${modality}\\${second}\\`, sopClass,
    };
  }
}

function seriesCountOf(plan: LargeIndexPlan, se: number): number {
  const base = Math.floor(plan.instancesPerStudy / 3);
  return se < 2 ? base : plan.instancesPerStudy - 2 * base;
}

function planKey(plan: LargeIndexPlan): string {
  // Not the number of migrations: Atrium applies the ones added since at start, on the same rows.
  return `v${largeIndexVersion}-${plan.studies}s-${plan.instancesPerStudy}i-${plan.patients}p${(plan.sites ?? 1) > 1 ? `-${plan.sites}sites` : ''}`;
}

export function largeIndexPath(dir: string, plan: LargeIndexPlan): string {
  return path.join(dir, `large-index-${planKey(plan)}.sqlite`);
}

export function describe(file: string, plan: LargeIndexPlan, buildSeconds: number, reused: boolean): LargeIndex {
  const sites = plan.sites ?? 1;
  const random = prng(4242);
  const benchPatients: PatientGen[] = [];
  while (benchPatients.length < 200) {
    const p = patientOf(Math.floor(random() * plan.patients), sites);
    if (p.site === 0) benchPatients.push(p);
  }
  // Study s < patients belongs to patient s: its accession number is that of a BENCH study.
  const accessionNumbers = benchPatients.filter((p) => p.p < plan.studies).map((p) => `A${pad(p.p + 1, 9)}`);
  return {
    path: file, plan, buildSeconds, reused,
    instances: plan.studies * plan.instancesPerStudy,
    series: plan.studies * 3,
    samplePatientIDs: benchPatients.map((p) => p.PatientID),
    familyPrefixes: ['DUP', 'LEF', 'BEN', 'MAR', 'ROC', 'CHE', 'FON', 'GIR', 'MER', 'THO', 'VIL', 'BOU', 'LAM', 'GAU', 'SEB'],
    givenNames: frenchGivenNames.map((g) => foldPersonName(g)),
    nameAndBirthDate: benchPatients.map((p) => ({ family: p.family, birthDate: p.birthDate })),
    accessionNumbers,
  };
}

/** Builds (or reuses) the large SQLite index file in `dir`. */
export async function buildLargeIndex(dir: string, plan: LargeIndexPlan, log: (line: string) => void): Promise<LargeIndex> {
  mkdirSync(dir, { recursive: true });
  const file = largeIndexPath(dir, plan);
  if (existsSync(file)) {
    log(`large index: reusing ${file}`);
    return describe(file, plan, 0, true);
  }
  const started = Date.now();
  const building = `${file}.building`;
  for (const f of [building, `${building}-wal`, `${building}-shm`]) rmSync(f, { force: true });
  // Atrium's own migrations make the schema and the sites.
  const index = await openArchiveIndex({ engine: 'sqlite', path: building });
  const siteIds = [(await index.createSite(benchSite)).id];
  for (const extra of extraSites.slice(0, (plan.sites ?? 1) - 1)) siteIds.push((await index.createSite(extra)).id);
  const issuers = [benchSite.issuerOfPatientID, ...extraSites.map((s) => s.issuerOfPatientID)];
  await index.close();

  const db = new Database(building);
  db.pragma('journal_mode = OFF');
  db.pragma('synchronous = OFF');
  db.pragma('cache_size = -262144');
  db.pragma('foreign_keys = OFF');
  const now = new Date().toISOString();
  const insertPatient = db.prepare(`INSERT INTO patients (id, site_id, issuer, patient_id, patient_name, patient_name_folded, birth_date, sex, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const insertWord = db.prepare('INSERT OR IGNORE INTO patient_name_words (word, patient_id) VALUES (?, ?)');
  const insertStudy = db.prepare(`INSERT INTO studies (id, study_instance_uid, patient_id, site_id, study_date, study_time, accession_number, study_id,
    description, referring_physician_name, referring_physician_name_folded, institution_name, modalities_in_study, sop_classes_in_study,
    number_of_series, number_of_instances, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const insertSeries = db.prepare(`INSERT INTO series (id, series_instance_uid, study_id, modality, series_number, description, body_part,
    series_date, series_time, number_of_instances, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const insertInstance = db.prepare(`INSERT INTO instances (id, sop_instance_uid, series_id, sop_class_uid, instance_number, transfer_syntax_uid,
    number_of_frames, pixel_rows, pixel_columns, content_date, content_time, blob_key, size, sha256, layout_json, metadata_json, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const referringFolded = foldPersonName(referring);
  const sites = plan.sites ?? 1;

  for (let from = 0; from < plan.patients; from += 50_000) {
    db.transaction(() => {
      for (let p = from; p < Math.min(plan.patients, from + 50_000); p++) {
        const g = patientOf(p, sites);
        insertPatient.run(p + 1, siteIds[g.site], issuers[g.site], g.PatientID, g.name, foldPersonName(g.name), g.birthDate, g.sex, now);
        for (const word of personNameWords(g.name)) insertWord.run(word, p + 1);
      }
    })();
  }
  log(`large index: ${plan.patients} patients`);

  let seriesId = 0;
  let instanceId = 0;
  const batch = 5000;
  const studies = studiesOf(plan);
  for (let from = 0; from < plan.studies; from += batch) {
    db.transaction(() => {
      for (let s = from; s < Math.min(plan.studies, from + batch); s++) {
        const st = studies.next().value as StudyGen;
        insertStudy.run(st.id, st.uid, st.patientRow, siteIds[st.site], st.date, st.time, st.accession, st.studyId, st.description,
          referring, referringFolded, 'Hôpital Sainte-Thérèse', st.modalities, `\\${st.sopClass}\\`, 3, plan.instancesPerStudy, now, now);
        for (let se = 0; se < 3; se++) {
          seriesId++;
          const n = seriesCountOf(plan, se);
          insertSeries.run(seriesId, `${uidRoot}.${st.id}.${se + 1}`, st.id, se === 1 ? st.second : st.modality, se + 1,
            `Série ${se + 1}`, 'CHEST', st.date, st.time, n, now, now);
          for (let i = 0; i < n; i++) {
            instanceId++;
            const uid = `${uidRoot}.${st.id}.${se + 1}.${i + 1}`;
            insertInstance.run(instanceId, uid, seriesId, st.sopClass, i + 1, '1.2.840.10008.1.2.1', null, 512, 512, st.date, st.time,
              `bench/fake/${instanceId}`, 525000, fakeSha, layoutJson, metadataOf(st.sopClass, uid, st.modality, i + 1), now, now);
          }
        }
      }
    })();
    if ((from / batch) % 20 === 19) log(`large index: ${Math.min(plan.studies, from + batch)} studies`);
  }
  db.pragma('journal_mode = WAL');
  db.close();
  renameSync(building, file);
  const buildSeconds = (Date.now() - started) / 1000;
  log(`large index: built in ${buildSeconds.toFixed(1)} s`);
  return describe(file, plan, buildSeconds, false);
}

function metadataOf(sopClass: string, uid: string, modality: string, n: number): string {
  return `{"00080016":{"vr":"UI","Value":["${sopClass}"]},"00080018":{"vr":"UI","Value":["${uid}"]},`
    + `"00080060":{"vr":"CS","Value":["${modality}"]},"00200013":{"vr":"IS","Value":[${n}]},`
    + `"00280010":{"vr":"US","Value":[512]},"00280011":{"vr":"US","Value":[512]},"7FE00010":{"vr":"OW","BulkDataURI":"atrium:bulk/7FE00010"}}`;
}

/** This schema's tables only (a bare ANALYZE would walk every schema of the database). */
const analyzeTables = 'ANALYZE patients, patient_name_words, studies, series, instances';

/** The tables the generator fills. */
const bulkTables = ['patients', 'patient_name_words', 'studies', 'series', 'instances'];

/** A schema left complete by the generator carries this comment (no table of its own: the schema is the migrations' only). */
const doneComment = 'atrium bench large index: complete';

export function largeIndexSchema(plan: LargeIndexPlan): string {
  return `bench_large_${planKey(plan).replace(/[^a-z0-9]/g, '_')}`;
}

/**
 * The same rows in a PostgreSQL schema. Atrium's migrations make the schema first (so the
 * server finds it up to date); then the secondary indexes, unique and foreign-key constraints
 * of the five bulk tables are noted and dropped (primary keys stay: ids are loaded in order,
 * always at the right edge of their B-tree), the rows loaded, and the indexes and constraints
 * made again from their own definitions (same names, same definitions: `pg_get_indexdef`,
 * `pg_get_constraintdef`), with a large maintenance_work_mem for this session only. Patients
 * and studies come from the same generators as SQLite's (batches of unnest()); series and
 * instances are made by the server from the study rows (INSERT ... SELECT generate_series, by
 * ranges of the primary keys), the same values as the SQLite loop. The sequences are set past
 * the generated ids, so that ingest goes on from there; then VACUUM ANALYZE of the tables the
 * searches read and ANALYZE of instances (a settled archive, as autovacuum would leave it).
 */
export async function buildLargeIndexPostgres(url: string, plan: LargeIndexPlan, log: (line: string) => void): Promise<LargeIndex & { schema: string }> {
  const schema = largeIndexSchema(plan);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const exists = await client.query(`SELECT obj_description(oid, 'pg_namespace') AS c FROM pg_namespace WHERE nspname = $1`, [schema]);
    if (exists.rows[0]?.c === doneComment) {
      log(`large index: reusing PostgreSQL schema ${schema}`);
      // Migrations added since it was built (same rows), and the statistics they may ask for.
      await (await openArchiveIndex({ engine: 'postgres', url, schema })).close();
      await client.query(`SET search_path = ${schema}`);
      await client.query(analyzeTables);
      return { ...describe(`${url} schema ${schema}`, plan, 0, true), schema };
    }
    const started = Date.now();
    const step = (what: string, since: number): void => log(`large index: ${what} (${((Date.now() - since) / 1000).toFixed(1)} s)`);
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    const index = await openArchiveIndex({ engine: 'postgres', url, schema });
    const siteIds = [(await index.createSite(benchSite)).id];
    for (const extra of extraSites.slice(0, (plan.sites ?? 1) - 1)) siteIds.push((await index.createSite(extra)).id);
    const issuers = [benchSite.issuerOfPatientID, ...extraSites.map((s) => s.issuerOfPatientID)];
    await index.close();
    await client.query(`SET search_path = ${schema}`);
    await client.query('SET synchronous_commit = off');
    await client.query(`SET maintenance_work_mem = '1GB'`);
    await client.query(`SET work_mem = '256MB'`);

    // What the migrations made on the bulk tables besides primary keys, to be made again after the load.
    const indexes = (await client.query<{ name: string; def: string }>(`SELECT i.indexname AS name, i.indexdef AS def FROM pg_indexes i
      WHERE i.schemaname = $1 AND i.tablename = ANY($2) AND NOT EXISTS (
        SELECT 1 FROM pg_constraint c WHERE c.conindid = format('%I.%I', i.schemaname, i.indexname)::regclass AND c.conrelid = format('%I.%I', i.schemaname, i.tablename)::regclass)
      ORDER BY i.indexname`, [schema, bulkTables])).rows;
    const constraints = (await client.query<{ tbl: string; name: string; type: string; def: string }>(`SELECT t.relname AS tbl, c.conname AS name, c.contype AS type,
        pg_get_constraintdef(c.oid) AS def
      FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = $1 AND t.relname = ANY($2) AND c.contype IN ('u', 'f') ORDER BY c.contype DESC, c.oid`, [schema, bulkTables])).rows;
    for (const c of [...constraints].reverse()) await client.query(`ALTER TABLE ${c.tbl} DROP CONSTRAINT ${c.name}`);
    for (const i of indexes) await client.query(`DROP INDEX ${i.name}`);
    log(`large index: ${indexes.length} indexes and ${constraints.length} constraints set aside for the load`);

    const now = new Date().toISOString();
    const sites = plan.sites ?? 1;
    let since = Date.now();
    for (let from = 0; from < plan.patients; from += 20_000) {
      const cols: unknown[][] = [[], [], [], [], [], [], [], []];
      const words: [number[], string[]] = [[], []];
      for (let p = from; p < Math.min(plan.patients, from + 20_000); p++) {
        const g = patientOf(p, sites);
        [p + 1, siteIds[g.site], issuers[g.site], g.PatientID, g.name, foldPersonName(g.name), g.birthDate, g.sex].forEach((v, i) => cols[i]!.push(v));
        for (const w of personNameWords(g.name)) { words[0].push(p + 1); words[1].push(w); }
      }
      await client.query(`INSERT INTO patients (id, site_id, issuer, patient_id, patient_name, patient_name_folded, birth_date, sex, updated_at)
        SELECT id, site, issuer, pid, name, folded, birth, sex, $9 FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
          AS t(id, site, issuer, pid, name, folded, birth, sex)`, [...cols, now]);
      await client.query(`INSERT INTO patient_name_words (word, patient_id) SELECT w, p FROM unnest($1::bigint[], $2::text[]) AS t(p, w) ON CONFLICT DO NOTHING`, words);
    }
    step(`${plan.patients} patients`, since);
    since = Date.now();
    const referringFolded = foldPersonName(referring);
    const studies = studiesOf(plan);
    const ips = plan.instancesPerStudy;
    const base = Math.floor(ips / 3);
    for (let from = 0; from < plan.studies; from += 20_000) {
      const cols: unknown[][] = [[], [], [], [], [], [], [], [], [], [], []];
      const to = Math.min(plan.studies, from + 20_000);
      for (let s = from; s < to; s++) {
        const st = studies.next().value as StudyGen;
        [st.id, st.uid, st.patientRow, siteIds[st.site], st.date, st.time, st.accession, st.studyId, st.description, st.modalities, `\\${st.sopClass}\\`]
          .forEach((v, i) => cols[i]!.push(v));
      }
      await client.query(`INSERT INTO studies (id, study_instance_uid, patient_id, site_id, study_date, study_time, accession_number, study_id,
          description, referring_physician_name, referring_physician_name_folded, institution_name, modalities_in_study, sop_classes_in_study,
          number_of_series, number_of_instances, created_at, updated_at)
        SELECT id, uid, pat, site, d, t, acc, sid, descr, $12, $13, 'Hôpital Sainte-Thérèse', mods, sops, 3, $14, $15, $15
          FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
          AS t(id, uid, pat, site, d, t, acc, sid, descr, mods, sops)`, [...cols, referring, referringFolded, ips, now]);
    }
    step(`${plan.studies} studies`, since);
    // Ranges of studies; series ids are (study id - 1) * 3 + n, so a range of studies is a range of series too.
    const chunk = 100_000;
    since = Date.now();
    for (let from = 0; from < plan.studies; from += chunk) {
      const to = Math.min(plan.studies, from + chunk);
      // Series 2 carries the study's second modality (split_part 3 of "\PT\CT\"), the others its first.
      await client.query(`INSERT INTO series (id, series_instance_uid, study_id, modality, series_number, description, body_part,
          series_date, series_time, number_of_instances, created_at, updated_at)
        SELECT (s.id - 1) * 3 + n, s.study_instance_uid || '.' || n, s.id,
          CASE WHEN n = 2 AND split_part(s.modalities_in_study, '\\', 3) <> '' THEN split_part(s.modalities_in_study, '\\', 3) ELSE split_part(s.modalities_in_study, '\\', 2) END,
          n, 'Série ' || n, 'CHEST', s.study_date, s.study_time, CASE WHEN n < 3 THEN $3::int ELSE $4::int END, $5, $5
        FROM studies s CROSS JOIN generate_series(1, 3) AS n WHERE s.id BETWEEN $1 AND $2 ORDER BY s.id, n`, [from + 1, to, base, ips - 2 * base, now]);
    }
    step(`${plan.studies * 3} series`, since);
    since = Date.now();
    for (let from = 0; from < plan.studies; from += chunk) {
      const to = Math.min(plan.studies, from + chunk);
      await client.query(`INSERT INTO instances (id, sop_instance_uid, series_id, sop_class_uid, instance_number, transfer_syntax_uid,
          number_of_frames, pixel_rows, pixel_columns, content_date, content_time, blob_key, size, sha256, layout_json, metadata_json, created_at, updated_at)
        SELECT x.id, x.uid, x.series_id, x.sop, x.i, '1.2.840.10008.1.2.1', NULL, 512, 512, x.d, x.t, 'bench/fake/' || x.id, 525000, $4, $5,
          '{"00080016":{"vr":"UI","Value":["' || x.sop || '"]},"00080018":{"vr":"UI","Value":["' || x.uid || '"]},'
          || '"00080060":{"vr":"CS","Value":["' || x.modality || '"]},"00200013":{"vr":"IS","Value":[' || x.i || ']},'
          || '"00280010":{"vr":"US","Value":[512]},"00280011":{"vr":"US","Value":[512]},"7FE00010":{"vr":"OW","BulkDataURI":"atrium:bulk/7FE00010"}}',
          $6, $6
        FROM (SELECT (s.id - 1) * $3::int + (se.series_number - 1) * $7::int + i AS id, se.series_instance_uid || '.' || i AS uid, se.id AS series_id,
                trim(both '\\' from s.sop_classes_in_study) AS sop, i, s.study_date AS d, s.study_time AS t, split_part(s.modalities_in_study, '\\', 2) AS modality
              FROM studies s JOIN series se ON se.study_id = s.id
                CROSS JOIN LATERAL generate_series(1, se.number_of_instances) AS i
              WHERE s.id BETWEEN $1::bigint AND $2::bigint AND se.id BETWEEN $1::bigint * 3 - 2 AND $2::bigint * 3) x ORDER BY x.id`, [from + 1, to, ips, fakeSha, layoutJson, now, base]);
      log(`large index: instances of ${to} studies (${((Date.now() - since) / 1000).toFixed(0)} s)`);
    }
    step(`${plan.studies * ips} instances`, since);
    since = Date.now();
    for (const i of indexes) {
      const t = Date.now();
      await client.query(i.def);
      step(`index ${i.name}`, t);
    }
    for (const c of constraints) {
      const t = Date.now();
      await client.query(`ALTER TABLE ${c.tbl} ADD CONSTRAINT ${c.name} ${c.def}`);
      step(`constraint ${c.name}`, t);
    }
    step('indexes and constraints made again', since);
    for (const table of ['patients', 'studies', 'series', 'instances']) {
      await client.query(`SELECT setval(pg_get_serial_sequence('${table}', 'id'), (SELECT MAX(id) FROM ${table}))`);
    }
    since = Date.now();
    await client.query('VACUUM (ANALYZE) patients, patient_name_words, studies, series');
    await client.query('ANALYZE instances');
    step('VACUUM ANALYZE', since);
    await client.query(`COMMENT ON SCHEMA ${schema} IS '${doneComment}'`);
    const buildSeconds = (Date.now() - started) / 1000;
    log(`large index: PostgreSQL schema ${schema} built in ${buildSeconds.toFixed(1)} s`);
    return { ...describe(`${url} schema ${schema}`, plan, buildSeconds, false), schema };
  } finally {
    await client.end();
  }
}

// ---- The benchmark (npm run bench:index) -----------------------------------------------------

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(benchDir, '..');
const maxPduLength = 131072;
const login = 'bench.index';
const password = 'bench-index-password-1';

function log(line: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

function argOf(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

export type Engine = 'sqlite' | 'postgres';

export interface EngineIndex {
  engine: Engine;
  index: LargeIndex;
  /** How Atrium is pointed at it. */
  atrium: { indexPath?: string; postgres?: { url: string; schema: string } };
  drop(): Promise<void>;
}

interface SearchCase {
  name: string;
  api: 'qido' | 'patients';
  queries: string[];
  /** The same search as the server runs it, for EXPLAIN: QIDO query string or /api/patients parameters. */
}

export function searchCases(index: LargeIndex): SearchCase[] {
  const months: string[] = [];
  for (let y = 2015; y <= 2025; y++) for (let m = 1; m <= 12; m++) months.push(`${y}${pad(m, 2)}`);
  const shuffled = months.map((m, i) => [m, (i * 7919) % months.length] as const).sort((a, b) => a[1] - b[1]).map(([m]) => m);
  const modalities = ['CT', 'MR', 'US', 'CR', 'DX', 'MG'];
  const e = encodeURIComponent;
  return [
    { name: 'QIDO PatientName prefix', api: 'qido', queries: index.familyPrefixes.map((p) => `PatientName=${p}*&limit=100`) },
    { name: 'QIDO PatientName + PatientBirthDate', api: 'qido', queries: index.nameAndBirthDate.map((x) => `PatientName=${e(x.family)}*&PatientBirthDate=${x.birthDate}&limit=100`) },
    { name: 'QIDO PatientID', api: 'qido', queries: index.samplePatientIDs.map((id) => `PatientID=${id}&limit=100`) },
    { name: 'QIDO StudyDate (1 month) + ModalitiesInStudy', api: 'qido', queries: shuffled.map((m, i) => `StudyDate=${m}01-${m}28&ModalitiesInStudy=${modalities[i % modalities.length]}&limit=100`) },
    { name: 'QIDO AccessionNumber', api: 'qido', queries: index.accessionNumbers.map((a) => `AccessionNumber=${a}&limit=100`) },
    { name: 'QIDO the site\'s recent studies (pages of 50)', api: 'qido', queries: Array.from({ length: 10 }, (_, i) => `limit=50&offset=${i * 50}`) },
    { name: 'API patients: name prefix', api: 'patients', queries: index.familyPrefixes.map((p) => `name=${p.toLowerCase()}`) },
    { name: 'API patients: name + birth date', api: 'patients', queries: index.nameAndBirthDate.map((x) => `name=${e(x.family)}&birthDate=${x.birthDate}`) },
    { name: 'API patients: PatientID', api: 'patients', queries: index.samplePatientIDs.map((id) => `PatientID=${id}`) },
  ];
}

interface CaseRound { p50: number; p95: number; max: number; n: number; medianResults: number; errors: number }

async function addUser(dataDir: string): Promise<void> {
  const child = spawn(process.execPath, [path.join(process.env.BENCH_ATRIUM_ROOT ?? repoRoot, 'bin/atrium.mjs'), 'user', 'add', login, '--name', 'Dr Index', '--role', 'radiologist', '--site', 'BENCH', '--password-stdin', '--config', path.join(dataDir, 'atrium.bench.yaml')], { cwd: repoRoot, stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdin.end(`${password}\n`);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0 && !/exists|taken/i.test(stderr)) throw new Error(`atrium user add: exit ${code}: ${stderr}`);
}

async function sessionCookie(base: string): Promise<string> {
  const r = await fetch(`${base}/auth/local`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login, password }), signal: AbortSignal.timeout(120_000) });
  if (r.status !== 200) throw new Error(`local login: ${r.status} ${await r.text()}`);
  const cookie = r.headers.getSetCookie().map((c) => c.split(';')[0]!).find((c) => c.startsWith('atrium_session='));
  if (!cookie) throw new Error('local login: no session cookie');
  return cookie;
}

interface SearchServer { engine: Engine; server: RunningServer; dir: string; base: string; cookie: string }

async function runCase(s: SearchServer, c: SearchCase, repetitions: number): Promise<CaseRound> {
  const once = async (q: string): Promise<{ ms: number; count: number; ok: boolean }> => {
    const started = nowMs();
    const url = c.api === 'qido' ? `${s.base}/dicom-web/studies?${q}` : `${s.base}/api/patients?${q}`;
    const headers: Record<string, string> = c.api === 'qido'
      ? { ...(s.server.target.headers as Record<string, string>), accept: 'application/dicom+json' }
      : { cookie: s.cookie, accept: 'application/json' };
    const r = await fetch(url, { headers, signal: AbortSignal.timeout(60_000) });
    const text = await r.text();
    const ms = nowMs() - started;
    if (r.status !== 200 && r.status !== 204) return { ms, count: 0, ok: false };
    const body = text.trim() === '' ? [] : JSON.parse(text) as unknown[] | { patients: unknown[] };
    return { ms, count: Array.isArray(body) ? body.length : body.patients.length, ok: true };
  };
  for (let i = 0; i < Math.min(10, c.queries.length); i++) await once(c.queries[i]!);
  const times: number[] = [];
  const counts: number[] = [];
  let errors = 0;
  for (let i = 0; i < repetitions; i++) {
    const r = await once(c.queries[i % c.queries.length]!);
    times.push(r.ms);
    counts.push(r.count);
    if (!r.ok) errors++;
  }
  return { p50: percentile(times, 50), p95: percentile(times, 95), max: Math.max(...times), n: times.length, medianResults: median(counts), errors };
}

/** The SQL the server runs for each case, and its plan (EXPLAIN QUERY PLAN / EXPLAIN ANALYZE). */
export async function explainCases(engine: Engine, ix: EngineIndex, cases: SearchCase[]): Promise<Array<{ name: string; sql: string; plan: string }>> {
  const index: ArchiveIndex = await openArchiveIndex(engine === 'sqlite'
    ? { engine: 'sqlite', path: ix.atrium.indexPath! }
    : { engine: 'postgres', url: ix.atrium.postgres!.url, schema: ix.atrium.postgres!.schema });
  try {
    const bench = (await index.getSiteByCode(benchSite.code))!;
    const siteById = new Map([[bench.id, bench]]);
    const scope: AccessScope = { all: false, siteIds: [bench.id], studies: new Map(), patients: new Map() };
    const restriction = scopeCondition(scope);
    const out: Array<{ name: string; sql: string; plan: string }> = [];
    const sql = index.sql as unknown as { all: (text: string, params?: unknown[]) => Promise<unknown[]> };
    const original = sql.all.bind(sql);
    for (const c of cases) {
      const captured: Array<{ text: string; params: unknown[] }> = [];
      sql.all = async (text, params = []) => { captured.push({ text, params }); return original(text, params); };
      try {
        const params = new URLSearchParams(c.queries[0]!);
        if (c.api === 'qido') {
          const { query } = parseQidoQuery('study', params);
          query.matches = personMatches(query.matches);
          query.restriction = restriction;
          await index.searchStudies(query);
        } else {
          const name = params.get('name');
          const birthDate = params.get('birthDate');
          const PatientID = params.get('PatientID');
          await findPatientRecords(index, siteById, { ...(name ? { name } : {}), ...(birthDate ? { PatientBirthDate: birthDate } : {}), ...(PatientID ? { PatientID } : {}) }, restriction, 101, 0);
        }
      } finally {
        sql.all = original;
      }
      const first = captured[0]!;
      const rows = await original(engine === 'sqlite' ? `EXPLAIN QUERY PLAN ${first.text}` : `EXPLAIN (ANALYZE, COSTS OFF, SUMMARY ON) ${first.text}`, first.params) as Array<Record<string, unknown>>;
      const plan = engine === 'sqlite'
        ? rows.map((r) => String(r.detail)).join('\n')
        : rows.map((r) => String(r['QUERY PLAN'])).join('\n');
      out.push({ name: c.name, sql: first.text.replace(/\s+/g, ' '), plan });
    }
    return out;
  } finally {
    await index.close();
  }
}

async function startSearchServer(ix: EngineIndex): Promise<SearchServer> {
  const dir = makeTempDir(`bench-index-${ix.engine}-`);
  const server = await startAtrium(dir, { ...ix.atrium, httpSessions: true });
  await addUser(dir);
  const base = server.target.dicomweb.replace(/\/dicom-web$/, '');
  return { engine: ix.engine, server, dir, base, cookie: await sessionCookie(base) };
}

interface RetentionProbe {
  engine: Engine;
  /** Seconds from the server's start to the evaluation's first and last statement seen (PostgreSQL: pg_stat_activity). */
  evaluation?: { from: number; to: number };
  outside: { n: number; p50: number; p95: number; max: number };
  during: { n: number; p50: number; p95: number; max: number };
  errors: number;
}

/**
 * A server on the large index through its first retention evaluation (a minute after start,
 * src/archive/lifecycle.ts): a PatientID search every 250 ms, and on PostgreSQL the
 * evaluation's batches seen in pg_stat_activity (the last statement of each connection).
 */
async function retentionProbe(ix: EngineIndex, seconds: number, pgUrl: string | undefined): Promise<RetentionProbe> {
  const t0 = nowMs();
  const s = await startSearchServer(ix);
  const watcher = ix.engine === 'postgres' ? new pg.Client({ connectionString: pgUrl }) : undefined;
  await watcher?.connect();
  const samples: Array<{ t: number; ms: number; ok: boolean }> = [];
  let first: number | undefined;
  let last: number | undefined;
  try {
    const ids = ix.index.samplePatientIDs;
    for (let i = 0; (nowMs() - t0) / 1000 < seconds && !(last !== undefined && (nowMs() - t0) / 1000 > last + 15); i++) {
      const started = nowMs();
      let ok = false;
      try {
        const r = await fetch(`${s.base}/dicom-web/studies?PatientID=${ids[i % ids.length]}`, {
          headers: { ...(s.server.target.headers as Record<string, string>), accept: 'application/dicom+json' }, signal: AbortSignal.timeout(10_000) });
        await r.text();
        ok = r.status === 200;
      } catch { /* a timeout counts as an error */ }
      samples.push({ t: (started - t0) / 1000, ms: nowMs() - started, ok });
      if (watcher) {
        const r = await watcher.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
          AND (query LIKE '%FROM studies WHERE id > $% ORDER BY id LIMIT%' OR query LIKE 'SELECT id, birth_date FROM patients WHERE id IN%'
            OR query LIKE 'SELECT patient_id, person_id FROM patient_identities WHERE patient_id IN%') AND query_start > now() - interval '1 second'`);
        if (Number(r.rows[0]!.n) > 0) { first ??= (nowMs() - t0) / 1000; last = (nowMs() - t0) / 1000; }
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } finally {
    await watcher?.end();
    await s.server.stop();
    removeTempDir(s.dir);
  }
  const stats = (xs: number[]) => ({ n: xs.length, p50: xs.length ? percentile(xs, 50) : 0, p95: xs.length ? percentile(xs, 95) : 0, max: xs.length ? Math.max(...xs) : 0 });
  const inWindow = (t: number) => first !== undefined && t >= first - 1 && t <= last! + 1;
  return {
    engine: ix.engine, ...(first !== undefined ? { evaluation: { from: first, to: last! } } : {}),
    outside: stats(samples.filter((x) => !inWindow(x.t)).map((x) => x.ms)),
    during: stats(samples.filter((x) => inWindow(x.t)).map((x) => x.ms)),
    errors: samples.filter((x) => !x.ok).length,
  };
}

interface IngestRun { run: number; engine: Engine; target: 'empty' | 'large'; ms: number; instancesPerSecond: number; failed: number; error?: string }

async function ingestOnce(ix: EngineIndex, target: 'empty' | 'large', folders: string[], instances: number, run: number, pgUrl: string | undefined): Promise<IngestRun> {
  const dir = makeTempDir(`bench-index-store-${ix.engine}-`);
  const port = await freePort();
  const emptySchema = `bench_index_empty_${process.pid}_${run}`;
  const where = target === 'large' ? ix.atrium
    : ix.engine === 'postgres' ? { postgres: { url: pgUrl!, schema: emptySchema } } : {};
  const server = await startAtrium(dir, { ...where, dimse: { port, aeTitle: 'ATRIUM', maxPduLength }, peers: [{ aeTitle: CallingAE.store }] });
  try {
    const dimse = { name: 'Atrium', host: '127.0.0.1', port, aeTitle: 'ATRIUM' };
    if (!(await waitForEcho(dimse, 60_000))) throw new Error('no C-ECHO answer');
    const r = await storeFolders(dimse, folders, maxPduLength);
    return { run, engine: ix.engine, target, ms: r.ms, instancesPerSecond: instances / (r.ms / 1000), failed: r.failed, ...(r.error ? { error: r.error } : {}) };
  } finally {
    await server.stop();
    removeTempDir(dir);
    if (target === 'empty' && ix.engine === 'postgres') {
      const client = new pg.Client({ connectionString: pgUrl });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${emptySchema} CASCADE`);
      await client.end();
    }
  }
}

function spread(values: number[], digits = 1): string {
  return `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`;
}

async function main(): Promise<void> {
  const studies = Number(argOf('studies', '100000'));
  const engines = argOf('engines', 'sqlite,postgres').split(',') as Engine[];
  const runs = Number(argOf('runs', '3'));
  const repetitions = Number(argOf('repetitions', '200'));
  const ingestSeries = Number(argOf('ingest-studies', '20'));
  const ingestSlices = Number(argOf('ingest-slices', '20'));
  const skipIngest = process.argv.includes('--no-ingest');
  const skipSearch = process.argv.includes('--no-search');
  // --retention-probe SECONDS: a server on each index through its first retention evaluation.
  const probeSeconds = Number(argOf('retention-probe', '0'));
  const plan: LargeIndexPlan = { studies, instancesPerStudy: 10, patients: Math.round(studies * 0.4), sites: 4 };
  const dir = process.env.BENCH_INDEX_DIR ?? '/tmp/atrium-large-index';
  const pgUrl = process.env.DATABASE_URL;
  if (engines.includes('postgres') && !pgUrl) throw new Error('DATABASE_URL is needed for the PostgreSQL index');
  const date = new Date().toISOString();
  const loads: number[] = [];
  const sampler = setInterval(() => loads.push(loadavg()[0]!), 5000);
  sampler.unref();

  // Generation at the lowest priority (the machine is shared); measurement at the normal one.
  const { setPriority } = await import('node:os');
  const indexes: EngineIndex[] = [];
  for (const engine of engines) {
    setPriority(19);
    log(`${engine}: ${plan.studies} studies, ${plan.studies * plan.instancesPerStudy} instances, ${plan.patients} patients, ${plan.sites} sites`);
    if (engine === 'sqlite') {
      const index = await buildLargeIndex(dir, plan, log);
      indexes.push({ engine, index, atrium: { indexPath: index.path }, async drop() { for (const s of ['', '-wal', '-shm']) rmSync(`${index.path}${s}`, { force: true }); } });
    } else {
      const index = await buildLargeIndexPostgres(pgUrl!, plan, log);
      indexes.push({
        engine, index, atrium: { postgres: { url: pgUrl!, schema: index.schema } },
        async drop() {
          const client = new pg.Client({ connectionString: pgUrl });
          await client.connect();
          await client.query(`DROP SCHEMA IF EXISTS ${index.schema} CASCADE`);
          await client.end();
        },
      });
    }
    setPriority(0);
  }

  // --cases a,b: only the searches whose name contains one of these (case-insensitive).
  const only = argOf('cases', '').toLowerCase().split(',').filter((x) => x !== '');
  const cases = searchCases(indexes[0]!.index).filter((c) => !only.length || only.some((x) => c.name.toLowerCase().includes(x)));
  const searchRounds = new Map<string, CaseRound[]>();
  const plans: Record<string, Array<{ name: string; sql: string; plan: string }>> = {};
  if (!skipSearch) {
    const servers: SearchServer[] = [];
    try {
      for (const ix of indexes) servers.push(await startSearchServer(ix));
      for (let round = 0; round < runs; round++) {
        const order = round % 2 === 0 ? servers : [...servers].reverse();
        for (const s of order) {
          for (const c of cases) {
            const r = await runCase(s, c, repetitions);
            const key = `${s.engine}|${c.name}`;
            searchRounds.set(key, [...(searchRounds.get(key) ?? []), r]);
            log(`round ${round + 1} ${s.engine} ${c.name}: p50 ${r.p50.toFixed(1)} ms, p95 ${r.p95.toFixed(1)} ms, ${r.medianResults} results${r.errors ? `, ${r.errors} errors` : ''}`);
          }
        }
      }
    } finally {
      for (const s of servers) { await s.server.stop(); removeTempDir(s.dir); }
    }
    for (const ix of indexes) {
      plans[ix.engine] = await explainCases(ix.engine, ix, cases);
      for (const p of plans[ix.engine]!) log(`plan ${ix.engine} ${p.name}:\n  ${p.plan.replace(/\n/g, '\n  ')}`);
    }
  }

  const probes: RetentionProbe[] = [];
  for (const ix of probeSeconds > 0 ? indexes : []) {
    const r = await retentionProbe(ix, probeSeconds, pgUrl);
    probes.push(r);
    log(`retention probe ${ix.engine}: evaluation ${r.evaluation ? `${r.evaluation.from.toFixed(0)}–${r.evaluation.to.toFixed(0)} s after start` : 'not seen'}; `
      + `PatientID search outside p50 ${r.outside.p50.toFixed(1)} / p95 ${r.outside.p95.toFixed(1)} / max ${r.outside.max.toFixed(1)} ms (${r.outside.n}), `
      + `during p50 ${r.during.p50.toFixed(1)} / p95 ${r.during.p95.toFixed(1)} / max ${r.during.max.toFixed(1)} ms (${r.during.n}), ${r.errors} errors`);
  }

  const ingest: IngestRun[] = [];
  let corpusInfo = '';
  if (!skipIngest) {
    for (let run = 0; run < runs; run++) {
      const corpus = generateCtCorpus(path.join(dir, `corpus-${run}`), 1400 + run, { series: ingestSeries, slicesPerSeries: ingestSlices, folders: 1 }, log);
      corpusInfo = `${corpus.instances} CT instances 512x512x16 (${(corpus.bytes / 1e6).toFixed(0)} MB) in ${ingestSeries} studies a run, new UIDs each run`;
      for (const ix of indexes) {
        const order: Array<'empty' | 'large'> = run % 2 === 0 ? ['empty', 'large'] : ['large', 'empty'];
        for (const target of order) {
          const r = await ingestOnce(ix, target, corpus.folders, corpus.instances, run, pgUrl);
          ingest.push(r);
          log(`ingest run ${run + 1} ${ix.engine} ${target}: ${r.instancesPerSecond.toFixed(1)} instances/s${r.failed ? `, ${r.failed} failed` : ''}${r.error ? ` (${r.error.slice(0, 200)})` : ''}`);
        }
      }
      rmSync(path.join(dir, `corpus-${run}`), { recursive: true, force: true });
    }
  }

  const lines: string[] = [
    `### Large index, ${plan.studies.toLocaleString('en')} studies (${date.slice(0, 16).replace('T', ' ')} UTC)`, '',
    `${plan.studies.toLocaleString('en')} studies, ${(plan.studies * 3).toLocaleString('en')} series, ${(plan.studies * plan.instancesPerStudy).toLocaleString('en')} instances, ` +
      `${plan.patients.toLocaleString('en')} patients on ${plan.sites} sites (BENCH 40%); generation: ${indexes.map((i) => `${i.engine} ${i.index.reused ? 'reused' : `${i.index.buildSeconds.toFixed(0)} s`}`).join(', ')} (nice 19). ` +
      `Load average (1 min) during the run: ${loads.length ? `${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}` : 'n/a'}; machine loaded by other work.`, '',
  ];
  if (!skipSearch) {
    lines.push(`Searches: ${repetitions} requests a case and round, ${runs} rounds alternating the engines; median over rounds (min–max), ms.`, '',
      `| search | ${engines.map((e) => `${e} p50 | ${e} p95 | ${e} results`).join(' | ')} |`, `|---|${engines.map(() => '---|---|---|').join('')}`);
    for (const c of cases) {
      lines.push(`| ${c.name} | ${engines.map((e) => {
        const rs = searchRounds.get(`${e}|${c.name}`) ?? [];
        if (!rs.length) return ' | | ';
        return `${spread(rs.map((r) => r.p50))} | ${spread(rs.map((r) => r.p95))} | ${median(rs.map((r) => r.medianResults))}${rs.some((r) => r.errors) ? ' (errors)' : ''}`;
      }).join(' | ')} |`);
    }
    lines.push('');
  }
  if (!skipIngest) {
    lines.push(`C-STORE ingest (storescu, one association, TCP_NODELAY=1): ${corpusInfo}; ${runs} runs, empty and large in alternated order; instances/s, median (min–max).`, '',
      '| engine | empty index | large index | large/empty | runs (empty/large) |', '|---|---|---|---|---|');
    for (const e of engines) {
      const empty = ingest.filter((r) => r.engine === e && r.target === 'empty').map((r) => r.instancesPerSecond);
      const large = ingest.filter((r) => r.engine === e && r.target === 'large').map((r) => r.instancesPerSecond);
      if (!empty.length) continue;
      lines.push(`| ${e} | ${spread(empty)} | ${spread(large)} | ${(median(large) / median(empty)).toFixed(2)} | ${empty.map((x, i) => `${x.toFixed(0)}/${large[i]?.toFixed(0)}`).join(', ')} |`);
    }
    lines.push('');
  }
  if (probes.length) {
    lines.push('Retention evaluation (the first, a minute after start): a PatientID search every 250 ms; ms.', '',
      '| engine | evaluation (s after start) | outside p50 / p95 / max (n) | during p50 / p95 / max (n) | errors |', '|---|---|---|---|---|');
    for (const r of probes) {
      const f = (x: RetentionProbe['outside']) => `${x.p50.toFixed(1)} / ${x.p95.toFixed(1)} / ${x.max.toFixed(1)} (${x.n})`;
      lines.push(`| ${r.engine} | ${r.evaluation ? `${r.evaluation.from.toFixed(0)}–${r.evaluation.to.toFixed(0)}` : 'not seen'} | ${f(r.outside)} | ${f(r.during)} | ${r.errors} |`);
    }
    lines.push('');
  }
  const md = lines.join('\n');
  mkdirSync(path.join(benchDir, 'out'), { recursive: true });
  writeFileSync(path.join(benchDir, 'out', 'large-index-latest.md'), `${md}\n`);
  writeFileSync(path.join(benchDir, 'out', 'large-index-latest.json'), `${JSON.stringify({ date, plan, searchRounds: Object.fromEntries(searchRounds), plans, ingest, probes, loads }, null, 1)}\n`);
  process.stdout.write(`${md}\n`);
  if (process.env.BENCH_INDEX_KEEP !== '1') for (const ix of indexes) await ix.drop();
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(() => process.exit(0), (e: unknown) => {
    log(`failed: ${(e as Error).stack ?? String(e)}`);
    process.exit(1);
  });
}
