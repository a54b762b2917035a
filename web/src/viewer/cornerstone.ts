/**
 * Cornerstone3D set up once per page: the rendering core (WebGL, or its CPU path when the
 * browser has no WebGL) and the DICOMweb image loader (decoding in module workers). The tools
 * (tools.ts) are not here: loaded with import() once the first image is shown, they do not
 * delay it.
 */
import { init as initCore, setUseCPURendering, cache, Enums, eventTarget, imageLoader, imageLoadPoolManager, type Types } from '@cornerstonejs/core';
import { createImage, init as initLoader, wadors } from '@cornerstonejs/dicom-image-loader';
import { getJson } from '../api.ts';
import { num, str, tag, type DicomJson } from '../dicom-json.ts';
import { boundaryOf, readMultipartStream } from './multipart-stream.ts';
import { dicomWebRoot } from './data-source.ts';

export const toolGroupId = 'atrium';

/** The tools' names (Cornerstone's toolName of each), known before the tools are loaded. */
export const Tool = {
  WindowLevel: 'WindowLevel',
  Pan: 'Pan',
  Zoom: 'Zoom',
  Length: 'Length',
  Angle: 'Angle',
  Probe: 'Probe',
  Ellipse: 'EllipticalROI',
  Rectangle: 'RectangleROI',
  StackScroll: 'StackScroll',
} as const;
export type PrimaryTool = typeof Tool.WindowLevel | typeof Tool.Pan | typeof Tool.Zoom | typeof Tool.Length | typeof Tool.Angle
  | typeof Tool.Probe | typeof Tool.Ellipse | typeof Tool.Rectangle;
/** The tools the primary button may take. */
export const primaryTools: readonly PrimaryTool[] = [Tool.WindowLevel, Tool.Pan, Tool.Zoom, Tool.Length, Tool.Angle, Tool.Probe, Tool.Ellipse, Tool.Rectangle];
/** The tools that leave an annotation (saved as measurements). */
export const measuringTools: readonly string[] = [Tool.Length, Tool.Angle, Tool.Probe, Tool.Ellipse, Tool.Rectangle];

/** The tools' events the viewer listens to (Cornerstone's names), known before the tools are loaded. */
export const AnnotationEvents = { completed: 'CORNERSTONE_TOOLS_ANNOTATION_COMPLETED', modified: 'CORNERSTONE_TOOLS_ANNOTATION_MODIFIED' } as const;

/**
 * A series' stream of frames is asked for in JPEG-LS lossless, else as stored: Atrium encodes
 * native frames on the way out (about a third of a CT's size on a slow line) and the loader's
 * workers decode them to the same samples; a compressed object comes as stored. Never a lossy
 * syntax. After a refusal or a frame that does not decode, the page asks for frames as stored only.
 */
const losslessOnTheWire = '1.2.840.10008.1.2.4.80';
const asStored = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
let compressedFrames = true;

export function framesAccept(): string {
  return compressedFrames ? `multipart/related; type="image/jls"; transfer-syntax=${losslessOnTheWire}, ${asStored}` : asStored;
}

function stopCompressedFrames(why: unknown): void {
  if (!compressedFrames) return;
  compressedFrames = false;
  console.warn('compressed frames refused or undecodable: frames are now asked for as stored', why);
}

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
    // The frames Cornerstone fetches one at a time (the first image, a slice scrolled to before
    // the stream brings it) come as stored: one frame gains little from compression, and encoding
    // it (a codec worker started on the server, a decoder loaded here) would delay the first image.
    initLoader({ maxWebWorkers: Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) });
    imageLoader.registerImageLoader('wadors', loadFrame);
  })();
  return ready;
}

/**
 * The image ids of a series, one per frame, in InstanceNumber order, read from Atrium's
 * WADO-RS metadata; each id's metadata is handed to the loader so that frames are fetched
 * (WADO-RS frames, see framesAccept) without another round trip.
 */
/** Each image id's instance, as its series' metadata gave it: what a key object selection refers to. */
const instanceOfImage = new Map<string, DicomJson>();

export function instanceOfImageId(imageId: string): DicomJson | undefined {
  return instanceOfImage.get(imageId);
}

/** A series' WADO-RS metadata, fetched once for the page (choosing the series to open, then loading it). */
const metadataOfSeries = new Map<string, Promise<DicomJson[]>>();

export function seriesMetadata(StudyInstanceUID: string, SeriesInstanceUID: string): Promise<DicomJson[]> {
  const key = `${StudyInstanceUID}/${SeriesInstanceUID}`;
  let found = metadataOfSeries.get(key);
  if (!found) {
    found = getJson<DicomJson[]>(`${window.location.origin}${dicomWebRoot()}/studies/${StudyInstanceUID}/series/${SeriesInstanceUID}/metadata`, 'application/dicom+json');
    found.catch(() => metadataOfSeries.delete(key));
    metadataOfSeries.set(key, found);
  }
  return found;
}

/** Forget a series' metadata (it changed: an object was stored in it). */
export function forgetSeriesMetadata(StudyInstanceUID: string, SeriesInstanceUID: string): void {
  metadataOfSeries.delete(`${StudyInstanceUID}/${SeriesInstanceUID}`);
}

