/**
 * FedProx (Li et al. 2020): aggregation is exactly FedAvg's; the difference is on the sites,
 * which add (μ/2)·||w − w_global||² to their loss to limit client drift on non-IID data.
 * configureFit sends μ to every selected site as `proximalMu`; the site trainer applies it.
 */
import { SampleWeightedStrategy, type CommonStrategyOptions } from './sample-weighted.ts';

export const DEFAULT_PROXIMAL_MU = 0.01;

export interface FedProxOptions extends CommonStrategyOptions {
  /** Proximal coefficient μ >= 0; default 0.01. */
  mu?: number;
}

export function fedProx(options: FedProxOptions = {}): SampleWeightedStrategy {
  return new SampleWeightedStrategy('fedprox', options, options.mu ?? DEFAULT_PROXIMAL_MU, []);
}
