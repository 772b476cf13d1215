/**
 * `patchfed compare`'s own look at a trained mode, beyond the Dice `train` reports: it reloads
 * the saved checkpoint, segments the test cases again and measures
 * - HD95 and NSD per class (site-agent/metrics/segmentation-metrics.ts, in mm from the spacing);
 * - for the cascade, the Dice of stage 1's guidance alone (upsampled to full resolution), which
 *   is what stage 2 is told — the first suspect when the cascade falls behind;
 * - on context phantoms, how the mode labels the two look-alike tubes: the share of the connected
 *   tube given the context class and of the look-alike given it too, both overall and in the
 *   slices out of a slab's reach of the landmark (where only context beyond a slab can decide).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import { STAGES, isStage, type Stage } from '../../shared/model/index.ts';
import type { MsdDataset } from '../data/index.ts';
import { predictStage, segmentCase, type InferenceOptions, type StageModel } from '../inference/segment.ts';
import { diceScores } from '../metrics/dice.ts';
import { evaluateSegmentation } from '../metrics/segmentation-metrics.ts';
import { loadModelArtifacts, MODEL_JSON } from '../model/artifacts.ts';
import type { UNet3D } from '../model/unet.ts';
import { inferenceGuidance } from '../pipeline/guidance.ts';
import { downsampleCase } from '../pipeline/resample.ts';
import type { Shape3 } from '../pipeline/case.ts';
import { CONTEXT_ROLE, generatePhantomCase, phantomCaseIds, type PhantomTask } from '../phantom/index.ts';

/** Per foreground class, over the test cases. */
export interface ClassSummary {
  /** Mean Dice over the cases where it is defined (null: undefined in every case). */
  dice: number | null;
  /** Median HD95 in mm over the cases where it is defined (+∞ for a missed or invented structure counts; null: none). */
  hd95Median: number | null;
  /** Cases with an infinite HD95 (the structure is in exactly one of prediction and reference). */
  hd95Infinite: number;
  /** Mean normalised surface Dice at the tolerance (null: undefined in every case). */
  nsd: number | null;
}

export interface ContextBreakdown {
  /** Share of the connected tube's voxels given the context class. */
  connectedRecall: number | null;
  /** Share of the look-alike's voxels given the context class (false positives). */
  lookalikeFalsePositive: number | null;
  /** The same two in the slices a slab holding them cannot reach the landmark from. */
  farConnectedRecall: number | null;
  farLookalikeFalsePositive: number | null;
}

export interface ModeEvaluation {
  perClass: ClassSummary[];
  nsdToleranceMm: number;
  /** Cascade only: Dice of stage 1's upsampled segmentation per class (what stage 2 is guided by). */
  stage1GuidanceDice: (number | null)[] | null;
  context: ContextBreakdown | null;
}

/** Where the phantom behind the dataset came from, to regenerate each test case's context map. */
export interface PhantomSource {
  task: PhantomTask;
  seed: number;
  siteStyle: number;
  shape: [number, number, number];
  cases: number;
  contextClass: number;
  /** Slab thickness of the patch-wise stages: "beyond a slab" is measured with it. */
  slab: number;
}

export interface EvaluateModeRequest {
  /** The mode's `train` output folder (stage subfolders). */
  modelDir: string;
  dataset: MsdDataset;
  testIds: readonly string[];
  numClasses: number;
  nsdToleranceMm: number;
  /** Context phantoms: regenerate the context maps of the test cases. */
  phantom?: PhantomSource;
}

interface LoadedStage {
  model: UNet3D;
  stage: Stage;
  patch: Shape3;
  meta: Record<string, unknown>;
}

function loadStages(modelDir: string): LoadedStage[] {
  const loaded: LoadedStage[] = [];
  try {
    for (const stage of STAGES) {
      if (!existsSync(join(modelDir, stage, MODEL_JSON))) continue;
      const art = loadModelArtifacts(join(modelDir, stage));
      const meta = art.meta;
      if (!isStage(meta.stage)) throw new PatchFedError('E_COMPARE', `${join(modelDir, stage)}: checkpoint metadata names no stage`);
      const p = meta.patch;
      if (!Array.isArray(p) || p.length !== 3 || !p.every((d) => Number.isInteger(d) && d > 0)) {
        throw new PatchFedError('E_COMPARE', `${join(modelDir, stage)}: checkpoint metadata has no patch shape`);
      }
      const patch: Shape3 = [Number(p[0]), Number(p[1]), Number(p[2])];
      loaded.push({ model: art.model, stage: meta.stage, patch, meta });
    }
  } catch (e) {
    for (const s of loaded) s.model.dispose();
    throw e;
  }
  if (loaded.length === 0) throw new PatchFedError('E_COMPARE', `${modelDir}: no trained stage found`);
  return loaded;
}

const numberOr = (v: unknown, fallback: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : fallback);

function mean(values: number[]): number | null {
  const d = values.filter((v) => !Number.isNaN(v));
  return d.length === 0 ? null : d.reduce((a, b) => a + b, 0) / d.length;
}

function median(values: number[]): number | null {
  const d = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (d.length === 0) return null;
  const m = d.length >> 1;
  return d.length % 2 === 1 ? d[m]! : (d[m - 1]! + d[m]!) / 2;
}

/**
 * The context map of a phantom test case, transposed from the generator's x-fastest order to the
 * data layer's row-major (X, Y, Z) order; checked against the loaded label so a mismatch between
 * the two orders can never go unnoticed.
 */
