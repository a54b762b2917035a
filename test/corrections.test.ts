/**
 * Corrections (issue 3, IOCM ideas) through the HTTP API: a study moved to the right
 * patient as QIDO-RS, C-FIND and WADO-RS metadata show it, late objects following it;
 * an object rejected out of every query and retrieve; both undone by an administrator.
 */
import { pixelFragments } from './support/part10.ts';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { dcmtk, haveDcmtk } from './support/dcmtk.ts';
import { syntheticInstance, type SyntheticOptions } from './support/synthetic.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';

for (const db of testDatabases()) {
  describe(`corrections (${db.name})`, { skip: !haveDcmtk && 'DCMTK is not installed' }, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-corr-'));
    const base = () => atrium.dicomweb.replace('/dicom-web', '');
    const auth = () => ({ authorization: `Bearer ${atrium.tokens['CHU-NORD']}` });

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      atrium = await startAtrium({ index: opened.config, dimse: true, configure: (c) => (c.peers = [{ aeTitle: 'CT', site: 'CHU-NORD', may: { store: true, query: true, retrieve: true } }]) });
    });
    after(async () => {
      await atrium?.close();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    async function store(o: SyntheticOptions) {
      const obj = syntheticInstance({ Rows: 4, Columns: 4, ...o });
      const file = path.join(work, `${obj.uids.sop}.dcm`);
      writeFileSync(file, obj.file);
      const r = await dcmtk('storescu', ['-aet', 'CT', '-aec', 'ATRIUM', '127.0.0.1', String(atrium.dimse!.port), file]);
      assert.equal(r.code, 0, r.output);
      return obj;
    }
    const post = (route: string, body?: unknown) => fetch(`${base()}/api/corrections${route}`, {
      method: 'POST', headers: { ...auth(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const studiesOf = async (PatientID: string) => {
      const res = await fetch(`${atrium.dicomweb}/studies?PatientID=${PatientID}`, { headers: auth() });
      return res.status === 204 ? [] : ((await res.json()) as Array<Record<string, { Value: string[] }>>).map((s) => s['0020000D']!.Value[0]);
    };

    it('moves a study to the right patient, which QIDO-RS, C-FIND and WADO-RS metadata show; late objects follow; undo puts it back', async () => {
      await store({ PatientID: 'P-RIGHT', PatientName: 'RIGHT^Person' });
      const wrong = await store({ PatientID: 'P-WRONG', PatientName: 'WRONG^Person' });
      const res = await post('/study-move', { StudyInstanceUID: wrong.uids.study, PatientID: 'P-RIGHT', reason: 'examen passé sous le mauvais patient' });
      assert.equal(res.status, 201, await res.clone().text());
      const { id } = (await res.json()) as { id: number };
      assert.ok((await studiesOf('P-RIGHT')).includes(wrong.uids.study));
      assert.deepEqual(await studiesOf('P-WRONG'), []);
      const find = await dcmtk('findscu', ['-S', '-v', '-aet', 'CT', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${wrong.uids.study}`, '-k', 'PatientID', '127.0.0.1', String(atrium.dimse!.port)]);
      assert.match(find.output, /\(0010,0020\) LO \[P-RIGHT\s*\]/, find.output);
      const md = (await (await fetch(`${atrium.dicomweb}/studies/${wrong.uids.study}/metadata`, { headers: auth() })).json()) as Array<Record<string, { Value: unknown[] }>>;
      assert.equal(md[0]!['00100020']!.Value[0], 'P-RIGHT');
      assert.deepEqual(md[0]!['00100010']!.Value[0], { Alphabetic: 'RIGHT^Person' });
      // Objects retrieved whole carry the corrected patient module; their pixel data as stored.
      const out = mkdtempSync(path.join(work, 'get-'));
      const get = await dcmtk('getscu', ['-S', '-aet', 'CT', '-aec', 'ATRIUM', '-od', out, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${wrong.uids.study}`, '127.0.0.1', String(atrium.dimse!.port)]);
      assert.equal(get.code, 0, get.output);
      const got = readFileSync(path.join(out, readdirSync(out)[0]!));
      const parsed = parsePart10(got);
      assert.equal(parsed.dataset.get(0x00100020)!.value!.toString('latin1').trim(), 'P-RIGHT');
      assert.equal(parsed.dataset.get(0x00100010)!.value!.toString('latin1').trim(), 'RIGHT^Person');
      assert.ok(pixelFragments(got).equals(pixelFragments(wrong.file)), 'pixel data as stored');
      const dump = await dcmtk('dcmdump', ['+E', path.join(out, readdirSync(out)[0]!)]);
      assert.equal(dump.code, 0, dump.output);
      // The modality sends one more image under the wrong identifier: it joins the moved study.
      await store({ PatientID: 'P-WRONG', StudyInstanceUID: wrong.uids.study, SeriesInstanceUID: wrong.uids.series });
      assert.deepEqual(await studiesOf('P-WRONG'), []);
      const undo = await post(`/${id}/undo`);
      assert.equal(undo.status, 200);
      assert.deepEqual(await studiesOf('P-WRONG'), [wrong.uids.study]);
      assert.equal((await post(`/${id}/undo`)).status, 409, 'undone once only');
    });

    it('rejects an object out of every query and retrieve, keeps its blob, and brings it back byte for byte on undo', async () => {
      const obj = await store({ PatientID: 'P-QUAL' });
      const url = `${atrium.dicomweb}/studies/${obj.uids.study}/series/${obj.uids.series}/instances/${obj.uids.sop}`;
      const res = await post('/reject', { SOPInstanceUID: obj.uids.sop, reason: 'qualité insuffisante' });
      assert.equal(res.status, 201);
      const { id } = (await res.json()) as { id: number };
      assert.equal((await fetch(url, { headers: { ...auth(), accept: 'multipart/related; type="application/dicom"' } })).status, 404);
      const inst = await fetch(`${atrium.dicomweb}/instances?SOPInstanceUID=${obj.uids.sop}`, { headers: auth() });
      assert.ok(inst.status === 204 || ((await inst.json()) as unknown[]).length === 0, 'no instance found');
      const listed = (await (await fetch(`${base()}/api/corrections`, { headers: auth() })).json()) as { corrections: Array<{ id: number; kind: string; requestedBy: string; reason: string }> };
      assert.ok(listed.corrections.some((c) => c.id === id && c.kind === 'instance-reject' && c.reason === 'qualité insuffisante' && c.requestedBy.length > 0));
      assert.equal((await post(`/${id}/undo`)).status, 200);
      const back = await atrium.archive.index.findInstanceBySOPInstanceUID(obj.uids.sop);
      assert.ok(back);
      const bytes = await atrium.archive.store.readWhole(back.blobKey);
      assert.ok(bytes.subarray(back.layout.datasetOffset).equals(obj.file.subarray(parsePart10(obj.file).datasetOffset)));
    });

    it('answers corrections it cannot make with a clear error and changes nothing', async () => {
      const obj = await store({ PatientID: 'P-ALONE' });
      const unknownPatient = await post('/study-move', { StudyInstanceUID: obj.uids.study, PatientID: 'NOBODY', reason: 'test move' });
      assert.equal(unknownPatient.status, 404);
      assert.match(((await unknownPatient.json()) as { detail: string }).detail, /NOBODY.*not known/);
      assert.deepEqual(await studiesOf('P-ALONE'), [obj.uids.study]);
      assert.equal((await post('/reject', { SOPInstanceUID: '1.2.3.404', reason: 'test reject' })).status, 404);
      assert.equal((await post('/reject', { SOPInstanceUID: 'not a uid', reason: 'x' })).status, 400);
      assert.equal((await fetch(`${base()}/api/corrections`)).status, 401);
    });
  });
}
