/**
 * An order's whole path (issue 3): the RIS sends ORM^O01 over MLLP, the modality finds it
 * with findscu -W, stores its images with the order's identifiers, and the order leaves
 * the worklist; the exam is then found under the patient of the order.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startAtrium, type RunningAtrium } from './support/atrium.ts';
import { dcmtk, haveDcmtk } from './support/dcmtk.ts';
import { MllpClient } from './support/hl7.ts';
import { syntheticInstance } from './support/synthetic.ts';
import { OrderMatching } from '../src/workflow/order-matching.ts';
import { pino } from 'pino';

const StudyUID = '1.2.250.1.999.7.4242';

describe('an order from HL7 to the worklist to the archive', { skip: !haveDcmtk && 'DCMTK is not installed' }, () => {
  let atrium: RunningAtrium;
  const work = mkdtempSync(path.join(tmpdir(), 'atrium-order-'));

  before(async () => {
    atrium = await startAtrium({
      dimse: true, hl7: true,
      configure: (c) => {
        c.hl7.senders = [{ application: 'RIS_NORD', facility: 'CHU_NORD', site: 'CHU-NORD', stationAETitle: 'CT_NORD' }];
        c.peers = [{ aeTitle: 'CT_NORD', site: 'CHU-NORD', may: { store: true, query: true, retrieve: false } }];
      },
    });
  });

  after(async () => {
    await atrium?.close();
    rmSync(work, { recursive: true, force: true });
  });

  const worklist = () => dcmtk('findscu', ['-W', '-v', '-aet', 'CT_NORD', '-aec', 'ATRIUM', '-k', 'PatientName', '-k', 'PatientID', '-k', 'AccessionNumber',
    '-k', 'StudyInstanceUID', '-k', 'ScheduledProcedureStepSequence[0].Modality=CT', '127.0.0.1', String(atrium.dimse!.port)]);

  it('serves the order to the modality, then takes it off once its images are archived', async () => {
    const client = await MllpClient.connect(atrium.hl7!.port);
    try {
      const ack = await client.send([
        'MSH|^~\\&|RIS_NORD|CHU_NORD|ATRIUM|GHT|20261123080000||ORM^O01^ORM_O01|E2E-1|P|2.5|||||FRA|8859/1',
        'PID|1||P7001^^^CHUNORD^PI||LAURENT^CLAIRE^^^^^L||19750304|F',
        'PV1|1|O',
        'ORC|NW|PLAC-7|FILL-7||SC',
        'OBR|1|PLAC-7|FILL-7|CTTHX^Scanner thorax^LOCAL||||||||||||||ACC-7001||||||CT|||^^^20261123101500',
        `ZDS|${StudyUID}^ATRIUM^Application^DICOM`,
      ].join('\r') + '\r');
      assert.equal(ack.code, 'AA', ack.text);
    } finally {
      await client.close();
    }
    const before = await worklist();
    assert.equal(before.code, 0, before.output);
    assert.match(before.output, /\(0008,0050\) SH \[ACC-7001\]/);
    assert.match(before.output, /LAURENT\^CLAIRE/);
    assert.ok(before.output.includes(StudyUID));

    // The modality takes the order's identifiers into the images it makes.
    const image = syntheticInstance({
      PatientID: 'P7001', PatientName: 'LAURENT^CLAIRE', StudyInstanceUID: StudyUID, Rows: 8, Columns: 8,
      extra: [{ tag: 0x00080050, vr: 'SH', value: Buffer.from('ACC-7001', 'latin1') }],
    });
    const file = path.join(work, 'ct.dcm');
    writeFileSync(file, image.file);
    assert.equal((await dcmtk('storescu', ['-aet', 'CT_NORD', '-aec', 'ATRIUM', '127.0.0.1', String(atrium.dimse!.port), file])).code, 0);
    await new OrderMatching(atrium.archive, pino({ level: 'silent' })).drain();

    const after = await worklist();
    assert.doesNotMatch(after.output, /ACC-7001/, 'the order is being performed');
    const res = await fetch(`${atrium.dicomweb}/studies?AccessionNumber=ACC-7001&includefield=00100020`, { headers: { authorization: `Bearer ${atrium.tokens['CHU-NORD']}` } });
    const studies = (await res.json()) as Array<Record<string, { Value: unknown[] }>>;
    assert.equal(studies.length, 1);
    assert.equal(studies[0]!['0020000D']!.Value[0], StudyUID);
    assert.equal(studies[0]!['00100020']!.Value[0], 'P7001');
  });
});
