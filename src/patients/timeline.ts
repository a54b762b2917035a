/**
 * The portal's view of patients: patient records found by name (case and accents ignored,
 * any name component), birth date, INS or a site's PatientID; a person's exams across every
 * site, newest first. The caller's access scope arrives as a SQL restriction: what it does
 * not allow is neither found nor counted.
 */
import type { ArchiveIndex } from '../index/archive-index.ts';
import type { PatientAttributes, Site, SqlRestriction } from '../index/records.ts';
import type { PatientRecordSummary, TimelineStudy } from '../api/portal-types.ts';

export type { PatientRecordSummary, TimelineStudy };

export interface PatientSearch {
  /** Any part of the name: a family or given name, or their beginning. */
  name?: string;
  /** YYYYMMDD, or a DICOM range. */
  PatientBirthDate?: string;
  /** The INS matricule: every record linked to the person holding it. */
  INS?: string;
  PatientID?: string;
  site?: Site;
}

/** A search of the portal: at most `limit` records from `offset`, ordered by PatientID. */
export async function findPatientRecords(
  index: ArchiveIndex, siteById: ReadonlyMap<number, Site>, search: PatientSearch, restriction: SqlRestriction | undefined, limit = 100, offset = 0,
): Promise<Array<PatientRecordSummary & { siteId: number }>> {
  const matches: Record<string, string> = {};
  if (search.name) matches.PatientName = search.name;
  if (search.PatientBirthDate) matches.PatientBirthDate = search.PatientBirthDate;
  if (search.INS) matches.PersonINS = search.INS;
  if (search.PatientID) matches.PatientID = search.PatientID;
  const bySite = search.site ? { sql: 'p.site_id = ?', params: [search.site.id] } : undefined;
  const rows = await index.searchPatients({
    level: 'patient', matches, fuzzymatching: true, limit, offset, restriction: both(restriction, bySite),
  });
  const ins = await qualifiedINSOf(index, rows);
  return rows.map((r) => {
    const key = `${r.siteId}|${r.patient.IssuerOfPatientID}|${r.patient.PatientID}`;
    return { ...recordSummary(siteById, r.siteId, r.patient), ...(ins.has(key) ? { INS: ins.get(key)! } : {}), NumberOfPatientRelatedStudies: r.NumberOfPatientRelatedStudies };
  });
}

/** The qualified INS of these records (by site|issuer|PatientID); an unqualified INS is not shown. */
async function qualifiedINSOf(index: ArchiveIndex, records: Array<{ siteId: number; patient: PatientAttributes }>): Promise<Map<string, string>> {
  if (records.length === 0) return new Map();
  const rows = await index.sql.all<{ site_id: number; issuer: string; patient_id: string; ins: string }>(
    `SELECT p.site_id, p.issuer, p.patient_id, i.ins FROM patients p JOIN patient_identities i ON i.patient_id = p.id
      WHERE i.status = 'qualified' AND i.ins IS NOT NULL AND (${records.map(() => '(p.site_id = ? AND p.issuer = ? AND p.patient_id = ?)').join(' OR ')})`,
    records.flatMap((r) => [r.siteId, r.patient.IssuerOfPatientID, r.patient.PatientID]),
  );
  return new Map(rows.map((r) => [`${Number(r.site_id)}|${r.issuer}|${r.patient_id}`, r.ins]));
}

export function recordSummary(siteById: ReadonlyMap<number, Site>, siteId: number, p: PatientAttributes): Omit<PatientRecordSummary, 'NumberOfPatientRelatedStudies'> & { siteId: number } {
  return {
    siteId, site: siteById.get(siteId)?.code ?? '?', PatientID: p.PatientID, IssuerOfPatientID: p.IssuerOfPatientID,
    ...(p.PatientName ? { PatientName: p.PatientName } : {}),
    ...(p.PatientBirthDate ? { PatientBirthDate: p.PatientBirthDate } : {}),
    ...(p.PatientSex ? { PatientSex: p.PatientSex } : {}),
  };
}

