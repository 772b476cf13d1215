/**
 * Reading NIfTI volumes. Peak memory for one volume: the stored voxels once (byte order fixed in
 * place), or, when the header asks for scaling, the Float32Array of scaled values alone (raw
 * values are scaled batch by batch as they stream in). Either is checked against the memory
 * budget (opts.maxMemoryBytes) before it is allocated.
 */
import type { Volume, VoxelArray } from '../volume.ts';
import { checkMemoryBudget } from './budget.ts';
import { assertFinite, rawVoxels } from './decode.ts';
import { effectiveIntercept, parseNiftiHeader } from './header.ts';
import { allocateFloat32, allocateVoxelBytes, pumpNiftiVoxels, readHeaderBytes } from './io.ts';
import type { NiftiHeader, NiftiReadOptions, NiftiVolume } from './types.ts';
import { VALUE_BATCH_VOXELS, voxelValueSink } from './voxel-stream.ts';

/**
 * Header only, validated (shape, datatype, geometry, voxel budget). For .nii.gz only the first
 * compressed blocks are inflated, so this is cheap even for large volumes. It does not prove the
 * voxel data is complete; readNifti does.
 */
export async function readNiftiHeader(path: string, opts: NiftiReadOptions = {}): Promise<NiftiHeader> {
  const { bytes } = await readHeaderBytes(path);
  const header = parseNiftiHeader(bytes, path, opts);
  checkMemoryBudget(path, header, decodedBytes(header), opts.maxMemoryBytes, 'decoding it');
  return header;
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
  let raw: Uint8Array = new Uint8Array(0);
  let scaledOut: Float32Array | null = null;
  let slope = 1;
  let inter = 0;
  // Scaled files: raw values are scaled batch by batch as they stream in, never held whole.
  const scaler = voxelValueSink({
    begin: () => {},
    values: (values: VoxelArray, first: number) => {
      const out = scaledOut;
      if (!out) return;
      // Per-voxel hot loop; k is bounded by values.length.
      for (let k = 0; k < values.length; k++) out[first + k] = values[k]! * slope + inter;
    },
  });
  const { header } = await pumpNiftiVoxels(path, opts, {
    begin: (h) => {
      const batch = h.scaling.applied ? Math.min(VALUE_BATCH_VOXELS, h.voxelCount) * 8 : 0;
      checkMemoryBudget(path, h, decodedBytes(h) + batch, opts.maxMemoryBytes, 'decoding it');
      if (h.scaling.applied) {
        slope = h.scaling.slope;
        inter = effectiveIntercept(h.scaling);
        scaledOut = allocateFloat32(path, h.voxelCount);
        scaler.begin(h);
      } else {
        raw = allocateVoxelBytes(path, h.dataBytes);
      }
    },
    write: (bytes, offset) => (scaledOut ? scaler.write(bytes, offset) : raw.set(bytes, offset)),
    end: () => (scaledOut ? scaler.end?.() : undefined),
  });
  const scaled = header.scaling.applied;
  const data: VoxelArray = scaledOut ?? rawVoxels(header, raw);
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
