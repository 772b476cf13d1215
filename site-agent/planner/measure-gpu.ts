/**
 * How GPU memory is measured on the 'tensorflow' backend with @tensorflow/tfjs-node-gpu, where
 * tfjs reports nothing about device memory. With TF_FORCE_GPU_ALLOW_GROWTH=true (PatchFed sets
 * it) TensorFlow's BFC allocator grows its pool as tensors need it and never gives it back, so
 * the memory NVIDIA's driver attributes to this process after the first training steps is the
 * pool's high-water mark plus the CUDA context. Sampling it once after the backend initialised
 * (context only) and once after the steps gives the steps' device peak — the GPU counterpart of
 * the RSS delta in measure-rss.ts, to compare with the engine estimate.
 *
 * UNTESTED on a GPU (there is none here): only the parsing of nvidia-smi's output is tested.
 */
import { spawnSync } from 'node:child_process';

export type NvidiaSmi = (args: readonly string[]) => { status: number | null; stdout: string };

const runNvidiaSmi: NvidiaSmi = (args) => {
  const r = spawnSync('nvidia-smi', args, { encoding: 'utf8', timeout: 10_000 });
  return { status: r.error ? null : r.status, stdout: r.stdout ?? '' };
};

/**
 * Device memory NVIDIA attributes to process `pid` (summed over its GPUs), in bytes; null when
 * nvidia-smi is missing or fails. 0 when the process holds no GPU memory.
 */
export function gpuProcessMemoryBytes(pid: number = process.pid, smi: NvidiaSmi = runNvidiaSmi): number | null {
  const r = smi(['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits']);
  if (r.status !== 0) return null;
  let mib = 0;
  for (const line of r.stdout.split('\n')) {
    const [p, used] = line.split(',').map((s) => s.trim());
    if (Number(p) === pid && used !== undefined && /^\d+$/.test(used)) mib += Number(used);
  }
  return mib * 1024 * 1024;
}

/** Device memory growth of this process while `fn` runs (null without nvidia-smi). */
export async function measureGpuDelta<T>(fn: () => T | Promise<T>, smi: NvidiaSmi = runNvidiaSmi): Promise<{ result: T; deltaBytes: number | null }> {
  const before = gpuProcessMemoryBytes(process.pid, smi);
  const result = await fn();
  const after = gpuProcessMemoryBytes(process.pid, smi);
  return { result, deltaBytes: before === null || after === null ? null : after - before };
}
