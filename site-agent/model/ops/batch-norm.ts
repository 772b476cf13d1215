/**
 * Batch normalisation for rank-5 NDHWC tensors, PyTorch BatchNorm3d semantics. tfjs-core's
 * fused batchNorm has no gradient for mean/variance inputs computed from the batch, and
 * tfjs-layers refuses rank 5, so this is built from core ops (moments, mul, add) whose
 * gradients tfjs already has.
 */
import * as tf from '@tensorflow/tfjs-core';
import '../../backend/gradients/index.ts';
import { PatchFedError } from '../../../shared/errors.ts';

/** PyTorch defaults. */
export const BATCH_NORM_EPSILON = 1e-5;
export const BATCH_NORM_MOMENTUM = 0.1;

/** The four axes statistics are taken over: N, D, H, W. */
const BATCH_AXES = [0, 1, 2, 3];

export interface BatchNormTrainingResult {
  y: tf.Tensor5D;
  /** Per-channel batch mean. */
  mean: tf.Tensor1D;
  /** Per-channel biased (population) batch variance, the one used to normalise. */
  variance: tf.Tensor1D;
  /** Number of values each statistic was taken over (N·D·H·W). */
  count: number;
}

/** Training mode: normalise with the batch's own statistics. */
export function batchNormTraining(
  x: tf.Tensor5D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  epsilon = BATCH_NORM_EPSILON,
): BatchNormTrainingResult {
  const [n, d, h, w] = x.shape;
  if (n * d * h * w < 2) {
    // Like PyTorch: with one value per channel the output would be β whatever the input.
    throw new PatchFedError(
      'model-input',
      `Batch norm in training needs more than one value per channel; got input [${x.shape}]. Use a larger batch or patch, or norm 'instance'.`,
      { subject: 'input' },
    );
  }
  const { mean, variance } = tf.moments(x, BATCH_AXES);
  const y = normaliseWith(x, mean as tf.Tensor1D, variance as tf.Tensor1D, gamma, beta, epsilon);
  return { y, mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D, count: n * d * h * w };
}

/** Inference mode: normalise with the running statistics. */
export function batchNormInference(
  x: tf.Tensor5D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  runningMean: tf.Tensor1D,
  runningVar: tf.Tensor1D,
  epsilon = BATCH_NORM_EPSILON,
): tf.Tensor5D {
  return normaliseWith(x, runningMean, runningVar, gamma, beta, epsilon);
}

/**
 * PyTorch's running-statistics update: running = (1 − momentum)·running + momentum·batch,
 * where the variance fed in is the unbiased one (biased · count / (count − 1)).
 */
export function updatedRunningStats(
  runningMean: tf.Tensor1D,
  runningVar: tf.Tensor1D,
  batch: Pick<BatchNormTrainingResult, 'mean' | 'variance' | 'count'>,
  momentum = BATCH_NORM_MOMENTUM,
): { mean: tf.Tensor1D; variance: tf.Tensor1D } {
  // Not connected to the loss, so the gradient tape prunes it; no stop-gradient needed.
  return tf.tidy(() => {
    const correction = batch.count > 1 ? batch.count / (batch.count - 1) : 1;
    const keep = 1 - momentum;
    const mean = tf.add(tf.mul(runningMean, keep), tf.mul(batch.mean, momentum));
    const unbiased = tf.mul(batch.variance, correction);
    const variance = tf.add(tf.mul(runningVar, keep), tf.mul(unbiased, momentum));
    return { mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D };
  });
}

/** y = (x − mean)·γ/√(var+ε) + β, as one scale and one shift over the big tensor. */
function normaliseWith(
  x: tf.Tensor5D,
  mean: tf.Tensor,
  variance: tf.Tensor,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  epsilon: number,
): tf.Tensor5D {
  return tf.tidy(() => {
    const scale = tf.mul(gamma, tf.rsqrt(tf.add(variance, epsilon)));
    const shift = tf.sub(beta, tf.mul(mean, scale));
    return tf.add(tf.mul(x, scale), shift) as tf.Tensor5D;
  });
}
