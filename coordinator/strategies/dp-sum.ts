/**
 * DP-FedAvg's aggregate (McMahan et al. 2018, Algorithm 1, the fixed-denominator estimator with
 * every site weighted 1): the new global is g + (Σ_i clip_C(Δ_i) + N(0, σ²I)) / m, where Δ_i is
 * site i's update minus the global, m the number of sites *selected* for the round (fixed before
 * anyone trains, so a dropout cannot change the scale of the noise) and σ the noise the
 * coordinator adds: zC in central mode, 0 in distributed mode (the sites' updates carry their
 * shares). Unweighted on purpose: with sample-count weights one site could move the sum by more
 * than C and the noise would no longer match the accounted sensitivity.
 *
 * Central mode clips again here: the guarantee must not rest on every site clipping honestly.
 * (In distributed mode it cannot: an update already carries its share of the noise.)
 * The sum is float64 and the noise is drawn in float64 before dividing. Memory: one float64
 * accumulator the size of the averaged part of the model (the DeltaSum FedAvg uses too, delta-sum.ts).
 *
 * Running variances (`norm-running-var`, FedAvg with batch norm) are clamped at 0 after the noise:
 * post-processing, so the guarantee is unchanged, and a negative variance would break the sites'
 * batch norm. FedBN keeps them local instead, which is the better choice with DP.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { GlobalValues, RunVisitor, WeightRuns } from '../../shared/codec/index.ts';
import { clipFactor, type GaussianSampler } from '../../shared/dp/index.ts';
import type { WeightSpec } from '../../shared/weights.ts';
import { DeltaSum, deltaNorm, type FinishBlock } from './delta-sum.ts';
import type { Aggregator, CheckpointAttachments } from './types.ts';

export interface DpSumOptions {
  /** Tensors kept from the global (FedBN's norm tensors): neither clipped, summed nor noised. */
  keepGlobal?: (spec: WeightSpec) => boolean;
  label?: string;
  /** Clip each update's delta to this L2 norm here (central mode); undefined: no clipping (distributed mode). */
  clipNorm?: number;
  /** Standard deviation of the noise added to the sum (central: zC; distributed: 0). */
  noiseStd: number;
  sampler: GaussianSampler;
  /** m: the number of sites selected for the round. */
  denominator: number;
  /** The privacy record (and anything else) the checkpoint of this aggregation carries. */
  attachments?: () => CheckpointAttachments;
}

export class DpSumAggregator implements Aggregator {
  private readonly sum: DeltaSum;
  /** Updates the coordinator had to clip (central mode): sites should have clipped them already. */
  private clippedHere = 0;

  constructor(
    global: GlobalValues,
    private readonly options: DpSumOptions,
  ) {
    const label = options.label ?? 'DP aggregation';
    if (!(Number.isSafeInteger(options.denominator) && options.denominator >= 1)) {
      throw new PatchFedError('dp-settings', `${label}: the denominator (sites selected) must be a positive integer, got ${options.denominator}.`);
    }
    if (!(Number.isFinite(options.noiseStd) && options.noiseStd >= 0)) throw new PatchFedError('dp-settings', `${label}: the noise standard deviation must be >= 0, got ${options.noiseStd}.`);
    if (options.clipNorm !== undefined && !(options.clipNorm > 0)) throw new PatchFedError('dp-settings', `${label}: the clip norm must be positive, got ${options.clipNorm}.`);
    this.sum = new DeltaSum(global, { keepGlobal: options.keepGlobal, label, precision: 'float64' });
  }

  get count(): number {
    return this.sum.count;
  }

  get totalSamples(): number {
    return this.sum.totalSamples;
  }

  /** Updates clipped by the coordinator so far (central mode). */
  get clippedAtCoordinator(): number {
    return this.clippedHere;
  }

  /** Every update weighs 1, times its clip factor in central mode (its norm is read first, then it is folded). */
  add(siteId: string, update: WeightRuns, numSamples: number): Promise<void> {
    const { clipNorm } = this.options;
    return this.sum.add(siteId, update, numSamples, async (u) => {
      if (clipNorm === undefined) return 1;
      const factor = clipFactor(await deltaNorm(this.sum.offsets, this.sum.global, u), clipNorm);
      if (factor < 1) this.clippedHere++;
      return factor;
    });
  }

  finish(sink: RunVisitor): void {
    const { noiseStd, sampler, denominator } = this.options;
    const noisyBlock: FinishBlock = (spec, g, sum, out) => {
      const clampAtZero = spec.role === 'norm-running-var';
      for (let j = 0; j < out.length; j++) {
        const noisy = (sum[j] ?? 0) + (noiseStd > 0 ? noiseStd * sampler.normal() : 0);
        const v = (g[j] ?? 0) + noisy / denominator;
        out[j] = clampAtZero && v < 0 ? 0 : v;
      }
    };
    this.sum.finish(sink, noisyBlock);
  }

  checkpointAttachments(): CheckpointAttachments {
    return this.options.attachments?.() ?? {};
  }
}
