/**
 * Robust aggregation math for when individual updates are visible (secure aggregation off), over
 * slices: the caller feeds, for one slice of the model, the same slice of every received update
 * (read from their spool files), so memory is O(model) for the result + O(sites × slice).
 *
 *   coordinate-wise median      Yin, Chen, Ramchandran, Bartlett 2018, "Byzantine-robust
 *                               distributed learning", Def. 1 (med); numpy's convention for even n
 *                               (mean of the two middle values).
 *   β-trimmed mean              ibid., Def. 2 (trmean_β): per coordinate drop the ⌊βn⌋ largest and
 *                               ⌊βn⌋ smallest values, average the rest.
 *   norm-clipped mean with an   each update's delta Δ_i = w_i − w_global scaled to norm ≤ B
 *   adaptive bound              (norm bounding, Sun et al. 2019, "Can you really backdoor federated
 *                               learning?", §4), B = multiplier × the round's median ‖Δ_i‖: the
 *                               median norm is set by the honest majority, so one huge update
 *                               cannot raise the bound it is clipped to.
 *
 * Median and trimmed mean are *unweighted* — one site, one vote. Their guarantees (Yin et al.
 * 2018, Thm. 1 and 4) bound the influence of a fraction of Byzantine *sites*; weighting by
 * self-reported sample counts would let one lying site claim a huge count and become the median.
 * The clipped mean takes weights from the caller (sample counts, or capped ones, or all 1): the
 * clip bounds each update's size, the weights its share.
 *
 * Inputs are validated upstream (finite values, matching manifests); all sums are float64.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../../shared/errors.ts';

function checkSlices(slices: readonly Float32Array[], out: Float32Array, what: string): void {
  if (slices.length === 0) throw new PatchFedError('robust-aggregation', `${what}: no update to aggregate.`);
  for (const s of slices) {
    if (s.length !== out.length) throw new PatchFedError('robust-aggregation', `${what}: update slices of ${s.length} and ${out.length} elements do not line up.`);
  }
}

/** Sorts the first n entries of `a` ascending (insertion sort: n is a number of sites). */
function sortSmall(a: Float64Array, n: number): void {
  if (n > 32) {
    a.subarray(0, n).sort();
    return;
  }
  for (let i = 1; i < n; i++) {
    const v = a[i]!;
    let k = i - 1;
    while (k >= 0 && a[k]! > v) {
      a[k + 1] = a[k]!;
      k--;
    }
    a[k + 1] = v;
  }
}

/** out[j] = median over sites of slices[i][j]. */
export function coordinateMedian(slices: readonly Float32Array[], out: Float32Array): void {
  checkSlices(slices, out, 'Coordinate-wise median');
  const n = slices.length;
  const scratch = new Float64Array(n);
  const mid = n >> 1;
  for (let j = 0; j < out.length; j++) {
    for (let i = 0; i < n; i++) scratch[i] = slices[i]![j]!;
    sortSmall(scratch, n);
    out[j] = n % 2 === 1 ? scratch[mid]! : 0.5 * (scratch[mid - 1]! + scratch[mid]!);
  }
}

/** ⌊βn⌋ values dropped at each end; at least one value must remain. */
export function trimCount(sites: number, beta: number): number {
  if (!(Number.isFinite(beta) && beta >= 0 && beta < 0.5)) {
    throw new PatchFedError('robust-aggregation', `Trimmed mean: β must be in [0, 0.5), got ${String(beta)}.`);
  }
  return Math.floor(beta * sites);
}

/** out[j] = mean of slices[·][j] without its ⌊βn⌋ smallest and ⌊βn⌋ largest values. */
export function trimmedMean(slices: readonly Float32Array[], beta: number, out: Float32Array): void {
  checkSlices(slices, out, 'Trimmed mean');
  const n = slices.length;
  const k = trimCount(n, beta);
  const kept = n - 2 * k;
  const scratch = new Float64Array(n);
  for (let j = 0; j < out.length; j++) {
    for (let i = 0; i < n; i++) scratch[i] = slices[i]![j]!;
    sortSmall(scratch, n);
    let s = 0;
    for (let i = k; i < n - k; i++) s += scratch[i]!;
    out[j] = s / kept;
  }
}

