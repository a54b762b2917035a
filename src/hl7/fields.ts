/**
 * HL7 v2 data types read into what Atrium keeps: CX identifiers, XPN and XCN names
 * as DICOM person names, TS timestamps as DICOM dates and times, sexes.
 */
import { Hl7Error, Hl7ErrorCode } from './acknowledgment.ts';
import { componentOf, repetitionsOf, valueOf, type Segment } from './message.ts';
import { isINSOid, type IdentityStatus } from '../patients/ins.ts';

/** HL7's explicit null: the field is to be cleared. */
export const hl7Null = '""';

/** A DICOM PN (family^given^middle^prefix^suffix) from XPN or XCN components, trailing empties dropped. */
function personName(family: string, given: string, middle: string, suffix: string, prefix: string): string {
  return [family, given, middle, prefix, suffix].join('^').replace(/\^+$/, '');
}

/**
 * PID-5: the birth name (name type L in the French PAM profile) when present, else the
 * used name (D), else the first repetition. Undefined when absent, null when "".
 */
export function patientNameOf(pid: Segment): string | null | undefined {
  const reps = repetitionsOf(pid, 5);
  if (reps.length === 0) return undefined;
  if (reps.length === 1 && componentOf(reps[0], 1) === hl7Null) return null;
  const rep = reps.find((r) => componentOf(r, 7) === 'L') ?? reps.find((r) => componentOf(r, 7) === 'D') ?? reps[0]!;
  const name = personName(componentOf(rep, 1), componentOf(rep, 2), componentOf(rep, 3), componentOf(rep, 4), componentOf(rep, 5));
  return name === '' ? undefined : name;
}

/** An XCN (id^family^given^middle^suffix^prefix...) as a DICOM PN. */
export function xcnName(seg: Segment | undefined, field: number): string | undefined {
  const rep = repetitionsOf(seg, field)[0];
  if (!rep) return undefined;
  const name = personName(componentOf(rep, 2), componentOf(rep, 3), componentOf(rep, 4), componentOf(rep, 5), componentOf(rep, 6));
  return name === '' ? undefined : name;
}

/** A TS (YYYYMMDD[HHMM[SS[.S+]]][+/-ZZZZ]) as DICOM DA and TM; undefined when empty. */
export function timestampOf(value: string, where: { segment: string; field: number }): { date: string; time?: string } | undefined {
  if (value === '' || value === hl7Null) return undefined;
  const m = /^(\d{8})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?(?:[+-]\d{4})?$/.exec(value);
  if (!m || !validDate(m[1]!)) {
    throw new Hl7Error('AE', Hl7ErrorCode.dataTypeError, `${where.segment}-${where.field} ${JSON.stringify(value)} is not an HL7 date/time (YYYYMMDD[HHMM[SS]])`, where);
  }
  return m[2] ? { date: m[1]!, time: m[2] } : { date: m[1]! };
}

function validDate(d: string): boolean {
  const y = Number(d.slice(0, 4)), mo = Number(d.slice(4, 6)), day = Number(d.slice(6, 8));
  const date = new Date(Date.UTC(y, mo - 1, day));
  return date.getUTCFullYear() === y && date.getUTCMonth() === mo - 1 && date.getUTCDate() === day;
}

/** PID-7 as a DICOM date. */
export function birthDateOf(pid: Segment): string | null | undefined {
  const v = valueOf(pid, 7);
  if (v === hl7Null) return null;
  return timestampOf(v, { segment: 'PID', field: 7 })?.date;
}

/** PID-8 (HL7 table 0001) as DICOM PatientSex: M, F, O (others, ambiguous, unknown). */
export function sexOf(pid: Segment): string | null | undefined {
  const v = valueOf(pid, 8);
  if (v === '') return undefined;
  if (v === hl7Null) return null;
  if (v === 'M' || v === 'F') return v;
  if (v === 'O' || v === 'A' || v === 'N' || v === 'U') return 'O';
  throw new Hl7Error('AE', Hl7ErrorCode.tableValueNotFound, `PID-8 ${JSON.stringify(v)} is not a sex of HL7 table 0001 (M, F, O, U, A, N)`, { segment: 'PID', field: 8 });
}

