/**
 * Local training of a site's stage nets (one, or two for the cascade, trained independently as in
 * thesis §2.2.3), each validated on its own view of the validation split; the best checkpoint of
 * each stage (by mean foreground Dice) is kept and, for local runs, restored at the end.
 * When a measured step exceeds the memory budget and a `replan` is given, the stage restarts from
 * its initial weights with the smaller configuration it returns (the net's weights do not depend
 * on the patch shape); without one, or when nothing smaller fits, the E_BUDGET error propagates.
 */
import type { MsdDataset } from '../data/index.ts';
import type { SiteConfig } from '../../shared/config/site.ts';
import { PatchFedError } from '../../shared/errors.ts';
import { predictStage, type InferenceOptions } from '../inference/segment.ts';
import { argmaxChannelsLast } from '../pipeline/patches.ts';
import { diceScores, nanMean } from '../metrics/dice.ts';
import { annotatedDice, annotatedLabelMap, type LabelAnnotation } from '../data/annotated-labels.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import { thesisIncludeBackground } from '../../shared/model/index.ts';
import type { ProgressInfo } from '../train/progress.ts';
import { StageData } from '../train/stage-data.ts';
import { BudgetExceededError, copyWeights, trainStage, type LossKind, type StageResult, type TrainerCheckpoint, type TrainStageOptions, type ValidationResult } from '../train/trainer.ts';
import type { StageNet } from './nets.ts';
import type { StageSetup } from './site-plan.ts';
import type { CompletedStageState, SiteTrainingState } from './training-state.ts';

/** What a site config's `training` section decides of a run, built in one place for every caller. */
export type ConfiguredTrainingOptions = Pick<LocalTrainingOptions, 'learningRate' | 'foregroundRate' | 'skipEmptyPatches' | 'includeBackground' | 'loss' | 'inference'>;

export function configuredTrainingOptions(training: SiteConfig['training']): ConfiguredTrainingOptions {
  return {
    learningRate: training.learningRate,
    foregroundRate: training.foregroundRate,
    skipEmptyPatches: training.skipEmptyPatches,
    includeBackground: training.includeBackgroundInLoss,
    loss: training.loss,
    inference: { overlap: training.overlap, blend: training.blend },
  };
}

/** The parts of a training run that come from the dataset, the plan and the nets rather than the config. */
export type TrainingRunBasis = Pick<
  LocalTrainingOptions,
  'dataset' | 'trainIds' | 'validationIds' | 'nets' | 'numClasses' | 'divisor' | 'cascadeFactor' | 'stepsPerStage' | 'seed' | 'restoreBest'
> & { memoryBudgetMB: number };

/**
 * The one builder of training options, shared by `patchfed train` (local-training.ts), a
 * federated round (federated-site.ts) and the simulator's pooled baseline (pooled-training.ts):
 * the run's basis plus the config's training section. Callers add only what is theirs
 * (progress, resume, FedProx anchor, the round task's learning rate).
 */
export function siteTrainingOptions(basis: TrainingRunBasis, training: SiteConfig['training']): LocalTrainingOptions {
  const { memoryBudgetMB, ...rest } = basis;
  return { ...rest, ...configuredTrainingOptions(training), budgetBytes: memoryBudgetMB * 1024 * 1024 };
}

export interface LocalTrainingOptions {
  dataset: MsdDataset;
  trainIds: readonly string[];
  validationIds: readonly string[];
  nets: readonly StageNet[];
  numClasses: number;
  divisor: number;
  cascadeFactor: number;
  stepsPerStage: number;
  learningRate: number;
  foregroundRate: number;
  skipEmptyPatches: boolean;
  /** Overrides the thesis's per-stage background convention. */
  includeBackground?: boolean;
  loss?: LossKind;
  validateEvery?: number;
  /** Restore each stage's best validated weights at the end (local training; not in federated rounds). */
  restoreBest: boolean;
  inference: Omit<InferenceOptions, 'numClasses' | 'divisor' | 'cascadeFactor'>;
  seed: number;
  budgetBytes?: number;
  /** FedProx anchor per stage net (its own weights layout). */
  proximal?: { mu: number; global: NamedWeights[] };
  cacheMB?: number;
  onProgress?: (p: ProgressInfo) => void;
  signal?: AbortSignal;
  /**
   * Called when a profiled step measured more than `budgetBytes`: a smaller setup for the stage,
   * or null when nothing smaller fits. The stage net's `setup` is replaced by the returned one.
   */
  replan?: (failed: StageSetup, measuredEngineBytes: number) => StageSetup | null;
  /** Human-readable notices (re-planning). */
  onNotice?: (message: string) => void;
  /** Continue an interrupted run from its saved state (training-state.ts). */
  resume?: SiteTrainingState;
  /** Hand `saveState` the state every N steps of a stage, after each finished stage and when aborted. */
  checkpointEvery?: number;
  saveState?: (state: SiteTrainingState) => void | Promise<void>;
}

export interface StageReplan {
  from: { patch: number[]; batch: number };
  to: { patch: number[]; batch: number };
  measuredEngineBytes: number;
  budgetBytes: number;
}

export interface StageTrainingReport {
  stage: string;
  result: StageResult;
  /** Re-plannings after measured steps exceeded the budget (empty when the first plan held). */
  replans: StageReplan[];
}

