import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Tags, TransferSyntax, type DicomDataset, type DicomElement, type Tag, type VR } from '../dicom/dataset.ts';
import { parsePart10 } from '../dicom/part10-parser.ts';
import { buildPart10, encodeDataset } from '../dicom/part10-writer.ts';
import { valueContextOf, type ValueContext } from '../dicom/values.ts';
import { INS_OIDS, insValue, parseINS, shareableINS, type PatientIdentity } from './ins.ts';
import { insOtherPatientIDsItem, IssuerTags, readINSFromDataset } from './ins-dicom.ts';

const NIR = '184127645108946';
const NIA = '785119912345694';
const SOP_CLASS = '1.2.840.10008.5.1.4.1.1.7';
const SOP_INSTANCE = '2.25.1234567890';

const el = (t: Tag, vr: VR, value: string): [Tag, DicomElement] => {
  const b = Buffer.from(value, 'latin1');
  return [t, { tag: t, vr, value: b.length % 2 ? Buffer.concat([b, Buffer.from(vr === 'UI' ? [0] : [0x20])]) : b }];
};
const sq = (t: Tag, items: DicomDataset[]): [Tag, DicomElement] => [t, { tag: t, vr: 'SQ', items }];
const ctxLE = (ds: DicomDataset): ValueContext => valueContextOf(ds, true);

/** A Secondary Capture header with a local Patient ID and the given Other Patient IDs items. */
function dataset(otherIDs?: DicomDataset[]): DicomDataset {
  const ds = new Map<Tag, DicomElement>([
    el(Tags.SOPClassUID, 'UI', SOP_CLASS),
    el(Tags.SOPInstanceUID, 'UI', SOP_INSTANCE),
    el(Tags.PatientName, 'PN', 'MARTIN^JEANNE'),
    el(Tags.PatientID, 'LO', 'IPP-000123'),
    el(Tags.IssuerOfPatientID, 'LO', 'CH-NORD'),
  ]);
  if (otherIDs) ds.set(...sq(Tags.OtherPatientIDsSequence, otherIDs));
  return ds;
}

/** Another issuer's identifier, as a hospital's IPP in a neighbouring domain. */
function localItem(id: string, issuer: string, oid?: string): DicomDataset {
  const item = new Map<Tag, DicomElement>([el(Tags.PatientID, 'LO', id), el(Tags.IssuerOfPatientID, 'LO', issuer), el(IssuerTags.TypeOfPatientID, 'CS', 'TEXT')]);
  if (oid) item.set(...sq(Tags.IssuerOfPatientIDQualifiersSequence, [new Map([el(IssuerTags.UniversalEntityID, 'UT', oid), el(IssuerTags.UniversalEntityIDType, 'CS', 'ISO')])]));
  return item;
}

/** An INS item as a sender might write it, bypassing parseINS (bad keys, unknown OIDs). */
function rawINSItem(value: string, oid: string | undefined, issuer = 'ASIP-SANTE-INS-NIR'): DicomDataset {
  const item = new Map<Tag, DicomElement>([el(Tags.PatientID, 'LO', value), el(Tags.IssuerOfPatientID, 'LO', issuer), el(IssuerTags.TypeOfPatientID, 'CS', 'TEXT')]);
  if (oid) item.set(...sq(Tags.IssuerOfPatientIDQualifiersSequence, [new Map([el(IssuerTags.UniversalEntityID, 'UT', oid), el(IssuerTags.UniversalEntityIDType, 'CS', 'ISO')])]));
  return item;
}

function roundTrip(ds: DicomDataset, transferSyntaxUID: string) {
  const explicit = transferSyntaxUID !== TransferSyntax.ImplicitVRLittleEndian;
  const file = buildPart10({ MediaStorageSOPClassUID: SOP_CLASS, MediaStorageSOPInstanceUID: SOP_INSTANCE, TransferSyntaxUID: transferSyntaxUID }, encodeDataset(ds, true, explicit));
  const obj = parsePart10(file);
  return { obj, ctx: valueContextOf(obj.dataset, obj.littleEndian) };
}

