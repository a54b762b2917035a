import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeMessage, findSegment, parseMessage, valueOf } from '../hl7/message.ts';
import { buildOru, encodeOru, xpnOfPersonName, type OruReport } from './oru.ts';

const report: OruReport = {
  controlId: 'ATRORU1', sending: { application: 'ATRIUM', facility: 'ATRIUM' }, receiving: { application: 'RIS', facility: 'CLIN-SUD' },
  characterSet: '8859/1', patient: { PatientID: 'P1', IssuerOfPatientID: 'CLINSUD', PatientName: 'Dupont^Hélène^Marie^Mme' },
  placerOrderNumber: 'TELE-1', AccessionNumber: 'A1', procedure: { code: 'CT', text: 'Scanner | angio^TSA' },
  orderingProvider: { name: 'Urgentiste^Paul', rpps: '10009999999' }, observedAt: new Date('2026-11-23T10:00:00Z'), resultStatus: 'F',
  signedAt: new Date('2026-11-23T10:20:00Z'), interpreter: { id: 'neuro', name: 'Dr Neuro' },
  fields: { ASPECTS: '9', vide: ' ' }, findings: 'Ligne 1\nLigne 2 & suite', conclusion: 'Occlusion M1 ~ gauche', addenda: [],
};

describe('ORU^R01', () => {
  it('maps a DICOM person name to XPN (family, given, middle, suffix, prefix)', () => {
    assert.deepEqual(xpnOfPersonName('Dupont^Hélène^Marie^Mme^III'), ['Dupont', 'Hélène', 'Marie', 'III', 'Mme']);
    assert.deepEqual(xpnOfPersonName('Dupont=デュポン'), ['Dupont', '', '', '', '']);
  });

  it('escapes the delimiters and line breaks of free text, and reads back as written', () => {
    const text = encodeMessage(buildOru(report));
    assert.match(text, /Scanner \\F\\ angio\\S\\TSA/);
    assert.match(text, /Ligne 1\\\.br\\Ligne 2 \\T\\ suite/);
    const back = parseMessage(text);
    const obx = back.segments.filter((s) => s.id === 'OBX');
    assert.deepEqual(obx.map((s) => valueOf(s, 5)), ['9', 'Ligne 1\nLigne 2 & suite', 'Occlusion M1 ~ gauche'], 'blank structured fields are left out');
    assert.equal(valueOf(findSegment(back, 'OBR'), 4, 2), 'Scanner | angio^TSA');
    assert.equal(valueOf(findSegment(back, 'PID'), 5, 5), 'Mme');
  });

  it('writes its bytes in the declared character set', () => {
    assert.ok(encodeOru(report).includes(Buffer.from('Hélène', 'latin1')));
    assert.ok(encodeOru({ ...report, characterSet: 'UNICODE UTF-8' }).includes(Buffer.from('Hélène', 'utf8')));
  });
});
