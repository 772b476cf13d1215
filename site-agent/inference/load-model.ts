/**
 * `--model` for predict and `--checkpoint` for export: a coordinator checkpoint directory (or its
 * `checkpoints/` folder or state directory: the newest version), a site's copy of one, a
 * `patchfed train` output or a tfjs export — loaded, verified when a key is given, with the
 * normalisation decided, as one PredictionModel.
 */
import { existsSync, statSync } from 'node:fs';
import { loadPublicKeyFile } from '../../shared/crypto/keys.ts';
import { PatchFedError } from '../../shared/errors.ts';
import { isPatchWiseStage } from '../../shared/model/index.ts';
import type { Shape3 } from '../pipeline/case.ts';
import type { Weighting } from '../pipeline/sliding-window.ts';
import { locateCheckpointDir, readCheckpointDir, type CheckpointDir, type CheckpointDirMeta, type CheckpointTrust } from './checkpoint-dir.ts';
import { checkpointPredictionModel } from './checkpoint-model.ts';
import { resolveNormalisation } from './normalisation.ts';
import { disposePredictionModel, type PredictionModel } from './prediction-model.ts';
import type { SiteContext } from './site-context.ts';
import { isTfjsModelDir, loadTrainOutput } from './train-output.ts';

export interface LoadModelRequest {
  model: string;
  /** The coordinator's public key file (`--coordinator-key`); else the key `site` pins, if any. */
  coordinatorKey?: string;
  site?: SiteContext;
  /** The bytes meta.json's signature covers (coordinator/store's checkpointSigningPayload, from the CLI); needed with a key. */
  signingPayload?: (meta: CheckpointDirMeta) => Uint8Array;
  localModel?: string;
  patch?: Shape3;
  overlap?: number;
  blend?: Weighting;
}

export interface LoadedModel {
  model: PredictionModel;
  /** Set when the model is a coordinator checkpoint (export reads its meta and description). */
  checkpoint?: CheckpointDir;
}

/** The key to verify with: --coordinator-key, else the one the site config pins. */
export function checkpointTrust(req: Pick<LoadModelRequest, 'coordinatorKey' | 'site' | 'signingPayload'>): CheckpointTrust | undefined {
  const pinned = req.site?.pinnedCoordinatorKey;
  const file = req.coordinatorKey ?? pinned;
  if (!file) return undefined;
  if (!req.signingPayload) throw new Error('checkpointTrust: a coordinator key needs the checkpoint signing payload');
  const keys = loadPublicKeyFile(file);
  const keySource = req.coordinatorKey ? `--coordinator-key ${file}` : `pinned by --site-config ${req.site?.configPath}: ${file}`;
  return { signPublicKey: keys.signPublicKey, fingerprint: keys.fingerprint, keySource, signingPayload: req.signingPayload };
}

function applyOverrides(model: PredictionModel, req: LoadModelRequest): void {
  if (req.overlap !== undefined) model.overlap = req.overlap;
  if (req.blend !== undefined) model.blend = req.blend;
  if (req.patch && model.kind === 'train-output') {
    const patch = req.patch;
    if (patch.some((d) => d % model.divisor !== 0)) throw new PatchFedError('E_USAGE', `--patch ${patch.join(',')}: every axis must be a positive multiple of ${model.divisor} (2^(depth−1) of this U-Net)`);
    for (const s of model.stages) if (isPatchWiseStage(s.stage)) s.patch = patch;
    model.notes.push(`windows: patch-wise stages use ${patch.join('x')} (--patch) instead of the training patch`);
  }
}

/**
 * `beforeTensors` runs after every tfjs-free check (the checkpoint read and verified) and before
 * the first tensor: the CLI selects its backend there, so a refused checkpoint fails fast.
 */
export async function loadModel(req: LoadModelRequest, beforeTensors: () => Promise<unknown> = async () => undefined): Promise<LoadedModel> {
  if (!existsSync(req.model) || !statSync(req.model).isDirectory()) {
    throw new PatchFedError('E_PREDICT', `--model ${req.model}: no such checkpoint directory`, { subject: req.model });
  }
  let loaded: LoadedModel;
  if (!locateCheckpointDir(req.model) || isTfjsModelDir(req.model)) {
    if (req.localModel) throw new PatchFedError('E_USAGE', `--local-model is for FedBN coordinator checkpoints; ${req.model} is a tfjs model folder`);
    await beforeTensors();
    const model = loadTrainOutput(req.model);
    if (req.coordinatorKey) model.notes.push(`  not verified: tfjs artifacts carry no signature (--coordinator-key applies to coordinator checkpoints)`);
    loaded = { model };
  } else {
    const checkpoint = readCheckpointDir(req.model, checkpointTrust(req));
    await beforeTensors();
    const model = await checkpointPredictionModel(checkpoint, { site: req.site, localModel: req.localModel, patch: req.patch, overlap: req.overlap, blend: req.blend });
    loaded = { model, checkpoint };
  }
  try {
    applyOverrides(loaded.model, req);
    await resolveNormalisation(loaded.model, req.site);
    return loaded;
  } catch (e) {
    disposePredictionModel(loaded.model);
    throw e;
  }
}
