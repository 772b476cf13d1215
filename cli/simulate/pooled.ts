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
import type { SiteConfig } from '../../shared/config/site.ts';
import type { ExperimentModel } from '../../site-agent/run/federated-site.ts';
import { trainPooledModel } from '../../site-agent/run/pooled-training.ts';
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

/**
 * Trains the pooled model on `dir` (see buildPooledDataset) through site-agent's own pooled
 * training, with the sites' training settings: the simulator gives every site the same ones.
 */
export async function trainPooled(
  dir: string,
  exp: ExperimentModel,
  backend: BackendReport,
  initial: NamedWeights,
  opts: { steps: number; rounds: number; budgetMB: number; seed: number; training: SiteConfig['training'] },
): Promise<NamedWeights> {
  void backend; // the backend is process-wide; taking it documents that it must be selected first
  return trainPooledModel({
    datasetDir: dir,
    experiment: exp,
    training: opts.training,
    initial,
    rounds: opts.rounds,
    stepsPerRound: opts.steps,
    memoryBudgetMB: opts.budgetMB,
    seed: opts.seed,
  });
}
