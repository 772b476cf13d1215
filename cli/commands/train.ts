/**
 * `patchfed train --config <site config>`: one site alone — plan within the budget, train every
 * stage of the mode, keep the best checkpoint by validation Dice, evaluate on the test split,
 * save tfjs-compatible artifacts and a report. Also the local-only / pooled baselines.
 * Resumable: the state is saved every --checkpoint-every steps and on SIGINT/SIGTERM (after the
 * current step), and --resume continues it with the same data order and, on the same backend,
 * bit-identical weights.
 */
import type { Command } from 'commander';
import { CliError, parseChoice, parseIntOption } from '../main.ts';

interface TrainCliOptions {
  config: string;
  steps?: number;
  backend?: string;
  out?: string;
  json?: string;
  resume?: boolean;
  checkpointEvery?: number;
}

/** Conventional exit status of a process stopped by a signal: 128 + its number. */
const SIGNAL_EXIT: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };

export function register(program: Command): void {
  program
    .command('train')
    .description('Train one site alone (no federation): plan, train, validate, keep the best checkpoint, evaluate on the test split.')
    .requiredOption('--config <file>', 'site config (dataset, memoryBudgetMB, model, training)')
    .option('--steps <n>', 'training steps per stage (overrides training.steps)', parseIntOption('--steps', 1, 10_000_000))
    .option('--backend <name>', 'auto | tensorflow | wasm | cpu | cpu-fast (overrides the config)', parseChoice('--backend', ['auto', 'tensorflow', 'wasm', 'cpu', 'cpu-fast']))
    .option('--out <dir>', 'where to write the model and report (default: <workDir>/train)')
    .option('--json <file>', 'also write the report as JSON to this file')
    .option('--checkpoint-every <n>', 'save the resumable state every n steps (default 50; 0 = only on SIGINT/SIGTERM)', parseIntOption('--checkpoint-every', 0, 10_000_000))
    .option('--resume', "continue the interrupted run whose state is in the output folder (<out>/resume-state.pfts)")
    .action(async (opts: TrainCliOptions) => {
      const { runLocalTraining, formatTrainingReport } = await import('../../site-agent/run/local-training.ts');
      const { TrainingInterruptedError } = await import('../../site-agent/run/resumable-training.ts');
      const { ProgressReporter } = await import('../../site-agent/train/progress.ts');
      const progress = new ProgressReporter();
      const stop = new AbortController();
      let signal: 'SIGINT' | 'SIGTERM' | null = null;
      const onSignal = (name: 'SIGINT' | 'SIGTERM') => {
        progress.close();
        if (signal) {
          // A second Ctrl-C: leave now. States are written atomically, so the last one is intact.
          process.stderr.write(`${name} again: exiting without waiting; the last saved state (if any) is intact\n`);
          process.exit(SIGNAL_EXIT[name]);
        }
        signal = name;
        process.stderr.write(`${name}: stopping after the current step and saving a resumable state (again to exit at once)…\n`);
        stop.abort();
      };
      const onInt = () => onSignal('SIGINT');
      const onTerm = () => onSignal('SIGTERM');
      process.on('SIGINT', onInt);
      process.on('SIGTERM', onTerm);
      try {
        const report = await runLocalTraining({
          configPath: opts.config,
          steps: opts.steps,
          backend: opts.backend,
          outDir: opts.out,
          jsonPath: opts.json,
          progress,
          resume: opts.resume,
          checkpointEvery: opts.checkpointEvery,
          signal: stop.signal,
        });
        process.stdout.write(formatTrainingReport(report));
      } catch (e) {
        progress.close();
        if (e instanceof TrainingInterruptedError) throw new CliError(e.message, SIGNAL_EXIT[signal ?? 'SIGINT']);
        throw e;
      } finally {
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
      }
    });
}
