/**
 * The portal's view of patients: patient records found by name (case and accents ignored,
 * any name component), birth date, INS or a site's PatientID; a person's exams across every
 * site, newest first. The caller's access scope arrives as a SQL restriction: what it does
 * not allow is neither found nor counted.
 */
import type { ArchiveIndex } from '../index/archive-index.ts';
import type { PatientAttributes, Site, SqlRestriction } from '../index/records.ts';

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

export interface PatientRecordSummary {
  site: string;
  PatientID: string;
  IssuerOfPatientID: string;
  PatientName?: string;
  PatientBirthDate?: string;
  PatientSex?: string;
  NumberOfPatientRelatedStudies: number;
}

export interface TimelineStudy {
  site: string;
  PatientID: string;
  IssuerOfPatientID: string;
  StudyInstanceUID: string;
  StudyDate?: string;
  StudyTime?: string;
  StudyDescription?: string;
  AccessionNumber?: string;
  ModalitiesInStudy: string[];
  BodyPartsExamined: string[];
  NumberOfStudyRelatedSeries: number;
  NumberOfStudyRelatedInstances: number;
}

/** A search of the portal: at most `limit` records, ordered by PatientID. */
export async function findPatientRecords(
  index: ArchiveIndex, siteById: ReadonlyMap<number, Site>, search: PatientSearch, restriction: SqlRestriction | undefined, limit = 100,
): Promise<Array<PatientRecordSummary & { siteId: number }>> {
  const matches: Record<string, string> = {};
  if (search.name) matches.PatientName = search.name;
  if (search.PatientBirthDate) matches.PatientBirthDate = search.PatientBirthDate;
  if (search.INS) matches.PersonINS = search.INS;
  if (search.PatientID) matches.PatientID = search.PatientID;
  const bySite = search.site ? { sql: 'p.site_id = ?', params: [search.site.id] } : undefined;
  const rows = await index.searchPatients({
    level: 'patient', matches, fuzzymatching: true, limit, offset: 0, restriction: both(restriction, bySite),
  });
  return rows.map((r) => ({ ...recordSummary(siteById, r.siteId, r.patient), NumberOfPatientRelatedStudies: r.NumberOfPatientRelatedStudies }));
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
  return studies.sort((a, b) => `${b.StudyDate ?? ''}${b.StudyTime ?? ''}`.localeCompare(`${a.StudyDate ?? ''}${a.StudyTime ?? ''}`));
}

function both(a: SqlRestriction | undefined, b: SqlRestriction | undefined): SqlRestriction | undefined {
  if (!a) return b;
  if (!b) return a;
  return { sql: `(${a.sql}) AND (${b.sql})`, params: [...a.params, ...b.params] };
}
