/**
 * Which links between patient records widen access. Records are put into one person by
 * qualified INS (recordIdentity) or by a reviewer's decision on a candidate (decideReview);
 * a person is only as trustworthy as its weakest link, so access does not follow "same
 * person" but the links themselves: two records carrying the same qualified INS, or a
 * candidate link the territory decided (identity_reviews.decided_for = 'territory'). A link
 * a site administrator accepted (or one decided before reviews said who decided) keeps the
 * records together for identitovigilance and opens nothing across sites.
 */
import type { SqlDatabase } from '../index/sql.ts';

/** What a link must rest on to be followed: qualified INS only, or also the territory's decision. */
export type LinkTrust = 'qualified-ins' | 'ins-or-territory';

/**
 * The records reachable from these through links of that trust, themselves first (in the
 * order given), then the others in index order.
 */
export async function linkedRecords(sql: SqlDatabase, patientIds: readonly number[], trust: LinkTrust): Promise<number[]> {
  if (patientIds.length === 0) return [];
  const marks = patientIds.map(() => '?').join(', ');
  const members = await sql.all<{ patient_id: number; ins: string | null; status: string }>(
    `SELECT other.patient_id, other.ins, other.status FROM patient_identities mine
       JOIN patient_identities other ON other.person_id = mine.person_id
      WHERE mine.patient_id IN (${marks}) AND mine.person_id IS NOT NULL
      ORDER BY other.patient_id`,
    [...patientIds],
  );
  const result = [...new Set(patientIds)];
  if (members.length === 0) return result;
  const insOf = new Map<number, string>();
  for (const m of members) if (m.status === 'qualified' && m.ins) insOf.set(Number(m.patient_id), m.ins);
  const edges = new Map<number, number[]>();
  const join = (a: number, b: number) => {
    edges.set(a, [...(edges.get(a) ?? []), b]);
    edges.set(b, [...(edges.get(b) ?? []), a]);
  };
  const byIns = new Map<string, number[]>();
  for (const [id, ins] of insOf) byIns.set(ins, [...(byIns.get(ins) ?? []), id]);
  for (const ids of byIns.values()) for (const id of ids.slice(1)) join(ids[0]!, id);
  if (trust === 'ins-or-territory') {
    const ids = members.map((m) => Number(m.patient_id));
    const inList = ids.map(() => '?').join(', ');
    const decided = await sql.all<{ patient_id: number; other_patient_id: number }>(
      `SELECT patient_id, other_patient_id FROM identity_reviews
        WHERE kind = 'link-candidate' AND state = 'accepted' AND decided_for = 'territory'
          AND patient_id IN (${inList}) AND other_patient_id IN (${inList})`,
      [...ids, ...ids],
    );
    for (const d of decided) join(Number(d.patient_id), Number(d.other_patient_id));
  }
  const seen = new Set(result);
  const queue = [...result];
  while (queue.length > 0) {
    for (const next of edges.get(queue.shift()!) ?? []) {
      if (seen.has(next)) continue;
      seen.add(next);
      queue.push(next);
    }
  }
  const others = [...seen].filter((id) => !result.includes(id)).sort((a, b) => a - b);
  return [...result, ...others];
}
