/**
 * What a site does to its update under DP-FedAvg before the update leaves it: Δ = w_local −
 * w_global over every tensor the coordinator averages (all but the task's localTensors, i.e.
 * FedBN's norm tensors), clipped to L2 norm C, plus — distributed DP — its share of the noise,
 * N(0, noiseStd²) per value. The upload is w_global + Δ', so the coordinator's aggregators (which
 * subtract the global they hold) see exactly the clipped, noised delta.
 *
 * Parameters come only from the signed round task's FitInstructions (clipNorm, noiseStd); the
 * site never picks its own. Local tensors are uploaded as trained (the coordinator keeps its own
 * values of them and never reads them).
 */
import { PatchFedError } from '../errors.ts';
import type { NamedWeights } from '../weights.ts';
import { clipFactor } from './clip-and-noise.ts';
import { secureGaussian, type GaussianSampler } from './gaussian.ts';

export interface SiteDpInstructions {
  clipNorm: number;
  /** Distributed DP: the site's share of the noise; absent or 0: clip only (central DP). */
  noiseStd?: number;
}

export interface SiteDpReport {
  /** ‖Δ‖ before clipping. */
  norm: number;
  /** min(1, C/‖Δ‖). */
  factor: number;
  noiseStd: number;
}

/** The update the site uploads instead of `update` (a new object; the inputs are not changed). */
export function privatiseSiteUpdate(
  update: NamedWeights,
  global: NamedWeights,
  dp: SiteDpInstructions,
  localTensors: readonly string[],
  sampler: GaussianSampler = secureGaussian(),
): { update: NamedWeights; report: SiteDpReport } {
  if (!(Number.isFinite(dp.clipNorm) && dp.clipNorm > 0)) throw new PatchFedError('dp-settings', `DP: the round task's clip norm must be positive, got ${String(dp.clipNorm)}.`);
  const noiseStd = dp.noiseStd ?? 0;
  if (!(Number.isFinite(noiseStd) && noiseStd >= 0)) throw new PatchFedError('dp-settings', `DP: the round task's noise standard deviation must be >= 0, got ${String(noiseStd)}.`);
  if (update.manifest.length !== global.manifest.length) throw new PatchFedError('dp-update', `DP: the update has ${update.manifest.length} tensors, the global model ${global.manifest.length}.`);
  const local = new Set(localTensors);
  const averaged = update.manifest.map((spec, t) => !local.has(spec.name) && global.manifest[t]?.name === spec.name);
  let sq = 0;
  update.values.forEach((u, t) => {
    if (!averaged[t]) return;
    const g = global.values[t];
    if (!g || g.length !== u.length) throw new PatchFedError('dp-update', `DP: tensor '${update.manifest[t]?.name}' has ${u.length} values in the update, ${g?.length ?? 0} in the global model.`);
    for (let j = 0; j < u.length; j++) {
      const d = (u[j] ?? 0) - (g[j] ?? 0);
      sq += d * d;
    }
  });
  const norm = Math.sqrt(sq);
  const factor = clipFactor(norm, dp.clipNorm);
  const values = update.values.map((u, t) => {
    if (!averaged[t]) return u.slice();
    const g = global.values[t] ?? u;
    const out = new Float32Array(u.length);
    // Δ' in float64, then back onto the global: the noise is drawn in float64 as the accountant assumes.
    for (let j = 0; j < u.length; j++) {
      const d = factor * ((u[j] ?? 0) - (g[j] ?? 0)) + (noiseStd > 0 ? noiseStd * sampler.normal() : 0);
      out[j] = (g[j] ?? 0) + d;
    }
    return out;
  });
  return { update: { manifest: update.manifest, values }, report: { norm, factor, noiseStd } };
}
