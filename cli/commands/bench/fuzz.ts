/**
 * `patchfed bench fuzz [--messages N] [--seed S] [--sites K] [--min-rounds R] [--json FILE]`
 *
 * The long form of the seeded protocol fuzzer (bench/fuzz.ts; `npm test` runs a short one): at
 * least 10,000 mutated messages before and after authentication, of every message type, raw
 * frames and mutated upload chunk streams, against a real coordinator while honest sites keep
 * completing rounds. Exit 1 on any crash, unbounded RSS, an unhealthy coordinator or too few rounds.
 */
import type { Command } from 'commander';
import { parseIntOption } from '../../main.ts';

interface FuzzCliOptions {
  messages: number;
  seed: number;
  sites: number;
  minRounds: number;
  maxRssGrowthMb: number;
  json?: string;
}

export function register(bench: Command): void {
  bench
    .command('fuzz')
    .description('Seeded protocol fuzzer: mutated messages of every type, pre- and post-auth, raw frames and upload chunk streams, while honest sites complete rounds.')
    .option('--messages <n>', 'mutated messages to send', parseIntOption('--messages', 1, 10_000_000), 10_000)
    .option('--seed <n>', 'PRNG seed (same seed, same messages)', parseIntOption('--seed', 0, 2 ** 31 - 1), 1)
    .option('--sites <n>', 'honest sites completing rounds meanwhile', parseIntOption('--sites', 1, 32), 2)
    .option('--min-rounds <n>', 'rounds that must complete while fuzzing', parseIntOption('--min-rounds', 0, 100_000), 3)
    .option('--max-rss-growth-mb <n>', 'largest acceptable RSS growth after warm-up (MB)', parseIntOption('--max-rss-growth-mb', 1, 100_000), 300)
    .option('--json <file>', 'also write the full report as JSON')
    .action(async (opts: FuzzCliOptions) => {
      const { runProtocolFuzz, formatFuzzReport } = await import('../../../bench/fuzz.ts');
      process.stdout.write(`fuzzing a coordinator with ${opts.messages} mutated messages (seed ${opts.seed}, ${opts.sites} honest sites)…\n`);
      const report = await runProtocolFuzz({
        messages: opts.messages,
        seed: opts.seed,
        legitSites: opts.sites,
        minRounds: opts.minRounds,
        maxRssGrowthMB: opts.maxRssGrowthMb,
        log: (line) => process.stdout.write(`${line}\n`),
      });
      process.stdout.write(`${formatFuzzReport(report)}\n`);
      if (opts.json) {
        const { writeFile, rename } = await import('node:fs/promises');
        await writeFile(`${opts.json}.tmp`, `${JSON.stringify(report, null, 2)}\n`);
        await rename(`${opts.json}.tmp`, opts.json);
        process.stdout.write(`wrote ${opts.json}\n`);
      }
      if (report.problems.length > 0) process.exitCode = 1;
    });
}
