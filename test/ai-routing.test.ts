/**
 * AI routing with the forwarding machinery: a rule sends every CT of a site to an AI node
 * (Debian's Orthanc plays it) and to a second one that accepts the connection and never
 * answers. The first node's result (a structured report about the study) comes back by
 * C-STORE into the same study, recorded with its source (the node's AE title in the stored
 * object's meta header); the silent node times out after its peer's `timeoutSeconds`, its
 * rows wait for a retry with the error, and the study is unaffected.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { dcmtk, freePort, haveDcmtk } from './support/dcmtk.ts';
import { haveOrthanc, startOrthancPeer, type RunningOrthanc } from './support/orthanc.ts';
import { havePydicomFiles, readTestFile } from './support/pydicom-files.ts';
import { stowFiles } from './support/stow.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { Tags } from '../src/dicom/dataset.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';
import { newUID } from '../src/dicom/uids.ts';
import type { DestinationStatus } from '../src/index/forwarding-queue.ts';

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('AI routing: exams sent by rule to an AI node, its results back into the study', { skip: !haveOrthanc || !haveDcmtk || !havePydicomFiles }, () => {
  let atrium: RunningAtrium;
  let orthanc: RunningOrthanc;
  let silent: net.Server;
  const silentSockets: net.Socket[] = [];
  const work = mkdtempSync(path.join(tmpdir(), 'atrium-ai-'));
  const ct = syntheticInstance({ PatientID: 'AI-1', PatientName: 'Poumon^Paul', Modality: 'CT', Rows: 8, Columns: 8 });

  before(async () => {
    silent = net.createServer((socket) => {
      silentSockets.push(socket); // accepts, reads, never answers
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const silentPort = (silent.address() as net.AddressInfo).port;
    const orthancDicom = await freePort();
    atrium = await startAtrium({
      dimse: true, forwarding: true,
      configure: (c) => {
        c.peers = [
          // The AI node: sent CTs by the rule, and stores its results back (may.store).
          { aeTitle: 'AINODE', host: '127.0.0.1', port: orthancDicom, site: 'CHU-NORD', may: { store: true, query: false, retrieve: false } },
          { aeTitle: 'SILENTAI', host: '127.0.0.1', port: silentPort, site: 'CHU-NORD', may: { store: false, query: false, retrieve: false }, timeoutSeconds: 2 },
        ];
        c.routing = { ...c.routing, rules: [{ name: 'ct-to-ai', sites: ['CHU-NORD'], modalities: ['CT'], destinations: ['AINODE', 'SILENTAI'] }], retry: { baseDelayMs: 60_000, maxDelayMs: 60_000, maxAttempts: 5 }, pollIntervalMs: 100 };
      },
    });
    orthanc = await startOrthancPeer(path.join(work, 'orthanc'), {
      httpPort: await freePort(), dicomPort: orthancDicom, aeTitle: 'AINODE',
      modalities: { atrium: ['ATRIUM', '127.0.0.1', atrium.dimse!.port] },
    });
  });

  after(async () => {
    for (const s of silentSockets) s.destroy();
    await new Promise<void>((r) => silent?.close(() => r()));
    await orthanc?.stop();
    await atrium?.close();
  });

  const forwardingStatus = async (destination: string) => {
    const r = await fetch(atrium.dicomweb.replace(/\/dicom-web$/, '/api/forwarding'), { headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}` } });
    return ((await r.json()) as { destinations: DestinationStatus[] }).destinations.find((d) => d.destination === destination);
  };

  it('sends the CT to the AI node by rule, and files the node\'s report in the same study with its source', async () => {
    assert.equal((await stowFiles(atrium.dicomweb, atrium.tokens['CHU-NORD']!, [ct.file])).status, 200);
    await waitFor('the AI node to receive the CT', async () => {
      const found = await orthanc.rest<string[]>('POST', '/tools/find', { Level: 'Instance', Query: { SOPInstanceUID: ct.uids.sop } });
      if (found.length === 0) throw new Error(JSON.stringify(await forwardingStatus('AINODE')));
      return true;
    });
    // The AI node's result: a structured report about the study, made from a real SR (DCMTK's dcmodify puts it in the study).
    const sr = path.join(work, 'result.dcm');
    writeFileSync(sr, readTestFile('test-SR.dcm'));
    const resultUID = newUID();
    const modified = await dcmtk('dcmodify', ['-nb', '-i', `(0020,000D)=${ct.uids.study}`, '-i', `(0008,0018)=${resultUID}`, '-i', `(0020,000E)=${newUID()}`,
      '-i', '(0010,0020)=AI-1', '-i', '(0010,0010)=Poumon^Paul', sr]);
    assert.equal(modified.code, 0, modified.output);
    const uploaded = await orthanc.rest<{ ID: string }>('POST', '/instances', readFileSync(sr));
    const sent = await orthanc.rest<{ FailedInstancesCount: number; InstancesCount: number }>('POST', '/modalities/atrium/store', { Resources: [uploaded.ID], Synchronous: true });
    assert.equal(sent.FailedInstancesCount, 0);
    // In the study now, beside the CT, recorded as sent by the AI node.
    const stored = await atrium.archive.retriever.findInstances({ StudyInstanceUID: ct.uids.study });
    assert.deepEqual(stored.map((i) => i.SOPInstanceUID).sort(), [ct.uids.sop, resultUID].sort());
    const result = stored.find((i) => i.SOPInstanceUID === resultUID)!;
    const chunks: Buffer[] = [];
    for await (const c of await atrium.archive.store.get(result.blobKey)) chunks.push(c as Buffer);
    const meta = parsePart10(Buffer.concat(chunks)).meta;
    assert.equal(meta.get(Tags.SourceApplicationEntityTitle)?.value?.toString('latin1').trim(), 'AINODE');
    // Results are not sent on again (the rule takes CTs only).
    const status = await waitFor('the AI node\'s row done', async () => ((await forwardingStatus('AINODE'))?.done === 1 ? forwardingStatus('AINODE') : undefined));
    assert.equal(status!.pending + status!.inProgress, 0);
  });

  it('gives up on an AI node that answers nothing after its timeout, and leaves the study as it was', async () => {
    const status = await waitFor('the silent node\'s timeout', async () => {
      const s = await forwardingStatus('SILENTAI');
      return s?.lastError ? s : undefined;
    });
    assert.equal(status.done, 0);
    assert.match(status.lastError!.message, /timeout/i);
    assert.ok(status.retrying >= 1, 'the row waits for its next attempt');
    assert.ok(silentSockets.length >= 1, 'the node was reached');
    // The study answers as before, with its CT and the AI node's report.
    const metadata = await fetch(`${atrium.dicomweb}/studies/${ct.uids.study}/metadata`, { headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}` } });
    assert.equal(metadata.status, 200);
    assert.equal(((await metadata.json()) as unknown[]).length, 2);
  });
});
