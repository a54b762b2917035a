/**
 * DICOM Segmentations (SEG, PS3.3 A.51) over the images they were made on: each segment's
 * frames drawn in its colour on a canvas laid over the stack viewport, redrawn at every render
 * (slice, zoom, pan, rotation, flip), with a toggle per segment. A frame is matched to the
 * image it belongs to by the source image its functional groups name (Derivation Image >
 * Source Image), else by its Image Position (Patient) in the same frame of reference.
 * BINARY segmentations (1 bit a pixel) are drawn as they are, FRACTIONAL ones at 50 %;
 * compressed ones from their frames decoded by the server.
 * A SEG that points at nothing shown, or cannot be read, is said in words, never drawn black.
 */
import { useEffect, useMemo, useRef, useState } from 'react';
import { Enums, getRenderingEngine, metaData, type Types } from '@cornerstonejs/core';
import { getJson } from '../api.ts';
import { num, str, strs, tag, type DicomJson } from '../dicom-json.ts';
import type { Language } from '../i18n.ts';
import { dicomWebRoot } from './data-source.ts';
import { boundaryOf, readMultipartStream } from './multipart-stream.ts';

export const SegmentationStorage = '1.2.840.10008.5.1.4.1.1.66.4';

const texts = {
  fr: {
    title: 'Segmentation', failed: 'Segmentation illisible : elle fait partie de l\'examen téléchargé.',
    shown: (series: string) => `Segmentation superposée aux images de la série ${series} : les cases à cocher du volet d'images l'affichent ou la masquent.`,
    notShown: 'Segmentation : les images qu\'elle désigne ne sont pas dans cet examen, elle n\'est donc pas superposée ici ; elle fait partie de l\'examen téléchargé.',
    unsupported: 'Segmentation d\'un type non affichable ici ; elle fait partie de l\'examen téléchargé.',
    segments: 'Segments',
  },
  en: {
    title: 'Segmentation', failed: 'This segmentation cannot be read; it is part of the downloaded study.',
    shown: (series: string) => `Segmentation laid over the images of series ${series}: the check boxes of the image pane show or hide it.`,
    notShown: 'Segmentation: the images it refers to are not in this study, so it is not laid over them here; it is part of the downloaded study.',
    unsupported: 'This kind of segmentation cannot be shown here; it is part of the downloaded study.',
    segments: 'Segments',
  },
} as const;

type Vec = [number, number, number];
type Rgb = [number, number, number];

function seq(ds: DicomJson | undefined, t: string): DicomJson[] {
  return (ds?.[t]?.Value ?? []) as DicomJson[];
}

export interface Segment { number: number; label: string; rgb: Rgb }

export interface SegFrame {
  /** 0-based frame index in the pixel data. */
  index: number;
  segment: number;
  /** The source images it was derived from (SOP Instance UID, and frame of a multi-frame source). */
  sources: Array<{ sop: string; frame?: number }>;
  position?: Vec;
  orientation?: [number, number, number, number, number, number];
  /** Pixel Spacing: between rows, between columns. */
  spacing?: [number, number];
}

export interface ParsedSeg {
  sop: string;
  SeriesInstanceUID: string;
  SeriesNumber: string;
  description: string;
  rows: number;
  columns: number;
  /** Number of Frames: the pixel data holds this many. */
  frameCount: number;
  type: string;
  bitsAllocated: number;
  maxFractional: number;
  referencedSeries: string[];
  frameOfReference?: string;
  segments: Segment[];
  frames: SegFrame[];
  pixelData: { uri?: string; inline?: string };
}

/** Colours given to segments without a recommended one. */
const palette: Rgb[] = [[230, 60, 60], [60, 200, 80], [70, 130, 240], [240, 200, 40], [200, 80, 220], [40, 210, 210]];

/**
 * RecommendedDisplayCIELabValue (0062,000D), PCS-Lab scaled to 0..65535 (PS3.3 C.10.7.1.1),
 * to sRGB: Lab → XYZ (D50, the ICC profile connection space) → Bradford to D65 → sRGB.
 */
