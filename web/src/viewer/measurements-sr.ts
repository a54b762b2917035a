/**
 * Measurements and annotations as a DICOM Comprehensive SR, template TID 1500 "Measurement
 * Report" (PS3.16): one Measurement Group (TID 1501) a measurement, with its values (NUM) each
 * inferred from the region drawn (SCOORD, in the image's pixel coordinates) on the image it was
 * drawn on. Built with dcmjs (loaded only when saving or reading one), stored in the study by
 * STOW-RS like any object (the server decides and audits), read back to redraw them on reload.
 */
import { num, str, strs, tag, type DicomJson } from '../dicom-json.ts';
import type { Language } from '../i18n.ts';
import { items, SOPClass } from './documents.tsx';
import { newUID } from './key-objects.ts';

/** What a saved measurement keeps: the tool that drew it, where, and its values. */
export interface SavedMeasurement {
  /** Cornerstone3D tool name (Length, Angle, Probe, EllipticalROI, RectangleROI). */
  toolName: string;
  SeriesInstanceUID: string;
  SOPInstanceUID: string;
  SOPClassUID: string;
  frame?: number;
  /** Image coordinates (column, row), as the tool's handles are ordered. */
  points: Array<[number, number]>;
  values: Array<{ name: string; value: number; unit: string }>;
  /** The measurement's tracking UID. */
  uid: string;
}

type Code = { CodeValue: string; CodingSchemeDesignator: string; CodeMeaning: string };
const code = (CodeValue: string, CodingSchemeDesignator: string, CodeMeaning: string): Code => ({ CodeValue, CodingSchemeDesignator, CodeMeaning });

export const concepts = {
  report: code('126000', 'DCM', 'Imaging Measurement Report'),
  language: code('121049', 'DCM', 'Language of Content Item and Descendants'),
  observerType: code('121005', 'DCM', 'Observer Type'),
  person: code('121006', 'DCM', 'Person'),
  observerName: code('121008', 'DCM', 'Person Observer Name'),
  procedure: code('121058', 'DCM', 'Procedure reported'),
  imagingProcedure: code('363679005', 'SCT', 'Imaging procedure'),
  imageLibrary: code('111028', 'DCM', 'Image Library'),
  imageLibraryGroup: code('126200', 'DCM', 'Image Library Group'),
  measurements: code('126010', 'DCM', 'Imaging Measurements'),
  group: code('125007', 'DCM', 'Measurement Group'),
  trackingId: code('112039', 'DCM', 'Tracking Identifier'),
  trackingUid: code('112040', 'DCM', 'Tracking Unique Identifier'),
  length: code('410668003', 'SCT', 'Length'),
  angle: code('1483009', 'SCT', 'Angle'),
  area: code('42798000', 'SCT', 'Area'),
  mean: code('373098007', 'SCT', 'Mean'),
  sd: code('386136009', 'SCT', 'Standard deviation'),
  attenuation: code('112031', 'DCM', 'Attenuation Coefficient'),
  pixelValue: code('371831001', 'SCT', 'Pixel value'),
} as const;

const units: Record<string, Code> = {
  mm: code('mm', 'UCUM', 'millimeter'),
  'mm²': code('mm2', 'UCUM', 'square millimeter'),
  HU: code('[hnsf\'U]', 'UCUM', 'Hounsfield unit'),
  '°': code('deg', 'UCUM', 'degree'),
  '': code('1', 'UCUM', 'no units'),
};

/** A unit as the SR stores it from the tool's unit text, and back. */
function unitCode(unit: string): Code {
  return units[unit] ?? code('1', 'UCUM', 'no units');
}
function unitText(c: DicomJson | undefined): string {
  const value = c ? str(c, '00080100') : undefined;
  return Object.entries(units).find(([, u]) => u.CodeValue === value)?.[0] ?? '';
}

const languages: Record<Language, Code> = { fr: code('fr-FR', 'RFC5646', 'French (France)'), en: code('en-US', 'RFC5646', 'English (United States)') };

/** A DS value: at most 16 characters. */
function decimal(v: number): string {
  for (let p = 10; p > 1; p--) {
    const s = String(Number(v.toPrecision(p)));
    if (s.length <= 16) return s;
  }
  return v.toExponential(6);
}

function twoDigits(n: number): string {
  return String(n).padStart(2, '0');
}

