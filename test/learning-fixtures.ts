/** Shared helpers for the learning, trainer and predict tests: backend, phantom datasets, site configs. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import '../site-agent/backend/gradients/index.ts';
import { registerFastCpuBackend } from '../site-agent/kernels/index.ts';
import { generatePhantomDataset, type PhantomDatasetOptions } from '../site-agent/phantom/index.ts';

/**
 * The native 'cpu-fast' backend when its addon is built (npm install builds it), else stock 'cpu'.
 * Both pass the gradient self-check; results agree to float rounding, so step counts, not
 * backends, decide whether a test learns.
 */
export async function useTrainingBackend(): Promise<string> {
  const fast = await registerFastCpuBackend();
  const name = fast ? fast.backendName : 'cpu';
  await tf.setBackend(name);
  return name;
}

export class TempDirs {
  private readonly dirs: string[] = [];
  async make(prefix = 'patchfed-learn-'): Promise<string> {
    const d = await mkdtemp(path.join(tmpdir(), prefix));
    this.dirs.push(d);
    return d;
  }
  async cleanup(): Promise<void> {
    for (const d of this.dirs.splice(0)) await rm(d, { recursive: true, force: true });
  }
}

/** A brain phantom (4 MR channels; edema / non-enhancing / enhancing) in MSD layout under `root`. */
export async function brainPhantom(root: string, opts: Partial<PhantomDatasetOptions> = {}): Promise<string> {
  const out = path.join(root, 'data');
  await generatePhantomDataset({ task: 'brain', cases: 8, testCases: 1, shape: [16, 16, 16], seed: 7, siteStyle: 2, out, ...opts });
  return out;
}

/** Writes a site config for `patchfed train` / runLocalTraining and returns its path. */
export async function writeSiteConfig(root: string, body: Record<string, unknown>): Promise<string> {
  const file = path.join(root, 'site.json');
  await writeFile(file, JSON.stringify({ siteId: 'test-site', memoryBudgetMB: 1024, backend: 'auto', seed: 1, workDir: path.join(root, 'work'), ...body }, null, 2));
  return file;
}

/**
 * The learning tests' phantom: 20 labelled brain cases of 32×32×24 (split 12/4/4), site style 2
 * (1.2 mm voxels, Rician noise 4.5%, bias field 0.2, the largest tumours of the four archetypes —
 * still only ~5–30 voxels of non-enhancing core per case, the class that learns last).
 */
export const LEARNING_PHANTOM = { cases: 20, testCases: 0, shape: [32, 32, 24] as [number, number, number], seed: 7, siteStyle: 2 };

export interface LearningRun {
  /** Mean foreground test Dice of the trained model (best validated checkpoint). */
  meanDice: number;
  perClass: Record<string, number | null>;
  /** Same evaluation of the untrained nets: the bar the trained model must clear. */
  untrainedMeanDice: number;
  steps: number[];
  trainTimeMs: number[];
  validations: number[];
}

/**
 * Trains `mode` through runLocalTraining (what `patchfed train` runs) on the learning phantom
 * and evaluates on the test split; also evaluates the same nets untrained, so a test can show
 * that its threshold is not met without learning.
 */
export async function learningRun(root: string, model: Record<string, unknown>, training: Record<string, unknown>): Promise<LearningRun> {
  const { runLocalTraining } = await import('../site-agent/run/local-training.ts');
  const { openMsdDataset } = await import('../site-agent/data/index.ts');
  const { loadSiteConfig } = await import('../site-agent/site-config.ts');
  const { resolveArchitecture } = await import('../shared/config/model.ts');
  const { planSite } = await import('../site-agent/run/site-plan.ts');
  const { createStageNets, disposeStageNets } = await import('../site-agent/run/nets.ts');
  const { evaluateCases } = await import('../site-agent/run/evaluate.ts');
  const data = await brainPhantom(root, LEARNING_PHANTOM);
  // The backend the test activated (useTrainingBackend: cpu-fast; tensorflow-learning-*.test.ts:
  // tensorflow), not 'auto', which picks tensorflow wherever `patchfed setup tensorflow` ran.
  const configPath = await writeSiteConfig(root, { dataset: data, model, training, backend: tf.getBackend() });
  const report = await runLocalTraining({ configPath, progress: null });

  // The untrained baseline, planned and split exactly as runLocalTraining did.
  const cfg = loadSiteConfig(configPath);
  const ds = await openMsdDataset(cfg.dataset, { seed: cfg.seed });
  const split = ds.split(cfg.seed);
  const arch = resolveArchitecture(cfg.model);
  const plan = planSite({
    largestShape: ds.largestShape(), channels: ds.modalities.length, classes: ds.labels.length, mode: cfg.model.mode, arch,
    budgetMB: cfg.memoryBudgetMB, cascadeFactor: cfg.model.cascadeFactor, patch: cfg.training.patch, batch: cfg.training.batch,
  });
  const nets = createStageNets(plan.stages, arch, ds.labels.length, cfg.seed);
  let untrained: number;
  try {
    const ev = await evaluateCases(nets, ds, split.test, { numClasses: ds.labels.length, overlap: cfg.training.overlap, blend: cfg.training.blend, divisor: plan.divisor, cascadeFactor: cfg.model.cascadeFactor });
    untrained = Number.isNaN(ev.meanDice) ? 0 : ev.meanDice;
  } finally {
    disposeStageNets(nets);
  }
  return {
    meanDice: report.test.meanDice ?? 0,
    perClass: report.test.dice,
    untrainedMeanDice: untrained,
    steps: report.stages.map((s) => s.steps),
    trainTimeMs: report.stages.map((s) => s.trainTimeMs),
    validations: report.stages.map((s) => s.bestValidationDice ?? 0),
  };
}