/** Validation of one stage on its own data view (downsampled for stage 1, GT-guided for stage 2). */
async function validateStage(net: StageNet, data: StageData, ids: readonly string[], inf: InferenceOptions, annotation: LabelAnnotation | null): Promise<ValidationResult> {
  const perCase: number[][] = [];
  for (const id of ids) {
    const c = await data.stageCase(id);
    const p = await predictStage({ net: net.net, stage: net.setup.stage, patch: net.setup.patch }, c, inf);
    // A partially annotated site scores only what its ground truth holds (annotated-labels.ts).
    const predicted = annotatedLabelMap(argmaxChannelsLast(p.probabilities, inf.numClasses), annotation);
    perCase.push(annotatedDice(diceScores(predicted, c.label!, inf.numClasses, { empty: 'nan-if-truth-empty' }).dice, annotation));
  }
  const perClass = Array.from({ length: inf.numClasses - 1 }, (_, k) => nanMean(perCase.map((d) => d[k]!)));
  return { perClass, meanDice: nanMean(perClass) };
}

type ResumeOptions = Pick<TrainStageOptions, 'resumeFrom' | 'checkpointEvery' | 'onCheckpoint'>;

async function trainOneStage(o: LocalTrainingOptions, sn: StageNet, i: number, inf: InferenceOptions, resume: ResumeOptions): Promise<StageResult> {
  const common = {
    stage: sn.setup.stage,
    numClasses: o.numClasses,
    patch: sn.setup.patch,
    batch: sn.setup.batch,
    divisor: o.divisor,
    cascadeFactor: o.cascadeFactor,
    foregroundRate: o.foregroundRate,
    skipEmpty: o.skipEmptyPatches,
    cacheMB: o.cacheMB,
  };
  const data = new StageData(o.dataset, o.trainIds, { ...common, seed: o.seed + 17 * i });
  const valData = o.validationIds.length > 0 ? new StageData(o.dataset, o.validationIds, { ...common, seed: o.seed }) : null;
  return trainStage({
    net: sn.net,
    data,
    steps: o.stepsPerStage,
    learningRate: o.learningRate,
    includeBackground: o.includeBackground ?? thesisIncludeBackground(sn.setup.stage),
    loss: o.loss,
    ...(o.dataset.annotation ? { channelOf: o.dataset.annotation.channelOf } : {}),
    proximal: o.proximal ? { mu: o.proximal.mu, global: o.proximal.global[i]! } : undefined,
    validate: valData ? () => validateStage(sn, valData, o.validationIds, inf, o.dataset.annotation) : undefined,
    validateEvery: o.validateEvery,
    budgetBytes: o.budgetBytes,
    label: sn.setup.stage,
    onProgress: o.onProgress,
    signal: o.signal,
    ...resume,
  });
}

export async function trainSiteLocally(o: LocalTrainingOptions): Promise<StageTrainingReport[]> {
  const inf: InferenceOptions = { ...o.inference, numClasses: o.numClasses, divisor: o.divisor, cascadeFactor: o.cascadeFactor };
  const reports: StageTrainingReport[] = [];
  const completed: CompletedStageState[] = [];
  for (const [i, sn] of o.nets.entries()) {
    const done = o.resume?.completed[i];
    if (done) {
      // Finished before the interruption: its saved weights and report stand.
      sn.setup = done.setup;
      sn.net.setWeights(done.weights);
      completed.push(done);
      reports.push({ stage: done.setup.stage, result: done.result, replans: done.replans });
      continue;
    }
    const resumed = o.resume && i === o.resume.completed.length ? o.resume.current : null;
    if (resumed) sn.setup = resumed.setup;
    const initial = o.replan ? copyWeights(sn.net.getWeights()) : null;
    const replans: StageReplan[] = resumed ? [...resumed.replans] : [];
    let checkpoint = resumed?.trainer ?? undefined;
    const save = (trainer: TrainerCheckpoint | null) =>
      o.saveState?.({ completed: [...completed], current: { setup: sn.setup, replans: [...replans], trainer } });
    let result: StageResult;
    for (;;) {
      try {
        result = await trainOneStage(o, sn, i, inf, {
          resumeFrom: checkpoint,
          checkpointEvery: o.checkpointEvery,
          onCheckpoint: o.saveState ? (c) => save(c) : undefined,
        });
        break;
      } catch (e) {
        if (!(e instanceof BudgetExceededError) || !o.replan || !initial) throw e;
        const smaller = o.replan(sn.setup, e.measured.engineBytes);
        if (!smaller) {
          throw new PatchFedError('E_BUDGET', `${sn.setup.stage}: ${e.message}, and no smaller patch or batch is expected to fit; raise memoryBudgetMB or use a smaller model`);
        }
        replans.push({
          from: { patch: [...sn.setup.patch], batch: sn.setup.batch },
          to: { patch: [...smaller.patch], batch: smaller.batch },
          measuredEngineBytes: e.measured.engineBytes,
          budgetBytes: e.budgetBytes,
        });
        o.onNotice?.(`${sn.setup.stage}: ${e.message}; re-planned to patch ${smaller.patch.join('x')}, batch ${smaller.batch}, restarting the stage`);
        sn.setup = smaller;
        sn.net.setWeights(initial);
        checkpoint = undefined; // the stage restarts from its initial weights
      }
    }
    if (o.restoreBest && result.best) sn.net.setWeights(result.best.weights);
    reports.push({ stage: sn.setup.stage, result, replans });
    if (result.aborted) {
      // Stopped before its first step: the trainer had nothing to checkpoint, the site state still counts.
      if (result.stepsDone === 0) await save(null);
      break;
    }
    completed.push({ setup: sn.setup, replans, result, weights: sn.net.getWeights() });
    await o.saveState?.({ completed: [...completed], current: null });
  }
  return reports;
}
