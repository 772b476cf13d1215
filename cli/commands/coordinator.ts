/**
 * `patchfed coordinator --config coordinator.json`: runs the coordinator service (sites, rounds,
 * checkpoints, dashboard) until SIGINT/SIGTERM. After the last round it keeps serving the
 * dashboard. Restarting it on the same stateDir resumes at the last completed round.
 */
import type { Command } from 'commander';
import { parseChoice, parseIntOption } from '../main.ts';

interface CoordinatorCliOptions {
  config: string;
  logFile?: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  port?: number;
}

export function register(program: Command): void {
  program
    .command('coordinator')
    .description(
      'Run the federation coordinator: authenticates enrolled sites, schedules rounds, aggregates their ' +
        'encrypted, signed updates into signed checkpoints, and serves the live dashboard (token-protected).',
    )
    .requiredOption('--config <file>', 'coordinator config (JSON; paths inside are relative to it)')
    .option('--log-file <file>', 'write JSON log lines to this file instead of stdout')
    .option('--log-level <level>', 'debug | info | warn | error', parseChoice('--log-level', ['debug', 'info', 'warn', 'error'] as const), 'info')
    .option('--port <n>', 'listen on this port instead of the config\'s (0 = any free port)', parseIntOption('--port', 0, 65535))
    .action(async (opts: CoordinatorCliOptions) => {
      const { loadCoordinatorConfig, startCoordinator, createPinoLog } = await import('../../coordinator/server/index.ts');
      const { config, baseDir } = loadCoordinatorConfig(opts.config);
      if (opts.port !== undefined) config.port = opts.port;
      const logger = await createPinoLog({ file: opts.logFile, level: opts.logLevel });
      const coordinator = await startCoordinator(config, { baseDir, log: logger.log });
      const state = coordinator.state();
      process.stdout.write(
        `patchfed coordinator listening on ${coordinator.url}\n` +
          `  experiment '${state.experimentId}', last completed round ${state.lastCompletedRound}; dashboard: ${coordinator.url}/login\n`,
      );
      void coordinator.finished.then((end) => {
        process.stdout.write(
          end.kind === 'complete'
            ? `patchfed coordinator: experiment complete after round ${end.round} (checkpoint v${end.checkpointVersion}); dashboard stays up (Ctrl-C to stop)\n`
            : `patchfed coordinator: experiment stopped at round ${end.round}: ${end.reason}\n`,
        );
      });
      await new Promise<void>((resolve) => {
        let signals = 0;
        const onSignal = (signal: NodeJS.Signals) => {
          if (++signals > 1) process.exit(130); // second Ctrl-C: do not wait for a clean stop
          process.stdout.write(`patchfed coordinator: ${signal}, stopping\n`);
          void coordinator.stop().finally(() => {
            logger.flush();
            resolve();
          });
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      });
    });
}
