/**
 * Saving and loading a U-Net as tfjs-style artifacts: `model.json` (weightsManifest in the
 * tf.io format, the U-Net config as modelTopology, caller metadata) plus one little-endian
 * float32 `weights.bin`. tf.io.decodeWeights or any tfjs weights loader can read the tensors
 * without PatchFed; PatchFed validates everything on the way back in.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { endianness } from 'node:os';
import path from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import { sizeOf, type NamedWeights } from '../../shared/weights.ts';
import { writeFileAtomic } from './atomic-file.ts';
import { buildManifest, validateUNetConfig, type UNetConfig } from '../../shared/model/index.ts';
import { UNet3D, validateWeightsFor } from './unet.ts';

export const MODEL_FORMAT = 'patchfed-unet3d';
export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';
/** model.json is small; anything bigger is not ours. */
const MAX_MODEL_JSON_BYTES = 16 * 1024 * 1024;

/** Free-form, JSON-serialisable description stored with the weights (mode, labels, modalities, patch…). */
export type ModelMeta = Record<string, unknown>;

export interface WeightsManifestEntry {
  name: string;
  shape: number[];
  dtype: 'float32';
}

export interface ModelJson {
  format: typeof MODEL_FORMAT;
  generatedBy: string;
  modelTopology: UNetConfig;
  weightsManifest: Array<{ paths: string[]; weights: WeightsManifestEntry[] }>;
  userDefinedMetadata: ModelMeta;
}

export interface ModelArtifacts {
  config: UNetConfig;
  meta: ModelMeta;
  weights: NamedWeights;
  generatedBy: string;
}

/** Writes weights.bin then model.json, each atomically, creating `dir` if needed. */
export function saveModelArtifacts(dir: string, model: UNet3D, meta: ModelMeta = {}): { modelJson: string; weightsBin: string; bytes: number } {
  return saveWeightsArtifacts(dir, model.config, model.getWeights(), meta);
}

/** Same as saveModelArtifacts for weights that are not in a live model (e.g. an aggregate). */
export function saveWeightsArtifacts(dir: string, config: UNetConfig, weights: NamedWeights, meta: ModelMeta = {}) {
  validateUNetConfig(config);
  validateWeightsFor(buildManifest(config), weights, 'weights to save');
  let metaJson: ModelMeta;
  try {
    metaJson = JSON.parse(JSON.stringify(meta)) as ModelMeta;
  } catch (e) {
    throw new PatchFedError('model-artifacts', `model metadata is not JSON-serialisable: ${e instanceof Error ? e.message : String(e)}`, { subject: 'meta' });
  }
  mkdirSync(dir, { recursive: true });
  const bytes = concatFloat32(weights.values);
  const json: ModelJson = {
    format: MODEL_FORMAT,
    generatedBy: `PatchFed ${patchfedVersion()}`,
    modelTopology: { ...config },
    weightsManifest: [{ paths: [WEIGHTS_BIN], weights: weights.manifest.map((s) => ({ name: s.name, shape: [...s.shape], dtype: 'float32' })) }],
    userDefinedMetadata: metaJson,
  };
  const weightsBin = path.join(dir, WEIGHTS_BIN);
  const modelJson = path.join(dir, MODEL_JSON);
  writeFileAtomic(weightsBin, bytes);
  writeFileAtomic(modelJson, JSON.stringify(json, null, 2) + '\n');
  return { modelJson, weightsBin, bytes: bytes.byteLength };
}

