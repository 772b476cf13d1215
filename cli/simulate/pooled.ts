/**
 * Pooled (centralised) baseline: what a single hospital holding every site's training cases
 * would get. A pooled dataset folder links each site's TRAINING split (the split the site itself
 * uses, so validation cases never leak into training); one model trains on it with the same
 * optimiser settings and as many steps as the whole federation ran, from the same initial
 * model, and is then evaluated on each site's own validation split.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { NamedWeights } from '../../shared/weights.ts';
import type { BackendReport } from '../../site-agent/backend/index.ts';
import { openMsdDataset } from '../../site-agent/data/index.ts';
import { experimentLayout, roundTrainingSeed } from '../../shared/model/index.ts';
import type { ExperimentModel } from '../../site-agent/run/federated-site.ts';
import { combinedWeights, createStageNets, disposeStageNets, setCombinedWeights } from '../../site-agent/run/nets.ts';
import { planSite } from '../../site-agent/run/site-plan.ts';
import { trainSiteLocally } from '../../site-agent/run/train-site.ts';
import { loadSiteConfig } from '../../site-agent/site-config.ts';
import type { SimulatedSite } from './run-dir.ts';

/** Links every site's training-split cases into `dir` as one MSD dataset; returns the case count. */
export async function buildPooledDataset(sites: readonly SimulatedSite[], dir: string): Promise<{ cases: number }> {
  mkdirSync(join(dir, 'imagesTr'), { recursive: true });
  mkdirSync(join(dir, 'labelsTr'), { recursive: true });
  const training: { image: string; label: string }[] = [];
  let meta: { name: string; modality: unknown; labels: unknown } | null = null;
  for (const site of sites) {
    const cfg = loadSiteConfig(site.configPath);
    const ds = await openMsdDataset(cfg.dataset, { seed: cfg.seed });
    meta ??= { name: `${ds.name}-pooled`, modality: Object.fromEntries(ds.modalities.map((m, i) => [String(i), m])), labels: Object.fromEntries(ds.labels.map((l) => [String(l.value), l.name])) };
    for (const id of ds.split(cfg.seed).train) {
      const c = ds.caseInfo(id);
      for (const [kind, source] of [['imagesTr', c.imagePath], ['labelsTr', c.labelPath]] as const) {
        const name = `${id}.nii.gz`;
        symlinkSync(relative(join(dir, kind), source), join(dir, kind, name));
      }
      training.push({ image: `./imagesTr/${id}.nii.gz`, label: `./labelsTr/${id}.nii.gz` });
    }
  }
  writeFileSync(
    join(dir, 'dataset.json'),
    JSON.stringify({ ...meta, tensorImageSize: '4D', numTraining: training.length, numTest: 0, training, test: [] }, null, 2),
  );
  return { cases: training.length };
}

export async function trainPooled(
  dir: string,
  exp: ExperimentModel,
  backend: BackendReport,
  initial: NamedWeights,
  opts: { steps: number; rounds: number; budgetMB: number; seed: number; foregroundRate: number },
): Promise<NamedWeights> {
  void backend; // the backend is process-wide; taking it documents that it must be selected first
  const ds = await openMsdDataset(dir, { seed: opts.seed, cacheMB: 256 });
  const layout = experimentLayout(exp);
  const plan = planSite({
    largestShape: ds.largestShape(),
    channels: layout.channels,
    classes: layout.classes,
    mode: layout.mode,
    arch: layout.arch,
    budgetMB: opts.budgetMB,
    cascadeFactor: exp.model.cascadeFactor,
  });
  const nets = createStageNets(plan.stages, layout.arch, layout.classes, exp.seed);
  try {
    setCombinedWeights(nets, initial);
    const trainIds = ds.cases.map((c) => c.id);
    // Same rhythm as the federation (one optimiser per round), with every round's steps of all sites.
    for (let round = 1; round <= opts.rounds; round++) {
      await trainSiteLocally({
        dataset: ds,
        trainIds,
        validationIds: [],
        nets,
        numClasses: layout.classes,
        divisor: plan.divisor,
        cascadeFactor: exp.model.cascadeFactor,
        stepsPerStage: opts.steps,
        learningRate: exp.learningRate,
        foregroundRate: opts.foregroundRate,
        skipEmptyPatches: false,
        loss: 'dice-ce',
        restoreBest: false,
        inference: { overlap: 0, blend: 'gaussian' },
        seed: roundTrainingSeed(opts.seed, round),
        budgetBytes: opts.budgetMB * 1024 * 1024,
      });
    }
    return combinedWeights(nets);
  } finally {
    disposeStageNets(nets);
  }
}
