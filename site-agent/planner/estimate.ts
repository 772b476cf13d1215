/**
 * First-principles memory model of a U-Net 3D training step (thesis §2.2.1) in tfjs, float32.
 *
 * What tfjs keeps alive (tfjs-core 4.x engine, checked against tf.profile on cpu and cpu-fast):
 * - The forward pass records every op on the tape, and every op *clones* the tensors its gradient
 *   needs (`inputsToSave` / `outputsToSave` of its gradient config). The clones live until the
 *   whole backward pass ends; the originals are freed when their tidy scope ends.
 * - The backward pass keeps the gradient of every intermediate tensor — one per consumer, because
 *   tape.ts accumulates with `add(cur, dx)` and never disposes `dx` — until it ends as well.
 * So the step's peak is at the end of the backward pass: saved tensors + activation gradients +
 * weight gradients, on top of the weights, Adam's two moments (from the second step on) and the
 * input batch — unless the weights are large next to the activations: tfjs's Adam updates every
 * variable inside ONE tidy, so its temporaries (ADAM_UPDATE_TEMPORARIES per weight) pile up
 * until the update ends, and that becomes the peak (the thesis U-Net on small patches). tf.profile's engine bytes count tensor handles, so a clone that shares its buffer
 * with the original still counts (the model counts handles too; see README.md).
 *
 * Sizes are counted in "block elements" E = batch · voxels · channels of one conv block's output
 * at its level; every constant below is a number of handles of that size, derived op by op from
 * the U-Net (unet.ts, ops/*.ts) and the tfjs gradient configs. Native conv workspace (cpu-fast)
 * is outside the engine and modelled separately (workspace.ts). The safety margin is the
 * planner's business, not the estimate's, so the estimate can be compared with measurement.
 */
import type { Architecture } from '../../shared/config/model.ts';
import { convWorkspaceEstimate, patchVoxels } from './workspace.ts';

export const BYTES_PER_FLOAT = 4;

/**
 * Handles kept per building block, in units of that block's output size (see module comment).
 * Derived from the ops, then checked against tf.profile (test/planner-calibration.test.ts,
 * `patchfed plan --calibrate`): within 5% of tf.profile on every measured configuration
 * (README.md). With the plain Dice loss instead of dice-ce the head term is 9 tensors smaller.
 */
export const TAPE = {
  /**
   * conv → +bias → norm → ReLU. Saved: conv output (Add's a), norm input twice (Mean in
   * tf.moments, Mul by the scale), its float32 cast (Sub), x−mean (Square), (x−mean)² (Mean),
   * the scaled tensor (Add's a), the shifted one (Relu's x) = 8. The block *input* is saved by
   * the conv as well (counted at the input's size). Same for batch and instance norm.
   */
  blockSaved: 8,
  /**
   * Gradients of the block's 8 intermediate outputs (conv, +bias, cast, sub, square, mul, add,
   * relu), plus 2 extra for the norm input, which has 3 consumers (mean, cast, mul) = 10.
   */
  blockGradients: 10,
  /** An encoder output used as skip connection has a second consumer (pool and concat). */
  skipExtraGradient: 1,
  /**
   * Learned ×2 upsampling to level i (ops/upsample.ts): saved = reshape input + matMul input at
   * the coarse level (2 × E_{i+1}) and the three full-size tensors before reshape / reshape /
   * bias add (3 × E_i); gradients = matMul input (E_{i+1}) + 5 full-size outputs.
   */
  upSavedFine: 3,
  upSavedCoarse: 2,
  upGradientsFine: 5,
  upGradientsCoarse: 1,
  /** Concat saves both inputs (2 E) and its output gets a gradient (2 E). */
  concatSaved: 2,
  concatGradients: 2,
  /**
   * Head (1×1 conv, bias, softmax) plus the dice-ce loss of the trainer, in tensors of the
   * output size L = batch · voxels · classes: bias add and softmax save 2, their gradients 2;
   * soft Dice saves p, q, p·q and the three sum inputs, with gradients for p (2 consumers) and
   * p·q = 8; cross-entropy saves p+ε, log, target·log and the sum input, with 4 gradients = 9.
   */
  headAndLoss: 21,
  /**
   * Temporaries of the gradient being computed when the peak is reached (the first block's norm,
   * last on the backward pass: Mean's gradient broadcasts dy to the input shape, then divides),
   * in level-0 block sizes.
   */
  backwardTransient: 2,
  /** Every op saves its weight inputs too (conv filters, biases, γ, β, upsampling kernels): one clone of the weights. */
  savedWeightCopies: 1,
} as const;

