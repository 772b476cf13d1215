/**
 * Gradient of Conv3DBackpropInputV2, which tfjs-core lacks (so tf.conv3dTranspose could not be
 * trained). The kernel computes dx = Jᵀ·dy of a convolution y = conv3d(x, W); it is linear in dy
 * and bilinear in (dy, W), so for an upstream gradient g:
 *   ∂/∂dy = conv3d(g, W)                 (the forward convolution J applied to g),
 *   ∂/∂W  = Conv3DBackpropFilterV2(x = g, dy) (⟨conv3d(g, W), dy⟩ differentiated in W),
 * exactly as tfjs-core does it for the 2D kernel. Registered globally (gradients are per kernel
 * name, not per backend), and only when nobody registered one first.
 */
import * as tf from '@tensorflow/tfjs-core';
import { attrsOf } from './kernel-args.ts';

export const conv3DBackpropInputGradConfig: tf.GradConfig = {
  kernelName: tf.Conv3DBackpropInputV2,
  inputsToSave: ['dy', 'filter'],
  gradFunc: (ddx, saved, attrs) => {
    const [dy, filter] = saved as [tf.Tensor5D, tf.Tensor5D];
    const { strides, pad } = attrsOf<tf.Conv3DBackpropInputV2Attrs>(attrs);
    const g = (Array.isArray(ddx) ? ddx[0] : ddx) as tf.Tensor5D;
    return {
      dy: () => tf.conv3d(g, filter, strides, pad as 'same' | 'valid'),
      filter: () =>
        tf.engine().runKernel(tf.Conv3DBackpropFilterV2, { x: g, dy }, {
          strides,
          pad,
          filterShape: filter.shape,
        }) as tf.Tensor,
    };
  },
};

/** Registers the gradient unless one exists; returns whether it was added. */
export function registerConv3DBackpropInputGradient(): boolean {
  if (tf.getGradient(tf.Conv3DBackpropInputV2) != null) return false;
  tf.registerGradient(conv3DBackpropInputGradConfig);
  return true;
}
