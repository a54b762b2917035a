/**
 * The in-memory model of a DICOM dataset as Atrium reads it (PS3.5 §7).
 * Values stay as raw bytes in the dataset's byte order; decoding happens on demand
 * (values.ts) so that parsing never pays for attributes nobody reads.
 * Bulk values (pixel data, large binary elements) are not kept: only where they
 * lie in the stored object, so they can be streamed from storage with a range read.
 */

/** A tag as an unsigned 32-bit number: (group << 16 | element) >>> 0. */
export type Tag = number;

export type VR =
  | 'AE' | 'AS' | 'AT' | 'CS' | 'DA' | 'DS' | 'DT' | 'FL' | 'FD' | 'IS' | 'LO' | 'LT'
  | 'OB' | 'OD' | 'OF' | 'OL' | 'OV' | 'OW' | 'PN' | 'SH' | 'SL' | 'SQ' | 'SS' | 'ST'
  | 'SV' | 'TM' | 'UC' | 'UI' | 'UL' | 'UN' | 'UR' | 'US' | 'UT' | 'UV';

/** A byte range inside the stored object (offset from the first byte of the file). */
export interface ByteRange {
  offset: number;
  length: number;
}

export interface DicomElement {
  tag: Tag;
  vr: VR;
  /** Raw value bytes, in the transfer syntax's byte order, for values kept in memory. */
  value?: Buffer;
  /** Items of a sequence (vr === 'SQ'). */
  items?: DicomDataset[];
  /** Where a bulk value lies in the stored object, when it was not kept in memory. */
  bulk?: ByteRange;
  /** Encapsulated pixel data (undefined length): each fragment's value range, basic offset table excluded. */
  fragments?: ByteRange[];
  /** Encapsulated pixel data: the basic offset table's entries (may be empty). */
  basicOffsetTable?: number[];
  /** For a value not kept in memory (bulk, fragments): where its element header starts in the object. */
  headerOffset?: number;
}

/** Elements by tag, in ascending tag order when produced by the parser. */
export type DicomDataset = Map<Tag, DicomElement>;

export interface ParsedObject {
  /** File meta information (group 0002), always explicit VR little endian. */
  meta: DicomDataset;
  dataset: DicomDataset;
  /** (0002,0010) as read. */
  transferSyntaxUID: string;
  littleEndian: boolean;
  explicitVR: boolean;
  /** Deflated transfer syntax: offsets in `bulk` would refer to the inflated stream, so none are given. */
  deflated: boolean;
  /** Offset of the first byte of the dataset (after the meta information). */
  datasetOffset: number;
  /** Total bytes of the object. */
  byteLength: number;
}

export function tag(group: number, element: number): Tag {
  return ((group << 16) | element) >>> 0;
}

/** "GGGGEEEE", upper-case hex, as DICOM JSON keys are written (PS3.18 F.2.1). */
export function tagToHex(t: Tag): string {
  return t.toString(16).toUpperCase().padStart(8, '0');
}

export function hexToTag(hex: string): Tag {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) throw new RangeError(`not a DICOM tag: ${hex}`);
  return parseInt(hex, 16) >>> 0;
}

