/**
 * The federated model of an experiment as plain data: the stage nets its mode needs, with input
 * channels and classes from the experiment's modality and label schema, their one flat weight
 * manifest (cascade tensors prefixed "stage1/" and "stage2/") and seeded initial values. The
 * coordinator builds the initial checkpoint and the manifest every update must match from here
 * without loading tfjs; sites build their tfjs nets from the same layout and seeds, so both sides
 * agree bit for bit.
 */
import { resolveArchitecture, type Architecture, type Mode, type ModelSpec } from '../config/model.ts';
import type { NamedWeights, WeightSpec } from '../weights.ts';
import { initialValues } from './init.ts';
import { stagePrefix, stagesForMode, type StageInput } from './stage.ts';
import { buildManifest } from './unet-layout.ts';

export interface ModelLayout {
  mode: Mode;
  arch: Architecture;
  /** Input modalities. */
  channels: number;
  /** Output classes including background. */
  classes: number;
  /** Stages with their input channels (patch and batch are each site's own choice). */
  stages: StageInput[];
}

/** What a layout is built from: the model and the label and modality schema of an experiment. */
export interface LayoutSource {
  model: Pick<ModelSpec, 'mode' | 'norm'> & Partial<Pick<ModelSpec, 'preset' | 'base' | 'depth' | 'cascadeFactor'>>;
  labels: Record<string, string>;
  modalities: Record<string, string>;
}

export function experimentLayout(e: LayoutSource): ModelLayout {
  const channels = Object.keys(e.modalities).length;
  const classes = Object.keys(e.labels).length;
  return { mode: e.model.mode, arch: resolveArchitecture(e.model), channels, classes, stages: stagesForMode(e.model.mode, channels, classes) };
}

/** Seed of the i-th stage net: stages must not share initial values. */
export function stageSeed(seed: number, stageIndex: number): number {
  return seed + 1000 * stageIndex;
}

/** A site's training seed for a round: differs per round so local data order does not repeat. */
export function roundTrainingSeed(siteSeed: number, round: number): number {
  return siteSeed * 1009 + round;
}

/** One stage net's own (unprefixed) manifest. */
export function stageManifest(layout: Pick<ModelLayout, 'arch' | 'classes'>, stage: StageInput): WeightSpec[] {
  return buildManifest({ inChannels: stage.inChannels, numClasses: layout.classes, ...layout.arch });
}

/** The federation's flat manifest: every stage's tensors, in stage order, with stage prefixes. */
export function layoutManifest(layout: ModelLayout): WeightSpec[] {
  return layout.stages.flatMap((s) => stageManifest(layout, s).map((spec) => ({ ...spec, name: stagePrefix(s.stage) + spec.name })));
}

/**
 * The same initial values streamed one tensor at a time, so a 1 GB model is written without
 * holding it whole: `visit(tensor, 0, values)` in manifest order.
 */
export function forEachInitialTensor(layout: ModelLayout, seed: number, visit: (tensor: number, offset: number, values: Float32Array) => void): void {
  let t = 0;
  layout.stages.forEach((s, i) => {
    for (const spec of stageManifest(layout, s)) visit(t++, 0, initialValues(spec, stageSeed(seed, i)));
  });
}

/** Freshly initialised global weights (deterministic in `seed`; equal to the tfjs nets' initial values). */
export function initialGlobalWeights(layout: ModelLayout, seed: number): NamedWeights {
  const out: NamedWeights = { manifest: [], values: [] };
  layout.stages.forEach((s, i) => {
    const prefix = stagePrefix(s.stage);
    for (const spec of stageManifest(layout, s)) {
      out.manifest.push({ ...spec, name: prefix + spec.name });
      out.values.push(initialValues(spec, stageSeed(seed, i)));
    }
  });
  return out;
}
