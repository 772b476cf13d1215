/**
 * `patchfed export`: a loaded model (a coordinator checkpoint, or a train output) written as
 *
 * - `onnx`: one standard ONNX graph per stage — `--out model.onnx` for full/patch; for the cascade
 *   `model.stage1.onnx` and `model.stage2.onnx` — with input layout and preprocessing in
 *   metadata_props;
 * - `tfjs`: tfjs artifacts, one folder per stage under `--out` (what `patchfed predict` reads);
 *
 * plus the model card beside it (`model.card.json` / `.md`, or `<out>/model-card.json` / `.md`).
 * `verify` compares the export with the tfjs model on seeded random input (onnxruntime for ONNX,
 * the re-read artifacts for tfjs), and `verifyImage` also segments an image both ways.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import { readNifti } from '../../shared/nifti/index.ts';
import { preprocessImage } from '../data/preprocess.ts';
import type { LoadedModel } from '../inference/load-model.ts';
import { disposePredictionModel, type PredictionModel } from '../inference/prediction-model.ts';
import { loadTrainOutput } from '../inference/train-output.ts';
import { writeFileAtomic } from '../model/atomic-file.ts';
import type { PatchPredictor } from '../pipeline/sliding-window.ts';
import { buildModelCard, modelCardMarkdown, type ExportedFile, type ModelCard } from './model-card.ts';
import { encodeOnnxModel, unetOnnxGraph } from './onnx-graph.ts';
import { onnxMetadata } from './export-metadata.ts';
import { onnxRuntimeVersion, loadOnnxRuntime, type OnnxStage } from './onnx-runtime.ts';
import { exportTfjs } from './tfjs-export.ts';
import { compareStage, comparisonWindow, onnxStages, segmentWith, type StageComparison } from './verify-export.ts';

export type ExportFormat = 'onnx' | 'tfjs';

export interface ExportRequest {
  format: ExportFormat;
  out: string;
  verify?: boolean;
  /** A NIfTI image to segment with both the tfjs model and the export (implies verify). */
  verifyImage?: string;
  /** onnxruntime intra-op threads for the checks (default: onnxruntime's). */
  threads?: number;
  producerVersion: string;
}

export interface ImageCheck {
  image: string;
  voxels: number;
  differingVoxels: number;
}

export interface ExportReport {
  format: ExportFormat;
  files: ExportedFile[];
  card: { json: string; markdown: string };
  verification: ModelCard['verification'];
  imageCheck?: ImageCheck;
}

/** ONNX file per stage: `--out` itself for one stage, `<name>.stage1.onnx`, `<name>.stage2.onnx` for the cascade. */
export function onnxFileNames(out: string, stages: number): string[] {
  if (!out.endsWith('.onnx')) throw new PatchFedError('E_USAGE', `--out ${out}: an ONNX export needs a file name ending in .onnx`, { subject: out });
  if (stages === 1) return [out];
  const base = out.slice(0, -'.onnx'.length);
  return Array.from({ length: stages }, (_, i) => `${base}.stage${i + 1}.onnx`);
}

function cardPaths(format: ExportFormat, out: string): { json: string; markdown: string } {
  if (format === 'tfjs') return { json: path.join(out, 'model-card.json'), markdown: path.join(out, 'model-card.md') };
  const base = out.slice(0, -'.onnx'.length);
  return { json: `${base}.card.json`, markdown: `${base}.card.md` };
}

