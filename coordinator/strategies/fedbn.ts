/**
 * FedBN (Li et al. 2021): normalisation layers stay local to each site, which handles feature
 * shift between scanners/protocols. Every `norm-*` tensor (gamma, beta, running mean and var) is
 * excluded from averaging: the aggregated global keeps the previous global's norm tensors
 * unchanged (so a brand-new site still starts from sensible values), and `localRoles` /
 * per-site `localTensors` tell sites not to overwrite their own norm tensors when loading a
 * global checkpoint. Everything else is FedAvg.
 */
import type { WeightRole } from '../../shared/weights.ts';
import { SampleWeightedStrategy, type CommonStrategyOptions } from './sample-weighted.ts';

export const FEDBN_LOCAL_ROLES: readonly WeightRole[] = ['norm-gamma', 'norm-beta', 'norm-running-mean', 'norm-running-var'];

export type FedBNOptions = CommonStrategyOptions;

export function fedBN(options: FedBNOptions = {}): SampleWeightedStrategy {
  return new SampleWeightedStrategy('fedbn', options, 0, FEDBN_LOCAL_ROLES);
}
