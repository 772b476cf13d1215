/**
 * `patchfed site --config <site config>`: the site agent daemon.
 * Exit status: 0 when stopped by SIGTERM/SIGINT; 1 when it cannot start (bad config, keys,
 * backend); 3 when the coordinator refuses this site for good (not enrolled, wrong pinned key,
 * another protocol version): fix the configuration before restarting it.
 */
import type { Command } from 'commander';
import type { LogFormat, LogLevel } from '../../shared/process-log.ts';
import { logFormatOption, logLevelOption, parseChoice } from '../main.ts';

interface SiteCliOptions {
  config: string;
  backend?: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
}

export function register(program: Command): void {
  program
    .command('site')
    .description('Run the site agent daemon: connect to the coordinator and train federated rounds on local data.')
    .requiredOption('--config <file>', 'site config with a "federation" section')
    .option('--backend <name>', 'auto | tensorflow | wasm | cpu | cpu-fast (overrides the config)', parseChoice('--backend', ['auto', 'tensorflow', 'wasm', 'cpu', 'cpu-fast']))
    .addOption(logLevelOption())
    .addOption(logFormatOption())
    .action(async (opts: SiteCliOptions) => {
      const { runSiteDaemon } = await import('../../site-agent/daemon/daemon.ts');
      const exit = await runSiteDaemon(opts.config, { backend: opts.backend, logLevel: opts.logLevel, logFormat: opts.logFormat });
      if (exit.reason) process.stderr.write(`patchfed site: ${exit.reason}\n`);
      process.exitCode = exit.exitCode;
    });
}
