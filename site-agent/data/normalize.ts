/**
 * Intensity normalisation, per channel, as nnU-Net does it:
 *
 * - MRI (any modality not named CT): z-score over the NON-ZERO voxels of that channel of that
 *   case; zero voxels (outside the skull-stripped / cropped region) stay exactly 0. The mask is
 *   per channel (nnU-Net uses the union over channels; for MSD data the two coincide).
 * - CT (modality name 'CT', any case): clip to the 0.5 and 99.5 percentiles of the FOREGROUND
 *   (label > 0) intensities, then subtract the foreground mean and divide by the foreground std.
 *   Like nnU-Net, these four numbers are DATASET-wide (pooled over the site's training cases) and
 *   computed from the unclipped foreground samples, so the same transform applies to an
 *   unlabelled image at prediction time. Per case, at most CT_SAMPLES_PER_CASE foreground
 *   voxels are taken (evenly strided, deterministic); all four statistics come from that pool.
 *
 * std is floored at 1e-8 (as nnU-Net) so constant channels map to 0 instead of NaN.
 * Index reads are written `a[i]!` (noUncheckedIndexedAccess): each index is in range by the loop
 * bounds or the arrays' fixed sizes, and a per-element check would only slow the numeric loops.
 */
import { PatchFedError } from '../../shared/errors.ts';
import type { VoxelArray } from '../../shared/volume.ts';

export type ChannelScheme = 'nonzero-zscore' | 'ct-clip-zscore';

/** Foreground intensity statistics of one CT channel. */
export interface CtChannelStats {
  /** 0.5th percentile of the foreground intensities (clip floor). */
  lower: number;
  /** 99.5th percentile (clip ceiling). */
  upper: number;
  mean: number;
  std: number;
  /** Number of foreground voxels the statistics were computed from. */
  samples: number;
}

/** How to map one channel's raw values: fully determined, so it can be logged and re-applied. */
export type ChannelTransform =
  | { scheme: 'nonzero-zscore'; mean: number; std: number }
  | { scheme: 'ct-clip-zscore'; lower: number; upper: number; mean: number; std: number };

export const CT_SAMPLES_PER_CASE = 10_000;
const MIN_STD = 1e-8;

export function isCtModality(name: string): boolean {
  return name.trim().toLowerCase() === 'ct';
}

export function channelSchemes(modalities: readonly string[]): ChannelScheme[] {
  return modalities.map((m) => (isCtModality(m) ? 'ct-clip-zscore' : 'nonzero-zscore'));
}

/** Mean and std (population) of the non-zero values in data[offset, offset+length). */
export function nonZeroStats(data: ArrayLike<number>, offset = 0, length = data.length - offset): { mean: number; std: number; count: number } {
  let count = 0;
  let sum = 0;
  for (let i = offset; i < offset + length; i++) {
    const v = data[i]!;
    if (v !== 0) {
      sum += v;
      count++;
    }
  }
  if (count === 0) return { mean: 0, std: 0, count };
  const mean = sum / count;
  // Second pass for the variance: sum-of-squares in one pass loses precision on large HU/MR values.
  let sq = 0;
  for (let i = offset; i < offset + length; i++) {
    const v = data[i]!;
    if (v !== 0) sq += (v - mean) * (v - mean);
  }
  return { mean, std: Math.sqrt(sq / count), count };
}

