import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// tfjs-core's Node build registers no gradients; this module (site-agent/backend) does.
import '../site-agent/backend/gradients/index.ts';
import { beforeAll, describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import { createRng } from '../site-agent/pipeline/sampler.ts';
import { labelsToOneHot } from '../site-agent/pipeline/tensors.ts';
import { softDiceLoss, softDicePerChannel, type SoftDiceOptions } from '../site-agent/train/loss.ts';
import { thesisIncludeBackground } from '../shared/model/index.ts';

beforeAll(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});

const SHAPE: [number, number, number, number, number] = [2, 2, 3, 2, 3]; // N, X, Y, Z, K
const N = SHAPE[0];
const S = SHAPE[1] * SHAPE[2] * SHAPE[3];
const K = SHAPE[4];

/** Float64 reference of the documented formula, on flat NDHWC arrays. */
function referenceLoss(p: ArrayLike<number>, q: ArrayLike<number>, opts: SoftDiceOptions): number {
  const eps = opts.epsilon ?? 1e-5;
  const first = opts.includeBackground ? 0 : 1;
  const groups = opts.perSample ? N : 1;
  const losses: number[] = [];
  const present: boolean[] = [];
  for (let g = 0; g < groups; g++) {
    for (let k = first; k < K; k++) {
      let inter = 0, ps = 0, qs = 0;
      for (let n = 0; n < N; n++) {
        if (opts.perSample && n !== g) continue;
        for (let v = 0; v < S; v++) {
          const i = (n * S + v) * K + k;
          inter += p[i]! * q[i]!;
          ps += p[i]!;
          qs += q[i]!;
        }
      }
      losses.push(1 - (2 * inter + eps) / (ps + qs + eps));
      present.push(qs > 0);
    }
  }
  if (!opts.skipAbsentChannels) return losses.reduce((a, b) => a + b, 0) / losses.length;
  const kept = losses.filter((_, i) => present[i]);
  return kept.length === 0 ? 0 : kept.reduce((a, b) => a + b, 0) / kept.length;
}

/** Random softmax probabilities and a label map with class 2 absent from sample 1. */
function fixture(seed: number): { p: Float32Array; labels: Uint8Array } {
  const rng = createRng(seed);
  const p = new Float32Array(N * S * K);
  for (let v = 0; v < N * S; v++) {
    const e = [rng(), rng(), rng()].map((x) => Math.exp(2 * x));
    const s = e[0]! + e[1]! + e[2]!;
    for (let k = 0; k < K; k++) p[v * K + k] = e[k]! / s;
  }
  const labels = Uint8Array.from({ length: N * S }, (_, v) => (v < S ? Math.floor(rng() * 3) : Math.floor(rng() * 2)));
  return { p, labels };
}

const VARIANTS: SoftDiceOptions[] = [
  { includeBackground: true },
  { includeBackground: false },
  { includeBackground: false, perSample: true },
  { includeBackground: true, perSample: true, skipAbsentChannels: true },
  { includeBackground: false, epsilon: 1 },
];

