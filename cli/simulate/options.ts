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
import { phantomAnnotation, wholeTumourAnnotation, type PhantomTask } from '../../site-agent/phantom/index.ts';
import type { AnnotatedLabels } from '../../shared/config/site.ts';
import type { Mode, PresetName } from '../../shared/config/model.ts';
import { DpSpecSchema, ServerOptimizerSpecSchema, StrategySpecSchema, DEFAULT_PROXIMAL_MU, type DpSpec, type ServerOptimizerName, type StrategyName, type StrategySpec } from '../../shared/config/strategy.ts';
import { noiseStd } from '../../shared/dp/clip-and-noise.ts';
import { PatchFedError } from '../../shared/errors.ts';
import { DEFAULT_CLIP_RANGE, dpRingClipRange } from '../../shared/secagg/fixed-point.ts';

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
  /** Labelled phantom cases per site (60/20/20 train/validation/test split), cycled over the sites (unequal dataset sizes). */
  cases: number | readonly number[];
  /** Phantom volume size in voxels. */
  shape: [number, number, number];
  /** Memory budget per site in MB, cycled over the sites (different budgets → different patches). */
  budgetsMB: number[];
  /**
   * What each site annotates (--site-labels), cycled over the sites: 'all', 'whole-tumour' (one
   * merged lesion label), or the foreground class ids it draws (the others stored as background).
   * Absent = every site annotates every class.
   */
  siteLabels?: readonly SiteLabelSpec[];
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
  cases: [10],
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
    return { shape, budgetsMB: [2560, 3072, 4096], steps: 4, rounds: 2, cases: [6], learningRate: 3e-4, roundDeadlineSeconds: 3600 };
  }
  if (preset === 'cpu-medium') return { budgetsMB: [192, 256, 320], roundDeadlineSeconds: 600 };
  return {};
}

/** Labelled cases of site `i`: the --cases list cycled over the sites (like --budgets). */
export function casesForSite(i: number, cases: number | readonly number[]): number {
  if (typeof cases === 'number') return cases;
  const n = cases[i % Math.max(1, cases.length)];
  if (n === undefined) throw new PatchFedError('E_CONFIG', 'simulate: the --cases list is empty');
  return n;
}

/** Smallest --cases per site: a 60/20/20 split needs at least one training and one validation case. */
export const MIN_SITE_CASES = 3;
export const MAX_SITE_CASES = 1000;

/** "16,8,4" → [16, 8, 4] (cycled over the sites), or the reason it is not a --cases list. */
export function parseCasesOption(value: string): number[] | string {
  const parts = value.split(',').map((s) => s.trim());
  const cases = parts.map((s) => (/^\d+$/.test(s) ? Number(s) : NaN));
  const bad = parts.find((_, i) => {
    const n = cases[i] ?? NaN;
    return !Number.isSafeInteger(n) || n < MIN_SITE_CASES || n > MAX_SITE_CASES;
  });
  if (bad !== undefined) {
    return `--cases must be whole numbers from ${MIN_SITE_CASES} to ${MAX_SITE_CASES} separated by commas, one per site and cycled (e.g. 16,8,4); got '${bad}' in '${value}'`;
  }
  return cases;
}

/** One site's --site-labels entry: every class, the whole tumour only, or these foreground class ids. */
export type SiteLabelSpec = 'all' | 'whole-tumour' | readonly number[];

/** A site's `annotatedLabels` for its --site-labels entry (cycled), or undefined when it annotates every class. */
export function annotatedLabelsForSite(i: number, task: PhantomTask, specs: readonly SiteLabelSpec[] | undefined): AnnotatedLabels | undefined {
  const spec = specs && specs.length > 0 ? specs[i % specs.length] : undefined;
  if (spec === undefined || spec === 'all') return undefined;
  if (spec === 'whole-tumour') return wholeTumourAnnotation(task);
  return [...spec];
}

/**
 * "all,all,whole-tumour" or "all,1+3" (class ids joined by '+': the site draws those, the rest is
 * background there) → one entry per site, cycled; or the reason it is not one. Ids are checked
 * against the task's labels.
 */
export function parseSiteLabelsOption(value: string, task: PhantomTask): SiteLabelSpec[] | string {
  const usage = `--site-labels takes one entry per site, cycled, separated by commas: all, whole-tumour, or foreground class ids joined by '+' (e.g. all,all,whole-tumour or all,1+3)`;
  const out: SiteLabelSpec[] = [];
  for (const raw of value.split(',').map((s) => s.trim())) {
    if (raw === 'all' || raw === 'whole-tumour') {
      out.push(raw);
      continue;
    }
    if (!/^\d+(\+\d+)*$/.test(raw)) return `${usage}; got '${raw}'`;
    const ids = raw.split('+').map(Number);
    try {
      phantomAnnotation(task, ids);
    } catch (e) {
      return `--site-labels '${raw}': ${e instanceof Error ? e.message.replace(/^annotatedLabels for the \w+ phantom: /, '') : String(e)}`;
    }
    out.push(ids);
  }
  return out;
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

/**
 * The experiment's aggregation.secure for the simulation. With distributed DP the ring's clip
 * range must cover C plus the noise's tails (shared/secagg/fixed-point.ts, dpRingClipRange), so
 * it is raised from the default 4 when C + 10σ needs more (rounded up to 0.01); σ is each site's
 * noise share for `minSites` contributors, as the coordinator's DP strategy computes it.
 */
export function simulationSecureAggregation(secure: { threshold: number }, dp: DpSpec | undefined, minSites: number): { threshold: number; clipRange?: number } {
  if (dp?.mode !== 'distributed') return { threshold: secure.threshold };
  const needed = dpRingClipRange(dp.clipNorm, noiseStd('distributed', dp, Math.max(1, minSites)));
  return needed <= DEFAULT_CLIP_RANGE ? { threshold: secure.threshold } : { threshold: secure.threshold, clipRange: Math.ceil(needed * 100) / 100 };
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
