import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import type { Shape3 } from '../site-agent/pipeline/case.ts';
import { extractPatch, gridPatches, reconstruct } from '../site-agent/pipeline/patches.ts';
import {
  gridInference,
  importanceMap,
  slidingWindowInference,
  slidingWindowOrigins,
  tensorPredictor,
  windowStarts,
  type PatchBatch,
  type PatchPredictor,
} from '../site-agent/pipeline/sliding-window.ts';
import { randomCase } from './pipeline-fixtures.ts';

beforeAll(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});

/** Probability-like values that depend only on the global voxel position (any value works). */
function positionValue(x: number, y: number, z: number, k: number): number {
  return 0.01 * (k + 1) * (x + 2 * y + 3 * z) + 0.1 * k;
}

/** Predictor that knows where each window sits and outputs positionValue, K channels. */
function positionPredictor(K: number, calls: { n: number }): PatchPredictor {
  return (b: PatchBatch) => {
    calls.n++;
    const [n, px, py, pz] = b.shape;
    const out = new Float32Array(n * px * py * pz * K);
    let i = 0;
    for (let s = 0; s < n; s++) {
      const [ox, oy, oz] = b.origins[s]!;
      for (let x = 0; x < px; x++) for (let y = 0; y < py; y++) for (let z = 0; z < pz; z++) for (let k = 0; k < K; k++) out[i++] = positionValue(ox + x, oy + y, oz + z, k);
    }
    return out;
  };
}

/** Predictor that only sees patch contents: softmax-free but context dependent (uses the patch mean). */
function contentPredictor(K: number): (image: Float32Array, C: number) => Float32Array {
  return (image, C) => {
    const v = image.length / C;
    let mean = 0;
    for (const a of image) mean += a;
    mean /= image.length;
    const out = new Float32Array(v * K);
    for (let i = 0; i < v; i++) for (let k = 0; k < K; k++) out[i * K + k] = image[i * C]! * (k + 1) + mean;
    return out;
  };
}

describe('window placement', () => {
  it('steps by round(p·(1−overlap)) with the last window flush with the end', () => {
    expect(windowStarts(40, 16, 0.5)).toEqual([0, 8, 16, 24]);
    expect(windowStarts(41, 16, 0.5)).toEqual([0, 8, 16, 24, 25]);
    expect(windowStarts(20, 16, 0)).toEqual([0, 4]);
    expect(windowStarts(32, 16, 0)).toEqual([0, 16]);
    expect(windowStarts(10, 16, 0.5)).toEqual([0]);
    expect(windowStarts(10, 3, 0.75)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]); // round(0.75) = 1
    expect(slidingWindowOrigins([6, 4, 4], [4, 4, 4], 0.5)).toEqual([
      [0, 0, 0],
      [2, 0, 0],
    ]);
    expect(() => slidingWindowOrigins([6, 4, 4], [4, 4, 4], 1)).toThrow(PatchFedError);
  });
});

describe('importanceMap', () => {
  it('is a normalised Gaussian with sigma = patch/8, clamped at the minimum weight', () => {
    const patch: Shape3 = [5, 8, 3];
    const w = importanceMap(patch, 'gaussian');
    const g = (i: number, p: number) => Math.exp(-((i - (p - 1) / 2) ** 2) / (2 * (p / 8) ** 2));
    expect(w[(2 * 8 + 3) * 3 + 1]).toBeCloseTo(g(3, 8), 6); // centre of odd axes: 1
    expect(w[(2 * 8 + 3) * 3 + 1]).toBeLessThan(1); // even axis has no voxel at the centre
    expect(w[(1 * 8 + 4) * 3 + 0]).toBeCloseTo(Math.max(1e-3, g(1, 5) * g(4, 8) * g(0, 3)), 6);
    expect(Math.min(...w)).toBe(Math.fround(1e-3));
    // symmetric along every axis
    expect(w[(0 * 8 + 0) * 3 + 0]).toBe(w[(4 * 8 + 7) * 3 + 2]);
    expect(importanceMap(patch, 'gaussian', { minWeight: 0.2 }).every((v) => v >= Math.fround(0.2))).toBe(true);
    expect(importanceMap([2, 2, 2], 'constant').every((v) => v === 1)).toBe(true);
  });
});

