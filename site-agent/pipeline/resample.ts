/**
 * Resampling for the cascade (thesis §2.2.3, §3.2 "DownsampledDataset"): trilinear for images and
 * probabilities, nearest for labels, between a full shape and an explicit target shape.
 *
 * Geometry is voxel-centre aligned (PyTorch `F.interpolate(size=target, align_corners=False)`):
 * output voxel j along an axis samples input coordinate (j + 0.5)·in/out − 0.5.
 * - trilinear: that coordinate clamped to [0, in−1], linear between its two neighbours, per axis
 *   (separable, so exactly trilinear); like PyTorch, no anti-aliasing filter when shrinking.
 * - nearest: input voxel floor((j + 0.5)·in/out) — PyTorch's 'nearest-exact'. PyTorch's legacy
 *   'nearest' (floor(j·in/out)) shifts labels by up to half a voxel against the trilinear image;
 *   we keep labels and images on the same grid. Computed in integers, so it is exact.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../../shared/errors.ts';
import { allocFloat32, allocUint8, assertPositiveInt, assertShape3, checkCase, formatShape, voxelCount, AXES3, type CaseVolume, type Shape3 } from './case.ts';

export interface DownsampleShapeOptions {
  /**
   * Round each target dim UP to a multiple of this (the U-Net needs dims divisible by
   * 2^(depth−1)). We resample straight to that shape — the whole field of view maps onto it with a
   * per-axis scale of target/dim, slightly above `factor` — rather than padding, so nothing needs
   * cropping and upsampling back is the exact inverse mapping. Default 1.
   */
  divisor?: number;
}

/** Target shape for a downsampling factor: max(1, round(dim·factor)), rounded up to `divisor`. */
export function downsampledShape(shape: Shape3, factor: number, opts: DownsampleShapeOptions = {}): Shape3 {
  assertShape3(shape, 'volume shape');
  if (!(factor > 0 && Number.isFinite(factor))) throw new PatchFedError('pipeline-resample', `downsampling factor must be a positive number; got ${factor}`);
  const divisor = opts.divisor ?? 1;
  assertPositiveInt(divisor, 'divisor');
  const t = (d: number) => Math.ceil(Math.max(1, Math.round(d * factor)) / divisor) * divisor;
  return [t(shape[0]), t(shape[1]), t(shape[2])];
}

/** Per output index along one axis: the two input neighbours and the weight of the second. */
export interface LinearAxisTable {
  i0: Int32Array;
  i1: Int32Array;
  w1: Float64Array;
}

export function linearAxisTable(inLen: number, outLen: number): LinearAxisTable {
  const i0 = new Int32Array(outLen);
  const i1 = new Int32Array(outLen);
  const w1 = new Float64Array(outLen);
  const scale = inLen / outLen;
  for (let j = 0; j < outLen; j++) {
    const src = Math.min(Math.max((j + 0.5) * scale - 0.5, 0), inLen - 1);
    const lo = Math.floor(src);
    i0[j] = lo;
    i1[j] = Math.min(lo + 1, inLen - 1);
    w1[j] = src - lo;
  }
  return { i0, i1, w1 };
}

/** Nearest input index per output index: floor((j + 0.5)·in/out), in exact integer arithmetic. */
export function nearestAxisTable(inLen: number, outLen: number): Int32Array {
  const t = new Int32Array(outLen);
  for (let j = 0; j < outLen; j++) t[j] = Math.min(Math.floor(((2 * j + 1) * inLen) / (2 * outLen)), inLen - 1);
  return t;
}

function axisLength(dims: readonly number[], axis: number, what: string): number {
  const n = dims[axis];
  if (n === undefined) throw new PatchFedError('pipeline-shape', `${what}: axis ${axis} is outside the ${dims.length}-D array`);
  return n;
}

/**
 * Resamples axis `axis` of a 4-D row-major array `dims` to `outLen`. outer/inner are the products of
 * the dims before/after the axis, so channels-first and channels-last share the code.
 */
function linearAlongAxis(src: Float32Array, dims: number[], axis: number, outLen: number, what: string): Float32Array {
  const inLen = axisLength(dims, axis, what);
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const dst = allocFloat32(outer * outLen * inner, what);
  const { i0, i1, w1 } = linearAxisTable(inLen, outLen);
  if (inner === 1) {
    // Innermost axis (z of a channels-first image): no inner loop.
    for (let o = 0; o < outer; o++) {
      const sBase = o * inLen;
      const dBase = o * outLen;
      for (let j = 0; j < outLen; j++) {
        const v0 = src[sBase + i0[j]!]!;
        dst[dBase + j] = v0 + w1[j]! * (src[sBase + i1[j]!]! - v0);
      }
    }
    dims[axis] = outLen;
    return dst;
  }
  for (let o = 0; o < outer; o++) {
    const sBase = o * inLen * inner;
    const dBase = o * outLen * inner;
    for (let j = 0; j < outLen; j++) {
      const a = sBase + i0[j]! * inner;
      const b = sBase + i1[j]! * inner;
      const w = w1[j]!;
      const d = dBase + j * inner;
      // v0 + w·(v1 − v0) keeps constants exact.
      for (let i = 0; i < inner; i++) dst[d + i] = src[a + i]! + w * (src[b + i]! - src[a + i]!);
    }
  }
  dims[axis] = outLen;
  return dst;
}

