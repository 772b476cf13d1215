/**
 * Sample-weighted mean of site updates, folded in one update at a time.
 *
 * It accumulates Σ nᵢ·(wᵢ − g), the sample-weighted sum of each update's difference from the
 * round's global model g, and finishes with g + Σ nᵢ(wᵢ − g) / Σ nᵢ — algebraically the weighted
 * mean of the wᵢ. Memory is one accumulator the size of the averaged part of the model, whatever
 * the number of sites; the global model is read from wherever it lives (its checkpoint file on
 * the coordinator) a stretch at a time. Summing differences rather than weights keeps the
 * rounding error relative to the (small) update instead of the weights: a float32 accumulator,
 * used for large models to keep the coordinator near one model's worth of memory, then adds an
 * error of about k·2⁻²⁴·|Δ| after k sites, far below float32's resolution of w when |Δ| ≪ |w| as
 * in training; models up to FLOAT64_MAX_ELEMENTS accumulate in float64.
 *
 * Updates reach add() only after the validation path (shared/codec/weights-checks.ts) accepted
 * them; the shared DeltaSum (delta-sum.ts) still checks the manifest, and marks the sum broken if
 * reading an update fails half-way, so a partial update can never reach a checkpoint.
 */
import type { GlobalValues, RunVisitor, WeightRuns } from '../../shared/codec/index.ts';
import type { WeightSpec } from '../../shared/weights.ts';
import { DeltaSum, type FinishBlock } from './delta-sum.ts';
import type { Aggregator } from './types.ts';

/**
 * Up to this many averaged values (32 MB of float64: every CPU preset) the accumulator is
 * float64; above it float32, so the coordinator of a thesis-size model holds about one model's
 * worth of accumulator rather than two.
 */
export const FLOAT64_MAX_ELEMENTS = 4 * 1024 * 1024;

export interface StreamingMeanOptions {
  /** Tensors for which the result keeps the global's values instead of averaging (FedBN norms). */
  keepGlobal?: (spec: WeightSpec) => boolean;
  /** For error messages, e.g. "round 4". */
  label?: string;
  /** Force the accumulator's precision (default: by model size, see FLOAT64_MAX_ELEMENTS). */
  precision?: 'float32' | 'float64';
}

export class StreamingWeightedMean implements Aggregator {
  private readonly sum: DeltaSum;

  constructor(global: GlobalValues, options: StreamingMeanOptions = {}) {
    let averaged = 0;
    for (const spec of global.manifest) if (!options.keepGlobal?.(spec)) averaged += spec.shape.reduce((a, b) => a * b, 1);
    const precision = options.precision ?? (averaged <= FLOAT64_MAX_ELEMENTS ? 'float64' : 'float32');
    this.sum = new DeltaSum(global, { keepGlobal: options.keepGlobal, label: options.label ?? 'aggregation', precision });
  }

  get count(): number {
    return this.sum.count;
  }

  get totalSamples(): number {
    return this.sum.totalSamples;
  }

  /** Site ids and sample counts of the accepted updates, in arrival order. */
  get contributions(): { siteId: string; numSamples: number }[] {
    return this.sum.contributions;
  }

  /** Internal state for memory checks: accumulator buffers, elements and bytes per element. */
  get accumulatorStats(): { buffers: number; elements: number; bytesPerElement: number } {
    return this.sum.accumulatorStats;
  }

  /** Each update weighs its sample count. */
  add(siteId: string, update: WeightRuns, numSamples: number): Promise<void> {
    return this.sum.add(siteId, update, numSamples, () => numSamples);
  }

  /** Streams the new global weights, g + Σ nᵢ(wᵢ − g) / Σ nᵢ, tensor by tensor in blocks, to `sink`; the aggregator is closed afterwards. */
  finish(sink: RunVisitor): void {
    const inverse = 1 / this.sum.totalSamples;
    const meanBlock: FinishBlock = (_spec, g, sum, out) => {
      // Float64 and float32 sums get their own loop (monomorphic, see delta-sum.ts).
      if (sum instanceof Float64Array) addScaled64(out, g, sum, inverse);
      else addScaled32(out, g, sum, inverse);
    };
    this.sum.finish(sink, meanBlock);
  }
}

function addScaled64(out: Float32Array, g: Float32Array, sum: Float64Array, factor: number): void {
  for (let j = 0; j < out.length; j++) out[j] = (g[j] ?? 0) + (sum[j] ?? 0) * factor;
}

function addScaled32(out: Float32Array, g: Float32Array, sum: Float32Array, factor: number): void {
  for (let j = 0; j < out.length; j++) out[j] = (g[j] ?? 0) + (sum[j] ?? 0) * factor;
}
