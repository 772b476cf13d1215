/**
 * The training loop of one U-Net stage: Adam (thesis §2.4.2), counted in steps (§2.4.3), soft Dice
 * loss with the thesis's background convention (§2.4.1), optional FedProx proximal term, periodic
 * validation on whole volumes, and the best checkpoint kept (by mean foreground Dice).
 * Every step runs inside tf.tidy / explicit disposal: the tensor count is the same after each step.
 * Resumable: every `checkpointEvery` steps (and when aborted) it hands out a TrainerCheckpoint —
 * weights, Adam's moments and step count, the step, losses, validations and the best checkpoint —
 * and `resumeFrom` continues bit for bit (see restoreAdam).
 */
import * as tf from '@tensorflow/tfjs-core';
import { PatchFedError } from '../../shared/errors.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import { softDiceLoss } from './loss.ts';
import { marginalize } from './marginal-loss.ts';
import { profileStep, type StepMemory } from './memory.ts';
import type { SegmentationNet } from './net.ts';
import type { ProgressInfo } from './progress.ts';
import type { TrainingBatch } from '../pipeline/sampler.ts';

export type LossKind = 'dice' | 'dice-ce';

export interface ValidationResult {
  /** Per foreground class (index 1..K-1), NaN where undefined (MONAI convention). */
  perClass: number[];
  /** nanMean of perClass. */
  meanDice: number;
}

export interface TrainStageOptions {
  net: SegmentationNet;
  /** Seeded batches (StageData): a resume replays the ones already trained on. */
  data: { nextBatch(): Promise<TrainingBatch> };
  steps: number;
  learningRate: number;
  includeBackground: boolean;
  loss?: LossKind;
  /**
   * Partially annotated site: channel of each class in its label space (data/annotated-labels.ts);
   * the loss is then the marginal loss (marginal-loss.ts). Absent: every class annotated.
   */
  channelOf?: readonly number[];
  /** FedProx: adds (mu/2)·||w − w_global||² over trainable weights. */
  proximal?: { mu: number; global: NamedWeights };
  validate?: () => Promise<ValidationResult>;
  /** Validate every N steps (and at the end); 0 = only at the end. */
  validateEvery?: number;
  /** Profile the first N steps' peak memory (tf.profile); default 2. */
  profileSteps?: number;
  /** Throws E_BUDGET when a profiled step's engine peak exceeds this. */
  budgetBytes?: number;
  label?: string;
  onProgress?: (p: ProgressInfo) => void;
  signal?: AbortSignal;
  /** Continue from this checkpoint (same net, data seeds and settings as the run that saved it). */
  resumeFrom?: TrainerCheckpoint;
  /** Hand out a checkpoint every N steps (0 / absent: never), and when the signal aborts the run. */
  checkpointEvery?: number;
  onCheckpoint?: (c: TrainerCheckpoint) => void | Promise<void>;
}

/** Adam's state (tfjs AdamOptimizer), moments in the order of the net's trainable variables. */
export interface AdamState {
  iterations: number;
  /** β1^(t+1) and β2^(t+1) as tfjs accumulates them (float32 products, not recomputed powers). */
  beta1Power: number;
  beta2Power: number;
  firstMoments: Float32Array[];
  secondMoments: Float32Array[];
}

/** Everything trainStage needs to continue a stage where it stopped. */
export interface TrainerCheckpoint {
  /** Steps done; the data source replays this many batches on resume. */
  step: number;
  weights: NamedWeights;
  optimizer: AdamState;
  losses: number[];
  validations: { step: number; result: ValidationResult }[];
  best: StageResult['best'];
  samples: number;
  peakMemory: StepMemory | null;
  elapsedMs: number;
}

export interface StageResult {
  stepsDone: number;
  losses: number[];
  validations: { step: number; result: ValidationResult }[];
  best: { step: number; score: number; weights: NamedWeights } | null;
  /** Largest profiled step memory. */
  peakMemory: StepMemory | null;
  /** Training samples seen (patches or volumes). */
  samples: number;
  timeMs: number;
  aborted: boolean;
}

