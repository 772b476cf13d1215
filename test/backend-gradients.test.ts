import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { coreGradientsVersion } from '../site-agent/backend/gradients/core-gradients.generated.ts';
import { registerCoreGradients } from '../site-agent/backend/gradients/index.ts';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('tfjs-core gradients (translated from its ES module build)', () => {
  it('were generated from the installed tfjs-core (regenerate after an upgrade)', () => {
    expect(coreGradientsVersion).toBe(tf.version_core);
  });

  it('cover every kernel tfjs-core ships a gradient file for', () => {
    const dir = path.join(path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-core/package.json')), 'dist', 'gradients');
    const kernels = readdirSync(dir)
      .filter((f) => f.endsWith('_grad.js'))
      .map((f) => f.replace(/_grad\.js$/, ''));
    expect(kernels.length).toBeGreaterThan(90);
    // Each file is named after the kernel it differentiates.
    const missing = kernels.filter((k) => tf.getGradient(k) == null);
    expect(missing).toEqual([]);
    expect(registerCoreGradients()).toBe(0); // idempotent
  });

  it('compute correct values through the translated internal backprop ops', () => {
    // d/dx Σ maxPool3d(x) puts a 1 at each window's maximum; d/dx Σ avgPool3d(x) spreads 1/8.
    const x = tf.tensor5d(Array.from({ length: 8 }, (_, i) => (i * 5) % 8), [1, 2, 2, 2, 1]);
    const gMax = tf.grad((t: tf.Tensor) => tf.sum(tf.maxPool3d(t as tf.Tensor5D, 2, 2, 'valid')))(x);
    expect(Array.from(gMax.dataSync())).toEqual([0, 0, 0, 1, 0, 0, 0, 0]); // x[3] = 15 mod 8 = 7 is the max
    const gAvg = tf.grad((t: tf.Tensor) => tf.sum(tf.avgPool3d(t as tf.Tensor5D, 2, 2, 'valid')))(x);
    expect(Array.from(gAvg.dataSync())).toEqual(Array(8).fill(0.125));
    // Product: d/dx_i Π x = Π_{j≠i} x_j (the translated Prod gradient used chained reshape upstream).
    const p = tf.tensor1d([2, 3, 4]);
    expect(Array.from(tf.grad((t: tf.Tensor) => tf.prod(t))(p).dataSync())).toEqual([12, 8, 6]);
    tf.dispose([x, gMax, gAvg, p]);
  });
});
