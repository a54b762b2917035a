import { useCallback, useEffect, useRef, useState } from 'react';
import { RenderingEngine, Enums, eventTarget, getRenderingEngine, type Types } from '@cornerstonejs/core';
import { getJson, studyArchiveUrl, whoAmI, type Me, type TimelineStudy } from '../api.ts';
import { str, num, strs, tag, type DicomJson } from '../dicom-json.ts';
import { formatDicomDate, formatPersonName, useTexts, type Language, type Texts } from '../i18n.ts';
import { navigate } from '../router.ts';
import {
  Tool, createToolGroup, imageIdsOfSeries, initCornerstone, instanceOfImageId, onImagesLoaded, setPrimaryTool, streamSeries, toolGroupId, tools, windowPresets,
  type PrimaryTool, type WindowPreset,
} from './cornerstone.ts';
import { DocumentPanel, isImageSeries } from './documents.tsx';
import { MprView } from './MprView.tsx';
import { dicomWebRoot } from './data-source.ts';
import { keyImagesOf, keyImagesSeriesDescription, keyObjectSelection, mayStore, storeObject, type KeyImage } from './key-objects.ts';

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
}

interface StudySummary {
  StudyInstanceUID: string;
  StudyDate?: string;
  PatientName?: string;
  PatientID?: string;
  ModalitiesInStudy: string[];
  series: SeriesSummary[];
}

type Layout = '1x1' | '1x2' | '2x2';
const paneCount: Record<Layout, number> = { '1x1': 1, '1x2': 2, '2x2': 4 };

async function loadStudy(StudyInstanceUID: string): Promise<StudySummary | undefined> {
  // Both at once: the series list answers empty (not an error) for a study the caller may not see.
  const [[study], seriesFound] = await Promise.all([
    getJson<DicomJson[]>(`${dicomWebRoot()}/studies?StudyInstanceUID=${encodeURIComponent(StudyInstanceUID)}`, 'application/dicom+json'),
    getJson<DicomJson[]>(`${dicomWebRoot()}/studies/${encodeURIComponent(StudyInstanceUID)}/series`, 'application/dicom+json').catch(() => undefined),
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
  })).sort((a, b) => Number(!isImageSeries(a.Modality)) - Number(!isImageSeries(b.Modality)) || a.SeriesNumber - b.SeriesNumber);
  return {
    StudyInstanceUID, StudyDate: str(study, tag.StudyDate), PatientName: str(study, tag.PatientName), PatientID: str(study, tag.PatientID),
    ModalitiesInStudy: strs(study, tag.ModalitiesInStudy), series,
  };
}

