/**
 * DashboardSnapshot provider: the DB (rounds, site updates, metrics, events), the live round
 * and the session table, turned into the dashboard's read-only view. Finished round attempts
 * never change, so what is read about them is cached; only the open attempt is re-read.
 */
import type { Experiment } from '../../shared/config/coordinator.ts';
import { resolveArchitecture } from '../../shared/config/model.ts';
import { describeStrategy } from '../../shared/config/strategy.ts';
import { readPrivacyRecord } from '../privacy/index.ts';
import type {
  DashboardCheckpoint,
  DashboardCurrentRound,
  DashboardEvent,
  DashboardHealth,
  DashboardPrivacy,
  DashboardRoundRecord,
  DashboardSite,
  DashboardSnapshot,
  LabelDice,
} from '../dashboard/types.ts';
import type { RoundRecord, SiteUpdateRecord, StateDb } from '../store/index.ts';
import type { CheckpointService } from './checkpoint-service.ts';
import { toDashboardEvent } from './events.ts';
import type { LiveRound } from './live-round.ts';
import type { SiteSessions } from './sessions.ts';

const MAX_EVENTS = 500;

export interface SnapshotContext {
  experiment: Experiment;
  enrolled: readonly string[];
  db: StateDb;
  checkpoints: CheckpointService;
  sessions: () => SiteSessions;
  live: () => LiveRound | null;
  /** Storage / DB health for the dashboard banner. */
  health?: () => DashboardHealth;
}

interface CachedAttempt {
  updates: SiteUpdateRecord[];
  bytesMoved: number | null;
}

export class SnapshotProvider {
  private readonly attempts = new Map<number, CachedAttempt>();
  private readonly events: DashboardEvent[] = [];
  private lastEventId = 0;

  constructor(private readonly ctx: SnapshotContext) {}

  snapshot(): DashboardSnapshot {
    const { db, experiment } = this.ctx;
    const rounds = db.listRounds(experiment.id);
    const attempts = rounds.map((r) => ({ record: r, ...this.attempt(r) }));
    return {
      experiment: this.experiment(),
      sites: this.sites(attempts),
      currentRound: this.currentRound(),
      rounds: this.history(attempts),
      checkpoints: this.checkpointList(),
      events: this.recentEvents(),
      ...(this.ctx.health ? { health: this.ctx.health() } : {}),
    };
  }

  private attempt(r: RoundRecord): CachedAttempt {
    const cached = this.attempts.get(r.id);
    if (cached) return cached;
    const updates = this.ctx.db.listSiteUpdates(r.id);
    let bytesMoved: number | null = null;
    if (r.status === 'complete') {
      const m = this.ctx.db.listMetrics(this.ctx.experiment.id, { round: r.round, kind: 'bytes_moved' }).find((x) => x.roundId === r.id && x.siteId === null);
      bytesMoved = m?.value ?? null;
    }
    const result = { updates, bytesMoved };
    if (r.status === 'complete' || r.status === 'failed') this.attempts.set(r.id, result);
    return result;
  }

  private experiment(): DashboardSnapshot['experiment'] {
    const e = this.ctx.experiment;
    const arch = resolveArchitecture(e.model);
    return {
      id: e.id,
      task: e.task,
      mode: e.model.mode,
      preset: e.model.preset ?? null,
      base: arch.base,
      depth: arch.depth,
      norm: arch.norm,
      strategy: describeStrategy(e.strategy),
      rounds: e.rounds,
      minSites: e.minSites,
      localSteps: e.localSteps,
      roundDeadlineSeconds: e.roundDeadlineSeconds,
      labels: foregroundLabels(e),
      startedAt: this.ctx.db.getExperiment(e.id)?.createdAt ?? new Date(0).toISOString(),
      privacy: this.privacy(),
    };
  }

  /** The current checkpoint's privacy ledger, as the dashboard shows it. */
  private privacy(): DashboardPrivacy | null {
    const c = this.ctx.checkpoints;
    const p = c.hasCurrent ? readPrivacyRecord(c.latest.meta.extra) : null;
    if (!p) return null;
    const perRound = p.perRound.map((r) => ({ round: r.round, epsilon: r.epsilon, epsilonSpent: r.epsilonSpent }));
    return { mode: p.mode, noiseMultiplier: p.noiseMultiplier, clipNorm: p.clipNorm, delta: p.delta, epsilonBudget: p.epsilonBudget, epsilon: p.epsilon, perRound };
  }

