/**
 * Spatial geometry of a volume, as the NIfTI header states it.
 * Kept with every volume so that what we write back lines up with what we read.
 */
export type Mat4 = [
  [number, number, number, number],
  [number, number, number, number],
  [number, number, number, number],
  [number, number, number, number],
];

export type AffineSource = 'sform' | 'qform' | 'pixdim';

export interface Geometry {
  /** Spatial size (X, Y, Z). */
  shape: [number, number, number];
  /** Voxel spacing in mm (pixdim[1..3]). */
  spacing: [number, number, number];
  qformCode: number;
  sformCode: number;
  /** Voxel index (i, j, k, 1) -> world (x, y, z, 1), following nibabel's rule. */
  affine: Mat4;
  affineSource: AffineSource;
  /** pixdim[0] as stored (qfac, ±1). */
  qfac: number;
  /** Units code (xyzt_units) of the source. */
  xyztUnits: number;
}

export function identityAffine(spacing: [number, number, number] = [1, 1, 1]): Mat4 {
  return [
    [spacing[0], 0, 0, 0],
    [0, spacing[1], 0, 0],
    [0, 0, spacing[2], 0],
    [0, 0, 0, 1],
  ];
}
