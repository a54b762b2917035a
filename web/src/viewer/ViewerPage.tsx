import { lazy, Suspense, useCallback, useEffect, useRef, useState } from 'react';
import { RenderingEngine, Enums, cache, eventTarget, getRenderingEngine, utilities as csUtilities, type Types } from '@cornerstonejs/core';
import { getJson, studyArchiveUrl, whoAmI, type Me, type TimelineStudy } from '../api.ts';
import { str, num, strs, tag, type DicomJson } from '../dicom-json.ts';
import { formatDicomDate, formatPersonName, useTexts, type Language, type Texts } from '../i18n.ts';
import { navigate } from '../router.ts';
import {
  AnnotationEvents, Tool, forgetSeriesMetadata, imageIdsOfSeries, initCornerstone, instanceOfImageId, measuringTools, onImagesLoaded, seriesMetadata,
  streamSeries, toolGroupId, windowPresets, type PrimaryTool, type WindowPreset,
} from './cornerstone.ts';
import { measurementReport, measurementsOf, type SavedMeasurement } from './measurements-sr.ts';
import { Corners, sliceLines, useOverlayState } from './overlay.tsx';
import { middleInstance, mostRelevant } from './relevant.ts';
import { TagBrowser } from './tags.tsx';
import { ExamsElsewhere } from './elsewhere.tsx';
import { viewerTexts, type ViewerTexts } from './texts.ts';
import './viewer.css';
import { DocumentPanel, isImageSeries } from './documents.tsx';
import { SegmentationOverlay } from './segmentation.tsx';
// Not in the first chunk: the tools (and MPR, which needs them) come after the first image.
const MprView = lazy(() => import('./MprView.tsx').then((m) => ({ default: m.MprView })));
/** The tools' chunk (tools.ts): window/level, zoom, pan, wheel scrolling, measurements, cine, synchronizers. */
type ToolsModule = typeof import('./tools.ts');
import { dicomWebRoot, isRemoteStudy } from './data-source.ts';
import { keyImagesOf, keyImagesSeriesDescription, keyObjectSelection, mayStore, newUID, storeObject, type KeyImage } from './key-objects.ts';

const engineId = 'atrium-viewer';

const keyImageTexts = {
  fr: { mark: 'Image clé', keyImages: 'Images clés', keyImage: 'Image clé', frame: 'trame', saving: 'Enregistrement…', saved: 'Image clé enregistrée', failed: 'Image clé non enregistrée', cannotStore: 'Votre compte ne peut pas enregistrer d\'objets' },
  en: { mark: 'Key image', keyImages: 'Key images', keyImage: 'Key image', frame: 'frame', saving: 'Saving…', saved: 'Key image saved', failed: 'Key image not saved', cannotStore: 'Your account may not store objects' },
} as const;

interface SeriesSummary {
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  Modality: string;
  SeriesDescription: string;
  SeriesNumber: number;
  images: number;
  /** Image Type and Image Orientation (Patient) of one of its images, to choose the series to open. */
  sample: DicomJson;
}

interface StudySummary {
  StudyInstanceUID: string;
  StudyDate?: string;
  PatientName?: string;
  PatientID?: string;
  ModalitiesInStudy: string[];
  series: SeriesSummary[];
}

/** A measuring tool's statistics, as Cornerstone3D computes them (cachedStats). */
interface Stats {
  length?: number; angle?: number; unit?: string; area?: number; areaUnit?: string; mean?: number; stdDev?: number; modalityUnit?: string; value?: number | number[];
  /** A probe's pixel (column, row, slice). */
  index?: number[];
}

/** A measurement drawn in this session, as listed: its text and, for the tests and the reader, its values. */
interface Measurement { tool: string; text: string; stats: Stats }

const round = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '' : String(Number(v.toFixed(1))));

/** A measurement's text: a length, an angle, an ROI's mean, SD and area, a probe's value. */
function measurementText(tool: string, stats: Stats, t: Texts, vt: ViewerTexts): string {
  const parts: string[] = [];
  if (stats.length !== undefined) parts.push(`${t.toolLength} ${round(stats.length)} ${stats.unit ?? 'mm'}`);
  if (stats.angle !== undefined) parts.push(`${t.toolAngle} ${round(stats.angle)}°`);
  if (typeof stats.value === 'number') parts.push(`${vt.toolProbe} ${round(stats.value)} ${stats.modalityUnit ?? ''}`.trim());
  if (stats.mean !== undefined && stats.mean !== null) parts.push(`${vt.mean} ${round(stats.mean)} ${stats.modalityUnit ?? ''}`.trim());
  if (stats.stdDev !== undefined && stats.stdDev !== null) parts.push(`${vt.sd} ${round(stats.stdDev)}`);
  if (stats.area !== undefined && stats.area !== null) parts.push(`${vt.area} ${round(stats.area)} ${stats.areaUnit ?? 'mm²'}`);
  const names: Record<string, string> = { [Tool.Ellipse]: vt.toolEllipse, [Tool.Rectangle]: vt.toolRectangle };
  return `${names[tool] ? `${names[tool]} : ` : ''}${parts.join(', ') || tool}`;
}

type Layout = '1x1' | '1x2' | '2x2';
const paneCount: Record<Layout, number> = { '1x1': 1, '1x2': 2, '2x2': 4 };

async function loadStudy(StudyInstanceUID: string): Promise<StudySummary | undefined> {
  // Both at once: the series list answers empty (not an error) for a study the caller may not see.
  const [[study], seriesFound] = await Promise.all([
    getJson<DicomJson[]>(`${dicomWebRoot()}/studies?StudyInstanceUID=${encodeURIComponent(StudyInstanceUID)}`, 'application/dicom+json'),
    getJson<DicomJson[]>(`${dicomWebRoot()}/studies/${encodeURIComponent(StudyInstanceUID)}/series?includefield=00080008&includefield=00200037`, 'application/dicom+json').catch(() => undefined),
  ]);
  if (!study || !seriesFound) {
    // Not listed: absent, or outside the care relationship. Asking WADO-RS for it gets the same
    // 404 and leaves the refused attempt in the audit trail.
    await fetch(`${dicomWebRoot()}/studies/${encodeURIComponent(StudyInstanceUID)}/metadata`, { headers: { accept: 'application/dicom+json' } });
    return undefined;
  }
  const series = seriesFound.map((s) => ({
    StudyInstanceUID,
    SeriesInstanceUID: str(s, tag.SeriesInstanceUID) ?? '',
    Modality: str(s, tag.Modality) ?? '',
    SeriesDescription: str(s, tag.SeriesDescription) ?? '',
    SeriesNumber: num(s, tag.SeriesNumber) ?? 0,
    images: num(s, tag.NumberOfSeriesRelatedInstances) ?? 0,
    sample: s,
  })).sort((a, b) => Number(!isImageSeries(a.Modality)) - Number(!isImageSeries(b.Modality)) || a.SeriesNumber - b.SeriesNumber);
  return {
    StudyInstanceUID, StudyDate: str(study, tag.StudyDate), PatientName: str(study, tag.PatientName), PatientID: str(study, tag.PatientID),
    ModalitiesInStudy: strs(study, tag.ModalitiesInStudy), series,
  };
}

