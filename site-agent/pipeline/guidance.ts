/**
 * Cascade stage-2 input (thesis §2.2.3, §3.3): the full-resolution image with the one-hot of a
 * coarse segmentation's FOREGROUND classes appended as K−1 extra channels.
 *
 * Where the coarse segmentation comes from:
 * - training: the ground truth nearest-downsampled to the stage-1 shape and nearest-upsampled back
 *   (thesis §3.3 step a), so stage 2 learns from guidance as coarse as stage 1 can deliver;
 * - inference: stage 1's prediction, argmax at low resolution, then nearest-upsampled. We choose this
 *   over "upsample probabilities trilinearly, then argmax" because it produces the same kind of
 *   blocky guidance stage 2 was trained on, and needs one uint8 full-size array instead of K floats.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../../shared/errors.ts';
import { allocFloat32, assertLabelsBelow, assertPositiveInt, assertShape3, checkCase, formatShape, voxelCount, type CaseVolume, type Shape3 } from './case.ts';
import { argmaxChannelsLast } from './patches.ts';
import { resampleLabels } from './resample.ts';

/** Channel count of the guided image: C image channels + K−1 foreground one-hot channels. */
export function guidedChannels(imageChannels: number, numClasses: number): number {
  return imageChannels + numClasses - 1;
}

/**
 * (C + K − 1, X, Y, Z) channels-first: the image's C channels, then for k = 1..K−1 a channel that is
 * 1 where `segmentation` == k and 0 elsewhere.
 */
export function buildGuidedImage(image: Float32Array, channels: number, shape: Shape3, segmentation: Uint8Array, numClasses: number): Float32Array {
  assertShape3(shape, 'guided image shape');
  assertPositiveInt(channels, 'image channel count');
  if (numClasses < 2) throw new PatchFedError('pipeline-classes', `the cascade needs at least 2 classes (background + foreground); got ${numClasses}`);
  const v = voxelCount(shape);
  if (image.length !== v * channels) {
    throw new PatchFedError('pipeline-shape', `guidance: image has ${image.length} values; shape ${formatShape(shape)} with ${channels} channel(s) needs ${v * channels}`);
  }
  if (segmentation.length !== v) {
    throw new PatchFedError('pipeline-shape', `guidance: segmentation has ${segmentation.length} values; shape ${formatShape(shape)} needs ${v}`);
  }
  assertLabelsBelow(segmentation, numClasses, 'guidance segmentation');
  const out = allocFloat32(v * guidedChannels(channels, numClasses), `guided image ${formatShape(shape)}`);
  out.set(image, 0);
  const base = v * (channels - 1); // channel for class k starts at (channels + k − 1)·v
  for (let i = 0; i < v; i++) {
    const k = segmentation[i]!;
    if (k !== 0) out[base + k * v + i] = 1;
  }
  return out;
}

/** Training guidance: ground truth nearest-down to `lowShape` and nearest-up back to `shape`. */
export function trainingGuidance(label: Uint8Array, shape: Shape3, lowShape: Shape3): Uint8Array {
  return resampleLabels(resampleLabels(label, shape, lowShape), lowShape, shape);
}

/**
 * Inference guidance from stage 1's probabilities (lowShape, K) channels-last: argmax at low
 * resolution, nearest-upsampled to `shape`.
 */
export function inferenceGuidance(stage1Probabilities: Float32Array, numClasses: number, lowShape: Shape3, shape: Shape3): Uint8Array {
  assertShape3(lowShape, 'stage-1 shape');
  if (stage1Probabilities.length !== voxelCount(lowShape) * numClasses) {
    throw new PatchFedError(
      'pipeline-shape',
      `stage-1 probabilities have ${stage1Probabilities.length} values; ${formatShape(lowShape)} with ${numClasses} classes needs ${voxelCount(lowShape) * numClasses}`,
    );
  }
  return resampleLabels(argmaxChannelsLast(stage1Probabilities, numClasses), lowShape, shape);
}

/** The case with its image replaced by the guided image (label, shape, id kept): stage-2 data. */
export function guidedCase(c: CaseVolume, segmentation: Uint8Array, numClasses: number): CaseVolume {
  checkCase(c);
  const out: CaseVolume = {
    image: buildGuidedImage(c.image, c.channels, c.shape, segmentation, numClasses),
    shape: c.shape,
    channels: guidedChannels(c.channels, numClasses),
  };
  if (c.id !== undefined) out.id = c.id;
  if (c.label !== undefined) out.label = c.label;
  return out;
}
