import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectNiftiFile } from '../shared/nifti/index.ts';
import { craftFile } from './nifti-craft.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nifti-inspect-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const REPORT_KEYS = [
  'affine', 'affineSource', 'bitpix', 'channelStats', 'compressed', 'dataBytes', 'datatype', 'datatypeCode',
  'description', 'dims', 'endianness', 'file', 'fileSizeBytes', 'niftiVersion', 'pixdim', 'qformCode', 'scaling',
  'sformCode', 'spacing', 'spatialUnits', 'stats', 'voxOffset', 'voxelCount', 'xyztUnits',
];

describe('inspectNiftiFile', () => {
  it('reports header facts and scaled statistics of a big-endian scaled 4D int16 .nii.gz', async () => {
    // 2×1×1 voxels × 2 channels: raw [1, 3 | -2, 10], slope 0.5, inter 1 → [1.5, 2.5 | 0, 6]
    const path = join(dir, 'scaled4d.nii.gz');
    const bytes = craftFile({
      dim: [4, 2, 1, 1, 2], datatype: 'int16', littleEndian: false, slope: 0.5, inter: 1,
      pixdim: [-1, 0.9, 0.9, 3], qformCode: 1, quatern: [0, 0, 1], qoffset: [4, 5, 6], xyztUnits: 10, description: 'T1 and FLAIR',
    }, [1, 3, -2, 10]);
    await writeFile(path, gzipSync(bytes));
    const report = await inspectNiftiFile(path);

    expect(Object.keys(report).sort()).toEqual(REPORT_KEYS);
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
    expect(report).toMatchObject({
      file: path,
      fileSizeBytes: (await stat(path)).size,
      compressed: true,
      niftiVersion: 1,
      endianness: 'big',
      dims: [2, 1, 1, 2],
      voxelCount: 4,
      dataBytes: 8,
      datatype: 'int16',
      datatypeCode: 4,
      bitpix: 16,
      spacing: [Math.fround(0.9), Math.fround(0.9), 3],
      xyztUnits: 10,
      spatialUnits: 'mm',
      qformCode: 1,
      sformCode: 0,
      affineSource: 'qform',
      scaling: { slope: 0.5, inter: 1, applied: true },
      voxOffset: 352,
      description: 'T1 and FLAIR',
    });
    expect(report.pixdim.slice(0, 4)).toEqual([-1, Math.fround(0.9), Math.fround(0.9), 3]);
    // 180° about z with qfac −1: diag(−0.9, −0.9, −3) + offset
    const f = Math.fround(0.9);
    expect(report.affine).toEqual([[-f, 0, 0, 4], [0, -f, 0, 5], [0, 0, -3, 6], [0, 0, 0, 1]]);
    expect(report.stats).toEqual({ min: 0, max: 6, mean: 2.5, nonFiniteVoxels: 0 });
    expect(report.channelStats).toEqual([
      { min: 1.5, max: 2.5, mean: 2, nonFiniteVoxels: 0 },
      { min: 0, max: 6, mean: 3, nonFiniteVoxels: 0 },
    ]);
  });

  it('counts NaN/Inf instead of refusing, and omits channelStats for 3D', async () => {
    const path = join(dir, 'nan.nii');
    const bytes = craftFile({ version: 2, dim: [3, 2, 2, 1], datatype: 'float32', sformCode: 1, srow: [[2, 0, 0, 1], [0, 2, 0, 2], [0, 0, 2, 3]] }, [NaN, 1, Infinity, 3]);
    await writeFile(path, bytes);
    const report = await inspectNiftiFile(path);
    expect(report.niftiVersion).toBe(2);
    expect(report.compressed).toBe(false);
    expect(report.fileSizeBytes).toBe(bytes.length);
    expect(report.voxOffset).toBe(544);
    expect(report.affineSource).toBe('sform');
    expect(report.stats).toEqual({ min: 1, max: 3, mean: 2, nonFiniteVoxels: 2 });
    expect(report.channelStats).toBeUndefined();
  });

  it('reports null statistics when no voxel is finite', async () => {
    const path = join(dir, 'allnan.nii');
    await writeFile(path, craftFile({ dim: [3, 1, 1, 1], datatype: 'float64' }, [NaN]));
    const report = await inspectNiftiFile(path);
    expect(report.stats).toEqual({ min: null, max: null, mean: null, nonFiniteVoxels: 1 });
    expect(report.spatialUnits).toBe('mm');
  });
});
