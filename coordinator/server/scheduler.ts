/**
 * The round loop. For round r = last complete + 1 … rounds: wait for enough sites, let the
 * strategy pick them, open the round attempt in the DB, push the task, and close it when every
 * selected site has an accepted or rejected update, or at the deadline. A round with at least
 * minSites accepted updates is aggregated; otherwise the attempt fails and the round is retried
 * (same global model) up to maxRoundAttempts, after which the experiment stops.
 *
 * Crash ordering when a round completes: write the checkpoint durably → commit the round as
 * complete with that version (one DB transaction) → make it current and announce it. A crash
 * before the commit leaves an orphan checkpoint that recovery removes; the round is redone.
 */
import { PatchFedError, errorMessage } from '../../shared/errors.ts';
import type { Experiment } from '../../shared/config/coordinator.ts';
import { PRIVACY_BUDGET_EXHAUSTED } from '../privacy/index.ts';
import type { Strategy } from '../strategies/index.ts';
import type { RoundRecord, StateDb } from '../store/index.ts';
import type { CheckpointService } from './checkpoint-service.ts';
import type { EventHub } from './events.ts';
import type { CoordinatorHealth } from './health.ts';
import { LiveRound } from './live-round.ts';
import { SecureRound } from './secure-round.ts';
import { uploadPlan } from './upload-plan.ts';
import type { Log } from './log.ts';
import type { SiteSessions } from './sessions.ts';

/** Failure reasons that count towards maxRoundAttempts (restarts and storage failures do not). */
const COUNTED_FAILURE = 'attempt failed: ';
/** A round attempt lost to the disk (ENOSPC, EIO, ...): not the sites' fault, so not counted. */
const STORAGE_FAILURE = 'interrupted: storage failure: ';
const RETRY_PAUSE_MS = 1000;
const MAX_STORAGE_RETRY_PAUSE_MS = 30_000;
/** What an operator can do about a stopped experiment (README: maxRoundAttempts). */
export const RESUME_HINT = 'to continue, raise experiment.maxRoundAttempts in the config and restart the coordinator, or restart it with --resume';
/** What an operator can do about an experiment stopped by its ε budget. */
export const PRIVACY_STOP_HINT = 'the last checkpoint is final; training on means spending more privacy (a larger strategy.dp.epsilonBudget), a decision for the data owners';

export interface SchedulerContext {
  experiment: Experiment;
  enrolled: readonly string[];
  db: StateDb;
  checkpoints: CheckpointService;
  strategy: Strategy;
  hub: EventHub;
  log: Log;
  sessions: () => SiteSessions;
  /** Storage failures are reported here and retried instead of stopping the scheduler. */
  health?: CoordinatorHealth;
  /** limits.uploadBufferMB in bytes: shared by the sites uploading in a round (default 64 MiB). */
  uploadBufferBytes?: number;
}

export type ExperimentEnd = { kind: 'complete'; round: number; checkpointVersion: number } | { kind: 'stopped'; round: number; reason: string };

export class RoundScheduler {
  live: LiveRound | null = null;
  end: ExperimentEnd | null = null;
  private stopped = false;
  private wakeUp: (() => void) | null = null;
  /** Sites that were sent a task for this round and have not resolved it. */
  private readonly outstanding = new Map<string, number>();
  private readonly graceUntil: number;

  constructor(private readonly ctx: SchedulerContext) {
    this.graceUntil = Date.now() + ctx.experiment.startupGraceSeconds * 1000;
  }

