import type * as tf from '@tensorflow/tfjs-core';
import type { NamedWeights } from '../../shared/weights.ts';

/**
 * What training and inference need from a segmentation network. UNet3D implements it; keeping
 * the trainer on this narrow interface lets tests drive it with tiny nets.
 */
export interface SegmentationNet {
  /** Softmax probabilities [N, X, Y, Z, K] (training = true uses batch statistics and updates running ones). */
  forward(x: tf.Tensor5D, training: boolean): tf.Tensor5D;
  readonly trainableVariables: tf.Variable[];
  getWeights(): NamedWeights;
  setWeights(w: NamedWeights): void;
}
