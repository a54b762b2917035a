/**
 * The INS (Identité Nationale de Santé) as a validated type, with the identity
 * status and the five reference traits of the French "Référentiel national
 * d'identitovigilance" (RNIV).
 *
 * The INS matricule is the NIR (numéro d'inscription au répertoire, the social
 * security number) or, failing it, the NIA (numéro d'identification d'attente),
 * both 13 characters followed by a 2-digit key. Which one it is, and whether it
 * belongs to a test identity, is said by the OID of its assigning authority,
 * never guessed from the number.
 *
 * THE SHARING RULE: an INS leaves the site that holds it only when the identity
 * is qualified. Every exporter (DICOM headers sent to a peer, HL7, FHIR, DMP,
 * MSSanté, DRIMbox) takes the INS through `shareableINS` and never reads
 * `identity.ins` directly.
 */

/** Error of a value that is not an INS; `code` says which rule it broke. */
export type INSErrorCode = 'bad-structure' | 'bad-key' | 'unknown-oid';

export class INSError extends Error {
  override readonly name = 'INSError';
  constructor(readonly code: INSErrorCode, message: string) {
    super(message);
  }
}

/**
 * Assigning authorities of the INS, by OID. The NIR and NIA OIDs are those of the
 * ANS; the two test OIDs are those FR Core (Interop'Santé, profile
 * fr-core-patient-ins) gives for fictitious patients: 1.2.250.1.213.1.4.10 is
 * "INS-NIR-TEST" and 1.2.250.1.213.1.4.11 is "INS-NIR-DEMO" (démonstration),
 * both NIR. No test OID for the NIA was found in the published material.
 */
export const INS_OIDS = {
  NIR: '1.2.250.1.213.1.4.8',
  NIA: '1.2.250.1.213.1.4.9',
  NIR_TEST: '1.2.250.1.213.1.4.10',
  NIR_DEMO: '1.2.250.1.213.1.4.11',
} as const;

export type INSSystem = 'NIR' | 'NIA';

interface Authority {
  system: INSSystem;
  test: boolean;
}

const authorities: ReadonlyMap<string, Authority> = new Map<string, Authority>([
  [INS_OIDS.NIR, { system: 'NIR', test: false }],
  [INS_OIDS.NIA, { system: 'NIA', test: false }],
  [INS_OIDS.NIR_TEST, { system: 'NIR', test: true }],
  [INS_OIDS.NIR_DEMO, { system: 'NIR', test: true }],
]);

/** Whether an OID names an INS assigning authority (production, test or demonstration). */
export function isINSOid(oid: string): boolean {
  return authorities.has(oid);
}

declare const insBrand: unique symbol;

/** A matricule and key that passed every check of parseINS; only parseINS makes one. */
export type INS = {
  /** 13 characters: digits, with 2A or 2B at positions 6-7 for births in Corsica. */
  readonly matricule: string;
  /** 2 digits, "01" to "97". */
  readonly key: string;
  readonly system: INSSystem;
  /** A fictitious identity (test or demonstration OID): never a real patient. */
  readonly test: boolean;
  readonly oid: string;
  readonly [insBrand]: true;
};

/** The 15 characters of the INS as written in HL7, FHIR and DICOM: matricule then key. */
export function insValue(ins: INS): string {
  return ins.matricule + ins.key;
}

export function sameINS(a: INS, b: INS): boolean {
  return a.oid === b.oid && a.matricule === b.matricule && a.key === b.key;
}

/**
 * The key of a 13-character matricule: 97 − (number mod 97). For births in Corsica
 * the département 2A counts as 19 and 2B as 18 (INSEE's rule), which is the
 * number with "20" there minus 1,000,000 and 2,000,000.
 */
