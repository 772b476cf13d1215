/**
 * The aggregation strategy an experiment declares — the one schema for it: the coordinator's
 * config validates it, the signed experiment description carries it to sites, and
 * coordinator/strategies builds the Strategy from it.
 *
 * Three independent choices, one object:
 *   name             the aggregation rule: fedavg | fedprox | fedbn (sample-weighted mean), or a
 *                    robust rule for when individual updates are visible: median | trimmed-mean |
 *                    clipped-fedavg
 *   serverOptimizer  optional, any rule: FedAdam / FedYogi / FedAdagrad / FedAvgM (Reddi et al.
 *                    2021) applied to the aggregate's pseudo-gradient
 *   dp               optional, fedavg/fedprox/fedbn only: site-level DP-FedAvg (McMahan et al.
 *                    2018), central or distributed noise, with an RDP accountant and ε budget
 * A new deployment gets `{ name: 'fedavg' }`: no server optimiser, no DP.
 */
import { z } from 'zod';

/** FedProx's proximal weight μ when the config does not give one (Li et al. 2020 use 0.001–1). */
export const DEFAULT_PROXIMAL_MU = 0.01;

/** Adaptive server optimisers' defaults: Reddi et al. 2021, §5 and App. D (β1 0.9, β2 0.99, τ 1e-3; η from their grid). */
const ADAPTIVE = { learningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 } as const;
const unit = () => z.number().min(0).lt(1);

/** η, β1 and τ of the adaptive optimisers (FedAdam, FedYogi, FedAdagrad). */
const adaptiveFields = () => ({
  learningRate: z.number().gt(0).max(100).default(ADAPTIVE.learningRate),
  beta1: unit().default(ADAPTIVE.beta1),
  tau: z.number().gt(0).max(10).default(ADAPTIVE.tau),
});
/** β2 of the second-moment estimate, and Adam's bias correction of the step size (off in Reddi et al.'s Algorithm 2). */
const secondMoment = () => ({ beta2: unit().default(ADAPTIVE.beta2), biasCorrection: z.boolean().default(false) });

export const ServerOptimizerSpecSchema = z.discriminatedUnion('name', [
  /** FedAvgM (Hsu et al. 2019): m = β·m + Δ, x += η·m. η = 1, β = 0 is plain FedAvg. */
  z.strictObject({ name: z.literal('fedavgm'), learningRate: z.number().gt(0).max(100).default(1), momentum: unit().default(0.9) }),
  /** FedAdam: v = β2·v + (1 − β2)·Δ². */
  z.strictObject({ name: z.literal('fedadam'), ...adaptiveFields(), ...secondMoment() }),
  /** FedYogi: v = v − (1 − β2)·Δ²·sign(v − Δ²). */
  z.strictObject({ name: z.literal('fedyogi'), ...adaptiveFields(), ...secondMoment() }),
  /** FedAdagrad: v = v + Δ² (no β2, no bias correction). */
  z.strictObject({ name: z.literal('fedadagrad'), ...adaptiveFields() }),
]);
export type ServerOptimizerConfig = z.output<typeof ServerOptimizerSpecSchema>;
export type ServerOptimizerName = ServerOptimizerConfig['name'];
export const SERVER_OPTIMIZER_NAMES = ['fedadam', 'fedyogi', 'fedadagrad', 'fedavgm'] as const satisfies readonly ServerOptimizerName[];

export const DEFAULT_DP_DELTA = 1e-5;

/** Site-level differential privacy (DP-FedAvg, McMahan et al. 2018). */
export const DpSpecSchema = z.strictObject({
  /** central: the coordinator adds N(0, (zC)²) to the sum; distributed: each site adds its share before upload. */
  mode: z.enum(['central', 'distributed']),
  /** z: noise standard deviation in units of the clip norm. */
  noiseMultiplier: z.number().gt(0).max(10_000),
  /** C: L2 bound of one site's update (w_local − w_global over the averaged tensors). */
  clipNorm: z.number().gt(0).max(1e6),
  /** δ of the reported (ε, δ) guarantee. */
  delta: z.number().gt(0).lt(1).default(DEFAULT_DP_DELTA),
  /** Stop the experiment before a round that would take ε above this (no budget: run all rounds). */
  epsilonBudget: z.number().gt(0).optional(),
});
export type DpSpec = z.output<typeof DpSpecSchema>;

