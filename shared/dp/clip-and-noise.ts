/**
 * Site-level DP-FedAvg (McMahan, Ramage, Talwar, Zhang 2018, "Learning differentially private
 * recurrent language models", Algorithm 1): each site's update Δ = w_local − w_global is clipped to
 * L2 norm C (ClipFn "flat clipping", §3), the sum of (weighted, ω ≤ 1) clipped updates has
 * sensitivity C when one site is added or removed, and Gaussian noise N(0, σ²I) with σ = z·C makes
 * the round a Gaussian mechanism of noise multiplier z (what coordinator/privacy accounts).
 *
 *   central DP      sites clip; the coordinator adds N(0, (zC)²) to the sum before dividing.
 *   distributed DP  each of the n contributing sites adds N(0, (zC)²/n) to its own clipped
 *                   update before it leaves the site; the sum of n independent shares is
 *                   N(0, (zC)²), the same mechanism, and it composes with secure aggregation: the
 *                   coordinator never sees an un-noised sum (Kairouz et al. 2021, "The
 *                   distributed discrete Gaussian mechanism", §1, for the idea).
 *
 * With dropouts fewer than n sites contribute noise; so n must be the *minimum* number of
 * contributors: the experiment's minSites, which the scheduler requires of every round, secure or
 * not (under secure aggregation t survivors are needed too, so max(minSites, t) would also be a
 * valid n; minSites is used). That over-noises slightly when more sites survive rather than
 * under-noising when fewer do. Under secure aggregation the site masks Δ' with weight 1 and the
 * ring's clip range must cover C + 10·noiseStd (shared/secagg/fixed-point.ts, dpRingClipRange). Noise is added in float64 before fixed-point
 * rounding. The accountant covers the continuous Gaussian sum; the per-site rounding afterwards
 * (≤ n/(2s) per element, fixed-point.ts) is not part of the accounted mechanism — Kairouz et al.
 * 2021 treat that gap exactly with a discrete Gaussian.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../errors.ts';
import type { GaussianSampler } from './gaussian.ts';

export type DpMode = 'central' | 'distributed';

export interface DpSettings {
  /** z: noise standard deviation in units of the clip norm. */
  noiseMultiplier: number;
  /** C: L2 bound of one site's update. */
  clipNorm: number;
}

export function checkDpSettings(s: DpSettings): void {
  if (!(Number.isFinite(s.noiseMultiplier) && s.noiseMultiplier >= 0)) {
    throw new PatchFedError('dp-settings', `DP: the noise multiplier must be a non-negative number, got ${String(s.noiseMultiplier)}.`);
  }
  if (!(Number.isFinite(s.clipNorm) && s.clipNorm > 0)) {
    throw new PatchFedError('dp-settings', `DP: the clip norm must be a positive number, got ${String(s.clipNorm)}.`);
  }
}

/** L2 norm of a vector given in parts (the averaged tensors of a model), accumulated in float64. */
export function l2Norm(parts: readonly ArrayLike<number>[]): number {
  let sq = 0;
  for (const p of parts) for (let j = 0; j < p.length; j++) sq += p[j]! * p[j]!;
  return Math.sqrt(sq);
}

/** min(1, C/‖Δ‖): the factor flat clipping multiplies Δ by (McMahan et al. 2018, §3). */
export function clipFactor(norm: number, clipNorm: number): number {
  if (!(Number.isFinite(norm) && norm >= 0)) throw new PatchFedError('dp-clip', `DP: the update norm must be a finite non-negative number, got ${String(norm)}.`);
  return norm <= clipNorm ? 1 : clipNorm / norm;
}

/** Clips the update (given in parts) in place to norm ≤ C; returns the norm before and the factor. */
export function clipInPlace(parts: readonly Float32Array[], clipNorm: number): { norm: number; factor: number } {
  const norm = l2Norm(parts);
  const factor = clipFactor(norm, clipNorm);
  if (factor < 1) for (const p of parts) for (let j = 0; j < p.length; j++) p[j]! *= factor;
  return { norm, factor };
}

/**
 * Standard deviation of the noise one party adds: zC for the coordinator (central), zC/√n for each
 * site (distributed, n = minimum number of contributing sites).
 */
export function noiseStd(mode: DpMode, settings: DpSettings, minContributors = 1): number {
  checkDpSettings(settings);
  const total = settings.noiseMultiplier * settings.clipNorm;
  if (mode === 'central') return total;
  if (!(Number.isSafeInteger(minContributors) && minContributors >= 1)) {
    throw new PatchFedError('dp-settings', `DP: distributed noise needs the minimum number of contributing sites (≥ 1), got ${String(minContributors)}.`);
  }
  return total / Math.sqrt(minContributors);
}

/** values += N(0, std²) element-wise, drawn in float64 (stored in the array's precision). */
export function addGaussianNoise(values: Float32Array | Float64Array, std: number, sampler: GaussianSampler): void {
  if (!(Number.isFinite(std) && std >= 0)) throw new PatchFedError('dp-settings', `DP: the noise standard deviation must be a non-negative number, got ${String(std)}.`);
  if (std === 0) return;
  for (let j = 0; j < values.length; j++) values[j]! += std * sampler.normal();
}
