/**
 * startCoordinator: the coordinator service in one call. HTTP(S) + socket.io on host:port,
 * `GET /healthz`, the dashboard (token-protected), site sessions, and the round scheduler, on
 * top of the state directory (checkpoint store + state DB), which it recovers first.
 * The steps live in their own modules: open-state.ts (state directory, DB, checkpoints,
 * recovery), http-server.ts (server, socket.io, listening), healthz.ts, scheduler-link.ts (the
 * sessions' view of the scheduler); this module wires them together and stops them in order.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { CoordinatorConfig, Experiment } from '../../shared/config/coordinator.ts';
import { errorMessage } from '../../shared/errors.ts';
import type { Message } from '../../shared/protocol/messages.ts';
import type { CrossSiteTable } from '../../shared/protocol/cross-site-table.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import { mountDashboard } from '../dashboard/index.ts';
import type { DashboardSnapshot } from '../dashboard/types.ts';
import type { StateDb, RecoveryReport } from '../store/index.ts';
import type { Strategy } from '../strategies/index.ts';
import type { GateStats } from './connection-gate.ts';
import { CrossSiteValidation } from './cross-site.ts';
import { describeExperiment, experimentStrategy, signedExperimentMessage } from './experiment.ts';
import { exposureWarnings } from './exposure.ts';
import type { HealthStatus } from './health.ts';
import { mountHealthz } from './healthz.ts';
import { createCoordinatorServer, listenCoordinator, type CoordinatorServer } from './http-server.ts';
import { silentLog, type Log } from './log.ts';
import { openCoordinatorState, type CoordinatorEventEmitter, type OpenedState } from './open-state.ts';
import { RoundScheduler, type ExperimentEnd } from './scheduler.ts';
import { SchedulerLink } from './scheduler-link.ts';
import { SiteSessions } from './sessions.ts';
import { prepareCoordinator, type CoordinatorSetup } from './setup.ts';
import { SnapshotProvider } from './snapshot.ts';
import { UploadService } from './uploads.ts';

export type { CoordinatorEventEmitter } from './open-state.ts';

export interface StartCoordinatorOptions {
  /** Directory relative paths in the config are resolved against (the config file's directory). */
  baseDir?: string;
  log?: Log;
  /** The round-0 model of a new experiment; default: built from experiment.model with tfjs (CPU). */
  initialWeights?: (experiment: Experiment) => NamedWeights | Promise<NamedWeights>;
  /** Repeated refusals (connections, authentications) are logged once per this interval (ms; default 60 s). */
  repeatSummaryIntervalMs?: number;
  /**
   * Continue an experiment stopped by maxRoundAttempts: the failed attempts of the stopped round
   * so far no longer count (recorded in the DB, so later restarts keep it). No effect otherwise.
   */
  resume?: boolean;
  /** Storage probe interval while healthy / unhealthy, and the outage after which the coordinator gives up (ms). */
  health?: { probeMs?: number; unhealthyProbeMs?: number; outageLimitMs?: number; integrityMs?: number };
}

export interface CoordinatorState {
  experimentId: string;
  lastCompletedRound: number;
  currentRound: { round: number; attempt: number; selected: string[]; accepted: string[]; rejected: string[]; deadline: number } | null;
  onlineSites: string[];
  end: ExperimentEnd | null;
}

export interface CheckpointSummary {
  version: number;
  round: number;
  sha256: string;
  sizeBytes: number;
}

export interface RunningCoordinator {
  /** e.g. http://127.0.0.1:8740 (the actual port when the config says 0). */
  readonly url: string;
  readonly port: number;
  readonly events: CoordinatorEventEmitter;
  /** The state DB (rounds, site updates, per-site metrics, events) for reports. */
  readonly db: StateDb;
  readonly recovery: RecoveryReport;
  state(): CoordinatorState;
  snapshot(): DashboardSnapshot;
  /** The cross-site validation table of the final model (cross-site.ts); null before the experiment completes. */
  crossSite(): CrossSiteTable | null;
  /** Stored checkpoints, oldest first. */
  checkpoints(): CheckpointSummary[];
  /** The current global model (latest complete round), read from its checkpoint file. */
  globalWeights(): Promise<{ round: number; version: number; sha256: string; weights: NamedWeights }>;
  /** Resolves when the experiment completes or stops (the service keeps running). */
  readonly finished: Promise<ExperimentEnd>;
  /** Closes connections, the server and the DB. In-flight round attempts are retried on the next start. */
  stop(): Promise<void>;
  /** Unauthenticated / authenticated connections now, and refusals so far (connection-gate.ts). */
  connections(): GateStats;
  /** Storage and database health, as `/healthz` reports it. */
  health(): HealthStatus;
  /**
   * Resolves with a one-line reason when the coordinator cannot continue (storage gone for too
   * long, state DB corrupt, scheduler stopped): the caller should stop it and exit non-zero.
   */
  readonly fatal: Promise<string>;
}

