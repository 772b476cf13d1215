/**
 * `patchfed predict`: segment one NIfTI image with a checkpoint written by `patchfed train`
 * (site-agent/model artifacts: model.json + weights.bin per stage; the cascade is two stage
 * directories side by side) and write a uint8 segmentation on the input's grid (same dims,
 * affine, qform/sform codes) with the data layer's NIfTI writer.
 *
 * The image is normalised exactly as in training (the per-channel schemes, and CT foreground
 * statistics, stored in the checkpoint's metadata). A checkpoint whose input channels do not
 * match the image, whose label list does not match its output classes, or whose modalities or
 * labels differ from the image's dataset.json (when the image sits in an MSD folder, or
 * `datasetDir` is given) is refused with a message naming both sides.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import { readNifti, writeNifti } from '../../shared/nifti/index.ts';
import type { ChannelScheme, CtChannelStats } from '../data/normalize.ts';
import { imageLayout, preprocessImage } from '../data/preprocess.ts';
import { readDatasetManifest } from '../data/manifest.ts';
import { loadModelArtifacts, MODEL_JSON, type ModelMeta } from '../model/artifacts.ts';
import type { UNet3D } from '../model/unet.ts';
import type { Shape3 } from '../pipeline/case.ts';
import type { Weighting } from '../pipeline/sliding-window.ts';
import { STAGES, isPatchWiseStage, isStage, requiredDivisor, type Stage } from '../../shared/model/index.ts';
import { segmentCase, type StageModel } from './segment.ts';

export interface PredictFileRequest {
  /** A stage directory (holding model.json) or a `patchfed train` output folder (stage subfolders). */
  modelDir: string;
  input: string;
  output: string;
  /** Sliding-window overlap; 0 = the thesis's non-overlapping tiling. Default: the checkpoint's, else 0.5. */
  overlap?: number;
  blend?: Weighting;
  /** MSD dataset folder to check modalities and labels against (default: found from the input path). */
  datasetDir?: string;
}

export interface PredictFileReport {
  input: string;
  output: string;
  mode: string;
  stages: string[];
  shape: [number, number, number];
  channels: number;
  /** How each stage predicted (sliding window or non-overlapping tiling). */
  method: string[];
  /** Voxels per output label value. */
  labelVoxels: Record<string, number>;
  timeMs: number;
}

interface LoadedStage {
  dir: string;
  stage: Stage;
  model: UNet3D;
  meta: ModelMeta;
  patch: Shape3;
}

function refuse(message: string, subject?: string): never {
  throw new PatchFedError('E_PREDICT', message, { subject });
}

function hasModel(dir: string): boolean {
  return existsSync(path.join(dir, MODEL_JSON));
}

/** The stage directories a checkpoint path stands for, main stage last. */
function stageDirs(modelDir: string): string[] {
  if (!existsSync(modelDir) || !statSync(modelDir).isDirectory()) refuse(`--model ${modelDir}: no such checkpoint directory`, modelDir);
  if (!hasModel(modelDir)) {
    const found = STAGES.filter((s) => hasModel(path.join(modelDir, s)));
    if (found.includes('cascade-stage2')) return [path.join(modelDir, 'cascade-stage1'), path.join(modelDir, 'cascade-stage2')];
    const single = found.filter((s) => s === 'full' || s === 'patch');
    if (single.length === 1) return [path.join(modelDir, single[0]!)];
    refuse(
      found.length === 0
        ? `--model ${modelDir}: no ${MODEL_JSON} here nor in a stage subfolder (${STAGES.join(', ')}); point --model at a 'patchfed train' output`
        : `--model ${modelDir}: holds several models (${found.join(', ')}); point --model at one of them`,
      modelDir,
    );
  }
  return [modelDir];
}

function loadStage(dir: string): LoadedStage {
  const { model, meta, config } = loadModelArtifacts(dir);
  const stage = meta.stage;
  if (!isStage(stage)) {
    model.dispose();
    refuse(`${path.join(dir, MODEL_JSON)}: metadata has no valid 'stage' (${JSON.stringify(meta.stage)}); it was not written by 'patchfed train'`, dir);
  }
  const patch = Array.isArray(meta.patch) && meta.patch.length === 3 && meta.patch.every((d) => Number.isInteger(d) && d > 0) ? (meta.patch as unknown as Shape3) : null;
  const divisor = requiredDivisor(config);
  if (isPatchWiseStage(stage) && (!patch || patch.some((d) => d % divisor !== 0))) {
    model.dispose();
    refuse(`${path.join(dir, MODEL_JSON)}: metadata 'patch' ${JSON.stringify(meta.patch)} is not a patch shape divisible by ${divisor}`, dir);
  }
  return { dir, stage, model, meta, patch: patch ?? [divisor, divisor, divisor] };
}

