import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { testDatabases } from '../../test/support/databases.ts';
import { ArchiveIndex, IndexConflictError, openArchiveIndex, QueryError } from './archive-index.ts';
import type { InstanceRecord, SearchQuery, Site } from './records.ts';
import { Outbox, type OutboxEvent } from '../events/outbox.ts';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const MR = '1.2.840.10008.5.1.4.1.1.4';
const ExplicitLE = '1.2.840.10008.1.2.1';

let counter = 0;
function uid(): string {
  return `1.2.826.0.1.3680043.10.543.${Date.now()}.${++counter}`;
}

interface RecordOptions {
  siteId: number;
  PatientID?: string;
  IssuerOfPatientID?: string;
  PatientName?: string;
  PatientBirthDate?: string;
  PatientSex?: string;
  StudyInstanceUID?: string;
  StudyDate?: string;
  StudyTime?: string;
  AccessionNumber?: string;
  StudyDescription?: string;
  ReferringPhysicianName?: string;
  SeriesInstanceUID?: string;
  Modality?: string;
  SeriesNumber?: number;
  BodyPartExamined?: string;
  PerformedProcedureStepStartDate?: string;
  SOPInstanceUID?: string;
  SOPClassUID?: string;
  InstanceNumber?: number;
  content?: string;
}

function makeRecord(o: RecordOptions): InstanceRecord {
  const SOPInstanceUID = o.SOPInstanceUID ?? uid();
  const content = o.content ?? SOPInstanceUID;
  return {
    siteId: o.siteId,
    patient: {
      PatientID: o.PatientID ?? 'P1',
      IssuerOfPatientID: o.IssuerOfPatientID ?? 'ISSUER-A',
      PatientName: o.PatientName ?? 'DOE^JOHN',
      PatientBirthDate: o.PatientBirthDate ?? '19700101',
      PatientSex: o.PatientSex ?? 'M',
    },
    study: {
      StudyInstanceUID: o.StudyInstanceUID ?? uid(),
      StudyDate: o.StudyDate ?? '20240115',
      StudyTime: o.StudyTime ?? '101500',
      AccessionNumber: o.AccessionNumber ?? 'ACC1',
      StudyID: 'S1',
      StudyDescription: o.StudyDescription ?? 'CT THORAX',
      ReferringPhysicianName: o.ReferringPhysicianName ?? 'HOUSE^GREGORY',
      InstitutionName: 'CHU NORD',
    },
    series: {
      SeriesInstanceUID: o.SeriesInstanceUID ?? uid(),
      Modality: o.Modality ?? 'CT',
      SeriesNumber: o.SeriesNumber ?? 1,
      SeriesDescription: 'AXIAL',
      BodyPartExamined: o.BodyPartExamined ?? 'CHEST',
      PerformedProcedureStepStartDate: o.PerformedProcedureStepStartDate ?? '20240115',
      PerformedProcedureStepStartTime: '101000',
    },
    instance: {
      SOPInstanceUID,
      SOPClassUID: o.SOPClassUID ?? CT,
      InstanceNumber: o.InstanceNumber ?? 1,
      TransferSyntaxUID: ExplicitLE,
      Rows: 512,
      Columns: 512,
    },
    blob: {
      key: `blobs/${createHash('sha256').update(content).digest('hex')}`,
      size: content.length,
      sha256: createHash('sha256').update(content).digest('hex'),
    },
    layout: { datasetOffset: 132, littleEndian: true, explicitVR: true, bulk: {} },
    metadataJson: JSON.stringify({ '00080018': { vr: 'UI', Value: [SOPInstanceUID] } }),
  };
}

function query(level: SearchQuery['level'], matches: Record<string, string>, extra: Partial<SearchQuery> = {}): SearchQuery {
  return { level, matches, fuzzymatching: false, limit: 0, offset: 0, ...extra };
}

