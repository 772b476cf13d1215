/**
 * In-memory state of the open round attempt: who was selected, what each site is doing, which
 * updates were accepted or rejected, and the streaming aggregator. The DB holds the durable part
 * (the round row, site_updates, metrics); this holds what only matters while the round runs.
 *
 * `outcome` resolves once: when every selected site has resolved (an accepted or rejected
 * update, or a decline: it said it cannot take part), or when every selected site still online
 * has resolved and the others have been offline longer than the grace period; at the deadline;
 * or when the coordinator stops. From then on the round is closed and takes nothing.
 */
import type { Metrics } from '../../shared/protocol/messages.ts';
import type { GlobalValues } from '../../shared/codec/index.ts';
import type { WeightSpec } from '../../shared/weights.ts';
import type { DashboardRoundSite, RoundSiteState } from '../dashboard/types.ts';
import type { Aggregator, FitInstructions } from '../strategies/index.ts';
import type { RoundRecord } from '../store/index.ts';
import type { UploadPlan } from './upload-plan.ts';
import type { SecureRound } from './secure-round.ts';

export type RoundOutcome = 'all-resolved' | 'deadline' | 'stopped';

/** A selected site's progress (what the dashboard shows, without the id the map keys it by), plus whether its task went out. */
export interface LiveSite extends Omit<DashboardRoundSite, 'id'> {
  taskSent: boolean;
}

/** A site's progress report (the protocol's status message). */
export interface SiteStatus {
  phase?: 'idle' | 'downloading' | 'training' | 'evaluating' | 'uploading';
  stepsDone: number;
  stepsTotal: number;
  bytesDone?: number;
  bytesTotal?: number;
}

const FINAL_STATES: ReadonlySet<RoundSiteState> = new Set(['done', 'late', 'failed']);

export interface AcceptedUpdate {
  samples: number;
  bytes: number;
  metrics: Metrics;
}

