/**
 * STOW-RS against hostile bodies (fixed seed, bounded count): mutated multipart/related
 * bodies (broken boundaries, truncated parts, huge header lines, missing CRLF, wrong content
 * types, random bytes) and mutated DICOM objects in well-formed bodies. Every request gets an
 * answer, a problem document or a STOW-RS response, never a 5xx; the server goes on storing,
 * and what it stored before is served unchanged. ATRIUM_FUZZ_RUNS and ATRIUM_FUZZ_SEED make a
 * longer run (test/support/fuzz.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { fuzz, mutateBytes, type Fuzz } from './support/fuzz.ts';
import { havePydicomFiles, readTestFile } from './support/pydicom-files.ts';
import { stowBody, stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { boundaryOf, readMultipartStream } from '../web/src/viewer/multipart-stream.ts';

/** The body limit of this Atrium: a case beyond it may also be cut without an answer. */
const maxRequestBytes = 1024 * 1024;

interface Case { what: string; body: Buffer; contentType?: string; tooLarge?: boolean }

const latin1 = (s: string) => Buffer.from(s, 'latin1');

/** A multipart/related body broken in one of the ways a careless or hostile client breaks it. */
function brokenBody(f: Fuzz, files: Buffer[]): Case {
  const boundary = f.random() < 0.5 ? 'fuzz-boundary' : `b${f.int(1e9)}`;
  const valid = stowBody(files.slice(0, 1 + f.int(files.length)), boundary);
  const type = valid.contentType;
  const b = valid.body;
  switch (f.int(14)) {
    case 0: return { what: 'another boundary in the body than in the header', body: b, contentType: type.replace(boundary, `${boundary}x`) };
    case 1: return { what: 'no boundary parameter', body: b, contentType: 'multipart/related; type="application/dicom"' };
    case 2: return { what: 'a boundary of 300 characters', body: b, contentType: `multipart/related; type="application/dicom"; boundary=${'b'.repeat(300)}` };
    case 3: return { what: 'a quoted, empty or odd boundary', body: b, contentType: `multipart/related; boundary=${f.pick(['""', '"', '";"', '\\', 'a"b', ' '])}` };
    case 4: return { what: 'a truncated body', body: b.subarray(0, f.int(b.length)), contentType: type };
    case 5: return { what: 'no close delimiter', body: b.subarray(0, b.lastIndexOf(`--${boundary}--`)), contentType: type };
    case 6: { // a part header line far beyond the header limit
      const huge = latin1(`--${boundary}\r\nContent-Type: application/dicom\r\nX-Long: ${'x'.repeat(16 * 1024 + f.int(64 * 1024))}\r\n\r\n`);
      return { what: 'a huge part header line', body: Buffer.concat([huge, files[0]!, latin1(`\r\n--${boundary}--\r\n`)]), contentType: type };
    }
    case 7: { // the blank line after a part's headers, or the CRLF before a delimiter, missing
      const text = b.toString('latin1');
      const broken = f.random() < 0.5 ? text.replace('\r\n\r\n', '\r\n') : text.replaceAll(`\r\n--${boundary}`, `--${boundary}`);
      return { what: 'a missing CRLF', body: latin1(broken), contentType: type };
    }
    case 8: { // a part of another type, or a malformed part Content-Type
      const partType = f.pick(['text/plain', 'application/json', 'application/dicom+json', '', ';;;', 'application/dicom; transfer-syntax=1.2.3', 'x'.repeat(2000)]);
      return { what: `a part of type ${JSON.stringify(partType.slice(0, 40))}`, body: latin1(b.toString('latin1').replace('Content-Type: application/dicom', `Content-Type: ${partType}`)), contentType: type };
    }
    case 9: return { what: 'a request of another type', body: b, contentType: f.pick(['multipart/mixed; boundary=fuzz-boundary', 'application/dicom', 'application/json', 'text/plain', 'multipart/related; type="text/plain"; boundary=fuzz-boundary', '', 'multipart/related; type=']) };
    case 10: { // random bytes in place of the body, or before it (a preamble beyond its limit)
      const junk = Buffer.alloc(1 + f.int(f.random() < 0.3 ? 100 * 1024 : 512));
      for (let i = 0; i < junk.length; i++) junk[i] = f.int(256);
      return { what: 'random bytes', body: f.random() < 0.5 ? junk : Buffer.concat([junk, b]), contentType: type };
    }
    case 11: { // many empty parts, headers without a colon, a header block never ended
      const weird = f.pick([
        `--${boundary}\r\n\r\n\r\n`.repeat(1 + f.int(200)) + `--${boundary}--\r\n`,
        `--${boundary}\r\nno colon here\r\n\r\nxx\r\n--${boundary}--\r\n`,
        `--${boundary}\r\nContent-Type: application/dicom\r\n`,
        `--${boundary}--\r\n`,
        `--${boundary}`,
        '',
      ]);
      return { what: 'an odd multipart structure', body: latin1(weird), contentType: type };
    }
    case 12: return { what: 'a body beyond the size limit', body: Buffer.concat([b, Buffer.alloc(maxRequestBytes)]), contentType: type, tooLarge: true };
    default: { // the raw bytes mutated anywhere, DICOM parts included
      return { what: 'mutated multipart bytes', body: mutateBytes(f, b), contentType: type };
    }
  }
}