/** Σ_j (update[j] − global[j])² over one slice: add it up over slices for ‖Δ‖². */
export function squaredDeltaNorm(update: Float32Array, global: Float32Array): number {
  if (update.length !== global.length) throw new PatchFedError('robust-aggregation', 'Norm clipping: update and global slices do not line up.');
  let s = 0;
  for (let j = 0; j < update.length; j++) {
    const d = update[j]! - global[j]!;
    s += d * d;
  }
  return s;
}

function median(values: readonly number[]): number {
  const a = Float64Array.from(values).sort();
  const m = a.length >> 1;
  return a.length % 2 === 1 ? a[m]! : 0.5 * (a[m - 1]! + a[m]!);
}

/** B = multiplier × median of the round's update norms. */
export function adaptiveClipBound(norms: readonly number[], multiplier: number): number {
  if (norms.length === 0) throw new PatchFedError('robust-aggregation', 'Norm clipping: no update norms.');
  if (norms.some((x) => !(Number.isFinite(x) && x >= 0))) throw new PatchFedError('robust-aggregation', 'Norm clipping: update norms must be finite and non-negative.');
  if (!(Number.isFinite(multiplier) && multiplier > 0)) {
    throw new PatchFedError('robust-aggregation', `Norm clipping: the bound multiplier must be a positive number, got ${String(multiplier)}.`);
  }
  return multiplier * median(norms);
}

/** min(1, B/‖Δ_i‖) per update (1 for a zero update). */
export function clipFactors(norms: readonly number[], bound: number): number[] {
  return norms.map((n) => (n <= bound ? 1 : bound / n));
}

/**
 * out[j] = global[j] + Σ_i w_i f_i (u_i[j] − global[j]) / Σ_i w_i: the weighted mean of the
 * clipped deltas applied to the global slice.
 */
export function clippedMean(updates: readonly Float32Array[], global: Float32Array, factors: readonly number[], weights: readonly number[], out: Float32Array): void {
  checkSlices(updates, out, 'Norm-clipped mean');
  if (global.length !== out.length) throw new PatchFedError('robust-aggregation', 'Norm-clipped mean: the global slice does not line up.');
  if (factors.length !== updates.length || weights.length !== updates.length) {
    throw new PatchFedError('robust-aggregation', 'Norm-clipped mean: one clip factor and one weight per update are needed.');
  }
  const total = weights.reduce((a, b) => a + b, 0);
  if (!(total > 0) || weights.some((w) => !(Number.isFinite(w) && w >= 0))) {
    throw new PatchFedError('robust-aggregation', 'Norm-clipped mean: weights must be non-negative with a positive sum.');
  }
  const coef = updates.map((_, i) => (weights[i]! * factors[i]!) / total);
  for (let j = 0; j < out.length; j++) {
    const g = global[j]!;
    let s = 0;
    for (let i = 0; i < updates.length; i++) s += coef[i]! * (updates[i]![j]! - g);
    out[j] = g + s;
  }
}

/** [start, end) ranges covering `total` elements in slices of at most `sliceLength`. */
export function sliceRanges(total: number, sliceLength: number): { start: number; end: number }[] {
  if (!(Number.isSafeInteger(total) && total >= 0 && Number.isSafeInteger(sliceLength) && sliceLength >= 1)) {
    throw new PatchFedError('robust-aggregation', `Slicing: need a non-negative total and a positive slice length, got ${total} and ${sliceLength}.`);
  }
  const out: { start: number; end: number }[] = [];
  for (let start = 0; start < total; start += sliceLength) out.push({ start, end: Math.min(total, start + sliceLength) });
  return out;
}

/** Elements per slice so that `sites` float32 slices fit in `budgetBytes` (at least 1). */
export function sliceLengthForBudget(sites: number, budgetBytes: number): number {
  return Math.max(1, Math.floor(budgetBytes / (4 * Math.max(1, sites))));
}
