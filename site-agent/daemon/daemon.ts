/**
 * The site agent daemon (`patchfed site --config ...`): proves its backend, connects to the pinned
 * coordinator (reconnecting with backoff), and for every round task trains the global model on the
 * local data inside the declared memory budget and sends back the encrypted, signed update.
 * SIGTERM/SIGINT: the running step finishes or is abandoned, the client disconnects cleanly;
 * every file PatchFed writes is written atomically, so nothing is left half-written.
 *
 * The console gets one human-readable line per event (also when `logFile` is set; the file gets
 * JSON lines). Connection trouble is logged at warn with the reason and the next retry; a refusal
 * no retry can fix (site not enrolled, wrong pinned coordinator key, another protocol version)
 * stops the daemon with SITE_EXIT.authRefused and the reason.
 */
import { loadPublicKeyFile, loadSecretKeyFile } from '../../shared/crypto/keys.ts';
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import { createProcessLog, type LogFn, type LogFormat, type LogLevel, type ProcessLog } from '../../shared/process-log.ts';
import type { SiteConfig } from '../../shared/config/site.ts';
import { assertTrainableBackend, parseBackendChoice, selectBackend } from '../backend/index.ts';
import { FederatedSiteTrainer } from '../run/federated-site.ts';
import { loadSiteConfig } from '../site-config.ts';
import { CoordinatorClient, type ClientEvents } from './client.ts';
import { runFinalEvaluations } from './final-evaluation.ts';

/** Exit statuses of `patchfed site` (README: "Site exit codes"). */
export const SITE_EXIT = {
  /** Stopped by SIGTERM / SIGINT (or the stop signal). */
  stopped: 0,
  /** The coordinator refuses this site for good: fix the enrolment, keys or versions, then restart. */
  authRefused: 3,
} as const;

export interface DaemonOptions {
  backend?: string;
  /** Resolve when the daemon should stop (tests); signals are handled regardless. */
  stopSignal?: AbortSignal;
  logLevel?: LogLevel;
  logFormat?: LogFormat;
}

export interface DaemonExit {
  exitCode: number;
  /** One line: why the daemon stopped, when it was not asked to. */
  reason?: string;
}

export async function runSiteDaemon(configPath: string, opts: DaemonOptions = {}): Promise<DaemonExit> {
  const cfg = loadSiteConfig(configPath);
  if (!cfg.federation) {
    throw new PatchFedError('E_CONFIG', `site config ${configPath} has no "federation" section (coordinatorUrl, secretKey, publicKey, coordinatorPublicKey)`);
  }
  const logger = await createProcessLog({ name: cfg.siteId, level: opts.logLevel ?? 'info', format: opts.logFormat, file: cfg.logFile, base: { site: cfg.siteId } });
  const log = logger.log;
  const keys = loadSecretKeyFile(cfg.federation.secretKey);
  const coordinatorPublicKey = loadPublicKeyFile(cfg.federation.coordinatorPublicKey);

  const backend = await selectBackend(parseBackendChoice(opts.backend ?? cfg.backend), (m) => log('info', m));
  assertTrainableBackend(backend);
  log('info', `backend ${backend.name} (${backend.package} ${backend.version}), gpu ${backend.gpu}`, { backend: backend.name, package: backend.package, version: backend.version, gpu: backend.gpu });

  const trainer = new FederatedSiteTrainer(cfg, backend, (m) => log('info', m));
  const client = new CoordinatorClient({
    url: cfg.federation.coordinatorUrl,
    siteId: cfg.siteId,
    keys,
    coordinatorPublicKey,
    caCertificate: cfg.federation.caCertificate,
    withhold: cfg.federation.withhold,
    log,
  });
  client.setSiteInfo(trainer.siteInfo());
  const crossSite = new CrossSiteValidation(cfg, client, log);
  serveRoundTasks(client, trainer, log, (local) => crossSite.recordLocal(local));
  logConnectionEvents(client, cfg, log);
  client.on('complete', (completion) => {
    log('info', 'experiment complete', { round: completion.round, sha256: completion.checkpointSha256 });
    crossSite.start(completion);
  });

  const stopped = stopOnSignals({ cfg, client, trainer, logger, crossSite, stopSignal: opts.stopSignal });
  client.start();
  log('info', `site ${cfg.siteId} started; coordinator ${cfg.federation.coordinatorUrl}, budget ${cfg.memoryBudgetMB} MB${cfg.logFile ? `; JSON log ${cfg.logFile}` : ''}`);
  return stopped;
}