/** The series a radiologist expects first: the largest axial image series, not a localizer (relevant.ts). */
function relevantSeries(s: StudySummary): SeriesSummary | undefined {
  const images = s.series.filter((x) => isImageSeries(x.Modality));
  return mostRelevant(images.filter((x) => x.images > 0), (x) => x.sample) ?? images[0];
}

/** Annotations drawn again from saved reports: never saved a second time. */
const restoredAnnotations = new Set<string>();

/** The saved measurements of a series drawn again on its images (the tools' annotations, in world coordinates). */
function restoreMeasurements({ tools }: ToolsModule, viewport: Types.IStackViewport, element: HTMLDivElement, ids: string[], saved: SavedMeasurement[]): number {
  let n = 0;
  const camera = viewport.getCamera();
  for (const m of saved) {
    const imageId = ids.find((id) => id.endsWith(`/instances/${m.SOPInstanceUID}/frames/${m.frame ?? 1}`));
    if (!imageId || !measuringTools.includes(m.toolName)) continue;
    n++;
    if (tools.annotation.state.getAnnotation(m.uid)) continue;
    restoredAnnotations.add(m.uid);
    const zero: Types.Point3 = [0, 0, 0];
    tools.annotation.state.addAnnotation({
      annotationUID: m.uid, highlighted: false, isLocked: false, isVisible: true, invalidated: true,
      metadata: {
        toolName: m.toolName, viewPlaneNormal: camera.viewPlaneNormal, viewUp: camera.viewUp,
        FrameOfReferenceUID: viewport.getFrameOfReferenceUID(), referencedImageId: imageId,
      },
      data: {
        handles: {
          points: m.points.map((p) => csUtilities.imageToWorldCoords(imageId, p) as Types.Point3), activeHandleIndex: null,
          textBox: { hasMoved: false, worldPosition: zero, worldBoundingBox: { topLeft: zero, topRight: zero, bottomLeft: zero, bottomRight: zero } },
        },
        cachedStats: {}, label: '',
      },
    } as unknown as Parameters<typeof tools.annotation.state.addAnnotation>[0], element);
  }
  return n;
}

