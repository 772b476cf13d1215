/**
 * `patchfed bench federation [--models thesis,large] [--sites 1,3,16,32] [--profile] [--json FILE]`
 *
 * The real coordinator and N real site processes on loopback, one round of prepared updates of
 * the thesis U-Net (~22.6M parameters) or a ~247M-parameter one: upload MB/s per site, last
 * upload byte → signed checkpoint, coordinator peak RSS over model size, bytes moved, and (with
 * --profile) the coordinator's CPU time by part.
 */
import { InvalidArgumentError, type Command } from 'commander';

interface FederationOptions {
  models: string;
  sites: string;
  profile?: boolean;
  json?: string;
}

function list(name: string, allowed?: readonly string[]) {
  return (value: string): string => {
    const parts = value.split(',').map((s) => s.trim());
    if (parts.some((p) => p === '' || (allowed ? !allowed.includes(p) : !/^[1-9]\d*$/.test(p)))) {
      throw new InvalidArgumentError(`${name} must be a comma-separated list of ${allowed ? allowed.join(' / ') : 'positive integers'}, got '${value}'.`);
    }
    return value;
  };
}

export function register(bench: Command): void {
  bench
    .command('federation')
    .description('Real coordinator + N site processes: upload speed, last byte → checkpoint, coordinator memory, bytes moved.')
    .option('--models <list>', 'thesis (~22.6M parameters) and/or large (~247M)', list('--models', ['thesis', 'large']), 'thesis,large')
    .option('--sites <list>', 'site counts to run', list('--sites'), '1,3,16,32')
    .option('--profile', "also profile the coordinator's CPU time by part (crypto, validation, aggregation, transport, ...)")
    .option('--json <file>', 'write every run as JSON')
    .action(async (opts: FederationOptions) => {
      const { runFederationBench, writeFederationReport } = await import('../../../bench/federation.ts');
      const models = opts.models.split(',') as ('thesis' | 'large')[];
      const sites = opts.sites.split(',').map(Number);
      const runs = await runFederationBench({ models, sites, profile: opts.profile, log: (line) => process.stdout.write(`${line}\n`) });
      if (opts.json) {
        writeFederationReport(opts.json, runs);
        process.stdout.write(`wrote ${opts.json}\n`);
      }
    });
}