/** The SCOORD of a measurement: graphic type and data (column, row pairs). */
function scoordOf(m: SavedMeasurement): { GraphicType: string; GraphicData: number[] } {
  const p = m.points;
  const flat = (list: Array<[number, number]>) => list.flatMap(([x, y]) => [x, y]);
  switch (m.toolName) {
    case 'Probe': return { GraphicType: 'POINT', GraphicData: flat(p.slice(0, 1)) };
    case 'EllipticalROI': {
      // Cornerstone's handles: bottom, top, left, right. DICOM: the major axis, then the minor.
      const [bottom, top, left, right] = p as [[number, number], [number, number], [number, number], [number, number]];
      const vertical = Math.hypot(top[0] - bottom[0], top[1] - bottom[1]) >= Math.hypot(right[0] - left[0], right[1] - left[1]);
      return { GraphicType: 'ELLIPSE', GraphicData: flat(vertical ? [top, bottom, left, right] : [left, right, top, bottom]) };
    }
    case 'RectangleROI': {
      // Handles: top left, top right, bottom left, bottom right; a closed polyline goes round.
      const [tl, tr, bl, br] = p as [[number, number], [number, number], [number, number], [number, number]];
      return { GraphicType: 'POLYLINE', GraphicData: flat([tl, tr, br, bl, tl]) };
    }
    default: return { GraphicType: 'POLYLINE', GraphicData: flat(p) };
  }
}

/** The tool's handles back from a SCOORD (the inverse of scoordOf). */
function pointsOf(toolName: string, data: number[]): Array<[number, number]> {
  const pts: Array<[number, number]> = [];
  for (let i = 0; i + 1 < data.length; i += 2) pts.push([data[i]!, data[i + 1]!]);
  if (toolName === 'EllipticalROI' && pts.length === 4) {
    const [a1, a2, b1, b2] = pts as [[number, number], [number, number], [number, number], [number, number]];
    // The pair further apart in rows is top and bottom.
    const aVertical = Math.abs(a1[1] - a2[1]) >= Math.abs(b1[1] - b2[1]);
    const [v1, v2] = aVertical ? [a1, a2] : [b1, b2];
    const [h1, h2] = aVertical ? [b1, b2] : [a1, a2];
    const [top, bottom] = v1[1] <= v2[1] ? [v1, v2] : [v2, v1];
    const [left, right] = h1[0] <= h2[0] ? [h1, h2] : [h2, h1];
    return [bottom, top, left, right];
  }
  if (toolName === 'RectangleROI' && pts.length >= 4) {
    const [tl, tr, br, bl] = pts as [[number, number], [number, number], [number, number], [number, number]];
    return [tl, tr, bl, br];
  }
  return pts;
}

const valueConcepts: Record<string, Code> = {
  length: concepts.length, angle: concepts.angle, area: concepts.area, mean: concepts.mean, sd: concepts.sd, value: concepts.pixelValue,
};

/**
 * The Part 10 bytes of a Comprehensive SR (TID 1500) holding `measurements`, with the patient
 * and study of `source` (one of the measured images' metadata).
 */
