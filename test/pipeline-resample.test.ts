import { describe, expect, it } from 'vitest';
import { PatchFedError } from '../shared/errors.ts';
import type { Shape3 } from '../site-agent/pipeline/case.ts';
import {
  downsampleCase,
  downsampledShape,
  linearAxisTable,
  nearestAxisTable,
  resampleImage,
  resampleLabels,
  resampleProbabilities,
} from '../site-agent/pipeline/resample.ts';
import { createRng } from '../site-agent/pipeline/sampler.ts';
import { randomCase, toChannelsLast } from './pipeline-fixtures.ts';

/** Straightforward 8-neighbour trilinear sampling of one channel-first channel, align_corners=false. */
function naiveTrilinear(img: Float32Array, c: number, shape: Shape3, target: Shape3, tx: number, ty: number, tz: number): number {
  const coord = (j: number, a: number) => {
    const s = Math.min(Math.max((j + 0.5) * (shape[a]! / target[a]!) - 0.5, 0), shape[a]! - 1);
    const i0 = Math.floor(s);
    return [i0, Math.min(i0 + 1, shape[a]! - 1), s - i0] as const;
  };
  const [x0, x1, wx] = coord(tx, 0);
  const [y0, y1, wy] = coord(ty, 1);
  const [z0, z1, wz] = coord(tz, 2);
  const at = (x: number, y: number, z: number) => img[((c * shape[0] + x) * shape[1] + y) * shape[2] + z]!;
  let v = 0;
  for (const [x, fx] of [[x0, 1 - wx], [x1, wx]] as const) for (const [y, fy] of [[y0, 1 - wy], [y1, wy]] as const) for (const [z, fz] of [[z0, 1 - wz], [z1, wz]] as const) v += fx * fy * fz * at(x, y, z);
  return v;
}

describe('downsampledShape', () => {
  it('rounds dim·factor, keeps at least 1, and rounds up to the divisor', () => {
    expect(downsampledShape([240, 240, 155], 0.3)).toEqual([72, 72, 47]);
    expect(downsampledShape([240, 240, 155], 0.3, { divisor: 16 })).toEqual([80, 80, 48]);
    expect(downsampledShape([512, 512, 74], 0.2)).toEqual([102, 102, 15]);
    expect(downsampledShape([512, 512, 74], 0.2, { divisor: 8 })).toEqual([104, 104, 16]);
    expect(downsampledShape([3, 2, 1], 0.1)).toEqual([1, 1, 1]);
    expect(() => downsampledShape([3, 2, 1], 0)).toThrow(PatchFedError);
    expect(() => downsampledShape([3, 2, 1], 0.5, { divisor: 0 })).toThrow(/divisor/);
  });
});

