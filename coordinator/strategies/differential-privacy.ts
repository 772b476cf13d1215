/**
 * Site-level DP-FedAvg (McMahan et al. 2018) on top of FedAvg / FedProx / FedBN:
 *  - configureFit keeps the base strategy's sites and instructions and adds `dp` to every site's
 *    FitInstructions: clip the update delta to C, and in distributed mode add N(0, (zC)²/n) to it,
 *    n = minSites (the fewest sites a round completes with, so the sum always holds at least the
 *    accounted noise; more contributors only over-noise) — shared/dp/clip-and-noise.ts;
 *  - it refuses, before the round opens, a round that would take ε above the budget
 *    (PRIVACY_BUDGET_EXHAUSTED: the scheduler stops the experiment);
 *  - the aggregator is dp-sum.ts (clipped sum + central noise over the fixed denominator), and the
 *    checkpoint it produces carries the privacy ledger with this round composed (privacy/ledger.ts).
 * The sampling rate of a round is q = selected / online sites when it opens (a site that is online
 * is selected with this probability; see the Poisson caveat in privacy/accountant.ts).
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { DpSpec } from '../../shared/config/strategy.ts';
import type { GlobalValues } from '../../shared/codec/index.ts';
import { noiseStd, secureGaussian, type GaussianSampler } from '../../shared/dp/index.ts';
import type { WeightSpec } from '../../shared/weights.ts';
import { PRIVACY_BUDGET_EXHAUSTED, PrivacyLedger, type PrivacySettings } from '../privacy/index.ts';
import { DpSumAggregator } from './dp-sum.ts';
import type { SampleWeightedStrategy } from './sample-weighted.ts';
import type { FitInstructions, FitPlan, Rng, SavedCheckpoint, SiteInfo, Strategy, StrategyName } from './types.ts';

export interface DpStrategyOptions {
  /** Noise source (default: a cryptographically seeded sampler per aggregation). */
  sampler?: () => GaussianSampler;
}

export class DifferentiallyPrivateStrategy implements Strategy {
  readonly name: StrategyName;
  private ledger = PrivacyLedger.empty();
  /** What configureFit decided for the round being planned: its sampling rate and denominator. */
  private planned: { round: number; samplingRate: number; selected: number } | null = null;
  private readonly sampler: () => GaussianSampler;

  constructor(
    private readonly base: SampleWeightedStrategy,
    readonly dp: DpSpec,
    private readonly minContributors: number,
    options: DpStrategyOptions = {},
  ) {
    this.name = base.name;
    this.sampler = options.sampler ?? secureGaussian;
    if (!(Number.isSafeInteger(minContributors) && minContributors >= 1)) {
      throw new PatchFedError('bad-strategy-config', `DP: the minimum number of contributing sites must be an integer >= 1, got ${minContributors}.`, { subject: 'minSites' });
    }
  }

  get settings(): PrivacySettings {
    const { mode, noiseMultiplier, clipNorm, delta, epsilonBudget } = this.dp;
    return { mode, noiseMultiplier, clipNorm, delta, ...(epsilonBudget !== undefined ? { epsilonBudget } : {}) };
  }

  /** ε spent by the rounds committed so far (as of the last restore). */
  get epsilonSpent(): number {
    return this.ledger.epsilon(this.dp.delta);
  }

  restore(checkpoint: SavedCheckpoint): void {
    this.ledger = PrivacyLedger.fromCheckpoint(checkpoint);
  }

  configureFit(round: number, global: { manifest: readonly WeightSpec[] }, sites: readonly SiteInfo[], rng?: Rng): FitPlan {
    const plan = this.base.configureFit(round, global, sites, rng);
    const online = sites.filter((s) => s.online !== false).length;
    const samplingRate = Math.min(1, plan.selected.length / Math.max(1, online));
    const next = { samplingRate, noiseMultiplier: this.dp.noiseMultiplier };
    if (this.dp.epsilonBudget !== undefined) {
      const check = this.ledger.budgetCheck({ epsilon: this.dp.epsilonBudget, delta: this.dp.delta }, next);
      if (check.exceeds) {
        throw new PatchFedError(
          PRIVACY_BUDGET_EXHAUSTED,
          `privacy budget reached: round ${round} would take ε from ${check.epsilonNow.toFixed(4)} to ${check.epsilonAfter.toFixed(4)} (δ = ${this.dp.delta}), above the budget ε = ${this.dp.epsilonBudget}; ${this.ledger.rounds} DP round(s) were run`,
          { subject: 'epsilonBudget' },
        );
      }
    }
    const dp: NonNullable<FitInstructions['dp']> = { clipNorm: this.dp.clipNorm };
    if (this.dp.mode === 'distributed') dp.noiseStd = noiseStd('distributed', this.dp, this.minContributors);
    const instructions: Record<string, FitInstructions> = {};
    for (const [id, fit] of Object.entries(plan.instructions)) instructions[id] = { ...fit, dp: { ...dp } };
    this.planned = { round, samplingRate, selected: plan.selected.length };
    return { ...plan, instructions };
  }

  beginAggregation(round: number, global: GlobalValues): DpSumAggregator {
    const planned = this.planned;
    if (!planned || planned.round !== round) {
      throw new PatchFedError('dp-unplanned', `DP: round ${round} was not planned by configureFit, so its sampling rate and denominator are unknown.`);
    }
    const roles = this.base.localRoles;
    const ledger = this.ledger;
    const settings = this.settings;
    return new DpSumAggregator(global, {
      keepGlobal: roles.length > 0 ? (spec) => roles.includes(spec.role) : undefined,
      label: `round ${round} (${this.name}, ${this.dp.mode} DP)`,
      clipNorm: this.dp.mode === 'central' ? this.dp.clipNorm : undefined,
      noiseStd: this.dp.mode === 'central' ? noiseStd('central', this.dp) : 0,
      sampler: this.sampler(),
      denominator: planned.selected,
      attachments: () => ({ extra: { privacy: ledger.recordAfter(round, { samplingRate: planned.samplingRate, noiseMultiplier: this.dp.noiseMultiplier }, settings) } }),
    });
  }
}
