/**
 * The SOP classes Atrium's SCP serves and how it picks a transfer syntax for each
 * proposed presentation context (PS3.4, PS3.7 D.3.3, PS3.8 §9.3.3.2).
 */
import { TransferSyntax, isKnownTransferSyntax } from '../dicom/dataset.ts';

export const SOPClass = {
  Verification: '1.2.840.10008.1.1',
  PatientRootFind: '1.2.840.10008.5.1.4.1.2.1.1',
  PatientRootMove: '1.2.840.10008.5.1.4.1.2.1.2',
  PatientRootGet: '1.2.840.10008.5.1.4.1.2.1.3',
  StudyRootFind: '1.2.840.10008.5.1.4.1.2.2.1',
  StudyRootMove: '1.2.840.10008.5.1.4.1.2.2.2',
  StudyRootGet: '1.2.840.10008.5.1.4.1.2.2.3',
  ModalityWorklistFind: '1.2.840.10008.5.1.4.31',
  StorageCommitmentPushModel: '1.2.840.10008.1.20.1',
} as const;

/** The well-known SOP instance of Storage Commitment Push Model (PS3.4 J.3.5). */
export const StorageCommitmentPushModelInstance = '1.2.840.10008.1.20.1.1';

export type ServiceKind = 'verification' | 'find' | 'worklist' | 'move' | 'get' | 'storage' | 'commitment';

export type InformationModel = 'patient' | 'study';

export function informationModelOf(sopClassUID: string): InformationModel | undefined {
  switch (sopClassUID) {
    case SOPClass.PatientRootFind: case SOPClass.PatientRootMove: case SOPClass.PatientRootGet:
      return 'patient';
    case SOPClass.StudyRootFind: case SOPClass.StudyRootMove: case SOPClass.StudyRootGet:
      return 'study';
    default:
      return undefined;
  }
}

/** Non-storage classes of the DICOM root that Atrium does not serve. */
const dicomRoot = '1.2.840.10008.';
const storageRoot = '1.2.840.10008.5.1.4.1.1.';
/** Storage classes outside 1.2.840.10008.5.1.4.1.1 (RT ion, hanging protocols, color palettes, ...). */
const otherStorageClasses: ReadonlySet<string> = new Set([
  '1.2.840.10008.5.1.4.34.7', // RT Beams Delivery Instruction
  '1.2.840.10008.5.1.4.34.10', // RT Brachy Application Setup Delivery Instruction
  '1.2.840.10008.5.1.4.38.1', // Hanging Protocol
  '1.2.840.10008.5.1.4.39.1', // Color Palette
  '1.2.840.10008.5.1.4.43.1', // Generic Implant Template
  '1.2.840.10008.5.1.4.44.1', // Implant Assembly Template
  '1.2.840.10008.5.1.4.45.1', // Implant Template Group
]);

/**
 * What a proposed abstract syntax asks for. Every storage class of the standard is
 * accepted, and so are private ones (a vendor's own UID root): a vendor-neutral
 * archive keeps what modalities send, as received.
 */
export function serviceOf(abstractSyntax: string): ServiceKind | undefined {
  switch (abstractSyntax) {
    case SOPClass.Verification:
      return 'verification';
    case SOPClass.PatientRootFind: case SOPClass.StudyRootFind:
      return 'find';
    case SOPClass.PatientRootMove: case SOPClass.StudyRootMove:
      return 'move';
    case SOPClass.PatientRootGet: case SOPClass.StudyRootGet:
      return 'get';
    case SOPClass.StorageCommitmentPushModel:
      return 'commitment';
    case SOPClass.ModalityWorklistFind:
      return 'worklist';
  }
  if (abstractSyntax.startsWith(storageRoot) || otherStorageClasses.has(abstractSyntax)) return 'storage';
  if (!abstractSyntax.startsWith(dicomRoot) && /^[0-9.]{3,64}$/.test(abstractSyntax)) return 'storage';
  return undefined;
}

const uncompressed = [TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian] as const;

/**
 * The transfer syntax to accept among those proposed, or undefined. Commands and
 * identifiers: explicit or implicit little endian. Storage: a compressed (or deflated)
 * syntax when one is offered, since a sender offering it beside the uncompressed ones
 * holds the object that way and the archive keeps objects as they were made; then the
 * first uncompressed one proposed; explicit big endian (retired) only when nothing else is.
 */
export function chooseTransferSyntax(service: ServiceKind, proposed: readonly string[]): string | undefined {
  if (service !== 'storage') return uncompressed.find((ts) => proposed.includes(ts));
  const known = proposed.filter((ts) => isKnownTransferSyntax(ts));
  const plain: readonly string[] = [...uncompressed, TransferSyntax.ExplicitVRBigEndian];
  return known.find((ts) => !plain.includes(ts))
    ?? known.find((ts) => ts !== TransferSyntax.ExplicitVRBigEndian)
    ?? known[0];
}
