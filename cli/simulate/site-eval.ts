/**
 * In-process model work the simulator does with the sites' own code (FederatedSiteTrainer): the
 * final global model evaluated on each site's validation split (no round follows the last one,
 * so no site reports it), and the local-only baseline (a site training alone, round after round,
 * exactly like a federated site minus the averaging). Run after the site processes have stopped.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decodeWeights } from '../../shared/codec/index.ts';
import type { CoordinatorConfig } from '../../shared/config/coordinator.ts';
import { PatchFedError } from '../../shared/errors.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import type { BackendReport } from '../../site-agent/backend/index.ts';
import { FederatedSiteTrainer, type ExperimentModel } from '../../site-agent/run/federated-site.ts';
import { loadSiteConfig } from '../../site-agent/site-config.ts';
import type { CheckpointInfo } from './coordinator-records.ts';
import type { SimulatedSite } from './run-dir.ts';

export type LabelDice = Record<string, number>;

export function experimentModel(config: CoordinatorConfig): ExperimentModel {
  const e = config.experiment;
  return { id: e.id, labels: e.labels, modalities: e.modalities, model: e.model, learningRate: e.learningRate, seed: e.seed };
}

/** Backend for in-process work: the same choice the sites make ('auto' → cpu-fast when built). */
export async function simulatorBackend(choice: string): Promise<BackendReport> {
  await import('../../site-agent/backend/gradients/index.ts');
  const { assertTrainableBackend, parseBackendChoice, selectBackend } = await import('../../site-agent/backend/index.ts');
  const backend = await selectBackend(parseBackendChoice(choice));
  assertTrainableBackend(backend);
  return backend;
}

/** A stored checkpoint's weights, after checking the artifact still has the hash its meta.json recorded. */
export function readCheckpointWeights(path: string, info: CheckpointInfo): NamedWeights {
  const bytes = readFileSync(path);
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== info.sha256) {
    throw new PatchFedError('E_CHECKPOINT', `checkpoint v${info.version} at ${path} has sha256 ${sha}, but its meta.json records ${info.sha256}`, { subject: path });
  }
  return decodeWeights(bytes, { source: `checkpoint v${info.version}` });
}

/** A site's trainer, prepared for the experiment (dataset opened, plan made, nets built). */
export async function preparedTrainer(site: SimulatedSite, exp: ExperimentModel, backend: BackendReport): Promise<FederatedSiteTrainer> {
  const trainer = new FederatedSiteTrainer(loadSiteConfig(site.configPath), backend);
  await trainer.prepare(exp);
  return trainer;
}

/** Validation Dice of `weights` at every site, per label name. */
export async function evaluateAtSites(sites: readonly SimulatedSite[], exp: ExperimentModel, backend: BackendReport, weights: NamedWeights): Promise<Record<string, LabelDice>> {
  const out: Record<string, LabelDice> = {};
  for (const site of sites) {
    const trainer = await preparedTrainer(site, exp, backend);
    try {
      trainer.loadGlobal(weights);
      out[site.id] = await trainer.validate();
    } finally {
      trainer.dispose();
    }
  }
  return out;
}

/**
 * Local-only baseline for one site: the same rounds × steps from the same initial model, on its
 * own training split only; returns its validation Dice at the end.
 */
export async function trainLocalOnly(
  site: SimulatedSite,
  exp: ExperimentModel,
  backend: BackendReport,
  initial: NamedWeights,
  rounds: number,
  steps: number,
  onRound?: (round: number, loss: number) => void,
): Promise<{ dice: LabelDice; steps: number; trainingCases: number }> {
  const trainer = await preparedTrainer(site, exp, backend);
  try {
    let current = initial;
    for (let round = 1; round <= rounds; round++) {
      const out = await trainer.runRound({ round, steps, global: current, fit: { proximalMu: 0, localTensors: [] }, learningRate: exp.learningRate });
      current = out.update;
      onRound?.(round, out.metrics.loss);
    }
    trainer.loadGlobal(current);
    return { dice: await trainer.validate(), steps: rounds * steps, trainingCases: trainer.trainingSamples };
  } finally {
    trainer.dispose();
  }
}
