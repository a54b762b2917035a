import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { writeZip, ZipSizeError, type ZipEntry } from './zip.ts';

const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const haveUnzip = existsSync('/usr/bin/unzip');

async function* chunks(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function writeTo(file: string, entries: ZipEntry[], zip64: 'auto' | 'always'): Promise<void> {
  await pipeline(Readable.from(writeZip(entries, { zip64 })), createWriteStream(file));
}

/** Every entry's bytes as Python's zipfile reads them (CRC checked on read). */
function readWithPython(file: string): Record<string, string> {
  const script = 'import sys,zipfile,json,hashlib\nz=zipfile.ZipFile(sys.argv[1])\nprint(json.dumps({i.filename: z.read(i).hex() for i in z.infolist()}))';
  return JSON.parse(execFileSync(python, ['-c', script, file], { encoding: 'utf8' })) as Record<string, string>;
}

describe('writeZip', () => {
  for (const zip64 of ['auto', 'always'] as const) {
    it(`writes stored entries that unzip and Python read back byte for byte (zip64: ${zip64})`, async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'atrium-zip-'));
      try {
        const whole = randomBytes(70_001);
        const streamed = randomBytes(300_003);
        const entries: ZipEntry[] = [
          { name: 'DICOMDIR', size: whole.length, data: whole },
          { name: 'DICOM/PA000001/ST000001/SE000001/IM000001', size: streamed.length, data: chunks(streamed, 65536) },
          { name: 'DICOM/EMPTY', size: 0, data: Buffer.alloc(0) },
          { name: 'DICOM/EMPTYSTR', size: 0, data: chunks(Buffer.alloc(0), 1) },
        ];
        const file = path.join(dir, 'a.zip');
        await writeTo(file, entries, zip64);
        const got = readWithPython(file);
        assert.deepEqual(Object.keys(got), entries.map((e) => e.name));
        assert.equal(got.DICOMDIR, whole.toString('hex'));
        assert.equal(got['DICOM/PA000001/ST000001/SE000001/IM000001'], streamed.toString('hex'));
        assert.equal(got['DICOM/EMPTY'], '');
        execFileSync(python, ['-m', 'zipfile', '-t', file]);
        if (haveUnzip) {
          const out = execFileSync('unzip', ['-t', file], { encoding: 'utf8' });
          assert.match(out, /No errors detected/);
          execFileSync('unzip', ['-q', file, '-d', path.join(dir, 'x')]);
          assert.deepEqual(readFileSync(path.join(dir, 'x/DICOM/PA000001/ST000001/SE000001/IM000001')), streamed);
        }
        if (zip64 === 'always') {
          // The end of central directory points at the ZIP64 end record through its locator.
          const bytes = readFileSync(file);
          assert.equal(bytes.readUInt32LE(bytes.length - 22 - 20), 0x07064b50);
          assert.equal(bytes.readUInt32LE(bytes.length - 22), 0x06054b50);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('fails when a streamed entry is not the size announced', async () => {
    const gen = writeZip([{ name: 'A', size: 10, data: chunks(Buffer.alloc(12), 4) }]);
    await assert.rejects(async () => {
      for await (const _ of gen) { /* drain */ }
    }, ZipSizeError);
  });
});