export class LiveRound {
  readonly sites = new Map<string, LiveSite>();
  readonly accepted = new Map<string, AcceptedUpdate>();
  readonly rejected = new Map<string, { code: string; reason: string }>();
  /** Sites that said they cannot take part in this attempt (round-decline), with their reason. */
  readonly declined = new Map<string, { code: string; reason: string }>();
  /** Selected sites that went offline during the attempt: since when (ms). */
  private readonly offlineSince = new Map<string, number>();
  private offlineTimer: NodeJS.Timeout | null = null;
  /** Checkpoint bytes served to sites during this attempt. */
  bytesDown = 0;
  /** Update bytes received during this attempt (accepted or not). */
  bytesUp = 0;
  /** Secure aggregation's state for this attempt (secure-round.ts), or null for plain aggregation. */
  secure: SecureRound | null = null;
  private closedWith: RoundOutcome | null = null;
  private resolveOutcome!: (o: RoundOutcome) => void;
  readonly outcome: Promise<RoundOutcome>;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    readonly record: RoundRecord,
    /** The round's global model: its manifest, its values (read from the checkpoint file) and L2 norm. */
    readonly global: { manifest: readonly WeightSpec[]; values: GlobalValues; l2Norm: number },
    readonly checkpointVersion: number,
    readonly fit: Record<string, FitInstructions>,
    readonly deadline: number,
    readonly aggregator: Aggregator,
    readonly steps: number,
    /** Chunk size and window every selected site uploads with (upload-plan.ts). */
    readonly upload: UploadPlan,
  ) {
    this.outcome = new Promise((resolve) => (this.resolveOutcome = resolve));
    for (const id of record.selectedSites) {
      // A site's first job in a round is fetching the global checkpoint.
      this.sites.set(id, { state: 'downloading', stepsDone: 0, stepsTotal: steps, downloadedBytes: 0, downloadTotalBytes: 0, bytesTransferred: 0, bytesTotal: 0, taskSent: false });
    }
    this.timer = setTimeout(() => this.close('deadline'), Math.max(0, deadline - Date.now()));
  }

  get round(): number {
    return this.record.round;
  }

  get attempt(): number {
    return this.record.attempt;
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  isSelected(siteId: string): boolean {
    return this.sites.has(siteId);
  }

  /** Accepted, rejected or declined in this attempt: nothing more is taken from the site. */
  isResolved(siteId: string): boolean {
    return this.accepted.has(siteId) || this.rejected.has(siteId) || this.declined.has(siteId);
  }

  /** Selected sites that have neither an accepted nor a rejected update, nor declined. */
  unresolved(): string[] {
    return [...this.sites.keys()].filter((id) => !this.isResolved(id));
  }

  /** A selected site said it cannot take part (a site-signed round-decline). */
  decline(siteId: string, code: string, reason: string): void {
    if (this.closed || !this.sites.has(siteId) || this.isResolved(siteId)) return;
    this.declined.set(siteId, { code, reason });
    const s = this.sites.get(siteId);
    if (s) s.state = 'failed';
    this.settle();
  }

  /**
   * A selected site went offline (or came back). Waiting for an offline site is worth it only
   * for a while (it may be reconnecting); after `graceMs` it no longer holds the round open.
   */
  noteOnline(siteId: string, online: boolean, graceMs: number): void {
    if (this.closed || !this.sites.has(siteId)) return;
    if (online) {
      this.offlineSince.delete(siteId);
      return;
    }
    if (!this.offlineSince.has(siteId)) this.offlineSince.set(siteId, Date.now());
    if (this.offlineTimer) clearTimeout(this.offlineTimer);
    this.offlineTimer = setTimeout(() => {
      this.offlineTimer = null;
      this.settle(graceMs);
    }, graceMs + 10);
    this.offlineTimer.unref();
    this.settle(graceMs);
  }

  /**
   * Applies a site's progress report: the phase it names (no phase = training, as older sites
   * send), its step counts, and the download bytes while it fetches the checkpoint. Steps only
   * count in the training phase and later, so a download never shows up as training progress.
   * Reports on one connection arrive in order; going back to 'downloading' is a restarted site.
   */
  noteStatus(siteId: string, status: SiteStatus): void {
    const s = this.sites.get(siteId);
    if (!s || this.closed || this.isResolved(siteId) || FINAL_STATES.has(s.state)) return;
    const phase = status.phase === undefined || status.phase === 'idle' ? 'training' : status.phase;
    s.state = phase;
    s.stepsTotal = status.stepsTotal;
    s.stepsDone = phase === 'downloading' || phase === 'evaluating' ? 0 : Math.min(status.stepsDone, status.stepsTotal);
    if (phase === 'downloading' && status.bytesTotal !== undefined) {
      s.downloadTotalBytes = status.bytesTotal;
      s.downloadedBytes = Math.min(status.bytesDone ?? 0, status.bytesTotal);
    } else if (s.downloadTotalBytes > 0) {
      s.downloadedBytes = s.downloadTotalBytes; // past the download: it completed
    }
  }

  accept(siteId: string, update: AcceptedUpdate): void {
    this.declined.delete(siteId);
    this.accepted.set(siteId, update);
    const s = this.sites.get(siteId);
    if (s) {
      s.state = 'done';
      s.stepsDone = s.stepsTotal;
      s.bytesTransferred = s.bytesTotal = update.bytes;
      if (s.downloadTotalBytes > 0) s.downloadedBytes = s.downloadTotalBytes;
    }
    this.settle();
  }

  reject(siteId: string, code: string, reason: string): void {
    this.declined.delete(siteId);
    this.rejected.set(siteId, { code, reason });
    const s = this.sites.get(siteId);
    if (s) s.state = 'failed';
    this.settle();
  }

  close(outcome: RoundOutcome): void {
    if (this.closedWith) return;
    this.closedWith = outcome;
    if (this.timer) clearTimeout(this.timer);
    if (this.offlineTimer) clearTimeout(this.offlineTimer);
    this.timer = this.offlineTimer = null;
    if (outcome !== 'all-resolved') {
      for (const s of this.sites.values()) if (!FINAL_STATES.has(s.state)) s.state = 'late';
    }
    this.resolveOutcome(outcome);
  }

  /**
   * Closes the round once nothing more can come: every selected site resolved, or (with
   * `offlineGraceMs`) every one still pending has been offline for longer than that, and at
   * least one site resolved (if all are away, the deadline decides).
   */
  private settle(offlineGraceMs?: number): void {
    if (this.closed) return;
    const pending = this.unresolved();
    if (pending.length === 0) return this.close('all-resolved');
    if (offlineGraceMs === undefined && this.offlineSince.size === 0) return;
    const grace = offlineGraceMs ?? this.lastGraceMs;
    if (offlineGraceMs !== undefined) this.lastGraceMs = offlineGraceMs;
    if (grace === undefined || pending.length === this.sites.size) return;
    const now = Date.now();
    if (!pending.every((id) => now - (this.offlineSince.get(id) ?? Infinity) >= grace)) return;
    for (const id of pending) {
      const s = this.sites.get(id);
      if (s) s.state = 'late';
    }
    this.close('all-resolved');
  }

  private lastGraceMs: number | undefined;
}
