/** Shared helpers for the op and model tests: cpu backend, seeded tensors. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { SeededRandom } from '../shared/random.ts';

export async function useCpu(): Promise<void> {
  await tf.setBackend('cpu');
}

export function randomTensor(shape: number[], seed: number, std = 1, mean = 0): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = new SeededRandom(seed).normalArray(n, std).map((v) => v + mean);
  return tf.tensor(values, shape, 'float32');
}
