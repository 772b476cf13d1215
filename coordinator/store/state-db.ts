/**
 * The coordinator's durable bookkeeping in SQLite: experiments, sites, rounds (one row per
 * attempt), site updates, metrics and an event log. All SQL of the coordinator lives here.
 *
 * Pragmas: WAL (readers never block the writer) with synchronous=FULL. In WAL mode NORMAL is
 * safe against a process crash but a power loss can roll back the last commits; that is not
 * acceptable here because a committed "round complete" is announced to sites, and losing it
 * would make the coordinator redo the round and publish a *different* checkpoint under a round
 * sites already finished. FULL costs one fsync per commit, a handful per round.
 *
 * Ordering with the checkpoint store (see recovery.ts): write checkpoint durably → commit the
 * round as complete with its version (one transaction) → announce. A checkpoint newer than the
 * last committed version was never announced and is removed on recovery.
 */
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { PatchFedError } from '../../shared/errors.ts';
import { MIGRATIONS } from './state-db-schema.ts';

export type RoundStatus = 'open' | 'aggregating' | 'complete' | 'failed';
export type UpdateStatus = 'accepted' | 'rejected';
export type EventKind =
  | 'enrol'
  | 'enrol-refused'
  | 'reject'
  | 'dropout'
  | 'restart'
  | 'round-open'
  | 'round-retry'
  | 'round-failed'
  | 'round-complete'
  | 'site-online'
  | 'site-offline'
  | 'checkpoint-temp-removed'
  | 'checkpoint-quarantined'
  | 'checkpoint-fallback'
  | 'checkpoint-removed'
  | 'checkpoint-lost'
  | 'health'
  | 'state-repaired'
  | 'experiment-resumed'
  | 'round-declined'
  | 'cross-site-validation';

export interface ExperimentRecord {
  id: string;
  name: string;
  strategy: string;
  config: unknown;
  createdAt: string;
}

export interface SiteRecord {
  id: string;
  fingerprint: string;
  enrolledAt: string;
  lastSeen: string | null;
  backend: string | null;
  memoryBudgetBytes: number | null;
  plannedPatch: number[] | null;
  plannedBatch: number | null;
  online: boolean;
}

export interface SiteInput {
  id: string;
  fingerprint: string;
  backend?: string;
  memoryBudgetBytes?: number;
  plannedPatch?: readonly number[];
  plannedBatch?: number;
}

export interface RoundRecord {
  /** Row id of this attempt; site updates and metrics refer to it. */
  id: number;
  experimentId: string;
  round: number;
  attempt: number;
  status: RoundStatus;
  startedAt: string;
  endedAt: string | null;
  deadline: string | null;
  selectedSites: string[];
  checkpointVersion: number | null;
  durationMs: number | null;
  failureReason: string | null;
}

export interface SiteUpdateInput {
  roundId: number;
  siteId: string;
  status: UpdateStatus;
  reason?: string;
  numSamples?: number;
  bytes?: number;
  metrics?: Record<string, unknown>;
}

export interface SiteUpdateRecord {
  id: number;
  roundId: number;
  siteId: string;
  status: UpdateStatus;
  reason: string | null;
  numSamples: number | null;
  bytes: number | null;
  metrics: Record<string, unknown> | null;
  receivedAt: string;
}

export interface MetricInput {
  kind: string;
  label?: string;
  value: number;
}

export interface MetricRecord {
  id: number;
  roundId: number;
  round: number;
  attempt: number;
  siteId: string | null;
  kind: string;
  label: string | null;
  value: number;
  recordedAt: string;
}

export interface EventInput {
  kind: EventKind;
  message: string;
  experimentId?: string;
  round?: number;
  siteId?: string;
}

export interface EventRecord {
  id: number;
  at: string;
  kind: EventKind;
  experimentId: string | null;
  round: number | null;
  siteId: string | null;
  message: string;
}

/** A round that was interrupted by a crash; the next openRound() for it gets `nextAttempt`. */
export interface RoundRetry {
  experimentId: string;
  round: number;
  failedAttempt: number;
  nextAttempt: number;
}

/** What a reader of another process's state DB may call. */
export type StateReader = Pick<StateDb, 'listRounds' | 'listSiteUpdates' | 'listMetrics' | 'listEvents' | 'listSites' | 'close'>;

export interface StateDbOptions {
  now?: () => Date;
  /**
   * Integrity check of an existing file before using it: 'full' (PRAGMA integrity_check, the
   * default: the DB is small and this runs once per start), 'quick' (quick_check) or 'none'.
   */
  integrityCheck?: 'full' | 'quick' | 'none';
}

