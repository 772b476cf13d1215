/**
 * Surface voxels and surface-to-surface distances, as MONAI computes them for the Hausdorff
 * distance and the normalised surface Dice (monai/metrics/utils.py, get_mask_edges and
 * get_surface_distance, with use_subvoxels=False):
 * - a surface ("edge") voxel is a voxel of the mask with at least one of its 6 face neighbours
 *   outside the mask — MONAI's `binary_erosion(mask) ^ mask` with scipy's default structuring
 *   element (6-connectivity, generate_binary_structure(3, 1)) and border_value 0, so voxels on the
 *   volume's border are surface voxels too;
 * - the distance of a surface voxel of A to B is the Euclidean distance (mm, with the voxel
 *   spacing) to the nearest surface voxel of B — the exact EDT of B's surface complement sampled
 *   at A's surface, like `distance_transform_edt(~edges_gt, sampling=spacing)[edges_pred]`.
 * Volumes are row-major over `shape` (last axis fastest), `spacing[a]` the voxel size along axis a.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { squaredDistanceToFeatures, type Grid3 } from './distance-transform.ts';

/** 1 where the mask voxel has a 6-neighbour outside the mask (or outside the volume). */
export function surfaceVoxels(mask: Uint8Array, shape: Grid3): Uint8Array {
  const [n0, n1, n2] = shape;
  const s0 = n1 * n2;
  const s1 = n2;
  const out = new Uint8Array(mask.length);
  for (let i = 0; i < n0; i++) {
    for (let j = 0; j < n1; j++) {
      const row = i * s0 + j * s1;
      for (let k = 0; k < n2; k++) {
        const p = row + k;
        if (mask[p] === 0) continue;
        const interior =
          i > 0 && i < n0 - 1 && j > 0 && j < n1 - 1 && k > 0 && k < n2 - 1 &&
          mask[p - s0] !== 0 && mask[p + s0] !== 0 && mask[p - s1] !== 0 && mask[p + s1] !== 0 && mask[p - 1] !== 0 && mask[p + 1] !== 0;
        if (!interior) out[p] = 1;
      }
    }
  }
  return out;
}

/**
 * Distance (mm) from every surface voxel of `from` to the nearest surface voxel of `to`, in
 * voxel order. MONAI's convention for an empty side: when `to` has no surface voxel every
 * distance is +Infinity; when `from` has none the list is empty.
 */
export function directedSurfaceDistances(from: Uint8Array, to: Uint8Array, shape: Grid3, spacing: Grid3): Float64Array {
  let count = 0;
  for (let i = 0; i < from.length; i++) if (from[i] !== 0) count++;
  const out = new Float64Array(count);
  if (count === 0) return out;
  const squared = squaredDistanceToFeatures(to, shape, spacing);
  for (let i = 0, n = 0; i < from.length; i++) if (from[i] !== 0) out[n++] = Math.sqrt(squared[i]!);
  return out;
}

/**
 * The q-th percentile (0..100) with linear interpolation between the two nearest ranks — the
 * default of numpy.percentile and torch.quantile (what MONAI uses). NaN for an empty list. When
 * every value is +Infinity the answer is +Infinity: the interpolation formula would give
 * ∞ + 0·(∞ − ∞) = NaN there, an artefact (MONAI issue #9095) we do not reproduce.
 */
export function percentile(values: Float64Array, q: number): number {
  if (!(q >= 0 && q <= 100)) throw new RangeError(`percentile must be in [0, 100], got ${q}`);
  const n = values.length;
  if (n === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const h = (q / 100) * (n - 1); // numpy's order of operations, so ranks agree to the last bit
  const lo = Math.floor(h);
  const t = h - lo;
  const a = sorted[lo]!;
  if (t === 0) return a;
  const b = sorted[lo + 1]!;
  return a === b ? a : a + t * (b - a); // a === b also covers the all-infinite case
}
