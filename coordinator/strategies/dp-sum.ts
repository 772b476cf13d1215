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
 * accumulator the size of the averaged part of the model.
 *
 * Running variances (`norm-running-var`, FedAvg with batch norm) are clamped at 0 after the noise:
 * post-processing, so the guarantee is unchanged, and a negative variance would break the sites'
 * batch norm. FedBN keeps them local instead, which is the better choice with DP.
 */
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import { checkManifestMatches, type GlobalValues, type RunVisitor, type WeightRuns } from '../../shared/codec/index.ts';
import { clipFactor, type GaussianSampler } from '../../shared/dp/index.ts';
import { sizeOf, type WeightSpec } from '../../shared/weights.ts';
import { deltaLayout, foldScaledDelta } from './delta-sum.ts';
import type { Aggregator, CheckpointAttachments } from './types.ts';

const OUTPUT_BLOCK = 256 * 1024;

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
  private readonly manifest: WeightSpec[];
  private readonly offsets: number[];
  private readonly sum: Float64Array;
  private readonly contributors = new Map<string, number>();
  private readonly label: string;
  private samples = 0;
  private finished = false;
  private busy = false;
  private broken: string | null = null;
  /** Updates the coordinator had to clip (central mode): sites should have clipped them already. */
  private clippedHere = 0;

  constructor(
    private readonly global: GlobalValues,
    private readonly options: DpSumOptions,
  ) {
    this.label = options.label ?? 'DP aggregation';
    if (!(Number.isSafeInteger(options.denominator) && options.denominator >= 1)) {
      throw new PatchFedError('dp-settings', `${this.label}: the denominator (sites selected) must be a positive integer, got ${options.denominator}.`);
    }
    if (!(Number.isFinite(options.noiseStd) && options.noiseStd >= 0)) throw new PatchFedError('dp-settings', `${this.label}: the noise standard deviation must be >= 0, got ${options.noiseStd}.`);
    if (options.clipNorm !== undefined && !(options.clipNorm > 0)) throw new PatchFedError('dp-settings', `${this.label}: the clip norm must be positive, got ${options.clipNorm}.`);
    const { manifest, offsets, total } = deltaLayout(global.manifest, options.keepGlobal);
    this.manifest = manifest;
    this.offsets = offsets;
    this.sum = new Float64Array(total);
  }

  get count(): number {
    return this.contributors.size;
  }

  get totalSamples(): number {
    return this.samples;
  }

  /** Updates clipped by the coordinator so far (central mode). */
  get clippedAtCoordinator(): number {
    return this.clippedHere;
  }

  async add(siteId: string, update: WeightRuns, numSamples: number): Promise<void> {
    if (this.finished) throw new PatchFedError('aggregation-closed', `Update from site '${siteId}' arrived after ${this.label} finished.`, { subject: siteId });
    if (this.busy) throw new PatchFedError('aggregation-busy', `Update from site '${siteId}' arrived while another update is being added to ${this.label}; commits must be serialised.`, { subject: siteId });
    if (this.contributors.has(siteId)) throw new PatchFedError('invalid-update', `Update from site '${siteId}' rejected: the site already contributed to ${this.label}.`, { subject: siteId });
    if (!(Number.isSafeInteger(numSamples) && numSamples >= 1)) {
      throw new PatchFedError('invalid-update', `Update from site '${siteId}' rejected: numSamples must be a positive integer, got ${String(numSamples)}.`, { subject: siteId });
    }
    checkManifestMatches(this.manifest, update.manifest, `update from site '${siteId}' (${this.label})`);
    this.busy = true;
    try {
      let factor = 1;
      if (this.options.clipNorm !== undefined) {
        factor = clipFactor(await this.deltaNorm(update), this.options.clipNorm);
        if (factor < 1) this.clippedHere++;
      }
      await foldScaledDelta(this.sum, this.offsets, this.global, update, factor);
    } catch (e) {
      this.broken = `reading the update from site '${siteId}' failed half-way (${errorMessage(e)})`;
      throw e;
    } finally {
      this.busy = false;
    }
    this.contributors.set(siteId, numSamples);
    this.samples += numSamples;
  }

  private async deltaNorm(update: WeightRuns): Promise<number> {
    let sq = 0;
    await update.forEachRun((tensor, offset, run) => {
      if ((this.offsets[tensor] ?? -1) < 0) return;
      const g = this.global.read(tensor, offset, run.length);
      for (let j = 0; j < run.length; j++) {
        const d = (run[j] ?? 0) - (g[j] ?? 0);
        sq += d * d;
      }
    });
    return Math.sqrt(sq);
  }

  finish(sink: RunVisitor): void {
    if (this.finished) throw new PatchFedError('aggregation-closed', `${this.label} was already finished.`);
    if (this.busy) throw new PatchFedError('aggregation-busy', `${this.label} cannot be finished while an update is still being added.`);
    if (this.broken) throw new PatchFedError('aggregation-broken', `${this.label} cannot be finished: ${this.broken}.`);
    if (this.count === 0) throw new PatchFedError('no-updates', `${this.label}: no site update was accepted, nothing to aggregate.`);
    this.finished = true;
    const { noiseStd, sampler, denominator } = this.options;
    const block = new Float32Array(OUTPUT_BLOCK);
    this.manifest.forEach((spec, t) => {
      const size = sizeOf(spec.shape);
      const base = this.offsets[t] ?? -1;
      const clampAtZero = spec.role === 'norm-running-var';
      for (let offset = 0; offset < size; offset += OUTPUT_BLOCK) {
        const n = Math.min(OUTPUT_BLOCK, size - offset);
        const g = this.global.read(t, offset, n);
        const out = block.subarray(0, n);
        if (base < 0) out.set(g);
        else {
          for (let j = 0; j < n; j++) {
            const noisy = (this.sum[base + offset + j] ?? 0) + (noiseStd > 0 ? noiseStd * sampler.normal() : 0);
            const v = (g[j] ?? 0) + noisy / denominator;
            out[j] = clampAtZero && v < 0 ? 0 : v;
          }
        }
        sink(t, offset, out);
      }
    });
  }

  checkpointAttachments(): CheckpointAttachments {
    return this.options.attachments?.() ?? {};
  }
}
