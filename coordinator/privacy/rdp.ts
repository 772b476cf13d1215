/**
 * Rényi differential privacy (Mironov 2017, "Rényi Differential Privacy", CSF) of the Poisson-
 * subsampled Gaussian mechanism — each round samples every site with probability q and adds
 * N(0, (zC)²) to the sum of C-clipped updates — and its conversion to (ε, δ)-DP.
 *
 * RDP of one round at order α: ε(α) = log(A_α) / (α − 1), with A_α the α-th moment of the
 * privacy-loss ratio of the mixture (1−q)·N(0, z²) + q·N(1, z²) against N(0, z²) (Mironov, Talwar,
 * Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism", §3.3):
 *   integer α    A_α = Σ_{i=0..α} C(α,i) q^i (1−q)^{α−i} exp((i² − i)/(2z²))          (§3.3, Eq. 3)
 *   fractional α A_α = A_α0 + A_α1, the two halves of the integral split at
 *                z0 = z² log(1/q − 1) + ½, each a convergent binomial series with erfc factors
 *                (§3.3, Eq. 4–5), summed until terms drop below e^-30
 *   q = 1        ε(α) = α / (2z²)   (the plain Gaussian mechanism, Mironov 2017 Prop. 7)
 * This is the computation of TensorFlow Privacy's / Google dp_accounting's
 * `_compute_rdp_poisson_subsampled_gaussian` and of Opacus's `compute_rdp`, step for step, in
 * log space. RDP composes by addition over rounds (Mironov 2017, Prop. 1).
 *
 * Conversion to (ε, δ) at the best order:
 *   'improved' (default)  ε = ε(α) + log1p(−1/α) − log(δ·α)/(α − 1)
 *                 (Balle et al. 2020, "Hypothesis testing interpretations and Rényi DP",
 *                 Thm. 21; Canonne, Kamath, Steinke 2020, Prop. 12), with dp_accounting's
 *                 shortcut ε = 0 when δ² > 1 − e^{−ε(α)} and its α > 1.01 restriction —
 *                 what TensorFlow Privacy's (dp_accounting's) RdpAccountant and Opacus ≥ 1.1
 *                 report;
 *   'standard'    ε = ε(α) + log(1/δ)/(α − 1)  (Mironov 2017, Prop. 3), the classic moments-
 *                 accountant bound, never smaller.
 */
import { logAdd, logErfc, logSub } from './log-math.ts';

/**
 * TensorFlow Privacy's `compute_dp_sgd_privacy` order list — the standard list, fine below 5
 * where the optimum lies for strong privacy.
 */
export const DEFAULT_RDP_ORDERS: readonly number[] = [1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5, ...range(5, 64), 128, 256, 512];

/** Opacus's RDPAccountant.DEFAULT_ALPHAS: 1.1, 1.2, …, 10.9, 12, 13, …, 63. */
export const OPACUS_RDP_ORDERS: readonly number[] = [...range(1, 100).map((x) => 1 + x / 10), ...range(12, 64)];

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

export type EpsilonConversion = 'improved' | 'standard';

/** log A_α for integer α (Mironov, Talwar, Zhang 2019, §3.3). */
function logAInteger(q: number, z: number, alpha: number): number {
  let logA = -Infinity;
  let logBinom = 0; // log C(α, 0)
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  for (let i = 0; i <= alpha; i++) {
    if (i > 0) logBinom += Math.log(alpha - i + 1) - Math.log(i);
    logA = logAdd(logA, logBinom + i * logQ + (alpha - i) * log1mQ + (i * i - i) / (2 * z * z));
  }
  return logA;
}

