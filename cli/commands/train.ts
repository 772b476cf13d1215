/**
 * `patchfed train --config <site config>`: one site alone — plan within the budget, train every
 * stage of the mode, keep the best checkpoint by validation Dice, evaluate on the test split,
 * save tfjs-compatible artifacts and a report. Also the local-only / pooled baselines.
 */
import type { Command } from 'commander';
import { parseChoice, parseIntOption } from '../main.ts';

interface TrainCliOptions {
  config: string;
  steps?: number;
  backend?: string;
  out?: string;
  json?: string;
}

export function register(program: Command): void {
  program
    .command('train')
    .description('Train one site alone (no federation): plan, train, validate, keep the best checkpoint, evaluate on the test split.')
    .requiredOption('--config <file>', 'site config (dataset, memoryBudgetMB, model, training)')
    .option('--steps <n>', 'training steps per stage (overrides training.steps)', parseIntOption('--steps', 1, 10_000_000))
    .option('--backend <name>', 'auto | tensorflow | wasm | cpu | cpu-fast (overrides the config)', parseChoice('--backend', ['auto', 'tensorflow', 'wasm', 'cpu', 'cpu-fast']))
    .option('--out <dir>', 'where to write the model and report (default: <workDir>/train)')
    .option('--json <file>', 'also write the report as JSON to this file')
    .action(async (opts: TrainCliOptions) => {
      const { runLocalTraining, formatTrainingReport } = await import('../../site-agent/run/local-training.ts');
      const report = await runLocalTraining({ configPath: opts.config, steps: opts.steps, backend: opts.backend, outDir: opts.out, jsonPath: opts.json });
      process.stdout.write(formatTrainingReport(report));
    });
}
