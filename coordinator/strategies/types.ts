/**
 * The strategy contract the round scheduler drives (modelled on Flower's Strategy):
 * `configureFit` picks the sites of a round and decides exactly what each is told — the round
 * task carries its FitInstructions verbatim — and `beginAggregation` returns the aggregator that
 * folds the round's validated updates into the next global model. The scheduler depends on this
 * interface only; new strategies (robust, secure, differentially private, server optimisers) are
 * new implementations of it plus new fields in FitInstructions.
 */
import type { StrategyName } from '../../shared/config/strategy.ts';
import type { GlobalValues, RunVisitor, WeightRuns } from '../../shared/codec/index.ts';
import type { FitInstructions } from '../../shared/protocol/messages.ts';
import type { Rng } from '../../shared/random.ts';
import type { WeightSpec } from '../../shared/weights.ts';

export type { FitInstructions, Rng, StrategyName };

/** A site as the scheduler knows it when a round starts. */
export interface SiteInfo {
  id: string;
  /** Sites with `online: false` are never selected; undefined counts as online. */
  online?: boolean;
}

export interface FitPlan {
  round: number;
  /** Selected site ids, sorted. */
  selected: string[];
  /** One entry per selected site: what its round task carries. */
  instructions: Record<string, FitInstructions>;
}

export interface Aggregator {
  /**
   * Folds in one update that already passed the validation path (shared/codec/weights-checks.ts);
   * reads its values once. Throws PatchFedError naming the site if it cannot take it (a second
   * update from the same site, an aggregation already finished).
   */
  add(siteId: string, update: WeightRuns, numSamples: number): Promise<void>;
  /** Number of accepted updates so far. */
  readonly count: number;
  /** Sum of numSamples over accepted updates. */
  readonly totalSamples: number;
  /**
   * Streams the new global weights to `sink` (tensor, element offset, values — valid during the
   * call), in manifest order; the aggregator is closed afterwards. The checkpoint writer is the
   * usual sink, so the new model never needs to be held whole in memory.
   */
  finish(sink: RunVisitor): void;
  /**
   * Stateful strategies: what the checkpoint finish() produced carries besides the weights
   * (server-optimiser moments, the privacy ledger). Called once, right after finish().
   */
  checkpointAttachments?(): CheckpointAttachments;
  /** Releases what the aggregation holds on disk (retained update files); called when the round attempt ends, whatever its outcome. */
  dispose?(): void;
}

/** Files published in the checkpoint's version directory, and entries for its meta.json `extra`. */
export interface CheckpointAttachments {
  files?: Record<string, Uint8Array>;
  extra?: Record<string, unknown>;
}

/** The checkpoint a round starts from, as a stateful strategy reads its saved state from it. */
export interface SavedCheckpoint {
  version: number;
  round: number;
  /** meta.json `extra`: l2Norm and whatever CheckpointAttachments.extra added. */
  extra: Readonly<Record<string, unknown>>;
  /** A file published with the checkpoint (CheckpointAttachments.files), or null when it has none of that name. */
  readFile(name: string): Uint8Array | null;
}

export interface Strategy {
  readonly name: StrategyName;
  configureFit(round: number, global: { manifest: readonly WeightSpec[] }, sites: readonly SiteInfo[], rng?: Rng): FitPlan;
  /** `global` is the round's global model (on the coordinator: read from its checkpoint file). */
  beginAggregation(round: number, global: GlobalValues): Aggregator;
  /**
   * Stateful strategies (server optimisers, DP accounting): adopt the state saved with the
   * checkpoint the next round starts from. The scheduler calls it before every configureFit, so
   * a restarted coordinator, or a round retried after a failed aggregation, continues exactly
   * from what was committed.
   */
  restore?(checkpoint: SavedCheckpoint): void;
}