describe('insOtherPatientIDsItem', () => {
  it('writes the INS, the PAM France issuer, TEXT, and the OID qualified as ISO with type code INS', () => {
    const item = insOtherPatientIDsItem(parseINS(NIR, INS_OIDS.NIR));
    const ctx = ctxLE(item);
    const str = (d: DicomDataset, t: Tag) => d.get(t)?.value?.toString('latin1');
    assert.equal(str(item, Tags.PatientID), `${NIR} `, 'LO padded to even length with a space');
    assert.equal(str(item, Tags.IssuerOfPatientID), 'ASIP-SANTE-INS-NIR');
    assert.equal(str(item, IssuerTags.TypeOfPatientID), 'TEXT');
    const q = item.get(Tags.IssuerOfPatientIDQualifiersSequence)!;
    assert.equal(q.vr, 'SQ');
    assert.equal(q.items!.length, 1);
    assert.equal(str(q.items![0]!, IssuerTags.UniversalEntityID), '1.2.250.1.213.1.4.8 ');
    assert.equal(str(q.items![0]!, IssuerTags.UniversalEntityIDType), 'ISO ');
    assert.equal(str(q.items![0]!, IssuerTags.IdentifierTypeCode), 'INS ');
    assert.equal(readINSFromDataset(new Map([sq(Tags.OtherPatientIDsSequence, [item])]), ctx).ins?.matricule, '1841276451089');
  });

  it('names the NIA issuer for a NIA', () => {
    const item = insOtherPatientIDsItem(parseINS(NIA, INS_OIDS.NIA));
    assert.equal(item.get(Tags.IssuerOfPatientID)?.value?.toString('latin1'), 'ASIP-SANTE-INS-NIA');
  });
});

describe('INS through a Part 10 file', () => {
  for (const ts of [TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian]) {
    it(`reads back the INS written beside another issuer's identifier (${ts})`, () => {
      const identity: PatientIdentity = {
        ins: parseINS(NIR, INS_OIDS.NIR),
        status: 'qualified',
        traits: { birthName: 'MARTIN', firstNames: ['JEANNE'], sex: 'F', birthDate: { year: 1984, month: 12, day: 3 }, birthPlaceCode: '76451' },
      };
      const shared = shareableINS(identity);
      assert.ok(shared);
      const { obj, ctx } = roundTrip(dataset([localItem('998877', 'CH-SUD', '1.2.250.1.999.1'), insOtherPatientIDsItem(shared)]), ts);
      assert.equal(obj.explicitVR, ts === TransferSyntax.ExplicitVRLittleEndian);
      const { ins, problems } = readINSFromDataset(obj.dataset, ctx);
      assert.deepEqual(problems, []);
      assert.ok(ins);
      assert.equal(insValue(ins), NIR);
      assert.deepEqual([ins.system, ins.test, ins.oid], ['NIR', false, INS_OIDS.NIR]);
    });
  }

  it('keeps the test flag of a test identity through the file', () => {
    const { obj, ctx } = roundTrip(dataset([insOtherPatientIDsItem(parseINS(NIR, INS_OIDS.NIR_TEST))]), TransferSyntax.ExplicitVRLittleEndian);
    const { ins } = readINSFromDataset(obj.dataset, ctx);
    assert.deepEqual([ins?.system, ins?.test, ins?.oid], ['NIR', true, '1.2.250.1.213.1.4.10']);
  });

  it('reports a bad key found in a file, without the identifier in the message', () => {
    const { obj, ctx } = roundTrip(dataset([rawINSItem('184127645108947', INS_OIDS.NIR)]), TransferSyntax.ExplicitVRLittleEndian);
    const { ins, problems } = readINSFromDataset(obj.dataset, ctx);
    assert.equal(ins, undefined);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^Other Patient IDs Sequence item 1: .*key does not match/);
    assert.ok(!problems[0]!.includes('1841276451089'));
  });
});