export function insKeyOf(matricule: string): string {
  if (!/^[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}$/.test(matricule)) {
    throw new INSError('bad-structure', 'an INS matricule is 13 characters: digits, with 2A or 2B at positions 6-7 only');
  }
  const digits = matricule.slice(0, 5) + (matricule.slice(5, 7) === '2A' ? '19' : matricule.slice(5, 7) === '2B' ? '18' : matricule.slice(5, 7)) + matricule.slice(7);
  // 13 digits stay below 2^53: the remainder is exact in a double.
  return String(97 - (Number(digits) % 97)).padStart(2, '0');
}

/** Whether the 2-digit key matches the 13-character matricule. */
export function isValidINSKey(matricule: string, key: string): boolean {
  if (!/^[0-9]{2}$/.test(key)) return false;
  try {
    return insKeyOf(matricule) === key;
  } catch {
    return false;
  }
}

/**
 * What the matricule's structure must be, as INSEE publishes it for the NIR (the NIA
 * has the same layout). Accepted, position by position:
 *   1      sex: 1 or 2; 3 or 4 (foreign-born person being registered); 7 or 8 (temporary number)
 *   2-3    year of birth, 00-99
 *   4-5    month of birth 01-12; 20 (unknown); 30-42 and 50-99 (the pseudo-months INSEE
 *          gives when the civil-status document has no month)
 *   6-7    département 01-99, or 2A/2B (Corsica since 1976); 97/98 (overseas) take one more
 *          digit from the commune, 99 means born abroad (then 8-10 is the country code)
 *   8-10   commune or country, 3 digits
 *   11-13  order number 001-999
 * Rejected: sex 0, 5, 6, 9; month 00, 13-19, 21-29, 43-49; département 00; order 000.
 */
function structureProblem(matricule: string): string | undefined {
  if (!/^[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}$/.test(matricule)) {
    return 'a matricule is 13 characters: digits, with 2A or 2B at positions 6-7 only';
  }
  if (!'123478'.includes(matricule[0]!)) return `sex digit ${matricule[0]} is none of 1, 2, 3, 4, 7, 8`;
  const month = Number(matricule.slice(3, 5));
  if (!((month >= 1 && month <= 12) || month === 20 || (month >= 30 && month <= 42) || month >= 50)) {
    return `month ${matricule.slice(3, 5)} is neither 01-12 nor one of INSEE's codes for an unknown month (20, 30-42, 50-99)`;
  }
  if (matricule.slice(5, 7) === '00') return 'département 00 does not exist';
  if (matricule.slice(10, 13) === '000') return 'order number 000 does not exist';
  return undefined;
}

/**
 * An INS from its 15 characters (matricule then key; spaces of the printed form are
 * ignored, lower-case 2a/2b accepted) and the OID of its assigning authority.
 * Throws INSError: 'unknown-oid', 'bad-structure' or 'bad-key'.
 */
export function parseINS(value: string, oid: string): INS {
  const authorityOid = oid.trim();
  const authority = authorities.get(authorityOid);
  if (!authority) {
    throw new INSError('unknown-oid', `${oid} is not the OID of an INS authority (NIR ${INS_OIDS.NIR}, NIA ${INS_OIDS.NIA}, test ${INS_OIDS.NIR_TEST}, demonstration ${INS_OIDS.NIR_DEMO})`);
  }
  const compact = value.replace(/ /g, '').toUpperCase();
  if (compact.length !== 15) {
    throw new INSError('bad-structure', `an INS is 15 characters (13 of matricule, 2 of key), not ${compact.length}`);
  }
  const matricule = compact.slice(0, 13);
  const key = compact.slice(13);
  const problem = structureProblem(matricule);
  if (problem) throw new INSError('bad-structure', `not an INS matricule: ${problem}`);
  if (!/^[0-9]{2}$/.test(key)) throw new INSError('bad-structure', 'the key of an INS is 2 digits');
  if (insKeyOf(matricule) !== key) {
    // The expected key is not given: the message may reach a log, and with it the INS could be rebuilt.
    throw new INSError('bad-key', 'the key does not match the matricule (97 − matricule mod 97)');
  }
  return Object.freeze({ matricule, key, system: authority.system, test: authority.test, oid: authorityOid }) as INS;
}

