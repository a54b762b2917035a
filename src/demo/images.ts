/**
 * Synthetic CT images of the demonstration territory: a head phantom (skull, brain, ventricles
 * and a small bleed) slice by slice, with the geometry a viewer needs for MPR. Deterministic:
 * the same description gives the same bytes, so that loading the demo twice stores nothing new.
 */
import { createHash } from 'node:crypto';
import { Tags, TransferSyntax, tag, type DicomDataset, type DicomElement, type Tag, type VR } from '../dicom/dataset.ts';
import { buildPart10, encodeDataset } from '../dicom/part10-writer.ts';
import { insOtherPatientIDsItem } from '../patients/ins-dicom.ts';
import type { INS } from '../patients/ins.ts';

const CTImageStorage = '1.2.840.10008.5.1.4.1.1.2';

/** A UID under 2.25 (PS3.5 B.2) derived from a name: stable across runs, unique to the demo. */
export function demoUID(name: string): string {
  const digest = createHash('sha256').update(`atrium-demo:${name}`).digest();
  return `2.25.${BigInt(`0x${digest.subarray(0, 16).toString('hex')}`).toString()}`;
}

export interface DemoPatient {
  PatientID: string;
  /** DICOM PN, family^given. */
  PatientName: string;
  PatientBirthDate: string;
  PatientSex: 'M' | 'F';
  /** Carried in Other Patient IDs Sequence, as a site with a qualified identity sends it. */
  ins?: INS;
}

export interface DemoSeries {
  /** A name the UIDs derive from. */
  key: string;
  patient: DemoPatient;
  StudyDate: string;
  StudyTime: string;
  AccessionNumber: string;
  StudyDescription: string;
  SeriesDescription: string;
  InstitutionName: string;
  ReferringPhysicianName: string;
  BodyPartExamined: string;
  slices: number;
  /** Rows and columns. */
  size: number;
  /** A hyperdense spot in the brain (a haemorrhage to find on the urgent exam). */
  bleed?: boolean;
}

function text(t: Tag, vr: VR, value: string): [Tag, DicomElement] {
  // Demo texts are ISO_IR 192 (UTF-8): accented names as French sites write them.
  return [t, { tag: t, vr, value: Buffer.from(value, 'utf8') }];
}

function us(t: Tag, n: number): [Tag, DicomElement] {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return [t, { tag: t, vr: 'US', value: b }];
}

const ds = (n: number) => Number(n.toFixed(4)).toString();

/**
 * Hounsfield units of the phantom at (x, y) in millimetres from the centre of a slice
 * at z (0 at the vertex, 1 at the skull base).
 */
function phantomHU(x: number, y: number, z: number, bleed: boolean): number {
  // The head narrows towards the vertex.
  const scale = 0.55 + 0.45 * Math.sin(Math.PI * (0.25 + 0.6 * z));
  const a = 72 * scale, b = 90 * scale;
  const r = (x / a) ** 2 + (y / b) ** 2;
  if (r > 1) return -1000;
  if (r > 0.86) return 60; // scalp
  if (r > 0.72) return 900 + 200 * Math.cos(x / 3); // skull, with some texture
  const ventricle = ((x - 9) / 6) ** 2 + (y / 22) ** 2 < 1 || ((x + 9) / 6) ** 2 + (y / 22) ** 2 < 1;
  if (ventricle && z > 0.35 && z < 0.7) return 6;
  if (bleed && ((x - 28) / 9) ** 2 + ((y + 20) / 7) ** 2 < 1 && z > 0.4 && z < 0.6) return 68;
  // Grey matter at the rim, white matter inside.
  return r > 0.55 ? 40 : 28;
}