export async function startCoordinator(config: CoordinatorConfig | unknown, options: StartCoordinatorOptions = {}): Promise<RunningCoordinator> {
  const log = options.log ?? silentLog;
  const setup = prepareCoordinator(config, options.baseDir);
  const exp = setup.config.experiment;
  const experimentMessage = signedExperimentMessage(describeExperiment(exp), setup.keys);
  const strategy = experimentStrategy(exp);
  const state = await openCoordinatorState(setup, {
    log,
    experimentMessage,
    strategy,
    initialWeights: options.initialWeights,
    repeatSummaryIntervalMs: options.repeatSummaryIntervalMs,
    resume: options.resume,
    health: options.health,
  });
  const services = createServices(setup, state, { log, experimentMessage, strategy });
  let address: { url: string; port: number };
  try {
    address = await listenCoordinator(services.net.server, setup);
  } catch (e) {
    services.net.io.close();
    state.release();
    throw e;
  }
  log('info', `coordinator listening on ${address.url}`, { url: address.url, experiment: exp.id, sites: services.enrolled.length, lastCompletedRound: state.db.lastCompletedRound(exp.id) });
  for (const warning of exposureWarnings(setup.config.host, setup.tls !== undefined)) log('warn', warning, { host: setup.config.host });
  const { finished, running } = superviseScheduler(services.scheduler, state, log);
  state.health.start();
  void state.health.fatal.then(() => services.scheduler.stop());
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => (stopping ??= stopInOrder(state, services, running, log));
  return runningCoordinator(exp.id, address, state, services, finished, stop);
}

/** Everything that runs on top of the opened state, wired together (not yet listening). */
interface CoordinatorServices {
  enrolled: string[];
  net: CoordinatorServer;
  link: SchedulerLink;
  uploads: UploadService;
  sessions: SiteSessions;
  scheduler: RoundScheduler;
  crossSite: CrossSiteValidation;
  snapshot(): DashboardSnapshot;
}

function createServices(setup: CoordinatorSetup, state: OpenedState, o: { log: Log; experimentMessage: Message<'experiment'>; strategy: Strategy }): CoordinatorServices {
  const exp = setup.config.experiment;
  const { db, hub, health, checkpoints } = state;
  const { log } = o;
  const enrolled = [...setup.sites.keys()].sort();
  const uploadsDir = join(setup.stateDir, 'uploads');
  rmSync(uploadsDir, { recursive: true, force: true }); // partial uploads do not survive a restart
  const link = new SchedulerLink();
  const uploads = new UploadService(uploadsDir, setup.keys.boxSecretKey, {
    live: link.live,
    db,
    hub,
    log,
    updateNormBound: exp.updateNormBound,
    maxUpdateNormRatio: exp.maxUpdateNormRatio,
    maxSamplesPerSite: exp.maxSamplesPerSite,
    siteMaxSamples: (id) => setup.sites.get(id)?.maxSamples,
  });
  const net = createCoordinatorServer(setup, hub);
  const crossSite = new CrossSiteValidation({ db, hub, log, experiment: { id: exp.id, rounds: exp.rounds, labels: exp.labels }, enrolled, checkpoints });
  const sessions = new SiteSessions(net.io, {
    setup,
    db,
    hub,
    log,
    uploads,
    checkpoints,
    experimentMessage: o.experimentMessage,
    gate: net.gate,
    live: link.live,
    onSiteOnline: link.siteOnline,
    onSiteOffline: link.siteOffline,
    onFinalEvaluation: (site, payload) => crossSite.handle(site, payload),
  });
  const scheduler = new RoundScheduler({
    experiment: exp,
    enrolled,
    db,
    checkpoints,
    strategy: o.strategy,
    hub,
    log,
    sessions: () => sessions,
    health,
    uploadBufferBytes: setup.config.limits.uploadBufferMB * 1024 * 1024,
  });
  link.attach(scheduler);
  const snapshots = new SnapshotProvider({ experiment: exp, enrolled, db, checkpoints, sessions: () => sessions, live: link.live, health: () => health.status() });
  const snapshot = (): DashboardSnapshot => ({ ...snapshots.snapshot(), crossSite: crossSite.table() });
  mountHealthz(net.app, { experimentId: exp.id, db, health, end: () => scheduler.end });
  hub.dashboard = mountDashboard(net.app, net.io, {
    token: setup.config.dashboardToken,
    admitViewer: (conn) => net.gate.viewerAuthenticated(conn),
    log,
    snapshot,
    downloadCheckpoint: (version) => {
      const bytes = checkpoints.artifact(version);
      return bytes ? { fileName: `${exp.id}-v${version}.pfw`, bytes } : null;
    },
    onError: (e) => {
      health.noteFailure('database', 'the dashboard could not read the state database', e);
      log('error', 'dashboard snapshot failed', { error: errorMessage(e) });
    },
  });
  return { enrolled, net, link, uploads, sessions, scheduler, crossSite, snapshot };
}

