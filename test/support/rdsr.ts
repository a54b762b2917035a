import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'rdsr.py');

/**
 * An X-Ray Radiation Dose SR (TID 10011, CT head) written by pydicom (test/support/rdsr.py):
 * complete (CTDIvol 50 mGy, DLP 800 mGy.cm, total 800), or malformed (no total, an acquisition without DLP).
 */
export function radiationDoseSR(dir: string, PatientID: string, StudyInstanceUID: string, StudyDate: string, kind: 'complete' | 'malformed', SOPInstanceUID?: string): Buffer {
  const out = path.join(dir, `${StudyInstanceUID}-${kind}.dcm`);
  execFileSync('/usr/bin/python3', [script, out, PatientID, StudyInstanceUID, StudyDate, kind, ...(SOPInstanceUID ? [SOPInstanceUID] : [])]);
  return readFileSync(out);
}
