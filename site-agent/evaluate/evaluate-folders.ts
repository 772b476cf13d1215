/**
 * `patchfed evaluate`: score a folder of predicted label maps against a folder of reference
 * labels, case by case and class by class (Dice, HD95, NSD; site-agent/metrics), and summarise
 * per class. Which classes: the dataset.json labels (given, or found beside the label folder as
 * in the MSD layout labelsTr/), else every non-zero value found in any file.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { PatchFedError } from '../../shared/errors.ts';
import { readDatasetManifest } from '../data/manifest.ts';
import { evaluateSegmentation, type ClassMetrics } from '../metrics/segmentation-metrics.ts';
import { pairCaseFiles } from './case-files.ts';
import { assertSameGrid, readLabelMap, rowMajorGrid } from './label-map.ts';

export const DEFAULT_NSD_TOLERANCE_MM = 1;

export interface EvaluateFoldersRequest {
  predDir: string;
  labelsDir: string;
  nsdToleranceMm?: number;
  /** MSD folder whose dataset.json names the classes (default: the label folder's parent, when it has one). */
  datasetDir?: string;
  /** Called after each case (progress). */
  onCase?: (caseId: string, index: number, total: number) => void;
}

export interface ClassInfo {
  value: number;
  name: string;
}

export interface CaseResult {
  caseId: string;
  prediction: string;
  label: string;
  /** [X, Y, Z] voxels. */
  shape: [number, number, number];
  /** Voxel size along x, y, z in mm (from the affine). */
  spacingMm: [number, number, number];
  /** One entry per class, in `classes` order. */
  metrics: ClassMetrics[];
}

export interface MetricSummary {
  /** Mean over the cases where the metric is defined (NaN excluded, +∞ kept: MONAI's nanmean). */
  mean: number;
  median: number;
  /** Cases where the metric is defined (not NaN). */
  n: number;
  /** Cases where it is +∞ (HD95 with exactly one mask empty). */
  infinite: number;
}

export interface ClassSummary {
  value: number;
  name: string;
  dice: MetricSummary;
  hd95: MetricSummary;
  nsd: MetricSummary;
}

export interface FolderEvaluation {
  predDir: string;
  labelsDir: string;
  nsdToleranceMm: number;
  /** Where the class list came from: a dataset.json path, or "label values found in the files". */
  classSource: string;
  classes: ClassInfo[];
  cases: CaseResult[];
  perClass: ClassSummary[];
  /** Mean over classes of the per-class means (NaN classes left out). */
  overall: { dice: number; hd95: number; nsd: number };
  missingPredictions: string[];
  missingLabels: string[];
}

async function declaredClasses(req: EvaluateFoldersRequest): Promise<{ classes: ClassInfo[]; source: string } | null> {
  const dir = req.datasetDir ?? path.dirname(path.resolve(req.labelsDir));
  if (req.datasetDir === undefined && !existsSync(path.join(dir, 'dataset.json'))) return null;
  const manifest = await readDatasetManifest(dir);
  return { classes: manifest.labels.filter((l) => l.value !== 0).map((l) => ({ value: l.value, name: l.name })), source: manifest.jsonPath };
}

function summarise(values: number[]): MetricSummary {
  const defined = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  const n = defined.length;
  const mean = n === 0 ? NaN : defined.reduce((a, b) => a + b, 0) / n;
  const median = n === 0 ? NaN : n % 2 === 1 ? defined[(n - 1) / 2]! : (defined[n / 2 - 1]! + defined[n / 2]!) / 2;
  return { mean, median, n, infinite: defined.filter((v) => v === Infinity).length };
}

function meanOfDefined(values: number[]): number {
  const defined = values.filter((v) => !Number.isNaN(v));
  return defined.length === 0 ? NaN : defined.reduce((a, b) => a + b, 0) / defined.length;
}

/** The non-zero label values present, ascending. */
function foregroundValues(labels: Uint8Array): number[] {
  const seen = new Uint8Array(256);
  for (let i = 0; i < labels.length; i++) seen[labels[i]!] = 1;
  const out: number[] = [];
  for (let v = 1; v < 256; v++) if (seen[v] === 1) out.push(v);
  return out;
}

/** What a class absent from both the prediction and the label scores (see segmentation-metrics.ts). */
function absentClass(value: number): ClassMetrics {
  return { label: value, dice: NaN, hd95: NaN, nsd: NaN, predVoxels: 0, labelVoxels: 0, predSurfaceVoxels: 0, labelSurfaceVoxels: 0 };
}

export async function evaluateFolders(req: EvaluateFoldersRequest): Promise<FolderEvaluation> {
  const nsdToleranceMm = req.nsdToleranceMm ?? DEFAULT_NSD_TOLERANCE_MM;
  const pairing = pairCaseFiles(req.predDir, req.labelsDir);
  const declared = await declaredClasses(req);
  const seen = new Set<number>();
  const cases: CaseResult[] = [];
  for (const [index, pair] of pairing.pairs.entries()) {
    const prediction = await readLabelMap(pair.prediction);
    const reference = await readLabelMap(pair.label);
    assertSameGrid(prediction, reference);
    const presentIn = new Map([prediction, reference].map((map) => [map, foregroundValues(map.labels)]));
    const present = new Set([...presentIn.values()].flat());
    if (declared) {
      const allowed = new Set(declared.classes.map((c) => c.value));
      for (const [map, values] of presentIn) {
        const stray = values.filter((v) => !allowed.has(v));
        if (stray.length > 0) {
          throw new PatchFedError('evaluate-label-values', `${map.file}: label values ${stray.join(', ')} are not among the classes of ${declared.source} (${[...allowed].join(', ')})`, { subject: map.file });
        }
      }
    }
    const classValues = declared ? declared.classes.map((c) => c.value) : [...present].sort((a, b) => a - b);
    classValues.forEach((v) => seen.add(v));
    const { shape, spacing } = rowMajorGrid(reference);
    const metrics = evaluateSegmentation(prediction.labels, reference.labels, shape, spacing, classValues, { nsdToleranceMm });
    cases.push({ caseId: pair.caseId, prediction: pair.prediction, label: pair.label, shape: reference.shape, spacingMm: reference.spacingMm, metrics });
    req.onCase?.(pair.caseId, index, pairing.pairs.length);
  }
  const classes = declared ? declared.classes : [...seen].sort((a, b) => a - b).map((value) => ({ value, name: String(value) }));
  // Found-in-files mode: a class one case lacks entirely scores as absent there.
  for (const c of cases) {
    const byLabel = new Map(c.metrics.map((m) => [m.label, m]));
    c.metrics = classes.map((k) => byLabel.get(k.value) ?? absentClass(k.value));
  }
  const perClass = classes.map((k, i) => ({
    value: k.value,
    name: k.name,
    dice: summarise(cases.map((c) => c.metrics[i]!.dice)),
    hd95: summarise(cases.map((c) => c.metrics[i]!.hd95)),
    nsd: summarise(cases.map((c) => c.metrics[i]!.nsd)),
  }));
  return {
    predDir: req.predDir,
    labelsDir: req.labelsDir,
    nsdToleranceMm,
    classSource: declared ? declared.source : 'label values found in the files',
    classes,
    cases,
    perClass,
    overall: {
      dice: meanOfDefined(perClass.map((s) => s.dice.mean)),
      hd95: meanOfDefined(perClass.map((s) => s.hd95.mean)),
      nsd: meanOfDefined(perClass.map((s) => s.nsd.mean)),
    },
    missingPredictions: pairing.missingPredictions,
    missingLabels: pairing.missingLabels,
  };
}
