/**
 * The experiment from the coordinator's point of view: the signed description sites receive,
 * the strategy it names, its DB record (created once, and checked on every restart so a config
 * edit cannot silently change the model under a running experiment), and the initial model.
 */
import nacl from 'tweetnacl';
import { PatchFedError } from '../../shared/errors.ts';
import type { Experiment } from '../../shared/config/coordinator.ts';
import { canonicalJson } from '../../shared/crypto/encoding.ts';
import type { KeyPairs } from '../../shared/crypto/keys.ts';
import { experimentDescriptionSchema, experimentSigningBytes, type ExperimentDescription, type Message } from '../../shared/protocol/messages.ts';
import { experimentLayout, forEachInitialTensor, layoutManifest } from '../../shared/model/index.ts';
import type { CheckpointMeta } from '../store/index.ts';
import type { CheckpointService } from './checkpoint-service.ts';
import { createStrategy, type Strategy } from '../strategies/index.ts';
import type { StateDb } from '../store/index.ts';

export function describeExperiment(experiment: Experiment): ExperimentDescription {
  const m = experiment.model;
  const description = {
    id: experiment.id,
    task: experiment.task,
    labels: experiment.labels,
    modalities: experiment.modalities,
    model: {
      mode: m.mode,
      ...(m.preset !== undefined ? { preset: m.preset } : {}),
      ...(m.base !== undefined ? { base: m.base } : {}),
      ...(m.depth !== undefined ? { depth: m.depth } : {}),
      norm: m.norm,
      cascadeFactor: m.cascadeFactor,
    },
    rounds: experiment.rounds,
    localSteps: experiment.localSteps,
    learningRate: experiment.learningRate,
    strategy: experiment.strategy,
    // Sites check every secure round task against it (a coordinator cannot switch masking off quietly).
    ...(experiment.aggregation ? { aggregation: experiment.aggregation } : {}),
    seed: experiment.seed,
  };
  const parsed = experimentDescriptionSchema.safeParse(description);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!; // zod: a failed parse has at least one issue
    throw new PatchFedError('E_CONFIG', `coordinator config: experiment.${issue.path.join('.')} cannot be sent to sites: ${issue.message}.`, { subject: 'experiment' });
  }
  return parsed.data;
}

export function signedExperimentMessage(description: ExperimentDescription, keys: KeyPairs): Message<'experiment'> {
  return { description, signature: nacl.sign.detached(experimentSigningBytes(description), keys.signSecretKey) };
}

export function experimentStrategy(experiment: Experiment): Strategy {
  const sampling = { fractionFit: experiment.fractionFit, minSites: experiment.minSites, seed: experiment.seed };
  return createStrategy(experiment.strategy, sampling, 'coordinator config experiment.strategy', { secureAggregation: experiment.aggregation?.secure !== undefined });
}

/** What must never change while an experiment exists: it defines the model being trained. */
function identity(experiment: Experiment): Record<string, unknown> {
  return { task: experiment.task, labels: experiment.labels, modalities: experiment.modalities, model: experiment.model, strategy: experiment.strategy.name };
}

/** Creates the experiment record, or checks that the config still describes the stored one. */
export function ensureExperimentRecord(db: StateDb, experiment: Experiment): 'created' | 'existing' {
  const existing = db.getExperiment(experiment.id);
  if (!existing) {
    db.createExperiment({ id: experiment.id, name: experiment.task, strategy: experiment.strategy.name, config: experiment });
    return 'created';
  }
  const stored = identity(existing.config as Experiment);
  const now = identity(experiment);
  const changed = Object.keys(now).filter((k) => canonicalJson(stored[k] ?? null) !== canonicalJson(now[k] ?? null));
  if (changed.length > 0) {
    throw new PatchFedError(
      'experiment-changed',
      `Experiment '${experiment.id}' already exists in the state directory with a different ${changed.join(', ')}; changing it would mix incompatible models. Use a new experiment id (or a new stateDir).`,
      { subject: experiment.id },
    );
  }
  return 'existing';
}

/**
 * Writes the initial global model — the experiment's layout with seeded initial values (pure; no
 * tfjs) — as checkpoint round 0, one tensor at a time (a 1 GB model is never held whole).
 */
export function writeInitialModel(checkpoints: CheckpointService, experiment: Experiment): CheckpointMeta {
  const layout = experimentLayout(experiment);
  return checkpoints.writeModel(0, layoutManifest(layout), (sink) => forEachInitialTensor(layout, experiment.seed, sink), {});
}
