/**
 * The Medical Segmentation Decathlon / Metrics Reloaded metrics of one labelled volume against
 * its reference, per class: Dice, the 95th-percentile Hausdorff distance (HD95) and the
 * normalised surface Dice (NSD) at a tolerance in mm — all in physical units from the spacing.
 * `evaluate`, the compare command and cross-site validation share this one implementation.
 *
 * Definitions and empty-class conventions follow MONAI (monai/metrics):
 * - Dice: DiceMetric's default `ignore_empty=True` — NaN whenever the class is absent from the
 *   reference, whatever the prediction (dice.ts, policy 'nan-if-truth-empty').
 * - HD95: compute_hausdorff_distance(percentile=95, directed=False) — the 95th percentile of the
 *   distances from prediction surface to reference surface, and of the reverse ones, each with
 *   linear interpolation (torch.quantile), then the larger of the two. Both masks empty: NaN (no
 *   surface at all). Exactly one empty: +Infinity, MONAI's distance for a missing surface
 *   (get_surface_distance fills it with inf, and percentile=None returns inf). MONAI's percentile
 *   path currently turns that inf into NaN through torch.quantile's interpolation (issue #9095,
 *   fix proposed in PR #9096), which would drop missed structures from the averages; we keep inf.
 * - NSD: compute_surface_dice(use_subvoxels=False) — (surface voxels of each mask within the
 *   tolerance of the other's surface) / (all surface voxels of both). Both empty: NaN ("neither
 *   present in the prediction nor in the reference"); exactly one empty: 0.
 * Surface voxels and distances: see surface.ts (6-neighbourhood, exact EDT).
 *
 * Each class is evaluated inside the bounding box of (prediction ∪ reference) grown by one voxel,
 * as MONAI crops (CropForeground, margin 1): both surfaces lie inside it, so distances are exact,
 * and a small tumour in a 240×240×155 volume costs what its box costs.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../../shared/errors.ts';
import { confusionCounts, diceFromCounts } from './dice.ts';
import type { Grid3 } from './distance-transform.ts';
import { directedSurfaceDistances, percentile, surfaceVoxels } from './surface.ts';

export interface SegmentationMetricOptions {
  /** NSD tolerance in mm (same units as the spacing). */
  nsdToleranceMm: number;
}

export interface ClassMetrics {
  /** Label value of the class. */
  label: number;
  /** NaN when the reference lacks the class (MONAI DiceMetric ignore_empty=True). */
  dice: number;
  /** mm; NaN when both masks are empty, +Infinity when exactly one is. */
  hd95: number;
  /** In [0, 1]; NaN when both masks are empty, 0 when exactly one is. */
  nsd: number;
  predVoxels: number;
  labelVoxels: number;
  predSurfaceVoxels: number;
  labelSurfaceVoxels: number;
}

/** Per label value present in either volume: [min0, max0, min1, max1, min2, max2]. */
function boundingBoxes(pred: Uint8Array, label: Uint8Array, shape: Grid3): Map<number, number[]> {
  const [n0, n1, n2] = shape;
  const boxes = new Map<number, number[]>();
  const grow = (v: number, i: number, j: number, k: number) => {
    let b = boxes.get(v);
    if (b === undefined) {
      b = [i, i, j, j, k, k];
      boxes.set(v, b);
      return;
    }
    if (i < b[0]!) b[0] = i;
    if (i > b[1]!) b[1] = i;
    if (j < b[2]!) b[2] = j;
    if (j > b[3]!) b[3] = j;
    if (k < b[4]!) b[4] = k;
    if (k > b[5]!) b[5] = k;
  };
  for (let i = 0, p = 0; i < n0; i++) {
    for (let j = 0; j < n1; j++) {
      for (let k = 0; k < n2; k++, p++) {
        const a = pred[p]!;
        const b = label[p]!;
        if (a !== 0) grow(a, i, j, k);
        if (b !== 0 && b !== a) grow(b, i, j, k);
      }
    }
  }
  return boxes;
}

/** Binary masks of `value` inside [lo, hi] (inclusive, per axis), row-major over the box. */
function cropMasks(pred: Uint8Array, label: Uint8Array, shape: Grid3, value: number, lo: number[], hi: number[]) {
  const box: [number, number, number] = [hi[0]! - lo[0]! + 1, hi[1]! - lo[1]! + 1, hi[2]! - lo[2]! + 1];
  const predMask = new Uint8Array(box[0] * box[1] * box[2]);
  const labelMask = new Uint8Array(predMask.length);
  const [, n1, n2] = shape;
  for (let i = 0, q = 0; i < box[0]; i++) {
    for (let j = 0; j < box[1]; j++) {
      let p = ((lo[0]! + i) * n1 + lo[1]! + j) * n2 + lo[2]!;
      for (let k = 0; k < box[2]; k++, p++, q++) {
        if (pred[p] === value) predMask[q] = 1;
        if (label[p] === value) labelMask[q] = 1;
      }
    }
  }
  return { box, predMask, labelMask };
}