/**
 * A profiled training step used more memory than the declared budget. Thrown by trainStage after
 * the step (nothing else runs at that configuration); the caller may re-plan a smaller patch or
 * batch from `measured` (see run/site-plan.ts replanStage).
 */
export class BudgetExceededError extends PatchFedError {
  constructor(
    readonly measured: StepMemory,
    readonly budgetBytes: number,
    readonly patch: number[],
    readonly batch: number,
  ) {
    super(
      'E_BUDGET',
      `measured training peak ${(measured.engineBytes / 2 ** 20).toFixed(1)} MB exceeds the memory budget of ${(budgetBytes / 2 ** 20).toFixed(1)} MB (patch ${patch.join('x')}, batch ${batch})`,
    );
  }
}

export function copyWeights(w: NamedWeights): NamedWeights {
  return { manifest: w.manifest.map((s) => ({ ...s, shape: [...s.shape] })), values: w.values.map((v) => v.slice()) };
}

function crossEntropy(probs: tf.Tensor, target: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.neg(tf.mean(tf.sum(tf.mul(target, tf.log(tf.add(probs, 1e-7))), -1))) as tf.Scalar);
}

/** Constant tensors of the global model for the proximal term, keyed like the trainable variables. */
function proximalAnchors(net: SegmentationNet, global: NamedWeights): tf.Tensor[] {
  const byName = new Map(global.manifest.map((s, i) => [s.name, i]));
  const all = net.getWeights();
  const trainableNames = all.manifest.filter((s) => s.trainable).map((s) => s.name);
  if (trainableNames.length !== net.trainableVariables.length) {
    throw new Error('proximal term: the net exposes a different number of trainable variables than its manifest says');
  }
  return trainableNames.map((name, k) => {
    const i = byName.get(name);
    if (i === undefined) throw new PatchFedError('E_PROX', `FedProx: global model has no tensor '${name}'`);
    return tf.tensor(global.values[i]!, net.trainableVariables[k]!.shape, 'float32');
  });
}

/**
 * tfjs keeps Adam's running β1^t, β2^t in private variables that setWeights() recomputes with
 * pow(); float32 pow and the straight run's repeated products differ in the last bit, so a resumed
 * run reads and writes them exactly. Checked at run time: without them (another tfjs version) a
 * resume is equivalent but not bit-identical.
 */
function betaPowerVariables(optimizer: tf.AdamOptimizer): [tf.Variable, tf.Variable] | null {
  const b1: unknown = Reflect.get(optimizer, 'accBeta1');
  const b2: unknown = Reflect.get(optimizer, 'accBeta2');
  return b1 instanceof tf.Variable && b2 instanceof tf.Variable ? [b1, b2] : null;
}

const ADAM_BETA1 = 0.9; // tf.train.adam's defaults
const ADAM_BETA2 = 0.999;

async function captureAdam(optimizer: tf.AdamOptimizer): Promise<AdamState> {
  const [iteration, ...moments] = await optimizer.getWeights();
  if (!iteration) throw new Error('Adam optimizer returned no iteration count');
  const iterations = iteration.tensor.dataSync()[0]!;
  iteration.tensor.dispose(); // a fresh scalar; the moments are the optimizer's own variables
  const copies = moments.map((m) => Float32Array.from(m.tensor.dataSync()));
  const half = copies.length / 2;
  const powers = betaPowerVariables(optimizer);
  return {
    iterations,
    beta1Power: powers ? powers[0].dataSync()[0]! : ADAM_BETA1 ** (iterations + 1),
    beta2Power: powers ? powers[1].dataSync()[0]! : ADAM_BETA2 ** (iterations + 1),
    firstMoments: copies.slice(0, half),
    secondMoments: copies.slice(half),
  };
}