/** What a STOW-RS answer may be: a STOW-RS response (DICOM JSON) or a problem document, never a 5xx. */
async function assertClearAnswer(r: Response, c: Case, n: number): Promise<number> {
  const body = await r.text();
  const where = `case ${n} (${c.what}): ${r.status} ${body.slice(0, 300)}`;
  assert.ok(r.status < 500, where);
  const type = r.headers.get('content-type') ?? '';
  if (r.status === 200 || r.status === 202 || r.status === 409) {
    // 409 is a STOW-RS response whose every object was refused.
    assert.match(type, /^application\/(dicom\+json|problem\+json)/, where);
  } else {
    assert.ok(r.status >= 400, where);
    assert.match(type, /^application\/problem\+json/, where);
  }
  JSON.parse(body);
  return r.status;
}

for (const engine of testDatabases()) describe(`STOW-RS fuzz (${engine.name})`, () => {
  let atrium: RunningAtrium;
  let cleanup: () => Promise<void>;
  let token: string;
  const kept = syntheticInstance({ PatientID: 'FUZZ-KEPT', Rows: 16, Columns: 16 });
  const seeds = [
    syntheticInstance({ PatientID: 'FUZZ-1', Rows: 8, Columns: 8, NumberOfFrames: 2 }).file,
    syntheticInstance({ PatientID: 'FUZZ-2', Rows: 4, Columns: 4 }).file,
    ...(havePydicomFiles ? ['CT_small.dcm', 'MR_small_implicit.dcm', 'ExplVR_BigEnd.dcm', 'image_dfl.dcm', 'JPEG2000.dcm', 'rtplan.dcm', 'UN_sequence.dcm', 'reportsi.dcm'].map(readTestFile) : []),
  ];

  const post = (c: Case) => fetch(`${atrium.dicomweb}/studies`, {
    method: 'POST', body: new Uint8Array(c.body),
    headers: { authorization: `Bearer ${token}`, ...(c.contentType !== undefined ? { 'content-type': c.contentType } : {}) },
  });

  before(async () => {
    const db = await engine.open();
    cleanup = db.cleanup;
    atrium = await startAtrium({ index: db.config, configure: (config) => { config.http.maxRequestBytes = maxRequestBytes; } });
    token = atrium.tokens['CHU-NORD']!;
    const r = await stowFiles(atrium.dicomweb, token, [kept.file]);
    assert.equal(r.status, 200, await r.text());
  });
  after(() => atrium?.close());

  /** The server still stores, and serves what it stored before byte for byte. */
  async function stillServing(): Promise<void> {
    const fresh = syntheticInstance({ PatientID: 'FUZZ-AFTER', Rows: 4, Columns: 4 });
    const stored = await stowFiles(atrium.dicomweb, token, [fresh.file]);
    assert.equal(stored.status, 200, await stored.text());
    const { study, series, sop } = kept.uids;
    const r = await fetch(`${atrium.dicomweb}/studies/${study}/series/${series}/instances/${sop}`, {
      headers: { authorization: `Bearer ${token}`, accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
    });
    assert.equal(r.status, 200);
    const parts = [];
    for await (const part of readMultipartStream(r.body!, boundaryOf(r.headers.get('content-type'))!)) parts.push(Buffer.from(part.body));
    assert.equal(parts.length, 1);
    assert.ok(parts[0]!.equals(kept.file), 'the object stored before the fuzz is served byte-identical');
  }

  // Found by this fuzz: a NUL inside a text value reached PostgreSQL, which cannot store one (500).
  it('stores an object whose text values hold a NUL byte, and indexes them without it', async () => {
    const withNul = syntheticInstance({ PatientID: 'FUZZ-NUL', PatientName: 'Dupont\0^Marie', Rows: 4, Columns: 4 });
    const r = await stowFiles(atrium.dicomweb, token, [withNul.file]);
    assert.equal(r.status, 200, await r.text());
    const found = await fetch(`${atrium.dicomweb}/studies?PatientID=FUZZ-NUL&includefield=00100010`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(found.status, 200);
    const [study] = (await found.json()) as Array<Record<string, { Value?: Array<{ Alphabetic?: string }> }>>;
    assert.equal(study?.['00100010']?.Value?.[0]?.Alphabetic, 'Dupont^Marie');
  });

  const bodies = fuzz(0x5700_f022);
  it(`answers ${bodies.count(300)} broken multipart bodies with a problem or a STOW-RS response, never a 5xx (seed ${bodies.seed})`, { timeout: bodies.timeout(120_000) }, async () => {
    const statuses = new Map<number, number>();
    for (let n = 0; n < bodies.count(300); n++) {
      const c = brokenBody(bodies, seeds);
      let r: Response;
      try {
        r = await post(c);
      } catch (e) {
        // Past the body limit, the server may answer 413 and close before the client has sent all.
        if (c.tooLarge) continue;
        assert.fail(`case ${n} (${c.what}): no answer: ${(e as Error).message}`);
      }
      const status = await assertClearAnswer(r, c, n);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    assert.ok([...statuses.keys()].some((s) => s >= 400), `refusals: ${JSON.stringify([...statuses])}`);
    await stillServing();
  });

  const objects = fuzz(0xd1c0_f022);
  it(`answers ${objects.count(200)} mutated DICOM objects with a stored object or a clear refusal, never a 5xx (seed ${objects.seed})`, { timeout: objects.timeout(120_000) }, async () => {
    const statuses = new Map<number, number>();
    for (let n = 0; n < objects.count(200); n++) {
      const file = mutateBytes(objects, objects.pick(seeds));
      const c: Case = { what: 'a mutated DICOM object', ...stowBody([file]) };
      const r = await post(c);
      const status = await assertClearAnswer(r, c, n);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    assert.ok(statuses.has(409), `refusals: ${JSON.stringify([...statuses])}`);
    await stillServing();
  });
});
