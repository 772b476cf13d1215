/**
 * Plain reference implementations over NamedWeights, written independently of the coordinator's
 * streaming aggregator (different summation order and formula) so tests comparing the two mean
 * something.
 */
import { PatchFedError } from '../shared/errors.ts';
import { sizeOf, type NamedWeights, type WeightSpec } from '../shared/weights.ts';

export interface WeightedUpdate {
  weights: NamedWeights;
  numSamples: number;
}

/**
 * Batch sample-weighted mean: Σ (nᵢ/N)·wᵢ per element, all updates in memory at once. Summation
 * order and formula differ from the streaming aggregator on purpose, so agreement is meaningful.
 */
export function weightedMean(updates: readonly WeightedUpdate[]): NamedWeights {
  if (updates.length === 0) throw new PatchFedError('no-updates', 'weightedMean: no updates given.');
  const manifest = updates[0]!.weights.manifest;
  const total = updates.reduce((n, u) => n + u.numSamples, 0);
  const values = manifest.map((spec, i) => {
    const acc = new Float64Array(sizeOf(spec.shape));
    for (const u of updates) {
      const share = u.numSamples / total;
      const v = u.weights.values[i]!;
      for (let j = 0; j < acc.length; j++) acc[j]! += share * v[j]!;
    }
    return Float32Array.from(acc);
  });
  return { manifest, values };
}

function selected(manifest: readonly WeightSpec[], include?: (spec: WeightSpec) => boolean): number[] {
  return manifest.flatMap((s, i) => (include === undefined || include(s) ? [i] : []));
}

/** Euclidean norm over all (or the included) tensors, accumulated in float64. */
export function l2Norm(w: NamedWeights, include?: (spec: WeightSpec) => boolean): number {
  let sq = 0;
  for (const i of selected(w.manifest, include)) for (const x of w.values[i]!) sq += x * x;
  return Math.sqrt(sq);
}

/** ||a − b||₂ over all (or the included) tensors; a and b must share a manifest. */
export function l2Distance(a: NamedWeights, b: NamedWeights, include?: (spec: WeightSpec) => boolean): number {
  assertComparable(a, b);
  let sq = 0;
  for (const i of selected(a.manifest, include)) {
    const x = a.values[i]!;
    const y = b.values[i]!;
    for (let j = 0; j < x.length; j++) {
      const d = x[j]! - y[j]!;
      sq += d * d;
    }
  }
  return Math.sqrt(sq);
}

/** ||actual − expected||₂ / ||expected||₂ (absolute error when expected is all zeros). */
export function relativeL2Error(actual: NamedWeights, expected: NamedWeights, include?: (spec: WeightSpec) => boolean): number {
  const diff = l2Distance(actual, expected, include);
  const norm = l2Norm(expected, include);
  return norm > 0 ? diff / norm : diff;
}

function assertComparable(a: NamedWeights, b: NamedWeights): void {
  if (a.values.length !== b.values.length || a.values.some((v, i) => v.length !== b.values[i]!.length)) {
    throw new PatchFedError('weights-mismatch', 'Cannot compare weights with different tensor counts or sizes.');
  }
}
