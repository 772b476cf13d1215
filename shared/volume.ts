import type { Geometry } from './geometry.ts';

/** NIfTI datatype codes we read and write. */
export const NiftiDatatype = {
  uint8: 2,
  int16: 4,
  int32: 8,
  float32: 16,
  float64: 64,
  int8: 256,
  uint16: 512,
  uint32: 768,
} as const;
export type DatatypeName = keyof typeof NiftiDatatype;

export type VoxelArray =
  | Uint8Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array;

/**
 * A decoded image volume. Voxels are in NIfTI (Fortran) order: x fastest, then y, z, channel:
 * index = x + X*(y + Y*(z + Z*c)). `dims` is [X, Y, Z] or [X, Y, Z, C].
 */
export interface Volume {
  data: VoxelArray;
  dims: number[];
  datatype: DatatypeName;
  geometry: Geometry;
}