describe('trilinear (align_corners=false)', () => {
  it('matches PyTorch on 1-D examples', () => {
    const up = resampleImage(Float32Array.from([0, 1, 2, 3]), 1, [1, 1, 4], [1, 1, 8]);
    expect(Array.from(up)).toEqual([0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3]);
    const down = resampleImage(Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), 1, [8, 1, 1], [4, 1, 1]);
    expect(Array.from(down)).toEqual([0.5, 2.5, 4.5, 6.5]);
    const t = linearAxisTable(3, 5);
    expect(Array.from(t.i0)).toEqual([0, 0, 1, 1, 2]);
    expect(t.w1[1]).toBeCloseTo(0.4, 12);
  });

  it('keeps constant volumes exactly constant, per channel', () => {
    const shape: Shape3 = [7, 5, 6];
    const v = 7 * 5 * 6;
    const img = new Float32Array(2 * v);
    img.fill(0.37, 0, v);
    img.fill(-12.3, v);
    for (const target of [[3, 2, 2], [13, 9, 11], [7, 1, 20]] as Shape3[]) {
      const out = resampleImage(img, 2, shape, target);
      const tv = target[0] * target[1] * target[2];
      expect(out.length).toBe(2 * tv);
      expect(out.subarray(0, tv).every((x) => x === Math.fround(0.37))).toBe(true);
      expect(out.subarray(tv).every((x) => x === Math.fround(-12.3))).toBe(true);
    }
  });

  it('reproduces linear ramps (clamped at the borders) on every axis', () => {
    const shape: Shape3 = [10, 6, 9];
    const [X, Y, Z] = shape;
    const img = new Float32Array(X * Y * Z);
    for (let x = 0; x < X; x++) for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) img[(x * Y + y) * Z + z] = 2 * x - 3 * y + 0.5 * z + 1;
    for (const target of [[4, 3, 4], [25, 11, 20]] as Shape3[]) {
      const out = resampleImage(img, 1, shape, target);
      const src = (j: number, a: number) => Math.min(Math.max((j + 0.5) * (shape[a]! / target[a]!) - 0.5, 0), shape[a]! - 1);
      let i = 0;
      let maxErr = 0;
      for (let x = 0; x < target[0]; x++) for (let y = 0; y < target[1]; y++) for (let z = 0; z < target[2]; z++) {
        maxErr = Math.max(maxErr, Math.abs(out[i++]! - (2 * src(x, 0) - 3 * src(y, 1) + 0.5 * src(z, 2) + 1)));
      }
      expect(maxErr).toBeLessThan(1e-5);
    }
  });

  it('equals direct 8-neighbour trilinear interpolation, channels-first and channels-last alike', () => {
    const shape: Shape3 = [5, 7, 4];
    const c = randomCase(shape, 2, 2, 5);
    const target: Shape3 = [8, 3, 6];
    const out = resampleImage(c.image, 2, shape, target);
    const last = resampleProbabilities(toChannelsLast(c.image, 2), 2, shape, target);
    expect(last).toEqual(toChannelsLast(out, 2));
    let i = 0;
    for (let ch = 0; ch < 2; ch++) {
      for (let x = 0; x < 8; x++) for (let y = 0; y < 3; y++) for (let z = 0; z < 6; z++) expect(out[i++]).toBeCloseTo(naiveTrilinear(c.image, ch, shape, target, x, y, z), 5);
    }
  });

  it('keeps probabilities summing to one', () => {
    const rng = createRng(9);
    const shape: Shape3 = [3, 4, 5];
    const K = 3;
    const p = new Float32Array(60 * K);
    for (let v = 0; v < 60; v++) {
      const a = [rng(), rng(), rng()];
      const s = a[0]! + a[1]! + a[2]!;
      for (let k = 0; k < K; k++) p[v * K + k] = a[k]! / s;
    }
    const up = resampleProbabilities(p, K, shape, [7, 9, 11]);
    for (let v = 0; v < 7 * 9 * 11; v++) expect(up[v * K]! + up[v * K + 1]! + up[v * K + 2]!).toBeCloseTo(1, 5);
  });

  it('returns a copy when the shape does not change and checks sizes', () => {
    const img = Float32Array.from([1, 2, 3, 4]);
    const out = resampleImage(img, 1, [1, 2, 2], [1, 2, 2]);
    expect(out).toEqual(img);
    expect(out).not.toBe(img);
    expect(() => resampleImage(img, 2, [1, 2, 2], [1, 1, 1])).toThrow(/do not match shape/);
  });
});

describe('nearest (labels)', () => {
  it('maps voxel centres: floor((j + 0.5)·in/out)', () => {
    expect(Array.from(nearestAxisTable(4, 8))).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
    expect(Array.from(nearestAxisTable(8, 4))).toEqual([1, 3, 5, 7]);
    expect(Array.from(nearestAxisTable(5, 2))).toEqual([1, 3]);
    expect(Array.from(nearestAxisTable(3, 7))).toEqual([0, 0, 1, 1, 1, 2, 2]);
  });

  it('keeps the label set (no new values) and undoes integer upsampling', () => {
    const shape: Shape3 = [4, 3, 5];
    const labels = Uint8Array.from({ length: 60 }, (_, i) => [0, 2, 5][i % 3]!);
    const down = resampleLabels(labels, shape, [3, 2, 2]);
    const up = resampleLabels(labels, shape, [9, 7, 11]);
    for (const out of [down, up]) expect(new Set(out).size).toBeLessThanOrEqual(3);
    for (const out of [down, up]) for (const v of out) expect([0, 2, 5]).toContain(v);
    expect(resampleLabels(resampleLabels(labels, shape, [8, 6, 10]), [8, 6, 10], shape)).toEqual(labels);
  });

  it('picks the nearest voxel in 3-D', () => {
    const shape: Shape3 = [2, 2, 2];
    const labels = Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
    const up = resampleLabels(labels, shape, [4, 4, 4]);
    for (let x = 0; x < 4; x++) for (let y = 0; y < 4; y++) for (let z = 0; z < 4; z++) {
      expect(up[(x * 4 + y) * 4 + z]).toBe(labels[((x >> 1) * 2 + (y >> 1)) * 2 + (z >> 1)]);
    }
  });
});

describe('downsampleCase', () => {
  it('resamples image and label of a case to the stage-1 shape', () => {
    const c = randomCase([10, 12, 7], 2, 3, 2);
    const d = downsampleCase(c, 0.3, { divisor: 2 });
    expect(d.shape).toEqual([4, 4, 2]);
    expect(d.channels).toBe(2);
    expect(d.image.length).toBe(2 * 32);
    expect(d.label!.length).toBe(32);
    expect(d.id).toBe(c.id);
  });
});
