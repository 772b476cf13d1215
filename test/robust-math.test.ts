import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../shared/random.ts';
import {
  adaptiveClipBound,
  clipFactors,
  clippedMean,
  coordinateMedian,
  sliceLengthForBudget,
  sliceRanges,
  squaredDeltaNorm,
  trimCount,
  trimmedMean,
} from '../coordinator/strategies/robust-math.ts';
import { patchFedErrorCodeOf as codeOf } from './error-fixtures.ts';

/** Reference statistics of one coordinate, by sorting a plain array. */
function refMedian(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2;
}
function refTrimmed(v: number[], beta: number): number {
  const s = [...v].sort((a, b) => a - b);
  const k = Math.floor(beta * s.length);
  const kept = s.slice(k, s.length - k);
  return kept.reduce((a, b) => a + b, 0) / kept.length;
}

/** Runs a slice-wise aggregator over the whole model in slices of `slice` elements, as the coordinator will. */
function bySlices(updates: Float32Array[], slice: number, fn: (slices: Float32Array[], out: Float32Array) => void): Float32Array {
  const d = updates[0]?.length ?? 0;
  const out = new Float32Array(d);
  for (const { start, end } of sliceRanges(d, slice)) fn(updates.map((u) => u.subarray(start, end)), out.subarray(start, end));
  return out;
}

const l2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += ((a[j] ?? 0) - (b[j] ?? 0)) ** 2;
  return Math.sqrt(s);
};

describe('coordinate-wise median and trimmed mean', () => {
  it('equal the sorted-array definitions for odd, even and large site counts, slice by slice', () => {
    const rng = mulberry32(8);
    for (const n of [1, 2, 5, 8, 40]) {
      const d = 257;
      const updates = Array.from({ length: n }, () => Float32Array.from({ length: d }, () => rng() * 2 - 1));
      const med = bySlices(updates, 50, (s, out) => coordinateMedian(s, out));
      const trim = bySlices(updates, 64, (s, out) => trimmedMean(s, 0.2, out));
      for (let j = 0; j < d; j++) {
        const col = updates.map((u) => u[j] ?? 0);
        expect(med[j]).toBe(Math.fround(refMedian(col)));
        expect(Math.abs((trim[j] ?? 0) - refTrimmed(col, 0.2))).toBeLessThan(1e-7);
      }
    }
    expect(trimCount(5, 0.2)).toBe(1);
    expect(trimCount(5, 0.19)).toBe(0);
    expect(codeOf(() => trimCount(5, 0.5))).toBe('robust-aggregation');
    expect(codeOf(() => coordinateMedian([new Float32Array(3), new Float32Array(2)], new Float32Array(3)))).toBe('robust-aggregation');
    expect(codeOf(() => coordinateMedian([], new Float32Array(3)))).toBe('robust-aggregation');
  });
});

