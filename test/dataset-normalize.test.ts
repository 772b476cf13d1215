import { describe, expect, it } from 'vitest';
import {
  CtForegroundPool,
  channelSchemes,
  nonZeroStats,
  percentileOfSorted,
  toChannelsFirstNormalized,
  toRowMajor3d,
} from '../site-agent/data/normalize.ts';
import { convertLabel, preprocessCase, preprocessImage } from '../site-agent/data/preprocess.ts';
import { geometryFor } from './dataset-fixtures.ts';
import type { Volume } from '../shared/volume.ts';

const vol = (data: Volume['data'], dims: number[]): Volume => ({ data, dims, datatype: data instanceof Uint8Array ? 'uint8' : 'float32', geometry: geometryFor([dims[0]!, dims[1]!, dims[2]!]) });

describe('layout: NIfTI (x fastest) -> row-major (C, X, Y, Z) (z fastest)', () => {
  it('puts source voxel (x,y,z,c) at ((c*X + x)*Y + y)*Z + z', () => {
    const [X, Y, Z, C] = [2, 3, 4, 2];
    const src = new Float32Array(X * Y * Z * C);
    // value encodes its coordinates, so a misplaced voxel is visible
    for (let c = 0; c < C; c++)
      for (let z = 0; z < Z; z++)
        for (let y = 0; y < Y; y++) for (let x = 0; x < X; x++) src[x + X * (y + Y * (z + Z * c))] = 1000 * c + 100 * x + 10 * y + z;
    const identity = { scheme: 'ct-clip-zscore' as const, lower: -1e9, upper: 1e9, mean: 0, std: 1 };
    const out = toChannelsFirstNormalized(src, [X, Y, Z], [identity, identity]);
    for (let c = 0; c < C; c++)
      for (let x = 0; x < X; x++)
        for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) expect(out[((c * X + x) * Y + y) * Z + z]).toBe(1000 * c + 100 * x + 10 * y + z);
  });

  it('stays exact across tile boundaries (shapes larger than, and not multiples of, the tile)', () => {
    const [X, Y, Z] = [37, 3, 70];
    const src = Uint8Array.from({ length: X * Y * Z }, (_, i) => (i * 7919) % 251);
    const out = toRowMajor3d(src, [X, Y, Z], new Uint8Array(src.length));
    let wrong = 0;
    for (let x = 0; x < X; x++)
      for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) if (out[(x * Y + y) * Z + z] !== src[x + X * (y + Y * z)]) wrong++;
    expect(wrong).toBe(0);
  });

  it('transposes labels the same way', () => {
    const [X, Y, Z] = [3, 2, 2];
    const src = new Uint8Array(X * Y * Z);
    for (let z = 0; z < Z; z++) for (let y = 0; y < Y; y++) for (let x = 0; x < X; x++) src[x + X * (y + Y * z)] = 10 * x + 3 * y + z;
    const out = toRowMajor3d(src, [X, Y, Z], new Uint8Array(src.length));
    for (let x = 0; x < X; x++) for (let y = 0; y < Y; y++) for (let z = 0; z < Z; z++) expect(out[(x * Y + y) * Z + z]).toBe(10 * x + 3 * y + z);
  });
});

describe('MRI: z-score over non-zero voxels', () => {
  it('computes mean/std over non-zero values only', () => {
    const s = nonZeroStats([0, 1, 2, 3, 0, 0]);
    expect(s.count).toBe(3);
    expect(s.mean).toBe(2);
    expect(s.std).toBeCloseTo(Math.sqrt(2 / 3), 12);
  });

  it('keeps zeros at 0 and maps non-zero voxels to (v - mean) / std, per channel', () => {
    // 2x1x2, 2 channels. channel 0: [0, 2, 4, 6] -> non-zero mean 4, std sqrt(8/3)
    // channel 1: [10, 10, 0, 30] -> mean 50/3, std sqrt(((10-50/3)^2*2 + (30-50/3)^2)/3)
    const data = new Float32Array([0, 2, 4, 6, 10, 10, 0, 30]);
    const pre = preprocessImage('c', vol(data, [2, 1, 2, 2]), channelSchemes(['FLAIR', 't1gd']), [undefined, undefined], 'f.nii');
    const s0 = Math.sqrt(8 / 3);
    const m1 = 50 / 3;
    const s1 = Math.sqrt((2 * (10 - m1) ** 2 + (30 - m1) ** 2) / 3);
    // NIfTI index x + 2*z (Y=1); output ((c*2 + x)*1 + 0)*2 + z
    const expected = [
      // c0: (x0,z0)=0 -> 0, (x0,z1)=4, (x1,z0)=2, (x1,z1)=6
      0, (4 - 4) / s0, (2 - 4) / s0, (6 - 4) / s0,
      // c1: (x0,z0)=10, (x0,z1)=0 -> 0, (x1,z0)=10, (x1,z1)=30
      (10 - m1) / s1, 0, (10 - m1) / s1, (30 - m1) / s1,
    ];
    expect(pre.channels).toBe(2);
    expect(pre.shape).toEqual([2, 1, 2]);
    expected.forEach((v, i) => expect(pre.image[i]).toBeCloseTo(v, 5));
    expect(pre.image[0]).toBe(0);
    expect(pre.image[5]).toBe(0);
    expect(pre.normalization[0]).toMatchObject({ scheme: 'nonzero-zscore', mean: 4 });
  });

  it('maps a constant channel to 0 instead of NaN', () => {
    const pre = preprocessImage('c', vol(new Float32Array([5, 5, 0, 5]), [2, 2, 1]), ['nonzero-zscore'], [undefined], 'f.nii');
    expect([...pre.image]).toEqual([0, 0, 0, 0]);
  });
});

