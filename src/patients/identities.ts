/**
 * Identities across sites. Each site numbers its patients its own way: a patient record
 * is one (site, issuer, PatientID). Records are linked into one person when they carry the
 * same qualified INS and their reference traits agree; anything less certain (the same
 * name, birth date and sex at two sites; an INS under conflicting traits; an object whose
 * INS disagrees with its record's qualified one) goes to a human as a review, and is never
 * applied silently.
 */
import { foldPersonName } from '../dicom/person-name.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { INSError, insValue, parseINS, type IdentityStatus, type INS, type PatientIdentity } from './ins.ts';

export type IdentitySource = 'hl7' | 'dicom' | 'manual' | 'insi';

/** What a source says about the identity of a patient record. */
export interface IdentityClaim {
  ins?: INS;
  status: IdentityStatus;
  source: IdentitySource;
  birthName?: string;
  firstNames?: string[];
  sex?: string;
  /** YYYYMMDD as in DICOM and HL7. */
  birthDate?: string;
  birthPlace?: string;
}

export type ReviewKind = 'link-candidate' | 'traits-conflict' | 'ins-conflict' | 'ins-invalid' | 'order-mismatch' | 'insi-several';

export interface IdentityOutcome {
  /** The person the record now belongs to, when linked. */
  personId?: number;
  /** Reviews opened by this claim. */
  reviews: ReviewKind[];
}

interface IdentityRow {
  patient_id: number;
  ins: string | null;
  ins_oid: string | null;
  status: IdentityStatus;
  sex: string | null;
  birth_date: string | null;
  person_id: number | null;
}

const now = () => new Date().toISOString();

export async function openReview(tx: SqlDatabase, kind: ReviewKind, patientId: number, otherPatientId: number | null, details: string): Promise<boolean> {
  const open = await tx.get<{ id: number }>(
    `SELECT id FROM identity_reviews WHERE kind = ? AND patient_id = ? AND state = 'open' AND ${otherPatientId === null ? 'other_patient_id IS NULL' : 'other_patient_id = ?'}`,
    otherPatientId === null ? [kind, patientId] : [kind, patientId, otherPatientId],
  );
  if (open) return false;
  await tx.run(
    'INSERT INTO identity_reviews (kind, patient_id, other_patient_id, details, state, created_at) VALUES (?, ?, ?, ?, ?, ?)',
    [kind, patientId, otherPatientId, details, 'open', now()],
  );
  return true;
}

/** Traits that must agree for two records of one INS to be linked without a human. */
function traitsDisagree(a: { sex: string | null; birth_date: string | null }, b: { sex: string | null; birth_date: string | null }): string | undefined {
  if (a.sex && b.sex && a.sex !== b.sex) return `sex ${a.sex} / ${b.sex}`;
  if (a.birth_date && b.birth_date && a.birth_date !== b.birth_date) return `birth date ${a.birth_date} / ${b.birth_date}`;
  return undefined;
}

/** Puts the records into one person: an existing one of theirs (the oldest), else a new one. */
async function link(tx: SqlDatabase, patientIds: number[]): Promise<number> {
  const rows = await tx.all<{ person_id: number | null }>(
    `SELECT person_id FROM patient_identities WHERE patient_id IN (${patientIds.map(() => '?').join(', ')})`,
    patientIds,
  );
  const persons = [...new Set(rows.map((r) => r.person_id).filter((p): p is number => p !== null).map(Number))].sort((a, b) => a - b);
  let personId = persons[0];
  if (personId === undefined) {
    const created = await tx.get<{ id: number }>('INSERT INTO persons (created_at) VALUES (?) RETURNING id', [now()]);
    personId = Number(created!.id);
  }
  // Persons found to be one become the oldest of them.
  for (const other of persons.slice(1)) await tx.run('UPDATE patient_identities SET person_id = ? WHERE person_id = ?', [personId, other]);
  await tx.run(`UPDATE patient_identities SET person_id = ? WHERE patient_id IN (${patientIds.map(() => '?').join(', ')})`, [personId, ...patientIds]);
  return personId;
}

/**
 * Records what a source says of a patient record's identity, inside the caller's
 * transaction, and links or opens reviews as the rules say. A record whose identity is
 * qualified keeps its INS: a different INS is flagged (ins-conflict), not merged.
 */
