/**
 * Non-overlapping patch tiling (thesis §2.2.2, §3.2 "SlicedDataset"), generalised from 16-voxel
 * Z-slabs to any patch shape: patches start at 0, p, 2p, … on every axis, the last one on each
 * axis is zero-padded past the volume end, and `reconstruct` crops that padding again.
 * The thesis's scheme is `gridPatches(shape, [X, Y, 16])`.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../../shared/errors.ts';
import {
  allocFloat32,
  allocUint8,
  assertPositiveInt,
  assertShape3,
  checkCase,
  formatShape,
  voxelCount,
  type CaseVolume,
  type Origin3,
  type Shape3,
} from './case.ts';

/** Patch starts along one axis: 0, p, 2p, … while < dim (ceil(dim/p) patches). */
export function gridStarts(dim: number, p: number): number[] {
  const starts: number[] = [];
  for (let s = 0; s < dim; s += p) starts.push(s);
  return starts;
}

/** Origins of the tiling grid, x slowest and z fastest (same order as the voxels). */
export function gridPatches(shape: Shape3, patch: Shape3): Origin3[] {
  assertShape3(shape, 'volume shape');
  assertShape3(patch, 'patch shape');
  const out: Origin3[] = [];
  for (const x of gridStarts(shape[0], patch[0])) {
    for (const y of gridStarts(shape[1], patch[1])) {
      for (const z of gridStarts(shape[2], patch[2])) out.push([x, y, z]);
    }
  }
  return out;
}

/** Smallest shape ≥ `shape` with every dim a multiple of `divisor` (U-Net: 2^(depth−1)). */
export function padShapeToMultiple(shape: Shape3, divisor: number): Shape3 {
  assertPositiveInt(divisor, 'divisor');
  const up = (d: number) => Math.ceil(d / divisor) * divisor;
  return [up(shape[0]), up(shape[1]), up(shape[2])];
}

/** The part of [origin, origin+patch) that lies inside [0, dim), as patch-local [lo, hi). */
function insideRange(origin: number, p: number, dim: number): [number, number] {
  const lo = Math.max(0, -origin);
  const hi = Math.min(p, dim - origin);
  return hi > lo ? [lo, hi] : [0, 0];
}

export interface PatchArrays {
  /** (px, py, pz, C) channels-last — one NDHWC batch entry; zeros outside the volume. */
  image: Float32Array;
  /** (px, py, pz) class indices; 0 (background) outside the volume. Absent if the case has no label. */
  label?: Uint8Array;
}

/**
 * Copies one patch into preallocated arrays at the given element offsets (batch assembly).
 * The destination region is zeroed first, so reused buffers are safe.
 */
export function extractPatchInto(
  c: CaseVolume,
  origin: Origin3,
  patch: Shape3,
  image: Float32Array,
  imageOffset: number,
  label?: Uint8Array,
  labelOffset = 0,
): void {
  const [X, Y, Z] = c.shape;
  const C = c.channels;
  const [px, py, pz] = patch;
  const pv = px * py * pz;
  if (imageOffset < 0 || imageOffset + pv * C > image.length) {
    throw new PatchFedError('pipeline-shape', `patch image buffer too small: needs ${pv * C} values at offset ${imageOffset}, has ${image.length}`);
  }
  if (label !== undefined && (labelOffset < 0 || labelOffset + pv > label.length)) {
    throw new PatchFedError('pipeline-shape', `patch label buffer too small: needs ${pv} values at offset ${labelOffset}, has ${label.length}`);
  }
  image.fill(0, imageOffset, imageOffset + pv * C);
  if (label !== undefined) label.fill(0, labelOffset, labelOffset + pv);
  const [x0, x1] = insideRange(origin[0], px, X);
  const [y0, y1] = insideRange(origin[1], py, Y);
  const [z0, z1] = insideRange(origin[2], pz, Z);
  const src = c.image;
  const channelStride = X * Y * Z;
  for (let lx = x0; lx < x1; lx++) {
    const gx = origin[0] + lx;
    for (let ly = y0; ly < y1; ly++) {
      const gy = origin[1] + ly;
      const srcRow = (gx * Y + gy) * Z + origin[2];
      const dstRow = (lx * py + ly) * pz;
      for (let ch = 0; ch < C; ch++) {
        const s = ch * channelStride + srcRow;
        let d = imageOffset + dstRow * C + ch + z0 * C;
        for (let lz = z0; lz < z1; lz++, d += C) image[d] = src[s + lz]!;
      }
      if (label !== undefined && c.label !== undefined) {
        label.set(c.label.subarray(srcRow + z0, srcRow + z1), labelOffset + dstRow + z0);
      }
    }
  }
}

/** One patch of a case: image channels-last for the model, label alongside; zero padding outside. */
export function extractPatch(c: CaseVolume, origin: Origin3, patch: Shape3): PatchArrays {
  checkCase(c);
  assertShape3(patch, 'patch shape', c.id);
  const pv = voxelCount(patch);
  const image = allocFloat32(pv * c.channels, `patch ${formatShape(patch)} image`, c.id);
  const label = c.label !== undefined ? allocUint8(pv, `patch ${formatShape(patch)} label`, c.id) : undefined;
  extractPatchInto(c, origin, patch, image, 0, label, 0);
  return label !== undefined ? { image, label } : { image };
}

