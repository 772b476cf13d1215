/**
 * Shamir's t-out-of-n secret sharing (Shamir 1979) of 32-byte secrets — a site's self-mask seed
 * and its mask secret key (Bonawitz et al. 2017, §3 "Secret sharing", §4 "ShareKeys").
 *
 * Field: F_p with p = 2^521 − 1, a Mersenne prime larger than every 256-bit secret, so one field
 * element carries a whole secret (no splitting into limbs) and reduction is two shifts and an add.
 * A secret s is the constant term of a random polynomial f of degree t − 1; the share of the
 * participant with x-coordinate x is (x, f(x)). Any t shares give s by Lagrange interpolation at
 * 0; any t − 1 shares are consistent with every possible secret (each choice of f(0) fixes exactly
 * one polynomial through them), so they reveal nothing about s.
 *
 * BigInt is used only here: a few hundred field operations per site and round, never per weight.
 * BigInt arithmetic is not constant-time; shares stay inside the site process or travel encrypted
 * (share-envelope.ts), so the timing surface is local to the machine that owns the secret.
 */
import { randomBytes } from 'node:crypto';
import { PatchFedError } from '../errors.ts';

export const FIELD_BITS = 521;
export const FIELD_PRIME = (1n << 521n) - 1n;
/** Bytes of one field element on the wire (big-endian). */
export const FIELD_BYTES = 66;
export const SECRET_BYTES = 32;

export interface Share {
  /** The participant's x-coordinate, 1..n (never 0: f(0) is the secret). */
  x: number;
  /** f(x) in F_p. */
  y: bigint;
}

/** x mod p for 0 ≤ x < p² (Mersenne reduction: 2^521 ≡ 1). */
function reduce(x: bigint): bigint {
  let r = (x & FIELD_PRIME) + (x >> 521n);
  r = (r & FIELD_PRIME) + (r >> 521n);
  return r >= FIELD_PRIME ? r - FIELD_PRIME : r;
}

const add = (a: bigint, b: bigint): bigint => reduce(a + b);
const sub = (a: bigint, b: bigint): bigint => (a >= b ? a - b : a + FIELD_PRIME - b);
const mul = (a: bigint, b: bigint): bigint => reduce(a * b);

/** Inverse by the extended Euclidean algorithm (a ≠ 0). */
function inverse(a: bigint): bigint {
  let [r0, r1] = [FIELD_PRIME, a];
  let [t0, t1] = [0n, 1n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [t0, t1] = [t1, t0 - q * t1];
  }
  if (r0 !== 1n) throw new PatchFedError('secagg-shamir', 'Shamir: division by zero in the field (two shares with the same x?).');
  return t0 < 0n ? t0 + FIELD_PRIME : t0;
}

/** Uniform element of F_p from the system CSPRNG (rejection sampling: only 2^521 − 1 itself is rejected). */
export function randomFieldElement(): bigint {
  for (;;) {
    const v = bytesToBigInt(randomBytes(FIELD_BYTES)) & FIELD_PRIME;
    if (v < FIELD_PRIME) return v;
  }
}

export function bytesToBigInt(bytes: Uint8Array): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

export function bigIntToBytes(v: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = v;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  if (x !== 0n) throw new PatchFedError('secagg-shamir', `Shamir: value does not fit in ${length} bytes.`);
  return out;
}

function checkThreshold(threshold: number, n: number): void {
  if (!(Number.isSafeInteger(threshold) && threshold >= 1 && threshold <= n)) {
    throw new PatchFedError('secagg-threshold', `Shamir: the threshold must be an integer between 1 and the number of shares (${n}), got ${String(threshold)}.`);
  }
}

function checkXs(xs: readonly number[]): void {
  const seen = new Set<number>();
  for (const x of xs) {
    if (!(Number.isSafeInteger(x) && x >= 1)) throw new PatchFedError('secagg-shamir', `Shamir: share x-coordinates must be positive integers, got ${String(x)}.`);
    if (seen.has(x)) throw new PatchFedError('secagg-shamir', `Shamir: x-coordinate ${x} appears twice.`);
    seen.add(x);
  }
}

/**
 * Shares of a 32-byte secret for the participants with x-coordinates `xs`: any `threshold` of them
 * reconstruct it. `random` draws the polynomial's coefficients (tests may inject a seeded one).
 */
export function splitSecret(secret: Uint8Array, xs: readonly number[], threshold: number, random: () => bigint = randomFieldElement): Share[] {
  if (!(secret instanceof Uint8Array) || secret.length !== SECRET_BYTES) {
    throw new PatchFedError('secagg-shamir', `Shamir: secrets are ${SECRET_BYTES} bytes, got ${secret instanceof Uint8Array ? secret.length : typeof secret}.`);
  }
  checkXs(xs);
  checkThreshold(threshold, xs.length);
  const coefficients = [bytesToBigInt(secret)];
  for (let i = 1; i < threshold; i++) coefficients.push(random());
  return xs.map((x) => {
    // Horner: f(x) = c0 + x(c1 + x(c2 + …)).
    const bx = BigInt(x);
    let y = 0n;
    for (let i = coefficients.length - 1; i >= 0; i--) y = add(mul(y, bx), coefficients[i] ?? 0n);
    return { x, y };
  });
}

