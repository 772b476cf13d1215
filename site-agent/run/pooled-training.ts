/**
 * The centralised ("pooled") baseline's training: one model on a dataset that holds every site's
 * training split, from the federation's initial weights, with the sites' training settings and
 * the federation's rhythm (one optimiser per round, the same per-round seeds). The simulator
 * compares the federated model against it; it lives here so the CLI needs no training internals.
 */
import type { SiteConfig } from '../../shared/config/site.ts';
import { experimentLayout, roundTrainingSeed } from '../../shared/model/index.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import { openMsdDataset } from '../data/index.ts';
import type { ExperimentModel } from './federated-site.ts';
import { combinedWeights, createStageNets, disposeStageNets, setCombinedWeights } from './nets.ts';
import { planSite } from './site-plan.ts';
import { siteTrainingOptions, trainSiteLocally } from './train-site.ts';

export interface PooledTrainingRequest {
  /** An MSD dataset folder with every site's training cases (and nothing to validate on). */
  datasetDir: string;
  experiment: ExperimentModel;
  /** The sites' `training` section (the simulator gives all sites the same one). */
  training: SiteConfig['training'];
  initial: NamedWeights;
  rounds: number;
  /** Steps per stage and round: the whole federation's steps of one round. */
  stepsPerRound: number;
  memoryBudgetMB: number;
  seed: number;
}

/** Trains the pooled model and returns its weights (same manifest as the federation's). */
export async function trainPooledModel(req: PooledTrainingRequest): Promise<NamedWeights> {
  const exp = req.experiment;
  const ds = await openMsdDataset(req.datasetDir, { seed: req.seed, cacheMB: 256 });
  const layout = experimentLayout(exp);
  const plan = planSite({
    largestShape: ds.largestShape(),
    channels: layout.channels,
    classes: layout.classes,
    mode: layout.mode,
    arch: layout.arch,
    budgetMB: req.memoryBudgetMB,
    cascadeFactor: exp.model.cascadeFactor,
  });
  const nets = createStageNets(plan.stages, layout.arch, layout.classes, exp.seed);
  try {
    setCombinedWeights(nets, req.initial);
    const trainIds = ds.cases.map((c) => c.id);
    for (let round = 1; round <= req.rounds; round++) {
      const basis = {
        dataset: ds,
        trainIds,
        validationIds: [],
        nets,
        numClasses: layout.classes,
        divisor: plan.divisor,
        cascadeFactor: exp.model.cascadeFactor,
        stepsPerStage: req.stepsPerRound,
        seed: roundTrainingSeed(req.seed, round),
        memoryBudgetMB: req.memoryBudgetMB,
        restoreBest: false,
      };
      // The experiment's learning rate, as the federated rounds' tasks carry it.
      await trainSiteLocally({ ...siteTrainingOptions(basis, req.training), learningRate: exp.learningRate });
    }
    return combinedWeights(nets);
  } finally {
    disposeStageNets(nets);
  }
}
