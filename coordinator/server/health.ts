/**
 * The coordinator's health: one place every component reports storage and database trouble
 * into, read by `/healthz`, the dashboard banner and the event log.
 *
 * Why it exists: with the state directory on a full disk the round stayed `aggregating` (the
 * DB write that fails it failed too), the scheduler stopped and `/healthz` still said ok. Now:
 *  - a failed write (ENOSPC, EIO, SQLITE_FULL, ...) marks the coordinator unhealthy with the
 *    reason, and the work that failed is retried until the disk takes writes again;
 *  - a storage probe (a small fsynced file in the state directory) runs every `probeMs` (more
 *    often while unhealthy), so recovery is noticed without waiting for the next round;
 *  - when the outage lasts longer than `outageLimitMs`, or the state DB turns out corrupt, or
 *    the round scheduler stops, the coordinator cannot continue: `fatal` resolves with a
 *    one-line reason and the CLI exits non-zero, so a supervisor restarts it.
 */
import { closeSync, fsyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../../shared/errors.ts';
import type { Log } from './log.ts';

/** Who reported a problem; each component has at most one open problem. */
export type HealthComponent = 'storage' | 'rounds' | 'database' | 'scheduler';

export interface HealthProblem {
  component: HealthComponent;
  /** errno or SQLite code, e.g. 'ENOSPC', 'SQLITE_FULL', 'SQLITE_CORRUPT'. */
  code: string;
  message: string;
  /** ISO time the problem was first seen. */
  since: string;
}

export interface HealthStatus {
  ok: boolean;
  problems: HealthProblem[];
}

export type HealthChange = { kind: 'unhealthy'; problem: HealthProblem } | { kind: 'recovered'; component: HealthComponent; message: string };

/** errno codes that mean "the disk cannot take this write now" (not a bug, not bad input). */
const STORAGE_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'EFBIG']);

/**
 * The storage or SQLite error code behind `e` (following `cause` chains: PatchFedError wraps
 * the errno), or null when `e` is not a storage failure.
 */
export function storageErrorCode(e: unknown): string | null {
  for (let cur: unknown = e, depth = 0; cur && depth < 8; cur = (cur as { cause?: unknown }).cause, depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code !== 'string') continue;
    if (STORAGE_ERRNOS.has(code)) return code;
    if (code === 'SQLITE_FULL' || code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_READONLY') || code === 'SQLITE_CANTOPEN') return code;
    if (isCorruptionCode(code)) return code;
  }
  return null;
}

function isCorruptionCode(code: string): boolean {
  return code === 'SQLITE_CORRUPT' || code.startsWith('SQLITE_CORRUPT_') || code === 'SQLITE_NOTADB';
}

/** True when `e` (or its cause) says the SQLite file is damaged. */
export function isDatabaseCorruption(e: unknown): boolean {
  const code = storageErrorCode(e);
  return code !== null && isCorruptionCode(code);
}

