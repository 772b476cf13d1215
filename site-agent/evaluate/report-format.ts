/**
 * What `patchfed evaluate` prints and writes: the tables on stdout, and the --json / --csv files
 * with stable keys (documented in the README). JSON has no NaN or Infinity, so an undefined value
 * is `null` and an infinite HD95 is the string "inf"; the CSV writes `nan` and `inf`, which
 * pandas, R and spreadsheets read as numbers.
 */
import type { ClassMetrics } from '../metrics/segmentation-metrics.ts';
import type { FolderEvaluation, MetricSummary } from './evaluate-folders.ts';

export const EVALUATION_JSON_VERSION = 1;

/** The empty-class conventions, said once in every output. */
export const CONVENTIONS = {
  surface: 'surface voxels: mask voxels with a 6-neighbour outside the mask (or the volume); distances in mm between surface voxels, exact Euclidean distance transform with the affine\'s voxel sizes',
  dice: 'Dice: undefined (null / n/a) when the label lacks the class, whatever the prediction (MONAI DiceMetric ignore_empty=True)',
  hd95: 'HD95: max of the 95th percentiles (linear interpolation) of prediction→label and label→prediction surface distances, mm; undefined when both masks are empty, inf when exactly one is (MONAI compute_hausdorff_distance)',
  nsd: 'NSD: surface voxels of both masks within the tolerance of the other surface / all surface voxels; undefined when both masks are empty, 0 when exactly one is (MONAI compute_surface_dice, use_subvoxels=False)',
  means: 'means leave undefined values out and keep inf (MONAI\'s mean reduction): one missed structure makes the mean HD95 inf; see the median',
} as const;

export type JsonMetric = number | null | 'inf';

export function jsonMetric(x: number): JsonMetric {
  if (Number.isNaN(x)) return null;
  if (x === Infinity) return 'inf';
  return x;
}

function jsonSummary(s: MetricSummary) {
  return { mean: jsonMetric(s.mean), median: jsonMetric(s.median), n: s.n, infinite: s.infinite };
}

function jsonClassMetrics(m: ClassMetrics, name: string) {
  return {
    class: m.label,
    name,
    dice: jsonMetric(m.dice),
    hd95: jsonMetric(m.hd95),
    nsd: jsonMetric(m.nsd),
    predVoxels: m.predVoxels,
    labelVoxels: m.labelVoxels,
    predSurfaceVoxels: m.predSurfaceVoxels,
    labelSurfaceVoxels: m.labelSurfaceVoxels,
  };
}

export function evaluationJson(r: FolderEvaluation) {
  const names = new Map(r.classes.map((c) => [c.value, c.name]));
  return {
    kind: 'patchfed-evaluation',
    version: EVALUATION_JSON_VERSION,
    predDir: r.predDir,
    labelsDir: r.labelsDir,
    nsdToleranceMm: r.nsdToleranceMm,
    hdPercentile: 95,
    classSource: r.classSource,
    classes: r.classes,
    conventions: CONVENTIONS,
    cases: r.cases.map((c) => ({
      case: c.caseId,
      prediction: c.prediction,
      label: c.label,
      shape: c.shape,
      spacingMm: c.spacingMm,
      metrics: c.metrics.map((m) => jsonClassMetrics(m, names.get(m.label) ?? String(m.label))),
    })),
    summary: {
      perClass: r.perClass.map((s) => ({ class: s.value, name: s.name, dice: jsonSummary(s.dice), hd95: jsonSummary(s.hd95), nsd: jsonSummary(s.nsd) })),
      mean: { dice: jsonMetric(r.overall.dice), hd95: jsonMetric(r.overall.hd95), nsd: jsonMetric(r.overall.nsd) },
    },
    missing: { predictions: r.missingPredictions, labels: r.missingLabels },
  };
}

export const CSV_COLUMNS = ['case', 'class', 'name', 'dice', 'hd95_mm', 'nsd', 'pred_voxels', 'label_voxels'] as const;

function csvNumber(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  return String(x);
}

function csvField(text: string): string {
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One row per case and class (long format). */
export function evaluationCsv(r: FolderEvaluation): string {
  const names = new Map(r.classes.map((c) => [c.value, c.name]));
  const rows = [CSV_COLUMNS.join(',')];
  for (const c of r.cases) {
    for (const m of c.metrics) {
      rows.push([csvField(c.caseId), String(m.label), csvField(names.get(m.label) ?? String(m.label)), csvNumber(m.dice), csvNumber(m.hd95), csvNumber(m.nsd), String(m.predVoxels), String(m.labelVoxels)].join(','));
    }
  }
  return `${rows.join('\n')}\n`;
}

function fmt(x: number, digits: number): string {
  if (Number.isNaN(x)) return 'n/a';
  if (x === Infinity) return 'inf';
  return x.toFixed(digits);
}

/** Text columns (the first `textColumns`) left-aligned, number columns right-aligned. */
function table(header: string[], rows: string[][], textColumns: number): string[] {
  // A row shorter than the header has empty cells; a cell beyond the header gets no padding.
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < textColumns ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

export function formatEvaluation(r: FolderEvaluation): string {
  const names = new Map(r.classes.map((c) => [c.value, c.name]));
  const out: string[] = [
    `evaluated ${r.cases.length} case(s): predictions ${r.predDir} against labels ${r.labelsDir}; classes from ${r.classSource}; NSD tolerance ${r.nsdToleranceMm} mm`,
    '',
  ];
  const caseRows = r.cases.flatMap((c) =>
    c.metrics.map((m) => [c.caseId, names.get(m.label) ?? String(m.label), fmt(m.dice, 3), fmt(m.hd95, 2), fmt(m.nsd, 3)]),
  );
  out.push(...table(['case', 'class', 'Dice', 'HD95 mm', 'NSD'], caseRows, 2), '');
  const summaryRows = r.perClass.map((s) => [
    s.name,
    `${fmt(s.dice.mean, 3)} (${s.dice.n})`,
    `${fmt(s.hd95.mean, 2)} (${s.hd95.n})`,
    fmt(s.hd95.median, 2),
    String(s.hd95.infinite),
    `${fmt(s.nsd.mean, 3)} (${s.nsd.n})`,
  ]);
  summaryRows.push(['mean over classes', fmt(r.overall.dice, 3), fmt(r.overall.hd95, 2), '', '', fmt(r.overall.nsd, 3)]);
  out.push('per class: mean over cases (n = cases where defined)');
  out.push(...table(['class', 'Dice (n)', 'HD95 mm (n)', 'median HD95', 'HD95 inf', 'NSD (n)'], summaryRows, 1), '');
  if (r.missingPredictions.length > 0) out.push(`missing predictions (label but no prediction, not scored): ${r.missingPredictions.join(', ')}`);
  if (r.missingLabels.length > 0) out.push(`missing labels (prediction but no label, not scored): ${r.missingLabels.join(', ')}`);
  out.push('conventions (MONAI):', ...[CONVENTIONS.dice, CONVENTIONS.hd95, CONVENTIONS.nsd, CONVENTIONS.means].map((c) => `  ${c}`));
  return `${out.join('\n')}\n`;
}
