/**
 * One place where something noteworthy happens: it goes to the DB event log (the dashboard's
 * history), to the live dashboard (same time/kind/site/message as the DB row, so the page can
 * de-duplicate), to the log, and to the programmatic EventEmitter tests and the simulator use.
 */
import type { EventEmitter } from 'node:events';
import { errorMessage } from '../../shared/errors.ts';
import type { DashboardEvent, DashboardHandle } from '../dashboard/types.ts';
import type { EventKind, EventRecord, StateDb } from '../store/index.ts';
import type { Log, LogLevel } from './log.ts';

/** Names and payloads of `coordinator.events`. Every payload carries a human-readable `message`. */
export interface CoordinatorEvents {
  'site-online': { siteId: string; message: string };
  'site-offline': { siteId: string; message: string };
  'auth-failed': { siteId?: string; code: string; message: string };
  'connection-refused': { reason: string; message: string };
  'round-open': { round: number; attempt: number; selected: string[]; deadline: number; message: string };
  'task-sent': { round: number; attempt: number; siteId: string; message: string };
  'site-status': { siteId: string; round: number; stepsDone: number; stepsTotal: number; phase?: string; message: string };
  'site-error': { siteId: string; code: string; message: string };
  'update-accepted': { round: number; attempt: number; siteId: string; samples: number; bytes: number; message: string };
  'update-rejected': { round: number; attempt: number; siteId: string; code: string; message: string };
  'update-ignored': { round?: number; siteId: string; code: string; message: string };
  dropout: { round: number; attempt: number; siteId: string; message: string };
  'round-failed': { round: number; attempt: number; reason: string; message: string };
  'round-complete': { round: number; attempt: number; checkpointVersion: number; sha256: string; accepted: string[]; rejected: string[]; message: string };
  'experiment-complete': { round: number; checkpointVersion: number; sha256: string; message: string };
  'experiment-stopped': { round: number; reason: string; message: string };
  'internal-error': { message: string };
}
export type CoordinatorEventName = keyof CoordinatorEvents;

export class EventHub {
  dashboard: DashboardHandle | null = null;

  constructor(
    private readonly db: StateDb,
    private readonly emitter: EventEmitter,
    private readonly log: Log,
    private readonly experimentId: string,
  ) {}

  /**
   * Records `dbKind` in the event log (when given) and emits `name`. Never throws: a failing
   * listener or DB write must not break the round that reported it.
   */
  note<N extends CoordinatorEventName>(name: N, payload: CoordinatorEvents[N], dbKind: EventKind | null, level: LogLevel = 'info'): void {
    const p = payload as { message: string; siteId?: string; round?: number };
    this.log(level, p.message, { event: name, ...payload, message: undefined });
    if (dbKind) {
      try {
        const rec = this.db.recordEvent({ kind: dbKind, message: p.message, experimentId: this.experimentId, round: p.round, siteId: p.siteId });
        this.dashboard?.publishEvent(toDashboardEvent(rec));
      } catch (e) {
        this.log('error', 'could not record event', { event: name, error: errorMessage(e) });
      }
    }
    try {
      this.emitter.emit(name, payload);
    } catch (e) {
      this.log('error', 'event listener failed', { event: name, error: errorMessage(e) });
    }
    this.dashboard?.publishSnapshot();
  }

  /** The dashboard should show new state (no event-log entry). */
  changed(): void {
    this.dashboard?.publishSnapshot();
  }
}

export function toDashboardEvent(rec: EventRecord): DashboardEvent {
  return { time: rec.at, kind: rec.kind, ...(rec.siteId ? { site: rec.siteId } : {}), message: rec.message };
}
