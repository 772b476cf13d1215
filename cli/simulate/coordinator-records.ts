/**
 * Read-only view of a running coordinator's records for the simulation's table and report: its
 * state through the store's read API (StateDb.openReader: the coordinator process is the only
 * writer, WAL lets us read while it writes; no SQL of its private schema here) and the meta.json
 * of its checkpoints. Nothing here can change state.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { StateDb, type StateReader } from '../../coordinator/store/index.ts';
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
  private reader: StateReader | null = null;
  private readonly checkpoints = new Map<number, CheckpointInfo>();

  constructor(
    private readonly stateDir: string,
    private readonly experimentId: string,
  ) {}

  /** The coordinator's state through the store's read API; null until the coordinator has created its DB. */
  private open(): StateReader | null {
    this.reader ??= StateDb.openReader(join(this.stateDir, 'state.db'));
    return this.reader;
  }

  close(): void {
    this.reader?.close();
    this.reader = null;
  }

  /** `read(db)`, or `empty` while the coordinator holds the DB busy (restart, recovery): the next poll tries again. */
  private read<T>(empty: T, read: (db: StateReader) => T): T {
    const db = this.open();
    if (!db) return empty;
    try {
      return read(db);
    } catch (e) {
      if ((e as { code?: string }).code?.startsWith('SQLITE_BUSY')) return empty;
      throw e;
    }
  }

  rounds(): RoundRow[] {
    return this.read([], (db) => {
      const moved = new Map(db.listMetrics(this.experimentId, { kind: 'bytes_moved' }).filter((m) => m.siteId === null).map((m) => [m.roundId, m.value]));
      return db.listRounds(this.experimentId).map((r) => ({
        id: r.id,
        round: r.round,
        attempt: r.attempt,
        status: r.status,
        startedAt: r.startedAt,
        selected: r.selectedSites,
        checkpointVersion: r.checkpointVersion,
        durationMs: r.durationMs,
        failureReason: r.failureReason,
        updates: db.listSiteUpdates(r.id).map((u) => ({
          siteId: u.siteId,
          status: u.status,
          reason: u.reason,
          samples: u.numSamples,
          bytes: u.bytes,
          metrics: u.metrics as SiteUpdateRow['metrics'],
        })),
        bytesMoved: moved.get(r.id) ?? null,
      }));
    });
  }

  /** Events of the given kinds recorded after event id `afterId` (oldest first). */
  events(afterId: number, kinds: readonly string[]): { id: number; kind: string; message: string }[] {
    if (kinds.length === 0) return [];
    const wanted = new Set(kinds);
    return this.read([], (db) =>
      db
        .listEvents({ afterId })
        .filter((e) => wanted.has(e.kind))
        .map((e) => ({ id: e.id, kind: e.kind, message: e.message })),
    );
  }

  sites(): SiteRow[] {
    return this.read([], (db) =>
      db.listSites().map((s) => ({
        id: s.id,
        online: s.online,
        backend: s.backend,
        plannedPatch: s.plannedPatch,
        plannedBatch: s.plannedBatch,
        memoryBudgetMB: s.memoryBudgetBytes === null ? null : s.memoryBudgetBytes / (1024 * 1024),
      })),
    );
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
