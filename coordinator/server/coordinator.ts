/**
 * startCoordinator: the coordinator service in one call. HTTP(S) + socket.io on host:port,
 * `GET /healthz`, the dashboard (token-protected), site sessions, and the round scheduler, on
 * top of the state directory (checkpoint store + state DB), which it recovers first.
 */
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import express from 'express';
import { Server as SocketIoServer } from 'socket.io';
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import type { CoordinatorConfig, Experiment } from '../../shared/config/coordinator.ts';
import { encodeExperimentFile } from '../../shared/protocol/experiment-file.ts';
import { SOCKET_IO_MAX_HTTP_BUFFER_SIZE } from '../../shared/protocol/limits.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import { mountDashboard } from '../dashboard/index.ts';
import type { DashboardSnapshot } from '../dashboard/types.ts';
import { StateDb, recoverCoordinatorState, type RecoveryReport } from '../store/index.ts';
import { CheckpointService } from './checkpoint-service.ts';
import { ConnectionGate, type GateStats } from './connection-gate.ts';
import { exposureWarnings } from './exposure.ts';
import { EventHub, type CoordinatorEventName, type CoordinatorEvents } from './events.ts';
import { CoordinatorHealth, probeStorage, type HealthStatus } from './health.ts';
import { refuseLostStateDb } from './repair.ts';
import { describeExperiment, ensureExperimentRecord, experimentStrategy, signedExperimentMessage, writeInitialModel } from './experiment.ts';
import { silentLog, type Log } from './log.ts';
import { RoundScheduler, type ExperimentEnd } from './scheduler.ts';
import { SiteSessions } from './sessions.ts';
import { prepareCoordinator, type CoordinatorSetup } from './setup.ts';
import { SnapshotProvider } from './snapshot.ts';
import { CrossSiteValidation } from './cross-site.ts';
import type { CrossSiteTable } from '../../shared/protocol/cross-site-table.ts';
import { lockStateDir } from './state-lock.ts';
import { UploadService } from './uploads.ts';

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

/** Typed view of `events`. */
export interface CoordinatorEventEmitter extends EventEmitter {
  on<N extends CoordinatorEventName>(name: N, listener: (payload: CoordinatorEvents[N]) => void): this;
  once<N extends CoordinatorEventName>(name: N, listener: (payload: CoordinatorEvents[N]) => void): this;
  off<N extends CoordinatorEventName>(name: N, listener: (payload: CoordinatorEvents[N]) => void): this;
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
  const description = describeExperiment(exp);
  const experimentMessage = signedExperimentMessage(description, setup.keys);
  const strategy = experimentStrategy(exp);
  const enrolled = [...setup.sites.keys()].sort();

