/**
 * The accumulator FedAvg and DP-FedAvg share (coordinator/strategies/delta-sum.ts) and the
 * checkpoint encoder's fused norm + finite pass (coordinator/server/weights-encoder.ts): updates
 * streamed from spool files as on the coordinator, in both accumulator precisions; a DP update
 * whose clip-norm pass fails leaves the sum as if it never arrived; the encoder still names the
 * first non-finite value. Small layouts, a few files in a temp dir: well under a second.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { collectRuns, encodeWeights, fileRuns, inMemoryRuns, inMemoryValues, type WeightRuns } from '../shared/codec/index.ts';
import { mulberry32, type Rng } from '../shared/random.ts';
import { sizeOf, type NamedWeights, type WeightSpec } from '../shared/weights.ts';
import { DpSumAggregator, fedBN, StreamingWeightedMean, type Aggregator } from '../coordinator/strategies/index.ts';
import { CheckingEncoder } from '../coordinator/server/weights-encoder.ts';
import { l2Norm, relativeL2Error, weightedMean } from './weights-reference.ts';
import { patchFedErrorOf as caught } from './error-fixtures.ts';

const MANIFEST: WeightSpec[] = [
  { name: 'enc0/conv/kernel', shape: [3, 3, 3, 2, 4], trainable: true, role: 'conv-kernel' },
  { name: 'enc0/norm/gamma', shape: [4], trainable: true, role: 'norm-gamma' },
  { name: 'enc0/norm/var', shape: [4], trainable: false, role: 'norm-running-var' },
  { name: 'head/kernel', shape: [1, 1, 1, 4, 3], trainable: true, role: 'conv-kernel' },
];

const dir = mkdtempSync(join(tmpdir(), 'patchfed-delta-sum-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function randomWeights(rng: Rng, scale = 1, offset = 0): NamedWeights {
  return { manifest: MANIFEST.map((s) => ({ ...s, shape: [...s.shape] })), values: MANIFEST.map((s) => Float32Array.from({ length: sizeOf(s.shape) }, () => offset + scale * (rng() * 2 - 1))) };
}

let files = 0;
/** An update spooled to disk, as the coordinator's receiver leaves it for the commit. */
function spooled(weights: NamedWeights): WeightRuns {
  const path = join(dir, `u${files++}.pfw`);
  writeFileSync(path, encodeWeights(weights));
  return fileRuns(path, MANIFEST, path);
}

function finished(agg: Aggregator): NamedWeights {
  const { sink, weights } = collectRuns(MANIFEST);
  agg.finish(sink);
  return weights;
}

