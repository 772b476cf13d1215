import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkDirectionalDerivatives, maxRelError } from '../site-agent/backend/gradient-check.ts';
import { batchNormInference, batchNormTraining, updatedRunningStats } from '../site-agent/model/ops/batch-norm.ts';
import { randomTensor, useCpu } from './ops-fixtures.ts';

beforeAll(useCpu);

/** Per-channel mean and biased variance over N,D,H,W computed in float64. */
function channelStats(values: Float32Array, channels: number): { mean: number[]; variance: number[] } {
  const count = values.length / channels;
  const mean = Array.from({ length: channels }, () => 0);
  const variance = Array.from({ length: channels }, () => 0);
  values.forEach((v, i) => (mean[i % channels]! += v / count));
  values.forEach((v, i) => (variance[i % channels]! += (v - mean[i % channels]!) ** 2 / count));
  return { mean, variance };
}

describe('batch norm (rank 5, NDHWC)', () => {
  const shape = [2, 4, 3, 2, 3];
  const channels = 3;

  it('training mode normalises each channel over N,D,H,W, then applies gamma and beta', () => {
    const x = randomTensor(shape, 1, 2, 5) as tf.Tensor5D;
    const gamma = tf.tensor1d([1, 2, 0.5]);
    const beta = tf.tensor1d([0, -1, 3]);
    const { y, mean, variance, count } = batchNormTraining(x, gamma, beta);
    expect(count).toBe(2 * 4 * 3 * 2);
    const xs = x.dataSync() as Float32Array;
    const stats = channelStats(xs, channels);
    expect(Array.from(mean.dataSync())).toEqual(stats.mean.map((m) => expect.closeTo(m, 4)));
    expect(Array.from(variance.dataSync())).toEqual(stats.variance.map((v) => expect.closeTo(v, 4)));
    const ys = y.dataSync();
    const g = [1, 2, 0.5];
    const b = [0, -1, 3];
    xs.forEach((v, i) => {
      const c = i % channels;
      const expected = ((v - stats.mean[c]!) / Math.sqrt(stats.variance[c]! + 1e-5)) * g[c]! + b[c]!;
      expect(ys[i]).toBeCloseTo(expected, 4);
    });
    tf.dispose([x, gamma, beta, y, mean, variance]);
  });

  it('updates running statistics the PyTorch way (momentum 0.1, unbiased variance)', () => {
    const x = randomTensor(shape, 2, 3, -1) as tf.Tensor5D;
    const ones = tf.ones([channels]) as tf.Tensor1D;
    const zeros = tf.zeros([channels]) as tf.Tensor1D;
    const runningMean = tf.tensor1d([0.5, -0.5, 0]);
    const runningVar = tf.tensor1d([1, 2, 3]);
    const batch = batchNormTraining(x, ones, zeros);
    const next = updatedRunningStats(runningMean, runningVar, batch);
    const stats = channelStats(x.dataSync() as Float32Array, channels);
    const n = batch.count;
    const rm = [0.5, -0.5, 0];
    const rv = [1, 2, 3];
    for (let c = 0; c < channels; c++) {
      expect(next.mean.dataSync()[c]).toBeCloseTo(0.9 * rm[c]! + 0.1 * stats.mean[c]!, 4);
      expect(next.variance.dataSync()[c]).toBeCloseTo(0.9 * rv[c]! + 0.1 * stats.variance[c]! * (n / (n - 1)), 4);
    }
    tf.dispose([x, ones, zeros, runningMean, runningVar, batch.y, batch.mean, batch.variance, next.mean, next.variance]);
  });

  it('inference mode uses the running statistics, not the batch', () => {
    const x = randomTensor(shape, 3) as tf.Tensor5D;
    const gamma = tf.tensor1d([1, 1, 2]);
    const beta = tf.tensor1d([0, 1, 0]);
    const rm = tf.tensor1d([0.1, 0.2, 0.3]);
    const rv = tf.tensor1d([4, 1, 0.25]);
    const y = batchNormInference(x, gamma, beta, rm, rv);
    const xs = x.dataSync();
    const ys = y.dataSync();
    const m = [0.1, 0.2, 0.3], v = [4, 1, 0.25], g = [1, 1, 2], b = [0, 1, 0];
    xs.forEach((val, i) => {
      const c = i % channels;
      expect(ys[i]).toBeCloseTo(((val - m[c]!) / Math.sqrt(v[c]! + 1e-5)) * g[c]! + b[c]!, 4);
    });
    tf.dispose([x, gamma, beta, rm, rv, y]);
  });

  it('training-mode gradients for x, gamma and beta match finite differences', () => {
    const inputs = {
      x: randomTensor(shape, 4),
      gamma: randomTensor([channels], 5, 0.5, 1),
      beta: randomTensor([channels], 6),
    };
    const w = randomTensor(shape, 7);
    const f = ([x, g, b]: tf.Tensor[]) =>
      tf.tidy(() => {
        const r = batchNormTraining(x as tf.Tensor5D, g as tf.Tensor1D, b as tf.Tensor1D);
        // Nonlinear in y so the gradient through the batch statistics matters.
        return tf.sum(tf.mul(w, tf.tanh(r.y))) as tf.Scalar;
      });
    const checks = checkDirectionalDerivatives(f, inputs);
    expect(checks.map((c) => c.input)).toEqual(['x', 'x', 'gamma', 'gamma', 'beta', 'beta']);
    expect(maxRelError(checks)).toBeLessThan(1e-2);
    tf.dispose([...Object.values(inputs), w]);
  });

  it('the gradient check itself rejects a wrong gradient (batch statistics treated as constants)', () => {
    // Same forward values, but the custom gradient ignores the dependence of mean/var on x:
    // a plausible implementation bug the finite-difference check must catch.
    const x = randomTensor(shape, 8);
    const w = randomTensor(shape, 9);
    const ones = tf.ones([channels]) as tf.Tensor1D;
    const zeros = tf.zeros([channels]) as tf.Tensor1D;
    const wrong = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const [xx, save] = args as [tf.Tensor5D, tf.GradSaveFunc];
      const r = batchNormTraining(xx, ones, zeros);
      save([r.variance]);
      return { value: r.y, gradFunc: (dy: tf.Tensor5D, [variance]: tf.Tensor[]) => tf.mul(dy, tf.rsqrt(tf.add(variance!, 1e-5))) };
    });
    const f = ([xx]: tf.Tensor[]) => tf.tidy(() => tf.sum(tf.mul(w, tf.tanh(wrong(xx!) as tf.Tensor))) as tf.Scalar);
    expect(maxRelError(checkDirectionalDerivatives(f, { x }))).toBeGreaterThan(0.1);
    tf.dispose([x, w, ones, zeros]);
  });

  it('refuses training on a single value per channel (the output would ignore the input)', () => {
    const x = tf.ones([1, 1, 1, 1, 3]) as tf.Tensor5D;
    const g = tf.ones([3]) as tf.Tensor1D;
    expect(() => batchNormTraining(x, g, g)).toThrow(/more than one value per channel/);
    tf.dispose([x, g]);
  });
});