export async function imageIdsOfSeries(StudyInstanceUID: string, SeriesInstanceUID: string): Promise<string[]> {
  const base = `${window.location.origin}${dicomWebRoot()}/studies/${StudyInstanceUID}/series/${SeriesInstanceUID}`;
  const instances = [...await seriesMetadata(StudyInstanceUID, SeriesInstanceUID)];
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

/** A frame's bytes as a series' pixel data response delivers them. */
interface StreamedFrame {
  bytes: Uint8Array;
  transferSyntaxUID: string;
}

/** Frames a series stream will deliver, by image id, until the loader takes them. */
const streamedFrames = new Map<string, { promise: Promise<StreamedFrame>; arrived: boolean; resolve: (f: StreamedFrame) => void; reject: (e: unknown) => void }>();

/**
 * The 'wadors' image loader: a frame that a series stream (streamSeries) is bringing is made
 * into an image when its part arrives; any other, or one whose stream failed, is fetched
 * alone by Cornerstone's WADO-RS frames loader.
 */
function loadFrame(imageId: string, options: Record<string, unknown> = {}): Types.IImageLoadObject {
  const pending = streamedFrames.get(imageId);
  // A frame the reader scrolled to before the stream reached it is fetched alone, now.
  const looking = options.requestType === Enums.RequestType.Interaction && !pending?.arrived;
  if (!pending || looking) {
    streamedFrames.delete(imageId);
    return wadors.loadImage(imageId, options);
  }
  const started = Date.now();
  const promise = pending.promise.then(
    async ({ bytes, transferSyntaxUID }) => {
      streamedFrames.delete(imageId);
      let image: Types.IImage;
      try {
        image = (await createImage(imageId, bytes, transferSyntaxUID, options)) as Types.IImage;
      } catch (error) {
        // A compressed frame this browser could not decode: this one, and those after it, as stored.
        if (transferSyntaxUID === losslessOnTheWire) stopCompressedFrames(error);
        return wadors.loadImage(imageId, options).promise as Promise<Types.IImage>;
      }
      image.loadTimeInMS = Date.now() - started;
      (image as Types.IImage & { transferSyntaxUID?: string }).transferSyntaxUID = transferSyntaxUID;
      return image;
    },
    () => {
      streamedFrames.delete(imageId);
      return wadors.loadImage(imageId, options).promise;
    },
  );
  return { promise: promise as Promise<Types.IImage>, cancelFn: undefined };
}

/**
 * Brings every frame of a series in one WADO-RS pixel data request (PS3.18 10.4.1.1.4,
 * one part a frame, named by its frame URL) and caches each as its part arrives: one
 * request, not one per frame. `except` (the image shown first) is left to its own request.
 * When the stream fails, the frames it did not bring are fetched one by one. `signal` ends
 * it (the viewport closed): the frames not yet come are then forgotten, not fetched.
 */
export async function streamSeries(StudyInstanceUID: string, SeriesInstanceUID: string, ids: string[], except?: string, signal?: AbortSignal): Promise<void> {
  const wanted = new Map<string, string>(); // frame URL -> image id
  for (const id of ids) {
    if (id === except || cache.isLoaded(id) || streamedFrames.has(id) || cache.getImageLoadObject(id)) continue;
    let resolve!: (f: StreamedFrame) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<StreamedFrame>((res, rej) => ((resolve = res), (reject = rej)));
    promise.catch(() => {});
    const entry = { promise, arrived: false, resolve: (f: StreamedFrame) => ((entry.arrived = true), resolve(f)), reject };
    streamedFrames.set(id, entry);
    wanted.set(id.slice('wadors:'.length), id);
  }
  if (wanted.size === 0) return;
  const fail = (error: unknown) => {
    for (const id of wanted.values()) {
      streamedFrames.get(id)?.reject(error);
      // Nobody waits for these any more: a later viewport streams them again.
      if (signal?.aborted) streamedFrames.delete(id);
    }
  };
  try {
    const url = `${window.location.origin}${dicomWebRoot()}/studies/${StudyInstanceUID}/series/${SeriesInstanceUID}/pixeldata`;
    const ask = () => fetch(url, { headers: { accept: framesAccept() }, credentials: 'same-origin', signal });
    let r = await ask();
    if (!r.ok && compressedFrames && r.status !== 401 && r.status !== 403 && r.status !== 404) {
      // Refused (406) or failed encoding them: the frames as stored, here and from now on.
      stopCompressedFrames(`series pixel data: HTTP ${r.status}`);
      void r.body?.cancel();
      r = await ask();
    }
    const boundary = boundaryOf(r.headers.get('content-type'));
    if (!r.ok || !r.body || !boundary) throw new Error(`series pixel data: HTTP ${r.status}`);
    for await (const part of readMultipartStream(r.body, boundary)) {
      const id = wanted.get(part.headers.get('content-location') ?? '');
      if (!id) continue;
      wanted.delete(id);
      const type = part.headers.get('content-type') ?? '';
      const transferSyntaxUID = /transfer-syntax=([0-9.]+)/.exec(type)?.[1] ?? '1.2.840.10008.1.2.1';
      const entry = streamedFrames.get(id);
      if (!entry) continue; // fetched alone meanwhile
      entry.resolve({ bytes: part.body, transferSyntaxUID });
      // Into the cache now, whatever the viewport asks for next.
      void imageLoader.loadAndCacheImage(id, { priority: 5, requestType: Enums.RequestType.Prefetch }).catch(() => {});
    }
    if (wanted.size > 0) throw new Error(`series pixel data: ${wanted.size} frame(s) missing from the answer`);
  } catch (error) {
    if (!signal?.aborted) console.warn('series stream failed; frames will be fetched one by one', error);
    fail(error);
  }
}

/** Window presets (width, center) in Hounsfield units. */
export const windowPresets = {
  lung: { width: 1500, center: -600 },
  bone: { width: 2000, center: 300 },
  brain: { width: 80, center: 40 },
  abdomen: { width: 400, center: 50 },
} as const;
export type WindowPreset = keyof typeof windowPresets;

