/**
 * `patchfed predict --model <checkpoint> --input <image or folder> --out <file or folder>`:
 * segment images with a coordinator checkpoint (verified with `--coordinator-key` or the key a
 * `--site-config` pins), a `patchfed train` output or a tfjs export — full, patch or cascade — and
 * write uint8 segmentations aligned with each input (same grid and affine). It prints how the
 * model was verified, which normalisation and normalisation-layer statistics it uses, how each
 * stage predicted, and one line per case.
 */
import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { isPatchFedError } from '../../shared/errors.ts';
import { CliError, hiddenAlias, parseChoice, parseFloatOption, parseShapeOption } from '../main.ts';

interface PredictCliOptions {
  model: string;
  input?: string;
  in?: string;
  out: string;
  coordinatorKey?: string;
  siteConfig?: string;
  localModel?: string;
  patch?: number[];
  overlap?: number;
  blend?: 'gaussian' | 'constant';
  dataset?: string;
  backend: string;
  json?: boolean;
}

/** A usage error found by the library (PatchFedError 'E_USAGE': conflicting options or paths) exits 2, like commander's. */
export async function usageErrorsExit2(work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (e) {
    if (isPatchFedError(e) && e.code === 'E_USAGE') throw new CliError(e.message, 2);
    throw e;
  }
}

export function register(program: Command): void {
  program
    .command('predict')
    .description('Segment NIfTI images (a file or a folder) with a checkpoint; writes uint8 segmentations on each input grid.')
    .requiredOption('--model <dir>', "a coordinator checkpoint (<stateDir>/checkpoints/vNNNNNN, or checkpoints/ or the state dir: the newest), a site's copy of one, a 'patchfed train' output or a tfjs export")
    .option('--input <path>', 'input image (.nii / .nii.gz, 4-D for several modalities) or a folder of them (e.g. an MSD imagesTs/) (required)')
    .addOption(hiddenAlias('--in <path>', '--input'))
    .requiredOption('--out <path>', 'output segmentation (.nii / .nii.gz) for one image, or a folder (one <case>.nii.gz per input)')
    .option('--coordinator-key <file.pub>', "the coordinator's public key: verify the checkpoint's signatures and hash before using it")
    .option('--site-config <file>', "a site's config: the coordinator key it pins, its CT statistics and its planned training patch")
    .option('--local-model <file.pfw>', "FedBN checkpoints: a site's local model weights, whose normalisation layers are used")
    .option('--patch <x,y,z>', 'sliding window for patch-wise stages (default: the model\'s training patch, else the site\'s, else per case)', parseShapeOption('--patch'))
    .option('--overlap <x>', "sliding-window overlap in [0, 1); 0 = the thesis's non-overlapping patches (default: the model's, else 0.5)", parseFloatOption('--overlap', 0, 0.99))
    .option('--blend <w>', "window weighting: gaussian | constant (default: the model's)", parseChoice('--blend', ['gaussian', 'constant'] as const))
    .option('--dataset <dir>', "MSD folder whose dataset.json the model's modalities and labels must match (default: the input's own, if it sits in imagesTr/imagesTs)")
    .option('--backend <name>', 'auto | tensorflow | wasm | cpu | cpu-fast', parseChoice('--backend', ['auto', 'tensorflow', 'wasm', 'cpu', 'cpu-fast']), 'auto')
    .option('--json', 'print the report as JSON')
    .action((opts: PredictCliOptions) => usageErrorsExit2(() => predict(opts)));
}

async function predict(opts: PredictCliOptions): Promise<void> {
  const input = opts.input ?? opts.in;
  if (!input) throw new CliError('predict needs --input <image or folder>.');
  if (opts.input && opts.in) throw new CliError('give --input or --in, not both.');
  const { selectBackend, parseBackendChoice } = await import('../../site-agent/backend/index.ts');
  const { checkpointSigningPayload } = await import('../../coordinator/store/checkpoint-meta.ts');
  const { loadModel } = await import('../../site-agent/inference/load-model.ts');
  const { SiteContext } = await import('../../site-agent/inference/site-context.ts');
  const { planJobs, predictJobs } = await import('../../site-agent/inference/predict-inputs.ts');
  const { formatPredictReport } = await import('../../site-agent/inference/predict-file.ts');
  const { disposePredictionModel } = await import('../../site-agent/inference/prediction-model.ts');

  const jobs = planJobs(input, opts.out);
  const [px, py, pz] = opts.patch ?? [];
  const patch = px !== undefined && py !== undefined && pz !== undefined ? ([px, py, pz] as const) : undefined;
  const site = opts.siteConfig ? new SiteContext(opts.siteConfig) : undefined;
  let backend: Awaited<ReturnType<typeof selectBackend>> | undefined;
  const request = {
    model: opts.model,
    coordinatorKey: opts.coordinatorKey,
    site,
    signingPayload: checkpointSigningPayload,
    localModel: opts.localModel,
    patch,
    overlap: opts.overlap,
    blend: opts.blend,
  };
  // The backend is chosen once the checkpoint has been verified: a refused one fails fast.
  const { model, checkpoint } = await loadModel(request, async () => (backend = await selectBackend(parseBackendChoice(opts.backend))));
  try {
    if (!backend) throw new Error('predict: no backend was selected');
    const backendLine = `backend ${backend.name} (${backend.package} ${backend.version}, gpu ${backend.gpu})`;
    const backendJson = { name: backend.name, package: backend.package, version: backend.version, gpu: backend.gpu };
    const verified = checkpoint ? checkpoint.verification.verified : false;
    const single = statSync(input).isFile();
    if (!opts.json) process.stdout.write(`${backendLine}\n${model.notes.join('\n')}\n`);
    const result = await predictJobs(model, jobs, { datasetDir: opts.dataset, quiet: opts.json || single });
    if (single) {
      const failure = result.failed[0];
      if (failure) throw new CliError(failure.error, 1);
      const report = result.cases[0];
      if (!report) throw new CliError(`no prediction for ${input}`, 1);
      process.stdout.write(opts.json ? `${JSON.stringify({ ...report, notes: model.notes, verified, backend: backendJson }, null, 2)}\n` : formatPredictReport(report, model.labelNames ?? undefined));
      return;
    }
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ model: { kind: model.kind, where: model.where, mode: model.mode, verified, notes: model.notes }, cases: result.cases, failed: result.failed, backend: backendJson }, null, 2)}\n`);
    } else {
      process.stdout.write(`predicted ${result.cases.length} of ${jobs.length} case(s) into ${opts.out}${result.failed.length ? `; ${result.failed.length} failed: ${result.failed.map((f) => f.caseId).join(', ')}` : ''}\n`);
      for (const line of result.cases[0]?.method ?? []) process.stdout.write(`  inference: ${line}\n`);
    }
    if (result.failed.length > 0) process.exitCode = 1;
  } finally {
    disposePredictionModel(model);
  }
}