export async function measurementReport(source: DicomJson, measurements: SavedMeasurement[], options: {
  observer: string; language: Language; series?: { SeriesInstanceUID: string; InstanceNumber: number }; now?: Date;
}): Promise<{ file: Uint8Array; SOPInstanceUID: string }> {
  const dcmjs = (await import('dcmjs')).default;
  const { DicomMetaDictionary, DicomDict } = dcmjs.data;
  const now = options.now ?? new Date();
  const SOPInstanceUID = newUID();
  const copied = (keyword: string, t: string) => {
    const v = str(source, t);
    return v === undefined ? {} : { [keyword]: v };
  };
  const imageRef = (m: SavedMeasurement) => ({
    ReferencedSOPClassUID: m.SOPClassUID, ReferencedSOPInstanceUID: m.SOPInstanceUID,
    ...(m.frame !== undefined ? { ReferencedFrameNumber: String(m.frame) } : {}),
  });
  const images = [...new Map(measurements.map((m) => [`${m.SOPInstanceUID}/${m.frame ?? ''}`, m])).values()];
  const groups = measurements.map((m, i) => {
    const scoord = {
      RelationshipType: 'INFERRED FROM', ValueType: 'SCOORD', ...scoordOf(m),
      ContentSequence: [{ RelationshipType: 'SELECTED FROM', ValueType: 'IMAGE', ReferencedSOPSequence: [imageRef(m)] }],
    };
    const nums = m.values.map((v, j) => ({
      RelationshipType: 'CONTAINS', ValueType: 'NUM', ConceptNameCodeSequence: [valueConcepts[v.name] ?? concepts.mean],
      MeasuredValueSequence: [{ NumericValue: decimal(v.value), MeasurementUnitsCodeSequence: [unitCode(v.unit)] }],
      // Every value is inferred from the region; the region is given once, with the first.
      ...(j === 0 ? { ContentSequence: [scoord] } : {}),
    }));
    return {
      RelationshipType: 'CONTAINS', ValueType: 'CONTAINER', ConceptNameCodeSequence: [concepts.group], ContinuityOfContent: 'SEPARATE',
      ContentTemplateSequence: [{ MappingResource: 'DCMR', TemplateIdentifier: '1501' }],
      ContentSequence: [
        { RelationshipType: 'HAS OBS CONTEXT', ValueType: 'TEXT', ConceptNameCodeSequence: [concepts.trackingId], TextValue: `Atrium:${m.toolName}:${i + 1}` },
        { RelationshipType: 'HAS OBS CONTEXT', ValueType: 'UIDREF', ConceptNameCodeSequence: [concepts.trackingUid], UID: m.uid },
        ...(nums.length > 0 ? nums : [{ ...scoord, RelationshipType: 'CONTAINS' }]),
      ],
    };
  });
  const date = `${now.getFullYear()}${twoDigits(now.getMonth() + 1)}${twoDigits(now.getDate())}`;
  const time = `${twoDigits(now.getHours())}${twoDigits(now.getMinutes())}${twoDigits(now.getSeconds())}`;
  const dataset = {
    SpecificCharacterSet: 'ISO_IR 192',
    SOPClassUID: SOPClass.ComprehensiveSR, SOPInstanceUID,
    ...copied('StudyDate', tag.StudyDate), ...copied('StudyTime', '00080030'), ContentDate: date, ContentTime: time,
    ...copied('AccessionNumber', tag.AccessionNumber), Modality: 'SR', Manufacturer: 'Atrium',
    ...copied('ReferringPhysicianName', '00080090'), ...copied('StudyDescription', tag.StudyDescription), SeriesDescription: 'Mesures',
    ReferencedPerformedProcedureStepSequence: [],
    ...copied('PatientName', tag.PatientName), ...copied('PatientID', tag.PatientID), ...copied('IssuerOfPatientID', tag.IssuerOfPatientID),
    ...copied('PatientBirthDate', tag.PatientBirthDate), ...copied('PatientSex', '00100040'),
    ...copied('StudyInstanceUID', tag.StudyInstanceUID), SeriesInstanceUID: options.series?.SeriesInstanceUID ?? newUID(),
    ...copied('StudyID', '00200010'), SeriesNumber: '9200', InstanceNumber: String(options.series?.InstanceNumber ?? 1),
    ValueType: 'CONTAINER', ConceptNameCodeSequence: [concepts.report], ContinuityOfContent: 'SEPARATE',
    ContentTemplateSequence: [{ MappingResource: 'DCMR', TemplateIdentifier: '1500' }],
    CompletionFlag: 'PARTIAL', VerificationFlag: 'UNVERIFIED',
    PerformedProcedureCodeSequence: [],
    CurrentRequestedProcedureEvidenceSequence: [{
      ...copied('StudyInstanceUID', tag.StudyInstanceUID),
      ReferencedSeriesSequence: [...new Set(images.map((m) => m.SeriesInstanceUID))].map((SeriesInstanceUID) => ({
        SeriesInstanceUID,
        ReferencedSOPSequence: images.filter((m) => m.SeriesInstanceUID === SeriesInstanceUID)
          .map((m) => ({ ReferencedSOPClassUID: m.SOPClassUID, ReferencedSOPInstanceUID: m.SOPInstanceUID })),
      })),
    }],
    ContentSequence: [
      { RelationshipType: 'HAS CONCEPT MOD', ValueType: 'CODE', ConceptNameCodeSequence: [concepts.language], ConceptCodeSequence: [languages[options.language]] },
      { RelationshipType: 'HAS OBS CONTEXT', ValueType: 'CODE', ConceptNameCodeSequence: [concepts.observerType], ConceptCodeSequence: [concepts.person] },
      { RelationshipType: 'HAS OBS CONTEXT', ValueType: 'PNAME', ConceptNameCodeSequence: [concepts.observerName], PersonName: options.observer },
      { RelationshipType: 'HAS CONCEPT MOD', ValueType: 'CODE', ConceptNameCodeSequence: [concepts.procedure], ConceptCodeSequence: [concepts.imagingProcedure] },
      {
        RelationshipType: 'CONTAINS', ValueType: 'CONTAINER', ConceptNameCodeSequence: [concepts.imageLibrary], ContinuityOfContent: 'SEPARATE',
        ContentSequence: [{
          RelationshipType: 'CONTAINS', ValueType: 'CONTAINER', ConceptNameCodeSequence: [concepts.imageLibraryGroup], ContinuityOfContent: 'SEPARATE',
          ContentSequence: images.map((m) => ({ RelationshipType: 'CONTAINS', ValueType: 'IMAGE', ReferencedSOPSequence: [imageRef(m)] })),
        }],
      },
      { RelationshipType: 'CONTAINS', ValueType: 'CONTAINER', ConceptNameCodeSequence: [concepts.measurements], ContinuityOfContent: 'SEPARATE', ContentSequence: groups },
    ],
  };
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: SOPClass.ComprehensiveSR, MediaStorageSOPInstanceUID: SOPInstanceUID,
    TransferSyntaxUID: '1.2.840.10008.1.2.1', ImplementationClassUID: '2.25.329800735698586629295641978511506172918', ImplementationVersionName: 'ATRIUM_WEB',
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(dataset);
  return { file: new Uint8Array(dict.write()), SOPInstanceUID };
}

