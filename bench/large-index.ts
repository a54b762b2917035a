import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { foldPersonName } from '../src/dicom/person-name.ts';
import { openArchiveIndex } from '../src/index/archive-index.ts';
import { indexMigrations, personNameWords } from '../src/index/migrations.ts';
import { benchSite } from './atrium.ts';
import { frenchGivenNames, prng, SOPClass } from './corpus.ts';

/**
 * A large index for QIDO-RS timing, filled straight into SQLite: ingesting a million
 * objects over HTTP would take hours, and search speed depends only on the rows.
 * The schema is made by Atrium's own migrations; the rows look like what ingest writes
 * (folded names, name words, "\"-delimited modalities, counts).
 */

export interface LargeIndexPlan {
  studies: number;
  instancesPerStudy: number;
  patients: number;
}

export interface LargeIndex {
  path: string;
  plan: LargeIndexPlan;
  instances: number;
  series: number;
  /** Values that exist in the index, for the searches. */
  samplePatientIDs: string[];
  familyPrefixes: string[];
  givenNames: string[];
  buildSeconds: number;
  reused: boolean;
}

/** Bump when the generated rows change. */
const largeIndexVersion = 1;

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

export function largeIndexPath(dir: string, plan: LargeIndexPlan): string {
  return path.join(dir, `large-index-v${largeIndexVersion}-m${indexMigrations.length}-${plan.studies}s-${plan.instancesPerStudy}i-${plan.patients}p.sqlite`);
}

function describe(file: string, plan: LargeIndexPlan, buildSeconds: number, reused: boolean): LargeIndex {
  const random = prng(4242);
  const samplePatientIDs = Array.from({ length: 200 }, () => `LP${pad(Math.floor(random() * plan.patients), 7)}`);
  return {
    path: file, plan, buildSeconds, reused,
    instances: plan.studies * plan.instancesPerStudy,
    series: plan.studies * 3,
    samplePatientIDs,
    familyPrefixes: ['DUP', 'LEF', 'BEN', 'MAR', 'ROC', 'CHE', 'FON', 'GIR', 'MER', 'THO', 'VIL', 'BOU', 'LAM', 'GAU', 'SEB'],
    givenNames: frenchGivenNames.map((g) => foldPersonName(g)),
  };
}

/** Builds (or reuses) the large index file in `dir`. */
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
  // Atrium's own migrations make the schema and the site.
  const index = await openArchiveIndex({ engine: 'sqlite', path: building });
  const site = await index.createSite(benchSite);
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

  const random = prng(1789);
  const referring = 'Lévêque^Étienne';
  const referringFolded = foldPersonName(referring);
  const layout = JSON.stringify({ datasetOffset: 132, littleEndian: true, explicitVR: true, pixelData: { range: { offset: 1200, length: 524288 } }, bulk: {} });
  const fakeSha = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
  const uidRoot = '2.25.1789';

  db.transaction(() => {
    for (let p = 0; p < plan.patients; p++) {
      const name = `${familyName(Math.floor(random() * 4000))}^${frenchGivenNames[Math.floor(random() * frenchGivenNames.length)]!}`;
      const id = p + 1;
      insertPatient.run(id, site.id, benchSite.issuerOfPatientID, `LP${pad(p, 7)}`, name, foldPersonName(name),
        dateOfDay(-Math.floor(random() * 30000)), random() < 0.5 ? 'F' : 'M', now);
      for (const word of personNameWords(name)) insertWord.run(word, id);
    }
  })();
  log(`large index: ${plan.patients} patients`);

  let seriesId = 0;
  let instanceId = 0;
  const batch = 5000;
  for (let from = 0; from < plan.studies; from += batch) {
    db.transaction(() => {
      for (let s = from; s < Math.min(plan.studies, from + batch); s++) {
        const studyId = s + 1;
        const [modality, sopClass] = pickModality(random());
        const date = dateOfDay(Math.floor(random() * 4018));
        const time = `${pad(7 + Math.floor(random() * 12), 2)}${pad(Math.floor(random() * 60), 2)}${pad(Math.floor(random() * 60), 2)}`;
        const seriesCount = 3;
        // A few studies mix modalities (a CT with a PT, an MG with a US), as ModalitiesInStudy has to find them.
        const second = modality === 'PT' ? 'CT' : modality === 'MG' && random() < 0.5 ? 'US' : modality;
        const modalities = second === modality ? `\\${modality}\\` : `\\${modality}\\${second}\\`;
        // Every patient has at least one study; the rest are spread at random.
        const patientId = 1 + (s < plan.patients ? s : Math.floor(random() * plan.patients));
        insertStudy.run(studyId, `${uidRoot}.${studyId}`, patientId, site.id, date, time,
          `A${pad(studyId, 9)}`, String(studyId % 100000), `Examen ${modality}`, referring, referringFolded, 'Hôpital Sainte-Thérèse',
          modalities, `\\${sopClass}\\`, seriesCount, plan.instancesPerStudy, now, now);
        let left = plan.instancesPerStudy;
        for (let se = 0; se < seriesCount; se++) {
          seriesId++;
          const n = se === seriesCount - 1 ? left : Math.floor(plan.instancesPerStudy / seriesCount);
          left -= n;
          insertSeries.run(seriesId, `${uidRoot}.${studyId}.${se + 1}`, studyId, se === 1 ? second : modality, se + 1,
            `Série ${se + 1}`, 'CHEST', date, time, n, now, now);
          for (let i = 0; i < n; i++) {
            instanceId++;
            const uid = `${uidRoot}.${studyId}.${se + 1}.${i + 1}`;
            const metadata = `{"00080016":{"vr":"UI","Value":["${sopClass}"]},"00080018":{"vr":"UI","Value":["${uid}"]},`
              + `"00080060":{"vr":"CS","Value":["${modality}"]},"00200013":{"vr":"IS","Value":[${i + 1}]},`
              + `"00280010":{"vr":"US","Value":[512]},"00280011":{"vr":"US","Value":[512]},"7FE00010":{"vr":"OW","BulkDataURI":"atrium:bulk/7FE00010"}}`;
            insertInstance.run(instanceId, uid, seriesId, sopClass, i + 1, '1.2.840.10008.1.2.1', null, 512, 512, date, time,
              `bench/fake/${instanceId}`, 525000, fakeSha, layout, metadata, now, now);
          }
        }
      }
    })();
    if ((from / batch) % 4 === 3) log(`large index: ${Math.min(plan.studies, from + batch)} studies`);
  }
  db.pragma('journal_mode = WAL');
  db.close();
  renameSync(building, file);
  const buildSeconds = (Date.now() - started) / 1000;
  log(`large index: built in ${buildSeconds.toFixed(1)} s`);
  return describe(file, plan, buildSeconds, false);
}
