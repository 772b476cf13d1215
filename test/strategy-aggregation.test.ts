import { describe, expect, it } from 'vitest';
import { isPatchFedError, PatchFedError } from '../shared/errors.ts';
import { isNormalisationRole, sizeOf, type NamedWeights, type WeightSpec } from '../shared/weights.ts';
import {
  fedAvg,
  fedBN,
  fedProx,
  mulberry32,
  relativeL2Error,
  StreamingWeightedMean,
  weightedMean,
  type Rng,
} from '../coordinator/strategies/index.ts';

const MANIFEST: WeightSpec[] = [
  { name: 'enc0/conv/kernel', shape: [3, 3, 3, 1, 4], trainable: true, role: 'conv-kernel' },
  { name: 'enc0/conv/bias', shape: [4], trainable: true, role: 'conv-bias' },
  { name: 'enc0/norm/gamma', shape: [4], trainable: true, role: 'norm-gamma' },
  { name: 'enc0/norm/beta', shape: [4], trainable: true, role: 'norm-beta' },
  { name: 'enc0/norm/mean', shape: [4], trainable: false, role: 'norm-running-mean' },
  { name: 'enc0/norm/var', shape: [4], trainable: false, role: 'norm-running-var' },
  { name: 'head/kernel', shape: [1, 1, 1, 4, 2], trainable: true, role: 'conv-kernel' },
];

function randomWeights(rng: Rng, scale = 1, offset = 0): NamedWeights {
  return {
    manifest: MANIFEST.map((s) => ({ ...s, shape: [...s.shape] })),
    values: MANIFEST.map((s) => Float32Array.from({ length: sizeOf(s.shape) }, () => offset + scale * (rng() * 2 - 1))),
  };
}

function catchError(fn: () => void): PatchFedError {
  try {
    fn();
  } catch (e) {
    if (isPatchFedError(e)) return e;
    throw e;
  }
  throw new Error('expected a PatchFedError');
}

describe('FedAvg streaming aggregation', () => {
  it('equals the sample-weighted mean for random updates (relative error <= 1e-6)', () => {
    const rng = mulberry32(7);
    for (let trial = 0; trial < 5; trial++) {
      const global = randomWeights(rng);
      const nSites = 2 + Math.floor(rng() * 9);
      // Different offsets per site make a wrong weighting visible: uniform weights would miss.
      const updates = Array.from({ length: nSites }, (_, k) => ({
        siteId: `site-${k}`,
        weights: randomWeights(rng, 0.5, k),
        numSamples: 1 + Math.floor(rng() * 500),
      }));
      const agg = fedAvg().beginAggregation(trial + 1, global);
      for (const u of updates) agg.add(u.siteId, u.weights, u.numSamples);
      const result = agg.finish();
      const expected = weightedMean(updates);
      expect(result.manifest).toEqual(MANIFEST);
      expect(relativeL2Error(result, expected)).toBeLessThanOrEqual(1e-6);
      expect(agg.count).toBe(nSites);
      expect(agg.totalSamples).toBe(updates.reduce((n, u) => n + u.numSamples, 0));
    }
  });

  it('weights by samples, not per site (hand-computed two-site case)', () => {
    const global = randomWeights(mulberry32(1));
    const a = { manifest: MANIFEST, values: MANIFEST.map((s) => new Float32Array(sizeOf(s.shape)).fill(1)) };
    const b = { manifest: MANIFEST, values: MANIFEST.map((s) => new Float32Array(sizeOf(s.shape)).fill(5)) };
    const agg = fedAvg().beginAggregation(1, global);
    agg.add('a', a, 3);
    agg.add('b', b, 1);
    const out = agg.finish();
    // (3·1 + 1·5) / 4 = 2, for every tensor including the running statistics.
    for (const v of out.values) for (const x of v) expect(x).toBe(2);
  });

  it('streaming equals batch regardless of arrival order', () => {
    const rng = mulberry32(11);
    const global = randomWeights(rng);
    const updates = Array.from({ length: 6 }, (_, k) => ({ id: `s${k}`, w: randomWeights(rng, 2, -k), n: 10 + k * 37 }));
    const forward = fedProx({ mu: 0.1 }).beginAggregation(3, global);
    for (const u of updates) forward.add(u.id, u.w, u.n);
    const backward = fedProx({ mu: 0.1 }).beginAggregation(3, global);
    for (const u of [...updates].reverse()) backward.add(u.id, u.w, u.n);
    const batch = weightedMean(updates.map((u) => ({ weights: u.w, numSamples: u.n })));
    const f = forward.finish();
    const b = backward.finish();
    expect(relativeL2Error(f, batch)).toBeLessThanOrEqual(1e-6);
    expect(relativeL2Error(b, f)).toBeLessThanOrEqual(1e-6);
  });

  it('keeps one accumulator and no references to updates, however many sites', () => {
    const rng = mulberry32(3);
    const global = randomWeights(rng);
    const agg = fedAvg().beginAggregation(1, global) as StreamingWeightedMean;
    const before = agg.accumulatorStats;
    const params = MANIFEST.reduce((n, s) => n + sizeOf(s.shape), 0);
    expect(before).toEqual({ buffers: 1, elements: params });
    const updates = Array.from({ length: 40 }, () => randomWeights(rng));
    updates.forEach((u, k) => agg.add(`site-${k}`, u, 1 + k));
    expect(agg.accumulatorStats).toEqual(before);
    const expected = weightedMean(updates.map((w, k) => ({ weights: w, numSamples: 1 + k })));
    // Scribbling over the updates after add() must not change the result: nothing was retained.
    for (const u of updates) for (const v of u.values) v.fill(1e6);
    expect(relativeL2Error(agg.finish(), expected)).toBeLessThanOrEqual(1e-6);
  });
});

