/**
 * One site training alone, end to end (what `patchfed train` runs): backend selection with the
 * gradient self-check, dataset, plan within the budget, training of every stage with the best
 * checkpoint kept, test-split evaluation, model artifacts and a JSON report.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { assertTrainableBackend, parseBackendChoice, selectBackend, type BackendReport } from '../backend/index.ts';
import { resolveArchitecture, type Architecture } from '../../shared/config/model.ts';
import type { SiteConfig } from '../../shared/config/site.ts';
import { openMsdDataset, type DatasetSplit, type MsdDataset } from '../data/index.ts';
import { saveModelArtifacts } from '../model/artifacts.ts';
import { formatBytes } from '../planner/plan.ts';
import { estimateTrainingPeak } from '../planner/estimate.ts';
import { loadSiteConfig } from '../site-config.ts';
import { ProgressReporter } from '../train/progress.ts';
import { evaluateCases, type EvaluationReport } from './evaluate.ts';
import { createStageNets, disposeStageNets, type StageNet } from './nets.ts';
import { planSite, replanStage, type SitePlan, type SitePlanRequest } from './site-plan.ts';
import { siteTrainingOptions, trainSiteLocally, type StageReplan, type StageTrainingReport } from './train-site.ts';
import { loadSavedTraining, openResumableRun } from './resumable-training.ts';
import { stagesForMode } from '../../shared/model/index.ts';

export interface LocalTrainingRequest {
  configPath: string;
  steps?: number;
  backend?: string;
  outDir?: string;
  jsonPath?: string;
  /** Progress output (default: stderr, bar on a TTY). */
  progress?: ProgressReporter | null;
  /** Continue the interrupted run whose state is in the output folder. */
  resume?: boolean;
  /** Save the resumable state every N steps (default DEFAULT_CHECKPOINT_EVERY; 0 = only when interrupted). */
  checkpointEvery?: number;
  /** Abort (SIGINT/SIGTERM): stop after the current step, save the state, throw TrainingInterruptedError. */
  signal?: AbortSignal;
}

export interface LocalTrainingReport {
  dataset: string;
  backend: Pick<BackendReport, 'name' | 'version' | 'gpu' | 'package'> & { selfCheckMaxRelError: number };
  mode: string;
  model: { base: number; depth: number; norm: string };
  labels: string[];
  split: { train: number; validation: number; test: number };
  stages: {
    stage: string;
    patch: number[];
    batch: number;
    /** Planner's whole-process estimate: tfjs engine + native workspace + runtime overhead. */
    estimatedPeakBytes: number;
    /** Planner's estimate of the tfjs engine part alone: what measuredPeakBytes measures. */
    estimatedEngineBytes: number;
    /** tf.profile peak of the first steps (engine bytes). */
    measuredPeakBytes: number | null;
    steps: number;
    finalLoss: number | null;
    bestStep: number | null;
    bestValidationDice: number | null;
    trainTimeMs: number;
    modelDir: string;
    /** Smaller configurations chosen after a measured step exceeded the budget. */
    replans: StageReplan[];
  }[];
  test: { dice: Record<string, number | null>; meanDice: number | null; meanInferenceMs: number; peakInferenceBytes: number; method: string[] };
  fullVolumeEstimateBytes: number;
}

const nullIfNaN = (x: number) => (Number.isNaN(x) ? null : x);

type LocalStageReport = LocalTrainingReport['stages'][number];