  /** Runs rounds until the experiment completes or stops, or stop() is called. */
  async run(): Promise<ExperimentEnd | null> {
    const { experiment: exp, db } = this.ctx;
    while (!this.stopped) {
      const last = db.lastCompleted(exp.id);
      if (!last) throw new Error('RoundScheduler: the experiment has no initial checkpoint'); // start-up guarantees one
      if (last.round >= exp.rounds) return this.complete(last);
      const round = last.round + 1;
      const failures = this.countedFailures(round);
      if (failures >= exp.maxRoundAttempts) return this.stopExperiment(round, `round ${round} failed ${failures} time(s) (maxRoundAttempts ${exp.maxRoundAttempts})`);
      await this.waitForSites();
      if (this.stopped) break;
      let live: LiveRound | null;
      try {
        live = this.open(round);
      } catch (e) {
        // Privacy: the strategy refuses a round that would take ε above the budget; the experiment ends here.
        if (e instanceof PatchFedError && e.code === PRIVACY_BUDGET_EXHAUSTED) return this.stopExperiment(round, e.message, PRIVACY_STOP_HINT);
        if (!this.ctx.health?.noteFailure('rounds', `round ${round} could not be opened`, e)) throw e;
        await this.awaitStorage(null);
        continue;
      }
      if (!live) continue;
      const outcome = await live.outcome;
      // Let the acknowledgement of the commit that closed the round go out before the next task.
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (outcome === 'stopped') {
        this.failQuietly(live.record, 'interrupted: the coordinator was stopped');
        this.live = null;
        this.release(live);
        break;
      }
      // Secure aggregation: the survivors' shares unmask the sum before it can be aggregated.
      if (live.secure) await live.secure.unmask();
      const ok = this.closeRound(live);
      this.live = null;
      this.release(live);
      if (!ok) await this.pause(RETRY_PAUSE_MS);
      if (this.ctx.health?.has('rounds')) await this.awaitStorage(live.record);
    }
    return null;
  }

  stop(): void {
    this.stopped = true;
    this.live?.close('stopped');
    this.wakeUp?.();
  }

  /** A site authenticated: give it what it is missing (task of the open round, or the final model). */
  siteOnline(siteId: string): void {
    const live = this.live;
    live?.noteOnline(siteId, true, this.offlineGraceMs());
    if (this.end?.kind === 'complete') this.sendComplete(siteId);
    else if (live && !live.closed && live.isSelected(siteId) && !live.isResolved(siteId)) this.sendTask(live, siteId);
    live?.secure?.siteOnline(siteId);
    this.wakeUp?.();
  }

  siteOffline(siteId: string): void {
    // A selected site that stays away no longer holds the round open until the deadline.
    this.live?.noteOnline(siteId, false, this.offlineGraceMs());
    this.live?.secure?.siteOffline(siteId);
    this.wakeUp?.();
  }

  /**
   * How long an offline selected site may take to come back before the round stops waiting for
   * it: long enough for a site whose connection dropped during a long training step to reconnect.
   */
  private offlineGraceMs(): number {
    return Math.min(300_000, (this.ctx.experiment.roundDeadlineSeconds * 1000) / 4);
  }

  // ---- round steps --------------------------------------------------------------------------

  private open(round: number): LiveRound | null {
    const { experiment: exp, db, checkpoints, strategy, hub } = this.ctx;
    const sessions = this.ctx.sessions();
    const current = checkpoints.latest;
    const sites = this.ctx.enrolled.map((id) => ({ id, online: sessions.isOnline(id) }));
    // Stateful strategies continue from what the current checkpoint saved (optimiser, privacy ledger).
    strategy.restore?.(checkpoints.savedState());
    let plan;
    try {
      plan = strategy.configureFit(round, { manifest: current.manifest }, sites);
    } catch (e) {
      if (e instanceof PatchFedError && e.code === 'not-enough-sites') return null; // someone left meanwhile: wait again
      throw e;
    }
    const deadline = Date.now() + Math.round(exp.roundDeadlineSeconds * 1000);
    const record = db.openRound({ experimentId: exp.id, round, selectedSites: plan.selected, deadline: new Date(deadline) });
    const global = { manifest: current.manifest, values: current.values, l2Norm: current.l2Norm };
    const upload = uploadPlan(plan.selected.length, this.ctx.uploadBufferBytes ?? 64 * 1024 * 1024);
    const secureSpec = exp.aggregation?.secure;
    const secure = secureSpec
      ? new SecureRound({ spec: secureSpec, enrolled: this.ctx.enrolled.length, sessions: this.ctx.sessions, hub, log: this.ctx.log }, { experiment: exp.id, round, attempt: record.attempt }, current.values, plan.instructions, strategy.beginAggregation(round, current.values))
      : null;
    const instructions = secure ? secure.instructions(plan.instructions) : plan.instructions;
    const live = new LiveRound(record, global, current.meta.version, instructions, deadline, secure?.aggregator ?? strategy.beginAggregation(round, current.values), exp.localSteps, upload);
    live.secure = secure;
    this.live = live;
    for (const [siteId, r] of this.outstanding) {
      if (r !== round || !live.isSelected(siteId)) this.cancel(siteId, r, 'not-selected', `Round ${r} no longer needs this site's update.`);
    }
    hub.note(
      'round-open',
      {
        round,
        attempt: record.attempt,
        selected: plan.selected,
        deadline,
        message: `Round ${round} (attempt ${record.attempt}) opened with ${plan.selected.length} site(s): ${plan.selected.join(', ')}; deadline ${new Date(deadline).toISOString()}.`,
      },
      'round-open',
    );
    secure?.start(live);
    for (const siteId of plan.selected) if (sessions.isOnline(siteId)) this.sendTask(live, siteId);
    return live;
  }

