/**
 * Typed arrays ⇄ tfjs tensors for the model: NDHWC [N, X, Y, Z, C] inputs and one-hot targets
 * [N, X, Y, Z, K]. Everything upstream stays in typed arrays; tensors exist only here and in the
 * trainer/inference code, which owns (and disposes) what these functions return.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import * as tf from '@tensorflow/tfjs-core';
import { PatchFedError } from '../../shared/errors.ts';
import { allocFloat32, assertLabelsBelow, assertPositiveInt, assertShape3, checkCase, formatShape, voxelCount, AXES3, type CaseVolume, type Shape3 } from './case.ts';
import { extractPatchInto } from './patches.ts';

export type Shape5 = [number, number, number, number, number];

/** Wraps channels-last patch data (n, px, py, pz, C) as a tf.Tensor5D (copies into the backend). */
export function patchToTensor(data: Float32Array, n: number, patch: Shape3, channels: number): tf.Tensor5D {
  assertPositiveInt(n, 'batch size');
  assertShape3(patch, 'patch shape');
  assertPositiveInt(channels, 'channel count');
  const need = n * voxelCount(patch) * channels;
  if (data.length !== need) {
    throw new PatchFedError('pipeline-shape', `patch data has ${data.length} values; ${n}x${formatShape(patch)}x${channels} needs ${need}`);
  }
  return tf.tensor5d(data, [n, patch[0], patch[1], patch[2], channels], 'float32');
}

/**
 * One-hot encoding, channels-last: label (…) → (…, K) float32 with 1 at the label's class.
 * Throws if a label is ≥ K.
 */
export function labelsToOneHot(labels: Uint8Array, numClasses: number, subject?: string): Float32Array {
  assertLabelsBelow(labels, numClasses, 'labels', subject);
  const out = allocFloat32(labels.length * numClasses, 'one-hot labels', subject);
  for (let i = 0; i < labels.length; i++) out[i * numClasses + labels[i]!] = 1;
  return out;
}

/** `labelsToOneHot` as a tf.Tensor5D [n, px, py, pz, K] for labels (n, px, py, pz). */
export function labelsToOneHotTensor(labels: Uint8Array, n: number, patch: Shape3, numClasses: number): tf.Tensor5D {
  assertPositiveInt(n, 'batch size');
  assertShape3(patch, 'patch shape');
  if (labels.length !== n * voxelCount(patch)) {
    throw new PatchFedError('pipeline-shape', `labels have ${labels.length} values; ${n}x${formatShape(patch)} needs ${n * voxelCount(patch)}`);
  }
  return tf.tensor5d(labelsToOneHot(labels, numClasses), [n, patch[0], patch[1], patch[2], numClasses], 'float32');
}

/**
 * Whole case as one NDHWC batch [1, X', Y', Z', C] for the `full` U-Net, zero-padded at the far end
 * to `paddedShape` (e.g. `padShapeToMultiple(shape, 2 ** (depth - 1))`); crop the output back with
 * `reconstruct([{ origin: [0, 0, 0], data }], shape, paddedShape, K)`.
 */
export function caseToTensor(c: CaseVolume, paddedShape: Shape3 = c.shape): tf.Tensor5D {
  checkCase(c);
  assertShape3(paddedShape, 'padded shape', c.id);
  if (AXES3.some((a) => paddedShape[a] < c.shape[a])) {
    throw new PatchFedError('pipeline-shape', `padded shape ${formatShape(paddedShape)} is smaller than the case shape ${formatShape(c.shape)}`, { subject: c.id });
  }
  const data = allocFloat32(voxelCount(paddedShape) * c.channels, `padded ${formatShape(paddedShape)} input`, c.id);
  extractPatchInto(c, [0, 0, 0], paddedShape, data, 0);
  return tf.tensor5d(data, [1, paddedShape[0], paddedShape[1], paddedShape[2], c.channels], 'float32');
}
