/**
 * How a site stores its volumes: anatomy is generated in canonical RAS voxel order, then each
 * site's flipped axes are reversed in the data AND in the affine together, so every voxel keeps
 * its world position and its label. The tilt and origin only change the affine.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import type { Geometry, Mat4 } from '../../shared/geometry.ts';
import type { VoxelArray } from '../../shared/volume.ts';
import { rotationMatrix, type Vec3 } from './blob.ts';

/** NIFTI_XFORM_SCANNER_ANAT: coordinates as the scanner reports them. */
const XFORM_SCANNER_ANAT = 1;
/** NIFTI_UNITS_MM. */
const UNITS_MM = 2;

export interface Placement {
  flips: readonly [boolean, boolean, boolean];
  rotationAxis: Vec3;
  rotationDeg: number;
  /** World position of the volume centre, mm. */
  origin: Vec3;
}

/**
 * world = R · diag(f·s) · (i + 0.5 − N/2) + origin, for voxel index i, flip signs f, spacing s,
 * tilt R: the same anatomy-space millimetres the generator used (see grid.ts), placed in the world.
 */
export function siteGeometry(shape: [number, number, number], spacing: Vec3, placement: Placement): Geometry {
  const rot = rotationMatrix(placement.rotationAxis, (placement.rotationDeg * Math.PI) / 180);
  const col = [0, 1, 2].map((a) => (placement.flips[a] ? -1 : 1) * spacing[a]!);
  const affine: Mat4 = [
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 1],
  ];
  for (let r = 0; r < 3; r++) {
    let t = placement.origin[r]!;
    for (let a = 0; a < 3; a++) {
      affine[r]![a] = rot[r]![a]! * col[a]!;
      t += rot[r]![a]! * col[a]! * (0.5 - shape[a]! / 2);
    }
    affine[r]![3] = t;
  }
  const odd = placement.flips.filter(Boolean).length % 2 === 1;
  return {
    shape: [...shape],
    spacing: [...spacing],
    qformCode: XFORM_SCANNER_ANAT,
    sformCode: XFORM_SCANNER_ANAT,
    affine,
    affineSource: 'sform',
    qfac: odd ? -1 : 1,
    xyztUnits: UNITS_MM,
  };
}

/** Reverse the flagged spatial axes of an [X,Y,Z] or [X,Y,Z,C] volume (x fastest). New array. */
export function flipAxes<T extends VoxelArray>(data: T, dims: readonly number[], flips: readonly [boolean, boolean, boolean]): T {
  const [X, Y, Z] = dims as [number, number, number];
  const C = dims[3] ?? 1;
  const out = new (data.constructor as new (n: number) => T)(data.length);
  if (!flips[0] && !flips[1] && !flips[2]) {
    out.set(data as ArrayLike<number> & T);
    return out;
  }
  let src = 0;
  for (let c = 0; c < C; c++) {
    for (let z = 0; z < Z; z++) {
      const zz = flips[2] ? Z - 1 - z : z;
      for (let y = 0; y < Y; y++) {
        const yy = flips[1] ? Y - 1 - y : y;
        const rowBase = ((c * Z + zz) * Y + yy) * X;
        if (flips[0]) {
          for (let x = 0; x < X; x++) out[rowBase + X - 1 - x] = data[src++]!;
        } else {
          for (let x = 0; x < X; x++) out[rowBase + x] = data[src++]!;
        }
      }
    }
  }
  return out;
}
