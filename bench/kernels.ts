/**
 * `patchfed bench kernels`: stock cpu, stock wasm (forward only: its Conv3D gradients are wrong),
 * 'cpu-fast' (site-agent/kernels) and, when `patchfed setup tensorflow` built it, 'tensorflow'
 * (tfjs-node on the TensorFlow C library) side by side, in one process, on the same shapes:
 * Conv3D forward, both backprops, and a full U-Net training step (soft Dice + Adam) for the CPU
 * presets on a 32×32×16×4 patch and for a base-32 stage (the thesis's first-stage width, depth 3)
 * on a 64×64×16×4 patch; the kernels on the shapes of those networks' convolutions.
 *
 * Times are the best of several runs (least disturbed by other processes on a shared machine),
 * with the median alongside. Effective GFLOP/s counts 2·MACs of the convolutions and matmuls.
 * A stock cpu step of the base-32 stage takes minutes (tens of minutes on a busy machine), so by
 * default the stage's training step runs on cpu-fast only (its convolutions still get side-by-side
 * kernel rows); --stage-cpu adds one stock step, without a warm-up run (the warm-up only creates
 * Adam's slots: milliseconds against minutes).
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { cpus, loadavg } from 'node:os';
import { writeFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '../site-agent/backend/gradients/index.ts';
import { TFJS_NODE, WASM } from '../site-agent/backend/candidates.ts';
import {
  convThreads,
  convWorkspaceBytes,
  convWorkspaceReservedBytes,
  nativeKernelsNotice,
  registerFastCpuBackend,
} from '../site-agent/kernels/index.ts';
import { UNet3D } from '../site-agent/model/unet.ts';
import { MODEL_PRESETS } from '../shared/config/model.ts';
import { SeededRandom } from '../shared/random.ts';
import { softDiceLoss } from '../site-agent/train/loss.ts';
import { PatchFedError } from '../shared/errors.ts';

export interface KernelBenchOptions {
  /** Fewer shapes and repetitions (the CPU-small preset only): about a minute instead of several. */
  quick?: boolean;
  /**
   * Also run the base-32 stage's training step on stock cpu (one step: 2–3 min on an idle
   * 2-core machine, far longer on a busy one), for its side-by-side ratio. Off by default.
   */
  stageVsCpu?: boolean;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface Timing {
  bestMs: number;
  medianMs: number;
  runs: number;
}

export interface KernelRow {
  shape: string;
  kernel: 'Conv3D' | 'Conv3DBackpropFilterV2' | 'Conv3DBackpropInputV2';
  gflop: number;
  /** Per backend: timing and effective GFLOP/s (best run). */
  results: Record<string, Timing & { gflops: number }>;
  speedupVsCpu: number | null;
  speedupVsWasm: number | null;
  /** ‖cpu-fast − cpu‖ / ‖cpu‖ of the kernel's output. */
  relErrorVsCpu: number;
  /** The same for 'tensorflow' (null when it is not set up). */
  tensorflowRelErrorVsCpu: number | null;
  /** Stock cpu time / tensorflow time (null when it is not set up). */
  tensorflowSpeedupVsCpu: number | null;
}

export interface TrainStepRow {
  /** 'cpu-small', 'cpu-medium' or 'base-32 stage'. */
  preset: string;
  base: number;
  depth: number;
  patch: number[];
  parameters: number;
  /** Convolution and matmul FLOPs of one step. */
  gflop: number;
  /** leakedTensors: tensor-count growth over the timed steps (null when the step ran without a warm-up). */
  results: Record<string, Timing & { gflops: number; leakedTensors: number | null }>;
  /** null when the stock cpu step was not run (the base-32 stage without stageVsCpu). */
  speedupVsCpu: number | null;
  /** tensorflow step time / cpu-fast step time (null when tensorflow is not set up). */
  tensorflowVsFast: number | null;
}

export interface StepProfile {
  preset: string;
  /** Kernel time of the profiled step (the fastest of a few, the least disturbed by other processes). */
  totalKernelMs: number;
  stepMs: number;
  kernels: ProfileRow[];
}

export interface ProfileRow {
  kernel: string;
  ms: number;
  share: number;
  calls: number;
}

