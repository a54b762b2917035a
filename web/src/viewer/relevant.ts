/**
 * Which series a radiologist expects on opening a study: the largest axial series, not the
 * localizer (scout, topogram) nor a reformat in another plane. Read from each candidate series'
 * WADO-RS metadata: Image Type (0008,0008) LOCALIZER, Image Orientation (Patient) (0020,0037).
 */
import { num, str, strs, type DicomJson } from '../dicom-json.ts';

export type Plane = 'axial' | 'sagittal' | 'coronal' | 'oblique' | 'unknown';

/** The plane of an image from its row and column direction cosines: the normal's main axis. */
export function planeOf(instance: DicomJson): Plane {
  const o = strs(instance, '00200037').map(Number);
  if (o.length !== 6 || o.some((x) => !Number.isFinite(x))) return 'unknown';
  const n = [o[1]! * o[5]! - o[2]! * o[4]!, o[2]! * o[3]! - o[0]! * o[5]!, o[0]! * o[4]! - o[1]! * o[3]!];
  const [x, y, z] = n.map(Math.abs) as [number, number, number];
  const most = Math.max(x, y, z);
  if (most < 0.8) return 'oblique';
  return most === z ? 'axial' : most === x ? 'sagittal' : 'coronal';
}

/** A localizer: Image Type says so (CT LOCALIZER, MR and others alike). */
export function isLocalizer(instance: DicomJson): boolean {
  return strs(instance, '00080008').some((v) => v.toUpperCase() === 'LOCALIZER');
}

export interface Candidate {
  SeriesInstanceUID: string;
  images: number;
  SeriesNumber: number;
}

/**
 * Ranks image series: not a localizer first, then axial (or of unknown plane: a radiograph, an
 * ultrasound), then the most images, then the lowest series number. `representative` is the
 * middle instance of each series (or undefined when its metadata could not be read).
 */
export function mostRelevant<T extends Candidate>(series: T[], representative: (s: T) => DicomJson | undefined): T | undefined {
  const score = (s: T) => {
    const first = representative(s);
    if (!first) return 1;
    if (isLocalizer(first)) return 0;
    const plane = planeOf(first);
    return plane === 'axial' ? 3 : plane === 'unknown' ? 2 : 1;
  };
  return [...series].sort((a, b) => score(b) - score(a) || b.images - a.images || a.SeriesNumber - b.SeriesNumber)[0];
}

/**
 * The middle instance of a series' metadata, by Instance Number: what the series is made of
 * (some scanners file their scout as instance 1 of the axial series).
 */
export function middleInstance(instances: DicomJson[]): DicomJson | undefined {
  const sorted = [...instances].sort((a, b) => (num(a, '00200013') ?? 0) - (num(b, '00200013') ?? 0));
  return sorted[Math.floor(sorted.length / 2)];
}

/** Text of an element for the overlay and the tag browser. */
export function text(instance: DicomJson | undefined, t: string): string | undefined {
  return instance ? str(instance, t) : undefined;
}
