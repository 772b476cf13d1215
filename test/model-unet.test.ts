import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import { totalParameters, type NamedWeights } from '../shared/weights.ts';
import { buildManifest, requiredDivisor, resolveUNetConfig, stageChannels } from '../shared/model/index.ts';
import { UNet3D } from '../site-agent/model/unet.ts';
import { parameterCounts } from '../site-agent/planner/estimate.ts';
import { randomTensor, useCpu } from './ops-fixtures.ts';

beforeAll(useCpu);

const models: UNet3D[] = [];
function net(cfg: ConstructorParameters<typeof UNet3D>[0]): UNet3D {
  const m = new UNet3D(cfg);
  models.push(m);
  return m;
}
afterEach(() => {
  while (models.length) models.pop()!.dispose();
});

describe('U-Net configuration', () => {
  it('defaults to the thesis architecture (32→512, batch norm) and presets share the code', () => {
    const thesis = resolveUNetConfig({ inChannels: 4, numClasses: 4 });
    expect(stageChannels(thesis)).toEqual([32, 64, 128, 256, 512]);
    expect(thesis.norm).toBe('batch');
    expect(requiredDivisor(thesis)).toBe(16);
    expect(resolveUNetConfig({ inChannels: 1, numClasses: 2, preset: 'cpu-small' })).toMatchObject({ base: 8, depth: 3 });
    expect(resolveUNetConfig({ inChannels: 1, numClasses: 2, preset: 'cpu-medium' })).toMatchObject({ base: 16, depth: 4 });
    expect(resolveUNetConfig({ inChannels: 1, numClasses: 2, preset: 'cpu-small', base: 4 })).toMatchObject({ base: 4, depth: 3 });
  });

  it('counts the same parameters as the memory planner', () => {
    for (const norm of ['batch', 'instance'] as const) {
      const cfg = resolveUNetConfig({ inChannels: 2, numClasses: 3, base: 32, depth: 5, norm });
      const specs = buildManifest(cfg);
      const planned = parameterCounts({ inChannels: 2, classes: 3, arch: { base: 32, depth: 5, norm } });
      expect(totalParameters(specs.filter((s) => s.trainable))).toBe(planned.trainable);
      expect(totalParameters(specs.filter((s) => !s.trainable))).toBe(planned.runningStats);
    }
  });

  it('refuses bad configurations before allocating anything', () => {
    const before = tf.memory().numTensors;
    expect(() => new UNet3D({ inChannels: 0, numClasses: 2 })).toThrow(PatchFedError);
    expect(() => new UNet3D({ inChannels: 1, numClasses: 1 })).toThrow(/numClasses/);
    expect(() => new UNet3D({ inChannels: 1, numClasses: 2, depth: 2.5 })).toThrow(/depth/);
    expect(() => new UNet3D({ inChannels: 1, numClasses: 2, norm: 'group' as never })).toThrow(/norm/);
    expect(() => new UNet3D({ inChannels: 1, numClasses: 2, base: 256, depth: 7 })).toThrow(/limit/);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('U-Net forward', () => {
  for (const [depth, spatial] of [
    [2, [4, 6, 2]],
    [3, [8, 4, 12]],
    [4, [8, 8, 16]],
  ] as const) {
    it(`depth ${depth}: [N,X,Y,Z,C] in → [N,X,Y,Z,K] logits and probabilities out`, () => {
      const m = net({ inChannels: 2, numClasses: 3, base: 2, depth, seed: 1 });
      const x = randomTensor([2, ...spatial, 2], 30) as tf.Tensor5D;
      const logits = m.logits(x, false);
      const probs = m.predict(x);
      expect(logits.shape).toEqual([2, ...spatial, 3]);
      expect(probs.shape).toEqual([2, ...spatial, 3]);
      const sums = tf.sum(probs, 4).dataSync();
      expect(sums.every((s) => Math.abs(s - 1) < 1e-5)).toBe(true);
      tf.dispose([x, logits, probs]);
    });
  }

  it('instance norm variant has no running statistics and works with batch size 1', () => {
    const m = net({ inChannels: 1, numClasses: 2, base: 2, depth: 2, norm: 'instance' });
    expect(m.manifest().every((s) => s.trainable)).toBe(true);
    const x = randomTensor([1, 4, 4, 4, 1], 31) as tf.Tensor5D;
    const y = m.forward(x, true);
    expect(y.shape).toEqual([1, 4, 4, 4, 2]);
    tf.dispose([x, y]);
  });

  it('refuses inputs of the wrong rank, channel count or size with a message naming the rule', () => {
    const m = net({ inChannels: 2, numClasses: 2, base: 2, depth: 3 });
    const bad = (shape: number[]) => () => tf.tidy(() => m.predict(tf.zeros(shape) as tf.Tensor as tf.Tensor5D));
    expect(bad([1, 8, 8, 8])).toThrow(/rank 5/);
    expect(bad([1, 8, 8, 8, 3])).toThrow(/3 channels; the model expects 2/);
    expect(bad([1, 8, 6, 8, 2])).toThrow(/divisible by 4/);
  });

  it('initialisation is deterministic per seed and He-scaled', () => {
    const a = net({ inChannels: 1, numClasses: 2, base: 4, depth: 2, seed: 5 }).getWeights();
    const b = net({ inChannels: 1, numClasses: 2, base: 4, depth: 2, seed: 5 }).getWeights();
    const c = net({ inChannels: 1, numClasses: 2, base: 4, depth: 2, seed: 6 }).getWeights();
    expect(a.values).toEqual(b.values);
    const i = a.manifest.findIndex((s) => s.name === 'enc1/conv1/kernel'); // [3,3,3,4,8]: fan_in 108
    expect(a.values[i]).not.toEqual(c.values[i]);
    const v = a.values[i]!;
    const std = Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
    expect(std).toBeGreaterThan(0.8 * Math.sqrt(2 / 108));
    expect(std).toBeLessThan(1.2 * Math.sqrt(2 / 108));
  });
});

describe('U-Net weights', () => {
  it('manifest is flat, ordered and named; roles and trainable flags follow the layer', () => {
    const m = net({ inChannels: 1, numClasses: 2, base: 2, depth: 2 });
    const names = m.manifest().map((s) => s.name);
    expect(names.slice(0, 6)).toEqual([
      'enc0/conv1/kernel', 'enc0/conv1/bias', 'enc0/norm1/gamma', 'enc0/norm1/beta', 'enc0/norm1/running_mean', 'enc0/norm1/running_var',
    ]);
    expect(names).toContain('dec0/up/kernel');
    expect(names.slice(-2)).toEqual(['head/kernel', 'head/bias']);
    expect(new Set(names).size).toBe(names.length);
    for (const s of m.manifest()) expect(s.trainable).toBe(!s.role.startsWith('norm-running'));
    expect(m.trainableVariables).toHaveLength(m.manifest().filter((s) => s.trainable).length);
    expect(m.parameterCount).toBe(totalParameters(m.manifest().filter((s) => s.trainable)));
  });

  it('getWeights / setWeights round trip transfers the model exactly', () => {
    const a = net({ inChannels: 1, numClasses: 2, base: 2, depth: 2, seed: 1 });
    const b = net({ inChannels: 1, numClasses: 2, base: 2, depth: 2, seed: 2 });
    const x = randomTensor([1, 4, 4, 4, 1], 40) as tf.Tensor5D;
    const ya = a.predict(x);
    const before = b.predict(x);
    expect(tf.max(tf.abs(tf.sub(ya, before))).dataSync()[0]).toBeGreaterThan(1e-4);
    b.setWeights(a.getWeights());
    const after = b.predict(x);
    expect(Array.from(after.dataSync())).toEqual(Array.from(ya.dataSync()));
    expect(b.getWeights().values).toEqual(a.getWeights().values);
    tf.dispose([x, ya, before, after]);
  });

  it('setWeights refuses mismatches and non-finite values, changing nothing', () => {
    const m = net({ inChannels: 1, numClasses: 2, base: 2, depth: 2 });
    const good = m.getWeights();
    const variant = (edit: (w: NamedWeights) => void): NamedWeights => {
      const w: NamedWeights = { manifest: good.manifest.map((s) => ({ ...s, shape: [...s.shape] })), values: good.values.map((v) => v.slice()) };
      edit(w);
      return w;
    };
    const cases: Array<[NamedWeights, RegExp]> = [
      [variant((w) => { w.manifest[3]!.name = 'enc0/norm1/delta'; }), /tensor 3 should be 'enc0\/norm1\/beta'/],
      [variant((w) => { w.manifest[0]!.shape = [3, 3, 3, 1, 3]; }), /should have shape \[3,3,3,1,2\]/],
      [variant((w) => { w.values[1] = new Float32Array(5); }), /needs 2 float32 values for shape \[2\], got 5/],
      [variant((w) => { w.values[0]![7] = Number.NaN; }), /'enc0\/conv1\/kernel' has a non-finite value/],
      [variant((w) => { w.manifest.pop(); w.values.pop(); }), /expected \d+ tensors/],
    ];
    // Make the stored weights distinguishable so "unchanged" is meaningful.
    const marked = variant((w) => w.values[0]!.fill(0.25));
    m.setWeights(marked);
    for (const [w, message] of cases) {
      expect(() => m.setWeights(w)).toThrow(PatchFedError);
      expect(() => m.setWeights(w)).toThrow(message);
    }
    expect(m.getWeights().values[0]!.every((v) => v === 0.25)).toBe(true);
  });
});

describe('U-Net training mode', () => {
  it('batch norm updates running statistics in training and uses them at inference', () => {
    const m = net({ inChannels: 1, numClasses: 2, base: 2, depth: 2, seed: 3 });
    const idx = (name: string) => m.manifest().findIndex((s) => s.name === name);
    const x = randomTensor([2, 4, 4, 4, 1], 50, 2, 3) as tf.Tensor5D;
    const initial = m.getWeights();
    // Inference does not touch them.
    tf.dispose(m.predict(x));
    expect(m.getWeights().values).toEqual(initial.values);
    // The first normalisation sees conv1(x) = kernel ∗ x + bias; its batch statistics drive the update.
    const conv = tf.tidy(() => {
      const w = m.getWeights();
      const k = tf.tensor(w.values[idx('enc0/conv1/kernel')]!, [3, 3, 3, 1, 2]) as tf.Tensor5D;
      const b = tf.tensor(w.values[idx('enc0/conv1/bias')]!);
      return tf.add(tf.conv3d(x, k, 1, 'same'), b);
    });
    const { mean, variance } = tf.moments(conv, [0, 1, 2, 3]);
    const n = 2 * 4 * 4 * 4;
    const y = m.forward(x, true);
    const after = m.getWeights();
    const rm = after.values[idx('enc0/norm1/running_mean')]!;
    const rv = after.values[idx('enc0/norm1/running_var')]!;
    for (let c = 0; c < 2; c++) {
      expect(rm[c]).toBeCloseTo(0.1 * mean.dataSync()[c]!, 4);
      expect(rv[c]).toBeCloseTo(0.9 + 0.1 * variance.dataSync()[c]! * (n / (n - 1)), 4);
    }
    // Inference output changes with the running statistics.
    const p1 = m.predict(x);
    const stats = m.getWeights();
    stats.values[idx('enc0/norm1/running_var')]!.fill(100);
    m.setWeights(stats);
    const p2 = m.predict(x);
    expect(tf.max(tf.abs(tf.sub(p1, p2))).dataSync()[0]).toBeGreaterThan(1e-3);
    tf.dispose([x, conv, mean, variance, y, p1, p2]);
  });

  it('five Adam steps through optimizer.minimize leave the tensor count unchanged', () => {
    const m = net({ inChannels: 1, numClasses: 2, base: 2, depth: 2, seed: 4 });
    const x = randomTensor([1, 4, 4, 4, 1], 60) as tf.Tensor5D;
    const target = tf.tidy(() => tf.oneHot(tf.cast(tf.greater(tf.squeeze(x, [4]), 0), 'int32'), 2)) as tf.Tensor5D;
    const optimizer = tf.train.adam(1e-2);
    const step = () => {
      const loss = optimizer.minimize(
        () => tf.neg(tf.mean(tf.sum(tf.mul(target, tf.logSoftmax(m.logits(x, true))), 4))) as tf.Scalar,
        true,
        m.trainableVariables,
      );
      const value = loss!.dataSync()[0]!;
      loss!.dispose();
      return value;
    };
    step(); // Adam creates its moment variables on the first step.
    const counts: number[] = [];
    const losses: number[] = [];
    for (let i = 0; i < 5; i++) {
      losses.push(step());
      counts.push(tf.memory().numTensors);
    }
    expect(new Set(counts).size).toBe(1);
    expect(losses.every(Number.isFinite)).toBe(true);
    optimizer.dispose();
    tf.dispose([x, target]);
  });

  it('gradients reach every trainable variable', () => {
    const m = net({ inChannels: 1, numClasses: 2, base: 2, depth: 3, seed: 5 });
    const x = randomTensor([2, 4, 4, 4, 1], 61) as tf.Tensor5D;
    const w = randomTensor([2, 4, 4, 4, 2], 62);
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(w, m.forward(x, true))) as tf.Scalar, m.trainableVariables);
    const trainable = m.manifest().filter((s) => s.trainable);
    expect(Object.keys(grads)).toHaveLength(trainable.length);
    // With batch statistics the conv bias before a norm has zero gradient; everything else must move.
    const norms = m.trainableVariables.map((v) => tf.tidy(() => tf.norm(grads[v.name]!).dataSync()[0]!));
    trainable.forEach((s, i) => {
      if (s.role === 'conv-bias' && !s.name.startsWith('head') && !s.name.includes('/up/')) expect(norms[i]).toBeLessThan(1e-4);
      else expect(norms[i], s.name).toBeGreaterThan(0);
    });
    tf.dispose([x, w, value, ...Object.values(grads)]);
  });
});
