/**
 * The one late-bound edge between site sessions and the round scheduler. The scheduler sends
 * through the sessions, so the sessions exist first; what the sessions need of the scheduler
 * (the live round, sites coming and going) goes through this link, attached once the scheduler
 * exists. Nothing reaches the link before the server listens, which is after `attach`.
 */
import type { LiveRound } from './live-round.ts';
import type { RoundScheduler } from './scheduler.ts';

export class SchedulerLink {
  private scheduler: RoundScheduler | null = null;

  attach(scheduler: RoundScheduler): void {
    this.scheduler = scheduler;
  }

  /** The round in progress, if any (uploads, sessions and the dashboard read it). */
  readonly live = (): LiveRound | null => this.scheduler?.live ?? null;

  readonly siteOnline = (siteId: string): void => this.scheduler?.siteOnline(siteId);

  readonly siteOffline = (siteId: string): void => this.scheduler?.siteOffline(siteId);
}
