/**
 * The segmentation metrics (site-agent/metrics: exact EDT, surface voxels, Dice / HD95 / NSD)
 * against independent answers: brute-force pairwise distances, analytically known distances
 * (shifted plates and cubes, spheres in mm on anisotropic grids), MONAI's empty-class
 * conventions, and values computed once with scipy by test/reference/surface_metrics_reference.py.
 */
import { describe, expect, it } from 'vitest';
import { squaredDistanceToFeatures, type Grid3 } from '../site-agent/metrics/distance-transform.ts';
import { evaluateSegmentation } from '../site-agent/metrics/segmentation-metrics.ts';
import { directedSurfaceDistances, percentile, surfaceVoxels } from '../site-agent/metrics/surface.ts';

/** Deterministic LCG, so failures reproduce. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296;
}

function coords(p: number, shape: Grid3): [number, number, number] {
  return [Math.floor(p / (shape[1] * shape[2])), Math.floor(p / shape[2]) % shape[1], p % shape[2]];
}

function fill(shape: Grid3, inside: (i: number, j: number, k: number) => boolean): Uint8Array {
  const out = new Uint8Array(shape[0] * shape[1] * shape[2]);
  for (let p = 0; p < out.length; p++) if (inside(...coords(p, shape))) out[p] = 1;
  return out;
}

// ---- an independent, deliberately naive implementation for the brute-force comparisons ----

/** Surface voxels by checking the six neighbours through coordinates (no strides). */
function naiveSurface(mask: Uint8Array, shape: Grid3): number[] {
  const at = (i: number, j: number, k: number) => (i < 0 || j < 0 || k < 0 || i >= shape[0] || j >= shape[1] || k >= shape[2] ? 0 : mask[(i * shape[1] + j) * shape[2] + k]!);
  const out: number[] = [];
  for (let p = 0; p < mask.length; p++) {
    if (!mask[p]) continue;
    const [i, j, k] = coords(p, shape);
    if (!at(i - 1, j, k) || !at(i + 1, j, k) || !at(i, j - 1, k) || !at(i, j + 1, k) || !at(i, j, k - 1) || !at(i, j, k + 1)) out.push(p);
  }
  return out;
}

function naiveDirected(from: number[], to: number[], shape: Grid3, sp: Grid3): number[] {
  return from.map((p) => {
    const a = coords(p, shape);
    let best = Infinity;
    for (const q of to) {
      const b = coords(q, shape);
      best = Math.min(best, Math.hypot((a[0] - b[0]) * sp[0], (a[1] - b[1]) * sp[1], (a[2] - b[2]) * sp[2]));
    }
    return best;
  });
}

/** numpy.percentile's 'linear' method, written out from its documentation. */
function naivePercentile(values: number[], q: number): number {
  const s = [...values].sort((x, y) => x - y);
  const h = (q / 100) * (s.length - 1);
  const lo = Math.floor(h);
  return lo + 1 < s.length ? s[lo]! + (h - lo) * (s[lo + 1]! - s[lo]!) : s[lo]!;
}

describe('exact Euclidean distance transform', () => {
  it('equals brute-force nearest-feature distances on random volumes with anisotropic spacing', () => {
    const rnd = lcg(11);
    for (let t = 0; t < 25; t++) {
      const shape: Grid3 = [2 + Math.floor(rnd() * 9), 2 + Math.floor(rnd() * 9), 2 + Math.floor(rnd() * 9)];
      const spacing: Grid3 = [0.2 + rnd() * 3, 0.2 + rnd() * 3, 0.2 + rnd() * 3];
      const features = fill(shape, () => rnd() < 0.06);
      const d = squaredDistanceToFeatures(features, shape, spacing);
      const fs = [...features.keys()].filter((p) => features[p]);
      for (let p = 0; p < features.length; p++) {
        const expected = naiveDirected([p], fs, shape, spacing)[0]!;
        if (expected === Infinity) expect(d[p]).toBe(Infinity);
        else expect(Math.sqrt(d[p]!)).toBeCloseTo(expected, 9);
      }
    }
  });

  it('is +Infinity everywhere without a feature and refuses a shape that does not match the data', () => {
    expect([...squaredDistanceToFeatures(new Uint8Array(24), [2, 3, 4], [1, 1, 1])].every((x) => x === Infinity)).toBe(true);
    expect(() => squaredDistanceToFeatures(new Uint8Array(10), [2, 3, 4], [1, 1, 1])).toThrow(/shape 2x3x4 has 24 voxels but the volume has 10/);
    expect(() => squaredDistanceToFeatures(new Uint8Array(24), [2, 3, 4], [1, 0, 1])).toThrow(/spacing must be three positive numbers/);
  });
});