export async function recordIdentity(tx: SqlDatabase, patientId: number, claim: IdentityClaim): Promise<IdentityOutcome> {
  const reviews: ReviewKind[] = [];
  const existing = await tx.get<IdentityRow>('SELECT * FROM patient_identities WHERE patient_id = ?', [patientId]);
  const claimed = claim.ins ? insValue(claim.ins) : undefined;
  if (existing?.status === 'qualified' && existing.ins && claimed && existing.ins !== claimed) {
    if (await openReview(tx, 'ins-conflict', patientId, null, `record qualified with INS ending ${existing.ins.slice(-4)}; ${claim.source} says another INS ending ${claimed.slice(-4)}`)) reviews.push('ins-conflict');
    return { personId: existing.person_id ?? undefined, reviews };
  }
  // A qualified identity is never downgraded by a less certain source.
  const keep = existing?.status === 'qualified' && claim.status !== 'qualified';
  const row = {
    ins: keep ? existing!.ins : claimed ?? existing?.ins ?? null,
    ins_oid: keep ? existing!.ins_oid : claim.ins?.oid ?? existing?.ins_oid ?? null,
    status: keep ? existing!.status : claim.status,
    sex: claim.sex ?? existing?.sex ?? null,
    birth_date: claim.birthDate ?? existing?.birth_date ?? null,
  };
  await tx.run(
    `INSERT INTO patient_identities (patient_id, ins, ins_oid, status, source, birth_name, first_names, sex, birth_date, birth_place, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (patient_id) DO UPDATE SET ins = excluded.ins, ins_oid = excluded.ins_oid, status = excluded.status,
       source = excluded.source, birth_name = COALESCE(excluded.birth_name, patient_identities.birth_name),
       first_names = COALESCE(excluded.first_names, patient_identities.first_names), sex = excluded.sex,
       birth_date = excluded.birth_date, birth_place = COALESCE(excluded.birth_place, patient_identities.birth_place),
       updated_at = excluded.updated_at`,
    [patientId, row.ins, row.ins_oid, row.status, claim.source, claim.birthName ?? null, claim.firstNames?.join(' ') ?? null,
      row.sex, row.birth_date, claim.birthPlace ?? null, now()],
  );
  if (row.status !== 'qualified' || !row.ins) return { reviews };

  // The same qualified INS elsewhere: link when the traits agree, else a human decides.
  const same = await tx.all<IdentityRow>(
    `SELECT * FROM patient_identities WHERE ins = ? AND status = 'qualified' AND patient_id <> ?`,
    [row.ins, patientId],
  );
  const agreeing: number[] = [];
  for (const other of same) {
    const why = traitsDisagree(row, other);
    if (why) {
      if (await openReview(tx, 'traits-conflict', patientId, Number(other.patient_id), `same qualified INS, ${why}`)) reviews.push('traits-conflict');
    } else {
      agreeing.push(Number(other.patient_id));
    }
  }
  const personId = await link(tx, [patientId, ...agreeing]);
  return { personId, reviews };
}

/**
 * Candidate links from demographics: records of other sites with the same folded name,
 * birth date and sex, not already in the same person. Proposed for review, never applied.
 */
export async function proposeDemographicLinks(tx: SqlDatabase, patientId: number): Promise<number> {
  const p = await tx.get<{ site_id: number; patient_name: string | null; birth_date: string | null; sex: string | null }>(
    'SELECT site_id, patient_name, birth_date, sex FROM patients WHERE id = ?', [patientId],
  );
  if (!p?.patient_name || !p.birth_date || !p.sex) return 0;
  const folded = foldPersonName(p.patient_name);
  const others = await tx.all<{ id: number }>(
    `SELECT q.id FROM patients q
      LEFT JOIN patient_identities qi ON qi.patient_id = q.id
      LEFT JOIN patient_identities mine ON mine.patient_id = ?
      WHERE q.site_id <> ? AND q.patient_name_folded = ? AND q.birth_date = ? AND q.sex = ?
        AND (qi.person_id IS NULL OR mine.person_id IS NULL OR qi.person_id <> mine.person_id)`,
    [patientId, p.site_id, folded, p.birth_date, p.sex],
  );
  let opened = 0;
  for (const o of others) {
    const [a, b] = patientId < Number(o.id) ? [patientId, Number(o.id)] : [Number(o.id), patientId];
    if (await openReview(tx, 'link-candidate', a, b, 'same name, birth date and sex at two sites')) opened++;
  }
  return opened;
}

