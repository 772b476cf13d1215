/**
 * The one strategy implementation FedAvg, FedProx and FedBN share. They differ only in the
 * proximal μ sent to sites and in which roles stay local; sampling and the sample-weighted
 * streaming mean are identical.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { NamedWeights, WeightRole, WeightSpec } from '../../shared/weights.ts';
import { roundRng } from './rng.ts';
import { checkSamplingOptions, sampleSites } from './sampling.ts';
import { StreamingWeightedMean } from './streaming-mean.ts';
import { DEFAULT_MAX_SAMPLES_PER_SITE } from './validate-update.ts';
import type { FitPlan, Rng, SiteFitConfig, SiteInfo, Strategy, StrategyName } from './types.ts';

export interface CommonStrategyOptions {
  /** Fraction of online sites selected per round, (0, 1]; default 1 (all). */
  fractionFit?: number;
  /** Minimum sites per round; default 1. */
  minSites?: number;
  /** Seed of the per-round sampling stream; default 0. */
  seed?: number;
  /** Largest numSamples a site may claim; default DEFAULT_MAX_SAMPLES_PER_SITE. */
  maxSamplesPerSite?: number;
}

export class SampleWeightedStrategy implements Strategy {
  readonly fractionFit: number;
  readonly minSites: number;
  readonly seed: number;
  readonly maxSamplesPerSite: number;

  constructor(
    readonly name: StrategyName,
    options: CommonStrategyOptions,
    readonly proximalMu: number,
    readonly localRoles: readonly WeightRole[],
  ) {
    this.fractionFit = options.fractionFit ?? 1;
    this.minSites = options.minSites ?? 1;
    this.seed = options.seed ?? 0;
    this.maxSamplesPerSite = options.maxSamplesPerSite ?? DEFAULT_MAX_SAMPLES_PER_SITE;
    checkSamplingOptions(this);
    if (!Number.isSafeInteger(this.seed)) throw badConfig('seed', `must be an integer, got ${this.seed}`);
    if (!(Number.isSafeInteger(this.maxSamplesPerSite) && this.maxSamplesPerSite >= 1)) {
      throw badConfig('maxSamplesPerSite', `must be an integer >= 1, got ${this.maxSamplesPerSite}`);
    }
    if (!(Number.isFinite(proximalMu) && proximalMu >= 0)) throw badConfig('mu', `must be a finite number >= 0, got ${proximalMu}`);
  }

  /** Sites and their instructions; `rng` defaults to the (seed, round) stream so restarts resample identically. */
  configureFit(round: number, global: { manifest: readonly WeightSpec[] }, sites: readonly SiteInfo[], rng?: Rng): FitPlan {
    checkRound(round);
    const selected = sampleSites(sites, this, rng ?? roundRng(this.seed, round));
    const localTensors = global.manifest.filter((s) => this.localRoles.includes(s.role)).map((s) => s.name);
    const config: Record<string, SiteFitConfig> = {};
    for (const id of selected) {
      config[id] = { proximalMu: this.proximalMu, localRoles: [...this.localRoles], localTensors: [...localTensors] };
    }
    return { round, selected, config };
  }

  beginAggregation(round: number, global: NamedWeights): StreamingWeightedMean {
    checkRound(round);
    return new StreamingWeightedMean(global, {
      keepGlobal: this.localRoles.length > 0 ? (spec) => this.localRoles.includes(spec.role) : undefined,
      maxSamplesPerSite: this.maxSamplesPerSite,
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