export function labToRgb(scaled: number[]): Rgb {
  const L = (scaled[0]! / 65535) * 100;
  const a = (scaled[1]! / 65535) * 255 - 128;
  const b = (scaled[2]! / 65535) * 255 - 128;
  const fy = (L + 16) / 116, fx = fy + a / 500, fz = fy - b / 200;
  const inv = (t: number) => (t ** 3 > 0.008856 ? t ** 3 : (t - 16 / 116) / 7.787);
  const [X, Y, Z] = [0.96422 * inv(fx), 1.0 * inv(fy), 0.82521 * inv(fz)];
  // Bradford D50 → D65.
  const x = 0.9555766 * X - 0.0230393 * Y + 0.0631636 * Z;
  const y = -0.0282895 * X + 1.0099416 * Y + 0.0210077 * Z;
  const z = 0.0122982 * X - 0.020483 * Y + 1.3299098 * Z;
  const lin = [3.2404542 * x - 1.5371385 * y - 0.4985314 * z, -0.969266 * x + 1.8760108 * y + 0.041556 * z, 0.0556434 * x - 0.2040259 * y + 1.0572252 * z];
  const gamma = (c: number) => Math.round(255 * Math.min(1, Math.max(0, c <= 0.0031308 ? 12.92 * c : 1.055 * c ** (1 / 2.4) - 0.055)));
  return [gamma(lin[0]!), gamma(lin[1]!), gamma(lin[2]!)];
}

const numbers = (ds: DicomJson | undefined, t: string) => (ds ? strs(ds, t).map(Number) : []);

/** A SEG instance's segments and frames, from its WADO-RS metadata; a string says why it cannot be drawn. */
export function parseSegmentation(ds: DicomJson): ParsedSeg | string {
  const type = str(ds, '00620001') ?? '';
  const bitsAllocated = num(ds, '00280100') ?? 0;
  if (!(type === 'BINARY' && bitsAllocated === 1) && !(type === 'FRACTIONAL' && bitsAllocated === 8)) return `segmentation type ${type || '?'} of ${bitsAllocated} bits`;
  const rows = num(ds, '00280010') ?? 0, columns = num(ds, '00280011') ?? 0;
  const count = num(ds, tag.NumberOfFrames) ?? 1;
  if (!(rows > 0 && columns > 0 && count > 0)) return 'no frames';
  const pixel = ds['7FE00010'];
  if (!pixel?.BulkDataURI && !pixel?.InlineBinary) return 'no pixel data';
  const segments = seq(ds, '00620002').map((s, i): Segment => {
    const lab = numbers(s, '0062000D');
    const n = num(s, '00620004') ?? i + 1;
    return { number: n, label: str(s, '00620005') ?? `${n}`, rgb: lab.length === 3 ? labToRgb(lab) : palette[i % palette.length]! };
  });
  const shared = seq(ds, '52009229')[0];
  const perFrame = seq(ds, '52009230');
  const frames: SegFrame[] = [];
  if (perFrame.length > 0 && perFrame.length !== count) return `${perFrame.length} per-frame functional groups for ${count} frames`;
  for (let index = 0; index < count; index++) {
    const group = (t: string) => seq(perFrame[index], t)[0] ?? seq(shared, t)[0];
    const segment = num(group('0062000A') ?? {}, '0062000B');
    if (segment === undefined) continue;
    const sources = [...seq(perFrame[index], '00089124'), ...seq(shared, '00089124')]
      .flatMap((d) => seq(d, '00082112'))
      .map((s) => ({ sop: str(s, '00081155') ?? '', ...(num(s, '00081160') !== undefined ? { frame: num(s, '00081160')! } : {}) }))
      .filter((s) => s.sop !== '');
    const position = numbers(group('00209113'), '00200032');
    const orientation = numbers(group('00209116'), '00200037');
    const spacing = numbers(group('00289110'), '00280030');
    frames.push({
      index, segment, sources,
      ...(position.length === 3 && position.every(Number.isFinite) ? { position: position as Vec } : {}),
      ...(orientation.length === 6 && orientation.every(Number.isFinite) ? { orientation: orientation as SegFrame['orientation'] & object } : {}),
      ...(spacing.length === 2 && spacing.every((v) => v > 0) ? { spacing: spacing as [number, number] } : {}),
    });
  }
  if (segments.length === 0 || frames.length === 0) return 'no segment';
  const frameOfReference = str(ds, '00200052');
  return {
    sop: str(ds, tag.SOPInstanceUID) ?? '', SeriesInstanceUID: str(ds, tag.SeriesInstanceUID) ?? '', SeriesNumber: str(ds, tag.SeriesNumber) ?? '',
    description: str(ds, tag.SeriesDescription) ?? '', rows, columns, frameCount: count, type, bitsAllocated, maxFractional: (num(ds, '0062000E') ?? 0) > 0 ? num(ds, '0062000E')! : 255,
    referencedSeries: seq(ds, '00081115').map((s) => str(s, tag.SeriesInstanceUID) ?? ''),
    ...(frameOfReference ? { frameOfReference } : {}),
    segments, frames,
    pixelData: { ...(pixel.BulkDataURI ? { uri: pixel.BulkDataURI } : {}), ...(pixel.InlineBinary ? { inline: pixel.InlineBinary } : {}) },
  };
}

