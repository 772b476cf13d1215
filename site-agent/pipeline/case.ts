/**
 * The array layouts every pipeline module shares, and their checks.
 *
 * - case image: Float32Array (C, X, Y, Z), row-major, z fastest: ((c*X + x)*Y + y)*Z + z
 * - case label: Uint8Array (X, Y, Z), row-major: (x*Y + y)*Z + z; value = class index (0 = background)
 * - model input/output and every "channels-last" array: (…, X, Y, Z, C) with the channel fastest,
 *   i.e. tfjs NDHWC: (((n*X + x)*Y + y)*Z + z)*C + c
 *
 * `site-agent/data/preprocess.ts`'s PreprocessedCase satisfies `CaseVolume` structurally.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../../shared/errors.ts';

export type Shape3 = readonly [number, number, number];
/** Voxel coordinates of a patch's first corner; may be negative or run past the volume (zero padding). */
export type Origin3 = readonly [number, number, number];
/** The axes of a Shape3/Origin3, typed so per-axis code indexes the tuples without `undefined`. */
export type Axis3 = 0 | 1 | 2;
export const AXES3: readonly Axis3[] = [0, 1, 2];

export interface CaseVolume {
  id?: string;
  /** (C, X, Y, Z) channels-first, z fastest. */
  image: Float32Array;
  /** (X, Y, Z) class indices; absent at inference. */
  label?: Uint8Array;
  shape: Shape3;
  channels: number;
}

/**
 * Largest typed array we allocate (elements). Node can address more, but a pipeline array this
 * big means a misconfigured shape; refusing early beats an out-of-memory crash mid-run.
 */
export const MAX_ARRAY_ELEMENTS = 2 ** 31 - 1;

export function voxelCount(shape: Shape3): number {
  return shape[0] * shape[1] * shape[2];
}

export function formatShape(shape: readonly number[]): string {
  return shape.join('x');
}

/** Throws unless `shape` is three positive integers. */
export function assertShape3(shape: readonly number[], what: string, subject?: string): asserts shape is Shape3 {
  if (shape.length !== 3 || !shape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new PatchFedError('pipeline-shape', `${what} must be three positive integers; got [${shape.join(', ')}]`, { subject });
  }
}

export function assertPositiveInt(n: number, what: string, subject?: string): void {
  if (!Number.isInteger(n) || n <= 0) {
    throw new PatchFedError('pipeline-shape', `${what} must be a positive integer; got ${n}`, { subject });
  }
}

/** Checks that a case's arrays have the lengths its shape and channel count promise. */
export function checkCase(c: CaseVolume, opts: { needLabel?: boolean } = {}): void {
  const subject = c.id;
  const name = c.id !== undefined ? `case ${c.id}` : 'case';
  assertShape3(c.shape, `${name}: shape`, subject);
  assertPositiveInt(c.channels, `${name}: channel count`, subject);
  const v = voxelCount(c.shape);
  if (c.image.length !== v * c.channels) {
    throw new PatchFedError(
      'pipeline-shape',
      `${name}: image has ${c.image.length} values but shape ${formatShape(c.shape)} with ${c.channels} channel(s) needs ${v * c.channels}`,
      { subject },
    );
  }
  if (c.label !== undefined && c.label.length !== v) {
    throw new PatchFedError('pipeline-shape', `${name}: label has ${c.label.length} values but shape ${formatShape(c.shape)} needs ${v}`, { subject });
  }
  if (opts.needLabel && c.label === undefined) {
    throw new PatchFedError('pipeline-no-label', `${name}: has no label volume, which training needs`, { subject });
  }
}

/** Refuses arrays beyond MAX_ARRAY_ELEMENTS before allocating them. */
export function assertAllocatable(elements: number, what: string, subject?: string): void {
  if (!Number.isSafeInteger(elements) || elements > MAX_ARRAY_ELEMENTS) {
    throw new PatchFedError(
      'pipeline-too-large',
      `${what} would need ${elements} elements (limit ${MAX_ARRAY_ELEMENTS}); use smaller patches, a smaller volume or a lower resolution`,
      { subject },
    );
  }
}

export function allocFloat32(elements: number, what: string, subject?: string): Float32Array {
  assertAllocatable(elements, what, subject);
  return new Float32Array(elements);
}

export function allocUint8(elements: number, what: string, subject?: string): Uint8Array {
  assertAllocatable(elements, what, subject);
  return new Uint8Array(elements);
}

/** Throws if any label value is ≥ numClasses (a label the model has no channel for). */
export function assertLabelsBelow(labels: Uint8Array, numClasses: number, what: string, subject?: string): void {
  assertPositiveInt(numClasses, 'number of classes', subject);
  if (numClasses > 256) throw new PatchFedError('pipeline-classes', `number of classes must be at most 256 (uint8 labels); got ${numClasses}`, { subject });
  if (numClasses === 256) return;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i]! >= numClasses) {
      throw new PatchFedError(
        'pipeline-label-range',
        `${what}: label value ${labels[i]} at index ${i} is not a class of this model (classes 0..${numClasses - 1})`,
        { subject },
      );
    }
  }
}