describe('softDiceLoss', () => {
  it.each(VARIANTS)('matches the formula: %j', (opts) => {
    const { p, labels } = fixture(1);
    const q = labelsToOneHot(labels, K);
    const loss = tf.tidy(() => softDiceLoss(tf.tensor5d(p, SHAPE), tf.tensor5d(q, SHAPE), opts).dataSync()[0]);
    expect(loss).toBeCloseTo(referenceLoss(p, q, opts), 5);
  });

  it.each(VARIANTS)('has the gradient that finite differences give: %j', (opts) => {
    const { p, labels } = fixture(2);
    const q = labelsToOneHot(labels, K);
    const grad = tf.tidy(() => {
      const qt = tf.tensor5d(q, SHAPE);
      return tf.grad((pt: tf.Tensor) => softDiceLoss(pt, qt, opts))(tf.tensor5d(p, SHAPE)).dataSync();
    });
    const x = Float64Array.from(p);
    const h = 1e-6;
    let maxAbs = 0;
    let maxErr = 0;
    for (let i = 0; i < x.length; i++) {
      const orig = x[i]!;
      x[i] = orig + h;
      const up = referenceLoss(x, q, opts);
      x[i] = orig - h;
      const down = referenceLoss(x, q, opts);
      x[i] = orig;
      const fd = (up - down) / (2 * h);
      maxAbs = Math.max(maxAbs, Math.abs(fd));
      maxErr = Math.max(maxErr, Math.abs(fd - grad[i]!));
    }
    expect(maxAbs).toBeGreaterThan(1e-3);
    expect(maxErr).toBeLessThan(1e-4 * maxAbs + 1e-7);
  });

  it('is 0 for a perfect prediction, also with empty foreground classes', () => {
    const labels = Uint8Array.from({ length: N * S }, (_, v) => (v % 5 === 0 ? 1 : 0)); // class 2 absent
    const q = labelsToOneHot(labels, K);
    for (const opts of VARIANTS) {
      const loss = tf.tidy(() => softDiceLoss(tf.tensor5d(q, SHAPE), tf.tensor5d(q, SHAPE), opts).dataSync()[0]!);
      expect(Math.abs(loss)).toBeLessThan(1e-6);
    }
  });

  it('on an all-background patch without background: finite loss and a gradient pushing false positives down', () => {
    const eps = 1e-5;
    const rng = createRng(4);
    const p = new Float32Array(N * S * K);
    const fpSum = [0, 0, 0];
    for (let v = 0; v < N * S; v++) {
      const a = 0.2 * rng();
      const b = 0.2 * rng();
      p[v * K] = 1 - a - b;
      p[v * K + 1] = a;
      p[v * K + 2] = b;
      fpSum[1]! += Math.fround(a);
      fpSum[2]! += Math.fround(b);
    }
    const q = labelsToOneHot(new Uint8Array(N * S), K);
    const opts = { includeBackground: false, epsilon: eps };
    const before = tf.memory().numTensors;
    const [loss, grad] = tf.tidy(() => {
      const qt = tf.tensor5d(q, SHAPE);
      const f = (pt: tf.Tensor) => softDiceLoss(pt, qt, opts);
      const pt = tf.tensor5d(p, SHAPE);
      return [f(pt).dataSync()[0], tf.grad(f)(pt).dataSync()];
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(Number.isFinite(loss)).toBe(true);
    expect(loss).toBeCloseTo(referenceLoss(p, q, opts), 6);
    expect(loss).toBeLessThan(1);
    for (let v = 0; v < N * S; v++) {
      expect(grad[v * K]).toBe(0); // background channel is not in the loss
      for (const k of [1, 2]) {
        // ∂/∂p of mean_k Σp_k/(Σp_k + ε) = ε/(Σp_k + ε)² / (K − 1): positive, so descent lowers false positives
        const want = eps / (fpSum[k]! + eps) ** 2 / (K - 1);
        expect(grad[v * K + k]).toBeGreaterThan(0);
        expect(Math.abs(grad[v * K + k]! - want) / want).toBeLessThan(1e-3);
      }
    }
  });

  it('skipAbsentChannels drops channels missing from the target; an all-background patch then contributes nothing', () => {
    const { p, labels } = fixture(5);
    const q = labelsToOneHot(labels.map((l) => (l === 2 ? 1 : l)), K); // no class 2 anywhere
    const all = tf.tidy(() => softDicePerChannel(tf.tensor5d(p, SHAPE), tf.tensor5d(q, SHAPE), { includeBackground: false }).arraySync() as number[]);
    const skipped = tf.tidy(() => softDiceLoss(tf.tensor5d(p, SHAPE), tf.tensor5d(q, SHAPE), { includeBackground: false, skipAbsentChannels: true }).dataSync()[0]);
    expect(all).toHaveLength(2);
    expect(skipped).toBeCloseTo(all[0]!, 6);

    const bg = labelsToOneHot(new Uint8Array(N * S), K);
    const opts = { includeBackground: false, skipAbsentChannels: true };
    const [loss, grad] = tf.tidy(() => {
      const qt = tf.tensor5d(bg, SHAPE);
      const f = (pt: tf.Tensor) => softDiceLoss(pt, qt, opts);
      const pt = tf.tensor5d(p, SHAPE);
      return [f(pt).dataSync()[0], tf.grad(f)(pt).dataSync()];
    });
    expect(loss).toBe(0);
    expect(grad.every((g) => g === 0)).toBe(true);
  });

  it('leaves no tensors behind', () => {
    const { p, labels } = fixture(6);
    const pt = tf.tensor5d(p, SHAPE);
    const qt = tf.tensor5d(labelsToOneHot(labels, K), SHAPE);
    const pv = tf.variable(pt);
    const before = tf.memory().numTensors;
    for (const opts of VARIANTS) {
      softDiceLoss(pt, qt, opts).dispose();
      softDicePerChannel(pt, qt, opts).dispose();
      const { value, grads } = tf.variableGrads(() => softDiceLoss(pv, qt, opts), [pv]);
      expect(grads[pv.name]!.shape).toEqual(SHAPE);
      value.dispose();
      Object.values(grads).forEach((g) => g.dispose());
    }
    const g = tf.grad((x: tf.Tensor) => softDiceLoss(x, qt, { includeBackground: true }))(pt);
    g.dispose();
    expect(tf.memory().numTensors).toBe(before);
    pv.dispose();
    pt.dispose();
    qt.dispose();
  });

  it('checks shapes and options', () => {
    tf.tidy(() => {
      const a = tf.zeros([1, 2, 2, 2, 3]);
      expect(() => softDiceLoss(a, tf.zeros([1, 2, 2, 2, 2]), { includeBackground: true })).toThrow(/differ in shape/);
      expect(() => softDiceLoss(tf.zeros([2, 2, 2, 3]), tf.zeros([2, 2, 2, 3]), { includeBackground: true })).toThrow(PatchFedError);
      expect(() => softDiceLoss(tf.zeros([1, 2, 2, 2, 1]), tf.zeros([1, 2, 2, 2, 1]), { includeBackground: false })).toThrow(/at least 2 channels/);
      expect(() => softDiceLoss(a, a, { includeBackground: true, epsilon: 0 })).toThrow(/epsilon/);
    });
  });

  it('follows the thesis on the background channel per stage', () => {
    expect(thesisIncludeBackground('full')).toBe(false);
    expect(thesisIncludeBackground('cascade-stage1')).toBe(false);
    expect(thesisIncludeBackground('patch')).toBe(true);
    expect(thesisIncludeBackground('cascade-stage2')).toBe(true);
  });
});