/**
 * Weight-sized temporaries of tfjs's Adam.applyGradients, all alive until its single tidy ends:
 * new m (m·β1, g·(1−β1), sum = 3), new v (g², ·(1−β2), v·β2, sum = 4), the two bias corrections
 * (2) and the new value (√v̂, +ε, m̂/…, ·(−lr), +w = 5) = 14. The assigns swap buffers (net 0).
 */
export const ADAM_UPDATE_TEMPORARIES = 14;

/**
 * Inference (no tape): everything a block creates outside a nested tidy stays alive until the
 * U-Net's own tidy ends, so the peak is reached at its very end (or inside the last normalisation).
 */
export const INFERENCE = {
  /** conv, +bias, norm and ReLU outputs of every block (the norm's own temporaries are freed). */
  blockLive: 4,
  /** Upsampled tensor (1) and the concatenation (2) per decoder level. */
  upLive: 1,
  concatLive: 2,
  /**
   * Excess of the last block's tf.moments (cast, x−mean, (x−mean)² while norm and ReLU outputs
   * do not exist yet): 3 − 2 = 1 block size, unless the head (logits and +bias, in output size L;
   * softmax runs after the tidy freed the rest) is larger.
   */
  normExcess: 1,
  headLive: 2,
} as const;

/** Runtime memory outside tensors (tfjs JS objects, kernel registry, V8 heap growth); seen only in RSS. */
export const RUNTIME_OVERHEAD_BYTES = 48 * 1024 * 1024;

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
  /** Weights and running statistics (tf.Variables). */
  weights: number;
  /** Weight gradients (kept until the optimiser applies them). */
  gradients: number;
  /** Adam's first and second moments. */
  optimizer: number;
  /** Tensors the tape saved plus the gradients of intermediate tensors (inference: live activations). */
  activations: number;
  /** Temporaries of the optimiser's update (Adam, one tidy over all weights); not alive together with `activations`. */
  optimizerUpdate: number;
  /** Which of the two is the peak: end of the backward pass, or the optimiser update. */
  peakPhase: 'backward' | 'optimizer-update' | 'inference';
  /** The input batch and its one-hot target. */
  io: number;
  /** weights + gradients + optimizer + io + max(activations, optimizerUpdate): what tf.profile's peakBytes should show. */
  engine: number;
  /** Native convolution workspace outside the engine (cpu-fast only). */
  workspace: number;
  /** Runtime memory outside tensors (RSS only). */
  overhead: number;
  /** engine + workspace + overhead: what the planner compares with the budget. */
  total: number;
}

export interface EstimateOptions {
  /**
   * Limit of the native convolution workspace (site-agent/kernels, cpu-fast), 0 or absent when
   * the convolutions run on kernels without one. The estimate uses what the convolutions of this
   * net and patch need, capped by the limit.
   */
  workspaceBytes?: number;
}

interface Level {
  voxels: number;
  channels: number;
  /** batch · voxels · channels */
  e: number;
}

/**
 * One entry per U-Net level, finest first. depth ≥ 1 (config schema), so `lv[0]!` exists, and
 * `lv[i + 1]!` exists above the bottom level; the same holds for levelChannels' `ch[i]!` reads.
 */
function levels(net: UNetShape, patch: readonly number[], batch: number): Level[] {
  const voxels0 = patchVoxels(patch);
  return levelChannels(net.arch).map((channels, i) => {
    const voxels = voxels0 / 8 ** i;
    return { voxels, channels, e: batch * voxels * channels };
  });
}