  private sites(attempts: { record: RoundRecord; updates: SiteUpdateRecord[] }[]): DashboardSite[] {
    const sessions = this.ctx.sessions();
    return this.ctx.enrolled.map((id) => {
      const rec = this.ctx.db.getSite(id);
      let participated = 0;
      let lastUpdate: DashboardSite['lastUpdate'] = null;
      let dice: LabelDice | null = null;
      for (const a of attempts) {
        for (const u of a.updates) {
          if (u.siteId !== id) continue;
          if (u.status === 'accepted') {
            if (a.record.status === 'complete') participated++;
            const d = (u.metrics as { dice?: LabelDice } | null)?.dice;
            if (d) dice = { ...d };
          }
          lastUpdate = { round: a.record.round, status: u.status, ...(u.reason ? { reason: u.reason } : {}) };
        }
      }
      const online = sessions.isOnline(id);
      return {
        id,
        online,
        // An authenticated session is kept alive by socket.io heartbeats, so an online site was seen
        // now; the DB's lastSeen is when it last connected or disconnected.
        lastSeen: online ? new Date().toISOString() : (rec?.lastSeen ?? null),
        backend: rec?.backend ?? null,
        gpu: sessions.extras.get(id)?.gpu ?? false,
        memoryBudgetMB: rec?.memoryBudgetBytes != null ? rec.memoryBudgetBytes / (1024 * 1024) : null,
        patch: rec?.plannedPatch ?? null,
        batch: rec?.plannedBatch ?? null,
        roundsParticipated: participated,
        lastUpdate,
        dice,
      };
    });
  }

  private currentRound(): DashboardCurrentRound | null {
    const live = this.ctx.live();
    if (!live || live.closed) return null;
    return {
      round: live.round,
      attempt: live.attempt,
      startedAt: live.record.startedAt,
      deadline: new Date(live.deadline).toISOString(),
      sites: [...live.sites].map(([id, s]) => ({
        id,
        state: s.state,
        stepsDone: s.stepsDone,
        stepsTotal: s.stepsTotal,
        downloadedBytes: s.downloadedBytes,
        downloadTotalBytes: s.downloadTotalBytes,
        bytesTransferred: s.bytesTransferred,
        bytesTotal: s.bytesTotal,
      })),
    };
  }

  private history(attempts: { record: RoundRecord; updates: SiteUpdateRecord[]; bytesMoved: number | null }[]): DashboardRoundRecord[] {
    const labels = foregroundLabels(this.ctx.experiment);
    const out: DashboardRoundRecord[] = [];
    for (const a of attempts) {
      if (a.record.status !== 'complete' || a.record.round === 0) continue;
      const siteDice: Record<string, LabelDice> = {};
      const siteLoss: Record<string, number | null> = {};
      for (const u of a.updates) {
        if (u.status !== 'accepted') continue;
        const m = (u.metrics ?? {}) as { dice?: LabelDice; loss?: number };
        siteDice[u.siteId] = { ...(m.dice ?? {}) };
        siteLoss[u.siteId] = typeof m.loss === 'number' ? m.loss : null;
      }
      const globalDice: LabelDice = {};
      for (const label of labels) {
        const values = Object.values(siteDice)
          .map((d) => d[label])
          .filter((v): v is number => typeof v === 'number');
        globalDice[label] = values.length > 0 ? values.reduce((s, v) => s + v, 0) / values.length : null;
      }
      out.push({
        round: a.record.round,
        durationMs: a.record.durationMs ?? 0,
        globalDice,
        siteDice,
        siteLoss,
        bytesMoved: a.bytesMoved ?? a.updates.reduce((s, u) => s + (u.bytes ?? 0), 0),
        checkpointVersion: a.record.checkpointVersion,
      });
    }
    return out;
  }

  private checkpointList(): DashboardCheckpoint[] {
    const { checkpoints } = this.ctx;
    return checkpoints.store.list().map((m) => ({
      version: m.version,
      round: m.round,
      createdAt: m.createdAt,
      sha256: m.sha256,
      signatureValid: checkpoints.signatureValid(m.version),
      sizeBytes: m.sizeBytes,
    }));
  }

  /** New DB events since the last call, appended to a bounded buffer. */
  private recentEvents(): DashboardEvent[] {
    for (const rec of this.ctx.db.listEvents({ afterId: this.lastEventId })) {
      this.lastEventId = rec.id;
      if (rec.experimentId !== null && rec.experimentId !== this.ctx.experiment.id) continue;
      this.events.push(toDashboardEvent(rec));
    }
    if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS);
    return this.events.slice();
  }
}

/** Foreground label names in label-index order (index 0 is the background). */
export function foregroundLabels(e: Pick<Experiment, 'labels'>): string[] {
  return Object.entries(e.labels)
    .map(([k, v]) => [Number(k), v] as const)
    .filter(([k]) => k !== 0)
    .sort((a, b) => a[0] - b[0])
    .map(([, v]) => v);
}
