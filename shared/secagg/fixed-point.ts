/**
 * Fixed-point encoding of a site's update into the ring Z_{2^32}, where secure aggregation's masks
 * live (Bonawitz et al. 2017, §3: inputs are vectors over Z_R; Bell et al. 2020 use the same ring).
 *
 * The arithmetic, with k = 32 ring bits, scale s, clip range c and at most n sites:
 *
 *   encode   q = round(s · clamp(x, −c, c)), an integer with |q| ≤ round(c·s), stored mod 2^k
 *            (two's complement: Uint32 holds q mod 2^32).
 *   sum      the coordinator adds masked vectors mod 2^k; after unmasking it holds Σ q_i mod 2^k.
 *   decode   read the sum as a signed k-bit integer and divide by s.
 *
 * Decoding is exact iff the true integer sum Σ q_i lies in [−2^(k−1), 2^(k−1) − 1], which every
 * sum of n values does iff n · round(c·s) ≤ 2^(k−1) − 1 — in short n·c·s < 2^(k−1) (checked by
 * `fixedPointParams`). Defaults: n ≤ 64, c = 4 and the largest power-of-two scale that fits,
 * s = 2^22 (64·4·2^22 = 2^30 < 2^31), i.e. a resolution of 2.4e-7 for updates up to ±4.
 * A power-of-two scale makes the division in `decode` exact in floating point.
 *
 * Error bound: each rounding is off by at most 1/(2s), so each decoded element of the sum of n
 * sites differs from the sum of their clamped values by at most n/(2s) (7.6e-6 for the defaults);
 * a mean over total weight W is off by at most n/(2s·W).
 *
 * Sample weighting (our design): weighting happens *before* quantisation, inside the masked
 * vector. A site encodes ω·Δ, with ω = min(n_samples / sampleCap, 1) ≤ 1 (the capped weights of
 * McMahan et al. 2018, §3 "DP-FedAvg"), followed by ω itself as one extra element. After
 * unmasking the coordinator holds Σ ω_i Δ_i and Σ ω_i, so the sample-weighted mean needs no sample
 * count in the clear (issue 12 §4), and since ω ≤ 1 the weighted value stays inside [−c, c]. The
 * mean is exactly FedAvg's sample-weighted mean while every site has n_samples ≤ sampleCap.
 *
 * Distributed DP (strategy.dp, mode 'distributed'): every site encodes its clipped, noised delta
 * with ω = 1 (DP-FedAvg weights every site alike, so one site moves the sum by at most C), and the
 * coordinator decodes the plain sum Σ Δ'_i, which the DP aggregator divides by its fixed
 * denominator m; the decoded Σω must then equal the number of included sites. The clip range
 * must cover the noise's tails (`dpRingClipRange`); the sum's error stays n/(2s) per element,
 * n/(2s·m) after dividing.
 *
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../errors.ts';

/** Bits of the ring Z_{2^k}. 32: native wrap-around on Uint32Array, 4 bytes per element as for float32. */
export const RING_BITS = 32;
const SIGNED_MAX = 2 ** (RING_BITS - 1) - 1;

export const DEFAULT_MAX_SITES = 64;
export const DEFAULT_CLIP_RANGE = 4;

export interface FixedPointParams {
  /** Values are multiplied by `scale` and rounded. */
  scale: number;
  /** Values are clamped to [−clip, clip] before scaling. */
  clip: number;
  /** Largest number of sites whose sum must not overflow. */
  maxSites: number;
}

/**
 * Checked parameters. Without `scale`, the largest power of two with maxSites·clip·scale < 2^31.
 * Throws PatchFedError('secagg-params') when the sum of maxSites values could overflow.
 */
export function fixedPointParams(options: { maxSites?: number; clip?: number; scale?: number } = {}): FixedPointParams {
  const maxSites = options.maxSites ?? DEFAULT_MAX_SITES;
  const clip = options.clip ?? DEFAULT_CLIP_RANGE;
  if (!(Number.isSafeInteger(maxSites) && maxSites >= 1)) {
    throw new PatchFedError('secagg-params', `Secure aggregation: maxSites must be a positive integer, got ${String(maxSites)}.`);
  }
  if (!(Number.isFinite(clip) && clip > 0)) {
    throw new PatchFedError('secagg-params', `Secure aggregation: the clip range must be a positive number, got ${String(clip)}.`);
  }
  const scale = options.scale ?? 2 ** Math.floor(Math.log2(SIGNED_MAX / (maxSites * clip)));
  if (!(Number.isFinite(scale) && scale > 0)) {
    throw new PatchFedError('secagg-params', `Secure aggregation: the scale must be a positive number, got ${String(scale)}.`);
  }
  const largest = Math.round(clip * scale);
  if (largest < 1 || maxSites * largest > SIGNED_MAX) {
    throw new PatchFedError(
      'secagg-params',
      `Secure aggregation: ${maxSites} sites × clip ${clip} × scale ${scale} does not fit a signed ${RING_BITS}-bit sum ` +
        `(needs maxSites·clip·scale < 2^${RING_BITS - 1} and clip·scale ≥ 1).`,
    );
  }
  return { scale, clip, maxSites };
}

