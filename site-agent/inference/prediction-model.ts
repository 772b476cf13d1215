/**
 * A model ready to segment images, whatever it was loaded from (a `patchfed train` output, a tfjs
 * export, or a coordinator checkpoint): the stage nets, and everything needed to use them the way
 * they were trained — label schema, modalities, intensity normalisation, windows, cascade factor —
 * plus the notes that tell the user which choices were made (verification, normalisation
 * statistics, window).
 */
import type { ChannelScheme, CtChannelStats } from '../data/normalize.ts';
import type { UNet3D } from '../model/unet.ts';
import type { Shape3 } from '../pipeline/case.ts';
import type { Weighting } from '../pipeline/sliding-window.ts';
import type { Stage } from '../../shared/model/index.ts';

export interface PredictionStage {
  stage: Stage;
  net: UNet3D;
  /**
   * Window of a patch-wise stage. null: not recorded with the model (a coordinator checkpoint
   * without --patch or --site-config), chosen per case by `defaultWindow`.
   */
  patch: Shape3 | null;
  /** Where the stage came from, for messages. */
  where: string;
}

export type ModelKind = 'train-output' | 'coordinator-checkpoint';

export interface PredictionModel {
  kind: ModelKind;
  /** The directory the model was read from. */
  where: string;
  /** Where the weights come from, in words (a checkpoint, a local training run, an export of one). */
  source: string;
  mode: string;
  /** Stage 1 first for the cascade; the last one produces the segmentation. */
  stages: PredictionStage[];
  numClasses: number;
  /** Image channels (modalities) the first stage expects. */
  channels: number;
  labelNames: string[] | null;
  /** Output value per class index (the dataset's label values). */
  labelValues: number[];
  modalities: string[] | null;
  schemes: ChannelScheme[];
  /** Per channel; undefined for MR channels, and for CT channels whose statistics are not known yet. */
  ctStats: (CtChannelStats | undefined)[];
  overlap: number;
  blend: Weighting;
  cascadeFactor: number;
  /** 2^(depth − 1): every window and padded volume is a multiple of it. */
  divisor: number;
  /** Lines for the user, printed before any case: verification, normalisation, windows, norm layers. */
  notes: string[];
}

/** Default window per axis, in U-Net divisors (2^(depth−1)), when the model records none. */
export const DEFAULT_WINDOW_DIVISORS = 4;

/**
 * The window for a case when the model records none: DEFAULT_WINDOW_DIVISORS × the divisor per
 * axis (16 for the cpu-small U-Net), clipped to the volume padded to the divisor. Instance norm
 * takes its statistics over the window, so a window near the training patch matters: on the
 * simulation's held-out phantoms (sites trained on 16–24³) a whole-volume 32×32×24 window scored
 * mean Dice 0.68 against 0.82 for 16³.
 */
export function defaultWindow(shape: Shape3, divisor: number): Shape3 {
  const cap = DEFAULT_WINDOW_DIVISORS * divisor;
  const axis = (d: number) => Math.min(cap, Math.ceil(d / divisor) * divisor);
  return [axis(shape[0]), axis(shape[1]), axis(shape[2])];
}

export function disposePredictionModel(model: PredictionModel): void {
  for (const s of model.stages) s.net.dispose();
}

/** Names of a record keyed by "0", "1", … in index order (the experiment's label and modality schema). */
export function namesByIndex(record: Record<string, string>): string[] {
  return Object.keys(record)
    .map(Number)
    .sort((a, b) => a - b)
    .map((k) => record[String(k)] ?? String(k));
}