/** The Part 10 files of a series, one per slice, in explicit VR little endian. */
export function demoSeriesFiles(s: DemoSeries): Array<{ SOPInstanceUID: string; file: Buffer }> {
  const StudyInstanceUID = demoUID(`${s.key}/study`);
  const SeriesInstanceUID = demoUID(`${s.key}/series`);
  const FrameOfReferenceUID = demoUID(`${s.key}/frame-of-reference`);
  const pixelSpacing = 200 / s.size;
  const thickness = 5;
  const files: Array<{ SOPInstanceUID: string; file: Buffer }> = [];
  for (let i = 0; i < s.slices; i++) {
    const SOPInstanceUID = demoUID(`${s.key}/instance/${i + 1}`);
    const zPosition = -i * thickness;
    const pixels = Buffer.alloc(s.size * s.size * 2);
    const zFraction = s.slices === 1 ? 0.5 : i / (s.slices - 1);
    for (let row = 0; row < s.size; row++) {
      for (let col = 0; col < s.size; col++) {
        const x = (col - s.size / 2) * pixelSpacing, y = (row - s.size / 2) * pixelSpacing;
        // Stored value = HU + 1024 (RescaleIntercept −1024), 12 bits.
        const stored = Math.max(0, Math.min(4095, Math.round(phantomHU(x, y, zFraction, s.bleed === true) + 1024)));
        pixels.writeUInt16LE(stored, (row * s.size + col) * 2);
      }
    }
    const elements: Array<[Tag, DicomElement]> = [
      text(Tags.SpecificCharacterSet, 'CS', 'ISO_IR 192'),
      text(Tags.ImageType, 'CS', 'ORIGINAL\\PRIMARY\\AXIAL'),
      text(Tags.SOPClassUID, 'UI', CTImageStorage),
      text(Tags.SOPInstanceUID, 'UI', SOPInstanceUID),
      text(Tags.StudyDate, 'DA', s.StudyDate),
      text(Tags.SeriesDate, 'DA', s.StudyDate),
      text(Tags.StudyTime, 'TM', s.StudyTime),
      text(Tags.SeriesTime, 'TM', s.StudyTime),
      text(Tags.AccessionNumber, 'SH', s.AccessionNumber),
      text(Tags.Modality, 'CS', 'CT'),
      text(Tags.InstitutionName, 'LO', s.InstitutionName),
      text(Tags.ReferringPhysicianName, 'PN', s.ReferringPhysicianName),
      text(Tags.StudyDescription, 'LO', s.StudyDescription),
      text(Tags.SeriesDescription, 'LO', s.SeriesDescription),
      text(Tags.PatientName, 'PN', s.patient.PatientName),
      text(Tags.PatientID, 'LO', s.patient.PatientID),
      text(Tags.PatientBirthDate, 'DA', s.patient.PatientBirthDate),
      text(Tags.PatientSex, 'CS', s.patient.PatientSex),
      text(Tags.BodyPartExamined, 'CS', s.BodyPartExamined),
      text(tag(0x0018, 0x0050), 'DS', ds(thickness)), // SliceThickness
      text(tag(0x0018, 0x0060), 'DS', '120'), // KVP
      text(Tags.StudyInstanceUID, 'UI', StudyInstanceUID),
      text(Tags.SeriesInstanceUID, 'UI', SeriesInstanceUID),
      text(Tags.StudyID, 'SH', s.AccessionNumber.slice(-8)),
      text(Tags.SeriesNumber, 'IS', '2'),
      text(Tags.InstanceNumber, 'IS', String(i + 1)),
      text(tag(0x0020, 0x0032), 'DS', `${ds(-100 + pixelSpacing / 2)}\\${ds(-100 + pixelSpacing / 2)}\\${ds(zPosition)}`), // ImagePositionPatient
      text(tag(0x0020, 0x0037), 'DS', '1\\0\\0\\0\\1\\0'), // ImageOrientationPatient
      text(tag(0x0020, 0x0052), 'UI', FrameOfReferenceUID),
      text(tag(0x0020, 0x1041), 'DS', ds(zPosition)), // SliceLocation
      us(Tags.SamplesPerPixel, 1),
      text(Tags.PhotometricInterpretation, 'CS', 'MONOCHROME2'),
      us(Tags.Rows, s.size),
      us(Tags.Columns, s.size),
      text(tag(0x0028, 0x0030), 'DS', `${ds(pixelSpacing)}\\${ds(pixelSpacing)}`), // PixelSpacing
      us(Tags.BitsAllocated, 16),
      us(Tags.BitsStored, 12),
      us(Tags.HighBit, 11),
      us(Tags.PixelRepresentation, 0),
      text(Tags.WindowCenter, 'DS', '40'),
      text(Tags.WindowWidth, 'DS', '80'),
      text(Tags.RescaleIntercept, 'DS', '-1024'),
      text(Tags.RescaleSlope, 'DS', '1'),
      [Tags.PixelData, { tag: Tags.PixelData, vr: 'OW', value: pixels }],
    ];
    if (s.patient.ins) elements.push([Tags.OtherPatientIDsSequence, { tag: Tags.OtherPatientIDsSequence, vr: 'SQ', items: [insOtherPatientIDsItem(s.patient.ins)] }]);
    const dataset: DicomDataset = new Map(elements);
    const file = buildPart10(
      { MediaStorageSOPClassUID: CTImageStorage, MediaStorageSOPInstanceUID: SOPInstanceUID, TransferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian },
      encodeDataset(dataset, true, true),
    );
    files.push({ SOPInstanceUID, file });
  }
  return files;
}

/** The StudyInstanceUID of a demo series. */
export function demoStudyUID(key: string): string {
  return demoUID(`${key}/study`);
}
