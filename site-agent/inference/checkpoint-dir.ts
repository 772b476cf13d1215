/**
 * A coordinator checkpoint directory as it sits on disk — `<stateDir>/checkpoints/vNNNNNN/` or a
 * site's copy of one:
 *
 *   weights.pfw       the global weights (PFW, shared/codec)
 *   meta.json         version, round, sha256 and size of weights.pfw, the coordinator's signature
 *   experiment.json   the coordinator-signed experiment description (model, labels, modalities, strategy)
 *
 * Reading one checks everything before a weight is used: with the coordinator's public key,
 * experiment.json's signature, meta.json's signature over its signing payload, and the artifact's
 * size and SHA-256 (in `verifyCheckpointFiles`, the one place that decides whether a checkpoint
 * is trusted). Without a key the size and hash are still checked and the result says it was not
 * verified.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import nacl from 'tweetnacl';
import { z } from 'zod';
import { decodeWeights } from '../../shared/codec/index.ts';
import { PatchFedError } from '../../shared/errors.ts';
import { EXPERIMENT_FILE, readExperimentFile } from '../../shared/protocol/experiment-file.ts';
import type { ExperimentDescription } from '../../shared/protocol/messages.ts';
import type { NamedWeights } from '../../shared/weights.ts';

export const CHECKPOINT_WEIGHTS_FILE = 'weights.pfw';
export const CHECKPOINT_META_FILE = 'meta.json';
export { EXPERIMENT_FILE };
/** meta.json and experiment.json are a few kB; anything larger is not a checkpoint's. */
const MAX_JSON_BYTES = 1024 * 1024;

/**
 * The meta.json fields predict and export use. The coordinator's full schema lives in
 * coordinator/store/checkpoint-meta.ts, which site code may not import; unknown fields pass.
 */
const checkpointMetaSchema = z.object({
  format: z.string(),
  version: z.int().min(1),
  round: z.int().min(0),
  experimentId: z.string().min(1),
  createdAt: z.string(),
  sizeBytes: z.int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  signature: z.string().min(1),
  keyId: z.string().min(1),
  extra: z.record(z.string(), z.unknown()).optional(),
});
export type CheckpointDirMeta = z.output<typeof checkpointMetaSchema>;

/** Who may have signed the checkpoint, and what exactly meta.json's signature covers. */
export interface CheckpointTrust {
  /** The coordinator's Ed25519 public key (shared/crypto/keys.ts `.pub`). */
  signPublicKey: Uint8Array;
  fingerprint: string;
  /** Where the key came from, for messages (e.g. "--coordinator-key keys/coordinator.pub"). */
  keySource: string;
  /**
   * The bytes meta.json's signature covers: coordinator/store's `checkpointSigningPayload`, passed
   * in by the CLI (site code cannot import the coordinator; see docs/architecture.md).
   */
  signingPayload: (meta: CheckpointDirMeta) => Uint8Array;
}

export interface CheckpointVerification {
  verified: boolean;
  /** One line for the user: what was checked, or that nothing was. */
  summary: string;
  keyFingerprint?: string;
}

export interface CheckpointDir {
  dir: string;
  /** How `dir` was found from what the user gave (e.g. "newest of 6 versions in state/checkpoints"). */
  resolvedFrom?: string;
  meta: CheckpointDirMeta;
  description: ExperimentDescription;
  weights: NamedWeights;
  verification: CheckpointVerification;
}

function refuse(file: string, reason: string): never {
  throw new PatchFedError('checkpoint-refused', `${file}: ${reason}; refusing the checkpoint`, { subject: file });
}

export function isCheckpointDir(dir: string): boolean {
  return existsSync(path.join(dir, CHECKPOINT_META_FILE)) && existsSync(path.join(dir, CHECKPOINT_WEIGHTS_FILE));
}