/** Loads the stage models (stage 1 first for the cascade), disposing everything on failure. */
function loadStages(modelDir: string): LoadedStage[] {
  const dirs = stageDirs(modelDir);
  const loaded: LoadedStage[] = [];
  try {
    for (const d of dirs) loaded.push(loadStage(d));
    const main = loaded[loaded.length - 1]!;
    if (main.stage === 'cascade-stage1') refuse(`--model ${modelDir}: a cascade stage-1 model alone cannot segment at full resolution; point --model at the folder holding cascade-stage1 and cascade-stage2`, modelDir);
    if (main.stage === 'cascade-stage2') {
      if (loaded.length === 1) {
        const sibling = path.join(path.dirname(main.dir), 'cascade-stage1');
        if (!hasModel(sibling)) refuse(`--model ${modelDir}: a cascade stage-2 model needs its stage-1 model in ${sibling}`, modelDir);
        loaded.unshift(loadStage(sibling));
      }
      const [s1, s2] = loaded as [LoadedStage, LoadedStage];
      if (s1.stage !== 'cascade-stage1') refuse(`${s1.dir}: expected a cascade stage-1 model, found '${s1.stage}'`, s1.dir);
      const K = s2.model.config.numClasses;
      if (s1.model.config.numClasses !== K || s2.model.config.inChannels !== s1.model.config.inChannels + K - 1) {
        refuse(`${modelDir}: cascade stages do not fit together (stage 1: ${s1.model.config.inChannels} channels in, ${s1.model.config.numClasses} classes; stage 2: ${s2.model.config.inChannels} in, ${K} classes)`, modelDir);
      }
    }
    return loaded;
  } catch (e) {
    for (const l of loaded) l.model.dispose();
    throw e;
  }
}

function labelNames(meta: ModelMeta): string[] | null {
  const labels = meta.labels;
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) return null;
  const entries = Object.entries(labels as Record<string, unknown>);
  if (!entries.every(([k, v]) => /^\d+$/.test(k) && typeof v === 'string')) return null;
  return entries.sort((a, b) => Number(a[0]) - Number(b[0])).map(([, v]) => v as string);
}

/** Output value per class index: the dataset's label values (default: the index itself). */
function labelValues(meta: ModelMeta, K: number, where: string): number[] {
  const v = meta.labelValues;
  if (v === undefined) return Array.from({ length: K }, (_, k) => k);
  if (!Array.isArray(v) || v.length !== K || !v.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)) {
    refuse(`${where}: metadata 'labelValues' ${JSON.stringify(v)} must list ${K} uint8 label values (one per output class)`, where);
  }
  return v as number[];
}

/** The MSD dataset folder an image belongs to: …/DATASET/imagesTs/x.nii.gz → …/DATASET. */
function datasetFolderOf(input: string): string | null {
  const parent = path.dirname(path.resolve(input));
  const up = path.dirname(parent);
  return /^images(Tr|Ts)$/.test(path.basename(parent)) && existsSync(path.join(up, 'dataset.json')) ? up : null;
}

async function checkAgainstDataset(dir: string, meta: ModelMeta, modelWhere: string): Promise<void> {
  const manifest = await readDatasetManifest(dir);
  const modalities = Array.isArray(meta.modalities) ? (meta.modalities as unknown[]).map(String) : null;
  if (modalities && (modalities.length !== manifest.modalities.length || modalities.some((m, i) => m !== manifest.modalities[i]))) {
    refuse(`checkpoint ${modelWhere} was trained on modalities [${modalities.join(', ')}] but ${dir}/dataset.json lists [${manifest.modalities.join(', ')}]`, modelWhere);
  }
  const names = labelNames(meta);
  const theirs = manifest.labels.map((l) => l.name);
  if (names && (names.length !== theirs.length || names.some((n, i) => n !== theirs[i]))) {
    refuse(`checkpoint ${modelWhere} predicts labels [${names.join(', ')}] but ${dir}/dataset.json declares [${theirs.join(', ')}]`, modelWhere);
  }
}

/** row-major (X, Y, Z), z fastest → NIfTI order, x fastest; class index → label value. */
function toNiftiLabels(seg: Uint8Array, shape: Shape3, values: readonly number[]): Uint8Array {
  const [X, Y, Z] = shape;
  const out = new Uint8Array(seg.length);
  for (let x = 0; x < X; x++) for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) out[x + X * (y + Y * z)] = values[seg[(x * Y + y) * Z + z]!]!;
  return out;
}