describe('readINSFromDataset', () => {
  it('finds nothing, and no problem, in a dataset without Other Patient IDs Sequence', () => {
    const ds = dataset();
    assert.deepEqual(readINSFromDataset(ds, ctxLE(ds)), { problems: [] });
  });

  it('ignores items of other issuers, with or without an OID', () => {
    const ds = dataset([localItem('998877', 'CH-SUD', '1.2.250.1.999.1'), localItem('A-55', 'RIS-EST')]);
    assert.deepEqual(readINSFromDataset(ds, ctxLE(ds)), { problems: [] });
  });

  it('ignores an INS-C (calculated INS, retired) as not an INS', () => {
    const ds = dataset([rawINSItem('1234567890123456789012', '1.2.250.1.213.1.4.2', 'ASIP-SANTE-INS-C')]);
    assert.deepEqual(readINSFromDataset(ds, ctxLE(ds)), { problems: [] });
  });

  it('reports an INS issuer with an OID that is no INS authority', () => {
    const ds = dataset([rawINSItem(NIR, '1.2.250.1.213.1.4.99')]);
    const { ins, problems } = readINSFromDataset(ds, ctxLE(ds));
    assert.equal(ins, undefined);
    assert.match(problems.join('\n'), /item 1: 1\.2\.250\.1\.213\.1\.4\.99 is not the OID of an INS authority/);
  });

  it('reports an INS issuer without an OID rather than guessing production or test', () => {
    const ds = dataset([rawINSItem(NIR, undefined)]);
    const { ins, problems } = readINSFromDataset(ds, ctxLE(ds));
    assert.equal(ins, undefined);
    assert.match(problems.join('\n'), /without the authority's OID/);
  });

  it('reports a malformed INS', () => {
    const ds = dataset([rawINSItem('18412764510', INS_OIDS.NIR)]);
    assert.match(readINSFromDataset(ds, ctxLE(ds)).problems.join('\n'), /15 characters/);
  });

  it('takes the OID over the issuer text, which senders spell in several ways', () => {
    const ds = dataset([rawINSItem(NIA, INS_OIDS.NIA, 'ASIP-SANTE-INS-NIR')]);
    assert.equal(readINSFromDataset(ds, ctxLE(ds)).ins?.system, 'NIA');
  });

  it('chooses the NIR when a NIR and a NIA are both present, and reads a repeated INS once', () => {
    const nir = parseINS(NIR, INS_OIDS.NIR);
    const ds = dataset([insOtherPatientIDsItem(parseINS(NIA, INS_OIDS.NIA)), insOtherPatientIDsItem(nir), insOtherPatientIDsItem(nir)]);
    const { ins, problems } = readINSFromDataset(ds, ctxLE(ds));
    assert.deepEqual(problems, []);
    assert.equal(ins?.system, 'NIR');
  });

  it('uses no INS when two different NIRs are present', () => {
    const other = '269059935012384';
    const ds = dataset([insOtherPatientIDsItem(parseINS(NIR, INS_OIDS.NIR)), insOtherPatientIDsItem(parseINS(other, INS_OIDS.NIR))]);
    const { ins, problems } = readINSFromDataset(ds, ctxLE(ds));
    assert.equal(ins, undefined);
    assert.match(problems.join('\n'), /2 different INS \(NIR\)/);
  });

  it('reads an INS sent as the primary Patient ID with its issuer and OID', () => {
    const ds = new Map<Tag, DicomElement>([
      el(Tags.PatientID, 'LO', NIR),
      el(Tags.IssuerOfPatientID, 'LO', 'ASIP-SANTE-INS-NIR'),
      sq(Tags.IssuerOfPatientIDQualifiersSequence, [new Map([el(IssuerTags.UniversalEntityID, 'UT', INS_OIDS.NIR), el(IssuerTags.UniversalEntityIDType, 'CS', 'ISO')])]),
    ]);
    assert.equal(readINSFromDataset(ds, ctxLE(ds)).ins?.matricule, '1841276451089');
  });
});
