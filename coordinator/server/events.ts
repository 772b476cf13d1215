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
import { RepeatDigest, describeDetails, type DigestSummary } from './repeat-digest.ts';

/** Repeated refusals are summarised once per this interval (log, DB event log, dashboard). */
export const DEFAULT_REPEAT_INTERVAL_MS = 60_000;

/** Names and payloads of `coordinator.events`. Every payload carries a human-readable `message`. */
export interface CoordinatorEvents {
  'site-online': { siteId: string; message: string };
  'site-offline': { siteId: string; message: string };
  'auth-failed': { siteId?: string; code: string; message: string };
  /** A connection refused or closed before authentication (reason: connection-gate.ts RefusalReason, or 'abuse'). */
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
  /** Storage / state DB health changed (health.ts). */
  health: { ok: boolean; message: string };
  'experiment-resumed': { round: number; message: string };
  /** A selected site said it cannot take part in the round (round-decline), with its reason. */
  'round-declined': { round: number; attempt: number; siteId: string; code: string; message: string };
  /** A site reported its test-split scores of the final model (cross-site.ts). */
  'cross-site-validation': { siteId: string; model: 'global' | 'local'; round: number; message: string };
}
export type CoordinatorEventName = keyof CoordinatorEvents;

interface RepeatedKind {
  name: CoordinatorEventName;
  dbKind: EventKind | null;
  level: LogLevel;
  siteId?: string;
  /** The first occurrence's message, quoted in the summaries. */
  example: string;
}

export class EventHub {
  dashboard: DashboardHandle | null = null;
  private readonly repeats: RepeatDigest;
  private readonly repeatedKinds = new Map<string, RepeatedKind>();

  constructor(
    private readonly db: StateDb,
    private readonly emitter: EventEmitter,
    private readonly log: Log,
    private readonly experimentId: string,
    repeatIntervalMs = DEFAULT_REPEAT_INTERVAL_MS,
  ) {
    this.repeats = new RepeatDigest(repeatIntervalMs, (summary) => this.noteSummary(summary));
  }

  /**
   * `note` for what can repeat without bound (refused connections, failed authentications):
   * every occurrence reaches the EventEmitter, but the log, the DB event log and the dashboard
   * get the first occurrence of `key` and then one summary per interval. `key` must come from a
   * bounded set (a reason or error code, an enrolled site id), never from what a client sent;
   * `detail` (e.g. the client's address) is tallied in the summary.
   */
  noteRepeated<N extends CoordinatorEventName>(key: string, name: N, payload: CoordinatorEvents[N], dbKind: EventKind | null, level: LogLevel, detail?: string): void {
    const digestKey = `${name}|${key}`;
    if (this.repeats.note(digestKey, detail)) {
      const p = payload as { message: string; siteId?: string };
      this.repeatedKinds.set(digestKey, { name, dbKind, level, siteId: p.siteId, example: p.message });
      this.note(name, payload, dbKind, level);
      return;
    }
    try {
      this.emitter.emit(name, payload);
    } catch (e) {
      this.log('error', 'event listener failed', { event: name, error: errorMessage(e) });
    }
  }

  /** Writes the pending summaries of repeated events (at shutdown). */
  close(): void {
    this.repeats.close();
  }

  private noteSummary(summary: DigestSummary): void {
    const kind = this.repeatedKinds.get(summary.key);
    if (!kind) return;
    const message = `Repeated ${summary.count} more time(s) in the last ${Math.round(summary.intervalMs / 1000)} s (${describeDetails(summary)}); the first was: ${kind.example}`;
    this.log(kind.level, message, { event: kind.name, repeated: summary.count });
    if (!kind.dbKind) return;
    try {
      const rec = this.db.recordEvent({ kind: kind.dbKind, message, experimentId: this.experimentId, siteId: kind.siteId });
      this.dashboard?.publishEvent(toDashboardEvent(rec));
    } catch (e) {
      this.log('error', 'could not record event', { event: kind.name, error: errorMessage(e) });
    }
  }

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