/**
 * Distributed DP under secure aggregation (our design): a site encodes x_j = clip_C(Δ)_j + η_j
 * with weight 1, η_j ~ N(0, σ²), σ its noise share. Overflow is impossible whatever the noise —
 * the clamp to ±c and n·c·s < 2^31 (`fixedPointParams`) see to that — but a clamped value would
 * no longer be the accounted Gaussian mechanism, so c must leave room for the noise's tails:
 * |clip_C(Δ)_j| ≤ ‖clip_C(Δ)‖ ≤ C for every element, and |η_j| ≤ kσ except with probability
 * P(|N(0,1)| > k). With k = 10 that is 1.5e-23 per element, about 1e-11 for 19M parameters ×
 * 32 sites × 1000 rounds: c ≥ C + 10σ means no value is ever clamped in practice (the site still
 * counts and logs any clamping). The price is a few bits of scale: C = 10, σ = 0.12, 3 sites gives
 * c = 11.2 and s = 2^25, a resolution of 3e-8.
 */
export const DP_NOISE_TAIL_SIGMAS = 10;

/** The smallest clip range c that never clamps a site's clipped, noised value (see DP_NOISE_TAIL_SIGMAS). */
export function dpRingClipRange(clipNorm: number, siteNoiseStd: number): number {
  if (!(Number.isFinite(clipNorm) && clipNorm > 0)) throw new PatchFedError('secagg-params', `Secure aggregation: the DP clip norm must be a positive number, got ${String(clipNorm)}.`);
  if (!(Number.isFinite(siteNoiseStd) && siteNoiseStd >= 0)) throw new PatchFedError('secagg-params', `Secure aggregation: the DP noise std must be a non-negative number, got ${String(siteNoiseStd)}.`);
  return clipNorm + DP_NOISE_TAIL_SIGMAS * siteNoiseStd;
}

/** Per-element bound on |decoded sum − sum of the clamped inputs| for `sites` contributions: n/(2s). */
export function sumErrorBound(params: FixedPointParams, sites: number): number {
  return sites / (2 * params.scale);
}

/**
 * McMahan et al. 2018 (§3)'s capped weight ω = min(n/cap, 1): bounded by 1, so a weighted update
 * stays in the clip range and one site's influence is bounded whatever sample count it claims.
 */
export function cappedWeight(numSamples: number, sampleCap: number): number {
  if (!(Number.isFinite(numSamples) && numSamples >= 0)) {
    throw new PatchFedError('secagg-weight', `Secure aggregation: the sample count must be a non-negative number, got ${String(numSamples)}.`);
  }
  if (!(Number.isFinite(sampleCap) && sampleCap > 0)) {
    throw new PatchFedError('secagg-weight', `Secure aggregation: the sample cap must be a positive number, got ${String(sampleCap)}.`);
  }
  return Math.min(numSamples / sampleCap, 1);
}

/** Where the weight sits in an encoded vector: after the d update elements. */
export function encodedLength(updateLength: number): number {
  return updateLength + 1;
}

/** Gaussian noise source, see shared/dp/gaussian.ts. */
export interface NormalSource {
  /** One standard normal draw. */
  normal(): number;
}

export interface EncodeOptions {
  /** ω in [0, 1] (see `cappedWeight`); 1 for an unweighted sum, as DP-FedAvg uses. */
  weight: number;
  /** Multiplies the update first: the DP clip factor min(1, C/‖Δ‖) (shared/dp). Default 1. */
  clipFactor?: number;
  /** Distributed DP: each element gets ω·f·Δ_j + std·N(0,1), in float64, before rounding. */
  noise?: { std: number; source: NormalSource };
  /**
   * Write into this vector of d + 1 elements instead of a new one. It may share memory with
   * `delta` (a Float32Array view of the same bytes): element j is read before it is written.
   */
  into?: Uint32Array;
}

export interface EncodedUpdate {
  /** d + 1 ring elements: the encoded ω·f·Δ (+ noise), then ω. */
  vector: Uint32Array;
  /** Elements that were outside [−clip, clip] and were clamped (0 in normal operation). */
  clamped: number;
}

/**
 * Encodes one site's update (Δ = w_local − w_global) for secure aggregation: scale by the weight and
 * the clip factor, add the site's share of the DP noise, clamp, round, store mod 2^32, and append
 * the encoded weight. Everything before rounding is float64.
 */