/** A SEG's decoded pixels: whether pixel `p` of frame `frame` (0-based) is in the segment. */
interface Pixels { on(frame: number, p: number): boolean }

const ExplicitVRLittleEndian = '1.2.840.10008.1.2.1';

/**
 * A SEG's pixels. Native pixel data is read whole (one bit a pixel: small), from its metadata
 * or its bulk data; compressed pixel data (encapsulated: FFFE,E000 items first, or not of the
 * native length) is asked for again as frames decoded by the server. What cannot be had either way is
 * said, not drawn as noise.
 */
async function pixelsOf(seg: ParsedSeg, StudyInstanceUID: string): Promise<Pixels> {
  const n = seg.rows * seg.columns;
  const fractional = (v: number) => v * 2 >= seg.maxFractional;
  const instanceUrl = `${dicomWebRoot()}/studies/${encodeURIComponent(StudyInstanceUID)}/series/${encodeURIComponent(seg.SeriesInstanceUID)}/instances/${encodeURIComponent(seg.sop)}`;
  let bytes: Uint8Array;
  if (seg.pixelData.inline) bytes = Uint8Array.from(atob(seg.pixelData.inline), (c) => c.charCodeAt(0));
  else {
    const r = await fetch(seg.pixelData.uri ?? `${instanceUrl}/bulk/7FE00010`, { headers: { accept: 'application/octet-stream' }, credentials: 'same-origin' });
    if (!r.ok) throw new Error(`segmentation pixel data: ${r.status}`);
    bytes = new Uint8Array(await r.arrayBuffer());
  }
  // Native pixel data is exactly this long (and a byte of padding to an even length).
  const needed = seg.bitsAllocated === 1 ? Math.ceil((n * seg.frameCount) / 8) : n * seg.frameCount;
  const encapsulated = bytes[0] === 0xfe && bytes[1] === 0xff && bytes[2] === 0x00 && bytes[3] === 0xe0;
  if (!encapsulated && bytes.length >= needed && bytes.length <= needed + 1) {
    const b = bytes;
    return seg.bitsAllocated === 1
      ? { on: (f, p) => ((b[(f * n + p) >> 3]! >> ((f * n + p) & 7)) & 1) === 1 }
      : { on: (f, p) => fractional(b[f * n + p]!) };
  }
  // Compressed: the frames decoded by the server, a hundred a request, each frame's bits from its first byte.
  const frames: Uint8Array[] = [];
  for (let first = 1; first <= seg.frameCount; first += 100) {
    const list = Array.from({ length: Math.min(100, seg.frameCount - first + 1) }, (_, i) => first + i).join(',');
    const r = await fetch(`${instanceUrl}/frames/${list}`, {
      headers: { accept: `multipart/related; type="application/octet-stream"; transfer-syntax=${ExplicitVRLittleEndian}` }, credentials: 'same-origin',
    });
    const boundary = boundaryOf(r.headers.get('content-type'));
    if (!r.ok || !r.body || !boundary) throw new Error(`segmentation frames: ${r.status}`);
    for await (const part of readMultipartStream(r.body, boundary)) frames.push(part.body);
  }
  const frameBytes = seg.bitsAllocated === 1 ? Math.ceil(n / 8) : n;
  if (frames.length !== seg.frameCount || frames.some((f) => f.length < frameBytes)) throw new Error('segmentation frames: not the frames expected');
  return seg.bitsAllocated === 1
    ? { on: (f, p) => ((frames[f]![p >> 3]! >> (p & 7)) & 1) === 1 }
    : { on: (f, p) => fractional(frames[f]![p]!) };
}