/** Elements the tape keeps at the end of the backward pass (saved tensors + activation gradients). */
export function tapeElements(net: UNetShape, patch: readonly number[], batch: number): number {
  const lv = levels(net, patch, batch);
  const per = TAPE.blockSaved + TAPE.blockGradients;
  let sum = 0;
  let cin = net.inChannels;
  for (let i = 0; i < lv.length; i++) {
    const { e, voxels } = lv[i]!;
    const bottom = i === lv.length - 1;
    // Encoder: block 1 saves its input (previous level pooled, or the image), block 2 saves block 1's output.
    sum += 2 * per * e + batch * voxels * cin + e;
    cin = lv[i]!.channels;
    if (bottom) continue;
    // Skip connection's second consumer; max-pool saves its input and output, its output gets a gradient.
    sum += TAPE.skipExtraGradient * e + e + (2 * e) / 8;
    // Decoder at this level: upsampling from level i+1, concat, block 1 (input 2E saved) and block 2.
    const coarse = lv[i + 1]!.e;
    sum += (TAPE.upSavedFine + TAPE.upGradientsFine) * e + (TAPE.upSavedCoarse + TAPE.upGradientsCoarse) * coarse;
    sum += (TAPE.concatSaved + TAPE.concatGradients) * e;
    sum += 2 * per * e + 2 * e + e;
  }
  // Head conv saves its input (level-0 block output); head + loss in output-size tensors.
  sum += lv[0]!.e + TAPE.headAndLoss * batch * lv[0]!.voxels * net.classes;
  return sum + TAPE.backwardTransient * lv[0]!.e;
}

/** Elements alive at the inference peak (no tape). */
export function inferenceElements(net: UNetShape, patch: readonly number[], batch: number): number {
  const lv = levels(net, patch, batch);
  let sum = 0;
  for (let i = 0; i < lv.length; i++) {
    const { e } = lv[i]!;
    sum += 2 * INFERENCE.blockLive * e;
    if (i < lv.length - 1) sum += e / 8 + (INFERENCE.upLive + INFERENCE.concatLive) * e + 2 * INFERENCE.blockLive * e;
  }
  return sum + Math.max(INFERENCE.normExcess * lv[0]!.e, INFERENCE.headLive * batch * lv[0]!.voxels * net.classes);
}

export function estimateTrainingPeak(net: UNetShape, patch: readonly number[], batch: number, opts: EstimateOptions = {}): MemoryBreakdown {
  const params = parameterCounts(net);
  const voxels = patchVoxels(patch);
  const weights = (params.trainable + params.runningStats) * BYTES_PER_FLOAT;
  const gradients = params.trainable * BYTES_PER_FLOAT;
  const optimizer = 2 * params.trainable * BYTES_PER_FLOAT;
  const activations = (tapeElements(net, patch, batch) + TAPE.savedWeightCopies * params.trainable) * BYTES_PER_FLOAT;
  const io = batch * voxels * (net.inChannels + net.classes) * BYTES_PER_FLOAT;
  const optimizerUpdate = ADAM_UPDATE_TEMPORARIES * params.trainable * BYTES_PER_FLOAT;
  const engine = weights + gradients + optimizer + io + Math.max(activations, optimizerUpdate);
  const peakPhase = activations >= optimizerUpdate ? 'backward' : 'optimizer-update';
  const workspace = convWorkspaceEstimate(net, patch, opts.workspaceBytes ?? 0, 'training', batch);
  const overhead = RUNTIME_OVERHEAD_BYTES;
  return { weights, gradients, optimizer, activations, optimizerUpdate, peakPhase, io, engine, workspace, overhead, total: engine + workspace + overhead };
}

export function estimateInferencePeak(net: UNetShape, patch: readonly number[], batch: number, opts: EstimateOptions = {}): MemoryBreakdown {
  const params = parameterCounts(net);
  const voxels = patchVoxels(patch);
  const weights = (params.trainable + params.runningStats) * BYTES_PER_FLOAT;
  const activations = inferenceElements(net, patch, batch) * BYTES_PER_FLOAT;
  const io = batch * voxels * net.inChannels * BYTES_PER_FLOAT;
  const engine = weights + activations + io;
  const workspace = convWorkspaceEstimate(net, patch, opts.workspaceBytes ?? 0, 'inference', batch);
  const overhead = RUNTIME_OVERHEAD_BYTES;
  return { weights, gradients: 0, optimizer: 0, activations, optimizerUpdate: 0, peakPhase: 'inference', io, engine, workspace, overhead, total: engine + workspace + overhead };
}