  try {
    mkdirSync(setup.stateDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new PatchFedError('state-dir-unwritable', `Cannot create the state directory ${setup.stateDir}: ${errorMessage(e)}.`, { subject: setup.stateDir });
  }
  const unlock = lockStateDir(setup.stateDir);
  const cleanup: (() => void)[] = [unlock];
  const fail = (e: unknown): never => {
    for (const f of cleanup.reverse()) {
      try {
        f();
      } catch {
        // best effort while failing
      }
    }
    throw e;
  };

  let db: StateDb;
  let checkpoints: CheckpointService;
  let recovery: RecoveryReport;
  const emitter = new EventEmitter() as CoordinatorEventEmitter;
  emitter.setMaxListeners(100);
  let hub: EventHub;
  let health: CoordinatorHealth;
  const dbPath = join(setup.stateDir, 'state.db');
  try {
    // A lost state.db must not make recovery delete every signed checkpoint as "never committed".
    if (!existsSync(dbPath)) refuseLostStateDb(setup.stateDir, dbPath);
    db = StateDb.open(dbPath);
    cleanup.push(() => db.close());
    if (db.createdNew) refuseLostStateDb(setup.stateDir, dbPath);
    db.setEventRetention(setup.config.limits.maxEventRows);
    hub = new EventHub(db, emitter, log, exp.id, options.repeatSummaryIntervalMs);
    health = new CoordinatorHealth({
      log,
      probe: () => probeStorage(setup.stateDir),
      checkDatabase: () => {
        const problem = StateDb.checkIntegrity(dbPath);
        return problem === null ? null : `state database ${dbPath} is corrupt (${problem.slice(0, 200)}); run 'patchfed coordinator --config <config> --repair'`;
      },
      onChange: (change, status) => {
        const message =
          change.kind === 'unhealthy'
            ? `Coordinator unhealthy: ${change.problem.message}. Retrying; nothing already stored is affected.`
            : `Coordinator healthy again: ${change.message}.`;
        hub.note('health', { ok: status.ok, message }, 'health', change.kind === 'unhealthy' ? 'error' : 'info');
      },
      ...options.health,
    });
    checkpoints = new CheckpointService(setup.stateDir, exp.id, setup.keys, setup.keyId, (kind, message) => log('info', message, { event: kind }), encodeExperimentFile(experimentMessage));
    recovery = recoverCoordinatorState(db, checkpoints.store, (e) => log('info', e.message, { event: e.kind }));
    ensureExperimentRecord(db, exp);
    enrolSites(db, setup.sites, exp.id);
    if (options.resume) resumeStoppedExperiment(db, exp, hub, log);
    if (!db.lastCompleted(exp.id)) {
      const written = options.initialWeights ? checkpoints.writeWeights(0, await options.initialWeights(exp)) : writeInitialModel(checkpoints, exp);
      db.commitInitialCheckpoint(exp.id, written.version);
      log('info', `initial global model written as checkpoint v${written.version}`, { bytes: written.sizeBytes });
    }
    checkpoints.setCurrent(db.lastCompleted(exp.id)!.checkpointVersion!);
    // Stateful strategies (server optimiser, privacy ledger) read their saved state now, so a
    // checkpoint that lacks it stops start-up with the reason instead of the first round.
    strategy.restore?.(checkpoints.savedState());
  } catch (e) {
    return fail(e);
  }

  const uploadsDir = join(setup.stateDir, 'uploads');
  rmSync(uploadsDir, { recursive: true, force: true }); // partial uploads do not survive a restart
  let scheduler: RoundScheduler;
  const live = () => scheduler?.live ?? null;
  const uploads = new UploadService(uploadsDir, setup.keys.boxSecretKey, {
    live,
    db,
    hub,
    log,
    updateNormBound: exp.updateNormBound,
    maxUpdateNormRatio: exp.maxUpdateNormRatio,
    maxSamplesPerSite: exp.maxSamplesPerSite,
    siteMaxSamples: (id) => setup.sites.get(id)?.maxSamples,
  });

  const app = express();
  app.disable('x-powered-by');
  const server: HttpServer = setup.tls ? createHttpsServer({ cert: setup.tls.cert, key: setup.tls.key }, app) : createHttpServer(app);
  // Before authentication a connection is held to what connection-gate.ts allows; websocket only
  // (sites never used polling; the dashboard page neither), so every connection is one TCP socket.
  const gate = new ConnectionGate(setup.config.limits, (reason, client, message) =>
    hub.noteRepeated(reason, 'connection-refused', { reason, message }, null, 'warn', client),
  );
  const io = new SocketIoServer(server, {
    maxHttpBufferSize: SOCKET_IO_MAX_HTTP_BUFFER_SIZE,
    serveClient: false,
    cors: undefined,
    transports: ['websocket'],
    allowRequest: gate.allowRequest,
    connectTimeout: setup.config.limits.handshakeTimeoutSeconds * 1000,
    // A site's training step blocks its event loop (tfjs kernels are synchronous): a thesis-size
    // step on a busy CPU can take a minute. Unauthenticated connections are bounded by the
    // connection gate's handshake timeout, not by pings, so authenticated sites get slack here.
    pingInterval: 25_000,
    pingTimeout: 120_000,
  });
  gate.attach(io);

  let sessions: SiteSessions;
  const crossSite = new CrossSiteValidation({ db, hub, log, experiment: { id: exp.id, rounds: exp.rounds, labels: exp.labels }, enrolled, checkpoints });
  scheduler = new RoundScheduler({ experiment: exp, enrolled, db, checkpoints, strategy, hub, log, sessions: () => sessions, health, uploadBufferBytes: setup.config.limits.uploadBufferMB * 1024 * 1024 });
  sessions = new SiteSessions(io, {
    setup,
    db,
    hub,
    log,
    uploads,
    checkpoints,
    experimentMessage,
    gate,
    live,
    onSiteOnline: (id) => scheduler.siteOnline(id),
    onSiteOffline: (id) => scheduler.siteOffline(id),
    onFinalEvaluation: (site, payload) => crossSite.handle(site, payload),
  });
  const snapshots = new SnapshotProvider({ experiment: exp, enrolled, db, checkpoints, sessions: () => sessions, live, health: () => health.status() });
  const snapshot = (): DashboardSnapshot => ({ ...snapshots.snapshot(), crossSite: crossSite.table() });

  // 503 while unhealthy, with the reasons: load balancers and supervisors see it, and so do people.
  app.get('/healthz', (_req, res) => {
    const status = health.status();
    let lastCompletedRound: number | null = null;
    try {
      lastCompletedRound = db.lastCompletedRound(exp.id);
    } catch (e) {
      health.noteFailure('database', 'the state database cannot be read', e);
    }
    const body = { ok: status.ok, experiment: exp.id, lastCompletedRound, end: scheduler.end?.kind ?? null, problems: status.problems };
    res.status(status.ok ? 200 : 503).set('Cache-Control', 'no-store').json(body);
  });
  hub.dashboard = mountDashboard(app, io, {
    token: setup.config.dashboardToken,
    admitViewer: (conn) => gate.viewerAuthenticated(conn),
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

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(setup.config.port, setup.config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    io.close();
    return fail(new PatchFedError('listen-failed', `Coordinator cannot listen on ${setup.config.host}:${setup.config.port}: ${errorMessage(e)}.`, { subject: `${setup.config.host}:${setup.config.port}` }));
  }
  const port = (server.address() as AddressInfo).port;
  const host = setup.config.host.includes(':') ? `[${setup.config.host}]` : setup.config.host;
  const url = `${setup.tls ? 'https' : 'http'}://${host}:${port}`;
  log('info', `coordinator listening on ${url}`, { url, experiment: exp.id, sites: enrolled.length, lastCompletedRound: db.lastCompletedRound(exp.id) });
  for (const warning of exposureWarnings(setup.config.host, setup.tls !== undefined)) log('warn', warning, { host: setup.config.host });

  let resolveFinished!: (end: ExperimentEnd) => void;
  const finished = new Promise<ExperimentEnd>((resolve) => (resolveFinished = resolve));
  const running = scheduler.run().then(
    (end) => {
      if (end) resolveFinished(end);
    },
    (e) => {
      log('error', 'round scheduler stopped by an internal error', { error: errorMessage(e), stack: (e as Error)?.stack });
      hub.note('internal-error', { message: `Round scheduler stopped: ${errorMessage(e)}` }, null, 'error');
      // Never sit without a scheduler: the process is restarted by its supervisor instead.
      health.failFatal(`round scheduler stopped: ${errorMessage(e)}`);
    },
  );
  health.start();
  void health.fatal.then(() => scheduler.stop());

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      health.stop();
      scheduler.stop();
      await running;
      hub.dashboard?.close();
      gate.close();
      sessions.disconnectAll();
      await new Promise<void>((resolve) => {
        io.close(() => resolve());
        server.closeAllConnections?.();
      });
      await uploads.close();
      checkpoints.close();
      hub.close();
      db.close();
      unlock();
      log('info', 'coordinator stopped');
    })();
    return stopping;
  };