export interface KernelBenchReport {
  date: string;
  machine: { cpu: string; cores: number; loadAverageStart: number[]; loadAverageEnd: number[]; node: string; tfjs: string };
  fastCpu: { available: boolean; notice: string | null; threads: number; workspaceLimitBytes: number; workspaceReservedBytes: number };
  wasm: { available: boolean; notice: string | null };
  /** The 'tensorflow' backend: package, TensorFlow version, or why it is absent. */
  tensorflow: { available: boolean; notice: string | null; package: string | null; version: string | null };
  kernels: KernelRow[];
  trainSteps: TrainStepRow[];
  /** Stock cpu step time / cpu-fast step time, CPU-small preset on a 32×32×16×4 patch. */
  trainStepSpeedupVsCpu: number | null;
  /** Largest relative error of cpu-fast gradients vs stock cpu (backprop kernels and a U-Net's weight gradients). */
  maxGradRelError: number | null;
  /** The same for 'tensorflow' (null when it is not set up). */
  tensorflowMaxGradRelError: number | null;
  /** Where a cpu-fast training step spends its kernel time (CPU-small preset), by kernel. */
  profile: StepProfile | null;
  /** The same for every training step benchmarked. */
  profiles: StepProfile[];
}

type ProfileInfo = Awaited<ReturnType<typeof tf.profile>>;
type KernelInfo = ProfileInfo['kernels'][number];

const PATCH: [number, number, number] = [32, 32, 16];
const STAGE_PATCH: [number, number, number] = [64, 64, 16];
const IN_CHANNELS = 4;
const NUM_CLASSES = 3;

interface StepSpec {
  preset: string;
  base: number;
  depth: number;
  patch: [number, number, number];
  /** Stock cpu runs (after one warm-up run, or none when `stockWarmup` is false); 0 skips stock cpu. */
  stockRuns: number;
  stockWarmup: boolean;
  fastRuns: number;
}

function stepSpecs(quick: boolean, stageVsCpu: boolean): StepSpec[] {
  const small: StepSpec = { preset: 'cpu-small', ...MODEL_PRESETS['cpu-small'], patch: PATCH, stockRuns: quick ? 1 : 2, stockWarmup: true, fastRuns: quick ? 5 : 10 };
  if (quick) return [small];
  return [
    small,
    { preset: 'cpu-medium', ...MODEL_PRESETS['cpu-medium'], patch: PATCH, stockRuns: 1, stockWarmup: true, fastRuns: 10 },
    { preset: 'base-32 stage', base: 32, depth: 3, patch: STAGE_PATCH, stockRuns: stageVsCpu ? 1 : 0, stockWarmup: false, fastRuns: 3 },
  ];
}

interface ConvShape {
  name: string;
  x: [number, number, number, number, number];
  filter: [number, number, number, number, number];
}

function convShapes(quick: boolean): ConvShape[] {
  const patch = (c: number): [number, number, number, number, number] => [1, PATCH[0], PATCH[1], PATCH[2], c];
  const shapes: ConvShape[] = [
    { name: `cpu-small first conv ${PATCH.join('×')} 4→8`, x: patch(4), filter: [3, 3, 3, 4, 8] },
    { name: `cpu-small conv ${PATCH.join('×')} 8→8`, x: patch(8), filter: [3, 3, 3, 8, 8] },
    { name: `cpu-medium conv ${PATCH.join('×')} 16→16`, x: patch(16), filter: [3, 3, 3, 16, 16] },
  ];
  if (!quick) shapes.push({ name: 'base-32 stage 64×64×16 32→32', x: [1, 64, 64, 16, 32], filter: [3, 3, 3, 32, 32] });
  return shapes;
}

function seededValues(n: number, seed: number, std = 1): Float32Array {
  return Float32Array.from(new SeededRandom(seed).normalArray(n, std));
}

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function summarise(times: number[]): Timing {
  const sorted = [...times].sort((a, b) => a - b);
  return { bestMs: sorted[0]!, medianMs: sorted[Math.floor((sorted.length - 1) / 2)]!, runs: times.length };
}

/** Times `fn` (which must read its result back, so lazy backends finish) after one warm-up run. */
function timeRuns(fn: () => void, runs: number, warmup = true): Timing {
  if (warmup) fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return summarise(times);
}

function relError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 0): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  const scale = Math.max(Math.sqrt(den), floor);
  return scale === 0 ? Math.sqrt(num) : Math.sqrt(num) / scale;
}

