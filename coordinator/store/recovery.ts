/**
 * Start-up reconciliation of the checkpoint store and the state DB after a crash.
 *
 * Write ordering during a round: (1) the checkpoint is written and fsynced (store.write),
 * (2) the round is marked complete with that version in one DB transaction, (3) only then is
 * the new global announced to sites. So at any crash point:
 *  - a checkpoint newer than every committed version was never announced: it is REMOVED (not
 *    adopted). Adopting would need the round's bookkeeping (which updates counted, deadline) that
 *    was never committed; redoing the round costs one round of compute and keeps the DB the
 *    single source of truth. Its version number is reused, which is safe because nobody saw it.
 *  - an open/aggregating round is marked failed; the scheduler reopens it as attempt + 1.
 *  - if the newest complete round's checkpoint is missing or corrupt (disk fault; crashes cannot
 *    cause it given the ordering), that round is marked failed and the check moves to the
 *    previous complete round, so `lastCompletedRound` always has an intact checkpoint.
 */
import { versionDirName } from './checkpoint-meta.ts';
import type { CheckpointStore, StoreRecoveryReport } from './checkpoints.ts';
import type { RoundRecord, RoundRetry, StateDb } from './state-db.ts';

export interface RecoveryReport {
  store: StoreRecoveryReport;
  retries: RoundRetry[];
  /** Versions deleted because no complete round refers to them. */
  orphansRemoved: number[];
  /** Complete rounds whose checkpoint was lost or corrupt, now failed. */
  invalidated: RoundRecord[];
  /** Newest complete round per experiment after recovery. */
  lastCompleted: Record<string, RoundRecord | undefined>;
}

/**
 * Runs the store's repair, then the DB's, then reconciles the two. Store log events are
 * recorded in the DB event log and passed on to `log`.
 */
export function recoverCoordinatorState(
  db: StateDb,
  store: CheckpointStore,
  log: (event: { kind: string; message: string }) => void = () => {},
): RecoveryReport {
  const storeReport = store.recover();
  for (const e of storeReport.events) {
    db.recordEvent({ kind: e.kind, message: e.message });
    log(e);
  }

  const retries = db.recoverAfterCrash();
  for (const r of retries) log({ kind: 'round-retry', message: `Round ${r.round} of '${r.experimentId}' interrupted; retrying as attempt ${r.nextAttempt}.` });

  const committed = db.maxCommittedCheckpointVersion() ?? 0;
  const orphansRemoved: number[] = [];
  for (const meta of store.list()) {
    if (meta.version <= committed) continue;
    store.remove(meta.version, 'never committed: the coordinator stopped before recording its round');
    orphansRemoved.push(meta.version);
    const message = `Removed checkpoint ${versionDirName(meta.version)} (round ${meta.round}): written but never committed before the restart.`;
    const experimentId = db.getExperiment(meta.experimentId) ? meta.experimentId : undefined;
    db.recordEvent({ kind: 'checkpoint-removed', experimentId, round: meta.round, message });
    log({ kind: 'checkpoint-removed', message });
  }

  const invalidated: RoundRecord[] = [];
  const lastCompleted: Record<string, RoundRecord | undefined> = {};
  for (const experiment of db.listExperiments()) {
    let last = db.lastCompleted(experiment.id);
    while (last) {
      const check = store.verify(last.checkpointVersion!);
      if (check.ok && check.meta.experimentId === experiment.id && check.meta.round === last.round) break;
      const reason = check.ok
        ? `checkpoint ${versionDirName(last.checkpointVersion!)} belongs to experiment '${check.meta.experimentId}' round ${check.meta.round}`
        : check.reason;
      store.quarantine(last.checkpointVersion!, reason);
      invalidated.push(db.invalidateCompletedRound(last.id, `checkpoint lost: ${reason}`));
      const message = `Round ${last.round} of '${experiment.id}' had no intact checkpoint (${reason}); it will be redone.`;
      db.recordEvent({ kind: 'checkpoint-lost', experimentId: experiment.id, round: last.round, message });
      log({ kind: 'checkpoint-lost', message });
      last = db.lastCompleted(experiment.id);
    }
    lastCompleted[experiment.id] = last;
  }
  return { store: storeReport, retries, orphansRemoved, invalidated, lastCompleted };
}
