import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isValidUID } from '../dicom/uids.ts';
import { dicomDateTime, requestIdOfWorkitem, workitemJson, workitemUID } from './workitems.ts';

/** An installation root as migration 13 makes one: 2.25 and a UUID as a decimal (39 digits at most). */
const root = `2.25.${BigInt('0xffffffffffffffffffffffffffffffff').toString(10)}`;

describe('UPS workitems of teleradiology requests', () => {
  it('names a request by a valid UID that gives the request back, up to the largest id', () => {
    for (const id of [1, 42, 999_999_999_999]) {
      assert.ok(isValidUID(workitemUID(root, id)), workitemUID(root, id));
      assert.equal(requestIdOfWorkitem(root, workitemUID(root, id)), id);
    }
  });

  it('does not read a foreign or malformed UID as a request', () => {
    for (const uid of ['1.2.3.4', `2.25.1234.7`, `${workitemUID(root, 7)}.1`, workitemUID(root, 7).replace(/\.7$/, '.07'), workitemUID(root, 7).replace(/\.7$/, '.0'), workitemUID(root, 7).replace(/\.7$/, '')]) {
      assert.equal(requestIdOfWorkitem(root, uid), undefined, uid);
    }
  });

  it('writes instants as DICOM DT in UTC', () => {
    assert.equal(dicomDateTime('2026-11-23T01:02:03.456Z'), '20261123010203.456+0000');
  });

  it('maps urgency to priority and a claimed open request to IN PROGRESS', () => {
    const base = { id: 3, modality: 'CT', bodyPart: 'HEAD', specialty: 'neuro', deadlineAt: '2026-11-23T01:30:00.000Z', createdAt: '2026-11-23T01:00:00.000Z', imagesArrived: false };
    const w = (o: Partial<Parameters<typeof workitemJson>[0]>) => workitemJson({ ...base, urgency: 'routine', status: 'open', ...o }, 'https://atrium.example/dicom-web', root);
    assert.deepEqual(['stroke', 'urgent', 'routine'].map((u) => w({ urgency: u as 'stroke' })['00741200']?.Value), [['HIGH'], ['MEDIUM'], ['LOW']]);
    assert.deepEqual(w({ claimedBy: 'neuro' })['00741000']?.Value, ['IN PROGRESS']);
    assert.deepEqual(w({ status: 'awaiting-protocol' })['00741000']?.Value, ['SCHEDULED']);
    assert.deepEqual(w({ status: 'reported' })['00741000']?.Value, ['COMPLETED']);
    assert.deepEqual(w({ status: 'returned' })['00741000']?.Value, ['CANCELED']);
    assert.deepEqual(w({})['00404021']?.Value, [], 'no study yet: no input information');
  });
});
