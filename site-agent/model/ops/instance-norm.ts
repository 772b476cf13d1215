/**
 * Instance normalisation for rank-5 NDHWC tensors (PyTorch InstanceNorm3d with affine=True,
 * no running statistics): each sample and channel is normalised over its own D, H, W.
 * Unlike batch norm it behaves the same in training and inference and does not depend on
 * batch size, which suits patch training with batch size 1.
 */
import * as tf from '@tensorflow/tfjs-core';
import '../../backend/gradients/index.ts';
import { PatchFedError } from '../../../shared/errors.ts';

export const INSTANCE_NORM_EPSILON = 1e-5;

const SPATIAL_AXES = [1, 2, 3];

export function instanceNorm(
  x: tf.Tensor5D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  epsilon = INSTANCE_NORM_EPSILON,
): tf.Tensor5D {
  const [, d, h, w] = x.shape;
  if (d * h * w < 2) {
    throw new PatchFedError(
      'model-input',
      `Instance norm needs more than one voxel per sample; got input [${x.shape}]. Use a larger patch or a shallower U-Net.`,
      { subject: 'input' },
    );
  }
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, SPATIAL_AXES, true); // [N,1,1,1,C]
    const scale = tf.mul(gamma, tf.rsqrt(tf.add(variance, epsilon)));
    const shift = tf.sub(beta, tf.mul(mean, scale));
    return tf.add(tf.mul(x, scale), shift) as tf.Tensor5D;
  });
}