function fileEntry(stage: string, file: string, bytes: Uint8Array): ExportedFile {
  return { stage, file, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
}

async function checkOnnx(model: PredictionModel, files: readonly Uint8Array[], req: ExportRequest): Promise<{ verification: NonNullable<ModelCard['verification']>; imageCheck?: ImageCheck }> {
  const ort = await loadOnnxRuntime();
  const sessions: OnnxStage[] = await onnxStages(model, files, req.threads);
  try {
    const stages: StageComparison[] = [];
    for (const [i, s] of model.stages.entries()) {
      const session = sessions[i];
      if (session) stages.push(await compareStage(s, session.predictor, comparisonWindow(s, model.divisor)));
    }
    const verification = { method: `onnxruntime ${onnxRuntimeVersion(ort)} against the tfjs model on seeded random input`, stages };
    if (!req.verifyImage) return { verification };
    const volume = await readNifti(req.verifyImage);
    const image = preprocessImage(path.basename(req.verifyImage), volume, model.schemes, model.ctStats, req.verifyImage);
    const viaTfjs = await segmentWith(model, image);
    const viaOnnx = await segmentWith(model, image, sessions);
    let differing = 0;
    viaTfjs.labels.forEach((v, i) => {
      if (viaOnnx.labels[i] !== v) differing++;
    });
    return { verification, imageCheck: { image: req.verifyImage, voxels: viaTfjs.labels.length, differingVoxels: differing } };
  } finally {
    await Promise.all(sessions.map((s) => s.release()));
  }
}

/** Re-reads the written tfjs artifacts and runs them against the source model. */
async function checkTfjs(model: PredictionModel, out: string): Promise<NonNullable<ModelCard['verification']>> {
  const reread = loadTrainOutput(out);
  try {
    const stages: StageComparison[] = [];
    for (const [i, s] of model.stages.entries()) {
      const r = reread.stages[i];
      if (!r) throw new PatchFedError('E_EXPORT', `${out}: stage ${s.stage} is missing from the written export`);
      const predictor: PatchPredictor = (batch) => tf.tidy(() => r.net.predict(tf.tensor5d(batch.data, batch.shape, 'float32')));
      stages.push(await compareStage(s, predictor, comparisonWindow(s, model.divisor)));
    }
    return { method: 'the written tfjs artifacts, re-read, against the source model on seeded random input', stages };
  } finally {
    disposePredictionModel(reread);
  }
}

/** Largest max-abs difference of probabilities an export may show against the tfjs model. */
export const EXPORT_TOLERANCE = 1e-4;

function assertWithinTolerance(verification: ModelCard['verification'], out: string): void {
  for (const s of verification?.stages ?? []) {
    if (!(s.maxAbsDiff <= EXPORT_TOLERANCE)) {
      throw new PatchFedError('E_EXPORT', `${out}: ${s.stage} differs from the tfjs model by up to ${s.maxAbsDiff.toExponential(2)} in probability (tolerance ${EXPORT_TOLERANCE}); not exported`, { subject: out });
    }
  }
}

export async function exportModel(loaded: LoadedModel, req: ExportRequest): Promise<ExportReport> {
  const { model, checkpoint } = loaded;
  const files: ExportedFile[] = [];
  let verification: ModelCard['verification'] = null;
  let imageCheck: ImageCheck | undefined;
  if (req.format === 'onnx') {
    const names = onnxFileNames(req.out, model.stages.length);
    mkdirSync(path.dirname(path.resolve(req.out)), { recursive: true });
    const encoded = model.stages.map((s, i) => {
      const graph = unetOnnxGraph(s.net.config, s.net.getWeights(), `patchfed-${model.mode}-${s.stage}`);
      const docString = `PatchFed ${model.mode} U-Net, ${s.stage}${model.stages.length > 1 ? ` (stage ${i + 1} of ${model.stages.length})` : ''}; see metadata_props for input layout and preprocessing`;
      return encodeOnnxModel(graph, { producerVersion: req.producerVersion, docString, metadata: onnxMetadata(model, s, checkpoint, req.producerVersion) });
    });
    // Checked before anything is written: a graph that disagrees with the model is not exported.
    if (req.verify || req.verifyImage) {
      ({ verification, imageCheck } = await checkOnnx(model, encoded, req));
      assertWithinTolerance(verification, req.out);
    }
    encoded.forEach((bytes, i) => {
      const file = names[i];
      const stage = model.stages[i];
      if (!file || !stage) return;
      writeFileAtomic(file, bytes);
      files.push(fileEntry(stage.stage, file, bytes));
    });
  } else {
    for (const f of exportTfjs(model, checkpoint, req.out)) {
      files.push(fileEntry(f.stage, f.modelJson, readFileSync(f.modelJson)), fileEntry(f.stage, f.weightsBin, readFileSync(f.weightsBin)));
    }
    if (req.verify || req.verifyImage) {
      verification = await checkTfjs(model, req.out);
      assertWithinTolerance(verification, req.out);
    }
  }
  const card = buildModelCard(model, checkpoint, req.format, files, verification);
  const paths = cardPaths(req.format, req.out);
  writeFileAtomic(paths.json, `${JSON.stringify(card, null, 2)}\n`);
  writeFileAtomic(paths.markdown, modelCardMarkdown(card));
  return { format: req.format, files, card: paths, verification, ...(imageCheck ? { imageCheck } : {}) };
}
