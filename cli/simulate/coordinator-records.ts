/**
 * Read-only view of a running coordinator's records for the simulation's table and report: its
 * SQLite state DB (opened read-only; the coordinator process is the only writer, WAL mode lets
 * us read while it writes) and the meta.json of its checkpoints. Nothing here can change state.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { readPrivacyRecord, type PrivacyRecord } from '../../coordinator/privacy/index.ts';

export interface SiteUpdateRow {
  siteId: string;
  status: 'accepted' | 'rejected';
  reason: string | null;
  samples: number | null;
  bytes: number | null;
  metrics: {
    loss?: number;
    dice?: Record<string, number>;
    timeMs?: number;
    peakMemoryBytes?: number;
    backend?: string;
    patch?: number[];
    batch?: number;
  } | null;
}

export interface RoundRow {
  id: number;
  round: number;
  attempt: number;
  status: 'open' | 'aggregating' | 'complete' | 'failed';
  startedAt: string;
  selected: string[];
  checkpointVersion: number | null;
  durationMs: number | null;
  failureReason: string | null;
  updates: SiteUpdateRow[];
  /** Checkpoint bytes served plus update bytes received in this attempt (complete rounds). */
  bytesMoved: number | null;
}

export interface SiteRow {
  id: string;
  online: boolean;
  backend: string | null;
  plannedPatch: number[] | null;
  plannedBatch: number | null;
  memoryBudgetMB: number | null;
}

export interface CheckpointInfo {
  version: number;
  round: number;
  sha256: string;
  sizeBytes: number;
}

function parseJson<T>(text: unknown): T | null {
  if (typeof text !== 'string') return null;
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}

export class CoordinatorRecords {
  private db: Database.Database | null = null;
  private readonly checkpoints = new Map<number, CheckpointInfo>();

  constructor(
    private readonly stateDir: string,
    private readonly experimentId: string,
  ) {}

  /** Null until the coordinator has created its DB. */
  private open(): Database.Database | null {
    if (this.db) return this.db;
    const path = join(this.stateDir, 'state.db');
    if (!existsSync(path)) return null;
    try {
      this.db = new Database(path, { readonly: true, fileMustExist: true });
      this.db.pragma('busy_timeout = 2000');
    } catch {
      this.db = null;
    }
    return this.db;
  }

  close(): void {
    this.db?.close();
    this.db = null;
  }

  rounds(): RoundRow[] {
    const db = this.open();
    if (!db) return [];
    try {
      const rows = db
        .prepare(
          `SELECT id, round, attempt, status, started_at, selected_sites_json, checkpoint_version, duration_ms, failure_reason
           FROM rounds WHERE experiment_id = ? ORDER BY id`,
        )
        .all(this.experimentId) as Record<string, unknown>[];
      const updates = db.prepare(`SELECT site_id, status, reason, num_samples, bytes, metrics_json FROM site_updates WHERE round_id = ? ORDER BY id`);
      const moved = db.prepare(`SELECT value FROM metrics WHERE round_id = ? AND site_id IS NULL AND kind = 'bytes_moved' ORDER BY id DESC LIMIT 1`);
      return rows.map((r) => ({
        id: r.id as number,
        round: r.round as number,
        attempt: r.attempt as number,
        status: r.status as RoundRow['status'],
        startedAt: r.started_at as string,
        selected: parseJson<string[]>(r.selected_sites_json) ?? [],
        checkpointVersion: (r.checkpoint_version as number | null) ?? null,
        durationMs: (r.duration_ms as number | null) ?? null,
        failureReason: (r.failure_reason as string | null) ?? null,
        updates: (updates.all(r.id) as Record<string, unknown>[]).map((u) => ({
          siteId: u.site_id as string,
          status: u.status as SiteUpdateRow['status'],
          reason: (u.reason as string | null) ?? null,
          samples: (u.num_samples as number | null) ?? null,
          bytes: (u.bytes as number | null) ?? null,
          metrics: parseJson<SiteUpdateRow['metrics']>(u.metrics_json),
        })),
        bytesMoved: ((moved.get(r.id) as { value: number } | undefined)?.value) ?? null,
      }));
    } catch (e) {
      // SQLITE_BUSY while the coordinator restarts or recovers: try again on the next poll.
      if ((e as { code?: string }).code?.startsWith('SQLITE_BUSY')) return [];
      throw e;
    }
  }

  /** Events of the given kinds recorded after event id `afterId` (oldest first). */
  events(afterId: number, kinds: readonly string[]): { id: number; kind: string; message: string }[] {
    const db = this.open();
    if (!db || kinds.length === 0) return [];
    try {
      const rows = db
        .prepare(`SELECT id, kind, message FROM events WHERE id > ? AND kind IN (${kinds.map(() => '?').join(', ')}) ORDER BY id`)
        .all(afterId, ...kinds) as { id: number; kind: string; message: string }[];
      return rows.map((r) => ({ id: Number(r.id), kind: String(r.kind), message: String(r.message) }));
    } catch (e) {
      if ((e as { code?: string }).code?.startsWith('SQLITE_BUSY')) return [];
      throw e;
    }
  }

  sites(): SiteRow[] {
    const db = this.open();
    if (!db) return [];
    const rows = db.prepare(`SELECT id, online, backend, planned_patch_json, planned_batch, memory_budget_bytes FROM sites ORDER BY id`).all() as Record<string, unknown>[];
    return rows.map((r) => ({
      id: r.id as string,
      online: r.online === 1,
      backend: (r.backend as string | null) ?? null,
      plannedPatch: parseJson<number[]>(r.planned_patch_json),
      plannedBatch: (r.planned_batch as number | null) ?? null,
      memoryBudgetMB: typeof r.memory_budget_bytes === 'number' ? r.memory_budget_bytes / (1024 * 1024) : null,
    }));
  }

  /** A checkpoint's hash and size from its meta.json, remembered once read (retention may prune it later). */
  checkpoint(version: number): CheckpointInfo | null {
    const known = this.checkpoints.get(version);
    if (known) return known;
    const meta = parseJson<{ version: number; round: number; sha256: string; sizeBytes: number }>(
      readIfExists(join(this.stateDir, 'checkpoints', `v${String(version).padStart(6, '0')}`, 'meta.json')),
    );
    if (!meta || meta.version !== version) return null;
    const info = { version, round: meta.round, sha256: meta.sha256, sizeBytes: meta.sizeBytes };
    this.checkpoints.set(version, info);
    return info;
  }

  /** The privacy record (DP experiments: ε so far and per round) in a checkpoint's meta.json, or null. */
  privacy(version: number): PrivacyRecord | null {
    const meta = parseJson<{ extra?: unknown }>(readIfExists(join(this.stateDir, 'checkpoints', `v${String(version).padStart(6, '0')}`, 'meta.json')));
    return meta ? readPrivacyRecord(meta.extra) : null;
  }

  /** Path of a checkpoint's weights artifact. */
  artifactPath(version: number): string {
    return join(this.stateDir, 'checkpoints', `v${String(version).padStart(6, '0')}`, 'weights.pfw');
  }
}

function readIfExists(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}
