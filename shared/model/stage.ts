/**
 * The stages of the thesis's three modes (§2.2, §3): one U-Net for `full` and `patch`, two for the
 * `cascade` (stage 1 on the downsampled whole volume, stage 2 patch-wise on the image plus stage
 * 1's one-hot foreground). Everything that asks "which nets does this mode train, with how many
 * input channels, on whole volumes or on patches, under which weight-name prefix" asks here.
 */
import type { Mode } from '../config/model.ts';

export const STAGES = ['full', 'patch', 'cascade-stage1', 'cascade-stage2'] as const;
export type Stage = (typeof STAGES)[number];

export function isStage(value: unknown): value is Stage {
  return typeof value === 'string' && (STAGES as readonly string[]).includes(value);
}

/** Whole-volume stages train and infer on the whole (padded) volume; the others on patches. */
export function isWholeVolumeStage(stage: Stage): boolean {
  return stage === 'full' || stage === 'cascade-stage1';
}

export function isPatchWiseStage(stage: Stage): boolean {
  return !isWholeVolumeStage(stage);
}

/**
 * The thesis's Dice convention (§2.4.1): background excluded for whole-volume nets, included for
 * patch-wise nets (where many patches hold no foreground at all).
 */
export function thesisIncludeBackground(stage: Stage): boolean {
  return isPatchWiseStage(stage);
}

/** Weight-name prefix of a stage in the federation's one flat weight list. */
export function stagePrefix(stage: Stage): string {
  return stage === 'cascade-stage1' ? 'stage1/' : stage === 'cascade-stage2' ? 'stage2/' : '';
}

export interface StageInput {
  stage: Stage;
  /** Input channels: the modalities, plus stage 1's one-hot foreground for cascade stage 2. */
  inChannels: number;
}

/** The nets a mode trains, in training order. `classes` counts the background. */
export function stagesForMode(mode: Mode, channels: number, classes: number): StageInput[] {
  if (mode === 'full') return [{ stage: 'full', inChannels: channels }];
  if (mode === 'patch') return [{ stage: 'patch', inChannels: channels }];
  return [
    { stage: 'cascade-stage1', inChannels: channels },
    { stage: 'cascade-stage2', inChannels: channels + classes - 1 },
  ];
}
