/**
 * `patchfed compare`: the thesis's experiment (§4) on a phantom. One phantom dataset, the three
 * modes (full, patch, cascade) trained on the same split with the same model and step count by
 * the ordinary local-training path (runLocalTraining), evaluated on the same test cases; plus the
 * planner's estimates for the real MSD geometries. The report holds the thesis's tables: per-class
 * Dice per mode (Tables 4.1/4.3) and peak memory and inference time per mode (Tables 4.2/4.4),
 * next to the thesis's own numbers, with HD95/NSD and, on context phantoms, how each mode labels
 * the structures only context beyond a slab tells apart (compare-evaluate.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Mode, Norm } from '../../shared/config/model.ts';
import { resolveArchitecture, type Architecture, type PresetName } from '../../shared/config/model.ts';
import { openMsdDataset } from '../data/index.ts';
import { generatePhantomDataset, type PhantomTask } from '../phantom/index.ts';
import type { CompareScale } from './compare-scales.ts';
export { COMPARE_SCALES, type CompareScale } from './compare-scales.ts';
import { estimateInferencePeak, estimateTrainingPeak, requiredDivisor, roundUpTo, type UNetShape } from '../planner/estimate.ts';
import { downsampledShape, planTraining } from '../planner/plan.ts';
import { kernelWorkspaceBytes } from '../planner/workspace.ts';
import type { ProgressReporter } from '../train/progress.ts';
import { runLocalTraining, type LocalTrainingReport } from './local-training.ts';
import { evaluateSavedMode, type ModeEvaluation } from './compare-evaluate.ts';

export const COMPARE_MODES: readonly Mode[] = ['full', 'patch', 'cascade'];

/**
 * Cascade factor on phantoms. The thesis's 0.3 / 0.2 (kept for the MSD estimates) shrink 240 /
 * 512 voxels to ~70–100; on a 32-voxel phantom they would leave stage 1 about 10 voxels wide,
 * too coarse to guide anything, so phantoms default to 0.5.
 */
export const PHANTOM_CASCADE_FACTOR = 0.5;

/** Phantom task → channels, classes and the thesis's cascade factor (§2.2.3). */
export const COMPARE_TASKS = {
  brain: { channels: 4, classes: 4, cascadeFactor: 0.3, msd: { name: 'MSD Task01 BrainTumour', shape: [240, 240, 155] as [number, number, number] } },
  liver: { channels: 1, classes: 3, cascadeFactor: 0.2, msd: { name: 'MSD Task03 Liver', shape: [512, 512, 771] as [number, number, number] } },
} as const;

/**
 * What the thesis measured (PyTorch on an NVIDIA A40; GPU memory is torch's max allocation during
 * inference, Tables 4.2 and 4.4; the liver full U-Net failed allocating during training).
 */
export const THESIS_GPU_MEMORY_GB: Record<PhantomTask, Record<Mode, string>> = {
  brain: { full: '21.5', patch: '2.9', cascade: '2.8' },
  liver: { full: '≥ 325', patch: '10.6', cascade: '12.4' },
};

/**
 * The thesis's results on MSD (Tables 4.1–4.4): test Dice (%) per foreground class in the
 * dataset's label order, GPU memory (GB) and inference time (s) per mode; null where the full
 * U-Net could not be trained (liver: out of memory).
 */
export const THESIS_RESULTS: Record<PhantomTask, { dice: Record<Mode, number[] | null>; memoryGB: Record<Mode, number | null>; inferenceSeconds: Record<Mode, number | null> }> = {
  brain: {
    dice: { full: [80.13, 60.8, 75.99], patch: [70.01, 31.02, 55.58], cascade: [77.54, 56.84, 71.18] },
    memoryGB: { full: 21.5, patch: 2.9, cascade: 2.8 },
    inferenceSeconds: { full: 0.35, patch: 0.67, cascade: 0.91 },
  },
  liver: {
    dice: { full: null, patch: [87.01, 22.22], cascade: [92.0, 25.05] },
    memoryGB: { full: null, patch: 10.6, cascade: 12.4 },
    inferenceSeconds: { full: null, patch: 4.49, cascade: 5.9 },
  },
};


