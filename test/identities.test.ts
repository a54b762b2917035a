/**
 * Images carrying an INS link their patient records across sites (issue 3): two sites'
 * records with the same qualified INS and agreeing traits become one person, whose exams
 * a query by INS finds through QIDO-RS and C-FIND; conflicts and candidates go to review.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { testDatabases } from './support/databases.ts';
import { dcmtk, haveDcmtk } from './support/dcmtk.ts';
import { syntheticInstance, type SyntheticOptions } from './support/synthetic.ts';
import { INS_OIDS, insKeyOf, insValue, parseINS } from '../src/patients/ins.ts';
import { insOtherPatientIDsItem } from '../src/patients/ins-dicom.ts';
import { openReviews } from '../src/patients/identities.ts';
import type { DicomElement } from '../src/dicom/dataset.ts';

const OtherPatientIDsSequence = 0x00101002;

function testINS(matricule: string) {
  return parseINS(matricule + insKeyOf(matricule), INS_OIDS.NIR_TEST);
}

function withINS(value: { matricule: string } | { raw: string }): DicomElement[] {
  const item = 'matricule' in value ? insOtherPatientIDsItem(testINS(value.matricule))
    : (() => {
      // An INS whose key is wrong: built by hand, since parseINS would refuse it.
      const good = insOtherPatientIDsItem(testINS(value.raw.slice(0, 13)));
      const bad = Buffer.from(value.raw.padEnd(16, ' '), 'latin1');
      good.set(0x00100020, { tag: 0x00100020, vr: 'LO', value: bad });
      return good;
    })();
  return [{ tag: OtherPatientIDsSequence, vr: 'SQ', items: [item] }];
}

for (const db of testDatabases()) {
  describe(`identities across sites (${db.name})`, { skip: !haveDcmtk && 'DCMTK is not installed' }, () => {
    let atrium: RunningAtrium;
    let cleanup: () => Promise<void>;
    const work = mkdtempSync(path.join(tmpdir(), 'atrium-ids-'));
    const nordINS = testINS('2800175123456');

    before(async () => {
      const opened = await db.open();
      cleanup = opened.cleanup;
      atrium = await startAtrium({
        index: opened.config, dimse: true,
        configure: (c) => (c.peers = [
          // NORD queries for the person across sites: a peer trusted for the territory (a site's own PACS sees its site only).
          { aeTitle: 'NORD', site: 'CHU-NORD', territory: true, may: { store: true, query: true, retrieve: false } },
          { aeTitle: 'SUD', site: 'CLIN-SUD', may: { store: true, query: true, retrieve: false } },
        ]),
      });
    });

    after(async () => {
      await atrium?.close();
      await cleanup?.();
      rmSync(work, { recursive: true, force: true });
    });

    async function store(calling: 'NORD' | 'SUD', o: SyntheticOptions): Promise<string> {
      const obj = syntheticInstance({ Rows: 4, Columns: 4, ...o });
      const file = path.join(work, `${obj.uids.sop}.dcm`);
      writeFileSync(file, obj.file);
      const r = await dcmtk('storescu', ['-aet', calling, '-aec', 'ATRIUM', '127.0.0.1', String(atrium.dimse!.port), file]);
      assert.equal(r.code, 0, r.output);
      return obj.uids.study;
    }

    async function qidoStudies(query: string): Promise<string[]> {
      const res = await fetch(`${atrium.dicomweb}/studies?${query}`, { headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}`, accept: 'application/dicom+json' } });
      if (res.status === 204) return [];
      assert.equal(res.status, 200);
      return ((await res.json()) as Array<Record<string, { Value: string[] }>>).map((s) => s['0020000D']!.Value[0]!).sort();
    }

    it('links two sites\' records carrying the same qualified INS, and finds the person\'s exams by INS over QIDO-RS and C-FIND', async () => {
      const nord = await store('NORD', { PatientID: 'N-100', PatientName: 'DUBOIS^Anne', PatientBirthDate: '19800101', PatientSex: 'F', extra: withINS({ matricule: '2800175123456' }) });
      const sud = await store('SUD', { PatientID: 'S-977', PatientName: 'DUBOIS^Anne Marie', PatientBirthDate: '19800101', PatientSex: 'F', extra: withINS({ matricule: '2800175123456' }) });
      await store('SUD', { PatientID: 'S-555', PatientName: 'OTHER^Person', PatientBirthDate: '19500101', PatientSex: 'M' });
      await atrium.identities.drain();
      const byINS = await qidoStudies(`PatientID=${insValue(nordINS)}&IssuerOfPatientID=${INS_OIDS.NIR_TEST}`);
      assert.deepEqual(byINS, [nord, sud].sort());
      // A site's own identifier still finds only that site's record.
      assert.deepEqual(await qidoStudies('PatientID=N-100'), [nord]);
      const find = await dcmtk('findscu', ['-S', '-v', '-aet', 'NORD', '-aec', 'ATRIUM', '-k', 'QueryRetrieveLevel=STUDY', '-k', `PatientID=${insValue(nordINS)}`,
        '-k', `IssuerOfPatientID=${INS_OIDS.NIR_TEST}`, '-k', 'StudyInstanceUID', '127.0.0.1', String(atrium.dimse!.port)]);
      assert.equal((find.output.match(/\(Pending\)/g) ?? []).length, 2, find.output);
      assert.ok(find.output.includes(nord) && find.output.includes(sud));
    });

    it('keeps both records and opens a review when the same INS comes with conflicting traits', async () => {
      await store('NORD', { PatientID: 'N-200', PatientName: 'MOREAU^Luc', PatientBirthDate: '19700505', PatientSex: 'M', extra: withINS({ matricule: '1700575222333' }) });
      const other = await store('SUD', { PatientID: 'S-200', PatientName: 'MOREAU^Luc', PatientBirthDate: '19710505', PatientSex: 'M', extra: withINS({ matricule: '1700575222333' }) });
      await atrium.identities.drain();
      const reviews = await openReviews(atrium.archive.index.sql);
      assert.ok(reviews.some((r) => r.kind === 'traits-conflict' && /birth date/.test(r.details)), JSON.stringify(reviews));
      const found = await qidoStudies(`PatientID=${insValue(testINS('1700575222333'))}&IssuerOfPatientID=${INS_OIDS.NIR_TEST}`);
      assert.equal(found.length, 1, 'not linked: one record of the INS only');
      assert.ok(!found.includes(other));
    });

    it('flags an INS with a wrong key, and an INS that disagrees with the record\'s qualified one, storing the objects all the same', async () => {
      const bad = insValue(testINS('2900275444555')).slice(0, 13) + '00';
      const study = await store('NORD', { PatientID: 'N-300', extra: withINS({ raw: bad }) });
      await store('NORD', { PatientID: 'N-100', PatientName: 'DUBOIS^Anne', PatientBirthDate: '19800101', PatientSex: 'F', extra: withINS({ matricule: '2800175999888' }) });
      await atrium.identities.drain();
      const reviews = await openReviews(atrium.archive.index.sql);
      assert.ok(reviews.some((r) => r.kind === 'ins-invalid'), JSON.stringify(reviews));
      assert.ok(reviews.some((r) => r.kind === 'ins-conflict'), JSON.stringify(reviews));
      assert.deepEqual(await qidoStudies('PatientID=N-300'), [study]);
      // The record keeps its qualified INS: the person still answers by the first one.
      assert.equal((await qidoStudies(`PatientID=${insValue(nordINS)}&IssuerOfPatientID=${INS_OIDS.NIR_TEST}`)).length, 3);
    });

    it('proposes a link from demographics alone, applying it only when a person accepts it', async () => {
      await store('NORD', { PatientID: 'N-400', PatientName: 'Lefèvre^Jeanne', PatientBirthDate: '19601212', PatientSex: 'F' });
      await store('SUD', { PatientID: 'S-400', PatientName: 'LEFEVRE^JEANNE', PatientBirthDate: '19601212', PatientSex: 'F' });
      await atrium.identities.drain();
      const candidate = (await openReviews(atrium.archive.index.sql)).find((r) => r.kind === 'link-candidate');
      assert.ok(candidate, 'a candidate link is proposed');
      const persons = async () => atrium.archive.index.sql.all<{ n: number }>('SELECT COUNT(DISTINCT person_id) AS n FROM patient_identities pi JOIN patients p ON p.id = pi.patient_id WHERE p.patient_id IN (?, ?) AND person_id IS NOT NULL', ['N-400', 'S-400']);
      assert.equal(Number((await persons())[0]!.n), 0, 'nothing linked before the decision');
      const api = (method: string, route: string, body?: unknown) => fetch(`${atrium.dicomweb.replace('/dicom-web', '')}/api/identity-reviews${route}`, {
        method, headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
      });
      const listed = (await (await api('GET', '')).json()) as { reviews: Array<{ id: number; kind: string; record: { site: string; PatientID: string }; otherRecord?: { PatientID: string } }> };
      const shown = listed.reviews.find((r) => r.id === candidate.id)!;
      assert.deepEqual([shown.record.PatientID, shown.otherRecord!.PatientID].sort(), ['N-400', 'S-400']);
      const decided = await api('POST', `/${candidate.id}`, { accept: true });
      assert.equal(decided.status, 200);
      assert.ok(((await decided.json()) as { personId?: number }).personId);
      assert.equal(Number((await persons())[0]!.n), 1);
      assert.equal((await api('POST', `/${candidate.id}`, { accept: true })).status, 409, 'a decided review is not open any more');
      assert.equal((await fetch(`${atrium.dicomweb.replace('/dicom-web', '')}/api/identity-reviews`)).status, 401);
    });
  });
}
