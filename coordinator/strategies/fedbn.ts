/**
 * FedBN (Li et al. 2021): normalisation layers stay local to each site, which handles feature
 * shift between scanners/protocols. Every `norm-*` tensor (gamma, beta, running mean and var) is
 * excluded from averaging: the aggregated global keeps the previous global's norm tensors
 * unchanged (so a brand-new site still starts from sensible values), and the fit instructions
 * name those tensors so sites do not overwrite their own when loading a global checkpoint.
 * Everything else is FedAvg.
 */
import type { WeightRole } from '../../shared/weights.ts';
import { SampleWeightedStrategy, type SamplingPolicy } from './sample-weighted.ts';

export const FEDBN_LOCAL_ROLES: readonly WeightRole[] = ['norm-gamma', 'norm-beta', 'norm-running-mean', 'norm-running-var'];

export function fedBN(sampling: Partial<SamplingPolicy> = {}): SampleWeightedStrategy {
  return new SampleWeightedStrategy('fedbn', sampling, 0, FEDBN_LOCAL_ROLES);
}
