/**
 * What `patchfed simulate` runs, with the defaults `npm start` uses. They are sized so three site
 * processes sharing two CPU cores finish five rounds in about a minute and the global model
 * visibly learns every label (mean validation Dice ~0.3 → 0.94 over the five rounds):
 * - cpu-small U-Net (instance norm), lr 1e-2, every training patch holding tumour: what made the
 *   single-site learning tests converge in a few hundred steps (the small non-enhancing core
 *   otherwise stays at Dice 0 for hundreds of steps);
 * - budgets that plan 16³, 20³ and 24³ patches (batch 1): different per site, each large enough
 *   to hold a tumour and cheap enough per step;
 * - site styles 2, 0, 3 (different scanners, tumours at least as large as the reference style;
 *   style 1's small tumours and heavy noise are left to --site-styles).
 */
import type { PhantomTask } from '../../site-agent/phantom/index.ts';
import type { Mode, PresetName } from '../../shared/config/model.ts';
import { DpSpecSchema, ServerOptimizerSpecSchema, StrategySpecSchema, DEFAULT_PROXIMAL_MU, type DpSpec, type ServerOptimizerName, type StrategyName, type StrategySpec } from '../../shared/config/strategy.ts';

export interface SiteDrop {
  siteId: string;
  round: number;
}

export interface SimulateOptions {
  sites: number;
  rounds: number;
  task: PhantomTask;
  model: Mode;
  preset: PresetName;
  /** Local training steps per round. */
  steps: number;
  learningRate: number;
  strategy: StrategyName;
  /** Server optimiser on the aggregate (its defaults), or none. */
  serverOptimizer?: ServerOptimizerName;
  /** Site-level differential privacy (--dp central:z=1,c=0.5), or none. */
  dp?: DpSpec;
  /** Labelled phantom cases per site (60/20/20 train/validation/test split). */
  cases: number;
  /** Phantom volume size in voxels. */
  shape: [number, number, number];
  /** Memory budget per site in MB, cycled over the sites (different budgets → different patches). */
  budgetsMB: number[];
  /** Phantom site style per site (scanner and case mix), cycled; later cycles get jittered variants. */
  siteStyles: number[];
  /** Fraction of training patches forced to contain tumour (nnU-Net oversampling). */
  foregroundRate: number;
  runDir: string;
  reportPath?: string;
  /** Coordinator port; 0 picks a free loopback port. */
  port: number;
  drop?: SiteDrop;
  /** Secure aggregation (experiment.aggregation.secure): the coordinator only sees masked updates and their sum. */
  secureAggregation?: { threshold: number };
  /** Kill -9 the coordinator while this round trains, then restart it. */
  restartCoordinatorAt?: number;
  baselines: boolean;
  roundDeadlineSeconds: number;
  seed: number;
  /** Keep the coordinator (and its dashboard) up after the run until Ctrl-C. */
  keepOpen: boolean;
  backend: 'auto' | 'cpu-fast' | 'cpu' | 'wasm' | 'tensorflow';
}

export const SIMULATE_DEFAULTS: Omit<SimulateOptions, 'runDir'> = {
  sites: 3,
  rounds: 5,
  task: 'brain',
  model: 'patch',
  preset: 'cpu-small',
  steps: 60,
  learningRate: 0.01,
  strategy: 'fedavg',
  cases: 10,
  shape: [32, 32, 24],
  budgetsMB: [80, 96, 128],
  siteStyles: [2, 0, 3],
  foregroundRate: 1,
  port: 0,
  baselines: false,
  roundDeadlineSeconds: 180,
  seed: 1,
  keepOpen: false,
  backend: 'auto',
};

/**
 * Defaults that follow from the model preset. The thesis U-Net (base 32, depth 5: ~22.6M
 * parameters, a 90 MB model — the size hospitals would send) needs volumes divisible by 16,
 * budgets in GB and minutes per round on a CPU, so a few local steps are enough to exercise
 * the federation at its real scale. A cascade's first stage sees the volume downsampled by its
 * factor (2), and depth 5 halves it four more times: 64³ keeps 2³ voxels at the bottom, where
 * 32³ would leave one, which instance normalisation cannot normalise.
 */
export function presetDefaults(preset: PresetName, mode: Mode = 'patch'): Partial<SimulateOptions> {
  if (preset === 'thesis') {
    const shape: [number, number, number] = mode === 'cascade' ? [64, 64, 64] : [32, 32, 32];
    return { shape, budgetsMB: [2560, 3072, 4096], steps: 4, rounds: 2, cases: 6, learningRate: 3e-4, roundDeadlineSeconds: 3600 };
  }
  if (preset === 'cpu-medium') return { budgetsMB: [192, 256, 320], roundDeadlineSeconds: 600 };
  return {};
}

/** Site ids: site-a, site-b, ... site-z, site-27, ... */
export function simulatedSiteIds(n: number): string[] {
  return Array.from({ length: n }, (_, i) => (i < 26 ? `site-${String.fromCharCode(97 + i)}` : `site-${i + 1}`));
}

/** "site-b@3" → { siteId: 'site-b', round: 3 }; the caller checks the id and round exist. */
export function parseSiteDrop(value: string): SiteDrop | null {
  const m = /^([A-Za-z0-9_.-]{1,64})@(\d{1,6})$/.exec(value.trim());
  return m ? { siteId: m[1]!, round: Number(m[2]) } : null;
}

/** The experiment's strategy spec for the simulation's choices (each part with its config defaults). */
export function simulationStrategy(opts: Pick<SimulateOptions, 'strategy' | 'serverOptimizer' | 'dp'>): StrategySpec {
  const base: Record<string, unknown> = opts.strategy === 'fedprox' ? { name: 'fedprox', mu: DEFAULT_PROXIMAL_MU } : { name: opts.strategy };
  if (opts.serverOptimizer) base.serverOptimizer = ServerOptimizerSpecSchema.parse({ name: opts.serverOptimizer });
  if (opts.dp) base.dp = opts.dp;
  return StrategySpecSchema.parse(base);
}

const DP_KEYS: Record<string, keyof DpSpec> = { z: 'noiseMultiplier', c: 'clipNorm', delta: 'delta', budget: 'epsilonBudget' };

/**
 * "--dp central:z=1,c=0.5" (also delta=1e-5, budget=8; mode distributed) → the strategy's dp spec,
 * or the reason it is not one.
 */
export function parseDpOption(value: string): DpSpec | string {
  const m = /^(central|distributed):(.+)$/.exec(value.trim());
  if (!m) return `--dp must look like central:z=1,c=0.5 or distributed:z=1,c=0.5[,delta=1e-5][,budget=8], got '${value}'`;
  const spec: Record<string, unknown> = { mode: m[1] };
  for (const part of m[2]!.split(',')) {
    const [key = '', raw = ''] = part.split('=').map((x) => x.trim());
    const field = DP_KEYS[key];
    const n = Number(raw);
    if (!field) return `--dp: unknown setting '${key}' (z, c, delta, budget)`;
    if (raw === '' || !Number.isFinite(n)) return `--dp: ${key} must be a number, got '${raw}'`;
    spec[field] = n;
  }
  const parsed = DpSpecSchema.safeParse(spec);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = String(issue?.path[0] ?? '');
    const key = Object.entries(DP_KEYS).find(([, f]) => f === field)?.[0] ?? field;
    return `--dp: ${key || 'value'}: ${issue?.message ?? 'invalid'}${field === 'noiseMultiplier' || field === 'clipNorm' ? ' (z and c are required)' : ''}`;
  }
  return parsed.data;
}
