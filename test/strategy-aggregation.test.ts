import { describe, expect, it } from 'vitest';
import { isPatchFedError, PatchFedError } from '../shared/errors.ts';
import { isNormalisationRole, sizeOf, type NamedWeights, type WeightSpec } from '../shared/weights.ts';
import { collectRuns, encodeWeights, inMemoryRuns, inMemoryValues, inspectWeights, StreamingInspection, updateChecks, type WeightsCheck } from '../shared/codec/index.ts';
import type { Aggregator } from '../coordinator/strategies/index.ts';
import { mulberry32, type Rng } from '../shared/random.ts';
import { fedAvg, fedBN, fedProx, StreamingWeightedMean } from '../coordinator/strategies/index.ts';
import { relativeL2Error, weightedMean } from './weights-reference.ts';
import { patchFedErrorOf as catchError } from './error-fixtures.ts';

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

/** The aggregate collected in memory (the coordinator streams it into a checkpoint file instead). */
function finished(agg: Aggregator): NamedWeights {
  const { sink, weights } = collectRuns(MANIFEST);
  agg.finish(sink);
  return weights;
}

async function rejectionOf(promise: Promise<unknown>): Promise<PatchFedError> {
  try {
    await promise;
  } catch (e) {
    if (isPatchFedError(e)) return e;
    throw e;
  }
  throw new Error('expected a PatchFedError');
}

describe('FedAvg streaming aggregation', () => {
  it('equals the sample-weighted mean for random updates (relative error <= 1e-6)', async () => {
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
      const agg = fedAvg().beginAggregation(trial + 1, inMemoryValues(global));
      for (const u of updates) await agg.add(u.siteId, inMemoryRuns(u.weights), u.numSamples);
      const result = finished(agg);
      const expected = weightedMean(updates);
      expect(result.manifest).toEqual(MANIFEST);
      expect(relativeL2Error(result, expected)).toBeLessThanOrEqual(1e-6);
      expect(agg.count).toBe(nSites);
      expect(agg.totalSamples).toBe(updates.reduce((n, u) => n + u.numSamples, 0));
    }
  });

  it('weights by samples, not per site (hand-computed two-site case)', async () => {
    const global = randomWeights(mulberry32(1));
    const a = { manifest: MANIFEST, values: MANIFEST.map((s) => new Float32Array(sizeOf(s.shape)).fill(1)) };
    const b = { manifest: MANIFEST, values: MANIFEST.map((s) => new Float32Array(sizeOf(s.shape)).fill(5)) };
    const agg = fedAvg().beginAggregation(1, inMemoryValues(global));
    await agg.add('a', inMemoryRuns(a), 3);
    await agg.add('b', inMemoryRuns(b), 1);
    const out = finished(agg);
    // (3·1 + 1·5) / 4 = 2, for every tensor including the running statistics.
    for (const v of out.values) for (const x of v) expect(x).toBe(2);
  });

  it('streaming equals batch regardless of arrival order', async () => {
    const rng = mulberry32(11);
    const global = randomWeights(rng);
    const updates = Array.from({ length: 6 }, (_, k) => ({ id: `s${k}`, w: randomWeights(rng, 2, -k), n: 10 + k * 37 }));
    const forward = fedProx({}, 0.1).beginAggregation(3, inMemoryValues(global));
    for (const u of updates) await forward.add(u.id, inMemoryRuns(u.w), u.n);
    const backward = fedProx({}, 0.1).beginAggregation(3, inMemoryValues(global));
    for (const u of [...updates].reverse()) await backward.add(u.id, inMemoryRuns(u.w), u.n);
    const batch = weightedMean(updates.map((u) => ({ weights: u.w, numSamples: u.n })));
    const f = finished(forward);
    const b = finished(backward);
    expect(relativeL2Error(f, batch)).toBeLessThanOrEqual(1e-6);
    expect(relativeL2Error(b, f)).toBeLessThanOrEqual(1e-6);
  });

  it('keeps one accumulator and no references to updates, however many sites', async () => {
    const rng = mulberry32(3);
    const global = randomWeights(rng);
    const agg = fedAvg().beginAggregation(1, inMemoryValues(global)) as StreamingWeightedMean;
    const before = agg.accumulatorStats;
    const params = MANIFEST.reduce((n, s) => n + sizeOf(s.shape), 0);
    expect(before).toEqual({ buffers: 1, elements: params, bytesPerElement: 8 });
    const updates = Array.from({ length: 40 }, () => randomWeights(rng));
    for (const [k, u] of updates.entries()) await agg.add(`site-${k}`, inMemoryRuns(u), 1 + k);
    expect(agg.accumulatorStats).toEqual(before);
    const expected = weightedMean(updates.map((w, k) => ({ weights: w, numSamples: 1 + k })));
    // Scribbling over the updates after add() must not change the result: nothing was retained.
    for (const u of updates) for (const v of u.values) v.fill(1e6);
    expect(relativeL2Error(finished(agg), expected)).toBeLessThanOrEqual(1e-6);
  });
});