function assertInputs(pred: Uint8Array, label: Uint8Array, shape: Grid3, spacing: Grid3, labels: readonly number[], opts: SegmentationMetricOptions): void {
  if (shape.length !== 3 || !shape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new PatchFedError('metric-shape', `segmentation metrics: shape must be three positive integers, got [${shape.join(', ')}]`);
  }
  const voxels = shape[0] * shape[1] * shape[2];
  if (pred.length !== voxels || label.length !== voxels) {
    throw new PatchFedError('metric-shape', `segmentation metrics: shape ${shape.join('x')} has ${voxels} voxels, but the prediction has ${pred.length} and the reference ${label.length}`);
  }
  if (!spacing.every((s) => Number.isFinite(s) && s > 0)) {
    throw new PatchFedError('metric-spacing', `segmentation metrics: spacing must be three positive numbers (mm), got [${spacing.join(', ')}]`);
  }
  for (const v of labels) {
    if (!Number.isInteger(v) || v < 1 || v > 255) throw new PatchFedError('metric-labels', `segmentation metrics: class label values must be integers in 1..255, got ${v}`);
  }
  if (!(Number.isFinite(opts.nsdToleranceMm) && opts.nsdToleranceMm >= 0)) {
    throw new PatchFedError('metric-tolerance', `segmentation metrics: the NSD tolerance must be a number ≥ 0 (mm), got ${opts.nsdToleranceMm}`);
  }
}

/**
 * Dice, HD95 and NSD of every class in `labels` (label values, background excluded by the
 * caller). `pred` and `label` are label maps, row-major over `shape` (last axis fastest);
 * `spacing[a]` is the voxel size in mm along `shape[a]`. See the module comment for the
 * conventions.
 */
export function evaluateSegmentation(
  pred: Uint8Array,
  label: Uint8Array,
  shape: Grid3,
  spacing: Grid3,
  labels: readonly number[],
  opts: SegmentationMetricOptions,
): ClassMetrics[] {
  assertInputs(pred, label, shape, spacing, labels, opts);
  const counts = confusionCounts(pred, label, 256);
  const boxes = boundingBoxes(pred, label, shape);
  return labels.map((value) => {
    const tp = counts.tp[value]!;
    const fp = counts.fp[value]!;
    const fn = counts.fn[value]!;
    const base = { label: value, dice: diceFromCounts(tp, fp, fn, 'nan-if-truth-empty'), predVoxels: tp + fp, labelVoxels: tp + fn };
    const b = boxes.get(value);
    if (b === undefined) return { ...base, hd95: NaN, nsd: NaN, predSurfaceVoxels: 0, labelSurfaceVoxels: 0 };
    const lo = [0, 1, 2].map((a) => Math.max(0, b[2 * a]! - 1));
    const hi = [0, 1, 2].map((a) => Math.min(shape[a]! - 1, b[2 * a + 1]! + 1));
    const { box, predMask, labelMask } = cropMasks(pred, label, shape, value, lo, hi);
    // Inside the box, neighbours outside it are background: the box is the union's bounding box
    // grown by one voxel, or the volume's border, which also counts as background.
    const predSurface = surfaceVoxels(predMask, box);
    const labelSurface = surfaceVoxels(labelMask, box);
    const predToLabel = directedSurfaceDistances(predSurface, labelSurface, box, spacing);
    const labelToPred = directedSurfaceDistances(labelSurface, predSurface, box, spacing);
    const surfaces = { predSurfaceVoxels: predToLabel.length, labelSurfaceVoxels: labelToPred.length };
    if (predToLabel.length === 0 || labelToPred.length === 0) return { ...base, ...surfaces, hd95: Infinity, nsd: 0 };
    const hd95 = Math.max(percentile(predToLabel, 95), percentile(labelToPred, 95));
    let within = 0;
    for (const d of predToLabel) if (d <= opts.nsdToleranceMm) within++;
    for (const d of labelToPred) if (d <= opts.nsdToleranceMm) within++;
    return { ...base, ...surfaces, hd95, nsd: within / (predToLabel.length + labelToPred.length) };
  });
}
