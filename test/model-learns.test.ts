import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { UNet3D } from '../site-agent/model/unet.ts';
import { SeededRandom } from '../shared/random.ts';
import { useCpu } from './ops-fixtures.ts';

beforeAll(useCpu);

/** A noisy bright ellipsoid on a darker background, and its mask: [1,16,16,8,1] and one-hot [1,16,16,8,2]. */
function syntheticCase(): { image: tf.Tensor5D; target: tf.Tensor5D; mask: Uint8Array } {
  const [X, Y, Z] = [16, 16, 8];
  const rng = new SeededRandom(3);
  const image = new Float32Array(X * Y * Z);
  const mask = new Uint8Array(X * Y * Z);
  for (let x = 0; x < X; x++)
    for (let y = 0; y < Y; y++)
      for (let z = 0; z < Z; z++) {
        const i = (x * Y + y) * Z + z;
        const inside = ((x - 7.5) / 5) ** 2 + ((y - 8) / 4) ** 2 + ((z - 3.5) / 3) ** 2 <= 1;
        mask[i] = inside ? 1 : 0;
        image[i] = (inside ? 1 : -0.5) + 0.6 * rng.normal();
      }
  const target = tf.tidy(() => tf.reshape(tf.oneHot(tf.tensor1d(Array.from(mask), 'int32'), 2), [1, X, Y, Z, 2])) as tf.Tensor5D;
  return { image: tf.tensor5d(image, [1, X, Y, Z, 1]), target, mask };
}

function softDiceLoss(probs: tf.Tensor5D, target: tf.Tensor5D): tf.Scalar {
  return tf.tidy(() => {
    const inter = tf.sum(tf.mul(probs, target), [0, 1, 2, 3]);
    const denom = tf.add(tf.sum(probs, [0, 1, 2, 3]), tf.sum(target, [0, 1, 2, 3]));
    return tf.sub(1, tf.mean(tf.div(tf.add(tf.mul(inter, 2), 1e-5), tf.add(denom, 1e-5)))) as tf.Scalar;
  });
}

describe('U-Net learns', () => {
  it('a 2-level net drives soft-Dice loss down on a 16×16×8 synthetic volume in 30 Adam steps', () => {
    const { image, target, mask } = syntheticCase();
    const model = new UNet3D({ inChannels: 1, numClasses: 2, base: 2, depth: 2, seed: 1 });
    const optimizer = tf.train.adam(2e-2);
    const losses: number[] = [];
    for (let step = 0; step < 30; step++) {
      const loss = optimizer.minimize(() => softDiceLoss(model.forward(image, true), target), true, model.trainableVariables)!;
      losses.push(loss.dataSync()[0]!);
      loss.dispose();
    }
    const first = losses[0]!;
    const last = Math.min(...losses.slice(-3));
    expect(first).toBeGreaterThan(0.3);
    expect(last).toBeLessThan(0.5 * first);

    // Inference (running statistics) segments the ellipsoid too, not only the training forward pass.
    const predicted = tf.tidy(() => tf.argMax(model.predict(image), 4).dataSync());
    let tp = 0, fp = 0, fn = 0;
    predicted.forEach((p, i) => {
      if (p === 1 && mask[i] === 1) tp++;
      else if (p === 1) fp++;
      else if (mask[i] === 1) fn++;
    });
    expect((2 * tp) / (2 * tp + fp + fn)).toBeGreaterThan(0.7);
    optimizer.dispose();
    model.dispose();
    tf.dispose([image, target]);
  });
});
