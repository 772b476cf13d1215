/**
 * The simulation's JSON report, built from the coordinator's records. Every round entry describes
 * the global checkpoint that round produced: `globalDice` is that checkpoint's validation Dice,
 * measured by each site on its own validation split when it received the checkpoint at the
 * start of the next round (and, after the last round, by the final evaluation).
 */
import type { CheckpointInfo, RoundRow } from './coordinator-records.ts';
import type { CrossSiteTable } from '../../shared/protocol/cross-site-table.ts';

export type LabelDice = Record<string, number>;

export interface ReportSiteRound {
  id: string;
  /** The coordinator accepted this site's update into the round's aggregate. */
  accepted: boolean;
  /** Why not, when not accepted (rejection reason, or no update before the round closed). */
  reason?: string;
  /** Training patch the site planned for its memory budget, [x, y, z]. */
  patch: number[] | null;
  batch: number | null;
  /** Training cases the site weighted its update with (FedAvg weight). */
  samples: number | null;
  /** Encrypted update bytes the site uploaded. */
  bytesSent: number | null;
  /** Checkpoint bytes the site downloaded for the round (the round's input model). */
  bytesReceived: number | null;
  /** Mean training loss over the last quarter of the round's local steps. */
  loss: number | null;
  /** Validation Dice of this round's global checkpoint at this site, per label. */
  dice: LabelDice | null;
  backend: string | null;
}

export interface ReportRound {
  round: number;
  /** Attempt that completed (2+ after a retry, e.g. when the coordinator was restarted mid-round). */
  attempt: number;
  durationMs: number;
  /** Mean over sites of this round's global checkpoint's validation Dice, per label. */
  globalDice: LabelDice | null;
  /** Mean of globalDice over labels. */
  globalMeanDice: number | null;
  checkpointVersion: number;
  checkpointSha256: string | null;
  /** Checkpoint downloads plus update uploads in this round, bytes. */
  bytesMoved: number | null;
  sites: ReportSiteRound[];
}

export interface BaselineResult {
  /** Validation Dice at each site, per label, of the baseline's model(s). */
  sites: Record<string, LabelDice>;
  meanDice: LabelDice;
  meanOverLabels: number;
  /** Training steps per model. */
  steps: number;
  wallMs: number;
}

export interface SimulationReport {
  format: 'patchfed-simulate/1';
  createdAt: string;
  runDir: string;
  experiment: { id: string; task: string; mode: string; preset: string; strategy: string; strategyDescription?: string; rounds: number; localSteps: number; learningRate: number; foregroundRate: number };
  labels: string[];
  sites: { id: string; memoryBudgetMB: number; siteStyle: number; orientation: string; patch: number[] | null; batch: number | null; backend: string | null }[];
  /** The untrained global model (round 0) as the sites measured it in round 1. */
  initial: { globalDice: LabelDice | null; globalMeanDice: number | null; checkpointSha256: string | null };
  rounds: ReportRound[];
  baselines?: { federated: { sites?: Record<string, LabelDice>; meanDice: LabelDice; meanOverLabels: number }; localOnly: BaselineResult; pooled: BaselineResult };
  /** Differential privacy (strategy.dp): ε spent at δ after the last completed round, and per round (coordinator/privacy). */
  privacy?: { mode: string; noiseMultiplier: number; clipNorm: number; delta: number; epsilonBudget: number | null; epsilon: number; perRound: { round: number; epsilon: number; epsilonSpent: number }[] };
  injected: { dropSite?: { siteId: string; round: number; killedAt: string | null }; coordinatorRestart?: { round: number; killedAt: string | null } };
  /** Cross-site validation: each site's test-split Dice / HD95 / NSD of the final global model and of its own last local model (coordinator/server/cross-site.ts); null when not complete. */
  crossSiteValidation?: CrossSiteTable | null;
  /** Whether the coordinator aggregated with secure aggregation (only masked updates and their sum). */
  secureAggregation?: boolean;
  /** Secure aggregation: the threshold t and every dropout the protocol handled (coordinator events). */
  secureAggregationDetails?: { threshold: number; dropouts: string[] };
  summary: {
    status: 'complete' | 'stopped' | 'interrupted';
    message: string;
    wallTimeMs: number;
    roundsCompleted: number;
    initialMeanDice: number | null;
    finalMeanDice: number | null;
    /** finalMeanDice > initialMeanDice. */
    improved: boolean | null;
    totalBytesMoved: number;
    finalCheckpointSha256: string | null;
  };
}

