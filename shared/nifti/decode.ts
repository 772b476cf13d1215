/**
 * Voxel bytes → typed arrays: byte order fixed in place (no copy), optional slope/intercept
 * scaling into a Float32Array, and the NaN/Inf check images must pass.
 * The per-voxel loops use `a[i]!`: every index is bounded by the loop over the array's own
 * length, and a runtime check per voxel would cost speed for nothing.
 */
import { endianness } from 'node:os';
import { PatchFedError } from '../errors.ts';
import type { DatatypeName, VoxelArray } from '../volume.ts';
import { bytesPerVoxel, voxelView } from './datatypes.ts';
import { effectiveIntercept } from './header.ts';
import type { NiftiHeader, NiftiScaling } from './types.ts';

export const HOST_LITTLE_ENDIAN = endianness() === 'LE';

/** Reverse the byte order of every `width`-byte element, in place. */
export function swapBytesInPlace(bytes: Uint8Array, width: number): void {
  if (width === 1) return;
  const count = Math.floor(bytes.length / width);
  // Word-wise swaps are several times faster than byte shuffling; they need an aligned start.
  if (bytes.byteOffset % width === 0 && (width === 2 || width === 4 || width === 8)) {
    if (width === 2) {
      const w = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
      for (let i = 0; i < w.length; i++) {
        const x = w[i]!;
        w[i] = ((x & 0xff) << 8) | (x >>> 8);
      }
      return;
    }
    const w = new Uint32Array(bytes.buffer, bytes.byteOffset, (count * width) / 4);
    const swap32 = (x: number) => ((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24);
    if (width === 4) {
      for (let i = 0; i < w.length; i++) w[i] = swap32(w[i]!);
    } else {
      for (let i = 0; i < w.length; i += 2) {
        const lo = w[i]!;
        w[i] = swap32(w[i + 1]!);
        w[i + 1] = swap32(lo);
      }
    }
    return;
  }
  for (let i = 0; i + width <= bytes.length; i += width) {
    for (let a = i, b = i + width - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

/**
 * Typed array of the stored datatype over `bytes` (which this takes ownership of: a foreign byte
 * order is swapped in place). `bytes` must start at an aligned offset, as readNiftiBytes provides.
 */
export function rawVoxels(header: NiftiHeader, bytes: Uint8Array): VoxelArray {
  const width = bytesPerVoxel(header.datatype);
  if (header.littleEndian !== HOST_LITTLE_ENDIAN) swapBytesInPlace(bytes, width);
  if (bytes.byteOffset % width !== 0) bytes = bytes.slice(); // unaligned: one copy
  return voxelView(header.datatype, bytes.buffer, bytes.byteOffset, header.voxelCount);
}

/** slope·raw + inter as float32 (the header asked for scaling). */
export function scaleToFloat32(raw: VoxelArray, scaling: NiftiScaling): Float32Array {
  const out = new Float32Array(raw.length);
  const slope = scaling.slope;
  const inter = effectiveIntercept(scaling);
  for (let i = 0; i < raw.length; i++) out[i] = raw[i]! * slope + inter;
  return out;
}

/** Count of NaN/±Inf entries and the first one's index (-1 if none). */
export function findNonFinite(values: VoxelArray): { count: number; first: number } {
  let count = 0;
  let first = -1;
  if (values instanceof Float32Array || values instanceof Float64Array) {
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      // v - v is NaN exactly for NaN and ±Inf; cheaper than Number.isFinite in the hot loop.
      if (v - v !== 0) {
        if (first < 0) first = i;
        count++;
      }
    }
  }
  return { count, first };
}

/** Refuse images holding NaN/Inf, naming the file and the first offending voxel. */
export function assertFinite(file: string, values: VoxelArray, dims: number[], datatype: DatatypeName, scaled: boolean): void {
  const { count, first } = findNonFinite(values);
  if (count === 0) return;
  const coords: number[] = [];
  let rest = first;
  for (const d of dims) {
    coords.push(rest % d);
    rest = Math.floor(rest / d);
  }
  const what = scaled ? `${datatype} voxels after scl_slope/scl_inter scaling` : `${datatype} voxels`;
  throw new PatchFedError(
    'NIFTI_NON_FINITE',
    `${file}: ${count} ${what} are NaN or Inf (first at voxel (${coords.join(', ')}), value ${values[first]})`,
    { subject: file },
  );
}
