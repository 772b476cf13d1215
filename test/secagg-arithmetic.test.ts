import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../shared/random.ts';
import {
  addInto,
  addMaskInPlace,
  cappedWeight,
  decodeWeightedMean,
  dequantiseElement,
  encodeWeightedUpdate,
  expandMask,
  fixedPointParams,
  maskUpdate,
  pairwiseSign,
  quantise,
  sumErrorBound,
  unmask,
} from '../shared/secagg/index.ts';
import { patchFedErrorCodeOf as codeOf } from './error-fixtures.ts';

const seed = (b: number) => new Uint8Array(32).fill(b);
/** Byte equality of two typed arrays (vitest's deep equality is slow on 1e5 elements). */
const sameWords = (a: Uint32Array, b: Uint32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('fixed-point encoding in Z_2^32', () => {
  it('defaults to 64 sites, clip 4 and the largest power-of-two scale with n·c·s < 2^31 (2^22)', () => {
    const p = fixedPointParams();
    expect(p).toEqual({ maxSites: 64, clip: 4, scale: 2 ** 22 });
    expect(p.maxSites * p.clip * p.scale).toBeLessThan(2 ** 31);
    expect(fixedPointParams({ maxSites: 10, clip: 1 }).scale).toBe(2 ** 27);
  });

  it('refuses parameters whose sum could overflow, and nonsense values', () => {
    expect(codeOf(() => fixedPointParams({ maxSites: 64, clip: 4, scale: 2 ** 23 }))).toBe('secagg-params');
    expect(codeOf(() => fixedPointParams({ maxSites: 0 }))).toBe('secagg-params');
    expect(codeOf(() => fixedPointParams({ clip: -1 }))).toBe('secagg-params');
    expect(codeOf(() => fixedPointParams({ scale: Number.NaN }))).toBe('secagg-params');
  });

  it('sums maxSites extreme values of the same sign without overflow, at the boundary scale', () => {
    const p = fixedPointParams({ maxSites: 64, clip: 4 });
    for (const v of [4, -4]) {
      const q = quantise([v, v / 2, -v], p).vector;
      const sum = new Uint32Array(3);
      for (let i = 0; i < 64; i++) addInto(sum, q);
      expect([0, 1, 2].map((j) => dequantiseElement(sum[j] ?? 0, p))).toEqual([64 * v, 32 * v, -64 * v]);
    }
    // One more site than the parameters allow wraps around: the bound is real, not a formality.
    const q = quantise([4], p).vector;
    const sum = new Uint32Array(1);
    for (let i = 0; i < 64 * 2; i++) addInto(sum, q);
    expect(dequantiseElement(sum[0] ?? 0, p)).not.toBe(512);
  });

  it('decoded sums are within n/(2s) of the exact sum of the clamped inputs, element by element', () => {
    const rng = mulberry32(11);
    for (const n of [3, 17, 64]) {
      const p = fixedPointParams({ maxSites: 64 });
      const d = 2000;
      const exact = new Float64Array(d);
      const sum = new Uint32Array(d);
      for (let i = 0; i < n; i++) {
        const v = Float64Array.from({ length: d }, () => (rng() * 2 - 1) * 3);
        v.forEach((x, j) => (exact[j] = (exact[j] ?? 0) + x));
        addInto(sum, quantise(v, p).vector);
      }
      let maxErr = 0;
      for (let j = 0; j < d; j++) maxErr = Math.max(maxErr, Math.abs(dequantiseElement(sum[j] ?? 0, p) - (exact[j] ?? 0)));
      expect(maxErr).toBeLessThanOrEqual(sumErrorBound(p, n));
      expect(maxErr).toBeGreaterThan(sumErrorBound(p, n) / 20); // rounding really happens
    }
  });

  it('counts and clamps values outside the clip range', () => {
    const p = fixedPointParams({ clip: 1, maxSites: 4 });
    const { vector, clamped } = quantise([0.5, 3, -7, -1], p);
    expect(clamped).toBe(2);
    expect([...vector].map((e) => dequantiseElement(e, p))).toEqual([0.5, 1, -1, -1]);
    expect(codeOf(() => quantise([Number.NaN], p))).toBe('secagg-encode');
  });

  it('weighted encoding: decodes to the sample-weighted mean within the quantisation bound', () => {
    const rng = mulberry32(3);
    const p = fixedPointParams({ maxSites: 8 });
    const d = 5000;
    const samples = [12, 40, 7, 25, 31];
    const cap = 50;
    const updates = samples.map(() => Float32Array.from({ length: d }, () => (rng() * 2 - 1) * 0.05));
    const sum = new Uint32Array(d + 1);
    for (let i = 0; i < samples.length; i++) addInto(sum, encodeWeightedUpdate(updates[i] ?? new Float32Array(0), p, { weight: cappedWeight(samples[i] ?? 0, cap) }).vector);
    const { mean, totalWeight } = decodeWeightedMean(sum, p);
    const W = samples.reduce((a, b) => a + b, 0) / cap;
    const n = samples.length;
    expect(Math.abs(totalWeight - W)).toBeLessThanOrEqual(sumErrorBound(p, n));
    let maxErr = 0;
    let worstRatio = 0;
    for (let j = 0; j < d; j++) {
      // FedAvg's sample-weighted mean, in float64.
      let exact = 0;
      for (let i = 0; i < n; i++) exact += (samples[i] ?? 0) * (updates[i]?.[j] ?? 0);
      exact /= samples.reduce((a, b) => a + b, 0);
      // |Ŝ/Ŵ − S/W| ≤ (|Ŝ−S| + |S/W|·|Ŵ−W|)/Ŵ, each error ≤ n/(2s); plus float32 storage.
      const bound = (sumErrorBound(p, n) * (1 + Math.abs(exact))) / totalWeight + Math.abs(exact) * 2 ** -23;
      const err = Math.abs((mean[j] ?? 0) - exact);
      worstRatio = Math.max(worstRatio, err / bound);
      maxErr = Math.max(maxErr, err);
    }
    expect(worstRatio).toBeLessThanOrEqual(1);
    expect(maxErr).toBeGreaterThan(0);
  });

  it('capped weights and the fixed (DP) denominator', () => {
    expect(cappedWeight(30, 60)).toBe(0.5);
    expect(cappedWeight(90, 60)).toBe(1);
    expect(codeOf(() => cappedWeight(-1, 60))).toBe('secagg-weight');
    const p = fixedPointParams({ maxSites: 4 });
    const enc = encodeWeightedUpdate(Float32Array.from([0.5, -0.25]), p, { weight: 1 });
    const sum = new Uint32Array(3);
    addInto(sum, enc.vector);
    addInto(sum, enc.vector);
    expect([...decodeWeightedMean(sum, p).mean]).toEqual([0.5, -0.25]);
    expect([...decodeWeightedMean(sum, p, 4).mean]).toEqual([0.25, -0.125]);
    expect(codeOf(() => encodeWeightedUpdate(new Float32Array(2), p, { weight: 1.5 }))).toBe('secagg-weight');
  });
});

describe('mask expansion (AES-256-CTR keystream)', () => {
  it('is AES-256 of the counter blocks 0, 1, 2, … read as little-endian uint32 (checked with AES-ECB)', () => {
    const key = randomBytes(32);
    const words = 4 * 40_000; // crosses the 64 KiB chunk boundary
    const ecb = createCipheriv('aes-256-ecb', key, null).setAutoPadding(false);
    const blocks = Buffer.alloc(words * 4);
    for (let i = 0; i < words / 4; i++) blocks.writeUInt32BE(i, 16 * i + 12);
    const stream = Buffer.concat([ecb.update(blocks), ecb.final()]);
    const mask = expandMask(new Uint8Array(key), words);
    for (let i = 0; i < words; i += 997) expect(mask[i]).toBe(stream.readUInt32LE(4 * i));
    expect(mask[words - 1]).toBe(stream.readUInt32LE(4 * (words - 1)));
  });

  it('is deterministic, prefix-consistent, and differs between seeds', () => {
    const a = expandMask(seed(1), 100_000);
    expect(sameWords(expandMask(seed(1), 100_000), a)).toBe(true);
    expect(sameWords(expandMask(seed(1), 17), a.subarray(0, 17))).toBe(true);
    const b = expandMask(seed(2), 100_000);
    let equal = 0;
    for (let j = 0; j < a.length; j++) if (a[j] === b[j]) equal++;
    expect(equal).toBeLessThan(3);
    // Uniform over Z_2^32: mean of 1e5 words within 5 standard errors of 2^31.
    const mean = a.reduce((s, w) => s + w, 0) / a.length;
    expect(Math.abs(mean - 2 ** 31)).toBeLessThan((5 * 2 ** 32) / Math.sqrt(12 * a.length));
  });

  it('adding then subtracting the same mask is the identity; bad seeds are refused', () => {
    const x = Uint32Array.from({ length: 70_000 }, (_, i) => (i * 2654435761) >>> 0);
    const y = Uint32Array.from(x);
    addMaskInPlace(y, seed(9), 1);
    expect(sameWords(y, x)).toBe(false);
    addMaskInPlace(y, seed(9), -1);
    expect(sameWords(y, x)).toBe(true);
    expect(codeOf(() => expandMask(new Uint8Array(16), 4))).toBe('secagg-seed');
  });
});

describe('masking arithmetic', () => {
  it('pairwise masks cancel in the sum; unmask removes the self-masks (no dropout)', () => {
    const ids = ['a', 'b', 'c', 'd'];
    const pair = (u: string, v: string) => seed(10 + ids.indexOf(u < v ? u : v) * 4 + ids.indexOf(u < v ? v : u));
    const self = (u: string) => seed(100 + ids.indexOf(u));
    const inputs = ids.map((_, i) => Uint32Array.from({ length: 1000 }, (_, j) => (i * 1000 + j * 7919) >>> 0));
    const sum = new Uint32Array(1000);
    ids.forEach((u, i) => {
      const masked = maskUpdate(inputs[i] ?? new Uint32Array(0), self(u), ids.filter((v) => v !== u).map((v) => ({ seed: pair(u, v), sign: pairwiseSign(u, v) })));
      addInto(sum, masked);
    });
    const expected = new Uint32Array(1000);
    for (const x of inputs) addInto(expected, x);
    expect(sameWords(unmask(sum, ids.map(self), []), expected)).toBe(true);
    expect(sameWords(sum, expected)).toBe(false);
  });

  it('removes a dropped site’s pairwise masks from what the survivors added', () => {
    const ids = ['a', 'b', 'c'];
    const pairSeed = new Map([['a|b', seed(1)], ['a|c', seed(2)], ['b|c', seed(3)]]);
    const pair = (u: string, v: string) => pairSeed.get(u < v ? `${u}|${v}` : `${v}|${u}`) ?? seed(0);
    const self = (u: string) => seed(50 + ids.indexOf(u));
    const inputs = new Map(ids.map((u, i) => [u, Uint32Array.from({ length: 300 }, (_, j) => (i + 1) * (j + 1))]));
    // 'c' drops before sending; 'a' and 'b' masked with it.
    const sum = new Uint32Array(300);
    for (const u of ['a', 'b']) addInto(sum, maskUpdate(inputs.get(u) ?? new Uint32Array(0), self(u), ids.filter((v) => v !== u).map((v) => ({ seed: pair(u, v), sign: pairwiseSign(u, v) }))));
    const result = unmask(sum, [self('a'), self('b')], ['a', 'b'].map((v) => ({ seed: pair(v, 'c'), sign: pairwiseSign(v, 'c') })));
    const expected = new Uint32Array(300);
    addInto(expected, inputs.get('a') ?? new Uint32Array(0));
    addInto(expected, inputs.get('b') ?? new Uint32Array(0));
    expect(sameWords(result, expected)).toBe(true);
    expect(codeOf(() => addInto(sum, new Uint32Array(5)))).toBe('secagg-length');
    expect(codeOf(() => pairwiseSign('a', 'a'))).toBe('secagg-mask');
  });
});
