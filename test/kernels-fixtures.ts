/** Shared helpers for the native-kernel tests: run one computation on 'cpu' and 'cpu-fast'. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '../site-agent/backend/gradients/index.ts';
import { SeededRandom } from '../shared/random.ts';
import { nativeKernelsNotice, registerFastCpuBackend } from '../site-agent/kernels/index.ts';

const registration = await registerFastCpuBackend();

/** 'cpu-fast' when the addon is built, else null (tests skip with `unavailableReason`). */
export const fastBackend: string | null = registration?.backendName ?? null;
export const unavailableReason: string = nativeKernelsNotice() ?? '';
if (fastBackend === null) console.warn(`[kernels tests] skipped: ${unavailableReason}`);

export function seeded(n: number, seed: number, std = 1): Float32Array {
  return Float32Array.from(new SeededRandom(seed).normalArray(n, std));
}

export interface Input {
  values: Float32Array | Int32Array;
  shape: number[];
  dtype?: 'float32' | 'int32';
}

/** Runs `fn` on `backend` with fresh tensors made from `inputs`; returns each output's values and shape. */
export async function runOn(
  backend: string,
  inputs: Input[],
  fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
): Promise<{ values: Float32Array; shape: number[] }[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const xs = inputs.map((i) => tf.tensor(i.values, i.shape, i.dtype ?? 'float32'));
    const out = fn(...xs);
    return (Array.isArray(out) ? out : [out]).map((t) => ({ values: Float32Array.from(t.dataSync() as ArrayLike<number>), shape: t.shape }));
  });
}

/** ‖a − b‖ / max(‖b‖, floor) (‖a − b‖ when both are 0). */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 0): number {
  if (a.length !== b.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    num += d * d;
    den += b[i]! * b[i]!;
  }
  if (!Number.isFinite(num)) return Infinity;
  const scale = Math.max(Math.sqrt(den), floor);
  return scale === 0 ? Math.sqrt(num) : Math.sqrt(num) / scale;
}

/** Runs on both backends; returns the largest relative error over the outputs (Infinity on a shape mismatch). */
export async function compareBackends(inputs: Input[], fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[]): Promise<number> {
  const stock = await runOn('cpu', inputs, fn);
  const fast = await runOn(fastBackend!, inputs, fn);
  let worst = 0;
  stock.forEach((s, k) => {
    const f = fast[k]!;
    if (f.shape.join() !== s.shape.join()) worst = Infinity;
    else worst = Math.max(worst, relError(f.values, s.values));
  });
  return worst;
}