describe('FedBN', () => {
  it('keeps the previous global norm tensors and averages the rest', async () => {
    const rng = mulberry32(5);
    const global = randomWeights(rng);
    const snapshot = global.values.map((v) => Float32Array.from(v));
    const strategy = fedBN();
    expect([...strategy.localRoles].sort()).toEqual(['norm-beta', 'norm-gamma', 'norm-running-mean', 'norm-running-var']);
    const agg = strategy.beginAggregation(2, inMemoryValues(global));
    const updates = Array.from({ length: 4 }, (_, k) => ({ weights: randomWeights(rng, 1, 3 + k), numSamples: 5 + k }));
    for (const [k, u] of updates.entries()) await agg.add(`s${k}`, inMemoryRuns(u.weights), u.numSamples);
    const out = finished(agg);
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
    expect(bn.instructions.a).toEqual({ proximalMu: 0, localTensors: ['enc0/norm/gamma', 'enc0/norm/beta', 'enc0/norm/mean', 'enc0/norm/var'] });
    expect(bn.instructions.b?.proximalMu).toBe(0);
    const avg = fedAvg().configureFit(1, { manifest: MANIFEST }, sites);
    expect(avg.instructions.a).toEqual({ proximalMu: 0, localTensors: [] });
    const prox = fedProx({}, 0.25).configureFit(1, { manifest: MANIFEST }, sites);
    expect(prox.instructions.b).toEqual({ proximalMu: 0.25, localTensors: [] });
  });
});

