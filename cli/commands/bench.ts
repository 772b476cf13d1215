/**
 * `patchfed bench <name>`: long measurements that never run in `npm test`. Each benchmark is its
 * own module under cli/commands/bench/ exporting `register(benchCommand)`, loaded lazily like
 * the top-level commands (its real work is imported inside its action).
 */
import type { Command } from 'commander';

/** One module per benchmark in cli/commands/bench/. */
const BENCH_MODULES = ['kernels', 'surface-metrics', 'secagg', 'federation', 'chaos', 'fuzz', 'crypto'] as const;

export async function register(program: Command): Promise<void> {
  const bench = program.command('bench').description('Benchmarks (long measurements; never part of npm test).');
  for (const name of BENCH_MODULES) {
    const mod = (await import(`./bench/${name}.ts`)) as { register(bench: Command): void };
    mod.register(bench);
  }
  bench.commands.forEach((c) => c.exitOverride().showHelpAfterError('(run with --help for usage)'));
}
