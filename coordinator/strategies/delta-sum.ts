/**
 * What the streaming aggregators share: one flat accumulator of scaled deltas from the round's
 * global model, Σ sᵢ·(wᵢ − g), folded one update at a time, and the stream that turns it into the
 * new global model at the end. Tensors kept global (FedBN's norm layers) get no slot.
 *
 * DeltaSum owns everything the aggregators used to repeat: the add() preamble (closed, busy,
 * duplicate site, sample count, manifest), marking the sum broken when an update fails half-way
 * (a partial update must never reach a checkpoint), and finish()'s block streaming. An aggregator
 * supplies only the scale of each update (FedAvg: its sample count; DP: its clip factor) and how
 * a block of the sum becomes output values (FedAvg: g + Σ/N; DP: g + (Σ + noise)/m).
 *
 * The fold and the output loops are written once per accumulator precision so each stays
 * monomorphic (V8 optimises a loop over one typed-array kind several times faster than one that
 * sees both), and they read the update and the global in runs, never decoding an update whole.
 */
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import { checkManifestMatches, type GlobalValues, type RunVisitor, type WeightRuns } from '../../shared/codec/index.ts';
import { sizeOf, type WeightSpec } from '../../shared/weights.ts';

export interface DeltaLayout {
  /** A copy of the global manifest (the aggregator must not see later changes to the caller's). */
  manifest: WeightSpec[];
  /** Per tensor: its first element in the accumulator, or -1 for a tensor kept global. */
  offsets: number[];
  /** Elements in the accumulator. */
  total: number;
}

export function deltaLayout(manifest: readonly WeightSpec[], keepGlobal?: (spec: WeightSpec) => boolean): DeltaLayout {
  const copy = manifest.map((s) => ({ ...s, shape: [...s.shape] }));
  const offsets: number[] = [];
  let total = 0;
  for (const spec of copy) {
    if (keepGlobal?.(spec)) offsets.push(-1);
    else {
      offsets.push(total);
      total += sizeOf(spec.shape);
    }
  }
  return { manifest: copy, offsets, total };
}

type Accumulator = Float64Array | Float32Array;

/** sum[at..] += scale · (run − g), float64 accumulator (kept separate from the float32 twin: see the module comment). */
function foldInto64(sum: Float64Array, at: number, run: Float32Array, g: Float32Array, scale: number): void {
  const n = run.length;
  for (let j = 0; j < n; j++) sum[at + j]! += scale * (run[j]! - g[j]!); // in range: at + n ≤ sum.length (deltaLayout)
}

function foldInto32(sum: Float32Array, at: number, run: Float32Array, g: Float32Array, scale: number): void {
  const n = run.length;
  for (let j = 0; j < n; j++) sum[at + j]! += scale * (run[j]! - g[j]!); // in range: at + n ≤ sum.length (deltaLayout)
}

/** sum += scale · (update − global) over the accumulated tensors, one run at a time. */
export async function foldScaledDelta(sum: Accumulator, offsets: readonly number[], global: GlobalValues, update: WeightRuns, scale: number): Promise<void> {
  await update.forEachRun((tensor, offset, run) => {
    const base = offsets[tensor];
    if (base === undefined || base < 0) return;
    const g = global.read(tensor, offset, run.length);
    if (sum instanceof Float64Array) foldInto64(sum, base + offset, run, g, scale);
    else foldInto32(sum, base + offset, run, g, scale);
  });
}

/** ||update − global||₂ over the accumulated tensors (float64), one pass over the update. */
export async function deltaNorm(offsets: readonly number[], global: GlobalValues, update: WeightRuns): Promise<number> {
  let sq = 0;
  await update.forEachRun((tensor, offset, run) => {
    if ((offsets[tensor] ?? -1) < 0) return;
    const g = global.read(tensor, offset, run.length);
    for (let j = 0; j < run.length; j++) {
      const d = run[j]! - g[j]!;
      sq += d * d;
    }
  });
  return Math.sqrt(sq);
}

/** One block of the result: `out[j]` from the global's `g[j]` and the accumulated `sum[j]` (all of length out.length). */
export type FinishBlock = (spec: WeightSpec, g: Float32Array, sum: Accumulator, out: Float32Array) => void;

export interface DeltaSumOptions {
  /** Tensors for which the result keeps the global's values (FedBN norms): neither summed nor changed. */
  keepGlobal?: (spec: WeightSpec) => boolean;
  /** For error messages, e.g. "round 4 (fedavg)". */
  label: string;
  precision: 'float32' | 'float64';
}