/** Prepares each announced experiment, trains every round task and hands the trained model to onTrained. */
function serveRoundTasks(client: CoordinatorClient, trainer: FederatedSiteTrainer, log: LogFn, onTrained: (local: LocalModel) => void): void {
  client.on('experiment', (exp) => {
    trainer
      .prepare(exp)
      .then(() => client.setSiteInfo(trainer.siteInfo()))
      .catch((e) => log('error', `cannot take part in experiment '${exp.id}': ${errorMessage(e)} (each round task will be declined with this reason)`));
  });
  client.onTask(async (task, ctl) => {
    await trainer.prepare(task.experiment);
    client.setSiteInfo(trainer.siteInfo());
    log('info', `round ${task.round}: training ${task.steps} steps`, { round: task.round, attempt: task.attempt, steps: task.steps, proximalMu: task.fit.proximalMu, localTensors: task.fit.localTensors.length });
    const out = await trainer.runRound({
      round: task.round,
      steps: task.steps,
      global: task.global,
      fit: task.fit,
      learningRate: task.experiment.learningRate,
      signal: ctl.signal,
      onProgress: (done, total, phase) => ctl.progress(done, total, phase),
    });
    onTrained({ round: task.round, weights: out.update });
    log('info', `round ${task.round}: trained, uploading`, { round: task.round, loss: out.metrics.loss, dice: out.metrics.dice, timeMs: Math.round(out.metrics.timeMs) });
    return out;
  });
}

/** One console/log line per connection event the operator should see. */
function logConnectionEvents(client: CoordinatorClient, cfg: SiteConfig, log: LogFn): void {
  client.on('connected', () => log('info', `connected and authenticated with ${cfg.federation?.coordinatorUrl}`));
  client.on('disconnected', ({ reason }) => log('warn', `disconnected from the coordinator: ${reason}; reconnecting`));
  client.on('checkpoint-refused', ({ round, code, message }) => log('error', `refused the checkpoint of round ${round}: ${message}`, { round, code }));
  client.on('declined', ({ round, attempt, code, reason }) => log('warn', `told the coordinator this site cannot take part in round ${round} (attempt ${attempt}): ${reason}`, { code }));
  client.on('rejected', ({ round, message }) => log('warn', `update of round ${round} rejected: ${message}`, { round }));
}

type LocalModel = { round: number; weights: NamedWeights };

/**
 * Cross-site validation once the experiment is complete: the final model (and, when asked, the
 * site's last local model) on this site's test split; only per-class means leave the site.
 */
class CrossSiteValidation {
  /** The site's model after its last local training (cross-site validation's 'local' model). */
  private lastLocal: LocalModel | null = null;
  /** The running evaluation; the daemon waits for it (abandoned) before it exits. */
  pending: Promise<void> = Promise.resolve();
  private readonly stopController = new AbortController();

  constructor(
    private readonly cfg: SiteConfig,
    private readonly client: CoordinatorClient,
    private readonly log: LogFn,
  ) {}

  recordLocal(local: LocalModel): void {
    this.lastLocal = local;
  }

  start(completion: ClientEvents['complete']): void {
    const { cfg, client, log } = this;
    const experiment = client.experimentDescription;
    if (!experiment || !cfg.federation) return;
    if (cfg.federation.withhold.includes('dice')) {
      log('info', "cross-site validation skipped: the site withholds 'dice' reports (federation.withhold)");
      return;
    }
    const signal = this.stopController.signal;
    this.pending = runFinalEvaluations({
      cfg,
      experiment,
      completion,
      local: this.lastLocal,
      evaluateLocal: cfg.federation.evaluateLocalModel,
      report: (body) => client.reportFinalEvaluation(body),
      log,
      signal,
    }).catch((e) => {
      if (signal.aborted) log('info', 'cross-site validation abandoned: the site is stopping');
      else log('error', `cross-site validation failed: ${errorMessage(e)}`);
    });
  }

  /** Stops a running evaluation at its next check. */
  abandon(): void {
    this.stopController.abort();
  }
}

interface StopContext {
  cfg: SiteConfig;
  client: CoordinatorClient;
  trainer: FederatedSiteTrainer;
  logger: ProcessLog;
  crossSite: CrossSiteValidation;
  stopSignal?: AbortSignal;
}

/**
 * Resolves with the exit once SIGTERM/SIGINT, the stop signal or a permanent authentication refusal
 * stops the daemon, after the client has disconnected and a running evaluation has ended.
 */
function stopOnSignals({ cfg, client, trainer, logger, crossSite, stopSignal }: StopContext): Promise<DaemonExit> {
  const log = logger.log;
  return new Promise<DaemonExit>((resolve) => {
    let exit: DaemonExit | null = null;
    const stop = (why: string, result: DaemonExit) => {
      if (exit) return;
      exit = result;
      log(result.exitCode === SITE_EXIT.stopped ? 'info' : 'error', `stopping (${why})`);
      crossSite.abandon();
      client
        .stop()
        .then(() => crossSite.pending)
        .catch((e) => log('error', errorMessage(e)))
        .finally(() => {
          trainer.dispose();
          logger.flush();
          resolve(result);
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM', { exitCode: SITE_EXIT.stopped }));
    process.once('SIGINT', () => stop('SIGINT', { exitCode: SITE_EXIT.stopped }));
    stopSignal?.addEventListener('abort', () => stop('stop requested', { exitCode: SITE_EXIT.stopped }), { once: true });
    client.on('auth-failed', ({ code, message, permanent }) => {
      if (!permanent) return; // logged by the connection with its retry time
      const reason = `the coordinator at ${cfg.federation?.coordinatorUrl} refuses this site for good (${code}): ${message}`;
      log('error', reason, { code });
      stop(`authentication refused: ${code}; retrying cannot fix it`, { exitCode: SITE_EXIT.authRefused, reason });
    });
  });
}
