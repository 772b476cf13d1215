/**
 * Resumable training, in process: a stage trained K steps straight and the same stage stopped
 * after K/2 (abort signal), checkpointed, and resumed in a fresh net and data source draw the
 * same batches in the same order and end on bit-identical weights, losses and best checkpoint;
 * a cascade stopped in its second stage resumes through the state file to the same two nets; a
 * damaged state file is refused; and an interrupted TTY progress bar is closed with a newline.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMsdDataset, type MsdDataset } from '../site-agent/data/index.ts';
import { UNet3D } from '../site-agent/model/unet.ts';
import type { TrainingBatch } from '../site-agent/pipeline/sampler.ts';
import { ProgressReporter } from '../site-agent/train/progress.ts';
import { StageData } from '../site-agent/train/stage-data.ts';
import { trainStage, type TrainerCheckpoint } from '../site-agent/train/trainer.ts';
import { createStageNets, disposeStageNets, type StageNet } from '../site-agent/run/nets.ts';
import type { StageSetup } from '../site-agent/run/site-plan.ts';
import { trainSiteLocally } from '../site-agent/run/train-site.ts';
import { readTrainingState, writeTrainingState } from '../site-agent/run/training-state.ts';
import { brainPhantom, TempDirs, useTrainingBackend } from './learning-fixtures.ts';

const K = 4;
const C = 4;
const STEPS = 10; // resumed after 5: where float32 pow(β2, 6) and β2·β2·… differ (see betaPowerVariables)
const temp = new TempDirs();
let dataset: MsdDataset;
let trainIds: string[];

beforeAll(async () => {
  await useTrainingBackend();
  dataset = await openMsdDataset(await brainPhantom(await temp.make()), { seed: 1 });
  trainIds = dataset.split(1).train;
});
afterAll(() => temp.cleanup());

function digest(b: TrainingBatch): string {
  return createHash('sha256').update(new Uint8Array(b.image.buffer, b.image.byteOffset, b.image.byteLength)).update(b.labels).digest('hex').slice(0, 16);
}

/** The stage's seeded data, recording a digest of every batch it hands out (replays included). */
function recordedData(seen: string[]) {
  const data = new StageData(dataset, trainIds, { stage: 'patch', numClasses: K, patch: [8, 8, 8], batch: 2, divisor: 2, cascadeFactor: 0.5, seed: 3, foregroundRate: 0.5, skipEmpty: false });
  return {
    nextBatch: async () => {
      const b = await data.nextBatch();
      seen.push(digest(b));
      return b;
    },
  };
}

const freshNet = () => new UNet3D({ inChannels: C, numClasses: K, base: 4, depth: 2, norm: 'batch', seed: 5 });

/** A validation whose score depends on the weights, so "best" is a real choice. */
function weightScore(net: UNet3D) {
  return async () => {
    const w = net.getWeights().values[0]!;
    const s = Math.abs(Math.sin(w.reduce((a, b) => a + b, 0) * 1e3));
    return { perClass: [s, s, s], meanDice: s };
  };
}