/** One frame of a SEG as an image of its segment's colour where the mask is set, transparent elsewhere. */
function frameCanvas(seg: ParsedSeg, pixels: Pixels, frame: SegFrame, rgb: Rgb): HTMLCanvasElement | undefined {
  const n = seg.rows * seg.columns;
  const canvas = document.createElement('canvas');
  canvas.width = seg.columns;
  canvas.height = seg.rows;
  const context = canvas.getContext('2d');
  if (!context) return undefined;
  const image = context.createImageData(seg.columns, seg.rows);
  let any = false;
  for (let p = 0; p < n; p++) {
    if (!pixels.on(frame.index, p)) continue;
    any = true;
    image.data[p * 4] = rgb[0];
    image.data[p * 4 + 1] = rgb[1];
    image.data[p * 4 + 2] = rgb[2];
    image.data[p * 4 + 3] = 255;
  }
  if (!any) return undefined;
  context.putImageData(image, 0, 0);
  return canvas;
}

interface ImagePlane {
  imagePositionPatient?: number[]; rowCosines?: number[]; columnCosines?: number[];
  rowPixelSpacing?: number; columnPixelSpacing?: number; rows?: number; columns?: number; frameOfReferenceUID?: string;
}

const planeOf = (imageId: string) => metaData.get('imagePlaneModule', imageId) as ImagePlane | undefined;
const imageRef = (imageId: string) => /\/instances\/([^/]+)\/frames\/(\d+)$/.exec(imageId);

/** Where each SEG frame goes: the image id of the viewport's stack it lies on. */
export function matchFrames(seg: ParsedSeg, imageIds: string[]): Map<string, SegFrame[]> {
  const idsOfSop = new Map<string, string[]>();
  for (const id of imageIds) {
    const m = imageRef(id);
    if (!m) continue;
    const sop = decodeURIComponent(m[1]!);
    idsOfSop.set(sop, [...(idsOfSop.get(sop) ?? []), id]);
  }
  const near = (id: string, p: Vec) => {
    const ipp = planeOf(id)?.imagePositionPatient;
    return ipp !== undefined && Math.hypot(ipp[0]! - p[0], ipp[1]! - p[1], ipp[2]! - p[2]) < 0.1;
  };
  const sameFrameOfReference = (id: string) => {
    const f = planeOf(id)?.frameOfReferenceUID;
    return !seg.frameOfReference || !f || f === seg.frameOfReference;
  };
  const out = new Map<string, SegFrame[]>();
  for (const frame of seg.frames) {
    let target: string | undefined;
    for (const s of frame.sources) {
      const ids = idsOfSop.get(s.sop) ?? [];
      target = s.frame !== undefined ? ids.find((id) => imageRef(id)![2] === String(s.frame))
        : ids.length === 1 ? ids[0] : frame.position ? ids.find((id) => near(id, frame.position!)) : undefined;
      if (target) break;
    }
    // No source named (or none of this stack): the image at the frame's position, same frame of reference.
    if (!target && frame.sources.length === 0 && frame.position) target = imageIds.find((id) => sameFrameOfReference(id) && near(id, frame.position!));
    if (target) out.set(target, [...(out.get(target) ?? []), frame]);
  }
  return out;
}

