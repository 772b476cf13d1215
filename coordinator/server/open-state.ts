/**
 * The coordinator's durable side, opened before anything listens: the locked state directory,
 * the state DB (refusing a lost one), the event hub and health monitor on top of it, the
 * checkpoint store after crash recovery, the enrolled sites, and the round-0 model of a new
 * experiment. On any failure everything opened so far is closed again, in reverse order.
 */
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Experiment } from '../../shared/config/coordinator.ts';
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import type { Message } from '../../shared/protocol/messages.ts';
import { encodeExperimentFile } from '../../shared/protocol/experiment-file.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import { StateDb, recoverCoordinatorState, type RecoveryReport } from '../store/index.ts';
import type { Strategy } from '../strategies/index.ts';
import { CheckpointService } from './checkpoint-service.ts';
import { EventHub, type CoordinatorEventName, type CoordinatorEvents } from './events.ts';
import { ensureExperimentRecord, writeInitialModel } from './experiment.ts';
import { CoordinatorHealth, probeStorage } from './health.ts';
import type { Log } from './log.ts';
import { refuseLostStateDb } from './repair.ts';
import type { CoordinatorSetup } from './setup.ts';
import { lockStateDir } from './state-lock.ts';

/** Typed view of `events`. */
export interface CoordinatorEventEmitter extends EventEmitter {
  on<N extends CoordinatorEventName>(name: N, listener: (payload: CoordinatorEvents[N]) => void): this;
  once<N extends CoordinatorEventName>(name: N, listener: (payload: CoordinatorEvents[N]) => void): this;
  off<N extends CoordinatorEventName>(name: N, listener: (payload: CoordinatorEvents[N]) => void): this;
}

export interface StateOptions {
  log: Log;
  experimentMessage: Message<'experiment'>;
  strategy: Strategy;
  initialWeights?: (experiment: Experiment) => NamedWeights | Promise<NamedWeights>;
  repeatSummaryIntervalMs?: number;
  resume?: boolean;
  health?: { probeMs?: number; unhealthyProbeMs?: number; outageLimitMs?: number; integrityMs?: number };
}

export interface OpenedState {
  db: StateDb;
  hub: EventHub;
  emitter: CoordinatorEventEmitter;
  health: CoordinatorHealth;
  checkpoints: CheckpointService;
  recovery: RecoveryReport;
  /** Closes the DB and releases the state-directory lock (when start-up fails after this point). */
  release(): void;
  /** Releases only the state-directory lock (the normal stop closes the rest itself). */
  unlock(): void;
}

/** Creates and locks the state directory, then opens the state in it (see the module comment). */
export async function openCoordinatorState(setup: CoordinatorSetup, o: StateOptions): Promise<OpenedState> {
  try {
    mkdirSync(setup.stateDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new PatchFedError('state-dir-unwritable', `Cannot create the state directory ${setup.stateDir}: ${errorMessage(e)}.`, { subject: setup.stateDir });
  }
  const unlock = lockStateDir(setup.stateDir);
  const cleanup: (() => void)[] = [unlock];
  const release = (): void => {
    for (const f of [...cleanup].reverse()) {
      try {
        f();
      } catch {
        // best effort while failing
      }
    }
  };
  try {
    const dbPath = join(setup.stateDir, 'state.db');
    const db = openStateDb(setup.stateDir, dbPath);
    cleanup.push(() => db.close());
    db.setEventRetention(setup.config.limits.maxEventRows);
    const emitter = new EventEmitter() as CoordinatorEventEmitter;
    emitter.setMaxListeners(100);
    const exp = setup.config.experiment;
    const hub = new EventHub(db, emitter, o.log, exp.id, o.repeatSummaryIntervalMs);
    const health = monitorHealth(setup.stateDir, dbPath, hub, o);
    const checkpoints = new CheckpointService(setup.stateDir, exp.id, setup.keys, setup.keyId, (kind, message) => o.log('info', message, { event: kind }), encodeExperimentFile(o.experimentMessage));
    const recovery = recoverCoordinatorState(db, checkpoints.store, (e) => o.log('info', e.message, { event: e.kind }));
    ensureExperimentRecord(db, exp);
    enrolSites(db, setup.sites, exp.id);
    if (o.resume) resumeStoppedExperiment(db, exp, hub, o.log);
    await ensureInitialCheckpoint(db, checkpoints, exp, o);
    // Stateful strategies (server optimiser, privacy ledger) read their saved state now, so a
    // checkpoint that lacks it stops start-up with the reason instead of the first round.
    o.strategy.restore?.(checkpoints.savedState());
    return { db, hub, emitter, health, checkpoints, recovery, release, unlock };
  } catch (e) {
    release();
    throw e;
  }
}

/** A lost state.db must not make recovery delete every signed checkpoint as "never committed". */
function openStateDb(stateDir: string, dbPath: string): StateDb {
  if (!existsSync(dbPath)) refuseLostStateDb(stateDir, dbPath);
  const db = StateDb.open(dbPath);
  try {
    if (db.createdNew) refuseLostStateDb(stateDir, dbPath);
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}

/** Storage and DB health, with every change noted in the event log (and so on the dashboard). */
function monitorHealth(stateDir: string, dbPath: string, hub: EventHub, o: StateOptions): CoordinatorHealth {
  return new CoordinatorHealth({
    log: o.log,
    probe: () => probeStorage(stateDir),
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
    ...o.health,
  });
}

/** A new experiment's round-0 model, committed; then the latest complete round's checkpoint is current. */
async function ensureInitialCheckpoint(db: StateDb, checkpoints: CheckpointService, exp: Experiment, o: StateOptions): Promise<void> {
  if (!db.lastCompleted(exp.id)) {
    const written = o.initialWeights ? checkpoints.writeWeights(0, await o.initialWeights(exp)) : writeInitialModel(checkpoints, exp);
    db.commitInitialCheckpoint(exp.id, written.version);
    o.log('info', `initial global model written as checkpoint v${written.version}`, { bytes: written.sizeBytes });
  }
  const version = db.lastCompleted(exp.id)?.checkpointVersion;
  if (version === undefined || version === null) throw new PatchFedError('E_STATE', `experiment '${exp.id}' has no committed checkpoint after start-up`);
  checkpoints.setCurrent(version);
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
