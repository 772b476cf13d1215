/**
 * The model's weights as the federation sees them: a flat, ordered list of named float32
 * tensors plus a manifest. Everything that moves between sites and the coordinator, is averaged
 * or is checkpointed uses this shape; models convert to and from it.
 */

/** What a tensor is, so strategies can treat groups differently (FedBN keeps `norm-*` local). */
export type WeightRole =
  | 'conv-kernel'
  | 'conv-bias'
  | 'norm-gamma'
  | 'norm-beta'
  | 'norm-running-mean'
  | 'norm-running-var';

export interface WeightSpec {
  /** Unique, stable name, e.g. "enc0/conv1/kernel". */
  name: string;
  shape: number[];
  /** false for running statistics (updated by forward passes, not by the optimiser). */
  trainable: boolean;
  role: WeightRole;
}

export interface NamedWeights {
  manifest: WeightSpec[];
  /** values[i] belongs to manifest[i]; length = product of its shape. */
  values: Float32Array[];
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function totalParameters(manifest: readonly WeightSpec[]): number {
  return manifest.reduce((n, s) => n + sizeOf(s.shape), 0);
}

export function isNormalisationRole(role: WeightRole): boolean {
  return role.startsWith('norm-');
}