for (const engine of testDatabases()) {
  describe(`ArchiveIndex on ${engine.name}`, () => {
    let index: ArchiveIndex;
    let cleanup: () => Promise<void>;
    let north: Site;
    let south: Site;

    before(async () => {
      const opened = await engine.open();
      cleanup = opened.cleanup;
      index = await openArchiveIndex(opened.config);
      north = await index.createSite({ code: 'CHU-NORD', name: 'CHU Nord', finess: '590000001', issuerOfPatientID: 'ISSUER-A' });
      south = await index.createSite({ code: 'CH-SUD', name: 'CH Sud', finess: '590000002', issuerOfPatientID: 'ISSUER-B' });
    });

    after(async () => {
      await index.close();
      await cleanup();
    });

    describe('sites', () => {
      it('finds a site by code and by id, and lists them by code', async () => {
        assert.deepEqual(await index.getSiteByCode('CHU-NORD'), north);
        assert.deepEqual(await index.getSite(south.id), south);
        assert.equal(await index.getSiteByCode('NOPE'), undefined);
        assert.deepEqual(
          (await index.listSites()).map((s) => s.code),
          ['CH-SUD', 'CHU-NORD'],
        );
      });

      it('refuses a second site with the same code', async () => {
        await assert.rejects(
          index.createSite({ code: 'CHU-NORD', name: 'x', finess: '1', issuerOfPatientID: 'y' }),
        );
      });
    });

    describe('storeInstance', () => {
      it('files the same PatientID at two sites as two patients', async () => {
        const a = makeRecord({ siteId: north.id, PatientID: 'SAME-1', IssuerOfPatientID: 'ISSUER-A', PatientName: 'NORTH^ANNE' });
        const b = makeRecord({ siteId: south.id, PatientID: 'SAME-1', IssuerOfPatientID: 'ISSUER-B', PatientName: 'SOUTH^BOB' });
        assert.equal((await index.storeInstance(a, 'reject')).status, 'stored');
        assert.equal((await index.storeInstance(b, 'reject')).status, 'stored');
        const studies = await index.searchStudies(query('study', { PatientID: 'SAME-1' }));
        assert.equal(studies.length, 2);
        assert.deepEqual(
          studies.map((s) => [s.siteId, s.patient.PatientName]).sort(),
          [
            [north.id, 'NORTH^ANNE'],
            [south.id, 'SOUTH^BOB'],
          ].sort(),
        );
        const patients = await index.sql.all<{ id: number }>('SELECT id FROM patients WHERE patient_id = ?', ['SAME-1']);
        assert.equal(patients.length, 2);
      });

      it('answers identical when the same object is stored again, writing nothing', async () => {
        const r = makeRecord({ siteId: north.id, PatientID: 'IDEM' });
        const first = await index.storeInstance(r, 'reject');
        assert.equal(first.status, 'stored');
        const events = await index.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM outbox');
        const again = await index.storeInstance({ ...r, blob: { ...r.blob, key: 'blobs/other-key' } }, 'replace');
        assert.deepEqual(again, { status: 'identical', instanceId: (first as { instanceId: number }).instanceId, existingBlobKey: r.blob.key });
        const [study] = await index.searchStudies(query('study', { PatientID: 'IDEM' }));
        assert.equal(study!.NumberOfStudyRelatedInstances, 1);
        assert.deepEqual(await index.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM outbox'), events);
      });

      it('rejects a different object under a stored SOPInstanceUID with policy reject', async () => {
        const r = makeRecord({ siteId: north.id, PatientID: 'DUP-REJECT' });
        await index.storeInstance(r, 'reject');
        const other = makeRecord({ ...optionsOf(r), content: 'other bytes' });
        const outcome = await index.storeInstance(other, 'reject');
        assert.equal(outcome.status, 'rejected');
        const stored = await index.findInstanceBySOPInstanceUID(r.instance.SOPInstanceUID);
        assert.equal(stored!.sha256, r.blob.sha256);
        const history = await index.sql.all('SELECT * FROM instance_history WHERE sop_instance_uid = ?', [r.instance.SOPInstanceUID]);
        assert.equal(history.length, 0);
      });

      it('keeps the stored object and lists the new blob in history with policy keep', async () => {
        const r = makeRecord({ siteId: north.id, PatientID: 'DUP-KEEP' });
        await index.storeInstance(r, 'reject');
        const other = makeRecord({ ...optionsOf(r), content: 'other bytes keep' });
        const outcome = await index.storeInstance(other, 'keep');
        assert.equal(outcome.status, 'kept-existing');
        const stored = await index.findInstanceBySOPInstanceUID(r.instance.SOPInstanceUID);
        assert.equal(stored!.blobKey, r.blob.key);
        const history = await index.sql.all<{ blob_key: string; reason: string }>(
          'SELECT blob_key, reason FROM instance_history WHERE sop_instance_uid = ?',
          [r.instance.SOPInstanceUID],
        );
        assert.deepEqual(history, [{ blob_key: other.blob.key, reason: 'duplicate-kept' }]);
        const [study] = await index.searchStudies(query('study', { PatientID: 'DUP-KEEP' }));
        assert.equal(study!.NumberOfStudyRelatedInstances, 1);
      });

      it('makes the new object current and moves the old blob to history with policy replace', async () => {
        const r = makeRecord({ siteId: north.id, PatientID: 'DUP-REPLACE' });
        const first = await index.storeInstance(r, 'reject');
        const other = makeRecord({ ...optionsOf(r), content: 'other bytes replace', SOPClassUID: MR });
        const outcome = await index.storeInstance(other, 'replace');
        assert.deepEqual(outcome, {
          status: 'replaced',
          instanceId: (first as { instanceId: number }).instanceId,
          previousBlobKey: r.blob.key,
        });
        const stored = await index.findInstanceBySOPInstanceUID(r.instance.SOPInstanceUID);
        assert.equal(stored!.blobKey, other.blob.key);
        assert.equal(stored!.SOPClassUID, MR);
        const history = await index.sql.all<{ blob_key: string; reason: string }>(
          'SELECT blob_key, reason FROM instance_history WHERE sop_instance_uid = ?',
          [r.instance.SOPInstanceUID],
        );
        assert.deepEqual(history, [{ blob_key: r.blob.key, reason: 'replaced' }]);
        const [study] = await index.searchStudies(query('study', { PatientID: 'DUP-REPLACE' }));
        assert.equal(study!.NumberOfStudyRelatedInstances, 1);
        assert.deepEqual(study!.SOPClassesInStudy, [MR]);
      });

      it('moves a replaced instance to its new series, dropping the series and study left empty', async () => {
        const r = makeRecord({ siteId: north.id, PatientID: 'MOVE' });
        await index.storeInstance(r, 'reject');
        const moved = makeRecord({ siteId: north.id, PatientID: 'MOVE', SOPInstanceUID: r.instance.SOPInstanceUID, content: 'moved' });
        assert.equal((await index.storeInstance(moved, 'replace')).status, 'replaced');
        const studies = await index.searchStudies(query('study', { PatientID: 'MOVE' }));
        assert.deepEqual(studies.map((s) => s.study.StudyInstanceUID), [moved.study.StudyInstanceUID]);
        assert.equal(studies[0]!.NumberOfStudyRelatedSeries, 1);
        assert.equal((await index.searchSeries(query('series', { SeriesInstanceUID: r.series.SeriesInstanceUID }))).length, 0);
      });

      it('never lets a replacement take another site\'s instance, under any policy but reject, and leaves it where it was', async () => {
        const held = makeRecord({ siteId: south.id, PatientID: 'HELD' });
        await index.storeInstance(held, 'reject');
        for (const policy of ['replace', 'keep'] as const) {
          const taker = makeRecord({ siteId: north.id, PatientID: 'TAKER', SOPInstanceUID: held.instance.SOPInstanceUID, content: `taker ${policy}` });
          await assert.rejects(index.storeInstance(taker, policy), (e: unknown) => {
            assert.ok(e instanceof IndexConflictError);
            assert.equal(e.reason, 'instance-of-another-site');
            assert.deepEqual({ siteId: e.holder.siteId, StudyInstanceUID: e.holder.StudyInstanceUID }, { siteId: south.id, StudyInstanceUID: held.study.StudyInstanceUID });
            return true;
          });
        }
        assert.equal((await index.studyPatient(held.study.StudyInstanceUID))?.patient.PatientID, 'HELD');
        assert.equal((await index.searchStudies(query('study', { PatientID: 'TAKER' }))).length, 0, 'the taker\'s patient and study were rolled back');
      });

      it('refuses a replacement by the same site that would move the instance to another patient', async () => {
        const r = makeRecord({ siteId: north.id, PatientID: 'OWNER' });
        await index.storeInstance(r, 'reject');
        const other = makeRecord({ siteId: north.id, PatientID: 'NOT-OWNER', SOPInstanceUID: r.instance.SOPInstanceUID, content: 'other patient' });
        await assert.rejects(index.storeInstance(other, 'replace'), (e: unknown) => e instanceof IndexConflictError && e.reason === 'instance-of-another-patient');
        assert.equal((await index.searchStudies(query('study', { PatientID: 'OWNER' })))[0]?.NumberOfStudyRelatedInstances, 1);
      });

      it('counts series and instances and collects ModalitiesInStudy and SOPClassesInStudy', async () => {
        const StudyInstanceUID = uid();
        const ctSeries = uid();
        const mrSeries = uid();
        const base = { siteId: north.id, PatientID: 'COUNTS', StudyInstanceUID };
        for (let n = 1; n <= 3; n++) {
          await index.storeInstance(makeRecord({ ...base, SeriesInstanceUID: ctSeries, Modality: 'CT', InstanceNumber: n }), 'reject');
        }
        for (let n = 1; n <= 2; n++) {
          await index.storeInstance(
            makeRecord({ ...base, SeriesInstanceUID: mrSeries, Modality: 'MR', SeriesNumber: 2, SOPClassUID: MR, InstanceNumber: n }),
            'reject',
          );
        }
        const [study] = await index.searchStudies(query('study', { StudyInstanceUID }));
        assert.equal(study!.NumberOfStudyRelatedSeries, 2);
        assert.equal(study!.NumberOfStudyRelatedInstances, 5);
        assert.deepEqual(study!.ModalitiesInStudy, ['CT', 'MR']);
        assert.deepEqual(study!.SOPClassesInStudy, [CT, MR]);
        const series = await index.searchSeries(query('series', {}), StudyInstanceUID);
        assert.deepEqual(
          series.map((s) => [s.series.SeriesInstanceUID, s.NumberOfSeriesRelatedInstances]),
          [
            [ctSeries, 3],
            [mrSeries, 2],
          ],
        );
      });

      it('updates patient demographics to the latest object', async () => {
        await index.storeInstance(makeRecord({ siteId: north.id, PatientID: 'DEMO', PatientName: 'OLD^NAME' }), 'reject');
        await index.storeInstance(makeRecord({ siteId: north.id, PatientID: 'DEMO', PatientName: 'NEW^NAME' }), 'reject');
        const studies = await index.searchStudies(query('study', { PatientID: 'DEMO' }));
        assert.deepEqual(studies.map((s) => s.patient.PatientName), ['NEW^NAME', 'NEW^NAME']);
        assert.equal((await index.searchStudies(query('study', { PatientName: 'NEW^NAME', PatientID: 'DEMO' }))).length, 2);
        const fuzzy = (PatientName: string) =>
          index.searchStudies({ ...query('study', { PatientName, PatientID: 'DEMO' }), fuzzymatching: true });
        assert.equal((await fuzzy('old')).length, 0);
        assert.equal((await fuzzy('name')).length, 2);
      });

      it('refuses an object whose study is filed under another patient', async () => {
        const r = makeRecord({ siteId: north.id, PatientID: 'OWNER' });
        await index.storeInstance(r, 'reject');
        const intruder = makeRecord({ siteId: north.id, PatientID: 'INTRUDER', StudyInstanceUID: r.study.StudyInstanceUID });
        await assert.rejects(index.storeInstance(intruder, 'reject'), IndexConflictError);
        assert.equal(await index.findInstanceBySOPInstanceUID(intruder.instance.SOPInstanceUID), undefined);
      });

      it('deletes an instance from the index and keeps counts right', async () => {
        const StudyInstanceUID = uid();
        const a = makeRecord({ siteId: north.id, PatientID: 'DEL', StudyInstanceUID, Modality: 'CT' });
        const b = makeRecord({ siteId: north.id, PatientID: 'DEL', StudyInstanceUID, Modality: 'MR', SeriesNumber: 2 });
        await index.storeInstance(a, 'reject');
        await index.storeInstance(b, 'reject');
        assert.equal(await index.deleteInstanceIndex(b.instance.SOPInstanceUID), true);
        assert.equal(await index.deleteInstanceIndex(b.instance.SOPInstanceUID), false);
        const [study] = await index.searchStudies(query('study', { StudyInstanceUID }));
        assert.equal(study!.NumberOfStudyRelatedInstances, 1);
        assert.equal(study!.NumberOfStudyRelatedSeries, 1);
        assert.deepEqual(study!.ModalitiesInStudy, ['CT']);
        assert.equal(await index.deleteInstanceIndexByBlobKey(a.blob.key), 1);
        assert.equal((await index.searchStudies(query('study', { StudyInstanceUID }))).length, 0);
        assert.equal(await index.findInstanceBySOPInstanceUID(a.instance.SOPInstanceUID), undefined);
      });
    });

    describe('retrieval', () => {
      it('returns stored instances of a study ordered by series then instance number', async () => {
        const StudyInstanceUID = uid();
        const s1 = uid();
        const s2 = uid();
        const base = { siteId: south.id, PatientID: 'RET', IssuerOfPatientID: 'ISSUER-B', StudyInstanceUID };
        await index.storeInstance(makeRecord({ ...base, SeriesInstanceUID: s2, SeriesNumber: 2, InstanceNumber: 1 }), 'reject');
        await index.storeInstance(makeRecord({ ...base, SeriesInstanceUID: s1, SeriesNumber: 1, InstanceNumber: 2 }), 'reject');
        await index.storeInstance(makeRecord({ ...base, SeriesInstanceUID: s1, SeriesNumber: 1, InstanceNumber: 1 }), 'reject');
        const all = await index.getStoredInstances({ StudyInstanceUID });
        assert.deepEqual(
          all.map((i) => [i.SeriesInstanceUID, i.InstanceNumber]),
          [
            [s1, 1],
            [s1, 2],
            [s2, 1],
          ],
        );
        assert.equal(all[0]!.siteId, south.id);
        assert.deepEqual(all[0]!.layout, { datasetOffset: 132, littleEndian: true, explicitVR: true, bulk: {} });
        assert.equal((await index.getStoredInstances({ StudyInstanceUID, SeriesInstanceUID: s2 })).length, 1);
        assert.equal((await index.getStoredInstances({ StudyInstanceUID, SOPInstanceUID: all[1]!.SOPInstanceUID })).length, 1);
        assert.equal((await index.getStoredInstances({ StudyInstanceUID, restriction: { sql: 's.site_id = ?', params: [north.id] } })).length, 0);
      });

      it('lists every referenced blob, history included', async () => {
        const keys = new Map<string, string>();
        for await (const ref of index.listReferencedBlobKeys()) keys.set(ref.key, ref.source);
        const instances = await index.countInstances();
        const history = await index.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM instance_history');
        assert.ok(instances > 0);
        assert.equal([...keys.values()].filter((s) => s === 'instance').length, instances);
        assert.equal([...keys.values()].filter((s) => s === 'history').length, Number(history!.n));
      });
    });

    describe('searching', () => {
      const studyA = uid();
      const studyB = uid();
      const studyC = uid();
      const seriesA = uid();

      before(async () => {
        await index.storeInstance(
          makeRecord({
            siteId: north.id,
            PatientID: 'Q-100',
            PatientName: 'Dupont^Hélène',
            PatientBirthDate: '19800220',
            StudyInstanceUID: studyA,
            StudyDate: '20230310',
            StudyTime: '083000',
            AccessionNumber: 'ACC%1',
            StudyDescription: 'IRM_GENOU',
            SeriesInstanceUID: seriesA,
            Modality: 'MR',
            SeriesNumber: 3,
            SOPClassUID: MR,
            InstanceNumber: 7,
          }),
          'reject',
        );
        await index.storeInstance(
          makeRecord({
            siteId: north.id,
            PatientID: 'Q-101',
            PatientName: 'DUPONTEL^ALBERT',
            StudyInstanceUID: studyB,
            StudyDate: '20230615',
            StudyTime: '140000',
            AccessionNumber: 'ACCX1',
            StudyDescription: 'IRMXGENOU',
            Modality: 'US',
          }),
          'reject',
        );
        await index.storeInstance(
          makeRecord({
            siteId: south.id,
            IssuerOfPatientID: 'ISSUER-B',
            PatientID: 'Q-200',
            PatientName: 'MARTIN^PAUL JEAN-PIERRE',
            StudyInstanceUID: studyC,
            StudyDate: '20221201',
            StudyTime: '230000',
            AccessionNumber: 'ACC2',
            Modality: 'CT',
          }),
          'reject',
        );
      });

      const inQ = { PatientID: 'Q-*' };
      async function studyUIDs(matches: Record<string, string>, extra: Partial<SearchQuery> = {}): Promise<string[]> {
        return (await index.searchStudies(query('study', { ...inQ, ...matches }, extra))).map((s) => s.study.StudyInstanceUID);
      }

      it('matches a single value exactly', async () => {
        assert.deepEqual(await studyUIDs({ PatientID: 'Q-100' }), [studyA]);
        assert.deepEqual(await studyUIDs({ AccessionNumber: 'ACC2' }), [studyC]);
        assert.deepEqual(await studyUIDs({ PatientID: 'Q-10' }), []);
      });

      it('treats an empty value as universal matching and orders studies by date, newest first', async () => {
        assert.deepEqual(await studyUIDs({ StudyDescription: '' }), [studyB, studyA, studyC]);
      });

      it('matches * and ? wildcards', async () => {
        assert.deepEqual(await studyUIDs({ PatientID: 'Q-10*' }), [studyB, studyA]);
        assert.deepEqual(await studyUIDs({ PatientID: 'Q-?00' }), [studyA, studyC]);
        assert.deepEqual(await studyUIDs({ PatientID: '*200' }), [studyC]);
        assert.deepEqual(await studyUIDs({ StudyDescription: 'IRM?GENOU' }), [studyB, studyA]);
      });

      it('matches % and _ in a value literally', async () => {
        assert.deepEqual(await studyUIDs({ AccessionNumber: 'ACC%1' }), [studyA]);
        assert.deepEqual(await studyUIDs({ AccessionNumber: 'ACC%*' }), [studyA]);
        assert.deepEqual(await studyUIDs({ AccessionNumber: '*C%1' }), [studyA]);
        assert.deepEqual(await studyUIDs({ StudyDescription: 'IRM_*' }), [studyA]);
        assert.deepEqual(await studyUIDs({ StudyDescription: '*M_G*' }), [studyA]);
      });

      it('matches wildcards case-sensitively outside person names', async () => {
        assert.deepEqual(await studyUIDs({ StudyDescription: 'irm*' }), []);
        assert.deepEqual(await studyUIDs({ StudyDescription: '*genou' }), []);
      });

      it('matches person names without regard to case or accents', async () => {
        assert.deepEqual(await studyUIDs({ PatientName: 'DUPONT^HELENE' }), [studyA]);
        assert.deepEqual(await studyUIDs({ PatientName: 'dupont*' }), [studyB, studyA]);
        assert.deepEqual(await studyUIDs({ PatientName: 'dupont^hél*' }), [studyA]);
        assert.deepEqual(await studyUIDs({ PatientName: 'helene' }), []);
      });

      it('with fuzzymatching, finds "Hélène" by "helene" and any name component by its start', async () => {
        assert.deepEqual(await studyUIDs({ PatientName: 'helene' }, { fuzzymatching: true }), [studyA]);
        assert.deepEqual(await studyUIDs({ PatientName: 'hel' }, { fuzzymatching: true }), [studyA]);
        assert.deepEqual(await studyUIDs({ PatientName: 'alb' }, { fuzzymatching: true }), [studyB]);
        assert.deepEqual(await studyUIDs({ PatientName: 'dupont' }, { fuzzymatching: true }), [studyB, studyA]);
        assert.deepEqual(await studyUIDs({ PatientName: 'paul' }, { fuzzymatching: true }), [studyC]);
        assert.deepEqual(await studyUIDs({ PatientName: 'aul' }, { fuzzymatching: true }), []);
        assert.deepEqual(await studyUIDs({ PatientName: 'pier' }, { fuzzymatching: true }), [studyC]);
        assert.deepEqual(await studyUIDs({ PatientName: 'dupont^h' }, { fuzzymatching: true }), [studyA]);
        assert.deepEqual(await studyUIDs({ PatientName: 'h?l?ne' }, { fuzzymatching: true }), [studyA]);
        assert.deepEqual(await studyUIDs({ PatientName: 'martin^paul' }, { fuzzymatching: true }), [studyC]);
        assert.deepEqual(await studyUIDs({ PatientName: 'MARTIN^PAUL JEAN-PIERRE' }), [studyC]);
        assert.deepEqual(await studyUIDs({ ReferringPhysicianName: 'greg' }, { fuzzymatching: true }), [studyB, studyA, studyC]);
        assert.deepEqual(await studyUIDs({ ReferringPhysicianName: 'greg' }), []);
      });

      it('matches date ranges closed and open at either end', async () => {
        assert.deepEqual(await studyUIDs({ StudyDate: '20230101-20231231' }), [studyB, studyA]);
        assert.deepEqual(await studyUIDs({ StudyDate: '20230401-' }), [studyB]);
        assert.deepEqual(await studyUIDs({ StudyDate: '-20230310' }), [studyA, studyC]);
        assert.deepEqual(await studyUIDs({ StudyDate: '20221201' }), [studyC]);
        assert.deepEqual(await studyUIDs({ PatientBirthDate: '19800101-19801231' }), [studyA]);
      });

      it('matches time ranges, an upper bound covering its whole hour or minute', async () => {
        assert.deepEqual(await studyUIDs({ StudyTime: '0800-1400' }), [studyB, studyA]);
        assert.deepEqual(await studyUIDs({ StudyTime: '-08' }), [studyA]);
        assert.deepEqual(await studyUIDs({ StudyTime: '2200-' }), [studyC]);
      });

      it('rejects a malformed date or a reversed range', async () => {
        await assert.rejects(studyUIDs({ StudyDate: '2023-03-10' }), QueryError);
        await assert.rejects(studyUIDs({ StudyDate: '20231231-20230101' }), QueryError);
      });

      it('matches a list of UIDs', async () => {
        assert.deepEqual(await studyUIDs({ StudyInstanceUID: `${studyA}\\${studyC}` }), [studyA, studyC]);
        assert.deepEqual(await studyUIDs({ StudyInstanceUID: `${studyB},${studyC}` }), [studyB, studyC]);
      });

      it('matches studies having any of the listed ModalitiesInStudy', async () => {
        assert.deepEqual(await studyUIDs({ ModalitiesInStudy: 'MR' }), [studyA]);
        assert.deepEqual(await studyUIDs({ ModalitiesInStudy: 'CT\\US' }), [studyB, studyC]);
        assert.deepEqual(await studyUIDs({ ModalitiesInStudy: 'XA' }), []);
      });

      it('applies limit and offset after ordering', async () => {
        assert.deepEqual(await studyUIDs({}, { limit: 2 }), [studyB, studyA]);
        assert.deepEqual(await studyUIDs({}, { limit: 2, offset: 1 }), [studyA, studyC]);
        assert.deepEqual(await studyUIDs({}, { offset: 2 }), [studyC]);
      });

      it('restricts results to the sites in scope', async () => {
        assert.deepEqual(await studyUIDs({}, { restriction: { sql: 's.site_id = ?', params: [south.id] } }), [studyC]);
        assert.deepEqual(await studyUIDs({}, { restriction: { sql: '1 = 0', params: [] } }), []);
      });

      it('accepts attributes named by tag', async () => {
        assert.deepEqual(await studyUIDs({ '00100020': 'Q-200' }), [studyC]);
      });

      it('throws QueryError for an unknown keyword or one of a lower level', async () => {
        await assert.rejects(index.searchStudies(query('study', { PatientWeight: '70' })), QueryError);
        await assert.rejects(index.searchStudies(query('study', { Modality: 'CT' })), QueryError);
        await assert.rejects(index.searchSeries(query('series', { SeriesNumber: 'x' })), QueryError);
        await assert.rejects(index.searchStudies(query('study', { StudyInstanceUID: '1.2.*' })), QueryError);
      });

      it('ignores keys without a value, which only ask for an attribute to be returned', async () => {
        assert.deepEqual(await studyUIDs({ PatientID: 'Q-200', NumberOfStudyRelatedInstances: '', Modality: '' }), [studyC]);
      });

      it('searches series by their attributes and by study attributes', async () => {
        const series = await index.searchSeries(query('series', { Modality: 'MR', PatientID: 'Q-*' }));
        assert.deepEqual(series.map((s) => s.series.SeriesInstanceUID), [seriesA]);
        assert.equal(series[0]!.series.SeriesNumber, 3);
        assert.equal(series[0]!.study.StudyInstanceUID, studyA);
        assert.equal(series[0]!.patient.PatientName, 'Dupont^Hélène');
        assert.equal((await index.searchSeries(query('series', { SeriesNumber: '3', PatientID: 'Q-100' }))).length, 1);
        assert.equal((await index.searchSeries(query('series', { BodyPartExamined: 'CHE*', StudyDate: '20230310' }))).length, 1);
        assert.equal((await index.searchSeries(query('series', { PerformedProcedureStepStartDate: '20240101-' }), studyA)).length, 1);
        assert.equal((await index.searchSeries(query('series', { Modality: 'CT' }), studyA)).length, 0);
      });

      it('searches instances by their attributes within a series', async () => {
        const rows = await index.searchInstances(query('instance', { SOPClassUID: MR }), studyA, seriesA);
        assert.equal(rows.length, 1);
        assert.equal(rows[0]!.instance.InstanceNumber, 7);
        assert.equal(rows[0]!.instance.Rows, 512);
        assert.equal(rows[0]!.series.Modality, 'MR');
        assert.equal((await index.searchInstances(query('instance', { InstanceNumber: '7' }), studyA)).length, 1);
        assert.equal((await index.searchInstances(query('instance', { InstanceNumber: '8' }), studyA)).length, 0);
        const uidOfA = rows[0]!.instance.SOPInstanceUID;
        assert.equal((await index.searchInstances(query('instance', { SOPInstanceUID: uidOfA, PatientID: 'Q-100' }))).length, 1);
      });
    });

    describe('outbox', () => {
      it('writes one event per stored instance, without patient names, in the indexing transaction', async () => {
        const outbox = new Outbox(index.sql);
        await outbox.drain('archive-index-test', 1000, async () => {}); // what earlier tests wrote
        const r = makeRecord({ siteId: north.id, PatientID: 'EVT', PatientName: 'SECRET^NAME' });
        await index.storeInstance(r, 'reject');
        const events: OutboxEvent[] = [];
        await outbox.drain('archive-index-test', 1000, async (_tx, batch) => { events.push(...batch); });
        assert.equal(events.length, 1);
        assert.equal(events[0]!.type, 'instance.stored');
        assert.deepEqual(events[0]!.payload, {
          instanceId: (await index.findInstanceBySOPInstanceUID(r.instance.SOPInstanceUID))!.instanceId,
          siteId: north.id,
          StudyInstanceUID: r.study.StudyInstanceUID,
          SeriesInstanceUID: r.series.SeriesInstanceUID,
          SOPInstanceUID: r.instance.SOPInstanceUID,
          SOPClassUID: r.instance.SOPClassUID,
          blobKey: r.blob.key,
          size: r.blob.size,
        });
        assert.doesNotMatch(JSON.stringify(events[0]!.payload), /SECRET/);
        // The same object again changes nothing and announces nothing.
        assert.equal((await index.storeInstance(r, 'reject')).status, 'identical');
        assert.equal(await outbox.backlog('archive-index-test'), 0);
      });
    });

    describe('concurrency', () => {
      it('indexes 20 instances of one new study stored at once, with consistent counts', async () => {
        const StudyInstanceUID = uid();
        const seriesUIDs = [uid(), uid()];
        const records = Array.from({ length: 20 }, (_, n) =>
          makeRecord({
            siteId: north.id,
            PatientID: 'CONC',
            StudyInstanceUID,
            SeriesInstanceUID: seriesUIDs[n % 2],
            Modality: n % 2 ? 'MR' : 'CT',
            SeriesNumber: (n % 2) + 1,
            InstanceNumber: n,
          }),
        );
        const outcomes = await Promise.all(records.map((r) => index.storeInstance(r, 'reject')));
        assert.deepEqual(new Set(outcomes.map((o) => o.status)), new Set(['stored']));
        const [study] = await index.searchStudies(query('study', { StudyInstanceUID }));
        assert.equal(study!.NumberOfStudyRelatedInstances, 20);
        assert.equal(study!.NumberOfStudyRelatedSeries, 2);
        assert.deepEqual([...study!.ModalitiesInStudy].sort(), ['CT', 'MR']);
        const series = await index.searchSeries(query('series', {}), StudyInstanceUID);
        assert.deepEqual(series.map((s) => s.NumberOfSeriesRelatedInstances), [10, 10]);
        const patients = await index.sql.all('SELECT id FROM patients WHERE patient_id = ?', ['CONC']);
        assert.equal(patients.length, 1);
      });

      it('applies the duplicate policy once when the same SOPInstanceUID arrives twice at once', async () => {
        const r = makeRecord({ siteId: north.id, PatientID: 'RACE' });
        const other = makeRecord({ ...optionsOf(r), content: 'race other' });
        const outcomes = await Promise.all([index.storeInstance(r, 'reject'), index.storeInstance(other, 'reject')]);
        assert.deepEqual(outcomes.map((o) => o.status).sort(), ['rejected', 'stored']);
        assert.equal((await index.getStoredInstances({ StudyInstanceUID: r.study.StudyInstanceUID })).length, 1);
      });
    });
  });
}

/** The same identifiers as a record, to build another object that reuses them. */
function optionsOf(r: InstanceRecord): RecordOptions {
  return {
    siteId: r.siteId,
    PatientID: r.patient.PatientID,
    IssuerOfPatientID: r.patient.IssuerOfPatientID,
    PatientName: r.patient.PatientName,
    StudyInstanceUID: r.study.StudyInstanceUID,
    SeriesInstanceUID: r.series.SeriesInstanceUID,
    SOPInstanceUID: r.instance.SOPInstanceUID,
  };
}
