/**
 * `patchfed predict --model <checkpoint> --in image.nii.gz --out seg.nii.gz`: segment one image
 * with a `patchfed train` checkpoint (full, patch or cascade) and write a uint8 segmentation
 * aligned with the input (same grid and affine). The report says how each stage predicted
 * (Gaussian-weighted sliding window, or the thesis's non-overlapping tiling with --overlap 0).
 */
import type { Command } from 'commander';
import { parseChoice, parseFloatOption } from '../main.ts';

interface PredictCliOptions {
  model: string;
  in: string;
  out: string;
  overlap?: number;
  blend?: 'gaussian' | 'constant';
  dataset?: string;
  backend: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('predict')
    .description('Segment a NIfTI image with a trained checkpoint; writes a uint8 segmentation on the input grid.')
    .requiredOption('--model <dir>', "checkpoint: a 'patchfed train' output folder, or one stage folder (model.json + weights.bin)")
    .requiredOption('--in <file>', 'input image (.nii or .nii.gz; 4-D for several modalities)')
    .requiredOption('--out <file>', 'output segmentation (.nii or .nii.gz)')
    .option('--overlap <x>', "sliding-window overlap in [0, 1); 0 = the thesis's non-overlapping patches (default: the checkpoint's, else 0.5)", parseFloatOption('--overlap', 0, 0.99))
    .option('--blend <w>', 'window weighting: gaussian | constant (default: the checkpoint\'s)', parseChoice('--blend', ['gaussian', 'constant'] as const))
    .option('--dataset <dir>', "MSD folder whose dataset.json the checkpoint's modalities and labels must match (default: the input's own, if it sits in imagesTr/imagesTs)")
    .option('--backend <name>', 'auto | tensorflow | wasm | cpu | cpu-fast', parseChoice('--backend', ['auto', 'tensorflow', 'wasm', 'cpu', 'cpu-fast']), 'auto')
    .option('--json', 'print the report as JSON')
    .action(async (opts: PredictCliOptions) => {
      const { selectBackend, parseBackendChoice } = await import('../../site-agent/backend/index.ts');
      const { predictFile, formatPredictReport } = await import('../../site-agent/inference/predict-file.ts');
      const backend = await selectBackend(parseBackendChoice(opts.backend));
      const report = await predictFile({ modelDir: opts.model, input: opts.in, output: opts.out, overlap: opts.overlap, blend: opts.blend, datasetDir: opts.dataset });
      const full = { ...report, backend: { name: backend.name, package: backend.package, version: backend.version, gpu: backend.gpu } };
      process.stdout.write(opts.json ? `${JSON.stringify(full, null, 2)}\n` : `backend ${backend.name} (${backend.package} ${backend.version}, gpu ${backend.gpu})\n${formatPredictReport(report)}`);
    });
}
