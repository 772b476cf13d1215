/**
 * FedProx (Li et al. 2020): aggregation is exactly FedAvg's; the difference is on the sites,
 * which add (μ/2)·||w − w_global||² to their loss to limit client drift on non-IID data.
 * configureFit puts μ into every selected site's fit instructions; the site trainer applies it.
 */
import { DEFAULT_PROXIMAL_MU } from '../../shared/config/strategy.ts';
import { SampleWeightedStrategy, type SamplingPolicy } from './sample-weighted.ts';

export function fedProx(sampling: Partial<SamplingPolicy> = {}, mu: number = DEFAULT_PROXIMAL_MU): SampleWeightedStrategy {
  return new SampleWeightedStrategy('fedprox', sampling, mu, []);
}