describe('FedBN', () => {
  it('keeps the previous global norm tensors and averages the rest', () => {
    const rng = mulberry32(5);
    const global = randomWeights(rng);
    const snapshot = global.values.map((v) => Float32Array.from(v));
    const strategy = fedBN();
    expect([...strategy.localRoles].sort()).toEqual(['norm-beta', 'norm-gamma', 'norm-running-mean', 'norm-running-var']);
    const agg = strategy.beginAggregation(2, global);
    const updates = Array.from({ length: 4 }, (_, k) => ({ weights: randomWeights(rng, 1, 3 + k), numSamples: 5 + k }));
    updates.forEach((u, k) => agg.add(`s${k}`, u.weights, u.numSamples));
    // Changing the caller's global after beginAggregation must not leak into the result.
    for (const v of global.values) v.fill(-42);
    const out = agg.finish();
    const mean = weightedMean(updates);
    MANIFEST.forEach((spec, i) => {
      if (isNormalisationRole(spec.role)) {
        expect(Array.from(out.values[i]!)).toEqual(Array.from(snapshot[i]!));
      } else {
        const err = relativeL2Error(
          { manifest: [spec], values: [out.values[i]!] },
          { manifest: [spec], values: [mean.values[i]!] },
        );
        expect(err).toBeLessThanOrEqual(1e-6);
      }
    });
  });

  it('tells every selected site which tensors stay local; FedAvg/FedProx keep none', () => {
    const sites = [{ id: 'a' }, { id: 'b' }];
    const bn = fedBN().configureFit(1, { manifest: MANIFEST }, sites);
    expect(bn.config.a!.localTensors).toEqual(['enc0/norm/gamma', 'enc0/norm/beta', 'enc0/norm/mean', 'enc0/norm/var']);
    expect(bn.config.b!.proximalMu).toBe(0);
    const avg = fedAvg().configureFit(1, { manifest: MANIFEST }, sites);
    expect(avg.config.a!.localTensors).toEqual([]);
    expect(avg.config.a!.localRoles).toEqual([]);
  });
});

describe('update validation', () => {
  const rng = mulberry32(9);
  const global = randomWeights(rng);

  function rejection(mutate: (w: NamedWeights) => NamedWeights, numSamples = 10): PatchFedError {
    const agg = fedAvg({ maxSamplesPerSite: 1000 }).beginAggregation(4, global);
    agg.add('good-site', randomWeights(rng), 10);
    const err = catchError(() => agg.add('hospital-b', mutate(randomWeights(rng)), numSamples));
    // A rejected update leaves the aggregate untouched.
    expect(agg.count).toBe(1);
    expect(agg.totalSamples).toBe(10);
    return err;
  }

  it.each([
    ['a NaN', (w: NamedWeights) => (w.values[1]![2] = NaN, w), /non-finite value \(NaN\) at index 2/],
    ['an Infinity', (w: NamedWeights) => (w.values[0]![0] = Infinity, w), /enc0\/conv\/kernel' has a non-finite/],
    ['a missing tensor', (w: NamedWeights) => ({ manifest: w.manifest.slice(1), values: w.values.slice(1) }), /expected 7 tensors/],
    ['a renamed tensor', (w: NamedWeights) => (w.manifest[2] = { ...w.manifest[2]!, name: 'x' }, w), /should be 'enc0\/norm\/gamma', got 'x'/],
    ['a reshaped tensor', (w: NamedWeights) => (w.manifest[1] = { ...w.manifest[1]!, shape: [2, 2] }, w), /shape \[4\], got \[2,2\]/],
    ['a changed role', (w: NamedWeights) => (w.manifest[4] = { ...w.manifest[4]!, role: 'conv-bias' }, w), /role 'norm-running-mean'/],
    ['a short value array', (w: NamedWeights) => (w.values[6] = new Float32Array(3), w), /has 3 values, expected 8/],
    ['float64 values', (w: NamedWeights) => (w.values[1] = new Float64Array(4) as unknown as Float32Array, w), /not a Float32Array/],
  ])('rejects %s, naming the site and the reason', (_what, mutate, reason) => {
    const err = rejection(mutate);
    expect(err.code).toBe('invalid-update');
    expect(err.subject).toBe('hospital-b');
    expect(err.message).toContain("site 'hospital-b'");
    expect(err.message).toMatch(reason);
  });

  it.each([[0], [-3], [2.5], [NaN], [1001]])('rejects numSamples=%s', (n) => {
    const err = rejection((w) => w, n);
    expect(err.subject).toBe('hospital-b');
    expect(err.message).toMatch(/numSamples/);
  });

  it('rejects a second update from the same site and updates after finish', () => {
    const agg = fedAvg().beginAggregation(1, global);
    agg.add('a', randomWeights(rng), 3);
    expect(catchError(() => agg.add('a', randomWeights(rng), 3)).message).toMatch(/already contributed/);
    agg.finish();
    expect(catchError(() => agg.add('b', randomWeights(rng), 3)).code).toBe('aggregation-closed');
  });

  it('refuses to finish with no accepted update', () => {
    expect(catchError(() => fedAvg().beginAggregation(1, global).finish()).code).toBe('no-updates');
  });

  it('refuses an invalid global model up front', () => {
    const bad = randomWeights(rng);
    bad.values[0]![0] = NaN;
    expect(catchError(() => fedAvg().beginAggregation(1, bad)).code).toBe('invalid-global');
  });
});
