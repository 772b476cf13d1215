/**
 * `experiment.aggregation`: how the site updates of a round are combined, beside the strategy
 * that says what they are combined into. Today one choice: secure aggregation (SecAgg, Bonawitz
 * et al. 2017; SecAgg+ graphs, Bell et al. 2020), under which the coordinator only ever holds
 * masked vectors and their sum (shared/secagg, README "Secure aggregation").
 *
 *   "aggregation": { "secure": { "threshold": 2 } }
 *
 * It composes with fedavg, fedprox and fedbn (FedBN's norm tensors stay local and are not in the
 * masked vector) and with distributed DP (each site masks its clipped, noised delta with weight 1;
 * the coordinator decodes the plain sum for DP-FedAvg's aggregator); robust rules and central DP
 * need what it hides.
 */
import { z } from 'zod';
import { MAX_SECAGG_SITES } from '../protocol/limits.ts';
import { DEFAULT_CLIP_RANGE, DP_NOISE_TAIL_SIGMAS, RING_BITS, dpRingClipRange, fixedPointParams } from '../secagg/fixed-point.ts';
import { noiseStd } from '../dp/clip-and-noise.ts';
import { PatchFedError } from '../errors.ts';
import { strategyCombinationProblem, type StrategySpec } from './strategy.ts';

/** ω = min(samples / cap, 1): FedAvg's weights are exact for sites with up to this many training cases (MSD tasks have 30–750). */
export const DEFAULT_SAMPLE_CAP = 1000;

export const SecureAggregationSpecSchema = z.strictObject({
  /**
   * t: Shamir threshold. Every step of a round needs at least t sites, and t must be more than
   * half of the sites that hold one site's shares (see secureAggregationProblem).
   */
  threshold: z.int().min(2).max(MAX_SECAGG_SITES),
  /**
   * c: each element of a site's weighted update ω·Δ is clamped to [−c, c] before it is rounded
   * into the ring (≥ 1: the weight element ω ≤ 1 shares the bound). Clamped elements are counted
   * in the site log; DP clipping (strategy.dp) bounds the whole update's norm instead. With
   * distributed DP it must be at least C + 10σ (σ: a site's noise share), so that no clipped,
   * noised value is ever clamped (fixed-point.ts, dpRingClipRange).
   */
  clipRange: z.number().min(1).max(1e6).default(DEFAULT_CLIP_RANGE),
  /** log2 of the fixed-point scale s; default the largest with sites·c·s < 2^31 (the sum cannot overflow). */
  scaleBits: z.int().min(0).max(RING_BITS - 2).optional(),
  /** The cap of the sample weight ω = min(samples / sampleCap, 1). */
  sampleCap: z.int().min(1).max(1_000_000_000).default(DEFAULT_SAMPLE_CAP),
  /** SecAgg+: each site masks with and shares to this many neighbours (a random Harary graph) instead of every site. */
  neighbours: z.int().min(2).max(MAX_SECAGG_SITES).optional(),
  /** How long the coordinator waits for the selected sites' keys, for their shares, and for the survivors' unmasking shares. */
  keysTimeoutSeconds: z.number().positive().max(86_400).default(60),
  sharesTimeoutSeconds: z.number().positive().max(86_400).default(60),
  unmaskTimeoutSeconds: z.number().positive().max(86_400).default(60),
});
export type SecureAggregationSpec = z.output<typeof SecureAggregationSpecSchema>;

export const AggregationSpecSchema = z.strictObject({
  secure: SecureAggregationSpecSchema.optional(),
});
export type AggregationSpec = z.output<typeof AggregationSpecSchema>;

/** The most sites one round selects: the strategies' sampleSize for every enrolled site online. */
export function sitesPerRound(enrolled: number, experiment: { minSites: number; fractionFit: number }): number {
  return Math.min(enrolled, Math.max(experiment.minSites, Math.ceil(experiment.fractionFit * enrolled - 1e-9)));
}

