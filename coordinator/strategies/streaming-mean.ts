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
 * them; add() still checks the manifest (cheap: no value is read twice). If reading an update
 * fails half-way, the sum is no longer a sum of whole updates: the aggregation is marked broken
 * and finish() refuses, so a partial update can never reach a checkpoint.
 */
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import { checkManifestMatches, type GlobalValues, type RunVisitor, type WeightRuns } from '../../shared/codec/index.ts';
import { sizeOf, type WeightSpec } from '../../shared/weights.ts';
import { deltaLayout, foldScaledDelta } from './delta-sum.ts';
import type { Aggregator } from './types.ts';

/**
 * Up to this many averaged values (32 MB of float64: every CPU preset) the accumulator is
 * float64; above it float32, so the coordinator of a thesis-size model holds about one model's
 * worth of accumulator rather than two.
 */
export const FLOAT64_MAX_ELEMENTS = 4 * 1024 * 1024;
/** Values per block handed to finish()'s sink. */
const OUTPUT_BLOCK = 256 * 1024;

export interface StreamingMeanOptions {
  /** Tensors for which the result keeps the global's values instead of averaging (FedBN norms). */
  keepGlobal?: (spec: WeightSpec) => boolean;
  /** For error messages, e.g. "round 4". */
  label?: string;
  /** Force the accumulator's precision (default: by model size, see FLOAT64_MAX_ELEMENTS). */
  precision?: 'float32' | 'float64';
}

export class StreamingWeightedMean implements Aggregator {
  private readonly manifest: WeightSpec[];
  /** Offset of each tensor in `sum`, or -1 when the tensor is kept from the global. */
  private readonly offsets: number[];
  private readonly sum: Float64Array | Float32Array;
  private readonly contributors = new Map<string, number>();
  private readonly label: string;
  private samples = 0;
  private finished = false;
  private busy = false;
  private broken: string | null = null;

  constructor(
    private readonly global: GlobalValues,
    options: StreamingMeanOptions = {},
  ) {
    this.label = options.label ?? 'aggregation';
    checkUniqueNames(global.manifest, this.label);
    const { manifest, offsets, total } = deltaLayout(global.manifest, options.keepGlobal);
    this.manifest = manifest;
    this.offsets = offsets;
    const precision = options.precision ?? (total <= FLOAT64_MAX_ELEMENTS ? 'float64' : 'float32');
    this.sum = precision === 'float64' ? new Float64Array(total) : new Float32Array(total);
  }

  get count(): number {
    return this.contributors.size;
  }

  get totalSamples(): number {
    return this.samples;
  }

  /** Site ids and sample counts of the accepted updates, in arrival order. */
  get contributions(): { siteId: string; numSamples: number }[] {
    return [...this.contributors].map(([siteId, numSamples]) => ({ siteId, numSamples }));
  }

  /** Internal state for memory checks: accumulator buffers, elements and bytes per element. */
  get accumulatorStats(): { buffers: number; elements: number; bytesPerElement: number } {
    return { buffers: 1, elements: this.sum.length, bytesPerElement: this.sum.BYTES_PER_ELEMENT };
  }

  async add(siteId: string, update: WeightRuns, numSamples: number): Promise<void> {
    if (this.finished) throw new PatchFedError('aggregation-closed', `Update from site '${siteId}' arrived after ${this.label} finished.`, { subject: siteId });
    if (this.busy) throw new PatchFedError('aggregation-busy', `Update from site '${siteId}' arrived while another update is being added to ${this.label}; commits must be serialised.`, { subject: siteId });
    if (this.contributors.has(siteId)) {
      throw new PatchFedError('invalid-update', `Update from site '${siteId}' rejected: the site already contributed to ${this.label}.`, { subject: siteId });
    }
    if (!(Number.isSafeInteger(numSamples) && numSamples >= 1)) {
      throw new PatchFedError('invalid-update', `Update from site '${siteId}' rejected: numSamples must be a positive integer, got ${String(numSamples)}.`, { subject: siteId });
    }
    checkManifestMatches(this.manifest, update.manifest, `update from site '${siteId}' (${this.label})`);
    this.busy = true;
    try {
      await foldScaledDelta(this.sum, this.offsets, this.global, update, numSamples);
    } catch (e) {
      this.broken = `reading the update from site '${siteId}' failed half-way (${errorMessage(e)})`;
      throw e;
    } finally {
      this.busy = false;
    }
    this.contributors.set(siteId, numSamples);
    this.samples += numSamples;
  }

  /** Streams the new global weights, tensor by tensor in blocks, to `sink`; the aggregator is closed afterwards. */
  finish(sink: RunVisitor): void {
    if (this.finished) throw new PatchFedError('aggregation-closed', `${this.label} was already finished.`);
    // The deadline can close a round while an update is half folded in: that sum is no sum of whole updates.
    if (this.busy) throw new PatchFedError('aggregation-busy', `${this.label} cannot be finished while an update is still being added.`);
    if (this.broken) throw new PatchFedError('aggregation-broken', `${this.label} cannot be finished: ${this.broken}.`);
    if (this.count === 0) throw new PatchFedError('no-updates', `${this.label}: no site update was accepted, nothing to aggregate.`);
    this.finished = true;
    const block = new Float32Array(OUTPUT_BLOCK);
    this.manifest.forEach((spec, t) => {
      const size = sizeOf(spec.shape);
      const base = this.offsets[t] ?? -1;
      for (let offset = 0; offset < size; offset += OUTPUT_BLOCK) {
        const n = Math.min(OUTPUT_BLOCK, size - offset);
        const g = this.global.read(t, offset, n);
        const out = block.subarray(0, n);
        if (base < 0) out.set(g);
        else for (let j = 0; j < n; j++) out[j] = (g[j] ?? 0) + (this.sum[base + offset + j] ?? 0) / this.samples;
        sink(t, offset, out);
      }
    });
  }
}

function checkUniqueNames(manifest: readonly WeightSpec[], label: string): void {
  const names = new Set<string>();
  for (const s of manifest) {
    if (names.has(s.name)) throw new PatchFedError('invalid-global', `${label}: tensor name '${s.name}' appears twice in the global manifest.`);
    names.add(s.name);
  }
}
