/**
 * Peak-memory measurement of a training step, per backend.
 *
 * - engineBytes: tf.profile()'s peakBytes — the largest total size of live tensors the tfjs engine
 *   tracked during the step (cpu, cpu-fast, wasm, tensorflow). It does not include the JS heap,
 *   the native convolution workspace (reported separately by the kernels), or allocator slack.
 * - rssBytes / externalBytes: the process's resident set and V8 external memory (ArrayBuffers)
 *   sampled after the step — an upper bound that includes everything else the process holds.
 * - wasmHeapBytes: the wasm backend's linear memory (it never shrinks, so it is a high-water mark).
 * - On the tensorflow backend the engine sees CPU-side tensors only; GPU bytes are not reported by
 *   tfjs-node-gpu, so on GPU PatchFed relies on the estimate (and nvidia-smi when present).
 */
import * as tf from '@tensorflow/tfjs-core';

export interface StepMemory {
  engineBytes: number;
  rssBytes: number;
  externalBytes: number;
  wasmHeapBytes?: number;
}

export async function profileStep<T>(fn: () => T | Promise<T>): Promise<{ result: T; memory: StepMemory }> {
  let result!: T;
  const info = await tf.profile(async () => {
    result = await fn();
    return [] as tf.Tensor[];
  });
  const mu = process.memoryUsage();
  const memory: StepMemory = { engineBytes: info.peakBytes, rssBytes: mu.rss, externalBytes: mu.external };
  if (tf.getBackend() === 'wasm') {
    const wasm = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm;
    if (wasm?.HEAPU8) memory.wasmHeapBytes = wasm.HEAPU8.byteLength;
  }
  return { result, memory };
}