export interface CompareRequest {
  task: PhantomTask;
  outDir: string;
  /** Training steps per stage (the cascade trains two stages). */
  steps: number;
  /** Labelled phantom cases (split 60/20/20 into train/validation/test). */
  cases: number;
  shape: [number, number, number];
  /** Context phantom (site-agent/phantom/context.ts): structures only context beyond a slab tells apart. */
  context?: boolean;
  /** Patch thickness along the last axis (thesis: 16-voxel slabs). */
  slab: number;
  /** Adam learning rate (default 1e-2: the thesis's 3e-4 needs thousands of steps; see test/learning-patch.test.ts). */
  learningRate?: number;
  /** Fraction of patches forced to contain foreground (default 1, as the learning tests). */
  foregroundRate?: number;
  /** Phantom scanner / case-mix style (default 2: the largest tumours of the archetypes). */
  siteStyle?: number;
  cascadeFactor?: number;
  preset?: PresetName;
  base?: number;
  depth?: number;
  norm?: Norm;
  /** Default: enough for the largest mode (full), so every mode trains as configured. */
  budgetMB?: number;
  seed: number;
  backend: string;
  /** Modes to train (default all three, in the thesis's order). */
  modes?: readonly Mode[];
  /** Preset the other settings came from (reported only). */
  scale?: CompareScale;
  /** NSD tolerance in mm (default: the largest voxel spacing, one voxel in every direction). */
  nsdToleranceMm?: number;
  progress?: ProgressReporter | null;
  /** One line per finished phase (dataset, each mode). */
  log?: (line: string) => void;
}

export interface CompareStage {
  stage: string;
  patch: number[];
  batch: number;
  steps: number;
  trainTimeMs: number;
  finalLoss: number | null;
  /** tfjs engine bytes the estimate predicts for this stage's training step (no workspace, no runtime). */
  estimatedPeakBytes: number;
  /** tf.profile peak of the stage's first training steps. */
  measuredPeakBytes: number | null;
  /** estimated / measured */
  ratio: number | null;
}

export interface CompareMode {
  mode: Mode;
  stages: CompareStage[];
  /** Per foreground class, null where undefined (class absent from every test case). */
  dice: Record<string, number | null>;
  meanDice: number | null;
  inferenceMsPerVolume: number;
  /** Largest measured training peak over the stages (engine bytes). */
  measuredTrainingPeakBytes: number | null;
  estimatedTrainingPeakBytes: number;
  /** tf.profile peak while segmenting the test volumes (all of the mode's nets loaded). */
  measuredInferencePeakBytes: number;
  estimatedInferencePeakBytes: number;
  inferenceMethod: string[];
  modelDir: string;
  /** compare's own pass over the test cases: HD95/NSD, stage-1 guidance, context breakdown. */
  evaluation: ModeEvaluation;
}

export interface MsdModeEstimate {
  mode: Mode;
  /** How the thesis ran the mode on this geometry. */
  configuration: string;
  trainingBytes: number;
  inferenceBytes: number;
  thesisGpuMemoryGB: string;
  /** What the planner picks for an A40 (48 GB), as the thesis had. */
  plannerOn48GB: string;
}

export interface CompareReport {
  task: PhantomTask;
  scale: CompareScale | null;
  dataset: { dir: string; cases: number; shape: number[]; spacing: number[]; context: boolean; siteStyle: number; split: { train: number; validation: number; test: number } };
  backend: LocalTrainingReport['backend'];
  model: Architecture;
  stepsPerStage: number;
  slab: number;
  cascadeFactor: number;
  learningRate: number;
  foregroundRate: number;
  budgetMB: number;
  labels: string[];
  modes: CompareMode[];
  nsdToleranceMm: number;
  /** What the thesis measured on MSD, for the side-by-side tables. */
  thesis: (typeof THESIS_RESULTS)[PhantomTask];
  msd: { geometry: string; shape: number[]; channels: number; classes: number; model: Architecture; modes: MsdModeEstimate[] };
  runtimeMs: number;
}

const stageShape = (task: PhantomTask, inChannels: number, arch: Architecture): UNetShape => ({ inChannels, classes: COMPARE_TASKS[task].classes, arch });