  private sendTask(live: LiveRound, siteId: string): void {
    const { experiment: exp, checkpoints } = this.ctx;
    const current = checkpoints.latest;
    if (current.meta.version !== live.checkpointVersion) return; // cannot happen while the round is open
    const fit = live.fit[siteId];
    if (!fit) return; // not selected
    // Exactly what configureFit decided for this site, signed for its session.
    const task = { round: live.round, attempt: live.attempt, experimentId: exp.id, checkpoint: current.announcement, steps: live.steps, deadline: live.deadline, fit, upload: live.upload };
    if (!this.ctx.sessions().sendSigned(siteId, 'round-task', task)) return;
    const site = live.sites.get(siteId);
    if (site) site.taskSent = true;
    this.outstanding.set(siteId, live.round);
    this.ctx.hub.note('task-sent', { round: live.round, attempt: live.attempt, siteId, message: `Round ${live.round} task sent to site '${siteId}'.` }, null, 'debug');
  }

  /** Aggregates or fails the attempt; true if the round completed. */
  private closeRound(live: LiveRound): boolean {
    const { experiment: exp, db, hub } = this.ctx;
    for (const siteId of live.accepted.keys()) this.outstanding.delete(siteId);
    for (const siteId of live.rejected.keys()) this.outstanding.delete(siteId);
    for (const siteId of live.declined.keys()) this.outstanding.delete(siteId);
    for (const siteId of live.unresolved()) {
      hub.note('dropout', { round: live.round, attempt: live.attempt, siteId, message: `Site '${siteId}' sent no update for round ${live.round} (attempt ${live.attempt}) before the deadline.` }, 'dropout', 'warn');
    }
    const accepted = live.accepted.size;
    const secureFailure = live.secure?.failure ?? null;
    if (accepted < exp.minSites || secureFailure) {
      const counts = `${live.rejected.size} rejected, ${live.declined.size} declined, ${live.unresolved().length} missing`;
      const reason = secureFailure ? `${COUNTED_FAILURE}${secureFailure} (${accepted} masked update(s) received; ${counts})` : `${COUNTED_FAILURE}${accepted} accepted update(s), ${exp.minSites} needed (${counts})`;
      this.failQuietly(live.record, reason);
      hub.note('round-failed', { round: live.round, attempt: live.attempt, reason, message: `Round ${live.round} attempt ${live.attempt} failed: ${reason}.` }, 'round-failed', 'warn');
      return false;
    }
    let written;
    try {
      db.startAggregation(live.record.id);
      // One pass: the aggregate streams through the checks and the hash into the new version's file.
      const guard = { previousNorm: live.global.l2Norm, maxNormGrowth: exp.maxGlobalNormGrowth };
      written = this.ctx.checkpoints.writeModel(live.round, live.global.manifest, (sink) => live.aggregator.finish(sink), guard, () => live.aggregator.checkpointAttachments?.() ?? {});
      db.completeRound(live.record.id, written.version); // the durable "round complete"
    } catch (e) {
      const storage = this.ctx.health?.noteFailure('rounds', `round ${live.round} could not be recorded`, e) ?? false;
      const reason = storage ? `${STORAGE_FAILURE}${errorMessage(e)}` : `${COUNTED_FAILURE}aggregation failed: ${errorMessage(e)}`;
      this.ctx.log('error', 'aggregation failed', { round: live.round, error: errorMessage(e), stack: (e as Error)?.stack });
      this.failQuietly(live.record, reason);
      hub.note('round-failed', { round: live.round, attempt: live.attempt, reason, message: `Round ${live.round} attempt ${live.attempt} failed: ${reason}.` }, 'round-failed', 'error');
      return false;
    }
    // Committed: from here on, announce.
    const current = this.ctx.checkpoints.setCurrent(written.version, written);
    this.recordRoundMetrics(live);
    try {
      this.ctx.checkpoints.prune(exp.checkpointRetention);
    } catch (e) {
      this.ctx.health?.noteFailure('storage', 'old checkpoints could not be removed', e);
      this.ctx.log('warn', 'checkpoint retention failed', { error: errorMessage(e) });
    }
    for (const siteId of live.unresolved()) this.cancel(siteId, live.round, 'round-complete', `Round ${live.round} completed without this site's update.`);
    hub.note(
      'round-complete',
      {
        round: live.round,
        attempt: live.attempt,
        checkpointVersion: current.meta.version,
        sha256: current.meta.sha256,
        accepted: [...live.accepted.keys()].sort(),
        rejected: [...live.rejected.keys()].sort(),
        message: `Round ${live.round} complete: ${accepted} update(s) aggregated into checkpoint v${current.meta.version} (sha256 ${current.meta.sha256.slice(0, 12)}…).`,
      },
      'round-complete',
    );
    return true;
  }