/** numpy's default ('linear') percentile of an ascending-sorted array; p in [0, 100]. */
export function percentileOfSorted(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) throw new RangeError('percentile of an empty set');
  const pos = (p / 100) * (n - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/**
 * Pools foreground intensities of CT channels over cases, then yields the per-channel stats.
 * Memory: at most CT_SAMPLES_PER_CASE values per case and channel.
 */
export class CtForegroundPool {
  private readonly chunks: Float64Array[][];

  constructor(readonly channels: number) {
    this.chunks = Array.from({ length: channels }, () => []);
  }

  /**
   * Add one case. `image` is in NIfTI order (channel c at offset c*X*Y*Z) and `label` is the
   * matching (X,Y,Z) label in the same order; foreground is label > 0.
   */
  addCase(image: ArrayLike<number>, label: ArrayLike<number>, channel: number, perCase = CT_SAMPLES_PER_CASE): void {
    const n = label.length;
    const offset = channel * n;
    let foreground = 0;
    for (let i = 0; i < n; i++) if (label[i]! > 0) foreground++;
    if (foreground === 0) return;
    const take = Math.min(foreground, perCase);
    const out = new Float64Array(take);
    // Take the foreground voxels whose rank r satisfies floor(k * foreground / take) === r.
    let rank = 0;
    let k = 0;
    let next = 0;
    for (let i = 0; i < n && k < take; i++) {
      if (label[i]! > 0) {
        if (rank === next) {
          out[k++] = image[offset + i]!;
          next = Math.floor((k * foreground) / take);
        }
        rank++;
      }
    }
    this.channelChunks(channel).push(out);
  }

  private channelChunks(channel: number): Float64Array[] {
    const parts = this.chunks[channel];
    if (!parts) throw new PatchFedError('normalize-channel', `CT foreground pool: channel ${channel} is outside the ${this.channels} channels`);
    return parts;
  }

  /** Stats for a channel, or undefined when no case had foreground. */
  stats(channel: number): CtChannelStats | undefined {
    const parts = this.channelChunks(channel);
    const total = parts.reduce((s, p) => s + p.length, 0);
    if (total === 0) return undefined;
    const all = new Float64Array(total);
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    all.sort();
    let sum = 0;
    for (let i = 0; i < total; i++) sum += all[i]!;
    const mean = sum / total;
    let sq = 0;
    for (let i = 0; i < total; i++) sq += (all[i]! - mean) * (all[i]! - mean);
    return {
      lower: percentileOfSorted(all, 0.5),
      upper: percentileOfSorted(all, 99.5),
      mean,
      std: Math.sqrt(sq / total),
      samples: total,
    };
  }
}

/**
 * The transform for each channel of one image (NIfTI order, `voxels` per channel). MRI channels
 * get their per-case non-zero statistics; CT channels use the dataset statistics `ct[c]`.
 */
export function channelTransforms(
  data: ArrayLike<number>,
  voxels: number,
  schemes: readonly ChannelScheme[],
  ct: readonly (CtChannelStats | undefined)[],
): ChannelTransform[] {
  return schemes.map((scheme, c) => {
    if (scheme === 'nonzero-zscore') {
      const s = nonZeroStats(data, c * voxels, voxels);
      return { scheme, mean: s.mean, std: s.std };
    }
    const s = ct[c];
    if (!s) throw new RangeError(`channel ${c} is CT but no foreground statistics were given`);
    return { scheme, lower: s.lower, upper: s.upper, mean: s.mean, std: s.std };
  });
}

/**
 * NIfTI order (x fastest; index x + X*(y + Y*(z + Z*c))) to channels-first row-major (C, X, Y, Z)
 * (z fastest; index ((c*X + x)*Y + y)*Z + z), applying each channel's transform on the way so
 * only the output array is allocated.
 */
export function toChannelsFirstNormalized(
  src: VoxelArray | ArrayLike<number>,
  shape: readonly [number, number, number],
  transforms: readonly ChannelTransform[],
): Float32Array {
  const [X, Y, Z] = shape;
  const voxels = X * Y * Z;
  const out = new Float32Array(voxels * transforms.length);
  transforms.forEach((t, c) => {
    const std = Math.max(t.std, MIN_STD);
    const mean = t.mean;
    if (t.scheme === 'nonzero-zscore') {
      transposeXYZ(src, c * voxels, out, c * voxels, shape, (v) => (v === 0 ? 0 : (v - mean) / std));
    } else {
      const { lower, upper } = t;
      transposeXYZ(src, c * voxels, out, c * voxels, shape, (v) => ((v < lower ? lower : v > upper ? upper : v) - mean) / std);
    }
  });
  return out;
}

/** NIfTI-order (X,Y,Z) values to row-major (X,Y,Z) with z fastest; same transpose as images. */
export function toRowMajor3d<T extends { [i: number]: number; length: number }>(src: ArrayLike<number>, shape: readonly [number, number, number], out: T): T {
  transposeXYZ(src, 0, out, 0, shape, (v) => v);
  return out;
}

const TILE = 32;

/**
 * out[outBase + (x*Y + y)*Z + z] = map(src[srcBase + x + X*(y + Y*z)]). Reversing the axis
 * order makes one side strided by X*Y; working in TILE x TILE blocks of (x, z) keeps the touched
 * source and destination lines in cache (several times faster than a plain loop on 512^2 slices).
 */
function transposeXYZ(
  src: ArrayLike<number>,
  srcBase: number,
  out: { [i: number]: number },
  outBase: number,
  shape: readonly [number, number, number],
  map: (v: number) => number,
): void {
  const [X, Y, Z] = shape;
  const XY = X * Y;
  for (let x0 = 0; x0 < X; x0 += TILE) {
    const x1 = Math.min(x0 + TILE, X);
    for (let y = 0; y < Y; y++) {
      for (let z0 = 0; z0 < Z; z0 += TILE) {
        const z1 = Math.min(z0 + TILE, Z);
        for (let x = x0; x < x1; x++) {
          const o = outBase + (x * Y + y) * Z;
          let s = srcBase + x + X * y + XY * z0;
          for (let z = z0; z < z1; z++, s += XY) out[o + z] = map(src[s]!);
        }
      }
    }
  }
}
