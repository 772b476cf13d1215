/** `patchfed site --config <site config>`: the site agent daemon. */
import type { Command } from 'commander';
import { parseChoice } from '../main.ts';

export function register(program: Command): void {
  program
    .command('site')
    .description('Run the site agent daemon: connect to the coordinator and train federated rounds on local data.')
    .requiredOption('--config <file>', 'site config with a "federation" section')
    .option('--backend <name>', 'auto | tensorflow | wasm | cpu | cpu-fast (overrides the config)', parseChoice('--backend', ['auto', 'tensorflow', 'wasm', 'cpu', 'cpu-fast']))
    .action(async (opts: { config: string; backend?: string }) => {
      const { runSiteDaemon } = await import('../../site-agent/daemon/daemon.ts');
      await runSiteDaemon(opts.config, { backend: opts.backend });
    });
}
