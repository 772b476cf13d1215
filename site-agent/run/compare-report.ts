/**
 * The compare report as markdown, laid out like the thesis's tables and next to the thesis's own
 * numbers: the phantom-vs-thesis summary (mean Dice, memory relative to the patch-wise U-Net),
 * accuracy per class (Tables 4.1 / 4.3), boundary metrics (HD95, NSD), how each model labels a
 * context phantom's look-alike structures, the cascade's stage-1 guidance, efficiency (Tables
 * 4.2 / 4.4, measured and estimated memory) and the planner's estimates for the real MSD geometry.
 * Printed by `patchfed compare` and written as compare.md next to compare.json.
 */
import type { Mode } from '../../shared/config/model.ts';
import { formatBytes } from '../planner/plan.ts';
import type { CompareMode, CompareReport } from './compare.ts';

const pct = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : (100 * x).toFixed(2));
const thesisPct = (x: number | null | undefined) => (x === null || x === undefined ? '—' : x.toFixed(2));
const bytes = (x: number | null) => (x === null ? 'n/a' : formatBytes(x));
const ratio = (est: number, measured: number | null) => (measured ? (est / measured).toFixed(2) : 'n/a');
const times = (x: number | null, ref: number | null) => (x === null || ref === null || ref === 0 ? '' : ` (×${(x / ref).toFixed(x / ref >= 10 ? 0 : 1)})`);
const mm = (x: number | null) => (x === null ? 'n/a' : x === Infinity ? '∞' : x.toFixed(1));

