/**
 * De-identification (PS3.15 Annex E) against an independent implementation of the same
 * profile: GDCM's gdcmanon (Debian libgdcm-tools), run on the same objects (real ones written
 * by others, and one made here with identifying values in a private sequence and in nested
 * sequences). Every difference between the two is explained by a rule below; and no value of
 * an attribute of Table E.1-1 that the profile does not keep is left anywhere in Atrium's
 * output, private attributes and nested sequences included.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tag, Tags, type DicomElement, type Tag, type VR } from '../src/dicom/dataset.ts';
import { parsePart10 } from '../src/dicom/part10-parser.ts';
import { keywordOf } from '../src/dicom/dictionary.ts';
import { newUID } from '../src/dicom/uids.ts';
import { annexETable, profileAttributeOf, resolveAction, type ProfileOption } from '../src/research/annex-e.ts';
import { deidentifyObject, DeidentifyError, type DeidentifyContext, type ProjectOption } from '../src/research/deidentify.ts';
import { elementsOf, gdcmanon, haveGdcmanon } from './support/gdcmanon.ts';
import { havePydicomFiles, readTestFile } from './support/pydicom-files.ts';
import { syntheticInstance } from './support/synthetic.ts';

const text = (t: Tag, vr: VR, value: string): DicomElement => {
  let b = Buffer.from(value, 'latin1');
  if (b.length % 2) b = Buffer.concat([b, Buffer.from([vr === 'UI' ? 0 : 0x20])]);
  return { tag: t, vr, value: b };
};
const seq = (t: Tag, ...items: DicomElement[][]): DicomElement => ({ tag: t, vr: 'SQ', items: items.map((els) => new Map(els.map((e) => [e.tag, e]))) });

/** An object with identifying values where they hide: a private sequence (nested twice), a request's nested references, a referring physician's code. */
function objectWithHiddenPHI() {
  const originalStudy = newUID();
  const made = syntheticInstance({
    PatientID: 'HID-4242', PatientName: 'Cachee^Henriette', PatientBirthDate: '19610704', PatientSex: 'F', StudyDate: '20250610',
    extra: [
      text(tag(0x0008, 0x0050), 'SH', 'ACC-998877'),
      text(tag(0x0008, 0x0080), 'LO', 'Hopital Saint-Cache'),
      text(tag(0x0008, 0x0090), 'PN', 'Docteur^Prescripteur'),
      seq(tag(0x0008, 0x0096), [seq(tag(0x0040, 0x1101), [text(tag(0x0008, 0x0100), 'SH', '10001234567'), text(tag(0x0008, 0x0102), 'SH', 'RPPS'), text(tag(0x0008, 0x0104), 'LO', 'Docteur Prescripteur')])]),
      text(tag(0x0008, 0x1030), 'LO', 'Scanner thoracique Cachee'),
      text(tag(0x0010, 0x1010), 'AS', '064Y'),
      text(tag(0x0010, 0x1030), 'DS', '71.5'),
      text(tag(0x0018, 0x1000), 'LO', 'SN-TOMO-3141'),
      text(tag(0x0008, 0x1010), 'SH', 'STATION-CACHE'),
      text(tag(0x0020, 0x0010), 'SH', 'STUDY-77'),
      // Request Attributes Sequence > Referenced Study Sequence: identifiers and a UID two levels down.
      seq(tag(0x0040, 0x0275), [
        text(tag(0x0040, 0x1001), 'SH', 'RP-556677'),
        text(tag(0x0032, 0x1060), 'LO', 'Scanner demandé pour Henriette Cachee'),
        seq(tag(0x0008, 0x1110), [text(tag(0x0008, 0x1150), 'UI', '1.2.840.10008.3.1.2.3.1'), text(tag(0x0008, 0x1155), 'UI', originalStudy)]),
      ]),
      // A private block whose sequence holds the patient's name and birth date, one of them one level deeper.
      text(tag(0x0029, 0x0010), 'LO', 'ACME PRIVATE'),
      seq(tag(0x0029, 0x1010), [
        text(tag(0x0010, 0x0010), 'PN', 'Cachee^Henriette'),
        text(tag(0x0029, 0x1011), 'LO', 'HID-4242 nee le 19610704'),
        seq(tag(0x0029, 0x1012), [text(tag(0x0029, 0x1013), 'LO', 'Henriette Cachee, chambre 12')]),
      ]),
    ],
  });
  return { ...made, originalStudy, phi: ['HID-4242', 'Cachee', 'Henriette', '19610704', 'ACC-998877', 'Saint-Cache', 'Prescripteur', '10001234567', 'SN-TOMO-3141', 'STATION-CACHE', 'STUDY-77', 'RP-556677', 'chambre 12'] };
}