function nearestAlongAxis(src: Uint8Array, dims: number[], axis: number, outLen: number, what: string): Uint8Array {
  const inLen = axisLength(dims, axis, what);
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const dst = allocUint8(outer * outLen * inner, what);
  const t = nearestAxisTable(inLen, outLen);
  for (let o = 0; o < outer; o++) {
    const sBase = o * inLen * inner;
    const dBase = o * outLen * inner;
    if (inner < 64) {
      for (let j = 0; j < outLen; j++) {
        const a = sBase + t[j]! * inner;
        const d = dBase + j * inner;
        for (let i = 0; i < inner; i++) dst[d + i] = src[a + i]!;
      }
    } else {
      for (let j = 0; j < outLen; j++) dst.set(src.subarray(sBase + t[j]! * inner, sBase + (t[j]! + 1) * inner), dBase + j * inner);
    }
  }
  dims[axis] = outLen;
  return dst;
}

function checkResample(length: number, channels: number, shape: Shape3, target: Shape3, what: string): void {
  assertShape3(shape, `${what}: source shape`);
  assertShape3(target, `${what}: target shape`);
  assertPositiveInt(channels, `${what}: channel count`);
  if (length !== voxelCount(shape) * channels) {
    throw new PatchFedError('pipeline-shape', `${what}: ${length} values do not match shape ${formatShape(shape)} with ${channels} channel(s)`);
  }
}

function trilinear(data: Float32Array, channels: number, shape: Shape3, target: Shape3, channelsLast: boolean, what: string): Float32Array {
  checkResample(data.length, channels, shape, target, what);
  const dims = channelsLast ? [shape[0], shape[1], shape[2], channels] : [channels, shape[0], shape[1], shape[2]];
  const first = channelsLast ? 0 : 1;
  let cur = data;
  // Shrinking axes first keeps the intermediate arrays small.
  const order = [...AXES3].sort((a, b) => target[a] / shape[a] - target[b] / shape[b]);
  for (const a of order) {
    if (target[a] !== shape[a]) cur = linearAlongAxis(cur, dims, first + a, target[a], `${what} ${formatShape(target)}`);
  }
  return cur === data ? data.slice() : cur;
}

/** Trilinear resampling of a channels-first image (C, X, Y, Z), each channel independently. */
export function resampleImage(image: Float32Array, channels: number, shape: Shape3, target: Shape3): Float32Array {
  return trilinear(image, channels, shape, target, false, 'image resampling');
}

/** Trilinear resampling of channels-last probabilities (X, Y, Z, K); the result still sums to 1 per voxel. */
export function resampleProbabilities(probs: Float32Array, numClasses: number, shape: Shape3, target: Shape3): Float32Array {
  return trilinear(probs, numClasses, shape, target, true, 'probability resampling');
}

/** Nearest-neighbour resampling of a label map (X, Y, Z); output values are a subset of the input's. */
export function resampleLabels(labels: Uint8Array, shape: Shape3, target: Shape3): Uint8Array {
  checkResample(labels.length, 1, shape, target, 'label resampling');
  const dims = [shape[0], shape[1], shape[2]];
  let cur = labels;
  const order = [...AXES3].sort((a, b) => target[a] / shape[a] - target[b] / shape[b]);
  for (const a of order) {
    if (target[a] !== shape[a]) cur = nearestAlongAxis(cur, dims, a, target[a], `label resampling ${formatShape(target)}`);
  }
  return cur === labels ? labels.slice() : cur;
}

/** A case resampled to `target` (image trilinear, label nearest) — the cascade stage-1 input. */
export function resampleCase(c: CaseVolume, target: Shape3): CaseVolume {
  checkCase(c);
  const out: CaseVolume = {
    image: resampleImage(c.image, c.channels, c.shape, target),
    shape: [target[0], target[1], target[2]],
    channels: c.channels,
  };
  if (c.id !== undefined) out.id = c.id;
  if (c.label !== undefined) out.label = resampleLabels(c.label, c.shape, target);
  return out;
}

/** `resampleCase` to `downsampledShape(c.shape, factor, opts)` (thesis: 0.3 brain, 0.2 liver). */
export function downsampleCase(c: CaseVolume, factor: number, opts: DownsampleShapeOptions = {}): CaseVolume {
  return resampleCase(c, downsampledShape(c.shape, factor, opts));
}