  private recordRoundMetrics(live: LiveRound): void {
    let samples = 0;
    let bytes = live.bytesDown;
    for (const u of live.accepted.values()) samples += u.samples;
    bytes += live.bytesUp;
    try {
      this.ctx.db.recordMetrics(live.record.id, null, [
        { kind: 'accepted_sites', value: live.accepted.size },
        { kind: 'rejected_sites', value: live.rejected.size },
        { kind: 'samples', value: samples },
        { kind: 'bytes_moved', value: bytes },
      ]);
    } catch (e) {
      this.ctx.health?.noteFailure('storage', `metrics of round ${live.round} could not be recorded`, e);
      this.ctx.log('error', 'could not record round metrics', { round: live.round, error: errorMessage(e) });
    }
  }

  private complete(last: RoundRecord): ExperimentEnd {
    const { hub } = this.ctx;
    const current = this.ctx.checkpoints.latest;
    this.end = { kind: 'complete', round: last.round, checkpointVersion: current.meta.version };
    for (const [siteId, r] of this.outstanding) this.cancel(siteId, r, 'experiment-complete', 'The experiment is complete.');
    hub.note(
      'experiment-complete',
      { round: last.round, checkpointVersion: current.meta.version, sha256: current.meta.sha256, message: `Experiment '${this.ctx.experiment.id}' complete after ${last.round} round(s); final checkpoint v${current.meta.version}.` },
      'round-complete',
    );
    for (const siteId of this.ctx.sessions().onlineIds()) this.sendComplete(siteId);
    return this.end;
  }

  private sendComplete(siteId: string): void {
    if (this.end?.kind !== 'complete') return;
    this.ctx.sessions().sendSigned(siteId, 'experiment-complete', { experimentId: this.ctx.experiment.id, round: this.end.round, checkpoint: this.ctx.checkpoints.latest.announcement });
  }

