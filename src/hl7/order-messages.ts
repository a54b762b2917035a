/**
 * Orders: ORM^O01 (with the IHE ZDS segment) and OMI^O23 (with IPC segments) create,
 * update and cancel the sending site's scheduled procedures, in the transaction that
 * also updates the patient record from PID.
 */
import { newUID } from '../dicom/uids.ts';
import type { SqlDatabase } from '../index/sql.ts';
import { registerPatientIn } from '../patients/patient-registry.ts';
import { ScheduledProcedures, type ScheduledProcedure, type ScheduledProcedureStatus } from '../patients/scheduled-procedures.ts';
import { Hl7Error, Hl7ErrorCode } from './acknowledgment.ts';
import { regionOf } from '../workflow/dose-records.ts';
import { alertText, findPriors, recordAlert } from '../workflow/redundancy.ts';
import { timestampOf, xcnName } from './fields.ts';
import { findSegment, valueOf, type Hl7Message, type Segment } from './message.ts';
import { patientOf, registryError, requireSegment, type MessageContext } from './patient-messages.ts';

/** One order of the message: its ORC and the segments up to the next ORC. */
interface OrderGroup {
  orc: Segment;
  obr?: Segment;
  tq1?: Segment;
  zds?: Segment;
  ipcs: Segment[];
}

function orderGroups(message: Hl7Message): OrderGroup[] {
  const groups: OrderGroup[] = [];
  for (const seg of message.segments) {
    if (seg.id === 'ORC') groups.push({ orc: seg, ipcs: [] });
    const g = groups.at(-1);
    if (!g) continue;
    if (seg.id === 'OBR') g.obr ??= seg;
    else if (seg.id === 'TQ1') g.tq1 ??= seg;
    else if (seg.id === 'ZDS') g.zds ??= seg;
    else if (seg.id === 'IPC') g.ipcs.push(seg);
  }
  return groups;
}

/** ORC-1 order control codes (HL7 table 0119) Atrium acts on. */
const scheduling = new Set(['NW', 'XO', 'SC']);
const cancelling: Record<string, ScheduledProcedureStatus> = { CA: 'CANCELED', OC: 'CANCELED', DC: 'DISCONTINUED', OD: 'DISCONTINUED' };

/** ORC-5 order status (table 0038) of an SC (status changed) message. */
function statusOf(orc: Segment): ScheduledProcedureStatus {
  switch (valueOf(orc, 5)) {
    case 'IP': return 'STARTED';
    case 'CM': return 'COMPLETED';
    case 'CA': return 'CANCELED';
    case 'DC': return 'DISCONTINUED';
    default: return 'SCHEDULED';
  }
}

function missing(segment: string, field: number, what: string, component?: number): Hl7Error {
  return new Hl7Error('AE', Hl7ErrorCode.requiredFieldMissing, `${segment}-${field}${component ? `.${component}` : ''} (${what}) is required`, { segment, field, ...(component ? { component } : {}) });
}

const text = (v: string): string | undefined => (v === '' || v === '""' ? undefined : v);

