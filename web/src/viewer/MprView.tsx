/**
 * Multiplanar reconstruction of a CT or MR series: one streamed volume (Cornerstone3D's
 * streaming image volume, from the same WADO-RS frames as the stacks) shown in three
 * orthographic viewports, axial, sagittal and coronal. It needs WebGL 2 (in a browser without
 * a GPU, Chromium's SwiftShader provides it); the stacks also work without it. Loaded with
 * import() when asked for, with the tools: the first image of a stack does not wait for it.
 */
import { useEffect, useRef, useState } from 'react';
import { Enums, getRenderingEngine, setVolumesForViewports, volumeLoader, type Types } from '@cornerstonejs/core';
import type { Language } from '../i18n.ts';
import { imageIdsOfSeries, toolGroupId } from './cornerstone.ts';
import { tools } from './tools.ts';

const orientations = [
  ['axial', Enums.OrientationAxis.AXIAL],
  ['sagittal', Enums.OrientationAxis.SAGITTAL],
  ['coronal', Enums.OrientationAxis.CORONAL],
] as const;

const texts = {
  fr: { axial: 'Axial', sagittal: 'Sagittal', coronal: 'Coronal', failed: 'Reconstruction impossible pour cette série', loading: 'Chargement du volume…' },
  en: { axial: 'Axial', sagittal: 'Sagittal', coronal: 'Coronal', failed: 'This series cannot be reconstructed', loading: 'Loading the volume…' },
} as const;

export function MprView(props: { engineId: string; StudyInstanceUID: string; SeriesInstanceUID: string; language: Language }) {
  const t = texts[props.language];
  const elements = useRef<Array<HTMLDivElement | null>>([]);
  const [state, setState] = useState<'loading' | 'shown' | 'failed'>('loading');

  useEffect(() => {
    const engine = getRenderingEngine(props.engineId);
    const els = elements.current;
    if (!engine || els.some((e) => !e)) return;
    let cancelled = false;
    const viewportIds = orientations.map(([name]) => `mpr-${name}`);
    engine.setViewports(orientations.map(([name, orientation], i) => ({
      viewportId: `mpr-${name}`, type: Enums.ViewportType.ORTHOGRAPHIC, element: els[i]!,
      defaultOptions: { orientation, background: [0, 0, 0] as Types.Point3 },
    })));
    const group = tools.ToolGroupManager.getToolGroup(toolGroupId);
    for (const id of viewportIds) group?.addViewport(id, props.engineId);
    const volumeId = `cornerstoneStreamingImageVolume:atrium-${props.SeriesInstanceUID}`;
    void (async () => {
      const imageIds = await imageIdsOfSeries(props.StudyInstanceUID, props.SeriesInstanceUID);
      if (cancelled) return;
      const volume = await volumeLoader.createAndCacheVolume(volumeId, { imageIds });
      if (cancelled) return;
      (volume as { load?: () => void }).load?.();
      await setVolumesForViewports(engine, [{ volumeId }], viewportIds);
      engine.renderViewports(viewportIds);
      if (!cancelled) setState('shown');
    })().catch((e: unknown) => {
      console.error('MPR failed', e);
      if (!cancelled) setState('failed');
    });
    return () => {
      cancelled = true;
      for (const id of viewportIds) group?.removeViewports(props.engineId, id);
      for (const id of viewportIds) if (getRenderingEngine(props.engineId)?.getViewport(id)) engine.disableElement(id);
    };
  }, [props.SeriesInstanceUID]);

  return (
    <div className="grid layout-1x3" data-testid="mpr-view" data-state={state}>
      {orientations.map(([name], i) => (
        <div key={name} className="pane">
          <div className="pane-viewport" ref={(el) => { elements.current[i] = el; }} onContextMenu={(e) => e.preventDefault()} data-testid={`mpr-${name}`} />
          <div className="pane-overlay">
            <div>{t[name]}</div>
            {state === 'loading' && i === 0 && <div>{t.loading}</div>}
            {state === 'failed' && i === 0 && <div className="error" role="alert">{t.failed}</div>}
          </div>
        </div>
      ))}
    </div>
  );
}
