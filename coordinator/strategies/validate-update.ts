/**
 * Checks a site's update before it touches the running sum. Updates come from other
 * organisations over the network, so every property the averaging relies on is verified and the
 * error names the site and the first thing wrong.
 */
import { PatchFedError } from '../../shared/errors.ts';
import { sizeOf, type NamedWeights, type WeightSpec } from '../../shared/weights.ts';

/** Default cap on a site's claimed sample count; a larger claim would let one site dominate the mean. */
export const DEFAULT_MAX_SAMPLES_PER_SITE = 1_000_000;

function reject(siteId: string, reason: string): never {
  throw new PatchFedError('invalid-update', `Update from site '${siteId}' rejected: ${reason}`, { subject: siteId });
}

export function validateNumSamples(siteId: string, numSamples: number, maxSamples: number): void {
  if (!Number.isSafeInteger(numSamples) || numSamples < 1) {
    reject(siteId, `numSamples must be a positive integer, got ${String(numSamples)}.`);
  }
  if (numSamples > maxSamples) reject(siteId, `numSamples ${numSamples} exceeds the limit of ${maxSamples}.`);
}

function sameSpec(e: WeightSpec, a: WeightSpec): string | undefined {
  if (a === null || typeof a !== 'object') return `tensor spec for '${e.name}' is missing.`;
  if (a.name !== e.name) return `tensor should be '${e.name}', got '${String(a.name)}'.`;
  if (!Array.isArray(a.shape) || a.shape.length !== e.shape.length || e.shape.some((d, k) => d !== a.shape[k])) {
    return `tensor '${e.name}' should have shape [${e.shape.join(',')}], got [${String(a.shape)}].`;
  }
  if (a.role !== e.role) return `tensor '${e.name}' should have role '${e.role}', got '${String(a.role)}'.`;
  if (a.trainable !== e.trainable) return `tensor '${e.name}' should have trainable=${e.trainable}, got ${String(a.trainable)}.`;
  return undefined;
}

/** Throws unless `update` has exactly the expected manifest and finite float32 values of the right sizes. */
export function validateWeights(siteId: string, expected: readonly WeightSpec[], update: NamedWeights): void {
  const problem = findWeightsProblem(expected, update);
  if (problem !== undefined) reject(siteId, problem);
}

/** First reason `weights` does not match `expected` (manifest, sizes, finiteness), or undefined. */
export function findWeightsProblem(expected: readonly WeightSpec[], weights: NamedWeights): string | undefined {
  if (weights === null || typeof weights !== 'object' || !Array.isArray(weights.manifest) || !Array.isArray(weights.values)) {
    return 'it is not a {manifest, values} weights object.';
  }
  if (weights.manifest.length !== expected.length) {
    return `expected ${expected.length} tensors in the manifest, got ${weights.manifest.length}.`;
  }
  if (weights.values.length !== expected.length) return `expected ${expected.length} value arrays, got ${weights.values.length}.`;
  for (let i = 0; i < expected.length; i++) {
    const spec = expected[i]!;
    if (!spec.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return `tensor '${spec.name}' has an invalid shape [${spec.shape.join(',')}].`;
    const mismatch = sameSpec(spec, weights.manifest[i]!);
    if (mismatch) return `manifest differs from the global model at tensor ${i}: ${mismatch}`;
    const values = weights.values[i];
    if (!(values instanceof Float32Array)) return `values of tensor '${spec.name}' are not a Float32Array.`;
    const n = sizeOf(spec.shape);
    if (values.length !== n) return `tensor '${spec.name}' has ${values.length} values, expected ${n}.`;
    for (let j = 0; j < n; j++) {
      if (!Number.isFinite(values[j]!)) return `tensor '${spec.name}' has a non-finite value (${values[j]}) at index ${j}.`;
    }
  }
  return undefined;
}
