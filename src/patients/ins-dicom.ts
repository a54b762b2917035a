/**
 * The INS in DICOM headers: an item of Other Patient IDs Sequence (0010,1002) whose
 * Issuer of Patient ID macro (PS3.3 Table 10-18) names the INS authority.
 *
 * No DICOM-specific French convention could be found in the published material
 * searched (the IHE-FR / ANS guide for the INS in DICOM was not available), so the
 * item follows the HL7 v2 convention of IHE PAM France for PID-3, which RIS send to
 * modalities through the worklist, carried over by the HL7 equivalences PS3.3 gives
 * for the macro:
 *   PID-3 "184127645108946^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS"
 *   >Patient ID (0010,0020)                  CX.1    "184127645108946" (matricule + key)
 *   >Issuer of Patient ID (0010,0021)        CX.4.1  "ASIP-SANTE-INS-NIR" ("ASIP-SANTE-INS-NIA" for a NIA)
 *   >Type of Patient ID (0010,0022)                  "TEXT"
 *   >Issuer of Patient ID Qualifiers Sequence (0010,0024), one item:
 *     >Universal Entity ID (0040,0032)      CX.4.2  the OID of the authority
 *     >Universal Entity ID Type (0040,0033) CX.4.3  "ISO"
 *     >Identifier Type Code (0040,0035)     CX.5    "INS"
 * The OID decides, on reading, whether an item is an INS and of which kind; the
 * namespace text is only a hint, because senders spell it in several ways.
 */
import { Tags, tag, type DicomDataset, type DicomElement, type Tag, type VR } from '../dicom/dataset.ts';
import { itemContext, stringValue, valueContextOf, type ValueContext } from '../dicom/values.ts';
import { INSError, insValue, isINSOid, parseINS, sameINS, type INS } from './ins.ts';

/** Attributes of the Issuer of Patient ID macro that dataset.ts does not name. */
export const IssuerTags = {
  TypeOfPatientID: tag(0x0010, 0x0022),
  UniversalEntityID: tag(0x0040, 0x0032),
  UniversalEntityIDType: tag(0x0040, 0x0033),
  IdentifierTypeCode: tag(0x0040, 0x0035),
} as const;

/** Namespace IDs of IHE PAM France for the INS authorities (HL7 v2 CX.4.1). */
export const INS_ISSUER_OF_PATIENT_ID = {
  NIR: 'ASIP-SANTE-INS-NIR',
  NIA: 'ASIP-SANTE-INS-NIA',
} as const;

/** Issuer texts and identifier type codes that mark an item as meant to carry an INS, even without an OID. */
const insIssuerHints: ReadonlySet<string> = new Set(['ASIP-SANTE-INS-NIR', 'ASIP-SANTE-INS-NIA', 'INS-NIR', 'INS-NIA', 'INS-NIR-TEST', 'INS-NIR-DEMO']);
const insTypeCodes: ReadonlySet<string> = new Set(['INS', 'INS-NIR', 'INS-NIA', 'INS-NIR-TEST', 'INS-NIR-DEMO']);

function text(value: string, vr: VR): Buffer {
  const b = Buffer.from(value, 'latin1');
  // Even length (PS3.5 7.1.1); every value here is ASCII, so the padding is a space.
  return b.length % 2 === 0 ? b : Buffer.concat([b, Buffer.from(vr === 'UI' ? [0x00] : [0x20])]);
}

function element(t: Tag, vr: VR, value: string): [Tag, DicomElement] {
  return [t, { tag: t, vr, value: text(value, vr) }];
}

/**
 * The Other Patient IDs Sequence item that carries an INS, values in memory and in
 * little-endian order (text only, so the order does not change a byte), ready for
 * encodeDataset. Exporters build it from shareableINS(identity), never from identity.ins.
 */
export function insOtherPatientIDsItem(ins: INS): DicomDataset {
  const qualifiers: DicomDataset = new Map([
    element(IssuerTags.UniversalEntityID, 'UT', ins.oid),
    element(IssuerTags.UniversalEntityIDType, 'CS', 'ISO'),
    element(IssuerTags.IdentifierTypeCode, 'CS', 'INS'),
  ]);
  return new Map<Tag, DicomElement>([
    element(Tags.PatientID, 'LO', insValue(ins)),
    element(Tags.IssuerOfPatientID, 'LO', INS_ISSUER_OF_PATIENT_ID[ins.system]),
    element(IssuerTags.TypeOfPatientID, 'CS', 'TEXT'),
    [Tags.IssuerOfPatientIDQualifiersSequence, { tag: Tags.IssuerOfPatientIDQualifiersSequence, vr: 'SQ', items: [qualifiers] }],
  ]);
}

export interface INSReading {
  /** The INS the dataset states, when exactly one can be chosen. */
  ins?: INS;
  /**
   * What ingest should flag: INS items with a bad key, an unknown OID, no OID, conflicting
   * INS. The messages never contain the identifier itself, so they may be logged.
   */
  problems: string[];
}

/** One patient-identifier triple (Patient ID, Issuer, its qualifiers) as read. */
interface IdentifierFields {
  where: string;
  patientID?: string;
  issuer?: string;
  oid?: string;
  oidType?: string;
  typeCode?: string;
}

