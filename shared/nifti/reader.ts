/**
 * Reading NIfTI volumes. Peak memory for one volume: the stored voxels once (byte order fixed in
 * place) plus, when the header asks for scaling, the Float32Array of scaled values.
 */
import type { Volume } from '../volume.ts';
import { assertFinite, rawVoxels, scaleToFloat32 } from './decode.ts';
import { parseNiftiHeader } from './header.ts';
import { readHeaderBytes, readNiftiBytes } from './io.ts';
import type { NiftiHeader, NiftiReadOptions, NiftiVolume } from './types.ts';

/**
 * Header only, validated (shape, datatype, geometry, voxel budget). For .nii.gz only the first
 * compressed blocks are inflated, so this is cheap even for large volumes. It does not prove the
 * voxel data is complete; readNifti does.
 */
export async function readNiftiHeader(path: string, opts: NiftiReadOptions = {}): Promise<NiftiHeader> {
  const { bytes } = await readHeaderBytes(path);
  return parseNiftiHeader(bytes, path, opts);
}

/** Bytes readNifti's `data` will occupy for this header: float32 when scaling applies, else the stored type. */
export function decodedBytes(header: NiftiHeader): number {
  return header.scaling.applied ? header.voxelCount * 4 : header.dataBytes;
}

/**
 * Decode a whole .nii / .nii.gz (NIfTI-1 or -2, either byte order). `data` keeps the stored
 * datatype when scaling is the identity, else it is a Float32Array of scaled values (see
 * NiftiVolume). Float data (stored or scaled) containing NaN/Inf is refused.
 */
export async function readNifti(path: string, opts: NiftiReadOptions = {}): Promise<NiftiVolume> {
  const { header, data: bytes } = await readNiftiBytes(path, opts);
  const raw = rawVoxels(header, bytes);
  const scaled = header.scaling.applied;
  const data = scaled ? scaleToFloat32(raw, header.scaling) : raw;
  assertFinite(path, data, header.dims, header.datatype, scaled);
  return {
    data,
    dims: [...header.dims],
    datatype: scaled ? 'float32' : header.datatype,
    geometry: header.geometry,
    sourceDatatype: header.datatype,
    scaling: header.scaling,
    header,
  };
}

/** Voxels as float32: the volume's own array when it already is one (no copy), else a converted copy. */
export function toFloat32(volume: Pick<Volume, 'data'>): Float32Array {
  return volume.data instanceof Float32Array ? volume.data : new Float32Array(volume.data);
}
