/**
 * Acceptance check for weights that came from a peer (an update before aggregation, a
 * checkpoint before loading): same tensors as expected, every value finite, and optionally
 * an L2-norm bound, the usual guard against a diverged or malicious update blowing up the average.
 */
import { PatchFedError } from '../errors.ts';
import { sizeOf, type NamedWeights, type WeightSpec } from '../weights.ts';
import { firstNonFinite } from './weights-codec.ts';
import { checkManifestMatches } from './manifest.ts';

export interface ValidateWeightsOptions {
  /** Refuse if the L2 norm of the update exceeds this. */
  normBound?: number;
  /**
   * If given, the norm is of (weights - reference), i.e. weights are full weights and the
   * update is their difference to the round's global model. Otherwise weights ARE the update.
   */
  reference?: NamedWeights;
  /** Names the weights in errors, e.g. "update from site 'b' (round 4)". */
  source?: string;
}

export interface WeightsCheck {
  /** L2 norm of the update over all tensors (computed in float64). */
  l2Norm: number;
}

export function validateAgainstManifest(weights: NamedWeights, expectedManifest: readonly WeightSpec[], options: ValidateWeightsOptions = {}): WeightsCheck {
  const source = options.source ?? 'weights';
  checkManifestMatches(expectedManifest, weights.manifest, source);
  if (weights.values.length !== expectedManifest.length) {
    throw new PatchFedError('weights-inconsistent', `${source}: ${expectedManifest.length} tensors in the manifest but ${weights.values.length} value arrays.`, { subject: source });
  }
  const ref = options.reference;
  if (ref) checkManifestMatches(expectedManifest, ref.manifest, `${source} (reference)`);
  let sumSquares = 0;
  for (let t = 0; t < expectedManifest.length; t++) {
    const spec = expectedManifest[t]!;
    const v = weights.values[t]!;
    if (!(v instanceof Float32Array) || v.length !== sizeOf(spec.shape)) {
      throw new PatchFedError('weights-inconsistent', `${source}: tensor '${spec.name}' should hold ${sizeOf(spec.shape)} values for shape [${spec.shape}], got ${v?.length ?? 'none'}.`, { subject: spec.name });
    }
    const bad = firstNonFinite(v);
    if (bad >= 0) throw new PatchFedError('weights-not-finite', `${source}: tensor '${spec.name}' has a non-finite value (${v[bad]}) at element ${bad}.`, { subject: spec.name });
    const r = ref?.values[t];
    if (ref && (!(r instanceof Float32Array) || r.length !== v.length)) {
      throw new PatchFedError('weights-inconsistent', `${source} (reference): tensor '${spec.name}' has the wrong number of values.`, { subject: spec.name });
    }
    for (let i = 0; i < v.length; i++) {
      const d = r ? v[i]! - r[i]! : v[i]!;
      sumSquares += d * d;
    }
  }
  const l2Norm = Math.sqrt(sumSquares);
  if (options.normBound !== undefined) {
    if (!(options.normBound > 0)) throw new Error(`validateAgainstManifest: normBound must be positive, got ${options.normBound}`);
    if (!(l2Norm <= options.normBound)) {
      throw new PatchFedError('update-norm-exceeded', `${source}: update L2 norm ${l2Norm.toPrecision(6)} exceeds the bound ${options.normBound}.`, { subject: source });
    }
  }
  return { l2Norm };
}
