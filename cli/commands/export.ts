/**
 * `patchfed export --checkpoint <dir> --format onnx|tfjs --out <file or folder>`: the federated
 * model (a coordinator checkpoint, verified with `--coordinator-key` or a `--site-config`'s pinned
 * key; or a `train` output) as standard ONNX graphs (one per stage) or tfjs artifacts, with a model
 * card beside them. `--verify [image]` compares the export with the tfjs model (onnxruntime for
 * ONNX) before it is written.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parseChoice, parseIntOption, parseShapeOption } from '../main.ts';
import { usageErrorsExit2 } from './predict.ts';

interface ExportCliOptions {
  checkpoint: string;
  format: 'onnx' | 'tfjs';
  out: string;
  coordinatorKey?: string;
  siteConfig?: string;
  localModel?: string;
  patch?: number[];
  verify?: boolean | string;
  threads?: number;
  backend: string;
  json?: boolean;
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

export function register(program: Command): void {
  program
    .command('export')
    .description('Export a checkpoint as standard ONNX graphs (one per stage) or tfjs artifacts, with a model card.')
    .requiredOption('--checkpoint <dir>', "a coordinator checkpoint (vNNNNNN, or checkpoints/ or the state dir: the newest), a site's copy of one, or a 'patchfed train' output")
    .option('--format <f>', 'onnx | tfjs', parseChoice('--format', ['onnx', 'tfjs'] as const), 'onnx')
    .requiredOption('--out <path>', 'onnx: model.onnx (a cascade writes model.stage1.onnx and model.stage2.onnx); tfjs: a folder')
    .option('--coordinator-key <file.pub>', "the coordinator's public key: verify the checkpoint's signatures and hash first")
    .option('--site-config <file>', "a site's config: the coordinator key it pins, its CT statistics and planned training patch")
    .option('--local-model <file.pfw>', "FedBN checkpoints: a site's local model weights, whose normalisation layers are exported")
    .option('--patch <x,y,z>', 'training window recorded for patch-wise stages (default: the site\'s, else none)', parseShapeOption('--patch'))
    .option('--verify [image]', 'compare the export with the tfjs model on random input (onnxruntime-node for ONNX) before writing; with an image, also segment it both ways')
    .option('--threads <n>', 'onnxruntime threads for --verify (default: all cores)', parseIntOption('--threads', 1, 256))
    .option('--backend <name>', 'auto | tensorflow | wasm | cpu | cpu-fast', parseChoice('--backend', ['auto', 'tensorflow', 'wasm', 'cpu', 'cpu-fast']), 'auto')
    .option('--json', 'print the report as JSON')
    .action((opts: ExportCliOptions) => usageErrorsExit2(() => exportCommand(opts)));
}

async function exportCommand(opts: ExportCliOptions): Promise<void> {
  const { selectBackend, parseBackendChoice } = await import('../../site-agent/backend/index.ts');
  const { checkpointSigningPayload } = await import('../../coordinator/store/checkpoint-meta.ts');
  const { loadModel } = await import('../../site-agent/inference/load-model.ts');
  const { SiteContext } = await import('../../site-agent/inference/site-context.ts');
  const { disposePredictionModel } = await import('../../site-agent/inference/prediction-model.ts');
  const { exportModel, onnxFileNames, EXPORT_TOLERANCE } = await import('../../site-agent/export/export-model.ts');

  if (opts.format === 'onnx') onnxFileNames(opts.out, 1); // refuses a bad --out before any work
  const [px, py, pz] = opts.patch ?? [];
  const patch = px !== undefined && py !== undefined && pz !== undefined ? ([px, py, pz] as const) : undefined;
  const site = opts.siteConfig ? new SiteContext(opts.siteConfig) : undefined;
  const loaded = await loadModel(
    { model: opts.checkpoint, coordinatorKey: opts.coordinatorKey, site, signingPayload: checkpointSigningPayload, localModel: opts.localModel, patch },
    () => selectBackend(parseBackendChoice(opts.backend)),
  );
  try {
    const report = await exportModel(loaded, {
      format: opts.format,
      out: opts.out,
      verify: opts.verify !== undefined,
      verifyImage: typeof opts.verify === 'string' ? opts.verify : undefined,
      threads: opts.threads,
      producerVersion: packageVersion(),
    });
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ ...report, notes: loaded.model.notes }, null, 2)}\n`);
      return;
    }
    const lines = [...loaded.model.notes];
    const what = opts.format === 'onnx' ? 'ONNX (opset 13, NCDHW input)' : 'tfjs artifacts';
    lines.push(`exported the ${loaded.model.mode} model as ${what}:`);
    for (const f of report.files) lines.push(`  ${f.stage}: ${f.file} (${f.bytes} bytes, sha256 ${f.sha256.slice(0, 12)}…)`);
    lines.push(`model card: ${report.card.json}, ${report.card.markdown}`);
    if (report.verification) {
      lines.push(`checked: ${report.verification.method} (tolerance ${EXPORT_TOLERANCE}):`);
      for (const s of report.verification.stages) lines.push(`  ${s.stage}: max |Δ probability| ${s.maxAbsDiff.toExponential(2)} on input ${s.shape.join('x')} (n, x, y, z, C)`);
    }
    if (report.imageCheck) {
      const c = report.imageCheck;
      lines.push(`  ${c.image}: sliding-window segmentation through onnxruntime differs from tfjs in ${c.differingVoxels} of ${c.voxels} voxels`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    disposePredictionModel(loaded.model);
  }
}