export async function runLocalTraining(req: LocalTrainingRequest): Promise<LocalTrainingReport> {
  const cfg = loadSiteConfig(req.configPath);
  const outDir = req.outDir ?? join(cfg.workDir, 'train');
  const saved = loadSavedTraining(outDir, req.resume ?? false);
  const backend = await selectBackend(parseBackendChoice(req.backend ?? cfg.backend), (m) => process.stderr.write(`backend: ${m}\n`));
  assertTrainableBackend(backend);
  const dataset = await openMsdDataset(cfg.dataset, { cacheMB: cfg.cacheMB, seed: cfg.seed, maxMemoryMB: cfg.memoryBudgetMB, annotatedLabels: cfg.annotatedLabels });
  for (const p of dataset.problems) process.stderr.write(`dataset problem: ${p.file}: ${p.reason}\n`);
  const split = dataset.split(cfg.seed);
  const classes = dataset.labels.length;
  const arch = resolveArchitecture(cfg.model);
  const { planRequest, sitePlan } = planLocalStages(cfg, dataset, arch);
  const budgetBytes = cfg.memoryBudgetMB * 1024 * 1024;
  const nets = createStageNets(sitePlan.stages, arch, classes, cfg.seed);
  const progress = req.progress === undefined ? new ProgressReporter() : req.progress;
  const run = openResumableRun({
    outDir,
    saved,
    requestedSteps: req.steps,
    configSteps: cfg.training.steps,
    checkpointEvery: req.checkpointEvery,
    settings: {
      config: JSON.stringify({ dataset: resolve(cfg.dataset), model: cfg.model, training: { ...cfg.training, steps: undefined }, seed: cfg.seed, memoryBudgetMB: cfg.memoryBudgetMB }),
      trainIds: split.train,
      validationIds: split.validation,
      stages: sitePlan.stages.map((st) => `${st.stage} ${st.patch.join('x')} batch ${st.batch}`),
    },
    backend: backend.name,
    notice: (m) => process.stderr.write(`resume: ${m}\n`),
  });
  try {
    const basis = {
      dataset,
      trainIds: split.train,
      validationIds: split.validation,
      nets,
      numClasses: classes,
      divisor: sitePlan.divisor,
      cascadeFactor: cfg.model.cascadeFactor,
      stepsPerStage: run.steps,
      seed: cfg.seed,
      memoryBudgetMB: cfg.memoryBudgetMB,
      restoreBest: true,
    };
    const reports = await trainSiteLocally({
      ...siteTrainingOptions(basis, cfg.training),
      validateEvery: cfg.training.validateEvery || Math.max(1, Math.ceil(run.steps / 4)),
      cacheMB: cfg.cacheMB,
      onProgress: progress ? (p) => progress.update(p) : undefined,
      replan: (failed, measured) => replanStage(planRequest, failed, measured, budgetBytes)?.setup ?? null,
      onNotice: (m) => process.stderr.write(`memory: ${m}\n`),
      resume: run.resume,
      checkpointEvery: run.checkpointEvery,
      saveState: run.save,
      signal: req.signal,
    });
    run.assertComplete(reports, nets.length);
    const test: EvaluationReport = await evaluateCases(nets, dataset, split.test.length > 0 ? split.test : split.validation, {
      numClasses: classes,
      overlap: cfg.training.overlap,
      blend: cfg.training.blend,
      divisor: sitePlan.divisor,
      cascadeFactor: cfg.model.cascadeFactor,
    });
    mkdirSync(outDir, { recursive: true });
    const stages = await saveStageModels({ cfg, dataset, nets, reports, divisor: sitePlan.divisor, arch, outDir });
    const report = localTrainingReport({ cfg, dataset, backend, arch, split, stages, test, fullVolumeEstimateBytes: sitePlan.plan.fullVolumeBytes });
    writeFileSync(join(outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    if (req.jsonPath) writeFileSync(req.jsonPath, `${JSON.stringify(report, null, 2)}\n`);
    run.finished();
    return report;
  } finally {
    disposeStageNets(nets);
  }
}

/** The planner's stages for this dataset and budget, logged (with the config's explicit patch/batch when set). */
function planLocalStages(cfg: SiteConfig, dataset: MsdDataset, arch: Architecture): { planRequest: SitePlanRequest; sitePlan: SitePlan } {
  const channels = dataset.modalities.length;
  const classes = dataset.labels.length;
  const planRequest = {
    largestShape: dataset.largestShape(),
    channels,
    classes,
    mode: cfg.model.mode,
    arch,
    budgetMB: cfg.memoryBudgetMB,
    cascadeFactor: cfg.model.cascadeFactor,
    patch: cfg.training.patch,
    batch: cfg.training.batch,
  };
  const sitePlan = planSite(planRequest);
  // Sanity: the planner's stages are the mode's stages.
  if (sitePlan.stages.length !== stagesForMode(cfg.model.mode, channels, classes).length) throw new Error('planner returned the wrong stages');
  process.stderr.write(`plan: ${sitePlan.plan.message}\n`);
  if (cfg.training.patch) {
    // The config's explicit patch/batch override the planner's choice (checked against the budget).
    const used = sitePlan.stages.map((st) => `${st.stage} ${st.patch.join('×')} batch ${st.batch} (~${formatBytes(st.estimatedPeakBytes)})`).join('; ');
    process.stderr.write(`plan: training.patch is set in the config, so training uses ${used}\n`);
  }
  return { planRequest, sitePlan };
}

interface SaveStageModelsRequest {
  cfg: SiteConfig;
  dataset: MsdDataset;
  nets: readonly StageNet[];
  reports: readonly StageTrainingReport[];
  divisor: number;
  arch: Architecture;
  outDir: string;
}

/** Writes each stage's model artifacts under outDir and returns the stage part of the report. */
async function saveStageModels(o: SaveStageModelsRequest): Promise<LocalStageReport[]> {
  const { cfg, dataset, outDir } = o;
  const classes = dataset.labels.length;
  const ctStats = await dataset.intensityStats();
  // The nets' setups, not the first plan: a stage may have been re-planned smaller.
  return o.nets.map(({ setup: s, net }, i) => {
    const report = o.reports[i];
    if (!report) throw new Error(`no training report for stage ${s.stage}`);
    const r = report.result;
    const modelDir = join(outDir, s.stage);
    saveModelArtifacts(modelDir, net, {
      mode: cfg.model.mode,
      stage: s.stage,
      labels: Object.fromEntries(dataset.labels.map((l, k) => [String(k), l.name])),
      labelValues: dataset.labels.map((l) => l.value),
      modalities: dataset.modalities,
      patch: s.patch,
      cascadeFactor: cfg.model.cascadeFactor,
      divisor: o.divisor,
      normalization: dataset.schemes,
      ctStats,
      overlap: cfg.training.overlap,
      blend: cfg.training.blend,
      bestStep: r.best?.step ?? null,
    });
    return {
      stage: s.stage,
      patch: [...s.patch],
      batch: s.batch,
      estimatedPeakBytes: s.estimatedPeakBytes,
      estimatedEngineBytes: estimateTrainingPeak({ inChannels: s.inChannels, classes, arch: o.arch }, s.patch, s.batch).engine,
      measuredPeakBytes: r.peakMemory?.engineBytes ?? null,
      steps: r.stepsDone,
      finalLoss: r.losses.at(-1) ?? null,
      bestStep: r.best?.step ?? null,
      bestValidationDice: r.best ? nullIfNaN(r.best.score) : null,
      trainTimeMs: r.timeMs,
      modelDir,
      replans: report.replans,
    };
  });
}

interface LocalTrainingReportParts {
  cfg: SiteConfig;
  dataset: MsdDataset;
  backend: BackendReport;
  arch: Architecture;
  split: DatasetSplit;
  stages: LocalStageReport[];
  test: EvaluationReport;
  fullVolumeEstimateBytes: number;
}

function localTrainingReport(o: LocalTrainingReportParts): LocalTrainingReport {
  const { cfg, dataset, backend, split, test } = o;
  const labels = dataset.labels.map((l) => l.name);
  return {
    dataset: `${dataset.name} (${cfg.dataset})`,
    backend: { name: backend.name, version: backend.version, gpu: backend.gpu, package: backend.package, selfCheckMaxRelError: backend.selfCheck.maxRelError },
    mode: cfg.model.mode,
    model: o.arch,
    labels,
    split: { train: split.train.length, validation: split.validation.length, test: split.test.length },
    stages: o.stages,
    test: {
      dice: Object.fromEntries(test.perClass.map((d, k) => [labels[k + 1] ?? String(k + 1), nullIfNaN(d)])),
      meanDice: nullIfNaN(test.meanDice),
      meanInferenceMs: test.meanTimeMs,
      peakInferenceBytes: test.peakEngineBytes,
      method: test.method,
    },
    fullVolumeEstimateBytes: o.fullVolumeEstimateBytes,
  };
}

export function formatTrainingReport(r: LocalTrainingReport): string {
  const f = (x: number | null) => (x === null ? '  n/a' : x.toFixed(3));
  const lines = [
    `trained ${r.mode} on ${r.dataset} with ${r.backend.name} (${r.backend.package} ${r.backend.version}, gpu ${r.backend.gpu}); split ${r.split.train}/${r.split.validation}/${r.split.test}`,
  ];
  for (const s of r.stages) {
    lines.push(
      `  ${s.stage}: patch ${s.patch.join('x')} batch ${s.batch}, ${s.steps} steps in ${(s.trainTimeMs / 1000).toFixed(1)} s, final loss ${s.finalLoss?.toFixed(4) ?? 'n/a'}, best val Dice ${f(s.bestValidationDice)} at step ${s.bestStep ?? 'n/a'}; tfjs memory est. ${formatBytes(s.estimatedEngineBytes)} measured ${s.measuredPeakBytes === null ? 'n/a' : formatBytes(s.measuredPeakBytes)} (with workspace and runtime est. ${formatBytes(s.estimatedPeakBytes)}) -> ${s.modelDir}`,
    );
    for (const rp of s.replans) {
      lines.push(`    re-planned: patch ${rp.from.patch.join('x')} batch ${rp.from.batch} measured ${formatBytes(rp.measuredEngineBytes)} > budget ${formatBytes(rp.budgetBytes)} -> patch ${rp.to.patch.join('x')} batch ${rp.to.batch}`);
    }
  }
  lines.push(`  test Dice: ${Object.entries(r.test.dice).map(([k, v]) => `${k} ${f(v)}`).join(', ')}; mean ${f(r.test.meanDice)}; ${r.test.meanInferenceMs.toFixed(0)} ms/volume`);
  lines.push(`  inference: ${r.test.method.join(' | ')}`);
  return `${lines.join('\n')}\n`;
}
