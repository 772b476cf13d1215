/**
 * Turn a preprocessed case into tfjs tensors. Kept apart from the loader so reading data never
 * loads tfjs; the caller owns (and must dispose) the returned tensors.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { PreprocessedCase, PreprocessedImage } from './preprocess.ts';

export type TensorLayout = 'channelsFirst' | 'channelsLast';

/**
 * Image as [C, X, Y, Z] ('channelsFirst', a view of the same order as the typed array) or
 * [X, Y, Z, C] ('channelsLast', what tf.conv3d's NDHWC expects after adding a batch axis).
 */
export function imageToTensor(c: PreprocessedImage, layout: TensorLayout = 'channelsFirst'): tf.Tensor4D {
  const [X, Y, Z] = c.shape;
  const first = tf.tensor4d(c.image, [c.channels, X, Y, Z], 'float32');
  if (layout === 'channelsFirst') return first;
  const last = tf.transpose(first, [1, 2, 3, 0]);
  first.dispose();
  return last;
}

/** Label as an int32 [X, Y, Z] tensor (tfjs has no uint8 dtype). */
export function labelToTensor(c: PreprocessedCase): tf.Tensor3D {
  return tf.tensor3d(Int32Array.from(c.label), c.shape, 'int32');
}

export function caseToTensors(c: PreprocessedCase, layout: TensorLayout = 'channelsFirst'): { image: tf.Tensor4D; label: tf.Tensor3D } {
  return { image: imageToTensor(c, layout), label: labelToTensor(c) };
}
