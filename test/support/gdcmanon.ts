import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { tagToHex, type DicomDataset } from '../../src/dicom/dataset.ts';
import { parsePart10 } from '../../src/dicom/part10-parser.ts';

const run = promisify(execFile);

/** GDCM's implementation of the Basic Application Level Confidentiality Profile (Debian libgdcm-tools). */
export const gdcmanonPath = '/usr/bin/gdcmanon';
export const haveGdcmanon = existsSync(gdcmanonPath);
if (!haveGdcmanon) console.warn('\n*** gdcmanon is missing (apt-get install libgdcm-tools): de-identification comparisons are SKIPPED ***\n');

let certificate: string | undefined;

/**
 * gdcmanon --de-identify encrypts what it removes into the Encrypted Attributes Sequence
 * (PS3.15 E.1.1): it wants an X.509 certificate, made here once with openssl.
 */
async function certificateFile(): Promise<string> {
  if (certificate) return certificate;
  const dir = mkdtempSync(path.join(tmpdir(), 'atrium-gdcmanon-'));
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=atrium-test']);
  certificate = path.join(dir, 'cert.pem');
  return certificate;
}

/**
 * The object as gdcmanon --de-identify (basic profile) leaves it. gdcmanon refuses an object
 * that says it was de-identified already (Patient Identity Removed, De-identification Method
 * and its code sequence): with `asIfNotDeidentified`, DCMTK's dcmodify takes those out first
 * (they hold no identifying value), so that gdcmanon looks at everything else.
 */
export async function gdcmanon(file: Buffer, asIfNotDeidentified = false): Promise<Buffer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'atrium-gdcmanon-'));
  const input = path.join(dir, 'in.dcm');
  const output = path.join(dir, 'out.dcm');
  writeFileSync(input, file);
  if (asIfNotDeidentified) {
    await run('dcmodify', ['-nb', '-ie', ...['(0012,0062)', '(0012,0063)', '(0012,0064)', '(0028,0303)'].flatMap((t) => ['-ea', t]), input]);
  }
  await run(gdcmanonPath, ['--de-identify', '--certificate', await certificateFile(), '-i', input, '-o', output]);
  return readFileSync(output);
}

/** Every element of a dataset, nested ones included, as "GGGGEEEE" paths ("00400275.0.00400009") with their raw value. */
export function flatten(ds: DicomDataset, prefix = ''): Map<string, { vr: string; value?: string; items?: number }> {
  const out = new Map<string, { vr: string; value?: string; items?: number }>();
  for (const el of ds.values()) {
    const key = prefix + tagToHex(el.tag);
    if (el.items) {
      out.set(key, { vr: 'SQ', items: el.items.length });
      el.items.forEach((item, i) => {
        for (const [k, v] of flatten(item, `${key}.${i}.`)) out.set(k, v);
      });
    } else {
      out.set(key, { vr: el.vr, ...(el.value ? { value: el.value.toString('latin1').replace(/[\0 ]+$/, '') } : {}) });
    }
  }
  return out;
}

export function elementsOf(file: Buffer): Map<string, { vr: string; value?: string; items?: number }> {
  return flatten(parsePart10(file, { bulkThreshold: 4096 }).dataset);
}

/**
 * What gdcmanon still finds to de-identify in an object: the elements it changes, empties or
 * removes, less those that are already a replacement (a UID gdcmanon regenerates in any case,
 * the attributes gdcmanon adds or rewrites about de-identification itself) and less values
 * that are dummies or pseudonyms the caller names as such.
 */
export async function leftForGdcmanon(file: Buffer, isReplacement: (path: string, value: string | undefined) => boolean): Promise<string[]> {
  const before = elementsOf(file);
  const after = elementsOf(await gdcmanon(file, true));
  const left: string[] = [];
  for (const [key, el] of before) {
    const now = after.get(key);
    if (now && now.value === el.value && now.items === el.items) continue;
    if (el.vr === 'UI') continue; // gdcmanon gives every UID of its list a new value, whatever it was
    if (/^(0012006[234]|00280303)($|\.)/.test(key)) continue; // what says the object was de-identified: taken out for gdcmanon
    if (el.items !== undefined || el.value === undefined || el.value === '') continue; // nothing in it to find
    if (isReplacement(key, el.value)) continue;
    left.push(`${key} ${el.vr} [${el.value}] -> ${now ? `[${now.value ?? ''}]` : 'removed'}`);
  }
  return left;
}