/** The patch (slab) of the patch-wise stages: the whole X×Y, `slab` voxels along Z, rounded to the U-Net divisor. */
export function slabPatch(shape: readonly number[], slab: number, divisor: number): [number, number, number] {
  return [roundUpTo(shape[0]!, divisor), roundUpTo(shape[1]!, divisor), roundUpTo(Math.min(slab, shape[2]!), divisor)];
}

/** Stage nets of a mode: [inChannels, patch, whole-volume?] for each stage, as local training sets them up. */
function modeStages(mode: Mode, volume: readonly number[], channels: number, classes: number, arch: Architecture, slab: number, factor: number) {
  const d = requiredDivisor(arch);
  const whole = volume.map((v) => roundUpTo(v, d)) as [number, number, number];
  if (mode === 'full') return [{ inChannels: channels, patch: whole }];
  if (mode === 'patch') return [{ inChannels: channels, patch: slabPatch(volume, slab, d) }];
  return [
    { inChannels: channels, patch: downsampledShape(volume, factor, d) },
    { inChannels: channels + classes - 1, patch: slabPatch(volume, slab, d) },
  ];
}

/**
 * Inference peak of a mode: the largest stage forward pass, with every net of the mode loaded.
 * `engine` is what tf.profile sees; `total` adds the conv workspace and the runtime overhead.
 */
function modeInferenceBytes(stages: { inChannels: number; patch: readonly number[] }[], classes: number, arch: Architecture, limit: number): { engine: number; total: number } {
  const est = stages.map((s) => estimateInferencePeak({ inChannels: s.inChannels, classes, arch }, s.patch, 1, { workspaceBytes: limit }));
  const weights = est.reduce((a, e) => a + e.weights, 0);
  const engine = Math.max(...est.map((e) => e.engine - e.weights + weights));
  return { engine, total: engine + Math.max(...est.map((e) => e.workspace)) + est[0]!.overhead };
}

function msdEstimates(task: PhantomTask): CompareReport['msd'] {
  const t = COMPARE_TASKS[task];
  const arch: Architecture = { base: 32, depth: 5, norm: 'batch' }; // thesis §2.2.1
  const limit = kernelWorkspaceBytes();
  const modes = COMPARE_MODES.map((mode): MsdModeEstimate => {
    const stages = modeStages(mode, t.msd.shape, t.channels, t.classes, arch, 16, t.cascadeFactor);
    const training = Math.max(...stages.map((s) => estimateTrainingPeak({ inChannels: s.inChannels, classes: t.classes, arch }, s.patch, 1, { workspaceBytes: limit }).total));
    const inference = modeInferenceBytes(stages, t.classes, arch, limit).total;
    const plan = planTraining({ shape: t.msd.shape, channels: t.channels, classes: t.classes, mode, arch, budgetBytes: 48 * 1024 ** 3, cascadeFactor: t.cascadeFactor, workspaceBytes: limit });
    const chosen = plan.fits ? plan.stages.map((s) => `${s.stage} ${s.chosen!.patch.join('×')} b${s.chosen!.batch}`).join(', ') : 'nothing fits';
    const configuration =
      mode === 'full'
        ? `whole volume ${stages[0]!.patch.join('×')}`
        : mode === 'patch'
          ? `slabs ${stages[0]!.patch.join('×')}`
          : `stage 1 ×${t.cascadeFactor} ${stages[0]!.patch.join('×')}, stage 2 slabs ${stages[1]!.patch.join('×')} (${stages[1]!.inChannels} ch)`;
    return { mode, configuration, trainingBytes: training, inferenceBytes: inference, thesisGpuMemoryGB: THESIS_GPU_MEMORY_GB[task][mode], plannerOn48GB: chosen };
  });
  return { geometry: t.msd.name, shape: [...t.msd.shape], channels: t.channels, classes: t.classes, model: arch, modes };
}

function writeSiteConfig(path: string, cfg: object): void {
  writeFileSync(path, `${JSON.stringify(cfg, null, 2)}\n`);
}

/** What every mode of one compare run shares. */
interface CompareSettings {
  req: CompareRequest;
  outDir: string;
  datasetDir: string;
  arch: Architecture;
  norm: Norm;
  factor: number;
  learningRate: number;
  foregroundRate: number;
  /** Training patch of the patch mode and of cascade stage 2. */
  slab: [number, number, number];
  budgetMB: number;
  nsdToleranceMm: number;
  context: boolean;
  siteStyle: number;
}

