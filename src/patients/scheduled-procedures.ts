/**
 * Scheduled procedures: the orders a site's RIS sends (HL7 ORM^O01 / OMI^O23), kept per
 * site and accession number, served as the modality worklist (PS3.4 K) and used to
 * attach arriving images to their order.
 */
import { foldPersonName } from '../dicom/person-name.ts';
import { matchConditions, type MatchableColumn } from '../index/matching.ts';
import type { SqlDatabase } from '../index/sql.ts';

/** Scheduled Procedure Step Status (0040,0020) values Atrium keeps (PS3.3 C.4.10). */
export type ScheduledProcedureStatus = 'SCHEDULED' | 'ARRIVED' | 'READY' | 'STARTED' | 'DEPARTED' | 'CANCELED' | 'COMPLETED' | 'DISCONTINUED';

/** An order as the worklist needs it, attributes named by their DICOM keywords. */
export interface ScheduledProcedure {
  siteId: number;
  PatientID: string;
  IssuerOfPatientID: string;
  PatientName?: string;
  PatientBirthDate?: string;
  PatientSex?: string;
  AccessionNumber: string;
  StudyInstanceUID: string;
  RequestedProcedureID?: string;
  RequestedProcedureDescription?: string;
  ReferringPhysicianName?: string;
  PlacerOrderNumber?: string;
  FillerOrderNumber?: string;
  ScheduledProcedureStepID?: string;
  ScheduledProcedureStepDescription?: string;
  ScheduledStationAETitle?: string;
  ScheduledStationName?: string;
  Modality?: string;
  ScheduledProcedureStepStartDate?: string;
  ScheduledProcedureStepStartTime?: string;
  ScheduledPerformingPhysicianName?: string;
  status: ScheduledProcedureStatus;
}

interface Row {
  id: number;
  site_id: number;
  patient_id: string;
  issuer: string;
  patient_name: string | null;
  birth_date: string | null;
  sex: string | null;
  accession_number: string;
  study_instance_uid: string;
  requested_procedure_id: string | null;
  requested_procedure_description: string | null;
  referring_physician_name: string | null;
  placer_order_number: string | null;
  filler_order_number: string | null;
  sps_id: string | null;
  sps_description: string | null;
  station_ae_title: string | null;
  station_name: string | null;
  modality: string | null;
  start_date: string | null;
  start_time: string | null;
  performing_physician_name: string | null;
  status: ScheduledProcedureStatus;
}

/** Worklist matching keys (PS3.4 K.6.1.2.2), by keyword, over this table. */
const worklistColumns: Record<string, MatchableColumn> = {
  PatientID: { column: 'patient_id', kind: 'text' },
  IssuerOfPatientID: { column: 'issuer', kind: 'text' },
  PatientName: { column: 'patient_name_folded', kind: 'pn' },
  AccessionNumber: { column: 'accession_number', kind: 'text' },
  StudyInstanceUID: { column: 'study_instance_uid', kind: 'uid' },
  RequestedProcedureID: { column: 'requested_procedure_id', kind: 'text' },
  ReferringPhysicianName: { column: 'referring_physician_name_folded', kind: 'pn' },
  ScheduledStationAETitle: { column: 'station_ae_title', kind: 'text' },
  ScheduledStationName: { column: 'station_name', kind: 'text' },
  Modality: { column: 'modality', kind: 'text' },
  ScheduledProcedureStepStartDate: { column: 'start_date', kind: 'date' },
  ScheduledProcedureStepStartTime: { column: 'start_time', kind: 'time' },
  ScheduledPerformingPhysicianName: { column: 'performing_physician_name_folded', kind: 'pn' },
  ScheduledProcedureStepID: { column: 'sps_id', kind: 'text' },
};

export const worklistMatchingKeywords: readonly string[] = Object.keys(worklistColumns);

function fromRow(r: Row): ScheduledProcedure & { id: number } {
  const p: ScheduledProcedure & { id: number } = {
    id: r.id, siteId: r.site_id, PatientID: r.patient_id, IssuerOfPatientID: r.issuer,
    AccessionNumber: r.accession_number, StudyInstanceUID: r.study_instance_uid, status: r.status,
  };
  const set = (k: keyof ScheduledProcedure, v: string | null) => {
    if (v !== null && v !== '') (p as unknown as Record<string, string>)[k] = v;
  };
  set('PatientName', r.patient_name);
  set('PatientBirthDate', r.birth_date);
  set('PatientSex', r.sex);
  set('RequestedProcedureID', r.requested_procedure_id);
  set('RequestedProcedureDescription', r.requested_procedure_description);
  set('ReferringPhysicianName', r.referring_physician_name);
  set('PlacerOrderNumber', r.placer_order_number);
  set('FillerOrderNumber', r.filler_order_number);
  set('ScheduledProcedureStepID', r.sps_id);
  set('ScheduledProcedureStepDescription', r.sps_description);
  set('ScheduledStationAETitle', r.station_ae_title);
  set('ScheduledStationName', r.station_name);
  set('Modality', r.modality);
  set('ScheduledProcedureStepStartDate', r.start_date);
  set('ScheduledProcedureStepStartTime', r.start_time);
  set('ScheduledPerformingPhysicianName', r.performing_physician_name);
  return p;
}