export async function applyOrderMessage(tx: SqlDatabase, message: Hl7Message, ctx: MessageContext): Promise<void> {
  const pid = requireSegment(message, 'PID');
  const patient = patientOf(pid, ctx.site);
  const key = { siteId: ctx.site.id, IssuerOfPatientID: ctx.site.issuerOfPatientID, PatientID: patient.PatientID };
  let patientRow: number;
  try {
    patientRow = (await registerPatientIn(tx, key, patient.demographics, patient.identity)).id;
  } catch (e) {
    throw registryError(e, { segment: 'PID', field: 3 });
  }
  const groups = orderGroups(message);
  if (groups.length === 0) throw new Hl7Error('AE', Hl7ErrorCode.segmentSequenceError, 'the ORC segment is missing', { segment: 'ORC' });
  const pv1 = findSegment(message, 'PV1');
  const procedures = new ScheduledProcedures(tx);
  for (const g of groups) {
    const control = valueOf(g.orc, 1);
    if (control === '') throw missing('ORC', 1, 'order control');
    if (!g.obr) throw new Hl7Error('AE', Hl7ErrorCode.segmentSequenceError, 'the OBR segment of the order is missing', { segment: 'OBR' });
    const obr = g.obr;
    const steps = g.ipcs.length > 0 ? g.ipcs : [undefined];
    for (const ipc of steps) {
      const accession = text(valueOf(ipc, 1)) ?? text(valueOf(obr, 18)) ?? text(valueOf(obr, 3)) ?? text(valueOf(g.orc, 3));
      if (accession === undefined) throw missing(ipc ? 'IPC' : 'OBR', ipc ? 1 : 18, 'accession number');
      const cancelStatus = cancelling[control];
      if (cancelStatus) {
        if (!(await procedures.setStatus(ctx.site.id, accession, cancelStatus))) {
          throw new Hl7Error('AE', Hl7ErrorCode.unknownKeyIdentifier, `no order with accession number ${accession} to cancel`, { segment: ipc ? 'IPC' : 'OBR', field: ipc ? 1 : 18 });
        }
        continue;
      }
      if (!scheduling.has(control)) {
        throw new Hl7Error('AE', Hl7ErrorCode.tableValueNotFound, `ORC-1 order control ${JSON.stringify(control)} is not handled (NW, XO, SC, CA, OC, DC, OD)`, { segment: 'ORC', field: 1 });
      }
      const service = text(valueOf(obr, 4, 2)) ?? text(valueOf(obr, 4, 1));
      if (service === undefined) throw missing('OBR', 4, 'universal service identifier: the procedure');
      const existing = await procedures.findByAccession(ctx.site.id, accession);
      const start = timestampOf(valueOf(g.tq1, 7), { segment: 'TQ1', field: 7 })
        ?? timestampOf(valueOf(obr, 27, 4), { segment: 'OBR', field: 27 })
        ?? timestampOf(valueOf(obr, 36), { segment: 'OBR', field: 36 })
        ?? timestampOf(valueOf(obr, 7), { segment: 'OBR', field: 7 });
      const procedure: ScheduledProcedure = {
        siteId: ctx.site.id,
        PatientID: patient.PatientID,
        IssuerOfPatientID: ctx.site.issuerOfPatientID,
        AccessionNumber: accession,
        StudyInstanceUID: text(valueOf(ipc, 3)) ?? text(valueOf(g.zds, 1)) ?? existing?.StudyInstanceUID ?? newUID(),
        status: control === 'SC' ? statusOf(g.orc) : 'SCHEDULED',
      };
      const set = (k: keyof ScheduledProcedure, v: string | null | undefined) => {
        if (typeof v === 'string' && v !== '') (procedure as unknown as Record<string, string>)[k] = v;
      };
      set('PatientName', patient.demographics.PatientName);
      set('PatientBirthDate', patient.demographics.PatientBirthDate);
      set('PatientSex', patient.demographics.PatientSex);
      set('RequestedProcedureID', text(valueOf(ipc, 2)) ?? text(valueOf(obr, 19)));
      set('RequestedProcedureDescription', service);
      set('ScheduledProcedureStepID', text(valueOf(ipc, 4)) ?? text(valueOf(obr, 20)));
      set('ScheduledProcedureStepDescription', service);
      set('Modality', text(valueOf(ipc, 5)) ?? text(valueOf(obr, 24)));
      set('ScheduledStationName', text(valueOf(ipc, 7)));
      set('ScheduledStationAETitle', text(valueOf(ipc, 9)) ?? text(valueOf(obr, 21)) ?? ctx.stationAETitle);
      set('ReferringPhysicianName', xcnName(obr, 16) ?? xcnName(pv1, 8));
      set('ScheduledPerformingPhysicianName', xcnName(obr, 34));
      set('PlacerOrderNumber', text(valueOf(g.orc, 2)) ?? text(valueOf(obr, 2)));
      set('FillerOrderNumber', text(valueOf(g.orc, 3)) ?? text(valueOf(obr, 3)));
      set('ScheduledProcedureStepStartDate', start?.date);
      set('ScheduledProcedureStepStartTime', start?.time);
      await ScheduledProcedures.upsertIn(tx, procedure);
      if (procedure.status === 'SCHEDULED' && procedure.Modality !== undefined) {
        // The same person's recent exam of this kind, at any site: said in the ACK, kept as an alert to decide.
        const region = regionOf(service);
        const priors = await findPriors(tx, { patientId: patientRow, modality: procedure.Modality, region, exceptStudy: procedure.StudyInstanceUID },
          ctx.redundancyWindowDays ?? {});
        if (await recordAlert(tx, { kind: 'order', siteId: ctx.site.id, ref: accession, patientId: patientRow, modality: procedure.Modality, ...(region ? { region } : {}) }, priors)) {
          ctx.warnings?.push(`${accession}: ${alertText(priors, procedure.Modality, region, ctx.site.id)}`);
        }
      }
    }
  }
}
