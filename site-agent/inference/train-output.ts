/**
 * A model written as tfjs artifacts — a `patchfed train` output or a `patchfed export --format
 * tfjs` folder (model.json + weights.bin per stage; the cascade is two stage folders side by
 * side) — as a PredictionModel. Everything the model needs (stage, patch, labels, modalities,
 * normalisation and CT statistics) is in each model.json's metadata.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import { STAGES, isPatchWiseStage, isStage, requiredDivisor } from '../../shared/model/index.ts';
import type { ChannelScheme, CtChannelStats } from '../data/normalize.ts';
import { loadModelArtifacts, MODEL_JSON, type ModelMeta } from '../model/artifacts.ts';
import type { UNet3D } from '../model/unet.ts';
import type { Shape3 } from '../pipeline/case.ts';
import type { PredictionModel, PredictionStage } from './prediction-model.ts';

interface LoadedStage extends PredictionStage {
  meta: ModelMeta;
}

function refuse(message: string, subject?: string): never {
  throw new PatchFedError('E_PREDICT', message, { subject });
}

export function hasModelJson(dir: string): boolean {
  return existsSync(path.join(dir, MODEL_JSON));
}

/** Whether `dir` holds tfjs artifacts, itself or in stage subfolders. */
export function isTfjsModelDir(dir: string): boolean {
  return hasModelJson(dir) || STAGES.some((s) => hasModelJson(path.join(dir, s)));
}

/** The stage directories a model path stands for, main stage last. */
function stageDirs(modelDir: string): string[] {
  if (!existsSync(modelDir) || !statSync(modelDir).isDirectory()) refuse(`--model ${modelDir}: no such checkpoint directory`, modelDir);
  if (!hasModelJson(modelDir)) {
    const found = STAGES.filter((s) => hasModelJson(path.join(modelDir, s)));
    if (found.includes('cascade-stage2')) return [path.join(modelDir, 'cascade-stage1'), path.join(modelDir, 'cascade-stage2')];
    const single = found.filter((s) => s === 'full' || s === 'patch');
    if (single.length === 1 && single[0]) return [path.join(modelDir, single[0])];
    refuse(
      found.length === 0
        ? `--model ${modelDir}: no ${MODEL_JSON} here nor in a stage subfolder (${STAGES.join(', ')}), and not a coordinator checkpoint (meta.json + weights.pfw); point --model at a 'patchfed train' output, a 'patchfed export --format tfjs' folder or a checkpoint directory`
        : `--model ${modelDir}: holds several models (${found.join(', ')}); point --model at one of them`,
      modelDir,
    );
  }
  return [modelDir];
}

function patchOf(meta: ModelMeta): Shape3 | null {
  const p = meta.patch;
  if (!Array.isArray(p) || p.length !== 3) return null;
  const [x, y, z] = p as unknown[];
  const ok = (d: unknown): d is number => typeof d === 'number' && Number.isInteger(d) && d > 0;
  return ok(x) && ok(y) && ok(z) ? [x, y, z] : null;
}

function loadStage(dir: string): LoadedStage {
  const { model, meta, config } = loadModelArtifacts(dir);
  const stage: unknown = meta.stage;
  if (!isStage(stage)) {
    model.dispose();
    refuse(`${path.join(dir, MODEL_JSON)}: metadata has no valid 'stage' (${JSON.stringify(meta.stage)}); it was not written by 'patchfed train' or 'patchfed export'`, dir);
  }
  const patch = patchOf(meta);
  const divisor = requiredDivisor(config);
  // patch null: an export of a coordinator checkpoint that records no training patch (window chosen per case).
  const unrecorded = meta.patch === null && typeof meta.exportedFrom === 'string';
  if (isPatchWiseStage(stage) && !unrecorded && (!patch || patch.some((d) => d % divisor !== 0))) {
    model.dispose();
    refuse(`${path.join(dir, MODEL_JSON)}: metadata 'patch' ${JSON.stringify(meta.patch)} is not a patch shape divisible by ${divisor}`, dir);
  }
  return { stage, net: model, meta, patch: isPatchWiseStage(stage) ? patch : [divisor, divisor, divisor], where: dir };
}

function checkCascade(modelDir: string, s1: LoadedStage, s2: LoadedStage): void {
  if (s1.stage !== 'cascade-stage1') refuse(`${s1.where}: expected a cascade stage-1 model, found '${s1.stage}'`, s1.where);
  const K = s2.net.config.numClasses;
  if (s1.net.config.numClasses !== K || s2.net.config.inChannels !== s1.net.config.inChannels + K - 1) {
    refuse(
      `${modelDir}: cascade stages do not fit together (stage 1: ${s1.net.config.inChannels} channels in, ${s1.net.config.numClasses} classes; stage 2: ${s2.net.config.inChannels} in, ${K} classes)`,
      modelDir,
    );
  }
}