/** Runs one kernel on `backend` with inputs made there; returns its timing and output. */
async function benchConvKernel(
  backend: string,
  shape: ConvShape,
  kernel: KernelRow['kernel'],
  runs: number,
  warmup = true,
): Promise<{ timing: Timing; output: Float32Array }> {
  await tf.setBackend(backend);
  const info = tf.backend_util.computeConv3DInfo(shape.x, shape.filter, 1, 1, 'same');
  const x = tf.tensor(seededValues(sizeOf(shape.x), 1), shape.x);
  const w = tf.tensor(seededValues(sizeOf(shape.filter), 2, 0.2), shape.filter);
  const dy = tf.tensor(seededValues(sizeOf(info.outShape), 3), info.outShape);
  const attrs = { strides: 1, pad: 'same' } as const;
  const run = (): tf.Tensor => {
    switch (kernel) {
      case 'Conv3D':
        return tf.conv3d(x as tf.Tensor5D, w as tf.Tensor5D, 1, 'same');
      case 'Conv3DBackpropFilterV2':
        return tf.engine().runKernel(tf.Conv3DBackpropFilterV2, { x, dy }, { ...attrs, filterShape: shape.filter } as unknown as tf.NamedAttrMap) as tf.Tensor;
      case 'Conv3DBackpropInputV2':
        return tf.engine().runKernel(tf.Conv3DBackpropInputV2, { dy, filter: w }, { ...attrs, inputShape: shape.x } as unknown as tf.NamedAttrMap) as tf.Tensor;
    }
  };
  const timing = timeRuns(() => {
    const y = run();
    y.dataSync();
    y.dispose();
  }, runs, warmup);
  const y = run();
  const output = Float32Array.from(y.dataSync() as Float32Array);
  tf.dispose([x, w, dy, y]);
  return { timing, output };
}

function convGflop(shape: ConvShape): number {
  const [n, d, h, w] = shape.x;
  return (2 * n * d * h * w * sizeOf(shape.filter)) / 1e9;
}

/** Convolution and matmul FLOPs of the kernels in a profile (2·MACs). */
function profileGflop(kernels: KernelInfo[]): number {
  let flops = 0;
  for (const k of kernels) {
    const s = k.inputShapes as number[][];
    const out = k.outputShapes as number[][];
    if (k.name === 'Conv3D') flops += 2 * sizeOf(out[0]!.slice(0, 4)) * sizeOf(s[1]!);
    else if (k.name === 'Conv3DBackpropFilterV2') flops += 2 * sizeOf(s[1]!.slice(0, 4)) * sizeOf(out[0]!);
    else if (k.name === 'Conv3DBackpropInputV2') flops += 2 * sizeOf(s[0]!.slice(0, 4)) * sizeOf(s[1]!);
    else if (k.name === 'BatchMatMul') {
      const o = out[0]!;
      const a = s[0]!;
      // M·N from the output, K is the dimension of `a` that does not appear in it.
      const k2 = a[a.length - 1] === o[o.length - 2] ? a[a.length - 2]! : a[a.length - 1]!;
      flops += 2 * sizeOf(o) * k2;
    }
  }
  return flops / 1e9;
}

interface StepSetup {
  model: UNet3D;
  /** The soft Dice loss of the model's prediction on the fixed patch. */
  loss: () => tf.Scalar;
  /** One Adam step (reads the loss back). */
  step: () => void;
  dispose: () => void;
}

function trainStepOn(spec: Pick<StepSpec, 'base' | 'depth' | 'patch'>): StepSetup {
  const { base, depth, patch } = spec;
  const model = new UNet3D({ inChannels: IN_CHANNELS, numClasses: NUM_CLASSES, base, depth, norm: 'instance', seed: 7 });
  const x = tf.tensor(seededValues(sizeOf(patch) * IN_CHANNELS, 11), [1, ...patch, IN_CHANNELS]) as tf.Tensor5D;
  const labels = tf.tidy(() => {
    const classes = Int32Array.from(seededValues(sizeOf(patch), 12), (v) => (v > 0.8 ? 2 : v > -0.3 ? 1 : 0));
    // float32 one-hot, as the trainer feeds it (site-agent/train/trainer.ts).
    return tf.cast(tf.oneHot(tf.tensor(classes, [1, ...patch], 'int32'), NUM_CLASSES), 'float32');
  });
  const optimizer = tf.train.adam(1e-3);
  const loss = () => softDiceLoss(model.forward(x, true), labels, { includeBackground: true });
  const step = () => {
    const value = optimizer.minimize(loss, true, model.trainableVariables);
    value!.dataSync();
    value!.dispose();
  };
  return {
    model,
    loss,
    step,
    dispose: () => {
      optimizer.dispose();
      model.dispose();
      tf.dispose([x, labels]);
    },
  };
}