function context(options: ProjectOption[] = [], uids = new Map<string, string>()): DeidentifyContext {
  return {
    options: new Set(options), pseudonym: 'RP9-TEST0001', dateOffsetDays: -100,
    uid: (u) => {
      if (!uids.has(u)) uids.set(u, newUID());
      return uids.get(u)!;
    },
    identifying: ['HID-4242', 'Cachee', 'Henriette'],
  };
}

const realObjects = ['CT_small.dcm', 'MR_small.dcm', 'MR_small_jp2klossless.dcm', 'test-SR.dcm', 'reportsi.dcm', 'rtplan.dcm', 'rtdose.dcm', 'waveform_ecg.dcm'];
const textVRs = new Set(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UR', 'UT']);
const dummies = new Set(['', 'ANONYMIZED', 'ANONYMOUS', '19000101', '000000', '19000101000000', '0', '000Y', 'RP9-TEST0001']);

/** The Table E.1-1 entry of an element path's own tag and of the sequences around it. */
const tagsOfPath = (key: string) => key.split('.').filter((_, i) => i % 2 === 0).map((h) => parseInt(h, 16) >>> 0);
const isPrivate = (t: Tag) => ((t >>> 16) & 1) === 1;
const notKept = (t: Tag, options: ReadonlySet<ProfileOption> = new Set()) => {
  const a = profileAttributeOf(t);
  return a !== undefined && resolveAction(a, options) !== 'K';
};

describe('de-identification by PS3.15 Annex E', () => {
  it('holds Table E.1-1 whole: every attribute with its basic action and its options', () => {
    assert.equal(annexETable.length, 621);
    const byName = (n: string) => annexETable.find((a) => a.name === n)!;
    assert.deepEqual(byName('Patient\'s Name'), { tag: '00100010', name: 'Patient\'s Name', basic: 'Z', options: {} });
    assert.deepEqual(byName('Study Date').options, { fullDates: 'K', modifiedDates: 'C' });
    assert.equal(byName('Device Serial Number').basic, 'X/Z/D');
    assert.equal(byName('Device Serial Number').options.device, 'K');
    assert.equal(profileAttributeOf(0x00291010)?.name, 'Private Attributes');
    assert.equal(profileAttributeOf(0x60023000)?.name, 'Overlay Data');
    assert.equal(resolveAction(byName('Acquisition Date'), new Set()), 'Z');
    assert.equal(resolveAction(byName('Acquisition Date'), new Set(['modifiedDates'])), 'C');
  });

  it('removes the identifying values hidden in a private sequence and in nested sequences', async () => {
    const o = objectWithHiddenPHI();
    const out = await deidentifyObject(o.file, context());
    const bytes = out.bytes.toString('latin1');
    for (const word of o.phi) assert.ok(!bytes.includes(word), `${word} is left`);
    const els = elementsOf(out.bytes);
    assert.ok(![...els.keys()].some((k) => tagsOfPath(k).some(isPrivate)), 'no private attribute at any level');
    assert.equal(els.get('00100010')?.value, 'RP9-TEST0001');
    assert.equal(els.get('00100020')?.value, 'RP9-TEST0001');
    assert.equal(els.get('00100030')?.value, '', 'birth date: Z');
    assert.equal(els.get('00120062')?.value, 'YES');
    assert.equal(els.get('00120064.0.00080100')?.value, '113100');
    // The reference two levels down keeps its class and gets the study's new UID.
    assert.equal(els.get('00400275'), undefined, 'Request Attributes Sequence: X');
    assert.ok(!bytes.includes(o.originalStudy));
    assert.ok(!bytes.includes(o.uids.study) && !bytes.includes(o.uids.series) && !bytes.includes(o.uids.sop));
  });

  it('replaces consistently across a project: one pseudonym, the same new UIDs, dates moved by the person\'s offset', async () => {
    const uids = new Map<string, string>();
    const study = newUID();
    const a = syntheticInstance({ PatientID: 'P-1', PatientName: 'Meme^Personne', StudyInstanceUID: study, StudyDate: '20250310' });
    const b = syntheticInstance({ PatientID: 'P-1', PatientName: 'Meme^Personne', StudyInstanceUID: study, StudyDate: '20250310' });
    const ea = elementsOf((await deidentifyObject(a.file, context(['modifiedDates'], uids))).bytes);
    const eb = elementsOf((await deidentifyObject(b.file, context(['modifiedDates'], uids))).bytes);
    assert.equal(ea.get('0020000D')?.value, eb.get('0020000D')?.value, 'the same study UID');
    assert.notEqual(ea.get('0020000D')?.value, study);
    assert.notEqual(ea.get('00080018')?.value, eb.get('00080018')?.value, 'two instances stay two');
    assert.equal(ea.get('00080020')?.value, '20241130', '2025-03-10 less 100 days');
    assert.equal(ea.get('00280303')?.value, 'MODIFIED');
    // Without the option, the dates go.
    const plain = elementsOf((await deidentifyObject(a.file, context([], uids))).bytes);
    assert.equal(plain.get('00080020')?.value, '');
    assert.equal(plain.get('00280303')?.value, 'REMOVED');
  });

  it('keeps what the chosen options keep, and cleans descriptors of the person\'s names', async () => {
    const o = objectWithHiddenPHI();
    const basic = elementsOf((await deidentifyObject(o.file, context())).bytes);
    const kept = elementsOf((await deidentifyObject(o.file, context(['patient', 'device', 'descriptors']))).bytes);
    assert.equal(basic.get('00101010'), undefined);
    assert.equal(kept.get('00101010')?.value, '064Y', 'Retain Patient Characteristics: age');
    assert.equal(kept.get('00100040')?.value, 'F');
    assert.equal(basic.get('00181000')?.value, '', 'serial number: X/Z/D gives Z');
    assert.equal(kept.get('00181000')?.value, 'SN-TOMO-3141', 'Retain Device Identity');
    assert.equal(basic.get('00081030'), undefined, 'Study Description: X');
    assert.equal(kept.get('00081030')?.value, 'Scanner thoracique XXXXXX', 'Clean Descriptors: the name taken out, the words kept');
  });

  it('refuses an object whose pixels may show text (Burned In Annotation), one it cannot read and a deflated one', { skip: !havePydicomFiles }, async () => {
    await assert.rejects(deidentifyObject(readTestFile('JPEG2000.dcm'), context()), (e: unknown) => e instanceof DeidentifyError && e.code === 'burned-in');
    await assert.rejects(deidentifyObject(Buffer.from('not dicom at all'), context()), (e: unknown) => e instanceof DeidentifyError && e.code === 'malformed');
    await assert.rejects(deidentifyObject(readTestFile('image_dfl.dcm'), context()), (e: unknown) => e instanceof DeidentifyError && e.code === 'unsupported');
  });

  it('cleans burned-in text from the pixels with the project\'s mask (Clean Pixel Data), and refuses the object without one', async () => {
    const burned = syntheticInstance({ PatientID: 'PX-1', Modality: 'US', Rows: 16, Columns: 16, NumberOfFrames: 2, extra: [text(tag(0x0028, 0x0301), 'CS', 'YES')] });
    await assert.rejects(deidentifyObject(burned.file, context()), (e: unknown) => e instanceof DeidentifyError && e.code === 'burned-in');
    await assert.rejects(deidentifyObject(burned.file, { ...context(), pixelMasks: [{ modality: 'CT', rectangles: [[0, 0, 16, 2]] }] }), (e: unknown) => e instanceof DeidentifyError && e.code === 'burned-in', 'a mask for another modality');
    const out = await deidentifyObject(burned.file, { ...context(), pixelMasks: [{ modality: 'US', rows: 16, columns: 16, rectangles: [[2, 0, 8, 3]] }] });
    const parsed = parsePart10(out.bytes);
    const px = parsed.dataset.get(Tags.PixelData)!;
    const pixels = out.bytes.subarray(px.bulk!.offset, px.bulk!.offset + px.bulk!.length);
    const original = parsePart10(burned.file).dataset.get(Tags.PixelData)!;
    const before = burned.file.subarray(original.bulk!.offset, original.bulk!.offset + original.bulk!.length);
    assert.equal(pixels.length, 16 * 16 * 2 * 2);
    for (let frame = 0; frame < 2; frame++) {
      for (let y = 0; y < 16; y++) {
        for (let x = 0; x < 16; x++) {
          const at = ((frame * 16 + y) * 16 + x) * 2;
          const inMask = x >= 2 && x < 10 && y < 3;
          assert.equal(pixels.readUInt16LE(at), inMask ? 0 : before.readUInt16LE(at), `frame ${frame} (${x}, ${y})`);
        }
      }
    }
    const els = elementsOf(out.bytes);
    assert.equal(els.get('00280301')?.value, 'NO');
    assert.ok([...els].some(([k, v]) => k.startsWith('00120064.') && v.value === '113101'), 'Clean Pixel Data Option in the method codes');
  });

  it('differs from gdcmanon --de-identify only where a stated rule says why, and leaves no value of Table E.1-1 that the profile does not keep', { skip: !havePydicomFiles || !haveGdcmanon }, async () => {
    const hidden = objectWithHiddenPHI();
    const objects: Array<[string, Buffer]> = [...realObjects.map((f) => [f, readTestFile(f)] as [string, Buffer]), ['hidden PHI', hidden.file]];
    /** The rules that explain a difference, each with the elements it explained. */
    const explained = new Map<string, Set<string>>();
    const explain = (rule: string, what: string) => explained.set(rule, (explained.get(rule) ?? new Set()).add(what));
    const unexplained: string[] = [];
    for (const [name, file] of objects) {
      const original = elementsOf(file);
      const atrium = elementsOf((await deidentifyObject(file, context())).bytes);
      const gdcm = elementsOf(await gdcmanon(file));
      const keptIn = (out: typeof atrium, key: string) => {
        const o = original.get(key)!, x = out.get(key);
        return x !== undefined && (o.items !== undefined ? x.items === o.items : x.value === o.value);
      };
      for (const [key, o] of original) {
        if (o.items === undefined && (o.value === undefined || o.value === '')) continue; // nothing to keep or take
        const byAtrium = keptIn(atrium, key), byGdcm = keptIn(gdcm, key);
        if (byAtrium === byGdcm) continue;
        const tags = tagsOfPath(key);
        const own = tags.at(-1)!;
        const label = `${keywordOf(own) ?? 'private'} (${key}) in ${name}`;
        if (!byAtrium) {
          // Atrium takes out what gdcmanon keeps.
          if (tags.some(isPrivate)) explain('private attributes: removed by E.1.1 (Table E.1-1 "Private Attributes" X); gdcmanon 3.0 keeps them', label);
          else if (tags.some((t) => notKept(t))) explain('listed in Table E.1-1 as it is today (dates and times since Supplement 142, and the attributes added since): gdcmanon 3.0 applies an older list', label);
          else unexplained.push(`Atrium removes ${label}`);
        } else {
          // gdcmanon takes out what Atrium keeps: only inside a Content Sequence (D), whose tree Atrium keeps with dummy values.
          if (tags.slice(0, -1).includes(0x0040a730) || own === 0x0040a730) explain('Content Sequence (D): gdcmanon drops the tree; Atrium keeps its shape, codes and numbers, with dummy text, names and dates, new UIDs', label);
          else unexplained.push(`gdcmanon removes ${label}, Atrium keeps it`);
        }
      }
      // No value of an attribute the profile does not keep is left in Atrium's output, at any level.
      const atriumText = (await deidentifyObject(file, context())).bytes.toString('latin1');
      // Values that a kept attribute also holds (a private creator naming the manufacturer): not looked for elsewhere.
      const keptValues = new Set([...original].filter(([key, o]) => o.value !== undefined && atrium.get(key)?.value === o.value).map(([, o]) => o.value!));
      for (const [key, o] of original) {
        const tags = tagsOfPath(key);
        if (!textVRs.has(o.vr)) continue; // binary values are not looked for as text
        if (o.value === undefined || o.value.length < 4 || /^[0-9. \\-]+$/.test(o.value) && o.vr !== 'UI' && o.vr !== 'DA' && o.vr !== 'DT') continue;
        if (!tags.some((t) => notKept(t) || isPrivate(t)) && tags.at(-1) !== 0x0040a160) continue;
        if (['ISO_IR 100', 'ORIGINAL', 'PRIMARY'].includes(o.value)) continue;
        const now = atrium.get(key);
        if (now?.value !== undefined && dummies.has(now.value)) continue;
        const inContent = tags.slice(0, -1).includes(0x0040a730); // a Content Sequence's dummy keeps its codes and numbers (the D rule above)
        if (inContent && !notKept(tags.at(-1)!) && !tags.some(isPrivate) && tags.at(-1) !== 0x0040a160) continue;
        if (o.vr === 'UI' && !profileAttributeOf(tags.at(-1)!)?.basic.includes('U')) continue; // class and coding scheme UIDs are kept
        // Where it was, the value is gone at every level; and a value of a listed (or private) attribute is nowhere else either.
        assert.ok(now?.value !== o.value, `${name}: ${keywordOf(tags.at(-1)!) ?? 'private'} (${key}) [${o.value}] is left in Atrium's output`);
        const own = tags.at(-1)!;
        if ((notKept(own) || isPrivate(own)) && !keptValues.has(o.value)) assert.ok(!atriumText.includes(o.value), `${name}: ${keywordOf(own) ?? 'private'} (${key}) [${o.value}] is left elsewhere in Atrium's output`);
      }
    }
    assert.deepEqual(unexplained, []);
    // Each rule explained something: the list of differences is the one docs/research.md gives.
    assert.equal(explained.size, 3, [...explained.keys()].join('\n'));
    assert.ok([...explained.values()].every((s) => s.size > 0));
  });
});
