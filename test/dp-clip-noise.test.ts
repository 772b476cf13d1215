import { describe, expect, it } from 'vitest';
import { isPatchFedError } from '../shared/errors.ts';
import { mulberry32 } from '../shared/random.ts';
import { addGaussianNoise, clipFactor, clipInPlace, l2Norm, noiseStd, secureGaussian, seededGaussian } from '../shared/dp/index.ts';
import { addInto, decodeWeightedMean, encodeWeightedUpdate, fixedPointParams } from '../shared/secagg/index.ts';

function moments(values: ArrayLike<number>): { mean: number; variance: number } {
  let s = 0;
  let ss = 0;
  for (let i = 0; i < values.length; i++) {
    s += values[i] ?? 0;
    ss += (values[i] ?? 0) ** 2;
  }
  const mean = s / values.length;
  return { mean, variance: ss / values.length - mean * mean };
}

/** Standard normal CDF by Simpson integration of the density (test-local reference). */
function normalCdf(x: number): number {
  const a = -10;
  const n = 2000;
  const h = (x - a) / n;
  let s = 0;
  for (let i = 0; i <= n; i++) {
    const t = a + i * h;
    const w = i === 0 || i === n ? 1 : i % 2 === 1 ? 4 : 2;
    s += w * Math.exp(-t * t / 2);
  }
  return (s * h) / 3 / Math.sqrt(2 * Math.PI);
}

describe('clipping (DP-FedAvg flat clipping)', () => {
  it('scales an update above the bound to norm C exactly, leaves one below untouched', () => {
    const rng = mulberry32(1);
    const parts = [Float32Array.from({ length: 300 }, () => rng() - 0.5), Float32Array.from({ length: 50 }, () => rng() - 0.5)];
    const before = l2Norm(parts);
    const { norm, factor } = clipInPlace(parts, 1);
    expect(norm).toBe(before);
    expect(factor).toBeCloseTo(1 / before, 12);
    expect(l2Norm(parts)).toBeCloseTo(1, 5);
    const small = [Float32Array.from([0.1, -0.2])];
    expect(clipInPlace(small, 1).factor).toBe(1);
    expect([...(small[0] ?? [])]).toEqual([Math.fround(0.1), Math.fround(-0.2)]);
    expect(clipFactor(0, 1)).toBe(1);
    expect(() => clipFactor(Number.NaN, 1)).toThrow(/norm/);
  });
});

describe('Gaussian noise', () => {
  it('the seeded sampler is reproducible and standard normal (mean, variance, CDF at 7 points)', () => {
    const n = 200_000;
    const a = seededGaussian(42);
    const b = seededGaussian(42);
    const draws = new Float64Array(n);
    for (let i = 0; i < n; i++) draws[i] = a.normal();
    for (let i = 0; i < 1000; i++) expect(b.normal()).toBe(draws[i]);
    const { mean, variance } = moments(draws);
    expect(Math.abs(mean)).toBeLessThan(5 / Math.sqrt(n));
    expect(Math.abs(variance - 1)).toBeLessThan(5 * Math.sqrt(2 / n));
    const sorted = Float64Array.from(draws).sort();
    for (const x of [-2.5, -1.5, -0.5, 0, 0.7, 1.6, 3]) {
      let k = 0;
      while (k < n && (sorted[k] ?? Infinity) <= x) k++;
      const p = normalCdf(x);
      expect(Math.abs(k / n - p)).toBeLessThan(5 * Math.sqrt((p * (1 - p)) / n) + 1e-4);
    }
    expect(seededGaussian(43).normal()).not.toBe(draws[0]);
  });

  it('the secure sampler draws differently every time', () => {
    expect(secureGaussian().normal()).not.toBe(secureGaussian().normal());
  });

  it('central: σ = zC; distributed: n sites with zC/√n each sum to the same N(0, (zC)²)', () => {
    const settings = { noiseMultiplier: 1.1, clipNorm: 0.5 };
    expect(noiseStd('central', settings)).toBeCloseTo(0.55, 15);
    expect(noiseStd('distributed', settings, 4)).toBeCloseTo(0.275, 15);
    const d = 100_000;
    const total = new Float64Array(d);
    for (let site = 0; site < 4; site++) addGaussianNoise(total, noiseStd('distributed', settings, 4), seededGaussian(`site-${site}`));
    const { variance } = moments(total);
    expect(Math.abs(variance / 0.55 ** 2 - 1)).toBeLessThan(5 * Math.sqrt(2 / d));
    try {
      noiseStd('distributed', settings, 0);
      expect.unreachable();
    } catch (e) {
      expect(isPatchFedError(e) && e.code).toBe('dp-settings');
    }
  });

  it('distributed DP composes with secure aggregation: the decoded sum carries noise of variance (zC)²', () => {
    const d = 50_000;
    const n = 5;
    const z = 0.8;
    const C = 0.2;
    const p = fixedPointParams({ maxSites: 8 });
    const rng = mulberry32(9);
    const updates = Array.from({ length: n }, () => Float32Array.from({ length: d }, () => (rng() * 2 - 1) * 0.01));
    const sum = new Uint32Array(d + 1);
    const exact = new Float64Array(d);
    updates.forEach((u, i) => {
      const { factor } = clipInPlace([u], C);
      expect(factor).toBeLessThan(1); // these updates are clipped (norm ≈ 1.3 > C)
      u.forEach((v, j) => (exact[j] = (exact[j] ?? 0) + v));
      addInto(sum, encodeWeightedUpdate(u, p, { weight: 1, noise: { std: noiseStd('distributed', { noiseMultiplier: z, clipNorm: C }, n), source: seededGaussian(i) } }).vector);
    });
    const { mean, totalWeight } = decodeWeightedMean(sum, p);
    expect(totalWeight).toBe(n);
    const residual = Float64Array.from(mean, (m, j) => m * n - (exact[j] ?? 0));
    const { mean: mu, variance } = moments(residual);
    expect(Math.abs(mu)).toBeLessThan((5 * z * C) / Math.sqrt(d));
    expect(Math.abs(variance / (z * C) ** 2 - 1)).toBeLessThan(5 * Math.sqrt(2 / d));
  });
});