/** Tags Atrium reads by name. Keywords are those of PS3.6. */
export const Tags = {
  FileMetaInformationGroupLength: tag(0x0002, 0x0000),
  MediaStorageSOPClassUID: tag(0x0002, 0x0002),
  MediaStorageSOPInstanceUID: tag(0x0002, 0x0003),
  TransferSyntaxUID: tag(0x0002, 0x0010),
  ImplementationClassUID: tag(0x0002, 0x0012),
  ImplementationVersionName: tag(0x0002, 0x0013),
  SourceApplicationEntityTitle: tag(0x0002, 0x0016),
  PrivateInformationCreatorUID: tag(0x0002, 0x0100),
  PrivateInformation: tag(0x0002, 0x0102),
  SpecificCharacterSet: tag(0x0008, 0x0005),
  ImageType: tag(0x0008, 0x0008),
  InstanceCreationDate: tag(0x0008, 0x0012),
  SOPClassUID: tag(0x0008, 0x0016),
  SOPInstanceUID: tag(0x0008, 0x0018),
  StudyDate: tag(0x0008, 0x0020),
  SeriesDate: tag(0x0008, 0x0021),
  ContentDate: tag(0x0008, 0x0023),
  StudyTime: tag(0x0008, 0x0030),
  SeriesTime: tag(0x0008, 0x0031),
  ContentTime: tag(0x0008, 0x0033),
  AccessionNumber: tag(0x0008, 0x0050),
  RetrieveURL: tag(0x0008, 0x1190),
  Modality: tag(0x0008, 0x0060),
  ModalitiesInStudy: tag(0x0008, 0x0061),
  SOPClassesInStudy: tag(0x0008, 0x0062),
  InstitutionName: tag(0x0008, 0x0080),
  ReferringPhysicianName: tag(0x0008, 0x0090),
  ReferringPhysicianIdentificationSequence: tag(0x0008, 0x0096),
  PersonIdentificationCodeSequence: tag(0x0040, 0x1101),
  CodeValue: tag(0x0008, 0x0100),
  TimezoneOffsetFromUTC: tag(0x0008, 0x0201),
  StationName: tag(0x0008, 0x1010),
  StudyDescription: tag(0x0008, 0x1030),
  SeriesDescription: tag(0x0008, 0x103e),
  InstitutionalDepartmentName: tag(0x0008, 0x1040),
  PerformingPhysicianName: tag(0x0008, 0x1050),
  FailedSOPSequence: tag(0x0008, 0x1198),
  ReferencedSOPSequence: tag(0x0008, 0x1199),
  ReferencedSOPClassUID: tag(0x0008, 0x1150),
  ReferencedSOPInstanceUID: tag(0x0008, 0x1155),
  FailureReason: tag(0x0008, 0x1197),
  WarningReason: tag(0x0008, 0x1196),
  OtherPatientIDsSequence: tag(0x0010, 0x1002),
  PatientName: tag(0x0010, 0x0010),
  PatientID: tag(0x0010, 0x0020),
  IssuerOfPatientID: tag(0x0010, 0x0021),
  IssuerOfPatientIDQualifiersSequence: tag(0x0010, 0x0024),
  PatientBirthDate: tag(0x0010, 0x0030),
  PatientSex: tag(0x0010, 0x0040),
  BodyPartExamined: tag(0x0018, 0x0015),
  StudyInstanceUID: tag(0x0020, 0x000d),
  SeriesInstanceUID: tag(0x0020, 0x000e),
  StudyID: tag(0x0020, 0x0010),
  SeriesNumber: tag(0x0020, 0x0011),
  InstanceNumber: tag(0x0020, 0x0013),
  NumberOfStudyRelatedPatients: tag(0x0020, 0x1200),
  NumberOfStudyRelatedSeries: tag(0x0020, 0x1206),
  NumberOfStudyRelatedInstances: tag(0x0020, 0x1208),
  NumberOfSeriesRelatedInstances: tag(0x0020, 0x1209),
  SamplesPerPixel: tag(0x0028, 0x0002),
  PhotometricInterpretation: tag(0x0028, 0x0004),
  PlanarConfiguration: tag(0x0028, 0x0006),
  NumberOfFrames: tag(0x0028, 0x0008),
  Rows: tag(0x0028, 0x0010),
  Columns: tag(0x0028, 0x0011),
  BitsAllocated: tag(0x0028, 0x0100),
  BitsStored: tag(0x0028, 0x0101),
  HighBit: tag(0x0028, 0x0102),
  PixelRepresentation: tag(0x0028, 0x0103),
  WindowCenter: tag(0x0028, 0x1050),
  WindowWidth: tag(0x0028, 0x1051),
  RescaleIntercept: tag(0x0028, 0x1052),
  RescaleSlope: tag(0x0028, 0x1053),
  PerformedProcedureStepStartDate: tag(0x0040, 0x0244),
  PerformedProcedureStepStartTime: tag(0x0040, 0x0245),
  RequestAttributesSequence: tag(0x0040, 0x0275),
  FloatPixelData: tag(0x7fe0, 0x0008),
  DoubleFloatPixelData: tag(0x7fe0, 0x0009),
  PixelData: tag(0x7fe0, 0x0010),
  Item: tag(0xfffe, 0xe000),
  ItemDelimitationItem: tag(0xfffe, 0xe00d),
  SequenceDelimitationItem: tag(0xfffe, 0xe0dd),
} as const;

export const TransferSyntax = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  EncapsulatedUncompressedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.98',
  DeflatedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.99',
  ExplicitVRBigEndian: '1.2.840.10008.1.2.2',
  JPEGBaseline8Bit: '1.2.840.10008.1.2.4.50',
  JPEGExtended12Bit: '1.2.840.10008.1.2.4.51',
  JPEGLossless: '1.2.840.10008.1.2.4.57',
  JPEGLosslessSV1: '1.2.840.10008.1.2.4.70',
  JPEGLSLossless: '1.2.840.10008.1.2.4.80',
  JPEGLSNearLossless: '1.2.840.10008.1.2.4.81',
  JPEG2000Lossless: '1.2.840.10008.1.2.4.90',
  JPEG2000: '1.2.840.10008.1.2.4.91',
  JPEG2000MCLossless: '1.2.840.10008.1.2.4.92',
  JPEG2000MC: '1.2.840.10008.1.2.4.93',
  MPEG2MPML: '1.2.840.10008.1.2.4.100',
  MPEG2MPHL: '1.2.840.10008.1.2.4.101',
  MPEG4HP41: '1.2.840.10008.1.2.4.102',
  MPEG4HP41BD: '1.2.840.10008.1.2.4.103',
  HEVCMP51: '1.2.840.10008.1.2.4.107',
  HTJ2KLossless: '1.2.840.10008.1.2.4.201',
  HTJ2KLosslessRPCL: '1.2.840.10008.1.2.4.202',
  HTJ2K: '1.2.840.10008.1.2.4.203',
  RLELossless: '1.2.840.10008.1.2.5',
} as const;

const knownTransferSyntaxes: ReadonlySet<string> = new Set(Object.values(TransferSyntax));

export function isKnownTransferSyntax(uid: string): boolean {
  return knownTransferSyntaxes.has(uid);
}

/** Transfer syntaxes whose pixel data is native (not encapsulated). */
export function isNativeTransferSyntax(uid: string): boolean {
  return uid === TransferSyntax.ImplicitVRLittleEndian
    || uid === TransferSyntax.ExplicitVRLittleEndian
    || uid === TransferSyntax.DeflatedExplicitVRLittleEndian
    || uid === TransferSyntax.ExplicitVRBigEndian;
}