export function meanOf(values: readonly number[]): number | null {
  return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
}

/** Per-label mean over sites (labels missing at a site are skipped). */
export function meanDice(perSite: readonly LabelDice[], labels: readonly string[]): LabelDice | null {
  if (perSite.length === 0) return null;
  const out: LabelDice = {};
  for (const l of labels) {
    const m = meanOf(perSite.map((d) => d[l]).filter((v): v is number => typeof v === 'number'));
    if (m !== null) out[l] = m;
  }
  return out;
}

export function meanOverLabels(d: LabelDice | null, labels: readonly string[]): number | null {
  return d ? meanOf(labels.map((l) => d[l]).filter((v): v is number => typeof v === 'number')) : null;
}

/** The completed attempt of each round, in round order (round 0 = the initial checkpoint). */
export function completedRounds(rows: readonly RoundRow[]): Map<number, RoundRow> {
  const out = new Map<number, RoundRow>();
  for (const r of rows) if (r.status === 'complete') out.set(r.round, r);
  return out;
}

/** Dice each site measured for the model it received in `row` (its accepted update's metrics). */
export function diceReported(row: RoundRow | undefined): Map<string, LabelDice> {
  const out = new Map<string, LabelDice>();
  for (const u of row?.updates ?? []) if (u.status === 'accepted' && u.metrics?.dice) out.set(u.siteId, u.metrics.dice);
  return out;
}

export interface BuildRoundsInput {
  rows: readonly RoundRow[];
  labels: readonly string[];
  checkpoint: (version: number) => CheckpointInfo | null;
  /** Final evaluation of the last checkpoint per site (sites do not evaluate after the last round). */
  finalDice: Record<string, LabelDice> | null;
}

export function buildRounds({ rows, labels, checkpoint, finalDice }: BuildRoundsInput): ReportRound[] {
  const done = completedRounds(rows);
  const last = Math.max(0, ...done.keys());
  const out: ReportRound[] = [];
  for (const [round, row] of [...done.entries()].sort((a, b) => a[0] - b[0])) {
    if (round === 0) continue;
    const next = done.get(round + 1);
    const measured = round === last && finalDice ? new Map(Object.entries(finalDice)) : diceReported(next);
    const input = done.get(round - 1);
    const inputSize = input?.checkpointVersion ? (checkpoint(input.checkpointVersion)?.sizeBytes ?? null) : null;
    const sites: ReportSiteRound[] = row.selected.map((id) => {
      const updates = row.updates.filter((u) => u.siteId === id);
      const u = updates.find((x) => x.status === 'accepted') ?? updates[updates.length - 1];
      const m = u?.metrics ?? null;
      return {
        id,
        accepted: u?.status === 'accepted',
        ...(u?.status !== 'accepted' ? { reason: u?.reason ?? 'no update before the round closed (site dropped out or was late)' } : {}),
        patch: m?.patch ?? null,
        batch: m?.batch ?? null,
        samples: u?.samples ?? null,
        bytesSent: u?.bytes ?? null,
        // A site that sent an update had downloaded and verified the whole input checkpoint.
        bytesReceived: u ? inputSize : null,
        loss: typeof m?.loss === 'number' ? m.loss : null,
        dice: measured.get(id) ?? null,
        backend: m?.backend ?? null,
      };
    });
    const globalDice = meanDice([...measured.values()], labels);
    const info = row.checkpointVersion ? checkpoint(row.checkpointVersion) : null;
    out.push({
      round,
      attempt: row.attempt,
      durationMs: row.durationMs ?? 0,
      globalDice,
      globalMeanDice: meanOverLabels(globalDice, labels),
      checkpointVersion: row.checkpointVersion!,
      checkpointSha256: info?.sha256 ?? null,
      bytesMoved: row.bytesMoved,
      sites,
    });
  }
  return out;
}
