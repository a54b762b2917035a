/**
 * What a radiologist reads around the image: the four corners (patient, study, series, slice
 * position and thickness, window), orientation markers on the four edges (from the camera, so
 * they follow a rotation or a flip) and a scale bar in millimetres.
 */
import { useEffect, useState } from 'react';
import { Enums, getRenderingEngine, utilities, type Types } from '@cornerstonejs/core';
import { num, str, strs, tag, type DicomJson } from '../dicom-json.ts';
import { formatDicomDate, formatPersonName, type Language } from '../i18n.ts';
import { instanceOfImageId } from './cornerstone.ts';
import type { ViewerTexts } from './texts.ts';

type Vec = [number, number, number];

const axisLetters: Record<Language, [[string, string], [string, string], [string, string]]> = {
  // LPS: +x is the patient's left, +y posterior, +z head.
  fr: [['G', 'D'], ['P', 'A'], ['H', 'B']],
  en: [['L', 'R'], ['P', 'A'], ['S', 'I']],
};

/** The patient direction of a vector: its main axes' letters, largest first (e.g. "LP"). */
export function directionLabel(v: Vec, language: Language): string {
  const letters = axisLetters[language];
  return [0, 1, 2]
    .map((i) => ({ i, a: Math.abs(v[i]!) }))
    .filter(({ a }) => a > 0.3)
    .sort((x, y) => y.a - x.a)
    .slice(0, 2)
    .map(({ i }) => letters[i]![v[i]! > 0 ? 0 : 1])
    .join('');
}

