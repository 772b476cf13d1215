/**
 * Soft Dice loss (thesis §2.4.1) on softmax probabilities p and one-hot targets q, both NDHWC
 * [N, X, Y, Z, K]. Per channel k, summed over batch and space (or over space only with `perSample`):
 *
 *     L_k = 1 − (2·Σ p·q + ε) / (Σ p + Σ q + ε),      loss = mean over the kept channels.
 *
 * The all-background pitfall (§2.4.1, §4.2): with background excluded and no foreground in the
 * ground truth, the unsmoothed loss is 1 − 0/Σp = 1, constant, so nothing is learned. With ε:
 * - an absent class predicted empty (Σp = 0) scores L_k = 0 — correct, not a constant 1;
 * - with false positives, L_k = Σp / (Σp + ε), whose gradient ∂L_k/∂p = ε / (Σp + ε)² > 0 pushes
 *   every false-positive probability down. It is finite but small unless Σp ≲ ε, which is why the
 *   thesis's remedies stay available: include the background channel (`patch` and cascade stage 2)
 *   or skip empty patches in the sampler.
 * `skipAbsentChannels` instead averages only over channels present in the target (per sample with
 * `perSample`); a batch with none gives loss 0 and zero gradient, i.e. the patch is effectively skipped.
 */
import * as tf from '@tensorflow/tfjs-core';
import { PatchFedError } from '../../shared/errors.ts';


export interface SoftDiceOptions {
  includeBackground: boolean;
  /** Smoothing ε in numerator and denominator; default 1e-5 (MONAI DiceLoss smooth_nr/smooth_dr). */
  epsilon?: number;
  /** Dice per sample and channel, then the mean (default false: one Dice per channel over the batch). */
  perSample?: boolean;
  /** Average only over channels the target contains (default false). */
  skipAbsentChannels?: boolean;
}

function checkInputs(probs: tf.Tensor, target: tf.Tensor, opts: SoftDiceOptions): number {
  if (probs.rank !== 5 || target.rank !== 5) {
    throw new PatchFedError('loss-shape', `Dice loss needs rank-5 NDHWC tensors; got ranks ${probs.rank} and ${target.rank}`);
  }
  if (probs.shape.some((d, i) => d !== target.shape[i])) {
    throw new PatchFedError('loss-shape', `Dice loss: probabilities [${probs.shape.join(', ')}] and target [${target.shape.join(', ')}] differ in shape`);
  }
  const K = Number(probs.shape[4]);
  if (!opts.includeBackground && K < 2) throw new PatchFedError('loss-shape', `Dice loss without background needs at least 2 channels; got ${K}`);
  const eps = opts.epsilon ?? 1e-5;
  if (!(eps > 0 && Number.isFinite(eps))) throw new PatchFedError('loss-config', `Dice loss epsilon must be a positive number; got ${eps}`);
  return K;
}

/**
 * Per-channel losses L_k: shape [K′] (or [N, K′] with perSample), K′ = K or K−1 without background.
 * The caller disposes the result.
 */
export function softDicePerChannel(probs: tf.Tensor, target: tf.Tensor, opts: SoftDiceOptions): tf.Tensor {
  const K = checkInputs(probs, target, opts);
  const eps = opts.epsilon ?? 1e-5;
  return tf.tidy(() => {
    let p = probs;
    let q = target;
    if (!opts.includeBackground) {
      p = tf.slice(p, [0, 0, 0, 0, 1], [-1, -1, -1, -1, K - 1]);
      q = tf.slice(q, [0, 0, 0, 0, 1], [-1, -1, -1, -1, K - 1]);
    }
    const axes = opts.perSample ? [1, 2, 3] : [0, 1, 2, 3];
    const inter = tf.sum(tf.mul(p, q), axes);
    const denom = tf.add(tf.sum(p, axes), tf.sum(q, axes));
    return tf.sub(1, tf.div(tf.add(tf.mul(2, inter), eps), tf.add(denom, eps)));
  });
}

/** Scalar soft Dice loss (see module comment). Leaves no tensors behind but the result. */
export function softDiceLoss(probs: tf.Tensor, target: tf.Tensor, opts: SoftDiceOptions): tf.Scalar {
  return tf.tidy(() => {
    const perChannel = softDicePerChannel(probs, target, opts);
    if (!opts.skipAbsentChannels) return tf.mean(perChannel) as tf.Scalar;
    const K = Number(probs.shape[4]);
    const q = opts.includeBackground ? target : tf.slice(target, [0, 0, 0, 0, 1], [-1, -1, -1, -1, K - 1]);
    const present = tf.cast(tf.greater(tf.sum(q, opts.perSample ? [1, 2, 3] : [0, 1, 2, 3]), 0), 'float32');
    return tf.div(tf.sum(tf.mul(perChannel, present)), tf.maximum(tf.sum(present), 1)) as tf.Scalar;
  });
}