function table(header: string[], rows: string[][]): string[] {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

function meanOf(values: readonly number[] | null): number | null {
  return values && values.length > 0 ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

/** "full ≥ cascade > patch": modes by decreasing score, "≥" when within `tie` of the next. */
export function ordering(scores: { mode: Mode; score: number | null }[], tie: number): string {
  const known = scores.filter((s): s is { mode: Mode; score: number } => s.score !== null).sort((a, b) => b.score - a.score);
  return known.map((s, i) => (i === 0 ? s.mode : `${known[i - 1]!.score - s.score <= tie ? '≥' : '>'} ${s.mode}`)).join(' ');
}

function setupParagraph(r: CompareReport): string {
  const arch = `base ${r.model.base}, depth ${r.model.depth}, ${r.model.norm} norm`;
  const d = r.dataset;
  const kind = d.context ? 'context phantom' : 'standard phantom';
  const depthShare = ((100 * r.slab) / d.shape[2]!).toFixed(0);
  return (
    `Phantom ${r.task} (${kind}${r.scale ? `, scale ${r.scale}` : ''}, site style ${d.siteStyle}), ${d.cases} cases of ${d.shape.join('×')} voxels at ${d.spacing.map((v) => +v.toFixed(3)).join('×')} mm ` +
    `(split ${d.split.train}/${d.split.validation}/${d.split.test} train/validation/test); slabs ${r.slab} voxels thick = ${depthShare}% of the depth (thesis: 16 of 155 = 10%). ` +
    `U-Net ${arch}, ${r.stepsPerStage} steps per stage (Adam lr ${r.learningRate}, foreground rate ${r.foregroundRate}, dice-ce), cascade factor ${r.cascadeFactor}, budget ${r.budgetMB} MB, ` +
    `backend ${r.backend.name} (${r.backend.package} ${r.backend.version}). Run time ${(r.runtimeMs / 1000).toFixed(0)} s.`
  );
}

function summarySection(r: CompareReport, geometry: string): string[] {
  const patch = r.modes.find((m) => m.mode === 'patch') ?? null;
  const thesisPatch = r.thesis.memoryGB.patch;
  const rows = r.modes.map((m) => {
    const thesisMean = meanOf(r.thesis.dice[m.mode]);
    const gb = r.thesis.memoryGB[m.mode];
    const thesisMemory = gb === null ? `${m.mode === 'full' && r.task === 'liver' ? '≥ 325 (out of memory)' : '—'}` : `${gb}${times(gb, thesisPatch)}`;
    const seconds = r.thesis.inferenceSeconds[m.mode];
    return [
      m.mode,
      pct(m.meanDice),
      thesisPct(thesisMean),
      `${bytes(m.measuredTrainingPeakBytes)}${times(m.measuredTrainingPeakBytes, patch?.measuredTrainingPeakBytes ?? null)}`,
      `${bytes(m.measuredInferencePeakBytes)}${times(m.measuredInferencePeakBytes, patch?.measuredInferencePeakBytes ?? null)}`,
      thesisMemory,
      (m.inferenceMsPerVolume / 1000).toFixed(2),
      seconds === null ? '—' : seconds.toFixed(2),
    ];
  });
  const here = ordering(
    r.modes.map((m) => ({ mode: m.mode, score: m.meanDice })),
    0.005,
  );
  const thesis = ordering(
    r.modes.map((m) => ({ mode: m.mode, score: meanOf(r.thesis.dice[m.mode]) })),
    0.5,
  );
  return [
    `## Phantom and thesis side by side`,
    '',
    `Mean test Dice (%) over the foreground classes, and peak memory with its ratio to the patch-wise U-Net: measured here (tfjs engine bytes), and in the thesis (${geometry}, PyTorch's maximum GPU allocation during inference on an A40).`,
    '',
    ...table(['model', 'mean Dice here', 'thesis', 'training memory here', 'inference memory here', 'thesis GPU memory (GB)', 'inference time here (s)', 'thesis (s)'], rows),
    '',
    `Mean Dice: here ${here}; thesis ${thesis || 'n/a'}.`,
    '',
  ];
}

function accuracySection(r: CompareReport): string[] {
  const header = ['model', ...r.labels.flatMap((l) => [l, 'thesis']), 'mean', 'thesis'];
  const rows = r.modes.map((m) => {
    const t = r.thesis.dice[m.mode];
    return [m.mode, ...r.labels.flatMap((l, k) => [pct(m.dice[l] ?? null), thesisPct(t ? t[k] : null)]), pct(m.meanDice), thesisPct(meanOf(t))];
  });
  return [
    `## Accuracy: per-class Dice (%) on the test split (whole reconstructed volumes), here and in the thesis`,
    '',
    ...table(header, rows),
    '',
    "Dice of a class absent from a test case's ground truth is undefined (MONAI convention) and left out of the means; n/a = undefined in every test case; — = not measured in the thesis.",
    '',
  ];
}

function boundarySection(r: CompareReport): string[] {
  const header = ['model', ...r.labels.flatMap((l) => [`${l} HD95 (mm)`, `${l} NSD (%)`])];
  const rows = r.modes.map((m) => [
    m.mode,
    ...m.evaluation.perClass.flatMap((c) => [`${mm(c.hd95Median)}${c.hd95Infinite > 0 ? ` (${c.hd95Infinite}× ∞)` : ''}`, pct(c.nsd)]),
  ]);
  return [
    `## Boundaries: HD95 and normalised surface Dice`,
    '',
    ...table(header, rows),
    '',
    `HD95: median over the test cases (∞ when a structure is missed or invented: MONAI's distance for a missing surface). NSD: mean over the test cases at a tolerance of ${r.nsdToleranceMm} mm (one voxel along the coarsest axis). The thesis reports Dice only. Computed by site-agent/metrics (segmentation-metrics.ts) from the label maps and the voxel spacing.`,
    '',
  ];
}

function contextSection(r: CompareReport): string[] {
  const withContext = r.modes.filter((m) => m.evaluation.context !== null);
  if (withContext.length === 0) return [];
  const cls = r.labels[0] ?? 'class 1';
  const what =
    r.task === 'brain'
      ? `the oedema tract (labelled ${cls}) and its tumour-free look-alike (background)`
      : `the liver tongue (labelled ${cls}) and the liver-dense bowel loop (background)`;
  const rows = withContext.map((m) => {
    const c = m.evaluation.context!;
    return [m.mode, pct(c.connectedRecall), pct(c.lookalikeFalsePositive), pct(c.farConnectedRecall), pct(c.farLookalikeFalsePositive)];
  });
  return [
    `## Context: the structures only context beyond a slab tells apart`,
    '',
    `Share (%) of the voxels of ${what} that each model labels ${cls}: everywhere, and in the slices from which no ${r.slab}-voxel slab reaches the landmark (tumour or liver body), where a slab holds no clue.`,
    '',
    ...table(['model', `tube labelled ${cls}`, `look-alike labelled ${cls}`, 'beyond a slab: tube', 'beyond a slab: look-alike'], rows),
    '',
    'A model that uses context labels the tube and not the look-alike; one that cannot labels both alike (about equally, or both as background).',
    '',
  ];
}

function cascadeSection(r: CompareReport): string[] {
  const cascade = r.modes.find((m) => m.mode === 'cascade' && m.evaluation.stage1GuidanceDice !== null);
  if (!cascade) return [];
  return [
    `## Cascade: what stage 1 tells stage 2`,
    '',
    ...table(
      ['', ...r.labels],
      [
        [`stage 1 alone (×${r.cascadeFactor}, upsampled): Dice (%)`, ...cascade.evaluation.stage1GuidanceDice!.map((d) => pct(d))],
        ['cascade (stage 2 with that guidance): Dice (%)', ...r.labels.map((l) => pct(cascade.dice[l] ?? null))],
      ],
    ),
    '',
    "Stage 2 is trained on the ground truth downsampled and upsampled again (thesis §3.3) and at inference follows stage 1's prediction: a weak stage 1 caps the cascade.",
    '',
  ];
}

function efficiencySection(r: CompareReport): string[] {
  return [
    `## Efficiency: peak memory (tfjs engine bytes) and inference time per volume`,
    '',
    ...table(
      ['model', 'training peak measured', 'estimated', 'est./meas.', 'inference peak measured', 'estimated', 'est./meas.', 'inference time (s)'],
      r.modes.map((m: CompareMode) => [
        m.mode,
        bytes(m.measuredTrainingPeakBytes),
        bytes(m.estimatedTrainingPeakBytes),
        ratio(m.estimatedTrainingPeakBytes, m.measuredTrainingPeakBytes),
        bytes(m.measuredInferencePeakBytes),
        bytes(m.estimatedInferencePeakBytes),
        ratio(m.estimatedInferencePeakBytes, m.measuredInferencePeakBytes),
        (m.inferenceMsPerVolume / 1000).toFixed(2),
      ]),
    ),
    '',
    'Per stage:',
    '',
    ...table(
      ['model', 'stage', 'patch', 'batch', 'steps', 'train time (s)', 'final loss', 'measured peak', 'estimated', 'est./meas.'],
      r.modes.flatMap((m) =>
        m.stages.map((s) => [
          m.mode,
          s.stage,
          s.patch.join('×'),
          String(s.batch),
          String(s.steps),
          (s.trainTimeMs / 1000).toFixed(1),
          s.finalLoss === null ? 'n/a' : s.finalLoss.toFixed(4),
          bytes(s.measuredPeakBytes),
          bytes(s.estimatedPeakBytes),
          s.ratio === null ? 'n/a' : s.ratio.toFixed(2),
        ]),
      ),
    ),
    '',
    'Inference: ' + r.modes.map((m) => `${m.mode}: ${m.inferenceMethod.join('; ')}`).join(' · '),
    '',
  ];
}

function msdSection(r: CompareReport): string[] {
  const g = r.msd;
  return [
    `## Planner estimate for the real geometry: ${g.geometry} ${g.shape.join('×')}, ${g.channels} channel(s), ${g.classes} classes, thesis U-Net (base ${g.model.base}, depth ${g.model.depth}, ${g.model.norm} norm)`,
    '',
    ...table(
      ['model', 'configuration', 'training (tfjs, est.)', 'inference (tfjs, est.)', 'thesis GPU memory (GB, PyTorch)', 'planner on a 48 GB A40'],
      g.modes.map((m) => [m.mode, m.configuration, formatBytes(m.trainingBytes), formatBytes(m.inferenceBytes), m.thesisGpuMemoryGB, m.plannerOn48GB]),
    ),
    '',
    "The thesis measured PyTorch's maximum GPU allocation during inference (the liver full U-Net failed allocating during training). " +
      'tfjs keeps far more during training than PyTorch autograd: every op clones the tensors its gradient needs and the gradient of every ' +
      'intermediate tensor stays alive until the backward pass ends (site-agent/planner/README.md).',
  ];
}

export function formatCompareMarkdown(r: CompareReport): string {
  const lines: string[] = [`# PatchFed compare: ${r.task} phantom`, '', setupParagraph(r), ''];
  lines.push(...summarySection(r, r.msd.geometry));
  lines.push(...accuracySection(r));
  lines.push(...boundarySection(r));
  lines.push(...contextSection(r));
  lines.push(...cascadeSection(r));
  lines.push(...efficiencySection(r));
  lines.push(...msdSection(r));
  return `${lines.join('\n')}\n`;
}