export async function predictFile(req: PredictFileRequest): Promise<PredictFileReport> {
  const t0 = performance.now();
  if (req.overlap !== undefined && !(req.overlap >= 0 && req.overlap < 1)) refuse(`--overlap must be in [0, 1); got ${req.overlap}`);
  const stages = loadStages(req.modelDir);
  try {
    const main = stages[stages.length - 1]!;
    const first = stages[0]!;
    const where = main.dir;
    const K = main.model.config.numClasses;
    const channels = first.model.config.inChannels;
    const names = labelNames(main.meta);
    if (names && names.length !== K) refuse(`checkpoint ${where}: lists ${names.length} labels (${names.join(', ')}) but the network has ${K} output classes`, where);
    const values = labelValues(main.meta, K, where);

    const volume = await readNifti(req.input);
    const layout = imageLayout(volume.dims, req.input);
    if (layout.channels !== channels) {
      refuse(`${req.input} has ${layout.channels} channel(s) (dims ${volume.dims.join('x')}) but checkpoint ${first.dir} expects ${channels} input channel(s)${Array.isArray(first.meta.modalities) ? ` (${(first.meta.modalities as unknown[]).join(', ')})` : ''}`, req.input);
    }
    const datasetDir = req.datasetDir ?? datasetFolderOf(req.input);
    if (datasetDir) await checkAgainstDataset(datasetDir, main.meta, where);

    const schemes = (Array.isArray(first.meta.normalization) ? first.meta.normalization : Array(channels).fill('nonzero-zscore')) as ChannelScheme[];
    const ctStats = (Array.isArray(first.meta.ctStats) ? first.meta.ctStats : []) as (CtChannelStats | undefined)[];
    if (schemes.some((s, c) => s === 'ct-clip-zscore' && !ctStats[c])) {
      refuse(`checkpoint ${first.dir}: CT channel normalisation statistics are missing from its metadata; retrain with this version of 'patchfed train'`, first.dir);
    }
    const image = preprocessImage(path.basename(req.input), volume, schemes, schemes.map((_, c) => ctStats[c] ?? undefined), req.input);

    const num = (v: unknown, d: number) => (typeof v === 'number' && Number.isFinite(v) ? v : d);
    const overlap = req.overlap ?? num(main.meta.overlap, 0.5);
    const blend: Weighting = req.blend ?? (main.meta.blend === 'constant' ? 'constant' : 'gaussian');
    const toModel = (s: LoadedStage): StageModel => ({ net: s.model, stage: s.stage, patch: s.patch });
    const models = stages.length === 2 ? { stage1: toModel(stages[0]!), main: toModel(main) } : { main: toModel(main) };
    const seg = await segmentCase(models, image, {
      numClasses: K,
      overlap,
      blend,
      divisor: requiredDivisor(main.model.config),
      cascadeFactor: num(main.meta.cascadeFactor, 0.5),
    });

    const data = toNiftiLabels(seg.labels, image.shape, values);
    await writeNifti(req.output, { data, dims: [...image.shape], datatype: 'uint8' }, volume.geometry, { description: `PatchFed ${String(main.meta.mode ?? main.stage)} segmentation` });
    const labelVoxels: Record<string, number> = {};
    for (const v of values) labelVoxels[String(v)] = 0;
    for (let i = 0; i < data.length; i++) labelVoxels[String(data[i])]!++;
    return {
      input: req.input,
      output: req.output,
      mode: String(main.meta.mode ?? main.stage),
      stages: stages.map((s) => s.stage),
      shape: [...image.shape],
      channels,
      method: seg.method,
      labelVoxels,
      timeMs: performance.now() - t0,
    };
  } finally {
    for (const s of stages) s.model.dispose();
  }
}

export function formatPredictReport(r: PredictFileReport, labels?: string[]): string {
  const counts = Object.entries(r.labelVoxels)
    .map(([v, n], k) => `${labels?.[k] ?? v} ${n}`)
    .join(', ');
  return [
    `segmented ${r.input} (${r.shape.join('x')}, ${r.channels} channel(s)) with a ${r.mode} checkpoint in ${(r.timeMs / 1000).toFixed(1)} s -> ${r.output} (uint8, input's affine)`,
    ...r.method.map((m) => `  inference: ${m}`),
    `  voxels per label: ${counts}`,
    '',
  ].join('\n');
}