/** One viewport: a stack of one series, with its position and loading progress, the overlay and the saved measurements. */
function StackPane(props: {
  index: number; series: SeriesSummary | undefined; active: boolean; onActivate: () => void; label?: string; t: Texts; vt: ViewerTexts; language: Language;
  registerElement: (index: number, element: HTMLDivElement | null) => void;
  /** An image to show (a key image chosen from the list), by its instance and frame; nonce makes a repeated choice count. */
  jump?: { SOPInstanceUID: string; frame?: number; nonce: number } | undefined;
  /** Measurements saved in the study's reports, drawn again on the images they were made on. */
  saved: SavedMeasurement[];
  /** The tools, once loaded (after the first image); onFirstImage says it is shown (or that there is none to wait for). */
  tk: ToolsModule | undefined;
  onFirstImage: () => void;
}) {
  const { index, series, active, onActivate, t, vt } = props;
  const element = useRef<HTMLDivElement>(null);
  const [shownElement, setShownElement] = useState<HTMLDivElement | null>(null);
  const [position, setPosition] = useState<{ at: number; of: number }>();
  const [loaded, setLoaded] = useState(0);
  const [restored, setRestored] = useState(0);
  const [noImage, setNoImage] = useState(false);
  const viewportId = `pane-${index}`;
  const overlay = useOverlayState(engineId, viewportId, shownElement, props.language);
  const jump = useRef(props.jump);
  jump.current = props.jump;
  const tk = useRef(props.tk);
  tk.current = props.tk;
  /** The stack is set (the tools' prefetch may start) and whether the prefetch was started. */
  const [stackSet, setStackSet] = useState(false);
  const prefetching = useRef(false);
  const indexOfJump = (ids: string[]) => {
    const target = jump.current;
    if (!target) return -1;
    return ids.findIndex((id) => id.endsWith(`/instances/${target.SOPInstanceUID}/frames/${target.frame ?? 1}`));
  };

  useEffect(() => {
    const el = element.current;
    const engine = getRenderingEngine(engineId);
    if (!el || !engine || !series) return;
    let cancelled = false;
    let stopProgress = () => {};
    const stream = new AbortController();
    const onNewImage = (e: Event) => {
      const detail = (e as CustomEvent<{ imageIdIndex: number }>).detail;
      setPosition((p) => (p ? { ...p, at: detail.imageIdIndex + 1 } : p));
    };
    el.addEventListener(Enums.Events.STACK_NEW_IMAGE, onNewImage);
    // Milliseconds since navigation, on the element, for the browser benchmark (bench/browser.ts).
    delete el.dataset.firstImageMs;
    delete el.dataset.seriesLoadedMs;
    const onRendered = () => {
      if (el.dataset.firstImageMs === undefined) {
        el.dataset.firstImageMs = performance.now().toFixed(0);
        props.onFirstImage();
      }
      // The transfer syntax the image shown came in (JPEG-LS when the archive encoded it for the wire).
      const shownId = (getRenderingEngine(engineId)?.getViewport(viewportId) as Types.IStackViewport | undefined)?.getCurrentImageId?.();
      const syntax = shownId ? (cache.getImage(shownId) as (Types.IImage & { transferSyntaxUID?: string }) | undefined)?.transferSyntaxUID : undefined;
      if (syntax) el.dataset.transferSyntax = syntax;
    };
    // The wheel scrolls before the tools (whose stack scroll tool takes it over) are loaded.
    const onWheel = (e: WheelEvent) => {
      if (tk.current || e.deltaY === 0) return;
      const viewport = getRenderingEngine(engineId)?.getViewport(viewportId) as Types.IStackViewport | undefined;
      const n = viewport?.getImageIds?.().length ?? 0;
      if (!viewport || n === 0) return;
      e.preventDefault();
      void viewport.setImageIdIndex(Math.max(0, Math.min(n - 1, viewport.getCurrentImageIdIndex() + Math.sign(e.deltaY)))).catch(() => {});
    };
    el.addEventListener('wheel', onWheel, { passive: false });
    el.addEventListener(Enums.Events.IMAGE_RENDERED, onRendered);
    // A new layout, a window resized, a tablet turned: the canvas follows its pane, the image refits.
    const resized = new ResizeObserver(() => getRenderingEngine(engineId)?.resize(true, false));
    resized.observe(el);
    engine.enableElement({ viewportId, type: Enums.ViewportType.STACK, element: el, defaultOptions: { background: [0, 0, 0] as Types.Point3 } });
    tk.current?.tools.ToolGroupManager.getToolGroup(toolGroupId)?.addViewport(viewportId, engineId);
    props.registerElement(index, el);
    setShownElement(el);
    setStackSet(false);
    prefetching.current = false;
    setLoaded(0);
    setNoImage(false);
    void (async () => {
      const ids = await imageIdsOfSeries(series.StudyInstanceUID, series.SeriesInstanceUID);
      if (cancelled) return;
      // A series of objects without pixels (an SR, a waveform filed as an image series): said, not a black viewport.
      if (ids.length === 0) {
        setNoImage(true);
        props.onFirstImage(); // none to wait for
        return;
      }
      stopProgress = onImagesLoaded(ids, (n) => {
        setLoaded(n);
        if (n === ids.length && el.dataset.seriesLoadedMs === undefined) el.dataset.seriesLoadedMs = performance.now().toFixed(0);
      });
      const viewport = engine.getViewport(viewportId) as Types.IStackViewport;
      setPosition({ at: 1, of: ids.length });
      // The first image shows as soon as it is decoded, on its own request; the rest of the
      // series follows in one stream.
      const shown = Math.max(0, indexOfJump(ids));
      void streamSeries(series.StudyInstanceUID, series.SeriesInstanceUID, ids, ids[shown], stream.signal);
      await viewport.setStack(ids, shown);
      viewport.render();
      if (!cancelled) setStackSet(true);
    })().catch((e: unknown) => {
      console.error('series failed to load', e);
      props.onFirstImage(); // none to wait for
    });
    return () => {
      cancelled = true;
      stream.abort();
      resized.disconnect();
      stopProgress();
      el.removeEventListener(Enums.Events.STACK_NEW_IMAGE, onNewImage);
      el.removeEventListener(Enums.Events.IMAGE_RENDERED, onRendered);
      el.removeEventListener('wheel', onWheel);
      tk.current?.tools.utilities.cine.stopClip(el);
      tk.current?.tools.ToolGroupManager.getToolGroup(toolGroupId)?.removeViewports(engineId, viewportId);
      if (getRenderingEngine(engineId)) engine.disableElement(viewportId);
      props.registerElement(index, null);
      setShownElement(null);
    };
    // A viewport is set up again only when it is given another series.
  }, [series?.StudyInstanceUID, series?.SeriesInstanceUID]);

  // The tools, once loaded: this viewport joins their group, and the frames the stream did not bring are prefetched.
  useEffect(() => {
    const el = element.current;
    if (!props.tk || !el || !getRenderingEngine(engineId)?.getViewport(viewportId)) return;
    props.tk.tools.ToolGroupManager.getToolGroup(toolGroupId)?.addViewport(viewportId, engineId);
    if (stackSet && !prefetching.current) {
      prefetching.current = true;
      props.tk.tools.utilities.stackPrefetch.enable(el);
    }
  }, [props.tk, stackSet, series?.SeriesInstanceUID]);

  // The saved measurements of the series shown, once its images are known (and again when a report is saved).
  useEffect(() => {
    const el = element.current;
    const viewport = getRenderingEngine(engineId)?.getViewport(viewportId) as Types.IStackViewport | undefined;
    const ids = viewport?.getImageIds?.() ?? [];
    if (!el || !viewport || ids.length === 0 || !props.tk) return;
    try {
      setRestored(restoreMeasurements(props.tk, viewport, el, ids, props.saved));
      viewport.render();
    } catch (e) {
      console.warn('saved measurements not drawn', e);
    }
  }, [props.saved, position?.of, series?.SeriesInstanceUID, props.tk]);

  // A key image of the series already shown: go to it.
  useEffect(() => {
    const viewport = getRenderingEngine(engineId)?.getViewport(viewportId) as Types.IStackViewport | undefined;
    const ids = viewport?.getImageIds() ?? [];
    const at = indexOfJump(ids);
    if (viewport && at >= 0 && at !== viewport.getCurrentImageIdIndex()) void viewport.setImageIdIndex(at);
  }, [props.jump?.nonce]);

  return (
    <div className={`pane${active ? ' active' : ''}`} onPointerDown={onActivate} data-testid={`pane-${index}`} data-restored={restored}>
      <div className="pane-viewport" ref={element} onContextMenu={(e) => e.preventDefault()} data-testid={`viewport-${index}`} />
      {series && !noImage && (
        <SegmentationOverlay engineId={engineId} viewportId={viewportId} element={shownElement} StudyInstanceUID={series.StudyInstanceUID} SeriesInstanceUID={series.SeriesInstanceUID} index={index} language={props.language} />
      )}
      {series && !noImage && <Corners state={overlay} index={index} language={props.language} t={vt} />}
      <div className="pane-overlay pane-overlay-bl">
        {props.label && <div>{props.label}</div>}
        {series && <div>{vt.series} {series.SeriesNumber} · {series.Modality} {series.SeriesDescription}</div>}
        {position && <div data-testid={`slice-${index}`}>{position.at} / {position.of}</div>}
        {sliceLines(overlay.instance, vt).map((line) => <div key={line} data-testid={`slice-info-${index}`}>{line}</div>)}
        {position && loaded < position.of && (
          <div className="progress" data-testid={`progress-${index}`}>
            <progress max={position.of} value={loaded} /> {loaded}/{position.of} {t.loaded}
          </div>
        )}
      </div>
      {noImage && <p className="pane-message" role="status" data-testid={`no-image-${index}`}>{vt.noImage}</p>}
    </div>
  );
}

/** A series' picture (WADO-RS thumbnail, rendered by the server whatever the transfer syntax), or its modality when it has none. */
function Thumbnail({ series }: { series: SeriesSummary }) {
  const [failed, setFailed] = useState(false);
  if (!isImageSeries(series.Modality) || failed) return <span className="thumb thumb-text" aria-hidden="true">{series.Modality}</span>;
  return (
    <img className="thumb" alt="" loading="lazy" data-testid="thumbnail" onError={() => setFailed(true)}
      src={`${dicomWebRoot()}/studies/${encodeURIComponent(series.StudyInstanceUID)}/series/${encodeURIComponent(series.SeriesInstanceUID)}/thumbnail`} />
  );
}

