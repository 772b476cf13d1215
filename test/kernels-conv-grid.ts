/**
 * The shape grid the issue names for the Conv3D kernels: kernel 1/2/3, stride 1/2, same/valid
 * padding, odd unequal sizes, 1–64 channels, batch 1–2 (plus anisotropic kernels and strides, and
 * a negative 'same' pad), with seeded inputs; and a float64 reference convolution for finite
 * differences that do not depend on tfjs at all.
 */
import * as tf from '@tensorflow/tfjs-core';
import { seeded } from './kernels-fixtures.ts';

export type Pad = 'same' | 'valid';
export interface Case {
  batch: number;
  spatial: [number, number, number];
  cin: number;
  cout: number;
  k: number | [number, number, number];
  stride: number | [number, number, number];
  pad: Pad;
}

// Odd, unequal sizes; channel pairs cycle through 1..64 so the grid stays cheap for the stock kernels.
const CHANNELS: [number, number][] = [
  [1, 3],
  [4, 8],
  [3, 17],
  [8, 2],
  [16, 16],
  [6, 24],
];
export const GRID: Case[] = [];
let n = 0;
for (const k of [1, 2, 3])
  for (const stride of [1, 2])
    for (const pad of ['same', 'valid'] as Pad[]) {
      const [cin, cout] = CHANNELS[n % CHANNELS.length]!;
      GRID.push({ batch: 1 + (n % 2), spatial: n % 2 ? [5, 4, 7] : [3, 6, 5], cin, cout, k, stride, pad });
      n++;
    }
GRID.push({ batch: 1, spatial: [3, 3, 4], cin: 64, cout: 64, k: 3, stride: 1, pad: 'same' });
GRID.push({ batch: 2, spatial: [4, 5, 3], cin: 5, cout: 7, k: [3, 1, 2], stride: [1, 2, 1], pad: 'same' });
// 'same' with stride > kernel: tfjs computes a negative pad.
GRID.push({ batch: 1, spatial: [4, 4, 4], cin: 3, cout: 9, k: 1, stride: 2, pad: 'same' });

export const filterShape = (c: Case): [number, number, number, number, number] => {
  const k = typeof c.k === 'number' ? [c.k, c.k, c.k] : c.k;
  return [k[0]!, k[1]!, k[2]!, c.cin, c.cout];
};
export const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

export function caseInputs(c: Case, seed: number) {
  const xShape = [c.batch, ...c.spatial, c.cin];
  const wShape = filterShape(c);
  const yShape = tf.backend_util.computeConv3DInfo(xShape as [number, number, number, number, number], wShape, c.stride, 1, c.pad).outShape;
  return {
    x: { values: seeded(size(xShape), seed), shape: xShape },
    w: { values: seeded(size(wShape), seed + 1, 0.3), shape: wShape },
    dy: { values: seeded(size(yShape), seed + 2), shape: yShape },
  };
}

export const label = (c: Case) => `b${c.batch} ${c.spatial.join('x')} ${c.cin}->${c.cout} k${c.k} s${c.stride} ${c.pad}`;

type Shape5 = [number, number, number, number, number];

/** Conv3D geometry exactly as tfjs computes it (pads included). */
export function convInfo(c: Case): tf.backend_util.Conv3DInfo {
  return tf.backend_util.computeConv3DInfo([c.batch, ...c.spatial, c.cin] as Shape5, filterShape(c), c.stride, 1, c.pad);
}

/** y = conv3d(x, w) in float64, NDHWC, straight from the definition. */
export function referenceConv3d(info: tf.backend_util.Conv3DInfo, x: ArrayLike<number>, w: ArrayLike<number>): Float64Array {
  const { batchSize, inDepth, inHeight, inWidth, inChannels: ci, outChannels: co, outDepth, outHeight, outWidth } = info;
  const { filterDepth: fd, filterHeight: fh, filterWidth: fw, strideDepth: sd, strideHeight: sh, strideWidth: sw } = info;
  const { front, top, left } = info.padInfo;
  const y = new Float64Array(batchSize * outDepth * outHeight * outWidth * co);
  for (let b = 0; b < batchSize; b++)
    for (let od = 0; od < outDepth; od++)
      for (let oh = 0; oh < outHeight; oh++)
        for (let ow = 0; ow < outWidth; ow++) {
          const yBase = (((b * outDepth + od) * outHeight + oh) * outWidth + ow) * co;
          for (let kd = 0; kd < fd; kd++) {
            const id = od * sd - front + kd;
            if (id < 0 || id >= inDepth) continue;
            for (let kh = 0; kh < fh; kh++) {
              const ih = oh * sh - top + kh;
              if (ih < 0 || ih >= inHeight) continue;
              for (let kw = 0; kw < fw; kw++) {
                const iw = ow * sw - left + kw;
                if (iw < 0 || iw >= inWidth) continue;
                const xBase = (((b * inDepth + id) * inHeight + ih) * inWidth + iw) * ci;
                const wBase = ((kd * fh + kh) * fw + kw) * ci * co;
                for (let i = 0; i < ci; i++) {
                  const xv = x[xBase + i]!;
                  const wRow = wBase + i * co;
                  for (let o = 0; o < co; o++) y[yBase + o]! += xv * w[wRow + o]!;
                }
              }
            }
          }
        }
  return y;
}