/** The exams of these patient records (one person's, at every site), newest first. */
export async function timelineOf(
  index: ArchiveIndex, siteById: ReadonlyMap<number, Site>, records: Array<{ siteId: number; patient: PatientAttributes }>, restriction: SqlRestriction | undefined,
): Promise<TimelineStudy[]> {
  const studies: TimelineStudy[] = [];
  for (const record of records) {
    const rows = await index.searchStudies({
      level: 'study', matches: { PatientID: record.patient.PatientID, IssuerOfPatientID: record.patient.IssuerOfPatientID },
      fuzzymatching: false, limit: 10_000, offset: 0, restriction: both(restriction, { sql: 'p.site_id = ?', params: [record.siteId] }),
    });
    for (const r of rows) {
      const series = await index.searchSeries({ level: 'series', matches: {}, fuzzymatching: false, limit: 1000, offset: 0, restriction }, r.study.StudyInstanceUID);
      const s = r.study;
      studies.push({
        site: siteById.get(r.siteId)?.code ?? '?', PatientID: r.patient.PatientID, IssuerOfPatientID: r.patient.IssuerOfPatientID,
        StudyInstanceUID: s.StudyInstanceUID,
        ...(s.StudyDate ? { StudyDate: s.StudyDate } : {}),
        ...(s.StudyTime ? { StudyTime: s.StudyTime } : {}),
        ...(s.StudyDescription ? { StudyDescription: s.StudyDescription } : {}),
        ...(s.AccessionNumber ? { AccessionNumber: s.AccessionNumber } : {}),
        ModalitiesInStudy: r.ModalitiesInStudy,
        BodyPartsExamined: [...new Set(series.flatMap((se) => (se.series.BodyPartExamined ? [se.series.BodyPartExamined] : [])))],
        NumberOfStudyRelatedSeries: r.NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances: r.NumberOfStudyRelatedInstances,
      });
    }
  }
  const reading = await teleradiologyStatusOf(index, studies.map((s) => s.StudyInstanceUID));
  for (const s of studies) {
    const r = reading.get(s.StudyInstanceUID);
    if (r) s.teleradiology = r;
  }
  return studies.sort((a, b) => `${b.StudyDate ?? ''}${b.StudyTime ?? ''}`.localeCompare(`${a.StudyDate ?? ''}${a.StudyTime ?? ''}`));
}

/**
 * Read only, from the teleradiology tables (src/workflow/ writes them): per study, the latest
 * request's status (awaiting-protocol, open, reported, returned) and its report's (draft,
 * preliminary, final, amended).
 */
async function teleradiologyStatusOf(index: ArchiveIndex, StudyInstanceUIDs: string[]): Promise<Map<string, { request: string; report?: string }>> {
  const found = new Map<string, { request: string; report?: string }>();
  for (let i = 0; i < StudyInstanceUIDs.length; i += 500) {
    const uids = StudyInstanceUIDs.slice(i, i + 500);
    if (uids.length === 0) break;
    const rows = await index.sql.all<{ study_instance_uid: string; request: string; report: string | null }>(
      `SELECT q.study_instance_uid, q.status AS request, r.status AS report FROM tele_requests q LEFT JOIN tele_reports r ON r.request_id = q.id
        WHERE q.study_instance_uid IN (${uids.map(() => '?').join(', ')}) ORDER BY q.id`, uids);
    // Ordered by request: the latest request of a study is the one kept.
    for (const row of rows) found.set(row.study_instance_uid, { request: row.request, ...(row.report ? { report: row.report } : {}) });
  }
  return found;
}

function both(a: SqlRestriction | undefined, b: SqlRestriction | undefined): SqlRestriction | undefined {
  if (!a) return b;
  if (!b) return a;
  return { sql: `(${a.sql}) AND (${b.sql})`, params: [...a.params, ...b.params] };
}
