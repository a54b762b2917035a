/**
 * What the crash tests of ingest share (test/crash-ingest.test.ts on the filesystem,
 * test/crash-ingest-s3.test.ts on S3): the identity of an acknowledged object, reading it back,
 * the journal's recovery log line, and the concurrent C-STORE (storescu) and STOW-RS senders
 * that run until the test kills the server.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { dcmtk, storescuAcknowledged } from './dcmtk.ts';
import { datasetBytes } from './part10.ts';
import { stowFiles } from './stow.ts';
import { syntheticInstance } from './synthetic.ts';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export interface Acknowledged {
  uids: { study: string; series: string; sop: string };
  /** Of the whole file (STOW-RS keeps it byte for byte), or of its dataset (a C-STORE carries no meta header). */
  sha: string;
  via: 'dimse' | 'stow-rs';
}

/** What must come back identical: the whole file sent by STOW-RS, the dataset sent by C-STORE. */
export const identity = (via: Acknowledged['via'], file: Buffer) => sha(via === 'dimse' ? datasetBytes(file) : file);

/** The object as stored, by WADO-RS in its own transfer syntax. */
export async function retrieve(url: string, token: string, uids: Acknowledged['uids']): Promise<Buffer> {
  const res = await fetch(`${url}/studies/${uids.study}/series/${uids.series}/instances/${uids.sop}`, {
    headers: { Authorization: `Bearer ${token}`, Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
  });
  assert.equal(res.status, 200, `retrieve ${uids.sop}`);
  const body = Buffer.from(await res.arrayBuffer());
  return body.subarray(body.indexOf('\r\n\r\n') + 4, body.lastIndexOf('\r\n--'));
}

export async function qidoFinds(url: string, token: string, sop: string): Promise<boolean> {
  const res = await fetch(`${url}/instances?SOPInstanceUID=${sop}`, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/dicom+json' } });
  if (res.status === 204) return false;
  assert.equal(res.status, 200);
  return ((await res.json()) as unknown[]).length === 1;
}

/** The log line of the journal's recovery, and whether it came before the server said it serves. */
export function recoveryOf(stdout: string): { before: boolean; report?: Record<string, number> } {
  const lines = stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg?: string } & Record<string, number>);
  const recovered = lines.findIndex((l) => l.msg === 'ingest journal recovered');
  const serving = lines.findIndex((l) => l.msg === 'atrium is serving');
  return { before: recovered === -1 || recovered < serving, report: recovered === -1 ? undefined : lines[recovered] };
}

export interface IngestLoadOptions {
  /** Where storescu's files are written (and removed once sent). */
  folder: string;
  dimsePort: number;
  /** The DICOMweb base URL and the token STOW-RS uses. */
  url: string;
  token: string;
  /** PatientID prefix of the objects sent. */
  patientPrefix: string;
  /** One storescu after another per worker, each with a batch of small objects. */
  dimse: { workers: number; batch: number; timeoutSeconds: number };
  /** One STOW-RS sender per entry: two objects a request, the second a large one every `everyLarge` requests. */
  stow: Array<{ everyLarge: number; large: { Rows: number; Columns: number } }>;
  /** Called with each acknowledged object, in order, until halt(). */
  onAcknowledged?: (a: Acknowledged) => void;
}

/**
 * C-STORE and STOW-RS senders running at once until halt(); after halt(), what the server
 * acknowledges is no longer counted (the test kills it then). done resolves once every sender
 * has stopped, which it does when the server dies under it.
 */
export function concurrentIngest(o: IngestLoadOptions): { acknowledged: Acknowledged[]; halt(): void; done: Promise<void> } {
  const acknowledged: Acknowledged[] = [];
  let halted = false;
  let fileSeq = 0;
  const ack = (a: Acknowledged) => {
    if (halted) return;
    acknowledged.push(a);
    o.onAcknowledged?.(a);
  };
  const dimseWorker = async (worker: number) => {
    const t = String(o.dimse.timeoutSeconds);
    while (!halted) {
      const batch = Array.from({ length: o.dimse.batch }, () => {
        const inst = syntheticInstance({ PatientID: `${o.patientPrefix}-D${worker}`, Rows: 16, Columns: 16 });
        const file = path.join(o.folder, `${worker}-${fileSeq++}.dcm`);
        writeFileSync(file, inst.file);
        return { file, inst };
      });
      const result = await dcmtk('storescu', ['-v', '-to', t, '-ta', t, '-td', t, '-aec', 'ATRIUM', '127.0.0.1', String(o.dimsePort), ...batch.map((b) => b.file)], o.dimse.timeoutSeconds * 3000);
      for (const file of storescuAcknowledged(result.output)) {
        const sent = batch.find((b) => b.file === file)!;
        ack({ uids: sent.inst.uids, sha: identity('dimse', sent.inst.file), via: 'dimse' });
      }
      for (const b of batch) unlinkSync(b.file);
      if (result.code !== 0) break;
    }
  };
  const stowWorker = async (worker: number, everyLarge: number, large: { Rows: number; Columns: number }) => {
    for (let n = 0; !halted; n++) {
      // Now and then an object too large for the journal (flushed where it lies; on S3, a larger PUT).
      const insts = [
        syntheticInstance({ PatientID: `${o.patientPrefix}-S${worker}`, Rows: 16, Columns: 16 }),
        n % everyLarge === everyLarge - 1
          ? syntheticInstance({ PatientID: `${o.patientPrefix}-S${worker}`, ...large })
          : syntheticInstance({ PatientID: `${o.patientPrefix}-S${worker}`, Rows: 16, Columns: 16 }),
      ];
      let status: number;
      try {
        const res = await stowFiles(o.url, o.token, insts.map((i) => i.file));
        status = res.status;
        await res.arrayBuffer();
      } catch {
        break; // the server died under the request
      }
      assert.equal(status, 200);
      for (const i of insts) ack({ uids: i.uids, sha: identity('stow-rs', i.file), via: 'stow-rs' });
    }
  };
  const workers = [
    ...Array.from({ length: o.dimse.workers }, (_, i) => dimseWorker(i)),
    ...o.stow.map((s, i) => stowWorker(i, s.everyLarge, s.large)),
  ];
  return { acknowledged, halt: () => { halted = true; }, done: Promise.all(workers).then(() => undefined) };
}
