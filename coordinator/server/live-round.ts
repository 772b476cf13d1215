/**
 * In-memory state of the open round attempt: who was selected, what each site is doing, which
 * updates were accepted or rejected, and the streaming aggregator. The DB holds the durable part
 * (the round row, site_updates, metrics); this holds what only matters while the round runs.
 *
 * `outcome` resolves once: when every selected site has an accepted or rejected update, at the
 * deadline, or when the coordinator stops. From then on the round is closed and takes nothing.
 */
import type { Metrics } from '../../shared/protocol/messages.ts';
import type { NamedWeights } from '../../shared/weights.ts';
import type { RoundSiteState } from '../dashboard/types.ts';
import type { Aggregator, SiteFitConfig } from '../strategies/index.ts';
import type { RoundRecord } from '../store/index.ts';

export type RoundOutcome = 'all-resolved' | 'deadline' | 'stopped';

export interface LiveSite {
  state: RoundSiteState;
  stepsDone: number;
  stepsTotal: number;
  bytesTransferred: number;
  bytesTotal: number;
  taskSent: boolean;
}

export interface AcceptedUpdate {
  samples: number;
  bytes: number;
  metrics: Metrics;
}

export class LiveRound {
  readonly sites = new Map<string, LiveSite>();
  readonly accepted = new Map<string, AcceptedUpdate>();
  readonly rejected = new Map<string, { code: string; reason: string }>();
  /** Checkpoint bytes served to sites during this attempt. */
  bytesDown = 0;
  /** Update bytes received during this attempt (accepted or not). */
  bytesUp = 0;
  private closedWith: RoundOutcome | null = null;
  private resolveOutcome!: (o: RoundOutcome) => void;
  readonly outcome: Promise<RoundOutcome>;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    readonly record: RoundRecord,
    readonly global: NamedWeights,
    readonly checkpointVersion: number,
    readonly fit: Record<string, SiteFitConfig>,
    readonly deadline: number,
    readonly aggregator: Aggregator,
    readonly steps: number,
  ) {
    this.outcome = new Promise((resolve) => (this.resolveOutcome = resolve));
    for (const id of record.selectedSites) {
      this.sites.set(id, { state: 'training', stepsDone: 0, stepsTotal: steps, bytesTransferred: 0, bytesTotal: 0, taskSent: false });
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

  /** Accepted or rejected in this attempt: nothing more is taken from the site. */
  isResolved(siteId: string): boolean {
    return this.accepted.has(siteId) || this.rejected.has(siteId);
  }

  /** Selected sites that have neither an accepted nor a rejected update. */
  unresolved(): string[] {
    return [...this.sites.keys()].filter((id) => !this.isResolved(id));
  }

  accept(siteId: string, update: AcceptedUpdate): void {
    this.accepted.set(siteId, update);
    const s = this.sites.get(siteId);
    if (s) {
      s.state = 'done';
      s.stepsDone = s.stepsTotal;
      s.bytesTransferred = s.bytesTotal = update.bytes;
    }
    this.settle();
  }

  reject(siteId: string, code: string, reason: string): void {
    this.rejected.set(siteId, { code, reason });
    const s = this.sites.get(siteId);
    if (s) s.state = 'failed';
    this.settle();
  }

  close(outcome: RoundOutcome): void {
    if (this.closedWith) return;
    this.closedWith = outcome;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (outcome !== 'all-resolved') {
      for (const s of this.sites.values()) if (s.state === 'training' || s.state === 'uploading') s.state = 'late';
    }
    this.resolveOutcome(outcome);
  }

  private settle(): void {
    if (!this.closed && this.unresolved().length === 0) this.close('all-resolved');
  }
}