  private stopExperiment(round: number, reason: string, hint = RESUME_HINT): ExperimentEnd {
    this.end = { kind: 'stopped', round, reason };
    for (const [siteId, r] of this.outstanding) this.cancel(siteId, r, 'experiment-stopped', `The experiment stopped: ${reason}.`);
    this.ctx.hub.note('experiment-stopped', { round, reason, message: `Experiment '${this.ctx.experiment.id}' stopped at round ${round}: ${reason}; ${hint}.` }, 'round-failed', 'error');
    return this.end;
  }

  /** The round attempt is over: the aggregator lets go of what it keeps on disk (retained updates). */
  private release(live: LiveRound): void {
    live.secure?.dispose();
    try {
      live.aggregator.dispose?.();
    } catch (e) {
      this.ctx.log('warn', 'could not release the aggregation of a round', { round: live.round, error: errorMessage(e) });
    }
  }

  private cancel(siteId: string, round: number, code: string, reason: string): void {
    this.outstanding.delete(siteId);
    this.ctx.sessions().sendSigned(siteId, 'round-cancel', { round, code, reason });
  }

  private failQuietly(record: RoundRecord, reason: string): void {
    try {
      const r = this.ctx.db.getRound(record.id);
      if (r && (r.status === 'open' || r.status === 'aggregating')) this.ctx.db.failRound(record.id, reason);
    } catch (e) {
      this.ctx.health?.noteFailure('rounds', `round ${record.round} (attempt ${record.attempt}) could not be marked failed`, e);
      this.ctx.log('error', 'could not mark round failed', { round: record.round, error: errorMessage(e) });
    }
  }

  /**
   * After a storage failure: retries the write the round bookkeeping needs (failing the attempt
   * that could not be recorded) until the disk takes it, with growing pauses. The health module
   * turns a long outage into a fatal error (the CLI exits so a supervisor restarts it).
   */
  private async awaitStorage(record: RoundRecord | null): Promise<void> {
    const health = this.ctx.health;
    let wait = RETRY_PAUSE_MS;
    while (health?.has('rounds') && !this.stopped) {
      try {
        if (health.probeNow()) {
          const r = record ? this.ctx.db.getRound(record.id) : undefined;
          if (r && (r.status === 'open' || r.status === 'aggregating')) this.ctx.db.failRound(r.id, `${STORAGE_FAILURE}the attempt could not be recorded`);
          health.resolve('rounds', 'round bookkeeping is written again; the round is retried');
          return;
        }
      } catch (e) {
        if (!health.noteFailure('rounds', `round ${record?.round ?? '?'} could not be marked failed`, e)) throw e;
      }
      await this.pause(wait);
      wait = Math.min(2 * wait, MAX_STORAGE_RETRY_PAUSE_MS);
    }
  }

  private countedFailures(round: number): number {
    // Attempts up to an operator's --resume no longer count.
    const forgiven = this.ctx.db.resumeBoundary(this.ctx.experiment.id, round);
    return this.ctx.db
      .listRounds(this.ctx.experiment.id)
      .filter((r) => r.round === round && r.attempt > forgiven && r.status === 'failed' && (r.failureReason ?? '').startsWith(COUNTED_FAILURE)).length;
  }

  /**
   * Until minSites are online; before the first round after start-up also until every enrolled
   * site is, or the start-up grace period is over.
   */
  private async waitForSites(): Promise<void> {
    const { experiment: exp } = this.ctx;
    let announced = false;
    while (!this.stopped) {
      const online = this.ctx.enrolled.filter((id) => this.ctx.sessions().isOnline(id)).length;
      const now = Date.now();
      const graceOver = now >= this.graceUntil || online === this.ctx.enrolled.length;
      if (online >= exp.minSites && graceOver) return;
      if (!announced) {
        this.ctx.log('info', 'waiting for sites', { online, minSites: exp.minSites, enrolled: this.ctx.enrolled.length });
        announced = true;
      }
      await new Promise<void>((resolve) => {
        const timer = online >= exp.minSites ? setTimeout(resolve, this.graceUntil - now) : null;
        this.wakeUp = () => {
          if (timer) clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = null;
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    }).then(() => {
      this.wakeUp = null;
    });
  }
}
