/**
 * Marginal loss for partially annotated sites (Shi et al., "Marginal loss and exclusion loss for
 * partially supervised multi-organ segmentation", MedIA 2021). A site that annotates fewer classes
 * (annotated-labels.ts) stores, say, edema + non-enhancing + enhancing tumour as one "whole
 * tumour" label, or an omitted class as background. Training on such a label with the plain loss
 * would teach the net that enhancing tumour *is* edema, or background. Instead the softmax
 * probabilities of the classes each site channel covers are summed (the marginal probability of
 * that channel), the one-hot target is mapped the same way, and the usual loss (soft Dice with the
 * thesis's background convention, §2.4.1, plus cross-entropy) is taken in the site's label space:
 *
 *     p′_c = Σ_{k : channelOf[k] = c} p_k,      q′_c = Σ_{k : channelOf[k] = c} q_k.
 *
 * The gradient then only asks for more mass on the *channel*: moving probability between classes
 * of one channel (e.g. from background to an unannotated class) leaves the loss unchanged, so no
 * class is pushed toward background because this site never drew it. Channel 0 stays background,
 * so excluding it from Dice keeps its meaning.
 */
import * as tf from '@tensorflow/tfjs-core';
import { PatchFedError } from '../../shared/errors.ts';

/** K×C 0/1 matrix: row k has a 1 in column channelOf[k]. */
function mergeMatrix(channelOf: readonly number[]): tf.Tensor2D {
  const K = channelOf.length;
  const C = Math.max(...channelOf) + 1;
  const m = new Float32Array(K * C);
  channelOf.forEach((c, k) => {
    if (!Number.isInteger(c) || c < 0) throw new PatchFedError('loss-config', `marginal loss: channelOf[${k}] must be a channel index ≥ 0, got ${c}`);
    m[k * C + c] = 1;
  });
  return tf.tensor2d(m, [K, C]);
}

/**
 * Sum the last axis of an NDHWC tensor [N, X, Y, Z, K] into the site's channels [N, X, Y, Z, C].
 * `channelOf[k]` is class k's channel (channel 0 = background and every unannotated class).
 */
export function mergeChannels(t: tf.Tensor, channelOf: readonly number[]): tf.Tensor {
  const K = Number(t.shape[t.rank - 1]);
  if (channelOf.length !== K) {
    throw new PatchFedError('loss-shape', `marginal loss: ${K} predicted classes but the site's annotation maps ${channelOf.length}`);
  }
  return tf.tidy(() => {
    const m = mergeMatrix(channelOf);
    const C = Number(m.shape[1]);
    const flat = tf.reshape(t, [-1, K]);
    return tf.reshape(tf.matMul(flat, m), [...t.shape.slice(0, -1), C]);
  });
}

/**
 * Probabilities and target in the site's label space, for any loss that expects NDHWC
 * softmax probabilities and a one-hot target. With no `channelOf` (every class annotated) the
 * inputs are returned as they are, so the default path computes exactly what it did before.
 */
export function marginalize(probs: tf.Tensor, target: tf.Tensor, channelOf: readonly number[] | undefined): [tf.Tensor, tf.Tensor] {
  if (!channelOf) return [probs, target];
  return [mergeChannels(probs, channelOf), mergeChannels(target, channelOf)];
}
