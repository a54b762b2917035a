/**
 * Cornerstone3D set up once per page: the rendering core (WebGL, or its CPU path when the
 * browser has no WebGL), the DICOMweb image loader (decoding in module workers), the tools.
 */
import { init as initCore, setUseCPURendering, cache, Enums, eventTarget, imageLoadPoolManager, type Types } from '@cornerstonejs/core';
import { init as initLoader, wadors } from '@cornerstonejs/dicom-image-loader';
import * as tools from '@cornerstonejs/tools';
import { getJson } from '../api.ts';
import { num, str, tag, type DicomJson } from '../dicom-json.ts';

export const toolGroupId = 'atrium';

export const Tool = {
  WindowLevel: tools.WindowLevelTool.toolName,
  Pan: tools.PanTool.toolName,
  Zoom: tools.ZoomTool.toolName,
  Length: tools.LengthTool.toolName,
  Angle: tools.AngleTool.toolName,
  StackScroll: tools.StackScrollTool.toolName,
} as const;
export type PrimaryTool = typeof Tool.WindowLevel | typeof Tool.Pan | typeof Tool.Zoom | typeof Tool.Length | typeof Tool.Angle;

let ready: Promise<void> | undefined;

function hasWebGL2(): boolean {
  try {
    return document.createElement('canvas').getContext('webgl2') !== null;
  } catch {
    return false;
  }
}

export function initCornerstone(): Promise<void> {
  ready ??= (async () => {
    if (!hasWebGL2()) setUseCPURendering(true);
    await initCore();
    // Prefetch loads at most 24 at once (Cornerstone's default is 1000): measured on a 500-slice
    // CT (bench/browser.ts, bench/RESULTS.md), the first image comes ~130 ms sooner and the
    // series as soon; at 3 or 6 the first image is as quick but the series 2 s slower.
    imageLoadPoolManager.setMaxSimultaneousRequests(Enums.RequestType.Prefetch, 24);
    initLoader({ maxWebWorkers: Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) });
    tools.init();
    for (const T of [tools.StackScrollTool, tools.WindowLevelTool, tools.PanTool, tools.ZoomTool, tools.LengthTool, tools.AngleTool]) tools.addTool(T);
  })();
  return ready;
}

/** On a tablet: two fingers pinch to zoom, three pan; one finger is the primary tool. */
const touchZoom = { numTouchPoints: 2 };
const touchPan = { numTouchPoints: 3 };

/** The tool group every viewport of the viewer joins: wheel scrolls, middle pans, right zooms. */
export function createToolGroup(): tools.Types.IToolGroup {
  tools.ToolGroupManager.destroyToolGroup(toolGroupId);
  const group = tools.ToolGroupManager.createToolGroup(toolGroupId)!;
  for (const name of Object.values(Tool)) group.addTool(name);
  const { MouseBindings } = tools.Enums;
  group.setToolActive(Tool.StackScroll, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
  group.setToolActive(Tool.Pan, { bindings: [{ mouseButton: MouseBindings.Auxiliary }, touchPan] });
  group.setToolActive(Tool.Zoom, { bindings: [{ mouseButton: MouseBindings.Secondary }, touchZoom] });
  group.setToolActive(Tool.WindowLevel, { bindings: [{ mouseButton: MouseBindings.Primary }] });
  group.setToolPassive(Tool.Length);
  group.setToolPassive(Tool.Angle);
  return group;
}

/**
 * The primary button's tool. Cornerstone adds the bindings given to a tool to those it had,
 * and a passive tool loses only its primary one: so the others are made passive (measurements
 * stay editable; pan and zoom keep their own buttons and touches), then this one gets it.
 */
export function setPrimaryTool(group: tools.Types.IToolGroup, name: PrimaryTool): void {
  for (const other of [Tool.WindowLevel, Tool.Pan, Tool.Zoom, Tool.Length, Tool.Angle]) if (other !== name) group.setToolPassive(other);
  group.setToolActive(name, { bindings: [{ mouseButton: tools.Enums.MouseBindings.Primary }] });
}

/**
 * The image ids of a series, one per frame, in InstanceNumber order, read from Atrium's
 * WADO-RS metadata; each id's metadata is handed to the loader so that frames are fetched
 * (WADO-RS frames, as stored) without another round trip.
 */
/** Each image id's instance, as its series' metadata gave it: what a key object selection refers to. */
const instanceOfImage = new Map<string, DicomJson>();

export function instanceOfImageId(imageId: string): DicomJson | undefined {
  return instanceOfImage.get(imageId);
}

export async function imageIdsOfSeries(StudyInstanceUID: string, SeriesInstanceUID: string): Promise<string[]> {
  const base = `${window.location.origin}/dicom-web/studies/${StudyInstanceUID}/series/${SeriesInstanceUID}`;
  const instances = await getJson<DicomJson[]>(`${base}/metadata`, 'application/dicom+json');
  instances.sort((a, b) => (num(a, tag.InstanceNumber) ?? 0) - (num(b, tag.InstanceNumber) ?? 0));
  const ids: string[] = [];
  for (const instance of instances) {
    const sop = str(instance, tag.SOPInstanceUID);
    if (!sop || num(instance, '00280010') === undefined) continue; // no image (Rows): SR, PDF, KOS…
    const frames = num(instance, tag.NumberOfFrames) ?? 1;
    for (let f = 1; f <= frames; f++) {
      const id = `wadors:${base}/instances/${sop}/frames/${f}`;
      wadors.metaDataManager.add(id, instance as unknown as Parameters<typeof wadors.metaDataManager.add>[1]);
      instanceOfImage.set(id, instance);
      ids.push(id);
    }
  }
  return ids;
}

/**
 * Calls back with the number of images of `ids` loaded, at once (those already in the cache,
 * shown in another viewport) and as each further one arrives: the progress of a series.
 */
export function onImagesLoaded(ids: string[], callback: (loaded: number) => void): () => void {
  const wanted = new Set(ids);
  const seen = new Set(ids.filter((id) => cache.isLoaded(id)));
  callback(seen.size);
  const listener = (e: Event) => {
    const id = (e as CustomEvent<{ image?: Types.IImage }>).detail.image?.imageId;
    if (id && wanted.has(id) && !seen.has(id)) {
      seen.add(id);
      callback(seen.size);
    }
  };
  eventTarget.addEventListener(Enums.Events.IMAGE_LOADED, listener);
  return () => eventTarget.removeEventListener(Enums.Events.IMAGE_LOADED, listener);
}

/** Window presets (width, center) in Hounsfield units. */
export const windowPresets = {
  lung: { width: 1500, center: -600 },
  bone: { width: 2000, center: 300 },
  brain: { width: 80, center: 40 },
  abdomen: { width: 400, center: 50 },
} as const;
export type WindowPreset = keyof typeof windowPresets;

export { tools };
