/**
 * Voxel values from a stream of voxel bytes (io.ts pumpNiftiVoxels): batches of typed arrays in
 * the host byte order, in file order, with values that straddle two chunks put back together.
 * Memory: one batch, whatever the size of the file — what readNifti's scaling and inspect's
 * statistics use instead of holding the raw voxels.
 */
import type { VoxelArray } from '../volume.ts';
import { bytesPerVoxel, voxelView } from './datatypes.ts';
import { HOST_LITTLE_ENDIAN, swapBytesInPlace } from './decode.ts';
import type { VoxelSink } from './io.ts';
import type { NiftiHeader } from './types.ts';

/** Voxels per batch: 1 MiB of float32. */
export const VALUE_BATCH_VOXELS = 1 << 18;

export interface ValueSinkHandlers {
  /** The header, before any value (may throw to refuse the file before anything is allocated). */
  begin(header: NiftiHeader): void;
  /** `values[k]` is voxel `first + k` (all channels, file order). The array is reused after the call. */
  values(values: VoxelArray, first: number): void;
}

export function voxelValueSink(handlers: ValueSinkHandlers): VoxelSink {
  let header: NiftiHeader | null = null;
  let width = 1;
  let scratch = new Uint8Array(0);
  let fill = 0;
  let next = 0;
  const flush = () => {
    if (!header || fill === 0) return;
    const count = Math.floor(fill / width);
    const bytes = scratch.subarray(0, count * width);
    if (header.littleEndian !== HOST_LITTLE_ENDIAN) swapBytesInPlace(bytes, width);
    handlers.values(voxelView(header.datatype, scratch.buffer, 0, count), next);
    next += count;
    fill = 0;
  };
  return {
    begin: (h) => {
      handlers.begin(h);
      header = h;
      width = bytesPerVoxel(h.datatype);
      scratch = new Uint8Array(Math.min(VALUE_BATCH_VOXELS, Math.max(1, h.voxelCount)) * width);
    },
    write: (bytes) => {
      let at = 0;
      while (at < bytes.length) {
        const n = Math.min(scratch.length - fill, bytes.length - at);
        scratch.set(bytes.subarray(at, at + n), fill);
        fill += n;
        at += n;
        if (fill === scratch.length) flush();
      }
    },
    end: flush,
  };
}