export class ReviewNotOpenError extends Error {
  override readonly name = 'ReviewNotOpenError';
}

/** No such review, or one of sites the decider does not act for (told apart from nothing). */
export class ReviewNotFoundError extends Error {
  override readonly name = 'ReviewNotFoundError';
}

/** A candidate link joining a record of a site the decider does not act for: the territory decides it. */
export class ReviewForTerritoryError extends Error {
  override readonly name = 'ReviewForTerritoryError';
}

/**
 * A review's decision: a link candidate accepted links the two records into one person.
 * `inSites` (undefined: every site) are the sites the decider acts for: a review none of
 * whose records is of those sites is answered as one that does not exist. The decision
 * records whether the territory made it (decided_for): only then does a link that no
 * qualified INS backs widen access (access/linked-records.ts).
 */
export async function decideReview(db: SqlDatabase, reviewId: number, accept: boolean, inSites?: readonly number[]): Promise<{ personId?: number }> {
  return db.transaction(async (tx) => {
    const r = await tx.get<{ kind: ReviewKind; patient_id: number; other_patient_id: number | null; state: string; site_id: number; other_site_id: number | null }>(
      `SELECT r.kind, r.patient_id, r.other_patient_id, r.state, p.site_id, o.site_id AS other_site_id FROM identity_reviews r
         JOIN patients p ON p.id = r.patient_id LEFT JOIN patients o ON o.id = r.other_patient_id WHERE r.id = ?`, [reviewId],
    );
    const concerned = r && (inSites === undefined || [r.site_id, r.other_site_id].some((s) => s !== null && inSites.includes(Number(s))));
    // Whether another site's review is still open is not told either: the state is checked after.
    if (!r || !concerned) throw new ReviewNotFoundError(`review ${reviewId} does not exist`);
    if (r.state !== 'open') throw new ReviewNotOpenError(`review ${reviewId} is not open`);
    // A site administrator who linked their record to another site's would open that site's
    // exams to whoever sees theirs (a share, the patient's own access): a candidate joining
    // another site's record stays open for the territory's identitovigilance.
    const sites = [r.site_id, r.other_site_id].filter((s): s is number => s !== null).map(Number);
    if (r.kind === 'link-candidate' && inSites !== undefined && !sites.every((s) => inSites.includes(s))) {
      throw new ReviewForTerritoryError(`review ${reviewId} links a record of another site: the territory's identitovigilance decides it`);
    }
    await tx.run('UPDATE identity_reviews SET state = ?, decided_at = ?, decided_for = ? WHERE id = ?',
      [accept ? 'accepted' : 'rejected', now(), inSites === undefined ? 'territory' : 'sites', reviewId]);
    if (!accept || r.kind !== 'link-candidate' || r.other_patient_id === null) return {};
    for (const id of [r.patient_id, r.other_patient_id]) {
      await tx.run(
        `INSERT INTO patient_identities (patient_id, status, source, updated_at) VALUES (?, 'provisional', 'manual', ?)
         ON CONFLICT (patient_id) DO NOTHING`, [Number(id), now()],
      );
    }
    return { personId: await link(tx, [Number(r.patient_id), Number(r.other_patient_id)]) };
  });
}

export interface IdentityReview {
  id: number;
  kind: ReviewKind;
  patientId: number;
  otherPatientId?: number;
  details: string;
}

export async function openReviews(db: SqlDatabase): Promise<IdentityReview[]> {
  const rows = await db.all<{ id: number; kind: ReviewKind; patient_id: number; other_patient_id: number | null; details: string }>(
    `SELECT id, kind, patient_id, other_patient_id, details FROM identity_reviews WHERE state = 'open' ORDER BY id`,
  );
  return rows.map((r) => ({ id: Number(r.id), kind: r.kind, patientId: Number(r.patient_id), ...(r.other_patient_id === null ? {} : { otherPatientId: Number(r.other_patient_id) }), details: r.details }));
}

