/**
 * Where each voxel sits in "anatomy space": millimetres, centred on the volume, in the canonical
 * (RAS-increasing) voxel order. Anatomy is sized relative to `half` = the half-extent the volume
 * would have at 1 mm spacing, so a site with coarser spacing sees the same body in fewer voxels —
 * as a real scanner would — instead of a body stretched to fill the grid.
 */
export interface SamplingGrid {
  shape: [number, number, number];
  spacing: [number, number, number];
  /** Half-extent of the grid at 1 mm spacing, in mm: shape / 2. Anatomy sizes are fractions of it. */
  half: [number, number, number];
  /** Millimetre coordinate of voxel centres along each axis (0 at the volume centre). */
  mm: [Float64Array, Float64Array, Float64Array];
  voxels: number;
}

/**
 * `half` defaults to shape / 2. Context phantoms (context.ts) pass the half-extent of a grid
 * stretched in-plane, so anatomy keeps its proportions when in-plane voxels are coarser.
 */
export function samplingGrid(shape: [number, number, number], spacing: [number, number, number], half?: [number, number, number]): SamplingGrid {
  const mm = shape.map((n, a) => {
    const c = new Float64Array(n);
    for (let i = 0; i < n; i++) c[i] = (i + 0.5 - n / 2) * spacing[a]!;
    return c;
  }) as [Float64Array, Float64Array, Float64Array];
  return {
    shape,
    spacing,
    half: half ?? [shape[0] / 2, shape[1] / 2, shape[2] / 2],
    mm,
    voxels: shape[0] * shape[1] * shape[2],
  };
}

/** Voxel index range [lo, hi] (inclusive, clipped) covering mm interval [c - r, c + r] on an axis. */
export function voxelRange(grid: SamplingGrid, axis: 0 | 1 | 2, centre: number, radius: number): [number, number] {
  const n = grid.shape[axis];
  const s = grid.spacing[axis];
  // mm = (i + 0.5 - n/2) * s  =>  i = mm / s + n/2 - 0.5
  const lo = Math.max(0, Math.floor((centre - radius) / s + n / 2 - 0.5));
  const hi = Math.min(n - 1, Math.ceil((centre + radius) / s + n / 2 - 0.5));
  return [lo, hi];
}
