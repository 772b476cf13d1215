/**
 * Segment one NIfTI image with a loaded model and write a uint8 segmentation on the input's grid
 * (same dims, affine, qform/sform codes) with the data layer's NIfTI writer (temp file + rename:
 * an existing output is replaced whole or not at all).
 *
 * The image is normalised as the model was trained (see normalisation.ts). An image whose
 * channels do not match the model, or whose dataset.json (when the image sits in an MSD folder,
 * or `datasetDir` is given) lists other modalities or labels, is refused naming both sides.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import { readNifti, writeNifti } from '../../shared/nifti/index.ts';
import { readDatasetManifest } from '../data/manifest.ts';
import { imageLayout, preprocessImage } from '../data/preprocess.ts';
import type { Shape3 } from '../pipeline/case.ts';
import type { Weighting } from '../pipeline/sliding-window.ts';
import { loadModel } from './load-model.ts';
import { defaultWindow, disposePredictionModel, type PredictionModel, type PredictionStage } from './prediction-model.ts';
import { segmentCase, type StageModel } from './segment.ts';

export interface PredictFileRequest {
  /** A `patchfed train` output, a tfjs export, or a coordinator checkpoint directory (not verified here: no key). */
  modelDir: string;
  input: string;
  output: string;
  /** Sliding-window overlap; 0 = the thesis's non-overlapping tiling. Default: the model's, else 0.5. */
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

function refuse(message: string, subject?: string): never {
  throw new PatchFedError('E_PREDICT', message, { subject });
}

/** The MSD dataset folder an image belongs to: …/DATASET/imagesTs/x.nii.gz → …/DATASET. */
export function datasetFolderOf(input: string): string | null {
  const parent = path.dirname(path.resolve(input));
  const up = path.dirname(parent);
  return /^images(Tr|Ts)$/.test(path.basename(parent)) && existsSync(path.join(up, 'dataset.json')) ? up : null;
}

/** Refuses a model whose modalities or labels differ from a dataset.json's. */
export async function checkAgainstDataset(dir: string, model: PredictionModel): Promise<void> {
  const manifest = await readDatasetManifest(dir);
  const modalities = model.modalities;
  if (modalities && (modalities.length !== manifest.modalities.length || modalities.some((m, i) => m !== manifest.modalities[i]))) {
    refuse(`checkpoint ${model.where} was trained on modalities [${modalities.join(', ')}] but ${dir}/dataset.json lists [${manifest.modalities.join(', ')}]`, model.where);
  }
  const names = model.labelNames;
  const theirs = manifest.labels.map((l) => l.name);
  if (names && (names.length !== theirs.length || names.some((n, i) => n !== theirs[i]))) {
    refuse(`checkpoint ${model.where} predicts labels [${names.join(', ')}] but ${dir}/dataset.json declares [${theirs.join(', ')}]`, model.where);
  }
}

/** row-major (X, Y, Z), z fastest → NIfTI order, x fastest; class index → label value. */
function toNiftiLabels(seg: Uint8Array, shape: Shape3, values: readonly number[]): Uint8Array {
  const [X, Y, Z] = shape;
  const out = new Uint8Array(seg.length);
  for (let x = 0; x < X; x++) for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) out[x + X * (y + Y * z)] = values[seg[(x * Y + y) * Z + z] ?? 0] ?? 0;
  return out;
}

function stageModel(s: PredictionStage, shape: Shape3, divisor: number): StageModel {
  return { net: s.net, stage: s.stage, patch: s.patch ?? defaultWindow(shape, divisor) };
}

/** Segments `input` with a loaded model and writes `output`. The dataset check is the caller's (once per folder). */
export async function predictImage(model: PredictionModel, input: string, output: string): Promise<PredictFileReport> {
  const t0 = performance.now();
  const volume = await readNifti(input);
  const layout = imageLayout(volume.dims, input);
  const first = model.stages[0];
  const main = model.stages[model.stages.length - 1];
  if (!first || !main) refuse(`${model.where}: the model has no stage`);
  if (layout.channels !== model.channels) {
    const names = model.modalities ? ` (${model.modalities.join(', ')})` : '';
    refuse(`${input} has ${layout.channels} channel(s) (dims ${volume.dims.join('x')}) but checkpoint ${first.where} expects ${model.channels} input channel(s)${names}`, input);
  }
  const image = preprocessImage(path.basename(input), volume, model.schemes, model.ctStats, input);
  const models = model.stages.length === 2 ? { stage1: stageModel(first, image.shape, model.divisor), main: stageModel(main, image.shape, model.divisor) } : { main: stageModel(main, image.shape, model.divisor) };
  const seg = await segmentCase(models, image, {
    numClasses: model.numClasses,
    overlap: model.overlap,
    blend: model.blend,
    divisor: model.divisor,
    cascadeFactor: model.cascadeFactor,
  });
  const data = toNiftiLabels(seg.labels, image.shape, model.labelValues);
  await writeNifti(output, { data, dims: [...image.shape], datatype: 'uint8' }, volume.geometry, { description: `PatchFed ${model.mode} segmentation` });
  const labelVoxels: Record<string, number> = {};
  for (const v of model.labelValues) labelVoxels[String(v)] = 0;
  for (const v of data) labelVoxels[String(v)] = (labelVoxels[String(v)] ?? 0) + 1;
  return {
    input,
    output,
    mode: model.mode,
    stages: model.stages.map((s) => s.stage),
    shape: [...image.shape],
    channels: model.channels,
    method: seg.method,
    labelVoxels,
    timeMs: performance.now() - t0,
  };
}

/** One image with a model folder, start to end (no key: a coordinator checkpoint is not verified). */
export async function predictFile(req: PredictFileRequest): Promise<PredictFileReport> {
  if (req.overlap !== undefined && !(req.overlap >= 0 && req.overlap < 1)) refuse(`--overlap must be in [0, 1); got ${req.overlap}`);
  const { model } = await loadModel({ model: req.modelDir, overlap: req.overlap, blend: req.blend });
  try {
    const datasetDir = req.datasetDir ?? datasetFolderOf(req.input);
    if (datasetDir) await checkAgainstDataset(datasetDir, model);
    return await predictImage(model, req.input, req.output);
  } finally {
    disposePredictionModel(model);
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
