import { keywordOf } from './dictionary.ts';
import { hexToTag } from './dataset.ts';
import type { DicomJsonDataset, DicomJsonElement } from './json.ts';
import type { PersonName } from './values.ts';

/** PS3.19 A.1: the namespace of the Native DICOM Model. */
const namespace = 'http://dicom.nema.org/PS3.19/models/NativeDICOM';

const personNameComponents = ['FamilyName', 'GivenName', 'MiddleName', 'NamePrefix', 'NameSuffix'] as const;

/**
 * Text as XML 1.0 character data. Characters XML 1.0 cannot hold at all (C0 controls but tab,
 * line feed and carriage return, lone surrogates, U+FFFE/U+FFFF) are left out: no escape can carry them.
 */
function text(s: string): string {
  return s
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '')
    .replace(/[&<>"]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&quot;'));
}

function personNameXml(pn: PersonName, number: number): string {
  let out = `<PersonName number="${number}">`;
  for (const group of ['Alphabetic', 'Ideographic', 'Phonetic'] as const) {
    const value = pn[group];
    if (!value) continue;
    out += `<${group}>`;
    value.split('^').forEach((component, i) => {
      const name = personNameComponents[i];
      if (name && component !== '') out += `<${name}>${text(component)}</${name}>`;
    });
    out += `</${group}>`;
  }
  return out + '</PersonName>';
}

/** The private creator of a private data element (gggg,xxyy), from (gggg,00xx) of the same dataset. */
function privateCreatorOf(ds: DicomJsonDataset, key: string): string | undefined {
  const tag = hexToTag(key);
  const group = tag >>> 16;
  const element = tag & 0xffff;
  if (group % 2 === 0 || element < 0x1000) return undefined;
  const creatorKey = key.slice(0, 4) + '00' + key.slice(4, 6);
  const v = ds[creatorKey]?.Value?.[0];
  return typeof v === 'string' ? v : undefined;
}

function attributeXml(ds: DicomJsonDataset, key: string, el: DicomJsonElement): string {
  const tag = key.toUpperCase();
  const keyword = keywordOf(hexToTag(key));
  const creator = privateCreatorOf(ds, key);
  let out = `<DicomAttribute tag="${tag}" vr="${el.vr}"${keyword ? ` keyword="${keyword}"` : ''}${creator !== undefined ? ` privateCreator="${text(creator)}"` : ''}>`;
  el.Value?.forEach((v, i) => {
    const number = i + 1;
    if (v === null) out += `<Value number="${number}"/>`;
    else if (el.vr === 'SQ') out += `<Item number="${number}">${datasetXml(v as DicomJsonDataset)}</Item>`;
    else if (el.vr === 'PN') out += personNameXml(v as PersonName, number);
    else out += `<Value number="${number}">${text(String(v))}</Value>`;
  });
  if (el.BulkDataURI !== undefined) out += `<BulkData uri="${text(el.BulkDataURI)}"/>`;
  if (el.InlineBinary !== undefined) out += `<InlineBinary>${el.InlineBinary}</InlineBinary>`;
  return out + '</DicomAttribute>';
}

function datasetXml(ds: DicomJsonDataset): string {
  return Object.keys(ds).sort().map((key) => attributeXml(ds, key, ds[key]!)).join('');
}

/**
 * A DICOM JSON dataset (PS3.18 F) as the Native DICOM Model (PS3.19 A.1), the XML that
 * DICOMweb answers as application/dicom+xml. Both models carry the same content: values,
 * person name groups and components, items, bulk data URIs and inline binaries.
 */
export function nativeDicomModelXml(ds: DicomJsonDataset): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel xmlns="${namespace}" xml:space="preserve">${datasetXml(ds)}</NativeDicomModel>\n`;
}