/**
 * Identity statuses of the RNIV. An identity is "recovered" when its INS and traits
 * came from the INSi teleservice, "validated" when its traits were checked against
 * an identity document, "qualified" when both are true; otherwise "provisional".
 */
export type IdentityStatus = 'provisional' | 'recovered' | 'validated' | 'qualified';

export const identityStatusLabels: Readonly<Record<IdentityStatus, string>> = {
  provisional: 'Identité provisoire',
  recovered: 'Identité récupérée',
  validated: 'Identité validée',
  qualified: 'Identité qualifiée',
};

/** The status the two checks give: qualified = recovered by INSi and validated by a document. */
export function identityStatusOf(checks: { recoveredByINSi: boolean; validatedByDocument: boolean }): IdentityStatus {
  if (checks.recoveredByINSi) return checks.validatedByDocument ? 'qualified' : 'recovered';
  return checks.validatedByDocument ? 'validated' : 'provisional';
}

/**
 * Sex as a reference trait: M or F, as INSi returns them; I (indéterminé) only for a
 * local identity that INSi has not confirmed, as the RNIV allows at birth.
 */
export type ReferenceSex = 'M' | 'F' | 'I';

/**
 * A birth date as civil status gives it: the day, or the day and month, may be unknown
 * (births abroad, some old records). What INSi returns for such dates, and what the
 * RNIV says to display, is applied where dates are shown or sent, not here.
 */
export interface BirthDate {
  readonly year: number;
  /** 1-12, absent when unknown. */
  readonly month?: number;
  /** 1-31, absent when unknown (and then when the month is unknown too). */
  readonly day?: number;
}

/** The five reference traits ("traits stricts") that, with the matricule, make the INS. */
export interface ReferenceTraits {
  /** Nom de naissance, as civil status writes it. */
  readonly birthName: string;
  /** Prénoms de naissance in civil-status order; the first is the "premier prénom". */
  readonly firstNames: readonly string[];
  readonly sex: ReferenceSex;
  readonly birthDate: BirthDate;
  /** INSEE code of the birth place: 5 characters, a commune (2A/2B for Corsica, 97x overseas) or 99 + a country code for births abroad. Absent when unknown. */
  readonly birthPlaceCode?: string;
}

export interface PatientIdentity {
  readonly ins?: INS;
  readonly status: IdentityStatus;
  readonly traits: ReferenceTraits;
}

/** The premier prénom, or undefined when civil status records none. */
export function firstFirstName(traits: ReferenceTraits): string | undefined {
  return traits.firstNames[0];
}

/** 5 characters: digits, or 2A/2B followed by 3 digits. */
export function isINSEEBirthPlaceCode(code: string): boolean {
  return /^(?:[0-9]{2}|2[AB])[0-9]{3}$/.test(code) && !code.startsWith('00');
}

export function isBornAbroad(traits: ReferenceTraits): boolean {
  return traits.birthPlaceCode?.startsWith('99') ?? false;
}

/** A birth date that exists: a known day needs a known month, and the day must be in that month. */
export function isValidBirthDate(d: BirthDate): boolean {
  if (!Number.isInteger(d.year) || d.year < 1800 || d.year > 9999) return false;
  if (d.month === undefined) return d.day === undefined;
  if (!Number.isInteger(d.month) || d.month < 1 || d.month > 12) return false;
  if (d.day === undefined) return true;
  const daysInMonth = new Date(Date.UTC(d.year, d.month, 0)).getUTCDate();
  return Number.isInteger(d.day) && d.day >= 1 && d.day <= daysInMonth;
}

/**
 * The INS an exporter may send outside the site, or undefined: only a qualified
 * identity's INS is shared (RNIV). Every exporter calls this; a provisional,
 * recovered or validated identity travels with its local identifiers and traits only.
 */
export function shareableINS(identity: PatientIdentity): INS | undefined {
  return identity.status === 'qualified' ? identity.ins : undefined;
}
