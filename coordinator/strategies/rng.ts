/**
 * The site-sampling stream of a round, reproducible from (seed, round) alone, so a restarted
 * coordinator selects the same sites without replaying earlier rounds.
 */
import { createHash } from 'node:crypto';
import { mulberry32, type Rng } from '../../shared/random.ts';

/** Independent stream per (seed, round): the state is a hash of both, so nearby seeds do not correlate. */
export function roundRng(seed: number, round: number): Rng {
  const digest = createHash('sha256').update(`patchfed-sampling:${seed}:${round}`).digest();
  return mulberry32(digest.readUInt32LE(0));
}
