/**
 * `patchfed token [--config coordinator.json]`: a fresh dashboard token (32 random bytes,
 * base64url: ~256 bits, well above the 128 the coordinator requires). Printed, or written into
 * the config's "dashboardToken" in place (mode 0600) with `--config`.
 */
import type { Command } from 'commander';

interface TokenOptions {
  config?: string;
}

export function register(program: Command): void {
  program
    .command('token')
    .description(
      'Generate a dashboard token (32 random bytes, base64url). The coordinator refuses placeholder and guessable\n' +
        'tokens (under 128 bits of randomness). Prints it, or with --config writes it into the coordinator config.',
    )
    .option('--config <file>', 'set "dashboardToken" in this coordinator config in place (the file becomes mode 0600)')
    .action(async (opts: TokenOptions) => {
      const { generateDashboardToken } = await import('../../shared/config/dashboard-token.ts');
      const token = generateDashboardToken();
      if (opts.config === undefined) {
        process.stdout.write(`${token}\n`);
        return;
      }
      const { writeDashboardToken } = await import('../config-token.ts');
      writeDashboardToken(opts.config, token);
      process.stdout.write(`Wrote a new dashboardToken to ${opts.config} (mode 0600). Log in to the dashboard with it; it replaces the old one, which ends every existing session.\n`);
    });
}