/** True if the patch contains at least one non-background voxel of `label` (X, Y, Z). */
export function patchHasForeground(label: Uint8Array, shape: Shape3, origin: Origin3, patch: Shape3): boolean {
  const [, Y, Z] = shape;
  const [x0, x1] = insideRange(origin[0], patch[0], shape[0]);
  const [y0, y1] = insideRange(origin[1], patch[1], shape[1]);
  const [z0, z1] = insideRange(origin[2], patch[2], shape[2]);
  for (let lx = x0; lx < x1; lx++) {
    for (let ly = y0; ly < y1; ly++) {
      const row = ((origin[0] + lx) * Y + origin[1] + ly) * Z + origin[2];
      for (let lz = z0; lz < z1; lz++) if (label[row + lz] !== 0) return true;
    }
  }
  return false;
}

/** A model output for one patch: (px, py, pz, channels) channels-last, e.g. softmax probabilities. */
export interface PatchOutput {
  origin: Origin3;
  data: ArrayLike<number>;
}

function assemble<T extends Float32Array | Uint8Array>(
  out: T,
  pieces: readonly PatchOutput[],
  shape: Shape3,
  patch: Shape3,
  channels: number,
): T {
  const [X, Y, Z] = shape;
  const [px, py, pz] = patch;
  const pv = px * py * pz;
  const covered = allocUint8(X * Y * Z, 'reconstruction coverage mask');
  for (const [i, piece] of pieces.entries()) {
    if (piece.data.length !== pv * channels) {
      throw new PatchFedError(
        'pipeline-shape',
        `patch output ${i} (origin ${piece.origin.join(',')}) has ${piece.data.length} values; patch ${formatShape(patch)} with ${channels} channel(s) needs ${pv * channels}`,
      );
    }
    const o = piece.origin;
    const [x0, x1] = insideRange(o[0], px, X);
    const [y0, y1] = insideRange(o[1], py, Y);
    const [z0, z1] = insideRange(o[2], pz, Z);
    for (let lx = x0; lx < x1; lx++) {
      for (let ly = y0; ly < y1; ly++) {
        const gRow = ((o[0] + lx) * Y + o[1] + ly) * Z + o[2];
        const lRow = (lx * py + ly) * pz;
        for (let lz = z0; lz < z1; lz++) {
          const g = gRow + lz;
          covered[g] = 1;
          const s = (lRow + lz) * channels;
          const d = g * channels;
          for (let ch = 0; ch < channels; ch++) out[d + ch] = piece.data[s + ch]!;
        }
      }
    }
  }
  const gap = covered.indexOf(0);
  if (gap >= 0) {
    const x = Math.floor(gap / (Y * Z));
    const y = Math.floor(gap / Z) % Y;
    throw new PatchFedError('pipeline-coverage', `reconstruction: voxel (${x}, ${y}, ${gap % Z}) of ${formatShape(shape)} is covered by no patch output`);
  }
  return out;
}

/**
 * Assembles per-patch outputs (e.g. probabilities, `channels` = K) into the whole volume
 * (X, Y, Z, channels) channels-last, dropping the padding. Where patches overlap the later one wins;
 * throws if a voxel is covered by none.
 */
export function reconstruct(pieces: readonly PatchOutput[], shape: Shape3, patch: Shape3, channels: number): Float32Array {
  assertShape3(shape, 'volume shape');
  assertShape3(patch, 'patch shape');
  assertPositiveInt(channels, 'channel count');
  return assemble(allocFloat32(voxelCount(shape) * channels, `reconstructed ${formatShape(shape)} output`), pieces, shape, patch, channels);
}

/** `reconstruct` for per-patch label maps (px, py, pz) → (X, Y, Z) uint8. */
export function reconstructLabels(pieces: readonly PatchOutput[], shape: Shape3, patch: Shape3): Uint8Array {
  assertShape3(shape, 'volume shape');
  assertShape3(patch, 'patch shape');
  return assemble(allocUint8(voxelCount(shape), `reconstructed ${formatShape(shape)} labels`), pieces, shape, patch, 1);
}

/** Class index of the largest value per voxel of a channels-last array (ties → lowest class). */
export function argmaxChannelsLast(probs: ArrayLike<number>, numClasses: number): Uint8Array {
  assertPositiveInt(numClasses, 'number of classes');
  if (numClasses > 256) throw new PatchFedError('pipeline-classes', `number of classes must be at most 256 (uint8 labels); got ${numClasses}`);
  if (probs.length % numClasses !== 0) {
    throw new PatchFedError('pipeline-shape', `argmax: ${probs.length} values is not a multiple of ${numClasses} classes`);
  }
  const n = probs.length / numClasses;
  const out = allocUint8(n, 'argmax labels');
  for (let v = 0, i = 0; v < n; v++, i += numClasses) {
    let best = 0;
    let bestVal = probs[i]!;
    for (let k = 1; k < numClasses; k++) {
      if (probs[i + k]! > bestVal) {
        bestVal = probs[i + k]!;
        best = k;
      }
    }
    out[v] = best;
  }
  return out;
}
