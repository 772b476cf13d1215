/**
 * The project's one seeded PRNG (mulberry32) and seed derivation. Weight initialisation, patch
 * sampling and site selection all draw from it, so a run is reproducible from its seeds alone, on
 * any machine and backend (tf.randomNormal's seed depends on the backend).
 */

/** Uniform number in [0, 1). */
export type Rng = () => number;

/** mulberry32: 32-bit state, fast, good statistical quality for sampling and initialisation. */
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

/** Uniform, normal and arrays of normals from one mulberry32 stream. */
export class SeededRandom {
  private readonly uniform: Rng;
  private spare: number | null = null;

  constructor(seed: number) {
    // Mix the seed so nearby seeds (0, 1, 2...) give unrelated streams.
    this.uniform = mulberry32(hash32(Math.trunc(seed) >>> 0) || 0x9e3779b9);
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.uniform();
  }

  /** Standard normal (Box–Muller, caching the second value). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** `n` normal values with the given standard deviation. */
  normalArray(n: number, std = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal() * std;
    return out;
  }
}

/** Derives an independent seed for a named stream, e.g. one per weight tensor. */
export function deriveSeed(seed: number, label: string): number {
  let h = hash32(Math.trunc(seed) >>> 0);
  for (let i = 0; i < label.length; i++) h = hash32((h ^ label.charCodeAt(i)) >>> 0);
  return h;
}

function hash32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}