/**
 * Runs the scheduler: `finished` resolves when the experiment ends; an internal error stops the
 * coordinator as fatal (its supervisor restarts it) rather than leaving it without a scheduler.
 */
function superviseScheduler(scheduler: RoundScheduler, state: OpenedState, log: Log): { finished: Promise<ExperimentEnd>; running: Promise<void> } {
  let resolveFinished: (end: ExperimentEnd) => void = () => {};
  const finished = new Promise<ExperimentEnd>((resolve) => (resolveFinished = resolve));
  const running = scheduler.run().then(
    (end) => {
      if (end) resolveFinished(end);
    },
    (e: unknown) => {
      log('error', 'round scheduler stopped by an internal error', { error: errorMessage(e), stack: e instanceof Error ? e.stack : undefined });
      state.hub.note('internal-error', { message: `Round scheduler stopped: ${errorMessage(e)}` }, null, 'error');
      state.health.failFatal(`round scheduler stopped: ${errorMessage(e)}`);
    },
  );
  return { finished, running };
}

/** Stops the parts in dependency order: no new rounds, no connections, then storage. */
async function stopInOrder(state: OpenedState, services: CoordinatorServices, running: Promise<void>, log: Log): Promise<void> {
  state.health.stop();
  services.scheduler.stop();
  await running;
  state.hub.dashboard?.close();
  services.net.gate.close();
  services.sessions.disconnectAll();
  await new Promise<void>((resolve) => {
    services.net.io.close(() => resolve());
    services.net.server.closeAllConnections?.();
  });
  await services.uploads.close();
  state.checkpoints.close();
  state.hub.close();
  state.db.close();
  state.unlock();
  log('info', 'coordinator stopped');
}

function runningCoordinator(
  experimentId: string,
  address: { url: string; port: number },
  state: OpenedState,
  services: CoordinatorServices,
  finished: Promise<ExperimentEnd>,
  stop: () => Promise<void>,
): RunningCoordinator {
  const { db, checkpoints, health } = state;
  return {
    url: address.url,
    port: address.port,
    events: state.emitter,
    db,
    recovery: state.recovery,
    finished,
    stop,
    connections: () => services.net.gate.stats(),
    fatal: health.fatal,
    health: () => health.status(),
    snapshot: services.snapshot,
    crossSite: () => services.crossSite.table(),
    state: () => {
      const l = services.link.live();
      return {
        experimentId,
        lastCompletedRound: db.lastCompletedRound(experimentId) ?? 0,
        currentRound:
          l && !l.closed
            ? { round: l.round, attempt: l.attempt, selected: [...l.sites.keys()], accepted: [...l.accepted.keys()], rejected: [...l.rejected.keys()], deadline: l.deadline }
            : null,
        onlineSites: services.sessions.onlineIds(),
        end: services.scheduler.end,
      };
    },
    checkpoints: () => checkpoints.store.list().map((m) => ({ version: m.version, round: m.round, sha256: m.sha256, sizeBytes: m.sizeBytes })),
    globalWeights: async () => {
      const c = checkpoints.latest;
      return { round: c.meta.round, version: c.meta.version, sha256: c.meta.sha256, weights: await checkpoints.weights() };
    },
  };
}