/** log A_α for fractional α (Mironov, Talwar, Zhang 2019, §3.3). */
function logAFractional(q: number, z: number, alpha: number): number {
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const z0 = z * z * Math.log(1 / q - 1) + 0.5;
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  let logAbsBinom = 0; // log |C(α, 0)|
  let binomPositive = true;
  for (let i = 0; ; i++) {
    if (i > 0) {
      const factor = alpha - i + 1;
      logAbsBinom += Math.log(Math.abs(factor)) - Math.log(i);
      if (factor < 0) binomPositive = !binomPositive;
    }
    const j = alpha - i;
    const logT0 = logAbsBinom + i * logQ + j * log1mQ;
    const logT1 = logAbsBinom + j * logQ + i * log1mQ;
    const logE0 = Math.log(0.5) + logErfc((i - z0) / (Math.SQRT2 * z));
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / (Math.SQRT2 * z));
    const logS0 = logT0 + (i * i - i) / (2 * z * z) + logE0;
    const logS1 = logT1 + (j * j - j) / (2 * z * z) + logE1;
    if (binomPositive) {
      logA0 = logAdd(logA0, logS0);
      logA1 = logAdd(logA1, logS1);
    } else {
      logA0 = logSub(logA0, logS0);
      logA1 = logSub(logA1, logS1);
    }
    if (Math.max(logS0, logS1) < -30) break;
  }
  return logAdd(logA0, logA1);
}

/** ε(α) of one round of the Poisson-subsampled Gaussian mechanism, at one order. */
export function rdpOfSubsampledGaussian(q: number, noiseMultiplier: number, alpha: number): number {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`RDP: the sampling rate must be in [0, 1], got ${q}`);
  if (!(noiseMultiplier >= 0)) throw new RangeError(`RDP: the noise multiplier must be ≥ 0, got ${noiseMultiplier}`);
  if (!(alpha > 1)) throw new RangeError(`RDP: orders must be > 1, got ${alpha}`);
  if (alpha === Infinity || noiseMultiplier === 0) return Infinity;
  if (q === 0) return 0;
  if (q === 1) return alpha / (2 * noiseMultiplier * noiseMultiplier);
  const logA = Number.isInteger(alpha) ? logAInteger(q, noiseMultiplier, alpha) : logAFractional(q, noiseMultiplier, alpha);
  return logA / (alpha - 1);
}

/** ε(α) for every order, for `steps` compositions (RDP adds up, Mironov 2017 Prop. 1). */
export function computeRdp(q: number, noiseMultiplier: number, steps: number, orders: readonly number[] = DEFAULT_RDP_ORDERS): number[] {
  return orders.map((a) => steps * rdpOfSubsampledGaussian(q, noiseMultiplier, a));
}

export interface EpsilonAtOrder {
  epsilon: number;
  /** The order at which the bound is tightest. */
  order: number;
}

/** (ε, δ) from RDP values at `orders`: the smallest ε over orders, by the chosen conversion. */
export function epsilonFromRdp(orders: readonly number[], rdp: readonly number[], delta: number, conversion: EpsilonConversion = 'improved'): EpsilonAtOrder {
  if (orders.length !== rdp.length || orders.length === 0) throw new RangeError('RDP: orders and RDP values must be non-empty lists of the same length');
  if (!(delta > 0 && delta < 1)) throw new RangeError(`RDP: δ must be in (0, 1), got ${delta}`);
  let best = Infinity;
  let bestOrder = orders[0] ?? NaN;
  for (let k = 0; k < orders.length; k++) {
    const a = orders[k] ?? NaN;
    const r = rdp[k] ?? NaN;
    if (!(a > 1)) throw new RangeError(`RDP: orders must be > 1, got ${a}`);
    if (!(r >= 0)) throw new RangeError(`RDP: values must be ≥ 0, got ${r}`);
    let eps: number;
    if (conversion === 'standard') {
      eps = r - Math.log(delta) / (a - 1);
    } else if (delta * delta + Math.expm1(-r) > 0) {
      // δ ≥ sqrt(1 − e^{−KL}): the KL bound already gives ε = 0 (dp_accounting's shortcut).
      eps = 0;
    } else if (a > 1.01) {
      eps = r + Math.log1p(-1 / a) - Math.log(delta * a) / (a - 1);
    } else {
      eps = Infinity;
    }
    if (eps < best) {
      best = eps;
      bestOrder = a;
    }
  }
  return { epsilon: Math.max(0, best), order: bestOrder };
}