const extras = { serverOptimizer: ServerOptimizerSpecSchema.optional(), dp: DpSpecSchema.optional() };

const StrategyUnion = z.discriminatedUnion('name', [
  /** FedAvg (McMahan et al. 2017): sample-weighted mean of the site models. */
  z.strictObject({ name: z.literal('fedavg'), ...extras }),
  /** FedProx (Li et al. 2020): FedAvg plus (μ/2)·||w − w_global||² in each site's loss. */
  z.strictObject({ name: z.literal('fedprox'), mu: z.number().min(0).max(1000).default(DEFAULT_PROXIMAL_MU), ...extras }),
  /** FedBN (Li et al. 2021): FedAvg with every normalisation tensor kept local to each site. */
  z.strictObject({ name: z.literal('fedbn'), ...extras }),
  /** Coordinate-wise median (Yin et al. 2018), one site one vote. */
  z.strictObject({ name: z.literal('median'), ...extras }),
  /** β-trimmed mean (Yin et al. 2018): per coordinate drop the ⌊βn⌋ largest and smallest values. */
  z.strictObject({ name: z.literal('trimmed-mean'), beta: z.number().min(0).lt(0.5).default(0.2), ...extras }),
  /** FedAvg of update deltas clipped to clipMultiplier × the round's median delta norm. */
  z.strictObject({ name: z.literal('clipped-fedavg'), clipMultiplier: z.number().gt(0).max(1000).default(1), ...extras }),
]);

/** Rules that need every site's individual update (so no secure aggregation, and no DP noise calibrated to a sum). */
export const ROBUST_STRATEGY_NAMES = ['median', 'trimmed-mean', 'clipped-fedavg'] as const;

export const StrategySpecSchema = StrategyUnion.superRefine((s, ctx) => {
  if (s.dp && isRobustStrategy(s.name)) {
    ctx.addIssue({
      code: 'custom',
      path: ['dp'],
      message: `differential privacy works with fedavg, fedprox and fedbn, not with '${s.name}': its noise is calibrated to a sum of clipped updates, which a robust rule does not compute (clip at the sites with dp on fedavg instead)`,
    });
  }
});
export type StrategySpec = z.output<typeof StrategySpecSchema>;
export type StrategyName = StrategySpec['name'];
export const STRATEGY_NAMES = ['fedavg', 'fedprox', 'fedbn', 'median', 'trimmed-mean', 'clipped-fedavg'] as const satisfies readonly StrategyName[];

export function isRobustStrategy(name: StrategyName): name is (typeof ROBUST_STRATEGY_NAMES)[number] {
  return (ROBUST_STRATEGY_NAMES as readonly string[]).includes(name);
}

/**
 * Why `spec` cannot run with the experiment's other choices, or null. Robust rules need every
 * individual update, which secure aggregation hides; with secure aggregation DP must be
 * distributed (central DP would have the coordinator see the un-noised sum).
 */
export function strategyCombinationProblem(spec: StrategySpec, context: { secureAggregation: boolean }): string | null {
  if (!context.secureAggregation) return null;
  if (isRobustStrategy(spec.name)) {
    return `'${spec.name}' needs every site's individual update, which secure aggregation hides from the coordinator; use fedavg, fedprox or fedbn with secure aggregation, or turn secure aggregation off`;
  }
  if (spec.dp?.mode === 'central') {
    return `central DP has the coordinator add noise to a sum it sees un-noised, which defeats secure aggregation; use dp.mode 'distributed' (each site adds its share of the noise before masking)`;
  }
  return null;
}

/** One line for people (dashboard, logs): e.g. "median + fedadam (η 0.01) + central DP (z 1, C 0.5)". */
export function describeStrategy(spec: StrategySpec): string {
  let text: string = spec.name;
  if (spec.name === 'fedprox') text += ` (μ = ${spec.mu})`;
  if (spec.name === 'trimmed-mean') text += ` (β = ${spec.beta})`;
  if (spec.name === 'clipped-fedavg') text += ` (× ${spec.clipMultiplier} median norm)`;
  const o = spec.serverOptimizer;
  if (o) text += ` + ${o.name} (η ${o.learningRate}${o.name === 'fedavgm' ? `, momentum ${o.momentum}` : ''})`;
  if (spec.dp) text += ` + ${spec.dp.mode} DP (z ${spec.dp.noiseMultiplier}, C ${spec.dp.clipNorm})`;
  return text;
}
