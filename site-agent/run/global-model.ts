/**
 * The federated model of an experiment: the stage nets its mode needs, with input channels and
 * classes taken from the experiment's modality and label schema. The coordinator builds the
 * initial global checkpoint from it; sites build the same layout and check it matches.
 */
import type { Experiment } from '../../shared/config/coordinator.ts';
import { resolveArchitecture, type Architecture, type Mode } from '../../shared/config/model.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import type { UNetStage } from '../train/loss.ts';
import { combinedWeights, createStageNets, disposeStageNets } from './nets.ts';
import type { StageSetup } from './site-plan.ts';

export interface ModelLayout {
  mode: Mode;
  arch: Architecture;
  channels: number;
  classes: number;
  /** Stages with their input channels (patch/batch are each site's own choice). */
  stages: { stage: UNetStage; inChannels: number }[];
}

export function stagesForMode(mode: Mode, channels: number, classes: number): { stage: UNetStage; inChannels: number }[] {
  if (mode === 'full') return [{ stage: 'full', inChannels: channels }];
  if (mode === 'patch') return [{ stage: 'patch', inChannels: channels }];
  return [
    { stage: 'cascade-stage1', inChannels: channels },
    { stage: 'cascade-stage2', inChannels: channels + classes - 1 },
  ];
}

export function experimentLayout(e: Pick<Experiment, 'model' | 'labels' | 'modalities'>): ModelLayout {
  const channels = Object.keys(e.modalities).length;
  const classes = Object.keys(e.labels).length;
  return { mode: e.model.mode, arch: resolveArchitecture(e.model), channels, classes, stages: stagesForMode(e.model.mode, channels, classes) };
}

/** Freshly initialised global weights (deterministic in `seed`). */
export function initialGlobalWeights(layout: ModelLayout, seed: number): NamedWeights {
  const setups: StageSetup[] = layout.stages.map((s) => ({ ...s, patch: [8, 8, 8], batch: 1, estimatedPeakBytes: 0 }));
  const nets = createStageNets(setups, layout.arch, layout.classes, seed);
  try {
    return combinedWeights(nets);
  } finally {
    disposeStageNets(nets);
  }
}
