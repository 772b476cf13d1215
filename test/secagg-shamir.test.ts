import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../shared/random.ts';
import {
  bytesToBigInt,
  combineShares,
  FIELD_PRIME,
  interpolateAt,
  randomFieldElement,
  shareValueFromBytes,
  shareValueToBytes,
  splitSecret,
  type Share,
} from '../shared/secagg/index.ts';
import { patchFedErrorCodeOf as codeOf } from './error-fixtures.ts';

const secret32 = () => new Uint8Array(randomBytes(32));

/** A random t-subset of the shares (Fisher–Yates prefix). */
function subset(shares: readonly Share[], t: number, rng: () => number): Share[] {
  const s = [...shares];
  for (let i = 0; i < t; i++) {
    const j = i + Math.floor(rng() * (s.length - i));
    [s[i], s[j]] = [s[j] as Share, s[i] as Share];
  }
  return s.slice(0, t);
}

describe('Shamir secret sharing over F_(2^521 − 1)', () => {
  it('any t of n shares reconstruct the secret, for several (t, n)', () => {
    const rng = mulberry32(5);
    for (const [t, n] of [[2, 3], [3, 5], [5, 5], [7, 10], [22, 32]] as const) {
      for (let trial = 0; trial < 4; trial++) {
        const secret = secret32();
        const shares = splitSecret(secret, Array.from({ length: n }, (_, i) => i + 1), t);
        expect(combineShares(subset(shares, t, rng), t)).toEqual(secret);
        expect(combineShares(shares, t)).toEqual(secret); // all n, the extra ones checked for consistency
      }
    }
  });

  it('shares are the polynomial evaluated in the field (checked with plain BigInt % p)', () => {
    const coefficients = [123456789n, FIELD_PRIME - 5n, (1n << 520n) + 77n];
    let k = 1;
    const secret = new Uint8Array(32);
    secret[31] = 0x15; // 21
    const shares = splitSecret(secret, [1, 2, 9, 1000], 4, () => coefficients[k++ - 1] ?? 0n);
    for (const s of shares) {
      const x = BigInt(s.x);
      const want = (21n + coefficients[0]! * x + coefficients[1]! * x * x + coefficients[2]! * x * x * x) % FIELD_PRIME;
      expect(s.y).toBe(want);
    }
  });

  it('t − 1 shares give a wrong secret (for random secrets) and combineShares refuses them cleanly', () => {
    for (let trial = 0; trial < 40; trial++) {
      const t = 2 + (trial % 5);
      const secret = secret32();
      const shares = splitSecret(secret, Array.from({ length: t + 2 }, (_, i) => i + 1), t);
      const guess = interpolateAt(shares.slice(0, t - 1), 0);
      expect(guess).not.toBe(bytesToBigInt(secret));
      expect(codeOf(() => combineShares(shares.slice(0, t - 1), t))).toBe('secagg-too-few-shares');
    }
  });

  it('t − 1 shares are consistent with every secret: the value they interpolate is uniform, not the secret', () => {
    // With t = 2 one share y = s + a·x, a uniform: fixing the share, every s has exactly one a.
    // Empirically: for a fixed secret, the interpolation of one share (a constant polynomial)
    // is uniform over F_p — its top bit is set about half the time and never equals s.
    const secret = new Uint8Array(32).fill(7);
    let topBit = 0;
    for (let i = 0; i < 200; i++) {
      const [first] = splitSecret(secret, [1, 2], 2);
      if (!first) throw new Error('no share');
      if (first.y >> 520n === 1n) topBit++;
      expect(first.y).not.toBe(bytesToBigInt(secret));
    }
    expect(topBit).toBeGreaterThan(60);
    expect(topBit).toBeLessThan(140);
  });

  it('detects a corrupted share when more than t are given', () => {
    const secret = secret32();
    const shares = splitSecret(secret, [1, 2, 3, 4, 5], 3);
    const bad = shares.map((s, i) => (i === 4 ? { x: s.x, y: (s.y + 1n) % FIELD_PRIME } : s));
    expect(codeOf(() => combineShares(bad, 3))).toBe('secagg-inconsistent-shares');
    // With exactly t shares, a share replaced by garbage gives a random field element as "secret",
    // which is not a 32-byte value (probability 1 − 2^-265): refused instead of used.
    const bad0 = shares.map((s, i) => (i === 0 ? { x: s.x, y: randomFieldElement() } : s)).slice(0, 3);
    expect(codeOf(() => combineShares(bad0, 3))).toBe('secagg-inconsistent-shares');
  });

  it('refuses bad inputs with clear errors', () => {
    const s = secret32();
    expect(codeOf(() => splitSecret(new Uint8Array(31), [1, 2], 2))).toBe('secagg-shamir');
    expect(codeOf(() => splitSecret(s, [1, 1, 2], 2))).toBe('secagg-shamir');
    expect(codeOf(() => splitSecret(s, [0, 1, 2], 2))).toBe('secagg-shamir');
    expect(codeOf(() => splitSecret(s, [1, 2], 3))).toBe('secagg-threshold');
    expect(codeOf(() => combineShares([], 0))).toBe('secagg-threshold');
    expect(codeOf(() => shareValueFromBytes(new Uint8Array(66).fill(0xff), 'share'))).toBe('secagg-shamir');
  });

  it('share values round-trip through their 66-byte wire form; random field elements are in range', () => {
    for (let i = 0; i < 50; i++) {
      const y = randomFieldElement();
      expect(y < FIELD_PRIME && y >= 0n).toBe(true);
      expect(shareValueFromBytes(shareValueToBytes(y), 'share')).toBe(y);
    }
  });
});
