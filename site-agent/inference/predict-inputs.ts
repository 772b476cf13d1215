/**
 * `--input` as a file or a folder (an MSD imagesTs/ or any folder of .nii / .nii.gz): which
 * outputs the cases get (one `<case>.nii.gz` per case in the output folder, case = file name
 * without .nii / .nii.gz, as `patchfed evaluate` pairs them), and the run over them with a
 * progress bar and a line per case. A case that fails is reported and the others still run.
 */
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import { CaseProgress, type LineStream } from './case-progress.ts';
import { checkAgainstDataset, datasetFolderOf, predictImage, type PredictFileReport } from './predict-file.ts';
import type { PredictionModel } from './prediction-model.ts';

export interface PredictionJob {
  caseId: string;
  input: string;
  output: string;
}

const NIFTI = /\.nii(\.gz)?$/;

function usage(message: string, subject?: string): never {
  throw new PatchFedError('E_USAGE', message, { subject });
}

export function caseIdOf(file: string): string {
  return path.basename(file).replace(NIFTI, '');
}

/**
 * The jobs for `input` → `output`. A file goes to `output` when that names a .nii / .nii.gz file,
 * else into the folder `output`; a folder's NIfTI files (sorted) go into the folder `output`.
 */
export function planJobs(input: string, output: string): PredictionJob[] {
  if (!existsSync(input)) usage(`--input ${input}: no such file or folder`, input);
  if (statSync(input).isFile()) {
    if (!NIFTI.test(input)) usage(`--input ${input}: not a .nii or .nii.gz file`, input);
    const caseId = caseIdOf(input);
    const out = NIFTI.test(output) ? output : path.join(output, `${caseId}.nii.gz`);
    if (path.resolve(out) === path.resolve(input)) usage(`--out ${output} would overwrite the input image`, output);
    return [{ caseId, input, output: out }];
  }
  if (NIFTI.test(output)) usage(`--out ${output}: a folder input needs an output folder, not a file name`, output);
  if (path.resolve(output) === path.resolve(input)) usage(`--out ${output} is the input folder: predictions would overwrite the images; choose another folder`, output);
  const files = readdirSync(input)
    .filter((f) => NIFTI.test(f) && !f.startsWith('.') && statSync(path.join(input, f)).isFile())
    .sort();
  if (files.length === 0) usage(`--input ${input}: no .nii or .nii.gz files in this folder`, input);
  const seen = new Map<string, string>();
  for (const f of files) {
    const id = caseIdOf(f);
    const other = seen.get(id);
    if (other) usage(`--input ${input}: ${other} and ${f} are the same case '${id}'; keep one`, input);
    seen.set(id, f);
  }
  return files.map((f) => ({ caseId: caseIdOf(f), input: path.join(input, f), output: path.join(output, `${caseIdOf(f)}.nii.gz`) }));
}

export interface PredictInputsResult {
  cases: PredictFileReport[];
  failed: { caseId: string; input: string; error: string }[];
}

function countsLine(r: PredictFileReport, model: PredictionModel): string {
  return Object.entries(r.labelVoxels)
    .filter(([v]) => v !== '0')
    .map(([v, n]) => {
      const k = model.labelValues.indexOf(Number(v));
      return `${model.labelNames?.[k] ?? v} ${n}`;
    })
    .join(', ');
}

export function formatCaseLine(job: PredictionJob, r: PredictFileReport, model: PredictionModel): string {
  return `${job.caseId}  ${r.shape.join('x')}  ${(r.timeMs / 1000).toFixed(1)} s  -> ${r.output}  (voxels: ${countsLine(r, model)})`;
}

/**
 * Predicts every job; the dataset.json check runs once per MSD folder (`datasetDir`, else the one
 * each input sits in). Per-case problems (a bad file, wrong channels) are collected, not fatal.
 */
export async function predictJobs(
  model: PredictionModel,
  jobs: readonly PredictionJob[],
  opts: { datasetDir?: string; out?: LineStream; err?: LineStream; quiet?: boolean } = {},
): Promise<PredictInputsResult> {
  const checked = new Set<string>();
  const check = async (dir: string) => {
    if (checked.has(dir)) return;
    await checkAgainstDataset(dir, model);
    checked.add(dir);
  };
  if (opts.datasetDir) await check(opts.datasetDir);
  for (const dir of new Set(jobs.map((j) => path.dirname(j.output)))) mkdirSync(dir, { recursive: true });
  const progress = opts.quiet ? null : new CaseProgress(jobs.length, opts.out, opts.err);
  const result: PredictInputsResult = { cases: [], failed: [] };
  progress?.start();
  try {
    for (const job of jobs) {
      const own = opts.datasetDir ? null : datasetFolderOf(job.input);
      if (own) await check(own); // a model/dataset mismatch is the model's problem, not the case's: fatal
      try {
        const r = await predictImage(model, job.input, job.output);
        result.cases.push(r);
        progress?.caseDone(formatCaseLine(job, r, model));
      } catch (e) {
        if (!(e instanceof PatchFedError)) throw e;
        result.failed.push({ caseId: job.caseId, input: job.input, error: errorMessage(e) });
        progress?.caseDone(`${job.caseId}  FAILED: ${errorMessage(e)}`);
      }
    }
  } finally {
    progress?.close();
  }
  return result;
}
