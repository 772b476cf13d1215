/**
 * `patchfed coordinator --config coordinator.json`: runs the coordinator service (sites, rounds,
 * checkpoints, dashboard) until SIGINT/SIGTERM. After the last round it keeps serving the
 * dashboard. Restarting it on the same stateDir resumes at the last completed round.
 *
 * Exit status: 0 after a clean stop; 1 when it cannot start (bad config, corrupt state DB: the
 * message says what to do) or cannot continue (storage gone for too long, state DB corrupt):
 * one line `patchfed coordinator: fatal: <reason>` on stderr, so a supervisor restarts it.
 * `--repair` rebuilds a corrupt or lost state DB from the signed checkpoints and exits;
 * `--resume` continues an experiment stopped by maxRoundAttempts.
 */
import type { Command } from 'commander';
import type { LogFormat, LogLevel } from '../../shared/process-log.ts';
import { logFormatOption, logLevelOption, parseIntOption } from '../main.ts';

interface CoordinatorCliOptions {
  config: string;
  logFile?: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
  port?: number;
  repair?: boolean;
  resume?: boolean;
  storageOutageLimit: number;
}

/** How long a fatal stop may take before the process exits anyway. */
const FATAL_STOP_GRACE_MS = 5000;

export function register(program: Command): void {
  program
    .command('coordinator')
    .description(
      'Run the federation coordinator: authenticates enrolled sites, schedules rounds, aggregates their ' +
        'encrypted, signed updates into signed checkpoints, and serves the live dashboard (token-protected).',
    )
    .requiredOption('--config <file>', 'coordinator config (JSON; paths inside are relative to it)')
    .option('--port <n>', 'listen on this port instead of the config\'s (0 = any free port)', parseIntOption('--port', 0, 65535))
    .option('--resume', 'continue an experiment stopped after maxRoundAttempts failed attempts of a round (its failed attempts no longer count)')
    .option('--repair', 'rebuild a corrupt or lost state database from the signed checkpoints (the old file is moved aside), then exit')
    .option('--storage-outage-limit <s>', 'seconds the state directory may refuse writes (disk full, I/O errors) before the coordinator exits with status 1 for its supervisor', parseIntOption('--storage-outage-limit', 1, 7 * 24 * 3600), 600)
    .addOption(logLevelOption())
    .addOption(logFormatOption())
    .option('--log-file <file>', 'also write JSON log lines to this file')
    .action(async (opts: CoordinatorCliOptions) => {
      const server = await import('../../coordinator/server/index.ts');
      const { PatchFedError, isPatchFedError } = await import('../../shared/errors.ts');
      const { config, baseDir } = server.loadCoordinatorConfig(opts.config);
      if (opts.repair) {
        process.stdout.write(formatRepair(server.repairCoordinatorState(config, baseDir)));
        return;
      }
      if (opts.port !== undefined) config.port = opts.port;
      const { createProcessLog } = await import('../../shared/process-log.ts');
      const logger = await createProcessLog({ name: 'coordinator', file: opts.logFile, level: opts.logLevel, format: opts.logFormat });
      let coordinator: Awaited<ReturnType<typeof server.startCoordinator>>;
      try {
        coordinator = await server.startCoordinator(config, { baseDir, log: logger.log, resume: opts.resume, health: healthTimings(opts.storageOutageLimit) });
      } catch (e) {
        logger.flush();
        // The way out names this very config file.
        if (isPatchFedError(e) && (e.code === 'state-db-corrupt' || e.code === 'state-db-missing')) {
          throw new PatchFedError(e.code, e.message.replace('<your config>', opts.config), { subject: e.subject });
        }
        throw e;
      }
      // Signal handlers go in before the "listening" lines: a supervisor (or a test) that stops
      // the process as soon as it reads them must get a clean stop, not the default SIGTERM death.
      const stopped = new Promise<void>((resolve) => {
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
        void coordinator.fatal.then((reason) => {
          process.stderr.write(`patchfed coordinator: fatal: ${reason}\n`);
          const exit = () => {
            logger.flush();
            process.exit(1);
          };
          setTimeout(exit, FATAL_STOP_GRACE_MS).unref();
          void coordinator.stop().finally(exit);
        });
      });
      const state = coordinator.state();
      process.stdout.write(
        `patchfed coordinator listening on ${coordinator.url}\n` +
          `  experiment '${state.experimentId}', last completed round ${state.lastCompletedRound}; dashboard: ${coordinator.url}/login\n`,
      );
      void coordinator.finished.then((end) => {
        process.stdout.write(
          end.kind === 'complete'
            ? `patchfed coordinator: experiment complete after round ${end.round} (checkpoint v${end.checkpointVersion}); dashboard stays up (Ctrl-C to stop)\n`
            : `patchfed coordinator: experiment stopped at round ${end.round}: ${end.reason}; ${server.RESUME_HINT}\n`,
        );
      });
      await stopped;
    });
}

/** Probe often enough that an outage is noticed well within the limit (every 30 s at most). */
function healthTimings(limitSeconds: number): { outageLimitMs: number; probeMs: number; unhealthyProbeMs: number } {
  const limitMs = limitSeconds * 1000;
  const clamp = (ms: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.round(ms)));
  return { outageLimitMs: limitMs, probeMs: clamp(limitMs / 20, 200, 30_000), unhealthyProbeMs: clamp(limitMs / 40, 100, 5000) };
}

function formatRepair(r: import('../../coordinator/server/index.ts').RepairReport): string {
  if (r.reason === null) return `patchfed coordinator --repair: ${r.dbPath} passes the integrity check and holds the experiment's rounds; nothing to repair.\n`;
  let out = `patchfed coordinator --repair: ${r.reason}\n`;
  if (r.movedAside.length > 0) out += `  old database moved aside (nothing deleted): ${r.movedAside.join(', ')}\n`;
  const verified = r.verdicts.filter((v) => v.ok);
  out += `  checkpoints: ${verified.length} verified (hash and signature with the coordinator key), ${r.quarantined.length} quarantined\n`;
  for (const u of r.unreadable) out += `    v${u.version}: ${u.reason} -> quarantine/\n`;
  for (const v of r.verdicts) if (!v.ok) out += `    v${v.version} (round ${v.round}): ${v.reason} -> quarantine/\n`;
  for (const v of verified) if (v.reason) out += `    v${v.version} (round ${v.round}): ${v.reason}\n`;
  const last = r.restored[r.restored.length - 1];
  out += last
    ? `  restored ${r.restored.length} completed round(s) up to round ${last.round} (checkpoint v${last.version}); start the coordinator normally to continue after round ${last.round}\n`
    : '  no verified checkpoint: the experiment starts over from a new initial model when the coordinator starts\n';
  return out;
}
