/**
 * Robust aggregation in real federated rounds (coordinator + five in-process site clients over
 * loopback, uploads through the encrypted chunk path, updates retained on disk until finish):
 * one of five sites sends a sign-flipped or a scaled update (and claims five times the samples of
 * an honest site). Coordinate-wise median and trimmed mean keep the new global model closer to
 * what the honest sites alone produce than any single honest update is; plain FedAvg is pulled away, or even reversed.
 *
 * Training is a deterministic stand-in (global + a common direction + a per-site deviation), so
 * the distance to the honest-only run is exact and the test counts rounds, not seconds.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startCoordinator, type RunningCoordinator } from '../coordinator/index.ts';
import { CoordinatorConfigSchema } from '../shared/config/coordinator.ts';
import type { StrategySpec } from '../shared/config/strategy.ts';
import { createStrategy } from '../coordinator/strategies/index.ts';
import type { NamedWeights, WeightSpec } from '../shared/weights.ts';
import { fakeInitialWeights, fakeMetrics, makeFederation, startSite, testLog, type Federation, type TestSite } from './federation-fixtures.ts';

const MANIFEST: WeightSpec[] = [
  { name: 'enc0/conv/kernel', shape: [4000], trainable: true, role: 'conv-kernel' },
  { name: 'enc0/norm/gamma', shape: [8], trainable: true, role: 'norm-gamma' },
];
const HONEST = ['site-a', 'site-b', 'site-c', 'site-d'];
const ATTACKER = 'site-e';

type Attack = 'sign-flip' | 'scaled';

/** The step every honest site agrees on (what "learning" means here). */
function direction(t: number, i: number): number {
  return 0.01 * Math.cos(0.003 * i + t);
}

/** Honest local training: global + the common step + a site-specific deviation (30% of the step's scale). */
function honestUpdate(global: NamedWeights, site: number): NamedWeights {
  return {
    manifest: global.manifest.map((s) => ({ ...s, shape: [...s.shape] })),
    values: global.values.map((v, t) => Float32Array.from(v, (x, i) => x + direction(t, i) + 0.003 * Math.sin(0.7 * i * (site + 1) + site))),
  };
}

function attackUpdate(global: NamedWeights, attack: Attack): NamedWeights {
  const k = attack === 'sign-flip' ? -4 : 20;
  return {
    manifest: global.manifest.map((s) => ({ ...s, shape: [...s.shape] })),
    values: global.values.map((v, t) => Float32Array.from(v, (x, i) => x + k * direction(t, i))),
  };
}

interface RunResult {
  initial: NamedWeights;
  final: NamedWeights;
}

let fed: Federation | null = null;
let coordinator: RunningCoordinator | null = null;
let sites: TestSite[] = [];

afterEach(async () => {
  await Promise.all(sites.map((s) => s.client.stop()));
  await coordinator?.stop();
  fed?.cleanup();
  fed = null;
  coordinator = null;
  sites = [];
});

/** One federated round with `strategy`; the attacker takes part when `attack` is given. */
async function runRound(strategy: StrategySpec, attack: Attack | null): Promise<RunResult> {
  const ids = attack ? [...HONEST, ATTACKER] : HONEST;
  fed = makeFederation({ sites: ids, experiment: { rounds: 1, strategy, id: `robust-${strategy.name}-${attack ?? 'honest'}` } });
  coordinator = await startCoordinator(fed.config, { baseDir: fed.dir, initialWeights: () => fakeInitialWeights(MANIFEST), log: testLog() });
  const initial = (await coordinator.globalWeights()).weights;
  sites = ids.map((id, index) =>
    startSite(fed!, coordinator!.url, id, {
      handler: async (task) =>
        id === ATTACKER && attack
          ? { update: attackUpdate(task.global, attack), samples: 50, metrics: fakeMetrics() }
          : { update: honestUpdate(task.global, index), samples: 10, metrics: fakeMetrics() },
    }),
  );
  const end = await coordinator.finished;
  expect(end).toMatchObject({ kind: 'complete', round: 1 });
  const final = (await coordinator.globalWeights()).weights;
  await Promise.all(sites.map((s) => s.client.stop()));
  await coordinator.stop();
  fed.cleanup();
  fed = null;
  coordinator = null;
  sites = [];
  return { initial, final };
}