/** Event log rows kept unless the coordinator config says otherwise (limits.maxEventRows). */
export const DEFAULT_MAX_EVENT_ROWS = 20_000;
const PRUNE_EVENTS_EVERY = 100;

/** A state DB that failed its integrity check: the coordinator must not run on it. */
export const STATE_DB_CORRUPT = 'state-db-corrupt';

type Row = Record<string, unknown>;

export class StateDb {
  private readonly db: Database.Database;
  private readonly now: () => Date;
  /** True when this open created the schema (a new or empty file). */
  readonly createdNew: boolean;

  private constructor(db: Database.Database, now: () => Date, createdNew: boolean) {
    this.db = db;
    this.now = now;
    this.createdNew = createdNew;
  }

  /**
   * Opens (creating if needed) and migrates the DB at `path` (':memory:' for tests). An
   * existing file is integrity-checked first: a corrupt one is refused (STATE_DB_CORRUPT) with
   * the way out, instead of running on it and failing later in ways nobody notices.
   */
  static open(path: string, options: StateDbOptions = {}): StateDb {
    let db: Database.Database;
    try {
      db = new Database(path);
    } catch (e) {
      throw new PatchFedError('state-db-unreadable', `State database ${path} cannot be opened: ${(e as Error).message}.`, { subject: path, cause: e });
    }
    let createdNew: boolean;
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      const version = db.pragma('user_version', { simple: true }) as number;
      createdNew = version === 0;
      if (!createdNew && path !== ':memory:') {
        const problem = integrityProblem(db, options.integrityCheck ?? 'full');
        if (problem !== null) throw corruptDb(path, problem);
      }
    } catch (e) {
      db.close();
      if (e instanceof PatchFedError) throw e;
      if (isCorruptionError(e)) throw corruptDb(path, (e as Error).message, e);
      throw new PatchFedError('state-db-unreadable', `State database ${path} cannot be opened: ${(e as Error).message}.`, { subject: path, cause: e });
    }
    try {
      migrate(db, path);
    } catch (e) {
      db.close();
      if (e instanceof PatchFedError) throw e;
      if (isCorruptionError(e)) throw corruptDb(path, (e as Error).message, e);
      throw new PatchFedError('state-db-unreadable', `State database ${path} cannot be migrated: ${(e as Error).message}.`, { subject: path, cause: e });
    }
    return new StateDb(db, options.now ?? (() => new Date()), createdNew);
  }

  /**
   * A read-only view of a DB another process (the running coordinator) owns and writes: no
   * migration, no integrity check, WAL lets it read while the owner writes. Null until the owner
   * has created the file. For tools that watch a coordinator, e.g. `patchfed simulate`.
   */
  static openReader(path: string): StateReader | null {
    if (!existsSync(path)) return null;
    let db: Database.Database;
    try {
      db = new Database(path, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 2000');
    } catch {
      return null;
    }
    return new StateDb(db, () => new Date(), false);
  }

  /**
   * Integrity of the file at `path` read through a fresh read-only connection (so pages cached
   * by a running connection cannot hide damage on disk): null when intact, else the problem.
   */
  static checkIntegrity(path: string, level: 'full' | 'quick' = 'quick'): string | null {
    let db: Database.Database;
    try {
      db = new Database(path, { readonly: true, fileMustExist: true });
    } catch (e) {
      return isCorruptionError(e) ? (e as Error).message : null; // missing or locked: not our question
    }
    try {
      return integrityProblem(db, level);
    } catch (e) {
      if (isCorruptionError(e)) return (e as Error).message;
      throw e;
    } finally {
      db.close();
    }
  }

  close(): void {
    this.db.close();
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  /** Effective durability settings of this connection (for `doctor`-style checks and tests). */
  settings(): { journalMode: string; synchronous: 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA'; foreignKeys: boolean } {
    const sync = this.db.pragma('synchronous', { simple: true }) as number;
    return {
      journalMode: String(this.db.pragma('journal_mode', { simple: true })),
      synchronous: (['OFF', 'NORMAL', 'FULL', 'EXTRA'] as const)[sync] ?? 'OFF',
      foreignKeys: this.db.pragma('foreign_keys', { simple: true }) === 1,
    };
  }

  /** Runs `fn` in one transaction (nested calls join the outer one). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  // ---- experiments -------------------------------------------------------------------------

  createExperiment(input: { id: string; name: string; strategy: string; config: unknown }): ExperimentRecord {
    requireText(input.id, 'experiment id');
    if (this.getExperiment(input.id)) throw new PatchFedError('experiment-exists', `Experiment '${input.id}' already exists.`, { subject: input.id });
    this.db
      .prepare('INSERT INTO experiments (id, name, strategy, config_json, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(input.id, input.name, input.strategy, JSON.stringify(input.config ?? null), this.stamp());
    return this.getExperiment(input.id)!;
  }

  getExperiment(id: string): ExperimentRecord | undefined {
    const row = this.db.prepare('SELECT * FROM experiments WHERE id = ?').get(id) as Row | undefined;
    return row && toExperiment(row);
  }

  listExperiments(): ExperimentRecord[] {
    return (this.db.prepare('SELECT * FROM experiments ORDER BY created_at, id').all() as Row[]).map(toExperiment);
  }

  // ---- sites -------------------------------------------------------------------------------

  /**
   * Enrols a new site or updates an enrolled one's plan/backend. A different fingerprint for a
   * known id is refused unless `allowFingerprintChange` (explicit key rotation): otherwise anyone
   * could take over a site id with a new key.
   */
  upsertSite(input: SiteInput, options: { allowFingerprintChange?: boolean } = {}): SiteRecord {
    requireText(input.id, 'site id');
    requireText(input.fingerprint, `fingerprint of site '${input.id}'`);
    if (input.memoryBudgetBytes !== undefined) requireCount(input.memoryBudgetBytes, `memory budget of site '${input.id}'`, 1);
    if (input.plannedBatch !== undefined) requireCount(input.plannedBatch, `planned batch of site '${input.id}'`, 1);
    if (input.plannedPatch !== undefined) {
      if (input.plannedPatch.length !== 3) throw badInput(`planned patch of site '${input.id}' must have 3 sizes, got ${input.plannedPatch.length}`);
      input.plannedPatch.forEach((d) => requireCount(d, `planned patch of site '${input.id}'`, 1));
    }
    return this.transaction(() => {
      const existing = this.getSite(input.id);
      if (existing && existing.fingerprint !== input.fingerprint && !options.allowFingerprintChange) {
        throw new PatchFedError(
          'site-fingerprint-mismatch',
          `Site '${input.id}' is enrolled with key fingerprint ${existing.fingerprint}, not ${input.fingerprint}.`,
          { subject: input.id },
        );
      }
      const patch = input.plannedPatch !== undefined ? JSON.stringify([...input.plannedPatch]) : null;
      if (existing) {
        this.db
          .prepare(
            `UPDATE sites SET fingerprint = ?, backend = COALESCE(?, backend),
               memory_budget_bytes = COALESCE(?, memory_budget_bytes), planned_patch_json = COALESCE(?, planned_patch_json),
               planned_batch = COALESCE(?, planned_batch) WHERE id = ?`,
          )
          .run(input.fingerprint, input.backend ?? null, input.memoryBudgetBytes ?? null, patch, input.plannedBatch ?? null, input.id);
      } else {
        this.db
          .prepare(
            `INSERT INTO sites (id, fingerprint, enrolled_at, backend, memory_budget_bytes, planned_patch_json, planned_batch)
             VALUES (?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(input.id, input.fingerprint, this.stamp(), input.backend ?? null, input.memoryBudgetBytes ?? null, patch, input.plannedBatch ?? null);
      }
      return this.getSite(input.id)!;
    });
  }

  getSite(id: string): SiteRecord | undefined {
    const row = this.db.prepare('SELECT * FROM sites WHERE id = ?').get(id) as Row | undefined;
    return row && toSite(row);
  }

  listSites(): SiteRecord[] {
    return (this.db.prepare('SELECT * FROM sites ORDER BY id').all() as Row[]).map(toSite);
  }

  /** Sets the online flag; coming online or going offline both count as being seen. */
  setSiteOnline(id: string, online: boolean): void {
    const r = this.db.prepare('UPDATE sites SET online = ?, last_seen = ? WHERE id = ?').run(online ? 1 : 0, this.stamp(), id);
    if (r.changes === 0) throw unknownSite(id);
  }

  touchSite(id: string): void {
    const r = this.db.prepare('UPDATE sites SET last_seen = ? WHERE id = ?').run(this.stamp(), id);
    if (r.changes === 0) throw unknownSite(id);
  }

  // ---- rounds ------------------------------------------------------------------------------

  /**
   * Records round 0: the initial global model as checkpoint `checkpointVersion` (write the
   * checkpoint first). Allowed only while the experiment has no complete round.
   */
  commitInitialCheckpoint(experimentId: string, checkpointVersion: number): RoundRecord {
    requireCount(checkpointVersion, 'checkpoint version', 1);
    return this.transaction(() => {
      this.requireExperiment(experimentId);
      if (this.lastCompleted(experimentId)) {
        throw new PatchFedError('round-out-of-order', `Experiment '${experimentId}' already has a complete round; the initial checkpoint is recorded once.`, { subject: experimentId });
      }
      this.requireVersionAdvances(checkpointVersion);
      const attempt = this.nextAttempt(experimentId, 0);
      const at = this.stamp();
      const id = this.db
        .prepare(
          `INSERT INTO rounds (experiment_id, round, attempt, status, started_at, ended_at, selected_sites_json, checkpoint_version, duration_ms)
           VALUES (?, 0, ?, 'complete', ?, ?, '[]', ?, 0)`,
        )
        .run(experimentId, attempt, at, at, checkpointVersion).lastInsertRowid;
      return this.getRound(Number(id))!;
    });
  }

  /**
   * Opens the next round (last complete + 1). Its attempt is one more than any earlier attempt
   * of that round number, so a round failed by a crash is retried as attempt + 1.
   */
  openRound(input: { experimentId: string; round: number; selectedSites: readonly string[]; deadline?: Date }): RoundRecord {
    requireCount(input.round, 'round', 1);
    return this.transaction(() => {
      this.requireExperiment(input.experimentId);
      const active = this.activeRound(input.experimentId);
      if (active) {
        throw new PatchFedError('round-active', `${describe(active)} is still ${active.status}; finish or fail it before opening round ${input.round}.`, { subject: input.experimentId });
      }
      const last = this.lastCompleted(input.experimentId);
      if (!last) {
        throw new PatchFedError('no-initial-checkpoint', `Experiment '${input.experimentId}' has no initial checkpoint (round 0); commit it before opening rounds.`, { subject: input.experimentId });
      }
      if (input.round !== last.round + 1) {
        throw new PatchFedError('round-out-of-order', `Experiment '${input.experimentId}': the next round is ${last.round + 1}, not ${input.round}.`, { subject: input.experimentId });
      }
      const attempt = this.nextAttempt(input.experimentId, input.round);
      const id = this.db
        .prepare(
          `INSERT INTO rounds (experiment_id, round, attempt, status, started_at, deadline, selected_sites_json)
           VALUES (?, ?, ?, 'open', ?, ?, ?)`,
        )
        .run(input.experimentId, input.round, attempt, this.stamp(), input.deadline?.toISOString() ?? null, JSON.stringify([...input.selectedSites]))
        .lastInsertRowid;
      return this.getRound(Number(id))!;
    });
  }

  /** open → aggregating. */
  startAggregation(roundId: number): RoundRecord {
    return this.transition(roundId, ['open'], 'aggregating', {});
  }

  /**
   * aggregating → complete, recording the checkpoint version in the same statement, so a round
   * is never complete without its checkpoint. The checkpoint must already be durable.
   */
  completeRound(roundId: number, checkpointVersion: number): RoundRecord {
    requireCount(checkpointVersion, 'checkpoint version', 1);
    return this.transaction(() => {
      this.requireVersionAdvances(checkpointVersion);
      return this.transition(roundId, ['aggregating'], 'complete', { checkpointVersion });
    });
  }

  /** open|aggregating → failed (too few updates, deadline passed, aggregation error...). */
  failRound(roundId: number, reason: string): RoundRecord {
    return this.transition(roundId, ['open', 'aggregating'], 'failed', { reason });
  }

  /**
   * complete → failed, for recovery when the newest complete round's checkpoint is lost or
   * corrupt; the round is then redone. Only the newest complete round can be invalidated, so
   * complete rounds always form an unbroken prefix.
   */
  invalidateCompletedRound(roundId: number, reason: string): RoundRecord {
    return this.transaction(() => {
      const round = this.requireRound(roundId);
      const last = this.lastCompleted(round.experimentId);
      if (last && last.id !== roundId) {
        throw new PatchFedError('round-state', `${describe(round)} is not the newest complete round (${describe(last)}).`, { subject: String(roundId) });
      }
      return this.transition(roundId, ['complete'], 'failed', { reason });
    });
  }

  getRound(roundId: number): RoundRecord | undefined {
    const row = this.db.prepare('SELECT * FROM rounds WHERE id = ?').get(roundId) as Row | undefined;
    return row && toRound(row);
  }

  listRounds(experimentId: string): RoundRecord[] {
    return (this.db.prepare('SELECT * FROM rounds WHERE experiment_id = ? ORDER BY round, attempt').all(experimentId) as Row[]).map(toRound);
  }

  /** The open or aggregating round, if any (at most one per experiment). */
  activeRound(experimentId: string): RoundRecord | undefined {
    const row = this.db
      .prepare("SELECT * FROM rounds WHERE experiment_id = ? AND status IN ('open', 'aggregating')")
      .get(experimentId) as Row | undefined;
    return row && toRound(row);
  }

  lastCompleted(experimentId: string): RoundRecord | undefined {
    const row = this.db
      .prepare("SELECT * FROM rounds WHERE experiment_id = ? AND status = 'complete' ORDER BY round DESC LIMIT 1")
      .get(experimentId) as Row | undefined;
    return row && toRound(row);
  }

  /** Number of the newest complete round (0 = only the initial checkpoint), or null if none. */
  lastCompletedRound(experimentId: string): number | null {
    return this.lastCompleted(experimentId)?.round ?? null;
  }

  /** Highest checkpoint version recorded by any complete round, or null. */
  maxCommittedCheckpointVersion(): number | null {
    const row = this.db.prepare("SELECT MAX(checkpoint_version) AS v FROM rounds WHERE status = 'complete'").get() as { v: number | null };
    return row.v;
  }

  /**
   * After a coordinator crash: every open/aggregating round is marked failed (its updates were
   * in memory only) and all sites offline (their connections died with the process). Returns
   * the rounds to retry; the next openRound() of each gets attempt + 1.
   */
  recoverAfterCrash(): RoundRetry[] {
    return this.transaction(() => {
      const active = (this.db.prepare("SELECT * FROM rounds WHERE status IN ('open', 'aggregating') ORDER BY id").all() as Row[]).map(toRound);
      this.db.prepare('UPDATE sites SET online = 0').run();
      this.recordEvent({ kind: 'restart', message: `Coordinator restarted; ${active.length} interrupted round(s).` });
      return active.map((r) => {
        this.transition(r.id, ['open', 'aggregating'], 'failed', { reason: `interrupted: the coordinator restarted while the round was ${r.status}` });
        const retry = { experimentId: r.experimentId, round: r.round, failedAttempt: r.attempt, nextAttempt: r.attempt + 1 };
        this.recordEvent({
          kind: 'round-retry',
          experimentId: r.experimentId,
          round: r.round,
          message: `Round ${r.round} attempt ${r.attempt} was ${r.status} at restart; it is retried as attempt ${retry.nextAttempt}.`,
        });
        return retry;
      });
    });
  }

  /**
   * Repair only (`patchfed coordinator --repair` rebuilding a fresh DB from verified signed
   * checkpoints): records `round` as complete with `checkpointVersion`. Rounds and versions must
   * both advance past everything recorded, so the rebuilt history keeps the usual invariants.
   */
  restoreCompletedRound(input: { experimentId: string; round: number; checkpointVersion: number; completedAt?: string }): RoundRecord {
    requireCount(input.round, 'round', 0);
    requireCount(input.checkpointVersion, 'checkpoint version', 1);
    return this.transaction(() => {
      this.requireExperiment(input.experimentId);
      const active = this.activeRound(input.experimentId);
      if (active) throw new PatchFedError('round-active', `${describe(active)} is ${active.status}; a restored round cannot follow it.`, { subject: input.experimentId });
      const last = this.lastCompleted(input.experimentId);
      if (last && input.round <= last.round) {
        throw new PatchFedError('round-out-of-order', `Experiment '${input.experimentId}': round ${input.round} does not follow the restored round ${last.round}.`, { subject: input.experimentId });
      }
      this.requireVersionAdvances(input.checkpointVersion);
      const at = input.completedAt ?? this.stamp();
      const attempt = this.nextAttempt(input.experimentId, input.round);
      const id = this.db
        .prepare(
          `INSERT INTO rounds (experiment_id, round, attempt, status, started_at, ended_at, selected_sites_json, checkpoint_version, duration_ms)
           VALUES (?, ?, ?, 'complete', ?, ?, '[]', ?, 0)`,
        )
        .run(input.experimentId, input.round, attempt, at, at, input.checkpointVersion).lastInsertRowid;
      return this.getRound(Number(id))!;
    });
  }

  /**
   * An operator's `--resume`: attempts of `round` up to now no longer count towards
   * maxRoundAttempts. Returns the attempt boundary (the highest attempt so far).
   */
  recordResume(experimentId: string, round: number, reason: string): number {
    requireCount(round, 'round', 1);
    requireText(reason, 'resume reason');
    return this.transaction(() => {
      this.requireExperiment(experimentId);
      const row = this.db.prepare('SELECT MAX(attempt) AS a FROM rounds WHERE experiment_id = ? AND round = ?').get(experimentId, round) as { a: number | null };
      const after = row.a ?? 0;
      this.db.prepare('INSERT INTO round_resumes (experiment_id, round, after_attempt, at, reason) VALUES (?, ?, ?, ?, ?)').run(experimentId, round, after, this.stamp(), reason);
      return after;
    });
  }

  /** Attempts of `round` at or below this number were forgiven by a `--resume` (0 = none). */
  resumeBoundary(experimentId: string, round: number): number {
    const row = this.db.prepare('SELECT MAX(after_attempt) AS a FROM round_resumes WHERE experiment_id = ? AND round = ?').get(experimentId, round) as { a: number | null };
    return row.a ?? 0;
  }

  // ---- site updates and metrics ------------------------------------------------------------

  recordSiteUpdate(input: SiteUpdateInput): SiteUpdateRecord {
    if (input.numSamples !== undefined) requireCount(input.numSamples, 'numSamples', 0);
    if (input.bytes !== undefined) requireCount(input.bytes, 'bytes', 0);
    return this.transaction(() => {
      const round = this.requireRound(input.roundId);
      if (!this.getSite(input.siteId)) throw unknownSite(input.siteId);
      if (input.status === 'accepted') {
        if (round.status !== 'open' && round.status !== 'aggregating') {
          throw new PatchFedError('round-state', `Cannot accept an update from site '${input.siteId}': ${describe(round)} is ${round.status}.`, { subject: input.siteId });
        }
        const dup = this.db.prepare("SELECT 1 FROM site_updates WHERE round_id = ? AND site_id = ? AND status = 'accepted'").get(input.roundId, input.siteId);
        if (dup) throw new PatchFedError('duplicate-update', `Site '${input.siteId}' already has an accepted update in ${describe(round)}.`, { subject: input.siteId });
      }
      const id = this.db
        .prepare(
          `INSERT INTO site_updates (round_id, site_id, status, reason, num_samples, bytes, metrics_json, received_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          input.roundId,
          input.siteId,
          input.status,
          input.reason ?? null,
          input.numSamples ?? null,
          input.bytes ?? null,
          input.metrics !== undefined ? JSON.stringify(input.metrics) : null,
          this.stamp(),
        ).lastInsertRowid;
      return toSiteUpdate(this.db.prepare('SELECT * FROM site_updates WHERE id = ?').get(id) as Row);
    });
  }

  listSiteUpdates(roundId: number): SiteUpdateRecord[] {
    return (this.db.prepare('SELECT * FROM site_updates WHERE round_id = ? ORDER BY id').all(roundId) as Row[]).map(toSiteUpdate);
  }

  /** Records metrics of one round attempt; `siteId` null for coordinator-side metrics. */
  recordMetrics(roundId: number, siteId: string | null, entries: readonly MetricInput[]): void {
    for (const m of entries) {
      requireText(m.kind, 'metric kind');
      if (!Number.isFinite(m.value)) throw badInput(`metric '${m.kind}'${m.label ? ` (${m.label})` : ''} must be a finite number, got ${m.value}`);
    }
    this.transaction(() => {
      this.requireRound(roundId);
      if (siteId !== null && !this.getSite(siteId)) throw unknownSite(siteId);
      const insert = this.db.prepare('INSERT INTO metrics (round_id, site_id, kind, label, value, recorded_at) VALUES (?, ?, ?, ?, ?, ?)');
      const at = this.stamp();
      for (const m of entries) insert.run(roundId, siteId, m.kind, m.label ?? null, m.value, at);
    });
  }

  listMetrics(experimentId: string, filter: { round?: number; siteId?: string; kind?: string } = {}): MetricRecord[] {
    const rows = this.db
      .prepare(
        `SELECT m.*, r.round AS round, r.attempt AS attempt FROM metrics m JOIN rounds r ON r.id = m.round_id
         WHERE r.experiment_id = ? AND (? IS NULL OR r.round = ?) AND (? IS NULL OR m.site_id = ?) AND (? IS NULL OR m.kind = ?)
         ORDER BY m.id`,
      )
      .all(experimentId, filter.round ?? null, filter.round ?? null, filter.siteId ?? null, filter.siteId ?? null, filter.kind ?? null, filter.kind ?? null) as Row[];
    return rows.map(toMetric);
  }

  // ---- events ------------------------------------------------------------------------------
  // The event log is bounded: at most `maxEventRows` rows (the newest), of which refused
  // enrolments — what an unauthenticated client can cause — at most a tenth, so a flood of them
  // never pushes the round history out. Pruned every PRUNE_EVENTS_EVERY inserts.

  private maxEventRows = DEFAULT_MAX_EVENT_ROWS;
  private eventsSincePrune = 0;

  /** Sets the event log's row cap and prunes to it now. */
  setEventRetention(maxEventRows: number): void {
    if (!Number.isSafeInteger(maxEventRows) || maxEventRows < 10) throw new PatchFedError('bad-argument', `maxEventRows must be an integer >= 10, got ${maxEventRows}.`);
    this.maxEventRows = maxEventRows;
    this.pruneEvents();
  }

  /** Deletes the oldest events beyond the caps; returns how many rows went. */
  pruneEvents(): number {
    this.eventsSincePrune = 0;
    const refusalCap = Math.max(1, Math.floor(this.maxEventRows / 10));
    return this.db.transaction(() => {
      const refusals = this.db
        .prepare(`DELETE FROM events WHERE kind = 'enrol-refused' AND id <= (SELECT id FROM events WHERE kind = 'enrol-refused' ORDER BY id DESC LIMIT 1 OFFSET ?)`)
        .run(refusalCap).changes;
      const oldest = this.db.prepare('DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)').run(this.maxEventRows).changes;
      return refusals + oldest;
    })();
  }

  /** Rows in the event log (all kinds, or one). */
  countEvents(kind?: EventKind): number {
    const row = this.db.prepare('SELECT COUNT(*) AS n FROM events WHERE (? IS NULL OR kind = ?)').get(kind ?? null, kind ?? null) as Row;
    return Number(row.n);
  }

  recordEvent(input: EventInput): EventRecord {
    requireText(input.message, 'event message');
    if (++this.eventsSincePrune >= PRUNE_EVENTS_EVERY) this.pruneEvents();
    const id = this.db
      .prepare('INSERT INTO events (at, kind, experiment_id, round, site_id, message) VALUES (?, ?, ?, ?, ?, ?)')
      .run(this.stamp(), input.kind, input.experimentId ?? null, input.round ?? null, input.siteId ?? null, input.message).lastInsertRowid;
    return toEvent(this.db.prepare('SELECT * FROM events WHERE id = ?').get(id) as Row);
  }

  /** Events oldest first; `afterId` for tailing. */
  listEvents(filter: { kind?: EventKind; experimentId?: string; siteId?: string; afterId?: number; limit?: number } = {}): EventRecord[] {
    const rows = this.db
      .prepare(
        `SELECT * FROM events WHERE (? IS NULL OR kind = ?) AND (? IS NULL OR experiment_id = ?) AND (? IS NULL OR site_id = ?) AND id > ?
         ORDER BY id LIMIT ?`,
      )
      .all(
        filter.kind ?? null, filter.kind ?? null,
        filter.experimentId ?? null, filter.experimentId ?? null,
        filter.siteId ?? null, filter.siteId ?? null,
        filter.afterId ?? 0, filter.limit ?? -1,
      ) as Row[];
    return rows.map(toEvent);
  }

  // ---- internals ---------------------------------------------------------------------------

  private stamp(): string {
    return this.now().toISOString();
  }

  private transition(
    roundId: number,
    from: readonly RoundStatus[],
    to: RoundStatus,
    extra: { checkpointVersion?: number; reason?: string },
  ): RoundRecord {
    return this.transaction(() => {
      const round = this.requireRound(roundId);
      if (!from.includes(round.status)) {
        throw new PatchFedError('round-state', `${describe(round)} is ${round.status}; it cannot become ${to}.`, { subject: String(roundId) });
      }
      const end = this.now();
      const ended = to === 'complete' || to === 'failed';
      this.db
        .prepare(
          `UPDATE rounds SET status = ?, ended_at = COALESCE(ended_at, ?), duration_ms = COALESCE(duration_ms, ?),
             checkpoint_version = COALESCE(?, checkpoint_version), failure_reason = COALESCE(?, failure_reason)
           WHERE id = ? AND status = ?`,
        )
        .run(
          to,
          ended ? end.toISOString() : null,
          ended ? Math.max(0, end.getTime() - Date.parse(round.startedAt)) : null,
          extra.checkpointVersion ?? null,
          extra.reason ?? null,
          roundId,
          round.status,
        );
      return this.getRound(roundId)!;
    });
  }

  private requireVersionAdvances(version: number): void {
    const max = this.maxCommittedCheckpointVersion();
    if (max !== null && version <= max) {
      throw new PatchFedError('checkpoint-version-regressed', `Checkpoint version ${version} is not newer than the committed version ${max}.`, { subject: String(version) });
    }
  }

  private nextAttempt(experimentId: string, round: number): number {
    const row = this.db.prepare('SELECT MAX(attempt) AS a FROM rounds WHERE experiment_id = ? AND round = ?').get(experimentId, round) as { a: number | null };
    return (row.a ?? 0) + 1;
  }

  private requireExperiment(id: string): void {
    if (!this.getExperiment(id)) throw new PatchFedError('unknown-experiment', `Experiment '${id}' does not exist.`, { subject: id });
  }

  private requireRound(roundId: number): RoundRecord {
    const round = this.getRound(roundId);
    if (!round) throw new PatchFedError('unknown-round', `Round id ${roundId} does not exist.`, { subject: String(roundId) });
    return round;
  }
}

function migrate(db: Database.Database, path: string): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new PatchFedError(
      'state-db-too-new',
      `State database ${path} has schema version ${current}; this PatchFed knows up to ${MIGRATIONS.length}. Upgrade PatchFed.`,
      { subject: path },
    );
  }
  for (const [v, migration] of MIGRATIONS.entries()) {
    if (v < current) continue;
    db.transaction(() => {
      db.exec(migration);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

/** null when intact, else what the check found (first lines). */
function integrityProblem(db: Database.Database, level: 'full' | 'quick' | 'none'): string | null {
  if (level === 'none') return null;
  const rows = db.pragma(level === 'full' ? 'integrity_check(20)' : 'quick_check(20)') as Record<string, unknown>[];
  const lines = rows.map((r) => String(Object.values(r)[0]));
  return lines.length === 1 && lines[0] === 'ok' ? null : lines.slice(0, 5).join('; ');
}

function isCorruptionError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code === 'SQLITE_CORRUPT' || code.startsWith('SQLITE_CORRUPT_') || code === 'SQLITE_NOTADB');
}

function corruptDb(path: string, detail: string, cause?: unknown): PatchFedError {
  return new PatchFedError(
    STATE_DB_CORRUPT,
    `State database ${path} is corrupt (${detail.slice(0, 300)}); the coordinator does not run on it. ` +
      `Run 'patchfed coordinator --config <your config> --repair': it moves the damaged file aside (nothing is deleted) and rebuilds the state from the signed checkpoints.`,
    { subject: path, cause },
  );
}

function describe(r: RoundRecord): string {
  return `Round ${r.round} (attempt ${r.attempt}) of experiment '${r.experimentId}'`;
}

function badInput(reason: string): PatchFedError {
  return new PatchFedError('bad-state-input', `Invalid state record: ${reason}.`);
}

function unknownSite(id: string): PatchFedError {
  return new PatchFedError('unknown-site', `Site '${id}' is not enrolled.`, { subject: id });
}

function requireText(value: unknown, what: string): void {
  if (typeof value !== 'string' || value.length === 0) throw badInput(`${what} must be a non-empty string`);
}

function requireCount(value: number, what: string, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw badInput(`${what} must be an integer >= ${min}, got ${value}`);
}

const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

function toExperiment(r: Row): ExperimentRecord {
  return { id: String(r.id), name: String(r.name), strategy: String(r.strategy), config: JSON.parse(String(r.config_json)), createdAt: String(r.created_at) };
}

function toSite(r: Row): SiteRecord {
  return {
    id: String(r.id),
    fingerprint: String(r.fingerprint),
    enrolledAt: String(r.enrolled_at),
    lastSeen: str(r.last_seen),
    backend: str(r.backend),
    memoryBudgetBytes: num(r.memory_budget_bytes),
    plannedPatch: r.planned_patch_json === null ? null : (JSON.parse(String(r.planned_patch_json)) as number[]),
    plannedBatch: num(r.planned_batch),
    online: r.online === 1,
  };
}

function toRound(r: Row): RoundRecord {
  return {
    id: Number(r.id),
    experimentId: String(r.experiment_id),
    round: Number(r.round),
    attempt: Number(r.attempt),
    status: r.status as RoundStatus,
    startedAt: String(r.started_at),
    endedAt: str(r.ended_at),
    deadline: str(r.deadline),
    selectedSites: JSON.parse(String(r.selected_sites_json)) as string[],
    checkpointVersion: num(r.checkpoint_version),
    durationMs: num(r.duration_ms),
    failureReason: str(r.failure_reason),
  };
}

function toSiteUpdate(r: Row): SiteUpdateRecord {
  return {
    id: Number(r.id),
    roundId: Number(r.round_id),
    siteId: String(r.site_id),
    status: r.status as UpdateStatus,
    reason: str(r.reason),
    numSamples: num(r.num_samples),
    bytes: num(r.bytes),
    metrics: r.metrics_json === null ? null : (JSON.parse(String(r.metrics_json)) as Record<string, unknown>),
    receivedAt: String(r.received_at),
  };
}

function toMetric(r: Row): MetricRecord {
  return {
    id: Number(r.id),
    roundId: Number(r.round_id),
    round: Number(r.round),
    attempt: Number(r.attempt),
    siteId: str(r.site_id),
    kind: String(r.kind),
    label: str(r.label),
    value: Number(r.value),
    recordedAt: String(r.recorded_at),
  };
}

function toEvent(r: Row): EventRecord {
  return {
    id: Number(r.id),
    at: String(r.at),
    kind: r.kind as EventKind,
    experimentId: str(r.experiment_id),
    round: num(r.round),
    siteId: str(r.site_id),
    message: String(r.message),
  };
}
