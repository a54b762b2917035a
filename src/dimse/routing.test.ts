import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RoutingRule } from '../config/config.ts';
import { part10Header } from '../dicom/part10-writer.ts';
import { fileMetaString, matchRules, type ArrivedObject } from './routing.ts';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const rules: RoutingRule[] = [
  { name: 'ct-nord', sites: ['CHU-NORD'], modalities: ['CT'], destinations: ['TELERAD'] },
  { name: 'from-ws', callingAETitles: ['WS1'], destinations: ['BACKUP'] },
  { name: 'ct-class', SOPClassUIDs: [CT], destinations: ['ARCHIVE2'] },
];

function arrived(o: Partial<ArrivedObject> & { calling?: string }): ArrivedObject & { reads: () => number } {
  let reads = 0;
  return {
    siteCode: o.siteCode, Modality: o.Modality, SOPClassUID: o.SOPClassUID ?? '1.2.3',
    callingAETitle: async () => {
      reads++;
      return o.calling;
    },
    reads: () => reads,
  };
}

describe('matchRules', () => {
  it('selects the rules whose every condition holds', async () => {
    const names = async (o: ArrivedObject) => (await matchRules(rules, o)).map((r) => r.name);
    assert.deepEqual(await names(arrived({ siteCode: 'CHU-NORD', Modality: 'ct ', SOPClassUID: CT })), ['ct-nord', 'ct-class']);
    assert.deepEqual(await names(arrived({ siteCode: 'CLIN-SUD', Modality: 'CT' })), []);
    assert.deepEqual(await names(arrived({ siteCode: 'CHU-NORD', Modality: 'MR', calling: 'WS1' })), ['from-ws']);
    assert.deepEqual(await names(arrived({ siteCode: 'CHU-NORD', Modality: undefined })), []);
  });

  it('reads the calling AE title once, and only when a rule asks for it', async () => {
    const o = arrived({ calling: 'WS1' });
    await matchRules([...rules, { name: 'again', callingAETitles: ['WS1', 'WS2'], destinations: ['X'] }], o);
    assert.equal(o.reads(), 1);
    const p = arrived({ calling: 'WS1' });
    await matchRules([rules[0]!], p);
    assert.equal(p.reads(), 0);
  });
});

describe('fileMetaString', () => {
  it('reads SourceApplicationEntityTitle from a meta header, undefined when absent', () => {
    const meta = { MediaStorageSOPClassUID: CT, MediaStorageSOPInstanceUID: '1.2.3.4', TransferSyntaxUID: '1.2.840.10008.1.2.1' };
    assert.equal(fileMetaString(part10Header({ ...meta, SourceApplicationEntityTitle: 'CT_NORD' }), 0x0016), 'CT_NORD');
    assert.equal(fileMetaString(part10Header(meta), 0x0016), undefined);
    assert.equal(fileMetaString(part10Header(meta), 0x0010), '1.2.840.10008.1.2.1');
  });
});
