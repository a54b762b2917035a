/**
 * Queries that ask for the person: a search naming a PatientID with an INS authority as
 * its issuer (IssuerOfPatientID = the NIR or NIA OID, as the Issuer of Patient ID macro
 * allows) finds the exams of every patient record linked to the person holding that
 * qualified INS, whatever site produced them.
 */
import { isINSOid } from './ins.ts';

export function personMatches(matches: Record<string, string>): Record<string, string> {
  const issuer = matches.IssuerOfPatientID?.trim();
  const id = matches.PatientID?.trim();
  if (!issuer || !id || !isINSOid(issuer) || /[*?\\]/.test(id)) return matches;
  const { PatientID: _id, IssuerOfPatientID: _issuer, ...rest } = matches;
  return { ...rest, PersonINS: id };
}
