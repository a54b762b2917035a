/**
 * The record of an object's original encoding kept inside the file that compression at rest
 * writes in its place (src/archive/compression.ts): the index's `layout.original` (syntax,
 * size and SHA-256 of the bytes as received) would otherwise live in the index alone, and
 * `atrium reindex`, which rebuilds the index from the stored files, would lose it.
 *
 * It goes in the file meta information's Private Information (0002,0102), under Atrium's
 * Private Information Creator UID (0002,0100) (PS3.10 7.1: application-specific data about the
 * file, not part of the dataset), as JSON. Atrium drops it from any object it re-encodes
 * (part10-writer.ts); a file sent as stored carries it (no patient data: a syntax, a size, a
 * hash). Only `atrium reindex` reads it back.
 */
import { Tags, type DicomDataset, type DicomElement } from '../dicom/dataset.ts';
import { ATRIUM_ORIGINAL_RECORD_UID } from '../dicom/part10-writer.ts';
import type { InstanceLayout } from '../index/records.ts';

export type OriginalRecord = NonNullable<InstanceLayout['original']>;

const evenUid = (uid: string) => Buffer.from(uid.length % 2 ? `${uid}\0` : uid, 'latin1');

/** The file meta elements that record `original` in a file Atrium writes. */
export function originalRecordElements(original: OriginalRecord): DicomElement[] {
  const json = Buffer.from(JSON.stringify({ TransferSyntaxUID: original.TransferSyntaxUID, size: original.size, sha256: original.sha256 }), 'utf8');
  return [
    { tag: Tags.PrivateInformationCreatorUID, vr: 'UI', value: evenUid(ATRIUM_ORIGINAL_RECORD_UID) },
    { tag: Tags.PrivateInformation, vr: 'OB', value: json.length % 2 ? Buffer.concat([json, Buffer.from([0])]) : json },
  ];
}

/**
 * The original recorded in a file's meta information, or undefined: no record, another
 * application's, or one that does not parse or names the file's own syntax (nothing was re-encoded).
 */
export function originalRecordOf(meta: DicomDataset, storedTransferSyntaxUID: string): OriginalRecord | undefined {
  const creator = meta.get(Tags.PrivateInformationCreatorUID)?.value?.toString('latin1').replace(/[\0 ]+$/, '');
  const info = meta.get(Tags.PrivateInformation)?.value;
  if (creator !== ATRIUM_ORIGINAL_RECORD_UID || !info) return undefined;
  try {
    const r = JSON.parse(info.toString('utf8').replace(/\0+$/, '')) as Partial<OriginalRecord>;
    if (typeof r.TransferSyntaxUID !== 'string' || !/^[0-9.]{1,64}$/.test(r.TransferSyntaxUID) || r.TransferSyntaxUID === storedTransferSyntaxUID) return undefined;
    if (typeof r.size !== 'number' || !Number.isSafeInteger(r.size) || r.size < 0 || typeof r.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(r.sha256)) return undefined;
    return { TransferSyntaxUID: r.TransferSyntaxUID, size: r.size, sha256: r.sha256 };
  } catch {
    return undefined;
  }
}