describe('the update validation path', () => {
  const rng = mulberry32(9);
  const global = randomWeights(rng);
  const source = "update from site 'hospital-b' (round 4)";

  const cases: [string, (w: NamedWeights) => NamedWeights, string, RegExp][] = [
    ['a NaN', (w) => (w.values[1]![2] = NaN, w), 'weights-not-finite', /enc0\/conv\/bias' has a non-finite value \(NaN\) at element 2/],
    ['an Infinity', (w) => (w.values[0]![0] = Infinity, w), 'weights-not-finite', /enc0\/conv\/kernel' has a non-finite/],
    ['a missing tensor', (w) => ({ manifest: w.manifest.slice(1), values: w.values.slice(1) }), 'weights-manifest-mismatch', /should be 'enc0\/conv\/kernel', got 'enc0\/conv\/bias'/],
    ['a renamed tensor', (w) => (w.manifest[2] = { ...w.manifest[2]!, name: 'x' }, w), 'weights-manifest-mismatch', /should be 'enc0\/norm\/gamma', got 'x'/],
    ['a reshaped tensor', (w) => (w.manifest[1] = { ...w.manifest[1]!, shape: [2, 2] }, w), 'weights-manifest-mismatch', /shape \[4\], got \[2,2\]/],
    ['a changed role', (w) => (w.manifest[4] = { ...w.manifest[4]!, role: 'conv-bias' }, w), 'weights-manifest-mismatch', /should be norm-running-mean/],
  ];

  it.each(cases)('refuses %s in memory, naming the site and the reason', (_what, mutate, code, reason) => {
    const err = catchError(() => inspectWeights(mutate(randomWeights(rng)), updateChecks({ expectedManifest: MANIFEST, source }), source));
    expect(err.code).toBe(code);
    expect(err.message).toContain("site 'hospital-b'");
    expect(err.message).toMatch(reason);
  });

  it.each(cases.filter(([what]) => what === 'a NaN' || what === 'an Infinity'))('refuses %s while the bytes stream in, at the chunk that carries it', (_what, mutate, code, reason) => {
    // encodeWeights refuses non-finite values, so poison the encoded bytes instead.
    const bad = mutate(randomWeights(rng));
    const clean = { manifest: bad.manifest, values: bad.values.map((v) => v.map((x) => (Number.isFinite(x) ? x : 0))) };
    const bytes = encodeWeights(clean);
    const t = bad.values.findIndex((v) => v.some((x) => !Number.isFinite(x)));
    const e = bad.values[t]!.findIndex((x) => !Number.isFinite(x));
    const before = bad.values.slice(0, t).reduce((n, v) => n + v.length, 0) + e;
    const at = bytes.length - 4 * (bad.values.reduce((n, v) => n + v.length, 0) - before);
    new DataView(bytes.buffer).setFloat32(at, bad.values[t]![e]!, true);
    const inspection = new StreamingInspection(updateChecks({ expectedManifest: MANIFEST, source }), { expectedManifest: MANIFEST, source });
    let pushed = 0;
    const err = catchError(() => {
      for (let i = 0; i < bytes.length; i += 7) {
        inspection.push(bytes.subarray(i, i + 7)); // odd chunk sizes split values across chunks
        pushed = i + 7;
      }
    });
    expect(err.code).toBe(code);
    expect(err.message).toMatch(reason);
    expect(pushed).toBeLessThan(at + 4); // refused at the chunk that completed the bad value, not later
  });

  it('refuses a short value array or float64 values in memory', () => {
    const short = randomWeights(rng);
    short.values[6] = new Float32Array(3);
    expect(catchError(() => inspectWeights(short, updateChecks({ expectedManifest: MANIFEST, source }), source)).message).toMatch(/needs 8 float32 values .* got 3/);
    const wide = randomWeights(rng);
    wide.values[1] = new Float64Array(4) as unknown as Float32Array;
    expect(catchError(() => inspectWeights(wide, updateChecks({ expectedManifest: MANIFEST, source }), source)).code).toBe('weights-inconsistent');
  });

  it('runs the norm bound only when one is set, on ||update − global||', () => {
    const names = (checks: WeightsCheck[]) => checks.map((c) => c.name);
    expect(names(updateChecks({ expectedManifest: MANIFEST, source }))).toEqual(['manifest', 'finite']);
    expect(names(updateChecks({ expectedManifest: MANIFEST, source, normBound: 3, reference: inMemoryValues(global) }))).toEqual(['manifest', 'finite-and-norm-bound']);
    expect(names(updateChecks({ expectedManifest: MANIFEST, source, normBound: 0 }))).toEqual(['manifest', 'finite']);
    const near = { manifest: MANIFEST, values: global.values.map((v) => v.map((x) => x + 0.001)) };
    const far = { manifest: MANIFEST, values: global.values.map((v) => v.map((x) => x + 1)) };
    const bounded = () => updateChecks({ expectedManifest: MANIFEST, source, reference: inMemoryValues(global), normBound: 1 });
    expect(() => inspectWeights(near, bounded(), source)).not.toThrow();
    const err = catchError(() => inspectWeights(far, bounded(), source));
    expect(err.code).toBe('update-norm-exceeded');
    expect(err.message).toMatch(/update L2 norm 11\.66\d* exceeds the bound 1/); // sqrt(136 values), each 1 away
  });
});

describe('the aggregator', () => {
  const rng = mulberry32(19);
  const global = randomWeights(rng);

  it.each([[0], [-3], [2.5], [NaN]])('refuses numSamples=%s and leaves the sum untouched', async (n) => {
    const agg = fedAvg().beginAggregation(4, inMemoryValues(global));
    await agg.add('good-site', inMemoryRuns(randomWeights(rng)), 10);
    const err = await rejectionOf(agg.add('hospital-b', inMemoryRuns(randomWeights(rng)), n));
    expect(err.subject).toBe('hospital-b');
    expect(err.message).toMatch(/numSamples/);
    expect(agg.count).toBe(1);
    expect(agg.totalSamples).toBe(10);
  });

  it('rejects a second update from the same site and updates after finish', async () => {
    const agg = fedAvg().beginAggregation(1, inMemoryValues(global));
    await agg.add('a', inMemoryRuns(randomWeights(rng)), 3);
    expect((await rejectionOf(agg.add('a', inMemoryRuns(randomWeights(rng)), 3))).message).toMatch(/already contributed/);
    finished(agg);
    expect((await rejectionOf(agg.add('b', inMemoryRuns(randomWeights(rng)), 3))).code).toBe('aggregation-closed');
  });

  it('refuses to finish after an update failed half-way (no partial update reaches a checkpoint)', async () => {
    const agg = fedAvg().beginAggregation(1, inMemoryValues(global));
    await agg.add('a', inMemoryRuns(randomWeights(rng)), 3);
    const failing = {
      manifest: MANIFEST,
      forEachRun: async (visit: (t: number, o: number, run: Float32Array) => void) => {
        visit(0, 0, new Float32Array(4).fill(1));
        throw new Error('disk read failed');
      },
    };
    await expect(agg.add('b', failing, 3)).rejects.toThrow(/disk read failed/);
    expect(catchError(() => finished(agg)).code).toBe('aggregation-broken');
  });

  it('refuses to finish with no accepted update', () => {
    expect(catchError(() => finished(fedAvg().beginAggregation(1, inMemoryValues(global)))).code).toBe('no-updates');
  });

  it('refuses a global model whose manifest names a tensor twice', () => {
    const bad = randomWeights(rng);
    bad.manifest[1] = { ...bad.manifest[1]!, name: bad.manifest[0]!.name };
    expect(catchError(() => fedAvg().beginAggregation(1, inMemoryValues(bad))).code).toBe('invalid-global');
  });

  it('accumulates in float32 for large models and stays within float32 resolution of the exact mean', async () => {
    const base = randomWeights(rng);
    // Training-like updates: small moves (1e-3 of the weights' scale) around the global model.
    const updates = Array.from({ length: 32 }, (_, k) => ({ weights: { manifest: MANIFEST, values: base.values.map((v) => v.map((x) => x + 1e-3 * (rng() * 2 - 1))) }, numSamples: 1 + k }));
    const agg = new StreamingWeightedMean(inMemoryValues(base), { precision: 'float32' });
    expect(agg.accumulatorStats.bytesPerElement).toBe(4);
    for (const [k, u] of updates.entries()) await agg.add(`s${k}`, inMemoryRuns(u.weights), u.numSamples);
    const out = finished(agg);
    const exact = weightedMean(updates);
    out.values.forEach((v, t) => v.forEach((x, j) => expect(Math.abs(x - exact.values[t]![j]!)).toBeLessThanOrEqual(Math.abs(exact.values[t]![j]!) * 2 ** -23 + 1e-12)));
  });
});