/**
 * Lagrange basis values λ_i(at) for the x-coordinates `xs` (f(at) = Σ y_i·λ_i(at)). They depend only
 * on the public x-coordinates, so they are cached: unmasking a round reconstructs dozens of
 * secrets from shares at the same x-coordinates.
 */
const lagrangeCache = new Map<string, bigint[]>();
const LAGRANGE_CACHE_ENTRIES = 1024;

function lagrangeAt(xs: readonly number[], at: number): bigint[] {
  const key = `${at}|${xs.join(',')}`;
  const cached = lagrangeCache.get(key);
  if (cached) return cached;
  const a = BigInt(at);
  const bx = xs.map((x) => BigInt(x));
  const nums: bigint[] = [];
  const dens: bigint[] = [];
  for (let i = 0; i < bx.length; i++) {
    let num = 1n;
    let den = 1n;
    for (let j = 0; j < bx.length; j++) {
      if (j === i) continue;
      num = mul(num, sub(a, bx[j] ?? 0n));
      den = mul(den, sub(bx[i] ?? 0n, bx[j] ?? 0n));
    }
    nums.push(num);
    dens.push(den);
  }
  // Montgomery's batch inversion: one field inversion for all the denominators.
  const prefix: bigint[] = [];
  let running = 1n;
  for (const d of dens) {
    prefix.push(running);
    running = mul(running, d);
  }
  let inv = inverse(running);
  const basis: bigint[] = new Array<bigint>(bx.length);
  for (let i = bx.length - 1; i >= 0; i--) {
    basis[i] = mul(nums[i] ?? 0n, mul(inv, prefix[i] ?? 1n));
    inv = mul(inv, dens[i] ?? 1n);
  }
  if (lagrangeCache.size >= LAGRANGE_CACHE_ENTRIES) lagrangeCache.clear();
  lagrangeCache.set(key, basis);
  return basis;
}

/** f(at) of the unique polynomial of degree < shares.length through `shares` (Lagrange). */
export function interpolateAt(shares: readonly Share[], at: number): bigint {
  const xs = shares.map((s) => s.x);
  checkXs(xs);
  const basis = lagrangeAt(xs, at);
  let result = 0n;
  for (let i = 0; i < shares.length; i++) result = add(result, mul(shares[i]?.y ?? 0n, basis[i] ?? 0n));
  return result;
}

/**
 * The secret from at least `threshold` shares. With more than `threshold`, every extra share must
 * lie on the polynomial the first `threshold` define, so a corrupted or mixed-up share is
 * detected instead of silently giving a wrong secret. Fewer than `threshold`: a clean error.
 */
export function combineShares(shares: readonly Share[], threshold: number, what = 'secret'): Uint8Array {
  if (!(Number.isSafeInteger(threshold) && threshold >= 1)) {
    throw new PatchFedError('secagg-threshold', `Shamir: the threshold must be a positive integer, got ${String(threshold)}.`);
  }
  if (shares.length < threshold) {
    throw new PatchFedError('secagg-too-few-shares', `Shamir: ${shares.length} share(s) of the ${what}, ${threshold} needed to reconstruct it.`, { subject: what });
  }
  for (const s of shares) {
    if (!(typeof s.y === 'bigint' && s.y >= 0n && s.y < FIELD_PRIME)) {
      throw new PatchFedError('secagg-shamir', `Shamir: a share of the ${what} is not a field element.`, { subject: what });
    }
  }
  const basis = shares.slice(0, threshold);
  for (const extra of shares.slice(threshold)) {
    if (interpolateAt(basis, extra.x) !== extra.y) {
      throw new PatchFedError('secagg-inconsistent-shares', `Shamir: the shares of the ${what} are inconsistent (share ${extra.x} is not on the polynomial of the others).`, { subject: what });
    }
  }
  const secret = interpolateAt(basis, 0);
  if (secret >> BigInt(8 * SECRET_BYTES) !== 0n) {
    throw new PatchFedError('secagg-inconsistent-shares', `Shamir: the shares of the ${what} do not encode a ${SECRET_BYTES}-byte secret.`, { subject: what });
  }
  return bigIntToBytes(secret, SECRET_BYTES);
}

export function shareValueToBytes(y: bigint): Uint8Array {
  return bigIntToBytes(y, FIELD_BYTES);
}

export function shareValueFromBytes(bytes: Uint8Array, what: string): bigint {
  if (bytes.length !== FIELD_BYTES) throw new PatchFedError('secagg-shamir', `Shamir: ${what} must be ${FIELD_BYTES} bytes, got ${bytes.length}.`, { subject: what });
  const y = bytesToBigInt(bytes);
  if (y >= FIELD_PRIME) throw new PatchFedError('secagg-shamir', `Shamir: ${what} is not a field element.`, { subject: what });
  return y;
}