/**
 * Sites that hold shares of one site's secrets, itself included: every site of the round with
 * the complete graph, the site and its neighbours with SecAgg+ (hararyGraph rounds k up to even).
 */
export function shareHolders(roundSites: number, neighbours: number | undefined): number {
  if (neighbours === undefined) return roundSites;
  return Math.min(roundSites, 2 * Math.ceil(neighbours / 2) + 1);
}

/** log2 of the fixed-point scale for `maxSites` contributors (throws when nothing fits). */
export function secureScaleBits(spec: SecureAggregationSpec, maxSites: number): number {
  const params = fixedPointParams({ maxSites, clip: spec.clipRange, ...(spec.scaleBits !== undefined ? { scale: 2 ** spec.scaleBits } : {}) });
  return Math.round(Math.log2(params.scale));
}

/**
 * Why secure aggregation cannot run as configured, or null. The threshold rules:
 *  - t ≤ the sites a round selects, or no round can ever complete;
 *  - 2t > the sites holding one site's shares ("honest majority"). An honest site reveals, for
 *    each peer, either its self-mask share or its key share, never both (share-policy.ts). A
 *    coordinator that tells one group of sites "u survived" and another "u dropped" collects
 *    self-mask shares from the first and key shares from the second; it can remove all of u's
 *    masks only if both groups reach t, i.e. if 2t ≤ holders. (Sites colluding with the
 *    coordinator count against this margin: c of them need 2t > holders + c.)
 *  - the fixed-point sum of all enrolled sites must fit the signed 32-bit ring.
 */
export function secureAggregationProblem(
  spec: SecureAggregationSpec,
  experiment: { minSites: number; fractionFit: number; strategy: StrategySpec },
  enrolledSites: number,
): string | null {
  if (enrolledSites > MAX_SECAGG_SITES) return `secure aggregation supports at most ${MAX_SECAGG_SITES} sites; ${enrolledSites} are enrolled`;
  const perRound = sitesPerRound(enrolledSites, experiment);
  const t = spec.threshold;
  if (t > perRound) return `threshold ${t} is more than the ${perRound} site(s) a round selects, so no round could complete; use a threshold of at most ${perRound}`;
  const holders = shareHolders(perRound, spec.neighbours);
  if (2 * t <= holders) {
    return (
      `threshold ${t} must be more than half of the ${holders} sites holding each site's shares (at least ${Math.floor(holders / 2) + 1}): ` +
      `with t ≤ ${holders}/2 a coordinator could collect t self-mask shares of a site from some sites and t key shares from others, and unmask its update`
    );
  }
  if (t > holders) return `threshold ${t} is more than the ${holders} sites holding each site's shares (neighbours ${spec.neighbours ?? 'all'} + itself)`;
  try {
    secureScaleBits(spec, enrolledSites);
  } catch (e) {
    return e instanceof PatchFedError ? e.message : String(e);
  }
  const combination = strategyCombinationProblem(experiment.strategy, { secureAggregation: true });
  if (combination) return combination;
  const dp = experiment.strategy.dp;
  if (dp?.mode === 'distributed') {
    // The noise share each site adds (n = minSites, as coordinator/strategies/differential-privacy.ts uses).
    const sigma = noiseStd('distributed', dp, Math.max(1, experiment.minSites));
    const needed = dpRingClipRange(dp.clipNorm, sigma);
    if (spec.clipRange < needed) {
      const suggestion = Math.ceil(needed * 100) / 100;
      return (
        `with distributed DP (C = ${dp.clipNorm}, each site's noise std ${sigma.toPrecision(3)}) aggregation.secure.clipRange must be at least C + ${DP_NOISE_TAIL_SIGMAS}σ = ${needed.toPrecision(4)}, ` +
        `so that no clipped, noised value is clamped before masking (that would change the accounted mechanism); it is ${spec.clipRange}: set "clipRange": ${suggestion}`
      );
    }
  }
  return null;
}
