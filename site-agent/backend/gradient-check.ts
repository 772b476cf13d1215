/**
 * Finite-difference check of analytic gradients, in float32 on whatever backend is active.
 *
 * Checking every coordinate is too slow for conv nets, so we check directional derivatives:
 * for a direction v, the analytic ⟨∇f, v⟩ must match (f(x+εv) − f(x−εv)) / 2ε. Two directions
 * per input: the normalised analytic gradient itself (a wrong gradient g' almost never satisfies
 * ⟨g, g'⟩ = |g'|², so this catches transposed/flipped/misplaced kernels with error ~1), and a
 * seeded random direction (catches errors orthogonal to g'). v has unit norm so ε is the step
 * length in input space.
 *
 * The step is tried at several sizes and the best agreement counts: in float32 a small ε drowns
 * in rounding noise, while a large ε lets ReLU and max-pool kinks fall inside [x−εv, x+εv].
 * A correct gradient agrees at some step size; a wrong one disagrees (~1) at all of them.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import * as tf from '@tensorflow/tfjs-core';
import './gradients/index.ts';
import { SeededRandom } from '../../shared/random.ts';

export interface DirectionalCheck {
  /** Which input, e.g. "x" or "filter". */
  input: string;
  direction: 'gradient' | 'random';
  analytic: number;
  numeric: number;
  /** |analytic − numeric| / max(|analytic|, |numeric|, floor). */
  relError: number;
  /** The step size that gave `numeric`. */
  epsilon: number;
}

export interface GradientCheckOptions {
  /** Step lengths along the unit direction to try (default 1e-2, 1e-3, 1e-4). */
  epsilons?: readonly number[];
  seed?: number;
  /**
   * Denominator floor, so a derivative that is ~0 on both sides does not blow up the ratio
   * (default 1e-3 · |∇f| for that input).
   */
  floor?: number;
}

/**
 * Checks the gradient of a scalar function with respect to each named input.
 * `f` must not keep tensors; everything it allocates is disposed here.
 */
export function checkDirectionalDerivatives(
  f: (inputs: tf.Tensor[]) => tf.Scalar,
  inputs: Record<string, tf.Tensor>,
  options: GradientCheckOptions = {},
): DirectionalCheck[] {
  const epsilons = options.epsilons ?? [1e-2, 1e-3, 1e-4];
  const rng = new SeededRandom(options.seed ?? 1234);
  const names = Object.keys(inputs);
  const values = names.map((n) => inputs[n]!);
  const results: DirectionalCheck[] = [];
  const grads = tf.tidy(() => tf.grads((...xs: tf.Tensor[]) => f(xs))(values));
  try {
    names.forEach((name, i) => {
      const g = grads[i]!;
      const gData = g.dataSync();
      const gNorm = Math.sqrt(dot(gData, gData));
      const floor = options.floor ?? Math.max(1e-3 * gNorm, 1e-12);
      const directions: Array<[DirectionalCheck['direction'], Float32Array]> = [];
      if (gNorm > 0) directions.push(['gradient', scale(gData, 1 / gNorm)]);
      const r = rng.normalArray(gData.length);
      directions.push(['random', scale(r, 1 / Math.sqrt(dot(r, r)))]);
      for (const [direction, v] of directions) {
        const analytic = dot(gData, v);
        let best: DirectionalCheck | null = null;
        for (const epsilon of epsilons) {
          const numeric = tf.tidy(() => {
            const dv = tf.tensor(v, values[i]!.shape, 'float32');
            const at = (sign: number): number => {
              const shifted = values.map((x, k) => (k === i ? tf.add(x, tf.mul(dv, sign * epsilon)) : x));
              return f(shifted).dataSync()[0]!;
            };
            return (at(1) - at(-1)) / (2 * epsilon);
          });
          const relError = Math.abs(analytic - numeric) / Math.max(Math.abs(analytic), Math.abs(numeric), floor);
          // NaN compares false: a NaN estimate never replaces a finite one.
          if (best === null || relError < best.relError || Number.isNaN(best.relError)) {
            best = { input: name, direction, analytic, numeric, relError, epsilon };
          }
        }
        results.push(best!);
      }
    });
  } finally {
    tf.dispose(grads);
  }
  return results;
}

export function maxRelError(checks: readonly DirectionalCheck[]): number {
  return checks.reduce((m, c) => Math.max(m, Number.isFinite(c.relError) ? c.relError : Infinity), 0);
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

function scale(a: ArrayLike<number>, k: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! * k;
  return out;
}
