import type { AffineSource, Geometry, Mat4 } from '../geometry.ts';
import type { DatatypeName, Volume, VoxelArray } from '../volume.ts';

/** Absolute ceiling on voxels per file (whatever the budget); a header promising more is refused before any allocation. */
export const DEFAULT_MAX_VOXELS = 1.5e9;
/** Memory a NIfTI read may use when no budget is given: 2 GiB. */
export const DEFAULT_MEMORY_BUDGET_BYTES = 2 * 1024 ** 3;

export interface NiftiReadOptions {
  /** Refuse files whose header promises more voxels than this (all channels). Default 1.5e9. */
  maxVoxels?: number;
  /**
   * Memory budget of the read in bytes (default DEFAULT_MEMORY_BUDGET_BYTES): a file whose
   * decoding needs more (decodedBytes(header)) is refused with NIFTI_TOO_LARGE before allocating.
   */
  maxMemoryBytes?: number;
}

/** Intensity scaling as the header states it; `applied` says whether readNifti scales the voxels. */
export interface NiftiScaling {
  slope: number;
  inter: number;
  /** True when slope is finite and non-zero and (slope, inter) is not the identity (1, 0). */
  applied: boolean;
}

/**
 * A parsed and validated NIfTI-1 or NIfTI-2 header. Raw fields keep their header names;
 * `dims`, `geometry` and `scaling` are the interpretations the reader uses.
 */
export interface NiftiHeader {
  version: 1 | 2;
  littleEndian: boolean;
  /** dim[0..7] as stored (entries beyond dim[0] may hold anything). */
  dim: number[];
  /** Volume shape: [X, Y, Z] or [X, Y, Z, C] (4th dimension = channel); missing spatial dims are 1. */
  dims: number[];
  datatypeCode: number;
  datatype: DatatypeName;
  bitpix: number;
  /** pixdim[0..7] as stored (pixdim[0] is qfac). */
  pixdim: number[];
  /** Byte offset of the voxel data in the (decompressed) file. */
  voxOffset: number;
  scaling: NiftiScaling;
  xyztUnits: number;
  qformCode: number;
  sformCode: number;
  quatern: [number, number, number];
  qoffset: [number, number, number];
  /** srow_x, srow_y, srow_z. */
  srow: [number[], number[], number[]];
  description: string;
  intentCode: number;
  /** Product of `dims`. */
  voxelCount: number;
  /** Bytes of voxel data the header promises (voxelCount × bytes per voxel). */
  dataBytes: number;
  geometry: Geometry;
}

/**
 * What readNifti returns. `data` is the file's own datatype when scaling is the identity
 * (slope 0/1 with inter 0, or slope 0/non-finite), so labels stay compact integers; when the
 * header asks for scaling, `data` is a Float32Array of slope·raw + inter and `datatype` is
 * 'float32' while `sourceDatatype` keeps the stored type.
 */
export interface NiftiVolume extends Volume {
  sourceDatatype: DatatypeName;
  scaling: NiftiScaling;
  header: NiftiHeader;
}

/** The voxels to write; `data` must be the typed array matching `datatype`. */
export interface NiftiWriteImage {
  data: VoxelArray;
  /** [X, Y, Z] or [X, Y, Z, C]. */
  dims: number[];
  datatype: DatatypeName;
}

export interface NiftiWriteOptions {
  endianness?: 'little' | 'big';
  /** Stored in the header's 80-byte descrip field (truncated to 79 ASCII bytes). */
  description?: string;
  /** zlib level 0–9 for .nii.gz (default 6, gzip's own default); lower is faster for scratch files. */
  gzipLevel?: number;
}

export interface NiftiValueStats {
  /** Over finite scaled values; null when there are none. */
  min: number | null;
  max: number | null;
  mean: number | null;
  /** Voxels that are NaN or ±Inf after scaling. */
  nonFiniteVoxels: number;
}

/**
 * Facts a user checks before training (like fslhd / nib-ls). Plain JSON; keys are stable:
 * - file: path as given; fileSizeBytes: size on disk; compressed: gzip detected from content.
 * - niftiVersion: 1 | 2; endianness: 'little' | 'big'.
 * - dims: [X, Y, Z] or [X, Y, Z, C]; voxelCount; dataBytes (decompressed voxel bytes).
 * - datatype: name (uint8, int16, ...); datatypeCode: NIfTI code; bitpix: as stored.
 * - pixdim: pixdim[0..7] as stored; spacing: voxel size used for the geometry (mm).
 * - xyztUnits: raw code; spatialUnits: 'unknown' | 'meter' | 'mm' | 'micron'.
 * - qformCode, sformCode: raw codes; affine: voxel→world matrix in use; affineSource: 'sform' | 'qform' | 'pixdim'.
 * - scaling: { slope, inter, applied } as stored and whether it changes values.
 * - stats: { min, max, mean, nonFiniteVoxels } of the scaled data over all channels.
 * - channelStats: same per channel (index = 4th dim), only for 4D files.
 * - voxOffset: byte offset of the voxels; description: header descrip text.
 */
export interface NiftiFileReport {
  file: string;
  fileSizeBytes: number;
  compressed: boolean;
  niftiVersion: 1 | 2;
  endianness: 'little' | 'big';
  dims: number[];
  voxelCount: number;
  dataBytes: number;
  datatype: DatatypeName;
  datatypeCode: number;
  bitpix: number;
  pixdim: number[];
  spacing: [number, number, number];
  xyztUnits: number;
  spatialUnits: 'unknown' | 'meter' | 'mm' | 'micron';
  qformCode: number;
  sformCode: number;
  affine: Mat4;
  affineSource: AffineSource;
  scaling: NiftiScaling;
  stats: NiftiValueStats;
  channelStats?: NiftiValueStats[];
  voxOffset: number;
  description: string;
}