/** Writes, fsyncs and removes a small file in `dir`: throws the errno when the disk cannot take it. */
export function probeStorage(dir: string): void {
  const file = join(dir, `.health-probe-${process.pid}`);
  const fd = openSync(file, 'w', 0o600);
  try {
    // One page: a full file system refuses the data blocks even when an inode is still free.
    const page = new Uint8Array(4096).fill(0x2a);
    let done = 0;
    while (done < page.length) done += writeSync(fd, page, done, page.length - done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
}

export interface CoordinatorHealthOptions {
  log: Log;
  /** Throws when storage cannot take writes (default: nothing to probe). */
  probe?: () => void;
  /** Integrity check of the state DB on a fresh connection: null when intact, else the problem. */
  checkDatabase?: () => string | null;
  /** Called on every change (event log, dashboard). Never throws into the reporter. */
  onChange?: (change: HealthChange, status: HealthStatus) => void;
  /** Probe interval while healthy / unhealthy (ms). Defaults 30 s / 5 s. */
  probeMs?: number;
  unhealthyProbeMs?: number;
  /** Integrity check interval (ms); default 5 min. */
  integrityMs?: number;
  /** A storage outage longer than this is fatal (ms); default 10 min. */
  outageLimitMs?: number;
  now?: () => number;
}

export class CoordinatorHealth {
  private readonly problems = new Map<HealthComponent, HealthProblem & { sinceMs: number }>();
  private fatalReason: string | null = null;
  private resolveFatal!: (reason: string) => void;
  /** Resolves once, with a one-line reason, when the coordinator cannot continue. */
  readonly fatal: Promise<string>;
  private probeTimer: NodeJS.Timeout | null = null;
  private integrityTimer: NodeJS.Timeout | null = null;
  private readonly now: () => number;
  readonly outageLimitMs: number;

  constructor(private readonly opts: CoordinatorHealthOptions) {
    this.fatal = new Promise((resolve) => (this.resolveFatal = resolve));
    this.now = opts.now ?? Date.now;
    this.outageLimitMs = opts.outageLimitMs ?? 10 * 60_000;
  }

  get ok(): boolean {
    return this.problems.size === 0 && this.fatalReason === null;
  }

  status(): HealthStatus {
    const problems = [...this.problems.values()].map(({ sinceMs: _sinceMs, ...p }) => p);
    if (this.fatalReason !== null) problems.push({ component: 'scheduler', code: 'fatal', message: this.fatalReason, since: new Date(this.now()).toISOString() });
    return { ok: this.ok, problems };
  }

  /** Whether `component` has an open problem. */
  has(component: HealthComponent): boolean {
    return this.problems.has(component);
  }

  /**
   * Records `e` if it is a storage or database failure (returns true then); other errors are
   * left to the caller. Corruption triggers the integrity check, which may make it fatal.
   */
  noteFailure(component: HealthComponent, what: string, e: unknown): boolean {
    const code = storageErrorCode(e);
    if (code === null) return false;
    this.report(component, code, `${what}: ${errorMessage(e)}`);
    if (isCorruptionCode(code)) this.checkIntegrityNow();
    return true;
  }

  /** Opens (or keeps) a problem for `component`; the first report of it logs and notifies. */
  report(component: HealthComponent, code: string, message: string): void {
    const known = this.problems.get(component);
    if (known && known.code === code) {
      this.checkOutage(known);
      return;
    }
    const now = this.now();
    const problem = { component, code, message, since: new Date(known?.sinceMs ?? now).toISOString(), sinceMs: known?.sinceMs ?? now };
    this.problems.set(component, problem);
    this.opts.log('error', `unhealthy: ${message}`, { component, code });
    const { sinceMs: _sinceMs, ...visible } = problem;
    this.notify({ kind: 'unhealthy', problem: visible });
    this.reschedule();
    this.checkOutage(problem);
  }

  /** Closes `component`'s problem, if any. */
  resolve(component: HealthComponent, message: string): void {
    const known = this.problems.get(component);
    if (!known) return;
    this.problems.delete(component);
    const seconds = Math.round((this.now() - known.sinceMs) / 1000);
    this.opts.log('info', `recovered: ${message} (after ${seconds} s)`, { component });
    this.notify({ kind: 'recovered', component, message: `${message} (after ${seconds} s)` });
    this.reschedule();
  }

  /** The coordinator cannot continue: `fatal` resolves with this one-line reason (first call wins). */
  failFatal(reason: string): void {
    if (this.fatalReason !== null) return;
    this.fatalReason = reason.replace(/\s*\n\s*/g, ' ');
    this.opts.log('error', `fatal: ${this.fatalReason}`);
    this.stop();
    this.resolveFatal(this.fatalReason);
  }

  /** Starts the periodic storage probe and integrity check. */
  start(): void {
    this.reschedule();
    if (this.opts.checkDatabase && !this.integrityTimer) {
      this.integrityTimer = setInterval(() => this.checkIntegrityNow(), this.opts.integrityMs ?? 5 * 60_000);
      this.integrityTimer.unref();
    }
  }

  stop(): void {
    if (this.probeTimer) clearTimeout(this.probeTimer);
    if (this.integrityTimer) clearInterval(this.integrityTimer);
    this.probeTimer = this.integrityTimer = null;
  }

  /** Runs the storage probe now; true when storage takes writes. */
  probeNow(): boolean {
    if (!this.opts.probe) return true;
    try {
      this.opts.probe();
    } catch (e) {
      if (!this.noteFailure('storage', 'the state directory does not take writes', e)) {
        this.report('storage', 'probe-failed', `the state directory does not take writes: ${errorMessage(e)}`);
      }
      return false;
    }
    this.resolve('storage', 'the state directory takes writes again');
    return true;
  }

  /** Runs the DB integrity check now; corruption is fatal (the fix is `--repair`). */
  checkIntegrityNow(): void {
    if (!this.opts.checkDatabase || this.fatalReason !== null) return;
    let problem: string | null;
    try {
      problem = this.opts.checkDatabase();
    } catch (e) {
      problem = errorMessage(e);
    }
    if (problem !== null) this.failFatal(problem);
  }

  private checkOutage(problem: { component: HealthComponent; sinceMs: number; message: string }): void {
    if (problem.component === 'database') return; // corruption is decided by the integrity check
    const outage = this.now() - problem.sinceMs;
    if (outage > this.outageLimitMs) {
      this.failFatal(`storage unavailable for ${Math.round(outage / 1000)} s (limit ${Math.round(this.outageLimitMs / 1000)} s): ${problem.message}`);
    }
  }

  private reschedule(): void {
    if (!this.opts.probe || this.fatalReason !== null) return;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    const ms = this.problems.size > 0 ? (this.opts.unhealthyProbeMs ?? 5000) : (this.opts.probeMs ?? 30_000);
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      this.probeNow();
      this.reschedule();
    }, ms);
    this.probeTimer.unref();
  }

  private notify(change: HealthChange): void {
    try {
      this.opts.onChange?.(change, this.status());
    } catch (e) {
      this.opts.log('error', 'health listener failed', { error: errorMessage(e) });
    }
  }
}