function fieldsOf(ds: DicomDataset, ctx: ValueContext, where: string): IdentifierFields {
  const q = ds.get(Tags.IssuerOfPatientIDQualifiersSequence)?.items?.[0];
  const qctx = q ? itemContext(q, ctx) : ctx;
  return {
    where,
    patientID: stringValue(ds, Tags.PatientID, ctx),
    issuer: stringValue(ds, Tags.IssuerOfPatientID, ctx),
    oid: q ? stringValue(q, IssuerTags.UniversalEntityID, qctx) : undefined,
    oidType: q ? stringValue(q, IssuerTags.UniversalEntityIDType, qctx) : undefined,
    typeCode: q ? stringValue(q, IssuerTags.IdentifierTypeCode, qctx) : undefined,
  };
}

function isMeantAsINS(f: IdentifierFields): boolean {
  return (f.oid !== undefined && isINSOid(f.oid))
    || (f.issuer !== undefined && insIssuerHints.has(f.issuer.toUpperCase()))
    || (f.typeCode !== undefined && insTypeCodes.has(f.typeCode.toUpperCase()));
}

/**
 * The INS of a dataset, from Other Patient IDs Sequence (and from the top-level
 * Patient ID when its issuer is an INS authority, as some senders do). Items of other
 * issuers are ignored. Never throws for content: what is wrong comes back in problems,
 * so ingest can store the object and flag its identity. When a NIR and a NIA are both
 * present the NIR is chosen (it supersedes the NIA); two different INS of the same kind
 * give no INS and a problem.
 */
export function readINSFromDataset(ds: DicomDataset, ctx: ValueContext): INSReading {
  const problems: string[] = [];
  const sources: IdentifierFields[] = [fieldsOf(ds, ctx, 'Patient ID (0010,0020)')];
  const items = ds.get(Tags.OtherPatientIDsSequence)?.items ?? [];
  items.forEach((item, i) => sources.push(fieldsOf(item, itemContext(item, ctx), `Other Patient IDs Sequence item ${i + 1}`)));

  const found: INS[] = [];
  for (const f of sources) {
    if (!isMeantAsINS(f)) continue;
    if (f.patientID === undefined) {
      problems.push(`${f.where}: an INS issuer without a Patient ID`);
      continue;
    }
    if (f.oid === undefined) {
      problems.push(`${f.where}: INS issuer "${f.issuer ?? f.typeCode ?? ''}" without the authority's OID in Universal Entity ID (0040,0032); not used`);
      continue;
    }
    if (f.oidType !== undefined && f.oidType !== 'ISO') {
      problems.push(`${f.where}: Universal Entity ID Type is "${f.oidType}", not "ISO"`);
    }
    try {
      const ins = parseINS(f.patientID, f.oid);
      if (!found.some((x) => sameINS(x, ins))) found.push(ins);
    } catch (e) {
      if (!(e instanceof INSError)) throw e;
      problems.push(`${f.where}: ${e.message}`);
    }
  }

  const nirs = found.filter((x) => x.system === 'NIR');
  const chosen = nirs.length > 0 ? nirs : found;
  if (chosen.length > 1) {
    problems.push(`${chosen.length} different INS (${chosen[0]!.system}) in one dataset; none used`);
    return { problems };
  }
  return chosen[0] ? { ins: chosen[0], problems } : { problems };
}

type JsonElement = { vr?: string; Value?: unknown[] };
type JsonDataset = Record<string, JsonElement>;

/**
 * readINSFromDataset over an object's stored DICOM JSON (the index keeps it for every
 * instance), so that finding an INS never reads the stored object itself.
 */
export function readINSFromJson(json: JsonDataset): INSReading {
  const str = (ds: JsonDataset, hex: string): string | undefined => {
    const v = ds[hex]?.Value?.[0];
    return typeof v === 'string' ? v : undefined;
  };
  const utf8 = (t: Tag, vr: VR, value: string | undefined): Array<[Tag, DicomElement]> =>
    value === undefined ? [] : [[t, { tag: t, vr, value: Buffer.from(value.length % 2 ? `${value} ` : value, 'utf8') }]];
  const identifiers = (ds: JsonDataset): DicomDataset => {
    const q = (ds['00100024']?.Value?.[0] ?? undefined) as JsonDataset | undefined;
    const qualifiers: DicomDataset | undefined = q ? new Map([
      ...utf8(IssuerTags.UniversalEntityID, 'UT', str(q, '00400032')),
      ...utf8(IssuerTags.UniversalEntityIDType, 'CS', str(q, '00400033')),
      ...utf8(IssuerTags.IdentifierTypeCode, 'CS', str(q, '00400035')),
    ]) : undefined;
    return new Map<Tag, DicomElement>([
      ...utf8(Tags.PatientID, 'LO', str(ds, '00100020')),
      ...utf8(Tags.IssuerOfPatientID, 'LO', str(ds, '00100021')),
      ...(qualifiers ? [[Tags.IssuerOfPatientIDQualifiersSequence, { tag: Tags.IssuerOfPatientIDQualifiersSequence, vr: 'SQ' as VR, items: [qualifiers] }] as [Tag, DicomElement]] : []),
    ]);
  };
  const ds = identifiers(json);
  const items = (json['00101002']?.Value ?? []) as JsonDataset[];
  if (items.length > 0) ds.set(Tags.OtherPatientIDsSequence, { tag: Tags.OtherPatientIDsSequence, vr: 'SQ', items: items.map(identifiers) });
  ds.set(Tags.SpecificCharacterSet, { tag: Tags.SpecificCharacterSet, vr: 'CS', value: Buffer.from('ISO_IR 192', 'latin1') });
  return readINSFromDataset(ds, valueContextOf(ds, true));
}