async function benchTrainStep(
  backend: string,
  spec: StepSpec,
  runs: number,
  warmup: boolean,
): Promise<Timing & { leakedTensors: number | null; parameters: number }> {
  await tf.setBackend(backend);
  const setup = trainStepOn(spec);
  try {
    if (!warmup) {
      const timing = timeRuns(setup.step, runs, false);
      // The first step creates Adam's slots, so tensor growth is not measurable here.
      return { ...timing, leakedTensors: null, parameters: setup.model.parameterCount };
    }
    setup.step(); // warm-up; also creates the optimiser's slots
    const before = tf.memory().numTensors;
    const timing = timeRuns(setup.step, runs, false);
    return { ...timing, leakedTensors: tf.memory().numTensors - before, parameters: setup.model.parameterCount };
  } finally {
    setup.dispose();
  }
}

/** Weight gradients of one U-Net loss on `backend` (same seed, patch and labels everywhere). */
async function unetGradients(backend: string): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const setup = trainStepOn({ ...MODEL_PRESETS['cpu-small'], patch: PATCH });
  try {
    return tf.tidy(() => {
      const { grads } = tf.variableGrads(setup.loss, setup.model.trainableVariables);
      return setup.model.trainableVariables.map((v) => Float32Array.from(grads[v.name]!.dataSync()));
    });
  } finally {
    setup.dispose();
  }
}

/**
 * Profiles `steps` training steps and keeps the one with the least kernel time: on a shared
 * machine a single profiled step is often inflated by another process taking the cores.
 */
async function profileStep(backend: string, spec: StepSpec, steps: number): Promise<{ info: ProfileInfo; stepMs: number }> {
  await tf.setBackend(backend);
  const setup = trainStepOn(spec);
  try {
    setup.step();
    let best: { info: ProfileInfo; stepMs: number; kernelMs: number } | null = null;
    for (let i = 0; i < steps; i++) {
      const t0 = performance.now();
      const info = await tf.profile(() => setup.step());
      const stepMs = performance.now() - t0;
      const kernelMs = info.kernels.reduce((s, k) => s + (typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0), 0);
      if (best === null || kernelMs < best.kernelMs) best = { info, stepMs, kernelMs };
    }
    return best!;
  } finally {
    setup.dispose();
  }
}

function summariseProfile(info: ProfileInfo): ProfileRow[] {
  const rows = new Map<string, ProfileRow>();
  let total = 0;
  for (const k of info.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    total += ms;
    const row = rows.get(k.name) ?? { kernel: k.name, ms: 0, share: 0, calls: 0 };
    row.ms += ms;
    row.calls++;
    rows.set(k.name, row);
  }
  return [...rows.values()].map((r) => ({ ...r, share: total > 0 ? r.ms / total : 0 })).sort((a, b) => b.ms - a.ms);
}

export async function runKernelBench(options: KernelBenchOptions = {}): Promise<KernelBenchReport> {
  const quick = options.quick ?? false;
  const log = options.log ?? (() => {});
  const loadAverageStart = loadavg();
  const previousBackend = tf.engine().backendName as string | null;

  const backends = await loadBenchBackends(log);
  const conv = await benchConvKernels(backends, quick, log);
  const { maxGradRelError, tensorflowMaxGradRelError } = await compareUnetGradients(backends, conv, log);
  const { trainSteps, profiles } = await benchTrainSteps(backends, stepSpecs(quick, options.stageVsCpu ?? false), log);

  if (previousBackend) await tf.setBackend(previousBackend);
  return {
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, loadAverageStart, loadAverageEnd: loadavg(), node: process.version, tfjs: tf.version_core },
    fastCpu: { available: true, notice: backends.fastNotice, threads: convThreads(), workspaceLimitBytes: convWorkspaceBytes(), workspaceReservedBytes: convWorkspaceReservedBytes() },
    wasm: { available: backends.wasmOk, notice: backends.wasmNotice },
    tensorflow: backends.tensorflowInfo,
    kernels: conv.kernels,
    trainSteps,
    trainStepSpeedupVsCpu: trainSteps.find((r) => r.preset === 'cpu-small')?.speedupVsCpu ?? null,
    maxGradRelError,
    tensorflowMaxGradRelError: backends.tensorflow === null ? null : tensorflowMaxGradRelError,
    profile: profiles.find((p) => p.preset === 'cpu-small') ?? null,
    profiles,
  };
}