export function encodeWeightedUpdate(delta: Float32Array, params: FixedPointParams, options: EncodeOptions): EncodedUpdate {
  const { weight } = options;
  const clipFactor = options.clipFactor ?? 1;
  if (!(Number.isFinite(weight) && weight >= 0 && weight <= 1)) {
    throw new PatchFedError('secagg-weight', `Secure aggregation: the update weight must be in [0, 1], got ${String(weight)}.`);
  }
  if (!(Number.isFinite(clipFactor) && clipFactor >= 0 && clipFactor <= 1)) {
    throw new PatchFedError('secagg-weight', `Secure aggregation: the clip factor must be in [0, 1], got ${String(clipFactor)}.`);
  }
  const std = options.noise?.std ?? 0;
  if (!(Number.isFinite(std) && std >= 0)) {
    throw new PatchFedError('secagg-noise', `Secure aggregation: the noise standard deviation must be a non-negative number, got ${String(std)}.`);
  }
  const { scale, clip } = params;
  if (clip < 1) {
    // The weight element (≤ 1) must fit the same overflow bound as the update elements.
    throw new PatchFedError('secagg-params', `Secure aggregation: weighted encoding needs a clip range ≥ 1 (the weight element), got ${clip}.`);
  }
  const factor = weight * clipFactor;
  if (options.into && options.into.length !== encodedLength(delta.length)) {
    throw new PatchFedError('secagg-length', `Secure aggregation: the target vector has ${options.into.length} elements, ${encodedLength(delta.length)} expected.`);
  }
  const vector = options.into ?? new Uint32Array(encodedLength(delta.length));
  let clamped = 0;
  const source = options.noise?.source;
  for (let j = 0; j < delta.length; j++) {
    let x = factor * delta[j]!;
    if (source && std > 0) x += std * source.normal();
    if (!(x >= -clip && x <= clip)) {
      if (Number.isNaN(x)) throw new PatchFedError('secagg-encode', `Secure aggregation: update element ${j} is not a number.`);
      x = x > 0 ? clip : -clip;
      clamped++;
    }
    vector[j] = Math.round(x * scale) >>> 0;
  }
  vector[delta.length] = Math.round(weight * scale) >>> 0;
  return { vector, clamped };
}

/** Encodes plain values (no weight element): clamp, round, mod 2^32. For tests and custom layouts. */
export function quantise(values: ArrayLike<number>, params: FixedPointParams): EncodedUpdate {
  const vector = new Uint32Array(values.length);
  let clamped = 0;
  for (let j = 0; j < values.length; j++) {
    let x = values[j] ?? 0;
    if (!(x >= -params.clip && x <= params.clip)) {
      if (Number.isNaN(x)) throw new PatchFedError('secagg-encode', `Secure aggregation: element ${j} is not a number.`);
      x = x > 0 ? params.clip : -params.clip;
      clamped++;
    }
    vector[j] = Math.round(x * params.scale) >>> 0;
  }
  return { vector, clamped };
}

/** Signed value of a ring element divided by the scale: the decoded sum at one position. */
export function dequantiseElement(element: number, params: FixedPointParams): number {
  return (element | 0) / params.scale;
}

export interface DecodedWeightedSum {
  /** Σ ω_i Δ_i / Σ ω_i: the sample-weighted mean update (float32, as weights are stored). */
  mean: Float32Array;
  /** Σ ω_i as decoded. */
  totalWeight: number;
}

/**
 * Decodes an unmasked sum of `encodeWeightedUpdate` vectors into the weighted mean update.
 * `fixedDenominator` replaces the decoded Σω (DP-FedAvg's fixed-denominator estimator, McMahan et
 * al. 2018 §3, where the realised weight sum must not steer the result).
 */
export function decodeWeightedMean(sum: Uint32Array, params: FixedPointParams, fixedDenominator?: number): DecodedWeightedSum {
  if (sum.length < 1) throw new PatchFedError('secagg-decode', 'Secure aggregation: the summed vector is empty (no weight element).');
  const d = sum.length - 1;
  const totalWeight = dequantiseElement(sum[d] ?? 0, params);
  const denominator = fixedDenominator ?? totalWeight;
  if (!(Number.isFinite(denominator) && denominator > 0)) {
    throw new PatchFedError('secagg-decode', `Secure aggregation: the total weight of the round is ${denominator}; nothing to average.`);
  }
  const mean = new Float32Array(d);
  const factor = 1 / (params.scale * denominator);
  for (let j = 0; j < d; j++) mean[j] = (sum[j]! | 0) * factor;
  return { mean, totalWeight };
}
