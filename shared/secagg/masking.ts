/**
 * The masking and unmasking arithmetic of secure aggregation, as pure functions over Z_{2^32}
 * (Bonawitz et al. 2017, §4, "MaskedInputCollection" and "Unmasking").
 *
 * Site u with quantised input x_u sends
 *     y_u = x_u + PRG(b_u) + Σ_{v: u<v} PRG(s_uv) − Σ_{v: u>v} PRG(s_uv)   (mod 2^32)
 * over its neighbours v that completed the share step. Summed over the sites U3 whose y arrived,
 * every pair inside U3 cancels, leaving
 *     Σ y = Σ_{u∈U3} x_u + Σ_{u∈U3} PRG(b_u) + Σ_{v∈U3, u dropped} sign(v,u)·PRG(s_vu),
 * so the coordinator removes the survivors' self-masks (b_u reconstructed from shares) and the
 * masks survivors added for the dropped sites (s_vu recomputed from the dropped site's
 * reconstructed secret key). One vector of memory; each mask is streamed (mask-prg.ts).
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../errors.ts';
import { addMaskInPlace } from './mask-prg.ts';

/** A mask seed with the sign it was added with. */
export interface SignedSeed {
  seed: Uint8Array;
  sign: 1 | -1;
}

/** The sign site `own` gives PRG(s_own,peer): + for the smaller id, − for the larger, so pairs cancel. */
export function pairwiseSign(ownId: string, peerId: string): 1 | -1 {
  if (ownId === peerId) throw new PatchFedError('secagg-mask', `Secure aggregation: site '${ownId}' has no pairwise mask with itself.`, { subject: ownId });
  return ownId < peerId ? 1 : -1;
}

/** y = x + PRG(selfSeed) + Σ sign·PRG(seed), mod 2^32; a new vector (x is left as it is). */
export function maskUpdate(quantised: Uint32Array, selfSeed: Uint8Array, pairwise: readonly SignedSeed[]): Uint32Array {
  const masked = Uint32Array.from(quantised);
  maskInPlace(masked, selfSeed, pairwise);
  return masked;
}

/** `maskUpdate` without the copy: x becomes y (a 22.6M-parameter model needs no second 90 MB vector). */
export function maskInPlace(vector: Uint32Array, selfSeed: Uint8Array, pairwise: readonly SignedSeed[]): void {
  addMaskInPlace(vector, selfSeed, 1);
  for (const p of pairwise) addMaskInPlace(vector, p.seed, p.sign);
}

/** sum ← sum + masked mod 2^32 (the coordinator's running sum; equal lengths required). */
export function addInto(sum: Uint32Array, masked: Uint32Array): void {
  if (sum.length !== masked.length) {
    throw new PatchFedError('secagg-length', `Secure aggregation: a masked vector has ${masked.length} elements, the round's vectors have ${sum.length}.`);
  }
  for (let j = 0; j < sum.length; j++) sum[j] = (sum[j]! + masked[j]!) >>> 0;
}

/**
 * Σx from Σy: subtracts every surviving site's self-mask and every pairwise mask a survivor added
 * for a dropped site (each given with the sign the *survivor* used, pairwiseSign(survivor, dropped)).
 * Returns a new vector.
 */
export function unmask(sumOfMasked: Uint32Array, survivorsSelfSeeds: readonly Uint8Array[], droppedSitesPairwiseSeeds: readonly SignedSeed[]): Uint32Array {
  const out = Uint32Array.from(sumOfMasked);
  unmaskInPlace(out, survivorsSelfSeeds, droppedSitesPairwiseSeeds);
  return out;
}

/** `unmask` without the copy, for 19M-element sums. */
export function unmaskInPlace(sum: Uint32Array, survivorsSelfSeeds: readonly Uint8Array[], droppedSitesPairwiseSeeds: readonly SignedSeed[]): void {
  for (const seed of survivorsSelfSeeds) addMaskInPlace(sum, seed, -1);
  for (const p of droppedSitesPairwiseSeeds) addMaskInPlace(sum, p.seed, p.sign === 1 ? -1 : 1);
}