/** The world position of a SEG frame's pixel (column u, row v; integers are pixel centres). */
function pixelToWorld(seg: ParsedSeg, frame: SegFrame, imageId: string): ((u: number, v: number) => Vec) | undefined {
  const plane = planeOf(imageId);
  // The same grid as its image: the image's own geometry, as the viewport shows it.
  if (plane?.imagePositionPatient && plane.rowCosines && plane.columnCosines && plane.rows === seg.rows && plane.columns === seg.columns) {
    const p = plane.imagePositionPatient, r = plane.rowCosines, c = plane.columnCosines;
    const dx = plane.columnPixelSpacing ?? 1, dy = plane.rowPixelSpacing ?? 1;
    return (u, v) => [0, 1, 2].map((k) => p[k]! + u * dx * r[k]! + v * dy * c[k]!) as Vec;
  }
  if (frame.position && frame.orientation && frame.spacing) {
    const p = frame.position, o = frame.orientation, [dy, dx] = frame.spacing;
    return (u, v) => [0, 1, 2].map((k) => p[k]! + u * dx * o[k]! + v * dy * o[k + 3]!) as Vec;
  }
  return undefined;
}

interface Loaded { seg: ParsedSeg; pixels?: Pixels; failed?: boolean }

const segmentKey = (seg: ParsedSeg, segment: number) => `${seg.sop}#${segment}`;

/** The SEG instances of a study, parsed (those that cannot be drawn left out, the panel says so). */
async function segmentationsOf(StudyInstanceUID: string): Promise<Array<ParsedSeg | string>> {
  const root = `${dicomWebRoot()}/studies/${encodeURIComponent(StudyInstanceUID)}`;
  const series = await getJson<DicomJson[]>(`${root}/series`, 'application/dicom+json');
  const segSeries = series.filter((s) => str(s, tag.Modality) === 'SEG').map((s) => str(s, tag.SeriesInstanceUID) ?? '');
  const lists = await Promise.all(segSeries.map((uid) => getJson<DicomJson[]>(`${root}/series/${encodeURIComponent(uid)}/metadata`, 'application/dicom+json').catch(() => [])));
  return lists.flat().filter((ds) => str(ds, tag.SOPClassUID) === SegmentationStorage).map(parseSegmentation);
}

/**
 * The segmentations of the study over one stack viewport: the canvas drawn at each render and,
 * when one applies to the series shown, the list of its segments with a toggle each.
 */
