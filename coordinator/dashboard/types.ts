/**
 * Contract between the coordinator and its live dashboard. The coordinator owns the state and
 * builds a DashboardSnapshot on demand; the dashboard only reads it (nothing here can change
 * training). Times are ISO-8601 strings; Dice values are in [0, 1] or null when not measured.
 */
import type { Server as SocketIoServer, Socket } from 'socket.io';
import type { Express } from 'express';
import type { Mode, Norm } from '../../shared/config/model.ts';
import type { LoginThrottleOptions } from './login-throttle.ts';
import type { CrossSiteTable } from '../../shared/protocol/cross-site-table.ts';

export type LabelDice = Record<string, number | null>;

export interface DashboardExperiment {
  id: string;
  task: string;
  mode: Mode;
  /** Model preset name, or null when base/depth were given explicitly. */
  preset: string | null;
  base: number;
  depth: number;
  norm: Norm;
  /** Display text, e.g. 'fedavg' or 'fedprox (μ = 0.01)'. */
  strategy: string;
  rounds: number;
  minSites: number;
  localSteps: number;
  roundDeadlineSeconds: number;
  /** Foreground label names, in label-index order; the keys of every LabelDice. */
  labels: string[];
  startedAt: string;
  /** Differential privacy (strategy.dp): ε spent so far and per round, from the current checkpoint's ledger; null without DP (or before round 1). */
  privacy?: DashboardPrivacy | null;
}

export interface DashboardPrivacy {
  mode: 'central' | 'distributed';
  noiseMultiplier: number;
  clipNorm: number;
  delta: number;
  epsilonBudget: number | null;
  epsilon: number;
  perRound: { round: number; epsilon: number; epsilonSpent: number }[];
}

export type SiteUpdateStatus = 'accepted' | 'rejected';

export interface DashboardSite {
  id: string;
  online: boolean;
  lastSeen: string | null;
  /** tfjs backend name reported by the site ('tensorflow', 'webgl', 'cpu', 'wasm', ...). */
  backend: string | null;
  gpu: boolean;
  memoryBudgetMB: number | null;
  /** Patch (or full-volume) shape the site planned for its budget, x×y×z. */
  patch: number[] | null;
  batch: number | null;
  roundsParticipated: number;
  lastUpdate: { round: number; status: SiteUpdateStatus; reason?: string } | null;
  /** The site's latest validation Dice per foreground label. */
  dice: LabelDice | null;
}

/** A selected site's phase in the open round, in the order a site goes through them. */
export type RoundSiteState = 'downloading' | 'evaluating' | 'training' | 'uploading' | 'done' | 'late' | 'failed';

export interface DashboardRoundSite {
  id: string;
  state: RoundSiteState;
  /** Local training steps done / requested (0 while downloading or evaluating). */
  stepsDone: number;
  stepsTotal: number;
  /** Checkpoint bytes the site has downloaded / the checkpoint's size (0 / 0 until it reports). */
  downloadedBytes: number;
  downloadTotalBytes: number;
  /** Update bytes received / the update's size (0 / 0 until the upload begins). */
  bytesTransferred: number;
  bytesTotal: number;
}

export interface DashboardCurrentRound {
  round: number;
  attempt: number;
  startedAt: string;
  deadline: string;
  sites: DashboardRoundSite[];
}

export interface DashboardRoundRecord {
  round: number;
  durationMs: number;
  /** Global model's validation Dice, mean over sites, per label. */
  globalDice: LabelDice;
  /** Global model's validation Dice per site, per label. */
  siteDice: Record<string, LabelDice>;
  /** Mean local training loss per site during the round. */
  siteLoss: Record<string, number | null>;
  bytesMoved: number;
  checkpointVersion: number | null;
}

export interface DashboardCheckpoint {
  version: number;
  round: number;
  createdAt: string;
  sha256: string;
  signatureValid: boolean;
  sizeBytes: number;
}

export interface DashboardEvent {
  time: string;
  /** e.g. 'enrolled', 'rejected', 'dropout', 'restart', 'round-start', 'round-end', 'checkpoint'. */
  kind: string;
  site?: string;
  message: string;
}

export interface DashboardSnapshot {
  experiment: DashboardExperiment;
  sites: DashboardSite[];
  currentRound: DashboardCurrentRound | null;
  /** Completed rounds, oldest first. */
  rounds: DashboardRoundRecord[];
  checkpoints: DashboardCheckpoint[];
  /** Newest last; the dashboard keeps only the last MAX_DASHBOARD_EVENTS. */
  events: DashboardEvent[];
  /** Storage / state DB health: the page shows a banner while `ok` is false. */
  health?: DashboardHealth;
  /** Cross-site validation of the final model (sites × per-class Dice / HD95 / NSD); null before the experiment completes. */
  crossSite?: CrossSiteTable | null;
}

export interface DashboardHealth {
  ok: boolean;
  problems: { component: string; code: string; message: string; since: string }[];
}

/** What /api/snapshot and the 'snapshot' push carry: the snapshot plus the coordinator's clock,
 * so the page computes "time left" without trusting the viewer's clock. */
export interface DashboardPayload extends DashboardSnapshot {
  serverTime: string;
}

export interface CheckpointDownload {
  fileName: string;
  bytes: Uint8Array;
}

export interface MountDashboardOptions {
  /** Dashboard token (the coordinator config's dashboardToken: >= 128 bits, shared/config/dashboard-token.ts). */
  token: string;
  /**
   * Called when a live viewer's socket has shown the token, with its engine connection; false
   * refuses it (the coordinator's limit of authenticated connections). Default: admit.
   */
  admitViewer?: (conn: Socket['conn']) => boolean;
  /** Failed logins (summarised per interval) and throttling are logged here (default: console). */
  log?: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** Failed-login throttle per client address (login-throttle.ts defaults). */
  loginThrottle?: Partial<LoginThrottleOptions>;
  /** Interval of the failed-login summaries in the log (ms; default 60 s). */
  logSummaryIntervalMs?: number;
  snapshot: () => DashboardSnapshot;
  /** Artifact bytes of a checkpoint version, or null when it does not exist (404). */
  downloadCheckpoint: (version: number) => CheckpointDownload | null;
  /** Minimum milliseconds between two 'snapshot' pushes (default 250, i.e. at most 4/s). */
  minPushIntervalMs?: number;
  /** Called when the snapshot provider throws during a push (default: console.error). */
  onError?: (error: unknown) => void;
}

export interface DashboardHandle {
  /** Push a fresh snapshot to every connected dashboard; coalesced to at most one per interval. */
  publishSnapshot(): void;
  /** Push one event to every connected dashboard immediately. */
  publishEvent(event: DashboardEvent): void;
  /** Cancel a pending push (call on coordinator shutdown). */
  close(): void;
}

export type MountDashboard = (app: Express, io: SocketIoServer, opts: MountDashboardOptions) => DashboardHandle;