  return {
    url,
    port,
    events: emitter,
    db,
    recovery,
    finished,
    stop,
    connections: () => gate.stats(),
    fatal: health.fatal,
    health: () => health.status(),
    snapshot,
    crossSite: () => crossSite.table(),
    state: () => {
      const l = live();
      return {
        experimentId: exp.id,
        lastCompletedRound: db.lastCompletedRound(exp.id) ?? 0,
        currentRound:
          l && !l.closed
            ? { round: l.round, attempt: l.attempt, selected: [...l.sites.keys()], accepted: [...l.accepted.keys()], rejected: [...l.rejected.keys()], deadline: l.deadline }
            : null,
        onlineSites: sessions.onlineIds(),
        end: scheduler.end,
      };
    },
    checkpoints: () => checkpoints.store.list().map((m) => ({ version: m.version, round: m.round, sha256: m.sha256, sizeBytes: m.sizeBytes })),
    globalWeights: async () => {
      const c = checkpoints.latest;
      return { round: c.meta.round, version: c.meta.version, sha256: c.meta.sha256, weights: await checkpoints.weights() };
    },
  };
}

/**
 * `--resume`: when the next round has used up maxRoundAttempts, forgive its attempts so far
 * (recorded in the DB, with an event). The operator never edits the DB by hand.
 */
function resumeStoppedExperiment(db: StateDb, exp: Experiment, hub: EventHub, log: (level: 'info', msg: string) => void): void {
  const last = db.lastCompleted(exp.id);
  if (!last || last.round >= exp.rounds) {
    log('info', `--resume: experiment '${exp.id}' is not stopped (${last ? `round ${last.round} of ${exp.rounds} complete` : 'not started'}); nothing to resume`);
    return;
  }
  const round = last.round + 1;
  const forgiven = db.resumeBoundary(exp.id, round);
  const failed = db.listRounds(exp.id).filter((r) => r.round === round && r.status === 'failed' && r.attempt > forgiven).length;
  if (failed === 0) {
    log('info', `--resume: round ${round} has no failed attempt to forgive; nothing to resume`);
    return;
  }
  const after = db.recordResume(exp.id, round, `operator --resume after ${failed} failed attempt(s)`);
  hub.note(
    'experiment-resumed',
    { round, message: `Experiment '${exp.id}' resumed by the operator (--resume): round ${round} gets ${exp.maxRoundAttempts} new attempt(s) after attempt ${after}.` },
    'experiment-resumed',
  );
}

/** Enrolled sites in the DB, with their key fingerprints; a changed key is a rotation by the admin. */
function enrolSites(db: StateDb, sites: CoordinatorSetup['sites'], experimentId: string): void {
  for (const site of sites.values()) {
    const known = db.getSite(site.id);
    if (known && known.fingerprint === site.fingerprint) continue;
    db.upsertSite({ id: site.id, fingerprint: site.fingerprint }, { allowFingerprintChange: true });
    const message = known
      ? `Site '${site.id}' re-enrolled with a new key ${site.fingerprint} (was ${known.fingerprint}).`
      : `Site '${site.id}' enrolled with key ${site.fingerprint}.`;
    db.recordEvent({ kind: 'enrol', message, experimentId, siteId: site.id });
  }
}
