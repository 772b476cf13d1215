/**
 * `--format tfjs`: the model as standard tfjs artifacts, one folder per stage (`<out>/<stage>/
 * model.json + weights.bin`, the layout `patchfed train` writes), with the metadata `predict`
 * reads (labels, modalities, normalisation and CT statistics when known, window, cascade factor)
 * and where the weights came from. `patchfed predict --model <out>` uses it directly.
 */
import path from 'node:path';
import { saveWeightsArtifacts, type ModelMeta } from '../model/artifacts.ts';
import type { CheckpointDir } from '../inference/checkpoint-dir.ts';
import type { PredictionModel } from '../inference/prediction-model.ts';

export interface TfjsExportFile {
  stage: string;
  dir: string;
  modelJson: string;
  weightsBin: string;
  bytes: number;
}

function provenance(model: PredictionModel, checkpoint: CheckpointDir | undefined): string {
  if (!checkpoint) return `local training output ${model.where}`;
  const m = checkpoint.meta;
  return `checkpoint v${m.version} (round ${m.round}, sha256 ${m.sha256}) of experiment '${m.experimentId}'${checkpoint.verification.verified ? ', verified' : ', not verified'}`;
}

export function exportTfjs(model: PredictionModel, checkpoint: CheckpointDir | undefined, outDir: string): TfjsExportFile[] {
  const labels = model.labelNames ?? Array.from({ length: model.numClasses }, (_, k) => `class ${k}`);
  const layers = model.notes.find((n) => n.startsWith('normalisation layers:'));
  return model.stages.map((s) => {
    const dir = path.join(outDir, s.stage);
    const meta: ModelMeta = {
      mode: model.mode,
      stage: s.stage,
      labels: Object.fromEntries(labels.map((l, k) => [String(k), l])),
      labelValues: model.labelValues,
      modalities: model.modalities,
      patch: s.patch,
      cascadeFactor: model.cascadeFactor,
      divisor: model.divisor,
      normalization: model.schemes,
      ctStats: model.ctStats.map((c) => c ?? null),
      overlap: model.overlap,
      blend: model.blend,
      exportedFrom: provenance(model, checkpoint),
      ...(layers ? { normalizationLayers: layers.slice('normalisation layers: '.length) } : {}),
      ...(checkpoint ? { checkpoint: { experimentId: checkpoint.meta.experimentId, version: checkpoint.meta.version, round: checkpoint.meta.round, sha256: checkpoint.meta.sha256 } } : {}),
    };
    const written = saveWeightsArtifacts(dir, s.net.config, s.net.getWeights(), meta);
    return { stage: s.stage, dir, modelJson: written.modelJson, weightsBin: written.weightsBin, bytes: written.bytes };
  });
}