function versionOf(name: string): number | undefined {
  const m = /^v(\d{6,})$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * The checkpoint directory `given` stands for: itself, or — for a coordinator's `checkpoints/`
 * folder or its state directory — the newest version in it. Undefined when it is neither.
 */
export function locateCheckpointDir(given: string): { dir: string; resolvedFrom?: string } | undefined {
  if (isCheckpointDir(given)) return { dir: given };
  const folder = existsSync(path.join(given, 'checkpoints')) ? path.join(given, 'checkpoints') : given;
  let entries: string[];
  try {
    entries = readdirSync(folder);
  } catch {
    return undefined;
  }
  const versions = entries
    .map((name) => ({ name, v: versionOf(name) }))
    .filter((e): e is { name: string; v: number } => e.v !== undefined && isCheckpointDir(path.join(folder, e.name)))
    .sort((a, b) => a.v - b.v);
  const newest = versions[versions.length - 1];
  if (!newest) return undefined;
  return { dir: path.join(folder, newest.name), resolvedFrom: `the newest of ${versions.length} checkpoint version(s) in ${folder}` };
}

function readSmallJson(file: string): { bytes: Uint8Array; json: unknown } {
  if (!existsSync(file)) refuse(file, 'file is missing');
  const size = statSync(file).size;
  if (size > MAX_JSON_BYTES) refuse(file, `${size} bytes is too large`);
  const bytes = readFileSync(file);
  try {
    return { bytes, json: JSON.parse(bytes.toString('utf8')) as unknown };
  } catch {
    return refuse(file, 'not valid JSON');
  }
}

function parseMeta(file: string): CheckpointDirMeta {
  const parsed = checkpointMetaSchema.safeParse(readSmallJson(file).json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!; // zod: a failed parse has at least one issue
    refuse(file, `field '${issue.path.join('.')}': ${issue.message}`);
  }
  return parsed.data;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * The trust decision, in one place: with a key, experiment.json's signature, meta.json's
 * signature, then the artifact's size and SHA-256; without one, size and SHA-256 only (they catch
 * corruption, not substitution). Throws PatchFedError naming the file and the reason.
 */
export function verifyCheckpointFiles(
  dir: string,
  meta: CheckpointDirMeta,
  artifact: Uint8Array,
  experimentBytes: Uint8Array,
  trust: CheckpointTrust | undefined,
): { description: ExperimentDescription; verification: CheckpointVerification } {
  const metaFile = path.join(dir, CHECKPOINT_META_FILE);
  const weightsFile = path.join(dir, CHECKPOINT_WEIGHTS_FILE);
  const experimentFile = path.join(dir, EXPERIMENT_FILE);
  let description: ExperimentDescription;
  try {
    description = readExperimentFile(experimentBytes, experimentFile, trust?.signPublicKey).description;
  } catch (e) {
    if (e instanceof PatchFedError && e.code === 'experiment-bad-signature') refuse(experimentFile, `not signed by the coordinator key ${trust?.fingerprint} (${trust?.keySource})`);
    throw e;
  }
  if (description.id !== meta.experimentId) refuse(metaFile, `belongs to experiment '${meta.experimentId}' but ${EXPERIMENT_FILE} describes '${description.id}'`);
  if (trust) {
    const signature = Buffer.from(meta.signature, 'base64');
    const ok = signature.length === nacl.sign.signatureLength && nacl.sign.detached.verify(trust.signingPayload(meta), signature, trust.signPublicKey);
    if (!ok) {
      const signer = meta.keyId === trust.fingerprint ? '' : ` (meta.json names key ${meta.keyId})`;
      refuse(metaFile, `signature does not verify with the coordinator key ${trust.fingerprint} (${trust.keySource})${signer}`);
    }
  }
  if (artifact.length !== meta.sizeBytes) refuse(weightsFile, `${artifact.length} bytes, but meta.json says ${meta.sizeBytes}`);
  const actual = sha256Hex(artifact);
  if (actual !== meta.sha256) refuse(weightsFile, `sha256 ${actual}, but meta.json says ${meta.sha256} (corrupted or replaced)`);
  const what = `checkpoint v${meta.version} (round ${meta.round}) of experiment '${meta.experimentId}', sha256 ${meta.sha256.slice(0, 12)}…`;
  const verification: CheckpointVerification = trust
    ? { verified: true, keyFingerprint: trust.fingerprint, summary: `${what}: signatures of meta.json and ${EXPERIMENT_FILE}, size and sha256 verified with coordinator key ${trust.fingerprint}` }
    : {
        verified: false,
        summary: `${what}: NOT VERIFIED — no coordinator key given (--coordinator-key or --site-config), so its signatures were not checked; only its size and sha256 against meta.json`,
      };
  return { description, verification };
}

/** Reads, verifies and decodes a checkpoint directory (or the newest one under `given`). */
export function readCheckpointDir(given: string, trust: CheckpointTrust | undefined): CheckpointDir {
  const located = locateCheckpointDir(given);
  if (!located) refuse(given, `no ${CHECKPOINT_META_FILE} + ${CHECKPOINT_WEIGHTS_FILE} here, nor a vNNNNNN checkpoint folder under it`);
  const { dir } = located;
  const meta = parseMeta(path.join(dir, CHECKPOINT_META_FILE));
  const experimentFile = path.join(dir, EXPERIMENT_FILE);
  if (!existsSync(experimentFile)) {
    refuse(experimentFile, 'file is missing: the checkpoint does not describe its model (checkpoints written before experiment.json was published cannot be used)');
  }
  const { bytes: experimentBytes } = readSmallJson(experimentFile);
  const weightsFile = path.join(dir, CHECKPOINT_WEIGHTS_FILE);
  const size = statSync(weightsFile).size;
  if (size !== meta.sizeBytes) refuse(weightsFile, `${size} bytes, but meta.json says ${meta.sizeBytes}`);
  const artifact = readFileSync(weightsFile);
  const { description, verification } = verifyCheckpointFiles(dir, meta, artifact, experimentBytes, trust);
  const weights = decodeWeights(artifact, { source: weightsFile });
  return { dir, resolvedFrom: located.resolvedFrom, meta, description, weights, verification };
}
