/**
 * Gradients on 'cpu-fast': central finite differences through tf.grads, the training guard's
 * self-check, and a whole U-Net's weight gradients against the stock cpu backend. (That CI
 * really built the addon is test/kernels-build.test.ts.)
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { checkDirectionalDerivatives, maxRelError } from '../site-agent/backend/gradient-check.ts';
import { gradientSelfCheck } from '../site-agent/backend/self-check.ts';
import { UNet3D } from '../site-agent/model/unet.ts';
import { softDiceLoss } from '../site-agent/train/loss.ts';
import { fastBackend, relError, seeded, unavailableReason } from './kernels-fixtures.ts';

describe.skipIf(fastBackend === null)(`gradients on cpu-fast ${unavailableReason}`, () => {
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('match central finite differences (conv stride 1/2, relu, max-pool, conv3dTranspose)', async () => {
    await tf.setBackend(fastBackend!);
    const before = tf.memory().numTensors;
    const x = tf.tensor(seeded(1 * 6 * 6 * 4 * 2, 21), [1, 6, 6, 4, 2]);
    const w1 = tf.tensor(seeded(3 * 3 * 3 * 2 * 4, 22, 0.4), [3, 3, 3, 2, 4]);
    const w2 = tf.tensor(seeded(2 * 2 * 2 * 4 * 3, 23, 0.4), [2, 2, 2, 4, 3]);
    const wt = tf.tensor(seeded(2 * 2 * 2 * 2 * 3, 24, 0.4), [2, 2, 2, 2, 3]); // conv3dTranspose: [.., out, in]
    const f = ([a, b, c, d]: tf.Tensor[]) =>
      tf.tidy(() => {
        const h = tf.relu(tf.conv3d(a as tf.Tensor5D, b as tf.Tensor5D, 1, 'same'));
        const p = tf.maxPool3d(h, 2, 1, 'same');
        const q = tf.conv3d(p, c as tf.Tensor5D, 2, 'valid'); // [1,3,3,2,3]
        const u = tf.conv3dTranspose(q, d as tf.Tensor5D, [1, 6, 6, 4, 2], 2, 'same');
        return tf.sum(tf.mul(u, tf.sin(u))) as tf.Scalar;
      });
    const checks = checkDirectionalDerivatives(f, { x, w1, w2, wt }, { epsilons: [3e-2, 1e-2, 3e-3, 1e-3] });
    expect(checks.length).toBe(8);
    expect(maxRelError(checks), JSON.stringify(checks)).toBeLessThanOrEqual(1e-2);
    tf.dispose([x, w1, w2, wt]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('pass the training guard (gradientSelfCheck) on cpu-fast', async () => {
    const result = await gradientSelfCheck(fastBackend!);
    expect(result.passed, result.detail).toBe(true);
  });

  it.each(['instance', 'batch'] as const)('of a whole U-Net (%s norm) match stock cpu', async (norm) => {
    const x = seeded(1 * 8 * 8 * 8 * 2, 31);
    const labels = Int32Array.from(seeded(8 * 8 * 8, 32), (v) => (v > 0.5 ? 2 : v > -0.5 ? 1 : 0));
    const gradsOn = async (backend: string) => {
      await tf.setBackend(backend);
      const model = new UNet3D({ inChannels: 2, numClasses: 3, base: 4, depth: 2, norm, seed: 3 });
      try {
        return tf.tidy(() => {
          const xt = tf.tensor(x, [1, 8, 8, 8, 2]) as tf.Tensor5D;
          const q = tf.oneHot(tf.tensor(labels, [1, 8, 8, 8], 'int32'), 3);
          const { grads } = tf.variableGrads(() => softDiceLoss(model.forward(xt, true), q, { includeBackground: true }), model.trainableVariables);
          return Object.values(grads).map((g) => Float32Array.from(g.dataSync()));
        });
      } finally {
        model.dispose();
      }
    };
    const stock = await gradsOn('cpu');
    const fast = await gradsOn(fastBackend!);
    expect(fast.length).toBe(stock.length);
    // Conv biases before a norm have an exact gradient of 0 (rounding noise either way), so each
    // tensor's error is relative to max(its own norm, 1e-3 of the whole gradient's norm).
    const total = Math.sqrt(stock.reduce((s, g) => s + g.reduce((t, v) => t + v * v, 0), 0));
    const errors = fast.map((g, i) => relError(g, stock[i]!, 1e-3 * total));
    expect(Math.max(...errors)).toBeLessThanOrEqual(1e-4);
  });
});
