import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** Real DICOM objects written by others: the test files of Debian's python3-pydicom. */
export const pydicomTestFiles = '/usr/lib/python3/dist-packages/pydicom/data/test_files';
export const pydicomCharsetFiles = '/usr/lib/python3/dist-packages/pydicom/data/charset_files';

export const havePydicomFiles = existsSync(pydicomTestFiles);
if (!havePydicomFiles) {
  console.warn('\n*** pydicom test files are missing (apt-get install python3-pydicom): tests that need them are SKIPPED ***\n');
}

export function readTestFile(name: string): Buffer {
  return readFileSync(name.startsWith('chr') ? path.join(pydicomCharsetFiles, name) : path.join(pydicomTestFiles, name));
}
