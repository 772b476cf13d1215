/**
 * The aggregation strategy an experiment declares — the one schema for it: the coordinator's
 * config validates it, the signed experiment description carries it to sites, and
 * coordinator/strategies builds the Strategy from it.
 */
import { z } from 'zod';

/** FedProx's proximal weight μ when the config does not give one (Li et al. 2020 use 0.001–1). */
export const DEFAULT_PROXIMAL_MU = 0.01;

export const StrategySpecSchema = z.discriminatedUnion('name', [
  /** FedAvg (McMahan et al. 2017): sample-weighted mean of the site models. */
  z.strictObject({ name: z.literal('fedavg') }),
  /** FedProx (Li et al. 2020): FedAvg plus (μ/2)·||w − w_global||² in each site's loss. */
  z.strictObject({ name: z.literal('fedprox'), mu: z.number().min(0).max(1000).default(DEFAULT_PROXIMAL_MU) }),
  /** FedBN (Li et al. 2021): FedAvg with every normalisation tensor kept local to each site. */
  z.strictObject({ name: z.literal('fedbn') }),
]);
export type StrategySpec = z.output<typeof StrategySpecSchema>;
export type StrategyName = StrategySpec['name'];
export const STRATEGY_NAMES = ['fedavg', 'fedprox', 'fedbn'] as const satisfies readonly StrategyName[];
