import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkDirectionalDerivatives, maxRelError } from '../site-agent/backend/gradient-check.ts';
import { instanceNorm } from '../site-agent/model/ops/instance-norm.ts';
import { randomTensor, useCpu } from './ops-fixtures.ts';

beforeAll(useCpu);

describe('instance norm (rank 5, NDHWC)', () => {
  const shape = [2, 3, 4, 2, 3];

  it('normalises each sample and channel over D,H,W, then applies gamma and beta', () => {
    const x = randomTensor(shape, 11, 3, 2) as tf.Tensor5D;
    const gamma = tf.tensor1d([1, 2, 0.5]);
    const beta = tf.tensor1d([0, 1, -2]);
    const y = instanceNorm(x, gamma, beta);
    const xs = x.dataSync();
    const ys = y.dataSync();
    const [n, , , , c] = shape as [number, number, number, number, number];
    const perSample = xs.length / n;
    const spatial = perSample / c;
    const g = [1, 2, 0.5], b = [0, 1, -2];
    for (let s = 0; s < n; s++) {
      for (let ch = 0; ch < c; ch++) {
        let mean = 0;
        for (let k = 0; k < spatial; k++) mean += xs[s * perSample + k * c + ch]! / spatial;
        let variance = 0;
        for (let k = 0; k < spatial; k++) variance += (xs[s * perSample + k * c + ch]! - mean) ** 2 / spatial;
        for (let k = 0; k < spatial; k++) {
          const i = s * perSample + k * c + ch;
          expect(ys[i]).toBeCloseTo(((xs[i]! - mean) / Math.sqrt(variance + 1e-5)) * g[ch]! + b[ch]!, 4);
        }
      }
    }
    tf.dispose([x, gamma, beta, y]);
  });

  it('does not mix samples: changing sample 1 leaves sample 0 unchanged', () => {
    const x = randomTensor(shape, 12) as tf.Tensor5D;
    const gamma = tf.ones([3]) as tf.Tensor1D;
    const beta = tf.zeros([3]) as tf.Tensor1D;
    const mask = tf.concat([tf.ones([1, 3, 4, 2, 3]), tf.fill([1, 3, 4, 2, 3], 10)], 0);
    const y1 = instanceNorm(x, gamma, beta);
    const y2 = instanceNorm(tf.mul(x, mask) as tf.Tensor5D, gamma, beta);
    const half = y1.size / 2;
    expect(Array.from(y2.dataSync().slice(0, half))).toEqual(Array.from(y1.dataSync().slice(0, half)).map((v) => expect.closeTo(v, 5)));
    tf.dispose([x, gamma, beta, mask, y1, y2]);
  });

  it('gradients for x, gamma and beta match finite differences', () => {
    const inputs = { x: randomTensor(shape, 13), gamma: randomTensor([3], 14, 0.5, 1), beta: randomTensor([3], 15) };
    const w = randomTensor(shape, 16);
    const f = ([x, g, b]: tf.Tensor[]) =>
      tf.tidy(() => tf.sum(tf.mul(w, tf.tanh(instanceNorm(x as tf.Tensor5D, g as tf.Tensor1D, b as tf.Tensor1D)))) as tf.Scalar);
    expect(maxRelError(checkDirectionalDerivatives(f, inputs))).toBeLessThan(1e-2);
    tf.dispose([...Object.values(inputs), w]);
  });

  it('refuses a single voxel per sample', () => {
    const x = tf.ones([4, 1, 1, 1, 3]) as tf.Tensor5D;
    const g = tf.ones([3]) as tf.Tensor1D;
    expect(() => instanceNorm(x, g, g)).toThrow(/more than one voxel per sample/);
    tf.dispose([x, g]);
  });
});
