import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import { assertTrainableBackend, selectBackend } from '../site-agent/backend/select.ts';
import { gradientSelfCheck, SELF_CHECK_TOLERANCE } from '../site-agent/backend/self-check.ts';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('gradient self-check', () => {
  it('accepts the stock cpu backend: every input and filter gradient agrees with finite differences', async () => {
    const before = tf.memory().numTensors;
    const result = await gradientSelfCheck('cpu');
    expect(result.passed).toBe(true);
    expect(result.maxRelError).toBeLessThan(SELF_CHECK_TOLERANCE);
    expect(new Set(result.checks.map((c) => c.input))).toEqual(new Set(['x', 'conv (stride 1) filter', 'conv (stride 2) filter', 'upsampling kernel']));
    expect(result.checks.every((c) => Math.abs(c.analytic) > 0)).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses stock wasm for training: its Conv3D input gradient is wrong', async () => {
    const report = await selectBackend('wasm');
    expect(report.name).toBe('wasm');
    expect(report.package).toBe('@tensorflow/tfjs-backend-wasm');
    // Forward passes on wasm are fine (inference use).
    const y = tf.tidy(() => tf.sum(tf.conv3d(tf.ones([1, 4, 4, 4, 1]) as tf.Tensor5D, tf.ones([3, 3, 3, 1, 1]) as tf.Tensor5D, 1, 'same')).dataSync()[0]);
    // Each output counts its in-bounds neighbours; per axis they sum to 2+3+3+2 = 10, so 10³ in all.
    expect(y).toBe(1000);
    expect(report.selfCheck.passed).toBe(false);
    expect(report.selfCheck.maxRelError).toBeGreaterThan(0.5);
    expect(report.selfCheck.detail).toMatch(/input gradient \(relative error/);
    expect(() => assertTrainableBackend(report)).toThrow(PatchFedError);
    expect(() => assertTrainableBackend(report)).toThrow(/cannot be used for training/);
  });

  it('reports a backend that does not exist as failed instead of throwing', async () => {
    await tf.setBackend('cpu');
    const result = await gradientSelfCheck('no-such-backend');
    expect(result.passed).toBe(false);
    expect(result.detail).toMatch(/no-such-backend/);
    expect(tf.getBackend()).toBe('cpu');
  });
});
