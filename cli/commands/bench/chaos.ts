/**
 * `patchfed bench chaos [--kills 24] [--rounds 8] ...`: kill -9 the coordinator and random sites
 * of a 3-site simulated federation at random moments, restart them, and check that the
 * experiment completes with every checkpoint signature valid, versions strictly increasing and
 * no round recorded twice (bench/chaos.ts). Exit 1 when any check fails.
 */
import type { Command } from 'commander';
import { parseChoice, parseFloatOption, parseIntOption } from '../../main.ts';

interface ChaosCliOptions {
  kills: number;
  rounds: number;
  steps: number;
  seed: number;
  coordinatorShare: number;
  minInterval: number;
  maxInterval: number;
  timeout: number;
  runDir?: string;
  backend: 'auto' | 'cpu-fast' | 'cpu' | 'wasm' | 'tensorflow';
}

export function register(bench: Command): void {
  bench
    .command('chaos')
    .description('kill -9 the coordinator and random sites of a 3-site simulated federation at random moments; check the experiment completes with sound checkpoints and rounds.')
    .option('--kills <n>', 'kill -9 to deliver', parseIntOption('--kills', 1, 10_000), 24)
    .option('--rounds <n>', 'federated rounds', parseIntOption('--rounds', 1, 1000), 8)
    .option('--steps <n>', 'local training steps per round', parseIntOption('--steps', 1, 100_000), 12)
    .option('--seed <n>', 'seed of the kill schedule and of the phantoms', parseIntOption('--seed', 0, 2 ** 31 - 1), 1)
    .option('--coordinator-share <f>', 'fraction of kills aimed at the coordinator', parseFloatOption('--coordinator-share', 0, 1), 0.4)
    .option('--min-interval <s>', 'shortest pause between kills', parseFloatOption('--min-interval', 0, 3600), 1)
    .option('--max-interval <s>', 'longest pause between kills', parseFloatOption('--max-interval', 0, 3600), 8)
    .option('--timeout <min>', 'give up after this many minutes', parseFloatOption('--timeout', 1, 24 * 60), 40)
    .option('--run-dir <dir>', 'where the federation lives (default runs/chaos-<time>)')
    .option('--backend <name>', 'site backend: auto | tensorflow | wasm | cpu | cpu-fast', parseChoice('--backend', ['auto', 'tensorflow', 'wasm', 'cpu', 'cpu-fast'] as const), 'auto')
    .action(async (o: ChaosCliOptions) => {
      const { runChaos, formatChaosSummary } = await import('../../../bench/chaos.ts');
      const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
      const report = await runChaos({
        runDir: o.runDir ?? `runs/chaos-${stamp}`,
        kills: o.kills,
        rounds: o.rounds,
        steps: o.steps,
        seed: o.seed,
        coordinatorShare: o.coordinatorShare,
        intervalSeconds: [Math.min(o.minInterval, o.maxInterval), Math.max(o.minInterval, o.maxInterval)],
        timeoutMinutes: o.timeout,
        backend: o.backend,
        log: (line) => process.stdout.write(`${line}\n`),
      });
      process.stdout.write(`${formatChaosSummary(report)}\n`);
      if (!report.ok) process.exitCode = 1;
    });
}
