/**
 * Evaluation as in thesis §2.5: per-class Dice on whole reconstructed volumes (background
 * excluded; NaN when a class is absent from both prediction and ground truth, ignored in means —
 * MONAI's convention), inference time per volume including reconstruction, and peak memory.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MsdDataset } from '../data/index.ts';
import { segmentCase, type InferenceOptions, type StageModel } from '../inference/segment.ts';
import { diceScores, nanMean } from '../metrics/dice.ts';
import { annotatedDice, annotatedLabelMap } from '../data/annotated-labels.ts';
import type { StageNet } from './nets.ts';

export interface CaseEvaluation {
  id: string;
  /** Dice per foreground class (index k-1 for class k). */
  dice: number[];
  timeMs: number;
}

export interface EvaluationReport {
  cases: CaseEvaluation[];
  /** nanMean over cases, per foreground class. */
  perClass: number[];
  meanDice: number;
  meanTimeMs: number;
  /** Largest tfjs engine peak over the predictions (bytes). */
  peakEngineBytes: number;
  method: string[];
}

export function stageModels(nets: readonly StageNet[]): { main: StageModel; stage1?: StageModel } {
  const models = nets.map((n) => ({ net: n.net, stage: n.setup.stage, patch: n.setup.patch }));
  const main = models.find((m) => m.stage !== 'cascade-stage1')!;
  const stage1 = models.find((m) => m.stage === 'cascade-stage1');
  return stage1 ? { main, stage1 } : { main };
}

export async function evaluateCases(nets: readonly StageNet[], dataset: MsdDataset, ids: readonly string[], opts: InferenceOptions): Promise<EvaluationReport> {
  const models = stageModels(nets);
  const cases: CaseEvaluation[] = [];
  let peak = 0;
  let method: string[] = [];
  for (const id of ids) {
    const c = await dataset.load(id);
    let seg!: Awaited<ReturnType<typeof segmentCase>>;
    const info = await tf.profile(async () => {
      seg = await segmentCase(models, c, opts);
      return [] as tf.Tensor[];
    });
    peak = Math.max(peak, info.peakBytes);
    method = seg.method;
    // MONAI DiceMetric(ignore_empty=True): a class absent from the ground truth scores NaN.
    // A partially annotated site scores only the classes its ground truth holds (NaN for the others).
    const d = diceScores(annotatedLabelMap(seg.labels, dataset.annotation), c.label, opts.numClasses, { empty: 'nan-if-truth-empty' });
    cases.push({ id, dice: annotatedDice(d.dice, dataset.annotation), timeMs: seg.timeMs });
  }
  const K = opts.numClasses;
  const perClass = Array.from({ length: K - 1 }, (_, k) => nanMean(cases.map((c) => c.dice[k]!)));
  return {
    cases,
    perClass,
    meanDice: nanMean(perClass),
    meanTimeMs: cases.reduce((a, c) => a + c.timeMs, 0) / Math.max(1, cases.length),
    peakEngineBytes: peak,
    method,
  };
}
