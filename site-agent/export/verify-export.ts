/**
 * Checks that an ONNX export computes what the tfjs model computes: each stage on seeded random
 * input (max abs difference of the probabilities), and whole images segmented through the same
 * sliding-window code with an onnxruntime-backed predictor instead of the tfjs net.
 */
import * as tf from '@tensorflow/tfjs-core';
import { SeededRandom } from '../../shared/random.ts';
import type { CaseVolume, Shape3 } from '../pipeline/case.ts';
import type { PatchPredictor } from '../pipeline/sliding-window.ts';
import { DEFAULT_WINDOW_DIVISORS, defaultWindow, type PredictionModel, type PredictionStage } from '../inference/prediction-model.ts';
import { segmentCase, type Segmentation, type StageModel } from '../inference/segment.ts';
import { onnxStage, type OnnxStage } from './onnx-runtime.ts';

/** Largest |a − b| over two equally long arrays. */
export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return m;
}

export interface StageComparison {
  stage: string;
  /** Input [n, x, y, z, C] the comparison ran on. */
  shape: [number, number, number, number, number];
  maxAbsDiff: number;
}

/** The window a stage is checked on: its own, else PatchFed's default window (4× the U-Net divisor per axis). */
export function comparisonWindow(stage: PredictionStage, divisor: number): Shape3 {
  if (stage.patch && stage.stage !== 'full' && stage.stage !== 'cascade-stage1') return stage.patch;
  const d = DEFAULT_WINDOW_DIVISORS * divisor;
  return [d, d, d];
}

/** The tfjs net's probabilities against another predictor's (onnxruntime, a re-read export) on one seeded random batch. */
export async function compareStage(stage: PredictionStage, predictor: PatchPredictor, window: Shape3, opts: { batch?: number; seed?: number } = {}): Promise<StageComparison> {
  const C = stage.net.config.inChannels;
  const shape: [number, number, number, number, number] = [opts.batch ?? 2, window[0], window[1], window[2], C];
  const data = new SeededRandom(opts.seed ?? 1).normalArray(shape.reduce((a, b) => a * b, 1));
  const reference = await tf.tidy(() => stage.net.predict(tf.tensor5d(data, shape, 'float32'))).data();
  const got = await predictor({ data, shape, origins: [] });
  let values: ArrayLike<number>;
  if (got instanceof Float32Array) values = got;
  else {
    values = await got.data();
    got.dispose();
  }
  return { stage: stage.stage, shape, maxAbsDiff: maxAbsDifference(reference, values) };
}

/** The model's stages run by onnxruntime (one session per exported stage, in stage order). */
export async function onnxStages(model: PredictionModel, files: readonly Uint8Array[], threads?: number): Promise<OnnxStage[]> {
  const out: OnnxStage[] = [];
  try {
    for (const bytes of files) out.push(await onnxStage(bytes, model.numClasses, { threads }));
    return out;
  } catch (e) {
    await Promise.all(out.map((s) => s.release()));
    throw e;
  }
}

/**
 * Segments a preprocessed case with the model's own windows, overlap and cascade wiring, each
 * stage predicted by its tfjs net, or by its onnxruntime session when `onnx` is given.
 */
export function segmentWith(model: PredictionModel, c: CaseVolume, onnx?: readonly OnnxStage[]): Promise<Segmentation> {
  const stageModel = (i: number): StageModel => {
    const s = model.stages[i];
    if (!s) throw new Error(`model has no stage ${i}`);
    const patch = s.patch ?? defaultWindow(c.shape, model.divisor);
    const o = onnx?.[i];
    return o ? { stage: s.stage, patch, predictor: o.predictor } : { stage: s.stage, patch, net: s.net };
  };
  const models = model.stages.length === 2 ? { stage1: stageModel(0), main: stageModel(1) } : { main: stageModel(0) };
  return segmentCase(models, c, { numClasses: model.numClasses, overlap: model.overlap, blend: model.blend, divisor: model.divisor, cascadeFactor: model.cascadeFactor });
}