describe('surface voxels and surface distances', () => {
  it('surface = mask voxels with a 6-neighbour outside the mask; the volume border counts as outside', () => {
    const shape: Grid3 = [5, 5, 5];
    const cube = fill(shape, (i, j, k) => i >= 1 && i <= 3 && j >= 1 && j <= 3 && k >= 1 && k <= 3);
    expect([...surfaceVoxels(cube, shape)].reduce((a, b) => a + b, 0)).toBe(27 - 1); // only the centre is interior
    const full = new Uint8Array(125).fill(1);
    expect([...surfaceVoxels(full, shape)].reduce((a, b) => a + b, 0)).toBe(125 - 27); // the 3³ core is interior
    // A diagonal neighbour outside does not make a voxel surface (6-, not 26-connectivity).
    const notch = fill(shape, (i, j, k) => !(i === 0 && j === 0 && k === 0));
    const s = surfaceVoxels(notch, shape);
    expect(s[(1 * 5 + 1) * 5 + 1]).toBe(0);
  });

  it('matches brute force (surfaces and both directed distance lists) on random masks', () => {
    const rnd = lcg(5);
    for (let t = 0; t < 20; t++) {
      const shape: Grid3 = [3 + Math.floor(rnd() * 8), 3 + Math.floor(rnd() * 8), 3 + Math.floor(rnd() * 8)];
      const spacing: Grid3 = [0.5 + rnd() * 2, 0.5 + rnd() * 2, 0.5 + rnd() * 2];
      const a = fill(shape, () => rnd() < 0.4);
      const b = fill(shape, () => rnd() < 0.3);
      const sa = surfaceVoxels(a, shape);
      const sb = surfaceVoxels(b, shape);
      const na = naiveSurface(a, shape);
      const nb = naiveSurface(b, shape);
      expect([...sa.keys()].filter((p) => sa[p])).toEqual(na);
      const got = [...directedSurfaceDistances(sa, sb, shape, spacing)];
      const want = naiveDirected(na, nb, shape, spacing);
      expect(got).toHaveLength(want.length);
      got.forEach((g, i) => expect(g).toBeCloseTo(want[i]!, 9));
    }
  });

  it('percentile interpolates linearly between ranks like numpy / torch', () => {
    expect(percentile(Float64Array.from([1, 2, 3, 4, 10]), 95)).toBeCloseTo(8.8, 12); // np.percentile([1,2,3,4,10], 95) = 8.8
    expect(percentile(Float64Array.from([5]), 95)).toBe(5);
    expect(percentile(Float64Array.from([3, 1, 2]), 50)).toBe(2);
    expect(percentile(Float64Array.from([Infinity, Infinity]), 95)).toBe(Infinity);
    expect(percentile(new Float64Array(0), 95)).toBeNaN();
    const rnd = lcg(3);
    const v = Array.from({ length: 101 }, () => rnd() * 10);
    expect(percentile(Float64Array.from(v), 95)).toBeCloseTo(naivePercentile(v, 95), 12);
  });
});

