/**
 * The strategy contract the round scheduler drives (modelled on Flower's Strategy):
 * `configureFit` picks the sites of a round and what to tell them, `beginAggregation` returns a
 * streaming aggregator that folds their updates into the next global model.
 */
import type { NamedWeights, WeightRole, WeightSpec } from '../../shared/weights.ts';

export type StrategyName = 'fedavg' | 'fedprox' | 'fedbn';

/** A site as the scheduler knows it when a round starts. */
export interface SiteInfo {
  id: string;
  /** Sites with `online: false` are never selected; undefined counts as online. */
  online?: boolean;
}

/** Uniform random number in [0, 1). */
export type Rng = () => number;

/** What one selected site is told to do in a round. */
export interface SiteFitConfig {
  /** FedProx μ: the site adds (μ/2)·||w − w_global||² to its loss. 0 = plain local training. */
  proximalMu: number;
  /** Roles the site keeps local (FedBN: all `norm-*`); it must not overwrite them from a global checkpoint. */
  localRoles: readonly WeightRole[];
  /** Names of the global model's tensors with a local role, so sites can check by name. */
  localTensors: readonly string[];
}

export interface FitPlan {
  round: number;
  /** Selected site ids, sorted. */
  selected: string[];
  /** One entry per selected site. */
  config: Record<string, SiteFitConfig>;
}

export interface Aggregator {
  /** Validates the update (throws PatchFedError naming the site) and folds it into the running sum. */
  add(siteId: string, update: NamedWeights, numSamples: number): void;
  /** Number of accepted updates so far. */
  readonly count: number;
  /** Sum of numSamples over accepted updates. */
  readonly totalSamples: number;
  /** The new global weights; the aggregator is closed afterwards. */
  finish(): NamedWeights;
}

export interface Strategy {
  readonly name: StrategyName;
  /** Roles that never leave a site's own model (empty unless FedBN). */
  readonly localRoles: readonly WeightRole[];
  configureFit(round: number, global: { manifest: readonly WeightSpec[] }, sites: readonly SiteInfo[], rng?: Rng): FitPlan;
  beginAggregation(round: number, global: NamedWeights): Aggregator;
}