/** Values per block handed to finish()'s sink. */
const OUTPUT_BLOCK = 256 * 1024;

export class DeltaSum {
  readonly label: string;
  readonly manifest: WeightSpec[];
  /** Offset of each tensor in `sum`, or -1 when the tensor is kept from the global. */
  readonly offsets: number[];
  private readonly sum: Accumulator;
  private readonly contributors = new Map<string, number>();
  private samples = 0;
  private finished = false;
  private busy = false;
  private broken: string | null = null;

  constructor(
    readonly global: GlobalValues,
    options: DeltaSumOptions,
  ) {
    this.label = options.label;
    checkUniqueNames(global.manifest, this.label);
    const { manifest, offsets, total } = deltaLayout(global.manifest, options.keepGlobal);
    this.manifest = manifest;
    this.offsets = offsets;
    this.sum = options.precision === 'float64' ? new Float64Array(total) : new Float32Array(total);
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

  /**
   * Folds `scaleOf(update)` · (update − global) into the sum. `scaleOf` may read the update (DP's
   * clip factor needs its norm); either way the update's values are read once more, to fold them.
   */
  async add(siteId: string, update: WeightRuns, numSamples: number, scaleOf: (update: WeightRuns) => number | Promise<number>): Promise<void> {
    if (this.finished) throw new PatchFedError('aggregation-closed', `Update from site '${siteId}' arrived after ${this.label} finished.`, { subject: siteId });
    if (this.busy) throw new PatchFedError('aggregation-busy', `Update from site '${siteId}' arrived while another update is being added to ${this.label}; commits must be serialised.`, { subject: siteId });
    this.checkEntry(siteId, update, numSamples);
    this.busy = true;
    try {
      // Nothing has been added before the scale is known: a failure here leaves the sum whole.
      const scale = await scaleOf(update);
      if (!Number.isFinite(scale)) throw new PatchFedError('invalid-update', `Update from site '${siteId}' rejected: its weight in ${this.label} is ${scale}.`, { subject: siteId });
      try {
        await foldScaledDelta(this.sum, this.offsets, this.global, update, scale);
      } catch (e) {
        this.broken = `reading the update from site '${siteId}' failed half-way (${errorMessage(e)})`;
        throw e;
      }
    } finally {
      this.busy = false;
    }
    this.contributors.set(siteId, numSamples);
    this.samples += numSamples;
  }

  private checkEntry(siteId: string, update: WeightRuns, numSamples: number): void {
    if (this.finished) throw new PatchFedError('aggregation-closed', `Update from site '${siteId}' arrived after ${this.label} finished.`, { subject: siteId });
    if (this.contributors.has(siteId)) {
      throw new PatchFedError('invalid-update', `Update from site '${siteId}' rejected: the site already contributed to ${this.label}.`, { subject: siteId });
    }
    if (!(Number.isSafeInteger(numSamples) && numSamples >= 1)) {
      throw new PatchFedError('invalid-update', `Update from site '${siteId}' rejected: numSamples must be a positive integer, got ${String(numSamples)}.`, { subject: siteId });
    }
    checkManifestMatches(this.manifest, update.manifest, `update from site '${siteId}' (${this.label})`);
  }

  /** Streams the new global weights, tensor by tensor in blocks, to `sink`; closed afterwards. */
  finish(sink: RunVisitor, block: FinishBlock): void {
    if (this.finished) throw new PatchFedError('aggregation-closed', `${this.label} was already finished.`);
    // The deadline can close a round while an update is half folded in: that sum is no sum of whole updates.
    if (this.busy) throw new PatchFedError('aggregation-busy', `${this.label} cannot be finished while an update is still being added.`);
    if (this.broken) throw new PatchFedError('aggregation-broken', `${this.label} cannot be finished: ${this.broken}.`);
    if (this.count === 0) throw new PatchFedError('no-updates', `${this.label}: no site update was accepted, nothing to aggregate.`);
    this.finished = true;
    const output = new Float32Array(OUTPUT_BLOCK);
    this.manifest.forEach((spec, t) => {
      const size = sizeOf(spec.shape);
      const base = this.offsets[t] ?? -1;
      for (let offset = 0; offset < size; offset += OUTPUT_BLOCK) {
        const n = Math.min(OUTPUT_BLOCK, size - offset);
        const g = this.global.read(t, offset, n);
        const out = output.subarray(0, n);
        if (base < 0) out.set(g);
        else block(spec, g, this.sum.subarray(base + offset, base + offset + n), out);
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