/** A patient record as its site knows it. */
export interface ReviewRecord { site: string; PatientID: string; IssuerOfPatientID: string }

/**
 * The open reviews a caller acting for `inSites` (every site when undefined) may see and
 * decide: those whose records all belong to those sites, each record named by site and
 * PatientID. A review that joins a record of another site is the territory's: it is not
 * shown to a site administrator, who must not learn what another site holds.
 */
export async function openReviewsFor(db: SqlDatabase, inSites: readonly number[] | undefined): Promise<Array<{
  id: number; kind: ReviewKind; details: string; record: ReviewRecord; otherRecord?: ReviewRecord;
}>> {
  const rows = await db.all<{
    id: number; kind: ReviewKind; details: string;
    a_site_id: number; a_code: string; a_patient_id: string; a_issuer: string;
    b_site_id: number | null; b_code: string | null; b_patient_id: string | null; b_issuer: string | null;
  }>(
    `SELECT r.id, r.kind, r.details,
            pa.site_id AS a_site_id, sa.code AS a_code, pa.patient_id AS a_patient_id, pa.issuer AS a_issuer,
            pb.site_id AS b_site_id, sb.code AS b_code, pb.patient_id AS b_patient_id, pb.issuer AS b_issuer
       FROM identity_reviews r
       JOIN patients pa ON pa.id = r.patient_id JOIN sites sa ON sa.id = pa.site_id
       LEFT JOIN patients pb ON pb.id = r.other_patient_id LEFT JOIN sites sb ON sb.id = pb.site_id
      WHERE r.state = 'open' ORDER BY r.id`,
  );
  const mine = (siteId: number) => inSites === undefined || inSites.includes(Number(siteId));
  return rows
    .filter((r) => mine(r.a_site_id) && (r.b_site_id === null || mine(r.b_site_id)))
    .map((r) => ({
      id: Number(r.id), kind: r.kind, details: r.details,
      record: { site: r.a_code, PatientID: r.a_patient_id, IssuerOfPatientID: r.a_issuer },
      ...(r.b_site_id === null ? {} : { otherRecord: { site: r.b_code!, PatientID: r.b_patient_id!, IssuerOfPatientID: r.b_issuer! } }),
    }));
}

/** A patient record's identity as the RNIV types it (INS, status, reference traits), or undefined. */
export async function patientIdentityOf(sql: SqlDatabase, patientId: number): Promise<PatientIdentity | undefined> {
  const row = await sql.get<{ ins: string | null; ins_oid: string | null; status: IdentityStatus; birth_name: string | null; first_names: string | null; sex: string | null; birth_date: string | null; birth_place: string | null }>(
    'SELECT ins, ins_oid, status, birth_name, first_names, sex, birth_date, birth_place FROM patient_identities WHERE patient_id = ?', [patientId]);
  if (!row) return undefined;
  let ins: INS | undefined;
  try {
    ins = row.ins && row.ins_oid ? parseINS(row.ins, row.ins_oid) : undefined;
  } catch (e) {
    if (!(e instanceof INSError)) throw e;
  }
  const bd = row.birth_date ?? '';
  return {
    ...(ins ? { ins } : {}), status: row.status,
    traits: {
      birthName: row.birth_name ?? '', firstNames: (row.first_names ?? '').split(' ').filter((n) => n !== ''),
      sex: row.sex === 'M' || row.sex === 'F' ? row.sex : 'I',
      birthDate: { year: Number(bd.slice(0, 4)) || 0, ...(bd.length >= 6 ? { month: Number(bd.slice(4, 6)) } : {}), ...(bd.length >= 8 ? { day: Number(bd.slice(6, 8)) } : {}) },
      ...(row.birth_place ? { birthPlaceCode: row.birth_place } : {}),
    },
  };
}

/** The INS recorded for a patient record, as stored (undefined: none). */
export async function recordedInsOf(sql: SqlDatabase, patientId: number): Promise<string | undefined> {
  const row = await sql.get<{ ins: string | null }>('SELECT ins FROM patient_identities WHERE patient_id = ?', [patientId]);
  return row?.ins ?? undefined;
}