/** The backends the bench compares: the native fast CPU one (required), wasm and tensorflow when they load. */
interface BenchBackends {
  fastName: string;
  fastNotice: KernelBenchReport['fastCpu']['notice'];
  wasmOk: boolean;
  wasmNotice: KernelBenchReport['wasm']['notice'];
  /** 'tensorflow' when tfjs-node loaded, else null (its column is skipped). */
  tensorflow: string | null;
  tensorflowInfo: KernelBenchReport['tensorflow'];
}

async function loadBenchBackends(log: (line: string) => void): Promise<BenchBackends> {
  const fast = await registerFastCpuBackend();
  const notice = nativeKernelsNotice();
  if (fast === null) {
    throw new PatchFedError('bench-no-native', `${notice ?? 'native kernels unavailable'}. Build them with 'node site-agent/kernels/native/build.mjs' and run again.`, {
      subject: 'site-agent/kernels',
    });
  }
  const wasmLoad = await WASM.load();
  const wasmOk = wasmLoad.ok && (await tf.setBackend('wasm').catch(() => false));
  const wasmNotice = wasmLoad.ok ? (wasmOk ? null : 'wasm backend failed to initialise') : wasmLoad.reason;
  // 'tensorflow' when `patchfed setup tensorflow` built tfjs-node's binding; the bench runs without it.
  const tfLoad = await TFJS_NODE.load();
  const tfOk = tfLoad.ok && (await tf.setBackend('tensorflow').catch(() => false));
  const tensorflow = tfOk ? 'tensorflow' : null;
  const tensorflowInfo: KernelBenchReport['tensorflow'] = tfLoad.ok
    ? { available: tfOk, notice: tfOk ? null : 'tensorflow backend failed to initialise', package: tfLoad.backend.packageName, version: tfLoad.backend.version }
    : { available: false, notice: tfLoad.reason, package: null, version: null };
  if (tensorflow === null) log(`tensorflow column skipped: ${tensorflowInfo.notice ?? 'unavailable'}`);
  await tf.setBackend('cpu');
  // The stock cpu backend greets Node users on first use; keep that out of the report.
  (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
  return { fastName: fast.backendName, fastNotice: notice, wasmOk, wasmNotice, tensorflow, tensorflowInfo };
}

interface ConvBench {
  kernels: KernelRow[];
  /** Largest relative error of the fast (resp. tensorflow) gradient kernels against stock cpu. */
  maxGradRelError: number;
  tensorflowMaxGradRelError: number;
}

/** Conv3D and its two gradient kernels on every shape, on each backend, checked against stock cpu. */
async function benchConvKernels(backends: BenchBackends, quick: boolean, log: (line: string) => void): Promise<ConvBench> {
  const { fastName, tensorflow } = backends;
  const kernelRuns = quick ? { cpu: 1, fast: 5 } : { cpu: 2, fast: 10 };
  const kernels: KernelRow[] = [];
  let maxGradRelError = 0;
  let tensorflowMaxGradRelError = 0;
  for (const shape of convShapes(quick)) {
    const big = sizeOf(shape.x) > 1e6;
    for (const kernel of ['Conv3D', 'Conv3DBackpropFilterV2', 'Conv3DBackpropInputV2'] as const) {
      const gflop = convGflop(shape);
      const results: KernelRow['results'] = {};
      // A stock kernel on the big shape takes ~10 s: one run, no warm-up (JIT warm-up is noise there).
      const cpu = await benchConvKernel('cpu', shape, kernel, big ? 1 : kernelRuns.cpu, !big);
      results.cpu = { ...cpu.timing, gflops: gflop / (cpu.timing.bestMs / 1e3) };
      if (kernel === 'Conv3D' && backends.wasmOk) {
        const wasm = await benchConvKernel('wasm', shape, kernel, big ? 1 : 3, !big);
        results.wasm = { ...wasm.timing, gflops: gflop / (wasm.timing.bestMs / 1e3) };
      }
      const f = await benchConvKernel(fastName, shape, kernel, kernelRuns.fast);
      results[fastName] = { ...f.timing, gflops: gflop / (f.timing.bestMs / 1e3) };
      const relErrorVsCpu = relError(f.output, cpu.output);
      if (kernel !== 'Conv3D') maxGradRelError = Math.max(maxGradRelError, relErrorVsCpu);
      const tfKernel = tensorflow === null ? null : await benchConvKernel(tensorflow, shape, kernel, kernelRuns.fast);
      if (tensorflow !== null && tfKernel !== null) results[tensorflow] = { ...tfKernel.timing, gflops: gflop / (tfKernel.timing.bestMs / 1e3) };
      const tensorflowRelErrorVsCpu = tfKernel === null ? null : relError(tfKernel.output, cpu.output);
      if (tensorflowRelErrorVsCpu !== null && kernel !== 'Conv3D') tensorflowMaxGradRelError = Math.max(tensorflowMaxGradRelError, tensorflowRelErrorVsCpu);
      const row: KernelRow = {
        shape: shape.name,
        kernel,
        gflop,
        results,
        speedupVsCpu: cpu.timing.bestMs / f.timing.bestMs,
        speedupVsWasm: results.wasm ? results.wasm.bestMs / f.timing.bestMs : null,
        relErrorVsCpu,
        tensorflowRelErrorVsCpu,
        tensorflowSpeedupVsCpu: tfKernel === null ? null : cpu.timing.bestMs / tfKernel.timing.bestMs,
      };
      kernels.push(row);
      log(formatKernelRow(row, fastName));
    }
  }
  return { kernels, maxGradRelError, tensorflowMaxGradRelError };
}

/**
 * Whole-network gradients: each weight's error relative to max(its norm, 1e-3 of the total norm)
 * (conv biases in front of a norm have an exact gradient of 0, i.e. pure rounding noise), folded
 * into the kernels' largest errors.
 */
async function compareUnetGradients(backends: BenchBackends, conv: ConvBench, log: (line: string) => void): Promise<Pick<ConvBench, 'maxGradRelError' | 'tensorflowMaxGradRelError'>> {
  const stockGrads = await unetGradients('cpu');
  const fastGrads = await unetGradients(backends.fastName);
  const total = Math.sqrt(stockGrads.reduce((s, g) => s + g.reduce((t, v) => t + v * v, 0), 0));
  const worst = (grads: Float32Array[], start: number) =>
    grads.reduce((m, g, i) => {
      const stock = stockGrads[i];
      if (!stock) throw new Error(`U-Net gradients: no stock cpu gradient for weight ${i}`);
      return Math.max(m, relError(g, stock, 1e-3 * total));
    }, start);
  const maxGradRelError = worst(fastGrads, conv.maxGradRelError);
  log(`U-Net (cpu-small) weight gradients vs stock cpu: max relative error ${maxGradRelError.toExponential(2)}`);
  let tensorflowMaxGradRelError = conv.tensorflowMaxGradRelError;
  if (backends.tensorflow !== null) {
    tensorflowMaxGradRelError = worst(await unetGradients(backends.tensorflow), tensorflowMaxGradRelError);
    log(`U-Net (cpu-small) weight gradients, tensorflow vs stock cpu: max relative error ${tensorflowMaxGradRelError.toExponential(2)}`);
  }
  return { maxGradRelError, tensorflowMaxGradRelError };
}

/** Whole training steps per preset: a kernel profile on the fast backend, then timed steps on each backend. */
async function benchTrainSteps(backends: BenchBackends, specs: StepSpec[], log: (line: string) => void): Promise<{ trainSteps: TrainStepRow[]; profiles: StepProfile[] }> {
  const { fastName, tensorflow } = backends;
  const trainSteps: TrainStepRow[] = [];
  const profiles: StepProfile[] = [];
  for (const spec of specs) {
    const prof = await profileStep(fastName, spec, spec.fastRuns >= 5 ? 3 : 1);
    const gflop = profileGflop(prof.info.kernels);
    const rows = summariseProfile(prof.info);
    profiles.push({ preset: spec.preset, stepMs: prof.stepMs, totalKernelMs: rows.reduce((s, r) => s + r.ms, 0), kernels: rows });
    const cpu = spec.stockRuns > 0 ? await benchTrainStep('cpu', spec, spec.stockRuns, spec.stockWarmup) : null;
    const f = await benchTrainStep(fastName, spec, spec.fastRuns, true);
    const t = tensorflow === null ? null : await benchTrainStep(tensorflow, spec, spec.fastRuns, true);
    const row: TrainStepRow = {
      preset: spec.preset,
      base: spec.base,
      depth: spec.depth,
      patch: [...spec.patch, IN_CHANNELS],
      parameters: f.parameters,
      gflop,
      results: {
        ...(cpu && { cpu: { bestMs: cpu.bestMs, medianMs: cpu.medianMs, runs: cpu.runs, gflops: gflop / (cpu.bestMs / 1e3), leakedTensors: cpu.leakedTensors } }),
        [fastName]: { bestMs: f.bestMs, medianMs: f.medianMs, runs: f.runs, gflops: gflop / (f.bestMs / 1e3), leakedTensors: f.leakedTensors },
        ...(t && tensorflow && { [tensorflow]: { bestMs: t.bestMs, medianMs: t.medianMs, runs: t.runs, gflops: gflop / (t.bestMs / 1e3), leakedTensors: t.leakedTensors } }),
      },
      speedupVsCpu: cpu ? cpu.bestMs / f.bestMs : null,
      tensorflowVsFast: t ? t.bestMs / f.bestMs : null,
    };
    trainSteps.push(row);
    log(formatTrainRow(row, fastName));
  }
  return { trainSteps, profiles };
}

const gflops = (g: number) => (g >= 1 ? g.toFixed(1) : g.toFixed(2));
const ms = (t: number) => (t >= 100 ? t.toFixed(0) : t >= 10 ? t.toFixed(1) : t.toFixed(2));

export function formatKernelRow(row: KernelRow, fastName: string): string {
  const parts = Object.entries(row.results).map(([b, r]) => `${b} ${ms(r.bestMs)} ms (${gflops(r.gflops)} GFLOP/s)`);
  const speedups = [`×${row.speedupVsCpu?.toFixed(1)} vs cpu`];
  if (row.speedupVsWasm !== null) speedups.push(`×${row.speedupVsWasm.toFixed(1)} vs wasm`);
  const tf = row.tensorflowSpeedupVsCpu === null ? '' : `; tensorflow ×${row.tensorflowSpeedupVsCpu.toFixed(1)} vs cpu`;
  const errors = `rel. error ${row.relErrorVsCpu.toExponential(1)}${row.tensorflowRelErrorVsCpu === null ? '' : ` (tensorflow ${row.tensorflowRelErrorVsCpu.toExponential(1)})`}`;
  return `${row.kernel.padEnd(22)} ${row.shape}: ${parts.join(' | ')} → ${fastName} ${speedups.join(', ')}${tf}; ${errors}`;
}

export function formatTrainRow(row: TrainStepRow, fastName: string): string {
  const parts = Object.entries(row.results).map(([b, r]) => `${b} ${ms(r.bestMs)} ms (${gflops(r.gflops)} GFLOP/s)`);
  const ratio = row.speedupVsCpu === null ? 'stock cpu not run (--stage-cpu runs it)' : `×${row.speedupVsCpu.toFixed(1)} vs cpu`;
  const tf = row.tensorflowVsFast === null ? '' : `; tensorflow takes ×${row.tensorflowVsFast.toFixed(2)} the ${fastName} time`;
  return `train step ${row.preset} (base ${row.base}, depth ${row.depth}) [${row.patch.join('×')}] (${row.gflop.toFixed(2)} GFLOP, ${row.parameters} weights): ${parts.join(' | ')} → ${fastName} ${ratio}${tf}`;
}

export function formatProfile(profile: StepProfile, top = 12): string {
  const lines = profile.kernels
    .slice(0, top)
    .map((r) => `  ${r.kernel.padEnd(24)} ${ms(r.ms).padStart(7)} ms ${(100 * r.share).toFixed(1).padStart(5)} %  ${String(r.calls).padStart(4)} calls`);
  return [`cpu-fast step profile (${profile.preset}; kernels ${ms(profile.totalKernelMs)} ms of a ${ms(profile.stepMs)} ms profiled step):`, ...lines].join('\n');
}

export async function writeJsonReport(file: string, report: KernelBenchReport): Promise<void> {
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
}