export async function runCompare(req: CompareRequest): Promise<CompareReport> {
  const t0 = performance.now();
  const log = req.log ?? (() => {});
  const outDir = resolve(req.outDir);
  const datasetDir = join(outDir, 'dataset');
  mkdirSync(outDir, { recursive: true });
  const siteStyle = req.siteStyle ?? 2;
  const context = req.context ?? false;
  const phantom = await generatePhantomDataset({ task: req.task, out: datasetDir, cases: req.cases, testCases: 0, shape: req.shape, seed: req.seed, siteStyle, context, overwrite: true });
  log(`phantom ${req.task} dataset${context ? ' (context phantom)' : ''}: ${req.cases} cases of ${req.shape.join('x')}, spacing ${phantom.spacing.map((v) => +v.toFixed(3)).join('x')} mm, in ${datasetDir}`);
  const nsdToleranceMm = req.nsdToleranceMm ?? Math.max(...phantom.spacing);

  const norm: Norm = req.norm ?? 'instance';
  const arch = resolveArchitecture({ preset: req.preset ?? 'cpu-small', base: req.base, depth: req.depth, norm });
  const factor = req.cascadeFactor ?? PHANTOM_CASCADE_FACTOR;
  const settings: CompareSettings = {
    req,
    outDir,
    datasetDir,
    arch,
    norm,
    factor,
    learningRate: req.learningRate ?? 1e-2,
    foregroundRate: req.foregroundRate ?? 1,
    slab: slabPatch(req.shape, req.slab, requiredDivisor(arch)),
    budgetMB: req.budgetMB ?? largestModeBudgetMB(req, arch, factor),
    nsdToleranceMm,
    context,
    siteStyle,
  };

  const modes: CompareMode[] = [];
  let first: LocalTrainingReport | null = null;
  for (const mode of req.modes ?? COMPARE_MODES) {
    const { training, result } = await trainAndEvaluateMode(settings, mode);
    first ??= training;
    modes.push(result);
    log(`${mode}: mean test Dice ${training.test.meanDice?.toFixed(3) ?? 'n/a'}, ${training.test.meanInferenceMs.toFixed(0)} ms/volume`);
  }
  if (!first) throw new Error('compare: no mode was trained');
  const report: CompareReport = {
    task: req.task,
    scale: req.scale ?? null,
    dataset: { dir: datasetDir, cases: req.cases, shape: [...req.shape], spacing: [...phantom.spacing], context, siteStyle, split: first.split },
    backend: first.backend,
    model: arch,
    stepsPerStage: req.steps,
    slab: req.slab,
    cascadeFactor: factor,
    learningRate: settings.learningRate,
    foregroundRate: settings.foregroundRate,
    budgetMB: settings.budgetMB,
    labels: first.labels.slice(1),
    modes,
    nsdToleranceMm,
    thesis: THESIS_RESULTS[req.task],
    msd: msdEstimates(req.task),
    runtimeMs: performance.now() - t0,
  };
  return report;
}

/** Enough for the largest stage of any mode (full: the whole volume), with the planner's margin. */
function largestModeBudgetMB(req: CompareRequest, arch: Architecture, factor: number): number {
  const task = COMPARE_TASKS[req.task];
  const limit = kernelWorkspaceBytes();
  const needed = Math.max(
    ...COMPARE_MODES.flatMap((m) =>
      modeStages(m, req.shape, task.channels, task.classes, arch, req.slab, factor).map((s) => estimateTrainingPeak(stageShape(req.task, s.inChannels, arch), s.patch, 1, { workspaceBytes: limit }).total),
    ),
  );
  return Math.ceil((needed * 1.2) / 2 ** 20);
}