/** ‖a − b‖ / ‖b − initial‖: how far a result is from the honest one, in units of the honest step. */
function relativeDistance(a: NamedWeights, honest: NamedWeights, initial: NamedWeights): number {
  let num = 0;
  let den = 0;
  a.values.forEach((v, t) => {
    const h = honest.values[t]!;
    const g = initial.values[t]!;
    for (let i = 0; i < v.length; i++) {
      num += (v[i]! - h[i]!) ** 2;
      den += (h[i]! - g[i]!) ** 2;
    }
  });
  return Math.sqrt(num / den);
}

describe('robust aggregation against one poisoned site of five', () => {
  it('median and trimmed mean stay closer to the honest-only result than any honest site; FedAvg is pulled away (sign flip, scaled update)', async () => {
    const honest = await runRound({ name: 'fedavg' }, null);
    const distance = async (strategy: StrategySpec, attack: Attack) => {
      const r = await runRound(strategy, attack);
      expect(r.initial.values[0]).toEqual(honest.initial.values[0]); // same starting model
      return relativeDistance(r.final, honest.final, honest.initial);
    };
    const results: Record<string, number> = {};
    for (const attack of ['sign-flip', 'scaled'] as const) {
      results[`fedavg/${attack}`] = await distance({ name: 'fedavg' }, attack);
      results[`median/${attack}`] = await distance({ name: 'median' }, attack);
      results[`trimmed-mean/${attack}`] = await distance({ name: 'trimmed-mean', beta: 0.2 }, attack);
    }
    // Adaptive clipping bounds a scaled update to the round's median norm.
    results['clipped-fedavg/scaled'] = await distance({ name: 'clipped-fedavg', clipMultiplier: 1 }, 'scaled');

    // The yardstick: how far each honest site's own update is from the honest-only result.
    const honestSpread = Math.min(...HONEST.map((_, i) => relativeDistance(honestUpdate(honest.initial, i), honest.final, honest.initial)));
    expect(honestSpread).toBeGreaterThan(0.15);
    expect(honestSpread).toBeLessThan(0.5);

    // FedAvg: the flipped update with its claimed 50 samples reverses the step; the scaled one overshoots it ~11×.
    expect(results['fedavg/sign-flip']).toBeGreaterThan(2);
    expect(results['fedavg/scaled']).toBeGreaterThan(5);
    for (const key of ['median/sign-flip', 'median/scaled', 'trimmed-mean/sign-flip', 'trimmed-mean/scaled']) {
      // Closer to the honest consensus than any single honest site is.
      expect(results[key], key).toBeLessThan(honestSpread);
    }
    expect(results['clipped-fedavg/scaled']).toBeLessThan(honestSpread);
  }, 120_000);

  it('robust rules with secure aggregation, and DP with a robust rule, are refused with the reason', () => {
    fed = makeFederation({ sites: HONEST });
    const fedConfig = fed.config;
    const withStrategy = (strategy: unknown, aggregation?: unknown) => CoordinatorConfigSchema.safeParse({ ...fedConfig, experiment: { ...fedConfig.experiment, strategy, ...(aggregation ? { aggregation } : {}) } });
    for (const name of ['median', 'trimmed-mean', 'clipped-fedavg']) {
      const parsed = withStrategy({ name }, { secure: { threshold: 3 } });
      expect(parsed.success).toBe(false);
      expect(parsed.error?.issues.map((i) => i.message).join('\n')).toContain(`'${name}' needs every site's individual update, which secure aggregation hides from the coordinator`);
      // The same rule is enforced where the strategy is built.
      expect(() => createStrategy({ name }, {}, 'experiment.strategy', { secureAggregation: true })).toThrow(/secure aggregation hides/);
      expect(() => createStrategy({ name }, {}, 'experiment.strategy')).not.toThrow();
    }
    const dpOnMedian = withStrategy({ name: 'median', dp: { mode: 'central', noiseMultiplier: 1, clipNorm: 1 } });
    expect(dpOnMedian.success).toBe(false);
    expect(dpOnMedian.error?.issues[0]?.message).toMatch(/differential privacy works with fedavg, fedprox and fedbn, not with 'median'/);
    const centralWithSecure = withStrategy({ name: 'fedavg', dp: { mode: 'central', noiseMultiplier: 1, clipNorm: 1 } }, { secure: { threshold: 3 } });
    expect(centralWithSecure.error?.issues.map((i) => i.message).join('\n')).toMatch(/central DP .* defeats secure aggregation/);
    // Plain FedAvg with secure aggregation is fine.
    expect(withStrategy({ name: 'fedavg' }, { secure: { threshold: 3 } }).success).toBe(true);
  });
});
