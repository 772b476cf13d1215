import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkDirectionalDerivatives, maxRelError } from '../site-agent/backend/gradient-check.ts';
import { learnedUpsample2x } from '../site-agent/model/ops/upsample.ts';
import { randomTensor, useCpu } from './ops-fixtures.ts';

beforeAll(useCpu);

describe('learned ×2 upsampling (matMul + depth-to-space)', () => {
  it('equals tf.conv3dTranspose(kernel 2, stride 2) on non-cubic input with batch 2', () => {
    const x = randomTensor([2, 3, 2, 4, 5], 21) as tf.Tensor5D;
    const kernel = randomTensor([2, 2, 2, 3, 5], 22) as tf.Tensor5D;
    const ours = learnedUpsample2x(x, kernel);
    const reference = tf.conv3dTranspose(x, kernel, [2, 6, 4, 8, 3], 2, 'valid');
    expect(ours.shape).toEqual([2, 6, 4, 8, 3]);
    const diff = tf.max(tf.abs(tf.sub(ours, reference))).dataSync()[0]!;
    const scale = tf.max(tf.abs(reference)).dataSync()[0]!;
    expect(scale).toBeGreaterThan(1);
    expect(diff).toBeLessThan(1e-5 * scale);
    tf.dispose([x, kernel, ours, reference]);
  });

  it('places each input voxel into its own 2×2×2 block (single-voxel probe)', () => {
    // One non-zero input voxel at (d,h,w) = (1,0,1) must light exactly the block at (2..3, 0..1, 2..3).
    const x = tf.buffer([1, 2, 2, 2, 1]);
    x.set(1, 0, 1, 0, 1, 0);
    const kernel = tf.tensor5d(Array.from({ length: 8 }, (_, i) => i + 1), [2, 2, 2, 1, 1]);
    const y = learnedUpsample2x(x.toTensor() as tf.Tensor5D, kernel);
    const out = y.bufferSync();
    for (let d = 0; d < 4; d++)
      for (let h = 0; h < 4; h++)
        for (let w = 0; w < 4; w++) {
          const inside = d >= 2 && h <= 1 && w >= 2;
          const expected = inside ? ((d - 2) * 2 + h) * 2 + (w - 2) + 1 : 0;
          expect(out.get(0, d, h, w, 0)).toBe(expected);
        }
    tf.dispose([kernel, y]);
  });

  it('adds the bias per output channel', () => {
    const x = randomTensor([1, 2, 2, 2, 2], 23) as tf.Tensor5D;
    const kernel = randomTensor([2, 2, 2, 3, 2], 24) as tf.Tensor5D;
    const bias = tf.tensor1d([1, -2, 0.5]);
    const perChannel = tf.tidy(() => tf.mean(tf.sub(learnedUpsample2x(x, kernel, bias), learnedUpsample2x(x, kernel)), [0, 1, 2, 3]).dataSync());
    expect(Array.from(perChannel)).toEqual([expect.closeTo(1, 5), expect.closeTo(-2, 5), expect.closeTo(0.5, 5)]);
    tf.dispose([x, kernel, bias]);
  });

  it('refuses a kernel that does not fit', () => {
    const x = tf.zeros([1, 2, 2, 2, 4]) as tf.Tensor5D;
    expect(() => learnedUpsample2x(x, tf.zeros([2, 2, 2, 3, 5]) as tf.Tensor5D)).toThrow(/does not fit/);
    expect(() => learnedUpsample2x(x, tf.zeros([3, 3, 3, 3, 4]) as tf.Tensor5D)).toThrow(/does not fit/);
  });

  it('gradients for input, kernel and bias match finite differences', () => {
    const inputs = {
      x: randomTensor([2, 2, 3, 2, 3], 25),
      kernel: randomTensor([2, 2, 2, 4, 3], 26, 0.5),
      bias: randomTensor([4], 27),
    };
    const w = randomTensor([2, 4, 6, 4, 4], 28);
    const f = ([x, k, b]: tf.Tensor[]) =>
      tf.tidy(() => tf.sum(tf.mul(w, tf.tanh(learnedUpsample2x(x as tf.Tensor5D, k as tf.Tensor5D, b as tf.Tensor1D)))) as tf.Scalar);
    const checks = checkDirectionalDerivatives(f, inputs);
    expect(checks).toHaveLength(6);
    expect(maxRelError(checks)).toBeLessThan(1e-2);
    tf.dispose([...Object.values(inputs), w]);
  });
});
