/**
 * The compare report as markdown, laid out like the thesis's tables: accuracy (Tables 4.1 / 4.3),
 * efficiency (Tables 4.2 / 4.4, here with measured and estimated memory side by side), and the
 * planner's estimates for the real MSD geometry. Printed by `patchfed compare` and written as
 * compare.md next to compare.json.
 */
import { formatBytes } from '../planner/plan.ts';
import type { CompareReport } from './compare.ts';

const dice = (x: number | null) => (x === null ? 'n/a' : (100 * x).toFixed(2));
const bytes = (x: number | null) => (x === null ? 'n/a' : formatBytes(x));
const ratio = (est: number, measured: number | null) => (measured ? (est / measured).toFixed(2) : 'n/a');

function table(header: string[], rows: string[][]): string[] {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

export function formatCompareMarkdown(r: CompareReport): string {
  const lines: string[] = [];
  const arch = `base ${r.model.base}, depth ${r.model.depth}, ${r.model.norm} norm`;
  lines.push(`# PatchFed compare: ${r.task} phantom`);
  lines.push('');
  lines.push(
    `Phantom ${r.task}, ${r.dataset.cases} cases of ${r.dataset.shape.join('×')} (split ${r.dataset.split.train}/${r.dataset.split.validation}/${r.dataset.split.test} train/validation/test), ` +
      `U-Net ${arch}, ${r.stepsPerStage} steps per stage (Adam lr ${r.learningRate}, foreground rate ${r.foregroundRate}, dice-ce), slabs ${r.slab} voxels thick, cascade factor ${r.cascadeFactor}, budget ${r.budgetMB} MB, ` +
      `backend ${r.backend.name} (${r.backend.package} ${r.backend.version}). Run time ${(r.runtimeMs / 1000).toFixed(0)} s.`,
  );
  lines.push('');
  lines.push(`## Accuracy: per-class Dice (%) on the test split (whole reconstructed volumes)`);
  lines.push('');
  lines.push(...table(['model', ...r.labels, 'mean'], r.modes.map((m) => [m.mode, ...r.labels.map((l) => dice(m.dice[l] ?? null)), dice(m.meanDice)])));
  lines.push('');
  lines.push('Dice of a class absent from a test case\'s ground truth is undefined (MONAI convention) and left out of the means; n/a = undefined in every test case.');
  lines.push('');
  lines.push(`## Efficiency: peak memory (tfjs engine bytes) and inference time per volume`);
  lines.push('');
  lines.push(
    ...table(
      ['model', 'training peak measured', 'estimated', 'est./meas.', 'inference peak measured', 'estimated', 'est./meas.', 'inference time (s)'],
      r.modes.map((m) => [
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
  );
  lines.push('');
  lines.push('Per stage:');
  lines.push('');
  lines.push(
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
  );
  lines.push('');
  lines.push('Inference: ' + r.modes.map((m) => `${m.mode}: ${m.inferenceMethod.join('; ')}`).join(' · '));
  lines.push('');
  const g = r.msd;
  lines.push(`## Planner estimate for the real geometry: ${g.geometry} ${g.shape.join('×')}, ${g.channels} channel(s), ${g.classes} classes, thesis U-Net (base ${g.model.base}, depth ${g.model.depth}, ${g.model.norm} norm)`);
  lines.push('');
  lines.push(
    ...table(
      ['model', 'configuration', 'training (tfjs, est.)', 'inference (tfjs, est.)', 'thesis GPU memory (GB, PyTorch)', 'planner on a 48 GB A40'],
      g.modes.map((m) => [m.mode, m.configuration, formatBytes(m.trainingBytes), formatBytes(m.inferenceBytes), m.thesisGpuMemoryGB, m.plannerOn48GB]),
    ),
  );
  lines.push('');
  lines.push(
    'The thesis measured PyTorch\'s maximum GPU allocation during inference (the liver full U-Net failed allocating during training). ' +
      'tfjs keeps far more during training than PyTorch autograd: every op clones the tensors its gradient needs and the gradient of every ' +
      'intermediate tensor stays alive until the backward pass ends (site-agent/planner/README.md).',
  );
  return `${lines.join('\n')}\n`;
}