export function SegmentationOverlay(props: {
  engineId: string; viewportId: string; element: HTMLDivElement | null; StudyInstanceUID: string; SeriesInstanceUID: string; index: number; language: Language;
}) {
  const { engineId, viewportId, element, index } = props;
  const t = texts[props.language];
  const canvas = useRef<HTMLCanvasElement>(null);
  const [segs, setSegs] = useState<ParsedSeg[]>([]);
  const [imageIds, setImageIds] = useState<string[]>([]);
  const [loaded, setLoaded] = useState<Map<string, Loaded>>(new Map());
  const [hidden, setHidden] = useState<ReadonlySet<string>>(new Set());
  const frameImages = useRef(new Map<string, HTMLCanvasElement | undefined>());

  useEffect(() => {
    let cancelled = false;
    setSegs([]);
    segmentationsOf(props.StudyInstanceUID).then((list) => {
      if (!cancelled) setSegs(list.filter((s): s is ParsedSeg => typeof s !== 'string'));
    }, (e: unknown) => console.warn('segmentations not listed', e));
    return () => { cancelled = true; };
  }, [props.StudyInstanceUID]);

  // The stack's image ids, once it is set (and again if it changes).
  useEffect(() => {
    if (!element || segs.length === 0) return;
    const check = () => {
      const viewport = getRenderingEngine(engineId)?.getViewport(viewportId) as Types.IStackViewport | undefined;
      const ids = viewport?.getImageIds?.() ?? [];
      setImageIds((current) => (current.length === ids.length && current[0] === ids[0] ? current : ids));
    };
    element.addEventListener(Enums.Events.IMAGE_RENDERED, check);
    check();
    return () => element.removeEventListener(Enums.Events.IMAGE_RENDERED, check);
  }, [element, segs, props.SeriesInstanceUID]);

  // Which SEGs have frames on this stack, and where.
  const matched = useMemo(() => segs.map((seg) => ({ seg, frames: matchFrames(seg, imageIds) })).filter((m) => m.frames.size > 0), [segs, imageIds]);

  // Their pixel data, fetched once each.
  useEffect(() => {
    for (const { seg } of matched) {
      if (loaded.has(seg.sop)) continue;
      setLoaded((m) => new Map(m).set(seg.sop, { seg }));
      pixelsOf(seg, props.StudyInstanceUID).then(
        (pixels) => setLoaded((m) => new Map(m).set(seg.sop, { seg, pixels })),
        (e: unknown) => {
          console.warn('segmentation not drawn', e);
          setLoaded((m) => new Map(m).set(seg.sop, { seg, failed: true }));
        },
      );
    }
  }, [matched]);

  // Drawn at every render of the viewport, and when a segment is shown or hidden.
  useEffect(() => {
    const target = canvas.current;
    if (!element || !target) return;
    const draw = () => {
      const viewport = getRenderingEngine(engineId)?.getViewport(viewportId) as Types.IStackViewport | undefined;
      const dpr = window.devicePixelRatio || 1;
      const width = Math.round(element.clientWidth * dpr), height = Math.round(element.clientHeight * dpr);
      if (target.width !== width || target.height !== height) {
        target.width = width;
        target.height = height;
      }
      const context = target.getContext('2d');
      if (!context) return;
      context.setTransform(1, 0, 0, 1, 0, 0);
      context.clearRect(0, 0, width, height);
      const imageId = viewport?.getCurrentImageId?.();
      let drawn = 0;
      if (viewport && imageId) {
        for (const { seg, frames } of matched) {
          const pixels = loaded.get(seg.sop)?.pixels;
          if (!pixels) continue;
          for (const frame of frames.get(imageId) ?? []) {
            const segment = seg.segments.find((s) => s.number === frame.segment);
            if (!segment || hidden.has(segmentKey(seg, frame.segment))) continue;
            const key = `${seg.sop}/${frame.index}`;
            if (!frameImages.current.has(key)) frameImages.current.set(key, frameCanvas(seg, pixels, frame, segment.rgb));
            const picture = frameImages.current.get(key);
            const world = pixelToWorld(seg, frame, imageId);
            if (!picture || !world) continue;
            // The frame's pixel grid onto the canvas: its corner (-½, -½) and its two edges.
            const o = viewport.worldToCanvas(world(-0.5, -0.5) as Types.Point3);
            const x = viewport.worldToCanvas(world(seg.columns - 0.5, -0.5) as Types.Point3);
            const y = viewport.worldToCanvas(world(-0.5, seg.rows - 0.5) as Types.Point3);
            context.setTransform(
              ((x[0] - o[0]) / seg.columns) * dpr, ((x[1] - o[1]) / seg.columns) * dpr,
              ((y[0] - o[0]) / seg.rows) * dpr, ((y[1] - o[1]) / seg.rows) * dpr,
              o[0] * dpr, o[1] * dpr,
            );
            context.imageSmoothingEnabled = false;
            context.globalAlpha = 0.5;
            context.drawImage(picture, 0, 0);
            drawn++;
          }
        }
      }
      target.dataset.drawn = String(drawn);
      target.dataset.imageId = imageId ?? '';
    };
    element.addEventListener(Enums.Events.IMAGE_RENDERED, draw);
    draw();
    return () => element.removeEventListener(Enums.Events.IMAGE_RENDERED, draw);
  }, [element, matched, loaded, hidden]);

  const toggle = (key: string) => setHidden((h) => {
    const next = new Set(h);
    if (!next.delete(key)) next.add(key);
    return next;
  });

  return (
    <>
      <canvas ref={canvas} className="segmentation-canvas" data-testid={`segmentation-canvas-${index}`}
        style={{ position: 'absolute', inset: 0, width: '100%', height: '100%', pointerEvents: 'none' }} />
      {matched.length > 0 && (
        <div className="segmentation-panel" data-testid={`segmentation-${index}`} aria-label={t.title} onPointerDown={(e) => e.stopPropagation()}
          style={{ position: 'absolute', left: 6, top: '5.5rem', maxWidth: '40%', padding: '0.25rem 0.4rem', fontSize: '0.78rem', background: 'rgba(0, 0, 0, 0.6)', color: '#e8e8e8', borderRadius: 3 }}>
          {matched.map(({ seg }) => {
            const state = loaded.get(seg.sop);
            return (
              <div key={seg.sop}>
                <div className="muted">{t.title}{seg.description ? ` · ${seg.description}` : ''}</div>
                {state?.failed ? <div role="status" data-testid={`segmentation-failed-${index}`}>{t.failed}</div> : seg.segments.map((s) => {
                  const key = segmentKey(seg, s.number);
                  return (
                    <label key={key} className="inline" style={{ margin: 0, fontSize: 'inherit', cursor: 'pointer' }}>
                      <input type="checkbox" checked={!hidden.has(key)} onChange={() => toggle(key)} data-testid="segment-toggle" data-label={s.label} />
                      <span aria-hidden="true" style={{ width: '0.8em', height: '0.8em', background: `rgb(${s.rgb.join(',')})`, display: 'inline-block' }} />
                      <span data-testid="segment-label">{s.label}</span>
                    </label>
                  );
                })}
              </div>
            );
          })}
        </div>
      )}
    </>
  );
}