describe('Dice, HD95 and NSD', () => {
  it('agrees with the independent implementation on random two-class label maps', () => {
    const rnd = lcg(17);
    for (let t = 0; t < 10; t++) {
      const shape: Grid3 = [4 + Math.floor(rnd() * 8), 4 + Math.floor(rnd() * 8), 4 + Math.floor(rnd() * 8)];
      const spacing: Grid3 = [0.4 + rnd() * 2.5, 0.4 + rnd() * 2.5, 0.4 + rnd() * 2.5];
      const n = shape[0] * shape[1] * shape[2];
      const pred = Uint8Array.from({ length: n }, () => Math.floor(rnd() * 3));
      const label = Uint8Array.from({ length: n }, () => (rnd() < 0.5 ? 0 : 1 + Math.floor(rnd() * 2)));
      const tolerance = rnd() * 3;
      const got = evaluateSegmentation(pred, label, shape, spacing, [1, 2], { nsdToleranceMm: tolerance });
      for (const m of got) {
        const p = pred.map((v) => (v === m.label ? 1 : 0));
        const g = label.map((v) => (v === m.label ? 1 : 0));
        const tp = p.reduce((acc, v, i) => acc + (v && g[i] ? 1 : 0), 0);
        const ps = p.reduce((a, b) => a + b, 0);
        const gs = g.reduce((a, b) => a + b, 0);
        expect(m.dice).toBeCloseTo((2 * tp) / (ps + gs), 12);
        const dpg = naiveDirected(naiveSurface(p, shape), naiveSurface(g, shape), shape, spacing);
        const dgp = naiveDirected(naiveSurface(g, shape), naiveSurface(p, shape), shape, spacing);
        expect(m.hd95).toBeCloseTo(Math.max(naivePercentile(dpg, 95), naivePercentile(dgp, 95)), 9);
        const within = [...dpg, ...dgp].filter((d) => d <= tolerance).length;
        expect(m.nsd).toBeCloseTo(within / (dpg.length + dgp.length), 12);
      }
    }
  });

  it('parallel plates shifted by s voxels along each axis: HD95 = s × that axis\'s spacing exactly', () => {
    const shape: Grid3 = [20, 24, 28];
    const spacing: Grid3 = [2.5, 0.7, 1.3];
    for (const axis of [0, 1, 2] as const) {
      for (const s of [1, 3]) {
        // A one-voxel-thick square plate perpendicular to `axis`: every voxel is a surface voxel
        // and its nearest voxel on the other plate is straight across, s·spacing away.
        const plate = (shift: number) => fill(shape, (...c) => c[axis] === 6 + shift && c.filter((_, a) => a !== axis).every((x) => x >= 4 && x < 14));
        const [m] = evaluateSegmentation(plate(s), plate(0), shape, spacing, [1], { nsdToleranceMm: s * spacing[axis] });
        expect(m!.hd95).toBeCloseTo(s * spacing[axis], 12);
        expect(m!.dice).toBe(0);
        expect(m!.nsd).toBe(1); // every distance equals the tolerance (≤ counts)
        const [tight] = evaluateSegmentation(plate(s), plate(0), shape, spacing, [1], { nsdToleranceMm: s * spacing[axis] * 0.999 });
        expect(tight!.nsd).toBe(0);
      }
    }
  });

  it('cubes shifted by s along x: Dice (L−s)/L, largest surface distance s·spacing_x, NSD 1 at that tolerance', () => {
    const shape: Grid3 = [30, 26, 22];
    const spacing: Grid3 = [0.6, 1.5, 2.0];
    const L = 10;
    const cube = (shift: number) => fill(shape, (i, j, k) => i >= 8 + shift && i < 8 + shift + L && j >= 8 && j < 8 + L && k >= 6 && k < 6 + L);
    for (const s of [1, 2, 4]) {
      const [m] = evaluateSegmentation(cube(s), cube(0), shape, spacing, [1], { nsdToleranceMm: s * spacing[0] });
      expect(m!.dice).toBeCloseTo((L - s) / L, 12);
      const pred = surfaceVoxels(cube(s), shape);
      const ref = surfaceVoxels(cube(0), shape);
      const both = [...directedSurfaceDistances(pred, ref, shape, spacing), ...directedSurfaceDistances(ref, pred, shape, spacing)];
      expect(Math.max(...both)).toBeCloseTo(s * spacing[0], 12);
      expect(m!.hd95).toBeLessThanOrEqual(s * spacing[0] + 1e-12);
      expect(m!.hd95).toBeGreaterThan(0);
      expect(m!.nsd).toBe(1);
      // Side faces overlap where the cubes overlap: those surface voxels are at distance 0.
      const [strict] = evaluateSegmentation(cube(s), cube(0), shape, spacing, [1], { nsdToleranceMm: 0 });
      expect(strict!.nsd).toBeGreaterThan(0.3);
      expect(strict!.nsd).toBeLessThan(1);
    }
  });

  it('concentric spheres in mm on an anisotropic grid: HD95 ≈ the radius difference, whatever the voxel shape', () => {
    // Radii 6 mm and 9 mm around the grid centre, sampled on 0.5 × 1.0 × 2.0 mm voxels: the
    // surfaces are 3 mm apart; discretisation moves each surface by at most half a voxel diagonal.
    const spacing: Grid3 = [0.5, 1.0, 2.0];
    const shape: Grid3 = [48, 26, 14];
    const centre = shape.map((n) => (n - 1) / 2);
    const ball = (r: number) => fill(shape, (...c) => Math.hypot(...c.map((x, a) => (x - centre[a]!) * spacing[a]!)) <= r);
    const [m] = evaluateSegmentation(ball(6), ball(9), shape, spacing, [1], { nsdToleranceMm: 1 });
    const halfDiagonal = Math.hypot(...spacing) / 2;
    expect(Math.abs(m!.hd95 - 3)).toBeLessThanOrEqual(halfDiagonal);
    // Had the spacing been ignored (unit voxels), the same masks would be ~3 / mean spacing apart.
    const [unit] = evaluateSegmentation(ball(6), ball(9), shape, [1, 1, 1], [1], { nsdToleranceMm: 1 });
    expect(Math.abs(unit!.hd95 - 3)).toBeGreaterThan(halfDiagonal);
    expect(m!.nsd).toBeLessThan(0.5); // surfaces 3 mm apart: few within 1 mm
  });

  it('follows MONAI for empty classes: both empty → NaN; one empty → Dice 0 or NaN, HD95 inf, NSD 0', () => {
    const shape: Grid3 = [6, 6, 6];
    const blob = fill(shape, (i, j, k) => i >= 2 && i < 4 && j >= 2 && j < 4 && k >= 2 && k < 4);
    const empty = new Uint8Array(216);
    const [both] = evaluateSegmentation(empty, empty, shape, [1, 1, 1], [1], { nsdToleranceMm: 1 });
    expect([both!.dice, both!.hd95, both!.nsd]).toEqual([NaN, NaN, NaN]);
    const [missed] = evaluateSegmentation(empty, blob, shape, [1, 1, 1], [1], { nsdToleranceMm: 1 });
    expect([missed!.dice, missed!.hd95, missed!.nsd]).toEqual([0, Infinity, 0]);
    const [spurious] = evaluateSegmentation(blob, empty, shape, [1, 1, 1], [1], { nsdToleranceMm: 1 });
    // DiceMetric(ignore_empty=True): no reference → NaN even with false positives.
    expect([spurious!.dice, spurious!.hd95, spurious!.nsd]).toEqual([NaN, Infinity, 0]);
    const [same] = evaluateSegmentation(blob, blob, shape, [1, 1, 1], [1], { nsdToleranceMm: 0 });
    expect([same!.dice, same!.hd95, same!.nsd]).toEqual([1, 0, 1]);
  });

  it('refuses inputs that cannot be scored, naming the problem', () => {
    const v = new Uint8Array(8);
    expect(() => evaluateSegmentation(v, new Uint8Array(9), [2, 2, 2], [1, 1, 1], [1], { nsdToleranceMm: 1 })).toThrow(/prediction has 8 and the reference 9/);
    expect(() => evaluateSegmentation(v, v, [2, 2, 2], [1, 1, 1], [0], { nsdToleranceMm: 1 })).toThrow(/integers in 1\.\.255, got 0/);
    expect(() => evaluateSegmentation(v, v, [2, 2, 2], [1, -1, 1], [1], { nsdToleranceMm: 1 })).toThrow(/spacing must be three positive numbers/);
    expect(() => evaluateSegmentation(v, v, [2, 2, 2], [1, 1, 1], [1], { nsdToleranceMm: -1 })).toThrow(/tolerance must be a number ≥ 0/);
  });
});

