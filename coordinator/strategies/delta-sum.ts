/**
 * What the streaming aggregators share: where each averaged tensor sits in one flat accumulator
 * (tensors kept global, e.g. FedBN's norm layers, get no slot) and folding one update's delta
 * from the global model, scaled, into it — streamed from the update's runs, never decoded whole.
 */
import type { GlobalValues, WeightRuns } from '../../shared/codec/index.ts';
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

/** sum += scale · (update − global) over the accumulated tensors, one run at a time. */
export async function foldScaledDelta(
  sum: Float64Array | Float32Array,
  offsets: readonly number[],
  global: GlobalValues,
  update: WeightRuns,
  scale: number,
): Promise<void> {
  await update.forEachRun((tensor, offset, run) => {
    const base = offsets[tensor];
    if (base === undefined || base < 0) return;
    const g = global.read(tensor, offset, run.length);
    const at = base + offset;
    for (let j = 0; j < run.length; j++) sum[at + j] += scale * ((run[j] ?? 0) - (g[j] ?? 0));
  });
}
