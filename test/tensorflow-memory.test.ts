/**
 * The memory planner on the 'tensorflow' backend. tf.profile's engine bytes still count every
 * tensor handle there (the estimate must match them as on cpu), but TensorFlow keeps the data in
 * its own C++ tensors and runs kernels with their own scratch memory, which tfjs never sees. So
 * the check that matters is the process's peak RSS growth around real training steps (VmHWM,
 * measure-rss.ts), in a fresh process per configuration (TensorFlow's oneDNN allocator keeps
 * memory pooled, so a second configuration in one process would reuse the first one's pages).
 * The estimate bounds it: RSS Δ ≤ estimated step bytes + the runtime allowance, and it is not
 * wildly pessimistic either (RSS Δ ≥ half the estimate). GPU memory cannot be measured here;
 * the nvidia-smi reading that would measure it is tested on canned output.
 * Cost: ~25 s with the backend (two child processes).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { RUNTIME_OVERHEAD_BYTES } from '../site-agent/planner/estimate.ts';
import { gpuProcessMemoryBytes, measureGpuDelta } from '../site-agent/planner/measure-gpu.ts';
import { SMALL_CALIBRATION_SET } from '../site-agent/planner/calibrate.ts';
import { requireTensorflow } from './tensorflow-fixtures.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface ChildRow {
  label: string;
  estimatedEngineBytes: number;
  measuredEngineBytes: number;
  estimatedStepBytes: number;
  rssDeltaBytes: number | null;
  /** RSS growth from loading TensorFlow and initialising the backend (its fixed footprint). */
  loadRssBytes: number;
}

/** Calibrates one configuration on a fresh 'tensorflow' backend in a child process. */
function measureInChild(label: string): ChildRow {
  const script = `
    const rss0 = process.memoryUsage().rss;
    const { selectBackend } = await import('./site-agent/backend/select.ts');
    await selectBackend('tensorflow');
    const loadRssBytes = process.memoryUsage().rss - rss0;
    const { calibrate, SMALL_CALIBRATION_SET } = await import('./site-agent/planner/calibrate.ts');
    const [r] = await calibrate(SMALL_CALIBRATION_SET.filter((c) => c.label === ${JSON.stringify(label)}));
    process.stdout.write(JSON.stringify({ label: r.config.label, estimatedEngineBytes: r.estimatedEngineBytes, measuredEngineBytes: r.measured.engineBytes,
      estimatedStepBytes: r.estimatedStepBytes, rssDeltaBytes: r.measured.rssDeltaBytes, loadRssBytes }) + '\\n');`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    // Every allocation ≥ 128 KiB its own mapping, unmapped when freed: RSS tracks live memory.
    env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '131072' },
    timeout: 240_000,
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') as ChildRow;
}

const MB = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;

describe('planner on the tensorflow backend (CPU)', () => {
  // An activation-dominated slab patch and a weight-dominated net (peak in Adam's update).
  for (const label of ['patch 32×32×16 (slab), 4 ch', 'weights dominate: base 32 depth 4, 16³']) {
    it(`bounds the peak RSS growth of real training steps: ${label}`, (ctx) => {
      requireTensorflow(ctx);
      expect(SMALL_CALIBRATION_SET.some((c) => c.label === label)).toBe(true);
      const row = measureInChild(label);
      console.log(
        `tensorflow memory, ${label}: engine est ${MB(row.estimatedEngineBytes)} measured ${MB(row.measuredEngineBytes)}; ` +
          `step est ${MB(row.estimatedStepBytes)} RSS Δ ${row.rssDeltaBytes === null ? 'n/a' : MB(row.rssDeltaBytes)}; TensorFlow load +${MB(row.loadRssBytes)} RSS`,
      );
      // The handle count tfjs sees is the same on every backend.
      expect(Math.abs(row.estimatedEngineBytes / row.measuredEngineBytes - 1)).toBeLessThanOrEqual(0.05);
      expect(row.rssDeltaBytes, 'VmHWM is readable on Linux').not.toBeNull();
      const delta = row.rssDeltaBytes ?? 0;
      expect(delta).toBeLessThanOrEqual(row.estimatedStepBytes + RUNTIME_OVERHEAD_BYTES);
      expect(delta).toBeGreaterThanOrEqual(0.5 * row.estimatedStepBytes);
    }, 240_000);
  }
});

describe('GPU memory reading (nvidia-smi; untested on a GPU)', () => {
  const smi = (stdout: string, status = 0) => () => ({ status, stdout });
  it("sums this process's used memory over its GPUs and ignores other processes", () => {
    const out = `4242, 1536\n777, 9000\n4242, 512\n`;
    expect(gpuProcessMemoryBytes(4242, smi(out))).toBe(2048 * 2 ** 20);
    expect(gpuProcessMemoryBytes(1, smi(out))).toBe(0);
    expect(gpuProcessMemoryBytes(4242, smi('', 9))).toBeNull();
    expect(gpuProcessMemoryBytes(4242, () => ({ status: null, stdout: '' }))).toBeNull();
  });

  it("measures a step's growth of the (grow-only) TensorFlow pool", async () => {
    const readings = [`${process.pid}, 300\n`, `${process.pid}, 1324\n`];
    const { result, deltaBytes } = await measureGpuDelta(() => 'stepped', () => ({ status: 0, stdout: readings.shift() ?? '' }));
    expect(result).toBe('stepped');
    expect(deltaBytes).toBe(1024 * 2 ** 20);
  });
});