/** The identifiers of a patient in PID-3 (or MRG-1): the site's own and the INS. */
export interface PatientIdentifiers {
  PatientID: string;
  ins?: { ins: string; oid: string; repetition: number };
}

function isInsRepetition(rep: string[][]): boolean {
  const type = componentOf(rep, 5);
  if (type === 'INS-C') return false;
  return type === 'INS' || isINSOid(componentOf(rep, 4, 2)) || componentOf(rep, 4, 1).startsWith('ASIP-SANTE-INS');
}

/**
 * Reads a CX list: the site's PatientID is the repetition whose assigning authority
 * (namespace or universal ID) is the site's issuer, or the only one without an authority;
 * the INS is the repetition of type INS (French PAM: ^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS).
 */
export function identifiersOf(seg: Segment, field: number, issuer: string): PatientIdentifiers {
  const where = { segment: seg.id, field };
  const reps = repetitionsOf(seg, field);
  let own: string | undefined;
  const unassigned: string[] = [];
  let ins: PatientIdentifiers['ins'];
  reps.forEach((rep, i) => {
    const id = componentOf(rep, 1);
    if (id === '') return;
    if (isInsRepetition(rep)) {
      const oid = componentOf(rep, 4, 2);
      if (!isINSOid(oid)) {
        throw new Hl7Error('AE', Hl7ErrorCode.tableValueNotFound, `${seg.id}-${field} INS assigning authority ${JSON.stringify(oid)} is not an INS OID (1.2.250.1.213.1.4.8 to .11)`, { ...where, repetition: i + 1, component: 4 });
      }
      ins = { ins: id, oid, repetition: i + 1 };
      return;
    }
    const namespace = componentOf(rep, 4, 1), universal = componentOf(rep, 4, 2);
    if (namespace === issuer || universal === issuer) own ??= id;
    else if (namespace === '' && universal === '') unassigned.push(id);
  });
  own ??= unassigned.length === 1 ? unassigned[0] : undefined;
  if (own === undefined) {
    throw new Hl7Error('AE', Hl7ErrorCode.requiredFieldMissing, `${seg.id}-${field} has no patient identifier assigned by ${issuer} (the sending site's issuer)`, where);
  }
  return { PatientID: own, ...(ins ? { ins } : {}) };
}

/** PID-32 identity reliability codes of the French PAM profile, as RNIV identity statuses. */
const reliabilityCodes: Readonly<Record<string, IdentityStatus>> = {
  PROV: 'provisional',
  RECUP: 'recovered',
  VALI: 'validated',
  QUAL: 'qualified',
};

/** The identity status among PID-32's repetitions (others, such as DOUTE or FICTI, are attributes). */
export function identityStatusOf(pid: Segment): IdentityStatus | undefined {
  for (const rep of repetitionsOf(pid, 32)) {
    const status = reliabilityCodes[componentOf(rep, 1)];
    if (status) return status;
  }
  return undefined;
}

/** The reference traits of the birth-name repetition of PID-5 (type L): birth name and birth first names. */
export function birthNameTraitsOf(pid: Segment): { birthName?: string; firstNames?: string[] } {
  const rep = repetitionsOf(pid, 5).find((r) => componentOf(r, 7) === 'L');
  if (!rep) return {};
  const birthName = componentOf(rep, 1);
  const firstNames = [componentOf(rep, 2), ...componentOf(rep, 3).split(' ')].filter((n) => n !== '' && n !== hl7Null);
  return { ...(birthName !== '' && birthName !== hl7Null ? { birthName } : {}), ...(firstNames.length > 0 ? { firstNames } : {}) };
}

/** INSEE code of the birth place: PID-11 repetition of address type BDL, component 9 (French PAM). */
export function birthPlaceOf(pid: Segment): string | undefined {
  const rep = repetitionsOf(pid, 11).find((r) => componentOf(r, 7) === 'BDL');
  const code = rep ? componentOf(rep, 9) : '';
  return code === '' ? undefined : code;
}
