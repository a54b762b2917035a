/**
 * The IHE XDM media (ITI TF-1 16, ITI TF-3 4.3 "zip over e-mail") that MSSanté carries a
 * structured health document in: IHE_XDM.ZIP holding README.TXT, INDEX.HTM and
 * IHE_XDM/SUBSET01/ with METADATA.XML (a bare XDS SubmitObjectsRequest, built by the DMP's
 * ebRIM builder) and the documents (DOC0001.XML the CR-IMG, DOC0002.DCM the KOS). Pure:
 * documents in, ZIP bytes out.
 */
import { createHash, randomUUID } from 'node:crypto';
import { writeZip } from '../../archive/zip.ts';
import type { INS } from '../../patients/ins.ts';
import type { DmpDocument } from '../dmp/document.ts';
import {
  dmpPatientId, documentCodes, formatCodeOf, modalityScheme, referenceId, xds, xdmSubmitObjectsRequest, type EntryToSend, type Facility,
} from '../dmp/metadata.ts';
import { esc } from '../dmp/xml.ts';

/** What a receiving mail client shows of the archive (ITI TF-3 4.3.4: README.TXT, INDEX.HTM). */
export interface XdmOptions {
  documents: readonly DmpDocument[];
  ins: INS;
  facility: Facility;
  /** OID of the sending system (XDSSubmissionSet.sourceId) and the root of the submission set's uniqueId. */
  sourceId: string;
  /** The recipients' mail addresses (intendedRecipient). */
  recipients: readonly string[];
  /** Who made the media: product name and version (README.TXT). */
  product: string;
  now?: Date;
}

export interface XdmMedia {
  zip: Buffer;
  /** The file names inside the archive, in order. */
  files: string[];
  /**
   * The value of X-MSS-CODECDA: the code of each CDA inside, comma-separated in one header
   * (Référentiel socle MSSanté #2, ECO.2.4.1: one header, multi-valued; never one header line a CDA).
   */
  cdaCodes: string;
}

const SUBSET = 'IHE_XDM/SUBSET01';

export async function xdmMedia(o: XdmOptions): Promise<XdmMedia> {
  const now = o.now ?? new Date();
  const docs = o.documents.map((d, i) => ({ d, name: `DOC${String(i + 1).padStart(4, '0')}.${d.mimeType === 'application/dicom' ? 'DCM' : d.mimeType === 'application/pdf' ? 'PDF' : 'XML'}` }));
  const entries: EntryToSend[] = docs.map(({ d, name }) => {
    const codes = d.kind === 'KOS' ? documentCodes.KOS : documentCodes['CR-IMG'];
    return {
      entryUUID: `urn:uuid:${randomUUID()}`, contentId: name, uniqueId: d.uniqueId, mimeType: d.mimeType, title: d.title, creationTime: d.creationTime,
      ...(d.serviceStartTime ? { serviceStartTime: d.serviceStartTime } : {}),
      classCode: codes.classCode, typeCode: codes.typeCode, formatCode: formatCodeOf(d), confidentiality: d.confidentiality ?? 'N',
      eventCodes: [...d.modalities.map((m) => ({ code: m, scheme: modalityScheme, display: m })), ...d.regions],
      referenceIds: [
        ...(d.AccessionNumber && d.order ? [referenceId(d.AccessionNumber, d.order.issuerOid, xds.accession)] : []),
        referenceId(d.StudyInstanceUID, '1.2.840.10008', xds.studyInstanceUID),
      ],
      author: d.author, sourcePatientId: `${d.patient.PatientID}^^^&${d.patient.IssuerOfPatientID}&ISO^PI`,
      hash: createHash('sha1').update(d.content).digest('hex'), size: d.content.length, uri: name,
    };
  });
  const first = o.documents[0];
  if (!first) throw new Error('an XDM media holds at least one document');
  const cda = o.documents.find((d) => d.kind === 'CR-IMG');
  const metadata = Buffer.from(xdmSubmitObjectsRequest({
    entryUUID: `urn:uuid:${randomUUID()}`, uniqueId: `${o.sourceId}.${now.getTime()}`, sourceId: o.sourceId, submissionTime: now,
    contentType: (cda ? documentCodes['CR-IMG'] : documentCodes.KOS).typeCode, patientId: dmpPatientId(o.ins), facility: o.facility, author: first.author,
    entries, intendedRecipients: o.recipients.map((r) => `|${r}^^^^^^^^^^^^^NET^INTERNET^${r}`),
  }), 'utf8');
  const readme = Buffer.from([
    `Support IHE XDM produit par ${o.product}`,
    `Emetteur : ${o.facility.name} (FINESS ${o.facility.finess})`,
    `Date : ${now.toISOString()}`,
    'Contenu : IHE_XDM/SUBSET01/METADATA.XML (métadonnées XDS) et les documents listés dans INDEX.HTM.',
    '',
  ].join('\r\n'), 'utf8');
  const index = Buffer.from('<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>IHE XDM</title></head><body><h1>Documents</h1><ul>'
    + docs.map(({ d, name }) => `<li><a href="${SUBSET}/${name}">${esc(d.title)}</a> (${esc(d.mimeType)})</li>`).join('')
    + `</ul><p><a href="README.TXT">README.TXT</a> — <a href="${SUBSET}/METADATA.XML">METADATA.XML</a></p></body></html>`, 'utf8');
  const files: Array<{ name: string; data: Buffer }> = [
    { name: 'README.TXT', data: readme },
    { name: 'INDEX.HTM', data: index },
    { name: `${SUBSET}/METADATA.XML`, data: metadata },
    ...docs.map(({ d, name }) => ({ name: `${SUBSET}/${name}`, data: d.content })),
  ];
  const chunks: Buffer[] = [];
  for await (const chunk of writeZip(files.map((f) => ({ name: f.name, size: f.data.length, data: f.data })), { modified: now })) chunks.push(chunk);
  return {
    zip: Buffer.concat(chunks), files: files.map((f) => f.name),
    cdaCodes: o.documents.filter((d) => d.kind === 'CR-IMG').map(() => documentCodes['CR-IMG'].typeCode.code).join(','),
  };
}
