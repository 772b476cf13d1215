/**
 * The site's half of DP-FedAvg (shared/dp/site-update.ts), on fixed inputs: the delta over the
 * averaged tensors is clipped to C (FedBN's local tensors neither count towards the norm nor
 * change), distributed noise has the instructed standard deviation, and an update already inside
 * the bound is sent unchanged when no noise is asked for.
 */
import { describe, expect, it } from 'vitest';
import { privatiseSiteUpdate, seededGaussian } from '../shared/dp/index.ts';
import type { NamedWeights, WeightSpec } from '../shared/weights.ts';

const MANIFEST: WeightSpec[] = [
  { name: 'conv/kernel', shape: [20_000], trainable: true, role: 'conv-kernel' },
  { name: 'norm/gamma', shape: [4], trainable: true, role: 'norm-gamma' },
];

function weights(f: (t: number, i: number) => number): NamedWeights {
  return { manifest: MANIFEST, values: MANIFEST.map((s, t) => Float32Array.from({ length: s.shape[0]! }, (_, i) => f(t, i))) };
}

function deltaNorm(a: NamedWeights, b: NamedWeights, tensors: number[]): number {
  let sq = 0;
  for (const t of tensors) a.values[t]!.forEach((x, i) => (sq += (x - b.values[t]![i]!) ** 2));
  return Math.sqrt(sq);
}

describe('site-side DP: clip and noise the update before upload', () => {
  const global = weights((t, i) => Math.sin(i + t) * 0.1);
  const local = weights((t, i) => Math.sin(i + t) * 0.1 + (t === 0 ? 0.05 : 3) * Math.cos(0.01 * i));

  it('clips the delta of the averaged tensors to C; local tensors are neither counted nor changed', () => {
    const before = deltaNorm(local, global, [0]);
    const { update, report } = privatiseSiteUpdate(local, global, { clipNorm: 1 }, ['norm/gamma']);
    expect(report.norm).toBeCloseTo(before, 4);
    expect(report.factor).toBeCloseTo(1 / before, 6);
    expect(deltaNorm(update, global, [0])).toBeCloseTo(1, 4);
    expect(update.values[1]).toEqual(local.values[1]); // FedBN: kept as trained
    // Without local tensors the (large) gamma delta counts and is clipped with the rest.
    const all = privatiseSiteUpdate(local, global, { clipNorm: 1 }, []);
    expect(all.report.norm).toBeGreaterThan(before + 1);
    expect(deltaNorm(all.update, global, [0, 1])).toBeCloseTo(1, 4);
  });

  it('adds N(0, noiseStd²) per averaged value (distributed DP) and leaves a small update alone without noise', () => {
    const std = 0.02;
    const { update } = privatiseSiteUpdate(local, global, { clipNorm: 1, noiseStd: std }, ['norm/gamma'], seededGaussian('site-update'));
    const clipped = privatiseSiteUpdate(local, global, { clipNorm: 1 }, ['norm/gamma']).update;
    const noise = update.values[0]!.map((x, i) => x - clipped.values[0]![i]!);
    const mean = noise.reduce((a, b) => a + b, 0) / noise.length;
    const sd = Math.sqrt(noise.reduce((a, b) => a + (b - mean) ** 2, 0) / noise.length);
    expect(Math.abs(sd / std - 1)).toBeLessThan(0.03);
    expect(Math.abs(mean)).toBeLessThan((4 * std) / Math.sqrt(noise.length));
    expect(update.values[1]).toEqual(local.values[1]);

    const small = privatiseSiteUpdate(local, global, { clipNorm: 1e3 }, []);
    expect(small.report.factor).toBe(1);
    let worst = 0;
    small.update.values.forEach((v, t) => v.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - local.values[t]![i]!)))));
    expect(worst).toBeLessThan(1e-6);
  });

  it('refuses instructions it cannot follow, by name', () => {
    expect(() => privatiseSiteUpdate(local, global, { clipNorm: 0 }, [])).toThrow(/clip norm must be positive/);
    expect(() => privatiseSiteUpdate(local, global, { clipNorm: 1, noiseStd: -1 }, [])).toThrow(/noise standard deviation must be >= 0/);
  });
});
