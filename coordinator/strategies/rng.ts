/**
 * Small deterministic PRNG so site sampling is reproducible from (seed, round) alone, without
 * replaying earlier rounds after a coordinator restart.
 */
import { createHash } from 'node:crypto';
import type { Rng } from './types.ts';

/** mulberry32: 32-bit state, good enough for shuffling a few hundred site ids. */
export function mulberry32(seed: number): Rng {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Independent stream per (seed, round): the state is a hash of both, so nearby seeds do not correlate. */
export function roundRng(seed: number, round: number): Rng {
  const digest = createHash('sha256').update(`patchfed-sampling:${seed}:${round}`).digest();
  return mulberry32(digest.readUInt32LE(0));
}