describe('CT: clip to foreground 0.5/99.5 percentiles, then z-score with foreground mean/std', () => {
  it('percentile follows numpy linear interpolation', () => {
    expect(percentileOfSorted([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentileOfSorted([1, 2, 3, 4], 0)).toBe(1);
    expect(percentileOfSorted([1, 2, 3, 4], 100)).toBe(4);
    expect(percentileOfSorted([10, 20, 30], 25)).toBe(15);
  });

  it('modality "CT" in any case selects the CT scheme', () => {
    expect(channelSchemes(['ct', 'CT', ' Ct ', 'T2', 'CTA'])).toEqual(['ct-clip-zscore', 'ct-clip-zscore', 'ct-clip-zscore', 'nonzero-zscore', 'nonzero-zscore']);
  });

  it('computes stats from foreground voxels only and clips background outliers', () => {
    // 20x10x1 image: foreground (label 1) holds 1..200 except where background; background -1000 / 5000.
    const [X, Y, Z] = [20, 10, 2];
    const n = X * Y * Z;
    const image = new Float32Array(n);
    const label = new Uint8Array(n);
    for (let i = 0; i < 200; i++) {
      image[i] = i + 1; // z = 0 slice: foreground
      label[i] = 1;
    }
    for (let i = 200; i < n; i++) image[i] = i % 2 === 0 ? -1000 : 5000; // z = 1 slice: background
    const pool = new CtForegroundPool(1);
    pool.addCase(image, label, 0);
    const stats = pool.stats(0)!;
    const mean = 100.5;
    const std = Math.sqrt((200 * 200 - 1) / 12); // population std of 1..200
    expect(stats.samples).toBe(200);
    expect(stats.lower).toBeCloseTo(1 + 0.005 * 199, 10);
    expect(stats.upper).toBeCloseTo(1 + 0.995 * 199, 10);
    expect(stats.mean).toBeCloseTo(mean, 10);
    expect(stats.std).toBeCloseTo(std, 10);

    const pre = preprocessCase('ct1', vol(image, [X, Y, Z]), vol(label, [X, Y, Z]), {
      schemes: ['ct-clip-zscore'],
      ctStats: [stats],
      labels: [{ value: 0, name: 'background' }, { value: 1, name: 'liver' }],
      imageFile: 'img.nii',
      labelFile: 'lab.nii',
    });
    const at = (x: number, y: number, z: number) => pre.image[(x * Y + y) * Z + z];
    // background -1000 clipped to the lower bound, 5000 to the upper bound
    expect(at(0, 0, 1)).toBeCloseTo((stats.lower - mean) / std, 5);
    expect(at(1, 0, 1)).toBeCloseTo((stats.upper - mean) / std, 5);
    // inside the range, unchanged before z-scoring: voxel (5, 3, 0) holds 5 + 20*3 + 1 = 66
    expect(at(5, 3, 0)).toBeCloseTo((66 - mean) / std, 5);
    // the smallest foreground value (1) is below the 0.5 percentile and is clipped too
    expect(at(0, 0, 0)).toBeCloseTo((stats.lower - mean) / std, 5);
    expect(pre.labelCounts.get(1)).toBe(200);
    expect(pre.labelCounts.get(0)).toBe(200);
  });

  it('samples at most perCase foreground voxels, evenly strided', () => {
    const image = Float32Array.from({ length: 100 }, (_, i) => i);
    const label = new Uint8Array(100).fill(2);
    const pool = new CtForegroundPool(1);
    pool.addCase(image, label, 0, 10);
    const s = pool.stats(0)!;
    expect(s.samples).toBe(10);
    expect(s.mean).toBe(45); // 0, 10, ..., 90
  });

  it('pools several cases and reads the requested channel', () => {
    const pool = new CtForegroundPool(2);
    // two-channel case: channel 1 at offset 4
    pool.addCase(new Float32Array([9, 9, 9, 9, 1, 2, 3, 4]), new Uint8Array([1, 1, 0, 0]), 1);
    pool.addCase(new Float32Array([0, 0, 0, 0, 7, 8, 9, 10]), new Uint8Array([0, 0, 0, 1]), 1);
    expect(pool.stats(1)!.mean).toBeCloseTo((1 + 2 + 10) / 3, 12);
    expect(pool.stats(0)).toBeUndefined();
  });
});

describe('label conversion', () => {
  const labels = [{ value: 0, name: 'bg' }, { value: 1, name: 'a' }, { value: 3, name: 'b' }];

  it('counts classes and keeps declared values', () => {
    const r = convertLabel(vol(new Float32Array([0, 1, 3, 3]), [2, 2, 1]), labels, 'l.nii');
    expect([...r.counts]).toEqual([[0, 1], [1, 1], [3, 2]]);
    expect([...r.label]).toEqual([0, 3, 1, 3]); // (x*Y + y)*Z + z with Z = 1
  });

  it('refuses values not declared, naming the file and the values', () => {
    expect(() => convertLabel(vol(new Float32Array([0, 2, 7, 1]), [2, 2, 1]), labels, 'l.nii')).toThrow(/l\.nii: label values 2, 7 are not among the dataset's labels \(0, 1, 3\)/);
    expect(() => convertLabel(vol(new Float32Array([0, 0.5, 1, 1]), [2, 2, 1]), labels, 'l.nii')).toThrow(/label values 0\.5 /);
    expect(() => convertLabel(vol(new Float32Array([0, -1, 1, 1]), [2, 2, 1]), labels, 'l.nii')).toThrow(/label values -1 /);
  });
});
