/**
 * `patchfed bench secagg [--sites 3,10,32] [--quick] [--neighbours K] [--json FILE]`
 * `patchfed bench secagg --federated [--sites 3,10,32] [--quick] [--processes P] [--json FILE]`
 *
 * --federated: real rounds through the real coordinator and site clients over loopback, plain
 * vs secure, wall time and bytes per round (bench/secagg-rounds.ts); `--quick` there is
 * cpu-small with 3 sites only.
 *
 * Time and bytes per round of secure aggregation's masking and unmasking math vs plain float
 * aggregation, in process, for each site count on the cpu-small model's size and on a
 * 19M-parameter vector (bench/secagg.ts). `--quick`: cpu-small only (seconds); the 19M runs take
 * minutes for 32 sites (each site expands one mask per neighbour).
 */
import { InvalidArgumentError, type Command } from 'commander';
import { CliError } from '../../main.ts';

interface SecAggOptions {
  sites: number[];
  quick?: boolean;
  neighbours?: number;
  json?: string;
  federated?: boolean;
  processes: number;
}

function parseProcesses(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1 || Number(value) > 64) throw new InvalidArgumentError(`--processes must be an integer from 1 to 64, got '${value}'.`);
  return Number(value);
}

async function writeJson(path: string, value: unknown): Promise<void> {
  const { rename, writeFile } = await import('node:fs/promises');
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(tmp, path);
  process.stdout.write(`wrote ${path}\n`);
}

async function runFederated(opts: SecAggOptions, sitesGiven: boolean): Promise<void> {
  const { ROUNDS_MODELS, formatRoundsTable, runSecAggRoundsBench } = await import('../../../bench/secagg-rounds.ts');
  const models = opts.quick ? ROUNDS_MODELS.filter((m) => m.name === 'cpu-small') : ROUNDS_MODELS;
  // --quick: cpu-small, and 3 sites unless --sites names others.
  const sites = opts.quick && !sitesGiven ? [3] : opts.sites;
  const { loadavg } = await import('node:os');
  const load = (l: number[]) => l.map((x) => x.toFixed(1)).join('/');
  const loadStart = loadavg();
  const runs = await runSecAggRoundsBench({ models, sites, processes: opts.processes, log: (line) => process.stdout.write(`${line}\n`) });
  process.stdout.write(`${formatRoundsTable(runs).join('\n')}\n`);
  process.stdout.write(`load average ${load(loadStart)} at start, ${load(loadavg())} at end (2 cores); node ${process.version}\n`);
  if (opts.json) await writeJson(opts.json, { machine: { loadAverageStart: loadStart, loadAverageEnd: loadavg(), node: process.version }, runs });
}

function parseSites(value: string): number[] {
  const parts = value.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p) || Number(p) < 2 || Number(p) > 64)) {
    throw new InvalidArgumentError(`--sites must be site counts between 2 and 64 separated by commas (e.g. 3,10,32), got '${value}'.`);
  }
  return parts.map(Number);
}

function parseNeighbours(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 2) throw new InvalidArgumentError(`--neighbours must be an integer ≥ 2, got '${value}'.`);
  return Number(value);
}

export function register(bench: Command): void {
  bench
    .command('secagg')
    .description('Secure aggregation vs plain aggregation: time and bytes per round for 3, 10 and 32 sites, cpu-small and 19M parameters.')
    .option('--sites <list>', 'site counts (default 3,10,32)', parseSites, [3, 10, 32])
    .option('--quick', 'only the cpu-small model size')
    .option('--neighbours <k>', 'SecAgg+ Harary graph with k neighbours per site instead of the complete graph', parseNeighbours)
    .option('--json <file>', 'also write the full report as JSON')
    .option('--federated', 'real rounds through the real coordinator and site clients (plain vs secure): wall time and bytes per round')
    .option('--processes <p>', 'with --federated: most site processes per run (sites are spread over them)', parseProcesses, 4)
    .action(async (opts: SecAggOptions, command: Command) => {
      if (opts.federated) {
        if (opts.neighbours !== undefined) throw new CliError('--neighbours applies to the in-process bench only, not to --federated.');
        await runFederated(opts, command.getOptionValueSource('sites') === 'cli');
        return;
      }
      const { cpuSmallParameterCount, formatHeader, runSecAggBench } = await import('../../../bench/secagg.ts');
      const sizes = [{ name: 'cpu-small', parameters: cpuSmallParameterCount() }];
      if (!opts.quick) sizes.push({ name: '19M', parameters: 19_000_000 });
      process.stdout.write(`${formatHeader()}\n`);
      const report = runSecAggBench({ sites: opts.sites, sizes, neighbours: opts.neighbours, log: (line) => process.stdout.write(`${line}\n`) });
      const load = (l: number[]) => l.map((x) => x.toFixed(1)).join('/');
      process.stdout.write(`load average ${load(report.machine.loadAverageStart)} at start, ${load(report.machine.loadAverageEnd)} at end (2 cores); node ${report.machine.node}\n`);
      if (report.rows.some((r) => !r.verified)) {
        process.stderr.write('secagg bench: an unmasked sum differed from the plain sum of the encoded updates\n');
        process.exitCode = 1;
      }
      if (opts.json) await writeJson(opts.json, report);
    });
}