function contextMapFor(src: PhantomSource, id: string, label: Uint8Array, shape: Shape3): Uint8Array {
  const ids = phantomCaseIds(src.task, src.siteStyle, src.cases, 0).training;
  const caseIndex = ids.indexOf(id);
  if (caseIndex < 0) throw new PatchFedError('E_COMPARE', `test case ${id} is not one of the phantom's cases`);
  const c = generatePhantomCase({ task: src.task, shape: src.shape, seed: src.seed, siteStyle: src.siteStyle, caseIndex, context: true });
  const map = c.contextMap;
  if (!map) throw new PatchFedError('E_COMPARE', `phantom case ${id} has no context map`);
  const [X, Y, Z] = shape;
  const out = new Uint8Array(map.length);
  for (let x = 0; x < X; x++) {
    for (let y = 0; y < Y; y++) {
      for (let z = 0; z < Z; z++) {
        const row = (x * Y + y) * Z + z;
        const nifti = (z * Y + y) * X + x;
        if (c.label[nifti] !== label[row]) throw new PatchFedError('E_COMPARE', `phantom case ${id}: regenerated labels differ from the dataset's (voxel ${x},${y},${z})`);
        out[row] = map[nifti]!;
      }
    }
  }
  return out;
}

/** Counts for the context breakdown of one case: [connected, connected→class, look-alike, look-alike→class] overall and far. */
function contextCounts(pred: Uint8Array, map: Uint8Array, shape: Shape3, contextClass: number, slab: number): number[] {
  const [X, Y, Z] = shape;
  const landmark = new Uint8Array(Z);
  for (let i = 0; i < map.length; i++) if (map[i] === CONTEXT_ROLE.landmark) landmark[i % Z] = 1;
  const far = new Uint8Array(Z);
  for (let z = 0; z < Z; z++) {
    let reach = false;
    for (let d = 1 - slab; d < slab && !reach; d++) reach = landmark[z + d] === 1;
    far[z] = reach ? 0 : 1;
  }
  const n = new Array<number>(8).fill(0);
  for (let i = 0; i < X * Y * Z; i++) {
    const role = map[i];
    if (role !== CONTEXT_ROLE.connected && role !== CONTEXT_ROLE.lookalike) continue;
    const k = role === CONTEXT_ROLE.connected ? 0 : 2;
    const hit = pred[i] === contextClass ? 1 : 0;
    n[k]!++;
    n[k + 1]! += hit;
    if (far[i % Z]) {
      n[k + 4]!++;
      n[k + 5]! += hit;
    }
  }
  return n;
}

export async function evaluateSavedMode(req: EvaluateModeRequest): Promise<ModeEvaluation> {
  const stages = loadStages(req.modelDir);
  try {
    const main = stages[stages.length - 1]!;
    const stage1 = stages.find((s) => s.stage === 'cascade-stage1');
    const models: { main: StageModel; stage1?: StageModel } = { main: { net: main.model, stage: main.stage, patch: main.patch } };
    if (stage1 && stage1 !== main) models.stage1 = { net: stage1.model, stage: stage1.stage, patch: stage1.patch };
    const opts: InferenceOptions = {
      numClasses: req.numClasses,
      overlap: numberOr(main.meta.overlap, 0.5),
      blend: main.meta.blend === 'constant' ? 'constant' : 'gaussian',
      divisor: numberOr(main.meta.divisor, 1),
      cascadeFactor: numberOr(main.meta.cascadeFactor, 0.5),
    };
    const K = req.numClasses;
    const dice: number[][] = Array.from({ length: K - 1 }, () => []);
    const hd95: number[][] = Array.from({ length: K - 1 }, () => []);
    const nsd: number[][] = Array.from({ length: K - 1 }, () => []);
    const guidance: number[][] = Array.from({ length: K - 1 }, () => []);
    const context = new Array<number>(8).fill(0);
    for (const id of req.testIds) {
      const c = await req.dataset.load(id);
      const seg = await segmentCase(models, c, opts);
      const spacing = c.geometry.spacing;
      const classes = Array.from({ length: K - 1 }, (_, k) => k + 1);
      const metrics = evaluateSegmentation(seg.labels, c.label, c.shape, [spacing[0], spacing[1], spacing[2]], classes, { nsdToleranceMm: req.nsdToleranceMm });
      metrics.forEach((m, k) => {
        dice[k]!.push(m.dice);
        hd95[k]!.push(m.hd95);
        nsd[k]!.push(m.nsd);
      });
      if (models.stage1) {
        const low = downsampleCase(c, opts.cascadeFactor, { divisor: opts.divisor });
        const p1 = await predictStage(models.stage1, low, opts);
        const up = inferenceGuidance(p1.probabilities, K, low.shape, c.shape);
        diceScores(up, c.label, K, { empty: 'nan-if-truth-empty' }).dice.forEach((d, k) => guidance[k]!.push(d));
      }
      if (req.phantom) {
        const map = contextMapFor(req.phantom, id, c.label, c.shape);
        contextCounts(seg.labels, map, c.shape, req.phantom.contextClass, req.phantom.slab).forEach((v, i) => (context[i]! += v));
      }
    }
    const share = (hits: number, n: number) => (n > 0 ? hits / n : null);
    return {
      perClass: dice.map((d, k) => ({
        dice: mean(d),
        hd95Median: median(hd95[k]!),
        hd95Infinite: hd95[k]!.filter((v) => v === Infinity).length,
        nsd: mean(nsd[k]!),
      })),
      nsdToleranceMm: req.nsdToleranceMm,
      stage1GuidanceDice: models.stage1 ? guidance.map(mean) : null,
      context: req.phantom
        ? {
            connectedRecall: share(context[1]!, context[0]!),
            lookalikeFalsePositive: share(context[3]!, context[2]!),
            farConnectedRecall: share(context[5]!, context[4]!),
            farLookalikeFalsePositive: share(context[7]!, context[6]!),
          }
        : null,
    };
  } finally {
    for (const s of stages) s.model.dispose();
  }
}
