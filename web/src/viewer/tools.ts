/**
 * The Cornerstone tools of the viewer (window/level, pan, zoom, wheel scrolling, measurements,
 * cine, synchronized scrolling, the MPR crosshairs): a chunk of its own, loaded with import()
 * once the first image is shown (ViewerPage), so that the first image does not wait for it.
 * Keyboard scrolling, presets, invert, rotate and flip need only the core and work before.
 */
import {
  AngleTool, EllipticalROITool, Enums, LengthTool, PanTool, ProbeTool, RectangleROITool, StackScrollTool, SynchronizerManager, ToolGroupManager, WindowLevelTool, ZoomTool,
  addTool, annotation, init, synchronizers, utilities, type Types,
} from '@cornerstonejs/tools';
import { Enums as CoreEnums, eventTarget, getRenderingEngines, triggerEvent } from '@cornerstonejs/core';
import { Tool, measuringTools, primaryTools, toolGroupId, type PrimaryTool } from './cornerstone.ts';

/**
 * Cornerstone's HU probe, reading a stack image's value at its own pixel. ProbeTool (5.14) takes
 * the slice's place in the stack as the third index into the voxels of the image shown, which
 * hold that one slice: past the first slice it read beyond them and showed no value. Here the
 * image's voxels are read on their one slice; the index it lists keeps the stack position.
 */
class StackProbeTool extends ProbeTool {
  protected override getTargetImageData(targetId: string): ReturnType<ProbeTool['getTargetImageData']> {
    const data = super.getTargetImageData(targetId);
    const voxels = data?.voxelManager;
    if (!data || !voxels || !targetId.startsWith('imageId:') || voxels.dimensions[2] !== 1) return data;
    const oneSlice = Object.create(voxels) as typeof voxels;
    Object.assign(oneSlice, { getAtIJKPoint: ([i, j]: number[]) => voxels.getAtIJK(i!, j!, 0) });
    return { ...data, voxelManager: oneSlice } as typeof data;
  }
}

let initialised = false;

function initTools(): void {
  if (initialised) return;
  initialised = true;
  init();
  for (const T of [StackScrollTool, WindowLevelTool, PanTool, ZoomTool, LengthTool, AngleTool, StackProbeTool, EllipticalROITool, RectangleROITool]) addTool(T);
  // The tools take up a viewport when it is enabled (its mouse, wheel and touch listeners, the
  // annotations' SVG layer): those enabled before the tools came are announced to them again.
  for (const engine of getRenderingEngines() ?? []) {
    for (const viewport of engine.getViewports()) {
      triggerEvent(eventTarget, CoreEnums.Events.ELEMENT_ENABLED, { element: viewport.element, viewportId: viewport.id, renderingEngineId: engine.id });
    }
  }
}

/** On a tablet: two fingers pinch to zoom, three pan; one finger is the primary tool. */
const touchZoom = { numTouchPoints: 2 };
const touchPan = { numTouchPoints: 3 };

/** The tool group every viewport of the viewer joins: wheel scrolls, middle pans, right zooms; `primary` has the primary button. */
export function createToolGroup(primary: PrimaryTool = Tool.WindowLevel): Types.IToolGroup {
  initTools();
  ToolGroupManager.destroyToolGroup(toolGroupId);
  const group = ToolGroupManager.createToolGroup(toolGroupId)!;
  for (const name of Object.values(Tool)) group.addTool(name);
  const { MouseBindings } = Enums;
  group.setToolActive(Tool.StackScroll, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
  group.setToolActive(Tool.Pan, { bindings: [{ mouseButton: MouseBindings.Auxiliary }, touchPan] });
  group.setToolActive(Tool.Zoom, { bindings: [{ mouseButton: MouseBindings.Secondary }, touchZoom] });
  group.setToolActive(Tool.WindowLevel, { bindings: [{ mouseButton: MouseBindings.Primary }] });
  for (const name of measuringTools) group.setToolPassive(name);
  if (primary !== Tool.WindowLevel) setPrimaryTool(group, primary);
  return group;
}

/**
 * The primary button's tool. Cornerstone adds the bindings given to a tool to those it had,
 * and a passive tool loses only its primary one: so the others are made passive (measurements
 * stay editable; pan and zoom keep their own buttons and touches), then this one gets it.
 */
export function setPrimaryTool(group: Types.IToolGroup, name: PrimaryTool): void {
  for (const other of primaryTools) if (other !== name) group.setToolPassive(other);
  group.setToolActive(name, { bindings: [{ mouseButton: Enums.MouseBindings.Primary }] });
}

/** What the viewer uses of the tools, named (not the whole namespace: what is not named stays out of the chunk). */
export const tools = {
  ToolGroupManager, SynchronizerManager, annotation, synchronizers,
  utilities: { stackPrefetch: utilities.stackPrefetch, cine: utilities.cine },
};