const folded = (name: string | undefined) => (name === undefined ? null : foldPersonName(name));

export class ScheduledProcedures {
  constructor(private readonly sql: SqlDatabase) {}

  /** Creates the order, or replaces what an earlier message said about the same accession number. */
  upsert(p: ScheduledProcedure): Promise<{ id: number; created: boolean }> {
    return this.sql.transaction((tx) => ScheduledProcedures.upsertIn(tx, p));
  }

  /** upsert inside a transaction the caller holds (an HL7 message that also updates the patient). */
  static async upsertIn(tx: SqlDatabase, p: ScheduledProcedure): Promise<{ id: number; created: boolean }> {
    const now = new Date().toISOString();
    const values = [
      p.PatientID, p.IssuerOfPatientID, p.PatientName ?? null, folded(p.PatientName), p.PatientBirthDate ?? null, p.PatientSex ?? null,
      p.StudyInstanceUID, p.RequestedProcedureID ?? null, p.RequestedProcedureDescription ?? null,
      p.ReferringPhysicianName ?? null, folded(p.ReferringPhysicianName), p.PlacerOrderNumber ?? null, p.FillerOrderNumber ?? null,
      p.ScheduledProcedureStepID ?? null, p.ScheduledProcedureStepDescription ?? null, p.ScheduledStationAETitle ?? null,
      p.ScheduledStationName ?? null, p.Modality ?? null, p.ScheduledProcedureStepStartDate ?? null, p.ScheduledProcedureStepStartTime ?? null,
      p.ScheduledPerformingPhysicianName ?? null, folded(p.ScheduledPerformingPhysicianName), p.status,
    ];
    const existing = await tx.get<{ id: number }>('SELECT id FROM scheduled_procedures WHERE site_id = ? AND accession_number = ?', [p.siteId, p.AccessionNumber]);
    if (existing) {
      await tx.run(`UPDATE scheduled_procedures SET patient_id = ?, issuer = ?, patient_name = ?, patient_name_folded = ?, birth_date = ?, sex = ?,
        study_instance_uid = ?, requested_procedure_id = ?, requested_procedure_description = ?, referring_physician_name = ?,
        referring_physician_name_folded = ?, placer_order_number = ?, filler_order_number = ?, sps_id = ?, sps_description = ?,
        station_ae_title = ?, station_name = ?, modality = ?, start_date = ?, start_time = ?, performing_physician_name = ?,
        performing_physician_name_folded = ?, status = ?, updated_at = ? WHERE id = ?`, [...values, now, existing.id]);
      return { id: existing.id, created: false };
    }
    const r = await tx.run(`INSERT INTO scheduled_procedures (patient_id, issuer, patient_name, patient_name_folded, birth_date, sex,
        study_instance_uid, requested_procedure_id, requested_procedure_description, referring_physician_name,
        referring_physician_name_folded, placer_order_number, filler_order_number, sps_id, sps_description,
        station_ae_title, station_name, modality, start_date, start_time, performing_physician_name,
        performing_physician_name_folded, status, updated_at, site_id, accession_number, created_at)
      VALUES (${values.map(() => '?').join(', ')}, ?, ?, ?, ?) RETURNING id`, [...values, now, p.siteId, p.AccessionNumber, now]);
    return { id: r.lastId!, created: true };
  }

  /** Changes the status of an order (cancelled, completed...); false when there is no such order. */
  async setStatus(siteId: number, AccessionNumber: string, status: ScheduledProcedureStatus): Promise<boolean> {
    const r = await this.sql.run('UPDATE scheduled_procedures SET status = ?, updated_at = ? WHERE site_id = ? AND accession_number = ?', [status, new Date().toISOString(), siteId, AccessionNumber]);
    return r.changes > 0;
  }

  async findByAccession(siteId: number, AccessionNumber: string): Promise<(ScheduledProcedure & { id: number }) | undefined> {
    const row = await this.sql.get<Row>('SELECT * FROM scheduled_procedures WHERE site_id = ? AND accession_number = ?', [siteId, AccessionNumber]);
    return row && fromRow(row);
  }

  /**
   * The worklist: orders still to be performed that match, with the C-FIND matching rules.
   * `siteIds` restricts to the sites a caller may see.
   */
  async searchWorklist(matches: Record<string, string>, options: { siteIds?: number[]; limit: number; offset: number }): Promise<Array<ScheduledProcedure & { id: number }>> {
    const c = matchConditions(this.sql.engine, worklistColumns, matches);
    c.where.push(`status IN ('SCHEDULED', 'ARRIVED', 'READY')`);
    if (options.siteIds) {
      if (options.siteIds.length === 0) return [];
      c.where.push(`site_id IN (${options.siteIds.map(() => '?').join(', ')})`);
      c.params.push(...options.siteIds);
    }
    const rows = await this.sql.all<Row>(
      `SELECT * FROM scheduled_procedures WHERE ${c.where.join(' AND ')} ORDER BY start_date, start_time, id LIMIT ? OFFSET ?`,
      [...c.params, options.limit, options.offset],
    );
    return rows.map(fromRow);
  }
}