/**
 * A SEG opened from the series list: where it is drawn (over the image series of this study
 * it refers to) or why it is not, and its segments.
 */
export function SegmentationNote({ StudyInstanceUID, instance, language }: { StudyInstanceUID: string; instance: DicomJson; language: Language }) {
  const t = texts[language];
  const parsed = useMemo(() => parseSegmentation(instance), [instance]);
  const [shownOver, setShownOver] = useState<string | null>();
  useEffect(() => {
    if (typeof parsed === 'string') return;
    let cancelled = false;
    const root = `${dicomWebRoot()}/studies/${encodeURIComponent(StudyInstanceUID)}`;
    (async () => {
      const series = await getJson<DicomJson[]>(`${root}/series`, 'application/dicom+json');
      const images = series.filter((s) => !['SEG', 'SR', 'KO', 'PR', 'DOC'].includes(str(s, tag.Modality) ?? ''));
      // The series it names, else the one holding one of its source images.
      let found = images.find((s) => parsed.referencedSeries.includes(str(s, tag.SeriesInstanceUID) ?? ''));
      // Else the one holding one of its source images, or, when it names none, an image at one of its positions.
      const sources = new Set(parsed.frames.flatMap((f) => f.sources.map((s) => s.sop)));
      const positions = parsed.frames.filter((f) => f.sources.length === 0 && f.position).map((f) => f.position!);
      const at = (m: DicomJson) => {
        const p = strs(m, '00200032').map(Number);
        return p.length === 3 && str(m, '00200052') === parsed.frameOfReference && positions.some((q) => Math.hypot(p[0]! - q[0], p[1]! - q[1], p[2]! - q[2]) < 0.1);
      };
      for (const s of images) {
        if (found || (sources.size === 0 && positions.length === 0)) break;
        const metadata = await getJson<DicomJson[]>(`${root}/series/${encodeURIComponent(str(s, tag.SeriesInstanceUID) ?? '')}/metadata`, 'application/dicom+json').catch(() => []);
        if (metadata.some((m) => sources.has(str(m, tag.SOPInstanceUID) ?? '') || at(m))) found = s;
      }
      return found ? `${str(found, tag.SeriesNumber) ?? ''} ${str(found, tag.Modality) ?? ''} ${str(found, tag.SeriesDescription) ?? ''}`.trim() : null;
    })().then((s) => { if (!cancelled) setShownOver(s); }, () => { if (!cancelled) setShownOver(null); });
    return () => { cancelled = true; };
  }, [parsed, StudyInstanceUID]);
  if (typeof parsed === 'string') return <p className="status" role="status" data-testid="document-segmentation" data-state="unsupported">{t.unsupported}</p>;
  if (shownOver === undefined) return null;
  return (
    <div data-testid="document-segmentation" data-state={shownOver ? 'shown' : 'not-shown'}>
      <p className="status" role="status">{shownOver ? t.shown(shownOver) : t.notShown}</p>
      <div className="muted">{t.segments}</div>
      <ul>
        {parsed.segments.map((s) => (
          <li key={s.number}><span aria-hidden="true" style={{ width: '0.8em', height: '0.8em', background: `rgb(${s.rgb.join(',')})`, display: 'inline-block', marginRight: '0.3em' }} />{s.label}</li>
        ))}
      </ul>
    </div>
  );
}