describe('1 of 5 sites sends a poisoned update', () => {
  // Honest updates: the global model plus a common direction plus per-site noise (non-IID sites).
  const d = 4000;
  const rng = mulberry32(31);
  const global = Float32Array.from({ length: d }, () => rng() - 0.5);
  const direction = Float32Array.from({ length: d }, () => (rng() - 0.5) * 0.02);
  const honest = Array.from({ length: 4 }, () => Float32Array.from(global, (g, j) => g + (direction[j] ?? 0) * (1 + 0.3 * (rng() * 2 - 1))));
  const honestMean = Float32Array.from(global, (_, j) => honest.reduce((s, u) => s + (u[j] ?? 0), 0) / honest.length);
  const honestStep = l2(honestMean, global); // size of the honest round's change
  const attacks: [string, Float32Array][] = [
    ['scaled ×100', Float32Array.from(global, (g, j) => g + 100 * (direction[j] ?? 0))],
    ['sign-flipped', Float32Array.from(global, (g, j) => g - (direction[j] ?? 0))],
  ];

  it.each(attacks)('%s: median and trimmed mean stay within 25%% of the honest step of the honest mean; the plain mean does not', (_name, attacker) => {
    const updates = [...honest.slice(0, 2), attacker, ...honest.slice(2)];
    const plain = Float32Array.from(global, (_, j) => updates.reduce((s, u) => s + (u[j] ?? 0), 0) / updates.length);
    const med = bySlices(updates, 1000, (s, out) => coordinateMedian(s, out));
    const trim = bySlices(updates, 1000, (s, out) => trimmedMean(s, 0.2, out));
    const errPlain = l2(plain, honestMean) / honestStep;
    const errMedian = l2(med, honestMean) / honestStep;
    const errTrim = l2(trim, honestMean) / honestStep;
    expect(errMedian).toBeLessThan(0.25);
    expect(errTrim).toBeLessThan(0.25);
    expect(errPlain).toBeGreaterThan(0.35); // sign flip: 0.4 of the step; ×100: about 20 steps
    expect(errPlain).toBeGreaterThan(2 * Math.max(errMedian, errTrim));
  });

  it('adaptive norm clipping (2 × median norm) neutralises the scaled update, not the sign flip (its norm is normal)', () => {
    const [scaledName, scaled] = attacks[0] ?? ['', new Float32Array(0)];
    expect(scaledName).toBe('scaled ×100');
    const updates = [...honest, scaled];
    // Norms accumulated slice by slice, as from spool files.
    const norms = updates.map((u) => Math.sqrt(sliceRanges(d, 700).reduce((s, r) => s + squaredDeltaNorm(u.subarray(r.start, r.end), global.subarray(r.start, r.end)), 0)));
    expect(Math.abs((norms[0] ?? 0) ** 2 - squaredDeltaNorm(updates[0] ?? global, global))).toBeLessThan(1e-9);
    const bound = adaptiveClipBound(norms, 2);
    const factors = clipFactors(norms, bound);
    expect(factors.slice(0, 4)).toEqual([1, 1, 1, 1]);
    expect(factors[4]).toBeLessThan(0.05);
    const weights = [1, 1, 1, 1, 1];
    const clipped = new Float32Array(d);
    for (const { start, end } of sliceRanges(d, 1000)) {
      clippedMean(updates.map((u) => u.subarray(start, end)), global.subarray(start, end), factors, weights, clipped.subarray(start, end));
    }
    const plain = Float32Array.from(global, (_, j) => updates.reduce((s, u) => s + (u[j] ?? 0), 0) / updates.length);
    const errClipped = l2(clipped, honestMean) / honestStep;
    const errPlain = l2(plain, honestMean) / honestStep;
    // The clipped attacker still counts as one site with a 2×-median update: ≤ ~(2 − 1)/5 of a step off.
    expect(errClipped).toBeLessThan(0.3);
    expect(errPlain).toBeGreaterThan(10 * errClipped);
  });

  it('clippedMean with factor 1 and sample weights is FedAvg', () => {
    const updates = honest.slice(0, 3);
    const out = new Float32Array(d);
    clippedMean(updates, global, [1, 1, 1], [10, 30, 60], out);
    for (let j = 0; j < d; j += 97) {
      const fedavg = (10 * (updates[0]?.[j] ?? 0) + 30 * (updates[1]?.[j] ?? 0) + 60 * (updates[2]?.[j] ?? 0)) / 100;
      expect(Math.abs((out[j] ?? 0) - fedavg)).toBeLessThan(1e-7);
    }
    expect(codeOf(() => clippedMean(updates, global, [1, 1], [1, 1, 1], out))).toBe('robust-aggregation');
    expect(codeOf(() => adaptiveClipBound([1, Number.NaN], 2))).toBe('robust-aggregation');
  });
});

describe('slicing', () => {
  it('covers the model exactly and sizes slices from a memory budget', () => {
    const ranges = sliceRanges(10, 4);
    expect(ranges).toEqual([{ start: 0, end: 4 }, { start: 4, end: 8 }, { start: 8, end: 10 }]);
    expect(sliceRanges(0, 4)).toEqual([]);
    expect(sliceLengthForBudget(32, 64 * 1024 * 1024)).toBe(524288);
    expect(codeOf(() => sliceRanges(10, 0))).toBe('robust-aggregation');
  });
});
