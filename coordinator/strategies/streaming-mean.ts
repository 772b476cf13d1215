/**
 * Sample-weighted mean of site updates, folded in one update at a time.
 *
 * Memory is one float64 accumulator the size of the averaged part of the model, whatever the
 * number of sites: add() validates, multiplies by numSamples into the accumulator and keeps no
 * reference to the update. float64 keeps the rounding error of summing thousands of float32
 * updates far below float32 resolution, so no compensated summation is needed.
 */
import { PatchFedError } from '../../shared/errors.ts';
import { sizeOf, type NamedWeights, type WeightSpec } from '../../shared/weights.ts';
import type { Aggregator } from './types.ts';
import { DEFAULT_MAX_SAMPLES_PER_SITE, findWeightsProblem, validateNumSamples, validateWeights } from './validate-update.ts';

export interface StreamingMeanOptions {
  /** Tensors for which the result keeps the global's values instead of averaging (FedBN norms). */
  keepGlobal?: (spec: WeightSpec) => boolean;
  maxSamplesPerSite?: number;
  /** For error messages, e.g. "round 4". */
  label?: string;
}

export class StreamingWeightedMean implements Aggregator {
  private readonly manifest: WeightSpec[];
  /** Offset of each tensor in `sum`, or -1 when the tensor is kept from the global. */
  private readonly offsets: number[];
  private readonly sum: Float64Array;
  private readonly kept = new Map<number, Float32Array>();
  private readonly contributors = new Map<string, number>();
  private readonly maxSamples: number;
  private readonly label: string;
  private samples = 0;
  private finished = false;

  constructor(global: NamedWeights, options: StreamingMeanOptions = {}) {
    this.label = options.label ?? 'aggregation';
    this.maxSamples = options.maxSamplesPerSite ?? DEFAULT_MAX_SAMPLES_PER_SITE;
    validateGlobal(global, this.label);
    this.manifest = global.manifest.map((s) => ({ ...s, shape: [...s.shape] }));
    this.offsets = [];
    let total = 0;
    this.manifest.forEach((spec, i) => {
      if (options.keepGlobal?.(spec)) {
        this.offsets.push(-1);
        this.kept.set(i, Float32Array.from(global.values[i]!));
      } else {
        this.offsets.push(total);
        total += sizeOf(spec.shape);
      }
    });
    this.sum = new Float64Array(total);
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

  /** Internal state for memory checks: accumulator buffers and their total float64 elements. */
  get accumulatorStats(): { buffers: number; elements: number } {
    return { buffers: 1, elements: this.sum.length };
  }

  add(siteId: string, update: NamedWeights, numSamples: number): void {
    if (this.finished) {
      throw new PatchFedError('aggregation-closed', `Update from site '${siteId}' arrived after ${this.label} finished.`, { subject: siteId });
    }
    if (typeof siteId !== 'string' || siteId.length === 0) {
      throw new PatchFedError('invalid-update', `Update rejected in ${this.label}: empty site id.`);
    }
    if (this.contributors.has(siteId)) {
      throw new PatchFedError('invalid-update', `Update from site '${siteId}' rejected: the site already contributed to ${this.label}.`, { subject: siteId });
    }
    validateNumSamples(siteId, numSamples, this.maxSamples);
    // Validate everything before accumulating anything, so a rejected update leaves no trace.
    validateWeights(siteId, this.manifest, update);
    for (let i = 0; i < this.manifest.length; i++) {
      const offset = this.offsets[i]!;
      if (offset < 0) continue;
      const values = update.values[i]!;
      const sum = this.sum;
      for (let j = 0; j < values.length; j++) sum[offset + j]! += numSamples * values[j]!;
    }
    this.contributors.set(siteId, numSamples);
    this.samples += numSamples;
  }

  finish(): NamedWeights {
    if (this.finished) throw new PatchFedError('aggregation-closed', `${this.label} was already finished.`);
    if (this.count === 0) throw new PatchFedError('no-updates', `${this.label}: no site update was accepted, nothing to aggregate.`);
    this.finished = true;
    const values = this.manifest.map((spec, i) => {
      const offset = this.offsets[i]!;
      if (offset < 0) return this.kept.get(i)!;
      const out = new Float32Array(sizeOf(spec.shape));
      for (let j = 0; j < out.length; j++) out[j] = this.sum[offset + j]! / this.samples;
      return out;
    });
    return { manifest: this.manifest, values };
  }
}

/** The global model is ours, but a bad one would silently poison every round; check it once. */
function validateGlobal(global: NamedWeights, label: string): void {
  if (global === null || typeof global !== 'object' || !Array.isArray(global.manifest)) {
    throw new PatchFedError('invalid-global', `${label}: the global weights are not a {manifest, values} object.`);
  }
  const problem = findWeightsProblem(global.manifest, global);
  if (problem !== undefined) throw new PatchFedError('invalid-global', `${label}: the global weights are invalid: ${problem}`);
  const names = new Set<string>();
  for (const s of global.manifest) {
    if (names.has(s.name)) throw new PatchFedError('invalid-global', `${label}: tensor name '${s.name}' appears twice in the global manifest.`);
    names.add(s.name);
  }
}
