/**
 * Sample-weighted mean of site updates, folded in one update at a time.
 *
 * Memory is one float64 accumulator the size of the averaged part of the model, whatever the
 * number of sites: add() streams the update's values (from memory or from its spool file) into
 * the accumulator and keeps nothing of it. float64 keeps the rounding error of summing thousands
 * of float32 updates far below float32 resolution, so no compensated summation is needed.
 *
 * Updates reach add() only after the validation path (shared/codec/weights-checks.ts) accepted
 * them; add() still checks the manifest (cheap: no value is read twice). If reading an update
 * fails half-way, the sum is no longer the sum of whole updates: the aggregation is marked broken
 * and finish() refuses, so a partial update can never reach a checkpoint.
 */
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import { checkManifestMatches, finiteCheck, inspectWeights, type WeightRuns } from '../../shared/codec/index.ts';
import { sizeOf, type NamedWeights, type WeightSpec } from '../../shared/weights.ts';
import type { Aggregator } from './types.ts';

export interface StreamingMeanOptions {
  /** Tensors for which the result keeps the global's values instead of averaging (FedBN norms). */
  keepGlobal?: (spec: WeightSpec) => boolean;
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
  private readonly label: string;
  private samples = 0;
  private finished = false;
  private busy = false;
  private broken: string | null = null;

  constructor(global: NamedWeights, options: StreamingMeanOptions = {}) {
    this.label = options.label ?? 'aggregation';
    validateGlobal(global, this.label);
    this.manifest = global.manifest.map((s) => ({ ...s, shape: [...s.shape] }));
    this.offsets = [];
    let total = 0;
    this.manifest.forEach((spec, i) => {
      const values = global.values[i] ?? new Float32Array(0);
      if (options.keepGlobal?.(spec)) {
        this.offsets.push(-1);
        this.kept.set(i, Float32Array.from(values));
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
    const sum = this.sum;
    try {
      await update.forEachRun((tensor, offset, run) => {
        const base = this.offsets[tensor];
        if (base === undefined || base < 0) return;
        const at = base + offset;
        for (let j = 0; j < run.length; j++) sum[at + j] += numSamples * (run[j] ?? 0);
      });
    } catch (e) {
      this.broken = `reading the update from site '${siteId}' failed half-way (${errorMessage(e)})`;
      throw e;
    } finally {
      this.busy = false;
    }
    this.contributors.set(siteId, numSamples);
    this.samples += numSamples;
  }

  finish(): NamedWeights {
    if (this.finished) throw new PatchFedError('aggregation-closed', `${this.label} was already finished.`);
    if (this.broken) throw new PatchFedError('aggregation-broken', `${this.label} cannot be finished: ${this.broken}.`);
    if (this.count === 0) throw new PatchFedError('no-updates', `${this.label}: no site update was accepted, nothing to aggregate.`);
    this.finished = true;
    const values = this.manifest.map((spec, i) => {
      const offset = this.offsets[i] ?? -1;
      const kept = this.kept.get(i);
      if (offset < 0 && kept) return kept;
      const out = new Float32Array(sizeOf(spec.shape));
      for (let j = 0; j < out.length; j++) out[j] = (this.sum[offset + j] ?? 0) / this.samples;
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
  const names = new Set<string>();
  for (const s of global.manifest) {
    if (names.has(s.name)) throw new PatchFedError('invalid-global', `${label}: tensor name '${s.name}' appears twice in the global manifest.`);
    names.add(s.name);
  }
  try {
    inspectWeights(global, [finiteCheck(`${label}: the global weights`)], `${label}: the global weights`);
  } catch (e) {
    throw new PatchFedError('invalid-global', errorMessage(e));
  }
}