function cross(a: Vec, b: Vec): Vec {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

/** A round length for the scale bar: at most `max` mm. */
function niceLength(max: number): number {
  const steps = [1, 2, 5, 10, 20, 50, 100, 200, 500];
  return steps.filter((s) => s <= max).at(-1) ?? 1;
}

export interface OverlayState {
  instance?: DicomJson;
  top: string; bottom: string; left: string; right: string;
  window?: { width: number; center: number };
  zoom?: number;
  /** Scale bar: its length in mm and in CSS pixels. */
  scale?: { mm: number; px: number };
  invert: boolean;
}

const empty: OverlayState = { top: '', bottom: '', left: '', right: '', invert: false };

/** The overlay's values for a stack viewport, kept current as the image, camera or window change. */
export function useOverlayState(engineId: string, viewportId: string, element: HTMLDivElement | null, language: Language): OverlayState {
  const [state, setState] = useState<OverlayState>(empty);
  useEffect(() => {
    if (!element) return;
    let frame = 0;
    let lastKey = '';
    const update = () => {
      frame = 0;
      const viewport = getRenderingEngine(engineId)?.getViewport(viewportId) as Types.IStackViewport | undefined;
      if (!viewport || !viewport.getCurrentImageId?.()) return;
      const imageId = viewport.getCurrentImageId();
      const instance = instanceOfImageId(imageId);
      const camera = viewport.getCamera();
      const up = camera.viewUp as Vec | undefined;
      const normal = camera.viewPlaneNormal as Vec | undefined;
      let top = '', bottom = '', left = '', right = '';
      // Markers only where the image says where the patient is.
      if (up && normal && instance && strs(instance, '00200037').length === 6) {
        const r = cross(up, normal);
        top = directionLabel(up, language);
        bottom = directionLabel([-up[0], -up[1], -up[2]], language);
        right = directionLabel(r, language);
        left = directionLabel([-r[0], -r[1], -r[2]], language);
      }
      const properties = viewport.getProperties();
      const voi = properties.voiRange;
      const wl = voi ? utilities.windowLevel.toWindowLevel(voi.lower, voi.upper) : undefined;
      const window = wl ? { width: wl.windowWidth, center: wl.windowCenter } : undefined;
      let scale: OverlayState['scale'];
      const height = element.clientHeight;
      const spacing = instance ? strs(instance, '00280030') : [];
      if (camera.parallelScale && height > 0 && spacing.length === 2) {
        const mmPerPx = (2 * camera.parallelScale) / height;
        const mm = niceLength((height / 4) * mmPerPx);
        scale = { mm, px: Math.round(mm / mmPerPx) };
      }
      const zoom = viewport.getZoom?.();
      const next: OverlayState = {
        ...(instance ? { instance } : {}), top, bottom, left, right,
        ...(window ? { window } : {}), ...(zoom ? { zoom } : {}), ...(scale ? { scale } : {}), invert: properties.invert === true,
      };
      const key = JSON.stringify([imageId, top, bottom, left, right, window, zoom?.toFixed(2), scale, next.invert]);
      if (key !== lastKey) {
        lastKey = key;
        setState(next);
      }
    };
    const schedule = () => { if (!frame) frame = requestAnimationFrame(update); };
    const events = [Enums.Events.IMAGE_RENDERED, Enums.Events.CAMERA_MODIFIED, Enums.Events.VOI_MODIFIED, Enums.Events.STACK_NEW_IMAGE];
    for (const e of events) element.addEventListener(e, schedule);
    schedule();
    return () => {
      for (const e of events) element.removeEventListener(e, schedule);
      if (frame) cancelAnimationFrame(frame);
    };
  }, [element, engineId, viewportId, language]);
  return state;
}

const mm = (v: string | undefined) => (v === undefined || v === '' || !Number.isFinite(Number(v)) ? undefined : `${Number(Number(v).toFixed(2))} mm`);

/** The slice's position along its normal (Slice Location, or the position's projection) and thickness. */
export function sliceLines(instance: DicomJson | undefined, t: ViewerTexts): string[] {
  if (!instance) return [];
  const lines: string[] = [];
  let location = str(instance, '00201041');
  const position = strs(instance, '00200032').map(Number);
  const o = strs(instance, '00200037').map(Number);
  if (location === undefined && position.length === 3 && o.length === 6) {
    const n = cross([o[0]!, o[1]!, o[2]!], [o[3]!, o[4]!, o[5]!]);
    location = String(n[0] * position[0]! + n[1] * position[1]! + n[2] * position[2]!);
  }
  if (mm(location)) lines.push(`${t.position} ${mm(location)}`);
  const thickness = mm(str(instance, '00180050'));
  if (thickness) lines.push(`${t.thickness} ${thickness}`);
  return lines;
}

/** The four corners' text, the markers and the scale bar, over a viewport. */
export function Corners({ state, index, language, t }: { state: OverlayState; index: number; language: Language; t: ViewerTexts }) {
  const i = state.instance;
  const sex = i ? str(i, '00100040') : undefined;
  const birth = i ? str(i, tag.PatientBirthDate) : undefined;
  return (
    <>
      <div className="corner corner-tl" data-testid={`corner-tl-${index}`}>
        {i && <div>{formatPersonName(str(i, tag.PatientName))}</div>}
        {i && str(i, tag.PatientID) && <div>{str(i, tag.PatientID)}</div>}
        {(birth || sex) && <div>{birth ? formatDicomDate(birth, language) : ''}{sex ? ` ${sex}` : ''}</div>}
      </div>
      <div className="corner corner-tr" data-testid={`corner-tr-${index}`}>
        {i && str(i, '00080080') && <div>{str(i, '00080080')}</div>}
        {i && str(i, tag.StudyDescription) && <div>{str(i, tag.StudyDescription)}</div>}
        {i && <div>{formatDicomDate(str(i, tag.StudyDate), language)}</div>}
        {i && str(i, tag.AccessionNumber) && <div>{str(i, tag.AccessionNumber)}</div>}
      </div>
      <div className="corner corner-br" data-testid={`corner-br-${index}`}>
        {state.window && <div data-testid={`window-${index}`}>{t.window} {Math.round(state.window.width)} {t.level} {Math.round(state.window.center)}</div>}
        {state.zoom !== undefined && <div>{t.zoom} {Math.round(state.zoom * 100)} %</div>}
        {state.invert && <div>{t.invert}</div>}
        {i && num(i, '00280010') !== undefined && <div>{num(i, '00280011')} × {num(i, '00280010')}</div>}
      </div>
      {state.top && <div className="marker marker-top" data-testid={`marker-top-${index}`}>{state.top}</div>}
      {state.bottom && <div className="marker marker-bottom" data-testid={`marker-bottom-${index}`}>{state.bottom}</div>}
      {state.left && <div className="marker marker-left" data-testid={`marker-left-${index}`}>{state.left}</div>}
      {state.right && <div className="marker marker-right" data-testid={`marker-right-${index}`}>{state.right}</div>}
      {state.scale && (
        <div className="scale-bar" data-testid={`scale-${index}`} data-mm={state.scale.mm} data-px={state.scale.px}>
          <div className="scale-line" style={{ width: `${state.scale.px}px` }} />
          <div>{state.scale.mm} mm</div>
        </div>
      )}
    </>
  );
}