/** Trains one mode through runLocalTraining (its own site config) and evaluates its saved models on the test split. */
async function trainAndEvaluateMode(settings: CompareSettings, mode: Mode): Promise<{ training: LocalTrainingReport; result: CompareMode }> {
  const { req, outDir, datasetDir, arch, factor } = settings;
  const configPath = join(outDir, `site-${mode}.json`);
  writeSiteConfig(configPath, {
    siteId: `compare-${mode}`,
    dataset: datasetDir,
    memoryBudgetMB: settings.budgetMB,
    backend: req.backend,
    seed: req.seed,
    workDir: outDir,
    model: { mode, base: arch.base, depth: arch.depth, norm: settings.norm, cascadeFactor: factor },
    // Same slabs for patch and cascade stage 2; batch 1 everywhere (thesis: one image or patch per step).
    training: { steps: req.steps, learningRate: settings.learningRate, foregroundRate: settings.foregroundRate, patch: settings.slab, batch: 1 },
  });
  // checkpointEvery 0: compare does not resume, so no periodic resumable state.
  const training = await runLocalTraining({ configPath, steps: req.steps, backend: req.backend, outDir: join(outDir, mode), progress: req.progress, checkpointEvery: 0 });
  const dataset = await openMsdDataset(datasetDir, { seed: req.seed });
  const split = dataset.split(req.seed);
  const evaluation = await evaluateSavedMode({
    modelDir: join(outDir, mode),
    dataset,
    testIds: split.test.length > 0 ? split.test : split.validation,
    numClasses: COMPARE_TASKS[req.task].classes,
    nsdToleranceMm: settings.nsdToleranceMm,
    ...(settings.context ? { phantom: { task: req.task, seed: req.seed, siteStyle: settings.siteStyle, shape: req.shape, cases: req.cases, contextClass: 1, slab: req.slab } } : {}),
  });
  return { training, result: compareModeResult(settings, mode, training, evaluation) };
}

/** One mode's row of the report: measured against estimated memory per stage and for the mode. */
function compareModeResult(settings: CompareSettings, mode: Mode, report: LocalTrainingReport, evaluation: ModeEvaluation): CompareMode {
  const { req, arch } = settings;
  const task = COMPARE_TASKS[req.task];
  const stageSetups = modeStages(mode, req.shape, task.channels, task.classes, arch, req.slab, settings.factor);
  const setupOf = (i: number) => {
    const setup = stageSetups[i];
    if (!setup) throw new Error(`compare: mode ${mode} trained more stages than it has`);
    return setup;
  };
  const stages: CompareStage[] = report.stages.map((s, i) => {
    const inChannels = setupOf(i).inChannels;
    const est = estimateTrainingPeak(stageShape(req.task, inChannels, arch), s.patch, s.batch).engine;
    return {
      stage: s.stage,
      patch: s.patch,
      batch: s.batch,
      steps: s.steps,
      trainTimeMs: s.trainTimeMs,
      finalLoss: s.finalLoss,
      estimatedPeakBytes: est,
      measuredPeakBytes: s.measuredPeakBytes,
      ratio: s.measuredPeakBytes ? est / s.measuredPeakBytes : null,
    };
  });
  const measuredTraining = stages.map((s) => s.measuredPeakBytes).filter((b): b is number => b !== null);
  const inferStages = report.stages.map((s, i) => ({ inChannels: setupOf(i).inChannels, patch: s.stage === 'full' || s.stage === 'cascade-stage1' ? setupOf(i).patch : s.patch }));
  return {
    mode,
    stages,
    dice: report.test.dice,
    meanDice: report.test.meanDice,
    inferenceMsPerVolume: report.test.meanInferenceMs,
    measuredTrainingPeakBytes: measuredTraining.length ? Math.max(...measuredTraining) : null,
    estimatedTrainingPeakBytes: Math.max(...stages.map((s) => s.estimatedPeakBytes)),
    measuredInferencePeakBytes: report.test.peakInferenceBytes,
    estimatedInferencePeakBytes: modeInferenceBytes(inferStages, task.classes, arch, 0).engine,
    inferenceMethod: report.test.method,
    modelDir: join(settings.outDir, mode),
    evaluation,
  };
}

/** Writes compare.json and compare.md into the output folder; returns their paths. */
export function writeCompareReport(outDir: string, report: CompareReport, markdown: string): { json: string; markdown: string } {
  const json = join(outDir, 'compare.json');
  const md = join(outDir, 'compare.md');
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(md, markdown);
  return { json, markdown: md };
}