async function restoreAdam(optimizer: tf.AdamOptimizer, state: AdamState, variables: readonly tf.Variable[]): Promise<void> {
  const fits = (list: Float32Array[]) => list.length === variables.length && list.every((m, i) => m.length === variables[i]!.size);
  if (!fits(state.firstMoments) || !fits(state.secondMoments)) {
    throw new PatchFedError('E_RESUME', `the saved optimizer state has ${state.firstMoments.length} moment tensors that do not fit the net's ${variables.length} trainable variables`);
  }
  const tensors = [
    tf.scalar(state.iterations, 'int32'),
    ...state.firstMoments.map((m, i) => tf.tensor(m, variables[i]!.shape, 'float32')),
    ...state.secondMoments.map((m, i) => tf.tensor(m, variables[i]!.shape, 'float32')),
  ];
  try {
    // setWeights makes its own variables from these (sharing their data), so ours are disposed.
    await optimizer.setWeights(tensors.map((tensor, i) => ({ name: i === 0 ? 'iter' : `moment${i}`, tensor })));
  } finally {
    tf.dispose(tensors);
  }
  const powers = betaPowerVariables(optimizer);
  if (powers) {
    tf.tidy(() => {
      powers[0].assign(tf.scalar(state.beta1Power, 'float32'));
      powers[1].assign(tf.scalar(state.beta2Power, 'float32'));
    });
  }
}

export async function trainStage(o: TrainStageOptions): Promise<StageResult> {
  const optimizer = tf.train.adam(o.learningRate);
  const proximal = o.proximal && o.proximal.mu > 0 ? { mu: o.proximal.mu, anchors: proximalAnchors(o.net, o.proximal.global) } : null;
  const lossKind = o.loss ?? 'dice';
  const result: StageResult = { stepsDone: 0, losses: [], validations: [], best: null, peakMemory: null, samples: 0, timeMs: 0, aborted: false };
  // Time and voxel rate of this run; elapsed time also counts the run a resume continues.
  const runStart = performance.now();
  const t0 = runStart - (o.resumeFrom?.elapsedMs ?? 0);
  let voxels = 0;

  const checkpoint = async (): Promise<TrainerCheckpoint> => ({
    step: result.stepsDone,
    weights: o.net.getWeights(),
    optimizer: await captureAdam(optimizer),
    losses: [...result.losses],
    validations: [...result.validations],
    best: result.best,
    samples: result.samples,
    peakMemory: result.peakMemory,
    elapsedMs: performance.now() - t0,
  });

  const runValidation = async (step: number) => {
    if (!o.validate) return;
    const r = await o.validate();
    result.validations.push({ step, result: r });
    const score = Number.isNaN(r.meanDice) ? -1 : r.meanDice;
    if (!result.best || score > result.best.score) result.best = { step, score, weights: copyWeights(o.net.getWeights()) };
  };

  try {
    if (o.resumeFrom) await resumeStage(o, optimizer, o.resumeFrom, result);
    for (let step = result.stepsDone + 1; step <= o.steps; step++) {
      if (o.signal?.aborted) {
        result.aborted = true;
        break;
      }
      // One event-loop turn per step: a daemon's socket (progress reports, heartbeats) is served
      // while it trains, even when every batch comes from memory and no await does real I/O.
      await new Promise<void>((resolve) => setImmediate(resolve));
      const batch = await o.data.nextBatch();
      const run = () => minimizeOnBatch(optimizer, o.net, batch, (x, y) => stageLoss(o, lossKind, proximal, x, y));
      const loss = step <= (o.profileSteps ?? 2) ? await profiledStep(run, batch, o.budgetBytes, result) : run();
      if (!Number.isFinite(loss)) {
        throw new PatchFedError('E_DIVERGED', `training diverged at step ${step}: loss is ${loss}`);
      }
      result.losses.push(loss);
      result.stepsDone = step;
      result.samples += batch.imageShape[0];
      voxels += batch.imageShape[0] * batch.imageShape[1] * batch.imageShape[2] * batch.imageShape[3];
      const now = performance.now();
      o.onProgress?.({ label: o.label ?? 'train', step, steps: o.steps, loss, voxelsPerSecond: (voxels / (now - runStart)) * 1000, elapsedMs: now - t0 });
      if (o.validateEvery && step % o.validateEvery === 0 && step < o.steps) await runValidation(step);
      if (o.onCheckpoint && o.checkpointEvery && step % o.checkpointEvery === 0 && step < o.steps) await o.onCheckpoint(await checkpoint());
    }
    if (result.stepsDone > 0 && !result.aborted) await runValidation(result.stepsDone);
    if (result.aborted && result.stepsDone > 0 && o.onCheckpoint) await o.onCheckpoint(await checkpoint());
  } finally {
    optimizer.dispose();
    proximal?.anchors.forEach((a) => a.dispose());
  }
  result.timeMs = performance.now() - t0;
  return result;
}

