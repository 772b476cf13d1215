/**
 * The trainer's contracts: no tensor leaks across steps (patch, cascade stage 1 and 2, full), the
 * best validated checkpoint kept and restored, and the memory budget enforced by measurement —
 * stop with E_BUDGET, re-plan smaller and train on, or say plainly that nothing fits.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPatchFedError } from '../shared/errors.ts';
import type { Architecture } from '../shared/config/model.ts';
import { openMsdDataset, type MsdDataset } from '../site-agent/data/index.ts';
import { UNet3D } from '../site-agent/model/unet.ts';
import type { Shape3 } from '../site-agent/pipeline/case.ts';
import { createStageNets, disposeStageNets } from '../site-agent/run/nets.ts';
import { replanStage, type StageSetup } from '../site-agent/run/site-plan.ts';
import { trainSiteLocally } from '../site-agent/run/train-site.ts';
import { thesisIncludeBackground, type Stage } from '../shared/model/index.ts';
import { StageData } from '../site-agent/train/stage-data.ts';
import { BudgetExceededError, trainStage, type TrainerCheckpoint } from '../site-agent/train/trainer.ts';
import { brainPhantom, TempDirs, useTrainingBackend } from './learning-fixtures.ts';

const ARCH: Architecture = { base: 4, depth: 2, norm: 'batch' };
const K = 4;
const C = 4;
const temp = new TempDirs();
let dataset: MsdDataset;
let trainIds: string[];

beforeAll(async () => {
  await useTrainingBackend();
  dataset = await openMsdDataset(await brainPhantom(await temp.make()), { seed: 1 });
  trainIds = dataset.split(1).train;
});
afterAll(() => temp.cleanup());

function stageData(stage: Stage, patch: Shape3, batch: number, ids = trainIds): StageData {
  return new StageData(dataset, ids, { stage, numClasses: K, patch, batch, divisor: 2, cascadeFactor: 0.5, seed: 3, foregroundRate: 0.5, skipEmpty: false });
}

function net(inChannels: number, norm: Architecture['norm'] = 'batch'): UNet3D {
  return new UNet3D({ inChannels, numClasses: K, base: 4, depth: 2, norm, seed: 5 });
}

describe('trainer: tensor count', () => {
  const cases: { stage: Stage; inChannels: number; patch: Shape3; batch: number; norm: Architecture['norm'] }[] = [
    { stage: 'patch', inChannels: C, patch: [8, 8, 8], batch: 2, norm: 'batch' },
    { stage: 'full', inChannels: C, patch: [16, 16, 16], batch: 1, norm: 'instance' },
    { stage: 'cascade-stage1', inChannels: C, patch: [8, 8, 8], batch: 1, norm: 'batch' },
    { stage: 'cascade-stage2', inChannels: C + K - 1, patch: [8, 8, 8], batch: 2, norm: 'instance' },
  ];
  for (const c of cases) {
    it(`is the same after every ${c.stage} step (dice-ce, FedProx, validation, checkpoints and a resume included) and back to the start afterwards`, async () => {
      const n = net(c.inChannels, c.norm);
      const before = tf.memory().numTensors;
      const counts: number[] = [];
      const checkpoints: TrainerCheckpoint[] = [];
      const r = await trainStage({
        net: n,
        data: stageData(c.stage, c.patch, c.batch),
        steps: 5,
        learningRate: 1e-3,
        includeBackground: thesisIncludeBackground(c.stage),
        loss: 'dice-ce',
        proximal: { mu: 0.01, global: n.getWeights() },
        validateEvery: 2,
        validate: async () => ({ perClass: [0.1, 0.2, 0.3], meanDice: 0.2 }),
        onProgress: () => counts.push(tf.memory().numTensors),
        checkpointEvery: 2,
        onCheckpoint: (cp) => void checkpoints.push(cp),
      });
      expect(r.stepsDone).toBe(5);
      expect(counts).toHaveLength(5);
      // Step 1 creates Adam's moments and the proximal anchors; nothing may grow after that.
      expect(new Set(counts).size).toBe(1);
      expect(tf.memory().numTensors).toBe(before);
      // Resuming restores Adam's moments into the same number of tensors a straight run holds.
      expect(checkpoints.map((cp) => cp.step)).toEqual([2, 4]);
      const resumedCounts: number[] = [];
      const resumed = await trainStage({
        net: n, data: stageData(c.stage, c.patch, c.batch), steps: 5, learningRate: 1e-3, includeBackground: thesisIncludeBackground(c.stage),
        loss: 'dice-ce', proximal: { mu: 0.01, global: n.getWeights() }, resumeFrom: checkpoints[0], onProgress: () => resumedCounts.push(tf.memory().numTensors),
      });
      expect(resumed.stepsDone).toBe(5);
      expect(resumedCounts).toEqual([counts[0], counts[0], counts[0]]);
      expect(tf.memory().numTensors).toBe(before);
      n.dispose();
    });
  }
});

describe('trainer: best checkpoint', () => {
  it('keeps the weights of the best validation, not the last, and trainSiteLocally restores them', async () => {
    const n = net(C);
    const scores = [0.2, 0.9, 0.5];
    const snapshots: Float32Array[][] = [];
    const r = await trainStage({
      net: n,
      data: stageData('patch', [8, 8, 8], 1),
      steps: 3,
      learningRate: 1e-2,
      includeBackground: true,
      validateEvery: 1,
      validate: async () => {
        snapshots.push(n.getWeights().values);
        const s = scores[snapshots.length - 1]!;
        return { perClass: [s, s, Number.NaN], meanDice: s };
      },
    });
    expect(r.validations.map((v) => v.step)).toEqual([1, 2, 3]);
    expect(r.best?.step).toBe(2);
    expect(r.best?.score).toBeCloseTo(0.9);
    expect(r.best!.weights.values).toEqual(snapshots[1]);
    expect(r.best!.weights.values).not.toEqual(n.getWeights().values);
    n.dispose();

    // End to end: with restoreBest the stage net ends on its best validated weights.
    const nets = createStageNets([{ stage: 'patch', inChannels: C, patch: [8, 8, 8], batch: 1, estimatedPeakBytes: 0 }], ARCH, K, 2);
    try {
      const [report] = await trainSiteLocally({
        dataset, trainIds, validationIds: dataset.split(1).validation, nets, numClasses: K, divisor: 2, cascadeFactor: 0.5,
        stepsPerStage: 4, learningRate: 1e-2, foregroundRate: 0.5, skipEmptyPatches: false, loss: 'dice-ce', validateEvery: 1,
        restoreBest: true, inference: { overlap: 0, blend: 'constant' }, seed: 1,
      });
      expect(report!.result.validations).toHaveLength(4);
      const best = report!.result.best!;
      const maxScore = Math.max(...report!.result.validations.map((v) => (Number.isNaN(v.result.meanDice) ? -1 : v.result.meanDice)));
      expect(best.score).toBe(maxScore);
      expect(nets[0]!.net.getWeights().values).toEqual(best.weights.values);
    } finally {
      disposeStageNets(nets);
    }
  });
});

describe('trainer: memory budget', () => {
  /** Engine peak of the first profiled step of a fresh patch net at this patch and batch. */
  async function measuredPeak(patch: Shape3, batch: number): Promise<number> {
    const n = net(C);
    try {
      const r = await trainStage({ net: n, data: stageData('patch', patch, batch), steps: 1, learningRate: 1e-3, includeBackground: true, loss: 'dice-ce' });
      return r.peakMemory!.engineBytes;
    } finally {
      n.dispose();
    }
  }

  it('stops at the first step whose measured peak exceeds the budget, with a clear E_BUDGET message', async () => {
    const n = net(C);
    const before = tf.memory().numTensors;
    const err = await trainStage({ net: n, data: stageData('patch', [16, 16, 16], 2), steps: 50, learningRate: 1e-3, includeBackground: true, budgetBytes: 64 * 1024 }).catch((e) => e);
    expect(err).toBeInstanceOf(BudgetExceededError);
    expect(err.code).toBe('E_BUDGET');
    expect(err.message).toMatch(/^measured training peak [\d.]+ MB exceeds the memory budget of 0\.1 MB \(patch 16x16x16, batch 2\)$/);
    expect(err.measured.engineBytes).toBeGreaterThan(64 * 1024);
    expect(tf.memory().numTensors).toBe(before); // optimiser state released on the way out
    n.dispose();
  });

  it('re-plans a smaller patch/batch that fits the measured budget and trains the full step count', async () => {
    const big = await measuredPeak([16, 16, 16], 2);
    const small = await measuredPeak([8, 8, 8], 1);
    expect(big).toBeGreaterThan(1.5 * small);
    const budgetBytes = Math.round((big + small) / 2);
    const start: StageSetup = { stage: 'patch', inChannels: C, patch: [16, 16, 16], batch: 2, estimatedPeakBytes: 0 };
    const nets = createStageNets([start], ARCH, K, 2);
    const notices: string[] = [];
    try {
      const [report] = await trainSiteLocally({
        dataset, trainIds, validationIds: [], nets, numClasses: K, divisor: 2, cascadeFactor: 0.5, stepsPerStage: 4, learningRate: 1e-3,
        foregroundRate: 0.5, skipEmptyPatches: false, restoreBest: false, inference: { overlap: 0, blend: 'constant' }, seed: 1, budgetBytes,
        replan: (failed, measured) => replanStage({ largestShape: dataset.largestShape(), classes: K, arch: ARCH }, failed, measured, budgetBytes)?.setup ?? null,
        onNotice: (m) => notices.push(m),
      });
      expect(report!.replans.length).toBeGreaterThanOrEqual(1);
      expect(report!.replans[0]!.from).toEqual({ patch: [16, 16, 16], batch: 2 });
      expect(report!.replans[0]!.measuredEngineBytes).toBeGreaterThan(budgetBytes);
      const final = nets[0]!.setup;
      expect(final.patch[0] * final.patch[1] * final.patch[2] * final.batch).toBeLessThan(16 * 16 * 16 * 2);
      expect(report!.result.stepsDone).toBe(4);
      expect(report!.result.peakMemory!.engineBytes).toBeLessThanOrEqual(budgetBytes);
      expect(notices[0]).toMatch(/^patch: measured training peak .* exceeds the memory budget .*; re-planned to patch \d+x\d+x\d+, batch \d, restarting the stage$/);
    } finally {
      disposeStageNets(nets);
    }
  });

  it('says plainly when not even the smallest configuration fits', async () => {
    const nets = createStageNets([{ stage: 'patch', inChannels: C, patch: [16, 16, 16], batch: 1, estimatedPeakBytes: 0 }], ARCH, K, 2);
    const budgetBytes = 32 * 1024;
    try {
      const err = await trainSiteLocally({
        dataset, trainIds, validationIds: [], nets, numClasses: K, divisor: 2, cascadeFactor: 0.5, stepsPerStage: 2, learningRate: 1e-3,
        foregroundRate: 0.5, skipEmptyPatches: false, restoreBest: false, inference: { overlap: 0, blend: 'constant' }, seed: 1, budgetBytes,
        replan: (failed, measured) => replanStage({ largestShape: dataset.largestShape(), classes: K, arch: ARCH }, failed, measured, budgetBytes)?.setup ?? null,
      }).catch((e) => e);
      expect(isPatchFedError(err) && err.code).toBe('E_BUDGET');
      expect(err.message).toMatch(/^patch: measured training peak .* exceeds the memory budget of 0\.0 MB .*no smaller patch or batch is expected to fit; raise memoryBudgetMB or use a smaller model$/);
    } finally {
      disposeStageNets(nets);
    }
  });

  it('replanStage corrects the estimate by the measured ratio and never grows the configuration', () => {
    const req = { largestShape: [64, 64, 48] as [number, number, number], classes: K, arch: { base: 8, depth: 3, norm: 'instance' as const } };
    const failed: StageSetup = { stage: 'patch', inChannels: C, patch: [32, 32, 32], batch: 2, estimatedPeakBytes: 0 };
    const first = replanStage(req, failed, 1e12, 1e12 + 1); // measured ~ budget: anything smaller with the correction applied
    expect(first).not.toBeNull();
    const r = replanStage(req, failed, 400 * 2 ** 20, 100 * 2 ** 20)!;
    expect(r.correction).toBeGreaterThanOrEqual(1);
    expect(r.expectedEngineBytes * 1.15).toBeLessThanOrEqual(100 * 2 ** 20);
    expect(r.setup.patch[0] * r.setup.patch[1] * r.setup.patch[2] * r.setup.batch).toBeLessThan(32 ** 3 * 2);
    expect(r.setup.batch).toBeLessThanOrEqual(2);
    // A whole-volume stage can only lower its batch.
    const whole: StageSetup = { stage: 'full', inChannels: C, patch: [64, 64, 48], batch: 1, estimatedPeakBytes: 0 };
    expect(replanStage(req, whole, 400 * 2 ** 20, 100 * 2 ** 20)).toBeNull();
    expect(replanStage(req, failed, 400 * 2 ** 20, 1024)).toBeNull();
  });
});
