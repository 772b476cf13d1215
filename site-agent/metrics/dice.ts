/**
 * Dice on whole label volumes (thesis §2.5.1: computed on the reconstructed segmentation, per
 * class, background excluded). Dice_k = 2·TP / (2·TP + FP + FN), counted over all voxels.
 *
 * Empty classes (policy `empty`):
 * - 'nan-if-both-empty' (default): NaN only when class k is absent from BOTH prediction and ground
 *   truth (0/0). If the ground truth lacks k but the prediction has it, Dice = 0 — false positives
 *   on an absent class are penalised.
 * - 'nan-if-truth-empty': NaN whenever the ground truth lacks k, whatever the prediction
 *   (MONAI `DiceMetric(ignore_empty=True)`, MONAI's default).
 * - 'one-if-both-empty': 1 when both are empty, else the formula (MONAI `ignore_empty=False`).
 * NaN entries are meant to be skipped by `nanMean`.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../../shared/errors.ts';
import { assertLabelsBelow, assertPositiveInt } from '../pipeline/case.ts';

export interface ConfusionCounts {
  /** Per class k (index = class): voxels with pred = k and truth = k. */
  tp: number[];
  /** pred = k, truth ≠ k. */
  fp: number[];
  /** pred ≠ k, truth = k. */
  fn: number[];
  /** pred ≠ k, truth ≠ k. */
  tn: number[];
}

/** One-vs-rest confusion counts of every class, from one pass over the volumes. */
export function confusionCounts(pred: Uint8Array, truth: Uint8Array, numClasses: number): ConfusionCounts {
  assertPositiveInt(numClasses, 'number of classes');
  if (pred.length !== truth.length) {
    throw new PatchFedError('metric-shape', `Dice: prediction has ${pred.length} voxels but ground truth has ${truth.length}`);
  }
  assertLabelsBelow(pred, numClasses, 'prediction');
  assertLabelsBelow(truth, numClasses, 'ground truth');
  const K = numClasses;
  const matrix = new Float64Array(K * K); // [truth][pred]
  for (let i = 0; i < pred.length; i++) matrix[truth[i]! * K + pred[i]!]!++;
  const tp: number[] = [];
  const fp: number[] = [];
  const fn: number[] = [];
  const tn: number[] = [];
  for (let k = 0; k < K; k++) {
    let predK = 0;
    let truthK = 0;
    for (let j = 0; j < K; j++) {
      predK += matrix[j * K + k]!;
      truthK += matrix[k * K + j]!;
    }
    const t = matrix[k * K + k]!;
    tp.push(t);
    fp.push(predK - t);
    fn.push(truthK - t);
    tn.push(pred.length - predK - truthK + t);
  }
  return { tp, fp, fn, tn };
}

export type EmptyClassPolicy = 'nan-if-both-empty' | 'nan-if-truth-empty' | 'one-if-both-empty';

export interface DiceOptions {
  /** Default false: class 0 is background and is left out (thesis §2.5.1). */
  includeBackground?: boolean;
  /** Default 'nan-if-both-empty'; see the module comment. */
  empty?: EmptyClassPolicy;
}

/** Dice of one class from its counts under an empty-class policy. */
export function diceFromCounts(tp: number, fp: number, fn: number, empty: EmptyClassPolicy = 'nan-if-both-empty'): number {
  const truth = tp + fn;
  const denom = 2 * tp + fp + fn;
  if (truth === 0 && empty === 'nan-if-truth-empty') return NaN;
  if (denom === 0) return empty === 'one-if-both-empty' ? 1 : NaN;
  return (2 * tp) / denom;
}

export interface PerClassDice {
  /** Class indices the scores belong to (1..K−1 without background). */
  classes: number[];
  dice: number[];
  counts: ConfusionCounts;
}

/** Per-class Dice of a predicted label volume against the ground truth (same shape, same order). */
export function diceScores(pred: Uint8Array, truth: Uint8Array, numClasses: number, opts: DiceOptions = {}): PerClassDice {
  const counts = confusionCounts(pred, truth, numClasses);
  const first = opts.includeBackground ? 0 : 1;
  const classes: number[] = [];
  const dice: number[] = [];
  for (let k = first; k < numClasses; k++) {
    classes.push(k);
    dice.push(diceFromCounts(counts.tp[k]!, counts.fp[k]!, counts.fn[k]!, opts.empty));
  }
  return { classes, dice, counts };
}

/** Mean of the non-NaN values; NaN if there are none. */
export function nanMean(values: readonly number[]): number {
  let sum = 0;
  let n = 0;
  for (const v of values) {
    if (!Number.isNaN(v)) {
      sum += v;
      n++;
    }
  }
  return n === 0 ? NaN : sum / n;
}