describe('slidingWindowInference', () => {
  it.each([
    [[9, 7, 11], [4, 4, 4], 0.5, 'gaussian', 3],
    [[3, 7, 11], [4, 4, 4], 0.25, 'gaussian', 1], // x shorter than the patch
    [[6, 6, 6], [4, 3, 5], 0.6, 'constant', 2],
  ] as const)('reproduces a position-only prediction exactly: %j patch %j overlap %s %s', async (shape, patch, overlap, weighting, batchSize) => {
    const K = 3;
    const c = randomCase(shape, 2, K, 7);
    const calls = { n: 0 };
    const r = await slidingWindowInference(c, positionPredictor(K, calls), { patch, numClasses: K, overlap, weighting, batchSize });
    const [X, Y, Z] = shape;
    let i = 0;
    for (let x = 0; x < X; x++) for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) for (let k = 0; k < K; k++) {
      const want = positionValue(x, y, z, k);
      expect(Math.abs(r.probabilities[i++]! - want)).toBeLessThanOrEqual(2e-6 * Math.max(1, Math.abs(want)));
    }
    const windows = slidingWindowOrigins(shape, patch, overlap).length;
    expect(windows).toBeGreaterThan(1);
    expect(r.method.windows).toBe(windows);
    expect(calls.n).toBe(Math.ceil(windows / batchSize));
    expect(r.method.predictorCalls).toBe(calls.n);
    expect(r.method.weighting).toBe(weighting);
    expect(r.method.description).toMatch(weighting === 'gaussian' ? /Gaussian weighting/ : /constant weighting/);
  });

  it('with overlap 0 and constant weights equals the non-overlapping reconstruction', async () => {
    const shape: Shape3 = [8, 4, 12];
    const patch: Shape3 = [4, 4, 4];
    const K = 2;
    const C = 2;
    const c = randomCase(shape, C, K, 3);
    const model = contentPredictor(K);
    const grid = gridPatches(shape, patch).map((origin) => ({ origin, data: model(extractPatch(c, origin, patch).image, C) }));
    const expected = reconstruct(grid, shape, patch, K);
    const r = await slidingWindowInference(c, (b) => model(b.data, C), { patch, numClasses: K, overlap: 0, weighting: 'constant' });
    expect(r.method.windows).toBe(grid.length);
    expect(r.method.placement).toBe('sliding-window');
    expect(r.probabilities).toEqual(expected);
  });

  it('gridInference streams the thesis patch-wise prediction: extract → model → reconstruct', async () => {
    const shape: Shape3 = [5, 7, 9]; // not multiples of the patch: last patches padded
    const patch: Shape3 = [4, 4, 4];
    const K = 3;
    const C = 2;
    const c = randomCase(shape, C, K, 12);
    const model = contentPredictor(K);
    const grid = gridPatches(shape, patch).map((origin) => ({ origin, data: model(extractPatch(c, origin, patch).image, C) }));
    const expected = reconstruct(grid, shape, patch, K);
    const batched = (b: PatchBatch) => {
      const v = 4 * 4 * 4 * C;
      const outs = b.origins.map((_, i) => model(b.data.subarray(i * v, (i + 1) * v), C));
      const all = new Float32Array(outs.length * outs[0]!.length);
      outs.forEach((o, i) => all.set(o, i * o.length));
      return all;
    };
    const r = await gridInference(c, batched, { patch, numClasses: K, batchSize: 4 });
    expect(r.probabilities).toEqual(expected);
    expect(r.method.placement).toBe('grid');
    expect(r.method.windows).toBe(12);
    expect(r.method.predictorCalls).toBe(3);
  });

  it('gives every voxel a positive weight sum, even for tiny volumes and strong overlap', async () => {
    const c = randomCase([2, 9, 5], 1, 2, 1);
    const ones: PatchPredictor = (b) => new Float32Array(b.data.length * 2).fill(0.5);
    // sigma = 0.04 voxels: the unclamped Gaussian is exactly 0 off-centre, and voxel y = 0 is covered
    // only by the edge of the first window — without the clamp its weight sum would be 0 (0/0 = NaN).
    expect(importanceMap([4, 4, 4], 'gaussian', { sigmaScale: 0.01 })[0]).toBe(Math.fround(1e-3));
    const r = await slidingWindowInference(c, ones, { patch: [4, 4, 4], numClasses: 2, overlap: 0.9, sigmaScale: 0.01 });
    expect(r.probabilities.every((v) => Math.abs(v - 0.5) < 1e-6)).toBe(true);
    expect(() => importanceMap([4, 4, 4], 'gaussian', { minWeight: 1e-60 })).toThrow(/float32/);
  });

  it('runs a tensor model (async tensor path) without leaking tensors', async () => {
    const c = randomCase([5, 6, 7], 2, 2, 11);
    const K = 2;
    // 1x1x1 "model": softmax over [x0, x1] per voxel.
    const predictor = tensorPredictor((x) => tf.softmax(x));
    const before = tf.memory().numTensors;
    const r = await slidingWindowInference(c, predictor, { patch: [4, 4, 4], numClasses: K, overlap: 0.5, batchSize: 2 });
    expect(tf.memory().numTensors).toBe(before);
    const v = 5 * 6 * 7;
    for (let i = 0; i < v; i++) {
      const a = c.image[i]!;
      const b = c.image[v + i]!;
      const p1 = 1 / (1 + Math.exp(a - b));
      expect(r.probabilities[i * 2 + 1]).toBeCloseTo(p1, 5);
    }
  });

  it('names a predictor that returns the wrong number of values', async () => {
    const c = randomCase([4, 4, 4], 1, 2, 1);
    await expect(slidingWindowInference(c, () => new Float32Array(3), { patch: [4, 4, 4], numClasses: 2 })).rejects.toThrow(/predictor returned 3 values/);
    const before = tf.memory().numTensors;
    await expect(slidingWindowInference(c, () => tf.zeros([1, 4, 4, 4, 3]), { patch: [4, 4, 4], numClasses: 2 })).rejects.toThrow(/expected 128/);
    expect(tf.memory().numTensors).toBe(before);
  });
});
