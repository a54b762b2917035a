import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Tags, tag } from './dataset.ts';
import { isUSorSS, isVR, keywordOf, tagOfKeyword, vrOf } from './dictionary.ts';

describe('vrOf', () => {
  it('answers the PS3.6 VR of standard attributes', () => {
    assert.equal(vrOf(Tags.PatientName), 'PN');
    assert.equal(vrOf(Tags.Rows), 'US');
    assert.equal(vrOf(Tags.SOPInstanceUID), 'UI');
    assert.equal(vrOf(Tags.OtherPatientIDsSequence), 'SQ');
    assert.equal(vrOf(Tags.TransferSyntaxUID), 'UI');
  });

  it('reads pixel data as OW, as PS3.5 A.1 requires in implicit VR', () => {
    assert.equal(vrOf(Tags.PixelData), 'OW');
  });

  it('picks US for "US or SS" attributes and OW for "US or OW" LUT data', () => {
    assert.equal(vrOf(tag(0x0028, 0x0106)), 'US'); // SmallestImagePixelValue
    assert.equal(isUSorSS(tag(0x0028, 0x0106)), true);
    assert.equal(isUSorSS(Tags.Rows), false);
    assert.equal(vrOf(tag(0x0028, 0x3006)), 'OW'); // LUTData
  });

  it('answers UL for every group length element', () => {
    assert.equal(vrOf(tag(0x0008, 0x0000)), 'UL');
    assert.equal(vrOf(tag(0x0029, 0x0000)), 'UL');
  });

  it('answers LO for private creators and UN for other private elements', () => {
    assert.equal(vrOf(tag(0x0009, 0x0010)), 'LO');
    assert.equal(vrOf(tag(0x0029, 0x00ff)), 'LO');
    assert.equal(vrOf(tag(0x0009, 0x1001)), 'UN');
    assert.equal(vrOf(tag(0x0029, 0x0001)), 'UN');
  });

  it('resolves repeating groups (50xx, 60xx) to their PS3.6 entry', () => {
    assert.equal(vrOf(tag(0x6000, 0x3000)), 'OW'); // OverlayData
    assert.equal(vrOf(tag(0x6002, 0x3000)), 'OW');
    assert.equal(vrOf(tag(0x601e, 0x0010)), 'US'); // OverlayRows
    assert.equal(vrOf(tag(0x6002, 0x0050)), 'SS'); // OverlayOrigin
  });

  it('answers UN for tags nobody defined', () => {
    assert.equal(vrOf(tag(0x0008, 0xfff0)), 'UN');
  });
});

describe('keywords', () => {
  it('maps tags to PS3.6 keywords and back', () => {
    assert.equal(keywordOf(Tags.PatientName), 'PatientName');
    assert.equal(tagOfKeyword('PatientName'), Tags.PatientName);
    assert.equal(tagOfKeyword('StudyInstanceUID'), Tags.StudyInstanceUID);
    assert.equal(keywordOf(Tags.PixelData), 'PixelData');
  });

  it('uses the keywords of retired attributes without any prefix', () => {
    assert.equal(keywordOf(tag(0x0008, 0x0024)), 'OverlayDate');
    assert.equal(tagOfKeyword('OverlayDate'), tag(0x0008, 0x0024));
  });

  it('gives repeating-group attributes their keyword in every group', () => {
    assert.equal(keywordOf(tag(0x6004, 0x0010)), 'OverlayRows');
    assert.equal(tagOfKeyword('OverlayRows'), tag(0x6000, 0x0010));
  });

  it('has no keyword for private or unknown tags, and no tag for unknown keywords', () => {
    assert.equal(keywordOf(tag(0x0009, 0x0010)), undefined);
    assert.equal(keywordOf(tag(0x0008, 0xfff0)), undefined);
    assert.equal(tagOfKeyword('NoSuchKeyword'), undefined);
  });

  it('recognises the VRs of PS3.5 and nothing else', () => {
    assert.equal(isVR('OV'), true);
    assert.equal(isVR('ox'), false);
    assert.equal(isVR('XX'), false);
  });
});