/** The zero-footprint viewer: a study's series in 1 to 4 stack viewports, a prior beside it. */
export function ViewerPage({ StudyInstanceUID, language }: { StudyInstanceUID: string; language: Language }) {
  const t = useTexts();
  const [study, setStudy] = useState<StudySummary | undefined | 'missing'>();
  const [prior, setPrior] = useState<StudySummary | undefined | 'none'>();
  const [ready, setReady] = useState(false);
  const [layout, setLayout] = useState<Layout>('1x1');
  const [panes, setPanes] = useState<Array<SeriesSummary | undefined>>([]);
  const [active, setActive] = useState(0);
  const [tool, setTool] = useState<PrimaryTool>(Tool.WindowLevel);
  const [cine, setCine] = useState(false);
  const [measurements, setMeasurements] = useState<ReadonlyMap<string, Measurement>>(new Map());
  const [saved, setSaved] = useState<SavedMeasurement[]>([]);
  const [measurementStatus, setMeasurementStatus] = useState<'saving' | 'saved' | 'failed'>();
  const [tagsOf, setTagsOf] = useState<DicomJson | 'closed'>('closed');
  /** Scrolling one viewport moves the others to the same place (a prior: registered on the slices shown when linked). */
  const [sync, setSync] = useState(false);
  const vt = viewerTexts(language);
  /** Per pane, the image the keyboard asked for last: presses made while it loads add up, none is lost. */
  const wantedIndex = useRef<Map<number, number>>(new Map());
  const [openDocument, setDocument] = useState<SeriesSummary>();
  const [me, setMe] = useState<Me>();
  const [mpr, setMpr] = useState<SeriesSummary>();
  const [keyImages, setKeyImages] = useState<KeyImage[]>([]);
  const [keyImageStatus, setKeyImageStatus] = useState<'saving' | 'saved' | 'failed'>();
  const [jump, setJump] = useState<{ pane: number; SOPInstanceUID: string; frame?: number; nonce: number }>();
  const elements = useRef<Array<HTMLDivElement | null>>([]);
  const registerElement = useCallback((i: number, el: HTMLDivElement | null) => { elements.current[i] = el; }, []);
  /** The tools' chunk, loaded after the first image (or when a tool is asked for): its buttons wait for it. */
  const [tk, setTk] = useState<ToolsModule>();
  const tkRef = useRef<ToolsModule | undefined>(undefined);
  tkRef.current = tk;
  const toolRef = useRef(tool);
  toolRef.current = tool;
  const toolsAsked = useRef(false);
  const alive = useRef(true);
  const loadTools = useCallback(() => {
    if (toolsAsked.current) return;
    toolsAsked.current = true;
    import('./tools.ts').then((m) => {
      if (!alive.current) return;
      // The group first (with the tool chosen by key meanwhile), then the viewports join it.
      m.createToolGroup(toolRef.current);
      setTk(m);
    }, (e: unknown) => {
      toolsAsked.current = false;
      console.error('the viewer\'s tools were not loaded', e);
    });
  }, []);

  useEffect(() => {
    let engine: RenderingEngine | undefined;
    alive.current = true;
    void initCornerstone().then(() => {
      if (!alive.current) return;
      engine = new RenderingEngine(engineId);
      setReady(true);
    });
    return () => {
      alive.current = false;
      tkRef.current?.tools.ToolGroupManager.destroyToolGroup(toolGroupId);
      engine?.destroy();
    };
  }, []);

  // A study with no image to show (documents only): nothing to wait for, the tools come at once.
  useEffect(() => {
    if (ready && typeof study === 'object' && !study.series.some((x) => isImageSeries(x.Modality))) loadTools();
  }, [ready, study, loadTools]);

  useEffect(() => {
    setStudy(undefined);
    loadStudy(StudyInstanceUID).then((s) => {
      setStudy(s ?? 'missing');
      if (s) setPanes([relevantSeries(s)]);
      if (s) void refreshKeyImages(s);
      if (s) void refreshMeasurements(s);
    }, () => setStudy('missing'));
  }, [StudyInstanceUID]);

  useEffect(() => {
    whoAmI().then(setMe, () => setMe(undefined));
  }, []);

  /** The images the study's key object selections (KO series) point at. */
  const refreshKeyImages = async (s: StudySummary) => {
    const documents = await Promise.all(s.series.filter((x) => x.Modality === 'KO').map((x) =>
      getJson<DicomJson[]>(`${dicomWebRoot()}/studies/${s.StudyInstanceUID}/series/${x.SeriesInstanceUID}/metadata`, 'application/dicom+json').catch(() => [])));
    setKeyImages(keyImagesOf(documents.flat()));
  };

  /** The measurements of the study's TID 1500 reports (its SR series), to list and draw again. */
  const refreshMeasurements = async (s: StudySummary) => {
    const documents = await Promise.all(s.series.filter((x) => x.Modality === 'SR').map((x) =>
      seriesMetadata(s.StudyInstanceUID, x.SeriesInstanceUID).catch(() => [])));
    setSaved(measurementsOf(documents.flat(), () => undefined));
  };

  /** The measurements drawn and not saved yet, as one TID 1500 report stored in the study. */
  const saveMeasurements = useCallback(async () => {
    if (typeof study !== 'object' || !mayStore(me) || !tk) return;
    const { tools } = tk;
    const drawn: SavedMeasurement[] = [];
    const drawnUIDs: string[] = [];
    let source: DicomJson | undefined;
    for (const a of tools.annotation.state.getAllAnnotations()) {
      const uid = a.annotationUID ?? '';
      if (!a.metadata) continue;
      const imageId = a.metadata.referencedImageId;
      const instance = imageId ? instanceOfImageId(imageId) : undefined;
      if (!imageId || !instance || restoredAnnotations.has(uid) || !measuringTools.includes(a.metadata.toolName)) continue;
      if (str(instance, tag.StudyInstanceUID) !== study.StudyInstanceUID) continue; // a prior's are not this report's
      source ??= instance;
      const stats = Object.values((a.data as { cachedStats?: Record<string, Stats> }).cachedStats ?? {})[0] ?? {};
      const values: SavedMeasurement['values'] = [];
      const add = (name: string, value: number | undefined | null, unit: string | undefined) => {
        if (typeof value === 'number' && Number.isFinite(value)) values.push({ name, value, unit: unit ?? '' });
      };
      add('length', stats.length, stats.unit ?? 'mm');
      add('angle', stats.angle, '°');
      add('area', stats.area, stats.areaUnit ?? 'mm²');
      add('mean', stats.mean, stats.modalityUnit);
      add('sd', stats.stdDev, stats.modalityUnit);
      add('value', Array.isArray(stats.value) ? undefined : stats.value, stats.modalityUnit);
      const frame = Number(/\/frames\/(\d+)$/.exec(imageId)?.[1] ?? 1);
      drawn.push({
        toolName: a.metadata.toolName, SeriesInstanceUID: str(instance, tag.SeriesInstanceUID) ?? '', SOPInstanceUID: str(instance, tag.SOPInstanceUID) ?? '',
        SOPClassUID: str(instance, tag.SOPClassUID) ?? '', ...((num(instance, tag.NumberOfFrames) ?? 1) > 1 ? { frame } : {}),
        points: ((a.data as { handles?: { points?: Types.Point3[] } }).handles?.points ?? []).map((p) => csUtilities.worldToImageCoords(imageId, p) as [number, number]),
        values, uid: newUID(),
      });
      drawnUIDs.push(uid);
    }
    if (!source || drawn.length === 0) return;
    setMeasurementStatus('saving');
    try {
      const filed = study.series.find((x) => x.Modality === 'SR' && x.SeriesDescription === 'Mesures');
      const { file } = await measurementReport(source, drawn, {
        observer: me?.name ?? '', language,
        ...(filed ? { series: { SeriesInstanceUID: filed.SeriesInstanceUID, InstanceNumber: filed.images + 1 } } : {}),
      });
      await storeObject(file);
      // Drawn again from the report as stored (under their tracking UIDs), not kept twice.
      for (const uid of drawnUIDs) tools.annotation.state.removeAnnotation(uid);
      setMeasurements((m) => new Map([...m].filter(([uid]) => !drawnUIDs.includes(uid))));
      if (filed) forgetSeriesMetadata(study.StudyInstanceUID, filed.SeriesInstanceUID);
      const reloaded = await loadStudy(study.StudyInstanceUID);
      if (reloaded && reloaded.StudyInstanceUID === StudyInstanceUID) {
        setStudy(reloaded);
        await refreshMeasurements(reloaded);
      }
      setMeasurementStatus('saved');
    } catch (e) {
      console.error('measurements not stored', e);
      setMeasurementStatus('failed');
    }
  }, [study, me, language, StudyInstanceUID, tk]);

  const markKeyImage = useCallback(async () => {
    const viewport = viewportOf(active);
    const imageId = viewport?.getCurrentImageId();
    const instance = imageId ? instanceOfImageId(imageId) : undefined;
    const series = panes[active];
    if (!imageId || !instance || !series || !mayStore(me)) return;
    const frames = num(instance, tag.NumberOfFrames) ?? 1;
    const frame = Number(/\/frames\/(\d+)$/.exec(imageId)?.[1] ?? 1);
    setKeyImageStatus('saving');
    try {
      const filed = typeof study === 'object' ? study.series.find((x) => x.Modality === 'KO' && x.SeriesDescription === keyImagesSeriesDescription) : undefined;
      const { file } = keyObjectSelection(instance, {
        SeriesInstanceUID: series.SeriesInstanceUID, SOPInstanceUID: str(instance, tag.SOPInstanceUID) ?? '', SOPClassUID: str(instance, tag.SOPClassUID) ?? '',
        ...(frames > 1 ? { frame } : {}),
      }, filed ? { SeriesInstanceUID: filed.SeriesInstanceUID, InstanceNumber: filed.images + 1 } : undefined);
      await storeObject(file);
      const reloaded = await loadStudy(series.StudyInstanceUID);
      if (reloaded && reloaded.StudyInstanceUID === StudyInstanceUID) {
        setStudy(reloaded);
        await refreshKeyImages(reloaded);
      }
      setKeyImageStatus('saved');
    } catch (e) {
      console.error('key image not stored', e);
      setKeyImageStatus('failed');
    }
  }, [active, panes, me, StudyInstanceUID, study]);

  const showKeyImage = (k: KeyImage) => {
    if (typeof study !== 'object') return;
    const series = study.series.find((x) => x.SeriesInstanceUID === k.SeriesInstanceUID);
    if (!series) return;
    setPanes((p) => p.map((x, i) => (i === active ? series : x)));
    setJump({ pane: active, SOPInstanceUID: k.SOPInstanceUID, ...(k.frame !== undefined ? { frame: k.frame } : {}), nonce: Date.now() });
  };

  // Measurements as they are completed (lengths in mm, angles in degrees).
  useEffect(() => {
    const listener = (e: Event) => {
      const annotation = (e as CustomEvent<{ annotation: { annotationUID?: string; metadata: { toolName: string }; data: { cachedStats?: Record<string, Stats> } } }>).detail.annotation;
      const uid = annotation.annotationUID ?? String(Math.random());
      if (restoredAnnotations.has(uid) || !tkRef.current?.tools.annotation.state.getAnnotation(uid)) return; // a saved one, listed with its report
      const stats = Object.values(annotation.data.cachedStats ?? {})[0] ?? {};
      const tool = annotation.metadata.toolName;
      const text = measurementText(tool, stats, t, vt);
      setMeasurements((m) => (m.get(uid)?.text === text ? m : new Map(m).set(uid, { tool, text, stats: { ...stats } })));
    };
    // The tools trigger their annotation events on the core's event target; a measurement
    // moved or whose statistics were computed after completion is modified.
    const events = [AnnotationEvents.completed, AnnotationEvents.modified];
    for (const name of events) eventTarget.addEventListener(name, listener);
    return () => { for (const name of events) eventTarget.removeEventListener(name, listener); };
  }, [t, vt]);

  // The linked viewports: Cornerstone's image slice synchronizer, on the panes whose images say where they are.
  useEffect(() => {
    if (!ready || !sync || mpr || panes.length < 2 || !tk) return;
    const { tools } = tk;
    const name = 'atrium-slice-sync';
    const synchronizer = tools.synchronizers.createImageSliceSynchronizer(name);
    const engine = getRenderingEngine(engineId);
    let linked = 0;
    const link = () => {
      for (let i = 0; i < panes.length; i++) {
        const viewport = engine?.getViewport(`pane-${i}`) as Types.IStackViewport | undefined;
        const imageId = viewport?.getCurrentImageId?.();
        const instance = imageId ? instanceOfImageId(imageId) : undefined;
        if (!instance || strs(instance, '00200032').length !== 3 || strs(instance, '00200037').length !== 6) continue;
        if (synchronizer.hasSourceViewport(engineId, `pane-${i}`)) continue;
        synchronizer.add({ renderingEngineId: engineId, viewportId: `pane-${i}` });
        linked++;
      }
    };
    // The panes' images come after their stacks are set: linked as they arrive.
    link();
    const timer = window.setInterval(() => { if (linked < panes.length) link(); else window.clearInterval(timer); }, 300);
    return () => {
      window.clearInterval(timer);
      tools.SynchronizerManager.destroySynchronizer(name);
    };
  }, [ready, sync, mpr, panes, layout, tk]);

  const viewportOf = (i: number) => getRenderingEngine(engineId)?.getViewport(`pane-${i}`) as Types.IStackViewport | undefined;

  const applyPreset = useCallback((preset: WindowPreset | 'default') => {
    const viewport = viewportOf(active);
    if (!viewport) return;
    if (preset === 'default') viewport.resetProperties();
    else {
      const { width, center } = windowPresets[preset];
      viewport.setProperties({ voiRange: csUtilities.windowLevel.toLowHighRange(width, center) });
    }
    viewport.render();
  }, [active]);

  const chooseTool = useCallback((name: PrimaryTool) => {
    // Before the tools are loaded (a key pressed early) the choice is kept and applied when they come.
    const group = tkRef.current?.tools.ToolGroupManager.getToolGroup(toolGroupId);
    if (group) tkRef.current!.setPrimaryTool(group, name);
    else loadTools();
    toolRef.current = name;
    setTool(name);
  }, [loadTools]);

  const reset = useCallback(() => {
    const viewport = viewportOf(active);
    viewport?.resetCamera();
    viewport?.resetProperties();
    viewport?.render();
  }, [active]);

  /**
   * One image further: counted from the image asked for last, not the one shown (which may still
   * be loading), so that presses made while frames load add up; when images arrive out of order
   * the one asked for last is shown in the end.
   */
  const scroll = useCallback((delta: number) => {
    const viewport = viewportOf(active);
    if (!viewport) return;
    const n = viewport.getImageIds().length;
    const wanted = wantedIndex.current;
    const shownIndex = viewport.getCurrentImageIdIndex();
    const from = wanted.get(active) ?? shownIndex;
    const next = Math.max(0, Math.min(n - 1, from + delta));
    wanted.set(active, next);
    const settle = () => {
      const target = wanted.get(active);
      if (target === undefined) return;
      if (viewport.getCurrentImageIdIndex() === target) wanted.delete(active);
      else void viewport.setImageIdIndex(target).then(settle, () => wanted.delete(active));
    };
    void viewport.setImageIdIndex(next).then(settle, () => wanted.delete(active));
  }, [active]);

  /** The image's display: inverted, turned a quarter, mirrored (the markers follow the camera). */
  const invert = useCallback(() => {
    const viewport = viewportOf(active);
    if (!viewport) return;
    viewport.setProperties({ invert: !viewport.getProperties().invert });
    viewport.render();
  }, [active]);

  const rotate = useCallback(() => {
    const viewport = viewportOf(active);
    if (!viewport) return;
    const rotation = viewport.getViewPresentation().rotation ?? 0;
    viewport.setViewPresentation({ rotation: (rotation + 90) % 360 });
    viewport.render();
  }, [active]);

  const flip = useCallback((direction: 'h' | 'v') => {
    const viewport = viewportOf(active);
    if (!viewport) return;
    // flip() mirrors each time it is asked (setViewPresentation cannot undo a flip: it passes false on, which flips nothing).
    (viewport as unknown as { flip(d: { flipHorizontal?: boolean; flipVertical?: boolean }): void }).flip(direction === 'h' ? { flipHorizontal: true } : { flipVertical: true });
    viewport.render();
  }, [active]);

  /** The image as shown (window, zoom, measurements drawn on it) saved as a PNG file. */
  const exportImage = useCallback(() => {
    const viewport = viewportOf(active);
    const el = elements.current[active];
    if (!viewport || !el) return;
    const source = viewport.getCanvas();
    const canvas = document.createElement('canvas');
    canvas.width = source.width;
    canvas.height = source.height;
    const context = canvas.getContext('2d');
    if (!context) return;
    context.drawImage(source, 0, 0);
    const finish = () => {
      const link = document.createElement('a');
      const instance = instanceOfImageId(viewport.getCurrentImageId());
      link.download = `${instance ? str(instance, tag.Modality) ?? 'image' : 'image'}-${(instance ? str(instance, tag.SeriesNumber) : undefined) ?? ''}-${viewport.getCurrentImageIdIndex() + 1}.png`;
      link.href = canvas.toDataURL('image/png');
      link.click();
    };
    // The measurements are an SVG layer over the canvas: drawn onto it too.
    const svg = el.querySelector('svg.svg-layer');
    if (!svg) return finish();
    const image = new Image();
    const url = URL.createObjectURL(new Blob([new XMLSerializer().serializeToString(svg)], { type: 'image/svg+xml' }));
    image.onload = () => {
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      URL.revokeObjectURL(url);
      finish();
    };
    image.onerror = () => {
      URL.revokeObjectURL(url);
      finish();
    };
    image.src = url;
  }, [active]);

  const openTags = useCallback(() => {
    const imageId = viewportOf(active)?.getCurrentImageId();
    const instance = imageId ? instanceOfImageId(imageId) : undefined;
    setTagsOf((open) => (open === 'closed' && instance ? instance : 'closed'));
  }, [active]);

  const toggleCine = useCallback(() => {
    const el = elements.current[active];
    if (!el) return;
    if (!tk) return loadTools();
    if (cine) tk.tools.utilities.cine.stopClip(el);
    else tk.tools.utilities.cine.playClip(el, { framesPerSecond: 10, loop: true });
    setCine(!cine);
  }, [active, cine, tk, loadTools]);

  const changeLayout = (next: Layout) => {
    if (typeof study !== 'object') return;
    const n = paneCount[next];
    const images = study.series.filter((x) => isImageSeries(x.Modality));
    setPanes((current) => Array.from({ length: n }, (_, i) => current[i] ?? images[i % Math.max(1, images.length)]));
    setLayout(next);
    if (active >= n) setActive(0);
  };

  /**
   * The prior beside the current exam: the latest older exam of the same modality (else, asked
   * for by the button, the latest older one), its most relevant series, scrolled together.
   * `automatic`: the hanging protocol of a CT or MR opened by a radiologist, silent when there is none.
   */
  const comparePrior = async (automatic = false) => {
    if (typeof study !== 'object') return;
    const { studies } = await getJson<{ studies: TimelineStudy[] }>(`/api/patients/timeline?${new URLSearchParams({ StudyInstanceUID })}`);
    const older = studies.filter((s) => s.StudyInstanceUID !== StudyInstanceUID && (s.StudyDate ?? '') <= (study.StudyDate ?? '99999999'));
    const sameModality = older.filter((s) => s.ModalitiesInStudy.some((m) => study.ModalitiesInStudy.includes(m)));
    const candidate = sameModality[0] ?? (automatic ? undefined : older[0]);
    const loaded = candidate ? await loadStudy(candidate.StudyInstanceUID) : undefined;
    const priorImages = loaded ? relevantSeries(loaded) : undefined;
    if (!loaded || !priorImages) {
      if (!automatic) setPrior('none');
      return;
    }
    setPrior(loaded);
    setLayout('1x2');
    setSync(true);
    setPanes((p) => [p[0] ?? relevantSeries(study), priorImages]);
  };

  // Hanging protocol: a radiologist opening a CT or an MR on a wide screen gets its latest prior of the same modality side by side.
  const hung = useRef<string | undefined>(undefined);
  useEffect(() => {
    if (typeof study !== 'object' || !me || hung.current === study.StudyInstanceUID || isRemoteStudy()) return;
    hung.current = study.StudyInstanceUID;
    if (!me.roles.includes('radiologist') || !study.ModalitiesInStudy.some((m) => m === 'CT' || m === 'MR')) return;
    // Two viewports side by side need a wide screen; on a tablet or a phone the button does it.
    if (!window.matchMedia('(min-width: 1000px)').matches) return;
    void comparePrior(true).catch(() => {});
  }, [study, me]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      // Keys typed in a field (the "ask access" reason, a note, a select) are text, not shortcuts.
      const target = e.target;
      if (target instanceof HTMLElement && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName))) return;
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const presets: Record<string, WindowPreset | 'default'> = { '1': 'default', '2': 'lung', '3': 'bone', '4': 'brain', '5': 'abdomen' };
      const toolKeys: Record<string, PrimaryTool> = {
        w: Tool.WindowLevel, p: Tool.Pan, z: Tool.Zoom, l: Tool.Length, a: Tool.Angle, e: Tool.Ellipse, o: Tool.Rectangle, h: Tool.Probe,
      };
      const key = e.key.toLowerCase();
      if (e.key === 'ArrowUp' || e.key === 'ArrowLeft' || e.key === 'PageUp') scroll(-1);
      else if (e.key === 'ArrowDown' || e.key === 'ArrowRight' || e.key === 'PageDown') scroll(1);
      else if (presets[key]) applyPreset(presets[key]);
      else if (toolKeys[key]) chooseTool(toolKeys[key]);
      else if (key === 'r') reset();
      else if (key === 'c') toggleCine();
      else if (key === 'k') void markKeyImage();
      else if (key === 'i') invert();
      else return;
      e.preventDefault();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [scroll, applyPreset, chooseTool, reset, toggleCine, markKeyImage, invert]);

  if (study === 'missing') {
    return (
      <section className="card narrow">
        <p className="error" role="alert" data-testid="refused">{t.notFound}</p>
        <button type="button" className="button" onClick={() => navigate('/')}>{t.back}</button>
      </section>
    );
  }
  if (study === undefined) return <p className="status">{t.loading}</p>;

  const toolButtons: Array<[PrimaryTool, string, string]> = [
    [Tool.WindowLevel, t.toolWindowLevel, 'W'], [Tool.Pan, t.toolPan, 'P'], [Tool.Zoom, t.toolZoom, 'Z'], [Tool.Length, t.toolLength, 'L'], [Tool.Angle, t.toolAngle, 'A'],
    [Tool.Probe, vt.toolProbe, 'H'], [Tool.Ellipse, vt.toolEllipse, 'E'], [Tool.Rectangle, vt.toolRectangle, 'O'],
  ];
  const presetButtons: Array<[WindowPreset | 'default', string, string]> = [
    ['default', t.presetDefault, '1'], ['lung', t.presetLung, '2'], ['bone', t.presetBone, '3'], ['brain', t.presetBrain, '4'], ['abdomen', t.presetAbdomen, '5'],
  ];
  const priorLabel = typeof prior === 'object' ? formatDicomDate(prior.StudyDate, language) : undefined;
  const kt = keyImageTexts[language];
  /** MPR asked for while its code and the tools load. */
  const mprLoading = <div className="grid layout-1x3" data-testid="mpr-view" data-state="loading"><p className="status">{t.loading}</p></div>;

  return (
    <section className="viewer" data-tools={tk ? 'ready' : 'loading'}>
      <div className="viewer-bar">
        <strong>{formatPersonName(study.PatientName)}</strong>
        <span className="muted">{formatDicomDate(study.StudyDate, language)} · {study.ModalitiesInStudy.join(', ')}</span>
        <span className="group" role="group" aria-label={t.tools}>
          {toolButtons.map(([name, label, key]) => (
            <button key={name} type="button" className={tool === name ? 'on' : ''} aria-pressed={tool === name} title={`${label} (${key})`} data-testid={`tool-${name}`} disabled={!tk} onClick={() => chooseTool(name)}>{label}</button>
          ))}
        </span>
        <span className="group" role="group" aria-label={t.presets}>
          {presetButtons.map(([name, label, key]) => (
            <button key={name} type="button" title={`${label} (${key})`} data-testid={`preset-${name}`} onClick={() => applyPreset(name)}>{label}</button>
          ))}
        </span>
        <span className="group" role="group" aria-label={t.layout}>
          {(['1x1', '1x2', '2x2'] as Layout[]).map((l) => (
            <button key={l} type="button" className={layout === l ? 'on' : ''} aria-pressed={layout === l} data-testid={`layout-${l}`} onClick={() => changeLayout(l)}>{l}</button>
          ))}
        </span>
        <button type="button" onClick={reset} title={`${t.reset} (R)`}>{t.reset}</button>
        <button type="button" onClick={toggleCine} className={cine ? 'on' : ''} title={`${t.cine} (C)`} data-testid="cine" disabled={!tk}>{cine ? t.stop : t.cine}</button>
        <button type="button" onClick={() => { void comparePrior(); }} data-testid="compare-prior">{t.comparePrior}</button>
        <button type="button" className={mpr ? 'on' : ''} aria-pressed={mpr !== undefined} data-testid="mpr"
          disabled={!mpr && !(panes[active] && ['CT', 'MR', 'PT'].includes(panes[active].Modality) && panes[active].images >= 3)}
          onClick={() => { loadTools(); setMpr(mpr ? undefined : panes[active]); }}>MPR</button>
        <button type="button" onClick={() => { void markKeyImage(); }} disabled={!mayStore(me) || keyImageStatus === 'saving'} data-testid="mark-key-image"
          title={mayStore(me) ? `${kt.mark} (K)` : kt.cannotStore}>{kt.mark}</button>
        {keyImageStatus && <span className="muted" role="status" data-testid="key-image-status">{kt[keyImageStatus]}</span>}
        <span className="group" role="group" aria-label={vt.invert}>
          <button type="button" onClick={invert} title={`${vt.invert} (I)`} data-testid="invert">{vt.invert}</button>
          <button type="button" onClick={rotate} title={vt.rotate} data-testid="rotate">⟳ 90°</button>
          <button type="button" onClick={() => flip('h')} title={vt.flipH} aria-label={vt.flipH} data-testid="flip-h">⇆</button>
          <button type="button" onClick={() => flip('v')} title={vt.flipV} aria-label={vt.flipV} data-testid="flip-v">⇅</button>
        </span>
        <button type="button" onClick={() => setSync(!sync)} className={sync ? 'on' : ''} aria-pressed={sync} disabled={panes.length < 2} data-testid="sync-scroll" title={vt.syncTitle}>{vt.sync}</button>
        <button type="button" onClick={openTags} className={tagsOf !== 'closed' ? 'on' : ''} data-testid="tags">{vt.tags}</button>
        <button type="button" onClick={exportImage} data-testid="export-image">{vt.exportImage}</button>
        <button type="button" onClick={() => { void saveMeasurements(); }} disabled={!mayStore(me) || measurements.size === 0 || measurementStatus === 'saving'}
          data-testid="save-measurements" title={mayStore(me) ? vt.saveMeasurements : kt.cannotStore}>{vt.saveMeasurements}</button>
        {measurementStatus && <span className="muted" role="status" data-testid="measurements-status">{measurementStatus === 'saving' ? vt.measurementsSaving : measurementStatus === 'saved' ? vt.measurementsSaved : vt.measurementsFailed}</span>}
        {prior === 'none' && <span className="muted">{t.noPrior}</span>}
        {!isRemoteStudy() && <ExamsElsewhere StudyInstanceUID={StudyInstanceUID} t={vt} />}
        <a className="button" href={studyArchiveUrl(StudyInstanceUID)} download data-testid="download">{t.download}</a>
      </div>
      <div className="viewer-body">
        <aside className="series-list" aria-label={t.series}>
          {[study, ...(typeof prior === 'object' ? [prior] : [])].map((s) => (
            <div key={s.StudyInstanceUID}>
              <div className="muted">{formatDicomDate(s.StudyDate, language)}</div>
              {s.series.map((se) => (
                <button key={se.SeriesInstanceUID} type="button" data-testid="series" data-modality={se.Modality} data-series={se.SeriesInstanceUID} data-study={se.StudyInstanceUID}
                  className={`series${openDocument?.SeriesInstanceUID === se.SeriesInstanceUID || (!openDocument && panes[active]?.SeriesInstanceUID === se.SeriesInstanceUID) ? ' on' : ''}`}
                  onClick={() => (isImageSeries(se.Modality) ? (setDocument(undefined), setPanes((p) => p.map((x, i) => (i === active ? se : x)))) : setDocument(se))}>
                  <Thumbnail series={se} />
                  <span className="series-text">{se.Modality} {se.SeriesNumber} {se.SeriesDescription}<br /><span className="muted">{se.images} {t.images}</span></span>
                </button>
              ))}
            </div>
          ))}
          {keyImages.length > 0 && (
            <div data-testid="key-images">
              <div className="muted">{kt.keyImages}</div>
              {keyImages.map((k, i) => {
                const se = study.series.find((x) => x.SeriesInstanceUID === k.SeriesInstanceUID);
                return (
                  <button key={`${k.SOPInstanceUID}/${k.frame ?? ''}`} type="button" className="series" data-testid="key-image" onClick={() => showKeyImage(k)}>
                    {kt.keyImage} {i + 1}{se ? ` · ${se.Modality} ${se.SeriesNumber}` : ''}{k.frame !== undefined ? ` · ${kt.frame} ${k.frame}` : ''}
                  </button>
                );
              })}
            </div>
          )}
          <p className="muted shortcuts">{t.shortcuts} · K {kt.mark.toLowerCase()} · {vt.shortcuts}</p>
          {measurements.size > 0 && (
            <ul className="measurements" data-testid="measurements">
              {[...measurements].map(([uid, m]) => (
                <li key={uid} data-tool={m.tool} data-mean={m.stats.mean ?? ''} data-sd={m.stats.stdDev ?? ''} data-area={m.stats.area ?? ''}
                  data-value={typeof m.stats.value === 'number' ? m.stats.value : ''} data-pixel={m.stats.index ? m.stats.index.slice(0, 2).join(',') : ''}>{m.text}</li>
              ))}
            </ul>
          )}
          {saved.length > 0 && (
            <div data-testid="saved-measurements">
              <div className="muted">{vt.savedMeasurements}</div>
              <ul className="measurements">
                {saved.map((m) => (
                  <li key={m.uid} data-testid="saved-measurement" data-tool={m.toolName}>
                    {m.values.map((v) => `${v.name === 'length' ? t.toolLength : v.name === 'angle' ? t.toolAngle : v.name === 'mean' ? vt.mean : v.name === 'sd' ? vt.sd : v.name === 'area' ? vt.area : vt.value} ${round(v.value)} ${v.unit}`.trim()).join(', ') || m.toolName}
                  </li>
                ))}
              </ul>
            </div>
          )}
        </aside>
        {ready && mpr && !tk && mprLoading}
        {ready && mpr && tk && (
          <Suspense fallback={mprLoading}>
            <MprView key={mpr.SeriesInstanceUID} engineId={engineId} StudyInstanceUID={mpr.StudyInstanceUID} SeriesInstanceUID={mpr.SeriesInstanceUID} language={language} />
          </Suspense>
        )}
        {ready && !mpr && (
          <div className={`grid layout-${layout}`}>
            {panes.map((se, i) => (
              <StackPane key={i} index={i} series={se} active={i === active} onActivate={() => setActive(i)} t={t} vt={vt} language={language} registerElement={registerElement} saved={saved}
                tk={tk} onFirstImage={loadTools}
                jump={jump?.pane === i ? jump : undefined}
                {...(se && typeof prior === 'object' && se.StudyInstanceUID === prior.StudyInstanceUID && priorLabel ? { label: priorLabel } : {})} />
            ))}
          </div>
        )}
        {tagsOf !== 'closed' && <TagBrowser instance={tagsOf} t={vt} onClose={() => setTagsOf('closed')} />}
        {openDocument && <DocumentPanel key={openDocument.SeriesInstanceUID} series={openDocument} language={language} onClose={() => setDocument(undefined)} />}
      </div>
    </section>
  );
}
