/**
 * `patchfed evaluate --pred DIR --labels DIR`: Dice, HD95 and normalised surface Dice per case
 * and class, in mm from each file's affine, with MONAI's empty-class conventions; per-class
 * summary on stdout, optional --json / --csv files (written atomically).
 */
import type { Command } from 'commander';
import { CliError, parseFloatOption } from '../main.ts';

interface EvaluateCliOptions {
  pred: string;
  labels: string;
  json?: string;
  csv?: string;
  nsdTolerance: number;
  dataset?: string;
}

export function register(program: Command): void {
  program
    .command('evaluate')
    .description('Score predicted segmentations against reference labels: Dice, HD95 and normalised surface Dice per case and class (mm, from each file\'s affine).')
    .requiredOption('--pred <dir>', 'folder of predicted label maps (.nii / .nii.gz), paired with the labels by file name')
    .requiredOption('--labels <dir>', 'folder of reference label maps (e.g. an MSD labelsTr/)')
    .option('--nsd-tolerance <mm>', 'normalised surface Dice tolerance in mm', parseFloatOption('--nsd-tolerance', 0, 1e6), 1)
    .option('--dataset <dir>', "MSD folder whose dataset.json names the classes (default: the label folder's parent when it has a dataset.json, else every label value found)")
    .option('--json <file>', 'also write every number as JSON to this file')
    .option('--csv <file>', 'also write one row per case and class as CSV to this file')
    .action(async (opts: EvaluateCliOptions) => {
      const { evaluateFolders } = await import('../../site-agent/evaluate/evaluate-folders.ts');
      const { evaluationCsv, evaluationJson, formatEvaluation } = await import('../../site-agent/evaluate/report-format.ts');
      const { writeFileAtomic } = await import('../../site-agent/model/atomic-file.ts');
      const report = await evaluateFolders({
        predDir: opts.pred,
        labelsDir: opts.labels,
        nsdToleranceMm: opts.nsdTolerance,
        datasetDir: opts.dataset,
        onCase: (id, i, n) => process.stderr.write(`evaluated ${id} (${i + 1}/${n})\n`),
      });
      for (const id of report.missingPredictions) process.stderr.write(`warning: case ${id} has a label but no prediction in ${opts.pred}; not scored\n`);
      for (const id of report.missingLabels) process.stderr.write(`warning: case ${id} has a prediction but no label in ${opts.labels}; not scored\n`);
      const write = (file: string, text: string) => {
        try {
          writeFileAtomic(file, text);
        } catch (e) {
          throw new CliError(`cannot write ${file}: ${(e as Error).message}`, 1);
        }
      };
      if (opts.json) write(opts.json, `${JSON.stringify(evaluationJson(report), null, 2)}\n`);
      if (opts.csv) write(opts.csv, evaluationCsv(report));
      process.stdout.write(formatEvaluation(report));
    });
}