/** Reads and validates artifacts without touching tfjs. */
export function readModelArtifacts(dir: string): ModelArtifacts {
  const modelJsonPath = path.join(dir, MODEL_JSON);
  const json = readModelJson(modelJsonPath);
  const fail = (message: string, file = modelJsonPath): never => {
    throw new PatchFedError('model-artifacts', `${file}: ${message}`, { subject: file });
  };
  if (json.format !== MODEL_FORMAT) fail(`format is ${JSON.stringify(json.format)}, expected '${MODEL_FORMAT}'`);
  let config: UNetConfig;
  try {
    const topology = json.modelTopology as Partial<UNetConfig> | undefined;
    if (typeof topology !== 'object' || topology === null) throw new Error('modelTopology is missing');
    // Only the known fields: anything else in the file is ignored, not carried along.
    const { inChannels, numClasses, base, depth, norm, seed } = topology;
    config = { inChannels, numClasses, base, depth, norm, seed } as UNetConfig;
    validateUNetConfig(config);
  } catch (e) {
    return fail(`invalid modelTopology: ${e instanceof Error ? e.message : String(e)}`);
  }
  const expected = buildManifest(config);
  const groups = json.weightsManifest;
  if (!Array.isArray(groups) || groups.length === 0) return fail('weightsManifest is missing or empty');
  const entries: WeightsManifestEntry[] = [];
  const files: string[] = [];
  for (const group of groups) {
    if (!group || !Array.isArray(group.paths) || !Array.isArray(group.weights)) fail('each weightsManifest group needs paths[] and weights[]');
    for (const p of group.paths) {
      // Shards must sit beside model.json: a manifest must not make us read arbitrary files.
      if (typeof p !== 'string' || p === '' || p !== path.basename(p) || p === '.' || p === '..') fail(`weights path ${JSON.stringify(p)} must be a plain file name`);
      files.push(p);
    }
    entries.push(...group.weights);
  }
  if (entries.length !== expected.length) fail(`weightsManifest lists ${entries.length} tensors; a U-Net with this topology has ${expected.length}`);
  expected.forEach((spec, i) => {
    const e = entries[i];
    if (!e || e.name !== spec.name) return fail(`weightsManifest tensor ${i} should be '${spec.name}', got ${JSON.stringify(e?.name)}`);
    if (e.dtype !== 'float32') fail(`tensor '${spec.name}' has dtype ${JSON.stringify(e.dtype)}; only float32 is supported`);
    if (!Array.isArray(e.shape) || e.shape.length !== spec.shape.length || e.shape.some((d, k) => d !== spec.shape[k])) {
      fail(`tensor '${spec.name}' should have shape [${spec.shape}], got ${JSON.stringify(e.shape)}`);
    }
  });

  const expectedBytes = expected.reduce((n, s) => n + sizeOf(s.shape), 0) * 4;
  const buffers: Buffer[] = [];
  let total = 0;
  for (const f of files) {
    const file = path.join(dir, f);
    if (!existsSync(file)) fail('file is missing', file);
    const size = statSync(file).size;
    // Check before reading so a huge or wrong file is refused without loading it.
    if (total + size > expectedBytes) fail(`weights are larger than the ${expectedBytes} bytes the manifest describes`, file);
    buffers.push(readFileSync(file));
    total += size;
  }
  const lastFile = path.join(dir, files.at(-1) ?? ''); // no shards at all: name the directory
  if (total !== expectedBytes) fail(`weights have ${total} bytes; the manifest describes ${expectedBytes}`, lastFile);
  const all = Buffer.concat(buffers, total);

  const values: Float32Array[] = [];
  let offset = 0;
  for (const spec of expected) {
    const n = sizeOf(spec.shape);
    const v = readFloat32LE(all, offset, n);
    // k < n = v.length, so v[k]! is in range without a per-value check.
    for (let k = 0; k < n; k++) {
      if (!Number.isFinite(v[k]!)) fail(`tensor '${spec.name}' has a non-finite value (${v[k]}) at index ${k}`, shardOf(files, buffers, dir, offset + 4 * k));
    }
    values.push(v);
    offset += 4 * n;
  }
  const meta = json.userDefinedMetadata;
  return {
    config,
    meta: typeof meta === 'object' && meta !== null && !Array.isArray(meta) ? meta : {},
    weights: { manifest: expected, values },
    generatedBy: typeof json.generatedBy === 'string' ? json.generatedBy : 'unknown',
  };
}

/** Reads artifacts and builds the model they describe (caller disposes it). */
export function loadModelArtifacts(dir: string): ModelArtifacts & { model: UNet3D } {
  const artifacts = readModelArtifacts(dir);
  const model = new UNet3D(artifacts.config);
  try {
    model.setWeights(artifacts.weights);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { ...artifacts, model };
}

function readModelJson(file: string): Partial<ModelJson> {
  if (!existsSync(file)) throw new PatchFedError('model-artifacts', `${file}: file is missing (not a PatchFed model directory?)`, { subject: file });
  const size = statSync(file).size;
  if (size > MAX_MODEL_JSON_BYTES) throw new PatchFedError('model-artifacts', `${file}: ${size} bytes is too large for a model.json`, { subject: file });
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
    return parsed as Partial<ModelJson>;
  } catch (e) {
    throw new PatchFedError('model-artifacts', `${file}: not valid JSON: ${e instanceof Error ? e.message : String(e)}`, { subject: file });
  }
}

function concatFloat32(arrays: readonly Float32Array[]): Uint8Array {
  const total = arrays.reduce((n, a) => n + a.length, 0);
  const out = new Uint8Array(total * 4);
  const view = new DataView(out.buffer);
  let offset = 0;
  for (const a of arrays) {
    if (LITTLE_ENDIAN) {
      out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), offset);
    } else {
      for (let i = 0; i < a.length; i++) view.setFloat32(offset + 4 * i, a[i]!, true);
    }
    offset += a.byteLength;
  }
  return out;
}

const LITTLE_ENDIAN = endianness() === 'LE';

function readFloat32LE(buf: Buffer, offset: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(buf.subarray(offset, offset + 4 * n));
  } else {
    for (let i = 0; i < n; i++) out[i] = buf.readFloatLE(offset + 4 * i);
  }
  return out;
}

/** The shard file holding byte `at`, for error messages. */
function shardOf(files: string[], buffers: Buffer[], dir: string, at: number): string {
  let start = 0;
  for (const [i, buffer] of buffers.entries()) {
    start += buffer.length;
    if (at < start) return path.join(dir, files[i] ?? '');
  }
  return path.join(dir, files.at(-1) ?? '');
}

let cachedVersion: string | undefined;
function patchfedVersion(): string {
  if (cachedVersion === undefined) {
    try {
      const pkg = new URL('../../package.json', import.meta.url);
      cachedVersion = (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version ?? 'unknown';
    } catch {
      cachedVersion = 'unknown';
    }
  }
  return cachedVersion;
}