const codeValue = (ds: DicomJson, t: string) => {
  const c = items(ds, t)[0];
  return c ? `${str(c, '00080102')}:${str(c, '00080100')}` : undefined;
};
const is = (ds: DicomJson, t: string, c: Code) => codeValue(ds, t) === `${c.CodingSchemeDesignator}:${c.CodeValue}`;

/** The measurements of TID 1500 reports among a study's SR documents (their metadata). */
export function measurementsOf(documents: DicomJson[], seriesOfInstance: (SOPInstanceUID: string) => string | undefined): SavedMeasurement[] {
  const found: SavedMeasurement[] = [];
  for (const d of documents) {
    if (!is(d, '0040A043', concepts.report)) continue;
    const evidence = new Map<string, string>();
    for (const study of items(d, '0040A375')) {
      for (const series of items(study, '00081115')) for (const sop of items(series, '00081199')) evidence.set(str(sop, '00081155') ?? '', str(series, tag.SeriesInstanceUID) ?? '');
    }
    for (const container of items(d, '0040A730').filter((i) => is(i, '0040A043', concepts.measurements))) {
      for (const group of items(container, '0040A730').filter((i) => is(i, '0040A043', concepts.group))) {
        const children = items(group, '0040A730');
        const trackingId = children.find((c) => is(c, '0040A043', concepts.trackingId));
        const trackingUid = children.find((c) => is(c, '0040A043', concepts.trackingUid));
        const toolName = /^Atrium:([A-Za-z]+):/.exec(trackingId ? str(trackingId, '0040A160') ?? '' : '')?.[1];
        const scoord = [...children, ...children.flatMap((c) => items(c, '0040A730'))].find((c) => str(c, '0040A040') === 'SCOORD');
        const image = scoord ? items(scoord, '0040A730').find((c) => str(c, '0040A040') === 'IMAGE') : undefined;
        const ref = image ? items(image, '00081199')[0] : undefined;
        if (!scoord || !ref) continue;
        const SOPInstanceUID = str(ref, '00081155') ?? '';
        const graphicType = str(scoord, '00700023');
        const tool = toolName ?? (graphicType === 'POINT' ? 'Probe' : graphicType === 'ELLIPSE' ? 'EllipticalROI' : 'Length');
        const values = children.filter((c) => str(c, '0040A040') === 'NUM').map((c) => {
          const measured = items(c, '0040A300')[0];
          const name = Object.entries(valueConcepts).find(([, k]) => is(c, '0040A043', k))?.[0] ?? 'value';
          return { name, value: measured ? num(measured, '0040A30A') ?? NaN : NaN, unit: unitText(measured ? items(measured, '004008EA')[0] : undefined) };
        });
        const frame = num(ref, '00081160');
        found.push({
          toolName: tool, SOPInstanceUID, SOPClassUID: str(ref, '00081150') ?? '',
          SeriesInstanceUID: evidence.get(SOPInstanceUID) ?? seriesOfInstance(SOPInstanceUID) ?? '',
          ...(frame !== undefined ? { frame } : {}),
          points: pointsOf(tool, strs(scoord, '00700022').map(Number)),
          values, uid: (trackingUid ? str(trackingUid, '0040A124') : undefined) ?? newUID(),
        });
      }
    }
  }
  return found;
}
