import { Readable } from 'node:stream';
import { Tags, TransferSyntax, type DicomDataset, type DicomElement, type Tag, type VR } from '../../src/dicom/dataset.ts';
import { buildPart10, encodeDataset } from '../../src/dicom/part10-writer.ts';
import { newUID } from '../../src/dicom/uids.ts';

/** Test objects made here, for cases no published file covers (two sites, large objects). */
export interface SyntheticOptions {
  PatientID?: string;
  PatientName?: string;
  StudyInstanceUID?: string;
  SeriesInstanceUID?: string;
  SOPInstanceUID?: string;
  Modality?: string;
  StudyDate?: string;
  Rows?: number;
  Columns?: number;
  NumberOfFrames?: number;
  /** SpecificCharacterSet; names are encoded accordingly (ISO_IR 192 → UTF-8, else latin1). */
  SpecificCharacterSet?: string;
  /** A PixelData length other than Rows x Columns x frames needs, to make inconsistent objects. */
  pixelBytes?: number;
  PatientBirthDate?: string;
  PatientSex?: string;
  /** More elements (sequences included), e.g. Other Patient IDs Sequence carrying an INS. */
  extra?: DicomElement[];
}

const CTImageStorage = '1.2.840.10008.5.1.4.1.1.2';

function text(tag: Tag, vr: VR, value: string, utf8 = false): DicomElement {
  let bytes = Buffer.from(value, utf8 ? 'utf8' : 'latin1');
  if (bytes.length % 2 === 1) bytes = Buffer.concat([bytes, Buffer.from(vr === 'UI' ? [0] : [0x20])]);
  return { tag, vr, value: bytes };
}

function us(tag: Tag, n: number): DicomElement {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return { tag, vr: 'US', value: b };
}

/** The header of a synthetic 16-bit CT object (everything before the pixel data value). */
export function syntheticHeader(o: SyntheticOptions = {}): { header: Buffer; pixelBytes: number; uids: { study: string; series: string; sop: string } } {
  const study = o.StudyInstanceUID ?? newUID();
  const series = o.SeriesInstanceUID ?? newUID();
  const sop = o.SOPInstanceUID ?? newUID();
  const rows = o.Rows ?? 16, columns = o.Columns ?? 16, frames = o.NumberOfFrames ?? 1;
  const utf8 = o.SpecificCharacterSet === 'ISO_IR 192';
  const elements: DicomElement[] = [
    text(Tags.SpecificCharacterSet, 'CS', o.SpecificCharacterSet ?? 'ISO_IR 100'),
    text(Tags.SOPClassUID, 'UI', CTImageStorage),
    text(Tags.SOPInstanceUID, 'UI', sop),
    text(Tags.StudyDate, 'DA', o.StudyDate ?? '20260315'),
    text(Tags.Modality, 'CS', o.Modality ?? 'CT'),
    text(Tags.PatientName, 'PN', o.PatientName ?? 'Dupont^Hélène', utf8),
    text(Tags.PatientID, 'LO', o.PatientID ?? 'P0001'),
    ...(o.PatientBirthDate ? [text(Tags.PatientBirthDate, 'DA', o.PatientBirthDate)] : []),
    ...(o.PatientSex ? [text(Tags.PatientSex, 'CS', o.PatientSex)] : []),
    text(Tags.StudyInstanceUID, 'UI', study),
    text(Tags.SeriesInstanceUID, 'UI', series),
    text(Tags.SeriesNumber, 'IS', '1'),
    text(Tags.InstanceNumber, 'IS', '1'),
    us(Tags.SamplesPerPixel, 1),
    text(Tags.PhotometricInterpretation, 'CS', 'MONOCHROME2'),
    ...(frames > 1 ? [text(Tags.NumberOfFrames, 'IS', String(frames))] : []),
    us(Tags.Rows, rows),
    us(Tags.Columns, columns),
    us(Tags.BitsAllocated, 16),
    us(Tags.BitsStored, 16),
    us(Tags.HighBit, 15),
    us(Tags.PixelRepresentation, 0),
  ];
  const ds: DicomDataset = new Map([...elements, ...(o.extra ?? [])].map((e) => [e.tag, e]));
  const pixelBytes = o.pixelBytes ?? rows * columns * 2 * frames;
  const body = encodeDataset(ds, true, true);
  // PixelData OW with a 4-byte length (explicit VR little endian).
  const pixelHeader = Buffer.alloc(12);
  pixelHeader.writeUInt16LE(0x7fe0, 0);
  pixelHeader.writeUInt16LE(0x0010, 2);
  pixelHeader.write('OW', 4, 'latin1');
  pixelHeader.writeUInt32LE(pixelBytes, 8);
  const header = buildPart10(
    { MediaStorageSOPClassUID: CTImageStorage, MediaStorageSOPInstanceUID: sop, TransferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian },
    Buffer.concat([body, pixelHeader]),
  );
  return { header, pixelBytes, uids: { study, series, sop } };
}

/** A whole synthetic object in memory (small ones). Pixel values follow a ramp. */
export function syntheticInstance(o: SyntheticOptions = {}): { file: Buffer; uids: { study: string; series: string; sop: string } } {
  const { header, pixelBytes, uids } = syntheticHeader(o);
  const pixels = Buffer.alloc(pixelBytes);
  for (let i = 0; i < pixelBytes / 2; i++) pixels.writeUInt16LE((i * 37) % 4096, i * 2);
  return { file: Buffer.concat([header, pixels]), uids };
}

/** A large synthetic object as a stream: the pixel data is generated as it is read, never held whole. */
export function syntheticStream(o: SyntheticOptions & { chunkBytes?: number }): { stream: Readable; size: number; uids: { study: string; series: string; sop: string } } {
  const { header, pixelBytes, uids } = syntheticHeader(o);
  const chunk = Buffer.alloc(o.chunkBytes ?? 1024 * 1024);
  for (let i = 0; i < chunk.length / 2; i++) chunk.writeUInt16LE(i % 4096, i * 2);
  async function* generate() {
    yield header;
    let left = pixelBytes;
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      yield n === chunk.length ? chunk : chunk.subarray(0, n);
      left -= n;
    }
  }
  return { stream: Readable.from(generate(), { objectMode: false }), size: header.length + pixelBytes, uids };
}
