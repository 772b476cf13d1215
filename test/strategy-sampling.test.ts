import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../shared/random.ts';
import { createStrategy, fedAvg, fedProx, SampleWeightedStrategy, sampleSize } from '../coordinator/strategies/index.ts';
import { patchFedErrorOf as errorOf } from './error-fixtures.ts';

const MANIFEST = [{ name: 'k', shape: [2], trainable: true, role: 'conv-kernel' as const }];
const sites = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `site-${String(i).padStart(2, '0')}` }));

describe('site sampling', () => {
  it('selects ceil(fractionFit · online) sites, at least minSites', () => {
    expect(sampleSize(10, { fractionFit: 0.3, minSites: 1 })).toBe(3);
    expect(sampleSize(3, { fractionFit: 0.5, minSites: 1 })).toBe(2);
    expect(sampleSize(10, { fractionFit: 0.1, minSites: 4 })).toBe(4);
    expect(sampleSize(5, { fractionFit: 1, minSites: 2 })).toBe(5);
  });

  it('is deterministic in (seed, round) and independent of input order', () => {
    const s = fedAvg({ fractionFit: 0.4, seed: 123 });
    const list = sites(20);
    const a = s.configureFit(7, { manifest: MANIFEST }, list).selected;
    const b = s.configureFit(7, { manifest: MANIFEST }, [...list].reverse()).selected;
    expect(a).toHaveLength(8);
    expect(b).toEqual(a);
    expect(new Set(a).size).toBe(8);
    expect([...a].sort()).toEqual(a);
    // Another round or seed gives another sample (for 20 choose 8 a collision is ~8e-6 likely).
    expect(s.configureFit(8, { manifest: MANIFEST }, list).selected).not.toEqual(a);
    expect(fedAvg({ fractionFit: 0.4, seed: 124 }).configureFit(7, { manifest: MANIFEST }, list).selected).not.toEqual(a);
  });

  it('uses a caller-provided rng when given', () => {
    const s = fedAvg({ fractionFit: 0.5 });
    const a = s.configureFit(1, { manifest: MANIFEST }, sites(10), mulberry32(99)).selected;
    const b = s.configureFit(1, { manifest: MANIFEST }, sites(10), mulberry32(99)).selected;
    expect(a).toEqual(b);
  });

  it('every site is eventually selected (no bias towards the first ids)', () => {
    const s = fedAvg({ fractionFit: 0.2, seed: 1 });
    const counts = new Map<string, number>();
    for (let round = 1; round <= 200; round++) {
      for (const id of s.configureFit(round, { manifest: MANIFEST }, sites(10)).selected) counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    // Each site is expected 40 times in 200 rounds (2 of 10 per round).
    for (const { id } of sites(10)) expect(counts.get(id) ?? 0).toBeGreaterThan(20);
  });

  it('skips offline sites and refuses when fewer than minSites are online', () => {
    const list = sites(4).map((s, i) => ({ ...s, online: i % 2 === 0 }));
    const plan = fedAvg({ minSites: 2 }).configureFit(1, { manifest: MANIFEST }, list);
    expect(plan.selected).toEqual(['site-00', 'site-02']);
    const err = errorOf(() => fedAvg({ minSites: 3 }).configureFit(1, { manifest: MANIFEST }, list));
    expect(err.code).toBe('not-enough-sites');
    expect(err.message).toMatch(/at least 3 online site\(s\); 2 online/);
  });

  it('FedProx sends mu (default 0.01) to every selected site', () => {
    expect(fedProx().configureFit(1, { manifest: MANIFEST }, sites(2)).instructions['site-01']?.proximalMu).toBe(0.01);
    const plan = fedProx({}, 0.5).configureFit(1, { manifest: MANIFEST }, sites(3));
    expect(Object.keys(plan.instructions).sort()).toEqual(plan.selected);
    for (const id of plan.selected) expect(plan.instructions[id]?.proximalMu).toBe(0.5);
  });
});

describe('strategy config', () => {
  it('builds each strategy with defaults', () => {
    expect(createStrategy({ name: 'fedavg' }).name).toBe('fedavg');
    const prox = createStrategy({ name: 'fedprox' }, { fractionFit: 0.5, minSites: 2 });
    expect(prox).toBeInstanceOf(SampleWeightedStrategy);
    expect((prox as SampleWeightedStrategy).proximalMu).toBe(0.01);
    expect((prox as SampleWeightedStrategy).sampling.fractionFit).toBe(0.5);
    expect((createStrategy({ name: 'fedbn' }) as SampleWeightedStrategy).localRoles).toHaveLength(4);
  });

  it.each([
    [{ name: 'fedsgd' }, /name|discriminator|Invalid input/],
    [{ name: 'fedprox', mu: -1 }, /mu/],
    [{ name: 'fedavg', mu: 0.1 }, /mu|Unrecognized/],
  ])('rejects the spec %j', (config, field) => {
    const err = errorOf(() => createStrategy(config, {}, 'configs/exp.json'));
    expect(err.code).toBe('bad-strategy-config');
    expect(err.message).toContain('configs/exp.json');
    expect(err.message).toMatch(field);
  });

  it.each([
    [{ fractionFit: 0 }, /fractionFit/],
    [{ fractionFit: 1.5 }, /fractionFit/],
    [{ minSites: 0 }, /minSites/],
    [{ seed: 0.5 }, /seed/],
  ])('rejects the sampling policy %j', (sampling, field) => {
    const err = errorOf(() => createStrategy({ name: 'fedavg' }, sampling));
    expect(err.code).toBe('bad-strategy-config');
    expect(err.message).toMatch(field);
  });
});