describe('resumable trainer', () => {
  it('K/2 steps + abort + resume = K steps straight: same batch order, bit-identical weights, losses and best', async () => {
    const before = tf.memory().numTensors;
    const common = { steps: STEPS, learningRate: 1e-2, includeBackground: true, loss: 'dice-ce' as const, validateEvery: 3 };

    const straightBatches: string[] = [];
    const straightNet = freshNet();
    const straight = await trainStage({ ...common, net: straightNet, data: recordedData(straightBatches), validate: weightScore(straightNet) });
    expect(straight.stepsDone).toBe(STEPS);
    const straightWeights = straightNet.getWeights().values;
    straightNet.dispose();

    // Stop after step K/2 as SIGINT would, keeping the checkpoint handed out on the way out.
    const firstBatches: string[] = [];
    const firstNet = freshNet();
    const variables = firstNet.trainableVariables.length;
    const stop = new AbortController();
    const checkpoints: TrainerCheckpoint[] = [];
    const first = await trainStage({
      ...common,
      net: firstNet,
      data: recordedData(firstBatches),
      validate: weightScore(firstNet),
      signal: stop.signal,
      checkpointEvery: 3,
      onCheckpoint: (c) => void checkpoints.push(c),
      onProgress: (p) => p.step === STEPS / 2 && stop.abort(),
    });
    firstNet.dispose();
    expect(first.aborted).toBe(true);
    expect(first.stepsDone).toBe(STEPS / 2);
    expect(checkpoints.map((c) => c.step)).toEqual([3, STEPS / 2]); // every 3 steps, then on the abort
    const saved = checkpoints.at(-1)!;
    expect(saved.optimizer.iterations).toBe(STEPS / 2);
    expect(saved.optimizer.firstMoments).toHaveLength(variables);
    expect(saved.optimizer.secondMoments).toHaveLength(variables);

    // A new process would start from a freshly initialised net and a fresh data source.
    const resumedBatches: string[] = [];
    const resumedNet = freshNet();
    const counts: number[] = [];
    const resumed = await trainStage({ ...common, net: resumedNet, data: recordedData(resumedBatches), validate: weightScore(resumedNet), resumeFrom: saved, onProgress: () => counts.push(tf.memory().numTensors) });
    expect(resumed.stepsDone).toBe(STEPS);
    expect(resumedBatches).toEqual(straightBatches); // replayed K/2, then the same next ones
    expect(firstBatches).toEqual(straightBatches.slice(0, STEPS / 2));
    expect(resumed.losses).toEqual(straight.losses);
    expect(resumed.validations.map((v) => v.step)).toEqual(straight.validations.map((v) => v.step));
    expect(resumed.best?.step).toBe(straight.best?.step);
    expect(resumed.best?.weights.values).toEqual(straight.best?.weights.values);
    expect(resumedNet.getWeights().values).toEqual(straightWeights);
    expect(new Set(counts).size).toBe(1); // constant tensor count across resumed steps
    resumedNet.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('progress on an interrupted TTY', () => {
  it('close() ends an open progress bar with a newline, and only then', () => {
    let out = '';
    const tty = { isTTY: true, write: (s: string) => (out += s) };
    const p = new ProgressReporter(tty);
    p.update({ label: 'patch', step: 3, steps: 10, loss: 0.5, voxelsPerSecond: 1e4, elapsedMs: 30 });
    expect(out.endsWith('\n')).toBe(false);
    p.close();
    expect(out.endsWith('\x1b[K\n')).toBe(true);
    const length = out.length;
    p.close();
    p.update({ label: 'patch', step: 10, steps: 10, loss: 0.5, voxelsPerSecond: 1e4, elapsedMs: 100 });
    p.close();
    expect(out.slice(length)).toMatch(/^\rpatch \[#+\] 10\/10 .*\x1b\[K\n$/); // the bar's own final newline only
  });
});

describe('resumable site training (cascade) and its state file', () => {
  const ARCH = { base: 4, depth: 2, norm: 'instance' as const };
  const setups = (): StageSetup[] => [
    { stage: 'cascade-stage1', inChannels: C, patch: [8, 8, 8], batch: 1, estimatedPeakBytes: 0 },
    { stage: 'cascade-stage2', inChannels: C + K - 1, patch: [8, 8, 8], batch: 1, estimatedPeakBytes: 0 },
  ];
  const options = (nets: StageNet[]) => ({
    dataset, trainIds, validationIds: dataset.split(1).validation, nets, numClasses: K, divisor: 2, cascadeFactor: 0.5, stepsPerStage: 6,
    learningRate: 1e-2, foregroundRate: 0.5, skipEmptyPatches: false, loss: 'dice-ce' as const, validateEvery: 2, restoreBest: true,
    inference: { overlap: 0, blend: 'constant' as const }, seed: 1,
  });

  it('stopped in stage 2, saved to a file, read back and resumed in fresh nets: both stages end bit-identical', async () => {
    const straightNets = createStageNets(setups(), ARCH, K, 2);
    const straight = await trainSiteLocally(options(straightNets));
    const expected = straightNets.map((n) => n.net.getWeights().values);
    disposeStageNets(straightNets);

    const file = path.join(await temp.make(), 'state.pfts');
    const firstNets = createStageNets(setups(), ARCH, K, 2);
    const stop = new AbortController();
    const saves: number[] = [];
    const first = await trainSiteLocally({
      ...options(firstNets),
      signal: stop.signal,
      checkpointEvery: 4,
      saveState: (site) => {
        writeTrainingState(file, { settings: { run: 'test' }, site, savedAt: 'now' });
        saves.push(site.completed.length * 100 + (site.current?.trainer?.step ?? 0));
      },
      onProgress: (p) => p.label === 'cascade-stage2' && p.step === 3 && stop.abort(),
    });
    disposeStageNets(firstNets);
    expect(first.map((r) => [r.stage, r.result.stepsDone, r.result.aborted])).toEqual([['cascade-stage1', 6, false], ['cascade-stage2', 3, true]]);
    expect(saves).toEqual([4, 100, 103]); // stage 1 at step 4, stage 1 done, stage 2 stopped at 3

    const saved = readTrainingState(file);
    expect(saved.site.completed).toHaveLength(1);
    expect(saved.site.completed[0]!.result.validations).toEqual(first[0]!.result.validations); // NaN Dice survives the JSON
    expect(saved.site.current?.trainer?.step).toBe(3);
    const resumedNets = createStageNets(setups(), ARCH, K, 2);
    const resumed = await trainSiteLocally({ ...options(resumedNets), resume: saved.site });
    expect(resumed.map((r) => r.result.stepsDone)).toEqual([6, 6]);
    expect(resumed.map((r) => r.result.losses)).toEqual(straight.map((r) => r.result.losses));
    expect(resumedNets.map((n) => n.net.getWeights().values)).toEqual(expected);
    disposeStageNets(resumedNets);
  });

  it('refuses a damaged or foreign state file with the file and the reason', async () => {
    const dir = await temp.make();
    const file = path.join(dir, 'state.pfts');
    const net = freshNet();
    const checkpoint: TrainerCheckpoint[] = [];
    const stop = new AbortController();
    await trainStage({ net, data: recordedData([]), steps: 3, learningRate: 1e-3, includeBackground: true, signal: stop.signal, onCheckpoint: (c) => void checkpoint.push(c), onProgress: () => stop.abort() });
    net.dispose();
    const setup: StageSetup = { stage: 'patch', inChannels: C, patch: [8, 8, 8], batch: 2, estimatedPeakBytes: 0 };
    writeTrainingState(file, { settings: {}, savedAt: 'now', site: { completed: [], current: { setup, replans: [], trainer: checkpoint[0]! } } });
    const bytes = await readFile(file);
    const back = readTrainingState(file).site.current?.trainer;
    expect(back?.optimizer).toEqual(checkpoint[0]!.optimizer);
    expect(back?.weights).toEqual(checkpoint[0]!.weights);
    bytes[bytes.length - 5]! ^= 0xff;
    await writeFile(file, bytes);
    expect(() => readTrainingState(file)).toThrow(/state\.pfts: not a usable training state \(blob 'current\/.*' fails its checksum\)/);
    await writeFile(file, bytes.subarray(0, 40));
    expect(() => readTrainingState(file)).toThrow(/not a usable training state \(truncated header\)/);
    await writeFile(file, 'hello world, not a state');
    expect(() => readTrainingState(file)).toThrow(/not a usable training state \(no PFTS header\)/);
  });
});