describe('reference values (scipy, MONAI\'s algorithm: test/reference/surface_metrics_reference.py)', () => {
  // The same volumes as the script builds, voxel for voxel (row-major, last axis fastest).
  const SHAPE: Grid3 = [24, 30, 26];
  const SPACING: Grid3 = [2.5, 0.9, 1.1];
  const ellipsoid = (c: number[], r: number[]) => (i: number, j: number, k: number) => {
    const a = ((i - c[0]!) * SPACING[0]) / r[0]!;
    const b = ((j - c[1]!) * SPACING[1]) / r[1]!;
    const d = ((k - c[2]!) * SPACING[2]) / r[2]!;
    return a * a + b * b + d * d <= 1;
  };
  const box = (lo: number[], hi: number[]) => (...c: number[]) => c.every((x, a) => x >= lo[a]! && x < hi[a]!);
  const hole = (i: number, j: number, k: number) => (i * 7 + j * 13 + k * 31 + i * j * 3 + j * k * 5) % 23 === 0;
  function volume(layers: [number, (i: number, j: number, k: number) => boolean][]): Uint8Array {
    const out = new Uint8Array(SHAPE[0] * SHAPE[1] * SHAPE[2]);
    for (const [value, inside] of layers) for (let p = 0; p < out.length; p++) if (inside(...coords(p, SHAPE))) out[p] = value;
    return out;
  }
  const label = volume([[1, ellipsoid([12, 15, 13], [14, 9, 8])], [2, box([3, 4, 18], [8, 12, 24])], [3, box([20, 25, 2], [23, 29, 5])]]);
  const pred = volume([
    [1, (i, j, k) => ellipsoid([12.6, 14.2, 13.5], [13, 10, 7.5])(i, j, k) && !hole(i, j, k)],
    [2, box([4, 4, 17], [9, 11, 24])],
    [4, box([0, 0, 0], [2, 3, 2])],
  ]);
  // Output of `python3 test/reference/surface_metrics_reference.py` (numpy 2.4.6, scipy 1.17.1).
  const REFERENCE = [
    { class: 1, dice: 0.8517846339987901, hd95: 3.758989225842501, nsd1: 0.5676077265973254, nsd2: 0.7971768202080238, predVoxels: 1589, labelVoxels: 1717, predSurfaceVoxels: 792, labelSurfaceVoxels: 554 },
    { class: 2, dice: 0.6927835051546392, hd95: 2.5, nsd1: 0.5207100591715976, nsd2: 0.6923076923076923, predVoxels: 245, labelVoxels: 240, predSurfaceVoxels: 170, labelSurfaceVoxels: 168 },
    { class: 3, dice: 0.0, hd95: Infinity, nsd1: 0.0, nsd2: 0.0, predVoxels: 0, labelVoxels: 36, predSurfaceVoxels: 0, labelSurfaceVoxels: 34 },
    { class: 4, dice: NaN, hd95: Infinity, nsd1: 0.0, nsd2: 0.0, predVoxels: 12, labelVoxels: 0, predSurfaceVoxels: 12, labelSurfaceVoxels: 0 },
    { class: 5, dice: NaN, hd95: NaN, nsd1: NaN, nsd2: NaN, predVoxels: 0, labelVoxels: 0, predSurfaceVoxels: 0, labelSurfaceVoxels: 0 },
  ];

  it('match to 1e-12 for every class (holes, a structure on the volume border, missed and spurious classes)', () => {
    const at1 = evaluateSegmentation(pred, label, SHAPE, SPACING, [1, 2, 3, 4, 5], { nsdToleranceMm: 1 });
    const at2 = evaluateSegmentation(pred, label, SHAPE, SPACING, [1, 2, 3, 4, 5], { nsdToleranceMm: 2 });
    REFERENCE.forEach((ref, i) => {
      const m = at1[i]!;
      expect({ predVoxels: m.predVoxels, labelVoxels: m.labelVoxels, predSurfaceVoxels: m.predSurfaceVoxels, labelSurfaceVoxels: m.labelSurfaceVoxels }).toEqual({
        predVoxels: ref.predVoxels, labelVoxels: ref.labelVoxels, predSurfaceVoxels: ref.predSurfaceVoxels, labelSurfaceVoxels: ref.labelSurfaceVoxels,
      });
      const close = (x: number, y: number) => (Number.isFinite(y) ? expect(x).toBeCloseTo(y, 12) : expect(x).toBe(y));
      close(m.dice, ref.dice);
      close(m.hd95, ref.hd95);
      close(m.nsd, ref.nsd1);
      close(at2[i]!.nsd, ref.nsd2);
    });
  });
});
