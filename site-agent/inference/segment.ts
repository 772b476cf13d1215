/**
 * Whole-volume segmentation for the three modes. Patch-wise stages predict with sliding windows
 * (MONAI/nnU-Net: overlap + Gaussian weighting) or, with overlap 0 and constant weighting, the
 * thesis's non-overlapping tiling; whole-volume stages predict the zero-padded volume in one go.
 * Either way the prediction is cropped back to the case's shape.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CaseVolume, Shape3 } from '../pipeline/case.ts';
import { guidedCase, inferenceGuidance } from '../pipeline/guidance.ts';
import { argmaxChannelsLast } from '../pipeline/patches.ts';
import { downsampleCase } from '../pipeline/resample.ts';
import { gridInference, slidingWindowInference, type PatchPredictor, type Weighting } from '../pipeline/sliding-window.ts';
import { roundUpTo } from '../planner/estimate.ts';
import { isWholeVolumeStage, type Stage } from '../../shared/model/index.ts';
import type { SegmentationNet } from '../train/net.ts';

/**
 * One stage of a model: a tfjs net, or any predictor of (n, px, py, pz, C) windows (e.g. the
 * exported ONNX graph run by onnxruntime), so every runtime shares the same windowing code.
 */
export type StageModel = {
  stage: Stage;
  /** Window for patch-wise stages; ignored for whole-volume stages. */
  patch: Shape3;
} & ({ net: SegmentationNet } | { predictor: PatchPredictor });

export interface InferenceOptions {
  numClasses: number;
  overlap: number;
  blend: Weighting;
  /** U-Net divisor (2^(depth-1)): whole volumes are padded to a multiple of it. */
  divisor: number;
  cascadeFactor: number;
  batchSize?: number;
}

export interface StagePrediction {
  /** (X, Y, Z, K) channels-last probabilities. */
  probabilities: Float32Array;
  method: string;
}

function stagePredictor(model: StageModel): PatchPredictor {
  if ('predictor' in model) return model.predictor;
  const { net } = model;
  return (batch) => tf.tidy(() => net.forward(tf.tensor5d(batch.data, batch.shape, 'float32'), false));
}

export async function predictStage(model: StageModel, c: CaseVolume, opts: InferenceOptions): Promise<StagePrediction> {
  const whole = isWholeVolumeStage(model.stage);
  const patch: Shape3 = whole ? [roundUpTo(c.shape[0], opts.divisor), roundUpTo(c.shape[1], opts.divisor), roundUpTo(c.shape[2], opts.divisor)] : model.patch;
  if (!whole && opts.overlap === 0) {
    // Overlap 0 is the thesis's reconstruction: the non-overlapping grid, last patch zero-padded
    // (a sliding window with overlap 0 would instead put the last window flush with the end).
    const g = await gridInference(c, stagePredictor(model), { patch, numClasses: opts.numClasses, batchSize: opts.batchSize ?? 1 });
    return { probabilities: g.probabilities, method: g.method.description };
  }
  const r = await slidingWindowInference(c, stagePredictor(model), {
    patch,
    numClasses: opts.numClasses,
    overlap: whole ? 0 : opts.overlap,
    weighting: whole ? 'constant' : opts.blend,
    batchSize: opts.batchSize ?? 1,
  });
  const method = whole ? `whole volume zero-padded to ${patch.join('x')}` : r.method.description;
  return { probabilities: r.probabilities, method };
}

export interface Segmentation {
  /** (X, Y, Z) class indices, row-major, z fastest. */
  labels: Uint8Array;
  /** One line per stage: how it was predicted (reported with the results). */
  method: string[];
  timeMs: number;
}

/** Segments one case (only image/shape/channels are used): `main` alone, or stage 1 then `main` for the cascade. */
export async function segmentCase(models: { main: StageModel; stage1?: StageModel }, c: CaseVolume, opts: InferenceOptions): Promise<Segmentation> {
  const t0 = performance.now();
  const image: CaseVolume = { id: c.id, image: c.image, shape: c.shape, channels: c.channels };
  const method: string[] = [];
  let input = image;
  if (models.main.stage === 'cascade-stage2') {
    if (!models.stage1) throw new Error('cascade inference needs the stage-1 model');
    const low = downsampleCase(image, opts.cascadeFactor, { divisor: opts.divisor });
    const p1 = await predictStage(models.stage1, low, opts);
    method.push(`stage 1 (factor ${opts.cascadeFactor}, ${low.shape.join('x')}): ${p1.method}`);
    input = guidedCase(image, inferenceGuidance(p1.probabilities, opts.numClasses, low.shape, c.shape), opts.numClasses);
  }
  const p = await predictStage(models.main, input, opts);
  method.push(`${models.main.stage}: ${p.method}`);
  return { labels: argmaxChannelsLast(p.probabilities, opts.numClasses), method, timeMs: performance.now() - t0 };
}
