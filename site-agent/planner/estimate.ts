/**
 * First-principles memory model of a U-Net 3D (thesis §2.2.1) in tfjs, float32.
 *
 * Training peak = weights + gradients + Adam state (2 moments) + activations the autodiff tape
 * keeps for backpropagation + transient backward buffers + convolution workspace, times nothing:
 * the safety margin is applied by the planner, not here, so that the estimate can be compared
 * with measurement honestly.
 *
 * Activations are counted in "feature elements": for every convolution block (conv → norm → ReLU)
 * the number of output elements B·voxels·channels at its level. How many tensors of that size the
 * tape really keeps per block depends on the op implementation (normalisation is built from a few
 * core ops), so that factor is calibrated against tf.profile() peaks on the cpu backend
 * (test/planner-calibration.test.ts and `patchfed plan --calibrate`).
 */
import type { Architecture } from '../../shared/config/model.ts';

export const BYTES_PER_FLOAT = 4;

/**
 * Calibrated constants (cpu backend, this implementation). Tensors of block-output size alive at
 * the training peak per conv block, and at the inference peak per level.
 */
export const CALIBRATION = {
  trainTensorsPerBlock: 6,
  /** Extra live tensors of the largest block size during the backward pass (gradients in flight). */
  trainBackwardTensors: 4,
  inferTensorsPerBlock: 3,
  /** Runtime overhead that does not scale with the model (JS heap of tfjs, buffers). */
  fixedOverheadBytes: 48 * 1024 * 1024,
};

export interface UNetShape {
  inChannels: number;
  classes: number;
  arch: Architecture;
}

export function levelChannels(arch: Architecture): number[] {
  return Array.from({ length: arch.depth }, (_, i) => arch.base * 2 ** i);
}

/** The U-Net needs every spatial dim divisible by 2^(depth-1) (one max-pool per level). */
export function requiredDivisor(arch: Architecture): number {
  return 2 ** (arch.depth - 1);
}

export function roundUpTo(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

/**
 * Parameter count of the U-Net: per conv 27·cin·cout + cout bias, per norm γ and β
 * (+ running mean/var for BatchNorm, which are state, not trainable), learned ×2 upsampling
 * (kernel 2, stride 2: 8·cin·cout + cout), and the final 1×1×1 convolution.
 */
export function parameterCounts(net: UNetShape): { trainable: number; runningStats: number } {
  const ch = levelChannels(net.arch);
  let trainable = 0;
  let runningStats = 0;
  const convBlock = (cin: number, cout: number) => {
    trainable += 27 * cin * cout + cout + 2 * cout;
    if (net.arch.norm === 'batch') runningStats += 2 * cout;
  };
  let cin = net.inChannels;
  for (const c of ch) {
    convBlock(cin, c);
    convBlock(c, c);
    cin = c;
  }
  for (let i = ch.length - 2; i >= 0; i--) {
    const c = ch[i]!;
    trainable += 8 * ch[i + 1]! * c + c;
    convBlock(2 * c, c);
    convBlock(c, c);
  }
  trainable += ch[0]! * net.classes + net.classes;
  return { trainable, runningStats };
}

export interface MemoryBreakdown {
  weights: number;
  gradients: number;
  optimizer: number;
  activations: number;
  workspace: number;
  overhead: number;
  total: number;
}

function blockElements(net: UNetShape, patch: readonly number[], batch: number): { sum: number; largest: number; skips: number } {
  const ch = levelChannels(net.arch);
  const voxels0 = patch[0]! * patch[1]! * patch[2]!;
  let sum = 0;
  let skips = 0;
  for (let i = 0; i < ch.length; i++) {
    const voxels = voxels0 / 8 ** i;
    const e = batch * voxels * ch[i]!;
    // Encoder: 2 blocks; decoder (all levels but the bottom): upsampled + concat (3 block sizes) + 2 blocks.
    sum += 2 * e;
    if (i < ch.length - 1) {
      sum += 2 * e + 3 * e;
      skips += e;
    }
  }
  const largest = batch * voxels0 * Math.max(2 * ch[0]!, net.inChannels, net.classes);
  return { sum, largest, skips };
}

export interface EstimateOptions {
  /** Bytes of convolution workspace the kernels reserve (native im2col buffers). */
  workspaceBytes?: number;
}

export function estimateTrainingPeak(net: UNetShape, patch: readonly number[], batch: number, opts: EstimateOptions = {}): MemoryBreakdown {
  const params = parameterCounts(net);
  const weights = (params.trainable + params.runningStats) * BYTES_PER_FLOAT;
  const gradients = params.trainable * BYTES_PER_FLOAT;
  const optimizer = 2 * params.trainable * BYTES_PER_FLOAT;
  const el = blockElements(net, patch, batch);
  const input = batch * patch[0]! * patch[1]! * patch[2]! * (net.inChannels + net.classes);
  const activations =
    (CALIBRATION.trainTensorsPerBlock * el.sum + CALIBRATION.trainBackwardTensors * el.largest + 2 * input) * BYTES_PER_FLOAT;
  const workspace = opts.workspaceBytes ?? 0;
  const overhead = CALIBRATION.fixedOverheadBytes;
  return { weights, gradients, optimizer, activations, workspace, overhead, total: weights + gradients + optimizer + activations + workspace + overhead };
}

/** Inference keeps no tape: the skip connections plus a few working tensors of the largest level. */
export function estimateInferencePeak(net: UNetShape, patch: readonly number[], batch: number, opts: EstimateOptions = {}): MemoryBreakdown {
  const params = parameterCounts(net);
  const weights = (params.trainable + params.runningStats) * BYTES_PER_FLOAT;
  const el = blockElements(net, patch, batch);
  const input = batch * patch[0]! * patch[1]! * patch[2]! * (net.inChannels + net.classes);
  const activations = (el.skips + CALIBRATION.inferTensorsPerBlock * el.largest + input) * BYTES_PER_FLOAT;
  const workspace = opts.workspaceBytes ?? 0;
  const overhead = CALIBRATION.fixedOverheadBytes;
  return { weights, gradients: 0, optimizer: 0, activations, workspace, overhead, total: weights + activations + workspace + overhead };
}