describe('the shared delta accumulator', () => {
  for (const precision of ['float64', 'float32'] as const) {
    it(`FedAvg from spool files equals the sample-weighted mean (${precision} accumulator)`, async () => {
      const rng = mulberry32(precision === 'float64' ? 1 : 2);
      const global = randomWeights(rng);
      const updates = Array.from({ length: 6 }, (_, k) => ({ siteId: `site-${k}`, weights: randomWeights(rng, 0.5, k), numSamples: 1 + Math.floor(rng() * 300) }));
      const agg = new StreamingWeightedMean(inMemoryValues(global), { precision });
      expect(agg.accumulatorStats.bytesPerElement).toBe(precision === 'float64' ? 8 : 4);
      for (const u of updates) await agg.add(u.siteId, spooled(u.weights), u.numSamples);
      expect(relativeL2Error(finished(agg), weightedMean(updates))).toBeLessThanOrEqual(precision === 'float64' ? 1e-6 : 1e-5);
    });
  }

  it('FedBN keeps the global norm tensors and averages the rest, from spool files', async () => {
    const rng = mulberry32(3);
    const global = randomWeights(rng);
    const updates = Array.from({ length: 3 }, (_, k) => ({ weights: randomWeights(rng, 0.5, k), numSamples: 10 * (k + 1) }));
    const agg = fedBN().beginAggregation(1, inMemoryValues(global));
    for (const [k, u] of updates.entries()) await agg.add(`s${k}`, spooled(u.weights), u.numSamples);
    const out = finished(agg);
    const mean = weightedMean(updates);
    MANIFEST.forEach((spec, t) => {
      const got = out.values[t] ?? new Float32Array(0);
      if (spec.role.startsWith('norm-')) expect(got).toEqual(global.values[t]);
      else got.forEach((x, j) => expect(x).toBeCloseTo(mean.values[t]?.[j] ?? NaN, 5));
    });
  });

  it('DP: a clip-norm pass that fails leaves the sum as if the update never arrived', async () => {
    const rng = mulberry32(6);
    const global = randomWeights(rng);
    const agg = new DpSumAggregator(inMemoryValues(global), { clipNorm: 1e9, noiseStd: 0, sampler: { normal: () => 0 }, denominator: 2 });
    const a = randomWeights(rng, 0.5, 1);
    const b = randomWeights(rng, 0.5, -1);
    const failing: WeightRuns = {
      manifest: MANIFEST,
      forEachRun: async (visit) => {
        visit(0, 0, new Float32Array(4).fill(1));
        throw new Error('disk read failed');
      },
    };
    await agg.add('a', spooled(a), 10);
    await expect(agg.add('x', failing, 10)).rejects.toThrow(/disk read failed/);
    await agg.add('b', inMemoryRuns(b), 30);
    expect(agg.count).toBe(2);
    // Unweighted, over the m = 2 selected sites: g + ((a − g) + (b − g)) / 2 = (a + b) / 2 whatever
    // the sample counts; running variances are clamped at 0.
    finished(agg).values.forEach((v, t) =>
      v.forEach((x, j) => {
        const mean = ((a.values[t]?.[j] ?? NaN) + (b.values[t]?.[j] ?? NaN)) / 2;
        expect(x).toBeCloseTo(MANIFEST[t]?.role === 'norm-running-var' ? Math.max(0, mean) : mean, 5);
      }),
    );
  });

  it('DP: an update that fails half-way through its fold still breaks the sum (no partial update is published)', async () => {
    const rng = mulberry32(7);
    const agg = new DpSumAggregator(inMemoryValues(randomWeights(rng)), { noiseStd: 0, sampler: { normal: () => 0 }, denominator: 2 });
    await agg.add('a', spooled(randomWeights(rng)), 1);
    const failing: WeightRuns = {
      manifest: MANIFEST,
      forEachRun: async (visit) => {
        visit(0, 0, new Float32Array(4).fill(1));
        throw new Error('disk read failed');
      },
    };
    await expect(agg.add('x', failing, 1)).rejects.toThrow(/disk read failed/);
    expect(caught(() => finished(agg)).code).toBe('aggregation-broken');
  });
});

describe('checkpoint encoder: one pass for the norm and the finite check', () => {
  it('records the L2 norm and refuses the first non-finite value by tensor and element', () => {
    const rng = mulberry32(8);
    const w = randomWeights(rng);
    let bytes = 0;
    const encoder = new CheckingEncoder(MANIFEST, (b) => (bytes += b.length), 'test model');
    w.values.forEach((v, t) => encoder.visit(t, 0, v));
    encoder.end();
    expect(encoder.l2Norm).toBeCloseTo(l2Norm(w), 4);
    expect(bytes).toBe(encodeWeights(w).length);
    for (const bad of [NaN, Infinity, -Infinity]) {
      const bent = new CheckingEncoder(MANIFEST, () => undefined, 'test model');
      const first = Float32Array.from(w.values[0] ?? []);
      first[17] = bad;
      const e = caught(() => bent.visit(0, 0, first));
      expect(e.code).toBe('aggregate-not-finite');
      expect(e.message).toMatch(/tensor 'enc0\/conv\/kernel' .*element 17/);
    }
  });
});