/** Loads the stage models (stage 1 first for the cascade), disposing everything on failure. */
function loadStages(modelDir: string): LoadedStage[] {
  const loaded: LoadedStage[] = [];
  try {
    for (const d of stageDirs(modelDir)) loaded.push(loadStage(d));
    const main = loaded[loaded.length - 1];
    if (!main) refuse(`--model ${modelDir}: no model found`, modelDir);
    if (main.stage === 'cascade-stage1') refuse(`--model ${modelDir}: a cascade stage-1 model alone cannot segment at full resolution; point --model at the folder holding cascade-stage1 and cascade-stage2`, modelDir);
    if (main.stage === 'cascade-stage2') {
      if (loaded.length === 1) {
        const sibling = path.join(path.dirname(main.where), 'cascade-stage1');
        if (!hasModelJson(sibling)) refuse(`--model ${modelDir}: a cascade stage-2 model needs its stage-1 model in ${sibling}`, modelDir);
        loaded.unshift(loadStage(sibling));
      }
      const [s1, s2] = loaded;
      if (s1 && s2) checkCascade(modelDir, s1, s2);
    }
    return loaded;
  } catch (e) {
    for (const l of loaded) l.net.dispose();
    throw e;
  }
}

function labelNames(meta: ModelMeta): string[] | null {
  const labels = meta.labels;
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) return null;
  const entries = Object.entries(labels);
  const named: [number, string][] = [];
  for (const [k, v] of entries) {
    if (!/^\d+$/.test(k) || typeof v !== 'string') return null;
    named.push([Number(k), v]);
  }
  return named.sort((a, b) => a[0] - b[0]).map(([, v]) => v);
}

/** Output value per class index: the dataset's label values (default: the index itself). */
function labelValues(meta: ModelMeta, K: number, where: string): number[] {
  const v: unknown = meta.labelValues;
  if (v === undefined) return Array.from({ length: K }, (_, k) => k);
  if (!Array.isArray(v) || v.length !== K || !v.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)) {
    refuse(`${where}: metadata 'labelValues' ${JSON.stringify(v)} must list ${K} uint8 label values (one per output class)`, where);
  }
  return v.map(Number);
}

function isCtStats(v: unknown): v is CtChannelStats {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as Record<string, unknown>;
  return ['lower', 'upper', 'mean', 'std'].every((k) => typeof s[k] === 'number' && Number.isFinite(s[k]));
}

function num(v: unknown, d: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : d;
}

export function loadTrainOutput(modelDir: string): PredictionModel {
  const stages = loadStages(modelDir);
  const main = stages[stages.length - 1];
  const first = stages[0];
  if (!main || !first) refuse(`--model ${modelDir}: no model found`, modelDir);
  try {
    const K = main.net.config.numClasses;
    const channels = first.net.config.inChannels;
    const names = labelNames(main.meta);
    if (names && names.length !== K) refuse(`checkpoint ${main.where}: lists ${names.length} labels (${names.join(', ')}) but the network has ${K} output classes`, main.where);
    const rawSchemes: unknown = first.meta.normalization;
    const schemes: ChannelScheme[] = Array.isArray(rawSchemes)
      ? rawSchemes.map((s) => (s === 'ct-clip-zscore' ? 'ct-clip-zscore' : 'nonzero-zscore'))
      : Array<ChannelScheme>(channels).fill('nonzero-zscore');
    const rawStats: unknown = first.meta.ctStats;
    const ctStats = schemes.map((_, c) => {
      const s: unknown = Array.isArray(rawStats) ? rawStats[c] : undefined;
      return isCtStats(s) ? s : undefined;
    });
    const modalities = Array.isArray(first.meta.modalities) ? first.meta.modalities.map(String) : null;
    const stageMeta = (s: LoadedStage): string =>
      !isPatchWiseStage(s.stage) ? `${s.stage}: whole volume` : s.patch ? `${s.stage}: window ${s.patch.join('x')}` : `${s.stage}: window per case (none recorded)`;
    const origin = typeof main.meta.exportedFrom === 'string' ? ` (exported from ${main.meta.exportedFrom})` : '';
    return {
      kind: 'train-output',
      where: modelDir,
      source: typeof main.meta.exportedFrom === 'string' ? `tfjs export of ${main.meta.exportedFrom}` : "a 'patchfed train' output (one site's local training, no federation)",
      mode: String(main.meta.mode ?? main.stage),
      stages: stages.map(({ stage, net, patch, where }) => ({ stage, net, patch, where })),
      numClasses: K,
      channels,
      labelNames: names,
      labelValues: labelValues(main.meta, K, main.where),
      modalities,
      schemes,
      ctStats,
      overlap: num(main.meta.overlap, 0.5),
      blend: main.meta.blend === 'constant' ? 'constant' : 'gaussian',
      cascadeFactor: num(main.meta.cascadeFactor, 0.5),
      divisor: requiredDivisor(main.net.config),
      notes: [
        `model: tfjs artifacts in ${modelDir}${origin} (${stages.map(stageMeta).join('; ')})`,
        ...(typeof main.meta.normalizationLayers === 'string' ? [`normalisation layers: ${main.meta.normalizationLayers}`] : []),
      ],
    };
  } catch (e) {
    for (const s of stages) s.net.dispose();
    throw e;
  }
}

