/**
 * ADT messages: patient creation and update (A01, A04, A08, A28, A31), identifier
 * change (A47) and merge (A40), applied to the sending site's patient records.
 */
import type { Site } from '../index/records.ts';
import type { SqlDatabase } from '../index/sql.ts';
import type { IdentityClaim } from '../patients/identities.ts';
import { INSError, parseINS } from '../patients/ins.ts';
import {
  changePatientIDIn, mergePatientsIn, PatientRegistryError, registerPatientIn, type PatientDemographics,
} from '../patients/patient-registry.ts';
import { Hl7Error, Hl7ErrorCode } from './acknowledgment.ts';
import { birthDateOf, birthNameTraitsOf, birthPlaceOf, identifiersOf, identityStatusOf, patientNameOf, sexOf } from './fields.ts';
import { findSegment, valueOf, type Hl7Message, type Segment } from './message.ts';
import { recordContactIn } from '../archive/lifecycle.ts';

export interface MessageContext {
  site: Site;
  messageControlId: string;
  /** Scheduled Station AE Title for orders that name none. */
  stationAETitle?: string;
  /** What the acknowledgment warns of, the message accepted (a possibly redundant exam). */
  warnings?: string[];
  /** radiation.redundancyWindowDays (src/workflow/redundancy.ts's defaults without it). */
  redundancyWindowDays?: Readonly<Record<string, number>>;
}

export const patientTriggers = ['A01', 'A04', 'A08', 'A28', 'A31', 'A40', 'A47'] as const;

export function requireSegment(message: Hl7Message, id: string): Segment {
  const seg = findSegment(message, id);
  if (!seg) throw new Hl7Error('AE', Hl7ErrorCode.segmentSequenceError, `the ${id} segment is missing`, { segment: id });
  return seg;
}

/** The patient a PID describes: the site's PatientID, demographics, and what it says of the identity. */
export interface PatientOfMessage {
  PatientID: string;
  demographics: PatientDemographics;
  identity?: IdentityClaim;
}

export function patientOf(pid: Segment, site: Site): PatientOfMessage {
  const ids = identifiersOf(pid, 3, site.issuerOfPatientID);
  const demographics: PatientDemographics = {};
  const name = patientNameOf(pid), birthDate = birthDateOf(pid), sex = sexOf(pid);
  if (name !== undefined) demographics.PatientName = name;
  if (birthDate !== undefined) demographics.PatientBirthDate = birthDate;
  if (sex !== undefined) demographics.PatientSex = sex;
  const status = identityStatusOf(pid);
  if (!ids.ins && !status) return { PatientID: ids.PatientID, demographics };
  let ins;
  if (ids.ins) {
    try {
      ins = parseINS(ids.ins.ins, ids.ins.oid);
    } catch (e) {
      if (!(e instanceof INSError)) throw e;
      throw new Hl7Error('AE', e.code === 'unknown-oid' ? Hl7ErrorCode.tableValueNotFound : Hl7ErrorCode.dataTypeError,
        `PID-3 INS: ${e.message}`, { segment: 'PID', field: 3, repetition: ids.ins.repetition, component: e.code === 'unknown-oid' ? 4 : 1 });
    }
  }
  const birthPlace = birthPlaceOf(pid);
  const identity: IdentityClaim = {
    ...(ins ? { ins } : {}),
    // An INS without PID-32 is taken as provisional: nothing says it was checked.
    status: status ?? 'provisional',
    source: 'hl7',
    ...birthNameTraitsOf(pid),
    ...(sex === 'M' || sex === 'F' ? { sex } : {}),
    ...(typeof birthDate === 'string' ? { birthDate } : {}),
    ...(birthPlace ? { birthPlace } : {}),
  };
  return { PatientID: ids.PatientID, demographics, identity };
}

/** Maps what the registry refuses to the acknowledgment's error. */
export function registryError(e: unknown, location: { segment: string; field: number }): unknown {
  if (!(e instanceof PatientRegistryError)) return e;
  const code = e.reason === 'unknown-patient' ? Hl7ErrorCode.unknownKeyIdentifier : Hl7ErrorCode.duplicateKeyIdentifier;
  return new Hl7Error('AE', code, e.message, location);
}

/** The day of the stay or visit: PV1-44 (admit date/time), else EVN-2 (recorded), else today. */
function contactDateOf(message: Hl7Message): string {
  for (const [id, field] of [['PV1', 44], ['EVN', 2]] as const) {
    const value = valueOf(findSegment(message, id), field);
    if (/^[0-9]{8}/.test(value)) return value.slice(0, 8);
  }
  return new Date().toISOString().slice(0, 10).replaceAll('-', '');
}

export async function applyPatientMessage(tx: SqlDatabase, message: Hl7Message, trigger: string, ctx: MessageContext): Promise<void> {
  const pid = requireSegment(message, 'PID');
  const patient = patientOf(pid, ctx.site);
  const key = { siteId: ctx.site.id, IssuerOfPatientID: ctx.site.issuerOfPatientID, PatientID: patient.PatientID };
  try {
    if (trigger === 'A47' || trigger === 'A40') {
      const mrg = requireSegment(message, 'MRG');
      const prior = identifiersOf(mrg, 1, ctx.site.issuerOfPatientID);
      const priorKey = { ...key, PatientID: prior.PatientID };
      const source = `HL7 ADT^${trigger} ${ctx.messageControlId}`;
      if (trigger === 'A47') {
        await changePatientIDIn(tx, priorKey, patient.PatientID, source);
        return;
      }
      await mergePatientsIn(tx, key, priorKey, source);
    }
    const record = await registerPatientIn(tx, key, patient.demographics, patient.identity);
    // An admission or an outpatient visit is a contact: the person's exams are kept counting from the last one.
    if (trigger === 'A01' || trigger === 'A04') await recordContactIn(tx, record.id, contactDateOf(message), `HL7 ADT^${trigger} ${ctx.messageControlId}`);
  } catch (e) {
    throw registryError(e, trigger === 'A47' || trigger === 'A40' ? { segment: 'MRG', field: 1 } : { segment: 'PID', field: 3 });
  }
}