/** Puts net, optimizer, data source and result where the checkpoint left them. */
async function resumeStage(o: TrainStageOptions, optimizer: tf.AdamOptimizer, resume: TrainerCheckpoint, result: StageResult): Promise<void> {
  o.net.setWeights(resume.weights);
  await restoreAdam(optimizer, resume.optimizer, o.net.trainableVariables);
  // The data source is seeded: drawing the batches already trained on puts its case order
  // and patch samplers exactly where they were.
  for (let i = 0; i < resume.step; i++) await o.data.nextBatch();
  Object.assign(result, { stepsDone: resume.step, losses: [...resume.losses], validations: [...resume.validations], best: resume.best, samples: resume.samples, peakMemory: resume.peakMemory });
}

/** The training loss of one forward pass: soft Dice, plus cross-entropy and the FedProx term when set. */
function stageLoss(o: TrainStageOptions, lossKind: LossKind, proximal: { mu: number; anchors: tf.Tensor[] } | null, x: tf.Tensor5D, target: tf.Tensor5D): tf.Scalar {
  const [p, y] = marginalize(o.net.forward(x, true), target, o.channelOf);
  let loss = softDiceLoss(p, y, { includeBackground: o.includeBackground });
  if (lossKind === 'dice-ce') loss = tf.add(loss, crossEntropy(p, y));
  if (proximal) {
    const terms = o.net.trainableVariables.map((v, k) => {
      const anchor = proximal.anchors[k];
      if (!anchor) throw new Error(`proximal term: no anchor for trainable variable ${k}`);
      return tf.sum(tf.square(tf.sub(v, anchor)));
    });
    loss = tf.add(loss, tf.mul(proximal.mu / 2, tf.addN(terms)));
  }
  return loss as tf.Scalar;
}

/** One optimizer step on a batch; the batch tensors and the loss tensor are disposed, the loss value returned. */
function minimizeOnBatch(optimizer: tf.AdamOptimizer, net: SegmentationNet, batch: TrainingBatch, lossOf: (x: tf.Tensor5D, y: tf.Tensor5D) => tf.Scalar): number {
  const x = tf.tensor5d(batch.image, batch.imageShape, 'float32');
  const y = tf.tensor5d(batch.oneHot, batch.oneHotShape, 'float32');
  try {
    const lossTensor = optimizer.minimize(() => lossOf(x, y), true, net.trainableVariables);
    if (!lossTensor) throw new Error('the optimizer returned no loss');
    const v = lossTensor.dataSync()[0];
    lossTensor.dispose();
    if (v === undefined) throw new Error('the loss tensor is empty');
    return v;
  } finally {
    x.dispose();
    y.dispose();
  }
}

/** Runs a step under tf.profile, keeps the largest peak in result, and stops a step over the budget. */
async function profiledStep(run: () => number, batch: TrainingBatch, budgetBytes: number | undefined, result: StageResult): Promise<number> {
  const { result: loss, memory } = await profileStep(run);
  if (!result.peakMemory || memory.engineBytes > result.peakMemory.engineBytes) result.peakMemory = memory;
  if (budgetBytes !== undefined && memory.engineBytes > budgetBytes) {
    throw new BudgetExceededError(memory, budgetBytes, batch.imageShape.slice(1, 4), batch.imageShape[0]);
  }
  return loss;
}
