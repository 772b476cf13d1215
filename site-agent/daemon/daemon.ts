/**
 * The site agent daemon (`patchfed site --config ...`): proves its backend, connects to the pinned
 * coordinator (reconnecting forever), and for every round task trains the global model on the
 * local data inside the declared memory budget and sends back the encrypted, signed update.
 * SIGTERM/SIGINT: the running step finishes or is abandoned, the client disconnects cleanly;
 * every file PatchFed writes is written atomically, so nothing is left half-written.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import { assertTrainableBackend, parseBackendChoice, selectBackend } from '../backend/index.ts';
import { loadPublicKeyFile, loadSecretKeyFile } from '../../shared/crypto/keys.ts';
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import { FederatedSiteTrainer } from '../run/federated-site.ts';
import { loadSiteConfig } from '../site-config.ts';
import { CoordinatorClient } from './client.ts';

export interface DaemonOptions {
  backend?: string;
  /** Resolve when the daemon should stop (tests); signals are handled regardless. */
  stopSignal?: AbortSignal;
}

export async function runSiteDaemon(configPath: string, opts: DaemonOptions = {}): Promise<void> {
  const cfg = loadSiteConfig(configPath);
  if (!cfg.federation) {
    throw new PatchFedError('E_CONFIG', `site config ${configPath} has no "federation" section (coordinatorUrl, secretKey, publicKey, coordinatorPublicKey)`);
  }
  if (cfg.logFile) mkdirSync(dirname(cfg.logFile), { recursive: true });
  const logger = pino({ base: { site: cfg.siteId } }, cfg.logFile ? pino.destination({ dest: cfg.logFile, sync: true }) : pino.destination(1));
  const keys = loadSecretKeyFile(cfg.federation.secretKey);
  const coordinatorPublicKey = loadPublicKeyFile(cfg.federation.coordinatorPublicKey);

  const backend = await selectBackend(parseBackendChoice(opts.backend ?? cfg.backend), (m) => logger.info({ backend: true }, m));
  assertTrainableBackend(backend);
  logger.info({ backend: backend.name, package: backend.package, version: backend.version, gpu: backend.gpu }, `backend ${backend.name} (${backend.package} ${backend.version}), gpu ${backend.gpu}`);

  const trainer = new FederatedSiteTrainer(cfg, backend, (m) => logger.info(m));
  const client = new CoordinatorClient({
    url: cfg.federation.coordinatorUrl,
    siteId: cfg.siteId,
    keys,
    coordinatorPublicKey,
    caCertificate: cfg.federation.caCertificate,
    log: (level, msg, fields) => logger[level === 'debug' ? 'debug' : level](fields ?? {}, msg),
  });
  client.setSiteInfo(trainer.siteInfo());

  client.on('experiment', (exp) => {
    trainer
      .prepare(exp)
      .then(() => client.setSiteInfo(trainer.siteInfo()))
      .catch((e) => logger.error({ err: errorMessage(e) }, `cannot take part in experiment '${exp.id}': ${errorMessage(e)}`));
  });
  client.onTask(async (task, ctl) => {
    await trainer.prepare(task.experiment);
    client.setSiteInfo(trainer.siteInfo());
    logger.info({ round: task.round, attempt: task.attempt, steps: task.steps, proximalMu: task.fit.proximalMu, localTensors: task.fit.localTensors.length }, `round ${task.round}: training ${task.steps} steps`);
    const out = await trainer.runRound({
      round: task.round,
      steps: task.steps,
      global: task.global,
      fit: task.fit,
      learningRate: task.experiment.learningRate,
      signal: ctl.signal,
      onProgress: (done, total, phase) => ctl.progress(done, total, phase),
    });
    logger.info({ round: task.round, loss: out.metrics.loss, dice: out.metrics.dice, timeMs: Math.round(out.metrics.timeMs) }, `round ${task.round}: trained, uploading`);
    return out;
  });
  client.on('connected', () => logger.info('connected and authenticated'));
  client.on('disconnected', ({ reason }) => logger.warn(`disconnected: ${reason}`));
  client.on('auth-failed', ({ message }) => logger.error(`authentication failed: ${message}`));
  client.on('checkpoint-refused', ({ round, message }) => logger.error({ round }, `refused the checkpoint: ${message}`));
  client.on('rejected', ({ round, message }) => logger.warn({ round }, `update rejected: ${message}`));
  client.on('complete', ({ round, checkpointSha256 }) => logger.info({ round, sha256: checkpointSha256 }, 'experiment complete'));

  const stopped = new Promise<void>((resolve) => {
    const stop = (why: string) => {
      logger.info(`stopping (${why})`);
      client
        .stop()
        .catch((e) => logger.error(errorMessage(e)))
        .finally(() => {
          trainer.dispose();
          logger.flush?.();
          resolve();
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    opts.stopSignal?.addEventListener('abort', () => stop('stop requested'), { once: true });
  });
  client.start();
  logger.info(`site ${cfg.siteId} started; coordinator ${cfg.federation.coordinatorUrl}, budget ${cfg.memoryBudgetMB} MB`);
  await stopped;
}