/** One viewport: a stack of one series, with its position and loading progress. */
function StackPane(props: {
  index: number; series: SeriesSummary | undefined; active: boolean; onActivate: () => void; label?: string; t: Texts;
  registerElement: (index: number, element: HTMLDivElement | null) => void;
  /** An image to show (a key image chosen from the list), by its instance and frame; nonce makes a repeated choice count. */
  jump?: { SOPInstanceUID: string; frame?: number; nonce: number } | undefined;
}) {
  const { index, series, active, onActivate, t } = props;
  const element = useRef<HTMLDivElement>(null);
  const [position, setPosition] = useState<{ at: number; of: number }>();
  const [loaded, setLoaded] = useState(0);
  const viewportId = `pane-${index}`;
  const jump = useRef(props.jump);
  jump.current = props.jump;
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
      if (el.dataset.firstImageMs === undefined) el.dataset.firstImageMs = performance.now().toFixed(0);
    };
    el.addEventListener(Enums.Events.IMAGE_RENDERED, onRendered);
    // A new layout, a window resized, a tablet turned: the canvas follows its pane, the image refits.
    const resized = new ResizeObserver(() => getRenderingEngine(engineId)?.resize(true, false));
    resized.observe(el);
    engine.enableElement({ viewportId, type: Enums.ViewportType.STACK, element: el, defaultOptions: { background: [0, 0, 0] as Types.Point3 } });
    tools.ToolGroupManager.getToolGroup(toolGroupId)?.addViewport(viewportId, engineId);
    props.registerElement(index, el);
    setLoaded(0);
    void (async () => {
      const ids = await imageIdsOfSeries(series.StudyInstanceUID, series.SeriesInstanceUID);
      if (cancelled || ids.length === 0) return;
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
      if (!cancelled) tools.utilities.stackPrefetch.enable(el);
    })().catch((e: unknown) => console.error('series failed to load', e));
    return () => {
      cancelled = true;
      stream.abort();
      resized.disconnect();
      stopProgress();
      el.removeEventListener(Enums.Events.STACK_NEW_IMAGE, onNewImage);
      el.removeEventListener(Enums.Events.IMAGE_RENDERED, onRendered);
      tools.utilities.cine.stopClip(el);
      tools.ToolGroupManager.getToolGroup(toolGroupId)?.removeViewports(engineId, viewportId);
      if (getRenderingEngine(engineId)) engine.disableElement(viewportId);
      props.registerElement(index, null);
    };
    // A viewport is set up again only when it is given another series.
  }, [series?.StudyInstanceUID, series?.SeriesInstanceUID]);

  // A key image of the series already shown: go to it.
  useEffect(() => {
    const viewport = getRenderingEngine(engineId)?.getViewport(viewportId) as Types.IStackViewport | undefined;
    const ids = viewport?.getImageIds() ?? [];
    const at = indexOfJump(ids);
    if (viewport && at >= 0 && at !== viewport.getCurrentImageIdIndex()) void viewport.setImageIdIndex(at);
  }, [props.jump?.nonce]);

  return (
    <div className={`pane${active ? ' active' : ''}`} onPointerDown={onActivate} data-testid={`pane-${index}`}>
      <div className="pane-viewport" ref={element} onContextMenu={(e) => e.preventDefault()} data-testid={`viewport-${index}`} />
      <div className="pane-overlay">
        {props.label && <div>{props.label}</div>}
        {series && <div>{series.Modality} {series.SeriesDescription}</div>}
        {position && <div data-testid={`slice-${index}`}>{position.at} / {position.of}</div>}
        {position && loaded < position.of && (
          <div className="progress" data-testid={`progress-${index}`}>
            <progress max={position.of} value={loaded} /> {loaded}/{position.of} {t.loaded}
          </div>
        )}
      </div>
    </div>
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
  const [measurements, setMeasurements] = useState<ReadonlyMap<string, string>>(new Map());
  const [openDocument, setDocument] = useState<SeriesSummary>();
  const [me, setMe] = useState<Me>();
  const [mpr, setMpr] = useState<SeriesSummary>();
  const [keyImages, setKeyImages] = useState<KeyImage[]>([]);
  const [keyImageStatus, setKeyImageStatus] = useState<'saving' | 'saved' | 'failed'>();
  const [jump, setJump] = useState<{ pane: number; SOPInstanceUID: string; frame?: number; nonce: number }>();
  const elements = useRef<Array<HTMLDivElement | null>>([]);
  const registerElement = useCallback((i: number, el: HTMLDivElement | null) => { elements.current[i] = el; }, []);

  useEffect(() => {
    let engine: RenderingEngine | undefined;
    let disposed = false;
    void initCornerstone().then(() => {
      if (disposed) return;
      engine = new RenderingEngine(engineId);
      createToolGroup();
      setReady(true);
    });
    return () => {
      disposed = true;
      tools.ToolGroupManager.destroyToolGroup(toolGroupId);
      engine?.destroy();
    };
  }, []);

  useEffect(() => {
    setStudy(undefined);
    loadStudy(StudyInstanceUID).then((s) => {
      setStudy(s ?? 'missing');
      if (s) setPanes([s.series.find((x) => isImageSeries(x.Modality))]);
      if (s) void refreshKeyImages(s);
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
      const annotation = (e as CustomEvent<{ annotation: { annotationUID?: string; metadata: { toolName: string }; data: { cachedStats?: Record<string, { length?: number; angle?: number; unit?: string }> } } }>).detail.annotation;
      const stats = Object.values(annotation.data.cachedStats ?? {})[0];
      const text = stats?.length !== undefined ? `${t.toolLength} ${stats.length.toFixed(1)} ${stats.unit ?? 'mm'}`
        : stats?.angle !== undefined ? `${t.toolAngle} ${stats.angle.toFixed(1)}°` : annotation.metadata.toolName;
      const uid = annotation.annotationUID ?? String(Math.random());
      setMeasurements((m) => (m.get(uid) === text ? m : new Map(m).set(uid, text)));
    };
    // The tools trigger their annotation events on the core's event target; a measurement
    // moved or whose statistics were computed after completion is modified.
    const events = [tools.Enums.Events.ANNOTATION_COMPLETED, tools.Enums.Events.ANNOTATION_MODIFIED];
    for (const name of events) eventTarget.addEventListener(name, listener);
    return () => { for (const name of events) eventTarget.removeEventListener(name, listener); };
  }, [t]);

  const viewportOf = (i: number) => getRenderingEngine(engineId)?.getViewport(`pane-${i}`) as Types.IStackViewport | undefined;

  const applyPreset = useCallback((preset: WindowPreset | 'default') => {
    const viewport = viewportOf(active);
    if (!viewport) return;
    if (preset === 'default') viewport.resetProperties();
    else {
      const { width, center } = windowPresets[preset];
      viewport.setProperties({ voiRange: { lower: center - width / 2, upper: center + width / 2 } });
    }
    viewport.render();
  }, [active]);

  const chooseTool = useCallback((name: PrimaryTool) => {
    const group = tools.ToolGroupManager.getToolGroup(toolGroupId);
    if (group) setPrimaryTool(group, name);
    setTool(name);
  }, []);

  const reset = useCallback(() => {
    const viewport = viewportOf(active);
    viewport?.resetCamera();
    viewport?.resetProperties();
    viewport?.render();
  }, [active]);

  const scroll = useCallback((delta: number) => {
    const viewport = viewportOf(active);
    if (!viewport) return;
    const n = viewport.getImageIds().length;
    const next = Math.max(0, Math.min(n - 1, viewport.getCurrentImageIdIndex() + delta));
    void viewport.setImageIdIndex(next);
  }, [active]);

  const toggleCine = useCallback(() => {
    const el = elements.current[active];
    if (!el) return;
    if (cine) tools.utilities.cine.stopClip(el);
    else tools.utilities.cine.playClip(el, { framesPerSecond: 10, loop: true });
    setCine(!cine);
  }, [active, cine]);

  const changeLayout = (next: Layout) => {
    if (typeof study !== 'object') return;
    const n = paneCount[next];
    const images = study.series.filter((x) => isImageSeries(x.Modality));
    setPanes((current) => Array.from({ length: n }, (_, i) => current[i] ?? images[i % Math.max(1, images.length)]));
    setLayout(next);
    if (active >= n) setActive(0);
  };

  const comparePrior = async () => {
    if (typeof study !== 'object') return;
    const { studies } = await getJson<{ studies: TimelineStudy[] }>(`/api/patients/timeline?${new URLSearchParams({ StudyInstanceUID })}`);
    const older = studies.filter((s) => s.StudyInstanceUID !== StudyInstanceUID && (s.StudyDate ?? '') <= (study.StudyDate ?? '99999999'));
    const candidate = older[0];
    const loaded = candidate ? await loadStudy(candidate.StudyInstanceUID) : undefined;
    const priorImages = loaded?.series.find((x) => isImageSeries(x.Modality));
    if (!loaded || !priorImages) {
      setPrior('none');
      return;
    }
    setPrior(loaded);
    setLayout('1x2');
    setPanes([panes[0] ?? study.series.find((x) => isImageSeries(x.Modality)), priorImages]);
  };

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.target instanceof HTMLInputElement || e.ctrlKey || e.metaKey || e.altKey) return;
      const presets: Record<string, WindowPreset | 'default'> = { '1': 'default', '2': 'lung', '3': 'bone', '4': 'brain', '5': 'abdomen' };
      const toolKeys: Record<string, PrimaryTool> = { w: Tool.WindowLevel, p: Tool.Pan, z: Tool.Zoom, l: Tool.Length, a: Tool.Angle };
      const key = e.key.toLowerCase();
      if (e.key === 'ArrowUp' || e.key === 'ArrowLeft' || e.key === 'PageUp') scroll(-1);
      else if (e.key === 'ArrowDown' || e.key === 'ArrowRight' || e.key === 'PageDown') scroll(1);
      else if (presets[key]) applyPreset(presets[key]);
      else if (toolKeys[key]) chooseTool(toolKeys[key]);
      else if (key === 'r') reset();
      else if (key === 'c') toggleCine();
      else if (key === 'k') void markKeyImage();
      else return;
      e.preventDefault();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [scroll, applyPreset, chooseTool, reset, toggleCine, markKeyImage]);

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
  ];
  const presetButtons: Array<[WindowPreset | 'default', string, string]> = [
    ['default', t.presetDefault, '1'], ['lung', t.presetLung, '2'], ['bone', t.presetBone, '3'], ['brain', t.presetBrain, '4'], ['abdomen', t.presetAbdomen, '5'],
  ];
  const priorLabel = typeof prior === 'object' ? formatDicomDate(prior.StudyDate, language) : undefined;
  const kt = keyImageTexts[language];

  return (
    <section className="viewer">
      <div className="viewer-bar">
        <strong>{formatPersonName(study.PatientName)}</strong>
        <span className="muted">{formatDicomDate(study.StudyDate, language)} · {study.ModalitiesInStudy.join(', ')}</span>
        <span className="group" role="group" aria-label={t.tools}>
          {toolButtons.map(([name, label, key]) => (
            <button key={name} type="button" className={tool === name ? 'on' : ''} aria-pressed={tool === name} title={`${label} (${key})`} data-testid={`tool-${name}`} onClick={() => chooseTool(name)}>{label}</button>
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
        <button type="button" onClick={toggleCine} className={cine ? 'on' : ''} title={`${t.cine} (C)`} data-testid="cine">{cine ? t.stop : t.cine}</button>
        <button type="button" onClick={() => { void comparePrior(); }} data-testid="compare-prior">{t.comparePrior}</button>
        <button type="button" className={mpr ? 'on' : ''} aria-pressed={mpr !== undefined} data-testid="mpr"
          disabled={!mpr && !(panes[active] && ['CT', 'MR', 'PT'].includes(panes[active].Modality) && panes[active].images >= 3)}
          onClick={() => setMpr(mpr ? undefined : panes[active])}>MPR</button>
        <button type="button" onClick={() => { void markKeyImage(); }} disabled={!mayStore(me) || keyImageStatus === 'saving'} data-testid="mark-key-image"
          title={mayStore(me) ? `${kt.mark} (K)` : kt.cannotStore}>{kt.mark}</button>
        {keyImageStatus && <span className="muted" role="status" data-testid="key-image-status">{kt[keyImageStatus]}</span>}
        {prior === 'none' && <span className="muted">{t.noPrior}</span>}
        <a className="button" href={studyArchiveUrl(StudyInstanceUID)} download data-testid="download">{t.download}</a>
      </div>
      <div className="viewer-body">
        <aside className="series-list" aria-label={t.series}>
          {[study, ...(typeof prior === 'object' ? [prior] : [])].map((s) => (
            <div key={s.StudyInstanceUID}>
              <div className="muted">{formatDicomDate(s.StudyDate, language)}</div>
              {s.series.map((se) => (
                <button key={se.SeriesInstanceUID} type="button" className={`series${openDocument?.SeriesInstanceUID === se.SeriesInstanceUID ? ' on' : ''}`} data-testid="series" data-modality={se.Modality}
                  onClick={() => (isImageSeries(se.Modality) ? setPanes((p) => p.map((x, i) => (i === active ? se : x))) : setDocument(se))}>
                  {se.Modality} {se.SeriesNumber} {se.SeriesDescription}<br /><span className="muted">{se.images} {t.images}</span>
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
          <p className="muted shortcuts">{t.shortcuts} · K {kt.mark.toLowerCase()}</p>
          {measurements.size > 0 && <ul className="measurements" data-testid="measurements">{[...measurements].map(([uid, m]) => <li key={uid}>{m}</li>)}</ul>}
        </aside>
        {ready && mpr && <MprView key={mpr.SeriesInstanceUID} engineId={engineId} StudyInstanceUID={mpr.StudyInstanceUID} SeriesInstanceUID={mpr.SeriesInstanceUID} language={language} />}
        {ready && !mpr && (
          <div className={`grid layout-${layout}`}>
            {panes.map((se, i) => (
              <StackPane key={i} index={i} series={se} active={i === active} onActivate={() => setActive(i)} t={t} registerElement={registerElement}
                jump={jump?.pane === i ? jump : undefined}
                {...(se && typeof prior === 'object' && se.StudyInstanceUID === prior.StudyInstanceUID && priorLabel ? { label: priorLabel } : {})} />
            ))}
          </div>
        )}
        {openDocument && <DocumentPanel key={openDocument.SeriesInstanceUID} series={openDocument} language={language} onClose={() => setDocument(undefined)} />}
      </div>
    </section>
  );
}
