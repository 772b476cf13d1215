/**
 * The one strategy implementation FedAvg, FedProx and FedBN share. They differ only in the
 * proximal μ their fit instructions carry and in which roles stay local; sampling and the
 * sample-weighted streaming mean are identical.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { GlobalValues } from '../../shared/codec/index.ts';
import type { WeightRole, WeightSpec } from '../../shared/weights.ts';
import { roundRng } from './rng.ts';
import { checkSamplingOptions, sampleSites, type SamplingOptions } from './sampling.ts';
import { StreamingWeightedMean } from './streaming-mean.ts';
import type { FitInstructions, FitPlan, Rng, SiteInfo, Strategy, StrategyName } from './types.ts';

/** How a strategy picks the sites of a round (the experiment's fractionFit, minSites and seed). */
export interface SamplingPolicy extends SamplingOptions {
  /** Seed of the per-round sampling stream. */
  seed: number;
}

export const DEFAULT_SAMPLING: SamplingPolicy = { fractionFit: 1, minSites: 1, seed: 0 };

export class SampleWeightedStrategy implements Strategy {
  readonly sampling: SamplingPolicy;

  constructor(
    readonly name: StrategyName,
    sampling: Partial<SamplingPolicy>,
    readonly proximalMu: number,
    readonly localRoles: readonly WeightRole[],
  ) {
    this.sampling = { ...DEFAULT_SAMPLING, ...sampling };
    checkSamplingOptions(this.sampling);
    if (!Number.isSafeInteger(this.sampling.seed)) throw badConfig('seed', `must be an integer, got ${this.sampling.seed}`);
    if (!(Number.isFinite(proximalMu) && proximalMu >= 0)) throw badConfig('mu', `must be a finite number >= 0, got ${proximalMu}`);
  }

  /** Sites and their instructions; `rng` defaults to the (seed, round) stream so restarts resample identically. */
  configureFit(round: number, global: { manifest: readonly WeightSpec[] }, sites: readonly SiteInfo[], rng?: Rng): FitPlan {
    checkRound(round);
    const selected = sampleSites(sites, this.sampling, rng ?? roundRng(this.sampling.seed, round));
    const localTensors = global.manifest.filter((s) => this.localRoles.includes(s.role)).map((s) => s.name);
    const instructions: Record<string, FitInstructions> = {};
    for (const id of selected) instructions[id] = { proximalMu: this.proximalMu, localTensors: [...localTensors] };
    return { round, selected, instructions };
  }

  beginAggregation(round: number, global: GlobalValues): StreamingWeightedMean {
    checkRound(round);
    return new StreamingWeightedMean(global, {
      keepGlobal: this.localRoles.length > 0 ? (spec) => this.localRoles.includes(spec.role) : undefined,
      label: `round ${round} (${this.name})`,
    });
  }
}

function checkRound(round: number): void {
  if (!(Number.isSafeInteger(round) && round >= 0)) {
    throw new PatchFedError('bad-round', `Round must be a non-negative integer, got ${round}.`, { subject: 'round' });
  }
}

function badConfig(field: string, reason: string): PatchFedError {
  return new PatchFedError('bad-strategy-config', `Strategy option '${field}' ${reason}.`, { subject: field });
}
