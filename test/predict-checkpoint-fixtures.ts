/**
 * Real coordinator checkpoints for the predict and export tests: a `patchfed train` run produces
 * trained stage nets; a real coordinator (startCoordinator, its own keys, signed experiment
 * description and CheckpointService) is started with those weights as its initial global model,
 * writes `state/checkpoints/v000001/` (weights.pfw, meta.json, experiment.json) and is stopped.
 * So predict/export read exactly what a coordinator publishes, and the train output is the
 * reference the checkpoint's predictions must equal.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator } from '../coordinator/index.ts';
import { CoordinatorConfigSchema, type CoordinatorConfig } from '../shared/config/coordinator.ts';
import { generateKeyPairs, writeKeyFiles } from '../shared/crypto/keys.ts';
import { stagePrefix, isStage } from '../shared/model/index.ts';
import type { NamedWeights } from '../shared/weights.ts';
import { readModelArtifacts } from '../site-agent/model/artifacts.ts';

export interface CoordinatorCheckpoint {
  /** The coordinator's folder (config, keys, state/). */
  dir: string;
  cleanup(): void;
  stateDir: string;
  /** <stateDir>/checkpoints/v000001 */
  checkpointDir: string;
  /** The coordinator's public key file (.pub). */
  keyFile: string;
}

/** The combined federation weights (stage prefixes) of a `patchfed train` output folder. */
export function trainOutputWeights(trainDir: string, stages: readonly string[]): NamedWeights {
  const out: NamedWeights = { manifest: [], values: [] };
  for (const stage of stages) {
    if (!isStage(stage)) throw new Error(`not a stage: ${stage}`);
    const a = readModelArtifacts(join(trainDir, stage));
    const p = stagePrefix(stage);
    out.manifest.push(...a.weights.manifest.map((s) => ({ ...s, name: p + s.name })));
    out.values.push(...a.weights.values);
  }
  return out;
}

/** A coordinator's first checkpoint holding `weights`, for the experiment `experiment` describes. */
export async function coordinatorCheckpoint(weights: NamedWeights, experiment: Partial<CoordinatorConfig['experiment']>): Promise<CoordinatorCheckpoint> {
  const dir = mkdtempSync(join(tmpdir(), 'patchfed-ckpt-'));
  writeKeyFiles(join(dir, 'coordinator'), generateKeyPairs());
  writeKeyFiles(join(dir, 'site-a'), generateKeyPairs());
  const config = CoordinatorConfigSchema.parse({
    port: 0,
    stateDir: 'state',
    secretKey: 'coordinator.key',
    publicKey: 'coordinator.pub',
    dashboardToken: randomBytes(32).toString('base64url'),
    sites: [{ id: 'site-a', publicKey: 'site-a.pub' }],
    experiment: { id: 'ckpt-test', task: 'test', labels: {}, modalities: {}, model: { mode: 'patch', norm: 'instance', cascadeFactor: 0.5 }, rounds: 1, ...experiment },
  });
  const coordinator = await startCoordinator(config, { baseDir: dir, initialWeights: () => weights });
  await coordinator.stop();
  const stateDir = join(dir, 'state');
  return {
    dir,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
    stateDir,
    checkpointDir: join(stateDir, 'checkpoints', 'v000001'),
    keyFile: join(dir, 'coordinator.pub'),
  };
}
