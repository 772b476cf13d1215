/**
 * The Strategy an experiment's strategy spec (shared/config/strategy.ts) names:
 *   fedavg | fedprox | fedbn            SampleWeightedStrategy, or with `dp` DifferentiallyPrivateStrategy on it
 *   median | trimmed-mean | clipped-fedavg   RobustStrategy
 *   + serverOptimizer                   ServerOptimizedStrategy around either
 */
import { PatchFedError } from '../../shared/errors.ts';
import { StrategySpecSchema, strategyCombinationProblem, type ServerOptimizerConfig, type StrategySpec } from '../../shared/config/strategy.ts';
import type { WeightRole } from '../../shared/weights.ts';
import { DifferentiallyPrivateStrategy, type DpStrategyOptions } from './differential-privacy.ts';
import { fedAvg } from './fedavg.ts';
import { FEDBN_LOCAL_ROLES, fedBN } from './fedbn.ts';
import { fedProx } from './fedprox.ts';
import { RobustStrategy, type RobustOptions, type RobustRule } from './robust.ts';
import { DEFAULT_SAMPLING, type SampleWeightedStrategy, type SamplingPolicy } from './sample-weighted.ts';
import { ServerOptimizedStrategy } from './server-optimized.ts';
import type { ServerOptimizerSpec } from './server-optimizers.ts';
import type { Strategy } from './types.ts';

export interface StrategyOptions {
  /** The experiment aggregates with secure aggregation: robust rules and central DP are refused. */
  secureAggregation?: boolean;
  /** Robust rules: bytes of update values held at once during aggregation. */
  sliceBudgetBytes?: RobustOptions['sliceBudgetBytes'];
  /** DP: the noise source (default: cryptographically seeded). */
  dpSampler?: DpStrategyOptions['sampler'];
}

/** Builds the strategy; a spec that does not parse, or a combination that cannot work, throws PatchFedError naming the field. */
export function createStrategy(spec: StrategySpec | unknown, sampling: Partial<SamplingPolicy> = {}, source = 'strategy', options: StrategyOptions = {}): Strategy {
  const parsed = StrategySpecSchema.safeParse(spec);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') || '(top level)';
    throw new PatchFedError('bad-strategy-config', `${source}: '${field}': ${issue?.message ?? 'invalid'}`, { subject: field });
  }
  const s = parsed.data;
  const problem = strategyCombinationProblem(s, { secureAggregation: options.secureAggregation === true });
  if (problem) throw new PatchFedError('bad-strategy-config', `${source}: ${problem}.`, { subject: 'name' });
  const localRoles: readonly WeightRole[] = s.name === 'fedbn' ? FEDBN_LOCAL_ROLES : [];
  let strategy: Strategy;
  const rule = robustRule(s);
  if (rule) strategy = new RobustStrategy(s.name, sampling, rule, { sliceBudgetBytes: options.sliceBudgetBytes });
  else {
    const base = meanStrategy(s, sampling);
    strategy = s.dp ? new DifferentiallyPrivateStrategy(base, s.dp, { ...DEFAULT_SAMPLING, ...sampling }.minSites, { sampler: options.dpSampler }) : base;
  }
  return s.serverOptimizer ? new ServerOptimizedStrategy(strategy, serverOptimizerSpec(s.serverOptimizer), localRoles) : strategy;
}

function meanStrategy(s: StrategySpec, sampling: Partial<SamplingPolicy>): SampleWeightedStrategy {
  if (s.name === 'fedprox') return fedProx(sampling, s.mu);
  if (s.name === 'fedbn') return fedBN(sampling);
  return fedAvg(sampling);
}

function robustRule(s: StrategySpec): RobustRule | null {
  switch (s.name) {
    case 'median':
      return { kind: 'median' };
    case 'trimmed-mean':
      return { kind: 'trimmed-mean', beta: s.beta };
    case 'clipped-fedavg':
      return { kind: 'clipped-mean', multiplier: s.clipMultiplier };
    default:
      return null;
  }
}

/** The config's spelling of an optimiser as the math's (server-optimizers.ts). */
export function serverOptimizerSpec(o: ServerOptimizerConfig): ServerOptimizerSpec {
  switch (o.name) {
    case 'fedavgm':
      return { kind: 'fedavgm', learningRate: o.learningRate, momentum: o.momentum };
    case 'fedadagrad':
      // β2 plays no part in FedAdagrad's update (and bias correction is not offered for it).
      return { kind: 'fedadagrad', learningRate: o.learningRate, beta1: o.beta1, beta2: 0, tau: o.tau };
    default:
      return { kind: o.name, learningRate: o.learningRate, beta1: o.beta1, beta2: o.beta2, tau: o.tau, biasCorrection: o.biasCorrection };
  }
}
