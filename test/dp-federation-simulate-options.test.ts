/**
 * `patchfed simulate --strategy/--server-optimizer/--dp`: the DP flag parses into the strategy's
 * dp spec (with its defaults) or names what is wrong, and the experiment's strategy spec the
 * simulation writes passes the coordinator's schema.
 */
import { describe, expect, it } from 'vitest';
import { parseDpOption, simulationSecureAggregation, simulationStrategy } from '../cli/simulate/options.ts';
import { SecureAggregationSpecSchema, secureAggregationProblem } from '../shared/config/aggregation.ts';
import { DEFAULT_DP_DELTA, StrategySpecSchema, describeStrategy } from '../shared/config/strategy.ts';

describe('simulate: strategy, server optimiser and DP flags', () => {
  it('--dp central:z=…,c=… (delta, budget optional) becomes the strategy dp spec', () => {
    expect(parseDpOption('central:z=1,c=0.5')).toEqual({ mode: 'central', noiseMultiplier: 1, clipNorm: 0.5, delta: DEFAULT_DP_DELTA });
    expect(parseDpOption('distributed:z=0.8,c=2,delta=1e-6,budget=8')).toEqual({ mode: 'distributed', noiseMultiplier: 0.8, clipNorm: 2, delta: 1e-6, epsilonBudget: 8 });
  });

  it('a bad --dp names the setting and the reason', () => {
    expect(parseDpOption('z=1,c=1')).toMatch(/--dp must look like central:z=1,c=0.5/);
    expect(parseDpOption('central:z=1')).toMatch(/--dp: c: .*\(z and c are required\)/);
    expect(parseDpOption('central:z=1,c=1,eps=3')).toMatch(/unknown setting 'eps'/);
    expect(parseDpOption('central:z=abc,c=1')).toMatch(/z must be a number, got 'abc'/);
    expect(parseDpOption('central:z=-1,c=1')).toMatch(/--dp: z: /);
  });

  it('the strategy spec the simulation writes passes the schema', () => {
    const dp = parseDpOption('central:z=0.5,c=10');
    if (typeof dp === 'string') throw new Error(dp);
    const spec = simulationStrategy({ strategy: 'fedavg', serverOptimizer: 'fedadam', dp });
    expect(StrategySpecSchema.parse(spec)).toEqual(spec);
    expect(describeStrategy(spec)).toBe('fedavg + fedadam (η 0.01) + central DP (z 0.5, C 10)');
    expect(simulationStrategy({ strategy: 'trimmed-mean' })).toEqual({ name: 'trimmed-mean', beta: 0.2 });
    expect(StrategySpecSchema.parse(simulationStrategy({ strategy: 'fedprox' }))).toMatchObject({ name: 'fedprox', mu: 0.01 });
  });

  it('--secure-aggregation with --dp distributed: the ring clip range covers C + 10σ, and the config passes', () => {
    const dp = parseDpOption('distributed:z=0.02,c=10');
    if (typeof dp === 'string') throw new Error(dp);
    // σ = zC/√3 = 0.1155 per site: C + 10σ = 11.155, rounded up.
    const secure = simulationSecureAggregation({ threshold: 2 }, dp, 3);
    expect(secure).toEqual({ threshold: 2, clipRange: 11.16 });
    const experiment = { minSites: 3, fractionFit: 1, strategy: simulationStrategy({ strategy: 'fedavg', dp }) };
    expect(secureAggregationProblem(SecureAggregationSpecSchema.parse(secure), experiment, 3)).toBeNull();
    // Small C and σ fit the default clip range 4; without DP nothing changes.
    const small = parseDpOption('distributed:z=1,c=0.5');
    if (typeof small === 'string') throw new Error(small);
    expect(simulationSecureAggregation({ threshold: 2 }, small, 3)).toEqual({ threshold: 2 });
    expect(simulationSecureAggregation({ threshold: 2 }, undefined, 3)).toEqual({ threshold: 2 });
  });
});
