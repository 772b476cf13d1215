/**
 * Memory a case costs to decode and preprocess, checked against the site's budget before any
 * voxel is read. Measured (test/dataset-decode-memory.test.ts): gunzip + NIfTI parse + label
 * check + normalisation + channels-first transpose peak at up to ~3.2× the preprocessed case
 * (float32 image + uint8 label); CASE_PEAK_FACTOR keeps that margin.
 */
import type { NiftiReadOptions } from '../../shared/nifti/index.ts';

export const CASE_PEAK_FACTOR = 3.5;

/** Budget in MB (memoryBudgetMB, --max-memory) → the reader options that enforce it. */
export function readOptionsFor(maxVoxels: number | undefined, maxMemoryMB: number | undefined): NiftiReadOptions {
  return {
    ...(maxVoxels !== undefined ? { maxVoxels } : {}),
    ...(maxMemoryMB !== undefined ? { maxMemoryBytes: Math.floor(maxMemoryMB * 2 ** 20) } : {}),
  };
}

/** Estimated peak bytes of decoding and preprocessing one case of this shape. */
export function casePeakBytes(shape: readonly [number, number, number], channels: number): number {
  const voxels = shape[0] * shape[1] * shape[2];
  return Math.ceil(CASE_PEAK_FACTOR * (voxels * channels * 4 + voxels));
}

/** Why a case cannot be decoded within the budget, or null when it can (or there is no budget). */
export function caseOverBudget(shape: readonly [number, number, number], channels: number, read: NiftiReadOptions): string | null {
  if (read.maxMemoryBytes === undefined) return null;
  const need = casePeakBytes(shape, channels);
  if (need <= read.maxMemoryBytes) return null;
  const mb = (b: number) => `${Math.ceil(b / 2 ** 20)} MB`;
  return `decoding and preprocessing this ${shape.join('x')}x${channels} case needs about ${mb(need)} of memory, over the memory budget of ${mb(read.maxMemoryBytes)} (memoryBudgetMB / --max-memory)`;
}
